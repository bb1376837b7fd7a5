//! Every way the client can fail, and what a caller should do about each.

use std::path::PathBuf;

use sealtrail_model::FieldError;

/// The client's errors. Operating conditions (a full spool, a refused event) are errors; a
/// broken internal invariant is a panic.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event breaks a rule of event format v1; nothing was recorded. Each problem names its
    /// field, as the server's 400 would. Fix the event: sending it again cannot succeed.
    #[error("invalid event: {}", describe(.errors))]
    InvalidEvent { errors: Vec<FieldError> },
    /// The configuration cannot work (a batch above the server's limits, a spool smaller than
    /// one batch, a malformed URL).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The client was created outside a Tokio runtime; it needs one for its background tasks.
    #[error("the Sealtrail client must be created inside a Tokio runtime")]
    NoRuntime,
    /// Backpressure: this many events are already waiting in memory. Slow down and retry later;
    /// the event was not recorded.
    #[error("{events_max} events are already waiting to be sent; the event was not recorded")]
    QueueFull { events_max: usize },
    /// Backpressure: the server cannot be reached and the spool holds its configured maximum.
    /// The event was not recorded. Events already accepted stay in memory and on disk and are
    /// delivered once the server answers again.
    #[error(
        "the server is unreachable and the spool holds its maximum of {bytes_max} bytes; \
         the event was not recorded"
    )]
    SpoolFull { bytes_max: u64 },
    /// The spool directory cannot be written (disk error, permissions). Events that could not be
    /// written stay in memory; new ones are refused until a write succeeds.
    #[error("the spool cannot be written: {0}")]
    SpoolUnavailable(String),
    /// Reading or writing the spool failed.
    #[error("spool file {path}: {source}")]
    SpoolIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file in the spool directory is not a spool segment this version can read (another
    /// program's file, or a newer format). It is left untouched; the client does not start.
    #[error("spool file {path} is not a sealtrail-client spool segment of format version 1")]
    SpoolFormat { path: PathBuf },
    /// The server refused events for good (400, 401, 403, 409, 413, …): retrying the same
    /// events cannot succeed. Each failure holds the events themselves, so nothing is lost
    /// unseen; the same failures are logged at `error`.
    #[error("the server refused {} event(s): {}", count_events(.failures), first_detail(.failures))]
    Rejected { failures: Vec<Failure> },
    /// The client was shut down (or dropped) before the event was settled. An event that was
    /// not acknowledged is in the spool and is delivered by the next client that opens it.
    #[error("the client is shut down")]
    Closed,
    /// The HTTP client could not be built (TLS roots unreadable, say).
    #[error("HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Events the server refused for good, with its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The HTTP status of the refusal.
    pub status: u16,
    /// The server's explanation (`detail` of its problem document, or the body's start).
    pub detail: String,
    /// The refused events, as sent.
    pub events: Vec<serde_json::Value>,
}

impl Failure {
    /// The `event_id`s of the refused events.
    pub fn event_ids(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|event| event.get("event_id").and_then(serde_json::Value::as_str))
            .collect()
    }
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|error| format!("{}: {}", error.field, error.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

fn count_events(failures: &[Failure]) -> usize {
    failures.iter().map(|failure| failure.events.len()).sum()
}

fn first_detail(failures: &[Failure]) -> String {
    failures
        .first()
        .map(|failure| format!("{} {}", failure.status, failure.detail))
        .unwrap_or_default()
}
