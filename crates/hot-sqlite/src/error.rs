//! Errors inside the SQLite store; each becomes a [`sealtrail_hot::Error`] at the trait's
//! boundary, SQLite's own as [`sealtrail_hot::Error::Backend`].

/// A SQLite store failure. These are operating conditions (disk full, file locked, corrupt row),
/// never validation errors: those are caught before an event reaches the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] sealtrail_hot::Error),
}

impl From<Error> for sealtrail_hot::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Sqlite(source) => sealtrail_hot::Error::Backend {
                backend: "SQLite",
                source: Box::new(source),
            },
            Error::Store(error) => error,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
