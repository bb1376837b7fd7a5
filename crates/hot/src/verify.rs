//! Verification of the hot tier: re-checks every tenant's chain from the stored rows, trusting
//! nothing but the ledger's rules. [`verify_sqlite`] reads a data directory offline, with no
//! server running; [`verify_store`] checks any [`HotStore`] backend through the trait.
//!
//! A tenant is verified if anything knows it: a chain head, an event, a tile or a checkpoint in
//! the store, an archived file or deletion record ([`ArchivedEvents::tenants`]), or a checkpoint
//! kept by a [`Witness`]. A tenant whose hot rows were removed while its other traces remain
//! therefore fails, instead of going unlisted. The recorded chain head must be exactly the last
//! event: ahead of it the log was truncated, behind it the store would hand out a `seq` again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use sealtrail_ledger::{
    decode_frontier, open_checkpoint, tenant_origin, ChainFault, ChainHead, ChainVerifier,
    Checkpoint, EventView, MerkleFrontier, NoteVerifier, TILE_HEIGHT,
};
use sealtrail_model::StoredEvent;

use crate::sqlite::{select_events_sql, DATABASE_FILE};
use crate::{Error, HotStore, Result};

/// Events read per round trip by [`verify_store`].
const VERIFY_SCAN_EVENTS: usize = 10_000;

/// The verdict on one tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantReport {
    pub tenant_id: String,
    /// Events checked before the verdict.
    pub events_checked: u64,
    /// The verified head, or the first fault.
    pub verdict: std::result::Result<ChainHead, TenantFault>,
}

/// Why a tenant's log is not intact: a fault of the chain or tree rules, or of the store's
/// record of where the chain ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantFault {
    #[error(transparent)]
    Chain(#[from] ChainFault),
    /// The recorded head is behind the last stored event, so the store's next write would reuse
    /// `seq` (and fail on every attempt).
    #[error("seq {seq}: chain head rolled back (it records seq {recorded}, but the log holds events through seq {last}); the store would assign seq {seq} again")]
    HeadBehindLog { seq: u64, recorded: u64, last: u64 },
    /// Events exist (hot or archived) but the store records no head: the tenant's hot rows were
    /// removed, and the store would restart its chain at seq 1.
    #[error("seq {seq}: chain head missing (the log holds events through seq {seq}, but the store records no head for this tenant)")]
    HeadMissing { seq: u64 },
    /// The Merkle frontier stored beside the head is not the tree of the log: the next tiles the
    /// store completes from it would be wrong.
    #[error("seq {seq}: the Merkle frontier stored beside the chain head does not match the tree of the log")]
    FrontierMismatch { seq: u64 },
    /// A fault found by a checkpoint kept in the witness directory.
    #[error("{fault} (witness checkpoint {path})")]
    Witnessed { fault: ChainFault, path: String },
}

impl TenantFault {
    /// The first `seq` that fails.
    pub fn seq(&self) -> u64 {
        match self {
            TenantFault::Chain(fault) | TenantFault::Witnessed { fault, .. } => fault.seq(),
            TenantFault::HeadBehindLog { seq, .. }
            | TenantFault::HeadMissing { seq }
            | TenantFault::FrontierMismatch { seq } => *seq,
        }
    }
}

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
            .map(|(tree_size, note, path)| CheckpointToCheck {
                tree_size: *tree_size,
                opened: open_note(tenant_id, *tree_size, note, checkpoint_key),
                witness: Some(path.clone()),
            })
            .collect()
    }
}

/// A signed checkpoint to hold the rebuilt tree against.
struct CheckpointToCheck {
    tree_size: u64,
    /// The opened checkpoint, or why it failed to open.
    opened: std::result::Result<Checkpoint, String>,
    /// Where the witness keeps it; `None` for the store's own.
    witness: Option<String>,
}

