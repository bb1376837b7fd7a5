//! The PostgreSQL schema: versioned migrations, the monthly partitions of `events`, and the
//! row-level security policies every tenant table carries.
//!
//! Migrations are numbered and append-only: a released migration is never edited, a change is a
//! new one. `schema_migrations` records which ran. Several nodes may start at once, so every
//! migration and every partition change runs under a transaction-scoped advisory lock.

use sealtrail_model::limits::POSTGRES_PARTITION_MONTHS_AHEAD;
use time::{Date, Month as CalendarMonth, OffsetDateTime};
use tokio_postgres::GenericClient;

/// Advisory lock key serializing migrations across nodes (an arbitrary constant: "sealtrl1").
const MIGRATION_LOCK_KEY: i64 = 0x7365_616c_7472_6c31;
/// Advisory lock key serializing partition creation across nodes ("sealtrl2").
const PARTITION_LOCK_KEY: i64 = 0x7365_616c_7472_6c32;

/// The value of the `sealtrail.tenant_id` setting that scopes a transaction to every tenant, for
/// the service's own cross-tenant work (honoured only for roles with the tables' owner's
/// privileges). The scope value for cross-tenant work: not a valid `tenant_id`, so it never names a tenant.
pub(crate) const ALL_TENANTS: &str = "*";

/// One schema change.
#[derive(Debug)]
pub(crate) struct Migration {
    pub(crate) version: i32,
    pub(crate) description: &'static str,
    pub(crate) sql: &'static str,
}

/// Every migration, in order. The latest version is what this build requires.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "events partitioned by received_at, idempotency keys, chain heads, Merkle tiles, checkpoints, keys, settings, row-level security",
    sql: r#"
-- One row per stored event. Range-partitioned by received_at_ns (monthly partitions, created by
-- the store ahead of time), so old data leaves by detaching or dropping a whole partition.
-- received_at is server-assigned and grows with seq, so a partition holds a contiguous stretch of
-- every tenant's chain; the client's timestamp may lie up to a year in the past and would
-- scatter a chain over many partitions.
CREATE TABLE events (
    tenant_id      text COLLATE "C" NOT NULL,
    seq            bigint NOT NULL,
    event_id       text COLLATE "C" NOT NULL,
    timestamp_ns   bigint NOT NULL,
    received_at_ns bigint NOT NULL,
    actor_id       text NOT NULL,
    actor_type     text NOT NULL,
    action         text NOT NULL,
    resource_type  text NOT NULL,
    resource_id    text,
    outcome        text NOT NULL,
    ip_address     text,
    user_agent     text,
    request_id     text,
    changes        text,
    metadata       text,
    prev_hash      bytea NOT NULL,
    event_hash     bytea NOT NULL
) PARTITION BY RANGE (received_at_ns);
-- The query API reads one tenant in seq order. Not UNIQUE: a unique index on a partitioned table
-- must contain the partition key. seq uniqueness comes from the chain-head lock every append
-- takes, and event_ids below enforces it again.
CREATE INDEX events_tenant_seq ON events (tenant_id, seq);

-- Idempotency keys, unpartitioned so that (tenant_id, event_id) can be a real primary key. Kept
-- in the same transaction as the event row. received_at_ns locates the event's partition (a
-- lookup by event_id prunes to one partition) and lets a lifecycle job prune keys of detached
-- partitions through the cheap BRIN index.
CREATE TABLE event_ids (
    tenant_id      text COLLATE "C" NOT NULL,
    event_id       text COLLATE "C" NOT NULL,
    seq            bigint NOT NULL,
    received_at_ns bigint NOT NULL,
    timestamp_ns   bigint NOT NULL,
    content_digest bytea NOT NULL,
    event_hash     bytea NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX event_ids_received_at ON event_ids USING brin (received_at_ns);

-- Each tenant's last seq and event_hash. Every append locks the rows of its tenants (in
-- tenant_id order) for the length of its transaction: that lock is what keeps chains linear
-- when several nodes write to one database.
-- frontier is the tenant's Merkle compact range at seq (one hash per set bit of seq, largest
-- subtree first), so a writer computes the tiles a group completes without reading any back.
CREATE TABLE chain_heads (
    tenant_id text COLLATE "C" PRIMARY KEY,
    seq       bigint NOT NULL,
    head_hash bytea  NOT NULL,
    frontier  bytea
);

