//! Report, never replace: a stored value that does not decode is an error naming its tenant,
//! `seq` and column, from the read that met it and from `verify`, which fails that tenant (at
//! that `seq`) and goes on to pass the others. Values are damaged behind the store's back, as
//! the superuser (row-level security does not bind it).

use std::sync::Arc;

use sealtrail_hot::conformance::{test_checkpoint_key, test_event};
use sealtrail_hot::AppendOutcome;
use sealtrail_hot::{EventStore, LifecycleStore};
use sealtrail_hot_postgres::testing::TestDatabase;
use sealtrail_hot_postgres::PostgresStore;
use sealtrail_ledger::TenantFault;

/// Events per tenant.
const EVENTS: u64 = 5;

/// `acme`, `beta`, `delta` and `gamma` get [`EVENTS`] events each, `<tenant>-<n>` for n in
/// 0..EVENTS (so `<tenant>-<n>` has seq n + 1).
async fn four_tenants(store: &PostgresStore) {
    let mut batch = Vec::new();
    for tenant in ["acme", "beta", "delta", "gamma"] {
        for n in 0..EVENTS {
            batch.push(vec![test_event(tenant, &format!("{tenant}-{n}"), n)]);
        }
    }
    let outcomes = store.append(Arc::new(batch)).await.unwrap();
    assert!(outcomes
        .iter()
        .all(|outcome| matches!(outcome, AppendOutcome::Committed(_))));
}

