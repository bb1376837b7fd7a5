//! The embedded hot tier: one SQLite database in WAL mode in the data directory.
//!
//! One writer connection appends (the ingest pipeline calls [`HotStore::append`] from a single
//! task, so it is never contended); a small pool of read connections serves queries concurrently
//! with writes, which WAL allows. Commits use `synchronous=FULL`, so a commit has been fsynced to
//! the WAL before `append` returns.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use sealtrail_ledger::{
    decode_frontier, encode_frontier, partial_blocks, rebuild_frontier, ChainHead, Hash,
    MerkleFrontier, TILE_WIDTH,
};
use sealtrail_model::limits::{
    HOT_READ_CONNECTIONS_MAX, SECURE_DELETE_WAL_ATTEMPTS, WAL_BYTES_SOFT_MAX,
    WAL_CHECKPOINT_INTERVAL_MILLIS, WAL_TRUNCATE_WAIT_MILLIS,
};
use sealtrail_model::{Actor, ActorType, Event, EventReceipt, Outcome, StoredEvent};

use sealtrail_hot::plan::{group_digests, group_tenants, plan_group, NewRow, StoredKeys};
use sealtrail_hot::{
    assemble_tenant_months, rank_top, ActorDayFilter, ActorDayKey, ApiKeyRecord, AppendOutcome,
    AppendRequest, CheckpointStore, DirectoryStore, Error as HotError, EventQuery, EventStore,
    ExistingEvent, KeyScope, LifecycleStore, Order, Result as HotResult, Revisions, Role,
    SamplingCount, SamplingKey, SamplingStore, SamplingTally, SettingsStore, StoredCheckpoint,
    SummaryStore, SummaryTally, TenantDay, TenantMonth, TreeStore, REVISION_SCOPE_ACTORS,
};

use crate::Result;

/// File name of the database inside the data directory.
pub(crate) const DATABASE_FILE: &str = "hot.sqlite3";
/// Lock file that keeps a second server off the same data directory.
const LOCK_FILE: &str = "sealtrail.lock";

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE events (
    tenant_id      TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    event_id       TEXT    NOT NULL,
    timestamp_ns   INTEGER NOT NULL,
    received_at_ns INTEGER NOT NULL,
    actor_id       TEXT    NOT NULL,
    actor_type     TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    resource_type  TEXT    NOT NULL,
    resource_id    TEXT,
    outcome        TEXT    NOT NULL,
    ip_address     TEXT,
    user_agent     TEXT,
    request_id     TEXT,
    changes        TEXT,
    metadata       TEXT,
    prev_hash      BLOB    NOT NULL,
    event_hash     BLOB    NOT NULL,
    content_digest BLOB    NOT NULL
);
CREATE UNIQUE INDEX events_tenant_seq ON events (tenant_id, seq);
CREATE UNIQUE INDEX events_tenant_event_id ON events (tenant_id, event_id);

CREATE TABLE chain_heads (
    tenant_id TEXT PRIMARY KEY,
    seq       INTEGER NOT NULL,
    head_hash BLOB    NOT NULL
) WITHOUT ROWID;
CREATE TABLE api_keys (
    key_id        TEXT PRIMARY KEY,
    tenant_id     TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    secret_hash   BLOB    NOT NULL,
    created_at_ns INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE merkle_tiles (
    tenant_id TEXT    NOT NULL,
    level     INTEGER NOT NULL,
    idx       INTEGER NOT NULL,
    hash      BLOB    NOT NULL,
    PRIMARY KEY (tenant_id, level, idx)
) WITHOUT ROWID;
CREATE TABLE checkpoints (
    tenant_id     TEXT    NOT NULL,
    tree_size     INTEGER NOT NULL,
    root_hash     BLOB    NOT NULL,
    note          TEXT    NOT NULL,
    created_at_ns INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, tree_size)
) WITHOUT ROWID;
"#,
    // The tree's compact range beside its head (one hash per set bit of `seq`, largest subtree
    // first), so completing a tile never reads leaves back: they may have left for the archive.
    // NULL in rows written before this migration; rebuilt from stored nodes on first use.
    r#"
ALTER TABLE chain_heads ADD COLUMN frontier BLOB;
"#,
    // Idempotency outlives the hot tier: the keys of events moved to the archive stay here, so
    // a retry (or an import rerun) of an archived event gets its stored receipt instead of a
    // second copy. Written by `delete_events_through` in the transaction that deletes the rows.
    r#"
CREATE TABLE archived_event_ids (
    tenant_id      TEXT    NOT NULL,
    event_id       TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    timestamp_ns   INTEGER NOT NULL,
    event_hash     BLOB    NOT NULL,
    content_digest BLOB    NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
) WITHOUT ROWID;
"#,
    // Keys may expire, and are revoked by `DELETE /v1/keys/{key_id}` (NULL: never / not).
    r#"
ALTER TABLE api_keys ADD COLUMN expires_at_ns INTEGER;
ALTER TABLE api_keys ADD COLUMN revoked_at_ns INTEGER;
"#,
    // Sampling statistics, added to in the group commit of the events they count; `stated_*`
    // is what the tenant's latest sampling statement said. `seen` moves whenever `kept` does,
    // so the partial index finds exactly the statistics a statement has yet to state.
    r#"
CREATE TABLE sampling_counts (
    tenant_id   TEXT    NOT NULL,
    day         TEXT    NOT NULL,
    class       INTEGER NOT NULL,
    action      TEXT    NOT NULL,
    kept        INTEGER NOT NULL,
    seen        INTEGER NOT NULL,
    stated_kept INTEGER NOT NULL DEFAULT 0,
    stated_seen INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, class, action)
) WITHOUT ROWID;
CREATE INDEX sampling_counts_unstated ON sampling_counts (tenant_id, day, class, action)
    WHERE seen != stated_seen;
"#,
    // Summaries kept as events arrive (added to in the group commit): per day, actor, action and
    // resource type; and stored events per resource and month, for the top resources. Events
    // still in the hot tier are counted in at this migration.
    r#"
CREATE TABLE summary_actor_day (
    tenant_id     TEXT    NOT NULL,
    day           TEXT    NOT NULL,
    actor_id      TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    resource_type TEXT    NOT NULL,
    kept          INTEGER NOT NULL,
    sampled_out   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day, actor_id, action, resource_type)
) WITHOUT ROWID;
CREATE TABLE summary_resource_month (
    tenant_id     TEXT    NOT NULL,
    month         TEXT    NOT NULL,
    resource_type TEXT    NOT NULL,
    resource_id   TEXT    NOT NULL,
    kept          INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, month, resource_type, resource_id)
) WITHOUT ROWID;
INSERT INTO summary_actor_day
    SELECT tenant_id, strftime('%Y-%m-%d', timestamp_ns / 1000000000, 'unixepoch'), actor_id, action,
           resource_type, count(*), 0
    FROM events GROUP BY 1, 2, 3, 4, 5;
INSERT INTO summary_resource_month
    SELECT tenant_id, strftime('%Y-%m', timestamp_ns / 1000000000, 'unixepoch'), resource_type,
           resource_id, count(*)
    FROM events WHERE resource_id IS NOT NULL GROUP BY 1, 2, 3, 4;
"#,
    // Each tenant's actor directory (`PUT /v1/tenants/{t}/actors`).
    r#"
CREATE TABLE actors (
    tenant_id     TEXT    NOT NULL,
    actor_id      TEXT    NOT NULL,
    display_name  TEXT,
    department    TEXT,
    team          TEXT,
    attributes    TEXT,
    PRIMARY KEY (tenant_id, actor_id)
) WITHOUT ROWID;
"#,
    // Each tenant's revisions by scope (a month, or the directory), moved in the transaction of
    // every change to what a read of the scope answers: the stamp of the query result cache.
    r#"
CREATE TABLE summary_revisions (
    tenant_id TEXT    NOT NULL,
    scope     TEXT    NOT NULL,
    revision  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, scope)
) WITHOUT ROWID;
-- The days whose events retention deleted: their summaries stay, marked.
CREATE TABLE summary_deleted_days (
    tenant_id TEXT NOT NULL,
    day       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, day)
) WITHOUT ROWID;
-- Month rollups, added to in the group commit beside the actor days, so a month report reads a
-- row per action, a row per actor and the top of an index instead of every actor day.
CREATE TABLE summary_month_action (
    tenant_id   TEXT    NOT NULL,
    month       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    kept        INTEGER NOT NULL,
    sampled_out INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, month, action)
) WITHOUT ROWID;
CREATE TABLE summary_month_actor (
    tenant_id TEXT NOT NULL,
    month     TEXT NOT NULL,
    actor_id  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, month, actor_id)
) WITHOUT ROWID;
-- Only resources with two or more events: the long tail of resources seen once (most of them,
-- in most months) costs the index nothing, and ranks after every indexed one.
CREATE INDEX summary_resource_month_top
    ON summary_resource_month (tenant_id, month, kept DESC, resource_type, resource_id)
    WHERE kept >= 2;
