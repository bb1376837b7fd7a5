//! The SQLite WAL stays bounded under sustained ingest, and a restart starts with an empty one.

use std::sync::Arc;

use sealtrail_hot::conformance::test_event;
use sealtrail_hot::AppendOutcome;
use sealtrail_hot::EventStore;
use sealtrail_hot_sqlite::SqliteStore;
use sealtrail_model::limits::{WAL_BYTES_SOFT_MAX, WAL_CHECKPOINT_INTERVAL_MILLIS};

fn wal_bytes(data_dir: &std::path::Path) -> u64 {
    std::fs::metadata(data_dir.join("hot.sqlite3-wal")).map_or(0, |meta| meta.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_sustained_ingest_and_is_empty_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    // 12 KiB of metadata per event: three times the soft bound of WAL in a few seconds, with no
    // pause between commits for a passive checkpoint to catch up in.
    let padding = "x".repeat(12 * 1024);
    let target_bytes = 3 * WAL_BYTES_SOFT_MAX;
    let per_group = 200u64;
    let groups = target_bytes / (per_group * 12 * 1024) + 1;
    let mut largest_wal = 0u64;
    let mut counter = 0u64;
    for _ in 0..groups {
        let request: Vec<_> = (0..per_group)
            .map(|_| {
                counter += 1;
                let mut pending = test_event("acme", &format!("e{counter}"), counter);
                pending.event.metadata = Some(format!(r#"{{"padding":"{padding}"}}"#));
                pending
            })
            .collect();
        let outcomes = store.append(Arc::new(vec![request])).await.unwrap();
        assert!(matches!(outcomes[0], AppendOutcome::Committed(_)));
        largest_wal = largest_wal.max(wal_bytes(dir.path()));
    }
    // Let the checkpointer see the last commits.
    tokio::time::sleep(std::time::Duration::from_millis(
        3 * WAL_CHECKPOINT_INTERVAL_MILLIS,
    ))
    .await;
    // The bound is soft: the WAL may pass it by what arrives in one checkpoint interval.
    assert!(
        largest_wal < 2 * WAL_BYTES_SOFT_MAX,
        "the WAL reached {largest_wal} bytes writing {counter} events"
    );
    assert!(wal_bytes(dir.path()) <= WAL_BYTES_SOFT_MAX);
    drop(store);

    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(
        wal_bytes(dir.path()),
        0,
        "a restart starts with an empty WAL"
    );
    assert_eq!(
        store.chain_heads().await.unwrap()[0].1.seq,
        counter,
        "nothing was lost"
    );
}
