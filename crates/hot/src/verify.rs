//! Verification of a stored log, on any backend: every tenant's chain, Merkle tiles, signed
//! checkpoints, recorded head and frontier, across the archived tiers and past signed deletion
//! records, re-derived from the stored fields with nothing trusted but the ledger's rules
//! ([`sealtrail_ledger::LogCheck`] decides; this module only gathers).
//!
//! A store offers its log through [`LogSource`]: each tenant is read from one consistent
//! snapshot (its head, frontier, tiles, checkpoints and hot rows), so a server writing meanwhile
//! cannot make a sound log look broken. The archive ([`ArchivedEvents`]) is read outside that
//! snapshot; a lifecycle pass running meanwhile only moves events the snapshot also holds, and
//! rows the archive already covered are skipped.
//!
//! A tenant is verified if anything knows it: a chain head, an event, a tile or a checkpoint in
//! the store, an archived file or deletion record ([`ArchivedEvents::tenants`]), or a checkpoint
//! kept by a [`Witness`]. A tenant whose hot rows were removed while its other traces remain
//! therefore fails, instead of going unlisted. The recorded chain head must be exactly the last
//! event: ahead of it the log was truncated, behind it the store would hand out a `seq` again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use async_trait::async_trait;
use sealtrail_ledger::{
    ChainHead, CheckpointToCheck, Hash, LogCheck, MerkleFrontier, NoteVerifier, StoredTree,
    TenantReport,
};
use sealtrail_model::StoredEvent;

use crate::{Error, Result, StoredCheckpoint};

/// Signed checkpoints kept outside the data directory by a witness, as the server writes them
/// (`<dir>/<tenant_id>/<tree_size, 20 digits>.checkpoint`, create-new). Replaying them against
/// the log catches what the store's own checkpoints cannot: a truncation that also removed the
/// later checkpoints, or a history rewritten and re-signed in place.
#[derive(Debug, Clone, Default)]
pub struct Witness {
    /// Per tenant: `(tree_size, note, path)`, ascending by tree size.
    checkpoints: BTreeMap<String, Vec<(u64, String, String)>>,
}

impl Witness {
    /// Reads every checkpoint under `dir`. A file whose name is not `<tree_size>.checkpoint` is
    /// not the server's and is reported, never skipped: the witness is only useful if whole.
    pub fn read(dir: &Path) -> Result<Witness> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| Error::Io { path, source }
        };
        let mut checkpoints = BTreeMap::new();
        for tenant_dir in std::fs::read_dir(dir).map_err(io(dir))? {
            let tenant_dir = tenant_dir.map_err(io(dir))?.path();
            let tenant_id = tenant_dir
                .file_name()
                .and_then(|name| name.to_str())
                .filter(|_| tenant_dir.is_dir())
                .ok_or_else(|| Error::Io {
                    path: tenant_dir.display().to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "not a tenant directory of a witness",
                    ),
                })?
                .to_owned();
            let mut tenant_checkpoints = Vec::new();
            for file in std::fs::read_dir(&tenant_dir).map_err(io(&tenant_dir))? {
                let path = file.map_err(io(&tenant_dir))?.path();
                let tree_size = path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .and_then(|name| name.strip_suffix(".checkpoint"))
                    .and_then(|digits| digits.parse::<u64>().ok())
                    .ok_or_else(|| Error::Io {
                        path: path.display().to_string(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "not a witness checkpoint (<tree_size>.checkpoint)",
                        ),
                    })?;
                let note = std::fs::read(&path).map_err(io(&path))?;
                // A note that is not text cannot verify; the signature check says so.
                let note = String::from_utf8_lossy(&note).into_owned();
                tenant_checkpoints.push((tree_size, note, path.display().to_string()));
            }
            tenant_checkpoints.sort_by_key(|(tree_size, _, _)| *tree_size);
            checkpoints.insert(tenant_id, tenant_checkpoints);
        }
        Ok(Witness { checkpoints })
    }

    /// Tenants with a directory in the witness.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.checkpoints.keys().map(String::as_str)
    }

    /// Checkpoints held, across tenants.
    pub fn checkpoint_count(&self) -> usize {
        self.checkpoints.values().map(Vec::len).sum()
    }

    /// A tenant's witnessed checkpoints, opened with `checkpoint_key`.
    fn opened(&self, tenant_id: &str, checkpoint_key: &NoteVerifier) -> Vec<CheckpointToCheck> {
        self.checkpoints
            .get(tenant_id)
            .into_iter()
            .flatten()
            .map(|(tree_size, note, path)| {
                CheckpointToCheck::open(
                    tenant_id,
                    *tree_size,
                    note,
                    checkpoint_key,
                    Some(path.clone()),
                )
            })
            .collect()
    }
}

