//! Errors of the hot tier.

/// A hot-store failure. These are operating conditions (disk full, file locked, corrupt row),
/// never validation errors: those are caught before an event reaches the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
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
