//! The hot tier: recent events, written by the ingest pipeline and read by the query API.
//!
//! [`HotStore`] is the boundary every backend implements (SQLite here, embedded and the default;
//! PostgreSQL for production). The pipeline above it owns batching and backpressure; a store owns
//! atomicity, durability and the tenant chains. API boundary: nothing above this crate sees SQL.

pub mod conformance;
mod error;
pub mod plan;
mod verify;

use std::sync::Arc;

use async_trait::async_trait;
use sealtrail_ledger::{ChainHead, MerkleFrontier};
use sealtrail_model::{Actor, EventReceipt, PendingEvent, StoredEvent};

pub use error::{Error, Result};
pub use sealtrail_ledger::{TenantFault, TenantReport};
pub use verify::{
    verify_log, verify_store, ArchivedEvents, LogSource, NoArchive, TenantSnapshot, Witness,
};

/// One client request's events: committed together or not at all.
pub type AppendRequest = Vec<PendingEvent>;

/// What became of one [`AppendRequest`] in a group commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Every kept event is durably stored; one receipt per kept event, in request order (an
    /// event the capture policy dropped gets none). An event whose `event_id` was already stored
    /// with the same content gets the stored receipt.
    Committed(Vec<EventReceipt>),
    /// The event at `index` reuses a stored `event_id` with different content; nothing of the
    /// request was written.
    Conflict { index: usize, event_id: String },
}

/// Sort order of a query, by `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// A filtered page of one tenant's events. Every filter is an exact match except the half-open
/// time range `[from_ns, to_ns)` on `timestamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    pub tenant_id: String,
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub request_id: Option<String>,
    pub outcome: Option<String>,
    /// Equality on fields a tenant may encrypt: the plaintext, or an envelope carrying its blind
    /// index (docs/PRIVACY.md).
    pub ip_address: Option<ProtectedMatch>,
    pub user_agent: Option<ProtectedMatch>,
    /// Only events of these actors (the caller's access scope: a `self` or `team_admin`
    /// reader); `None` is every actor, an empty list none.
    pub actor_in: Option<Vec<String>>,
    pub from_ns: Option<i64>,
    pub to_ns: Option<i64>,
    pub order: Order,
    /// Continue strictly after this `seq` in `order` (the cursor).
    pub after_seq: Option<u64>,
    pub limit: usize,
}

impl EventQuery {
    /// Every event of a tenant, newest first, in pages of
    /// [`QUERY_LIMIT_DEFAULT`](sealtrail_model::limits::QUERY_LIMIT_DEFAULT): no filter, no
    /// cursor.
    pub fn for_tenant(tenant_id: &str) -> Self {
        EventQuery {
            tenant_id: tenant_id.to_owned(),
            actor_id: None,
            action: None,
            resource_type: None,
            resource_id: None,
            request_id: None,
            outcome: None,
            ip_address: None,
            user_agent: None,
            actor_in: None,
            from_ns: None,
            to_ns: None,
            order: Order::Desc,
            after_seq: None,
            limit: sealtrail_model::limits::QUERY_LIMIT_DEFAULT,
        }
    }

    /// The exact-match filters with their column names, for a backend to turn into its own
    /// predicates.
    pub fn exact_filters(&self) -> [(&'static str, Option<&str>); 6] {
        [
            ("actor_id", self.actor_id.as_deref()),
            ("action", self.action.as_deref()),
            ("resource_type", self.resource_type.as_deref()),
            ("resource_id", self.resource_id.as_deref()),
            ("request_id", self.request_id.as_deref()),
            ("outcome", self.outcome.as_deref()),
        ]
    }

    /// The equality filters on fields a tenant may encrypt, with their column names.
    pub fn protected_filters(&self) -> [(&'static str, Option<&ProtectedMatch>); 2] {
        [
            ("ip_address", self.ip_address.as_ref()),
            ("user_agent", self.user_agent.as_ref()),
        ]
    }
}

/// An equality filter on a field a tenant may encrypt: a row matches when the column holds
/// `plaintext` (an event stored before encryption was turned on, or of a tenant without it), or
/// an envelope whose blind index is `blind_index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedMatch {
    pub plaintext: String,
    /// Lowercase hex, computed with the tenant's index key; `None` when it has none.
    pub blind_index: Option<String>,
}

impl ProtectedMatch {
    /// A `LIKE` pattern matching exactly the envelopes that carry the blind index: the index
    /// is hex, so holds no `LIKE` wildcard, and is the component after `cipher:<key id>:`.
    pub fn envelope_pattern(&self) -> Option<String> {
        self.blind_index
            .as_ref()
            .map(|index| format!("{}%:cipher:%:{index}:%", sealtrail_model::SEALED_PREFIX))
    }
}

/// The key of one sampling statistic: a tenant's events of one class and action on one UTC day
/// (`YYYY-MM-DD`, of the event's `timestamp`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SamplingKey {
    pub tenant_id: String,
    pub day: String,
    pub class: u8,
    pub action: String,
}