CREATE TABLE api_keys (
    key_id        text COLLATE "C" PRIMARY KEY,
    tenant_id     text COLLATE "C" NOT NULL,
    role          text NOT NULL,
    secret_hash   bytea NOT NULL,
    created_at_ns bigint NOT NULL
);

-- Complete Merkle subtrees at levels 8, 16, 24, ... (one row per 256 events), written in the
-- same transaction as the events that complete them; leaves are events.event_hash.
CREATE TABLE merkle_tiles (
    tenant_id text COLLATE "C" NOT NULL,
    level     smallint NOT NULL,
    idx       bigint NOT NULL,
    hash      bytea NOT NULL,
    PRIMARY KEY (tenant_id, level, idx)
);

-- Signed checkpoints, append-only.
CREATE TABLE checkpoints (
    tenant_id     text COLLATE "C" NOT NULL,
    tree_size     bigint NOT NULL,
    root_hash     bytea NOT NULL,
    note          text NOT NULL,
    created_at_ns bigint NOT NULL,
    PRIMARY KEY (tenant_id, tree_size)
);

-- Platform settings (the admin token's hash): not tenant data, so no row-level security.
CREATE TABLE settings (
    name  text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);

-- Row-level security on every tenant table, forced so that the owner is bound too. A transaction
-- sees a tenant's rows only while sealtrail.tenant_id names that tenant. The service's
-- cross-tenant work (group commit, key lookup, verification) uses the scope '*', which only roles
-- with the privileges of the tables' owner may use: a tenant-scoped role that sets '*' sees
-- nothing.
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON events
    USING (tenant_id = current_setting('sealtrail.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('sealtrail.tenant_id', true));
CREATE POLICY service_scope ON events
    USING (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'events'::regclass), 'USAGE'))
    WITH CHECK (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'events'::regclass), 'USAGE'));

ALTER TABLE event_ids ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_ids FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON event_ids
    USING (tenant_id = current_setting('sealtrail.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('sealtrail.tenant_id', true));
CREATE POLICY service_scope ON event_ids
    USING (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'event_ids'::regclass), 'USAGE'))
    WITH CHECK (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'event_ids'::regclass), 'USAGE'));

ALTER TABLE chain_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE chain_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON chain_heads
    USING (tenant_id = current_setting('sealtrail.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('sealtrail.tenant_id', true));
CREATE POLICY service_scope ON chain_heads
    USING (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'chain_heads'::regclass), 'USAGE'))
    WITH CHECK (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'chain_heads'::regclass), 'USAGE'));

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON api_keys
    USING (tenant_id = current_setting('sealtrail.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('sealtrail.tenant_id', true));
CREATE POLICY service_scope ON api_keys
    USING (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'api_keys'::regclass), 'USAGE'))
    WITH CHECK (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'api_keys'::regclass), 'USAGE'));

ALTER TABLE merkle_tiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE merkle_tiles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON merkle_tiles
    USING (tenant_id = current_setting('sealtrail.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('sealtrail.tenant_id', true));
CREATE POLICY service_scope ON merkle_tiles
    USING (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'merkle_tiles'::regclass), 'USAGE'))
    WITH CHECK (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'merkle_tiles'::regclass), 'USAGE'));

ALTER TABLE checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON checkpoints
    USING (tenant_id = current_setting('sealtrail.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('sealtrail.tenant_id', true));
CREATE POLICY service_scope ON checkpoints
    USING (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'checkpoints'::regclass), 'USAGE'))
    WITH CHECK (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'checkpoints'::regclass), 'USAGE'));