impl CheckpointToCheck {
    /// Checks it against the tree of its size, whose root is `root`.
    fn check(&self, root: [u8; 32]) -> Option<TenantFault> {
        let fault = match &self.opened {
            Err(reason) => ChainFault::CheckpointInvalid {
                seq: self.tree_size,
                reason: reason.clone(),
            },
            Ok(checkpoint) if checkpoint.root_hash != root => ChainFault::CheckpointMismatch {
                seq: self.tree_size,
            },
            Ok(_) => return None,
        };
        Some(self.attribute(fault))
    }

    /// Names the witness file when the fault comes from one.
    fn attribute(&self, fault: ChainFault) -> TenantFault {
        match &self.witness {
            Some(path) => TenantFault::Witnessed {
                fault,
                path: path.clone(),
            },
            None => TenantFault::Chain(fault),
        }
    }
}

/// Opens a checkpoint note of `tenant_id` stored as tree size `tree_size`.
fn open_note(
    tenant_id: &str,
    tree_size: u64,
    note: &str,
    checkpoint_key: &NoteVerifier,
) -> std::result::Result<Checkpoint, String> {
    open_checkpoint(
        note,
        std::slice::from_ref(checkpoint_key),
        &tenant_origin(tenant_id),
    )
    .map_err(|error| error.to_string())
    .and_then(|checkpoint| {
        if checkpoint.tree_size == tree_size {
            Ok(checkpoint)
        } else {
            Err(format!("its body says tree size {}", checkpoint.tree_size))
        }
    })
}

/// The stored Merkle data of one tenant, checked against the tree rebuilt from its events.
struct MerkleCheck {
    frontier: MerkleFrontier,
    /// The store's tiles; `None` when they are not checked (a store read through the trait).
    tiles: Option<HashMap<(u8, u64), [u8; 32]>>,
    /// Signed checkpoints (the store's and the witness's), ascending by tree size.
    checkpoints: Vec<CheckpointToCheck>,
    next_checkpoint: usize,
}

impl MerkleCheck {
    fn new(
        tiles: Option<HashMap<(u8, u64), [u8; 32]>>,
        mut checkpoints: Vec<CheckpointToCheck>,
    ) -> Self {
        // Stable: at one tree size the store's checkpoint is checked before the witness's.
        checkpoints.sort_by_key(|checkpoint| checkpoint.tree_size);
        MerkleCheck {
            frontier: MerkleFrontier::new(),
            tiles,
            checkpoints,
            next_checkpoint: 0,
        }
    }

    /// Adds the next leaf; returns the first disagreement with a stored tile or checkpoint.
    fn append(&mut self, seq: u64, event_hash: [u8; 32]) -> Option<TenantFault> {
        let mut fault = None;
        let tiles = &self.tiles;
        self.frontier.append_with(event_hash, |subtree| {
            if let Some(tiles) = tiles {
                if fault.is_none()
                    && subtree.level > 0
                    && subtree.level % TILE_HEIGHT == 0
                    && tiles.get(&(subtree.level, subtree.index)) != Some(&subtree.hash)
                {
                    fault = Some(ChainFault::TileMismatch {
                        seq,
                        level: subtree.level,
                        index: subtree.index,
                    });
                }
            }
        });
        if let Some(fault) = fault {
            return Some(fault.into());
        }
        while let Some(checkpoint) = self.checkpoints.get(self.next_checkpoint) {
            if checkpoint.tree_size != seq {
                break;
            }
            self.next_checkpoint += 1;
            if let Some(fault) = checkpoint.check(self.frontier.root()) {
                return Some(fault);
            }
        }
        None
    }

    /// A checkpoint beyond the last event means events were removed from the end.
    fn finish(&self, last_seq: u64) -> Option<TenantFault> {
        self.checkpoints
            .get(self.next_checkpoint)
            .map(|checkpoint| {
                checkpoint.attribute(ChainFault::CheckpointBeyondLog {
                    seq: last_seq + 1,
                    tree_size: checkpoint.tree_size,
                    found: last_seq,
                })
            })
    }
}

