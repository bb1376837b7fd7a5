//! Syslog: an event as an RFC 5424 message, framed by octet counting (RFC 6587 §3.4.1) for a
//! TCP or TLS stream.
//!
//! ```text
//! <LEN> <PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [sealtrail@32473 tenant_id=".." event_id=".."
//!       seq=".." event_hash=".."] BOM{API JSON}
//! ```
//!
//! Octet counting, not a newline trailer, because the message is JSON that a receiver must get
//! whole, and the length prefix is the one framing that never depends on the content.
//!
//! The message is not cut to any size: RFC 5424 only asks receivers to take 480 octets and
//! SHOULD take 2048, but a truncated JSON document is useless to a SIEM and breaks the event
//! hash check. A receiver with a smaller limit (rsyslog's `maxMessageSize` defaults to 8 KiB)
//! has to be configured for Sealtrail's largest events.
//!
//! The SD-ID's enterprise number, 32473, is the one RFC 5612 reserves for documentation; it
//! stands until Sealtrail registers its own with IANA.

use sealtrail_model::{format_timestamp, Outcome, StoredEvent};

/// Syslog facility 13, "log audit" (RFC 5424 §6.2.1, table 1).
const FACILITY_LOG_AUDIT: u8 = 13;
/// Severity 5, "notice": a normal but significant condition, which a successful audited action is.
const SEVERITY_NOTICE: u8 = 5;
/// Severity 4, "warning": a failed action (a refused login, a denied change) deserves a look.
const SEVERITY_WARNING: u8 = 4;
/// RFC 5424's only protocol version.
const SYSLOG_VERSION: u8 = 1;
/// The SD-ID of Sealtrail's structured data element: a name at an enterprise number.
const SD_ID: &str = "sealtrail@32473";
/// RFC 5424 §6.4: the MSG of an UTF-8 message starts with a byte order mark, so a receiver knows
/// not to treat it as an unknown legacy encoding.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
/// The "no value" of a header field (RFC 5424 §6: NILVALUE).
const NIL_VALUE: &str = "-";

/// Most characters of HOSTNAME (RFC 5424 §6.2.4).
const HOSTNAME_CHARS_MAX: usize = 255;
/// Most characters of APP-NAME (RFC 5424 §6.2.5).
const APP_NAME_CHARS_MAX: usize = 48;
/// Most characters of MSGID (RFC 5424 §6.2.7).
const MSGID_CHARS_MAX: usize = 32;
/// Most fractional-second digits of TIMESTAMP (RFC 5424 §6.2.3: TIME-SECFRAC is 1 to 6 digits).
const TIMESTAMP_FRACTION_DIGITS_MAX: usize = 6;
/// Most digits of a frame's length that [`parse_octet_counted`] reads: enough for any length a
/// `usize` holds on 64-bit targets, and a bound on how far a malformed prefix is scanned.
const FRAME_LENGTH_DIGITS_MAX: usize = 20;

/// The event as one octet-counted syslog frame: `LEN SP MESSAGE`, LEN being MESSAGE's length in
/// bytes. Frames are written back to back on the stream, with nothing between them.
///
/// `hostname` and `app_name` are made printable ASCII (anything else becomes `_`) and cut to
/// their RFC limits; an empty one is sent as `-`.
pub fn syslog_frame(stored: &StoredEvent, hostname: &str, app_name: &str) -> Vec<u8> {
    let message = syslog_message(stored, hostname, app_name);
    let mut frame = format!("{} ", message.len()).into_bytes();
    frame.extend_from_slice(&message);
    frame
}

/// One complete frame at the start of `buf`: how many bytes it occupies (prefix included) and
/// its message. `None` when `buf` holds only part of a frame (read more and try again) or does not
/// start with a well-formed length (`NONZERO-DIGIT *DIGIT SP`).
pub fn parse_octet_counted(buf: &[u8]) -> Option<(usize, &[u8])> {
    let digits = buf
        .iter()
        .take(FRAME_LENGTH_DIGITS_MAX + 1)
        .position(|byte| *byte == b' ')?;
    let length_text = &buf[..digits];
    if length_text.first().is_none_or(|first| *first == b'0')
        || !length_text.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let message_len: usize = std::str::from_utf8(length_text).ok()?.parse().ok()?;
    let start = digits + 1;
    let end = start.checked_add(message_len)?;
    let message = buf.get(start..end)?;
    Some((end, message))
}

