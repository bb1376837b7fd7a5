//! RFC 3339 timestamps as nanoseconds since the Unix epoch.
//!
//! Sealtrail keeps instants, not spellings: `2026-01-01T01:00:00+01:00` and
//! `2026-01-01T00:00:00Z` are the same instant and are stored and returned as the latter.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Parses an RFC 3339 timestamp into nanoseconds since the Unix epoch (UTC).
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(parsed.unix_timestamp_nanos()).ok()
}

/// Formats nanoseconds since the Unix epoch as RFC 3339 in UTC with a `Z` suffix and only as
/// many fractional digits as needed.
pub fn format_timestamp(timestamp_ns: i64) -> String {
    let instant = OffsetDateTime::from_unix_timestamp_nanos(i128::from(timestamp_ns))
        .expect("an i64 of nanoseconds is always inside time's supported range");
    instant
        .format(&Rfc3339)
        .expect("RFC 3339 can format every UTC instant between years 0 and 9999")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_normalise_to_utc() {
        let a = parse_timestamp("2026-01-01T01:00:00+01:00").unwrap();
        let b = parse_timestamp("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(format_timestamp(a), "2026-01-01T00:00:00Z");
    }

    #[test]
    fn fractional_seconds_round_trip() {
        let ns = parse_timestamp("2026-03-04T05:06:07.123456789Z").unwrap();
        assert_eq!(format_timestamp(ns), "2026-03-04T05:06:07.123456789Z");
        assert!(parse_timestamp("2026-03-04 05:06:07").is_none());
        assert!(parse_timestamp("yesterday").is_none());
    }
}
