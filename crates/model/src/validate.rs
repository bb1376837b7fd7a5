//! Validation of one submitted event against format v1.
//!
//! Every violation is reported with the field it concerns and a reason that quotes the limit,
//! and all violations of an event are reported together, so a client fixes its payload in one
//! round trip. Nothing is ever silently trimmed or coerced.

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::limits::*;
use crate::{
    check_tenant_id, parse_timestamp, timestamp_problem, ActorType, Event, Outcome, PendingEvent,
};

/// One reason an event was rejected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &str, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// An event that passed validation. `event_id` and `timestamp_ns` stay optional until the server
/// fills them in with [`SubmittedEvent::complete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmittedEvent {
    pub event_id: Option<String>,
    pub timestamp_ns: Option<i64>,
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

impl SubmittedEvent {
    /// Fills in what the server assigns: an `event_id` when the client sent none (from
    /// `new_event_id`, a UUIDv7 in the server) and the timestamp when absent.
    pub fn complete(
        self,
        received_at_ns: i64,
        new_event_id: impl FnOnce() -> String,
    ) -> PendingEvent {
        let timestamp_supplied = self.timestamp_ns.is_some();
        PendingEvent {
            event: Event {
                event_id: self.event_id.unwrap_or_else(new_event_id),
                timestamp_ns: self.timestamp_ns.unwrap_or(received_at_ns),
                tenant_id: self.tenant_id,
                actor_id: self.actor_id,
                actor_type: self.actor_type,
                action: self.action,
                resource_type: self.resource_type,
                resource_id: self.resource_id,
                outcome: self.outcome,
                ip_address: self.ip_address,
                user_agent: self.user_agent,
                request_id: self.request_id,
                changes: self.changes,
                metadata: self.metadata,
            },
            received_at_ns,
            timestamp_supplied,
            capture: None,
        }
    }
}

/// The members of event format v1, in the order the API writes them.
pub const EVENT_FIELDS: [&str; 14] = [
    "event_id",
    "timestamp",
    "tenant_id",
    "actor_id",
    "actor_type",
    "action",
    "resource_type",
    "resource_id",
    "outcome",
    "ip_address",
    "user_agent",
    "request_id",
    "changes",
    "metadata",
];

/// Validates one submitted event. `now_ns` is the server's clock reading (nanoseconds since the
/// epoch), used for the clock-skew and age limits.
pub fn validate_event(value: Value, now_ns: i64) -> Result<SubmittedEvent, Vec<FieldError>> {
    validate(value, now_ns, true)
}

/// Validates one event of a bulk import (`sealtrail import`): the same rules, except that
/// history of any age is accepted (the live ingest path bounds the age, an import is for
/// history) and `event_id` is required, so that running an interrupted import again never
/// stores an event twice.
pub fn validate_imported_event(
    value: Value,
    now_ns: i64,
) -> Result<SubmittedEvent, Vec<FieldError>> {
    let submitted = validate(value, now_ns, false)?;
    if submitted.event_id.is_none() {
        return Err(vec![FieldError::new(
            "event_id",
            "is required in an import, so a rerun recognizes events already imported",
        )]);
    }
    Ok(submitted)
}

