//! Verification across tiers: each tenant's archived files (warm and cold, deduplicated, in `seq`
//! order) are checked against their manifests (file SHA-256, count, range, boundary hashes,
//! Merkle root) and then fed to the hot tier's verifier ahead of the hot rows, so the chain, the
//! Merkle tiles and the signed checkpoints are checked as one log no matter where each event
//! lives. A missing prefix is accepted only when signed deletion records cover it: the verifier
//! then starts from the head and Merkle frontier they state.
//!
//! Every manifest field a reader relies on is recomputed from the file's rows, not only the
//! ones that vouch for integrity: the time range prunes reads by time, so a shifted range hides
//! the file's events from them as surely as a deleted file would.

use async_trait::async_trait;
use sealtrail_hot::{ArchivedEvents, LogSource, TenantReport, Witness};
use sealtrail_ledger::{ChainHead, MerkleFrontier, NoteVerifier};
use sealtrail_model::StoredEvent;

use crate::lifecycle::check_file;
use crate::retention::deleted_prefix;
use crate::tier::{archived_files, ArchiveTier, ArchivedFile};
use crate::{Error, Manifest, Result, Tier};

/// A damaged, missing or misplaced archived file, naming the first `seq` it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFault {
    pub tenant_id: String,
    pub seq: u64,
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for ArchiveFault {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "seq {}: archived file {}: {}",
            self.seq, self.path, self.reason
        )
    }
}

/// The verdict on every tenant, plus the archive damage found on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TiersReport {
    pub tenants: Vec<TenantReport>,
    pub faults: Vec<ArchiveFault>,
    /// Tenants whose log starts after a prefix deleted under verified signed deletion records:
    /// `(tenant_id, last deleted seq, number of records)`.
    pub deletions: Vec<(String, u64, usize)>,
}

/// Reads archived events for the log verifier.
#[derive(Debug)]
pub struct TierReader<'tiers> {
    warm: Option<&'tiers Tier>,
    cold: Option<&'tiers Tier>,
    /// Deletion records must verify under this key (the checkpoint key).
    deletion_key: NoteVerifier,
    faults: Vec<ArchiveFault>,
    deletions: Vec<(String, u64, usize)>,
    /// The first operating error (storage unreachable); verification cannot conclude after it.
    error: Option<Error>,
}

impl<'tiers> TierReader<'tiers> {
    /// A reader of the warm and cold tiers (either may be absent).
    pub fn new(
        warm: Option<&'tiers Tier>,
        cold: Option<&'tiers Tier>,
        deletion_key: NoteVerifier,
    ) -> Self {
        TierReader {
            warm,
            cold,
            deletion_key,
            faults: Vec::new(),
            deletions: Vec::new(),
            error: None,
        }
    }

    /// Records a mismatch as a fault, or keeps an operating error.
    fn report(&mut self, error: Error) {
        match error {
            Error::Mismatch {
                tenant_id,
                seq,
                path,
                reason,
            } => self.faults.push(ArchiveFault {
                tenant_id,
                seq,
                path,
                reason,
            }),
            other => {
                if self.error.is_none() {
                    self.error = Some(other);
                }
            }
        }
    }

    /// A tenant's archived files across tiers, deduplicated (cold authoritative).
    async fn files(&self, tenant_id: &str) -> Result<Vec<ArchivedFile>> {
        match (self.warm, self.cold) {
            (Some(warm), cold) => archived_files(warm, cold, tenant_id).await,
            // Cold alone: no warm file can overlap it.
            (None, Some(cold)) => archived_files(cold, None, tenant_id).await,
            (None, None) => Ok(Vec::new()),
        }
        .map(|mut files| {
            if self.warm.is_none() {
                for file in &mut files {
                    file.tier = ArchiveTier::Cold;
                }
            }
            files
        })
    }

    fn tier(&self, tier: ArchiveTier) -> Option<&'tiers Tier> {
        match tier {
            ArchiveTier::Warm => self.warm,
            ArchiveTier::Cold => self.cold,
        }
    }

    /// Feeds one tenant's archived events until a file fails or `feed` says stop.
    async fn feed_tenant(
        &mut self,
        tenant_id: &str,
        feed: &mut (dyn FnMut(StoredEvent) -> bool + Send),
    ) -> Result<()> {
        let files = match self.files(tenant_id).await {
            Ok(files) => files,
            Err(error @ Error::Mismatch { .. }) => {
                self.report(error);
                return Ok(());
            }
            Err(other) => return Err(other),
        };
        let deleted_through = self
            .deletions
            .iter()
            .find(|(tenant, _, _)| tenant == tenant_id)
            .map_or(0, |(_, last_seq, _)| *last_seq);
        let mut expected_seq = deleted_through + 1;
        for file in files {
            let fault = |seq: u64, reason: &str| ArchiveFault {
                tenant_id: tenant_id.to_owned(),
                seq,
                path: file.path.to_string(),
                reason: reason.to_owned(),
            };
            if file.first_seq < expected_seq {
                self.faults.push(fault(
                    file.first_seq,
                    "covers seq already archived or deleted (duplicate)",
                ));
                return Ok(());
            }
            if file.first_seq > expected_seq {
                // A gap: the verifier names the first missing seq.
                return Ok(());
            }
            let Some(tier) = self.tier(file.tier) else {
                return Ok(());
            };
            let bytes = match tier.get(&file.path).await {
                Ok(bytes) => bytes,
                Err(Error::ObjectStore(object_store::Error::NotFound { .. })) => {
                    self.faults.push(fault(
                        file.first_seq,
                        "file named by its manifest is missing (removed)",
                    ));
                    return Ok(());
                }
                Err(other) => return Err(other),
            };
            let checked = check_file(tenant_id, &file.path, bytes.clone(), &file.manifest)
                .and_then(
                    |events| match reader_fields_disagree(&file, &bytes, &events) {
                        Some(reason) => Err(Error::Mismatch {
                            tenant_id: tenant_id.to_owned(),
                            seq: file.first_seq,
                            path: file.manifest_path.to_string(),
                            reason,
                        }),
                        None => Ok(events),
                    },
                );
            match checked {
                Ok(events) => {
                    for stored in events {
                        if !feed(stored) {
                            return Ok(());
                        }
                    }
                }
                Err(Error::Mismatch { seq, reason, .. }) => {
                    self.faults.push(fault(seq, &reason));
                    return Ok(());
                }
                Err(other) => return Err(other),
            }
            expected_seq = file.last_seq + 1;
        }
        Ok(())
    }
}