"#,
}, Migration {
    version: 2,
    description: "chain_heads.archived_through_seq: the prefix of each chain moved to the warm tier",
    sql: r#"
-- Each tenant's events with seq <= archived_through_seq are archived: every hot read skips them,
-- so rows waiting in a partition that is not yet dropped are never served twice. Advanced by the
-- lifecycle in the same transaction that removes rows; only ever grows.
ALTER TABLE chain_heads ADD COLUMN archived_through_seq bigint NOT NULL DEFAULT 0;
"#,
}, Migration {
    version: 3,
    description: "api_keys.expires_at_ns and revoked_at_ns: keys may expire and be revoked",
    sql: r#"
-- NULL: the key never expires / was not revoked. A revocation is set once and never cleared.
ALTER TABLE api_keys ADD COLUMN expires_at_ns bigint;
ALTER TABLE api_keys ADD COLUMN revoked_at_ns bigint;
"#,
}, Migration {
    version: 4,
    description: "sampling_counts: kept and seen events per tenant, day, class and action",
    sql: r#"
-- Added to in the group commit of the events they count; stated_* is what the tenant's latest
-- sampling statement said. seen moves whenever kept does, so the partial index finds exactly the
-- statistics a statement has yet to state.
CREATE TABLE sampling_counts (
    tenant_id   text     NOT NULL,
    day         text     NOT NULL,
    class       smallint NOT NULL,
    action      text     NOT NULL,
    kept        bigint   NOT NULL,
    seen        bigint   NOT NULL,
    stated_kept bigint   NOT NULL DEFAULT 0,
    stated_seen bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, class, action)
);
CREATE INDEX sampling_counts_unstated ON sampling_counts (tenant_id, day, class, action)
    WHERE seen <> stated_seen;

ALTER TABLE sampling_counts ENABLE ROW LEVEL SECURITY;
ALTER TABLE sampling_counts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON sampling_counts
    USING (tenant_id = current_setting('sealtrail.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('sealtrail.tenant_id', true));
CREATE POLICY service_scope ON sampling_counts
    USING (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'sampling_counts'::regclass), 'USAGE'))
    WITH CHECK (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'sampling_counts'::regclass), 'USAGE'));
"#,
}, Migration {
    version: 5,
    description: "actors: each tenant's actor directory",
    sql: r#"
CREATE TABLE actors (
    tenant_id    text NOT NULL,
    actor_id     text NOT NULL,
    display_name text,
    department   text,
    team         text,
    attributes   text,
    PRIMARY KEY (tenant_id, actor_id)
);

ALTER TABLE actors ENABLE ROW LEVEL SECURITY;
ALTER TABLE actors FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON actors
    USING (tenant_id = current_setting('sealtrail.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('sealtrail.tenant_id', true));
CREATE POLICY service_scope ON actors
    USING (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'actors'::regclass), 'USAGE'))
    WITH CHECK (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'actors'::regclass), 'USAGE'));
"#,
}, Migration {
    version: 6,
    description: "summary_actor_day and summary_resource_month: summaries kept as events arrive",
    sql: r#"
-- Added to in the group commit of the events they count. Events still in the hot tables are
-- counted in here (as the service role, whose scope reads every tenant).
CREATE TABLE summary_actor_day (
    tenant_id     text   NOT NULL,
    day           text   NOT NULL,
    actor_id      text   NOT NULL,
    action        text   NOT NULL,
    resource_type text   NOT NULL,
    kept          bigint NOT NULL,
    sampled_out   bigint NOT NULL,
    PRIMARY KEY (tenant_id, day, actor_id, action, resource_type)
);
CREATE TABLE summary_resource_month (
    tenant_id     text   NOT NULL,
    month         text   NOT NULL,
    resource_type text   NOT NULL,
    resource_id   text   NOT NULL,
    kept          bigint NOT NULL,
    PRIMARY KEY (tenant_id, month, resource_type, resource_id)
);
ALTER TABLE summary_actor_day ENABLE ROW LEVEL SECURITY;
ALTER TABLE summary_actor_day FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON summary_actor_day
    USING (tenant_id = current_setting('sealtrail.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('sealtrail.tenant_id', true));
CREATE POLICY service_scope ON summary_actor_day
    USING (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'summary_actor_day'::regclass), 'USAGE'))
    WITH CHECK (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'summary_actor_day'::regclass), 'USAGE'));