/// Events seen (delivered with a capture decision) and kept (stored) under one [`SamplingKey`].
/// A retry of a kept event counts once; each delivery of a dropped event counts, because a
/// dropped event leaves no key to recognise it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SamplingTally {
    pub kept: u64,
    pub seen: u64,
}

/// One stored sampling statistic, with what the latest sampling statement of the tenant said
/// about it (the statement task states every statistic whose counts moved since).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplingCount {
    pub key: SamplingKey,
    pub tally: SamplingTally,
    pub stated: SamplingTally,
}

/// What the store knows of an already stored `event_id`, for idempotency checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingEvent {
    pub content_digest: [u8; 32],
    pub timestamp_ns: i64,
    pub receipt: EventReceipt,
}

/// A signed checkpoint of a tenant's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub tree_size: u64,
    pub root_hash: [u8; 32],
    /// The C2SP signed note, exactly as served.
    pub note: String,
    pub created_at_ns: i64,
}

/// Roles an API key can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Ingest,
    /// The whole tenant's audit data (the security admin's level; `security_admin` is the
    /// same role).
    Reader,
    Admin,
    /// One actor's own events (`self`); the key's [`KeyScope::Actor`] names the actor.
    Actor,
    /// The events of the actors in the key's teams (`team_admin`), by the actor directory.
    TeamAdmin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Reader => "reader",
            Role::Admin => "admin",
            Role::Actor => "self",
            Role::TeamAdmin => "team_admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ingest" => Some(Role::Ingest),
            "reader" | "security_admin" => Some(Role::Reader),
            "admin" => Some(Role::Admin),
            "self" => Some(Role::Actor),
            "team_admin" => Some(Role::TeamAdmin),
            _ => None,
        }
    }
}

/// A stored API key: only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub tenant_id: String,
    pub role: Role,
    pub secret_hash: [u8; 32],
    pub created_at_ns: i64,
    /// When the key stops authenticating (`None`: never).
    pub expires_at_ns: Option<i64>,
    /// When the key was revoked (`None`: it was not). Set once; a later revocation keeps it.
    pub revoked_at_ns: Option<i64>,
    /// Whose events the key reads, for the roles that read less than the tenant.
    pub scope: Option<KeyScope>,
}

/// The part of a tenant a `self` or `team_admin` key reads. Stored as JSON text beside the
/// key (`{"actor":"alice"}`, `{"teams":["payments"]}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyScope {
    /// One actor's own events.
    Actor(String),
    /// The events of every actor the directory places in one of these teams.
    Teams(Vec<String>),
}

