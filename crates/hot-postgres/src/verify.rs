//! The PostgreSQL store as a [`LogSource`]: each tenant is read in one `REPEATABLE READ`
//! read-only transaction, so its head, frontier, tiles, checkpoints and rows are one snapshot
//! however many nodes keep writing.

use std::collections::HashMap;

use async_trait::async_trait;
use deadpool_postgres::Object;
use sealtrail_hot::{LogSource, StoredCheckpoint, TenantSnapshot};
use sealtrail_ledger::{ChainHead, Hash, LogCheck};

use crate::schema::ALL_TENANTS;
use crate::store::{
    corrupt, decode_head, stored_event_from_row, Access, PostgresStore, SCAN_EVENTS, SET_SCOPE,
};

/// Rows read per round trip while checking a tenant.
const VERIFY_SCAN_ROWS: i64 = 10_000;

#[async_trait]
impl LogSource for PostgresStore {
    async fn known_tenants(&self) -> sealtrail_hot::Result<Vec<String>> {
        let rows = self
            .scoped_statement(
                ALL_TENANTS,
                Access::Read,
                "SELECT tenant_id FROM chain_heads UNION SELECT DISTINCT tenant_id FROM events \
                 UNION SELECT tenant_id FROM merkle_tiles UNION SELECT tenant_id FROM checkpoints",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(|source| self.db(source)))
            .collect()
    }

    async fn snapshot(&self, tenant_id: &str) -> sealtrail_hot::Result<Box<dyn TenantSnapshot>> {
        let client = self.client().await?;
        let snapshot = PostgresSnapshot {
            client: Some(client),
            store: self.clone(),
            tenant_id: tenant_id.to_owned(),
        };
        let client = snapshot.client()?;
        client
            // The archive is read while the snapshot stays open, which may take longer than the
            // idle-in-transaction bound every session carries; this transaction only reads.
            .batch_execute(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
                 SET LOCAL idle_in_transaction_session_timeout = 0",
            )
            .await
            .map_err(|source| self.db(source))?;
        let set_scope = client
            .prepare_cached(SET_SCOPE)
            .await
            .map_err(|source| self.db(source))?;
        client
            .execute(&set_scope, &[&tenant_id])
            .await
            .map_err(|source| self.db(source))?;
        Ok(Box::new(snapshot))
    }
}

/// A read-only repeatable-read transaction on a pooled connection. Dropped without
/// [`close`](TenantSnapshot::close), the connection is taken out of the pool and closed, so no
/// other caller ever borrows it mid-transaction.
#[derive(Debug)]
struct PostgresSnapshot {
    client: Option<Object>,
    store: PostgresStore,
    tenant_id: String,
}

impl PostgresSnapshot {
    fn client(&self) -> sealtrail_hot::Result<&Object> {
        self.client
            .as_ref()
            .ok_or_else(|| sealtrail_hot::Error::Task("the snapshot is closed".into()))
    }

    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> sealtrail_hot::Result<Vec<tokio_postgres::Row>> {
        let client = self.client()?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|source| self.store.db(source))?;
        client
            .query(&statement, params)
            .await
            .map_err(|source| self.store.db(source))
    }
}