/// Feeds one tenant's events, in `seq` order, through the chain rules (and, when the store's
/// Merkle data is at hand, the tree rules).
struct TenantCheck {
    verifier: ChainVerifier,
    merkle: Option<MerkleCheck>,
    events_checked: u64,
    fault: Option<TenantFault>,
}

impl TenantCheck {
    fn new(merkle: Option<MerkleCheck>) -> Self {
        let mut check = TenantCheck {
            verifier: ChainVerifier::new(),
            merkle,
            events_checked: 0,
            fault: None,
        };
        check.settle(MerkleFrontier::new(), 0);
        check
    }

    /// Continues after a deleted prefix ending at `head`, whose tree is `frontier`. Checkpoints
    /// inside the prefix can no longer be checked against events; one at its exact size is
    /// checked against the frontier's root.
    fn start_after(&mut self, head: ChainHead, frontier: MerkleFrontier) {
        self.verifier = ChainVerifier::continuing(head);
        self.settle(frontier, head.seq);
    }

    /// Sets the tree to `frontier` (of size `tree_size`), passing the checkpoints up to that
    /// size; one of exactly that size is checked against the frontier's root.
    fn settle(&mut self, frontier: MerkleFrontier, tree_size: u64) {
        let Some(merkle) = self.merkle.as_mut() else {
            return;
        };
        while let Some(checkpoint) = merkle.checkpoints.get(merkle.next_checkpoint) {
            if checkpoint.tree_size > tree_size {
                break;
            }
            merkle.next_checkpoint += 1;
            if checkpoint.tree_size == tree_size {
                let fault = checkpoint.check(frontier.root());
                if fault.is_some() && self.fault.is_none() {
                    self.fault = fault;
                }
            }
        }
        merkle.frontier = frontier;
    }

    /// Checks the next event (or a row that failed to decode); returns false once a fault is
    /// found, since every later link depends on this one.
    fn feed(&mut self, row: Result<StoredEvent>) -> Result<bool> {
        let checked = match row {
            Ok(stored) => self
                .verifier
                .check(&stored)
                .map_err(TenantFault::from)
                .and_then(|()| {
                    match self
                        .merkle
                        .as_mut()
                        .and_then(|merkle| merkle.append(stored.seq, stored.event_hash))
                    {
                        Some(fault) => Err(fault),
                        None => Ok(()),
                    }
                }),
            // A row that no longer decodes was edited.
            Err(Error::Corrupt { seq, .. }) => Err(ChainFault::ContentChanged { seq }.into()),
            Err(other) => return Err(other),
        };
        match checked {
            Ok(()) => {
                self.events_checked += 1;
                Ok(true)
            }
            Err(fault) => {
                self.fault = Some(fault);
                Ok(false)
            }
        }
    }

    /// [`TenantCheck::feed`] of a row's borrowed fields.
    fn feed_view(
        &mut self,
        view: &EventView<'_>,
        seq: u64,
        received_at_ns: i64,
        prev_hash: [u8; 32],
        event_hash: [u8; 32],
    ) -> bool {
        let mut checked = self
            .verifier
            .check_view(view, seq, received_at_ns, &prev_hash, &event_hash)
            .map_err(TenantFault::from);
        if checked.is_ok() {
            if let Some(fault) = self
                .merkle
                .as_mut()
                .and_then(|merkle| merkle.append(seq, event_hash))
            {
                checked = Err(fault);
            }
        }
        match checked {
            Ok(()) => {
                self.events_checked += 1;
                true
            }
            Err(fault) => {
                self.fault = Some(fault);
                false
            }
        }
    }

