//! The cold tier and retention in process: hot → warm → cold, one cold file per tenant-month,
//! `archived_files` deduplicating across tiers, retention deleting an expired prefix under signed
//! deletion records (and nothing of a tenant on legal hold), and verification that accepts a
//! recorded deletion, checks signed checkpoints over the remaining leaves, and fails on an
//! unrecorded deletion or a forged record.

use std::sync::Arc;

use sealtrail_archive::{
    apply_retention, archived_files, migrate_hot_to_warm, migrate_warm_to_cold,
    verify_tiers_blocking, ArchiveTier, CompactionPolicy, Location, MigrationPolicy, Tier,
    TiersReport,
};
use sealtrail_hot::{AppendOutcome, StoredCheckpoint};
use sealtrail_hot::{CheckpointStore, EventStore, SummaryStore};
use sealtrail_hot_sqlite::SqliteStore;
use sealtrail_ledger::{
    sign_checkpoint, tenant_origin, tree_root, ChainHead, Checkpoint, NoteSigner,
};
use sealtrail_model::{
    ActorType, Event, Outcome, PendingEvent, RetentionPeriod, RetentionPolicy, StoredEvent,
};

const DAY_NS: i64 = 86_400 * 1_000_000_000;
/// 2026-05-28T20:26:40Z.
const NOW_NS: i64 = 1_780_000_000 * 1_000_000_000;
/// Each tenant: 1,000 events, one every 18 hours, from 750 days ago.
const EVENTS: u64 = 1_000;
const STEP_NS: i64 = 18 * 3_600 * 1_000_000_000;
const FIRST_NS: i64 = NOW_NS - 750 * DAY_NS;

fn event(tenant_id: &str, index: u64, timestamp_ns: i64) -> Event {
    Event {
        event_id: format!("{tenant_id}-{index:06}"),
        timestamp_ns,
        tenant_id: tenant_id.to_owned(),
        actor_id: format!("user-{}", index % 13),
        actor_type: ActorType::Human,
        action: "document.update".to_owned(),
        resource_type: "document".to_owned(),
        resource_id: Some(format!("doc-{}", index % 101)),
        outcome: Outcome::Success,
        ip_address: None,
        user_agent: None,
        request_id: Some(format!("req-{index}")),
        changes: None,
        metadata: Some(r#"{"department":"finance"}"#.to_owned()),
    }
}

fn chain(tenant_id: &str) -> Vec<StoredEvent> {
    let mut head = ChainHead::default();
    (0..EVENTS)
        .map(|index| {
            let timestamp_ns = FIRST_NS + index as i64 * STEP_NS;
            head.append(event(tenant_id, index, timestamp_ns), timestamp_ns + 1_000)
        })
        .collect()
}

fn signer() -> NoteSigner {
    NoteSigner::from_seed("sealtrail-test", &[7; 32]).unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    data_dir: std::path::PathBuf,
    warm: Tier,
    cold: Tier,
    runtime: tokio::runtime::Runtime,
    events: Vec<StoredEvent>,
}

/// Two tenants in the hot store, each with signed checkpoints at tree sizes 100 (inside what
/// retention will delete) and 1,000 (the head), migrated hot → warm → cold.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let warm = Tier::open(&Location::Local(dir.path().join("warm"))).unwrap();
    let cold = Tier::open(&Location::Local(dir.path().join("cold"))).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let events = chain("acme");
    runtime.block_on(async {
        let store = SqliteStore::open(&data_dir).unwrap();
        for tenant_id in ["acme", "globex"] {
            let stored = chain(tenant_id);
            let requests: Vec<Vec<PendingEvent>> = stored
                .chunks(250)
                .map(|chunk| {
                    chunk
                        .iter()
                        .map(|stored| PendingEvent {
                            event: stored.event.clone(),
                            received_at_ns: stored.received_at_ns,
                            timestamp_supplied: true,
                            capture: None,
                        })
                        .collect()
                })
                .collect();
            for outcome in store.append(Arc::new(requests)).await.unwrap() {
                assert!(matches!(outcome, AppendOutcome::Committed(_)));
            }
            let hashes: Vec<[u8; 32]> = stored.iter().map(|s| s.event_hash).collect();
            for tree_size in [100, EVENTS as usize] {
                let root_hash = tree_root(&hashes[..tree_size]);
                let checkpoint =
                    Checkpoint::new(tenant_origin(tenant_id), tree_size as u64, root_hash);
                let note = sign_checkpoint(&checkpoint, &signer()).unwrap();
                store
                    .insert_checkpoint(
                        tenant_id,
                        StoredCheckpoint {
                            tree_size: tree_size as u64,
                            root_hash,
                            note,
                            created_at_ns: NOW_NS,
                        },
                    )
                    .await
                    .unwrap();
            }
        }
        let policy = MigrationPolicy {
            hot_retention_days: 30,
            now_ns: NOW_NS,
        };
        migrate_hot_to_warm(&store, &warm, None, policy, &mut |_| {})
            .await
            .unwrap();
        let policy = CompactionPolicy {
            warm_retention_days: 365,
            now_ns: NOW_NS,
        };
        let reports = migrate_warm_to_cold(&warm, &cold, policy, None, &mut |_| {})
            .await
            .unwrap();
        assert!(
            reports.iter().all(|report| report.files_written >= 10),
            "{reports:?}"
        );
    });
    Setup {
        _dir: dir,
        data_dir,
        warm,
        cold,
        runtime,
        events,
    }
}

