//! Errors of the warm and cold tiers.

/// An archive failure: an operating condition (storage unreachable, a file that fails its
/// checks), never a programmer bug.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("object storage: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("hot tier: {0}")]
    Hot(#[from] sealtrail_hot::Error),
    #[error("tier configuration: {0}")]
    Config(String),
    #[error("I/O on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// An archived file or manifest disagrees with itself, its manifest, the chain, or the hot
    /// rows it was written from.
    #[error("tenant {tenant_id}, seq {seq}: {path}: {reason}")]
    Mismatch {
        tenant_id: String,
        seq: u64,
        path: String,
        reason: String,
    },
    /// Re-encryption on the way down the tiers failed, or changed more than it may.
    #[error("re-encryption: {0}")]
    Reseal(String),
    #[error("async runtime: {0}")]
    Runtime(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
