//! Hot → warm migration.
//!
//! Per tenant, the events older than `hot_retention_days` are taken as a contiguous `seq`
//! prefix of the hot rows (the hot tier never gets a gap) and moved in files of at most
//! `ARCHIVE_FILE_EVENTS_MAX` events, one tenant-month per file when timestamps advance with `seq`.
//! A file is cut where a later month begins, never where an earlier one reappears: history whose
//! timestamps alternate between months (an import out of order) still makes large files, each
//! in the directory of its first event's month, its manifest recording the true time range that
//! reads prune by. For each file, in this order:
//!
//! 1. write the Parquet file (with protected fields re-encrypted under the tenant's current
//!    data key when a [`Reseal`] is given: see [`crate::reseal`]);
//! 2. read it back and check it against the hot rows (every field of every event, envelopes by
//!    their commitments, recomputed `event_hash`es, the link to the previous file) and against
//!    its manifest;
//! 3. write the manifest: from now on the file counts as archived;
//! 4. delete the hot rows with `seq <= last_seq` (`HotStore::delete_events_through`: at once
//!    invisible to every read; a store may release their space later, in
//!    `HotStore::reclaim_archived`, which PostgreSQL does by dropping whole partitions).
//!
//! A crash anywhere leaves nothing lost or duplicated: before step 3 the hot rows are intact
//! and the Parquet file is an orphan that the next run deletes; after it, the next run re-checks
//! the file against whatever hot rows of its range remain and finishes step 4 (idempotent).
//! New files start after the last manifest, so no `seq` range is ever archived twice.
//!
//! Only a `seq` prefix moves: an event older than the cutoff whose `seq` comes after a younger
//! hot event (history imported after live events) stays hot until that event is due too, and
//! the run's report says so ([`HeldBack`]) rather than silently moving nothing.

use bytes::Bytes;
use sealtrail_hot::{EventQuery, HotStore, Order};
use sealtrail_model::limits::{ARCHIVE_FILE_EVENTS_MAX, ARCHIVE_SCAN_EVENTS, WARM_ZSTD_LEVEL};
use sealtrail_model::StoredEvent;

use crate::reseal::{resealed, same_but_ciphertext};
use crate::tier::{archived_files, month_of};
use crate::{parquet_file, Error, Manifest, Reseal, Result, Tier};

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// What to move and when "now" is (taken as an argument, so tests control the clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationPolicy {
    pub hot_retention_days: u32,
    pub now_ns: i64,
}

impl MigrationPolicy {
    /// Events with `timestamp` before this instant are due to move.
    pub fn cutoff_ns(&self) -> i64 {
        self.now_ns
            .saturating_sub(i64::from(self.hot_retention_days).saturating_mul(NANOS_PER_DAY))
    }
}

/// Points in the migration of one file, reported to the caller's hook (which may, for crash
/// tests, end the process there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationStep {
    /// The Parquet file is written; no manifest yet.
    AfterWrite,
    /// The file is checked and its manifest written; no hot row deleted yet.
    AfterVerify,
    /// The first half of the file's hot rows is deleted.
    MidDelete,
}

/// What one run did for one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantMigration {
    pub tenant_id: String,
    /// New files written and recorded.
    pub files_written: u64,
    pub events_moved: u64,
    pub bytes_written: u64,
    /// Hot rows deleted while finishing an interrupted run.
    pub leftover_rows_deleted: u64,
    pub orphans_removed: u64,
    /// Protected fields re-encrypted under the tenant's current data key on the way.
    pub fields_reencrypted: u64,
    /// Set when hot events older than the cutoff stay hot after the run: only a `seq` prefix
    /// of the hot tier moves (the archive is always the chain's prefix), so an old event behind
    /// a younger one waits for it. This happens when history is imported after live events.
    pub held_back: Option<HeldBack>,
}

/// Why a tenant's events older than the cutoff stayed hot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldBack {
    /// The first hot event (lowest `seq`), which is not older than the cutoff.
    pub first_hot_seq: u64,
    pub first_hot_timestamp_ns: i64,
    /// The lowest `seq` of a hot event older than the cutoff.
    pub first_older_seq: u64,
    /// The cutoff of the run: events with a timestamp before it were due to move.
    pub cutoff_ns: i64,
}

impl HeldBack {
    /// The reason in words, for the operator (`lifecycle run` prints it).
    pub fn describe(&self) -> String {
        format!(
            "events older than the cutoff {cutoff} stay hot from seq {older} on, because the \
             lifecycle moves only a seq prefix of the hot tier and seq {first} ({first_time}) \
             is not older than the cutoff; they move once every event before them is (history \
             imported after live events is appended behind them)",
            cutoff = sealtrail_model::format_timestamp(self.cutoff_ns),
            older = self.first_older_seq,
            first = self.first_hot_seq,
            first_time = sealtrail_model::format_timestamp(self.first_hot_timestamp_ns),
        )
    }
}

