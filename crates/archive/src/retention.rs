//! Retention: deleting a tenant's expired events, provably, in every tier.
//!
//! Retention deletes archived files, warm or cold, only whole files, and only as a `seq` prefix
//! of the tenant's log (oldest first): the first file not due, or a tenant under legal hold,
//! stops it. A file is due when its newest event is older than the tenant's retention. Expired
//! events still in the hot tier are first archived by the lifecycle
//! ([`crate::migrate_hot_to_warm_expiring`]: read back, checked, recorded like any other file)
//! and then deleted here, so every deletion, whatever tier it left, goes through the same
//! checks and the same signed record. For each file:
//!
//! 1. read it and check it against its manifest and the end of the deleted prefix (the chain
//!    must continue from the last deletion record), and mark the UTC days of its events in the
//!    summaries (`SummaryStore::mark_deleted_days`): the summaries keep counting them, marked
//!    as counting deleted events;
//! 2. write a signed deletion record (`sealtrail_ledger::DeletionRecord`) of its range, with the
//!    Merkle frontier of the whole deleted prefix and the policy that permitted it. Records are
//!    always written to the cold tier, where `verify` reads them, whichever tier the file was
//!    in;
//! 3. delete the Parquet file, then its manifest.
//!
//! A crash after step 2 leaves a file inside a recorded range: readers and `verify` skip it and
//! the next run deletes it. A crash before leaves the file and no record: nothing happened,
//! except perhaps marks on days whose events the next run deletes; a deleted day is never
//! left unmarked.

use std::collections::BTreeSet;

use sealtrail_hot::SummaryStore;
use sealtrail_ledger::{
    open_deletion_record, sign_deletion_record, DeletedPrefix, DeletionRecord, MerkleFrontier,
    NoteSigner, NoteVerifier,
};
use sealtrail_model::{format_day, RetentionPolicy};

use crate::cold::mismatch;
use crate::lifecycle::check_file;
use crate::tier::{archived_files, ArchiveTier};
use crate::{Error, Result, Tier};

/// Points in the deletion of one file, reported to the caller's hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionStep {
    /// The deletion record is written; the file and its manifest still exist.
    AfterRecord,
}

/// What one run did for one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantRetention {
    pub tenant_id: String,
    pub policy: Option<RetentionPolicy>,
    /// Archived files (warm or cold) deleted now, each under its own signed record.
    pub files_deleted: u64,
    pub events_deleted: u64,
    /// Files of already recorded ranges deleted while finishing an interrupted run.
    pub leftover_files_deleted: u64,
    /// The end of the tenant's deleted prefix after this run (0: nothing ever deleted).
    pub deleted_through: u64,
}

/// Opens and chains a tenant's deletion records in `cold` with `key`. A record that does not
/// verify, or whose name claims another range than its signed body, is an error naming it.
pub async fn deleted_prefix(
    cold: &Tier,
    tenant_id: &str,
    key: &NoteVerifier,
) -> Result<Option<DeletedPrefix>> {
    let mut records = Vec::new();
    for stored in cold.deletion_records(tenant_id).await? {
        let fault = |reason: String| Error::Mismatch {
            tenant_id: tenant_id.to_owned(),
            seq: stored.first_seq,
            path: stored.path.to_string(),
            reason,
        };
        let record = open_deletion_record(&stored.note, std::slice::from_ref(key), tenant_id)
            .map_err(|error| fault(format!("deletion record does not verify: {error}")))?;
        if (record.first_seq, record.last_seq) != (stored.first_seq, stored.last_seq) {
            return Err(fault(format!(
                "deletion record's name differs from its signed range {}-{}",
                record.first_seq, record.last_seq
            )));
        }
        records.push(record);
    }
    DeletedPrefix::from_records(&records).map_err(|error| Error::Mismatch {
        tenant_id: tenant_id.to_owned(),
        seq: records.first().map_or(1, |record| record.first_seq),
        path: cold.description().to_owned(),
        reason: format!("deletion records do not chain: {error}"),
    })
}