/// A store's log, read for verification one tenant at a time.
#[async_trait]
pub trait LogSource: Send + Sync {
    /// Every tenant the store knows in any table: chain heads, events, tiles, checkpoints. A
    /// tenant whose events, head and tiles were removed is still named by its checkpoints.
    async fn known_tenants(&self) -> Result<Vec<String>>;

    /// Opens one consistent snapshot of `tenant_id`'s stored log (a read transaction).
    async fn snapshot(&self, tenant_id: &str) -> Result<Box<dyn TenantSnapshot>>;
}

/// One tenant's stored log as of one instant. Every read comes from the same snapshot.
#[async_trait]
pub trait TenantSnapshot: Send {
    /// The recorded chain head, with the Merkle frontier stored beside it when the store
    /// keeps one.
    async fn head(&mut self) -> Result<Option<(ChainHead, Option<Vec<u8>>)>>;

    /// The stored tiles by `(level, index)`, and the signed checkpoints by tree size. A value
    /// that does not decode is an [`Error::Corrupt`] naming it.
    async fn tree(&mut self) -> Result<(HashMap<(u8, u64), Hash>, Vec<StoredCheckpoint>)>;

    /// Feeds the hot rows with `seq > after_seq`, ascending, to `check` until it fails. A row
    /// that does not decode is fed as [`LogCheck::feed_undecodable`], naming its column.
    async fn check_rows(&mut self, after_seq: u64, check: LogCheck) -> Result<LogCheck>;

    /// Ends the snapshot.
    async fn close(self: Box<Self>) -> Result<()>;
}

/// Verifies every tenant that the store, the archive or the witness knows (or just
/// `only_tenant`, checked even if nothing knows it): the archived prefix first, then the hot
/// rows, as one chain and one Merkle tree held against the stored tiles, the store's and the
/// witness's signed checkpoints (opened with `checkpoint_key`), the recorded head and frontier.
pub async fn verify_log(
    source: &dyn LogSource,
    only_tenant: Option<&str>,
    checkpoint_key: &NoteVerifier,
    archived: &mut dyn ArchivedEvents,
    witness: &Witness,
) -> Result<Vec<TenantReport>> {
    let tenants: Vec<String> = match only_tenant {
        Some(only) => vec![only.to_owned()],
        None => {
            let mut known: BTreeSet<String> = source.known_tenants().await?.into_iter().collect();
            known.extend(archived.tenants().await);
            known.extend(witness.tenants().map(str::to_owned));
            known.into_iter().collect()
        }
    };
    let mut reports = Vec::with_capacity(tenants.len());
    for tenant_id in tenants {
        let mut snapshot = source.snapshot(&tenant_id).await?;
        let report = verify_tenant(
            &mut *snapshot,
            source,
            tenant_id,
            checkpoint_key,
            archived,
            witness,
        )
        .await;
        snapshot.close().await?;
        reports.push(report?);
    }
    Ok(reports)
}

