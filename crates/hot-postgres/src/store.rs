//! [`PostgresStore`]: the [`HotStore`] on PostgreSQL, for production and for several Sealtrail
//! nodes on one database.
//!
//! Chain safety across processes rests on one rule: a group commit locks the `chain_heads` rows
//! of every tenant it touches, in `tenant_id` order, before it reads anything it will link to,
//! and holds them until it commits. Nothing about a chain is cached between transactions, since
//! another node may have advanced it. The group is one transaction: a killed node leaves nothing
//! half-written, and `synchronous_commit=on` (set on every session) means a commit is flushed to
//! the WAL before `append` returns.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use sealtrail_hot::{
    assemble_tenant_days, assemble_tenant_months, ActorDayFilter, ActorDayKey, ApiKeyRecord,
    AppendOutcome, AppendRequest, CheckpointStore, DirectoryStore, EventQuery, EventStore,
    ExistingEvent, KeyScope, LifecycleStore, Order, Revisions, Role, SamplingCount, SamplingKey,
    SamplingStore, SamplingTally, SettingsStore, StoredCheckpoint, SummaryStore, SummaryTally,
    TenantDay, TenantMonth, TreeStore, REVISION_SCOPE_ACTORS,
};
use sealtrail_ledger::{ChainHead, Hash, MerkleFrontier, PartialBlock, GENESIS_HASH, TILE_WIDTH};
use sealtrail_model::limits::{
    POSTGRES_COMMIT_LANES, POSTGRES_CONNECTIONS_MAX, POSTGRES_CONNECT_TIMEOUT_SECS,
    POSTGRES_IDLE_IN_TRANSACTION_MILLIS_MAX,
};
use sealtrail_model::{Actor, ActorType, Event, EventReceipt, Outcome, StoredEvent};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::error::{Database, Error, Result};
use crate::schema::{self, Month, ALL_TENANTS};
use sealtrail_hot::plan::{
    group_digests, group_tenants, plan_group, GroupPlan, GroupTrees, StoredKeys,
};

/// Columns of `events` in the order [`stored_event_from_row`] reads them (the SQLite store's
/// order).
const EVENT_COLUMNS: &str = "tenant_id, seq, event_id, timestamp_ns, received_at_ns, actor_id, actor_type, \
     action, resource_type, resource_id, outcome, ip_address, user_agent, request_id, changes, metadata, \
     prev_hash, event_hash";

/// The condition every hot read of one tenant's events carries (the tenant is `$1`): rows at or
/// below the tenant's `archived_through_seq` were moved to the warm tier and wait only for their
/// partition to be dropped; serving them would show an event twice (hot and archived). The
/// subquery is one primary-key probe, run once per statement.
const NOT_ARCHIVED: &str =
    "seq > COALESCE((SELECT archived_through_seq FROM chain_heads WHERE tenant_id = $1), 0)";

/// One event by `event_id`. Joining on received_at_ns lets PostgreSQL prune to the partition
/// holding the event instead of probing every partition's index.
static GET_EVENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let columns: Vec<String> = EVENT_COLUMNS
        .split(", ")
        .map(|column| format!("e.{column}"))
        .collect();
    format!(
        "SELECT {} FROM event_ids AS i JOIN events AS e \
         ON e.tenant_id = i.tenant_id AND e.seq = i.seq AND e.received_at_ns = i.received_at_ns \
         WHERE i.tenant_id = $1 AND i.event_id = $2 AND e.{NOT_ARCHIVED}",
        columns.join(", ")
    )
});

static MERKLE_LEAVES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT event_hash FROM events WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 \
         AND {NOT_ARCHIVED} ORDER BY seq"
    )
});

pub(crate) static SCAN_EVENTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND seq > $2 AND {NOT_ARCHIVED} \
         ORDER BY seq LIMIT $3"
    )
});

/// Scopes the current transaction to a tenant, or to every tenant with [`ALL_TENANTS`]; the
/// row-level security policies read this setting. `true`: local to the transaction.
pub(crate) const SET_SCOPE: &str = "SELECT set_config('sealtrail.tenant_id', $1, true)";

/// Creates the head row of a tenant never seen before, so that it can be locked like the others.
/// Sorted input makes concurrent inserts of the same new tenants wait in one order.
const INSERT_GENESIS_HEADS: &str = "INSERT INTO chain_heads (tenant_id, seq, head_hash, frontier) \
     SELECT tenant_id, 0, $2, '' FROM unnest($1::text[]) AS t(tenant_id) ON CONFLICT (tenant_id) DO NOTHING";

/// Locks the group's heads. ORDER BY is applied before the rows are locked, so every node locks
/// in `tenant_id` order and two groups sharing tenants cannot deadlock. Under READ COMMITTED a
/// row another transaction changed meanwhile is re-read after its lock is granted, so the head
/// returned is the latest committed one.
const LOCK_HEADS: &str = "SELECT tenant_id, seq, head_hash, frontier FROM chain_heads \
     WHERE tenant_id = ANY($1) ORDER BY tenant_id FOR UPDATE";

const SELECT_STORED_KEYS: &str =
    "SELECT i.tenant_id, i.event_id, i.seq, i.content_digest, i.timestamp_ns, i.event_hash \
     FROM unnest($1::text[], $2::text[]) AS k(tenant_id, event_id) \
     JOIN event_ids AS i ON i.tenant_id = k.tenant_id AND i.event_id = k.event_id";

/// The stored leaves (event hashes) of partly filled level-0 blocks, per tenant and seq range:
/// read only to rebuild a frontier that is missing from `chain_heads`.
const READ_LEAF_BLOCKS: &str = "SELECT r.tenant_id, e.event_hash, e.seq \
     FROM unnest($1::text[], $2::int8[], $3::int8[]) AS r(tenant_id, first_seq, last_seq) \
     JOIN LATERAL (SELECT seq, event_hash FROM events AS e \
                   WHERE e.tenant_id = r.tenant_id AND e.seq BETWEEN r.first_seq AND r.last_seq) AS e ON true \
     ORDER BY r.tenant_id, e.seq";

/// The stored nodes of partly filled blocks of levels 8, 16, …, per tenant, level and range.
const READ_NODE_BLOCKS: &str = "SELECT r.tenant_id, r.level, t.hash, t.idx \
     FROM unnest($1::text[], $2::int2[], $3::int8[], $4::int8[]) AS r(tenant_id, level, first_idx, end_idx) \
     JOIN merkle_tiles AS t ON t.tenant_id = r.tenant_id AND t.level = r.level \
          AND t.idx >= r.first_idx AND t.idx < r.end_idx \
     ORDER BY r.tenant_id, r.level, t.idx";

const INSERT_TILES: &str = "INSERT INTO merkle_tiles (tenant_id, level, idx, hash) \
     SELECT * FROM unnest($1::text[], $2::int2[], $3::int8[], $4::bytea[])";

/// Adds a group's actor-day summary rows (distinct keys, as the plan holds them).
const ADD_ACTOR_DAYS: &str = "INSERT INTO summary_actor_day AS s (tenant_id, day, actor_id, action, resource_type, kept, sampled_out, failed) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[], $8::int8[]) \
     ON CONFLICT (tenant_id, day, actor_id, action, resource_type) \
     DO UPDATE SET kept = s.kept + excluded.kept, sampled_out = s.sampled_out + excluded.sampled_out, \
     failed = s.failed + excluded.failed";

/// Adds a group's resource-month counts.
const ADD_RESOURCE_MONTHS: &str = "INSERT INTO summary_resource_month AS s (tenant_id, month, resource_type, resource_id, kept) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[]) \
     ON CONFLICT (tenant_id, month, resource_type, resource_id) DO UPDATE SET kept = s.kept + excluded.kept";

/// Moves the revisions of the `(tenant, scope)`s a commit changes (distinct pairs).
const BUMP_REVISIONS: &str = "INSERT INTO summary_revisions AS r (tenant_id, scope, revision) \
     SELECT *, 1 FROM unnest($1::text[], $2::text[]) \
     ON CONFLICT (tenant_id, scope) DO UPDATE SET revision = r.revision + 1";

/// Adds a group's month totals per action (distinct keys).
const ADD_MONTH_ACTIONS: &str = "INSERT INTO summary_month_action AS m (tenant_id, month, action, kept, sampled_out, failed) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[]) \
     ON CONFLICT (tenant_id, month, action) \
     DO UPDATE SET kept = m.kept + excluded.kept, sampled_out = m.sampled_out + excluded.sampled_out, \
     failed = m.failed + excluded.failed";

/// Records a group's actors with a stored event in each month (a known one is left as it is).
const ADD_MONTH_ACTORS: &str = "INSERT INTO summary_month_actor (tenant_id, month, actor_id) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING";

/// Adds a group's sampling statistics (one row per key: the plan's keys are distinct).
const ADD_SAMPLING_COUNTS: &str =
    "INSERT INTO sampling_counts AS c (tenant_id, day, class, action, kept, seen) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::int2[], $4::text[], $5::int8[], $6::int8[]) \
     ON CONFLICT (tenant_id, day, class, action) \
     DO UPDATE SET kept = c.kept + excluded.kept, seen = c.seen + excluded.seen";

const UPDATE_HEADS: &str = "UPDATE chain_heads AS h \
     SET seq = u.seq, head_hash = u.head_hash, frontier = u.frontier \
     FROM unnest($1::text[], $2::int8[], $3::bytea[], $4::bytea[]) AS u(tenant_id, seq, head_hash, frontier) \
     WHERE h.tenant_id = u.tenant_id";

/// Head rows created for this group whose tenant gained nothing (every request conflicted): a
/// tenant without events has no head row, as in the SQLite store.
const DELETE_EMPTY_HEADS: &str = "DELETE FROM chain_heads WHERE tenant_id = ANY($1) AND seq = 0";

/// Opens pooled connections on the runtime that opened the store, and drives them there. The
/// default connects on whichever runtime asks for a connection: one first needed by a pass on
/// the lifecycle's own runtime would die with that runtime at shutdown while still pooled, and
/// the next store call on it would fail.
#[derive(Debug)]
struct ConnectOnOpeningRuntime {
    runtime: Option<tokio::runtime::Handle>,
}

impl deadpool_postgres::Connect for ConnectOnOpeningRuntime {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> futures_util::future::BoxFuture<
        '_,
        std::result::Result<
            (tokio_postgres::Client, tokio::task::JoinHandle<()>),
            tokio_postgres::Error,
        >,
    > {
        let pg_config = pg_config.clone();
        let open = async move {
            // The socket registers with the IO driver of the runtime that opens it, so the
            // whole connect runs there, not only the task that drives it.
            let (client, connection) = pg_config.connect(NoTls).await?;
            let task = tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::warn!(%error, "PostgreSQL connection ended");
                }
            });
            Ok((client, task))
        };
        Box::pin(async move {
            let Some(runtime) = &self.runtime else {
                return open.await;
            };
            match runtime.spawn(open).await {
                Ok(opened) => opened,
                Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
                // Cancelled: the store's runtime is shutting down, and with it every user of
                // the pool. There is no connection to give, and no one left to give it to.
                Err(_) => std::future::pending().await,
            }
        })
    }
}

/// The PostgreSQL hot store. Cheap to clone; every clone shares one connection pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    database: Database,
    /// Months whose `events` partition this process has seen exist. Only ever a cache: a
    /// partition missing from it is checked (and created) in the database.
    partitions: tokio::sync::Mutex<BTreeSet<Month>>,
    /// Whether the next group reads the stored idempotency keys before inserting (see
    /// `append_group`). Only a speed hint: either way the outcome is the same.
    read_keys_first: AtomicBool,
}

impl PostgresStore {
    /// The one checkpoint `sql` selects (`$1` the tenant, `$2` a tree size; columns: tree size,
    /// root hash, note, creation time). A malformed row is corruption, not a missing checkpoint.
    async fn one_checkpoint(
        &self,
        tenant_id: &str,
        sql: &str,
        tree_size: Option<i64>,
    ) -> sealtrail_hot::Result<Option<StoredCheckpoint>> {
        let db = |source| self.db(source);
        let rows = self
            .scoped_statement(tenant_id, Access::Read, sql, &[&tenant_id, &tree_size])
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let size: i64 = row.try_get(0).map_err(db)?;
        let root_hash: Vec<u8> = row.try_get(1).map_err(db)?;
        let note: String = row.try_get(2).map_err(db)?;
        let created_at_ns: i64 = row.try_get(3).map_err(db)?;
        let tree_size = u64::try_from(size).map_err(|_| {
            corrupt(
                tenant_id,
                0,
                &column_fault("tree_size of checkpoints", format!("negative ({size})")),
            )
        })?;
        Ok(Some(StoredCheckpoint {
            tree_size,
            root_hash: decode_hash(tenant_id, tree_size, "root_hash of checkpoints", root_hash)?,
            note,
            created_at_ns,
        }))
    }