INSERT INTO summary_month_action
    SELECT tenant_id, substr(day, 1, 7), action, sum(kept), sum(sampled_out)
    FROM summary_actor_day GROUP BY 1, 2, 3;
INSERT INTO summary_month_actor
    SELECT DISTINCT tenant_id, substr(day, 1, 7), actor_id FROM summary_actor_day WHERE kept > 0;
"#,
    // The scope of a `self` or `team_admin` key (JSON, `sealtrail_hot::KeyScope`).
    r#"
ALTER TABLE api_keys ADD COLUMN scope TEXT;
"#,
    // A team_admin scope reads its teams' members through this index.
    r#"
CREATE INDEX actors_team ON actors (tenant_id, team, actor_id);
"#,
    // Stored events whose outcome is `failure`, beside `kept`: a chart of failed logins reads
    // summaries. Events still in the hot tier are counted in at this migration (as when the
    // summaries began): failures archived before it are not.
    r#"
ALTER TABLE summary_actor_day ADD COLUMN failed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE summary_month_action ADD COLUMN failed INTEGER NOT NULL DEFAULT 0;
UPDATE summary_actor_day SET failed = f.n
FROM (SELECT tenant_id, strftime('%Y-%m-%d', timestamp_ns / 1000000000, 'unixepoch') AS day,
             actor_id, action, resource_type, count(*) AS n
      FROM events WHERE outcome = 'failure' GROUP BY 1, 2, 3, 4, 5) AS f
WHERE summary_actor_day.tenant_id = f.tenant_id AND summary_actor_day.day = f.day
  AND summary_actor_day.actor_id = f.actor_id AND summary_actor_day.action = f.action
  AND summary_actor_day.resource_type = f.resource_type;
UPDATE summary_month_action SET failed = f.n
FROM (SELECT tenant_id, substr(day, 1, 7) AS month, action, sum(failed) AS n
      FROM summary_actor_day GROUP BY 1, 2, 3) AS f
WHERE summary_month_action.tenant_id = f.tenant_id AND summary_month_action.month = f.month
  AND summary_month_action.action = f.action;
"#,
];

const BUMP_REVISION: &str =
    "INSERT INTO summary_revisions (tenant_id, scope, revision) VALUES (?1, ?2, 1) \
     ON CONFLICT (tenant_id, scope) DO UPDATE SET revision = revision + 1";

const EVENT_COLUMNS: &str = "tenant_id, seq, event_id, timestamp_ns, received_at_ns, actor_id, actor_type, action, \
     resource_type, resource_id, outcome, ip_address, user_agent, request_id, changes, metadata, prev_hash, event_hash";

const INSERT_EVENT: &str = "INSERT INTO events (tenant_id, seq, event_id, timestamp_ns, received_at_ns, actor_id, \
     actor_type, action, resource_type, resource_id, outcome, ip_address, user_agent, request_id, changes, metadata, \
     prev_hash, event_hash, content_digest) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
     ?16, ?17, ?18, ?19) ON CONFLICT (tenant_id, event_id) DO NOTHING";

/// The SQLite hot store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    writer: Mutex<Writer>,
    readers: Mutex<Vec<Connection>>,
    /// Held for the life of a writable store: the OS releases it if the process dies.
    _lock: Option<File>,
    /// Dropping this stops the checkpoint thread (a writable store's only).
    _checkpointer: Option<std::sync::mpsc::Sender<()>>,
}

#[derive(Debug)]
struct Writer {
    conn: Connection,
    /// Cached chain heads. This process is the only writer (the lock file guarantees it), so the
    /// cache is exact; it is dropped whenever a transaction fails.
    heads: HashMap<String, ChainHead>,
    /// Cached Merkle frontiers, at the size of the cached head; dropped with the heads.
    frontiers: HashMap<String, MerkleFrontier>,
    /// The WAL beside the database, whose size the writer keeps under [`WAL_BYTES_SOFT_MAX`].
    wal_path: PathBuf,
    /// Whether the next group reads its stored keys before inserting (see [`Writer::append`]).
    read_keys_first: bool,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, runs migrations and takes the
    /// directory lock.
    pub fn open(data_dir: &Path) -> HotResult<Self> {
        Ok(Self::open_writable(data_dir)?)
    }

    fn open_writable(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|source| HotError::Io {
            path: data_dir.display().to_string(),
            source,
        })?;
        let lock_path = data_dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| HotError::Io {
                path: lock_path.display().to_string(),
                source,
            })?;
        if lock.try_lock().is_err() {
            return Err(HotError::Locked {
                path: data_dir.display().to_string(),
            }
            .into());
        }
        let path = data_dir.join(DATABASE_FILE);
        let mut conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "cache_size", -131_072)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // Checkpointing copies WAL pages into the database file. Done by the writer it would
        // stall every ~1000th commit; a background connection does it instead (PASSIVE never
        // blocks the writer or readers).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // After a checkpoint lets the WAL restart, cut the file back to this size.
        conn.pragma_update(None, "journal_size_limit", WAL_BYTES_SOFT_MAX as i64)?;
        // How long the writer waits for readers when it truncates the WAL (`bound_wal`).
        conn.busy_timeout(std::time::Duration::from_millis(WAL_TRUNCATE_WAIT_MILLIS))?;
        migrate(&mut conn)?;
        // Start with an empty WAL: a previous run's (however large) is folded in and truncated.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        let checkpointer = start_checkpointer(&path)?;
        Ok(Self::assemble(path, conn, Some(lock), Some(checkpointer)))
    }

    /// Opens an existing store for reading only, beside a running server (no lock, no
    /// migration, no WAL checkpoints): for offline exports such as `sealtrail bundle`. Every
    /// write fails.
    pub fn open_read_only(data_dir: &Path) -> HotResult<Self> {
        Ok(Self::open_reading(data_dir)?)
    }

    fn open_reading(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join(DATABASE_FILE);
        if !path.exists() {
            return Err(HotError::Io {
                path: path.display().to_string(),
                source: std::io::ErrorKind::NotFound.into(),
            }
            .into());
        }
        let conn = open_reader(&path)?;
        Ok(Self::assemble(path, conn, None, None))
    }

    /// The store over an opened database: `conn` is the writer connection (read-only for
    /// [`open_read_only`](Self::open_read_only), which holds no lock and runs no checkpoints).
    fn assemble(
        path: PathBuf,
        conn: Connection,
        lock: Option<File>,
        checkpointer: Option<std::sync::mpsc::Sender<()>>,
    ) -> Self {
        SqliteStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(Writer {
                    conn,
                    heads: HashMap::new(),
                    frontiers: HashMap::new(),
                    wal_path: wal_path(&path),
                    read_keys_first: false,
                }),
                path,
                readers: Mutex::new(Vec::new()),
                _lock: lock,
                _checkpointer: checkpointer,
            }),
        }
    }

    /// The database file.
    pub(crate) fn database_path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `work` on a pooled read connection on the blocking thread pool.
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> HotResult<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner
                .readers
                .lock()
                .expect("reader pool lock poisoned")
                .pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&inner.path)?,
            };
            let result = work(&conn);
            let mut pool = inner.readers.lock().expect("reader pool lock poisoned");
            if pool.len() < HOT_READ_CONNECTIONS_MAX {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|join| HotError::Task(join.to_string()))?
        .map_err(HotError::from)
    }

    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Writer) -> Result<T> + Send + 'static,
    ) -> HotResult<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut writer = inner.writer.lock().expect("writer lock poisoned");
            work(&mut writer)
        })
        .await
        .map_err(|join| HotError::Task(join.to_string()))?
        .map_err(HotError::from)
    }
}

/// Starts the thread that checkpoints the WAL every [`WAL_CHECKPOINT_INTERVAL_MILLIS`] until
/// the returned sender is dropped. PASSIVE never blocks the writer or readers, but under
/// sustained commits it cannot restart the WAL; the writer itself truncates it once it passes
/// [`WAL_BYTES_SOFT_MAX`] ([`Writer::bound_wal`]).
fn start_checkpointer(path: &Path) -> Result<std::sync::mpsc::Sender<()>> {
    let conn = Connection::open(path)?;
    // No busy handler (rusqlite's default waits 5 s): a checkpoint that meets a writer gives up
    // and is tried again next interval, never holding ingest up.
    conn.busy_timeout(std::time::Duration::ZERO)?;
    let database = path.to_owned();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            let interval = std::time::Duration::from_millis(WAL_CHECKPOINT_INTERVAL_MILLIS);
            let wal = wal_path(&database);
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(interval)
            {
                // Past the bound, the writer truncates after its next commit; but if that
                // attempt met a reader (this checkpoint, say) and no commit follows, only this
                // thread is left to do it. Without a busy handler TRUNCATE gives up at once
                // while a writer is active, so it never holds one up for long.
                let wal_bytes = std::fs::metadata(&wal).map_or(0, |meta| meta.len());
                let mode = match wal_bytes > WAL_BYTES_SOFT_MAX {
                    true => "TRUNCATE",
                    false => "PASSIVE",
                };
                let pragma = format!("PRAGMA wal_checkpoint({mode})");
                if let Err(error) = conn.query_row(&pragma, [], |_| Ok(())) {
                    tracing::warn!(%error, mode, "WAL checkpoint failed; retrying");
                }
            }
        })
        .map_err(|source| HotError::Io {
            path: path.display().to_string(),
            source,
        })?;
    Ok(stop)
}

