//! The storage conformance suite against the embedded SQLite store, each property on a fresh
//! data directory.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use sealtrail_hot::conformance::Fixture;
use sealtrail_hot::HotStore;
use sealtrail_hot_sqlite::SqliteStore;

/// A temporary data directory. SQLite allows one process per data directory (a lock file), so
/// every `open` returns the same store.
struct SqliteFixture {
    data_dir: tempfile::TempDir,
    store: OnceLock<Arc<SqliteStore>>,
}

#[async_trait]
impl Fixture for SqliteFixture {
    async fn open(&self) -> Arc<dyn HotStore> {
        self.store
            .get_or_init(|| {
                Arc::new(SqliteStore::open(self.data_dir.path()).expect("opening the store"))
            })
            .clone()
    }

    async fn edit_event(&self, tenant_id: &str, seq: u64) {
        let conn = rusqlite::Connection::open(self.data_dir.path().join("hot.sqlite3"))
            .expect("opening the database file");
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .expect("setting a busy timeout");
        let edited = conn
            .execute(
                "UPDATE events SET action = 'tampered' WHERE tenant_id = ?1 AND seq = ?2",
                rusqlite::params![tenant_id, seq as i64],
            )
            .expect("editing the row");
        assert_eq!(edited, 1);
    }
}

async fn fresh() -> SqliteFixture {
    SqliteFixture {
        data_dir: tempfile::tempdir().expect("creating a temporary directory"),
        store: OnceLock::new(),
    }
}

sealtrail_hot::conformance_tests!(fresh());