    /// Connects to `url`, applies pending migrations, and creates the `events` partitions of the
    /// current month and the months ahead. This is what `sealtrail serve` runs.
    pub async fn connect(url: &str) -> Result<Self> {
        let store = Self::open_pool(url)?;
        let mut client = store.client().await?;
        schema::migrate(&mut client)
            .await
            .map_err(|source| store.postgres(source))?;
        // A newer build may have migrated further; this build must not write to that schema.
        let found = schema::applied_version(&**client)
            .await
            .map_err(|source| store.postgres(source))?;
        let known = schema::latest_version();
        if found > known {
            return Err(Error::SchemaTooNew {
                database: store.inner.database.clone(),
                found,
                known,
            });
        }
        store.warn_if_not_durable(&client).await?;
        drop(client);
        store.ensure_partitions(Month::containing(now_ns())).await?;
        Ok(store)
    }

    /// Connects to an already migrated database without changing anything, for `sealtrail
    /// verify`. Fails if the schema is missing, older or newer than this build's.
    pub async fn connect_existing(url: &str) -> Result<Self> {
        let store = Self::open_pool(url)?;
        let client = store.client().await?;
        let found = schema::applied_version(&**client)
            .await
            .map_err(|source| store.postgres(source))?;
        let known = schema::latest_version();
        if found > known {
            return Err(Error::SchemaTooNew {
                database: store.inner.database.clone(),
                found,
                known,
            });
        }
        if found < known {
            return Err(Error::SchemaNotMigrated {
                database: store.inner.database.clone(),
                found,
                known,
            });
        }
        drop(client);
        Ok(store)
    }