/// The WAL file beside a database file.
pub(crate) fn wal_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

pub(crate) fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "cache_size", -32_768)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let applied: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    for (number, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", number + 1)?;
        tx.commit()?;
    }
    Ok(())
}

impl Writer {
    fn head(&mut self, tenant_id: &str) -> Result<ChainHead> {
        if let Some(head) = self.heads.get(tenant_id) {
            return Ok(*head);
        }
        let head = self
            .conn
            .query_row(
                "SELECT seq, head_hash FROM chain_heads WHERE tenant_id = ?1",
                [tenant_id],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)),
            )
            .optional()?
            .map(|(seq, hash)| decode_head(tenant_id, seq, hash))
            .transpose()?
            .unwrap_or_default();
        self.heads.insert(tenant_id.to_owned(), head);
        Ok(head)
    }

    /// The tenant's Merkle frontier at its committed head: cached, else stored beside the head,
    /// else rebuilt from the stored nodes of the partly filled blocks (rows written before
    /// frontiers were stored). Call only outside a group's changes to that tenant, or before them.
    fn frontier(&mut self, tenant_id: &str) -> Result<MerkleFrontier> {
        if let Some(frontier) = self.frontiers.get(tenant_id) {
            return Ok(frontier.clone());
        }
        let stored = self
            .conn
            .query_row(
                "SELECT seq, frontier FROM chain_heads WHERE tenant_id = ?1",
                [tenant_id],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Option<Vec<u8>>>(1)?)),
            )
            .optional()?;
        let frontier = match stored {
            None => MerkleFrontier::new(),
            Some((seq, Some(bytes))) => {
                decode_frontier(seq as u64, &bytes).ok_or_else(|| HotError::Corrupt {
                    tenant_id: tenant_id.to_owned(),
                    seq: seq as u64,
                    reason: "the stored Merkle frontier does not match the tree size".into(),
                })?
            }
            Some((seq, None)) => rebuild_stored_frontier(&self.conn, tenant_id, seq as u64)?,
        };
        self.frontiers
            .insert(tenant_id.to_owned(), frontier.clone());
        Ok(frontier)
    }

    /// Writes the tenant's frontier beside its head if the row has none yet.
    fn store_frontier(&mut self, tenant_id: &str) -> Result<()> {
        let frontier = self.frontier(tenant_id)?;
        if frontier.tree_size() == 0 {
            return Ok(());
        }
        self.conn.execute(
            "UPDATE chain_heads SET frontier = ?2 WHERE tenant_id = ?1 AND frontier IS NULL",
            params![tenant_id, encode_frontier(&frontier)],
        )?;
        Ok(())
    }

    /// After a commit: once the WAL has grown past [`WAL_BYTES_SOFT_MAX`], copies it into the
    /// database and truncates it. Done by the writer between its own transactions, the only
    /// moment no write can be in progress, so it cannot be starved the way a background
    /// checkpoint is under sustained commits; it waits at most [`WAL_TRUNCATE_WAIT_MILLIS`] for
    /// readers of older snapshots. The commit is durable already: a failure here is only logged.
    fn bound_wal(&self) {
        let wal_bytes = std::fs::metadata(&self.wal_path).map_or(0, |meta| meta.len());
        if wal_bytes <= WAL_BYTES_SOFT_MAX {
            return;
        }
        let truncated = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                row.get::<_, i64>(0)
            });
        match truncated {
            Ok(0) => {}
            Ok(_) => tracing::warn!(wal_bytes, "readers kept the WAL from being truncated"),
            Err(error) => tracing::warn!(%error, wal_bytes, "WAL truncation failed"),
        }
    }

    /// Commits a group as the shared planner decides ([`plan_group`]). Optimistic first, as in
    /// the PostgreSQL store: in the common case every event is new and the `event_id` unique
    /// index proves it while inserting; when an insert meets a stored key, the group is rolled
    /// back and planned again with every stored key read first. After a group that met stored
    /// keys (a spool replay, a burst of retries), the next one reads them first straight away.
    fn append(&mut self, batch: &[AppendRequest]) -> Result<Vec<AppendOutcome>> {
        let digests = group_digests(batch);
        let attempt = match self.attempt(batch, &digests, self.read_keys_first)? {
            Some(done) => done,
            None => self
                .attempt(batch, &digests, true)?
                .expect("with every stored key read first, no insert meets one"),
        };
        let (outcomes, met_stored_keys) = attempt;
        self.read_keys_first = met_stored_keys;
        Ok(outcomes)
    }

    /// One transaction for a group: its outcomes and whether it met stored keys, or `None`
    /// (rolled back, nothing written) when `read_keys_first` was false and an event was stored.
    fn attempt(
        &mut self,
        batch: &[AppendRequest],
        digests: &[Vec<[u8; 32]>],
        read_keys_first: bool,
    ) -> Result<Option<(Vec<AppendOutcome>, bool)>> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        match self.write_group(batch, digests, read_keys_first) {
            Ok(Some(done)) => match self.conn.execute_batch("COMMIT") {
                Ok(()) => {
                    self.bound_wal();
                    Ok(Some(done))
                }
                Err(error) => {
                    self.abort();
                    Err(error.into())
                }
            },
            Ok(None) => {
                self.abort();
                Ok(None)
            }
            Err(error) => {
                self.abort();
                Err(error)
            }
        }
    }

    fn abort(&mut self) {
        // The cached heads and frontiers may describe rows that were never committed.
        self.heads.clear();
        self.frontiers.clear();
        if let Err(error) = self.conn.execute_batch("ROLLBACK") {
            tracing::warn!(%error, "rollback after a failed append also failed");
        }
    }

    /// Reads what the plan needs, plans, and writes what it says, inside the open transaction.
    fn write_group(
        &mut self,
        batch: &[AppendRequest],
        digests: &[Vec<[u8; 32]>],
        read_keys_first: bool,
    ) -> Result<Option<(Vec<AppendOutcome>, bool)>> {
        let mut heads = BTreeMap::new();
        for tenant in group_tenants(batch) {
            heads.insert(tenant.to_owned(), self.head(tenant)?);
        }
        let stored = self.stored_keys(batch, read_keys_first)?;
        let plan = plan_group(batch, digests, heads, &stored);
        let mut frontiers = HashMap::new();
        for tenant in plan.new_leaves().into_keys() {
            frontiers.insert(tenant.to_owned(), self.frontier(tenant)?);
        }
        let trees = plan.grow_trees(frontiers)?;
        for row in &plan.rows {
            if !insert_event(&self.conn, row)? {
                return Ok(None);
            }
        }
        let mut insert_tile = self.conn.prepare_cached(
            "INSERT INTO merkle_tiles (tenant_id, level, idx, hash) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (tenant_id, tile) in &trees.tiles {
            insert_tile.execute(params![
                tenant_id,
                tile.level,
                tile.index as i64,
                &tile.hash[..]
            ])?;
        }
        let mut update_head = self.conn.prepare_cached(
            "INSERT INTO chain_heads (tenant_id, seq, head_hash, frontier) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, head_hash = excluded.head_hash, \
             frontier = excluded.frontier",
        )?;
        // Only grown tenants: one whose requests all conflicted keeps its head (or none).
        for (tenant_id, frontier) in &trees.frontiers {
            let head = plan.heads[tenant_id];
            update_head.execute(params![
                tenant_id,
                head.seq as i64,
                &head.hash[..],
                encode_frontier(frontier)
            ])?;
        }
        let mut count = self.conn.prepare_cached(
            "INSERT INTO sampling_counts (tenant_id, day, class, action, kept, seen) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (tenant_id, day, class, action) \
             DO UPDATE SET kept = kept + excluded.kept, seen = seen + excluded.seen",
        )?;
        for (key, tally) in &plan.sampling {
            count.execute(params![
                key.tenant_id,
                key.day,
                key.class,
                key.action,
                tally.kept as i64,
                tally.seen as i64
            ])?;
        }
        let mut add_actor_day = self.conn.prepare_cached(
            "INSERT INTO summary_actor_day (tenant_id, day, actor_id, action, resource_type, kept, \
             sampled_out, failed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (tenant_id, day, actor_id, action, resource_type) \
             DO UPDATE SET kept = kept + excluded.kept, sampled_out = sampled_out + excluded.sampled_out, \
             failed = failed + excluded.failed",
        )?;
        for (key, tally) in &plan.actor_days {
            add_actor_day.execute(params![
                key.tenant_id,
                key.day,
                key.actor_id,
                key.action,
                key.resource_type,
                tally.kept as i64,
                tally.sampled_out as i64,
                tally.failed as i64
            ])?;
        }
        let mut add_resource_month = self.conn.prepare_cached(
            "INSERT INTO summary_resource_month (tenant_id, month, resource_type, resource_id, kept) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (tenant_id, month, resource_type, resource_id) \
             DO UPDATE SET kept = kept + excluded.kept",
        )?;
        for (key, kept) in &plan.resource_months {
            add_resource_month.execute(params![
                key.tenant_id,
                key.month,
                key.resource_type,
                key.resource_id,
                *kept as i64
            ])?;
        }
        let mut add_month_action = self.conn.prepare_cached(
            "INSERT INTO summary_month_action (tenant_id, month, action, kept, sampled_out, failed) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (tenant_id, month, action) \
             DO UPDATE SET kept = kept + excluded.kept, sampled_out = sampled_out + excluded.sampled_out, \
             failed = failed + excluded.failed",
        )?;
        for ((tenant_id, month, action), tally) in plan.month_actions() {
            add_month_action.execute(params![
                tenant_id,
                month,
                action,
                tally.kept as i64,
                tally.sampled_out as i64,
                tally.failed as i64
            ])?;
        }
        let mut add_month_actor = self.conn.prepare_cached(
            "INSERT INTO summary_month_actor (tenant_id, month, actor_id) VALUES (?1, ?2, ?3) \
             ON CONFLICT DO NOTHING",
        )?;
        for (tenant_id, month, actor_id) in plan.month_actors() {
            add_month_actor.execute(params![tenant_id, month, actor_id])?;
        }
        let mut bump = self.conn.prepare_cached(BUMP_REVISION)?;
        for (tenant_id, month) in plan.changed_months() {
            bump.execute(params![tenant_id, month])?;
        }
        drop((
            insert_tile,
            update_head,
            count,
            add_actor_day,
            add_resource_month,
            add_month_action,
            add_month_actor,
            bump,
        ));
        // The caches follow the writes; `abort` drops them if the commit then fails.
        self.heads.extend(plan.heads);
        self.frontiers.extend(trees.frontiers);
        Ok(Some((plan.outcomes, !stored.is_empty())))
    }

    /// The stored keys of the group's events that the plan must see. Keys of archived events
    /// are always read: no unique index spans `events` and `archived_event_ids`, so an insert
    /// would not meet them. Keys still in `events` only when `hot_too`.
    fn stored_keys(&self, batch: &[AppendRequest], hot_too: bool) -> Result<StoredKeys> {
        let mut stored = StoredKeys::new();
        for pending in batch.iter().flatten() {
            let (tenant_id, event_id) = (&pending.event.tenant_id, &pending.event.event_id);
            let found = if hot_too {
                existing_event(&self.conn, tenant_id, event_id)?
            } else {
                archived_event(&self.conn, tenant_id, event_id)?
            };
            if let Some(found) = found {
                stored
                    .entry(tenant_id.clone())
                    .or_default()
                    .insert(event_id.clone(), found);
            }
        }
        Ok(stored)
    }
}

