//! The warm tier in process: Parquet round trip, migration of a SQLite hot store into a local
//! warm directory, verification across tiers, and the size of realistic events on disk.

use std::sync::Arc;

use sealtrail_archive::{
    migrate_hot_to_warm, migrate_hot_to_warm_expiring, parquet_file, verify_tiers_blocking,
    Location, MigrationPolicy, Reseal, Tier,
};
use sealtrail_hot::AppendOutcome;
use sealtrail_hot::EventStore;
use sealtrail_hot_sqlite::SqliteStore;
use sealtrail_ledger::{ChainHead, NoteSigner};
use sealtrail_model::{ActorType, Event, Outcome, PendingEvent, Sealed, StoredEvent};

const DAY_NS: i64 = 86_400 * 1_000_000_000;
const NOW_NS: i64 = 1_780_000_000 * 1_000_000_000;

/// A realistic event: a few hundred actors, a handful of actions, a request id, small JSON.
fn event(tenant_id: &str, index: u64, timestamp_ns: i64) -> Event {
    let actions = [
        "login",
        "logout",
        "document.update",
        "document.read",
        "user.invite",
    ];
    Event {
        event_id: format!("01J{index:023}"),
        timestamp_ns,
        tenant_id: tenant_id.to_owned(),
        actor_id: format!("user-{}@example.com", index * 7919 % 300),
        actor_type: if index.is_multiple_of(10) {
            ActorType::Service
        } else {
            ActorType::Human
        },
        action: actions[(index % 5) as usize].to_owned(),
        resource_type: "document".to_owned(),
        resource_id: Some(format!("doc-{}", index * 104_729 % 5_000)),
        outcome: if index.is_multiple_of(17) {
            Outcome::Failure
        } else {
            Outcome::Success
        },
        ip_address: Some(format!("10.0.{}.{}", index % 8, index * 31 % 250)),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0".to_owned()),
        request_id: Some(format!("req-{index:012x}")),
        changes: index
            .is_multiple_of(3)
            .then(|| r#"{"title":{"new":"Q3 plan","old":"Q3 draft"}}"#.to_owned()),
        metadata: Some(format!(
            r#"{{"department":"dept-{}","session":"s-{}"}}"#,
            index % 12,
            index / 20
        )),
    }
}

fn chain(tenant_id: &str, count: u64, first_ns: i64, step_ns: i64) -> Vec<StoredEvent> {
    let mut head = ChainHead::default();
    (0..count)
        .map(|index| {
            let timestamp_ns = first_ns + index as i64 * step_ns;
            head.append(
                event(tenant_id, index, timestamp_ns),
                timestamp_ns + 1_000_000,
            )
        })
        .collect()
}

/// Chained events as a request to the store, which chains them again to the same hashes.
fn resubmitted(events: &[StoredEvent]) -> Vec<PendingEvent> {
    events
        .iter()
        .map(|stored| PendingEvent {
            event: stored.event.clone(),
            received_at_ns: stored.received_at_ns,
            timestamp_supplied: true,
            capture: None,
        })
        .collect()
}

#[test]
fn parquet_round_trip_is_exact_and_small() {
    let events = chain("acme", 100_000, NOW_NS - 60 * DAY_NS, 20_000_000_000);
    let bytes = parquet_file::encode(&events, 3).unwrap();
    let decoded = parquet_file::decode(bytes.clone().into()).unwrap();
    assert_eq!(decoded, events);
    let per_event = bytes.len() as f64 / events.len() as f64;
    println!(
        "warm Parquet: {} bytes for {} events = {per_event:.1} bytes/event",
        bytes.len(),
        events.len()
    );
    // One incompressible 32-byte hash per event (`prev_hash`; `event_hash` is recomputed on
    // read) plus the random part of ids: realistic events stay well under 100 bytes.
    assert!(per_event < 100.0, "{per_event} bytes per event");
}

#[test]
fn migration_empties_the_old_prefix_and_verify_spans_both_tiers() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let warm_dir = dir.path().join("warm");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let events = chain("acme", 3_000, NOW_NS - 90 * DAY_NS, 40 * 60 * 1_000_000_000);
    let warm = Tier::open(&Location::Local(warm_dir.clone())).unwrap();
    let reports = runtime.block_on(async {
        let store = SqliteStore::open(&data_dir).unwrap();
        let requests: Vec<Vec<PendingEvent>> = events.chunks(500).map(resubmitted).collect();
        for outcome in store.append(Arc::new(requests)).await.unwrap() {
            assert!(matches!(outcome, AppendOutcome::Committed(_)));
        }
        let policy = MigrationPolicy {
            hot_retention_days: 30,
            now_ns: NOW_NS,
        };
        let reports = migrate_hot_to_warm(&store, &warm, None, policy, &mut |_| {})
            .await
            .unwrap();
        let cutoff = policy.cutoff_ns();
        let old = events
            .iter()
            .filter(|s| s.event.timestamp_ns < cutoff)
            .count() as u64;
        assert_eq!(reports[0].events_moved, old);
        assert_eq!(store.first_hot_seq("acme").await.unwrap(), Some(old + 1));
        // Appends continue the chain after a migration.
        reports
    });
    assert!(
        reports[0].files_written >= 2,
        "one file per month: {reports:?}"
    );
    let key = NoteSigner::from_seed("test", &[7; 32]).unwrap().verifier();
    let report = verify_tiers_blocking(
        &SqliteStore::open_read_only(&data_dir).unwrap(),
        None,
        &key,
        Some(&warm),
        None,
    )
    .unwrap();
    assert!(report.faults.is_empty(), "{:?}", report.faults);
    assert_eq!(report.tenants[0].events_checked, 3_000);
    assert_eq!(report.tenants[0].verdict.as_ref().unwrap().seq, 3_000);
    // Without the warm tier the chain is missing its start.
    let report = verify_tiers_blocking(
        &SqliteStore::open_read_only(&data_dir).unwrap(),
        None,
        &key,
        None,
        None,
    )
    .unwrap();
    assert_eq!(report.tenants[0].verdict.as_ref().unwrap_err().seq(), 1);
}

