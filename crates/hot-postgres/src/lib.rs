//! The PostgreSQL hot tier: [`PostgresStore`] implements [`sealtrail_hot::HotStore`] for
//! production, where several stateless Sealtrail nodes share one database.
//!
//! - `schema`: versioned migrations (`schema_migrations`), `events` range-partitioned by month
//!   of `received_at`, and row-level security forced on every tenant table.
//! - `store`: the store itself: connection pool, scoped transactions, the locked group commit
//!   (it executes the plan of `sealtrail_hot::plan`, as the SQLite store does).
//!
//! docs/POSTGRES.md is the design note; ARCHITECTURE.md ("Several nodes on one PostgreSQL")
//! explains why chains stay linear across processes.

mod error;
mod schema;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod verify;

pub use error::{Database, Error, Result};
pub use store::PostgresStore;