impl Drop for PostgresSnapshot {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

#[async_trait]
impl TenantSnapshot for PostgresSnapshot {
    async fn head(&mut self) -> sealtrail_hot::Result<Option<(ChainHead, Option<Vec<u8>>)>> {
        let tenant_id = self.tenant_id.clone();
        let rows = self
            .rows(
                "SELECT seq, head_hash, frontier FROM chain_heads WHERE tenant_id = $1",
                &[&tenant_id],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let seq: i64 = row.try_get(0).map_err(|source| self.store.db(source))?;
        let hash: Vec<u8> = row.try_get(1).map_err(|source| self.store.db(source))?;
        let frontier: Option<Vec<u8>> = row.try_get(2).map_err(|source| self.store.db(source))?;
        let head = decode_head(&tenant_id, seq, hash)?;
        // A head created for a tenant that gained nothing has an empty frontier: none to check.
        let frontier = frontier.filter(|bytes| !(head.seq == 0 && bytes.is_empty()));
        Ok(Some((head, frontier)))
    }

    async fn tree(
        &mut self,
    ) -> sealtrail_hot::Result<(HashMap<(u8, u64), Hash>, Vec<StoredCheckpoint>)> {
        let tenant_id = self.tenant_id.clone();
        let db = |source| self.store.db(source);
        let mut tiles = HashMap::new();
        for row in self
            .rows(
                "SELECT level, idx, hash FROM merkle_tiles WHERE tenant_id = $1",
                &[&tenant_id],
            )
            .await?
        {
            let level: i16 = row.try_get(0).map_err(db)?;
            let index: i64 = row.try_get(1).map_err(db)?;
            let hash: Vec<u8> = row.try_get(2).map_err(db)?;
            let (Ok(level), Ok(index)) = (u8::try_from(level), u64::try_from(index)) else {
                return Err(corrupt(
                    &tenant_id,
                    0,
                    &format!("Merkle tile level {level} index {index} is out of range"),
                ));
            };
            let hash = hash.try_into().map_err(|_| {
                corrupt(
                    &tenant_id,
                    (index + 1) << level,
                    &format!("Merkle tile level {level} index {index}: hash is not 32 bytes"),
                )
            })?;
            tiles.insert((level, index), hash);
        }
        let mut checkpoints = Vec::new();
        for row in self
            .rows(
                "SELECT tree_size, root_hash, note, created_at_ns FROM checkpoints \
                 WHERE tenant_id = $1 ORDER BY tree_size",
                &[&tenant_id],
            )
            .await?
        {
            let tree_size: i64 = row.try_get(0).map_err(db)?;
            let root_hash: Vec<u8> = row.try_get(1).map_err(db)?;
            let tree_size = u64::try_from(tree_size)
                .map_err(|_| corrupt(&tenant_id, 0, "a checkpoint's tree size is negative"))?;
            checkpoints.push(StoredCheckpoint {
                tree_size,
                root_hash: root_hash.try_into().map_err(|_| {
                    corrupt(
                        &tenant_id,
                        tree_size,
                        "checkpoint root_hash is not 32 bytes",
                    )
                })?,
                note: row.try_get(2).map_err(db)?,
                created_at_ns: row.try_get(3).map_err(db)?,
            });
        }
        Ok((tiles, checkpoints))
    }

    async fn check_rows(
        &mut self,
        after_seq: u64,
        mut check: LogCheck,
    ) -> sealtrail_hot::Result<LogCheck> {
        let tenant_id = self.tenant_id.clone();
        let mut after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        loop {
            let rows = self
                .rows(&SCAN_EVENTS, &[&tenant_id, &after, &VERIFY_SCAN_ROWS])
                .await?;
            let Some(last) = rows.last() else {
                return Ok(check);
            };
            after = last.try_get(1).map_err(|source| self.store.db(source))?;
            for row in &rows {
                let fed = match stored_event_from_row(row) {
                    Ok(stored) => check.feed(&stored),
                    Err(sealtrail_hot::Error::Corrupt { seq, reason, .. }) => {
                        check.feed_undecodable(seq, "event row", &reason)
                    }
                    Err(other) => return Err(other),
                };
                if !fed {
                    return Ok(check);
                }
            }
        }
    }

    async fn close(mut self: Box<Self>) -> sealtrail_hot::Result<()> {
        let client = self.client()?;
        client
            .batch_execute("COMMIT")
            .await
            .map_err(|source| self.store.db(source))?;
        // Committed: the connection goes back to the pool.
        self.client = None;
        Ok(())
    }
}

/// The advisory lock key of the lifecycle lease (an arbitrary constant: "sealtrail" in ASCII,
/// truncated to 8 bytes).
const LIFECYCLE_LOCK_KEY: i64 = 0x7365_616c_7472_6169;

impl PostgresStore {
    /// The lifecycle lease on PostgreSQL: a session-level advisory lock on a connection kept
    /// for the pass. If the node dies, its session ends and the lock with it.
    pub(crate) async fn take_lifecycle_lease(
        &self,
    ) -> sealtrail_hot::Result<Option<sealtrail_hot::LifecycleLease>> {
        let client = self.client().await?;
        let granted: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LIFECYCLE_LOCK_KEY])
            .await
            .map_err(|source| self.db(source))?
            .get(0);
        if !granted {
            return Ok(None);
        }
        Ok(Some(sealtrail_hot::LifecycleLease::held_by(Box::new(
            AdvisoryLease {
                client: Some(client),
                store: self.clone(),
            },
        ))))
    }
}

/// A held advisory lock. Dropped without release, its connection is closed (not pooled), which
/// ends the session and so the lock.
#[derive(Debug)]
struct AdvisoryLease {
    client: Option<Object>,
    store: PostgresStore,
}

impl Drop for AdvisoryLease {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

#[async_trait]
impl sealtrail_hot::LeaseHolder for AdvisoryLease {
    async fn release(mut self: Box<Self>) -> sealtrail_hot::Result<()> {
        let Some(client) = self.client.as_ref() else {
            return Ok(());
        };
        client
            .query_one("SELECT pg_advisory_unlock($1)", &[&LIFECYCLE_LOCK_KEY])
            .await
            .map_err(|source| self.store.db(source))?;
        // Unlocked: the connection may serve others again.
        self.client = None;
        Ok(())
    }
}
