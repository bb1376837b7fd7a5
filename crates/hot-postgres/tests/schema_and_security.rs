//! PostgreSQL-specific guarantees beyond the conformance suite: row-level security against
//! hand-written SQL, migrations when nodes start together, the monthly partitions, and the
//! schema-version checks of `verify`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sealtrail_hot::conformance::test_event;
use sealtrail_hot::{ApiKeyRecord, AppendOutcome, Role, StoredCheckpoint};
use sealtrail_hot::{CheckpointStore, EventStore, SettingsStore, TreeStore};
use sealtrail_hot_postgres::testing::TestDatabase;
use sealtrail_hot_postgres::{Error, PostgresStore};
use tokio_postgres::Client;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i64
}

/// `acme` gets 300 events and `beta` 260 (each completes a Merkle tile), received now; both get
/// a key and a checkpoint.
async fn two_tenants(store: &PostgresStore) {
    let received = now_ns();
    let mut batch = Vec::new();
    for n in 0..560u64 {
        let tenant = if n < 300 { "acme" } else { "beta" };
        let mut pending = test_event(tenant, &format!("e{n}"), n);
        pending.received_at_ns = received;
        batch.push(vec![pending]);
    }
    let outcomes = store.append(Arc::new(batch)).await.unwrap();
    assert!(outcomes
        .iter()
        .all(|outcome| matches!(outcome, AppendOutcome::Committed(_))));
    for (tenant, key_id) in [("acme", "k-acme"), ("beta", "k-beta")] {
        store
            .insert_api_key(ApiKeyRecord {
                key_id: key_id.into(),
                tenant_id: tenant.into(),
                role: Role::Reader,
                secret_hash: [1; 32],
                created_at_ns: received,
                expires_at_ns: None,
                revoked_at_ns: None,
                scope: None,
            })
            .await
            .unwrap();
        // A real signed checkpoint of the first event (the root of a one-leaf tree is its
        // leaf hash), so that verification below checks it.
        let first = store.scan_events(tenant, 0, 1).await.unwrap().remove(0);
        let checkpoint = sealtrail_ledger::Checkpoint {
            origin: sealtrail_ledger::tenant_origin(tenant),
            tree_size: 1,
            root_hash: first.event_hash,
            extensions: Vec::new(),
        };
        let note = sealtrail_ledger::sign_checkpoint(
            &checkpoint,
            &sealtrail_hot::conformance::test_checkpoint_key(),
        )
        .unwrap();
        store
            .insert_checkpoint(
                tenant,
                StoredCheckpoint {
                    tree_size: 1,
                    root_hash: first.event_hash,
                    note,
                    created_at_ns: received,
                },
            )
            .await
            .unwrap();
    }
}

const TENANT_TABLES: [&str; 6] = [
    "events",
    "event_ids",
    "chain_heads",
    "merkle_tiles",
    "api_keys",
    "checkpoints",
];

/// The tenants visible in each tenant table, and the row count of `events`, within one
/// transaction scoped by `scope` (none: the setting is left unset).
async fn visible(client: &mut Client, scope: Option<&str>) -> (Vec<Vec<String>>, i64) {
    let tx = client.transaction().await.unwrap();
    if let Some(scope) = scope {
        // Exactly what a hand-written session would do.
        tx.batch_execute(&format!("SET LOCAL sealtrail.tenant_id = '{scope}'"))
            .await
            .unwrap();
    }
    let mut tenants = Vec::new();
    for table in TENANT_TABLES {
        let rows = tx
            .query(
                &format!("SELECT DISTINCT tenant_id FROM {table} ORDER BY 1"),
                &[],
            )
            .await
            .unwrap();
        tenants.push(rows.iter().map(|row| row.get(0)).collect());
    }
    let count: i64 = tx
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    tx.commit().await.unwrap();
    (tenants, count)
}

fn only(tenant: &str) -> Vec<Vec<String>> {
    vec![vec![tenant.to_owned()]; TENANT_TABLES.len()]
}