    /// The verdict. `recorded` is the chain head read before the events (a log that ends short
    /// of it was truncated); `recorded_after` is the head read after them (a log that goes past
    /// it has a head rolled back). A store read in one snapshot passes the same head twice; a
    /// live store read in several transactions passes both, since a concurrent write moves the
    /// head forward between them but never back.
    fn finish(
        self,
        tenant_id: String,
        recorded: Option<ChainHead>,
        recorded_after: Option<ChainHead>,
    ) -> TenantReport {
        let last_seq = self.verifier.head().seq;
        let verdict = match self.fault {
            Some(fault) => Err(fault),
            None => match self
                .merkle
                .as_ref()
                .and_then(|merkle| merkle.finish(last_seq))
            {
                Some(fault) => Err(fault),
                None => self
                    .verifier
                    .finish(recorded)
                    .map_err(TenantFault::from)
                    .and_then(|head| match recorded_after {
                        _ if head.seq == 0 => Ok(head),
                        None => Err(TenantFault::HeadMissing { seq: head.seq }),
                        Some(after) if after.seq < head.seq => Err(TenantFault::HeadBehindLog {
                            seq: after.seq + 1,
                            recorded: after.seq,
                            last: head.seq,
                        }),
                        Some(_) => Ok(head),
                    }),
            },
        };
        TenantReport {
            tenant_id,
            events_checked: self.events_checked,
            verdict,
        }
    }
}

/// The tenants to verify: every one in `known` (any order, repeats allowed), or just
/// `only_tenant`, which is checked even if nothing knows it.
fn select_tenants(
    known: impl IntoIterator<Item = String>,
    only_tenant: Option<&str>,
) -> Vec<String> {
    match only_tenant {
        Some(only) => vec![only.to_owned()],
        None => known
            .into_iter()
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect(),
    }
}

/// Verifies every tenant (or just `only_tenant`) of any hot store. Chains only: the store's
/// tiles and checkpoints are not read through the trait.
pub async fn verify_store(
    store: &dyn HotStore,
    only_tenant: Option<&str>,
) -> Result<Vec<TenantReport>> {
    verify_store_witnessed(store, only_tenant, None).await
}

/// [`verify_store`], also replaying a witness's checkpoints (opened with the key given beside
/// it) against each tenant's tree, and verifying every tenant the witness knows.
pub async fn verify_store_witnessed(
    store: &dyn HotStore,
    only_tenant: Option<&str>,
    witness: Option<(&Witness, &NoteVerifier)>,
) -> Result<Vec<TenantReport>> {
    let heads: HashMap<String, Option<ChainHead>> =
        store.tenant_heads().await?.into_iter().collect();
    let known = heads.keys().cloned().chain(
        witness
            .into_iter()
            .flat_map(|(witness, _)| witness.tenants().map(str::to_owned)),
    );
    let mut reports = Vec::new();
    for tenant_id in select_tenants(known.collect::<Vec<_>>(), only_tenant) {
        let recorded = heads.get(&tenant_id).copied().flatten();
        let merkle =
            witness.map(|(witness, key)| MerkleCheck::new(None, witness.opened(&tenant_id, key)));
        let mut check = TenantCheck::new(merkle);
        let mut after_seq = 0;
        'scan: loop {
            let rows = match store
                .scan_events(&tenant_id, after_seq, VERIFY_SCAN_EVENTS)
                .await
            {
                Ok(rows) => rows,
                Err(Error::Corrupt {
                    seq,
                    tenant_id: _,
                    reason: _,
                }) => {
                    check.feed(Err(Error::Corrupt {
                        tenant_id: tenant_id.clone(),
                        seq,
                        reason: String::new(),
                    }))?;
                    break 'scan;
                }
                Err(other) => return Err(other),
            };
            let Some(last) = rows.last().map(|stored| stored.seq) else {
                break;
            };
            for stored in rows {
                if !check.feed(Ok(stored))? {
                    break 'scan;
                }
            }
            after_seq = last;
        }
        // Read again after the scan: a live store's head only moves forward meanwhile, so a head
        // still behind the scanned events was rolled back.
        let recorded_after = if recorded.is_some_and(|head| head.seq >= check.verifier.head().seq) {
            recorded
        } else {
            store
                .tenant_heads()
                .await?
                .into_iter()
                .find(|(tenant, _)| *tenant == tenant_id)
                .and_then(|(_, head)| head)
        };
        reports.push(check.finish(tenant_id, recorded, recorded_after));
    }
    Ok(reports)
}