fn verify(setup: &Setup) -> TiersReport {
    verify_tiers_blocking(
        &SqliteStore::open_read_only(&setup.data_dir).unwrap(),
        None,
        &signer().verifier(),
        Some(&setup.warm),
        Some(&setup.cold),
    )
    .unwrap()
}

fn assert_intact(report: &TiersReport) {
    assert!(report.faults.is_empty(), "{:?}", report.faults);
    for tenant in &report.tenants {
        assert_eq!(
            tenant.verdict.as_ref().map(|head| head.seq),
            Ok(EVENTS),
            "{tenant:?}"
        );
    }
}

fn first_failure(report: &TiersReport, tenant_id: &str) -> u64 {
    let tenant = report
        .tenants
        .iter()
        .find(|tenant| tenant.tenant_id == tenant_id)
        .unwrap();
    tenant.verdict.as_ref().unwrap_err().seq()
}

#[test]
fn warm_to_cold_makes_one_file_per_month_and_verifies() {
    let setup = setup();
    assert_intact(&verify(&setup));
    let files = setup
        .runtime
        .block_on(archived_files(&setup.warm, Some(&setup.cold), "acme"))
        .unwrap();
    let cutoff = NOW_NS - 365 * DAY_NS;
    let mut months = std::collections::HashSet::new();
    let mut expected_first = 1;
    for file in &files {
        assert_eq!(file.first_seq, expected_first, "contiguous, in seq order");
        expected_first = file.last_seq + 1;
        if file.tier == ArchiveTier::Cold {
            assert!(months.insert(file.month.clone()), "one cold file per month");
            assert!(file.manifest.timestamp_max_ns < cutoff);
        } else {
            assert!(file.manifest.timestamp_max_ns >= cutoff - 31 * DAY_NS);
        }
    }
    // Every event is archived exactly once: the archive ends where the hot tier starts.
    let hot_first = setup.runtime.block_on(async {
        let store = SqliteStore::open(&setup.data_dir).unwrap();
        store.first_hot_seq("acme").await.unwrap().unwrap()
    });
    assert_eq!(expected_first, hot_first);
    // The cold tier's bytes round-trip to the very events that were ingested.
    let cold_events: Vec<StoredEvent> = setup.runtime.block_on(async {
        let mut all = Vec::new();
        for file in files.iter().filter(|file| file.tier == ArchiveTier::Cold) {
            let bytes = setup.cold.get(&file.path).await.unwrap();
            all.extend(sealtrail_archive::parquet_file::decode(bytes).unwrap());
        }
        all
    });
    assert_eq!(cold_events[..], setup.events[..cold_events.len()]);
}

