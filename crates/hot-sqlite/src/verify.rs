//! The SQLite store as a [`LogSource`]: each tenant is read in one read transaction of its own
//! connection, and its hot rows are stepped on one thread while another hashes and checks them.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use sealtrail_ledger::{ChainHead, EventView, Hash, LogCheck};

use sealtrail_hot::{
    Error as HotError, LogSource, Result as HotResult, StoredCheckpoint, TenantSnapshot,
};

use crate::store::{column_name, decode_head, open_reader, select_events_sql, SqliteStore};
use crate::Result;

#[async_trait]
impl LogSource for SqliteStore {
    async fn known_tenants(&self) -> HotResult<Vec<String>> {
        let path = self.database_path().to_owned();
        blocking(move || {
            let conn = open_reader(&path)?;
            let mut statement = conn.prepare(
                "SELECT tenant_id FROM chain_heads UNION SELECT tenant_id FROM events \
                 UNION SELECT tenant_id FROM merkle_tiles UNION SELECT tenant_id FROM checkpoints",
            )?;
            let rows = statement.query_map([], |row| row.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn snapshot(&self, tenant_id: &str) -> HotResult<Box<dyn TenantSnapshot>> {
        let path = self.database_path().to_owned();
        let conn = blocking(move || {
            let conn = open_reader(&path)?;
            conn.execute_batch("BEGIN")?;
            Ok(conn)
        })
        .await?;
        Ok(Box::new(SqliteSnapshot {
            conn: Some(conn),
            tenant_id: tenant_id.to_owned(),
        }))
    }
}

/// A read transaction on a connection of its own. The first read starts the snapshot: every
/// later read sees the same state.
#[derive(Debug)]
struct SqliteSnapshot {
    /// Taken while a read runs on the blocking pool.
    conn: Option<Connection>,
    tenant_id: String,
}

impl SqliteSnapshot {
    /// Runs `work` on the connection on the blocking thread pool.
    async fn with_conn<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&Connection, &str) -> Result<T> + Send + 'static,
    ) -> HotResult<T> {
        let conn = self
            .conn
            .take()
            .ok_or_else(|| HotError::Task("the snapshot's connection was lost".into()))?;
        let tenant_id = self.tenant_id.clone();
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let result = work(&conn, &tenant_id);
            (conn, result)
        })
        .await
        .map_err(|join| HotError::Task(join.to_string()))?;
        self.conn = Some(conn);
        result.map_err(HotError::from)
    }
}

#[async_trait]
impl TenantSnapshot for SqliteSnapshot {
    async fn head(&mut self) -> HotResult<Option<(ChainHead, Option<Vec<u8>>)>> {
        self.with_conn(|conn, tenant_id| {
            conn.query_row(
                "SELECT seq, head_hash, frontier FROM chain_heads WHERE tenant_id = ?1",
                [tenant_id],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, Vec<u8>>(1)?,
                        row.get::<_, Option<Vec<u8>>>(2)?,
                    ))
                },
            )
            .optional()?
            .map(|(seq, hash, frontier)| Ok((decode_head(tenant_id, seq, hash)?, frontier)))
            .transpose()
        })
        .await
    }

    async fn tree(&mut self) -> HotResult<(HashMap<(u8, u64), Hash>, Vec<StoredCheckpoint>)> {
        self.with_conn(|conn, tenant_id| {
            let mut tiles = HashMap::new();
            let mut statement =
                conn.prepare("SELECT level, idx, hash FROM merkle_tiles WHERE tenant_id = ?1")?;
            let mut rows = statement.query(params![tenant_id])?;
            while let Some(row) = rows.next()? {
                let (level, index) = (row.get::<_, u8>(0)?, row.get::<_, i64>(1)? as u64);
                let hash: Vec<u8> = row.get(2)?;
                let hash = hash.try_into().map_err(|_| HotError::Corrupt {
                    tenant_id: tenant_id.to_owned(),
                    seq: (index + 1) << level,
                    reason: format!(
                        "Merkle tile level {level} index {index}: hash is not 32 bytes"
                    ),
                })?;
                tiles.insert((level, index), hash);
            }
            let mut checkpoints = Vec::new();
            let mut statement = conn.prepare(
                "SELECT tree_size, note, root_hash, created_at_ns FROM checkpoints \
                 WHERE tenant_id = ?1 ORDER BY tree_size",
            )?;
            let mut rows = statement.query(params![tenant_id])?;
            while let Some(row) = rows.next()? {
                let tree_size = row.get::<_, i64>(0)? as u64;
                let root_hash: Vec<u8> = row.get(2)?;
                checkpoints.push(StoredCheckpoint {
                    tree_size,
                    note: row.get(1)?,
                    // The note is what is checked; a damaged copy of its root is reported.
                    root_hash: root_hash.try_into().map_err(|_| HotError::Corrupt {
                        tenant_id: tenant_id.to_owned(),
                        seq: tree_size,
                        reason: "checkpoint root_hash is not 32 bytes".into(),
                    })?,
                    created_at_ns: row.get(3)?,
                });
            }
            Ok((tiles, checkpoints))
        })
        .await
    }

    async fn check_rows(&mut self, after_seq: u64, check: LogCheck) -> HotResult<LogCheck> {
        self.with_conn(move |conn, tenant_id| check_rows(conn, tenant_id, after_seq, check))
            .await
    }

    async fn close(mut self: Box<Self>) -> HotResult<()> {
        self.with_conn(|conn, _| Ok(conn.execute_batch("COMMIT")?))
            .await
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> HotResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| HotError::Task(join.to_string()))?
        .map_err(HotError::from)
}

/// Checks a tenant's hot rows with `seq > after_seq`, continuing `check`.
///
/// Two cores, two stages: this thread steps SQLite and copies each row's bytes into a batch;
/// another hashes and checks chain and tree. Batches are bounded, so memory is.
fn check_rows(
    conn: &Connection,
    tenant_id: &str,
    after_seq: u64,
    mut check: LogCheck,
) -> Result<LogCheck> {
    let mut statement = conn.prepare(&format!(
        "{} ORDER BY seq",
        select_events_sql("tenant_id = ?1 AND seq > ?2")
    ))?;
    let mut rows = statement.query(params![tenant_id, after_seq as i64])?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (batches, received) = std::sync::mpsc::sync_channel::<RowBatch>(VERIFY_BATCHES_IN_FLIGHT);
    std::thread::scope(|scope| -> Result<LogCheck> {
        let checker = scope.spawn(|| {
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
    /// The position (in `select_events_sql` order) of the first column with the wrong type or
    /// length: the row was edited.
    malformed: Option<usize>,
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
        let mut malformed = None;
        let mut integer = |index: usize| -> Result<i64> {
            Ok(match row.get_ref(index)? {
                ValueRef::Integer(value) => value,
                _ => {
                    malformed = malformed.or(Some(index));
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
                    malformed = malformed.or(Some(index));
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
                _ => malformed = malformed.or(Some(column)),
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
    fn feed(&self, check: &mut LogCheck, tenant_id: &str) -> bool {
        for record in &self.rows {
            if let Some(position) = record.malformed {
                return check.feed_undecodable(
                    record.seq,
                    &format!("column {}", column_name(position)),
                    "wrong type or length",
                );
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
                &record.prev_hash,
                &record.event_hash,
            ) {
                return false;
            }
        }
        true
    }
}