/// Verifies every tenant (or just `only_tenant`) in the SQLite hot store under `data_dir`,
/// reading the file directly (read-only, no lock: a running server may keep writing): each
/// chain, each stored Merkle tile, and each signed checkpoint, whose signature is checked with
/// `checkpoint_key` (a checkpoint is only trusted if it verifies).
pub fn verify_sqlite(
    data_dir: &Path,
    only_tenant: Option<&str>,
    checkpoint_key: &NoteVerifier,
) -> Result<Vec<TenantReport>> {
    verify_sqlite_across_tiers(data_dir, only_tenant, checkpoint_key, &mut NoArchive)
}

/// The archive of a store that never migrated: every event is hot.
struct NoArchive;

impl ArchivedEvents for NoArchive {
    fn feed(&mut self, _tenant_id: &str, _feed: &mut dyn FnMut(StoredEvent) -> bool) {}
}

/// Checks a tenant's hot rows with `seq > after_seq`, continuing `check`.
///
/// Two cores, two stages: this thread steps SQLite and copies each row's bytes into a batch;
/// another hashes and checks chain and tree. Batches are bounded, so memory is.
fn check_hot_rows(
    conn: &Connection,
    tenant_id: &str,
    after_seq: u64,
    check: TenantCheck,
) -> Result<TenantCheck> {
    let mut statement = conn.prepare(&format!(
        "{} ORDER BY seq",
        select_events_sql("tenant_id = ?1 AND seq > ?2")
    ))?;
    let mut rows = statement.query(params![tenant_id, after_seq as i64])?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (batches, received) = std::sync::mpsc::sync_channel::<RowBatch>(VERIFY_BATCHES_IN_FLIGHT);
    std::thread::scope(|scope| -> Result<TenantCheck> {
        let checker = scope.spawn(|| {
            let mut check = check;
            for batch in received {
                if !batch.feed(&mut check, tenant_id) {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    break;
                }
            }
            check
        });
        let mut batch = RowBatch::default();
        while let Some(row) = rows.next()? {
            batch.push(row)?;
            if batch.rows.len() == VERIFY_BATCH_ROWS
                && (stop.load(std::sync::atomic::Ordering::Relaxed)
                    || batches.send(std::mem::take(&mut batch)).is_err())
            {
                break;
            }
        }
        if !batch.rows.is_empty() {
            let _ = batches.send(batch);
        }
        drop(batches);
        Ok(checker.join().expect("the checking thread does not panic"))
    })
}

/// Rows per batch handed from the SQLite thread to the checking thread.
const VERIFY_BATCH_ROWS: usize = 4_096;
/// Batches queued between the two threads.
const VERIFY_BATCHES_IN_FLIGHT: usize = 4;
/// Byte-string columns of an event row, in `select_events_sql` order, and whether each may be
/// NULL: event_id, actor_id, actor_type, action, resource_type, resource_id, outcome,
/// ip_address, user_agent, request_id, changes, metadata.
const TEXT_COLUMNS: [(usize, bool); 12] = [
    (2, false),
    (5, false),
    (6, false),
    (7, false),
    (8, false),
    (9, true),
    (10, false),
    (11, true),
    (12, true),
    (13, true),
    (14, true),
    (15, true),
];
/// Marks a NULL column in [`RowRecord::fields`].
const NULL_FIELD: (u32, u32) = (u32::MAX, 0);

/// One row, its text columns as ranges into the batch's byte buffer.
#[derive(Debug)]
struct RowRecord {
    seq: u64,
    timestamp_ns: i64,
    received_at_ns: i64,
    prev_hash: [u8; 32],
    event_hash: [u8; 32],
    fields: [(u32, u32); 12],
    /// A column had the wrong type or length: the row was edited.
    malformed: bool,
}

/// Rows copied out of SQLite.
#[derive(Debug, Default)]
struct RowBatch {
    bytes: Vec<u8>,
    rows: Vec<RowRecord>,
}