/// The RFC 5424 message, without framing.
fn syslog_message(stored: &StoredEvent, hostname: &str, app_name: &str) -> Vec<u8> {
    let event = &stored.event;
    let severity = match event.outcome {
        Outcome::Success => SEVERITY_NOTICE,
        Outcome::Failure => SEVERITY_WARNING,
    };
    let priority = FACILITY_LOG_AUDIT * 8 + severity;
    let header = format!(
        "<{priority}>{SYSLOG_VERSION} {timestamp} {hostname} {app_name} {NIL_VALUE} {msgid} ",
        timestamp = syslog_timestamp(event.timestamp_ns),
        hostname = header_field(hostname, HOSTNAME_CHARS_MAX),
        app_name = header_field(app_name, APP_NAME_CHARS_MAX),
        msgid = header_field(&event.action, MSGID_CHARS_MAX),
    );
    let structured_data = format!(
        "[{SD_ID} tenant_id=\"{}\" event_id=\"{}\" seq=\"{}\" event_hash=\"{}\"]",
        escape_param_value(&event.tenant_id),
        escape_param_value(&event.event_id),
        stored.seq,
        hex::encode(stored.event_hash),
    );
    let json = crate::event_json(stored).to_string();
    let mut message =
        Vec::with_capacity(header.len() + structured_data.len() + 1 + UTF8_BOM.len() + json.len());
    message.extend_from_slice(header.as_bytes());
    message.extend_from_slice(structured_data.as_bytes());
    message.push(b' ');
    message.extend_from_slice(UTF8_BOM);
    message.extend_from_slice(json.as_bytes());
    message
}

/// RFC 3339 in UTC with at most six fractional digits, as RFC 5424 allows. Extra digits are cut,
/// not rounded, so the syslog time never lies after the event's.
fn syslog_timestamp(timestamp_ns: i64) -> String {
    // The model writes `YYYY-MM-DDTHH:MM:SS[.fraction]Z` with no trailing zeros in the fraction.
    let full = format_timestamp(timestamp_ns);
    let Some((seconds, fraction)) = full.strip_suffix('Z').and_then(|t| t.split_once('.')) else {
        return full;
    };
    let kept = fraction[..fraction.len().min(TIMESTAMP_FRACTION_DIGITS_MAX)].trim_end_matches('0');
    if kept.is_empty() {
        format!("{seconds}Z")
    } else {
        format!("{seconds}.{kept}Z")
    }
}

/// A header field: PRINTUSASCII (33 to 126) only, at most `chars_max`, NILVALUE when empty.
/// Anything else would split the space-separated header or be refused by a strict receiver.
fn header_field(text: &str, chars_max: usize) -> String {
    let field: String = text
        .chars()
        .take(chars_max)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if field.is_empty() {
        NIL_VALUE.to_owned()
    } else {
        field
    }
}