    fn open_pool(url: &str) -> Result<Self> {
        let mut config: tokio_postgres::Config = url.parse().map_err(Error::Url)?;
        let database = describe(&config);
        // Session settings the store's guarantees rely on, whatever the server's defaults:
        // commits wait for the WAL flush, and a hung node cannot hold chain locks forever.
        let mut options = config.get_options().unwrap_or_default().to_owned();
        options.push_str(&format!(
            " -c synchronous_commit=on -c idle_in_transaction_session_timeout={POSTGRES_IDLE_IN_TRANSACTION_MILLIS_MAX}"
        ));
        config.options(options.trim_start());
        if config.get_application_name().is_none() {
            config.application_name("sealtrail");
        }
        config.connect_timeout(Duration::from_secs(POSTGRES_CONNECT_TIMEOUT_SECS));
        config.keepalives(true);
        let manager = Manager::from_connect(
            config,
            ConnectOnOpeningRuntime {
                runtime: tokio::runtime::Handle::try_current().ok(),
            },
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POSTGRES_CONNECTIONS_MAX)
            .build()
            .map_err(Error::PoolBuild)?;
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                database,
                partitions: tokio::sync::Mutex::new(BTreeSet::new()),
                read_keys_first: AtomicBool::new(false),
            }),
        })
    }

    /// Where this store is connected (host, port, database; never credentials).
    pub fn database(&self) -> &Database {
        &self.inner.database
    }

    fn postgres(&self, source: tokio_postgres::Error) -> Error {
        Error::Postgres {
            database: self.inner.database.clone(),
            source,
        }
    }

    /// The same, as the trait's error type.
    pub(crate) fn db(&self, source: tokio_postgres::Error) -> sealtrail_hot::Error {
        self.postgres(source).into()
    }

    pub(crate) async fn client(&self) -> Result<Object> {
        self.inner.pool.get().await.map_err(|source| Error::Pool {
            database: self.inner.database.clone(),
            source,
        })
    }

    async fn warn_if_not_durable(&self, client: &Object) -> Result<()> {
        let fsync: String = client
            .query_one("SHOW fsync", &[])
            .await
            .map_err(|source| self.postgres(source))?
            .get(0);
        if fsync != "on" {
            tracing::warn!(
                database = %self.inner.database,
                "the PostgreSQL server runs with fsync=off: acknowledged events may be lost in a crash of its machine"
            );
        }
        Ok(())
    }

    /// Makes sure the partitions of `month` and of the months ahead of it exist.
    async fn ensure_partitions(&self, month: Month) -> Result<()> {
        let mut ready = self.inner.partitions.lock().await;
        let missing: Vec<Month> = month
            .with_months_ahead()
            .filter(|month| !ready.contains(month))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        schema::create_partitions(&mut client, &missing)
            .await
            .map_err(|source| self.postgres(source))?;
        ready.extend(missing);
        Ok(())
    }

    /// Begins a transaction scoped to `scope` (a tenant, or [`ALL_TENANTS`]): the row-level
    /// security policies show it nothing else. The setting is transaction-local, so a pooled
    /// connection never carries one request's scope into the next.
    async fn begin_scoped<'c>(
        &self,
        client: &'c mut Object,
        scope: &str,
        read_only: bool,
    ) -> sealtrail_hot::Result<deadpool_postgres::Transaction<'c>> {
        let tx = client
            .build_transaction()
            .read_only(read_only)
            .start()
            .await
            .map_err(|source| self.db(source))?;
        let set_scope = tx
            .prepare_cached(SET_SCOPE)
            .await
            .map_err(|source| self.db(source))?;
        tx.execute(&set_scope, &[&scope])
            .await
            .map_err(|source| self.db(source))?;
        Ok(tx)
    }

    /// Runs one statement in its own transaction scoped to `scope` (a tenant, or
    /// [`ALL_TENANTS`]) and returns its rows. BEGIN, the scope, the statement and COMMIT are
    /// pipelined: one round trip. All four are handed to the connection at the first poll, so
    /// even if this future is dropped the COMMIT follows and the connection returns to the pool
    /// outside any transaction; a failure anywhere aborts the transaction, and the COMMIT then
    /// ends it as a rollback.
    pub(crate) async fn scoped_statement(
        &self,
        scope: &str,
        access: Access,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> sealtrail_hot::Result<Vec<Row>> {
        let db = |source| self.db(source);
        let client = self.client().await?;
        let set_scope = client.prepare_cached(SET_SCOPE).await.map_err(db)?;
        let statement = client.prepare_cached(sql).await.map_err(db)?;
        let begin = match access {
            Access::Read => "BEGIN READ ONLY",
            Access::Write => "BEGIN",
        };
        let (begun, scoped, rows, committed) = futures_util::future::join4(
            client.batch_execute(begin),
            client.execute(&set_scope, &[&scope]),
            client.query(&statement, params),
            client.batch_execute("COMMIT"),
        )
        .await;
        begun.map_err(db)?;
        scoped.map_err(db)?;
        let rows = rows.map_err(db)?;
        committed.map_err(db)?;
        Ok(rows)
    }

    async fn append_group(
        &self,
        batch: &[AppendRequest],
    ) -> sealtrail_hot::Result<Vec<AppendOutcome>> {
        let months: BTreeSet<Month> = batch
            .iter()
            .flatten()
            .map(|pending| Month::containing(pending.received_at_ns))
            .collect();
        for month in months {
            self.ensure_partitions(month).await?;
        }
        // Content digests do not depend on the chain: computed before any lock is taken.
        let digests = group_digests(batch);
        let tenants = group_tenants(batch);
        if tenants.is_empty() {
            return Ok(batch
                .iter()
                .map(|_| AppendOutcome::Committed(Vec::new()))
                .collect());
        }

        // Optimistic first: in the common case every event is new, and the unique index on
        // event_ids proves it while inserting (one index descent per event). A retry in the
        // group makes that insert fail; the group is then run again, reading the stored keys
        // first. After a group that met stored keys (a spool replay, a burst of client
        // retries), the next one reads them first straight away.
        let read_keys_first = self.inner.read_keys_first.load(Ordering::Relaxed);
        let attempt = self
            .append_attempt(batch, &digests, &tenants, read_keys_first)
            .await;
        let (outcomes, met_stored_keys) = if !read_keys_first && is_unique_violation(&attempt) {
            self.append_attempt(batch, &digests, &tenants, true).await?
        } else {
            attempt?
        };
        self.inner
            .read_keys_first
            .store(met_stored_keys, Ordering::Relaxed);
        Ok(outcomes)
    }

    /// One try at committing a group; returns its outcomes and whether any event was already
    /// stored. With `read_keys_first` false, it assumes none is, and fails with a unique
    /// violation on `event_ids` (writing nothing) if that is wrong.
    async fn append_attempt(
        &self,
        batch: &[AppendRequest],
        digests: &[Vec<[u8; 32]>],
        tenants: &[&str],
        read_keys_first: bool,
    ) -> sealtrail_hot::Result<(Vec<AppendOutcome>, bool)> {
        let started = std::time::Instant::now();
        let mut client = self.client().await?;
        let db = |source| self.db(source);
        let tx = self.begin_scoped(&mut client, ALL_TENANTS, false).await?;

        let insert_genesis = tx.prepare_cached(INSERT_GENESIS_HEADS).await.map_err(db)?;
        let lock_heads = tx.prepare_cached(LOCK_HEADS).await.map_err(db)?;
        // Pipelined: the server runs them in order, so the new head rows exist when locked.
        let genesis: &[u8] = &GENESIS_HASH;
        let genesis_params: [&(dyn ToSql + Sync); 2] = [&tenants, &genesis];
        let lock_params: [&(dyn ToSql + Sync); 1] = [&tenants];
        let (inserted, locked_rows) = tokio::join!(
            tx.execute(&insert_genesis, &genesis_params),
            tx.query(&lock_heads, &lock_params),
        );
        inserted.map_err(db)?;
        let mut heads = BTreeMap::new();
        let mut frontiers: HashMap<String, Option<MerkleFrontier>> = HashMap::new();
        for row in locked_rows.map_err(db)? {
            let tenant_id: String = row.try_get(0).map_err(db)?;
            let seq: i64 = row.try_get(1).map_err(db)?;
            let hash: Vec<u8> = row.try_get(2).map_err(db)?;
            let frontier: Option<Vec<u8>> = row.try_get(3).map_err(db)?;
            let head = decode_head(&tenant_id, seq, hash)?;
            // NULL: a head written before frontiers were stored, rebuilt from the stored nodes.
            // Bytes that do not decode are damage, reported as in the SQLite store.
            let frontier = frontier
                .map(|bytes| {
                    sealtrail_ledger::decode_frontier(head.seq, &bytes).ok_or_else(|| {
                        corrupt(
                            &tenant_id,
                            head.seq,
                            &column_fault(
                                "frontier of chain_heads",
                                "does not match the tree size of the head",
                            ),
                        )
                    })
                })
                .transpose()?;
            frontiers.insert(tenant_id.clone(), frontier);
            heads.insert(tenant_id, head);
        }
        assert_eq!(
            heads.len(),
            tenants.len(),
            "every tenant of the group has a locked head row"
        );
        let heads_before = heads.clone();
        let locked = started.elapsed();

        // With the heads locked, no other transaction can store keys of these tenants, so what
        // this reads stays true until commit.
        let stored = if read_keys_first {
            self.stored_keys(&tx, batch).await?
        } else {
            StoredKeys::new()
        };
        let checked = started.elapsed();
        let plan = plan_group(batch, digests, heads, &stored);
        let planned = started.elapsed();
        let trees = self
            .group_trees(&tx, &plan, &heads_before, frontiers)
            .await?;
        let tiled = started.elapsed();
        self.write_plan(&tx, &plan, &heads_before, &trees).await?;
        let written = started.elapsed();
        tx.commit().await.map_err(db)?;
        tracing::debug!(
            events = plan.rows.len(),
            tenants = tenants.len(),
            read_keys_first,
            locked_ms = locked.as_millis(),
            checked_ms = (checked - locked).as_millis(),
            planned_ms = (planned - checked).as_millis(),
            tiled_ms = (tiled - planned).as_millis(),
            written_ms = (written - tiled).as_millis(),
            committed_ms = (started.elapsed() - written).as_millis(),
            "group committed"
        );
        Ok((plan.outcomes, !stored.is_empty()))
    }

    async fn stored_keys(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        batch: &[AppendRequest],
    ) -> sealtrail_hot::Result<StoredKeys> {
        let db = |source| self.db(source);
        let (tenant_ids, event_ids): (Vec<&str>, Vec<&str>) = batch
            .iter()
            .flatten()
            .map(|pending| {
                (
                    pending.event.tenant_id.as_str(),
                    pending.event.event_id.as_str(),
                )
            })
            .unzip();
        let select = tx.prepare_cached(SELECT_STORED_KEYS).await.map_err(db)?;
        let mut stored = StoredKeys::new();
        for row in tx
            .query(&select, &[&tenant_ids, &event_ids])
            .await
            .map_err(db)?
        {
            let tenant_id: String = row.try_get(0).map_err(db)?;
            let existing = existing_from_row(&row, tenant_id.clone(), 1)?;
            stored
                .entry(tenant_id)
                .or_default()
                .insert(existing.receipt.event_id.clone(), existing);
        }
        Ok(stored)
    }

    /// The Merkle tiles the plan completes and the frontier after it, for every tenant it
    /// grows. A frontier missing from `chain_heads` (`None`) is first rebuilt from the stored
    /// nodes of the partly filled blocks, read under the head lock.
    async fn group_trees<'p>(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        plan: &GroupPlan<'p>,
        heads_before: &BTreeMap<String, ChainHead>,
        mut stored: HashMap<String, Option<MerkleFrontier>>,
    ) -> sealtrail_hot::Result<GroupTrees<'p>> {
        let grown = plan.new_leaves();
        let missing: Vec<(&str, u64)> = grown
            .keys()
            .filter(|tenant| stored.get(**tenant).is_none_or(Option::is_none))
            .map(|tenant| {
                (
                    *tenant,
                    heads_before.get(*tenant).map_or(0, |head| head.seq),
                )
            })
            .collect();
        let mut frontiers: HashMap<String, MerkleFrontier> = HashMap::new();
        if !missing.is_empty() {
            tracing::warn!(
                tenants = missing.len(),
                "rebuilding Merkle frontiers missing from chain_heads"
            );
            frontiers.extend(self.rebuild_frontiers(tx, &missing).await?);
        }
        for tenant in grown.keys() {
            if let Some(Some(frontier)) = stored.remove(*tenant) {
                frontiers.insert((*tenant).to_owned(), frontier);
            }
        }
        plan.grow_trees(frontiers)
    }

    /// Rebuilds the frontiers of `(tenant, tree size)` from the stored nodes of their partly
    /// filled blocks (two queries for all of them).
    async fn rebuild_frontiers(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        trees: &[(&str, u64)],
    ) -> sealtrail_hot::Result<Vec<(String, MerkleFrontier)>> {
        let db = |source| self.db(source);
        let blocks: Vec<(&str, PartialBlock)> = trees
            .iter()
            .flat_map(|(tenant, size)| {
                sealtrail_ledger::partial_blocks(*size)
                    .into_iter()
                    .map(move |block| (*tenant, block))
            })
            .collect();
        let (leaf_blocks, node_blocks): (Vec<_>, Vec<_>) =
            blocks.iter().partition(|(_, block)| block.level == 0);
        let leaf_tenants: Vec<&str> = leaf_blocks.iter().map(|(tenant, _)| *tenant).collect();
        // Leaf index i is seq i + 1.
        let leaf_first: Vec<i64> = leaf_blocks
            .iter()
            .map(|(_, block)| seq_to_sql(block.first + 1))
            .collect();
        let leaf_last: Vec<i64> = leaf_blocks
            .iter()
            .map(|(_, block)| seq_to_sql(block.end))
            .collect();
        let node_tenants: Vec<&str> = node_blocks.iter().map(|(tenant, _)| *tenant).collect();
        let node_levels: Vec<i16> = node_blocks
            .iter()
            .map(|(_, block)| i16::from(block.level))
            .collect();
        let node_first: Vec<i64> = node_blocks
            .iter()
            .map(|(_, block)| seq_to_sql(block.first))
            .collect();
        let node_end: Vec<i64> = node_blocks
            .iter()
            .map(|(_, block)| seq_to_sql(block.end))
            .collect();
        let read_leaves = tx.prepare_cached(READ_LEAF_BLOCKS).await.map_err(db)?;
        let read_nodes = tx.prepare_cached(READ_NODE_BLOCKS).await.map_err(db)?;
        let leaf_rows = tx
            .query(&read_leaves, &[&leaf_tenants, &leaf_first, &leaf_last])
            .await
            .map_err(db)?;
        let node_rows = tx
            .query(
                &read_nodes,
                &[&node_tenants, &node_levels, &node_first, &node_end],
            )
            .await
            .map_err(db)?;
        let mut stored: HashMap<(String, u8), Vec<Hash>> = HashMap::new();
        for row in leaf_rows {
            let tenant_id: String = row.try_get(0).map_err(db)?;
            let seq: i64 = row.try_get(2).map_err(db)?;
            let bytes: Vec<u8> = row.try_get(1).map_err(db)?;
            let hash = decode_hash(&tenant_id, sql_to_seq(seq), "event_hash", bytes)?;
            stored.entry((tenant_id, 0)).or_default().push(hash);
        }
        for row in node_rows {
            let tenant_id: String = row.try_get(0).map_err(db)?;
            let level: i16 = row.try_get(1).map_err(db)?;
            let index: i64 = row.try_get(3).map_err(db)?;
            let level = u8::try_from(level).map_err(|_| {
                corrupt(
                    &tenant_id,
                    0,
                    &column_fault("level of merkle_tiles", format!("out of range ({level})")),
                )
            })?;
            let bytes: Vec<u8> = row.try_get(2).map_err(db)?;
            let hash = decode_hash(
                &tenant_id,
                tile_last_seq(level, sql_to_seq(index)),
                &format!("hash of merkle_tiles (level {level}, index {index})"),
                bytes,
            )?;
            stored.entry((tenant_id, level)).or_default().push(hash);
        }
        trees
            .iter()
            .map(|(tenant, size)| {
                let frontier = sealtrail_ledger::rebuild_frontier(*size, |level| {
                    stored
                        .get(&((*tenant).to_owned(), level))
                        .cloned()
                        .unwrap_or_default()
                })
                .map_err(|missing| {
                    corrupt(
                        tenant,
                        *size,
                        &format!(
                            "Merkle level {} has {} of the {} stored nodes the frontier needs",
                            missing.level, missing.found, missing.expected
                        ),
                    )
                })?;
                Ok(((*tenant).to_owned(), frontier))
            })
            .collect()
    }

    /// Inserts the plan's rows and tiles and moves the heads, as pipelined statements.
    async fn write_plan(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        plan: &GroupPlan<'_>,
        heads_before: &BTreeMap<String, ChainHead>,
        trees: &GroupTrees<'_>,
    ) -> sealtrail_hot::Result<()> {
        let db = |source| self.db(source);
        let rows = &plan.rows;
        let (tiles, frontiers) = (&trees.tiles, &trees.frontiers);
        // Values the rows hold in another shape than the columns take, converted once.
        let seqs: Vec<i64> = rows.iter().map(|row| seq_to_sql(row.link.seq)).collect();
        let actor_types: Vec<&str> = rows
            .iter()
            .map(|row| row.pending.event.actor_type.as_str())
            .collect();
        let outcomes: Vec<&str> = rows
            .iter()
            .map(|row| row.pending.event.outcome.as_str())
            .collect();
        let prev_hashes: Vec<&[u8]> = rows.iter().map(|row| &row.link.prev_hash[..]).collect();
        let event_hashes: Vec<&[u8]> = rows.iter().map(|row| &row.link.event_hash[..]).collect();
        let digests: Vec<&[u8]> = rows.iter().map(|row| &row.content_digest[..]).collect();
        let mut event_params: Vec<&(dyn ToSql + Sync)> =
            Vec::with_capacity(rows.len() * EVENT_INSERT.columns);
        let mut id_params: Vec<&(dyn ToSql + Sync)> =
            Vec::with_capacity(rows.len() * EVENT_ID_INSERT.columns);
        for (index, row) in rows.iter().enumerate() {
            let event: &Event = &row.pending.event;
            let seq = &seqs[index];
            event_params.extend_from_slice(&[
                &event.tenant_id as &(dyn ToSql + Sync),
                seq,
                &event.event_id,
                &event.timestamp_ns,
                &row.pending.received_at_ns,
                &event.actor_id,
                &actor_types[index],
                &event.action,
                &event.resource_type,
                &event.resource_id,
                &outcomes[index],
                &event.ip_address,
                &event.user_agent,
                &event.request_id,
                &event.changes,
                &event.metadata,
                &prev_hashes[index],
                &event_hashes[index],
            ]);
            id_params.extend_from_slice(&[
                &event.tenant_id as &(dyn ToSql + Sync),
                &event.event_id,
                seq,
                &row.pending.received_at_ns,
                &event.timestamp_ns,
                &digests[index],
                &event_hashes[index],
            ]);
        }

        // Heads that changed: advanced ones are updated, new ones still at genesis deleted.
        let (moved, unmoved): (Vec<HeadEntry<'_>>, Vec<HeadEntry<'_>>) = plan
            .heads
            .iter()
            .filter(|(tenant, head)| heads_before.get(*tenant) != Some(head) || head.seq == 0)
            .partition(|(_, head)| head.seq > 0);
        let head_tenants: Vec<&str> = moved.iter().map(|(tenant, _)| tenant.as_str()).collect();
        let head_seqs: Vec<i64> = moved.iter().map(|(_, head)| seq_to_sql(head.seq)).collect();
        let head_hashes: Vec<&[u8]> = moved.iter().map(|(_, head)| &head.hash[..]).collect();
        let head_frontiers: Vec<Vec<u8>> = moved
            .iter()
            .map(|(tenant, _)| {
                let frontier = frontiers
                    .get(tenant.as_str())
                    .expect("every moved head grew, so its frontier was advanced");
                sealtrail_ledger::encode_frontier(frontier)
            })
            .collect();
        let empty_tenants: Vec<&str> = unmoved.iter().map(|(tenant, _)| tenant.as_str()).collect();
        let tile_tenants: Vec<&str> = tiles.iter().map(|(tenant, _)| *tenant).collect();
        let tile_levels: Vec<i16> = tiles
            .iter()
            .map(|(_, tile)| i16::from(tile.level))
            .collect();
        let tile_indexes: Vec<i64> = tiles
            .iter()
            .map(|(_, tile)| seq_to_sql(tile.index))
            .collect();
        let tile_hashes: Vec<&[u8]> = tiles.iter().map(|(_, tile)| &tile.hash[..]).collect();
        let head_params: [&(dyn ToSql + Sync); 4] =
            [&head_tenants, &head_seqs, &head_hashes, &head_frontiers];
        let empty_params: [&(dyn ToSql + Sync); 1] = [&empty_tenants];
        let tile_params: [&(dyn ToSql + Sync); 4] =
            [&tile_tenants, &tile_levels, &tile_indexes, &tile_hashes];
        let sampling = &plan.sampling;
        let count_tenants: Vec<&str> = sampling.keys().map(|key| key.tenant_id.as_str()).collect();
        let count_days: Vec<&str> = sampling.keys().map(|key| key.day.as_str()).collect();
        let count_classes: Vec<i16> = sampling.keys().map(|key| i16::from(key.class)).collect();
        let count_actions: Vec<&str> = sampling.keys().map(|key| key.action.as_str()).collect();
        let count_kept: Vec<i64> = sampling.values().map(|tally| tally.kept as i64).collect();
        let count_seen: Vec<i64> = sampling.values().map(|tally| tally.seen as i64).collect();
        let days = &plan.actor_days;
        let day_tenants: Vec<&str> = days.keys().map(|key| key.tenant_id.as_str()).collect();
        let day_days: Vec<&str> = days.keys().map(|key| key.day.as_str()).collect();
        let day_actors: Vec<&str> = days.keys().map(|key| key.actor_id.as_str()).collect();
        let day_actions: Vec<&str> = days.keys().map(|key| key.action.as_str()).collect();
        let day_types: Vec<&str> = days.keys().map(|key| key.resource_type.as_str()).collect();
        let day_kept: Vec<i64> = days.values().map(|tally| tally.kept as i64).collect();
        let day_dropped: Vec<i64> = days
            .values()
            .map(|tally| tally.sampled_out as i64)
            .collect();
        let day_failed: Vec<i64> = days.values().map(|tally| tally.failed as i64).collect();
        let day_params: [&(dyn ToSql + Sync); 8] = [
            &day_tenants,
            &day_days,
            &day_actors,
            &day_actions,
            &day_types,
            &day_kept,
            &day_dropped,
            &day_failed,
        ];
        let months = &plan.resource_months;
        let month_tenants: Vec<&str> = months.keys().map(|key| key.tenant_id.as_str()).collect();
        let month_months: Vec<&str> = months.keys().map(|key| key.month.as_str()).collect();
        let month_types: Vec<&str> = months
            .keys()
            .map(|key| key.resource_type.as_str())
            .collect();
        let month_ids: Vec<&str> = months.keys().map(|key| key.resource_id.as_str()).collect();
        let month_kept: Vec<i64> = months.values().map(|kept| *kept as i64).collect();
        let month_params: [&(dyn ToSql + Sync); 5] = [
            &month_tenants,
            &month_months,
            &month_types,
            &month_ids,
            &month_kept,
        ];
        let month_actions = plan.month_actions();
        let action_tenants: Vec<&str> = month_actions.keys().map(|(tenant, ..)| *tenant).collect();
        let action_months: Vec<&str> = month_actions.keys().map(|(_, month, _)| *month).collect();
        let action_names: Vec<&str> = month_actions.keys().map(|(.., action)| *action).collect();
        let action_kept: Vec<i64> = month_actions
            .values()
            .map(|tally| tally.kept as i64)
            .collect();
        let action_dropped: Vec<i64> = month_actions
            .values()
            .map(|tally| tally.sampled_out as i64)
            .collect();
        let action_failed: Vec<i64> = month_actions
            .values()
            .map(|tally| tally.failed as i64)
            .collect();
        let action_params: [&(dyn ToSql + Sync); 6] = [
            &action_tenants,
            &action_months,
            &action_names,
            &action_kept,
            &action_dropped,
            &action_failed,
        ];
        let month_actors = plan.month_actors();
        let actor_tenants: Vec<&str> = month_actors.iter().map(|(tenant, ..)| *tenant).collect();
        let actor_months: Vec<&str> = month_actors.iter().map(|(_, month, _)| *month).collect();
        let actor_ids: Vec<&str> = month_actors.iter().map(|(.., actor)| *actor).collect();
        let actor_params: [&(dyn ToSql + Sync); 3] = [&actor_tenants, &actor_months, &actor_ids];
        let changed_months = plan.changed_months();
        let revision_tenants: Vec<&str> =
            changed_months.iter().map(|(tenant, _)| *tenant).collect();
        let revision_months: Vec<&str> = changed_months.iter().map(|(_, month)| *month).collect();
        let revision_params: [&(dyn ToSql + Sync); 2] = [&revision_tenants, &revision_months];
        let count_params: [&(dyn ToSql + Sync); 6] = [
            &count_tenants,
            &count_days,
            &count_classes,
            &count_actions,
            &count_kept,
            &count_seen,
        ];

        // Every statement of the group, in the order the server runs them. The keys go first:
        // when an optimistic insert meets a stored key, it fails before PostgreSQL spends time
        // on the event rows.
        let mut statements: Vec<(Write, tokio_postgres::Statement, &[&(dyn ToSql + Sync)])> =
            Vec::new();
        for (insert, params, kind) in [
            (&EVENT_ID_INSERT, &id_params, Write::Keys),
            (&EVENT_INSERT, &event_params, Write::Events),
        ] {
            let mut offset = 0;
            for chunk_rows in values_chunks(rows.len()) {
                let statement = tx
                    .prepare_cached(insert.sql(chunk_rows))
                    .await
                    .map_err(db)?;
                let range = offset * insert.columns..(offset + chunk_rows) * insert.columns;
                statements.push((kind, statement, &params[range]));
                offset += chunk_rows;
            }
        }
        if !head_tenants.is_empty() {
            let update = tx.prepare_cached(UPDATE_HEADS).await.map_err(db)?;
            statements.push((Write::Heads, update, &head_params));
        }
        if !empty_tenants.is_empty() {
            let delete = tx.prepare_cached(DELETE_EMPTY_HEADS).await.map_err(db)?;
            statements.push((Write::EmptyHeads, delete, &empty_params));
        }
        if !tile_tenants.is_empty() {
            let insert = tx.prepare_cached(INSERT_TILES).await.map_err(db)?;
            statements.push((Write::Tiles, insert, &tile_params));
        }
        if !sampling.is_empty() {
            let add = tx.prepare_cached(ADD_SAMPLING_COUNTS).await.map_err(db)?;
            statements.push((Write::Sampling, add, &count_params));
        }
        if !days.is_empty() {
            let add = tx.prepare_cached(ADD_ACTOR_DAYS).await.map_err(db)?;
            statements.push((Write::Summaries, add, &day_params));
        }
        if !months.is_empty() {
            let add = tx.prepare_cached(ADD_RESOURCE_MONTHS).await.map_err(db)?;
            statements.push((Write::Summaries, add, &month_params));
        }
        if !action_tenants.is_empty() {
            let add = tx.prepare_cached(ADD_MONTH_ACTIONS).await.map_err(db)?;
            statements.push((Write::MonthActions, add, &action_params));
        }
        if !actor_tenants.is_empty() {
            let add = tx.prepare_cached(ADD_MONTH_ACTORS).await.map_err(db)?;
            statements.push((Write::MonthActors, add, &actor_params));
        }
        if !revision_tenants.is_empty() {
            let bump = tx.prepare_cached(BUMP_REVISIONS).await.map_err(db)?;
            statements.push((Write::Revisions, bump, &revision_params));
        }
        // Issued together, the statements travel without waiting for each other
        // (tokio-postgres pipelines concurrent requests on a connection). All of them run; the
        // first error in statement order is the cause, later ones only report the aborted
        // transaction.
        let results = futures_util::future::join_all(
            statements
                .iter()
                .map(|(_, statement, params)| tx.execute(statement, params)),
        )
        .await;
        let mut written: HashMap<Write, u64> = HashMap::new();
        for ((kind, _, _), result) in statements.iter().zip(results) {
            *written.entry(*kind).or_default() += result.map_err(db)?;
        }
        let written = |kind| written.get(&kind).copied().unwrap_or(0) as usize;
        // Pair assertions: what was written is exactly what was planned.
        assert_eq!(
            written(Write::Keys),
            rows.len(),
            "every planned key inserted"
        );
        assert_eq!(
            written(Write::Events),
            rows.len(),
            "every planned event row inserted"
        );
        assert_eq!(
            written(Write::Heads),
            head_tenants.len(),
            "every moved head updated"
        );
        assert_eq!(
            written(Write::Tiles),
            tiles.len(),
            "every completed tile inserted"
        );
        assert_eq!(
            written(Write::Sampling),
            sampling.len(),
            "every sampling statistic added"
        );
        assert_eq!(
            written(Write::Summaries),
            days.len() + months.len(),
            "every summary row added"
        );
        assert_eq!(
            written(Write::MonthActions),
            action_tenants.len(),
            "every month total added"
        );
        assert!(
            written(Write::MonthActors) <= actor_tenants.len(),
            "an actor recorded at most once per month"
        );
        assert_eq!(
            written(Write::Revisions),
            revision_tenants.len(),
            "every changed month's revision moved"
        );
        Ok(())
    }
}

