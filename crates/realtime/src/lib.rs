//! Real time, pure: what happens to an event once it is committed, decided without IO.
//!
//! - [`rules`]: alert rules (threshold and baseline), their wire shape and the shipped defaults;
//! - [`window`]: the sliding windows that evaluate rules over a tenant's committed events;
//! - [`webhook`]: Standard Webhooks signatures and secrets;
//! - [`hec`], [`syslog`], [`ocsf`]: the wire formats of SIEM forwarding.
//!
//! *Invariant: no IO, no clock.* The server feeds committed events in `seq` order and carries
//! out what these modules decide (append an alert, deliver a message).

pub mod hec;
pub mod ocsf;
pub mod rules;
pub mod syslog;
pub mod webhook;
pub mod window;

use sealtrail_model::StoredEvent;
use serde_json::Value;

/// The event's API JSON, as `GET /v1/events` returns it but for `tier`, shared by webhooks and
/// every SIEM wire format.
///
/// `changes` and `metadata` are canonical JSON text by the model's invariant, and then this is
/// exactly the API representation. Should a stored text not parse (a corrupted row), the event is
/// still forwarded, with that text as a JSON string in its place: a SIEM copy that shows the
/// damage is worth more than an event silently missing from it.
pub fn event_json(stored: &StoredEvent) -> Value {
    let mut value = api_json(stored);
    // Where an event is stored says nothing about it, and consumers read from every tier.
    if let Some(object) = value.as_object_mut() {
        object.remove("tier");
    }
    value
}

fn api_json(stored: &StoredEvent) -> Value {
    if let Ok(value) = serde_json::to_value(stored) {
        return value;
    }
    let as_json_text = |text: &Option<String>| {
        text.as_ref()
            .map(|text| match serde_json::from_str::<Value>(text) {
                Ok(_) => text.clone(),
                Err(_) => Value::from(text.as_str()).to_string(),
            })
    };
    let mut repaired = stored.clone();
    repaired.event.changes = as_json_text(&stored.event.changes);
    repaired.event.metadata = as_json_text(&stored.event.metadata);
    serde_json::to_value(&repaired)
        .expect("every field now serialises: strings, numbers and valid JSON texts")
}
