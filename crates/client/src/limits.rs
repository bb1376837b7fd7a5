//! Every bound and default of the client, in one place, each with its unit last.
//!
//! The server's own bounds (events per request, body size, field lengths) are not repeated here:
//! they come from `sealtrail_model::limits`, the constants the server enforces, so the client can
//! never build a request the server is sure to refuse for its size.

use std::time::Duration;

/// Events a batch holds by default before it is sent. Large enough that a busy application sends
/// a few requests per second, small enough that one request stays well below a second of the
/// server's group commit.
pub const BATCH_EVENTS_DEFAULT: usize = 500;
/// How long the first event of a batch waits for company before the batch is sent anyway, by
/// default: the most an event sits in memory on a quiet client.
pub const BATCH_LINGER_MILLIS_DEFAULT: u64 = 500;
/// Bytes of JSON a batch holds by default before it is sent. A quarter of the server's body
/// limit (`BODY_BYTES_MAX`), so a batch of 500 large events (up to ~82 KB each) is cut by size
/// long before the server would answer 413.
pub const BATCH_BYTES_DEFAULT: usize = 4 * 1024 * 1024;
/// Smallest batch byte bound a configuration may set: one event at its largest (64 KiB of
/// `changes`, 16 KiB of `metadata` and the text fields) always fits.
pub const BATCH_BYTES_MIN: usize = 256 * 1024;

/// Events the client holds in memory (recorded, not yet acknowledged or spooled) by default.
/// When reached, `record` answers [`crate::Error::QueueFull`] instead of growing without bound.
pub const QUEUE_EVENTS_DEFAULT: usize = 20_000;

/// Bytes the on-disk spool may occupy by default. When reached while the server is unreachable,
/// `record` answers [`crate::Error::SpoolFull`]: backpressure, never a silent drop.
pub const SPOOL_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;
/// A spool segment is sealed and a new one started once it holds this many bytes. Fully
/// replayed segments are deleted whole, so this is also the most disk a replayed-but-not-yet-
/// deleted prefix can hold.
pub const SPOOL_SEGMENT_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// Bytes a spool record adds to its batch: the length and checksum words.
pub const SPOOL_RECORD_OVERHEAD_BYTES: u64 = 8;

/// First pause before a failed request is retried, by default. Doubled per attempt, then drawn
/// uniformly below that ("full jitter"), so clients that failed together do not return together.
pub const BACKOFF_BASE_MILLIS_DEFAULT: u64 = 100;
/// Longest pause between two attempts, by default; also how long a server that came back may
/// wait at most before the spool's replay notices it.
pub const BACKOFF_CAP_MILLIS_DEFAULT: u64 = 30_000;
/// Longest `Retry-After` the client obeys, in seconds. A larger value (a misconfigured proxy
/// saying "come back tomorrow") is cut here; the events are kept in the spool meanwhile.
pub const RETRY_AFTER_SECS_MAX: u64 = 600;

/// Attempts at a batch before it goes to the spool, by default. A blip (one refused connection,
/// one 503) is ridden out in memory; a server that keeps failing costs at most this many
/// round trips before the events are on disk.
pub const SEND_ATTEMPTS_BEFORE_SPOOL_DEFAULT: u32 = 3;
/// How long one request to the server may take, by default, from connecting to the last byte
/// of the answer. It bounds how long `flush` waits on a server that accepts connections but does
/// not answer.
pub const REQUEST_TIMEOUT_MILLIS_DEFAULT: u64 = 10_000;

/// Permanent failures kept for [`crate::Client::take_failures`] (each is also logged and handed
/// to its event's [`crate::Recorded`]). Beyond it the oldest are forgotten and counted in
/// [`crate::Status::failures_forgotten`], so a client nobody asks cannot grow without bound.
pub const FAILURES_KEPT_MAX: usize = 1_000;

/// How often `shutdown` looks whether everything was delivered, in milliseconds.
pub const SHUTDOWN_POLL_MILLIS: u64 = 20;

pub(crate) fn millis(value: u64) -> Duration {
    Duration::from_millis(value)
}