ALTER TABLE summary_resource_month ENABLE ROW LEVEL SECURITY;
ALTER TABLE summary_resource_month FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON summary_resource_month
    USING (tenant_id = current_setting('sealtrail.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('sealtrail.tenant_id', true));
CREATE POLICY service_scope ON summary_resource_month
    USING (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'summary_resource_month'::regclass), 'USAGE'))
    WITH CHECK (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'summary_resource_month'::regclass), 'USAGE'));

SET LOCAL sealtrail.tenant_id = '*';
INSERT INTO summary_actor_day
    SELECT tenant_id, to_char(to_timestamp(timestamp_ns / 1000000000) AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
           actor_id, action, resource_type, count(*), 0
    FROM events GROUP BY 1, 2, 3, 4, 5;
INSERT INTO summary_resource_month
    SELECT tenant_id, to_char(to_timestamp(timestamp_ns / 1000000000) AT TIME ZONE 'UTC', 'YYYY-MM'),
           resource_type, resource_id, count(*)
    FROM events WHERE resource_id IS NOT NULL GROUP BY 1, 2, 3, 4;
"#,
}, Migration {
    version: 7,
    description: "summary_revisions and summary_deleted_days: the result cache's stamps, retention's marks",
    sql: r#"
-- Moved in the transaction of every change to a month's events and summaries, or to the actor
-- directory (scope 'actors'): the stamp of the query result cache, the same on every node.
CREATE TABLE summary_revisions (
    tenant_id text   NOT NULL,
    scope     text   NOT NULL,
    revision  bigint NOT NULL,
    PRIMARY KEY (tenant_id, scope)
);
ALTER TABLE summary_revisions ENABLE ROW LEVEL SECURITY;
ALTER TABLE summary_revisions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON summary_revisions
    USING (tenant_id = current_setting('sealtrail.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('sealtrail.tenant_id', true));
CREATE POLICY service_scope ON summary_revisions
    USING (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'summary_revisions'::regclass), 'USAGE'))
    WITH CHECK (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'summary_revisions'::regclass), 'USAGE'));

-- Month rollups, added to in the group commit beside the actor days, so a month report reads a
-- row per action, a row per actor and the top of an index instead of every actor day.
CREATE TABLE summary_month_action (
    tenant_id   text   NOT NULL,
    month       text   NOT NULL,
    action      text   NOT NULL,
    kept        bigint NOT NULL,
    sampled_out bigint NOT NULL,
    PRIMARY KEY (tenant_id, month, action)
);
CREATE TABLE summary_month_actor (
    tenant_id text NOT NULL,
    month     text NOT NULL,
    actor_id  text NOT NULL,
    PRIMARY KEY (tenant_id, month, actor_id)
);
-- Only resources with two or more events: the long tail of resources seen once (most of them,
-- in most months) costs the index nothing, and ranks after every indexed one.
CREATE INDEX summary_resource_month_top
    ON summary_resource_month (tenant_id, month, kept DESC, resource_type, resource_id)
    WHERE kept >= 2;

ALTER TABLE summary_month_action ENABLE ROW LEVEL SECURITY;
ALTER TABLE summary_month_action FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON summary_month_action
    USING (tenant_id = current_setting('sealtrail.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('sealtrail.tenant_id', true));
CREATE POLICY service_scope ON summary_month_action
    USING (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'summary_month_action'::regclass), 'USAGE'))
    WITH CHECK (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'summary_month_action'::regclass), 'USAGE'));