/// The first manifest field that readers use and that differs from what the file's rows say
/// (`check_file` has compared the integrity fields): its names, its size, its time range.
fn reader_fields_disagree(
    file: &ArchivedFile,
    bytes: &[u8],
    events: &[StoredEvent],
) -> Option<String> {
    let manifest = &file.manifest;
    let described = Manifest::describe(&manifest.file, events, bytes)?;
    let (file_name, manifest_name) = Tier::file_names(manifest.first_seq, manifest.last_seq);
    let stored_manifest_name = file.manifest_path.filename().unwrap_or_default();
    let fields: [(&str, String, String); 6] = [
        ("format", manifest.format.clone(), described.format),
        ("file", manifest.file.clone(), file_name),
        (
            "manifest name",
            stored_manifest_name.to_owned(),
            manifest_name,
        ),
        (
            "file_bytes",
            manifest.file_bytes.to_string(),
            described.file_bytes.to_string(),
        ),
        (
            "timestamp_min_ns",
            manifest.timestamp_min_ns.to_string(),
            described.timestamp_min_ns.to_string(),
        ),
        (
            "timestamp_max_ns",
            manifest.timestamp_max_ns.to_string(),
            described.timestamp_max_ns.to_string(),
        ),
    ];
    fields
        .into_iter()
        .find(|(_, stated, actual)| stated != actual)
        .map(|(field, stated, actual)| {
            format!("manifest field {field} says {stated}, but the file's rows say {actual} (manifest altered; reads that rely on it would miss events)")
        })
}

#[async_trait]
impl ArchivedEvents for TierReader<'_> {
    async fn tenants(&mut self) -> Vec<String> {
        let mut tenants = Vec::new();
        for tier in [self.warm, self.cold].into_iter().flatten() {
            match tier.tenants().await {
                Ok(found) => tenants.extend(found),
                Err(error) => self.report(error),
            }
        }
        tenants
    }

    async fn feed(&mut self, tenant_id: &str, feed: &mut (dyn FnMut(StoredEvent) -> bool + Send)) {
        if self.error.is_some() {
            return;
        }
        if let Err(error) = self.feed_tenant(tenant_id, feed).await {
            self.error = Some(error);
        }
    }

    async fn deleted_prefix(&mut self, tenant_id: &str) -> Option<(ChainHead, MerkleFrontier)> {
        let cold = self.cold?;
        if self.error.is_some() {
            return None;
        }
        let found = deleted_prefix(cold, tenant_id, &self.deletion_key).await;
        match found {
            Ok(Some(prefix)) => {
                self.deletions
                    .push((tenant_id.to_owned(), prefix.head.seq, prefix.records));
                Some((prefix.head, prefix.frontier))
            }
            Ok(None) => None,
            Err(error) => {
                // Unverified records vouch for nothing: the chain then misses its start.
                self.report(error);
                None
            }
        }
    }
}

/// Verifies a hot store (any backend) together with the archived tiers: each tenant's deleted
/// prefix (signed deletion records, checked with `checkpoint_key`), its warm and cold files
/// merged by `seq` (a warm file inside a cold range is a leftover and skipped), then its hot
/// rows from one snapshot, as one chain and one tree, also replaying the checkpoints of
/// `witness`. Every tenant the store, the tiers or the witness knows is verified.
pub async fn verify_tiers(
    store: &dyn LogSource,
    only_tenant: Option<&str>,
    checkpoint_key: &NoteVerifier,
    warm: Option<&Tier>,
    cold: Option<&Tier>,
    witness: &Witness,
) -> Result<TiersReport> {
    let mut reader = TierReader::new(warm, cold, checkpoint_key.clone());
    let tenants =
        sealtrail_hot::verify_log(store, only_tenant, checkpoint_key, &mut reader, witness).await?;
    if let Some(error) = reader.error {
        return Err(error);
    }
    Ok(TiersReport {
        tenants,
        faults: reader.faults,
        deletions: reader.deletions,
    })
}

/// [`verify_tiers`] from outside any async runtime (the CLI's and tests' entry), with no
/// witness. MUST NOT be called from inside an async runtime.
pub fn verify_tiers_blocking(
    store: &dyn LogSource,
    only_tenant: Option<&str>,
    checkpoint_key: &NoteVerifier,
    warm: Option<&Tier>,
    cold: Option<&Tier>,
) -> Result<TiersReport> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Error::Runtime(error.to_string()))?
        .block_on(verify_tiers(
            store,
            only_tenant,
            checkpoint_key,
            warm,
            cold,
            &Witness::default(),
        ))
}
