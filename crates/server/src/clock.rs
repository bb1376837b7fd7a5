//! The server's clock: the system clock, or — in tests only — a clock started at a fixed
//! instant.
//!
//! Every time-based decision of the server (the age and skew limits of ingest, `received_at`,
//! checkpoint times, the lifecycle schedule's cutoffs and retention) reads [`now_ns`], so a
//! test that sets [`TEST_NOW_ENV`] gets the same outcome on any calendar date. The test clock
//! starts at the given instant when first read and then advances with real (monotonic) time,
//! so timestamps taken one after another still increase.
//!
//! `SEALTRAIL_TEST_NOW` is a test-only setting: it is not a flag, it is not in `--help`, and a
//! production server MUST NOT set it (its events would be received at a made-up time).

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Test-only: an RFC 3339 instant the server's clock starts at (see the module docs).
pub const TEST_NOW_ENV: &str = "SEALTRAIL_TEST_NOW";

/// The test clock's start, read once: the instant and when it was read.
fn test_clock() -> Option<(i64, Instant)> {
    static TEST_CLOCK: OnceLock<Option<(i64, Instant)>> = OnceLock::new();
    *TEST_CLOCK.get_or_init(|| {
        let text = std::env::var(TEST_NOW_ENV).ok()?;
        // A malformed test setting is a bug in the test that set it, never an operating
        // condition: running on the system clock instead would hide it.
        let start_ns = sealtrail_model::parse_timestamp(&text)
            .unwrap_or_else(|| panic!("{TEST_NOW_ENV}={text:?} is not an RFC 3339 timestamp"));
        tracing::warn!(
            start = %text,
            "{TEST_NOW_ENV} is set: the server runs on a test clock, not the system clock"
        );
        Some((start_ns, Instant::now()))
    })
}

/// The server's clock, in nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> i64 {
    if let Some((start_ns, started)) = test_clock() {
        let elapsed_ns = i64::try_from(started.elapsed().as_nanos()).expect("elapsed < 292 years");
        return start_ns.saturating_add(elapsed_ns);
    }
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since_epoch.as_nanos()).expect("clock before 2262")
}
