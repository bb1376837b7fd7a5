//! Warm → cold compaction.
//!
//! Per tenant, warm files are taken in `seq` order as runs of consecutive files of one month
//! (the `date=` partition). A run whose newest event is older than `warm_retention_days` is
//! compacted into ONE cold file (unless it holds more than `COLD_FILE_EVENTS_MAX` events), at a
//! higher zstd level and with larger row groups, in the same Hive layout and with the same
//! manifest. Compaction stops at the first run that is not due, so the cold tier always holds a
//! `seq` prefix of the archive and the warm tier the rest. In the usual case, timestamps in
//! receipt order, a run is a whole tenant-month; an event that arrived late with an old
//! timestamp only splits its month into more runs, since every file is a contiguous `seq` range.
//!
//! For each cold file, in this order (as in `lifecycle.rs`):
//!
//! 1. write the cold Parquet file (with protected fields re-encrypted under the tenant's
//!    current data key when a [`Reseal`] is given: see [`crate::reseal`]);
//! 2. read it back and check it against its manifest and against the events of the warm files
//!    it replaces (each checked against its own manifest; envelopes by their commitments), and
//!    its link to the previous archived file;
//! 3. write the cold manifest: from now on the cold file is authoritative for its range;
//! 4. delete the warm files (each Parquet file, then its manifest).
//!
//! A crash anywhere leaves nothing lost or duplicated: before step 3 the warm files are intact
//! and the cold file is an orphan that the next run deletes; after it, readers and `verify` skip
//! warm files inside a cold range ([`crate::tier::archived_files`]) and the next run finishes
//! step 4.

use sealtrail_model::limits::{COLD_FILE_EVENTS_MAX, COLD_ROW_GROUP_EVENTS_MAX, COLD_ZSTD_LEVEL};
use sealtrail_model::StoredEvent;

use crate::lifecycle::check_file;
use crate::reseal::{resealed, same_but_ciphertext};
use crate::tier::{archived_files, ArchiveTier, ArchivedFile};
use crate::{parquet_file, Error, Manifest, Reseal, Result, Tier};

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// What to compact and when "now" is (an argument, so tests control the clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPolicy {
    pub warm_retention_days: u32,
    pub now_ns: i64,
}

impl CompactionPolicy {
    /// Runs whose newest event is before this instant are due.
    pub fn cutoff_ns(&self) -> i64 {
        self.now_ns
            .saturating_sub(i64::from(self.warm_retention_days).saturating_mul(NANOS_PER_DAY))
    }
}

/// Points in the compaction of one cold file, reported to the caller's hook (which may, for
/// crash tests, end the process there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionStep {
    /// The cold Parquet file is written; no manifest yet.
    AfterWrite,
    /// The cold file is checked and its manifest written; no warm file deleted yet.
    AfterVerify,
    /// About half of the replaced warm files are deleted.
    MidDelete,
}

/// What one run did for one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantCompaction {
    pub tenant_id: String,
    /// Cold files written and recorded.
    pub files_written: u64,
    /// Warm files replaced by them.
    pub warm_files_replaced: u64,
    pub events_moved: u64,
    pub bytes_written: u64,
    /// Warm files deleted while finishing an interrupted run.
    pub leftover_warm_files_deleted: u64,
    /// Cold files without a manifest (an interrupted write) removed.
    pub orphans_removed: u64,
    /// Protected fields re-encrypted under the tenant's current data key on the way.
    pub fields_reencrypted: u64,
}

/// Compacts every tenant's due warm files into the cold tier, with `reseal` re-encrypting
/// protected fields under each tenant's current data key. `on_step` is called at each
/// [`CompactionStep`].
pub async fn migrate_warm_to_cold(
    warm: &Tier,
    cold: &Tier,
    policy: CompactionPolicy,
    reseal: Option<&dyn Reseal>,
    on_step: &mut (dyn FnMut(CompactionStep) + Send),
) -> Result<Vec<TenantCompaction>> {
    let mut reports = Vec::new();
    for tenant_id in warm.tenants().await? {
        reports.push(compact_tenant(warm, cold, &tenant_id, policy, reseal, on_step).await?);
    }
    Ok(reports)
}

