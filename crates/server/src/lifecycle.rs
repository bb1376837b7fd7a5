//! The lifecycle schedule inside the server: every `interval` (daily by default), the same three
//! steps as `sealtrail lifecycle run` — hot → warm, warm → cold, then retention with signed
//! deletion records — on the server's own store, so a running service keeps its hot tier small
//! without being stopped. Each step is crash-safe on its own (see `sealtrail_archive`), so a
//! shutdown or crash in the middle of a pass is finished by the next one. "Now" is the
//! server's clock (`crate::clock`), which tests start at a fixed instant.
//!
//! Every pass runs on [`MaintenanceRuntime`], never on the request runtime: its Parquet encoding
//! (zstd) and read-back are seconds of CPU inside ordinary async calls. Each pass is counted in
//! `/metrics` (runs by outcome, bytes written per tier, events per step).
//!
//! Several nodes on one database each run the schedule, but a pass only runs under the store's
//! lifecycle lease (`HotStore::lifecycle_lease`, an advisory lock on PostgreSQL): exactly one
//! node moves at a time, so no node's orphan cleanup deletes a file another is writing. Those
//! nodes must share one archive, or the others' reads would lose what one moved:
//! [`check_shared_archive`] refuses to start a node whose warm or cold location is not the one
//! the database's other nodes use.

use std::sync::Arc;
use std::time::Duration;

use sealtrail_archive::{CompactionPolicy, MigrationPolicy, Reseal, Tier};
use sealtrail_hot::HotStore;
use sealtrail_ledger::NoteSigner;
use sealtrail_model::RetentionPolicy;
use sealtrail_query::MaintenanceRuntime;

/// When and what the schedule moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleSchedule {
    /// Time between passes; the first pass runs one interval after start.
    pub interval: Duration,
    pub hot_retention_days: u32,
    pub warm_retention_days: u32,
}

/// A tenant's stored retention policy; `None` when it has none (kept indefinitely). A stored
/// policy that does not parse is an error, never treated as "no policy".
pub async fn load_retention_policy(
    store: &dyn HotStore,
    tenant_id: &str,
) -> Result<Option<RetentionPolicy>, String> {
    let Some(bytes) = store
        .setting(&RetentionPolicy::setting_name(tenant_id))
        .await
        .map_err(|error| error.to_string())?
    else {
        return Ok(None);
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|error| format!("the retention policy of {tenant_id} is not JSON: {error}"))?;
    RetentionPolicy::from_json(&value)
        .map(Some)
        .map_err(|errors| {
            let reasons: Vec<String> = errors
                .iter()
                .map(|error| format!("{}: {}", error.field, error.reason))
                .collect();
            format!(
                "the retention policy of {tenant_id} is invalid: {}",
                reasons.join("; ")
            )
        })
}

/// The retention cutoff of every hot tenant whose policy may delete (a policy and no legal
/// hold), for [`sealtrail_archive::migrate_hot_to_warm_expiring`]: retention applies in every
/// tier, so events that expire while still hot leave it for the archive first, and retention
/// deletes them there under signed records.
pub async fn retention_cutoffs(
    store: &dyn HotStore,
    now_ns: i64,
) -> Result<Vec<(String, i64)>, String> {
    let mut cutoffs = Vec::new();
    for (tenant_id, _head) in store
        .chain_heads()
        .await
        .map_err(|error| error.to_string())?
    {
        if let Some(policy) = load_retention_policy(store, &tenant_id).await? {
            if !policy.legal_hold {
                cutoffs.push((tenant_id, policy.cutoff_ns(now_ns)));
            }
        }
    }
    Ok(cutoffs)
}

/// Runs passes until the task is aborted, each on `runtime`. A failed pass is logged and
/// retried at the next interval: nothing it did is lost, and nothing half-done is visible to
/// readers.
pub(crate) async fn run_schedule(
    runtime: Arc<MaintenanceRuntime>,
    store: Arc<dyn HotStore>,
    warm: Tier,
    cold: Tier,
    signer: NoteSigner,
    reseal: Arc<dyn Reseal>,
    schedule: LifecycleSchedule,
) {
    let signer = Arc::new(signer);
    let mut ticker = tokio::time::interval(schedule.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let pass = run_pass_on(
            &runtime,
            store.clone(),
            warm.clone(),
            cold.clone(),
            signer.clone(),
            Some(reseal.clone()),
            schedule,
        );
        if let Err(error) = pass.await {
            tracing::error!(%error, "lifecycle pass could not run; retrying next interval");
        }
    }
}