impl KeyScope {
    /// The stored text.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The stored text read back; `None` if it does not decode.
    pub fn from_text(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

// The hot-tier storage contract, by concern. A backend implements each part (SQLite and
// PostgreSQL pass the same conformance tests); `HotStore` is all of them, for the server. Code
// that needs one concern takes that trait alone, so a test double implements only what it uses.

/// Events: the group commit, idempotency keys, and reads of one tenant's hot events and heads.
#[async_trait]
pub trait EventStore: Send + Sync + std::fmt::Debug {
    /// Appends every request of a group commit in one transaction, linking each event into its
    /// tenant's chain (`seq`, `prev_hash`, `event_hash`).
    ///
    /// MUST NOT return `Ok` unless every committed event is durable (fsynced). A conflict fails
    /// only its own request. On `Err` nothing of the batch is stored.
    async fn append(&self, batch: Arc<Vec<AppendRequest>>) -> Result<Vec<AppendOutcome>>;

    /// How many [`append`](EventStore::append) calls the write pipeline may run at once. Calls
    /// that run together MUST still produce linear chains (a store serializes groups sharing a
    /// tenant itself, e.g. by row locks taken in a fixed order so that they cannot deadlock).
    /// The default, 1, suits a store with a single writer connection.
    fn commit_lanes(&self) -> usize {
        1
    }

    /// The stored events with these `event_id`s in one tenant, for idempotency checks before
    /// an async request is acknowledged.
    async fn existing(&self, tenant_id: &str, event_ids: Vec<String>)
        -> Result<Vec<ExistingEvent>>;

    async fn get_event(&self, tenant_id: &str, event_id: &str) -> Result<Option<StoredEvent>>;

    async fn query(&self, query: EventQuery) -> Result<Vec<StoredEvent>>;

    /// Every tenant with events or a recorded chain head, with that head (`None` if the head
    /// row is missing, which verification reports).
    async fn tenant_heads(&self) -> Result<Vec<(String, Option<ChainHead>)>>;

    /// Up to `limit` of a tenant's events with `seq > after_seq`, ascending. A row that cannot
    /// be decoded is an [`Error::Corrupt`] naming its `seq`, never skipped.
    async fn scan_events(
        &self,
        tenant_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;

    /// Every tenant's recorded chain head (cheap: one row per tenant).
    async fn chain_heads(&self) -> Result<Vec<(String, ChainHead)>>;
}

/// The stored Merkle tree: tiles, and the frontier kept beside each chain head.
#[async_trait]
pub trait TreeStore: Send + Sync + std::fmt::Debug {
    /// Block `block` of stored Merkle level `level` (a multiple of
    /// [`sealtrail_ledger::TILE_HEIGHT`]): up to 256 consecutive stored nodes, fewer at the end.
    /// Level 0 is the events' `event_hash` by `seq`. The store MUST write every tile that
    /// [`sealtrail_ledger::completed_tiles`] names in the same transaction as the events that
    /// complete it.
    async fn merkle_block(&self, tenant_id: &str, level: u8, block: u64) -> Result<Vec<[u8; 32]>>;

    /// Tenants whose chain head has no stored Merkle frontier, with the head's `seq`: heads
    /// written before frontiers were kept. A store that always keeps one has none (the default).
    async fn heads_without_frontier(&self) -> Result<Vec<(String, u64)>> {
        Ok(Vec::new())
    }

    /// Stores the frontier of a head that has none, rebuilt by the caller from wherever the
    /// leaves live (the archive, for leaves the lifecycle moved before frontiers were kept).
    /// MUST store nothing unless the head is still at `frontier.tree_size()` without a frontier.
    async fn restore_frontier(&self, _tenant_id: &str, _frontier: MerkleFrontier) -> Result<()> {
        Ok(())
    }
}

/// Signed checkpoints, append-only.
#[async_trait]
pub trait CheckpointStore: Send + Sync + std::fmt::Debug {
    /// Stores a signed checkpoint; returns false if one of that size already exists (kept as is:
    /// checkpoints are append-only).
    async fn insert_checkpoint(
        &self,
        tenant_id: &str,
        checkpoint: StoredCheckpoint,
    ) -> Result<bool>;

    /// The checkpoint of that tree size, or the latest when `tree_size` is `None`.
    async fn checkpoint(
        &self,
        tenant_id: &str,
        tree_size: Option<u64>,
    ) -> Result<Option<StoredCheckpoint>>;

    /// The smallest checkpoint with `tree_size >= min_tree_size` (the first signed tree that
    /// covers an event). The default answers the latest when it is large enough; a store that
    /// can search its checkpoints does better.
    async fn first_checkpoint_covering(
        &self,
        tenant_id: &str,
        min_tree_size: u64,
    ) -> Result<Option<StoredCheckpoint>> {
        Ok(self
            .checkpoint(tenant_id, None)
            .await?
            .filter(|latest| latest.tree_size >= min_tree_size))
    }
}

/// API keys and named server settings (policies, the admin token's hash).
#[async_trait]
pub trait SettingsStore: Send + Sync + std::fmt::Debug {
    async fn insert_api_key(&self, key: ApiKeyRecord) -> Result<()>;

    async fn find_api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>>;

    /// Revokes a key at `revoked_at_ns`: every lookup after this returns it with
    /// `revoked_at_ns` set, on every instance of the store. Idempotent (a key revoked earlier
    /// keeps its first revocation time); `Ok(false)` if no key has this id.
    async fn revoke_api_key(&self, key_id: &str, revoked_at_ns: i64) -> Result<bool>;

    /// Reads a named server setting (such as the admin token's hash).
    async fn setting(&self, name: &str) -> Result<Option<Vec<u8>>>;

    /// Stores a setting unless one of that name exists; returns whether it was stored.
    async fn set_setting_if_absent(&self, name: &str, value: Vec<u8>) -> Result<bool>;

    /// Stores a setting, replacing any value of that name (per-tenant policies such as
    /// retention). MUST NOT return `Ok` before the value is durable.
    async fn set_setting(&self, name: &str, value: Vec<u8>) -> Result<()>;

    /// Every setting whose name starts with `prefix`, by name (the keys of a tenant's vault).
    async fn settings_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>>;

    /// Deletes every setting whose name starts with `prefix`, returning how many. This is how a
    /// key is destroyed: before `Ok`, the deleted values MUST be gone from the store's own files
    /// as far as the backend allows (SQLite: zeroed pages and a truncated WAL; PostgreSQL: the
    /// table rewritten, so its old file is unlinked).
    async fn delete_settings(&self, prefix: &str) -> Result<u64>;
}

/// Moving events out of the hot tier (`sealtrail-archive`'s lifecycle).
#[async_trait]
pub trait LifecycleStore: Send + Sync + std::fmt::Debug {
    // Moving events out of the hot tier (`sealtrail-archive`'s lifecycle). The hot tier MUST
    // always be a contiguous `seq` suffix of each chain: these remove a prefix, never a gap.
    // Chain heads, Merkle tiles and checkpoints are per tenant, not per tier: never touched.

    /// The contiguous `seq` range `(first, last)` at the start of a tenant's hot events whose
    /// events all have `timestamp < cutoff_ns`, or `None` when the first hot event is not that
    /// old. The range MUST end just before the first hot event (in `seq` order) at or after the
    /// cutoff, so moving it never leaves a gap, even when timestamps are out of order.
    async fn hot_prefix_older_than(
        &self,
        tenant_id: &str,
        cutoff_ns: i64,
    ) -> Result<Option<(u64, u64)>>;

    /// The lowest `seq` of a tenant still in the hot tier, `None` when it has no hot events.
    async fn first_hot_seq(&self, tenant_id: &str) -> Result<Option<u64>>;

    /// A tenant's hot events with `first <= seq <= last`, ascending. Events already moved out
    /// are absent (the caller checks the count).
    async fn events_in_seq_range(
        &self,
        tenant_id: &str,
        first: u64,
        last: u64,
    ) -> Result<Vec<StoredEvent>>;

    /// Removes a tenant's hot events with `seq <= last_seq` atomically and returns how many left
    /// the hot tier. Idempotent (a second call removes nothing), scoped to the one tenant, and
    /// only ever a prefix. After `Ok`, no read of the trait ([`scan_events`](EventStore::scan_events),
    /// [`query`](EventStore::query), [`get_event`](EventStore::get_event), level 0 of
    /// [`merkle_block`](TreeStore::merkle_block), the methods above) returns those events; a store
    /// MAY keep their bytes until [`reclaim_archived`](LifecycleStore::reclaim_archived). The caller
    /// MUST have durably archived and checked those events first.
    async fn delete_events_through(&self, tenant_id: &str, last_seq: u64) -> Result<u64>;

    /// Releases the storage of events removed by
    /// [`delete_events_through`](LifecycleStore::delete_events_through) that the store kept (e.g. drops
    /// whole time partitions every row of which is removed); returns how many units (partitions)
    /// it released. Idempotent. The default: a store that deletes rows at once has nothing to do.
    async fn reclaim_archived(&self) -> Result<u64> {
        Ok(0)
    }

    /// Takes the right to run a lifecycle pass: `None` while another process holds it. Several
    /// nodes on one database MUST NOT move, compact or delete at once (one would delete files
    /// another is writing). The default suits a store only one process can open.
    async fn lifecycle_lease(&self) -> Result<Option<LifecycleLease>> {
        Ok(Some(LifecycleLease::exclusive_process()))
    }

    /// Whether several nodes may share this store (each must then see the same archive). The
    /// default: one process only.
    fn shared_by_nodes(&self) -> bool {
        false
    }
}

/// The sampling statistics a group commit keeps ([`plan::GroupPlan::sampling`]), and what the
/// tenant's sampling statements have stated of them. They are not events: they are never moved
/// by the lifecycle nor removed by retention.
#[async_trait]
pub trait SamplingStore: Send + Sync + std::fmt::Debug {
    /// A tenant's statistics for the days `from_day..=to_day` (`YYYY-MM-DD`, either open), by
    /// day, class and action.
    async fn sampling_counts(
        &self,
        tenant_id: &str,
        from_day: Option<&str>,
        to_day: Option<&str>,
    ) -> Result<Vec<SamplingCount>>;

    /// Up to `limit` statistics of any tenant that hold dropped events (`seen > kept`) and
    /// whose counts moved since the last statement that stated them, by tenant, day, class and
    /// action. A statistic that dropped nothing needs no statement: its events are all in the
    /// log.
    async fn unstated_sampling_counts(&self, limit: usize) -> Result<Vec<SamplingCount>>;

    /// Records that a committed statement stated each count's `tally`. MUST NOT return `Ok`
    /// before that is durable.
    async fn mark_sampling_stated(&self, counts: Vec<SamplingCount>) -> Result<()>;
}

/// One actor-day summary row: a tenant's events by one actor on one UTC day (`YYYY-MM-DD`, of
/// the event's `timestamp`), of one action on one resource type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActorDayKey {
    pub tenant_id: String,
    pub day: String,
    pub actor_id: String,
    pub action: String,
    pub resource_type: String,
}

/// Which actor-day rows a read wants: the days `from_day..=to_day` (either open), and one actor
/// and one action or all. The default admits every row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActorDayFilter<'a> {
    pub actor_id: Option<&'a str>,
    pub action: Option<&'a str>,
    pub from_day: Option<&'a str>,
    pub to_day: Option<&'a str>,
}

/// Events under one summary key: stored, and apart, dropped by the capture policy; `failed`
/// counts the stored ones whose outcome is `failure` (failed logins, refused deletions), so a
/// chart of failures reads summaries instead of scanning events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SummaryTally {
    pub kept: u64,
    pub sampled_out: u64,
    pub failed: u64,
}