async fn compact_tenant(
    warm: &Tier,
    cold: &Tier,
    tenant_id: &str,
    policy: CompactionPolicy,
    reseal: Option<&dyn Reseal>,
    on_step: &mut (dyn FnMut(CompactionStep) + Send),
) -> Result<TenantCompaction> {
    let mut report = TenantCompaction {
        tenant_id: tenant_id.to_owned(),
        ..TenantCompaction::default()
    };
    let cold_manifests = cold.manifests(tenant_id).await?;
    let cold_ranges: Vec<(u64, u64)> = cold_manifests
        .iter()
        .map(|(_, manifest)| (manifest.first_seq, manifest.last_seq))
        .collect();
    let covered =
        |first: u64, last: u64| cold_ranges.iter().any(|(a, b)| *a <= first && last <= *b);

    // Finish step 4 of an interrupted run: warm files inside a recorded cold range.
    for (path, manifest) in warm.manifests(tenant_id).await? {
        if covered(manifest.first_seq, manifest.last_seq) {
            warm.delete(&Tier::file_of(&path, &manifest)).await?;
            warm.delete(&path).await?;
            report.leftover_warm_files_deleted += 1;
        }
    }
    for orphan in warm.orphan_files(tenant_id).await? {
        if range_of(&orphan).is_some_and(|(first, last)| covered(first, last)) {
            warm.delete(&orphan).await?;
            report.leftover_warm_files_deleted += 1;
        }
    }
    // A cold file without a manifest beyond the cold range is an interrupted step 1 or 2.
    let cold_through = cold_ranges.iter().map(|(_, last)| *last).max().unwrap_or(0);
    for orphan in cold.orphan_files(tenant_id).await? {
        if range_of(&orphan).is_some_and(|(first, _)| first > cold_through) {
            tracing::info!(tenant_id, file = %orphan, "removing a cold file left by an interrupted run");
            cold.delete(&orphan).await?;
            report.orphans_removed += 1;
        }
    }

    let files = archived_files(warm, Some(cold), tenant_id).await?;
    // The previous archived file, whose last event the next cold file must continue.
    let mut previous: Option<&ArchivedFile> = None;
    let mut index = 0;
    while index < files.len() {
        let file = &files[index];
        if file.tier == ArchiveTier::Cold {
            previous = Some(file);
            index += 1;
            continue;
        }
        // The run of consecutive warm files of this month.
        let run_end = files[index..]
            .iter()
            .position(|other| other.tier != ArchiveTier::Warm || other.month != file.month)
            .map_or(files.len(), |offset| index + offset);
        let run = &files[index..run_end];
        let newest_ns = run
            .iter()
            .map(|file| file.manifest.timestamp_max_ns)
            .max()
            .unwrap_or(i64::MAX);
        if newest_ns >= policy.cutoff_ns() {
            break;
        }
        // Split only if the month is larger than one cold file may be.
        let mut start = 0;
        while start < run.len() {
            let mut end = start;
            let mut events = 0;
            while end < run.len()
                && (end == start
                    || events + run[end].manifest.event_count as usize <= COLD_FILE_EVENTS_MAX)
            {
                events += run[end].manifest.event_count as usize;
                end += 1;
            }
            compact_files(
                warm,
                cold,
                &run[start..end],
                previous,
                reseal,
                &mut report,
                on_step,
            )
            .await?;
            previous = run.get(end - 1);
            start = end;
        }
        index = run_end;
    }
    Ok(report)
}

