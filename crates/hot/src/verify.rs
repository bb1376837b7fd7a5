//! Verification of the hot tier: re-checks every tenant's chain from the stored rows, trusting
//! nothing but the ledger's rules. [`verify_sqlite`] reads a data directory offline, with no
//! server running; [`verify_store`] checks any [`HotStore`] backend through the trait.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use sealtrail_ledger::{
    open_checkpoint, tenant_origin, ChainFault, ChainHead, ChainVerifier, Checkpoint, EventView,
    MerkleFrontier, NoteVerifier, TILE_HEIGHT,
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
    pub verdict: std::result::Result<ChainHead, ChainFault>,
}

/// The stored Merkle data of one tenant, checked against the tree rebuilt from its events.
struct MerkleCheck {
    frontier: MerkleFrontier,
    tiles: HashMap<(u8, u64), [u8; 32]>,
    /// Signed checkpoints, ascending by tree size, already opened (or the reason they failed).
    checkpoints: Vec<(u64, Result<Checkpoint, String>)>,
    next_checkpoint: usize,
}

impl MerkleCheck {
    /// Adds the next leaf; returns the first disagreement with a stored tile or checkpoint.
    fn append(&mut self, seq: u64, event_hash: [u8; 32]) -> Option<ChainFault> {
        let mut fault = None;
        let tiles = &self.tiles;
        self.frontier.append_with(event_hash, |subtree| {
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
        });
        if fault.is_some() {
            return fault;
        }
        while let Some((tree_size, opened)) = self.checkpoints.get(self.next_checkpoint) {
            if *tree_size != seq {
                break;
            }
            self.next_checkpoint += 1;
            match opened {
                Err(reason) => {
                    return Some(ChainFault::CheckpointInvalid {
                        seq,
                        reason: reason.clone(),
                    })
                }
                Ok(checkpoint) if checkpoint.root_hash != self.frontier.root() => {
                    return Some(ChainFault::CheckpointMismatch { seq })
                }
                Ok(_) => {}
            }
        }
        None
    }

    /// A checkpoint beyond the last event means events were removed from the end.
    fn finish(&self, last_seq: u64) -> Option<ChainFault> {
        self.checkpoints
            .get(self.next_checkpoint)
            .map(|(tree_size, _)| ChainFault::CheckpointBeyondLog {
                seq: last_seq + 1,
                tree_size: *tree_size,
                found: last_seq,
            })
    }
}

/// Feeds one tenant's events, in `seq` order, through the chain rules (and, when the store's
/// Merkle data is at hand, the tree rules).
struct TenantCheck {
    verifier: ChainVerifier,
    merkle: Option<MerkleCheck>,
    events_checked: u64,
    fault: Option<ChainFault>,
}

impl TenantCheck {
    fn new() -> Self {
        TenantCheck {
            verifier: ChainVerifier::new(),
            merkle: None,
            events_checked: 0,
            fault: None,
        }
    }

    /// Continues after a deleted prefix ending at `head`, whose tree is `frontier`. Checkpoints
    /// inside the prefix can no longer be checked against events; one at its exact size is
    /// checked against the frontier's root.
    fn start_after(&mut self, head: ChainHead, frontier: MerkleFrontier) {
        self.verifier = ChainVerifier::continuing(head);
        if let Some(merkle) = self.merkle.as_mut() {
            while let Some((tree_size, opened)) = merkle.checkpoints.get(merkle.next_checkpoint) {
                if *tree_size > head.seq {
                    break;
                }
                merkle.next_checkpoint += 1;
                if *tree_size == head.seq {
                    let fault = match opened {
                        Err(reason) => Some(ChainFault::CheckpointInvalid {
                            seq: head.seq,
                            reason: reason.clone(),
                        }),
                        Ok(checkpoint) if checkpoint.root_hash != frontier.root() => {
                            Some(ChainFault::CheckpointMismatch { seq: head.seq })
                        }
                        Ok(_) => None,
                    };
                    if fault.is_some() && self.fault.is_none() {
                        self.fault = fault;
                    }
                }
            }
            merkle.frontier = frontier;
        }
    }