impl SummaryTally {
    pub fn add(&mut self, other: &SummaryTally) {
        self.kept += other.kept;
        self.sampled_out += other.sampled_out;
        self.failed += other.failed;
    }
}

/// One UTC day of a tenant (`YYYY-MM-DD`): its events per action, summed over its actors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantDay {
    pub day: String,
    pub actions: std::collections::BTreeMap<String, SummaryTally>,
}

/// The `top` entries of `counts`, most first, ties by name.
pub fn rank_top(counts: std::collections::HashMap<String, u64>, top: usize) -> Vec<(String, u64)> {
    let mut ranked: Vec<(String, u64)> = counts.into_iter().filter(|(_, n)| *n > 0).collect();
    ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.truncate(top);
    ranked
}

/// Builds [`TenantDay`]s from `(day, action, tally)` rows in day order.
pub fn assemble_tenant_days(rows: Vec<(String, String, SummaryTally)>) -> Vec<TenantDay> {
    let mut days: Vec<TenantDay> = Vec::new();
    for (day, action, tally) in rows {
        if days.last().is_none_or(|last| last.day != day) {
            days.push(TenantDay {
                day,
                actions: std::collections::BTreeMap::new(),
            });
        }
        let last = days.last_mut().expect("pushed above");
        last.actions.entry(action).or_default().add(&tally);
    }
    days
}