fn validate(value: Value, now_ns: i64, bound_age: bool) -> Result<SubmittedEvent, Vec<FieldError>> {
    let Value::Object(mut object) = value else {
        return Err(vec![FieldError::new(
            "",
            "each event must be a JSON object",
        )]);
    };
    let mut errors = Vec::new();
    for key in object.keys() {
        if !EVENT_FIELDS.contains(&key.as_str()) {
            errors.push(FieldError::new(key, "unknown field (event format v1)"));
        }
    }
    let mut fields = Fields {
        object: &mut object,
        errors: &mut errors,
    };

    let event_id = fields.text("event_id", false, EVENT_ID_CHARS_MAX, Charset::Printable);
    let tenant_id =
        fields.take_string("tenant_id", true).and_then(|tenant_id| {
            match check_tenant_id(&tenant_id) {
                Ok(()) => Some(tenant_id),
                Err(reason) => {
                    fields.errors.push(FieldError::new("tenant_id", reason));
                    None
                }
            }
        });
    let actor_id = fields.text("actor_id", true, ACTOR_ID_CHARS_MAX, Charset::Printable);
    let actor_type =
        fields
            .take_string("actor_type", false)
            .map_or(Some(ActorType::Human), |text| {
                let parsed = ActorType::parse(&text);
                if parsed.is_none() {
                    fields.errors.push(FieldError::new(
                        "actor_type",
                        "must be one of human, service, system",
                    ));
                }
                parsed
            });
    let action = fields.text("action", true, ACTION_CHARS_MAX, Charset::Verb);
    let resource_type = fields.text(
        "resource_type",
        true,
        RESOURCE_TYPE_CHARS_MAX,
        Charset::Verb,
    );
    let resource_id = fields.text(
        "resource_id",
        false,
        RESOURCE_ID_CHARS_MAX,
        Charset::Printable,
    );
    let outcome = fields
        .take_string("outcome", false)
        .map_or(Some(Outcome::Success), |text| {
            let parsed = Outcome::parse(&text);
            if parsed.is_none() {
                fields.errors.push(FieldError::new(
                    "outcome",
                    "must be one of success, failure",
                ));
            }
            parsed
        });
    let ip_address = fields.text(
        "ip_address",
        false,
        IP_ADDRESS_CHARS_MAX,
        Charset::Printable,
    );
    let ip_address = ip_address.filter(|ip| {
        let valid = ip.parse::<IpAddr>().is_ok();
        if !valid {
            fields.errors.push(FieldError::new(
                "ip_address",
                "must be a valid IPv4 or IPv6 address",
            ));
        }
        valid
    });
    let user_agent = fields.text(
        "user_agent",
        false,
        USER_AGENT_CHARS_MAX,
        Charset::Printable,
    );
    // The one protected field whose plaintext could look like an envelope (docs/FORMAT.md).
    let user_agent = user_agent.filter(|text| {
        let envelope = text.starts_with(crate::SEALED_PREFIX);
        if envelope {
            fields.errors.push(FieldError::new(
                "user_agent",
                format!(
                    "must not begin with {}, the mark of an encrypted field",
                    crate::SEALED_PREFIX
                ),
            ));
        }
        !envelope
    });
    let request_id = fields.text(
        "request_id",
        false,
        REQUEST_ID_CHARS_MAX,
        Charset::Printable,
    );
    let timestamp_ns = fields.take_string("timestamp", false).and_then(|text| {
        if let Some(reason) = timestamp_problem(&text) {
            fields.errors.push(FieldError::new("timestamp", reason));
            return None;
        }
        let Some(timestamp_ns) = parse_timestamp(&text) else {
            fields.errors.push(FieldError::new(
                "timestamp",
                "must be an RFC 3339 date-time with offset, e.g. 2026-01-31T12:00:00Z",
            ));
            return None;
        };
        if timestamp_ns > now_ns.saturating_add(CLOCK_SKEW_SECS_MAX * 1_000_000_000) {
            fields.errors.push(FieldError::new(
                "timestamp",
                format!("is more than {CLOCK_SKEW_SECS_MAX} s in the future (clock skew limit)"),
            ));
            return None;
        }
        if bound_age
            && timestamp_ns < now_ns.saturating_sub(TIMESTAMP_AGE_DAYS_MAX * 86_400 * 1_000_000_000)
        {
            fields.errors.push(FieldError::new(
                "timestamp",
                format!("is more than {TIMESTAMP_AGE_DAYS_MAX} days in the past"),
            ));
            return None;
        }
        Some(timestamp_ns)
    });
    let changes = fields.json_object("changes", CHANGES_BYTES_MAX, true);
    let metadata = fields.json_object("metadata", METADATA_BYTES_MAX, false);

    match (
        tenant_id,
        actor_id,
        actor_type,
        action,
        resource_type,
        outcome,
    ) {
        (
            Some(tenant_id),
            Some(actor_id),
            Some(actor_type),
            Some(action),
            Some(resource_type),
            Some(outcome),
        ) if errors.is_empty() => Ok(SubmittedEvent {
            event_id,
            timestamp_ns,
            tenant_id,
            actor_id,
            actor_type,
            action,
            resource_type,
            resource_id,
            outcome,
            ip_address,
            user_agent,
            request_id,
            changes,
            metadata,
        }),
        _ => Err(errors),
    }
}