/// Steps 1 to 4 of the module docs for one cold file replacing `sources` (consecutive warm
/// files of one month).
async fn compact_files(
    warm: &Tier,
    cold: &Tier,
    sources: &[ArchivedFile],
    previous: Option<&ArchivedFile>,
    reseal: Option<&dyn Reseal>,
    report: &mut TenantCompaction,
    on_step: &mut (dyn FnMut(CompactionStep) + Send),
) -> Result<()> {
    let (Some(first_source), Some(last_source)) = (sources.first(), sources.last()) else {
        return Ok(());
    };
    let tenant_id = first_source.manifest.tenant_id.as_str();
    // Every warm file is checked against its manifest, and each must continue the one before.
    let mut events: Vec<StoredEvent> = Vec::new();
    let mut expected = previous.map(|file| (file.last_seq, file.manifest.last_event_hash.clone()));
    for source in sources {
        if let Some((last_seq, last_hash)) = &expected {
            if source.first_seq != last_seq + 1 {
                return Err(mismatch(
                    tenant_id,
                    source.first_seq,
                    &source.path,
                    &format!("does not continue the archived file ending at seq {last_seq}"),
                ));
            }
            let bytes = warm.get(&source.path).await?;
            let checked = check_file(tenant_id, &source.path, bytes, &source.manifest)?;
            if checked.first().map(|stored| hex::encode(stored.prev_hash))
                != Some(last_hash.clone())
            {
                return Err(mismatch(
                    tenant_id,
                    source.first_seq,
                    &source.path,
                    "prev_hash does not link to the previous archived file",
                ));
            }
            events.extend(checked);
        } else {
            let bytes = warm.get(&source.path).await?;
            events.extend(check_file(
                tenant_id,
                &source.path,
                bytes,
                &source.manifest,
            )?);
        }
        expected = Some((source.last_seq, source.manifest.last_event_hash.clone()));
    }

    let dir = cold.month_dir(tenant_id, &first_source.month);
    let (file_name, manifest_name) = Tier::file_names(first_source.first_seq, last_source.last_seq);
    let file_path = dir.child(file_name.as_str());
    let (written, reencrypted) = resealed(reseal, &events).await?;
    let bytes = parquet_file::encode_with(&written, COLD_ZSTD_LEVEL, COLD_ROW_GROUP_EVENTS_MAX)?;
    let manifest = Manifest::describe(&file_name, &written, &bytes).ok_or_else(|| {
        mismatch(
            tenant_id,
            first_source.first_seq,
            &file_path,
            "nothing to describe",
        )
    })?;
    let file_bytes = bytes.len() as u64;
    cold.put(&file_path, bytes).await?;
    on_step(CompactionStep::AfterWrite);

    // Read back what storage holds, and compare every event with the warm files' events.
    let compacted = check_file(
        tenant_id,
        &file_path,
        cold.get(&file_path).await?,
        &manifest,
    )?;
    // Each read-back event must be the one written, and the warm one but for re-encryption.
    let differs = |(read, (written, warm)): &(&StoredEvent, (&StoredEvent, &StoredEvent))| {
        read != written || !same_but_ciphertext(read, warm)
    };
    let pairs = || compacted.iter().zip(written.iter().zip(&events));
    if compacted.len() != events.len() || pairs().any(|pair| differs(&pair)) {
        let seq = pairs()
            .find(|pair| differs(pair))
            .map_or(manifest.first_seq, |(read, _)| read.seq);
        return Err(mismatch(
            tenant_id,
            seq,
            &file_path,
            "read back an event that differs from the warm files",
        ));
    }
    let manifest_json = serde_json::to_vec_pretty(&manifest).map_err(|error| {
        mismatch(
            tenant_id,
            manifest.first_seq,
            &file_path,
            &error.to_string(),
        )
    })?;
    cold.put(&dir.child(manifest_name.as_str()), manifest_json)
        .await?;
    on_step(CompactionStep::AfterVerify);

    // Each Parquet file before its manifest, so an interruption leaves at worst a manifest
    // without its file inside the cold range, which readers skip.
    let deletions: Vec<&object_store::path::Path> = sources
        .iter()
        .flat_map(|source| [&source.path, &source.manifest_path])
        .collect();
    for (done, path) in deletions.iter().enumerate() {
        if done == deletions.len() / 2 {
            on_step(CompactionStep::MidDelete);
        }
        warm.delete(path).await?;
    }

    report.files_written += 1;
    report.warm_files_replaced += sources.len() as u64;
    report.events_moved += events.len() as u64;
    report.bytes_written += file_bytes;
    report.fields_reencrypted += reencrypted;
    tracing::info!(
        tenant_id,
        first_seq = manifest.first_seq,
        last_seq = manifest.last_seq,
        file_bytes,
        warm_files = sources.len(),
        "compacted into the cold tier"
    );
    Ok(())
}

/// `(first_seq, last_seq)` from a `part-<first>-<last>.parquet` name.
pub(crate) fn range_of(path: &object_store::path::Path) -> Option<(u64, u64)> {
    let name = path
        .filename()?
        .strip_prefix("part-")?
        .strip_suffix(".parquet")?;
    let (first, last) = name.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

pub(crate) fn mismatch(
    tenant_id: &str,
    seq: u64,
    path: &object_store::path::Path,
    reason: &str,
) -> Error {
    Error::Mismatch {
        tenant_id: tenant_id.to_owned(),
        seq,
        path: path.to_string(),
        reason: reason.to_owned(),
    }
}