/// A tenant's stored events on one resource in one UTC month (`YYYY-MM`), for its top resources.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceMonthKey {
    pub tenant_id: String,
    pub month: String,
    pub resource_type: String,
    pub resource_id: String,
}

/// One month of a tenant: events per action, distinct actors with a stored event, and the
/// resources with the most stored events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantMonth {
    pub month: String,
    pub actions: std::collections::BTreeMap<String, SummaryTally>,
    pub unique_actors: u64,
    /// `(resource_type, resource_id, stored events)`, most first, ties by resource.
    pub top_resources: Vec<(String, String, u64)>,
}

/// Summaries kept as events arrive: the group commit adds to them
/// ([`plan::GroupPlan::actor_days`], [`plan::GroupPlan::resource_months`]) in the transaction of the
/// events they count, so they always equal a recount of the events. Not events: never moved
/// by the lifecycle nor removed by retention.
#[async_trait]
pub trait SummaryStore: Send + Sync + std::fmt::Debug {
    /// A tenant's actor-day rows that `filter` admits, by day, actor, action and resource type.
    async fn actor_days(
        &self,
        tenant_id: &str,
        filter: ActorDayFilter<'_>,
    ) -> Result<Vec<(ActorDayKey, SummaryTally)>>;

    /// A tenant's days `from_day..=to_day` (either open) that hold events, in order, with their
    /// actor-day rows summed per action: what a chart per day reads without a row per actor.
    async fn tenant_days(
        &self,
        tenant_id: &str,
        from_day: Option<&str>,
        to_day: Option<&str>,
    ) -> Result<Vec<TenantDay>>;