ALTER TABLE summary_month_actor ENABLE ROW LEVEL SECURITY;
ALTER TABLE summary_month_actor FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON summary_month_actor
    USING (tenant_id = current_setting('sealtrail.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('sealtrail.tenant_id', true));
CREATE POLICY service_scope ON summary_month_actor
    USING (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'summary_month_actor'::regclass), 'USAGE'))
    WITH CHECK (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'summary_month_actor'::regclass), 'USAGE'));

SET LOCAL sealtrail.tenant_id = '*';
INSERT INTO summary_month_action
    SELECT tenant_id, substr(day, 1, 7), action, sum(kept), sum(sampled_out)
    FROM summary_actor_day GROUP BY 1, 2, 3;
INSERT INTO summary_month_actor
    SELECT DISTINCT tenant_id, substr(day, 1, 7), actor_id FROM summary_actor_day WHERE kept > 0;

-- The days whose events retention deleted: their summaries stay, marked.
CREATE TABLE summary_deleted_days (
    tenant_id text NOT NULL,
    day       text NOT NULL,
    PRIMARY KEY (tenant_id, day)
);
ALTER TABLE summary_deleted_days ENABLE ROW LEVEL SECURITY;
ALTER TABLE summary_deleted_days FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON summary_deleted_days
    USING (tenant_id = current_setting('sealtrail.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('sealtrail.tenant_id', true));
CREATE POLICY service_scope ON summary_deleted_days
    USING (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'summary_deleted_days'::regclass), 'USAGE'))
    WITH CHECK (current_setting('sealtrail.tenant_id', true) = '*'
           AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'summary_deleted_days'::regclass), 'USAGE'));
"#,
}, Migration {
    version: 8,
    description: "api_keys.scope: the actor or teams a self or team_admin key reads",
    sql: r#"
-- JSON (sealtrail_hot::KeyScope); NULL for the roles that read the whole tenant or nothing.
ALTER TABLE api_keys ADD COLUMN scope text;
"#,
}, Migration {
    version: 9,
    description: "actors_team: a team_admin scope reads its teams' members through an index",
    sql: r#"
CREATE INDEX actors_team ON actors (tenant_id, team, actor_id);
"#,
}, Migration {
    version: 10,
    description: "summary failed counts: stored events whose outcome is failure",
    sql: r#"
-- Events still in the hot tier are counted in here (as when the summaries began); failures
-- archived before this migration are not.
ALTER TABLE summary_actor_day ADD COLUMN failed bigint NOT NULL DEFAULT 0;
ALTER TABLE summary_month_action ADD COLUMN failed bigint NOT NULL DEFAULT 0;
SET LOCAL sealtrail.tenant_id = '*';
UPDATE summary_actor_day AS s SET failed = f.n
FROM (SELECT tenant_id,
             to_char(to_timestamp(timestamp_ns / 1000000000) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
             actor_id, action, resource_type, count(*) AS n
      FROM events WHERE outcome = 'failure' GROUP BY 1, 2, 3, 4, 5) AS f
WHERE s.tenant_id = f.tenant_id AND s.day = f.day AND s.actor_id = f.actor_id
  AND s.action = f.action AND s.resource_type = f.resource_type;
UPDATE summary_month_action AS m SET failed = f.n
FROM (SELECT tenant_id, substr(day, 1, 7) AS month, action, sum(failed) AS n
      FROM summary_actor_day GROUP BY 1, 2, 3) AS f
WHERE m.tenant_id = f.tenant_id AND m.month = f.month AND m.action = f.action;
"#,
}];

/// The schema version this build requires.
pub(crate) fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |migration| migration.version)
}