/// Every tenant with events or a chain head. A tenant whose rows were all deleted still has a
/// recorded head, so both sources are listed.
fn tenant_heads(conn: &Connection) -> Result<Vec<(String, Option<ChainHead>)>> {
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
            .map(|(seq, hash)| decode_head(&tenant_id, seq, hash))
            .transpose()?;
        heads.push((tenant_id, head));
    }
    Ok(heads)
}

/// A stored chain head; a hash that is not 32 bytes is corruption, never a default.
pub(crate) fn decode_head(tenant_id: &str, seq: i64, hash: Vec<u8>) -> Result<ChainHead> {
    Ok(ChainHead {
        seq: seq as u64,
        hash: hash.try_into().map_err(|_| HotError::Corrupt {
            tenant_id: tenant_id.to_owned(),
            seq: seq as u64,
            reason: "the chain head's hash is not 32 bytes".into(),
        })?,
    })
}

/// Rebuilds a tenant's frontier at `tree_size` from the stored nodes of its partly filled
/// blocks (for heads stored before frontiers were). Fails, naming the level, when some of those
/// nodes are gone: leaves archived by a version that did not keep the frontier first.
fn rebuild_stored_frontier(
    conn: &Connection,
    tenant_id: &str,
    tree_size: u64,
) -> Result<MerkleFrontier> {
    let mut nodes: HashMap<u8, Vec<Hash>> = HashMap::new();
    for block in partial_blocks(tree_size) {
        let stored = read_block(conn, tenant_id, block.level, block.first / TILE_WIDTH)?;
        nodes.insert(block.level, stored);
    }
    Ok(rebuild_frontier(tree_size, |level| nodes.get(&level).cloned().unwrap_or_default()).map_err(
        |missing| HotError::Corrupt {
            tenant_id: tenant_id.to_owned(),
            seq: tree_size,
            reason: format!(
                "the Merkle frontier must be rebuilt, but level {} holds {} of the {} stored nodes it needs",
                missing.level, missing.found, missing.expected
            ),
        },
    )?)
}

/// Block `block` of a stored Merkle level: up to 256 consecutive stored nodes. Level 0 is the
/// leaf hashes, which are the events' `event_hash` (leaf index = seq - 1).
pub(crate) fn read_block(
    conn: &Connection,
    tenant_id: &str,
    level: u8,
    block: u64,
) -> Result<Vec<[u8; 32]>> {
    let first = block * TILE_WIDTH;
    let mut statement = if level == 0 {
        conn.prepare_cached(
            "SELECT event_hash FROM events WHERE tenant_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq",
        )?
    } else {
        conn.prepare_cached(
            "SELECT hash FROM merkle_tiles WHERE tenant_id = ?1 AND level = ?4 AND idx >= ?2 AND idx < ?3 ORDER BY idx",
        )?
    };
    let mut rows = if level == 0 {
        statement.query(params![
            tenant_id,
            first as i64,
            (first + TILE_WIDTH) as i64
        ])?
    } else {
        statement.query(params![
            tenant_id,
            first as i64,
            (first + TILE_WIDTH) as i64,
            level
        ])?
    };
    let mut hashes = Vec::with_capacity(TILE_WIDTH as usize);
    while let Some(row) = rows.next()? {
        let bytes: Vec<u8> = row.get(0)?;
        hashes.push(bytes.try_into().map_err(|_| HotError::Corrupt {
            tenant_id: tenant_id.to_owned(),
            seq: first + hashes.len() as u64 + 1,
            reason: "stored hash is not 32 bytes".into(),
        })?);
    }
    Ok(hashes)
}

/// Inserts one planned event; returns false, writing nothing, when its `event_id` is stored.
fn insert_event(conn: &Connection, row: &NewRow<'_>) -> Result<bool> {
    let (pending, link) = (row.pending, &row.link);
    let event = &pending.event;
    let mut insert = conn.prepare_cached(INSERT_EVENT)?;
    let changed = insert.execute(params![
        event.tenant_id,
        link.seq as i64,
        event.event_id,
        event.timestamp_ns,
        pending.received_at_ns,
        event.actor_id,
        event.actor_type.as_str(),
        event.action,
        event.resource_type,
        event.resource_id,
        event.outcome.as_str(),
        event.ip_address,
        event.user_agent,
        event.request_id,
        event.changes,
        event.metadata,
        &link.prev_hash[..],
        &link.event_hash[..],
        &row.content_digest[..],
    ]);
    match changed {
        Ok(changed) => Ok(changed == 1),
        // The only other unique key is `(tenant_id, seq)`: the recorded head is behind the
        // stored log. That is this tenant's corruption, not a store failure.
        Err(rusqlite::Error::SqliteFailure(failure, _))
            if failure.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(HotError::Corrupt {
                tenant_id: event.tenant_id.clone(),
                seq: link.seq,
                reason: "an event is already stored at this seq: the chain head is behind the log"
                    .into(),
            }
            .into())
        }
        Err(error) => Err(error.into()),
    }
}

fn existing_event(
    conn: &Connection,
    tenant_id: &str,
    event_id: &str,
) -> Result<Option<ExistingEvent>> {
    match stored_key(conn, "events", tenant_id, event_id)? {
        Some(hot) => Ok(Some(hot)),
        None => archived_event(conn, tenant_id, event_id),
    }
}

/// The key of an event that moved to the archive, if `event_id` is one.
fn archived_event(
    conn: &Connection,
    tenant_id: &str,
    event_id: &str,
) -> Result<Option<ExistingEvent>> {
    stored_key(conn, "archived_event_ids", tenant_id, event_id)
}

/// An idempotency key as `table` (`events` or `archived_event_ids`) stores it.
fn stored_key(
    conn: &Connection,
    table: &str,
    tenant_id: &str,
    event_id: &str,
) -> Result<Option<ExistingEvent>> {
    let mut select = conn.prepare_cached(&format!(
        "SELECT content_digest, timestamp_ns, seq, event_hash FROM {table} \
         WHERE tenant_id = ?1 AND event_id = ?2"
    ))?;
    let found = select
        .query_row([tenant_id, event_id], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, Vec<u8>>(3)?,
            ))
        })
        .optional()?;
    let Some((digest, timestamp_ns, seq, hash)) = found else {
        return Ok(None);
    };
    let corrupt = |what: &str| HotError::Corrupt {
        tenant_id: tenant_id.to_owned(),
        seq: seq as u64,
        reason: format!("the stored {what} is not 32 bytes"),
    };
    Ok(Some(ExistingEvent {
        content_digest: digest.try_into().map_err(|_| corrupt("content digest"))?,
        timestamp_ns,
        receipt: EventReceipt {
            event_id: event_id.to_owned(),
            tenant_id: tenant_id.to_owned(),
            seq: seq as u64,
            event_hash: hash.try_into().map_err(|_| corrupt("event_hash"))?,
        },
    }))
}