/// Applies each tenant's policy (`None`: keep forever) to its archived files at `now_ns`, signing
/// deletion records with `signer` (the checkpoint key) and marking the deleted days in
/// `summaries`. `on_step` is called at each [`RetentionStep`].
pub async fn apply_retention(
    warm: &Tier,
    cold: &Tier,
    summaries: &dyn SummaryStore,
    policies: &[(String, Option<RetentionPolicy>)],
    signer: &NoteSigner,
    now_ns: i64,
    on_step: &mut (dyn FnMut(RetentionStep) + Send),
) -> Result<Vec<TenantRetention>> {
    let mut reports = Vec::new();
    for (tenant_id, policy) in policies {
        reports.push(
            retain_tenant(
                warm, cold, summaries, tenant_id, *policy, signer, now_ns, on_step,
            )
            .await?,
        );
    }
    Ok(reports)
}

#[allow(clippy::too_many_arguments)]
async fn retain_tenant(
    warm: &Tier,
    cold: &Tier,
    summaries: &dyn SummaryStore,
    tenant_id: &str,
    policy: Option<RetentionPolicy>,
    signer: &NoteSigner,
    now_ns: i64,
    on_step: &mut (dyn FnMut(RetentionStep) + Send),
) -> Result<TenantRetention> {
    let mut report = TenantRetention {
        tenant_id: tenant_id.to_owned(),
        policy,
        ..TenantRetention::default()
    };
    let prefix = deleted_prefix(cold, tenant_id, &signer.verifier()).await?;
    let (mut head, mut frontier) = match prefix {
        Some(prefix) => (prefix.head, prefix.frontier),
        None => (
            sealtrail_ledger::ChainHead::default(),
            MerkleFrontier::new(),
        ),
    };
    // Finish step 3 of an interrupted run: files inside the recorded prefix, in either tier. A
    // recorded deletion is complete in meaning once signed, so this runs even under a legal
    // hold.
    for tier in [cold, warm] {
        for (path, manifest) in tier.manifests(tenant_id).await? {
            if manifest.last_seq <= head.seq {
                tier.delete(&Tier::file_of(&path, &manifest)).await?;
                tier.delete(&path).await?;
                report.leftover_files_deleted += 1;
            }
        }
    }
    report.deleted_through = head.seq;
    let Some(policy) = policy.filter(|policy| !policy.legal_hold) else {
        return Ok(report);
    };
    let cutoff_ns = policy.cutoff_ns(now_ns);
    for file in archived_files(warm, Some(cold), tenant_id).await? {
        let due = file.manifest.timestamp_max_ns < cutoff_ns && file.first_seq == head.seq + 1;
        if !due {
            break;
        }
        let tier = match file.tier {
            ArchiveTier::Cold => cold,
            ArchiveTier::Warm => warm,
        };
        let events = check_file(
            tenant_id,
            &file.path,
            tier.get(&file.path).await?,
            &file.manifest,
        )?;
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            break;
        };
        if first.prev_hash != head.hash {
            return Err(mismatch(
                tenant_id,
                first.seq,
                &file.path,
                "prev_hash does not continue the deleted prefix",
            ));
        }
        for stored in &events {
            frontier.append(stored.event_hash);
        }
        let days: BTreeSet<String> = events
            .iter()
            .map(|stored| format_day(stored.event.timestamp_ns))
            .collect();
        summaries
            .mark_deleted_days(tenant_id, days.into_iter().collect())
            .await?;
        let record = DeletionRecord {
            tenant_id: tenant_id.to_owned(),
            first_seq: first.seq,
            last_seq: last.seq,
            event_count: events.len() as u64,
            prev_hash: head.hash,
            last_event_hash: last.event_hash,
            frontier: frontier.clone(),
            policy: policy.describe(),
            deleted_at_ns: now_ns,
        };
        let note = sign_deletion_record(&record, signer)
            .map_err(|error| mismatch(tenant_id, first.seq, &file.path, &error.to_string()))?;
        cold.put(
            &cold.deletion_record_path(tenant_id, first.seq, last.seq),
            note.into_bytes(),
        )
        .await?;
        on_step(RetentionStep::AfterRecord);
        tier.delete(&file.path).await?;
        tier.delete(&file.manifest_path).await?;
        head = sealtrail_ledger::ChainHead {
            seq: last.seq,
            hash: last.event_hash,
        };
        report.files_deleted += 1;
        report.events_deleted += events.len() as u64;
        tracing::info!(
            tenant_id,
            first_seq = first.seq,
            last_seq = last.seq,
            policy = %policy.describe(),
            tier = file.tier.as_str(),
            "deleted an expired archived file under a signed deletion record"
        );
    }
    report.deleted_through = head.seq;
    Ok(report)
}