/// Applies every migration not yet recorded, each in its own transaction under the migration
/// lock, so nodes starting together apply each exactly once.
pub(crate) async fn migrate(
    client: &mut tokio_postgres::Client,
) -> Result<(), tokio_postgres::Error> {
    {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version     integer PRIMARY KEY,
                 description text NOT NULL,
                 applied_at  timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
        tx.commit().await?;
    }
    for migration in MIGRATIONS {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await?;
        let applied = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[&migration.version],
            )
            .await?
            .is_some();
        if !applied {
            tx.batch_execute(migration.sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
                &[&migration.version, &migration.description],
            )
            .await?;
            tracing::info!(
                version = migration.version,
                description = migration.description,
                "applied PostgreSQL migration"
            );
        }
        tx.commit().await?;
    }
    Ok(())
}

/// The highest recorded migration, or 0 for a database Sealtrail never ran on.
pub(crate) async fn applied_version(
    client: &impl GenericClient,
) -> Result<i32, tokio_postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let version: Option<i32> = client
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await?
        .get(0);
    Ok(version.unwrap_or(0))
}

/// A calendar month (UTC), the unit of `events` partitioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Month {
    year: i32,
    /// 1 to 12.
    month: u8,
}

impl Month {
    /// The month (UTC) holding the instant `ns` nanoseconds after the Unix epoch.
    pub(crate) fn containing(ns: i64) -> Month {
        // Every i64 nanosecond count (years 1677 to 2262) is a valid OffsetDateTime.
        let instant = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
            .expect("i64 nanoseconds are within OffsetDateTime's range");
        Month {
            year: instant.year(),
            month: u8::from(instant.month()),
        }
    }

    pub(crate) fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The first nanosecond of the month. Saturates at the ends of the i64 range, which only
    /// the months of 1677 and 2262 touch.
    pub(crate) fn start_ns(self) -> i64 {
        let month = CalendarMonth::try_from(self.month).expect("month is 1 to 12 by construction");
        let first = Date::from_calendar_date(self.year, month, 1)
            .expect("the first of a month is a valid date");
        let ns = first.midnight().assume_utc().unix_timestamp_nanos();
        i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
    }

    /// The month of a partition named by [`Month::partition_name`]; `None` for any other name
    /// (a table an operator attached by hand is never dropped by the lifecycle).
    pub(crate) fn from_partition_name(name: &str) -> Option<Month> {
        let rest = name.strip_prefix("events_")?;
        let (year, month) = rest.split_once('_')?;
        if year.len() != 4 || month.len() != 2 {
            return None;
        }
        let month = Month {
            year: year.parse().ok()?,
            month: month.parse().ok()?,
        };
        (1..=12).contains(&month.month).then_some(month)
    }

    /// The partition's table name, e.g. `events_2026_01`.
    pub(crate) fn partition_name(self) -> String {
        format!("events_{:04}_{:02}", self.year, self.month)
    }

    /// This month and the [`POSTGRES_PARTITION_MONTHS_AHEAD`] after it.
    pub(crate) fn with_months_ahead(self) -> impl Iterator<Item = Month> {
        std::iter::successors(Some(self), |month| Some(month.next()))
            .take(1 + POSTGRES_PARTITION_MONTHS_AHEAD as usize)
    }
}

/// Row-level security for one partition. Partitions do not inherit their parent's policies; a
/// query through `events` applies the parent's, and these make a query naming the partition
/// directly just as tight.
fn partition_security_sql(name: &str) -> String {
    let visible_service = "current_setting('sealtrail.tenant_id', true) = '*' \
         AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'events'::regclass), 'USAGE')";
    let visible_tenant = "tenant_id = current_setting('sealtrail.tenant_id', true)";
    format!(
        "ALTER TABLE {name} ENABLE ROW LEVEL SECURITY;
         ALTER TABLE {name} FORCE ROW LEVEL SECURITY;
         CREATE POLICY tenant_scope ON {name} USING ({visible_tenant}) WITH CHECK ({visible_tenant});
         CREATE POLICY service_scope ON {name} USING ({visible_service}) WITH CHECK ({visible_service});"
    )
}