/// Reads a row selected with [`EVENT_COLUMNS`]. A row that cannot be decoded is reported as
/// corrupt rather than skipped, because skipping would hide tampering.
pub(crate) fn stored_event_from_row(row: &Row<'_>) -> Result<StoredEvent> {
    let tenant_id: String = row.get(0)?;
    let seq = row.get::<_, i64>(1)? as u64;
    let corrupt = |reason: &str| HotError::Corrupt {
        tenant_id: tenant_id.clone(),
        seq,
        reason: reason.to_owned(),
    };
    let actor_type: String = row.get(6)?;
    let outcome: String = row.get(10)?;
    let prev_hash: Vec<u8> = row.get(16)?;
    let event_hash: Vec<u8> = row.get(17)?;
    let event = Event {
        event_id: row.get(2)?,
        timestamp_ns: row.get(3)?,
        tenant_id: tenant_id.clone(),
        actor_id: row.get(5)?,
        actor_type: ActorType::parse(&actor_type).ok_or_else(|| corrupt("unknown actor_type"))?,
        action: row.get(7)?,
        resource_type: row.get(8)?,
        resource_id: row.get(9)?,
        outcome: Outcome::parse(&outcome).ok_or_else(|| corrupt("unknown outcome"))?,
        ip_address: row.get(11)?,
        user_agent: row.get(12)?,
        request_id: row.get(13)?,
        changes: row.get(14)?,
        metadata: row.get(15)?,
    };
    Ok(StoredEvent {
        event,
        seq,
        received_at_ns: row.get(4)?,
        prev_hash: prev_hash
            .try_into()
            .map_err(|_| corrupt("prev_hash is not 32 bytes"))?,
        event_hash: event_hash
            .try_into()
            .map_err(|_| corrupt("event_hash is not 32 bytes"))?,
    })
}

/// The name of the column at `position` in [`EVENT_COLUMNS`] order, for reports.
pub(crate) fn column_name(position: usize) -> &'static str {
    EVENT_COLUMNS.split(", ").nth(position).unwrap_or("?")
}

pub(crate) fn select_events_sql(filter: &str) -> String {
    format!("SELECT {EVENT_COLUMNS} FROM events WHERE {filter}")
}