/// Whether a scoped statement only reads (its transaction is then READ ONLY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// A tenant and its head, as the plan holds them.
type HeadEntry<'a> = (&'a String, &'a ChainHead);

/// What a statement of a group commit writes, to check the counts against the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Write {
    Keys,
    Events,
    Heads,
    EmptyHeads,
    Tiles,
    Sampling,
    Summaries,
    MonthActions,
    MonthActors,
    Revisions,
}

/// Most rows per multi-row INSERT: a power of two whose bound parameters (18 per event row)
/// stay under PostgreSQL's 65,535 per statement.
const VALUES_ROWS_MAX: usize = 2048;

/// Chunk sizes covering `rows`: as many of [`VALUES_ROWS_MAX`] as fit, then the binary digits of
/// the rest. Powers of two keep the prepared statements few (12 sizes per table).
fn values_chunks(rows: usize) -> Vec<usize> {
    let mut chunks = vec![VALUES_ROWS_MAX; rows / VALUES_ROWS_MAX];
    let rest = rows % VALUES_ROWS_MAX;
    let mut size = VALUES_ROWS_MAX;
    while size > 0 {
        if rest & size != 0 {
            chunks.push(size);
        }
        size /= 2;
    }
    chunks
}

/// A multi-row `INSERT … VALUES ($1, …), (…)` of one table, built once per chunk size.
#[derive(Debug)]
struct ValuesInsert {
    head: &'static str,
    columns: usize,
    /// One statement text per power of two up to [`VALUES_ROWS_MAX`], built when first used.
    sql: [std::sync::OnceLock<String>; 12],
}

impl ValuesInsert {
    const fn new(head: &'static str, columns: usize) -> Self {
        ValuesInsert {
            head,
            columns,
            sql: [const { std::sync::OnceLock::new() }; 12],
        }
    }

    /// The statement for `rows` rows, a power of two up to [`VALUES_ROWS_MAX`].
    fn sql(&self, rows: usize) -> &str {
        assert!(
            rows.is_power_of_two() && rows <= VALUES_ROWS_MAX,
            "chunk of {rows} rows"
        );
        self.sql[rows.trailing_zeros() as usize].get_or_init(|| {
            let mut sql = String::with_capacity(self.head.len() + rows * self.columns * 8);
            sql.push_str(self.head);
            for row in 0..rows {
                sql.push_str(if row == 0 { " (" } else { ", (" });
                for column in 0..self.columns {
                    if column > 0 {
                        sql.push_str(", ");
                    }
                    sql.push('$');
                    sql.push_str(&(row * self.columns + column + 1).to_string());
                }
                sql.push(')');
            }
            sql
        })
    }
}

/// Multi-row VALUES rather than one INSERT from parallel arrays: PostgreSQL materializes every
/// `unnest` of a multi-array unnest before combining them, which cost more than the rows'
/// own insertion; and COPY is refused on tables with row-level security.
static EVENT_INSERT: ValuesInsert = ValuesInsert::new(
    "INSERT INTO events (tenant_id, seq, event_id, timestamp_ns, received_at_ns, actor_id, \
     actor_type, action, resource_type, resource_id, outcome, ip_address, user_agent, request_id, \
     changes, metadata, prev_hash, event_hash) VALUES",
    18,
);

/// The idempotency keys of the same rows. A primary-key violation here means an `event_id`
/// already stored: expected on an optimistic attempt, which is then retried reading the stored
/// keys first; impossible otherwise, since the head locks keep other writers off these tenants.
static EVENT_ID_INSERT: ValuesInsert = ValuesInsert::new(
    "INSERT INTO event_ids (tenant_id, event_id, seq, received_at_ns, timestamp_ns, \
     content_digest, event_hash) VALUES",
    7,
);

/// "host:port/dbname" of a connection config, for messages.
fn describe(config: &tokio_postgres::Config) -> Database {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let dbname = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    Database(format!("{host}:{port}/{dbname}"))
}

fn now_ns() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX)
}

/// `seq` as PostgreSQL's bigint. Sequences start at 1 and grow by one per event, so they stay far
/// below 2^63.
fn seq_to_sql(seq: u64) -> i64 {
    i64::try_from(seq).expect("seq fits in a bigint")
}

pub(crate) fn corrupt(tenant_id: &str, seq: u64, reason: &str) -> sealtrail_hot::Error {
    sealtrail_hot::Error::Corrupt {
        tenant_id: tenant_id.to_owned(),
        seq,
        reason: reason.to_owned(),
    }
}

/// Whether an append failed on a unique index: with optimistic inserts, an `event_id` that was
/// already stored.
fn is_unique_violation<T>(result: &sealtrail_hot::Result<T>) -> bool {
    sql_state(result) == Some(&SqlState::UNIQUE_VIOLATION)
}

/// The SQLSTATE of a failed store call, if the database answered with one.
fn sql_state<T>(result: &sealtrail_hot::Result<T>) -> Option<&SqlState> {
    let Err(sealtrail_hot::Error::Backend { source, .. }) = result else {
        return None;
    };
    source.downcast_ref::<Error>().and_then(Error::sql_state)
}

/// Whether an append failed because no `events` partition covers a row ("no partition of
/// relation events found for row" is a check violation; the schema has no CHECK constraints).
fn is_missing_partition<T>(result: &sealtrail_hot::Result<T>) -> bool {
    sql_state(result) == Some(&SqlState::CHECK_VIOLATION)
}

/// A reason naming the stored column a value came from (`column actor_type: …`), so that
/// an operator finds the damaged value.
fn column_fault(column: &str, problem: impl std::fmt::Display) -> String {
    format!("column {column}: {problem}")
}

/// A stored hash of `column`; anything but 32 bytes is corruption, never a stand-in.
fn decode_hash(
    tenant_id: &str,
    seq: u64,
    column: &str,
    bytes: Vec<u8>,
) -> sealtrail_hot::Result<Hash> {
    let length = bytes.len();
    bytes.try_into().map_err(|_| {
        corrupt(
            tenant_id,
            seq,
            &column_fault(column, format!("{length} bytes, not 32")),
        )
    })
}