#[test]
fn history_whose_timestamps_alternate_between_months_still_makes_large_files() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let warm = Tier::open(&Location::Local(dir.path().join("warm"))).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // 2,000 events in `seq` order whose timestamps alternate between two months (an import
    // of two sources interleaved), all older than the cutoff.
    let october_ns = 1_759_363_200 * 1_000_000_000; // 2025-10-02
    let november_ns = 1_762_041_600 * 1_000_000_000; // 2025-11-02
    let now_ns = november_ns + 90 * DAY_NS;
    let mut head = ChainHead::default();
    let events: Vec<StoredEvent> = (0..2_000u64)
        .map(|index| {
            let base = if index.is_multiple_of(2) {
                october_ns
            } else {
                november_ns
            };
            let timestamp_ns = base + index as i64 * 1_000_000_000;
            head.append(event("acme", index, timestamp_ns), now_ns - DAY_NS)
        })
        .collect();
    let reports = runtime.block_on(async {
        let store = SqliteStore::open(&data_dir).unwrap();
        store
            .append(Arc::new(vec![resubmitted(&events)]))
            .await
            .unwrap();
        let policy = MigrationPolicy {
            hot_retention_days: 30,
            now_ns,
        };
        migrate_hot_to_warm(&store, &warm, None, policy, &mut |_| {})
            .await
            .unwrap()
    });
    assert_eq!(reports[0].events_moved, 2_000);
    // October's first event, then everything else from November on: never one file per event.
    assert_eq!(reports[0].files_written, 2, "{reports:?}");
    let key = NoteSigner::from_seed("test", &[7; 32]).unwrap().verifier();
    let report = verify_tiers_blocking(
        &SqliteStore::open_read_only(&data_dir).unwrap(),
        None,
        &key,
        Some(&warm),
        None,
    )
    .unwrap();
    assert!(report.faults.is_empty(), "{:?}", report.faults);
    assert_eq!(report.tenants[0].verdict.as_ref().unwrap().seq, 2_000);
}