/// Asserts `result` is `Corrupt` for `tenant` at `seq` with a reason naming `column`.
#[track_caller]
fn assert_corrupt<T: std::fmt::Debug>(
    result: sealtrail_hot::Result<T>,
    tenant: &str,
    seq: u64,
    column: &str,
) {
    match result {
        Err(sealtrail_hot::Error::Corrupt {
            tenant_id,
            seq: found,
            reason,
        }) => {
            assert_eq!((tenant_id.as_str(), found), (tenant, seq), "{reason}");
            assert!(
                reason.contains(&format!("column {column}")),
                "the reason names column {column}: {reason}"
            );
        }
        other => panic!("expected a corrupt {tenant} seq {seq} ({column}), got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_values_are_errors_naming_tenant_seq_and_column() {
    let database = TestDatabase::create().await;
    let store = PostgresStore::connect(&database.url()).await.unwrap();
    four_tenants(&store).await;
    let verifier = test_checkpoint_key().verifier();
    let reports = sealtrail_hot::verify_store(&store, None, &verifier)
        .await
        .unwrap();
    assert!(reports.iter().all(|report| report.verdict.is_ok()));

    let admin = database.admin_client().await;
    admin
        .batch_execute(
            // acme seq 3: an actor type the format does not have.
            "UPDATE events SET actor_type = 'robot' WHERE tenant_id = 'acme' AND seq = 3;
             -- beta seq 2: a hash cut to 5 bytes, in the row and in its idempotency key.
             UPDATE events SET event_hash = '\\x0102030405' WHERE tenant_id = 'beta' AND seq = 2;
             UPDATE event_ids SET event_hash = '\\x0102030405' WHERE tenant_id = 'beta' AND seq = 2;
             -- gamma: a chain head hash of 3 bytes.
             UPDATE chain_heads SET head_hash = '\\x010203' WHERE tenant_id = 'gamma';",
        )
        .await
        .unwrap();

    // The reads that meet them.
    assert_corrupt(
        store.get_event("acme", "acme-2").await,
        "acme",
        3,
        "actor_type",
    );
    assert_corrupt(
        store.scan_events("acme", 0, 100).await,
        "acme",
        3,
        "actor_type",
    );
    assert_corrupt(
        store.get_event("beta", "beta-1").await,
        "beta",
        2,
        "event_hash",
    );
    assert_corrupt(
        store.scan_events("beta", 0, 100).await,
        "beta",
        2,
        "event_hash",
    );
    assert_corrupt(
        store.existing("beta", vec!["beta-1".into()]).await,
        "beta",
        2,
        "event_hash of event_ids",
    );
    assert_corrupt(
        store.events_in_seq_range("beta", 1, EVENTS).await,
        "beta",
        2,
        "event_hash",
    );
    assert_corrupt(
        store.tenant_heads().await,
        "gamma",
        EVENTS,
        "head_hash of chain_heads",
    );
    assert_corrupt(
        store.chain_heads().await,
        "gamma",
        EVENTS,
        "head_hash of chain_heads",
    );
    // The rows around them still read; the damaged ones are never skipped nor filled in.
    assert_eq!(store.scan_events("acme", 3, 100).await.unwrap().len(), 2);
    assert!(store.get_event("acme", "acme-1").await.unwrap().is_some());
    assert_eq!(
        store
            .existing("beta", vec!["beta-0".into()])
            .await
            .unwrap()
            .len(),
        1
    );
    // A retry of the damaged key is refused as corrupt, not answered with a made-up receipt.
    assert_corrupt(
        store
            .append(Arc::new(vec![vec![test_event("beta", "beta-1", 1)]]))
            .await,
        "beta",
        2,
        "event_hash of event_ids",
    );
    // A tenant whose head is damaged takes no event, rather than chaining to a stand-in head.
    assert_corrupt(
        store
            .append(Arc::new(vec![vec![test_event("gamma", "gamma-new", 9)]]))
            .await,
        "gamma",
        EVENTS,
        "head_hash of chain_heads",
    );

    // verify fails each damaged tenant at its seq, naming the column, and passes the other.
    let reports = sealtrail_hot::verify_store(&store, None, &verifier)
        .await
        .unwrap();
    /// A tenant's verdict: its verified head `seq`, or the failing `seq` and the fault's text.
    type Verdict = Result<u64, (u64, String)>;
    let verdicts: Vec<(&str, Verdict)> = reports
        .iter()
        .map(|report| {
            let verdict = match &report.verdict {
                Ok(head) => Ok(head.seq),
                Err(fault) => Err((fault.seq(), fault.to_string())),
            };
            (report.tenant_id.as_str(), verdict)
        })
        .collect();
    let expected = [
        ("acme", Err((3, "actor_type"))),
        ("beta", Err((2, "event_hash"))),
        ("delta", Ok(EVENTS)),
        ("gamma", Err((EVENTS, "head_hash of chain_heads"))),
    ];
    assert_eq!(verdicts.len(), expected.len(), "{verdicts:?}");
    for ((tenant, verdict), (expected_tenant, expected_verdict)) in verdicts.iter().zip(expected) {
        assert_eq!(*tenant, expected_tenant);
        match (verdict, expected_verdict) {
            (Ok(seq), Ok(expected_seq)) => assert_eq!(*seq, expected_seq),
            (Err((seq, message)), Err((expected_seq, column))) => {
                assert_eq!(*seq, expected_seq, "{tenant}: {message}");
                assert!(
                    message.contains(&format!("column {column}")),
                    "{tenant}: {message}"
                );
            }
            _ => panic!("{tenant}: {verdict:?}, expected {expected_verdict:?}"),
        }
    }
    for report in &reports {
        if let Err(fault) = &report.verdict {
            assert!(
                matches!(fault, TenantFault::Undecodable { .. }),
                "{}: {fault:?}",
                report.tenant_id
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_head_seq_and_an_undecodable_frontier_are_reported() {
    let database = TestDatabase::create().await;
    let store = PostgresStore::connect(&database.url()).await.unwrap();
    four_tenants(&store).await;
    let admin = database.admin_client().await;
    admin
        .batch_execute("UPDATE chain_heads SET seq = -1 WHERE tenant_id = 'delta'")
        .await
        .unwrap();
    assert_corrupt(store.tenant_heads().await, "delta", 0, "seq of chain_heads");
    admin
        .batch_execute(
            "UPDATE chain_heads SET seq = 5 WHERE tenant_id = 'delta';
             UPDATE chain_heads SET frontier = '\\x0102' WHERE tenant_id = 'acme';",
        )
        .await
        .unwrap();
    assert_eq!(store.tenant_heads().await.unwrap().len(), 4);
    // The next append to acme would compute tiles from a frontier that is not one: refused,
    // never silently rebuilt over the damaged value.
    assert_corrupt(
        store
            .append(Arc::new(vec![vec![test_event("acme", "acme-new", 9)]]))
            .await,
        "acme",
        EVENTS,
        "frontier of chain_heads",
    );
    // Other tenants still take events.
    let outcomes = store
        .append(Arc::new(vec![vec![test_event("beta", "beta-new", 9)]]))
        .await
        .unwrap();
    assert!(matches!(outcomes[0], AppendOutcome::Committed(_)));
}
