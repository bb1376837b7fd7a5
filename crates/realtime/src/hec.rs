//! Splunk HTTP Event Collector (HEC): the JSON envelope of one event and the batch body that
//! carries several in one request to [`HEC_PATH`].
//!
//! The envelope's `time` is the event's own timestamp (when it happened), not when Sealtrail
//! received it, so Splunk searches by time find the action where it occurred. `host` and `index`
//! are left out: HEC then takes them from the token's configuration, which is where a Splunk
//! administrator expects to decide them.

use sealtrail_model::StoredEvent;
use serde_json::{json, Value};

/// The HEC endpoint that takes JSON envelopes (as opposed to `/services/collector/raw`).
pub const HEC_PATH: &str = "/services/collector/event";

const NANOS_PER_MILLI: i64 = 1_000_000;
const MILLIS_PER_SEC: f64 = 1_000.0;

/// One event's HEC envelope: `{"time", "source", "sourcetype", "event", "fields"}`.
///
/// `event` is the event's API JSON, byte for byte what the query API returns (so a Splunk user
/// can re-verify a hash). `fields` are indexed fields: `tenant_id` and `event_id`, the two a
/// search most often filters on, kept few because each one costs index space on every event.
pub fn hec_event(stored: &StoredEvent, source: &str, sourcetype: &str) -> Value {
    json!({
        "time": epoch_secs_millis(stored.event.timestamp_ns),
        "source": source,
        "sourcetype": sourcetype,
        "event": crate::event_json(stored),
        "fields": {
            "tenant_id": stored.event.tenant_id,
            "event_id": stored.event.event_id,
        },
    })
}

/// The body of one HEC request carrying several envelopes: their JSON texts one after the
/// other, separated by newlines (HEC reads a stream of concatenated objects; the newline only
/// helps a human reading a capture).
pub fn hec_batch(events: &[Value]) -> Vec<u8> {
    let mut body = Vec::new();
    for (index, event) in events.iter().enumerate() {
        if index > 0 {
            body.push(b'\n');
        }
        serde_json::to_writer(&mut body, event)
            .expect("a JSON value always serialises, and writing to a Vec never fails");
    }
    body
}

/// Seconds since the epoch with a millisecond fraction, HEC's `time`. Sub-millisecond digits are
/// dropped (floored), because HEC keeps milliseconds and an `f64` of seconds holds no more than
/// microseconds exactly at today's epoch values.
fn epoch_secs_millis(timestamp_ns: i64) -> f64 {
    // Millisecond counts up to 2^53 convert exactly; an i64 of nanoseconds stays far below.
    timestamp_ns.div_euclid(NANOS_PER_MILLI) as f64 / MILLIS_PER_SEC
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sealtrail_model::{ActorType, Event, Outcome};

    /// An event with every optional field set, shared by the format modules' tests.
    pub(crate) fn sample_event() -> StoredEvent {
        StoredEvent {
            event: Event {
                event_id: "evt-1".into(),
                timestamp_ns: 1_767_225_600_123_456_789,
                tenant_id: "acme".into(),
                actor_id: "alice@acme.test".into(),
                actor_type: ActorType::Human,
                action: "document.read".into(),
                resource_type: "document".into(),
                resource_id: Some("doc-42".into()),
                outcome: Outcome::Success,
                ip_address: Some("203.0.113.7".into()),
                user_agent: Some("Mozilla/5.0".into()),
                request_id: Some("req-9".into()),
                changes: Some(r#"{"title":{"after":"b","before":"a"}}"#.into()),
                metadata: Some(r#"{"department":"finance"}"#.into()),
            },
            seq: 17,
            received_at_ns: 1_767_225_600_200_000_000,
            prev_hash: [0x11; 32],
            event_hash: [0xab; 32],
        }
    }

    #[test]
    fn envelope_carries_time_source_event_and_fields() {
        let stored = sample_event();
        let envelope = hec_event(&stored, "sealtrail", "sealtrail:audit");
        assert_eq!(envelope["time"], json!(1_767_225_600.123));
        assert_eq!(envelope["source"], "sealtrail");
        assert_eq!(envelope["sourcetype"], "sealtrail:audit");
        let mut api = serde_json::to_value(&stored).unwrap();
        api.as_object_mut().unwrap().remove("tier");
        assert_eq!(envelope["event"], api, "the API JSON but for tier");
        assert_eq!(
            envelope["fields"],
            json!({"tenant_id": "acme", "event_id": "evt-1"})
        );
        // Left to the token's configuration on the Splunk side.
        assert!(envelope.get("host").is_none() && envelope.get("index").is_none());
    }

    #[test]
    fn time_keeps_milliseconds_and_floors_the_rest() {
        assert_eq!(epoch_secs_millis(0), 0.0);
        assert_eq!(epoch_secs_millis(1_999_999), 0.001);
        assert_eq!(epoch_secs_millis(-1), -0.001);
        assert_eq!(
            epoch_secs_millis(1_614_265_330_000_000_000),
            1_614_265_330.0
        );
        // The text HEC receives is the shortest exact spelling, not a long binary expansion.
        let text = serde_json::to_string(&json!(epoch_secs_millis(1_767_225_600_123_999_999)));
        assert_eq!(text.unwrap(), "1767225600.123");
    }

    #[test]
    fn batch_is_newline_separated_json_objects() {
        let first = hec_event(&sample_event(), "s", "t");
        let mut other = sample_event();
        other.event.event_id = "evt-2".into();
        other.seq = 18;
        let second = hec_event(&other, "s", "t");
        let body = hec_batch(&[first.clone(), second.clone()]);
        let text = String::from_utf8(body).unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(serde_json::from_str::<Value>(lines[0]).unwrap(), first);
        assert_eq!(serde_json::from_str::<Value>(lines[1]).unwrap(), second);
        assert!(hec_batch(&[]).is_empty());
    }

    #[test]
    fn api_json_forwards_a_corrupted_json_text_as_a_string() {
        let mut stored = sample_event();
        stored.event.changes = Some("{not json".into());
        let value = crate::event_json(&stored);
        assert_eq!(value["changes"], "{not json");
        assert_eq!(value["metadata"], json!({"department": "finance"}));
        assert_eq!(value["seq"], 17);
    }
}