/// Creates the partitions of `months` that do not exist yet, in one transaction. Each is created
/// as a plain table and then attached: `ATTACH PARTITION` takes only a SHARE UPDATE EXCLUSIVE
/// lock on `events`, so it does not wait for, or block, other nodes' inserts and queries
/// (`CREATE TABLE … PARTITION OF` would take ACCESS EXCLUSIVE).
pub(crate) async fn create_partitions(
    client: &mut tokio_postgres::Client,
    months: &[Month],
) -> Result<Vec<Month>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK_KEY])
        .await?;
    let mut created = Vec::new();
    for &month in months {
        let name = month.partition_name();
        let exists: bool = tx
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
            .await?
            .get(0);
        if exists {
            continue;
        }
        let (from_ns, to_ns) = (month.start_ns(), month.next().start_ns());
        // Names and bounds are generated here from integers, never from input.
        tx.batch_execute(&format!(
            "CREATE TABLE {name} (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
             {security}
             ALTER TABLE events ATTACH PARTITION {name} FOR VALUES FROM ({from_ns}) TO ({to_ns});",
            security = partition_security_sql(&name),
        ))
        .await?;
        created.push(month);
    }
    tx.commit().await?;
    if !created.is_empty() {
        tracing::info!(?created, "created events partitions");
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS_PER_SEC: i64 = 1_000_000_000;

    #[test]
    fn month_boundaries_are_utc_midnights_of_the_first() {
        // 2026-01-15T09:30:00Z, the test-vector timestamp.
        let january = Month::containing(1_768_469_400 * NS_PER_SEC);
        assert_eq!(january.partition_name(), "events_2026_01");
        assert_eq!(january.start_ns(), 1_767_225_600 * NS_PER_SEC);
        assert_eq!(january.next().start_ns(), 1_769_904_000 * NS_PER_SEC);
        // The last nanosecond of a month belongs to it, the next one to the next month.
        let february = january.next();
        assert_eq!(Month::containing(february.start_ns() - 1), january);
        assert_eq!(Month::containing(february.start_ns()), february);
    }

    #[test]
    fn december_rolls_over_and_months_ahead_are_consecutive() {
        let december = Month::containing(1_796_083_200 * NS_PER_SEC); // 2026-12-01T00:00:00Z
        assert_eq!(december.partition_name(), "events_2026_12");
        let names: Vec<String> = december
            .with_months_ahead()
            .map(Month::partition_name)
            .collect();
        assert_eq!(names.len(), 1 + POSTGRES_PARTITION_MONTHS_AHEAD as usize);
        assert_eq!(names[1], "events_2027_01");
        assert_eq!(december.next().start_ns(), 1_798_761_600 * NS_PER_SEC);
    }

    #[test]
    fn instants_before_the_epoch_and_at_the_ends_of_i64_have_a_month() {
        let before_epoch = Month::containing(-1);
        assert_eq!(before_epoch.partition_name(), "events_1969_12");
        assert_eq!(before_epoch.next().start_ns(), 0);
        assert_eq!(Month::containing(i64::MIN).start_ns(), i64::MIN);
        assert_eq!(Month::containing(i64::MAX).next().start_ns(), i64::MAX);
    }

    #[test]
    fn partition_names_round_trip_and_nothing_else_parses() {
        let january = Month::containing(1_768_469_400 * NS_PER_SEC);
        assert_eq!(
            Month::from_partition_name(&january.partition_name()),
            Some(january)
        );
        for name in [
            "events_2026_13",
            "events_2026_1",
            "events_x_01",
            "events",
            "other_2026_01",
        ] {
            assert_eq!(Month::from_partition_name(name), None, "{name}");
        }
    }

    #[test]
    fn migrations_are_numbered_one_up_without_gaps() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version as usize, index + 1);
        }
        assert_eq!(latest_version() as usize, MIGRATIONS.len());
    }
}
