//! The hot → warm lifecycle on PostgreSQL: archived events leave by whole partitions, a
//! partition still holding unarchived rows stays (its archived rows hidden from every read),
//! and the chain checks across the warm files and the hot rows.

use std::collections::BTreeMap;

use sealtrail_archive::{migrate_hot_to_warm, Location, MigrationPolicy, Tier};
use sealtrail_hot::conformance::test_event;
use sealtrail_hot::{EventStore, LifecycleStore};
use sealtrail_hot_postgres::testing::TestDatabase;
use sealtrail_hot_postgres::PostgresStore;
use sealtrail_ledger::{event_hash, ChainHead, GENESIS_HASH};
use sealtrail_model::StoredEvent;

const NS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// Rows of `tenant_id` physically in a partition, read as the superuser (no row-level security,
/// so rows hidden from the store by `archived_through_seq` count too).
async fn rows_in(database: &TestDatabase, partition: &str, tenant_id: &str) -> Option<i64> {
    let admin = database.admin_client().await;
    let exists: bool = admin
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&partition])
        .await
        .unwrap()
        .get(0);
    if !exists {
        return None;
    }
    let count = admin
        .query_one(
            &format!("SELECT count(*) FROM {partition} WHERE tenant_id = $1"),
            &[&tenant_id],
        )
        .await
        .unwrap()
        .get(0);
    Some(count)
}

/// One tenant's chain across tiers: the warm files (checked against their manifests' ranges),
/// then the hot rows; `seq` 1..n, every `event_hash` recomputed, every `prev_hash` linked, and
/// the end is the recorded head. Returns (archived, hot) counts.
async fn verify_across_tiers(
    store: &PostgresStore,
    warm: &Tier,
    tenant_id: &str,
    head: ChainHead,
) -> (u64, u64) {
    let mut events: Vec<StoredEvent> = Vec::new();
    for (path, manifest) in warm.manifests(tenant_id).await.unwrap() {
        let bytes = warm.get(&Tier::file_of(&path, &manifest)).await.unwrap();
        let archived = sealtrail_archive::parquet_file::decode(bytes).unwrap();
        assert_eq!(archived.first().unwrap().seq, manifest.first_seq);
        assert_eq!(archived.last().unwrap().seq, manifest.last_seq);
        events.extend(archived);
    }
    let archived = events.len() as u64;
    let mut after_seq = events.last().map_or(0, |stored| stored.seq);
    loop {
        let page = store
            .scan_events(tenant_id, after_seq, 1_000)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after_seq = last.seq;
        events.extend(page);
    }
    let mut previous = ChainHead {
        seq: 0,
        hash: GENESIS_HASH,
    };
    for stored in &events {
        assert_eq!(
            stored.seq,
            previous.seq + 1,
            "{tenant_id}: no gap, no duplicate"
        );
        assert_eq!(
            stored.prev_hash, previous.hash,
            "{tenant_id} seq {}",
            stored.seq
        );
        let recomputed = event_hash(
            &stored.event,
            stored.seq,
            stored.received_at_ns,
            &stored.prev_hash,
        );
        assert_eq!(
            recomputed, stored.event_hash,
            "{tenant_id} seq {}",
            stored.seq
        );
        previous = ChainHead {
            seq: stored.seq,
            hash: stored.event_hash,
        };
    }
    assert_eq!(
        previous, head,
        "{tenant_id}: the chain ends at its recorded head"
    );
    (archived, events.len() as u64 - archived)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_drops_whole_archived_partitions_and_chains_verify_across_tiers() {
    let database = TestDatabase::create().await;
    let store = PostgresStore::connect(&database.url()).await.unwrap();
    // Test events are received from 2026-01-31T13:00Z, one hour apart: acme's seqs 1..=11 land
    // in the January partition, 12..=40 in February. beta is received in February only, and
    // its events are young, so February keeps unarchived rows.
    let acme: Vec<_> = (1..=40)
        .map(|n| test_event("acme", &format!("acme-{n}"), n))
        .collect();
    let now_ns = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap();
    let beta: Vec<_> = (20..=25)
        .map(|n| {
            let mut pending = test_event("beta", &format!("beta-{n}"), n);
            pending.event.timestamp_ns = now_ns;
            pending
        })
        .collect();
    store
        .append(std::sync::Arc::new(vec![acme, beta]))
        .await
        .unwrap();
    assert_eq!(rows_in(&database, "events_2026_01", "acme").await, Some(11));
    assert_eq!(rows_in(&database, "events_2026_02", "acme").await, Some(29));

    let warm_dir = tempfile::tempdir().unwrap();
    let warm = Tier::open(&Location::Local(warm_dir.path().to_owned())).unwrap();
    let policy = MigrationPolicy {
        hot_retention_days: 1,
        now_ns: now_ns + NS_PER_DAY,
    };
    let reports = migrate_hot_to_warm(&store, &warm, None, policy, &mut |_| {})
        .await
        .unwrap();
    let moved: BTreeMap<&str, u64> = reports
        .iter()
        .map(|report| (report.tenant_id.as_str(), report.events_moved))
        .collect();
    assert_eq!(moved, BTreeMap::from([("acme", 40), ("beta", 0)]));

    // January held only archived rows: the partition is gone, not emptied row by row.
    assert_eq!(rows_in(&database, "events_2026_01", "acme").await, None);
    // February still holds beta's hot rows, so it stays; acme's archived rows wait there for
    // it, physically present but served by no read.
    assert_eq!(rows_in(&database, "events_2026_02", "acme").await, Some(29));
    assert_eq!(store.first_hot_seq("acme").await.unwrap(), None);
    assert!(store.scan_events("acme", 0, 100).await.unwrap().is_empty());
    assert_eq!(store.get_event("acme", "acme-30").await.unwrap(), None);

    let heads: BTreeMap<String, ChainHead> =
        store.chain_heads().await.unwrap().into_iter().collect();
    assert_eq!(
        verify_across_tiers(&store, &warm, "acme", heads["acme"]).await,
        (40, 0)
    );
    assert_eq!(
        verify_across_tiers(&store, &warm, "beta", heads["beta"]).await,
        (0, 6)
    );

    // A second run finds nothing to move and nothing more to drop; the chain continues.
    let again = migrate_hot_to_warm(&store, &warm, None, policy, &mut |_| {})
        .await
        .unwrap();
    assert!(again.iter().all(|report| report.events_moved == 0));
    assert_eq!(rows_in(&database, "events_2026_02", "acme").await, Some(29));
    let outcomes = store
        .append(std::sync::Arc::new(vec![vec![test_event(
            "acme", "acme-41", 41,
        )]]))
        .await
        .unwrap();
    assert!(
        matches!(&outcomes[0], sealtrail_hot::AppendOutcome::Committed(receipts) if receipts[0].seq == 41)
    );
    let heads: BTreeMap<String, ChainHead> =
        store.chain_heads().await.unwrap().into_iter().collect();
    assert_eq!(
        verify_across_tiers(&store, &warm, "acme", heads["acme"]).await,
        (40, 1)
    );
}
