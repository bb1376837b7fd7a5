//! Verification across tiers: each tenant's archived files, in `seq` order, are checked against
//! their manifests (file SHA-256, count, range, boundary hashes, Merkle root) and then fed to the
//! hot tier's verifier ahead of the hot rows, so the chain, the Merkle tiles and the signed
//! checkpoints are checked as one log no matter where each event lives.

use std::path::Path;

use sealtrail_hot::{ArchivedEvents, TenantReport};
use sealtrail_ledger::NoteVerifier;
use sealtrail_model::StoredEvent;

use crate::lifecycle::check_file;
use crate::{Error, Result, Tier};

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
}

/// Reads archived events for the hot verifier. It owns a small runtime because the verifier is
/// synchronous and object storage is not.
#[derive(Debug)]
pub struct TierReader<'tiers> {
    tiers: &'tiers [Tier],
    runtime: tokio::runtime::Runtime,
    faults: Vec<ArchiveFault>,
    /// The first operating error (storage unreachable); verification cannot conclude after it.
    error: Option<Error>,
}

impl<'tiers> TierReader<'tiers> {
    /// MUST NOT be called from inside an async runtime.
    pub fn new(tiers: &'tiers [Tier]) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| Error::Runtime(error.to_string()))?;
        Ok(TierReader {
            tiers,
            runtime,
            faults: Vec::new(),
            error: None,
        })
    }

    /// Feeds one tenant's archived events until a file fails or `feed` says stop.
    fn feed_tenant(
        &mut self,
        tenant_id: &str,
        feed: &mut dyn FnMut(StoredEvent) -> bool,
    ) -> Result<()> {
        let mut manifests = Vec::new();
        for tier in self.tiers {
            match self.runtime.block_on(tier.manifests(tenant_id)) {
                Ok(found) => manifests.extend(found.into_iter().map(|(path, m)| (tier, path, m))),
                Err(Error::Mismatch {
                    tenant_id,
                    seq,
                    path,
                    reason,
                }) => {
                    self.faults.push(ArchiveFault {
                        tenant_id,
                        seq,
                        path,
                        reason,
                    });
                    return Ok(());
                }
                Err(other) => return Err(other),
            }
        }
        manifests.sort_by_key(|(_, _, manifest)| manifest.first_seq);
        let mut expected_seq = 1;
        for (tier, manifest_path, manifest) in manifests {
            let file_path = Tier::file_of(&manifest_path, &manifest);
            let fault = |seq: u64, reason: &str| ArchiveFault {
                tenant_id: tenant_id.to_owned(),
                seq,
                path: file_path.to_string(),
                reason: reason.to_owned(),
            };
            if manifest.first_seq < expected_seq {
                self.faults.push(fault(
                    manifest.first_seq,
                    "covers seq already archived in another file (duplicate)",
                ));
                return Ok(());
            }
            if manifest.first_seq > expected_seq {
                // A gap: the verifier names the first missing seq.
                return Ok(());
            }
            let bytes = match self.runtime.block_on(tier.get(&file_path)) {
                Ok(bytes) => bytes,
                Err(Error::ObjectStore(object_store::Error::NotFound { .. })) => {
                    self.faults.push(fault(
                        manifest.first_seq,
                        "file named by its manifest is missing (removed)",
                    ));
                    return Ok(());
                }
                Err(other) => return Err(other),
            };
            match check_file(tenant_id, &file_path, bytes, &manifest) {
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
            expected_seq = manifest.last_seq + 1;
        }
        Ok(())
    }
}

impl ArchivedEvents for TierReader<'_> {
    fn feed(&mut self, tenant_id: &str, feed: &mut dyn FnMut(StoredEvent) -> bool) {
        if self.error.is_some() {
            return;
        }
        if let Err(error) = self.feed_tenant(tenant_id, feed) {
            self.error = Some(error);
        }
    }
}

/// Verifies the SQLite hot tier under `data_dir` together with the archived `tiers` (warm, then
/// cold, in any order: files are merged by `seq`). MUST NOT be called from inside an async
/// runtime.
pub fn verify_sqlite_tiers(
    data_dir: &Path,
    only_tenant: Option<&str>,
    checkpoint_key: &NoteVerifier,
    tiers: &[Tier],
) -> Result<TiersReport> {
    let mut reader = TierReader::new(tiers)?;
    let tenants = sealtrail_hot::verify_sqlite_across_tiers(
        data_dir,
        only_tenant,
        checkpoint_key,
        &mut reader,
    )?;
    if let Some(error) = reader.error {
        return Err(error);
    }
    Ok(TiersReport {
        tenants,
        faults: reader.faults,
    })
}