/// One tenant of [`verify_log`], inside its snapshot.
async fn verify_tenant(
    snapshot: &mut dyn TenantSnapshot,
    source: &dyn LogSource,
    tenant_id: String,
    checkpoint_key: &NoteVerifier,
    archived: &mut dyn ArchivedEvents,
    witness: &Witness,
) -> Result<TenantReport> {
    let stored = match snapshot.head().await {
        Ok(head) => snapshot.tree().await.map(|tree| (head, tree)),
        Err(error) => Err(error),
    };
    let (recorded, (tiles, stored_checkpoints)) = match stored {
        Ok(stored) => stored,
        // A damaged head, tile or checkpoint is this tenant's fault, not the run's.
        Err(Error::Corrupt { seq, reason, .. }) => {
            let mut check = LogCheck::new(StoredTree::default());
            check.feed_undecodable(seq, "chain head, Merkle tile or checkpoint", &reason);
            return Ok(check.finish(tenant_id, None, None));
        }
        Err(other) => return Err(other),
    };
    let mut checkpoints: Vec<CheckpointToCheck> = stored_checkpoints
        .iter()
        .map(|stored| {
            CheckpointToCheck::open(
                &tenant_id,
                stored.tree_size,
                &stored.note,
                checkpoint_key,
                None,
            )
        })
        .collect();
    checkpoints.extend(witness.opened(&tenant_id, checkpoint_key));
    let mut check = LogCheck::new(StoredTree {
        tiles: Some(tiles),
        checkpoints,
    });
    if let Some((head, frontier)) = archived.deleted_prefix(&tenant_id).await {
        check.start_after(head, frontier);
    }
    archived
        .feed(&tenant_id, &mut |stored| check.feed(&stored))
        .await;
    if !check.failed() {
        // Hot rows the archive already covers are leftovers of an interrupted migration (the
        // archived copy was checked against them before it was recorded): skipped here, deleted
        // by the next lifecycle run.
        let archived_through = check.head().seq;
        check = snapshot.check_rows(archived_through, check).await?;
    }
    let recorded_head = recorded.as_ref().map(|(head, _)| *head);
    // Events past the snapshot's head can only have come from the archive, moved by a pass
    // that ran after the snapshot began: the head is read again for them.
    let recorded_after = match recorded_head {
        Some(head) if head.seq >= check.head().seq => Some(head),
        _ if check.failed() => recorded_head,
        _ => {
            let mut later = source.snapshot(&tenant_id).await?;
            let head = later.head().await;
            later.close().await?;
            head?.map(|(head, _)| head).or(recorded_head)
        }
    };
    Ok(check.finish(
        tenant_id,
        recorded
            .as_ref()
            .map(|(head, frontier)| (*head, frontier.as_deref())),
        recorded_after,
    ))
}

/// [`verify_log`] of a store's hot tier alone (no archive, no witness).
pub async fn verify_store(
    store: &dyn LogSource,
    only_tenant: Option<&str>,
    checkpoint_key: &NoteVerifier,
) -> Result<Vec<TenantReport>> {
    verify_log(
        store,
        only_tenant,
        checkpoint_key,
        &mut NoArchive,
        &Witness::default(),
    )
    .await
}

/// The archive of a store that never migrated: every event is hot.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoArchive;

#[async_trait]
impl ArchivedEvents for NoArchive {
    async fn feed(
        &mut self,
        _tenant_id: &str,
        _feed: &mut (dyn FnMut(StoredEvent) -> bool + Send),
    ) {
    }
}

/// A tenant's events that left the hot tier (the warm and cold tiers of `sealtrail-archive`),
/// fed to the verifier ahead of the hot rows so that one chain is checked across tiers.
#[async_trait]
pub trait ArchivedEvents: Send {
    /// Calls `feed` with each archived event of `tenant_id`, ascending by `seq`, until it
    /// returns false. An implementation that finds a damaged or missing file MUST stop feeding
    /// there and report the damage its own way: the verifier then names the first `seq` it did
    /// not receive.
    async fn feed(&mut self, tenant_id: &str, feed: &mut (dyn FnMut(StoredEvent) -> bool + Send));

    /// Every tenant the archive knows (by its files or its deletion records), so that a tenant
    /// absent from the hot store is still verified. The default: none.
    async fn tenants(&mut self) -> Vec<String> {
        Vec::new()
    }

    /// Where `tenant_id`'s log starts when its oldest events were deleted under verified,
    /// contiguous signed deletion records: the chain head and Merkle frontier after the last
    /// deleted event. `None` (the default): the log starts at seq 1. An implementation MUST
    /// return `Some` only for records whose signatures it checked.
    async fn deleted_prefix(&mut self, _tenant_id: &str) -> Option<(ChainHead, MerkleFrontier)> {
        None
    }
}