/// A PARAM-VALUE: `"`, `\` and `]` escaped with a backslash (RFC 5424 §6.3.3); every other
/// character, UTF-8 included, is allowed as is.
fn escape_param_value(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '"' | '\\' | ']') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hec::tests::sample_event;

    fn message_text(frame: &[u8]) -> String {
        let (consumed, message) = parse_octet_counted(frame).unwrap();
        assert_eq!(consumed, frame.len());
        String::from_utf8(message.to_vec()).unwrap()
    }

    #[test]
    fn frame_is_length_space_rfc5424_message() {
        let stored = sample_event();
        let frame = syslog_frame(&stored, "audit-1.example", "sealtrail");
        let text = String::from_utf8(frame.clone()).unwrap();
        let (length, message) = text.split_once(' ').unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), message.len());
        let expected_head = format!(
            "<109>1 2026-01-01T00:00:00.123456Z audit-1.example sealtrail - document.read \
             [sealtrail@32473 tenant_id=\"acme\" event_id=\"evt-1\" seq=\"17\" event_hash=\"{}\"] \
             \u{feff}",
            "ab".repeat(32)
        );
        assert!(message.starts_with(&expected_head), "{message}");
        let json: serde_json::Value =
            serde_json::from_str(&message[expected_head.len()..]).unwrap();
        let mut api = serde_json::to_value(&stored).unwrap();
        api.as_object_mut().unwrap().remove("tier");
        assert_eq!(json, api, "the API JSON but for tier");
    }

    #[test]
    fn priority_is_log_audit_with_notice_or_warning() {
        let mut stored = sample_event();
        assert!(message_text(&syslog_frame(&stored, "h", "a")).starts_with("<109>1 "));
        stored.event.outcome = Outcome::Failure;
        assert!(message_text(&syslog_frame(&stored, "h", "a")).starts_with("<108>1 "));
    }

    #[test]
    fn several_frames_back_to_back_parse_one_by_one() {
        let mut events = Vec::new();
        for seq in 1..=3 {
            let mut stored = sample_event();
            stored.seq = seq;
            // A multi-byte character makes byte and character counts differ.
            stored.event.actor_id = format!("zoë-{seq}");
            events.push(stored);
        }
        let stream: Vec<u8> = events
            .iter()
            .flat_map(|stored| syslog_frame(stored, "host", "app"))
            .collect();
        let mut rest = &stream[..];
        let mut seqs = Vec::new();
        while !rest.is_empty() {
            let (consumed, message) = parse_octet_counted(rest).unwrap();
            let start = message.windows(3).position(|w| w == UTF8_BOM).unwrap() + 3;
            let json: serde_json::Value = serde_json::from_slice(&message[start..]).unwrap();
            seqs.push(json["seq"].as_u64().unwrap());
            rest = &rest[consumed..];
        }
        assert_eq!(seqs, [1, 2, 3]);
    }

    #[test]
    fn incomplete_or_malformed_frames_are_not_parsed() {
        let frame = syslog_frame(&sample_event(), "h", "a");
        for cut in [0, 1, 3, frame.len() - 1] {
            assert_eq!(parse_octet_counted(&frame[..cut]), None, "cut at {cut}");
        }
        assert_eq!(parse_octet_counted(b"5 hello"), Some((7, &b"hello"[..])));
        assert_eq!(
            parse_octet_counted(b"5 hello6 world"),
            Some((7, &b"hello"[..]))
        );
        for bad in [
            &b"05 hello"[..],
            b"0 ",
            b" hello",
            b"5x hello",
            b"-5 hello",
            b"+5 hello",
            b"99999999999999999999999 x",
            b"18446744073709551615 x",
            b"123456789012345678901234567890",
        ] {
            assert_eq!(
                parse_octet_counted(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn param_values_are_escaped() {
        assert_eq!(escape_param_value(r#"a"b\c]d[e"#), r#"a\"b\\c\]d[e"#);
        assert_eq!(escape_param_value("zoë"), "zoë");
        let mut stored = sample_event();
        stored.event.event_id = r#"id"]\x"#.into();
        stored.event.tenant_id = "t]".into();
        let message = message_text(&syslog_frame(&stored, "h", "a"));
        assert!(
            message.contains(r#"tenant_id="t\]" event_id="id\"\]\\x" seq="17""#),
            "{message}"
        );
    }

    #[test]
    fn msgid_is_the_action_cut_to_32_printable_characters() {
        let mut stored = sample_event();
        stored.event.action = format!("{}:tail", "a".repeat(40));
        let message = message_text(&syslog_frame(&stored, "h", "app"));
        let fields: Vec<&str> = message.splitn(7, ' ').collect();
        assert_eq!(fields[5], "a".repeat(32));
        assert_eq!(header_field("log in\té", MSGID_CHARS_MAX), "log_in__");
    }

    #[test]
    fn hostname_and_app_name_are_limited_and_nil_when_empty() {
        let stored = sample_event();
        let long_host = "h".repeat(300);
        let long_app = "sealtrail-".repeat(10);
        let message = message_text(&syslog_frame(&stored, &long_host, &long_app));
        let fields: Vec<&str> = message.splitn(7, ' ').collect();
        assert_eq!(fields[2], "h".repeat(HOSTNAME_CHARS_MAX));
        assert_eq!(fields[3], &long_app[..APP_NAME_CHARS_MAX]);
        assert_eq!(fields[4], "-");
        let message = message_text(&syslog_frame(&stored, "", "my app"));
        let fields: Vec<&str> = message.splitn(7, ' ').collect();
        assert_eq!((fields[2], fields[3]), ("-", "my_app"));
    }

    #[test]
    fn timestamp_has_at_most_six_fraction_digits() {
        let at = |ns: i64| syslog_timestamp(1_767_225_600_000_000_000 + ns);
        assert_eq!(at(0), "2026-01-01T00:00:00Z");
        assert_eq!(at(500_000_000), "2026-01-01T00:00:00.5Z");
        assert_eq!(at(123_456_789), "2026-01-01T00:00:00.123456Z");
        assert_eq!(at(999_999_999), "2026-01-01T00:00:00.999999Z");
        // Cutting the nanoseconds leaves no fraction at all, or a shorter one.
        assert_eq!(at(789), "2026-01-01T00:00:00Z");
        assert_eq!(at(120_000_789), "2026-01-01T00:00:00.12Z");
        assert_eq!(syslog_timestamp(-1), "1969-12-31T23:59:59.999999Z");
    }
}