    /// The `top` actors of a tenant with the most stored events in the days `from_day..=to_day`
    /// (either open), most first, ties by actor.
    async fn top_actors(
        &self,
        tenant_id: &str,
        from_day: Option<&str>,
        to_day: Option<&str>,
        top: usize,
    ) -> Result<Vec<(String, u64)>>;

    /// A tenant's months `from_month..=to_month` (`YYYY-MM`, either open) that hold events, in
    /// order, each with its `top` resources.
    async fn tenant_months(
        &self,
        tenant_id: &str,
        from_month: Option<&str>,
        to_month: Option<&str>,
        top: usize,
    ) -> Result<Vec<TenantMonth>>;

    /// A tenant's revisions, by scope ([`REVISION_SCOPE_ACTORS`] or a `YYYY-MM` month), in
    /// scope order: each counts the commits that changed what a read of that scope answers (the
    /// month's events and summaries, or the directory), so a result computed at the same
    /// revisions is still the answer ([`Revisions`]).
    async fn revisions(&self, tenant_id: &str) -> Result<Revisions>;

    /// Records that retention is deleting a tenant's events of these UTC days (`YYYY-MM-DD`):
    /// their summaries stay, marked as counting deleted events. Idempotent; moves the revisions
    /// of their months. MUST be durable before it returns: retention deletes only after it.
    async fn mark_deleted_days(&self, tenant_id: &str, days: Vec<String>) -> Result<()>;

    /// The days `from_day..=to_day` (either open) of a tenant whose events retention deleted,
    /// in order.
    async fn deleted_days(
        &self,
        tenant_id: &str,
        from_day: Option<&str>,
        to_day: Option<&str>,
    ) -> Result<Vec<String>>;

    /// The months `from_month..=to_month` (either open) of a tenant with a day whose events
    /// retention deleted.
    async fn deleted_months(
        &self,
        tenant_id: &str,
        from_month: Option<&str>,
        to_month: Option<&str>,
    ) -> Result<std::collections::BTreeSet<String>> {
        let (from_day, to_day) = month_days(from_month, to_month);
        let days = self
            .deleted_days(tenant_id, Some(&from_day), Some(&to_day))
            .await?;
        Ok(days.into_iter().map(|day| day[..7].to_owned()).collect())
    }
}

/// The revision scope of a tenant's actor directory (the others are `YYYY-MM` months).
pub const REVISION_SCOPE_ACTORS: &str = "actors";

/// A tenant's revisions by scope, as [`SummaryStore::revisions`] reads them. A scope never
/// written is at revision 0 and absent. Revisions only grow, inside the transaction of the
/// change they count, on every node of a shared store, so two reads with equal revisions saw
/// the same data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revisions(pub std::collections::BTreeMap<String, u64>);

impl Revisions {
    /// The revisions of the months `from_month..=to_month` (either open): what a read of those
    /// months' summaries depends on.
    pub fn months(&self, from_month: Option<&str>, to_month: Option<&str>) -> Vec<(&str, u64)> {
        self.0
            .iter()
            .filter(|(scope, _)| scope.as_str() != REVISION_SCOPE_ACTORS)
            .filter(|(scope, _)| from_month.is_none_or(|from| scope.as_str() >= from))
            .filter(|(scope, _)| to_month.is_none_or(|to| scope.as_str() <= to))
            .map(|(scope, revision)| (scope.as_str(), *revision))
            .collect()
    }
}

