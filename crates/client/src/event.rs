//! A typed builder for events of format v1 (docs/FORMAT.md), checked with the server's own rules.
//!
//! [`EventBuilder::build`] assigns what makes a retry idempotent: the `event_id` (a UUIDv7, unless
//! the caller gives one) and the `timestamp` (now, unless given). The server answers a repeated
//! `event_id` with the same content with the stored receipt and stores nothing new; since both
//! are fixed when the event is built, every resend of it, from memory or from the spool, carries
//! the same content. The event is then validated with `sealtrail_model::validate_event`, the
//! function the server runs, so an invalid event is refused at the call site, field by field,
//! instead of failing a whole batch of other events later.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};

pub use sealtrail_model::{ActorType, Outcome};

use crate::error::{Error, Result};

/// How long the server may take to acknowledge an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// For critical actions: the server answers `201` only after the event is committed and
    /// fsynced. The event's [`crate::Recorded`] and [`crate::Client::flush`] resolve only after
    /// that `201`, even when the event had to wait in the spool meanwhile.
    Sync,
    /// The server answers `202` once the event is in its own spool. The event's
    /// [`crate::Recorded`] and `flush` resolve on that `202`, or once the event is fsynced in
    /// the client's spool while the server cannot be reached.
    Async,
}

impl Durability {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Durability::Sync => "sync",
            Durability::Async => "async",
        }
    }
}

/// One event of format v1, validated, with its `event_id` and `timestamp` fixed.
#[derive(Debug, Clone)]
pub struct Event {
    pub(crate) wire: WireEvent,
    pub(crate) durability: Option<Durability>,
}

/// The JSON object sent to the server. Field names are those of format v1; absent optional
/// fields are left out, which the server reads as `null`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WireEvent {
    pub(crate) event_id: String,
    pub(crate) timestamp: String,
    pub(crate) tenant_id: String,
    pub(crate) actor_id: String,
    pub(crate) actor_type: &'static str,
    pub(crate) action: String,
    pub(crate) resource_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) resource_id: Option<String>,
    pub(crate) outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ip_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) changes: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) metadata: Option<Map<String, Value>>,
}

impl Event {
    /// Starts an event with the four fields format v1 requires.
    pub fn builder(
        tenant_id: impl Into<String>,
        actor_id: impl Into<String>,
        action: impl Into<String>,
        resource_type: impl Into<String>,
    ) -> EventBuilder {
        EventBuilder {
            event_id: None,
            timestamp: None,
            tenant_id: tenant_id.into(),
            actor_id: actor_id.into(),
            actor_type: ActorType::Human,
            action: action.into(),
            resource_type: resource_type.into(),
            resource_id: None,
            outcome: Outcome::Success,
            ip_address: None,
            user_agent: None,
            request_id: None,
            changes: None,
            metadata: None,
            durability: None,
        }
    }

    /// The event's idempotency key, assigned when it was built.
    pub fn event_id(&self) -> &str {
        &self.wire.event_id
    }

    /// The event's timestamp, RFC 3339 in UTC.
    pub fn timestamp(&self) -> &str {
        &self.wire.timestamp
    }

    /// The tenant the event belongs to.
    pub fn tenant_id(&self) -> &str {
        &self.wire.tenant_id
    }

    /// The durability asked for this event; `None` means the client's default.
    pub fn durability(&self) -> Option<Durability> {
        self.durability
    }

    /// The event as the JSON object the client sends (without the request context the client
    /// stamps on it when it is recorded).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(&self.wire).expect("an event always serializes")
    }
}

/// Builds an [`Event`]; see [`Event::builder`].
#[derive(Debug, Clone)]
#[must_use = "an event builder does nothing until `build` is called"]
pub struct EventBuilder {
    event_id: Option<String>,
    timestamp: Option<Timestamp>,
    tenant_id: String,
    actor_id: String,
    actor_type: ActorType,
    action: String,
    resource_type: String,
    resource_id: Option<String>,
    outcome: Outcome,
    ip_address: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    changes: Option<Value>,
    metadata: Option<Map<String, Value>>,
    durability: Option<Durability>,
}

#[derive(Debug, Clone)]
enum Timestamp {
    At(SystemTime),
    Text(String),
}

impl EventBuilder {
    /// Sets the idempotency key (at most 128 characters). Without it, `build` assigns a UUIDv7.
    pub fn event_id(mut self, event_id: impl Into<String>) -> Self {
        self.event_id = Some(event_id.into());
        self
    }

    /// Sets when the action happened. Without it, `build` uses the current time.
    pub fn timestamp(mut self, at: SystemTime) -> Self {
        self.timestamp = Some(Timestamp::At(at));
        self
    }

    /// Sets when the action happened, as RFC 3339 text (at most nanosecond precision).
    pub fn timestamp_rfc3339(mut self, text: impl Into<String>) -> Self {
        self.timestamp = Some(Timestamp::Text(text.into()));
        self
    }

    /// `human` (the default), `service` or `system`.
    pub fn actor_type(mut self, actor_type: ActorType) -> Self {
        self.actor_type = actor_type;
        self
    }

    pub fn resource_id(mut self, resource_id: impl Into<String>) -> Self {
        self.resource_id = Some(resource_id.into());
        self
    }

    /// `success` (the default) or `failure`.
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// The client's address. Inside a [`crate::RequestContextLayer`] it is taken from the
    /// request unless set here.
    pub fn ip_address(mut self, ip_address: IpAddr) -> Self {
        self.ip_address = Some(ip_address.to_string());
        self
    }

