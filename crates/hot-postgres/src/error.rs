//! Errors of the PostgreSQL hot tier.

use std::fmt;

/// A PostgreSQL hot-store failure: the database refused, was unreachable, or holds a schema this
/// build cannot use. Never a validation error: those are caught before an event reaches a store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the database URL is not valid: {0}")]
    Url(#[source] tokio_postgres::Error),
    #[error("PostgreSQL at {database}: {source}")]
    Postgres {
        database: Database,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("PostgreSQL at {database}: no connection: {source}")]
    Pool {
        database: Database,
        #[source]
        source: deadpool_postgres::PoolError,
    },
    #[error("cannot build the connection pool: {0}")]
    PoolBuild(#[source] deadpool_postgres::BuildError),
    #[error(
        "PostgreSQL at {database}: schema version {found} is newer than this build knows \
         ({known}); upgrade sealtrail before running it against this database"
    )]
    SchemaTooNew {
        database: Database,
        found: i32,
        known: i32,
    },
    #[error(
        "PostgreSQL at {database}: schema version {found}, expected {known}; start \
         `sealtrail serve --database-url …` once to migrate it"
    )]
    SchemaNotMigrated {
        database: Database,
        found: i32,
        known: i32,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a store is connected, for error messages: host, port and database name, never the
/// user's password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database(pub(crate) String);

impl fmt::Display for Database {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl Error {
    /// The SQLSTATE the server answered with, if the failure came from the server.
    pub fn sql_state(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            Error::Postgres { source, .. } => source.code(),
            _ => None,
        }
    }
}

/// The hot-store trait speaks `sealtrail_hot::Error`: a database failure travels as its
/// [`Backend`](sealtrail_hot::Error::Backend) variant with this error (and its source chain,
/// SQLSTATE included) inside.
impl From<Error> for sealtrail_hot::Error {
    fn from(error: Error) -> Self {
        sealtrail_hot::Error::Backend {
            backend: "PostgreSQL",
            source: Box::new(error),
        }
    }
}