/// After a tenant's run: whether hot events older than `cutoff_ns` remain behind a younger one.
async fn held_back(
    hot: &dyn HotStore,
    tenant_id: &str,
    cutoff_ns: i64,
) -> Result<Option<HeldBack>> {
    let Some(first_hot_seq) = hot.first_hot_seq(tenant_id).await? else {
        return Ok(None);
    };
    let mut query = EventQuery::for_tenant(tenant_id);
    query.to_ns = Some(cutoff_ns);
    query.order = Order::Asc;
    query.limit = 1;
    let Some(older) = hot.query(query).await?.into_iter().next() else {
        return Ok(None);
    };
    let Some(first) = hot
        .events_in_seq_range(tenant_id, first_hot_seq, first_hot_seq)
        .await?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    Ok(Some(HeldBack {
        first_hot_seq,
        first_hot_timestamp_ns: first.event.timestamp_ns,
        first_older_seq: older.seq,
        cutoff_ns,
    }))
}

/// Moves every tenant's events older than the policy's cutoff from the hot tier (any
/// [`HotStore`]) to `warm`, continuing each chain from wherever its archive ends (`warm`, or
/// `cold` once compaction emptied the warm tier, or the last retention deletion), then lets the store reclaim the space of what left
/// ([`HotStore::reclaim_archived`]: PostgreSQL drops whole partitions there). `on_step` is
/// called at each [`MigrationStep`].
pub async fn migrate_hot_to_warm(
    hot: &dyn HotStore,
    warm: &Tier,
    cold: Option<&Tier>,
    policy: MigrationPolicy,
    on_step: &mut (dyn FnMut(MigrationStep) + Send),
) -> Result<Vec<TenantMigration>> {
    migrate_hot_to_warm_expiring(hot, warm, cold, policy, &[], None, on_step).await
}

/// [`migrate_hot_to_warm`], and also, for each `(tenant_id, cutoff_ns)` of `expiring`, that
/// tenant's events older than `cutoff_ns` even when they are younger than the hot retention:
/// the retention cutoffs of tenants whose retention is shorter than the hot retention, so that
/// expired events leave the hot tier through the same checked files as any other, and
/// retention ([`crate::apply_retention`]) deletes them there under signed records. With
/// `reseal`, protected fields are re-encrypted under each tenant's current data key as they move.
pub async fn migrate_hot_to_warm_expiring(
    hot: &dyn HotStore,
    warm: &Tier,
    cold: Option<&Tier>,
    policy: MigrationPolicy,
    expiring: &[(String, i64)],
    reseal: Option<&dyn Reseal>,
    on_step: &mut (dyn FnMut(MigrationStep) + Send),
) -> Result<Vec<TenantMigration>> {
    let mut reports = Vec::new();
    for (tenant_id, _head) in hot.chain_heads().await? {
        let cutoff_ns = expiring
            .iter()
            .filter(|(expiring_tenant, _)| *expiring_tenant == tenant_id)
            .map(|(_, cutoff_ns)| *cutoff_ns)
            .fold(policy.cutoff_ns(), i64::max);
        reports
            .push(migrate_tenant(hot, warm, cold, &tenant_id, cutoff_ns, reseal, on_step).await?);
    }
    // Last: by now every tenant's due prefix is out of the hot tier, so a partition of the
    // past holds only archived rows exactly when every tenant's run reached past it. A crash
    // before this point leaves rows that no read returns; the next run reclaims them.
    let partitions_dropped = hot.reclaim_archived().await?;
    if partitions_dropped > 0 {
        tracing::info!(
            partitions_dropped,
            "released the hot storage of archived events"
        );
    }
    Ok(reports)
}