/// One entry of a tenant's actor directory (`PUT /v1/tenants/{t}/actors`): who an `actor_id` is,
/// for summaries by department and for team-scoped access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub actor_id: String,
    pub display_name: Option<String>,
    pub department: Option<String>,
    pub team: Option<String>,
    /// A JSON object, canonical text (sorted keys), like `metadata`.
    pub attributes: Option<String>,
}

/// The members an actor entry may hold.
const ACTOR_FIELDS: &[&str] = &[
    "actor_id",
    "display_name",
    "department",
    "team",
    "attributes",
];

/// Validates one actor directory entry with the event rules for its kinds of text: `actor_id`
/// as in an event, the names printable and at most [`ACTOR_NAME_CHARS_MAX`] characters,
/// `attributes` a JSON object of at most [`ACTOR_ATTRIBUTES_BYTES_MAX`] bytes. Every violation is
/// reported, naming its member.
pub fn validate_actor(value: Value) -> Result<Actor, Vec<FieldError>> {
    let Value::Object(mut object) = value else {
        return Err(vec![FieldError::new(
            "",
            "each actor must be a JSON object",
        )]);
    };
    let mut errors = Vec::new();
    for key in object.keys() {
        if !ACTOR_FIELDS.contains(&key.as_str()) {
            errors.push(FieldError::new(key, "unknown member"));
        }
    }
    let mut fields = Fields {
        object: &mut object,
        errors: &mut errors,
    };
    let actor_id = fields.text("actor_id", true, ACTOR_ID_CHARS_MAX, Charset::Printable);
    let display_name = fields.text(
        "display_name",
        false,
        ACTOR_NAME_CHARS_MAX,
        Charset::Printable,
    );
    let department = fields.text(
        "department",
        false,
        ACTOR_NAME_CHARS_MAX,
        Charset::Printable,
    );
    let team = fields.text("team", false, ACTOR_NAME_CHARS_MAX, Charset::Printable);
    let attributes = fields.json_object("attributes", ACTOR_ATTRIBUTES_BYTES_MAX, false);
    match actor_id {
        Some(actor_id) if errors.is_empty() => Ok(Actor {
            actor_id,
            display_name,
            department,
            team,
            attributes,
        }),
        _ => Err(errors),
    }
}

#[derive(Clone, Copy)]
enum Charset {
    /// Any characters except control, format and separator characters (see [`invisible_char`]).
    Printable,
    /// `[A-Za-z0-9_.:-]`, for verbs and type names that end up in dashboards and alert rules.
    Verb,
}

struct Fields<'a> {
    object: &'a mut Map<String, Value>,
    errors: &'a mut Vec<FieldError>,
}

