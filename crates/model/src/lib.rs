//! The Sealtrail data model: event format v1 as it arrives on the wire, as it is validated, and
//! as it is stored; plus the limits every layer shares.
//!
//! This crate does no IO. Validation is a pure function of the submitted JSON and the server's
//! clock reading, so it is trivially testable and reusable by importers and SDKs.

mod json_input;
pub mod limits;
mod retention;
mod sealed;
mod stored;
mod time_fmt;
mod validate;

pub use json_input::{check_events_json, nearest_doubles};
pub use retention::{RetentionPeriod, RetentionPolicy};
pub use sealed::{hex32, sealed_commitment, Closed, Sealed, PROTECTED_FIELDS, SEALED_PREFIX};
pub use stored::{EventReceipt, LocatedEvent, StorageTier, StoredEvent, Untiered};
pub use time_fmt::{
    format_day, format_timestamp, is_day_bound, is_month_bound, parse_timestamp, timestamp_problem,
};
pub use validate::{
    validate_actor, validate_event, validate_imported_event, Actor, FieldError, SubmittedEvent,
    EVENT_FIELDS,
};

/// Who performed an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActorType {
    Human,
    Service,
    System,
}

impl ActorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorType::Human => "human",
            ActorType::Service => "service",
            ActorType::System => "system",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "human" => Some(ActorType::Human),
            "service" => Some(ActorType::Service),
            "system" => Some(ActorType::System),
            _ => None,
        }
    }
}

/// Whether the action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            _ => None,
        }
    }
}

/// A complete event: every field of format v1 known, defaults applied, server-assigned values
/// (`event_id` when absent, `timestamp` when absent) filled in. `changes` and `metadata` hold
/// their canonical JSON text (compact, object keys sorted), which is what gets hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event_id: String,
    /// Nanoseconds since the Unix epoch, UTC.
    pub timestamp_ns: i64,
    pub tenant_id: String,
    pub actor_id: String,
    pub actor_type: ActorType,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub outcome: Outcome,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub changes: Option<String>,
    pub metadata: Option<String>,
}

impl Event {
    /// The fields a tenant may have encrypted ([`PROTECTED_FIELDS`]), by name, in order.
    pub fn protected_fields(&self) -> [(&'static str, Option<&str>); 4] {
        [
            ("ip_address", self.ip_address.as_deref()),
            ("user_agent", self.user_agent.as_deref()),
            ("changes", self.changes.as_deref()),
            ("metadata", self.metadata.as_deref()),
        ]
    }

    /// The protected field `name` (one of [`PROTECTED_FIELDS`]) to change in place.
    pub fn protected_field_mut(&mut self, name: &str) -> Option<&mut Option<String>> {
        match name {
            "ip_address" => Some(&mut self.ip_address),
            "user_agent" => Some(&mut self.user_agent),
            "changes" => Some(&mut self.changes),
            "metadata" => Some(&mut self.metadata),
            _ => None,
        }
    }
}

/// An event accepted by the API and waiting for its place in the tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    pub event: Event,
    /// When the server accepted the event, nanoseconds since the Unix epoch.
    pub received_at_ns: i64,
    /// Whether the client sent `timestamp`. A retry that omits it matches any stored timestamp.
    pub timestamp_supplied: bool,
    /// What the tenant's capture policy decided, for an event it applies to (ingested over the
    /// API); `None` for events outside sampling (imports, the server's own statements), which
    /// are kept and not counted.
    pub capture: Option<CaptureDecision>,
}

/// A capture policy's decision for one event: its class (0-3) and whether it is kept. A dropped
/// event is never stored; it only counts in the tenant's sampling statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureDecision {
    pub class: u8,
    pub kept: bool,
}

/// Tenant ids beginning with this are the service's own read trails (`_access.<tenant>`, one
/// per tenant): no request may name one, so no key can be made for one and no event sent to
/// one.
pub const ACCESS_TRAIL_TENANT_PREFIX: &str = "_access.";

/// The tenant id of `tenant_id`'s read trail.
pub fn access_trail_tenant(tenant_id: &str) -> String {
    format!("{ACCESS_TRAIL_TENANT_PREFIX}{tenant_id}")
}

/// Checks a tenant id against the format v1 rule; returns the reason when it fails.
pub fn check_tenant_id(tenant_id: &str) -> Result<(), String> {
    if tenant_id.is_empty() {
        return Err("must not be empty".into());
    }
    if tenant_id.starts_with(ACCESS_TRAIL_TENANT_PREFIX) {
        return Err(format!(
            "must not begin with {ACCESS_TRAIL_TENANT_PREFIX:?}: such ids are the service's read trails"
        ));
    }
    if tenant_id.chars().count() > limits::TENANT_ID_CHARS_MAX {
        return Err(format!(
            "must be at most {} characters",
            limits::TENANT_ID_CHARS_MAX
        ));
    }
    if !tenant_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err("must contain only A-Z, a-z, 0-9, '_', '.', '-'".into());
    }
    Ok(())
}