impl RowBatch {
    fn push(&mut self, row: &rusqlite::Row<'_>) -> Result<()> {
        use rusqlite::types::ValueRef;
        let mut malformed = false;
        let mut integer = |index: usize| -> Result<i64> {
            Ok(match row.get_ref(index)? {
                ValueRef::Integer(value) => value,
                _ => {
                    malformed = true;
                    0
                }
            })
        };
        let seq = integer(1)? as u64;
        let timestamp_ns = integer(3)?;
        let received_at_ns = integer(4)?;
        let mut hash = |index: usize| -> Result<[u8; 32]> {
            Ok(match row.get_ref(index)? {
                ValueRef::Blob(bytes) if bytes.len() == 32 => bytes.try_into().expect("32 bytes"),
                _ => {
                    malformed = true;
                    [0; 32]
                }
            })
        };
        let prev_hash = hash(16)?;
        let event_hash = hash(17)?;
        let mut fields = [NULL_FIELD; 12];
        for (slot, (column, nullable)) in fields.iter_mut().zip(TEXT_COLUMNS) {
            match row.get_ref(column)? {
                ValueRef::Text(text) => {
                    *slot = (self.bytes.len() as u32, text.len() as u32);
                    self.bytes.extend_from_slice(text);
                }
                ValueRef::Null if nullable => {}
                _ => malformed = true,
            }
        }
        self.rows.push(RowRecord {
            seq,
            timestamp_ns,
            received_at_ns,
            prev_hash,
            event_hash,
            fields,
            malformed,
        });
        Ok(())
    }

    /// Checks the batch's rows in order; false once a fault is found.
    fn feed(&self, check: &mut TenantCheck, tenant_id: &str) -> bool {
        for record in &self.rows {
            if record.malformed {
                return check
                    .feed(Err(Error::Corrupt {
                        tenant_id: tenant_id.to_owned(),
                        seq: record.seq,
                        reason: "malformed column".into(),
                    }))
                    .unwrap_or(false);
            }
            let field = |position: usize| -> Option<&[u8]> {
                let (start, length) = record.fields[position];
                (start != u32::MAX).then(|| &self.bytes[start as usize..(start + length) as usize])
            };
            let required = |position: usize| field(position).unwrap_or_default();
            let view = EventView {
                event_id: required(0),
                timestamp_ns: record.timestamp_ns,
                tenant_id: tenant_id.as_bytes(),
                actor_id: required(1),
                actor_type: required(2),
                action: required(3),
                resource_type: required(4),
                resource_id: field(5),
                outcome: required(6),
                ip_address: field(7),
                user_agent: field(8),
                request_id: field(9),
                changes: field(10),
                metadata: field(11),
            };
            if !check.feed_view(
                &view,
                record.seq,
                record.received_at_ns,
                record.prev_hash,
                record.event_hash,
            ) {
                return false;
            }
        }
        true
    }
}

/// Loads a tenant's stored tiles and checkpoints, opening each checkpoint with the key, and
/// adds the witness's checkpoints of the tenant.
fn load_merkle(
    conn: &Connection,
    tenant_id: &str,
    checkpoint_key: &NoteVerifier,
    witness: &Witness,
) -> Result<MerkleCheck> {
    let mut tiles = HashMap::new();
    let mut statement =
        conn.prepare("SELECT level, idx, hash FROM merkle_tiles WHERE tenant_id = ?1")?;
    let mut rows = statement.query(params![tenant_id])?;
    while let Some(row) = rows.next()? {
        let hash: Vec<u8> = row.get(2)?;
        tiles.insert(
            (row.get::<_, u8>(0)?, row.get::<_, i64>(1)? as u64),
            hash.try_into().unwrap_or([0; 32]),
        );
    }
    let mut checkpoints = Vec::new();
    let mut statement = conn.prepare(
        "SELECT tree_size, note FROM checkpoints WHERE tenant_id = ?1 ORDER BY tree_size",
    )?;
    let mut rows = statement.query(params![tenant_id])?;
    while let Some(row) = rows.next()? {
        let tree_size = row.get::<_, i64>(0)? as u64;
        let note: String = row.get(1)?;
        checkpoints.push(CheckpointToCheck {
            tree_size,
            opened: open_note(tenant_id, tree_size, &note, checkpoint_key),
            witness: None,
        });
    }
    checkpoints.extend(witness.opened(tenant_id, checkpoint_key));
    Ok(MerkleCheck::new(Some(tiles), checkpoints))
}