async fn migrate_tenant(
    hot: &dyn HotStore,
    warm: &Tier,
    cold: Option<&Tier>,
    tenant_id: &str,
    cutoff_ns: i64,
    reseal: Option<&dyn Reseal>,
    on_step: &mut (dyn FnMut(MigrationStep) + Send),
) -> Result<TenantMigration> {
    let mut report = TenantMigration {
        tenant_id: tenant_id.to_owned(),
        ..TenantMigration::default()
    };
    // Finish what an interrupted run recorded but did not delete.
    let manifests = warm.manifests(tenant_id).await?;
    for (path, manifest) in &manifests {
        let Some(first_hot) = hot.first_hot_seq(tenant_id).await? else {
            break;
        };
        if manifest.last_seq < first_hot {
            continue;
        }
        let remaining = hot
            .events_in_seq_range(tenant_id, manifest.first_seq, manifest.last_seq)
            .await?;
        let file_path = Tier::file_of(path, manifest);
        let bytes = warm.get(&file_path).await?;
        let archived = check_file(tenant_id, &file_path, bytes, manifest)?;
        // The rows still hot must be exactly the archived ones with the same seq (but for the
        // ciphertext of a field re-encrypted on the way).
        let offset = remaining
            .first()
            .map_or(0, |stored| stored.seq - manifest.first_seq);
        for (stored, copy) in remaining.iter().zip(&archived[offset as usize..]) {
            if !same_but_ciphertext(stored, copy) {
                return Err(mismatch(
                    tenant_id,
                    stored.seq,
                    &file_path,
                    "hot row differs from its archived copy",
                ));
            }
        }
        report.leftover_rows_deleted += hot
            .delete_events_through(tenant_id, manifest.last_seq)
            .await?;
    }
    // Where the archive ends, in any tier: the last recorded file, else the end of what
    // retention deleted (whose hash only the signed record holds; `verify` checks that link).
    let last_file = archived_files(warm, cold, tenant_id).await?.pop();
    let mut deleted_through = warm.deleted_through(tenant_id).await?;
    if let Some(cold) = cold {
        deleted_through = deleted_through.max(cold.deleted_through(tenant_id).await?);
    }
    let mut previous: Option<(u64, Option<String>)> = match &last_file {
        Some(file) => Some((file.last_seq, Some(file.manifest.last_event_hash.clone()))),
        None => (deleted_through > 0).then_some((deleted_through, None)),
    };
    // Only files beyond the archive's end can be leftovers of an interrupted write; an
    // unrecorded file inside the archived range is evidence for `verify`, so it stays.
    let archived_through = previous.as_ref().map_or(0, |(last_seq, _)| *last_seq);
    for orphan in warm.orphan_files(tenant_id).await? {
        if first_seq_of(&orphan).is_none_or(|first_seq| first_seq <= archived_through) {
            continue;
        }
        tracing::info!(tenant_id, file = %orphan, "removing a file left by an interrupted run");
        warm.delete(&orphan).await?;
        report.orphans_removed += 1;
    }

    let Some((first, last)) = hot.hot_prefix_older_than(tenant_id, cutoff_ns).await? else {
        report.held_back = held_back(hot, tenant_id, cutoff_ns).await?;
        return Ok(report);
    };
    // The chain must continue from the end of the archive into the hot rows.
    let expected_first = previous.as_ref().map_or(1, |(last_seq, _)| last_seq + 1);
    if first != expected_first {
        return Err(Error::Mismatch {
            tenant_id: tenant_id.to_owned(),
            seq: expected_first,
            path: warm.description().to_owned(),
            reason: format!(
                "the hot tier starts at seq {first}, the archive ends before seq {expected_first}"
            ),
        });
    }

    let mut chunk: Vec<StoredEvent> = Vec::new();
    // The latest month among the open file's events.
    let mut chunk_month: Option<String> = None;
    let mut after_seq = first - 1;
    while after_seq < last {
        let limit = ARCHIVE_SCAN_EVENTS.min((last - after_seq) as usize);
        let page = hot.scan_events(tenant_id, after_seq, limit).await?;
        let Some(page_last) = page.last().map(|stored| stored.seq) else {
            break;
        };
        for stored in page {
            let month = month_of(stored.event.timestamp_ns);
            let full = chunk.len() >= ARCHIVE_FILE_EVENTS_MAX;
            let later_month = chunk_month.as_ref().is_some_and(|open| month > *open);
            if full || later_month {
                archive_chunk(
                    hot,
                    warm,
                    &chunk,
                    reseal,
                    &mut previous,
                    &mut report,
                    on_step,
                )
                .await?;
                chunk.clear();
                chunk_month = None;
            }
            if chunk_month.as_ref().is_none_or(|open| month > *open) {
                chunk_month = Some(month);
            }
            chunk.push(stored);
        }
        after_seq = page_last;
    }
    if !chunk.is_empty() {
        archive_chunk(
            hot,
            warm,
            &chunk,
            reseal,
            &mut previous,
            &mut report,
            on_step,
        )
        .await?;
    }
    report.held_back = held_back(hot, tenant_id, cutoff_ns).await?;
    Ok(report)
}

