//! A stored value that does not decode is reported naming tenant, seq and column, never
//! replaced by a default, and only its own tenant fails.

use std::sync::Arc;

use sealtrail_hot::conformance::{test_checkpoint_key, test_event};
use sealtrail_hot::{verify_store, EventStore, TenantFault};
use sealtrail_hot_sqlite::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_column_is_named_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        let requests = ["acme", "beta"]
            .iter()
            .map(|tenant| {
                (1..=3)
                    .map(|n| test_event(tenant, &format!("{tenant}-{n}"), n))
                    .collect()
            })
            .collect();
        store.append(Arc::new(requests)).await.unwrap();
    }
    let conn = rusqlite::Connection::open(dir.path().join("hot.sqlite3")).unwrap();
    let edited = conn
        .execute(
            "UPDATE events SET event_hash = x'0102030405' WHERE tenant_id = 'acme' AND seq = 2",
            [],
        )
        .unwrap();
    assert_eq!(edited, 1);
    drop(conn);

    let store = SqliteStore::open_read_only(dir.path()).unwrap();
    let reports = verify_store(&store, None, &test_checkpoint_key().verifier())
        .await
        .unwrap();
    let verdicts: Vec<(&str, Result<u64, &TenantFault>)> = reports
        .iter()
        .map(|report| {
            (
                report.tenant_id.as_str(),
                report.verdict.as_ref().map(|head| head.seq),
            )
        })
        .collect();
    assert_eq!(verdicts[1], ("beta", Ok(3)));
    let (tenant, Err(fault)) = &verdicts[0] else {
        panic!("acme must fail: {verdicts:?}");
    };
    assert_eq!(*tenant, "acme");
    assert_eq!(fault.seq(), 2);
    assert!(
        fault.to_string().contains("column event_hash"),
        "the column is named: {fault}"
    );
}
