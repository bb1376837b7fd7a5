//! The storage conformance suite against PostgreSQL: each property on a fresh database owned by
//! a fresh non-superuser role, so row-level security is enforced on the store as in production.

use std::sync::Arc;

use async_trait::async_trait;
use sealtrail_hot::conformance::Fixture;
use sealtrail_hot::HotStore;
use sealtrail_hot_postgres::testing::TestDatabase;
use sealtrail_hot_postgres::PostgresStore;

struct PostgresFixture {
    database: TestDatabase,
}

#[async_trait]
impl Fixture for PostgresFixture {
    /// Every call connects a new store with its own pool, as another node would.
    async fn open(&self) -> Arc<dyn HotStore> {
        Arc::new(
            PostgresStore::connect(&self.database.url())
                .await
                .expect("connecting the store"),
        )
    }

    async fn edit_event(&self, tenant_id: &str, seq: u64) {
        let client = self.database.admin_client().await;
        let edited = client
            .execute(
                "UPDATE events SET action = 'tampered' WHERE tenant_id = $1 AND seq = $2",
                &[&tenant_id, &(seq as i64)],
            )
            .await
            .expect("editing the row");
        assert_eq!(edited, 1);
    }
}

async fn fresh() -> PostgresFixture {
    PostgresFixture {
        database: TestDatabase::create().await,
    }
}

sealtrail_hot::conformance_tests!(fresh());
