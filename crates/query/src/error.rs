use datafusion::error::DataFusionError;

/// Why a read failed. [`Error::is_client_error`] tells the caller's mistakes (bad SQL, a query
/// over its limits) from the service's failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("hot store: {0}")]
    Hot(#[from] sealtrail_hot::Error),
    #[error("archive: {0}")]
    Archive(#[from] sealtrail_archive::Error),
    #[error("query engine: {0}")]
    Engine(#[from] DataFusionError),
    /// The SQL does not parse, names something that does not exist, or is not a read.
    #[error("{0}")]
    InvalidSql(String),
    /// The query ran out of time.
    #[error("the query did not finish within {millis} ms")]
    Timeout { millis: u64 },
    /// A file the manifests record is not in storage (`sealtrail verify` names the damage).
    #[error("archived file {path} is recorded but missing; run `sealtrail verify`")]
    MissingFile { path: String },
    /// The reader went away (a client closed its export).
    #[error("the reader went away")]
    Cancelled,
    /// A request that cannot be answered as asked: `field` names the argument at fault.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// Stored data contradicts itself (a proof over stored nodes fails, a `seq` is missing).
    #[error("stored data is inconsistent: {0}; run `sealtrail verify`")]
    Corrupt(String),
    /// [`sealtrail_model::limits::QUERIES_CONCURRENT_MAX`] heavy reads (SQL, exports) are
    /// running; the caller should retry in a moment (503 with Retry-After).
    #[error("{running} queries and exports are running, the most at once; retry in a moment")]
    Busy { running: usize },
    /// A query task ended without an answer (it panicked or its runtime stopped).
    #[error("query task: {0}")]
    Task(String),
    /// The request reads beyond the caller's scope (a tenant-wide table for a `self` or
    /// `team_admin` caller): 403.
    #[error("{0}")]
    OutOfScope(String),
    /// An archived file does not decode as events (the message names the file and `seq`).
    #[error("archived file {path}: {reason}")]
    Decode { path: String, reason: String },
}

impl Error {
    /// True when the request, not the service, is at fault.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Error::InvalidSql(_) | Error::Timeout { .. } | Error::Invalid { .. }
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