/// A stored chain head (`seq`, `head_hash` of `chain_heads`). A negative `seq` or a hash that is
/// not 32 bytes is corruption, never a default: a stand-in head would be linked to or reported
/// as if it were stored.
pub(crate) fn decode_head(
    tenant_id: &str,
    seq: i64,
    hash: Vec<u8>,
) -> sealtrail_hot::Result<ChainHead> {
    let seq = u64::try_from(seq).map_err(|_| {
        corrupt(
            tenant_id,
            0,
            &column_fault("seq of chain_heads", format!("negative ({seq})")),
        )
    })?;
    Ok(ChainHead {
        seq,
        hash: decode_hash(tenant_id, seq, "head_hash of chain_heads", hash)?,
    })
}

/// The last `seq` under the stored Merkle node `index` of `level`: `(index + 1) << level`.
fn tile_last_seq(level: u8, index: u64) -> u64 {
    index
        .saturating_add(1)
        .checked_shl(u32::from(level))
        .unwrap_or(u64::MAX)
}

/// Columns of `event_ids` that [`existing_from_row`] reads, in order.
const EXISTING_COLUMNS: [&str; 5] = [
    "event_id",
    "seq",
    "content_digest",
    "timestamp_ns",
    "event_hash",
];

/// Reads (event_id, seq, content_digest, timestamp_ns, event_hash) of `event_ids` starting at
/// column `first`. A value that does not decode is an error naming its column: a stand-in
/// digest or hash would answer a retry with a made-up receipt or conflict.
fn existing_from_row(
    row: &Row,
    tenant_id: String,
    first: usize,
) -> sealtrail_hot::Result<ExistingEvent> {
    let fault = |seq: u64, offset: usize, problem: &dyn std::fmt::Display| {
        corrupt(
            &tenant_id,
            seq,
            &column_fault(
                &format!("{} of event_ids", EXISTING_COLUMNS[offset]),
                problem,
            ),
        )
    };
    let seq: i64 = row
        .try_get(first + 1)
        .map_err(|error| fault(0, 1, &error))?;
    let seq = u64::try_from(seq).map_err(|_| fault(0, 1, &format!("negative ({seq})")))?;
    let event_id: String = row.try_get(first).map_err(|error| fault(seq, 0, &error))?;
    let digest: Vec<u8> = row
        .try_get(first + 2)
        .map_err(|error| fault(seq, 2, &error))?;
    let timestamp_ns: i64 = row
        .try_get(first + 3)
        .map_err(|error| fault(seq, 3, &error))?;
    let hash: Vec<u8> = row
        .try_get(first + 4)
        .map_err(|error| fault(seq, 4, &error))?;
    let content_digest = decode_hash(&tenant_id, seq, "content_digest of event_ids", digest)?;
    let event_hash = decode_hash(&tenant_id, seq, "event_hash of event_ids", hash)?;
    Ok(ExistingEvent {
        content_digest,
        timestamp_ns,
        receipt: EventReceipt {
            event_id,
            tenant_id,
            seq,
            event_hash,
        },
    })
}

/// The name of column `index` of [`EVENT_COLUMNS`].
fn event_column(index: usize) -> &'static str {
    EVENT_COLUMNS
        .split(", ")
        .nth(index)
        .expect("an index into EVENT_COLUMNS")
}

/// Column `index` of a row selected with [`EVENT_COLUMNS`]; an error names the column.
fn event_value<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
    tenant_id: &str,
    seq: u64,
) -> sealtrail_hot::Result<T> {
    row.try_get(index)
        .map_err(|error| corrupt(tenant_id, seq, &column_fault(event_column(index), error)))
}

/// Reads a row selected with [`EVENT_COLUMNS`]. A row that cannot be decoded is reported as
/// corrupt, naming its tenant, `seq` and column, never skipped nor filled in: either would hide
/// tampering.
pub(crate) fn stored_event_from_row(row: &Row) -> sealtrail_hot::Result<StoredEvent> {
    let tenant_id: String = event_value(row, 0, "?", 0)?;
    let seq: i64 = event_value(row, 1, &tenant_id, 0)?;
    let seq = u64::try_from(seq).map_err(|_| {
        corrupt(
            &tenant_id,
            0,
            &column_fault("seq", format!("negative ({seq})")),
        )
    })?;
    let value = |index: usize| event_value::<String>(row, index, &tenant_id, seq);
    let optional = |index: usize| event_value::<Option<String>>(row, index, &tenant_id, seq);
    let number = |index: usize| event_value::<i64>(row, index, &tenant_id, seq);
    let hash = |index: usize| {
        let bytes: Vec<u8> = event_value(row, index, &tenant_id, seq)?;
        decode_hash(&tenant_id, seq, event_column(index), bytes)
    };
    let unknown = |index: usize, text: &str| {
        corrupt(
            &tenant_id,
            seq,
            &column_fault(event_column(index), format!("unknown value {text:?}")),
        )
    };
    let actor_type = value(6)?;
    let outcome = value(10)?;
    let event = Event {
        event_id: value(2)?,
        timestamp_ns: number(3)?,
        tenant_id: tenant_id.clone(),
        actor_id: value(5)?,
        actor_type: ActorType::parse(&actor_type).ok_or_else(|| unknown(6, &actor_type))?,
        action: value(7)?,
        resource_type: value(8)?,
        resource_id: optional(9)?,
        outcome: Outcome::parse(&outcome).ok_or_else(|| unknown(10, &outcome))?,
        ip_address: optional(11)?,
        user_agent: optional(12)?,
        request_id: optional(13)?,
        changes: optional(14)?,
        metadata: optional(15)?,
    };
    Ok(StoredEvent {
        event,
        seq,
        received_at_ns: number(4)?,
        prev_hash: hash(16)?,
        event_hash: hash(17)?,
    })
}

fn stored_events(rows: Vec<Row>) -> sealtrail_hot::Result<Vec<StoredEvent>> {
    rows.iter().map(stored_event_from_row).collect()
}

/// The SQL and parameters of a filtered page, mirroring the SQLite store's query.
fn query_sql(query: &EventQuery) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let mut conditions = vec!["tenant_id = $1".to_owned(), NOT_ARCHIVED.to_owned()];
    let mut values: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(query.tenant_id.clone())];
    for (column, value) in query.exact_filters() {
        if let Some(value) = value {
            values.push(Box::new(value.to_owned()));
            conditions.push(format!("{column} = ${}", values.len()));
        }
    }
    for (column, matched) in query.protected_filters() {
        if let Some(matched) = matched {
            values.push(Box::new(matched.plaintext.clone()));
            let plain = values.len();
            match matched.envelope_pattern() {
                Some(pattern) => {
                    values.push(Box::new(pattern));
                    conditions.push(format!(
                        "({column} = ${plain} OR {column} LIKE ${})",
                        values.len()
                    ));
                }
                None => conditions.push(format!("{column} = ${plain}")),
            }
        }
    }
    if let Some(actors) = &query.actor_in {
        values.push(Box::new(actors.clone()));
        conditions.push(format!("actor_id = ANY(${})", values.len()));
    }
    if let Some(from_ns) = query.from_ns {
        values.push(Box::new(from_ns));
        conditions.push(format!("timestamp_ns >= ${}", values.len()));
    }
    if let Some(to_ns) = query.to_ns {
        values.push(Box::new(to_ns));
        conditions.push(format!("timestamp_ns < ${}", values.len()));
    }
    if let Some(after_seq) = query.after_seq {
        // A cursor beyond bigint cannot match anything stored; clamping keeps the comparison
        // meaningful instead of failing the query.
        values.push(Box::new(i64::try_from(after_seq).unwrap_or(i64::MAX)));
        conditions.push(match query.order {
            Order::Asc => format!("seq > ${}", values.len()),
            Order::Desc => format!("seq < ${}", values.len()),
        });
    }
    let direction = match query.order {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    };
    values.push(Box::new(i64::try_from(query.limit).unwrap_or(i64::MAX)));
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE {} ORDER BY seq {direction} LIMIT ${}",
        conditions.join(" AND "),
        values.len()
    );
    (sql, values)
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn append(
        &self,
        batch: Arc<Vec<AppendRequest>>,
    ) -> sealtrail_hot::Result<Vec<AppendOutcome>> {
        let result = self.append_group(&batch).await;
        if !is_missing_partition(&result) {
            return result;
        }
        // A partition this process believed in is gone (a lifecycle job detached it, or an
        // operator dropped it). The transaction rolled back, so nothing was written: forget
        // what we knew, let the retry re-check and re-create, and try once more.
        tracing::warn!("an events partition disappeared; re-creating and retrying the group");
        self.inner.partitions.lock().await.clear();
        self.append_group(&batch).await
    }

    /// Several groups commit at once, each on its own pooled connection: groups of disjoint
    /// tenants run in parallel, and groups sharing a tenant queue on its head row lock (taken in
    /// `tenant_id` order, so they cannot deadlock), exactly as groups from several nodes do.
    fn commit_lanes(&self) -> usize {
        POSTGRES_COMMIT_LANES
    }

    async fn existing(
        &self,
        tenant_id: &str,
        event_ids: Vec<String>,
    ) -> sealtrail_hot::Result<Vec<ExistingEvent>> {
        let rows = self
            .scoped_statement(
                tenant_id,
                Access::Read,
                "SELECT event_id, seq, content_digest, timestamp_ns, event_hash FROM event_ids \
                 WHERE tenant_id = $1 AND event_id = ANY($2)",
                &[&tenant_id, &event_ids as &(dyn ToSql + Sync)],
            )
            .await?;
        rows.iter()
            .map(|row| existing_from_row(row, tenant_id.to_owned(), 0))
            .collect()
    }

    async fn get_event(
        &self,
        tenant_id: &str,
        event_id: &str,
    ) -> sealtrail_hot::Result<Option<StoredEvent>> {
        let rows = self
            .scoped_statement(
                tenant_id,
                Access::Read,
                &GET_EVENT,
                &[&tenant_id, &event_id],
            )
            .await?;
        rows.first().map(stored_event_from_row).transpose()
    }

    async fn query(&self, query: EventQuery) -> sealtrail_hot::Result<Vec<StoredEvent>> {
        let (sql, values) = query_sql(&query);
        let params: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|value| value.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = self
            .scoped_statement(&query.tenant_id, Access::Read, &sql, &params)
            .await?;
        stored_events(rows)
    }

    async fn tenant_heads(&self) -> sealtrail_hot::Result<Vec<(String, Option<ChainHead>)>> {
        let db = |source| self.db(source);
        // Both sources: a tenant whose rows were all deleted still has a head, and a tenant
        // with rows but no head is reported by verification.
        let rows = self
            .scoped_statement(
                ALL_TENANTS,
                Access::Read,
                "SELECT t.tenant_id, h.seq, h.head_hash FROM \
                 (SELECT tenant_id FROM chain_heads UNION SELECT DISTINCT tenant_id FROM events) AS t \
                 LEFT JOIN chain_heads AS h USING (tenant_id) ORDER BY t.tenant_id",
                &[],
            )
            .await?;
        let mut heads = Vec::with_capacity(rows.len());
        for row in rows {
            let tenant_id: String = row.try_get(0).map_err(db)?;
            let seq: Option<i64> = row.try_get(1).map_err(db)?;
            let hash: Option<Vec<u8>> = row.try_get(2).map_err(db)?;
            let head = seq
                .zip(hash)
                .map(|(seq, hash)| decode_head(&tenant_id, seq, hash))
                .transpose()?;
            heads.push((tenant_id, head));
        }
        Ok(heads)
    }

    async fn scan_events(
        &self,
        tenant_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> sealtrail_hot::Result<Vec<StoredEvent>> {
        let after_seq = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .scoped_statement(
                tenant_id,
                Access::Read,
                &SCAN_EVENTS,
                &[&tenant_id, &after_seq, &limit],
            )
            .await?;
        stored_events(rows)
    }

    async fn chain_heads(&self) -> sealtrail_hot::Result<Vec<(String, ChainHead)>> {
        let db = |source| self.db(source);
        let rows = self
            .scoped_statement(
                ALL_TENANTS,
                Access::Read,
                "SELECT tenant_id, seq, head_hash FROM chain_heads ORDER BY tenant_id",
                &[],
            )
            .await?;
        let mut heads = Vec::with_capacity(rows.len());
        for row in rows {
            let tenant_id: String = row.try_get(0).map_err(db)?;
            let seq: i64 = row.try_get(1).map_err(db)?;
            let hash: Vec<u8> = row.try_get(2).map_err(db)?;
            heads.push((tenant_id.clone(), decode_head(&tenant_id, seq, hash)?));
        }
        Ok(heads)
    }
}