    /// Checks the next event (or a row that failed to decode); returns false once a fault is
    /// found, since every later link depends on this one.
    fn feed(&mut self, row: Result<StoredEvent>) -> Result<bool> {
        let checked = match row {
            Ok(stored) => self.verifier.check(&stored).and_then(|()| {
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
            Err(Error::Corrupt { seq, .. }) => Err(ChainFault::ContentChanged { seq }),
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
        let mut checked =
            self.verifier
                .check_view(view, seq, received_at_ns, &prev_hash, &event_hash);
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

    fn finish(self, tenant_id: String, recorded: Option<ChainHead>) -> TenantReport {
        let last_seq = self.verifier.head().seq;
        let verdict = match self.fault {
            Some(fault) => Err(fault),
            None => match self
                .merkle
                .as_ref()
                .and_then(|merkle| merkle.finish(last_seq))
            {
                Some(fault) => Err(fault),
                None => self.verifier.finish(recorded),
            },
        };
        TenantReport {
            tenant_id,
            events_checked: self.events_checked,
            verdict,
        }
    }
}

fn select_tenants(
    mut tenants: Vec<(String, Option<ChainHead>)>,
    only_tenant: Option<&str>,
) -> Vec<(String, Option<ChainHead>)> {
    if let Some(only) = only_tenant {
        tenants.retain(|(tenant, _)| tenant == only);
        if tenants.is_empty() {
            tenants.push((only.to_owned(), None));
        }
    }
    tenants
}

/// Verifies every tenant (or just `only_tenant`) of any hot store.
pub async fn verify_store(
    store: &dyn HotStore,
    only_tenant: Option<&str>,
) -> Result<Vec<TenantReport>> {
    let mut reports = Vec::new();
    for (tenant_id, recorded) in select_tenants(store.tenant_heads().await?, only_tenant) {
        let mut check = TenantCheck::new();
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
        reports.push(check.finish(tenant_id, recorded));
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

/// Loads a tenant's stored tiles and checkpoints, opening each checkpoint with the key.
fn load_merkle(
    conn: &Connection,
    tenant_id: &str,
    checkpoint_key: &NoteVerifier,
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
    let origin = tenant_origin(tenant_id);
    while let Some(row) = rows.next()? {
        let tree_size = row.get::<_, i64>(0)? as u64;
        let note: String = row.get(1)?;
        let opened = open_checkpoint(&note, std::slice::from_ref(checkpoint_key), &origin)
            .map_err(|error| error.to_string())
            .and_then(|checkpoint| {
                if checkpoint.tree_size == tree_size {
                    Ok(checkpoint)
                } else {
                    Err(format!("its body says tree size {}", checkpoint.tree_size))
                }
            });
        checkpoints.push((tree_size, opened));
    }
    Ok(MerkleCheck {
        frontier: MerkleFrontier::new(),
        tiles,
        checkpoints,
        next_checkpoint: 0,
    })
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
        let head = conn
            .query_row(
                "SELECT seq, head_hash FROM chain_heads WHERE tenant_id = ?1",
                [&tenant_id],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)),
            )
            .optional()?
            .map(|(seq, hash)| ChainHead {
                seq: seq as u64,
                hash: hash.try_into().unwrap_or([0xff; 32]),
            });
        heads.push((tenant_id, head));
    }
    Ok(heads)
}

/// A tenant's events that left the hot tier (the warm and cold tiers of `sealtrail-archive`),
/// fed to the verifier ahead of the hot rows so that one chain is checked across tiers.
pub trait ArchivedEvents {
    /// Calls `feed` with each archived event of `tenant_id`, ascending by `seq`, until it
    /// returns false. An implementation that finds a damaged or missing file MUST stop feeding
    /// there and report the damage its own way: the verifier then names the first `seq` it did
    /// not receive.
    fn feed(&mut self, tenant_id: &str, feed: &mut dyn FnMut(StoredEvent) -> bool);

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
    let mut reports = Vec::new();
    for (tenant_id, recorded) in select_tenants(tenant_heads(&conn)?, only_tenant) {
        let mut check = TenantCheck::new();
        check.merkle = Some(load_merkle(&conn, &tenant_id, checkpoint_key)?);
        if let Some((head, frontier)) = archived.deleted_prefix(&tenant_id) {
            check.start_after(head, frontier);
        }
        archived.feed(&tenant_id, &mut |stored| {
            matches!(check.feed(Ok(stored)), Ok(true))
        });
        if check.fault.is_none() {
            let archived_through = check.verifier.head().seq;
            check = check_hot_rows(&conn, &tenant_id, archived_through, check)?;
        }
        reports.push(check.finish(tenant_id, recorded));
    }
    Ok(reports)
}