    /// Inside a [`crate::RequestContextLayer`] it is taken from the request unless set here.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// The correlation id. Inside a [`crate::RequestContextLayer`] it is the request's id unless
    /// set here.
    pub fn request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// What changed: format v1 allows the members `before` and `after` only, each an object
    /// (or `null`).
    pub fn changes(mut self, before: Option<Value>, after: Option<Value>) -> Self {
        let mut changes = Map::new();
        if let Some(before) = before {
            changes.insert("before".into(), before);
        }
        if let Some(after) = after {
            changes.insert("after".into(), after);
        }
        self.changes = Some(Value::Object(changes));
        self
    }

    /// Replaces the free-form context object (at most 16 KiB of JSON, 10 levels deep).
    pub fn metadata(mut self, metadata: Map<String, Value>) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Adds one member to the context object.
    pub fn metadata_entry(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata
            .get_or_insert_with(Map::new)
            .insert(key.into(), value.into());
        self
    }

    /// Format v1 has no session field (an unknown field is refused by the server), so the
    /// session is kept in `metadata` as `session_id`, where queries and exports find it.
    pub fn session_id(self, session_id: impl Into<String>) -> Self {
        self.metadata_entry("session_id", session_id.into())
    }

    /// Overrides the client's default durability for this event.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }

    /// Fixes the `event_id` and `timestamp`, then checks the event with the server's rules.
    pub fn build(self) -> Result<Event> {
        let now_ns = now_ns();
        let timestamp = match self.timestamp {
            None => sealtrail_model::format_timestamp(now_ns),
            Some(Timestamp::At(at)) => sealtrail_model::format_timestamp(system_time_ns(at)),
            Some(Timestamp::Text(text)) => text,
        };
        let wire = WireEvent {
            event_id: self
                .event_id
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            timestamp,
            tenant_id: self.tenant_id,
            actor_id: self.actor_id,
            actor_type: self.actor_type.as_str(),
            action: self.action,
            resource_type: self.resource_type,
            resource_id: self.resource_id,
            outcome: self.outcome.as_str(),
            ip_address: self.ip_address,
            user_agent: self.user_agent,
            request_id: self.request_id,
            changes: self.changes,
            metadata: self.metadata,
        };
        let value = serde_json::to_value(&wire).expect("an event always serializes");
        sealtrail_model::validate_event(value, now_ns)
            .map_err(|errors| Error::InvalidEvent { errors })?;
        Ok(Event {
            wire,
            durability: self.durability,
        })
    }
}

fn system_time_ns(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |ns| -ns),
    }
}

pub(crate) fn now_ns() -> i64 {
    system_time_ns(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> EventBuilder {
        Event::builder("acme", "alice", "document.delete", "document")
    }

    #[test]
    fn build_fixes_a_uuid_v7_event_id_and_the_timestamp() {
        let event = minimal().build().unwrap();
        let id = uuid::Uuid::parse_str(event.event_id()).unwrap();
        assert_eq!(id.get_version_num(), 7);
        assert!(sealtrail_model::parse_timestamp(event.timestamp()).is_some());
        // The same built event always serializes to the same content: resends are idempotent.
        assert_eq!(event.to_json(), event.clone().to_json());
        let other = minimal().build().unwrap();
        assert_ne!(event.event_id(), other.event_id());
    }

    #[test]
    fn every_field_of_format_v1_is_sent_under_its_name() {
        let event = minimal()
            .event_id("evt-1")
            .timestamp(SystemTime::now())
            .actor_type(ActorType::Service)
            .resource_id("doc-7")
            .outcome(Outcome::Failure)
            .ip_address("203.0.113.9".parse().unwrap())
            .user_agent("curl/8")
            .request_id("req-1")
            .changes(Some(json!({"title": "a"})), Some(json!({"title": "b"})))
            .metadata_entry("department", "finance")
            .session_id("sess-9")
            .durability(Durability::Sync)
            .build()
            .unwrap();
        let value = event.to_json();
        for field in sealtrail_model::EVENT_FIELDS {
            assert!(value.get(field).is_some(), "{field} missing from {value}");
        }
        assert_eq!(value["actor_type"], "service");
        assert_eq!(value["outcome"], "failure");
        assert_eq!(value["metadata"]["session_id"], "sess-9");
        assert_eq!(event.durability(), Some(Durability::Sync));
    }

    #[test]
    fn invalid_fields_are_refused_by_name_before_anything_is_sent() {
        let error = Event::builder("ac me", "", "delete!", "document")
            .event_id("x".repeat(sealtrail_model::limits::EVENT_ID_CHARS_MAX + 1))
            .build()
            .unwrap_err();
        let Error::InvalidEvent { errors } = error else {
            panic!("expected InvalidEvent")
        };
        let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
        for field in ["tenant_id", "actor_id", "action", "event_id"] {
            assert!(fields.contains(&field), "{field} not named in {fields:?}");
        }
    }

    #[test]
    fn unkeepable_timestamps_and_oversized_metadata_are_refused() {
        let error = minimal()
            .timestamp(SystemTime::now() + std::time::Duration::from_secs(3_600))
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("timestamp"), "{error}");
        // A leap second cannot be kept as an instant: refused, never moved.
        let error = minimal()
            .timestamp_rfc3339("2026-06-30T23:59:60Z")
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("leap second"), "{error}");
        let mut metadata = Map::new();
        metadata.insert("big".into(), Value::String("x".repeat(20_000)));
        let error = minimal().metadata(metadata).build().unwrap_err();
        assert!(error.to_string().contains("metadata"), "{error}");
    }
}