impl Fields<'_> {
    /// Removes a field that must be a string. Absent and `null` are the same: not sent.
    fn take_string(&mut self, field: &str, required: bool) -> Option<String> {
        match self.object.remove(field) {
            None | Some(Value::Null) => {
                if required {
                    self.errors.push(FieldError::new(field, "is required"));
                }
                None
            }
            Some(Value::String(text)) => Some(text),
            Some(_) => {
                self.errors.push(FieldError::new(field, "must be a string"));
                None
            }
        }
    }

    fn text(
        &mut self,
        field: &str,
        required: bool,
        chars_max: usize,
        charset: Charset,
    ) -> Option<String> {
        let text = self.take_string(field, required)?;
        let reason = if text.is_empty() {
            Some("must not be empty".to_owned())
        } else if text.chars().count() > chars_max {
            Some(format!("must be at most {chars_max} characters"))
        } else {
            match charset {
                Charset::Printable => invisible_char(&text).map(|(position, c)| {
                    format!(
                        "must not contain control, format or line/paragraph separator \
                         characters (Unicode Cc, Cf, Zl, Zp); found U+{:04X} at character \
                         {position}",
                        u32::from(c)
                    )
                }),
                Charset::Verb
                    if !text.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-')
                    }) =>
                {
                    Some("must contain only A-Z, a-z, 0-9, '_', '.', ':', '-'".to_owned())
                }
                _ => None,
            }
        };
        match reason {
            Some(reason) => {
                self.errors.push(FieldError::new(field, reason));
                None
            }
            None => Some(text),
        }
    }

    /// Removes a field that must be a JSON object and returns its canonical text (compact, keys
    /// sorted: serde_json's map is ordered). `changes` may only hold `before` and `after`.
    fn json_object(&mut self, field: &str, bytes_max: usize, before_after: bool) -> Option<String> {
        let value = match self.object.remove(field) {
            None | Some(Value::Null) => return None,
            Some(value @ Value::Object(_)) => value,
            Some(_) => {
                self.errors
                    .push(FieldError::new(field, "must be a JSON object"));
                return None;
            }
        };
        if before_after {
            let Value::Object(map) = &value else {
                unreachable!("matched above")
            };
            for (key, inner) in map {
                if key != "before" && key != "after" {
                    self.errors.push(FieldError::new(
                        &format!("{field}.{key}"),
                        "unknown key: changes holds only \"before\" and \"after\"",
                    ));
                } else if !(inner.is_object() || inner.is_null()) {
                    self.errors.push(FieldError::new(
                        &format!("{field}.{key}"),
                        "must be a JSON object",
                    ));
                }
            }
        }
        let depth = json_depth(&value);
        if depth > JSON_DEPTH_MAX {
            self.errors.push(FieldError::new(
                field,
                format!("nests {depth} levels deep; at most {JSON_DEPTH_MAX} are allowed"),
            ));
            return None;
        }
        let text = serde_json::to_string(&value).expect("a JSON value always serializes");
        if text.len() > bytes_max {
            self.errors.push(FieldError::new(
                field,
                format!(
                    "is {} bytes as JSON; at most {bytes_max} are allowed",
                    text.len()
                ),
            ));
            return None;
        }
        Some(text)
    }
}

/// The first character (1-based position, character) of `text` that an identifier must not
/// hold: a control character (general category Cc), a format character (Cf: bidirectional
/// overrides and isolates such as U+202E, zero-width spaces and joiners, the byte-order mark,
/// invisible operators, tag characters), or a line or paragraph separator (Zl U+2028, Zp
/// U+2029). They render as nothing or reorder the text around them, so an identifier holding
/// one can be made to look like another (`admin\u{202E}nimda`) in a console, a dashboard or a
/// report. Surrogates (Cs) cannot occur in a Rust string.
fn invisible_char(text: &str) -> Option<(usize, char)> {
    text.chars()
        .enumerate()
        .find(|(_, c)| c.is_control() || is_format_or_separator(*c))
        .map(|(index, c)| (index + 1, c))
}