#[test]
fn a_warm_copy_of_a_cold_range_is_not_counted_twice() {
    let setup = setup();
    let files = setup
        .runtime
        .block_on(archived_files(&setup.warm, Some(&setup.cold), "acme"))
        .unwrap();
    let cold_file = files.iter().find(|f| f.tier == ArchiveTier::Cold).unwrap();
    // The state of a crash between the cold manifest and the warm deletes: the same range in
    // both tiers.
    setup.runtime.block_on(async {
        let bytes = setup.cold.get(&cold_file.path).await.unwrap();
        setup
            .warm
            .put(&cold_file.path, bytes.to_vec())
            .await
            .unwrap();
        let manifest = setup.cold.get(&cold_file.manifest_path).await.unwrap();
        setup
            .warm
            .put(&cold_file.manifest_path, manifest.to_vec())
            .await
            .unwrap();
    });
    let again = setup
        .runtime
        .block_on(archived_files(&setup.warm, Some(&setup.cold), "acme"))
        .unwrap();
    assert_eq!(again, files, "the cold manifest is authoritative");
    assert_intact(&verify(&setup));
    // The next run deletes the leftover.
    let reports = setup
        .runtime
        .block_on(migrate_warm_to_cold(
            &setup.warm,
            &setup.cold,
            CompactionPolicy {
                warm_retention_days: 365,
                now_ns: NOW_NS,
            },
            None,
            &mut |_| {},
        ))
        .unwrap();
    let acme = reports.iter().find(|r| r.tenant_id == "acme").unwrap();
    assert_eq!(acme.leftover_warm_files_deleted, 1);
    assert_eq!(acme.files_written, 0);
}

fn policy(days: u32, legal_hold: bool) -> Option<RetentionPolicy> {
    Some(RetentionPolicy {
        period: RetentionPeriod::Days(days),
        legal_hold,
    })
}

/// Applies 500-day retention to acme and the same policy under legal hold to globex.
fn retain(setup: &Setup) -> u64 {
    let reports = setup
        .runtime
        .block_on(apply_retention(
            &setup.warm,
            &setup.cold,
            &SqliteStore::open(&setup.data_dir).unwrap(),
            &[
                ("acme".to_owned(), policy(500, false)),
                ("globex".to_owned(), policy(500, true)),
            ],
            &signer(),
            NOW_NS,
            &mut |_| {},
        ))
        .unwrap();
    assert_eq!(reports[1].events_deleted, 0, "legal hold: {reports:?}");
    assert!(reports[0].files_deleted >= 3, "{reports:?}");
    // The summaries of the deleted events' days stay, marked; a held tenant's are not.
    let store = SqliteStore::open(&setup.data_dir).unwrap();
    let deleted_days = |tenant| {
        setup
            .runtime
            .block_on(store.deleted_days(tenant, None, None))
            .unwrap()
    };
    let acme_days = deleted_days("acme");
    let expected: std::collections::BTreeSet<String> = setup.events
        [..reports[0].events_deleted as usize]
        .iter()
        .map(|stored| sealtrail_model::format_day(stored.event.timestamp_ns))
        .collect();
    assert_eq!(acme_days, expected.into_iter().collect::<Vec<_>>());
    assert!(deleted_days("globex").is_empty());
    // Only expired events went: the last deleted one is older than 500 days, the next is not
    // wholly expired (its file holds an event younger than the cutoff).
    let deleted_through = reports[0].deleted_through;
    assert_eq!(reports[0].events_deleted, deleted_through);
    let cutoff = NOW_NS - 500 * DAY_NS;
    assert!(
        setup.events[deleted_through as usize - 1]
            .event
            .timestamp_ns
            < cutoff
    );
    deleted_through
}

#[test]
fn retention_deletes_an_expired_prefix_and_verify_accepts_the_signed_records() {
    let setup = setup();
    let deleted_through = retain(&setup);
    let report = verify(&setup);
    assert_intact(&report);
    assert_eq!(report.deletions.len(), 1);
    assert_eq!(report.deletions[0].0, "acme");
    assert_eq!(report.deletions[0].1, deleted_through);
    let files = setup
        .runtime
        .block_on(archived_files(&setup.warm, Some(&setup.cold), "acme"))
        .unwrap();
    assert_eq!(files[0].first_seq, deleted_through + 1);
    // A second run with the same clock deletes nothing more.
    assert_eq!(retain_again(&setup), deleted_through);
    // Without the key that signed them, the records vouch for nothing.
    let other = NoteSigner::from_seed("sealtrail-test", &[8; 32]).unwrap();
    let report = verify_tiers_blocking(
        &SqliteStore::open_read_only(&setup.data_dir).unwrap(),
        Some("acme"),
        &other.verifier(),
        Some(&setup.warm),
        Some(&setup.cold),
    )
    .unwrap();
    assert!(!report.faults.is_empty());
    assert!(report.tenants[0].verdict.is_err());
}