fn nothing() -> Vec<Vec<String>> {
    vec![Vec::new(); TENANT_TABLES.len()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_scoped_session_cannot_read_another_tenants_rows() {
    let database = TestDatabase::create().await;
    let store = PostgresStore::connect(&database.url()).await.unwrap();
    two_tenants(&store).await;

    // A role that is not the owner, with every table privilege on every table, partitions
    // included: only row-level security stands between it and other tenants' rows.
    let reader = database.create_role("reader").await;
    let mut owner = database.client_as(database.name()).await;
    owner
        .batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {reader}"
        ))
        .await
        .unwrap();
    let mut session = database.client_as(&reader).await;

    assert_eq!(
        visible(&mut session, Some("acme")).await,
        (only("acme"), 300)
    );
    assert_eq!(
        visible(&mut session, Some("beta")).await,
        (only("beta"), 260)
    );
    assert_eq!(visible(&mut session, None).await, (nothing(), 0));
    assert_eq!(visible(&mut session, Some("nobody")).await, (nothing(), 0));
    // The service scope is for the owner's privileges only.
    assert_eq!(visible(&mut session, Some("*")).await, (nothing(), 0));

    // Naming a partition directly does not get around the policies.
    let partition: String = session
        .query_one(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'events'::regclass ORDER BY 1 LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let tx = session.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL sealtrail.tenant_id = 'acme'")
        .await
        .unwrap();
    let in_partition: Vec<String> = tx
        .query(&format!("SELECT DISTINCT tenant_id FROM {partition}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        in_partition.iter().all(|tenant| tenant == "acme"),
        "{in_partition:?}"
    );
    // Writes cannot reach other tenants either: updates and deletes see no rows, and an insert
    // for another tenant fails the policy's check.
    let updated = tx
        .execute(
            "UPDATE events SET actor_id = 'mallory' WHERE tenant_id = 'beta'",
            &[],
        )
        .await
        .unwrap();
    let deleted = tx
        .execute("DELETE FROM chain_heads WHERE tenant_id = 'beta'", &[])
        .await
        .unwrap();
    assert_eq!((updated, deleted), (0, 0));
    let refused = tx
        .execute(
            "INSERT INTO api_keys (key_id, tenant_id, role, secret_hash, created_at_ns) \
             VALUES ('forged', 'beta', 'admin', '\\x00', 0)",
            &[],
        )
        .await
        .expect_err("inserting another tenant's row violates the policy");
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    drop(tx);

    // The owner is bound too (FORCE): without a scope it sees nothing, and fails closed.
    assert_eq!(visible(&mut owner, None).await, (nothing(), 0));
    let (all, count) = visible(&mut owner, Some("*")).await;
    assert_eq!((all[0].len(), count), (2, 560));

    // Nothing was changed behind the store's back.
    let reports = sealtrail_hot::verify_store(
        &store,
        None,
        &sealtrail_hot::conformance::test_checkpoint_key().verifier(),
    )
    .await
    .unwrap();
    assert_eq!(reports.len(), 2);
    for report in &reports {
        assert!(report.verdict.is_ok(), "{report:?}");
    }
}

/// The partitions of `events` and whether each has forced row-level security.
async fn partitions(client: &Client) -> Vec<(String, bool)> {
    client
        .query(
            "SELECT c.relname::text, c.relrowsecurity AND c.relforcerowsecurity \
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'events'::regclass ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once_and_create_partitions_ahead() {
    let database = TestDatabase::create().await;
    let url = database.url();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::connect(&url).await })
        })
        .collect();
    for start in starts {
        start.await.unwrap().expect("every node starts");
    }
    let admin = database.admin_client().await;
    let versions: Vec<i32> = admin
        .query("SELECT version FROM schema_migrations ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        versions,
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        "every migration ran exactly once"
    );
    let found = partitions(&admin).await;
    assert_eq!(
        found.len(),
        1 + sealtrail_model::limits::POSTGRES_PARTITION_MONTHS_AHEAD as usize,
        "{found:?}"
    );
    assert!(found.iter().all(|(_, secured)| *secured), "{found:?}");

    // An append received in a month without a partition creates it (and the months after).
    let store = PostgresStore::connect(&url).await.unwrap();
    let mut far = test_event("acme", "far", 1);
    far.received_at_ns = 2_000_000_000_000_000_000; // 2033-05-18
    let outcome = store.append(Arc::new(vec![vec![far]])).await.unwrap();
    assert!(matches!(outcome[0], AppendOutcome::Committed(_)));
    let names: Vec<String> = partitions(&admin)
        .await
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    for expected in ["events_2033_05", "events_2033_06", "events_2033_07"] {
        assert!(names.iter().any(|name| name == expected), "{names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_partition_is_recreated_without_failing_the_append() {
    let database = TestDatabase::create().await;
    let store = PostgresStore::connect(&database.url()).await.unwrap();
    let received = now_ns();
    let mut first = test_event("acme", "e1", 1);
    first.received_at_ns = received;
    store.append(Arc::new(vec![vec![first]])).await.unwrap();
    // A lifecycle job (or an operator) drops the partition this process has cached.
    let admin = database.admin_client().await;
    let current: String = admin
        .query_one(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'events'::regclass ORDER BY 1 LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    admin
        .batch_execute(&format!("DROP TABLE {current}"))
        .await
        .unwrap();
    let mut second = test_event("acme", "e2", 2);
    second.received_at_ns = received;
    let outcome = store.append(Arc::new(vec![vec![second]])).await.unwrap();
    assert!(matches!(outcome[0], AppendOutcome::Committed(_)));
    assert!(store.get_event("acme", "e2").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_refuses_a_database_of_another_schema_version() {
    let database = TestDatabase::create().await;
    let error = PostgresStore::connect_existing(&database.url())
        .await
        .expect_err("an empty database has no schema");
    assert!(
        matches!(error, Error::SchemaNotMigrated { found: 0, .. }),
        "{error}"
    );
    PostgresStore::connect(&database.url()).await.unwrap();
    PostgresStore::connect_existing(&database.url())
        .await
        .expect("a migrated database is accepted");
    database
        .admin_client()
        .await
        .batch_execute(
            "INSERT INTO schema_migrations (version, description) VALUES (999, 'from the future')",
        )
        .await
        .unwrap();
    let error = PostgresStore::connect_existing(&database.url())
        .await
        .expect_err("a newer schema is refused");
    assert!(
        matches!(error, Error::SchemaTooNew { found: 999, .. }),
        "{error}"
    );
    let error = PostgresStore::connect(&database.url())
        .await
        .expect_err("serve refuses a newer schema too");
    assert!(matches!(error, Error::SchemaTooNew { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_database_but_not_the_password() {
    let error = PostgresStore::connect("postgres://nobody:secret-password@127.0.0.1:1/missing")
        .await
        .expect_err("nothing listens on port 1");
    let text = format!("{error} {error:?}");
    assert!(text.contains("127.0.0.1:1/missing"), "{text}");
    assert!(!text.contains("secret-password"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_merkle_frontier_is_rebuilt_from_stored_nodes() {
    let database = TestDatabase::create().await;
    let store = PostgresStore::connect(&database.url()).await.unwrap();
    let group = |from: u64, to: u64| -> Vec<Vec<sealtrail_model::PendingEvent>> {
        (from..to)
            .map(|n| vec![test_event("acme", &format!("e{n}"), n)])
            .collect()
    };
    store.append(Arc::new(group(0, 300))).await.unwrap();
    // The frontier is derived data; losing it (an operator's UPDATE, a restore of an older
    // dump of chain_heads) must cost a rebuild, not wrong tiles.
    database
        .admin_client()
        .await
        .batch_execute("UPDATE chain_heads SET frontier = NULL")
        .await
        .unwrap();
    store.append(Arc::new(group(300, 600))).await.unwrap();
    let leaves: Vec<[u8; 32]> = store
        .scan_events("acme", 0, 1_000)
        .await
        .unwrap()
        .iter()
        .map(|stored| stored.event_hash)
        .collect();
    let expected: Vec<[u8; 32]> = leaves
        .chunks_exact(256)
        .map(sealtrail_ledger::tree_root)
        .collect();
    assert_eq!(store.merkle_block("acme", 8, 0).await.unwrap(), expected);
    let frontier: Option<Vec<u8>> = database
        .admin_client()
        .await
        .query_one("SELECT frontier FROM chain_heads", &[])
        .await
        .unwrap()
        .get(0);
    // 600 = 0b1001011000: four subtrees in the compact range.
    assert_eq!(frontier.map(|bytes| bytes.len()), Some(4 * 32));
}