/// The setting naming the archive the nodes of a shared database use, and the object that
/// names it inside each tier.
const ARCHIVE_ID_SETTING: &str = "archive/id";
const ARCHIVE_ID_OBJECT: &str = "_sealtrail-archive-id";

/// On a store several nodes share, makes sure every tier is the one the database knows: the
/// first node writes a random id into each tier and records it in the database; a node whose
/// tier holds no id or another one (a per-node directory, another bucket) is refused.
pub(crate) async fn check_shared_archive(
    store: &dyn HotStore,
    tiers: &[&Tier],
) -> crate::Result<()> {
    if !store.shared_by_nodes() {
        return Ok(());
    }
    let mut markers = Vec::with_capacity(tiers.len());
    for tier in tiers {
        let (_, prefix) = tier.object_store();
        let path = prefix.child(ARCHIVE_ID_OBJECT);
        let found = match tier.get(&path).await {
            Ok(bytes) => Some(bytes.to_vec()),
            Err(sealtrail_archive::Error::ObjectStore(object_store::Error::NotFound {
                ..
            })) => None,
            Err(other) => return Err(other.into()),
        };
        markers.push((tier, path, found));
    }
    let recorded = match store.setting(ARCHIVE_ID_SETTING).await? {
        Some(recorded) => recorded,
        None => {
            // The first node of this database: its tiers' id (or a new one) becomes the record;
            // `if_absent`, because another node may be doing the same right now.
            let id = markers
                .iter()
                .find_map(|(_, _, found)| found.clone())
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string().into_bytes());
            for (tier, path, found) in &mut markers {
                if found.is_none() {
                    tier.put(path, id.clone()).await?;
                    *found = Some(id.clone());
                }
            }
            store.set_setting_if_absent(ARCHIVE_ID_SETTING, id).await?;
            store.setting(ARCHIVE_ID_SETTING).await?.unwrap_or_default()
        }
    };
    for (tier, _, found) in &markers {
        if found.as_ref() != Some(&recorded) {
            return Err(crate::Error::SharedArchive(format!(
                "the archive tier {} is not the one the other nodes on this database use (its \
                 {ARCHIVE_ID_OBJECT} is missing or different): nodes sharing a database must \
                 share their warm and cold tiers (one object storage bucket or one shared \
                 directory), or their reads would lose the events another node archived",
                tier.description()
            )));
        }
    }
    Ok(())
}

/// One pass on `runtime`, counted in the metrics.
async fn run_pass_on(
    runtime: &MaintenanceRuntime,
    store: Arc<dyn HotStore>,
    warm: Tier,
    cold: Tier,
    signer: Arc<NoteSigner>,
    reseal: Option<Arc<dyn Reseal>>,
    schedule: LifecycleSchedule,
) -> Result<Option<PassSummary>, String> {
    let outcome = runtime
        .run(async move {
            let Some(lease) = store
                .lifecycle_lease()
                .await
                .map_err(|error| error.to_string())?
            else {
                tracing::info!("lifecycle pass skipped: another node is running one");
                return Ok(None);
            };
            // Both lines are logged while the lease is held, so the passes of several nodes
            // never overlap in the logs either.
            tracing::info!("lifecycle pass started");
            let outcome =
                run_pass(&*store, &warm, &cold, &signer, reseal.as_deref(), schedule).await;
            match &outcome {
                Ok(summary) => tracing::info!(%summary, "lifecycle pass finished"),
                Err(error) => {
                    tracing::error!(%error, "lifecycle pass failed; retrying next interval")
                }
            }
            lease.release().await.map_err(|error| error.to_string())?;
            outcome.map(Some)
        })
        .await
        .map_err(|error| error.to_string())
        .and_then(|outcome| outcome);
    let outcome = match outcome {
        Ok(None) => return Ok(None),
        Ok(Some(summary)) => Ok(summary),
        Err(error) => Err(error),
    };
    let metrics = crate::metrics::registry();
    match &outcome {
        Ok(summary) => metrics.lifecycle_pass(
            true,
            &[("warm", summary.warm_bytes), ("cold", summary.cold_bytes)],
            &[
                ("hot_to_warm", summary.moved),
                ("warm_to_cold", summary.compacted),
                ("retention", summary.deleted),
            ],
        ),
        Err(_) => metrics.lifecycle_pass(false, &[], &[]),
    }
    outcome.map(Some)
}

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PassSummary {
    moved: u64,
    compacted: u64,
    deleted: u64,
    warm_bytes: u64,
    cold_bytes: u64,
}

impl std::fmt::Display for PassSummary {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} events hot -> warm, {} warm -> cold, {} deleted by retention",
            self.moved, self.compacted, self.deleted
        )
    }
}