/// Every tenant with events or a chain head. A tenant whose rows were all deleted still has a
/// recorded head, so both sources are listed.
pub(crate) fn tenant_heads(conn: &Connection) -> Result<Vec<(String, Option<ChainHead>)>> {
    let tenants: Vec<String> = {
        let mut statement =
            conn.prepare("SELECT tenant_id FROM chain_heads UNION SELECT DISTINCT tenant_id FROM events ORDER BY 1")?;
        let rows = statement.query_map([], |row| row.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut heads = Vec::with_capacity(tenants.len());
    for tenant_id in tenants {
        let head = recorded_head(conn, &tenant_id)?;
        heads.push((tenant_id, head));
    }
    Ok(heads)
}

/// A tenant's recorded chain head, if its row exists.
fn recorded_head(conn: &Connection, tenant_id: &str) -> Result<Option<ChainHead>> {
    Ok(conn
        .query_row(
            "SELECT seq, head_hash FROM chain_heads WHERE tenant_id = ?1",
            [tenant_id],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)),
        )
        .optional()?
        .map(|(seq, hash)| ChainHead {
            seq: seq as u64,
            hash: hash.try_into().unwrap_or([0xff; 32]),
        }))
}

/// Every tenant the store knows in any table: chain heads, events, tiles, checkpoints. A tenant
/// whose events, head and tiles were removed is still named by its checkpoints.
fn stored_tenants(conn: &Connection) -> Result<Vec<String>> {
    let mut statement = conn.prepare(
        "SELECT tenant_id FROM chain_heads UNION SELECT tenant_id FROM events \
         UNION SELECT tenant_id FROM merkle_tiles UNION SELECT tenant_id FROM checkpoints",
    )?;
    let rows = statement.query_map([], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A tenant's events that left the hot tier (the warm and cold tiers of `sealtrail-archive`),
/// fed to the verifier ahead of the hot rows so that one chain is checked across tiers.
pub trait ArchivedEvents {
    /// Calls `feed` with each archived event of `tenant_id`, ascending by `seq`, until it
    /// returns false. An implementation that finds a damaged or missing file MUST stop feeding
    /// there and report the damage its own way: the verifier then names the first `seq` it did
    /// not receive.
    fn feed(&mut self, tenant_id: &str, feed: &mut dyn FnMut(StoredEvent) -> bool);

    /// Every tenant the archive knows (by its files or its deletion records), so that a tenant
    /// absent from the hot store is still verified. The default: none.
    fn tenants(&mut self) -> Vec<String> {
        Vec::new()
    }

    /// Where `tenant_id`'s log starts when its oldest events were deleted under verified,
    /// contiguous signed deletion records: the chain head and Merkle frontier after the last
    /// deleted event. `None` (the default): the log starts at seq 1. An implementation MUST
    /// return `Some` only for records whose signatures it checked.
    fn deleted_prefix(&mut self, _tenant_id: &str) -> Option<(ChainHead, MerkleFrontier)> {
        None
    }
}

/// [`verify_sqlite`] across tiers: each tenant's archived events first, then its hot rows, as
/// one chain, one Merkle tree (checked against the stored tiles and signed checkpoints), and
/// one head. Hot rows whose `seq` the archive already covers are leftovers of an interrupted
/// migration (the archived copy was checked against them before it was recorded); they are
/// skipped here and deleted by the next lifecycle run.
pub fn verify_sqlite_across_tiers(
    data_dir: &Path,
    only_tenant: Option<&str>,
    checkpoint_key: &NoteVerifier,
    archived: &mut dyn ArchivedEvents,
) -> Result<Vec<TenantReport>> {
    verify_sqlite_witnessed(
        data_dir,
        only_tenant,
        checkpoint_key,
        archived,
        &Witness::default(),
    )
}

/// [`verify_sqlite_across_tiers`], also replaying the checkpoints of `witness` (opened with
/// `checkpoint_key`) against each tenant's tree, and verifying every tenant that the store, the
/// archive or the witness knows.
///
/// Each tenant is read in one SQLite read transaction (its head, tiles, checkpoints and hot
/// rows from one snapshot), so a server writing meanwhile cannot make a sound log look broken.
pub fn verify_sqlite_witnessed(
    data_dir: &Path,
    only_tenant: Option<&str>,
    checkpoint_key: &NoteVerifier,
    archived: &mut dyn ArchivedEvents,
    witness: &Witness,
) -> Result<Vec<TenantReport>> {
    let path = data_dir.join(DATABASE_FILE);
    if !path.exists() {
        return Err(Error::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no hot store in this data directory",
            ),
        });
    }
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let known: Vec<String> = if only_tenant.is_some() {
        Vec::new()
    } else {
        let mut known = stored_tenants(&conn)?;
        known.extend(archived.tenants());
        known.extend(witness.tenants().map(str::to_owned));
        known
    };
    let mut reports = Vec::new();
    for tenant_id in select_tenants(known, only_tenant) {
        conn.execute_batch("BEGIN")?;
        let report = verify_sqlite_tenant(&conn, tenant_id, checkpoint_key, archived, witness);
        conn.execute_batch("COMMIT")?;
        reports.push(report?);
    }
    Ok(reports)
}