fn retain_again(setup: &Setup) -> u64 {
    let reports = setup
        .runtime
        .block_on(apply_retention(
            &setup.warm,
            &setup.cold,
            &SqliteStore::open(&setup.data_dir).unwrap(),
            &[("acme".to_owned(), policy(500, false))],
            &signer(),
            NOW_NS,
            &mut |_| {},
        ))
        .unwrap();
    assert_eq!(reports[0].files_deleted, 0);
    reports[0].deleted_through
}

fn record_paths(setup: &Setup) -> Vec<object_store::path::Path> {
    setup
        .runtime
        .block_on(setup.cold.deletion_records("acme"))
        .unwrap()
        .into_iter()
        .map(|record| record.path)
        .collect()
}

#[test]
fn verify_fails_on_a_removed_forged_or_altered_record() {
    let setup = setup();
    retain(&setup);
    let records = record_paths(&setup);
    let first = &records[0];
    let note = setup.runtime.block_on(setup.cold.get(first)).unwrap();
    let text = String::from_utf8(note.to_vec()).unwrap();

    // Altered: a policy that did not permit it.
    let altered = text.replace("retention_days=500", "retention_days=50");
    assert_ne!(altered, text);
    setup
        .runtime
        .block_on(setup.cold.put(first, altered.into_bytes()))
        .unwrap();
    let report = verify(&setup);
    assert_eq!(first_failure(&report, "acme"), 1);
    assert!(
        report.faults[0].reason.contains("does not verify"),
        "{:?}",
        report.faults
    );

    // Forged: a well-formed record signed by another key.
    let forger = NoteSigner::from_seed("sealtrail-test", &[9; 32]).unwrap();
    let body = text.split("\n\n").next().unwrap().to_owned() + "\n";
    let forged = sealtrail_ledger::sign_note(&body, &forger).unwrap();
    setup
        .runtime
        .block_on(setup.cold.put(first, forged.into_bytes()))
        .unwrap();
    assert_eq!(first_failure(&verify(&setup), "acme"), 1);

    // Removed: the deletion is unrecorded.
    setup.runtime.block_on(setup.cold.delete(first)).unwrap();
    let report = verify(&setup);
    assert_eq!(first_failure(&report, "acme"), 1);
    let globex = report
        .tenants
        .iter()
        .find(|t| t.tenant_id == "globex")
        .unwrap();
    assert!(globex.verdict.is_ok());
}

#[test]
fn verify_fails_on_an_unrecorded_deletion_of_a_cold_file() {
    let setup = setup();
    let files = setup
        .runtime
        .block_on(archived_files(&setup.warm, Some(&setup.cold), "acme"))
        .unwrap();
    // The oldest cold file and its manifest vanish with no record.
    setup.runtime.block_on(async {
        setup.cold.delete(&files[0].path).await.unwrap();
        setup.cold.delete(&files[0].manifest_path).await.unwrap();
    });
    assert_eq!(first_failure(&verify(&setup), "acme"), 1);
    // Retention refuses to build on a log whose start is missing.
    let result = setup.runtime.block_on(apply_retention(
        &setup.warm,
        &setup.cold,
        &SqliteStore::open(&setup.data_dir).unwrap(),
        &[("acme".to_owned(), policy(500, false))],
        &signer(),
        NOW_NS,
        &mut |_| {},
    ));
    let reports = result.unwrap();
    assert_eq!(reports[0].files_deleted, 0);
}

#[test]
fn verify_fails_when_a_cold_file_is_altered() {
    let setup = setup();
    let files = setup
        .runtime
        .block_on(archived_files(&setup.warm, Some(&setup.cold), "acme"))
        .unwrap();
    let target = &files[2];
    assert_eq!(target.tier, ArchiveTier::Cold);
    setup.runtime.block_on(async {
        let mut bytes = setup.cold.get(&target.path).await.unwrap().to_vec();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        setup.cold.put(&target.path, bytes).await.unwrap();
    });
    assert_eq!(first_failure(&verify(&setup), "acme"), target.first_seq);
}
