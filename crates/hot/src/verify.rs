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
    // One thread uses this connection: SQLite's per-call mutex would cost a sixth of the time.
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mut reports = Vec::new();
    for (tenant_id, recorded) in select_tenants(tenant_heads(&conn)?, only_tenant) {
        let mut check = TenantCheck::new();
        check.merkle = Some(load_merkle(&conn, &tenant_id, checkpoint_key)?);
        let mut statement = conn.prepare(&format!(
            "{} ORDER BY seq",
            select_events_sql("tenant_id = ?1")
        ))?;
        let mut rows = statement.query([&tenant_id])?;
        while let Some(row) = rows.next()? {
            // Zero-copy: the row's text is hashed where SQLite holds it (about 3x faster than
            // decoding every row into owned strings).
            let checked = match row_view(row) {
                Ok(Some((view, seq, received_at_ns, prev_hash, event_hash))) => {
                    check.feed_view(&view, seq, received_at_ns, prev_hash, event_hash)
                }
                Ok(None) => {
                    let seq = row.get::<_, i64>(1)? as u64;
                    check.feed(Err(Error::Corrupt {
                        tenant_id: tenant_id.clone(),
                        seq,
                        reason: "malformed column".into(),
                    }))?
                }
                Err(error) => return Err(error),
            };
            if !checked {
                break;
            }
        }
        reports.push(check.finish(tenant_id, recorded));
    }
    Ok(reports)
}

/// The fields of a row selected with `select_events_sql`, borrowed. `Ok(None)` when a column
/// has the wrong type or length (the row was edited).
#[allow(clippy::type_complexity)]
fn row_view<'row>(
    row: &'row rusqlite::Row<'_>,
) -> Result<Option<(EventView<'row>, u64, i64, [u8; 32], [u8; 32])>> {
    use rusqlite::types::ValueRef;
    let text = |index: usize| -> Result<Option<&'row str>> {
        Ok(match row.get_ref(index)? {
            ValueRef::Text(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        })
    };
    let optional = |index: usize| -> Result<Option<Option<&'row str>>> {
        Ok(match row.get_ref(index)? {
            ValueRef::Null => Some(None),
            ValueRef::Text(bytes) => std::str::from_utf8(bytes).ok().map(Some),
            _ => None,
        })
    };
    let hash = |index: usize| -> Result<Option<[u8; 32]>> {
        Ok(match row.get_ref(index)? {
            ValueRef::Blob(bytes) => bytes.try_into().ok(),
            _ => None,
        })
    };
    let integer = |index: usize| -> Result<Option<i64>> {
        Ok(match row.get_ref(index)? {
            ValueRef::Integer(value) => Some(value),
            _ => None,
        })
    };
    let (
        Some(tenant_id),
        Some(seq),
        Some(event_id),
        Some(timestamp_ns),
        Some(received_at_ns),
        Some(actor_id),
        Some(actor_type),
        Some(action),
        Some(resource_type),
        Some(resource_id),
        Some(outcome),
        Some(ip_address),
        Some(user_agent),
        Some(request_id),
        Some(changes),
        Some(metadata),
        Some(prev_hash),
        Some(event_hash),
    ) = (
        text(0)?,
        integer(1)?,
        text(2)?,
        integer(3)?,
        integer(4)?,
        text(5)?,
        text(6)?,
        text(7)?,
        text(8)?,
        optional(9)?,
        text(10)?,
        optional(11)?,
        optional(12)?,
        optional(13)?,
        optional(14)?,
        optional(15)?,
        hash(16)?,
        hash(17)?,
    )
    else {
        return Ok(None);
    };
    let view = EventView {
        event_id,
        timestamp_ns,
        tenant_id,
        actor_id,
        actor_type,
        action,
        resource_type,
        resource_id,
        outcome,
        ip_address,
        user_agent,
        request_id,
        changes,
        metadata,
    };
    Ok(Some((
        view,
        seq as u64,
        received_at_ns,
        prev_hash,
        event_hash,
    )))
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