/// Builds [`TenantMonth`]s from a backend's three answers: `(month, action, tally)`,
/// `(month, unique actors)` and `(month, resource_type, resource_id, kept)` (already ranked and
/// cut to the top). Months come from the first, in its order.
pub fn assemble_tenant_months(
    actions: Vec<(String, String, SummaryTally)>,
    actors: Vec<(String, u64)>,
    top_resources: Vec<(String, String, String, u64)>,
) -> Vec<TenantMonth> {
    let mut months: Vec<TenantMonth> = Vec::new();
    for (month, action, tally) in actions {
        if months.last().is_none_or(|last| last.month != month) {
            months.push(TenantMonth {
                month: month.clone(),
                actions: std::collections::BTreeMap::new(),
                unique_actors: 0,
                top_resources: Vec::new(),
            });
        }
        let last = months.last_mut().expect("pushed above");
        last.actions.insert(action, tally);
    }
    let index: std::collections::HashMap<String, usize> = months
        .iter()
        .enumerate()
        .map(|(position, month)| (month.month.clone(), position))
        .collect();
    for (month, count) in actors {
        if let Some(position) = index.get(&month) {
            months[*position].unique_actors = count;
        }
    }
    for (month, resource_type, resource_id, kept) in top_resources {
        if let Some(position) = index.get(&month) {
            months[*position]
                .top_resources
                .push((resource_type, resource_id, kept));
        }
    }
    months
}

/// The day range `YYYY-MM-01..=YYYY-MM-31` of a month range (string order is day order).
pub fn month_days(from_month: Option<&str>, to_month: Option<&str>) -> (String, String) {
    (
        from_month.map_or_else(String::new, |month| format!("{month}-01")),
        to_month.map_or_else(|| "9999-12-31".to_owned(), |month| format!("{month}-31")),
    )
}

/// Each tenant's actor directory: who an `actor_id` is (name, department, team, attributes).
/// Not events: never moved by the lifecycle nor removed by retention.
#[async_trait]
pub trait DirectoryStore: Send + Sync + std::fmt::Debug {
    /// Inserts or replaces each actor of one tenant, all or none; returns how many were written.
    /// MUST NOT return `Ok` before they are durable.
    async fn upsert_actors(&self, tenant_id: &str, actors: Vec<Actor>) -> Result<u64>;

    /// One actor of a tenant's directory.
    async fn actor(&self, tenant_id: &str, actor_id: &str) -> Result<Option<Actor>>;

    /// A tenant's whole directory, by `actor_id` (for the SQL table `actors`).
    async fn actors(&self, tenant_id: &str) -> Result<Vec<Actor>>;

    /// The `actor_id`s of a tenant's directory whose `team` is one of `teams`, in order, at
    /// most `limit` (a `team_admin` scope; read through an index on the team, so a large
    /// directory is not read whole).
    async fn team_members(
        &self,
        tenant_id: &str,
        teams: &[String],
        limit: usize,
    ) -> Result<Vec<String>>;
}

/// Every concern of a hot store, and its log for verification: what the server runs on.
pub trait HotStore:
    EventStore
    + TreeStore
    + CheckpointStore
    + SettingsStore
    + LifecycleStore
    + SamplingStore
    + DirectoryStore
    + SummaryStore
    + LogSource
    + 'static
{
}

impl<T> HotStore for T where
    T: EventStore
        + TreeStore
        + CheckpointStore
        + SettingsStore
        + LifecycleStore
        + SamplingStore
        + DirectoryStore
        + SummaryStore
        + LogSource
        + 'static
{
}

/// The right to run one lifecycle pass, held until [`release`](LifecycleLease::release)d (or
/// dropped, which releases it when the process or its connection ends).
#[derive(Debug)]
pub struct LifecycleLease {
    holder: Option<Box<dyn LeaseHolder>>,
}

/// What a backend keeps to hold a [`LifecycleLease`] (a database session, say).
#[async_trait]
pub trait LeaseHolder: Send + Sync + std::fmt::Debug {
    async fn release(self: Box<Self>) -> Result<()>;
}

impl LifecycleLease {
    /// The lease of a store only this process can open: nothing to hold.
    pub fn exclusive_process() -> Self {
        LifecycleLease { holder: None }
    }

    /// A lease kept by `holder`.
    pub fn held_by(holder: Box<dyn LeaseHolder>) -> Self {
        LifecycleLease {
            holder: Some(holder),
        }
    }

    pub async fn release(self) -> Result<()> {
        match self.holder {
            Some(holder) => holder.release().await,
            None => Ok(()),
        }
    }
}
