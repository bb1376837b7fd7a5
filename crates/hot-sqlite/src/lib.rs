//! The embedded hot tier: [`SqliteStore`] implements [`sealtrail_hot::HotStore`] on one SQLite
//! database in WAL mode in the data directory. It only reads and writes rows: chaining, tiles
//! and verification are the ledger's pure functions, shared with PostgreSQL.
//!
//! - `store`: the store (one writer connection with cached heads and frontiers, a pool of
//!   readers, migrations, the lifecycle's prefix removal).
//! - `verify`: the store as a [`sealtrail_hot::LogSource`], each tenant read in one read
//!   transaction.
//!
//! Nothing above this crate sees SQL or `rusqlite`: its errors leave as
//! [`sealtrail_hot::Error::Backend`].

mod error;
mod store;
mod verify;

pub use error::{Error, Result};
pub use store::SqliteStore;