/// Whether `c` is in general category Cf, Zl or Zp (Unicode 16.0; the list changes rarely, and
/// a character added later is at worst accepted until this table learns it).
fn is_format_or_separator(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// Depth of a JSON value: a scalar is 0, an object or array is one more than its deepest member.
fn json_depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(json_depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_790_000_000_000_000_000;

    fn minimal() -> Value {
        json!({"tenant_id": "acme", "actor_id": "u1", "action": "login", "resource_type": "session"})
    }

    fn errors_of(value: Value) -> Vec<(String, String)> {
        validate_event(value, NOW)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.field, e.reason))
            .collect()
    }

    #[test]
    fn minimal_event_gets_defaults() {
        let event = validate_event(minimal(), NOW).unwrap();
        assert_eq!(event.actor_type, ActorType::Human);
        assert_eq!(event.outcome, Outcome::Success);
        assert!(event.event_id.is_none() && event.timestamp_ns.is_none());
    }

    #[test]
    fn every_missing_required_field_is_named() {
        let fields: Vec<_> = errors_of(json!({})).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["tenant_id", "actor_id", "action", "resource_type"]);
    }

    #[test]
    fn metadata_keys_are_canonicalised() {
        let mut value = minimal();
        value["metadata"] = json!({"z": 1, "a": {"y": [1, 2], "b": "x"}});
        let event = validate_event(value, NOW).unwrap();
        assert_eq!(
            event.metadata.unwrap(),
            r#"{"a":{"b":"x","y":[1,2]},"z":1}"#
        );
    }

    #[test]
    fn deep_json_is_rejected() {
        let mut deep = json!(1);
        for _ in 0..JSON_DEPTH_MAX {
            deep = json!({ "k": deep });
        }
        let mut value = minimal();
        value["metadata"] = deep.clone();
        assert!(validate_event(value, NOW).is_ok());
        let mut value = minimal();
        value["metadata"] = json!({ "k": deep });
        assert_eq!(errors_of(value)[0].0, "metadata");
    }

    #[test]
    fn unknown_fields_and_bad_enums_are_named() {
        let mut value = minimal();
        value["colour"] = json!("red");
        value["outcome"] = json!("maybe");
        value["ip_address"] = json!("999.1.1.1");
        value["changes"] = json!({"before": {}, "during": {}});
        let fields: Vec<_> = errors_of(value).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            ["colour", "outcome", "ip_address", "changes.during"]
        );
    }

    #[test]
    fn invisible_characters_are_refused_in_every_identifier_field() {
        // Right-to-left override, zero-width space, line separator, and more of their kind.
        let invisible = [
            '\u{202E}',
            '\u{200B}',
            '\u{2028}',
            '\u{2029}',
            '\u{200D}',
            '\u{2066}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{E0041}',
            '\u{0085}',
            '\u{0007}',
        ];
        let fields = [
            "event_id",
            "tenant_id",
            "actor_id",
            "action",
            "resource_type",
            "resource_id",
            "user_agent",
            "request_id",
        ];
        for c in invisible {
            for field in fields {
                let mut value = minimal();
                value[field] = json!(format!("adm{c}in"));
                let errors = errors_of(value);
                assert_eq!(
                    errors.len(),
                    1,
                    "{field} with U+{:04X}: {errors:?}",
                    u32::from(c)
                );
                assert_eq!(errors[0].0, field, "U+{:04X}", u32::from(c));
            }
            let mut value = minimal();
            value["actor_id"] = json!(format!("admin{c}"));
            let reason = &errors_of(value)[0].1;
            assert!(
                reason.contains(&format!("U+{:04X} at character 6", u32::from(c))),
                "{reason}"
            );
        }
        // Imports apply the same rule.
        let mut value = minimal();
        value["event_id"] = json!("e\u{202E}1");
        let errors = validate_imported_event(value, NOW).unwrap_err();
        assert_eq!(errors[0].field, "event_id");
    }

    #[test]
    fn visible_unicode_stays_accepted_in_identifiers() {
        let mut value = minimal();
        value["actor_id"] = json!("zoë@exämple.com 山田 \u{05D0}\u{05D1}");
        value["resource_id"] = json!("doc/ünïcode — ok");
        value["user_agent"] = json!("Mozilla/5.0 (X11; Linux x86_64) 🦀");
        let event = validate_event(value, NOW).unwrap();
        assert_eq!(event.actor_id, "zoë@exämple.com 山田 \u{05D0}\u{05D1}");
    }

    #[test]
    fn timestamps_finer_than_nanoseconds_are_refused_naming_the_field() {
        let mut value = minimal();
        value["timestamp"] = json!(crate::format_timestamp(NOW));
        assert!(validate_event(value, NOW).is_ok());
        let mut value = minimal();
        let ten_digits = crate::format_timestamp(NOW - 1_000_000_000).replace('Z', ".1234567891Z");
        value["timestamp"] = json!(ten_digits);
        let errors = errors_of(value);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "timestamp");
        assert!(
            errors[0]
                .1
                .contains(&format!("at most {TIMESTAMP_FRACTION_DIGITS_MAX}")),
            "{}",
            errors[0].1
        );
        let mut value = minimal();
        value["timestamp"] = json!("2026-06-30T23:59:60Z");
        let errors = validate_imported_event(value, NOW).unwrap_err();
        assert_eq!(errors[0].field, "timestamp");
        assert!(errors[0].reason.contains("leap second"));
    }

    #[test]
    fn clock_skew_is_enforced() {
        let mut value = minimal();
        value["timestamp"] = json!(crate::format_timestamp(
            NOW + (CLOCK_SKEW_SECS_MAX + 1) * 1_000_000_000
        ));
        assert_eq!(errors_of(value)[0].0, "timestamp");
        let mut value = minimal();
        value["timestamp"] = json!(crate::format_timestamp(NOW + 1_000_000_000));
        assert!(validate_event(value, NOW).is_ok());
    }
}
