//! Errors of the hot tier.

/// A hot-store failure. These are operating conditions (disk full, file locked, corrupt row),
/// never validation errors: those are caught before an event reaches the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backend's own failure (SQLite, PostgreSQL), named.
    #[error("{backend}: {source}")]
    Backend {
        backend: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the data directory {path} is in use by another sealtrail process")]
    Locked { path: String },
    #[error("I/O on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("stored row is malformed: tenant {tenant_id} seq {seq}: {reason}")]
    Corrupt {
        tenant_id: String,
        seq: u64,
        reason: String,
    },
    #[error("store task failed: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