#[async_trait]
impl TreeStore for PostgresStore {
    async fn merkle_block(
        &self,
        tenant_id: &str,
        level: u8,
        block: u64,
    ) -> sealtrail_hot::Result<Vec<[u8; 32]>> {
        let db = |source| self.db(source);
        let first = block.saturating_mul(TILE_WIDTH);
        let from = i64::try_from(first).unwrap_or(i64::MAX);
        let to = i64::try_from(first.saturating_add(TILE_WIDTH)).unwrap_or(i64::MAX);
        let rows = if level == 0 {
            // Leaf index i is seq i + 1, so leaves [first, first + 256) are seqs (first, first + 256].
            self.scoped_statement(
                tenant_id,
                Access::Read,
                &MERKLE_LEAVES,
                &[&tenant_id, &from, &to],
            )
            .await?
        } else {
            self.scoped_statement(
                tenant_id,
                Access::Read,
                "SELECT hash FROM merkle_tiles WHERE tenant_id = $1 AND level = $4 \
                 AND idx >= $2 AND idx < $3 ORDER BY idx",
                &[&tenant_id, &from, &to, &i16::from(level)],
            )
            .await?
        };
        rows.iter()
            .enumerate()
            .map(|(offset, row)| {
                let bytes: Vec<u8> = row.try_get(0).map_err(db)?;
                let index = first + offset as u64;
                if level == 0 {
                    decode_hash(tenant_id, index + 1, "event_hash", bytes)
                } else {
                    decode_hash(
                        tenant_id,
                        tile_last_seq(level, index),
                        &format!("hash of merkle_tiles (level {level}, index {index})"),
                        bytes,
                    )
                }
            })
            .collect()
    }
}

#[async_trait]
impl CheckpointStore for PostgresStore {
    async fn insert_checkpoint(
        &self,
        tenant_id: &str,
        checkpoint: StoredCheckpoint,
    ) -> sealtrail_hot::Result<bool> {
        let inserted = self
            .scoped_statement(
                tenant_id,
                Access::Write,
                "INSERT INTO checkpoints (tenant_id, tree_size, root_hash, note, created_at_ns) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, tree_size) DO NOTHING \
                 RETURNING 1",
                &[
                    &tenant_id,
                    &seq_to_sql(checkpoint.tree_size),
                    &&checkpoint.root_hash[..],
                    &checkpoint.note,
                    &checkpoint.created_at_ns,
                ],
            )
            .await?;
        Ok(inserted.len() == 1)
    }

    async fn checkpoint(
        &self,
        tenant_id: &str,
        tree_size: Option<u64>,
    ) -> sealtrail_hot::Result<Option<StoredCheckpoint>> {
        let tree_size = tree_size.map(|size| i64::try_from(size).unwrap_or(i64::MAX));
        self.one_checkpoint(
            tenant_id,
            "SELECT tree_size, root_hash, note, created_at_ns FROM checkpoints \
             WHERE tenant_id = $1 AND ($2::int8 IS NULL OR tree_size = $2) \
             ORDER BY tree_size DESC LIMIT 1",
            tree_size,
        )
        .await
    }

    async fn first_checkpoint_covering(
        &self,
        tenant_id: &str,
        min_tree_size: u64,
    ) -> sealtrail_hot::Result<Option<StoredCheckpoint>> {
        self.one_checkpoint(
            tenant_id,
            "SELECT tree_size, root_hash, note, created_at_ns FROM checkpoints \
             WHERE tenant_id = $1 AND tree_size >= $2::int8 ORDER BY tree_size LIMIT 1",
            Some(i64::try_from(min_tree_size).unwrap_or(i64::MAX)),
        )
        .await
    }
}

const SAMPLING_COLUMNS: &str =
    "tenant_id, day, class, action, kept, seen, stated_kept, stated_seen";

impl PostgresStore {
    /// The `kept`, `sampled_out` and `failed` columns (`int8`) of a summary row, from `first` on.
    fn tally_at(&self, row: &Row, first: usize) -> sealtrail_hot::Result<SummaryTally> {
        let count = |index: usize| -> sealtrail_hot::Result<u64> {
            Ok(row
                .try_get::<_, i64>(index)
                .map_err(|source| self.db(source))? as u64)
        };
        Ok(SummaryTally {
            kept: count(first)?,
            sampled_out: count(first + 1)?,
            failed: count(first + 2)?,
        })
    }

    /// An actor selected as `actor_id, display_name, department, team, attributes`.
    fn actor_from_row(&self, row: &Row) -> sealtrail_hot::Result<Actor> {
        let db = |source| self.db(source);
        Ok(Actor {
            actor_id: row.try_get(0).map_err(db)?,
            display_name: row.try_get(1).map_err(db)?,
            department: row.try_get(2).map_err(db)?,
            team: row.try_get(3).map_err(db)?,
            attributes: row.try_get(4).map_err(db)?,
        })
    }

    fn sampling_count_from_row(&self, row: &Row) -> sealtrail_hot::Result<SamplingCount> {
        let db = |source| self.db(source);
        let tenant_id: String = row.try_get(0).map_err(db)?;
        let class: i16 = row.try_get(2).map_err(db)?;
        let count = |index: usize, column: &str| -> sealtrail_hot::Result<u64> {
            let value: i64 = row.try_get(index).map_err(db)?;
            u64::try_from(value).map_err(|_| {
                corrupt(
                    &tenant_id,
                    0,
                    &column_fault(column, format!("negative ({value})")),
                )
            })
        };
        let class = u8::try_from(class)
            .ok()
            .filter(|class| *class < 4)
            .ok_or_else(|| {
                corrupt(
                    &tenant_id,
                    0,
                    &column_fault(
                        "class of sampling_counts",
                        format!("out of range ({class})"),
                    ),
                )
            })?;
        Ok(SamplingCount {
            tally: SamplingTally {
                kept: count(4, "kept of sampling_counts")?,
                seen: count(5, "seen of sampling_counts")?,
            },
            stated: SamplingTally {
                kept: count(6, "stated_kept of sampling_counts")?,
                seen: count(7, "stated_seen of sampling_counts")?,
            },
            key: SamplingKey {
                day: row.try_get(1).map_err(db)?,
                class,
                action: row.try_get(3).map_err(db)?,
                tenant_id,
            },
        })
    }
}

#[async_trait]
impl SummaryStore for PostgresStore {
    async fn actor_days(
        &self,
        tenant_id: &str,
        filter: ActorDayFilter<'_>,
    ) -> sealtrail_hot::Result<Vec<(ActorDayKey, SummaryTally)>> {
        let db = |source| self.db(source);
        let rows = self
            .scoped_statement(
                tenant_id,
                Access::Read,
                "SELECT day, actor_id, action, resource_type, kept, sampled_out, failed FROM summary_actor_day \
                 WHERE tenant_id = $1 AND ($2::text IS NULL OR day >= $2) AND ($3::text IS NULL OR day <= $3) \
                 AND ($4::text IS NULL OR actor_id = $4) AND ($5::text IS NULL OR action = $5) \
                 ORDER BY day, actor_id, action, resource_type",
                &[
                    &tenant_id,
                    &filter.from_day,
                    &filter.to_day,
                    &filter.actor_id,
                    &filter.action,
                ],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    ActorDayKey {
                        tenant_id: tenant_id.to_owned(),
                        day: row.try_get(0).map_err(db)?,
                        actor_id: row.try_get(1).map_err(db)?,
                        action: row.try_get(2).map_err(db)?,
                        resource_type: row.try_get(3).map_err(db)?,
                    },
                    self.tally_at(row, 4)?,
                ))
            })
            .collect()
    }

    async fn tenant_days(
        &self,
        tenant_id: &str,
        from_day: Option<&str>,
        to_day: Option<&str>,
    ) -> sealtrail_hot::Result<Vec<TenantDay>> {
        let db = |source| self.db(source);
        // sum(bigint) is numeric: cast back, as a day's counts fit.
        let rows = self
            .scoped_statement(
                tenant_id,
                Access::Read,
                "SELECT day, action, sum(kept)::int8, sum(sampled_out)::int8, sum(failed)::int8 \
                 FROM summary_actor_day WHERE tenant_id = $1 AND ($2::text IS NULL OR day >= $2) \
                 AND ($3::text IS NULL OR day <= $3) GROUP BY day, action ORDER BY day, action",
                &[&tenant_id, &from_day, &to_day],
            )
            .await?;
        let rows = rows
            .iter()
            .map(|row| {
                Ok((
                    row.try_get(0).map_err(db)?,
                    row.try_get(1).map_err(db)?,
                    self.tally_at(row, 2)?,
                ))
            })
            .collect::<sealtrail_hot::Result<Vec<_>>>()?;
        Ok(assemble_tenant_days(rows))
    }

    async fn top_actors(
        &self,
        tenant_id: &str,
        from_day: Option<&str>,
        to_day: Option<&str>,
        top: usize,
    ) -> sealtrail_hot::Result<Vec<(String, u64)>> {
        let db = |source| self.db(source);
        let top = i64::try_from(top).unwrap_or(i64::MAX);
        let rows = self
            .scoped_statement(
                tenant_id,
                Access::Read,
                "SELECT actor_id, sum(kept)::int8 AS events FROM summary_actor_day \
                 WHERE tenant_id = $1 AND ($2::text IS NULL OR day >= $2) \
                 AND ($3::text IS NULL OR day <= $3) GROUP BY actor_id HAVING sum(kept) > 0 \
                 ORDER BY events DESC, actor_id LIMIT $4",
                &[&tenant_id, &from_day, &to_day, &top],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let events: i64 = row.try_get(1).map_err(db)?;
                Ok((row.try_get(0).map_err(db)?, events as u64))
            })
            .collect()
    }

    async fn tenant_months(
        &self,
        tenant_id: &str,
        from_month: Option<&str>,
        to_month: Option<&str>,
        top: usize,
    ) -> sealtrail_hot::Result<Vec<TenantMonth>> {
        let db = |source| self.db(source);
        let (from_month, to_month) = (from_month.unwrap_or(""), to_month.unwrap_or("9999-12"));
        let top = i64::try_from(top).unwrap_or(i64::MAX);
        let actions = self
            .scoped_statement(
                tenant_id,
                Access::Read,
                "SELECT month, action, kept, sampled_out, failed FROM summary_month_action \
                 WHERE tenant_id = $1 AND month >= $2 AND month <= $3 ORDER BY month, action",
                &[&tenant_id, &from_month, &to_month],
            )
            .await?;
        let actors = self
            .scoped_statement(
                tenant_id,
                Access::Read,
                "SELECT month, count(*) FROM summary_month_actor \
                 WHERE tenant_id = $1 AND month >= $2 AND month <= $3 GROUP BY month",
                &[&tenant_id, &from_month, &to_month],
            )
            .await?;
        let count = |row: &Row, index: usize| -> sealtrail_hot::Result<u64> {
            Ok(row.try_get::<_, i64>(index).map_err(db)? as u64)
        };
        let actions = actions
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<_, String>(0).map_err(db)?,
                    row.try_get(1).map_err(db)?,
                    self.tally_at(row, 2)?,
                ))
            })
            .collect::<sealtrail_hot::Result<Vec<_>>>()?;
        let actors = actors
            .iter()
            .map(|row| Ok((row.try_get(0).map_err(db)?, count(row, 1)?)))
            .collect::<sealtrail_hot::Result<Vec<_>>>()?;
        let resources = |rows: Vec<Row>| {
            rows.iter()
                .map(|row| {
                    Ok((
                        row.try_get::<_, String>(0).map_err(db)?,
                        row.try_get(1).map_err(db)?,
                        row.try_get(2).map_err(db)?,
                        count(row, 3)?,
                    ))
                })
                .collect::<sealtrail_hot::Result<Vec<(String, String, String, u64)>>>()
        };
        // Each month's top from the partial index on (month, kept DESC, resource) of the
        // resources with two or more events and, only for a month where it holds fewer than
        // `top`, the rest from the resources seen once, in resource order: `top` entries read
        // per month, however many it has. None when none is asked for.
        let mut top_resources = Vec::new();
        if top > 0 {
            top_resources = resources(
                self.scoped_statement(
                    tenant_id,
                    Access::Read,
                    "SELECT m.month, r.resource_type, r.resource_id, r.kept \
                     FROM (SELECT DISTINCT month FROM summary_month_action \
                           WHERE tenant_id = $1 AND month >= $2 AND month <= $3) AS m \
                     CROSS JOIN LATERAL (SELECT resource_type, resource_id, kept FROM summary_resource_month \
                           WHERE tenant_id = $1 AND month = m.month AND kept >= 2 \
                           ORDER BY kept DESC, resource_type, resource_id LIMIT $4) AS r",
                    &[&tenant_id, &from_month, &to_month, &top],
                )
                .await?,
            )?;
            let mut found: BTreeMap<&str, i64> = actions
                .iter()
                .map(|(month, ..)| (month.as_str(), 0))
                .collect();
            for (month, ..) in &top_resources {
                *found.entry(month.as_str()).or_default() += 1;
            }
            let (short, missing): (Vec<&str>, Vec<i64>) = found
                .into_iter()
                .filter(|(_, count)| *count < top)
                .map(|(month, count)| (month, top - count))
                .unzip();
            if !short.is_empty() {
                let rest = resources(
                    self.scoped_statement(
                        tenant_id,
                        Access::Read,
                        "SELECT m.month, r.resource_type, r.resource_id, r.kept \
                         FROM unnest($2::text[], $3::int8[]) AS m(month, missing) \
                         CROSS JOIN LATERAL (SELECT resource_type, resource_id, kept FROM summary_resource_month \
                               WHERE tenant_id = $1 AND month = m.month AND kept = 1 \
                               ORDER BY resource_type, resource_id LIMIT m.missing) AS r",
                        &[&tenant_id, &short, &missing],
                    )
                    .await?,
                )?;
                top_resources.extend(rest);
            }
        }
        // By month, most events first; a stable sort keeps each statement's resource order
        // among equal counts (the once-seen rows come after the month's repeated ones).
        top_resources.sort_by(|a, b| a.0.cmp(&b.0).then(b.3.cmp(&a.3)));
        Ok(assemble_tenant_months(actions, actors, top_resources))
    }

    async fn mark_deleted_days(
        &self,
        tenant_id: &str,
        days: Vec<String>,
    ) -> sealtrail_hot::Result<()> {
        let months: Vec<&str> = days
            .iter()
            .map(|day| &day[..7])
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // One statement: the marks and the revisions they move, in one scoped transaction.
        self.scoped_statement(
            tenant_id,
            Access::Write,
            "WITH marked AS (INSERT INTO summary_deleted_days (tenant_id, day) \
             SELECT $1, * FROM unnest($2::text[]) ON CONFLICT DO NOTHING) \
             INSERT INTO summary_revisions AS r (tenant_id, scope, revision) \
             SELECT $1, *, 1 FROM unnest($3::text[]) \
             ON CONFLICT (tenant_id, scope) DO UPDATE SET revision = r.revision + 1",
            &[&tenant_id, &days, &months],
        )
        .await?;
        Ok(())
    }

    async fn deleted_days(
        &self,
        tenant_id: &str,
        from_day: Option<&str>,
        to_day: Option<&str>,
    ) -> sealtrail_hot::Result<Vec<String>> {
        let rows = self
            .scoped_statement(
                tenant_id,
                Access::Read,
                "SELECT day FROM summary_deleted_days WHERE tenant_id = $1 \
                 AND ($2::text IS NULL OR day >= $2) AND ($3::text IS NULL OR day <= $3) ORDER BY day",
                &[&tenant_id, &from_day, &to_day],
            )
            .await?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(|source| self.db(source)))
            .collect()
    }

    async fn revisions(&self, tenant_id: &str) -> sealtrail_hot::Result<Revisions> {
        let rows = self
            .scoped_statement(
                tenant_id,
                Access::Read,
                "SELECT scope, revision FROM summary_revisions WHERE tenant_id = $1 ORDER BY scope",
                &[&tenant_id],
            )
            .await?;
        let db = |source| self.db(source);
        let revisions = rows
            .iter()
            .map(|row| {
                Ok((
                    row.try_get(0).map_err(db)?,
                    row.try_get::<_, i64>(1).map_err(db)? as u64,
                ))
            })
            .collect::<sealtrail_hot::Result<_>>()?;
        Ok(Revisions(revisions))
    }
}