/// One tenant of [`verify_sqlite_witnessed`], inside a read transaction of `conn`.
fn verify_sqlite_tenant(
    conn: &Connection,
    tenant_id: String,
    checkpoint_key: &NoteVerifier,
    archived: &mut dyn ArchivedEvents,
    witness: &Witness,
) -> Result<TenantReport> {
    // The first read starts the snapshot: every later read of this tenant sees the same state.
    let recorded = recorded_head(conn, &tenant_id)?;
    let mut check = TenantCheck::new(Some(load_merkle(
        conn,
        &tenant_id,
        checkpoint_key,
        witness,
    )?));
    if let Some((head, frontier)) = archived.deleted_prefix(&tenant_id) {
        check.start_after(head, frontier);
    }
    archived.feed(&tenant_id, &mut |stored| {
        matches!(check.feed(Ok(stored)), Ok(true))
    });
    if check.fault.is_none() {
        let archived_through = check.verifier.head().seq;
        check = check_hot_rows(conn, &tenant_id, archived_through, check)?;
    }
    let frontier_fault = match (
        &check.merkle,
        recorded,
        recorded_frontier(conn, &tenant_id)?,
    ) {
        (Some(merkle), Some(head), Some(bytes))
            if check.fault.is_none() && head.seq == check.verifier.head().seq =>
        {
            let matches = decode_frontier(head.seq, &bytes)
                .is_some_and(|stored| stored.root() == merkle.frontier.root());
            (!matches).then_some(TenantFault::FrontierMismatch { seq: head.seq })
        }
        _ => None,
    };
    let mut report = check.finish(tenant_id, recorded, recorded);
    if let (Ok(_), Some(fault)) = (&report.verdict, frontier_fault) {
        report.verdict = Err(fault);
    }
    Ok(report)
}

/// The Merkle frontier stored beside a tenant's head, if the store keeps one (a database
/// written before frontiers were stored has no such column).
fn recorded_frontier(conn: &Connection, tenant_id: &str) -> Result<Option<Vec<u8>>> {
    let Ok(mut statement) = conn.prepare("SELECT frontier FROM chain_heads WHERE tenant_id = ?1")
    else {
        return Ok(None);
    };
    Ok(statement
        .query_row([tenant_id], |row| row.get::<_, Option<Vec<u8>>>(0))
        .optional()?
        .flatten())
}
