//! The hot tier: recent events, written by the ingest pipeline and read by the query API.
//!
//! [`HotStore`] is the boundary every backend implements (SQLite here, embedded and the default;
//! PostgreSQL for production). The pipeline above it owns batching and backpressure; a store owns
//! atomicity, durability and the tenant chains. API boundary: nothing above this crate sees SQL.

mod error;
mod sqlite;
mod verify;

use std::sync::Arc;

use async_trait::async_trait;
use sealtrail_ledger::ChainHead;
use sealtrail_model::{EventReceipt, PendingEvent, StoredEvent};

pub use error::{Error, Result};
pub use sqlite::SqliteStore;
pub use verify::{verify_sqlite, verify_store, TenantReport};

/// One client request's events: committed together or not at all.
pub type AppendRequest = Vec<PendingEvent>;

/// What became of one [`AppendRequest`] in a group commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Every event is durably stored; one receipt per event, in request order. An event whose
    /// `event_id` was already stored with the same content gets the stored receipt.
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
    pub from_ns: Option<i64>,
    pub to_ns: Option<i64>,
    pub order: Order,
    /// Continue strictly after this `seq` in `order` (the cursor).
    pub after_seq: Option<u64>,
    pub limit: usize,
}

/// What the store knows of an already stored `event_id`, for idempotency checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingEvent {
    pub content_digest: [u8; 32],
    pub timestamp_ns: i64,
    pub receipt: EventReceipt,
}

/// Roles an API key can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Ingest,
    Reader,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Reader => "reader",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ingest" => Some(Role::Ingest),
            "reader" => Some(Role::Reader),
            "admin" => Some(Role::Admin),
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
}

/// The hot-tier storage contract. A PostgreSQL backend implements the same trait and passes the
/// same conformance tests.
#[async_trait]
pub trait HotStore: Send + Sync + std::fmt::Debug + 'static {
    /// Appends every request of a group commit in one transaction, linking each event into its
    /// tenant's chain (`seq`, `prev_hash`, `event_hash`).
    ///
    /// MUST NOT return `Ok` unless every committed event is durable (fsynced). A conflict fails
    /// only its own request. On `Err` nothing of the batch is stored.
    async fn append(&self, batch: Arc<Vec<AppendRequest>>) -> Result<Vec<AppendOutcome>>;

    /// The stored events with these `event_id`s in one tenant, for idempotency checks before
    /// an async request is acknowledged.
    async fn existing(&self, tenant_id: &str, event_ids: Vec<String>)
        -> Result<Vec<ExistingEvent>>;

    async fn get_event(&self, tenant_id: &str, event_id: &str) -> Result<Option<StoredEvent>>;

    async fn query(&self, query: EventQuery) -> Result<Vec<StoredEvent>>;

    async fn insert_api_key(&self, key: ApiKeyRecord) -> Result<()>;

    async fn find_api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>>;

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

    /// Reads a named server setting (such as the admin token's hash).
    async fn setting(&self, name: &str) -> Result<Option<Vec<u8>>>;

    /// Stores a setting unless one of that name exists; returns whether it was stored.
    async fn set_setting_if_absent(&self, name: &str, value: Vec<u8>) -> Result<bool>;
}