/// A stand-in for the server's re-encryption: gives each sealed `ip_address` a new key id and
/// ciphertext, keeping its commitment, or, when `cheat`, a new commitment too (which changes
/// the event's hash, so the move must refuse it).
#[derive(Debug)]
struct Rekey {
    cheat: bool,
}

#[async_trait::async_trait]
impl Reseal for Rekey {
    async fn reseal(&self, events: &mut [StoredEvent]) -> Result<u64, String> {
        let mut moved = 0;
        for stored in events {
            let Some(text) = stored.event.ip_address.clone() else {
                continue;
            };
            if let Some(Sealed::Cipher {
                commitment, index, ..
            }) = Sealed::parse(&text)
            {
                let commitment = if self.cheat { [9; 32] } else { commitment };
                stored.event.ip_address = Some(
                    Sealed::Cipher {
                        commitment,
                        key_id: "t2.s2",
                        index,
                        data: "BBBB",
                    }
                    .to_text(),
                );
                moved += 1;
            }
        }
        Ok(moved)
    }
}

/// Hot → warm with re-encryption: the file holds the new ciphertext, every hash stays and
/// `verify` passes; a re-encryption that changes a commitment is refused before any hot row
/// is deleted.
#[test]
fn migration_reencrypts_only_ciphertext() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for cheat in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let warm = Tier::open(&Location::Local(dir.path().join("warm"))).unwrap();
        let mut head = ChainHead::default();
        let events: Vec<StoredEvent> = (0..200u64)
            .map(|index| {
                let timestamp_ns = NOW_NS - 60 * DAY_NS + index as i64 * 1_000_000_000;
                let mut event = event("acme", index, timestamp_ns);
                event.ip_address = Some(
                    Sealed::Cipher {
                        commitment: [index as u8; 32],
                        key_id: "t1.s1",
                        index: None,
                        data: "AAAA",
                    }
                    .to_text(),
                );
                head.append(event, timestamp_ns + 1_000)
            })
            .collect();
        let store = SqliteStore::open(&data_dir).unwrap();
        let outcome = runtime.block_on(async {
            store
                .append(Arc::new(vec![resubmitted(&events)]))
                .await
                .unwrap();
            let policy = MigrationPolicy {
                hot_retention_days: 30,
                now_ns: NOW_NS,
            };
            migrate_hot_to_warm_expiring(
                &store,
                &warm,
                None,
                policy,
                &[],
                Some(&Rekey { cheat }),
                &mut |_| {},
            )
            .await
        });
        if cheat {
            let error = outcome.unwrap_err().to_string();
            assert!(error.contains("more than the ciphertext"), "{error}");
            let first_hot = runtime.block_on(store.first_hot_seq("acme")).unwrap();
            assert_eq!(first_hot, Some(1), "no hot row deleted");
            assert!(runtime.block_on(warm.manifests("acme")).unwrap().is_empty());
            continue;
        }
        let reports = outcome.unwrap();
        assert_eq!(reports[0].events_moved, 200);
        assert_eq!(reports[0].fields_reencrypted, 200);
        let (path, manifest) = runtime.block_on(warm.manifests("acme")).unwrap().remove(0);
        let bytes = runtime
            .block_on(warm.get(&Tier::file_of(&path, &manifest)))
            .unwrap();
        let archived = parquet_file::decode(bytes).unwrap();
        for (written, original) in archived.iter().zip(&events) {
            assert_eq!(written.event_hash, original.event_hash);
            let text = written.event.ip_address.as_deref().unwrap();
            assert!(
                matches!(
                    Sealed::parse(text),
                    Some(Sealed::Cipher {
                        key_id: "t2.s2",
                        ..
                    })
                ),
                "{text}"
            );
        }
        let key = NoteSigner::from_seed("test", &[7; 32]).unwrap().verifier();
        let report = verify_tiers_blocking(
            &SqliteStore::open_read_only(&data_dir).unwrap(),
            None,
            &key,
            Some(&warm),
            None,
        )
        .unwrap();
        assert!(report.faults.is_empty(), "{:?}", report.faults);
        assert_eq!(report.tenants[0].verdict.as_ref().unwrap().seq, 200);
    }
}