#[async_trait]
impl DirectoryStore for PostgresStore {
    async fn upsert_actors(
        &self,
        tenant_id: &str,
        actors: Vec<Actor>,
    ) -> sealtrail_hot::Result<u64> {
        let column = |field: fn(&Actor) -> Option<&str>| -> Vec<Option<&str>> {
            actors.iter().map(field).collect()
        };
        let actor_ids: Vec<&str> = actors.iter().map(|actor| actor.actor_id.as_str()).collect();
        let (names, departments, teams, attributes) = (
            column(|actor| actor.display_name.as_deref()),
            column(|actor| actor.department.as_deref()),
            column(|actor| actor.team.as_deref()),
            column(|actor| actor.attributes.as_deref()),
        );
        // One statement: all or none, in one scoped transaction.
        self.scoped_statement(
            tenant_id,
            Access::Write,
            "WITH bump AS (INSERT INTO summary_revisions AS r (tenant_id, scope, revision) \
             VALUES ($1, $7, 1) ON CONFLICT (tenant_id, scope) DO UPDATE SET revision = r.revision + 1) \
             INSERT INTO actors (tenant_id, actor_id, display_name, department, team, attributes) \
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
             ON CONFLICT (tenant_id, actor_id) DO UPDATE SET display_name = excluded.display_name, \
             department = excluded.department, team = excluded.team, attributes = excluded.attributes",
            &[
                &tenant_id,
                &actor_ids,
                &names,
                &departments,
                &teams,
                &attributes,
                &REVISION_SCOPE_ACTORS,
            ],
        )
        .await?;
        Ok(actors.len() as u64)
    }

    async fn actors(&self, tenant_id: &str) -> sealtrail_hot::Result<Vec<Actor>> {
        let rows = self
            .scoped_statement(
                tenant_id,
                Access::Read,
                "SELECT actor_id, display_name, department, team, attributes FROM actors \
                 WHERE tenant_id = $1 ORDER BY actor_id",
                &[&tenant_id],
            )
            .await?;
        rows.iter().map(|row| self.actor_from_row(row)).collect()
    }

    async fn team_members(
        &self,
        tenant_id: &str,
        teams: &[String],
        limit: usize,
    ) -> sealtrail_hot::Result<Vec<String>> {
        let db = |source| self.db(source);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .scoped_statement(
                tenant_id,
                Access::Read,
                "SELECT actor_id FROM actors WHERE tenant_id = $1 AND team = ANY($2) \
                 ORDER BY actor_id LIMIT $3",
                &[&tenant_id, &teams, &limit],
            )
            .await?;
        rows.iter().map(|row| row.try_get(0).map_err(db)).collect()
    }

    async fn actor(&self, tenant_id: &str, actor_id: &str) -> sealtrail_hot::Result<Option<Actor>> {
        let rows = self
            .scoped_statement(
                tenant_id,
                Access::Read,
                "SELECT actor_id, display_name, department, team, attributes FROM actors \
                 WHERE tenant_id = $1 AND actor_id = $2",
                &[&tenant_id, &actor_id],
            )
            .await?;
        rows.first().map(|row| self.actor_from_row(row)).transpose()
    }
}

#[async_trait]
impl SamplingStore for PostgresStore {
    async fn sampling_counts(
        &self,
        tenant_id: &str,
        from_day: Option<&str>,
        to_day: Option<&str>,
    ) -> sealtrail_hot::Result<Vec<SamplingCount>> {
        let sql = format!(
            "SELECT {SAMPLING_COLUMNS} FROM sampling_counts WHERE tenant_id = $1 \
             AND ($2::text IS NULL OR day >= $2) AND ($3::text IS NULL OR day <= $3) \
             ORDER BY day, class, action"
        );
        let rows = self
            .scoped_statement(
                tenant_id,
                Access::Read,
                &sql,
                &[&tenant_id, &from_day, &to_day],
            )
            .await?;
        rows.iter()
            .map(|row| self.sampling_count_from_row(row))
            .collect()
    }

    async fn unstated_sampling_counts(
        &self,
        limit: usize,
    ) -> sealtrail_hot::Result<Vec<SamplingCount>> {
        let sql = format!(
            "SELECT {SAMPLING_COLUMNS} FROM sampling_counts WHERE seen <> stated_seen \
             AND seen <> kept ORDER BY tenant_id, day, class, action LIMIT $1"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .scoped_statement(ALL_TENANTS, Access::Read, &sql, &[&limit])
            .await?;
        rows.iter()
            .map(|row| self.sampling_count_from_row(row))
            .collect()
    }

    async fn mark_sampling_stated(&self, counts: Vec<SamplingCount>) -> sealtrail_hot::Result<()> {
        let tenants: Vec<&str> = counts.iter().map(|c| c.key.tenant_id.as_str()).collect();
        let days: Vec<&str> = counts.iter().map(|c| c.key.day.as_str()).collect();
        let classes: Vec<i16> = counts.iter().map(|c| i16::from(c.key.class)).collect();
        let actions: Vec<&str> = counts.iter().map(|c| c.key.action.as_str()).collect();
        let kept: Vec<i64> = counts.iter().map(|c| c.tally.kept as i64).collect();
        let seen: Vec<i64> = counts.iter().map(|c| c.tally.seen as i64).collect();
        self.scoped_statement(
            ALL_TENANTS,
            Access::Write,
            "UPDATE sampling_counts AS c SET stated_kept = u.kept, stated_seen = u.seen \
             FROM unnest($1::text[], $2::text[], $3::int2[], $4::text[], $5::int8[], $6::int8[]) \
             AS u(tenant_id, day, class, action, kept, seen) \
             WHERE c.tenant_id = u.tenant_id AND c.day = u.day AND c.class = u.class \
             AND c.action = u.action",
            &[&tenants, &days, &classes, &actions, &kept, &seen],
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl SettingsStore for PostgresStore {
    async fn insert_api_key(&self, key: ApiKeyRecord) -> sealtrail_hot::Result<()> {
        self.scoped_statement(
            &key.tenant_id,
            Access::Write,
            "INSERT INTO api_keys (key_id, tenant_id, role, secret_hash, created_at_ns, \
             expires_at_ns, revoked_at_ns, scope) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &key.key_id,
                &key.tenant_id,
                &key.role.as_str(),
                &&key.secret_hash[..],
                &key.created_at_ns,
                &key.expires_at_ns,
                &key.revoked_at_ns,
                &key.scope.as_ref().map(KeyScope::to_text),
            ],
        )
        .await?;
        Ok(())
    }

    async fn find_api_key(&self, key_id: &str) -> sealtrail_hot::Result<Option<ApiKeyRecord>> {
        let db = |source| self.db(source);
        // Keys are looked up before the caller's tenant is known: the one cross-tenant read on
        // the request path, by primary key.
        let rows = self
            .scoped_statement(
                ALL_TENANTS,
                Access::Read,
                "SELECT tenant_id, role, secret_hash, created_at_ns, expires_at_ns, revoked_at_ns, \
                 scope FROM api_keys WHERE key_id = $1",
                &[&key_id],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let tenant_id: String = row.try_get(0).map_err(db)?;
        let role: String = row.try_get(1).map_err(db)?;
        let secret_hash: Vec<u8> = row.try_get(2).map_err(db)?;
        let created_at_ns: i64 = row.try_get(3).map_err(db)?;
        let expires_at_ns: Option<i64> = row.try_get(4).map_err(db)?;
        let revoked_at_ns: Option<i64> = row.try_get(5).map_err(db)?;
        let scope: Option<String> = row.try_get(6).map_err(db)?;
        // A malformed stored key (or scope) authenticates nobody, as in the SQLite store.
        let scope = match scope {
            Some(text) => match KeyScope::from_text(&text) {
                Some(scope) => Some(scope),
                None => return Ok(None),
            },
            None => None,
        };
        Ok(Role::parse(&role)
            .zip(<[u8; 32]>::try_from(secret_hash).ok())
            .map(|(role, secret_hash)| ApiKeyRecord {
                key_id: key_id.to_owned(),
                tenant_id,
                role,
                secret_hash,
                created_at_ns,
                expires_at_ns,
                revoked_at_ns,
                scope,
            }))
    }

    async fn revoke_api_key(
        &self,
        key_id: &str,
        revoked_at_ns: i64,
    ) -> sealtrail_hot::Result<bool> {
        // By key id alone, as `find_api_key` reads it: the server has checked the caller may.
        let rows = self
            .scoped_statement(
                ALL_TENANTS,
                Access::Write,
                "UPDATE api_keys SET revoked_at_ns = COALESCE(revoked_at_ns, $2) \
                 WHERE key_id = $1 RETURNING 1",
                &[&key_id, &revoked_at_ns],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn setting(&self, name: &str) -> sealtrail_hot::Result<Option<Vec<u8>>> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT value FROM settings WHERE name = $1", &[&name])
            .await
            .map_err(|source| self.db(source))?;
        row.map(|row| row.try_get(0))
            .transpose()
            .map_err(|source| self.db(source))
    }

    async fn set_setting_if_absent(
        &self,
        name: &str,
        value: Vec<u8>,
    ) -> sealtrail_hot::Result<bool> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &value],
            )
            .await
            .map_err(|source| self.db(source))?;
        Ok(changed == 1)
    }

    async fn set_setting(&self, name: &str, value: Vec<u8>) -> sealtrail_hot::Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO settings (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                &[&name, &value],
            )
            .await
            .map_err(|source| self.db(source))?;
        Ok(())
    }

    async fn settings_with_prefix(
        &self,
        prefix: &str,
    ) -> sealtrail_hot::Result<Vec<(String, Vec<u8>)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name, value FROM settings WHERE starts_with(name, $1) ORDER BY name",
                &[&prefix],
            )
            .await
            .map_err(|source| self.db(source))?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(|source| self.db(source))
    }

    async fn delete_settings(&self, prefix: &str) -> sealtrail_hot::Result<u64> {
        let client = self.client().await?;
        let deleted = client
            .execute(
                "DELETE FROM settings WHERE starts_with(name, $1)",
                &[&prefix],
            )
            .await
            .map_err(|source| self.db(source))?;
        // A deleted row stays in its page until the space is reused. `VACUUM FULL` writes the
        // (small) table anew and unlinks the old file, so the values are in no file of the
        // table; PostgreSQL's WAL keeps them until its segments are recycled.
        client
            .batch_execute("VACUUM FULL settings")
            .await
            .map_err(|source| self.db(source))?;
        Ok(deleted)
    }
}