fn run_query(conn: &Connection, query: &EventQuery) -> Result<Vec<StoredEvent>> {
    let mut conditions = vec!["tenant_id = ?".to_owned()];
    let mut values: Vec<rusqlite::types::Value> = vec![query.tenant_id.clone().into()];
    for (column, value) in query.exact_filters() {
        if let Some(value) = value {
            conditions.push(format!("{column} = ?"));
            values.push(value.to_owned().into());
        }
    }
    for (column, matched) in query.protected_filters() {
        if let Some(matched) = matched {
            values.push(matched.plaintext.clone().into());
            match matched.envelope_pattern() {
                Some(pattern) => {
                    conditions.push(format!("({column} = ? OR {column} LIKE ?)"));
                    values.push(pattern.into());
                }
                None => conditions.push(format!("{column} = ?")),
            }
        }
    }
    if let Some(actors) = &query.actor_in {
        // One parameter whatever the scope's size, so the statement cache keeps one plan.
        conditions.push("actor_id IN (SELECT value FROM json_each(?))".to_owned());
        values.push(serde_json::to_string(actors).unwrap_or_default().into());
    }
    if let Some(from_ns) = query.from_ns {
        conditions.push("timestamp_ns >= ?".to_owned());
        values.push(from_ns.into());
    }
    if let Some(to_ns) = query.to_ns {
        conditions.push("timestamp_ns < ?".to_owned());
        values.push(to_ns.into());
    }
    let direction = match query.order {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    };
    if let Some(after_seq) = query.after_seq {
        conditions.push(match query.order {
            Order::Asc => "seq > ?".to_owned(),
            Order::Desc => "seq < ?".to_owned(),
        });
        values.push((after_seq as i64).into());
    }
    values.push((query.limit as i64).into());
    let sql = format!(
        "{} ORDER BY seq {direction} LIMIT ?",
        select_events_sql(&conditions.join(" AND "))
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let mut rows = statement.query(rusqlite::params_from_iter(values))?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        events.push(stored_event_from_row(row)?);
    }
    Ok(events)
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(&self, batch: Arc<Vec<AppendRequest>>) -> HotResult<Vec<AppendOutcome>> {
        self.write(move |writer| writer.append(&batch)).await
    }

    async fn existing(
        &self,
        tenant_id: &str,
        event_ids: Vec<String>,
    ) -> HotResult<Vec<ExistingEvent>> {
        let tenant_id = tenant_id.to_owned();
        self.read(move |conn| {
            let mut found = Vec::new();
            for event_id in event_ids {
                if let Some(existing) = existing_event(conn, &tenant_id, &event_id)? {
                    found.push(existing);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn get_event(&self, tenant_id: &str, event_id: &str) -> HotResult<Option<StoredEvent>> {
        let (tenant_id, event_id) = (tenant_id.to_owned(), event_id.to_owned());
        self.read(move |conn| {
            let mut statement =
                conn.prepare_cached(&select_events_sql("tenant_id = ?1 AND event_id = ?2"))?;
            let mut rows = statement.query([tenant_id, event_id])?;
            match rows.next()? {
                Some(row) => Ok(Some(stored_event_from_row(row)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn query(&self, query: EventQuery) -> HotResult<Vec<StoredEvent>> {
        self.read(move |conn| run_query(conn, &query)).await
    }

    async fn tenant_heads(&self) -> HotResult<Vec<(String, Option<ChainHead>)>> {
        self.read(tenant_heads).await
    }

    async fn scan_events(
        &self,
        tenant_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> HotResult<Vec<StoredEvent>> {
        let tenant_id = tenant_id.to_owned();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "{} ORDER BY seq LIMIT ?3",
                select_events_sql("tenant_id = ?1 AND seq > ?2")
            ))?;
            let mut rows = statement.query(params![tenant_id, after_seq as i64, limit as i64])?;
            let mut events = Vec::new();
            while let Some(row) = rows.next()? {
                events.push(stored_event_from_row(row)?);
            }
            Ok(events)
        })
        .await
    }

    async fn chain_heads(&self) -> HotResult<Vec<(String, ChainHead)>> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT tenant_id, seq, head_hash FROM chain_heads ORDER BY tenant_id",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                ))
            })?;
            let mut heads = Vec::new();
            for row in rows {
                let (tenant_id, seq, hash) = row?;
                let head = decode_head(&tenant_id, seq, hash)?;
                heads.push((tenant_id, head));
            }
            Ok(heads)
        })
        .await
    }
}

#[async_trait]
impl TreeStore for SqliteStore {
    async fn merkle_block(
        &self,
        tenant_id: &str,
        level: u8,
        block: u64,
    ) -> HotResult<Vec<[u8; 32]>> {
        let tenant_id = tenant_id.to_owned();
        self.read(move |conn| read_block(conn, &tenant_id, level, block))
            .await
    }

    async fn heads_without_frontier(&self) -> HotResult<Vec<(String, u64)>> {
        self.read(|conn| {
            let mut statement = conn.prepare(
                "SELECT tenant_id, seq FROM chain_heads WHERE frontier IS NULL AND seq > 0 \
                 ORDER BY tenant_id",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn restore_frontier(&self, tenant_id: &str, frontier: MerkleFrontier) -> HotResult<()> {
        let tenant_id = tenant_id.to_owned();
        self.write(move |writer| {
            writer.conn.execute(
                "UPDATE chain_heads SET frontier = ?3 \
                 WHERE tenant_id = ?1 AND seq = ?2 AND frontier IS NULL",
                params![
                    tenant_id,
                    frontier.tree_size() as i64,
                    encode_frontier(&frontier)
                ],
            )?;
            // The cache is rebuilt from the stored row on next use.
            writer.frontiers.remove(&tenant_id);
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl CheckpointStore for SqliteStore {
    async fn insert_checkpoint(
        &self,
        tenant_id: &str,
        checkpoint: StoredCheckpoint,
    ) -> HotResult<bool> {
        let tenant_id = tenant_id.to_owned();
        self.write(move |writer| {
            let changed = writer.conn.execute(
                "INSERT INTO checkpoints (tenant_id, tree_size, root_hash, note, created_at_ns) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (tenant_id, tree_size) DO NOTHING",
                params![
                    tenant_id,
                    checkpoint.tree_size as i64,
                    &checkpoint.root_hash[..],
                    checkpoint.note,
                    checkpoint.created_at_ns
                ],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn first_checkpoint_covering(
        &self,
        tenant_id: &str,
        min_tree_size: u64,
    ) -> HotResult<Option<StoredCheckpoint>> {
        let tenant_id = tenant_id.to_owned();
        self.read(move |conn| {
            let sql = "SELECT tenant_id, tree_size, root_hash, note, created_at_ns FROM checkpoints WHERE tenant_id = ?1 \
                       AND tree_size >= ?2 ORDER BY tree_size LIMIT 1";
            read_checkpoint(conn, sql, params![tenant_id, min_tree_size as i64])
        })
        .await
    }

    async fn checkpoint(
        &self,
        tenant_id: &str,
        tree_size: Option<u64>,
    ) -> HotResult<Option<StoredCheckpoint>> {
        let tenant_id = tenant_id.to_owned();
        self.read(move |conn| {
            let sql = "SELECT tenant_id, tree_size, root_hash, note, created_at_ns FROM checkpoints WHERE tenant_id = ?1 \
                       AND (?2 IS NULL OR tree_size = ?2) ORDER BY tree_size DESC LIMIT 1";
            read_checkpoint(conn, sql, params![tenant_id, tree_size.map(|size| size as i64)])
        })
        .await
    }
}

#[async_trait]
impl SettingsStore for SqliteStore {
    async fn insert_api_key(&self, key: ApiKeyRecord) -> HotResult<()> {
        self.write(move |writer| {
            writer.conn.execute(
                "INSERT INTO api_keys (key_id, tenant_id, role, secret_hash, created_at_ns, expires_at_ns, revoked_at_ns, scope) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    key.key_id,
                    key.tenant_id,
                    key.role.as_str(),
                    &key.secret_hash[..],
                    key.created_at_ns,
                    key.expires_at_ns,
                    key.revoked_at_ns,
                    key.scope.as_ref().map(KeyScope::to_text)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn find_api_key(&self, key_id: &str) -> HotResult<Option<ApiKeyRecord>> {
        let key_id = key_id.to_owned();
        self.read(move |conn| {
            let found = conn
                .query_row(
                    "SELECT tenant_id, role, secret_hash, created_at_ns, expires_at_ns, revoked_at_ns, scope \
                     FROM api_keys WHERE key_id = ?1",
                    [&key_id],
                    |row| {
                        Ok((
                            (
                                row.get::<_, String>(0)?,
                                row.get::<_, String>(1)?,
                                row.get::<_, Vec<u8>>(2)?,
                            ),
                            (
                                row.get::<_, i64>(3)?,
                                row.get::<_, Option<i64>>(4)?,
                                row.get::<_, Option<i64>>(5)?,
                                row.get::<_, Option<String>>(6)?,
                            ),
                        ))
                    },
                )
                .optional()?;
            Ok(found.and_then(
                |(
                    (tenant_id, role, secret_hash),
                    (created_at_ns, expires_at_ns, revoked_at_ns, scope),
                )| {
                    // A scope that does not decode makes the key unusable, never wider.
                    let scope = match scope {
                        Some(text) => Some(KeyScope::from_text(&text)?),
                        None => None,
                    };
                    Some(ApiKeyRecord {
                        key_id: key_id.clone(),
                        tenant_id,
                        role: Role::parse(&role)?,
                        secret_hash: secret_hash.try_into().ok()?,
                        created_at_ns,
                        expires_at_ns,
                        revoked_at_ns,
                        scope,
                    })
                },
            ))
        })
        .await
    }

    async fn revoke_api_key(&self, key_id: &str, revoked_at_ns: i64) -> HotResult<bool> {
        let key_id = key_id.to_owned();
        self.write(move |writer| {
            let found = writer.conn.execute(
                "UPDATE api_keys SET revoked_at_ns = COALESCE(revoked_at_ns, ?2) WHERE key_id = ?1",
                params![key_id, revoked_at_ns],
            )?;
            Ok(found > 0)
        })
        .await
    }

    async fn setting(&self, name: &str) -> HotResult<Option<Vec<u8>>> {
        let name = name.to_owned();
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT value FROM settings WHERE name = ?1",
                    [&name],
                    |row| row.get(0),
                )
                .optional()?)
        })
        .await
    }

    async fn set_setting_if_absent(&self, name: &str, value: Vec<u8>) -> HotResult<bool> {
        let name = name.to_owned();
        self.write(move |writer| {
            let changed = writer.conn.execute(
                "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, value],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn set_setting(&self, name: &str, value: Vec<u8>) -> HotResult<()> {
        let name = name.to_owned();
        self.write(move |writer| {
            writer.conn.execute(
                "INSERT INTO settings (name, value) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )?;
            Ok(())
        })
        .await
    }

    async fn settings_with_prefix(&self, prefix: &str) -> HotResult<Vec<(String, Vec<u8>)>> {
        let prefix = prefix.to_owned();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT name, value FROM settings WHERE substr(name, 1, length(?1)) = ?1 \
                 ORDER BY name",
            )?;
            let rows = statement
                .query_map([&prefix], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn delete_settings(&self, prefix: &str) -> HotResult<u64> {
        let prefix = prefix.to_owned();
        self.write(move |writer| {
            // `secure_delete` zeroes what the delete frees, in the page and on the freelist;
            // only for this statement, since zeroing costs every other delete (the lifecycle).
            writer.conn.pragma_update(None, "secure_delete", true)?;
            let deleted = writer.conn.execute(
                "DELETE FROM settings WHERE substr(name, 1, length(?1)) = ?1",
                [&prefix],
            );
            writer.conn.pragma_update(None, "secure_delete", false)?;
            let deleted = deleted?;
            // The WAL still holds the frames that wrote the values: fold the zeroed pages into
            // the database file and cut the WAL to nothing.
            wipe_wal(&writer.conn)?;
            Ok(deleted as u64)
        })
        .await
    }
}

/// Checkpoints the whole WAL into the database file and truncates it, waiting for readers that
/// still need older frames (up to the connection's busy timeout, then again).
fn wipe_wal(conn: &Connection) -> Result<()> {
    for _ in 0..SECURE_DELETE_WAL_ATTEMPTS {
        let (busy, _, _): (i64, i64, i64) =
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(HotError::Task(format!(
        "readers held the WAL through {SECURE_DELETE_WAL_ATTEMPTS} attempts to truncate it after a secure delete"
    ))
    .into())
}

/// An actor selected as `actor_id, display_name, department, team, attributes`.
fn actor_from_row(row: &Row<'_>) -> rusqlite::Result<Actor> {
    Ok(Actor {
        actor_id: row.get(0)?,
        display_name: row.get(1)?,
        department: row.get(2)?,
        team: row.get(3)?,
        attributes: row.get(4)?,
    })
}

const SAMPLING_COLUMNS: &str =
    "tenant_id, day, class, action, kept, seen, stated_kept, stated_seen";

fn sampling_count_from_row(row: &Row<'_>) -> rusqlite::Result<SamplingCount> {
    let count = |index| row.get::<_, i64>(index).map(|value| value as u64);
    Ok(SamplingCount {
        key: SamplingKey {
            tenant_id: row.get(0)?,
            day: row.get(1)?,
            class: row.get(2)?,
            action: row.get(3)?,
        },
        tally: SamplingTally {
            kept: count(4)?,
            seen: count(5)?,
        },
        stated: SamplingTally {
            kept: count(6)?,
            seen: count(7)?,
        },
    })
}

/// The bounds of a day range (`YYYY-MM-DD`, either open) as SQL compares them.
fn day_range(from_day: Option<&str>, to_day: Option<&str>) -> (String, String) {
    (
        from_day.unwrap_or("").to_owned(),
        to_day.unwrap_or("9999-12-31").to_owned(),
    )
}

/// The `kept`, `sampled_out` and `failed` columns of a summary row, from column `first` on.
fn tally_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<SummaryTally> {
    Ok(SummaryTally {
        kept: row.get::<_, i64>(first)? as u64,
        sampled_out: row.get::<_, i64>(first + 1)? as u64,
        failed: row.get::<_, i64>(first + 2)? as u64,
    })
}

#[async_trait]
impl SummaryStore for SqliteStore {
    async fn actor_days(
        &self,
        tenant_id: &str,
        filter: ActorDayFilter<'_>,
    ) -> HotResult<Vec<(ActorDayKey, SummaryTally)>> {
        let tenant_id = tenant_id.to_owned();
        let actor_id = filter.actor_id.map(str::to_owned);
        let action = filter.action.map(str::to_owned);
        let (from_day, to_day) = day_range(filter.from_day, filter.to_day);
        self.read(move |conn| {
            let mut select = conn.prepare_cached(
                "SELECT day, actor_id, action, resource_type, kept, sampled_out, failed FROM summary_actor_day \
                 WHERE tenant_id = ?1 AND day >= ?2 AND day <= ?3 AND (?4 IS NULL OR actor_id = ?4) \
                 AND (?5 IS NULL OR action = ?5) ORDER BY day, actor_id, action, resource_type",
            )?;
            let bound = params![tenant_id, from_day, to_day, actor_id, action];
            let rows = select.query_map(bound, |row| {
                Ok((
                    ActorDayKey {
                        tenant_id: tenant_id.clone(),
                        day: row.get(0)?,
                        actor_id: row.get(1)?,
                        action: row.get(2)?,
                        resource_type: row.get(3)?,
                    },
                    tally_at(row, 4)?,
                ))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn tenant_days(
        &self,
        tenant_id: &str,
        from_day: Option<&str>,
        to_day: Option<&str>,
    ) -> HotResult<Vec<TenantDay>> {
        let tenant_id = tenant_id.to_owned();
        let (from_day, to_day) = day_range(from_day, to_day);
        // Summed here in key order rather than by SQL `GROUP BY day, action`: the scan is in
        // (day, actor, ...) order, so SQLite would sort every row of the period first (measured
        // 245 ms against 22 ms for the scan alone, on a 30-day month of a 2.2M-event tenant).
        self.read(move |conn| {
            let mut select = conn.prepare_cached(
                "SELECT day, action, kept, sampled_out, failed FROM summary_actor_day \
                 WHERE tenant_id = ?1 AND day >= ?2 AND day <= ?3 ORDER BY day",
            )?;
            let mut rows = select.query(params![tenant_id, from_day, to_day])?;
            let mut days: Vec<TenantDay> = Vec::new();
            while let Some(row) = rows.next()? {
                let day = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
                if days.last().is_none_or(|last| last.day != day) {
                    days.push(TenantDay {
                        day: day.to_owned(),
                        actions: Default::default(),
                    });
                }
                let action = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
                let actions = &mut days.last_mut().expect("pushed above").actions;
                let tally = tally_at(row, 2)?;
                match actions.get_mut(action) {
                    Some(sum) => sum.add(&tally),
                    None => {
                        actions.insert(action.to_owned(), tally);
                    }
                }
            }
            Ok(days)
        })
        .await
    }

    async fn top_actors(
        &self,
        tenant_id: &str,
        from_day: Option<&str>,
        to_day: Option<&str>,
        top: usize,
    ) -> HotResult<Vec<(String, u64)>> {
        let tenant_id = tenant_id.to_owned();
        let (from_day, to_day) = day_range(from_day, to_day);
        // Summed here, not by `GROUP BY actor_id`, for the same reason as `tenant_days`.
        self.read(move |conn| {
            let mut select = conn.prepare_cached(
                "SELECT actor_id, kept FROM summary_actor_day \
                 WHERE tenant_id = ?1 AND day >= ?2 AND day <= ?3 AND kept > 0",
            )?;
            let mut rows = select.query(params![tenant_id, from_day, to_day])?;
            let mut per_actor: HashMap<String, u64> = HashMap::new();
            while let Some(row) = rows.next()? {
                let actor = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
                let kept = row.get::<_, i64>(1)? as u64;
                match per_actor.get_mut(actor) {
                    Some(sum) => *sum += kept,
                    None => {
                        per_actor.insert(actor.to_owned(), kept);
                    }
                }
            }
            Ok(rank_top(per_actor, top))
        })
        .await
    }

    async fn tenant_months(
        &self,
        tenant_id: &str,
        from_month: Option<&str>,
        to_month: Option<&str>,
        top: usize,
    ) -> HotResult<Vec<TenantMonth>> {
        let tenant_id = tenant_id.to_owned();
        let (from_month, to_month) = (
            from_month.unwrap_or("").to_owned(),
            to_month.unwrap_or("9999-12").to_owned(),
        );
        self.read(move |conn| {
            let range = params![tenant_id, from_month, to_month];
            let actions: Vec<(String, String, SummaryTally)> = conn
                .prepare_cached(
                    "SELECT month, action, kept, sampled_out, failed FROM summary_month_action \
                     WHERE tenant_id = ?1 AND month >= ?2 AND month <= ?3 ORDER BY month, action",
                )?
                .query_map(range, |row| {
                    Ok((row.get(0)?, row.get(1)?, tally_at(row, 2)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let actors = conn
                .prepare_cached(
                    "SELECT month, count(*) FROM summary_month_actor \
                     WHERE tenant_id = ?1 AND month >= ?2 AND month <= ?3 GROUP BY month",
                )?
                .query_map(range, |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            // Each month's top from the partial index on (month, kept DESC, resource) of the
            // resources with two or more events and, only if it holds fewer than `top`, the
            // rest from the resources seen once, in resource order: `top` entries read however
            // many resources the month has.
            let mut top_resources = Vec::new();
            if top > 0 {
                let mut repeated = conn.prepare_cached(
                    "SELECT resource_type, resource_id, kept FROM summary_resource_month \
                     WHERE tenant_id = ?1 AND month = ?2 AND kept >= 2 \
                     ORDER BY kept DESC, resource_type, resource_id LIMIT ?3",
                )?;
                let mut once = conn.prepare_cached(
                    "SELECT resource_type, resource_id, kept FROM summary_resource_month \
                     WHERE tenant_id = ?1 AND month = ?2 AND kept = 1 \
                     ORDER BY resource_type, resource_id LIMIT ?3",
                )?;
                let months: BTreeSet<&String> = actions.iter().map(|(month, ..)| month).collect();
                for month in months {
                    let row = |row: &rusqlite::Row<'_>| {
                        Ok((
                            month.clone(),
                            row.get(0)?,
                            row.get(1)?,
                            row.get::<_, i64>(2)? as u64,
                        ))
                    };
                    let before = top_resources.len();
                    for ranked in repeated.query_map(params![tenant_id, month, top as i64], row)? {
                        top_resources.push(ranked?);
                    }
                    let missing = top - (top_resources.len() - before);
                    if missing > 0 {
                        for ranked in
                            once.query_map(params![tenant_id, month, missing as i64], row)?
                        {
                            top_resources.push(ranked?);
                        }
                    }
                }
            }
            Ok(assemble_tenant_months(actions, actors, top_resources))
        })
        .await
    }

    async fn mark_deleted_days(&self, tenant_id: &str, days: Vec<String>) -> HotResult<()> {
        let tenant_id = tenant_id.to_owned();
        self.write(move |writer| {
            let tx = writer.conn.transaction()?;
            {
                let mut mark = tx.prepare_cached(
                    "INSERT INTO summary_deleted_days (tenant_id, day) VALUES (?1, ?2) \
                     ON CONFLICT DO NOTHING",
                )?;
                let mut bump = tx.prepare_cached(BUMP_REVISION)?;
                let months: BTreeSet<&str> = days.iter().map(|day| &day[..7]).collect();
                for day in &days {
                    mark.execute(params![tenant_id, day])?;
                }
                for month in months {
                    bump.execute(params![tenant_id, month])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn deleted_days(
        &self,
        tenant_id: &str,
        from_day: Option<&str>,
        to_day: Option<&str>,
    ) -> HotResult<Vec<String>> {
        let tenant_id = tenant_id.to_owned();
        let (from_day, to_day) = day_range(from_day, to_day);
        self.read(move |conn| {
            let days = conn
                .prepare_cached(
                    "SELECT day FROM summary_deleted_days WHERE tenant_id = ?1 AND day >= ?2 \
                     AND day <= ?3 ORDER BY day",
                )?
                .query_map(params![tenant_id, from_day, to_day], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(days)
        })
        .await
    }

    async fn revisions(&self, tenant_id: &str) -> HotResult<Revisions> {
        let tenant_id = tenant_id.to_owned();
        self.read(move |conn| {
            let revisions = conn
                .prepare_cached(
                    "SELECT scope, revision FROM summary_revisions WHERE tenant_id = ?1 ORDER BY scope",
                )?
                .query_map([tenant_id], |row| {
                    Ok((row.get(0)?, row.get::<_, i64>(1)? as u64))
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Revisions(revisions))
        })
        .await
    }
}

#[async_trait]
impl DirectoryStore for SqliteStore {
    async fn upsert_actors(&self, tenant_id: &str, actors: Vec<Actor>) -> HotResult<u64> {
        let tenant_id = tenant_id.to_owned();
        self.write(move |writer| {
            let tx = writer.conn.transaction()?;
            {
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO actors (tenant_id, actor_id, display_name, department, team, attributes) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (tenant_id, actor_id) DO UPDATE SET \
                     display_name = excluded.display_name, department = excluded.department, \
                     team = excluded.team, attributes = excluded.attributes",
                )?;
                for actor in &actors {
                    upsert.execute(params![
                        tenant_id,
                        actor.actor_id,
                        actor.display_name,
                        actor.department,
                        actor.team,
                        actor.attributes
                    ])?;
                }
                tx.execute(BUMP_REVISION, params![tenant_id, REVISION_SCOPE_ACTORS])?;
            }
            tx.commit()?;
            Ok(actors.len() as u64)
        })
        .await
    }

    async fn actors(&self, tenant_id: &str) -> HotResult<Vec<Actor>> {
        let tenant_id = tenant_id.to_owned();
        self.read(move |conn| {
            let mut select = conn.prepare_cached(
                "SELECT actor_id, display_name, department, team, attributes FROM actors \
                 WHERE tenant_id = ?1 ORDER BY actor_id",
            )?;
            let rows = select.query_map([tenant_id], actor_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn team_members(
        &self,
        tenant_id: &str,
        teams: &[String],
        limit: usize,
    ) -> HotResult<Vec<String>> {
        let tenant_id = tenant_id.to_owned();
        let teams = serde_json::to_string(teams).unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut select = conn.prepare_cached(
                "SELECT actor_id FROM actors WHERE tenant_id = ?1 \
                 AND team IN (SELECT value FROM json_each(?2)) ORDER BY actor_id LIMIT ?3",
            )?;
            let rows = select.query_map(params![tenant_id, teams, limit], |row| row.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn actor(&self, tenant_id: &str, actor_id: &str) -> HotResult<Option<Actor>> {
        let (tenant_id, actor_id) = (tenant_id.to_owned(), actor_id.to_owned());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT actor_id, display_name, department, team, attributes FROM actors \
                     WHERE tenant_id = ?1 AND actor_id = ?2",
                )?
                .query_row(params![tenant_id, actor_id], actor_from_row)
                .optional()?)
        })
        .await
    }
}

#[async_trait]
impl SamplingStore for SqliteStore {
    async fn sampling_counts(
        &self,
        tenant_id: &str,
        from_day: Option<&str>,
        to_day: Option<&str>,
    ) -> HotResult<Vec<SamplingCount>> {
        let (tenant_id, from_day, to_day) = (
            tenant_id.to_owned(),
            from_day.unwrap_or("").to_owned(),
            to_day.unwrap_or("9999-12-31").to_owned(),
        );
        self.read(move |conn| {
            let mut select = conn.prepare_cached(&format!(
                "SELECT {SAMPLING_COLUMNS} FROM sampling_counts WHERE tenant_id = ?1 \
                     AND day >= ?2 AND day <= ?3 ORDER BY day, class, action"
            ))?;
            let rows = select.query_map(
                params![tenant_id, from_day, to_day],
                sampling_count_from_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn unstated_sampling_counts(&self, limit: usize) -> HotResult<Vec<SamplingCount>> {
        self.read(move |conn| {
            let mut select = conn.prepare_cached(&format!(
                "SELECT {SAMPLING_COLUMNS} FROM sampling_counts WHERE seen != stated_seen \
                     AND seen != kept ORDER BY tenant_id, day, class, action LIMIT ?1"
            ))?;
            let rows = select.query_map([limit as i64], sampling_count_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn mark_sampling_stated(&self, counts: Vec<SamplingCount>) -> HotResult<()> {
        self.write(move |writer| {
            let tx = writer.conn.transaction()?;
            {
                let mut update = tx.prepare_cached(
                    "UPDATE sampling_counts SET stated_kept = ?5, stated_seen = ?6 \
                         WHERE tenant_id = ?1 AND day = ?2 AND class = ?3 AND action = ?4",
                )?;
                for count in &counts {
                    update.execute(params![
                        count.key.tenant_id,
                        count.key.day,
                        count.key.class,
                        count.key.action,
                        count.tally.kept as i64,
                        count.tally.seen as i64
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl LifecycleStore for SqliteStore {
    // The lifecycle methods delegate to the inherent ones below (inherent methods win method
    // resolution, so these calls do not recurse).
    async fn hot_prefix_older_than(
        &self,
        tenant_id: &str,
        cutoff_ns: i64,
    ) -> HotResult<Option<(u64, u64)>> {
        SqliteStore::hot_prefix_older_than(self, tenant_id, cutoff_ns).await
    }

    async fn first_hot_seq(&self, tenant_id: &str) -> HotResult<Option<u64>> {
        SqliteStore::first_hot_seq(self, tenant_id).await
    }

    async fn events_in_seq_range(
        &self,
        tenant_id: &str,
        first: u64,
        last: u64,
    ) -> HotResult<Vec<StoredEvent>> {
        SqliteStore::events_in_seq_range(self, tenant_id, first, last).await
    }

    async fn delete_events_through(&self, tenant_id: &str, last_seq: u64) -> HotResult<u64> {
        SqliteStore::delete_events_through(self, tenant_id, last_seq).await
    }
}

/// Moving events out of the hot tier (used by `sealtrail-archive`'s lifecycle). Chain heads,
/// Merkle tiles and checkpoints are per tenant, not per tier, so they are never touched here.
impl SqliteStore {
    /// The contiguous `seq` range `(first, last)` at the start of a tenant's hot rows whose
    /// events all have `timestamp < cutoff_ns`, or `None` when the first hot event is not that
    /// old. The range ends just before the first event (in `seq` order) at or after the cutoff,
    /// so moving it never leaves a gap in the hot tier, even when timestamps are out of order.
    pub async fn hot_prefix_older_than(
        &self,
        tenant_id: &str,
        cutoff_ns: i64,
    ) -> HotResult<Option<(u64, u64)>> {
        let tenant_id = tenant_id.to_owned();
        self.read(move |conn| {
            let (first, last): (Option<i64>, Option<i64>) = conn.query_row(
                "SELECT MIN(seq), MAX(seq) FROM events WHERE tenant_id = ?1",
                [&tenant_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            let (Some(first), Some(last)) = (first, last) else {
                return Ok(None);
            };
            let young: Option<i64> = conn.query_row(
                "SELECT MIN(seq) FROM events WHERE tenant_id = ?1 AND timestamp_ns >= ?2",
                params![tenant_id, cutoff_ns],
                |row| row.get(0),
            )?;
            let end = young.map_or(last, |young| young - 1);
            Ok((end >= first).then_some((first as u64, end as u64)))
        })
        .await
    }

    /// The lowest `seq` of a tenant still in the hot tier.
    pub async fn first_hot_seq(&self, tenant_id: &str) -> HotResult<Option<u64>> {
        let tenant_id = tenant_id.to_owned();
        self.read(move |conn| {
            let first: Option<i64> = conn.query_row(
                "SELECT MIN(seq) FROM events WHERE tenant_id = ?1",
                [&tenant_id],
                |row| row.get(0),
            )?;
            Ok(first.map(|seq| seq as u64))
        })
        .await
    }

    /// A tenant's hot events with `first <= seq <= last`, ascending (missing rows are simply
    /// absent; the caller checks the count).
    pub async fn events_in_seq_range(
        &self,
        tenant_id: &str,
        first: u64,
        last: u64,
    ) -> HotResult<Vec<StoredEvent>> {
        let tenant_id = tenant_id.to_owned();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "{} ORDER BY seq",
                select_events_sql("tenant_id = ?1 AND seq >= ?2 AND seq <= ?3")
            ))?;
            let mut rows = statement.query(params![tenant_id, first as i64, last as i64])?;
            let mut events = Vec::new();
            while let Some(row) = rows.next()? {
                events.push(stored_event_from_row(row)?);
            }
            Ok(events)
        })
        .await
    }

    /// Deletes a tenant's hot events with `seq <= last_seq`, in one transaction; returns how
    /// many rows went. Idempotent, so an interrupted migration can simply run it again. The
    /// caller MUST have durably archived and checked those events first.
    pub async fn delete_events_through(&self, tenant_id: &str, last_seq: u64) -> HotResult<u64> {
        let tenant_id = tenant_id.to_owned();
        self.write(move |writer| {
            // The frontier is what lets the tree grow once its partly filled tile's leaves are
            // gone: store it (rebuilding it from those leaves) before they go.
            writer.conn.execute_batch("BEGIN IMMEDIATE")?;
            let deleted = writer.store_frontier(&tenant_id).and_then(|()| {
                writer.conn.execute(
                    "INSERT OR IGNORE INTO archived_event_ids \
                     (tenant_id, event_id, seq, timestamp_ns, event_hash, content_digest) \
                     SELECT tenant_id, event_id, seq, timestamp_ns, event_hash, content_digest \
                     FROM events WHERE tenant_id = ?1 AND seq <= ?2",
                    params![tenant_id, last_seq as i64],
                )?;
                Ok(writer.conn.execute(
                    "DELETE FROM events WHERE tenant_id = ?1 AND seq <= ?2",
                    params![tenant_id, last_seq as i64],
                )?)
            });
            match deleted.and_then(|deleted| {
                writer.conn.execute_batch("COMMIT")?;
                Ok(deleted)
            }) {
                Ok(deleted) => Ok(deleted as u64),
                Err(error) => {
                    writer.abort();
                    Err(error)
                }
            }
        })
        .await
    }
}

/// The one checkpoint `sql` selects (columns: tree size, root hash, note, creation time). A
/// root hash that is not 32 bytes is corruption, not a missing checkpoint.
fn read_checkpoint(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<StoredCheckpoint>> {
    let found = conn
        .prepare_cached(sql)?
        .query_row(params, |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, Vec<u8>>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })
        .optional()?;
    let Some((tenant_id, tree_size, root_hash, note, created_at_ns)) = found else {
        return Ok(None);
    };
    Ok(Some(StoredCheckpoint {
        tree_size: tree_size as u64,
        root_hash: root_hash.try_into().map_err(|_| HotError::Corrupt {
            tenant_id,
            seq: tree_size as u64,
            reason: "the checkpoint's root hash is not 32 bytes".into(),
        })?,
        note,
        created_at_ns,
    }))
}