/// Steps 1 to 4 of the module docs for one file's events.
async fn archive_chunk(
    hot: &dyn HotStore,
    warm: &Tier,
    events: &[StoredEvent],
    reseal: Option<&dyn Reseal>,
    previous: &mut Option<(u64, Option<String>)>,
    report: &mut TenantMigration,
    on_step: &mut (dyn FnMut(MigrationStep) + Send),
) -> Result<()> {
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Ok(());
    };
    let tenant_id = first.event.tenant_id.as_str();
    let dir = warm.month_dir(tenant_id, &month_of(first.event.timestamp_ns));
    let (file_name, manifest_name) = Tier::file_names(first.seq, last.seq);
    let file_path = dir.child(file_name.as_str());

    let (written, reencrypted) = resealed(reseal, events).await?;
    let bytes = parquet_file::encode(&written, WARM_ZSTD_LEVEL)?;
    let manifest = Manifest::describe(&file_name, &written, &bytes)
        .ok_or_else(|| mismatch(tenant_id, first.seq, &file_path, "nothing to describe"))?;
    let file_bytes = bytes.len() as u64;
    warm.put(&file_path, bytes).await?;
    on_step(MigrationStep::AfterWrite);

    // Read back what storage actually holds, and compare it with the hot rows.
    let archived = check_file(
        tenant_id,
        &file_path,
        warm.get(&file_path).await?,
        &manifest,
    )?;
    if archived.len() != events.len() {
        return Err(mismatch(
            tenant_id,
            first.seq,
            &file_path,
            "read back a different number of events",
        ));
    }
    for ((hot_row, copy), written) in events.iter().zip(&archived).zip(written.iter()) {
        if copy != written || !same_but_ciphertext(hot_row, copy) {
            return Err(mismatch(
                tenant_id,
                hot_row.seq,
                &file_path,
                "read back an event that differs from the hot row",
            ));
        }
    }
    if let Some((previous_seq, previous_hash)) = previous.as_ref() {
        let links = previous_hash
            .as_ref()
            .is_none_or(|hash| hex::encode(first.prev_hash) == *hash);
        if first.seq != previous_seq + 1 || !links {
            return Err(mismatch(
                tenant_id,
                first.seq,
                &file_path,
                "does not continue the previous archived file",
            ));
        }
    }
    let manifest_json = serde_json::to_vec_pretty(&manifest)
        .map_err(|error| mismatch(tenant_id, first.seq, &file_path, &error.to_string()))?;
    warm.put(&dir.child(manifest_name.as_str()), manifest_json)
        .await?;
    on_step(MigrationStep::AfterVerify);

    let middle = first.seq + (last.seq - first.seq) / 2;
    hot.delete_events_through(tenant_id, middle).await?;
    on_step(MigrationStep::MidDelete);
    hot.delete_events_through(tenant_id, last.seq).await?;

    *previous = Some((last.seq, Some(manifest.last_event_hash.clone())));
    report.files_written += 1;
    report.events_moved += events.len() as u64;
    report.bytes_written += file_bytes;
    report.fields_reencrypted += reencrypted;
    tracing::info!(
        tenant_id,
        first_seq = first.seq,
        last_seq = last.seq,
        file_bytes,
        reencrypted,
        "archived to the warm tier"
    );
    Ok(())
}

/// Decodes an archived file (recomputing each `event_hash`) and checks it against its manifest
/// and the chain rule within it (each `prev_hash` links). Returns its events.
pub(crate) fn check_file(
    tenant_id: &str,
    path: &object_store::path::Path,
    bytes: Bytes,
    manifest: &Manifest,
) -> Result<Vec<StoredEvent>> {
    let raw = bytes.clone();
    let events = parquet_file::decode(bytes).map_err(|error| {
        let seq = match &error {
            parquet_file::DecodeError::Row { seq, .. } => *seq,
            _ => manifest.first_seq,
        };
        mismatch(tenant_id, seq, path, &format!("does not decode: {error}"))
    })?;
    if let Some((seq, reason)) = manifest.disagreement(&raw, &events) {
        return Err(mismatch(tenant_id, seq, path, &reason));
    }
    let mut previous: Option<&StoredEvent> = None;
    // Decoding recomputed every `event_hash` from its row, so an altered row shows here as a
    // broken link, or in the manifest's Merkle root and boundary hashes checked above.
    for stored in &events {
        if previous.is_some_and(|before| before.event_hash != stored.prev_hash) {
            return Err(mismatch(
                tenant_id,
                stored.seq,
                path,
                "prev_hash does not link",
            ));
        }
        previous = Some(stored);
    }
    Ok(events)
}

/// `first_seq` from a `part-<first>-<last>.parquet` name.
fn first_seq_of(path: &object_store::path::Path) -> Option<u64> {
    let name = path.filename()?.strip_prefix("part-")?;
    name.split('-').next()?.parse().ok()
}

fn mismatch(tenant_id: &str, seq: u64, path: &object_store::path::Path, reason: &str) -> Error {
    Error::Mismatch {
        tenant_id: tenant_id.to_owned(),
        seq,
        path: path.to_string(),
        reason: reason.to_owned(),
    }
}