#[async_trait]
impl LifecycleStore for PostgresStore {
    async fn hot_prefix_older_than(
        &self,
        tenant_id: &str,
        cutoff_ns: i64,
    ) -> sealtrail_hot::Result<Option<(u64, u64)>> {
        let db = |source| self.db(source);
        // One statement: the hot range, and the first hot event at or after the cutoff (by the
        // (tenant_id, seq) index, in seq order, so the prefix ends before it).
        let rows = self
            .scoped_statement(
                tenant_id,
                Access::Read,
                &HOT_PREFIX,
                &[&tenant_id, &cutoff_ns],
            )
            .await?;
        let row = rows.first().expect("an aggregate returns one row");
        let first: Option<i64> = row.try_get(0).map_err(db)?;
        let last: Option<i64> = row.try_get(1).map_err(db)?;
        let young: Option<i64> = row.try_get(2).map_err(db)?;
        let (Some(first), Some(last)) = (first, last) else {
            return Ok(None);
        };
        let end = young.map_or(last, |young| young - 1);
        Ok((end >= first).then(|| (sql_to_seq(first), sql_to_seq(end))))
    }

    async fn first_hot_seq(&self, tenant_id: &str) -> sealtrail_hot::Result<Option<u64>> {
        let rows = self
            .scoped_statement(tenant_id, Access::Read, &FIRST_HOT_SEQ, &[&tenant_id])
            .await?;
        let first: Option<i64> = rows
            .first()
            .expect("an aggregate returns one row")
            .try_get(0)
            .map_err(|source| self.db(source))?;
        Ok(first.map(sql_to_seq))
    }

    async fn events_in_seq_range(
        &self,
        tenant_id: &str,
        first: u64,
        last: u64,
    ) -> sealtrail_hot::Result<Vec<StoredEvent>> {
        let first = i64::try_from(first).unwrap_or(i64::MAX);
        let last = i64::try_from(last).unwrap_or(i64::MAX);
        let rows = self
            .scoped_statement(
                tenant_id,
                Access::Read,
                &EVENTS_IN_SEQ_RANGE,
                &[&tenant_id, &first, &last],
            )
            .await?;
        stored_events(rows)
    }

    /// Advances the tenant's `archived_through_seq`, which hides the rows from every read at
    /// once, and deletes rows only in partitions writers still use (the current month and
    /// later). Rows in past months stay, invisible, until [`HotStore::reclaim_archived`] drops
    /// their whole partition: a partition can go once every tenant's rows in it are archived,
    /// and deleting them row by row first would cost the very work dropping saves.
    async fn delete_events_through(
        &self,
        tenant_id: &str,
        last_seq: u64,
    ) -> sealtrail_hot::Result<u64> {
        let db = |source| self.db(source);
        let last_seq = i64::try_from(last_seq).unwrap_or(i64::MAX);
        let mut client = self.client().await?;
        let tx = self.begin_scoped(&mut client, tenant_id, false).await?;
        // The head lock orders this with the tenant's group commits and with another lifecycle
        // run; the prefix is clamped to the chain, so it never names a seq not yet written.
        let Some(head) = tx
            .query_opt(
                "SELECT seq, archived_through_seq FROM chain_heads WHERE tenant_id = $1 FOR UPDATE",
                &[&tenant_id],
            )
            .await
            .map_err(db)?
        else {
            return Ok(0);
        };
        let head_seq: i64 = head.try_get(0).map_err(db)?;
        let archived: i64 = head.try_get(1).map_err(db)?;
        let through = last_seq.min(head_seq);
        if through <= archived {
            // Idempotent: this prefix is already out of the hot tier.
            return Ok(0);
        }
        let current_month_start = Month::containing(now_ns()).start_ns();
        let (left, _deleted, _advanced) = futures_util::future::try_join3(
            tx.query_one(
                "SELECT count(*) FROM events WHERE tenant_id = $1 AND seq > $2 AND seq <= $3",
                &[&tenant_id, &archived, &through],
            ),
            tx.execute(
                "DELETE FROM events WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 \
                 AND received_at_ns >= $4",
                &[&tenant_id, &archived, &through, &current_month_start],
            ),
            tx.execute(
                "UPDATE chain_heads SET archived_through_seq = $2 WHERE tenant_id = $1",
                &[&tenant_id, &through],
            ),
        )
        .await
        .map_err(db)?;
        let left: i64 = left.try_get(0).map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(u64::try_from(left).unwrap_or(0))
    }

    async fn lifecycle_lease(
        &self,
    ) -> sealtrail_hot::Result<Option<sealtrail_hot::LifecycleLease>> {
        self.take_lifecycle_lease().await
    }

    fn shared_by_nodes(&self) -> bool {
        true
    }

    async fn reclaim_archived(&self) -> sealtrail_hot::Result<u64> {
        self.drop_archived_partitions().await
    }
}

impl PostgresStore {
    /// Detaches and drops every partition of a past month whose rows are all archived, each in
    /// its own transaction; returns how many went. The check runs twice: once without blocking
    /// anyone (most partitions fail it), and again after `DETACH PARTITION` took its ACCESS
    /// EXCLUSIVE lock on `events`, so no row can have arrived in between. The check is one
    /// index probe per tenant: `archived_through_seq` only grows, and every row of a tenant
    /// has its head row (created in the transaction that writes the tenant's first event).
    /// Partitions of the current month and later are never dropped: writers route rows there.
    pub async fn drop_archived_partitions(&self) -> sealtrail_hot::Result<u64> {
        let db = |source| self.db(source);
        let current = Month::containing(now_ns());
        let names: Vec<String> = self
            .scoped_statement(
                ALL_TENANTS,
                Access::Read,
                "SELECT c.relname::text FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid \
                 WHERE i.inhparent = 'events'::regclass ORDER BY 1",
                &[],
            )
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(db)?;
        let mut dropped = 0;
        for name in names {
            if Month::from_partition_name(&name).is_none_or(|month| month >= current) {
                continue;
            }
            // The name was generated by this crate (checked just above), never taken from input.
            let all_archived = format!(
                "SELECT NOT EXISTS (SELECT 1 FROM chain_heads AS h WHERE EXISTS \
                 (SELECT 1 FROM ONLY {name} AS p WHERE p.tenant_id = h.tenant_id \
                  AND p.seq > h.archived_through_seq))"
            );
            let mut client = self.client().await?;
            let tx = self.begin_scoped(&mut client, ALL_TENANTS, false).await?;
            let ready: bool = tx.query_one(&all_archived, &[]).await.map_err(db)?.get(0);
            if !ready {
                continue;
            }
            tx.batch_execute(&format!("ALTER TABLE events DETACH PARTITION {name}"))
                .await
                .map_err(db)?;
            let still_ready: bool = tx.query_one(&all_archived, &[]).await.map_err(db)?.get(0);
            if !still_ready {
                // Dropping the transaction rolls it back: the partition stays attached.
                continue;
            }
            tx.batch_execute(&format!("DROP TABLE {name}"))
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            self.inner
                .partitions
                .lock()
                .await
                .retain(|month| month.partition_name() != name);
            tracing::info!(partition = %name, "dropped an events partition whose rows are all archived");
            dropped += 1;
        }
        Ok(dropped)
    }
}

static HOT_PREFIX: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT MIN(seq), MAX(seq), MIN(seq) FILTER (WHERE timestamp_ns >= $2) FROM events \
         WHERE tenant_id = $1 AND {NOT_ARCHIVED}"
    )
});

static FIRST_HOT_SEQ: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT MIN(seq) FROM events WHERE tenant_id = $1 AND {NOT_ARCHIVED}")
});

static EVENTS_IN_SEQ_RANGE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND seq >= $2 AND seq <= $3 \
         AND {NOT_ARCHIVED} ORDER BY seq"
    )
});

/// A stored `seq` (never negative: `seq_to_sql` wrote it).
fn sql_to_seq(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_chunks_cover_the_rows_in_powers_of_two() {
        assert_eq!(values_chunks(0), Vec::<usize>::new());
        assert_eq!(values_chunks(1), vec![1]);
        assert_eq!(
            values_chunks(7_000),
            vec![2048, 2048, 2048, 512, 256, 64, 16, 8]
        );
        for rows in [3, 255, 2048, 2049, 20_000] {
            let chunks = values_chunks(rows);
            assert_eq!(chunks.iter().sum::<usize>(), rows);
            assert!(chunks
                .iter()
                .all(|chunk| chunk.is_power_of_two() && *chunk <= VALUES_ROWS_MAX));
        }
        // Every statement stays within PostgreSQL's bound-parameter limit.
        assert!(VALUES_ROWS_MAX * EVENT_INSERT.columns <= 65_535);
    }

    #[test]
    fn values_statements_number_their_parameters_row_by_row() {
        let sql = EVENT_ID_INSERT.sql(2);
        assert!(
            sql.ends_with("VALUES ($1, $2, $3, $4, $5, $6, $7), ($8, $9, $10, $11, $12, $13, $14)")
        );
        assert_eq!(EVENT_INSERT.sql(2048).matches('$').count(), 2048 * 18);
    }

    #[test]
    fn queries_bind_every_filter_in_order() {
        let (sql, values) = query_sql(&EventQuery {
            tenant_id: "acme".into(),
            actor_id: Some("alice".into()),
            action: None,
            resource_type: None,
            resource_id: None,
            request_id: Some("r1".into()),
            outcome: None,
            ip_address: Some(sealtrail_hot::ProtectedMatch {
                plaintext: "10.0.0.1".into(),
                blind_index: Some("ab12".into()),
            }),
            user_agent: None,
            actor_in: None,
            from_ns: Some(1),
            to_ns: Some(2),
            order: Order::Desc,
            after_seq: Some(10),
            limit: 5,
        });
        assert_eq!(values.len(), 9);
        assert!(sql.ends_with(
            "WHERE tenant_id = $1 AND seq > COALESCE((SELECT archived_through_seq FROM chain_heads \
             WHERE tenant_id = $1), 0) AND actor_id = $2 AND request_id = $3 \
             AND (ip_address = $4 OR ip_address LIKE $5) AND timestamp_ns >= $6 \
             AND timestamp_ns < $7 AND seq < $8 ORDER BY seq DESC LIMIT $9"
        ), "{sql}");
    }

    #[test]
    fn event_columns_are_named_in_the_order_rows_are_read() {
        assert_eq!(EVENT_COLUMNS.split(", ").count(), 18);
        assert_eq!(event_column(0), "tenant_id");
        assert_eq!(event_column(6), "actor_type");
        assert_eq!(event_column(7), "action");
        assert_eq!(event_column(14), "changes");
        assert_eq!(event_column(17), "event_hash");
        assert_eq!(EVENT_INSERT.columns, 18);
    }

    #[test]
    fn a_stored_node_names_the_last_seq_it_covers() {
        assert_eq!(tile_last_seq(0, 0), 1);
        assert_eq!(tile_last_seq(8, 0), 256);
        assert_eq!(tile_last_seq(8, 2), 768);
        assert_eq!(tile_last_seq(16, 0), 65_536);
    }

    #[test]
    fn a_database_is_described_without_credentials() {
        let config: tokio_postgres::Config = "postgres://alice:secret@db.example:6543/audit"
            .parse()
            .unwrap();
        assert_eq!(describe(&config).to_string(), "db.example:6543/audit");
    }
}
