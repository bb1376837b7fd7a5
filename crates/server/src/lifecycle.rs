//! The lifecycle schedule inside the server: every `interval` (daily by default), the same three
//! steps as `sealtrail lifecycle run` — hot → warm, warm → cold, then retention with signed
//! deletion records — on the server's own store, so a running service keeps its hot tier small
//! without being stopped. Each step is crash-safe on its own (see `sealtrail_archive`), so a
//! shutdown or crash in the middle of a pass is finished by the next one. "Now" is the
//! server's clock (`crate::clock`), which tests start at a fixed instant.

use std::sync::Arc;
use std::time::Duration;

use sealtrail_archive::{CompactionPolicy, MigrationPolicy, Tier};
use sealtrail_hot::HotStore;
use sealtrail_ledger::NoteSigner;
use sealtrail_model::RetentionPolicy;

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

/// Runs passes until the task is aborted. A failed pass is logged and retried at the next
/// interval: nothing it did is lost, and nothing half-done is visible to readers.
pub(crate) async fn run_schedule(
    store: Arc<dyn HotStore>,
    warm: Tier,
    cold: Tier,
    signer: NoteSigner,
    schedule: LifecycleSchedule,
) {
    let mut ticker = tokio::time::interval(schedule.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        match run_pass(&*store, &warm, &cold, &signer, schedule).await {
            Ok(summary) => tracing::info!(%summary, "lifecycle pass finished"),
            Err(error) => tracing::error!(%error, "lifecycle pass failed; retrying next interval"),
        }
    }
}

async fn run_pass(
    store: &dyn HotStore,
    warm: &Tier,
    cold: &Tier,
    signer: &NoteSigner,
    schedule: LifecycleSchedule,
) -> Result<String, String> {
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
    let compaction = CompactionPolicy {
        warm_retention_days: schedule.warm_retention_days,
        now_ns,
    };
    let compacted: u64 =
        sealtrail_archive::migrate_warm_to_cold(warm, cold, compaction, &mut |_| {})
            .await
            .map_err(|error| format!("warm -> cold: {error}"))?
            .iter()
            .map(|report| report.events_moved)
            .sum();
    let mut tenants = cold.tenants().await.map_err(|error| error.to_string())?;
    tenants.extend(warm.tenants().await.map_err(|error| error.to_string())?);
    tenants.sort();
    tenants.dedup();
    let mut policies = Vec::with_capacity(tenants.len());
    for tenant_id in tenants {
        let policy = load_retention_policy(store, &tenant_id).await?;
        policies.push((tenant_id, policy));
    }
    let deleted: u64 =
        sealtrail_archive::apply_retention(warm, cold, &policies, signer, now_ns, &mut |_| {})
            .await
            .map_err(|error| format!("retention: {error}"))?
            .iter()
            .map(|report| report.events_deleted)
            .sum();
    Ok(format!(
        "{moved} events hot -> warm, {compacted} warm -> cold, {deleted} deleted by retention"
    ))
}
