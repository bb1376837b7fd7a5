//! RFC 3339 timestamps as nanoseconds since the Unix epoch.
//!
//! Sealtrail keeps instants, not spellings: `2026-01-01T01:00:00+01:00` and
//! `2026-01-01T00:00:00Z` are the same instant and are stored and returned as the latter.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::limits::TIMESTAMP_FRACTION_DIGITS_MAX;

/// Parses an RFC 3339 timestamp into nanoseconds since the Unix epoch (UTC). A spelling whose
/// instant cannot be kept exactly (see [`timestamp_problem`]) is refused, never rounded.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    if timestamp_problem(text).is_some() {
        return None;
    }
    let parsed = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(parsed.unix_timestamp_nanos()).ok()
}

/// Why an RFC 3339 timestamp, well-formed or not, names an instant that cannot be kept exactly:
/// more fractional-second digits than nanoseconds hold ([`TIMESTAMP_FRACTION_DIGITS_MAX`]), or a
/// leap second (`23:59:60`), which a count of nanoseconds since the epoch cannot represent. The
/// parser would silently cut the first and move the second to `23:59:59.999999999`.
pub fn timestamp_problem(text: &str) -> Option<String> {
    // `YYYY-MM-DDTHH:MM:SS`, then an optional fraction: the seconds are bytes 17 and 18.
    let bytes = text.as_bytes();
    if bytes.len() < 19 || bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    if &bytes[17..19] == b"60" {
        return Some(
            "is a leap second (:60), which cannot be stored as an instant; send :59.999999999 \
             or the next second"
                .to_owned(),
        );
    }
    let fraction_digits = match bytes.get(19) {
        Some(b'.') => bytes[20..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count(),
        _ => 0,
    };
    (fraction_digits > TIMESTAMP_FRACTION_DIGITS_MAX).then(|| {
        format!(
            "has {fraction_digits} fractional-second digits; at most \
             {TIMESTAMP_FRACTION_DIGITS_MAX} are allowed (instants are kept in nanoseconds)"
        )
    })
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

/// The UTC calendar day of an instant, `YYYY-MM-DD`: the day sampling statistics and
/// summaries count an event under.
pub fn format_day(timestamp_ns: i64) -> String {
    let instant = OffsetDateTime::from_unix_timestamp_nanos(i128::from(timestamp_ns))
        .expect("an i64 of nanoseconds is always inside time's supported range");
    let date = instant.date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Whether `text` is a day bound of a range: `YYYY-MM-DD` with a month from 01 to 12 and a day
/// from 01 to 31. Bounds compare as text, so `2026-02-31` is a valid bound (it sorts after every
/// day of February); a calendar check would refuse what the range means plainly.
pub fn is_day_bound(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes[range.clone()]
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| text[range].parse::<i32>().ok())
            .flatten()
    };
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return false;
    }
    let (Some(year), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return false;
    };
    year >= 0 && (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// Whether `text` is a month bound of a range: `YYYY-MM` with a month from 01 to 12.
pub fn is_month_bound(text: &str) -> bool {
    text.len() == 7 && is_day_bound(&format!("{text}-01"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_bound_is_a_year_and_a_month() {
        for good in ["2026-01", "2026-12", "0000-06"] {
            assert!(is_month_bound(good), "{good}");
        }
        for bad in [
            "2026-00",
            "2026-13",
            "2026-1",
            "2026-12-01",
            "202612",
            "2026-1a",
            "",
        ] {
            assert!(!is_month_bound(bad), "{bad}");
        }
    }

    #[test]
    fn days_are_utc_calendar_days() {
        let late = parse_timestamp("2026-03-01T23:59:59.999999999Z").unwrap();
        assert_eq!(format_day(late), "2026-03-01");
        assert_eq!(format_day(late + 1), "2026-03-02");
        assert_eq!(format_day(-1), "1969-12-31");
        assert!(is_day_bound("2026-02-28") && is_day_bound("2026-02-31"));
        assert!(!is_day_bound("2026-13-01") && !is_day_bound("2026-00-10"));
        assert!(
            !is_day_bound("2026-2-28")
                && !is_day_bound("2026-02-32")
                && !is_day_bound("2026-02-2x")
        );
    }

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

    #[test]
    fn finer_than_nanoseconds_is_refused_not_cut() {
        let nine = "2026-03-04T05:06:07.123456789+01:00";
        assert!(timestamp_problem(nine).is_none());
        assert!(parse_timestamp(nine).is_some());
        for ten in [
            "2026-03-04T05:06:07.1234567891Z",
            "2026-03-04T05:06:07.1234567890Z",
            "2026-03-04T05:06:07.000000000000+01:00",
        ] {
            let reason = timestamp_problem(ten).unwrap();
            assert!(reason.contains("at most 9"), "{reason}");
            assert_eq!(parse_timestamp(ten), None, "{ten}");
        }
    }

    #[test]
    fn leap_seconds_are_refused_not_moved() {
        let leap = "2016-12-31T23:59:60Z";
        assert!(timestamp_problem(leap).unwrap().contains("leap second"));
        assert_eq!(parse_timestamp(leap), None);
        assert!(parse_timestamp("2016-12-31T23:59:59.999999999Z").is_some());
        assert!(timestamp_problem("2016-12-31T23:60:00Z").is_none());
    }
}