async fn run_pass(
    store: &dyn HotStore,
    warm: &Tier,
    cold: &Tier,
    signer: &NoteSigner,
    reseal: Option<&dyn Reseal>,
    schedule: LifecycleSchedule,
) -> Result<PassSummary, String> {
    // The CPU-heavy encoding below MUST NOT run on a request worker (see the module header).
    debug_assert_eq!(
        std::thread::current().name(),
        Some("sealtrail-lifecycle"),
        "the lifecycle pass runs on the maintenance runtime"
    );
    let now_ns = crate::now_ns();
    let migration = MigrationPolicy {
        hot_retention_days: schedule.hot_retention_days,
        now_ns,
    };
    let expiring = retention_cutoffs(store, now_ns).await?;
    let migrations = sealtrail_archive::migrate_hot_to_warm_expiring(
        store,
        warm,
        Some(cold),
        migration,
        &expiring,
        reseal,
        &mut |_| {},
    )
    .await
    .map_err(|error| format!("hot -> warm: {error}"))?;
    for report in &migrations {
        if let Some(held_back) = &report.held_back {
            tracing::info!(tenant_id = %report.tenant_id, "{}", held_back.describe());
        }
    }
    let moved: u64 = migrations.iter().map(|report| report.events_moved).sum();
    let mut reencrypted: u64 = migrations
        .iter()
        .map(|report| report.fields_reencrypted)
        .sum();
    let warm_bytes: u64 = migrations.iter().map(|report| report.bytes_written).sum();
    let compaction = CompactionPolicy {
        warm_retention_days: schedule.warm_retention_days,
        now_ns,
    };
    let compactions =
        sealtrail_archive::migrate_warm_to_cold(warm, cold, compaction, reseal, &mut |_| {})
            .await
            .map_err(|error| format!("warm -> cold: {error}"))?;
    let compacted: u64 = compactions.iter().map(|report| report.events_moved).sum();
    reencrypted += compactions
        .iter()
        .map(|report| report.fields_reencrypted)
        .sum::<u64>();
    if reencrypted > 0 {
        tracing::info!(
            reencrypted,
            "protected fields re-encrypted under their tenant's current data key"
        );
    }
    let cold_bytes: u64 = compactions.iter().map(|report| report.bytes_written).sum();
    let mut tenants = cold.tenants().await.map_err(|error| error.to_string())?;
    tenants.extend(warm.tenants().await.map_err(|error| error.to_string())?);
    tenants.sort();
    tenants.dedup();
    let mut policies = Vec::with_capacity(tenants.len());
    for tenant_id in tenants {
        let policy = load_retention_policy(store, &tenant_id).await?;
        policies.push((tenant_id, policy));
    }
    let deleted: u64 = sealtrail_archive::apply_retention(
        warm,
        cold,
        store,
        &policies,
        signer,
        now_ns,
        &mut |_| {},
    )
    .await
    .map_err(|error| format!("retention: {error}"))?
    .iter()
    .map(|report| report.events_deleted)
    .sum();
    Ok(PassSummary {
        moved,
        compacted,
        deleted,
        warm_bytes,
        cold_bytes,
    })
}

#[cfg(test)]
mod tests {
    use sealtrail_archive::Location;

    use super::*;

    /// A scheduled pass runs on the maintenance runtime: `run_pass` asserts its thread, and a
    /// panic there would come back as an error of the pass.
    #[tokio::test]
    async fn a_pass_runs_on_the_maintenance_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn HotStore> =
            Arc::new(sealtrail_hot_sqlite::SqliteStore::open(&dir.path().join("data")).unwrap());
        let warm = Tier::open(&Location::Local(dir.path().join("warm"))).unwrap();
        let cold = Tier::open(&Location::Local(dir.path().join("cold"))).unwrap();
        let signer =
            crate::checkpoints::load_or_create_signer(&dir.path().join("key"), "test").unwrap();
        let schedule = LifecycleSchedule {
            interval: Duration::from_secs(3_600),
            hot_retention_days: 30,
            warm_retention_days: 365,
        };
        let runtime = MaintenanceRuntime::new().unwrap();
        let summary = run_pass_on(
            &runtime,
            store,
            warm,
            cold,
            Arc::new(signer),
            None,
            schedule,
        )
        .await
        .unwrap()
        .expect("a store only this process opens always grants the lease");
        assert_eq!(
            summary.to_string(),
            "0 events hot -> warm, 0 warm -> cold, 0 deleted by retention"
        );
    }
}
