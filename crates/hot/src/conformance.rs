//! The storage conformance suite: what every [`HotStore`] backend must do, written once and run
//! against each (SQLite in `crates/hot/tests/conformance_sqlite.rs`, PostgreSQL in
//! `crates/hot-postgres/tests/conformance_postgres.rs`).
//!
//! Each property is a public async function taking a [`Fixture`], which opens stores on fresh,
//! empty storage. [`conformance_tests!`](crate::conformance_tests) expands to one `#[tokio::test]`
//! per property, so a new backend passes the suite by implementing [`Fixture`] and invoking the
//! macro once. The properties panic (assert) on a violation, naming what the backend got wrong.
//!
//! Retention deletes (`retention_deletes_a_prefix_only`): the lifecycle's four hot-tier calls
//! remove a prefix, never a gap, idempotently, one tenant at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use sealtrail_ledger::{
    content_digest, event_hash, tree_root, ChainHead, NoteSigner, NoteVerifier, GENESIS_HASH,
    TILE_WIDTH,
};
use sealtrail_model::{
    Actor, ActorType, CaptureDecision, Event, EventReceipt, Outcome, PendingEvent, StoredEvent,
};

use crate::{
    verify_store, ActorDayFilter, ApiKeyRecord, AppendOutcome, AppendRequest, EventQuery, HotStore,
    KeyScope, Order, ProtectedMatch, Role, SamplingCount, SamplingTally, StoredCheckpoint,
    SummaryTally,
};

/// Fresh storage for one property.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// A store on this fixture's storage, which is empty until something is appended. A backend
    /// that supports several writer processes on one storage MUST return a separate instance
    /// (its own connections, no shared memory) on every call, as another process would open it;
    /// a single-process backend may return the same instance each time.
    async fn open(&self) -> Arc<dyn HotStore>;

    /// Edits the stored `action` of `tenant_id`'s event at `seq` behind the store's back (raw
    /// SQL, as an attacker with database access would), leaving every hash as it was.
    async fn edit_event(&self, tenant_id: &str, seq: u64);
}

/// Expands to one `#[tokio::test]` per conformance property. `$fixture` is an expression
/// evaluating to a future of a [`Fixture`]; it is evaluated afresh for every test, so each
/// property runs on its own empty storage. The calling crate needs `tokio` (with `macros` and
/// `rt-multi-thread`) among its dev-dependencies.
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr) => {
        $crate::conformance_tests!(@each $fixture;
            empty_store_has_nothing,
            ingest_returns_receipts_and_stores_events,
            retry_returns_the_stored_receipt,
            duplicates_inside_one_request,
            conflict_fails_only_its_own_request,
            chains_are_gap_free_and_linked,
            pagination_walks_every_event_once,
            every_filter_matches_exactly,
            reads_are_scoped_to_one_tenant,
            concurrent_writers_share_one_chain,
            concurrent_instances_share_one_chain,
            merkle_tiles_match_the_chain,
            merkle_tiles_at_level_16,
            checkpoints_are_append_only,
            api_keys_round_trip,
            api_keys_expire_and_are_revoked,
            settings_are_set_once,
            settings_can_be_replaced,
            settings_are_listed_and_deleted_by_prefix,
            protected_filters_match_plaintext_and_blind_indexes,
            retention_deletes_a_prefix_only,
            tiles_complete_after_their_leaves_left,
            a_retry_of_an_archived_event_gets_its_receipt,
            live_verification_reports_only_real_edits,
            sampling_counts_commit_with_their_events,
            actor_directory_upserts_per_tenant,
            summaries_count_committed_events,
            revisions_move_with_every_change_they_stamp
        );
    };
    (@each $fixture:expr; $($property:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $property() {
                let fixture = $fixture.await;
                $crate::conformance::$property(&fixture).await;
            }
        )+
    };
}

/// 2026-01-15T09:30:00Z, the event time of the first test event.
const TIMESTAMP_BASE_NS: i64 = 1_768_469_400_000_000_000;
/// 2026-01-31T12:00:00Z: test events are received around the end of a month, so a chain crosses
/// a month boundary (and, on a partitioned backend, a partition boundary).
const RECEIVED_BASE_NS: i64 = 1_769_860_800_000_000_000;
const SECOND_NS: i64 = 1_000_000_000;
const HOUR_NS: i64 = 3_600 * SECOND_NS;

/// A valid event whose fields vary with `n`, so every filter has something to tell apart.
pub fn test_event(tenant_id: &str, event_id: &str, n: u64) -> PendingEvent {
    const ACTIONS: [&str; 3] = ["read", "update", "delete"];
    let n_i64 = i64::try_from(n).expect("test counters are small");
    PendingEvent {
        event: Event {
            event_id: event_id.to_owned(),
            timestamp_ns: TIMESTAMP_BASE_NS + n_i64 * SECOND_NS,
            tenant_id: tenant_id.to_owned(),
            actor_id: format!("actor-{}", n % 3),
            actor_type: if n.is_multiple_of(5) {
                ActorType::Service
            } else {
                ActorType::Human
            },
            action: ACTIONS[(n % 3) as usize].to_owned(),
            resource_type: if n.is_multiple_of(2) {
                "document"
            } else {
                "user"
            }
            .to_owned(),
            resource_id: (!n.is_multiple_of(7)).then(|| format!("res-{}", n % 4)),
            outcome: if n.is_multiple_of(4) {
                Outcome::Failure
            } else {
                Outcome::Success
            },
            ip_address: (n.is_multiple_of(3)).then(|| format!("10.0.0.{}", n % 250)),
            user_agent: (n % 2 == 1).then(|| "conformance/1.0 (grüße)".to_owned()),
            request_id: Some(format!("req-{}", n % 5)),
            changes: (n % 4 == 1).then(|| r#"{"after":{"n":1},"before":{"n":0}}"#.to_owned()),
            metadata: (n % 3 == 1).then(|| format!(r#"{{"department":"finance","n":{n}}}"#)),
        },
        // Hours apart: the 13th event of a tenant falls into the next month.
        received_at_ns: RECEIVED_BASE_NS + n_i64 * HOUR_NS,
        timestamp_supplied: true,
        capture: None,
    }
}

/// The receipts of a committed outcome; panics on a conflict.
fn receipts(outcome: &AppendOutcome) -> &[EventReceipt] {
    match outcome {
        AppendOutcome::Committed(receipts) => receipts,
        AppendOutcome::Conflict { index, event_id } => {
            panic!("unexpected conflict at index {index} ({event_id})")
        }
    }
}

async fn append(store: &dyn HotStore, batch: Vec<AppendRequest>) -> Vec<AppendOutcome> {
    let requests = batch.len();
    let outcomes = store
        .append(Arc::new(batch))
        .await
        .expect("append succeeds");
    assert_eq!(outcomes.len(), requests, "one outcome per request");
    outcomes
}

/// Every stored event of a tenant, by `seq`.
async fn all_events(store: &dyn HotStore, tenant_id: &str) -> Vec<StoredEvent> {
    let mut events = Vec::new();
    loop {
        let after = events.last().map_or(0, |stored: &StoredEvent| stored.seq);
        let page = store
            .scan_events(tenant_id, after, 1_000)
            .await
            .expect("scan succeeds");
        if page.is_empty() {
            return events;
        }
        events.extend(page);
    }
}

/// The checkpoint key of the conformance properties: a store's own checkpoints are signed
/// with it where a property verifies them.
pub fn test_checkpoint_key() -> NoteSigner {
    NoteSigner::from_seed("sealtrail", &[7; 32]).expect("a valid key name")
}

fn test_verifier() -> NoteVerifier {
    test_checkpoint_key().verifier()
}

/// Asserts that every tenant verifies and returns the events checked per tenant.
async fn assert_verified(store: &dyn HotStore) -> BTreeMap<String, u64> {
    let reports = verify_store(store, None, &test_verifier())
        .await
        .expect("verification runs");
    let mut checked = BTreeMap::new();
    for report in reports {
        let head = report
            .verdict
            .unwrap_or_else(|fault| panic!("tenant {} fails: {fault}", report.tenant_id));
        assert_eq!(head.seq, report.events_checked);
        checked.insert(report.tenant_id, report.events_checked);
    }
    checked
}

/// Asserts that `events` is a chain 1..n whose hashes recompute and link.
fn assert_chain(tenant_id: &str, events: &[StoredEvent]) {
    let mut head = ChainHead::default();
    for (position, stored) in events.iter().enumerate() {
        assert_eq!(stored.event.tenant_id, tenant_id);
        assert_eq!(
            stored.seq,
            position as u64 + 1,
            "{tenant_id}: seq without gaps"
        );
        assert_eq!(
            stored.prev_hash, head.hash,
            "{tenant_id} seq {}: prev_hash",
            stored.seq
        );
        let recomputed = event_hash(
            &stored.event,
            stored.seq,
            stored.received_at_ns,
            &stored.prev_hash,
        );
        assert_eq!(
            stored.event_hash, recomputed,
            "{tenant_id} seq {}: hash",
            stored.seq
        );
        head = ChainHead {
            seq: stored.seq,
            hash: stored.event_hash,
        };
    }
}

fn query(tenant_id: &str) -> EventQuery {
    EventQuery {
        order: Order::Asc,
        limit: 1_000,
        ..EventQuery::for_tenant(tenant_id)
    }
}

fn seqs(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|stored| stored.seq).collect()
}

/// A fresh store answers every read with nothing.
pub async fn empty_store_has_nothing(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    assert!(store.tenant_heads().await.unwrap().is_empty());
    assert!(store.chain_heads().await.unwrap().is_empty());
    assert!(verify_store(&*store, None, &test_verifier())
        .await
        .unwrap()
        .is_empty());
    assert!(store.query(query("acme")).await.unwrap().is_empty());
    assert!(store.get_event("acme", "e1").await.unwrap().is_none());
    assert!(store.scan_events("acme", 0, 10).await.unwrap().is_empty());
    assert!(store
        .existing("acme", vec!["e1".into()])
        .await
        .unwrap()
        .is_empty());
    assert!(store.merkle_block("acme", 0, 0).await.unwrap().is_empty());
    assert!(store.checkpoint("acme", None).await.unwrap().is_none());
    // An empty group commits nothing and answers nothing.
    assert!(append(&*store, Vec::new()).await.is_empty());
}

/// A group of requests over two tenants: one receipt per event, seq per tenant in request order,
/// and every stored field is what was sent plus the chain the receipt names.
pub async fn ingest_returns_receipts_and_stores_events(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let batch = vec![
        vec![test_event("acme", "e1", 1), test_event("acme", "e2", 2)],
        vec![test_event("beta", "e1", 3)],
        vec![test_event("acme", "e3", 4)],
    ];
    let outcomes = append(&*store, batch.clone()).await;
    let expected = [
        vec![("acme", "e1", 1), ("acme", "e2", 2)],
        vec![("beta", "e1", 1)],
        vec![("acme", "e3", 3)],
    ];
    for (request, (outcome, expected)) in batch.iter().zip(outcomes.iter().zip(expected)) {
        let receipts = receipts(outcome);
        assert_eq!(receipts.len(), expected.len());
        for ((pending, receipt), (tenant, event_id, seq)) in
            request.iter().zip(receipts).zip(expected)
        {
            assert_eq!(
                (
                    receipt.tenant_id.as_str(),
                    receipt.event_id.as_str(),
                    receipt.seq
                ),
                (tenant, event_id, seq)
            );
            let stored = store
                .get_event(tenant, event_id)
                .await
                .unwrap()
                .expect("a committed event can be read back");
            assert_eq!(
                stored.event, pending.event,
                "stored fields are the sent ones"
            );
            assert_eq!(stored.received_at_ns, pending.received_at_ns);
            assert_eq!(stored.seq, seq);
            assert_eq!(stored.event_hash, receipt.event_hash);
            assert_eq!(
                stored.event_hash,
                event_hash(&stored.event, seq, stored.received_at_ns, &stored.prev_hash)
            );
        }
    }
    let existing = store
        .existing("acme", vec!["e1".into(), "e3".into(), "missing".into()])
        .await
        .unwrap();
    let mut by_id: HashMap<String, _> = existing
        .into_iter()
        .map(|found| (found.receipt.event_id.clone(), found))
        .collect();
    assert_eq!(by_id.len(), 2, "only stored ids are reported");
    let e3 = by_id.remove("e3").unwrap();
    assert_eq!(e3.receipt, receipts(&outcomes[2])[0]);
    assert_eq!(e3.content_digest, content_digest(&batch[2][0].event));
    assert_eq!(e3.timestamp_ns, batch[2][0].event.timestamp_ns);
    let heads: BTreeMap<String, Option<ChainHead>> =
        store.tenant_heads().await.unwrap().into_iter().collect();
    assert_eq!(heads.len(), 2);
    assert_eq!(heads["acme"].map(|head| head.seq), Some(3));
    assert_eq!(
        heads["acme"].map(|head| head.hash),
        Some(receipts(&outcomes[2])[0].event_hash)
    );
}

/// A retry, identical or without its timestamp, gets the stored receipt and stores nothing; new
/// events in the same request are still linked.
pub async fn retry_returns_the_stored_receipt(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let first = append(
        &*store,
        vec![vec![
            test_event("acme", "e1", 1),
            test_event("acme", "e2", 2),
        ]],
    )
    .await;
    let again = append(
        &*store,
        vec![vec![
            test_event("acme", "e1", 1),
            test_event("acme", "e2", 2),
        ]],
    )
    .await;
    assert_eq!(again, first, "an identical retry gets the stored receipts");

    // A retry that omitted its timestamp got the server's clock, and is received later.
    let mut untimed = test_event("acme", "e2", 2);
    untimed.event.timestamp_ns += 17;
    untimed.received_at_ns += 999;
    untimed.timestamp_supplied = false;
    let mixed = append(&*store, vec![vec![untimed, test_event("acme", "e3", 3)]]).await;
    let mixed = receipts(&mixed[0]);
    assert_eq!(mixed[0], receipts(&first[0])[1]);
    assert_eq!(
        mixed[1].seq, 3,
        "the new event is linked after the stored ones"
    );

    let events = all_events(&*store, "acme").await;
    assert_eq!(seqs(&events), vec![1, 2, 3], "retries stored nothing");
    assert_eq!(
        events[1].event.timestamp_ns,
        test_event("acme", "e2", 2).event.timestamp_ns,
        "the stored event keeps its original timestamp"
    );
    assert_eq!(assert_verified(&*store).await["acme"], 3);
}

/// The same `event_id` twice in one request: identical is one event with two identical
/// receipts; different content is a conflict at the second, and nothing of the request stays,
/// not even a chain head for a tenant that had none.
pub async fn duplicates_inside_one_request(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let outcomes = append(
        &*store,
        vec![vec![
            test_event("acme", "e1", 1),
            test_event("acme", "e1", 1),
        ]],
    )
    .await;
    let twice = receipts(&outcomes[0]);
    assert_eq!(twice[0], twice[1]);
    assert_eq!(twice[0].seq, 1);

    let outcomes = append(
        &*store,
        vec![
            vec![test_event("acme", "e5", 5), test_event("acme", "e5", 6)],
            vec![test_event("fresh", "f1", 1), test_event("fresh", "f1", 2)],
        ],
    )
    .await;
    for outcome in &outcomes {
        assert!(
            matches!(outcome, AppendOutcome::Conflict { index: 1, .. }),
            "{outcome:?}"
        );
    }
    assert!(store.get_event("acme", "e5").await.unwrap().is_none());
    assert!(store.get_event("fresh", "f1").await.unwrap().is_none());
    let tenants: Vec<String> = store
        .tenant_heads()
        .await
        .unwrap()
        .into_iter()
        .map(|(tenant, _)| tenant)
        .collect();
    assert_eq!(
        tenants,
        vec!["acme".to_owned()],
        "a conflicted new tenant has no head"
    );
    assert_eq!(seqs(&all_events(&*store, "acme").await), vec![1]);
    assert_eq!(assert_verified(&*store).await["acme"], 1);
}

/// In one group: a request reusing a stored id with new content fails alone (its other events
/// vanish), the requests around it commit gap-free, an in-group reuse with new content also
/// conflicts, and an identical in-group retry gets the first receipt.
pub async fn conflict_fails_only_its_own_request(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    append(&*store, vec![vec![test_event("acme", "e1", 1)]]).await;
    let outcomes = append(
        &*store,
        vec![
            vec![test_event("acme", "a1", 2)],
            vec![test_event("acme", "b1", 3), test_event("acme", "e1", 99)],
            vec![test_event("acme", "c1", 4), test_event("beta", "c1", 4)],
            vec![test_event("acme", "e1", 1)],
            vec![test_event("acme", "n1", 5)],
            vec![test_event("beta", "x1", 6), test_event("acme", "n1", 50)],
            vec![test_event("acme", "n1", 5)],
        ],
    )
    .await;
    assert_eq!(receipts(&outcomes[0])[0].seq, 2);
    assert_eq!(
        outcomes[1],
        AppendOutcome::Conflict {
            index: 1,
            event_id: "e1".into()
        }
    );
    let c = receipts(&outcomes[2]);
    assert_eq!((c[0].seq, c[1].seq), (3, 1), "acme continues without a gap");
    assert_eq!(receipts(&outcomes[3])[0].seq, 1, "identical retry of e1");
    assert_eq!(receipts(&outcomes[4])[0].seq, 4);
    assert_eq!(
        outcomes[5],
        AppendOutcome::Conflict {
            index: 1,
            event_id: "n1".into()
        }
    );
    assert_eq!(receipts(&outcomes[6]), receipts(&outcomes[4]));
    assert!(store.get_event("acme", "b1").await.unwrap().is_none());
    assert!(store.get_event("beta", "x1").await.unwrap().is_none());
    let ids: Vec<String> = all_events(&*store, "acme")
        .await
        .into_iter()
        .map(|stored| stored.event.event_id)
        .collect();
    assert_eq!(ids, ["e1", "a1", "c1", "n1"]);
    let checked = assert_verified(&*store).await;
    assert_eq!((checked["acme"], checked["beta"]), (4, 1));
}

/// Many groups over several tenants, received across a month boundary: every tenant's chain is
/// 1..n, linked and recomputable, its head is its last event, and `verify_store` agrees.
pub async fn chains_are_gap_free_and_linked(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let tenants = ["acme", "beta", "gamma"];
    let mut counter = 0u64;
    for group in 0..10 {
        let mut batch = Vec::new();
        for request in 0..3 {
            let mut events = Vec::new();
            for position in 0..(1 + (group + request) % 4) {
                counter += 1;
                let tenant = tenants[(group + request + position) % tenants.len()];
                events.push(test_event(tenant, &format!("e{counter}"), counter));
            }
            batch.push(events);
        }
        append(&*store, batch).await;
    }
    let heads: BTreeMap<String, Option<ChainHead>> =
        store.tenant_heads().await.unwrap().into_iter().collect();
    let chain_heads: BTreeMap<String, ChainHead> =
        store.chain_heads().await.unwrap().into_iter().collect();
    let mut total = 0;
    for tenant in tenants {
        let events = all_events(&*store, tenant).await;
        assert_chain(tenant, &events);
        let last = events.last().expect("every tenant got events");
        let head = ChainHead {
            seq: last.seq,
            hash: last.event_hash,
        };
        assert_eq!(heads[tenant], Some(head));
        assert_eq!(chain_heads[tenant], head);
        assert_eq!(events[0].prev_hash, GENESIS_HASH);
        total += events.len() as u64;
    }
    assert_eq!(total, counter);
    let checked = assert_verified(&*store).await;
    assert_eq!(checked.values().sum::<u64>(), counter);
}

/// Pages in both orders, continued with `after_seq`, visit every event of the tenant once and
/// nothing of another tenant.
pub async fn pagination_walks_every_event_once(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let mut batch = Vec::new();
    for n in 1..=25u64 {
        batch.push(vec![test_event("acme", &format!("e{n}"), n)]);
        if n.is_multiple_of(5) {
            batch.push(vec![test_event("beta", &format!("e{n}"), n)]);
        }
    }
    append(&*store, batch).await;
    for (order, expected) in [
        (Order::Asc, (1..=25).collect::<Vec<u64>>()),
        (Order::Desc, (1..=25).rev().collect()),
    ] {
        let mut walked = Vec::new();
        let mut after_seq = None;
        loop {
            let page = store
                .query(EventQuery {
                    order,
                    after_seq,
                    limit: 10,
                    ..query("acme")
                })
                .await
                .unwrap();
            assert!(page.len() <= 10, "limit is respected");
            if page.is_empty() {
                break;
            }
            assert!(page.iter().all(|stored| stored.event.tenant_id == "acme"));
            after_seq = page.last().map(|stored| stored.seq);
            walked.extend(seqs(&page));
        }
        assert_eq!(walked, expected, "{order:?}");
    }
    let beyond = store
        .query(EventQuery {
            after_seq: Some(25),
            ..query("acme")
        })
        .await
        .unwrap();
    assert!(beyond.is_empty());
    let first_desc = store
        .query(EventQuery {
            order: Order::Desc,
            limit: 3,
            ..query("acme")
        })
        .await
        .unwrap();
    assert_eq!(seqs(&first_desc), vec![25, 24, 23]);
    let one = store
        .query(EventQuery {
            limit: 1,
            ..query("beta")
        })
        .await
        .unwrap();
    assert_eq!(seqs(&one), vec![1]);
}

/// Every filter of [`EventQuery`], alone and combined, returns exactly the events an in-memory
/// filter picks, in `seq` order.
pub async fn every_filter_matches_exactly(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let sent: Vec<PendingEvent> = (1..=60u64)
        .map(|n| test_event("acme", &format!("e{n}"), n))
        .collect();
    append(&*store, vec![sent.clone()]).await;
    append(&*store, vec![vec![test_event("beta", "e1", 1)]]).await;
    let (t5, t10, t50, t55) = (
        sent[4].event.timestamp_ns,
        sent[9].event.timestamp_ns,
        sent[49].event.timestamp_ns,
        sent[54].event.timestamp_ns,
    );
    type Predicate = Box<dyn Fn(&Event) -> bool>;
    let cases: Vec<(&str, EventQuery, Predicate)> = vec![
        (
            "actor_id",
            EventQuery {
                actor_id: Some("actor-1".into()),
                ..query("acme")
            },
            Box::new(|event| event.actor_id == "actor-1"),
        ),
        (
            "action",
            EventQuery {
                action: Some("delete".into()),
                ..query("acme")
            },
            Box::new(|event| event.action == "delete"),
        ),
        (
            "resource_type",
            EventQuery {
                resource_type: Some("user".into()),
                ..query("acme")
            },
            Box::new(|event| event.resource_type == "user"),
        ),
        (
            "resource_id",
            EventQuery {
                resource_id: Some("res-2".into()),
                ..query("acme")
            },
            Box::new(|event| event.resource_id.as_deref() == Some("res-2")),
        ),
        (
            "request_id",
            EventQuery {
                request_id: Some("req-3".into()),
                ..query("acme")
            },
            Box::new(|event| event.request_id.as_deref() == Some("req-3")),
        ),
        (
            "outcome",
            EventQuery {
                outcome: Some("failure".into()),
                ..query("acme")
            },
            Box::new(|event| event.outcome == Outcome::Failure),
        ),
        (
            "from (inclusive)",
            EventQuery {
                from_ns: Some(t50),
                ..query("acme")
            },
            Box::new(move |event| event.timestamp_ns >= t50),
        ),
        (
            "to (exclusive)",
            EventQuery {
                to_ns: Some(t10),
                ..query("acme")
            },
            Box::new(move |event| event.timestamp_ns < t10),
        ),
        (
            "everything at once",
            EventQuery {
                actor_id: Some("actor-2".into()),
                resource_type: Some("document".into()),
                outcome: Some("success".into()),
                from_ns: Some(t5),
                to_ns: Some(t55),
                ..query("acme")
            },
            Box::new(move |event| {
                event.actor_id == "actor-2"
                    && event.resource_type == "document"
                    && event.outcome == Outcome::Success
                    && (t5..t55).contains(&event.timestamp_ns)
            }),
        ),
        (
            "actor_in (a scope of several actors)",
            EventQuery {
                actor_in: Some(vec!["actor-1".into(), "actor-9".into(), "actor-2".into()]),
                outcome: Some("failure".into()),
                ..query("acme")
            },
            Box::new(|event| {
                ["actor-1", "actor-2", "actor-9"].contains(&event.actor_id.as_str())
                    && event.outcome == Outcome::Failure
            }),
        ),
        (
            "actor_in empty (a scope with nobody in it)",
            EventQuery {
                actor_in: Some(Vec::new()),
                ..query("acme")
            },
            Box::new(|_| false),
        ),
        (
            "no match",
            EventQuery {
                action: Some("export".into()),
                ..query("acme")
            },
            Box::new(|_| false),
        ),
    ];
    for (name, filter, predicate) in cases {
        let expected: Vec<String> = sent
            .iter()
            .filter(|pending| predicate(&pending.event))
            .map(|pending| pending.event.event_id.clone())
            .collect();
        let found: Vec<StoredEvent> = store.query(filter).await.unwrap();
        assert!(found.windows(2).all(|pair| pair[0].seq < pair[1].seq));
        let found: Vec<String> = found
            .into_iter()
            .map(|stored| stored.event.event_id)
            .collect();
        assert_eq!(found, expected, "filter {name}");
    }
}

/// Two tenants using the same `event_id`s never see each other's events through any read.
pub async fn reads_are_scoped_to_one_tenant(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    append(
        &*store,
        vec![
            vec![
                test_event("acme", "shared", 1),
                test_event("acme", "only-acme", 2),
            ],
            vec![test_event("beta", "shared", 3)],
        ],
    )
    .await;
    let beta = store.get_event("beta", "shared").await.unwrap().unwrap();
    assert_eq!(beta.event, test_event("beta", "shared", 3).event);
    assert!(store
        .get_event("beta", "only-acme")
        .await
        .unwrap()
        .is_none());
    let existing = store
        .existing("beta", vec!["shared".into(), "only-acme".into()])
        .await
        .unwrap();
    assert_eq!(existing.len(), 1);
    assert_eq!(existing[0].receipt.tenant_id, "beta");
    let listed = store.query(query("beta")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(store.query(query("nobody")).await.unwrap().is_empty());
    assert!(store.scan_events("nobody", 0, 10).await.unwrap().is_empty());
}

/// Writers of the concurrency properties, each appending this many groups.
const CONCURRENT_WRITERS: usize = 8;
const CONCURRENT_GROUPS: usize = 12;

/// Appends from `CONCURRENT_WRITERS` tasks spread over `stores`, into overlapping tenants, with
/// some events sent by two writers at once; then checks one gap-free chain per tenant holding
/// every event exactly once, and that racing retries got the same receipt.
async fn concurrent_writers(stores: Vec<Arc<dyn HotStore>>) {
    let tenants = ["t0", "t1", "t2", "t3"];
    let mut tasks = Vec::new();
    for writer in 0..CONCURRENT_WRITERS {
        let store = stores[writer % stores.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut receipts = Vec::new();
            for group in 0..CONCURRENT_GROUPS {
                let mut batch = Vec::new();
                for request in 0..3 {
                    let n = (writer * 1_000 + group * 10 + request) as u64;
                    let first = tenants[(writer + group + request) % tenants.len()];
                    let second = tenants[(writer + group + request + 1) % tenants.len()];
                    // Every writer also sends "shared-{group}-{request}", as another writer
                    // does at about the same time: a retry racing its original.
                    batch.push(vec![
                        test_event(first, &format!("w{writer}-{n}"), n),
                        test_event(second, &format!("w{writer}-{n}"), n),
                        test_event("t0", &format!("shared-{group}-{request}"), 7),
                    ]);
                }
                let outcomes = store
                    .append(Arc::new(batch))
                    .await
                    .expect("concurrent append succeeds");
                for outcome in outcomes {
                    match outcome {
                        AppendOutcome::Committed(committed) => receipts.extend(committed),
                        AppendOutcome::Conflict { .. } => panic!("no conflicts were sent"),
                    }
                }
            }
            receipts
        }));
    }
    let mut receipts: Vec<EventReceipt> = Vec::new();
    for task in tasks {
        receipts.extend(task.await.expect("writer task"));
    }
    let store = &*stores[0];
    let mut receipt_of: HashMap<(String, String), EventReceipt> = HashMap::new();
    for receipt in receipts {
        let key = (receipt.tenant_id.clone(), receipt.event_id.clone());
        if let Some(earlier) = receipt_of.get(&key) {
            assert_eq!(
                *earlier, receipt,
                "every sender of an event gets one receipt"
            );
        }
        receipt_of.insert(key, receipt);
    }
    let mut stored_total = 0;
    for tenant in tenants {
        let events = all_events(store, tenant).await;
        assert_chain(tenant, &events);
        let ids: BTreeSet<&str> = events
            .iter()
            .map(|stored| stored.event.event_id.as_str())
            .collect();
        assert_eq!(ids.len(), events.len(), "{tenant}: every event_id once");
        for stored in &events {
            let receipt = &receipt_of[&(tenant.to_owned(), stored.event.event_id.clone())];
            assert_eq!(
                (receipt.seq, receipt.event_hash),
                (stored.seq, stored.event_hash)
            );
        }
        stored_total += events.len();
    }
    assert_eq!(
        stored_total,
        receipt_of.len(),
        "every acknowledged event is stored"
    );
    let checked = assert_verified(store).await;
    assert_eq!(checked.values().sum::<u64>() as usize, receipt_of.len());
}

/// Many tasks appending through one store instance.
pub async fn concurrent_writers_share_one_chain(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    concurrent_writers(vec![store]).await;
}

/// Tasks appending through two store instances on the same storage, as two processes would.
pub async fn concurrent_instances_share_one_chain(fixture: &dyn Fixture) {
    let first = fixture.open().await;
    let second = fixture.open().await;
    concurrent_writers(vec![first, second]).await;
}

/// Leaf hashes of a tenant, by leaf index (seq - 1).
async fn leaf_hashes(store: &dyn HotStore, tenant_id: &str) -> Vec<[u8; 32]> {
    all_events(store, tenant_id)
        .await
        .into_iter()
        .map(|stored| stored.event_hash)
        .collect()
}

/// Asserts every block of levels 0, 8 and 16 against the tree of the tenant's leaves.
async fn assert_tiles(store: &dyn HotStore, tenant_id: &str, leaves: &[[u8; 32]]) {
    let width = TILE_WIDTH as usize;
    let mut level_nodes: Vec<[u8; 32]> = leaves.to_vec();
    for level in [0u8, 8, 16] {
        let blocks = level_nodes.len().div_ceil(width) + 1;
        for block in 0..blocks {
            let expected: Vec<[u8; 32]> = level_nodes
                .iter()
                .skip(block * width)
                .take(width)
                .copied()
                .collect();
            let stored = store
                .merkle_block(tenant_id, level, block as u64)
                .await
                .unwrap();
            assert_eq!(stored, expected, "{tenant_id}: level {level} block {block}");
        }
        level_nodes = level_nodes.chunks_exact(width).map(tree_root).collect();
    }
}

/// Tiles written with the events: whatever the group sizes, every complete subtree at level 8
/// is stored, and level 0 is the events' hashes.
pub async fn merkle_tiles_match_the_chain(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let mut counter = 0u64;
    for group_size in [100u64, 200, 1, 255, 300, 56] {
        let mut requests = Vec::new();
        for _ in 0..group_size {
            counter += 1;
            let tenant = if counter.is_multiple_of(10) {
                "beta"
            } else {
                "acme"
            };
            requests.push(vec![test_event(tenant, &format!("e{counter}"), counter)]);
        }
        append(&*store, requests).await;
    }
    for tenant in ["acme", "beta"] {
        let leaves = leaf_hashes(&*store, tenant).await;
        assert_tiles(&*store, tenant, &leaves).await;
    }
    assert!(store.merkle_block("acme", 8, 0).await.unwrap().len() == 3);
}

/// A level-16 tile (65,536 events) completed by a group whose level-8 block was partly stored
/// by earlier groups.
pub async fn merkle_tiles_at_level_16(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let mut counter = 0u64;
    for group_size in [40_000u64, 25_000, 700] {
        let events: Vec<PendingEvent> = (0..group_size)
            .map(|_| {
                counter += 1;
                test_event("acme", &format!("e{counter}"), counter)
            })
            .collect();
        append(&*store, vec![events]).await;
    }
    let leaves = leaf_hashes(&*store, "acme").await;
    assert_eq!(leaves.len(), 65_700);
    assert_eq!(store.merkle_block("acme", 16, 0).await.unwrap().len(), 1);
    assert_tiles(&*store, "acme", &leaves).await;
}

/// Checkpoints: the first of a size is kept, the latest is found, and they are per tenant.
pub async fn checkpoints_are_append_only(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let checkpoint = |tree_size: u64, note: &str| StoredCheckpoint {
        tree_size,
        root_hash: [tree_size as u8; 32],
        note: note.to_owned(),
        created_at_ns: 1_000 + tree_size as i64,
    };
    assert!(store
        .insert_checkpoint("acme", checkpoint(5, "five"))
        .await
        .unwrap());
    assert!(!store
        .insert_checkpoint("acme", checkpoint(5, "another five"))
        .await
        .unwrap());
    assert!(store
        .insert_checkpoint("acme", checkpoint(10, "ten"))
        .await
        .unwrap());
    assert_eq!(
        store.checkpoint("acme", None).await.unwrap(),
        Some(checkpoint(10, "ten"))
    );
    assert_eq!(
        store.checkpoint("acme", Some(5)).await.unwrap(),
        Some(checkpoint(5, "five"))
    );
    assert_eq!(store.checkpoint("acme", Some(7)).await.unwrap(), None);
    assert_eq!(store.checkpoint("beta", None).await.unwrap(), None);
    // The first signed tree that covers an event (a bundle's earliest evidence).
    for (min_tree_size, expected) in [(1, Some(5)), (5, Some(5)), (6, Some(10)), (11, None)] {
        assert_eq!(
            store
                .first_checkpoint_covering("acme", min_tree_size)
                .await
                .unwrap()
                .map(|found| found.tree_size),
            expected,
            "covering {min_tree_size}"
        );
    }
    assert_eq!(
        store.first_checkpoint_covering("beta", 1).await.unwrap(),
        None
    );
}

/// Keys are found by id exactly as inserted; an id is never reused.
pub async fn api_keys_round_trip(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let key = ApiKeyRecord {
        key_id: "k1".into(),
        tenant_id: "acme".into(),
        role: Role::Reader,
        secret_hash: [42; 32],
        created_at_ns: 1_768_469_400_000_000_000,
        expires_at_ns: None,
        revoked_at_ns: None,
        scope: None,
    };
    store.insert_api_key(key.clone()).await.unwrap();
    store
        .insert_api_key(ApiKeyRecord {
            key_id: "k2".into(),
            tenant_id: "beta".into(),
            role: Role::Admin,
            ..key.clone()
        })
        .await
        .unwrap();
    assert_eq!(store.find_api_key("k1").await.unwrap(), Some(key.clone()));
    assert_eq!(
        store.find_api_key("k2").await.unwrap().map(|k| k.role),
        Some(Role::Admin)
    );
    assert_eq!(store.find_api_key("missing").await.unwrap(), None);
    // The narrower roles keep their scope: the actor, the teams in their order.
    for (key_id, role, scope) in [
        ("k3", Role::Actor, KeyScope::Actor("alice".into())),
        (
            "k4",
            Role::TeamAdmin,
            KeyScope::Teams(vec!["payments".into(), "growth \"eu\"".into()]),
        ),
    ] {
        let scoped = ApiKeyRecord {
            key_id: key_id.into(),
            role,
            scope: Some(scope),
            ..key.clone()
        };
        store.insert_api_key(scoped.clone()).await.unwrap();
        assert_eq!(store.find_api_key(key_id).await.unwrap(), Some(scoped));
    }
    assert!(
        store.insert_api_key(key).await.is_err(),
        "a second key with the same id is refused"
    );
}

/// An expiry round-trips; a revocation is seen by every instance at once, keeps its first
/// time when repeated, touches no other key, and reports a key that does not exist.
pub async fn api_keys_expire_and_are_revoked(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let created_at_ns = RECEIVED_BASE_NS;
    let expiring = ApiKeyRecord {
        key_id: "expiring".into(),
        tenant_id: "acme".into(),
        role: Role::Ingest,
        secret_hash: [7; 32],
        created_at_ns,
        expires_at_ns: Some(created_at_ns + HOUR_NS + 123),
        revoked_at_ns: None,
        scope: None,
    };
    let other = ApiKeyRecord {
        key_id: "other".into(),
        tenant_id: "acme".into(),
        expires_at_ns: None,
        ..expiring.clone()
    };
    store.insert_api_key(expiring.clone()).await.unwrap();
    store.insert_api_key(other.clone()).await.unwrap();
    assert_eq!(
        store.find_api_key("expiring").await.unwrap(),
        Some(expiring.clone()),
        "the expiry round-trips to the nanosecond"
    );

    let revoked_at_ns = created_at_ns + SECOND_NS;
    assert!(store
        .revoke_api_key("expiring", revoked_at_ns)
        .await
        .unwrap());
    let revoked = ApiKeyRecord {
        revoked_at_ns: Some(revoked_at_ns),
        ..expiring.clone()
    };
    // Another instance (another node, on a shared backend) sees the revocation at once.
    let other_instance = fixture.open().await;
    for reader in [&store, &other_instance] {
        assert_eq!(
            reader.find_api_key("expiring").await.unwrap(),
            Some(revoked.clone())
        );
        assert_eq!(
            reader.find_api_key("other").await.unwrap(),
            Some(other.clone()),
            "revoking one key leaves the others alone"
        );
    }

    assert!(
        other_instance
            .revoke_api_key("expiring", revoked_at_ns + HOUR_NS)
            .await
            .unwrap(),
        "revoking twice is fine"
    );
    assert_eq!(
        store.find_api_key("expiring").await.unwrap(),
        Some(revoked),
        "a second revocation keeps the first time"
    );
    assert!(!store
        .revoke_api_key("missing", revoked_at_ns)
        .await
        .unwrap());
    assert_eq!(store.find_api_key("missing").await.unwrap(), None);
}

/// A setting is stored once; later attempts neither replace it nor fail.
pub async fn settings_are_set_once(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    assert_eq!(store.setting("admin_token_sha256").await.unwrap(), None);
    assert!(store
        .set_setting_if_absent("admin_token_sha256", vec![1, 2, 3])
        .await
        .unwrap());
    assert!(!store
        .set_setting_if_absent("admin_token_sha256", vec![9])
        .await
        .unwrap());
    assert_eq!(
        store.setting("admin_token_sha256").await.unwrap(),
        Some(vec![1, 2, 3])
    );
}

/// `set_setting` stores or replaces a value, and leaves other settings alone.
pub async fn settings_can_be_replaced(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    store
        .set_setting("retention/acme", b"one".to_vec())
        .await
        .unwrap();
    store
        .set_setting("retention/globex", b"kept".to_vec())
        .await
        .unwrap();
    store
        .set_setting("retention/acme", b"two".to_vec())
        .await
        .unwrap();
    assert_eq!(
        store.setting("retention/acme").await.unwrap(),
        Some(b"two".to_vec())
    );
    assert_eq!(
        store.setting("retention/globex").await.unwrap(),
        Some(b"kept".to_vec())
    );
}

/// Equality on a field a tenant may encrypt matches its plaintext, or an envelope carrying the
/// blind index asked for, and nothing else (another index, or the index text elsewhere).
pub async fn protected_filters_match_plaintext_and_blind_indexes(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let envelope = |index: Option<&str>| {
        sealtrail_model::Sealed::Cipher {
            commitment: [7; 32],
            key_id: "t1.s1",
            index,
            data: "ab12ab12",
        }
        .to_text()
    };
    let values = [
        Some("10.1.1.1".to_owned()),
        Some(envelope(Some("ab12"))),
        Some(envelope(Some("cd34"))),
        Some(envelope(None)),
        // The index's text elsewhere than the index component.
        Some(envelope(Some("ab1234"))),
        None,
    ];
    let sent: Vec<PendingEvent> = values
        .iter()
        .enumerate()
        .map(|(n, value)| {
            let mut pending = test_event("acme", &format!("p{n}"), n as u64 + 1);
            pending.event.ip_address = value.clone();
            pending.event.user_agent = value.clone();
            pending
        })
        .collect();
    append(&*store, vec![sent]).await;
    let matched = |ip: Option<ProtectedMatch>, agent: Option<ProtectedMatch>| {
        let store = store.clone();
        async move {
            let page = store
                .query(EventQuery {
                    ip_address: ip,
                    user_agent: agent,
                    ..query("acme")
                })
                .await
                .unwrap();
            page.iter()
                .map(|stored| stored.event.event_id.clone())
                .collect::<Vec<_>>()
        }
    };
    let by = |plaintext: &str, index: Option<&str>| ProtectedMatch {
        plaintext: plaintext.into(),
        blind_index: index.map(str::to_owned),
    };
    assert_eq!(
        matched(Some(by("10.1.1.1", Some("ab12"))), None).await,
        ["p0", "p1"]
    );
    assert_eq!(matched(Some(by("10.1.1.1", None)), None).await, ["p0"]);
    assert_eq!(
        matched(Some(by("10.9.9.9", Some("cd34"))), None).await,
        ["p2"]
    );
    assert_eq!(
        matched(None, Some(by("10.1.1.1", Some("ab12")))).await,
        ["p0", "p1"]
    );
    assert!(matched(Some(by("10.9.9.9", Some("ef56"))), None)
        .await
        .is_empty());
}

/// Settings are listed and deleted by name prefix, exactly: `vault/acme/` never touches
/// `vault/acme2/` or the name equal to the prefix without its slash.
pub async fn settings_are_listed_and_deleted_by_prefix(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    for name in [
        "vault/acme/a",
        "vault/acme/b",
        "vault/acme2/a",
        "vault/acme",
        "other",
    ] {
        store
            .set_setting(name, name.as_bytes().to_vec())
            .await
            .unwrap();
    }
    let listed = store.settings_with_prefix("vault/acme/").await.unwrap();
    assert_eq!(
        listed,
        vec![
            ("vault/acme/a".to_owned(), b"vault/acme/a".to_vec()),
            ("vault/acme/b".to_owned(), b"vault/acme/b".to_vec())
        ]
    );
    assert_eq!(store.delete_settings("vault/acme/").await.unwrap(), 2);
    assert_eq!(store.setting("vault/acme/a").await.unwrap(), None);
    assert!(store
        .settings_with_prefix("vault/acme/")
        .await
        .unwrap()
        .is_empty());
    for kept in ["vault/acme2/a", "vault/acme", "other"] {
        assert!(store.setting(kept).await.unwrap().is_some(), "{kept}");
    }
    assert_eq!(store.delete_settings("vault/acme/").await.unwrap(), 0);
}

/// The lifecycle's calls: the due prefix stops at the first young event in `seq` order, deletes
/// remove exactly a prefix of one tenant (idempotently, across a partition boundary, clamped to
/// the chain), every read hides what left, and the chain continues from its head afterwards.
pub async fn retention_deletes_a_prefix_only(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let mut acme: Vec<PendingEvent> = (1..=20)
        .map(|n| test_event("acme", &format!("acme-{n}"), n))
        .collect();
    // Out of timestamp order: the 6th event is young, so the due prefix ends at seq 5.
    acme[5].event.timestamp_ns += 3_600 * SECOND_NS;
    let beta: Vec<PendingEvent> = (1..=5)
        .map(|n| test_event("beta", &format!("beta-{n}"), n))
        .collect();
    append(&*store, vec![acme, beta]).await;
    let cutoff_ns = TIMESTAMP_BASE_NS + 10 * SECOND_NS + SECOND_NS / 2;
    let seqs = |events: &[StoredEvent]| events.iter().map(|stored| stored.seq).collect::<Vec<_>>();

    assert_eq!(
        store
            .hot_prefix_older_than("acme", cutoff_ns)
            .await
            .unwrap(),
        Some((1, 5))
    );
    assert_eq!(store.first_hot_seq("acme").await.unwrap(), Some(1));
    assert_eq!(store.first_hot_seq("nobody").await.unwrap(), None);
    let range = store.events_in_seq_range("acme", 3, 7).await.unwrap();
    assert_eq!(seqs(&range), vec![3, 4, 5, 6, 7]);

    assert_eq!(store.delete_events_through("acme", 5).await.unwrap(), 5);
    assert_eq!(
        store.delete_events_through("acme", 5).await.unwrap(),
        0,
        "a second delete of the same prefix removes nothing"
    );
    assert_eq!(store.first_hot_seq("acme").await.unwrap(), Some(6));
    assert_eq!(
        seqs(&all_events(&*store, "acme").await),
        (6..=20).collect::<Vec<_>>()
    );
    let range = store.events_in_seq_range("acme", 1, 7).await.unwrap();
    assert_eq!(seqs(&range), vec![6, 7], "deleted events are absent");
    assert_eq!(store.get_event("acme", "acme-3").await.unwrap(), None);
    assert!(store.get_event("acme", "acme-6").await.unwrap().is_some());
    let page = store
        .query(EventQuery {
            limit: 100,
            ..query("acme")
        })
        .await
        .unwrap();
    assert_eq!(seqs(&page), (6..=20).collect::<Vec<_>>());
    assert_eq!(
        store.merkle_block("acme", 0, 0).await.unwrap().len(),
        15,
        "level 0 serves only the hot leaves"
    );
    // The other tenant is untouched.
    assert_eq!(all_events(&*store, "beta").await.len(), 5);
    assert_eq!(store.first_hot_seq("beta").await.unwrap(), Some(1));

    // Through seq 14: the 13th event of a tenant is received in the next month (a partition
    // boundary on a partitioned backend).
    assert_eq!(store.delete_events_through("acme", 14).await.unwrap(), 9);
    assert_eq!(store.first_hot_seq("acme").await.unwrap(), Some(15));
    assert_eq!(
        store
            .hot_prefix_older_than("acme", cutoff_ns)
            .await
            .unwrap(),
        None,
        "the rest is younger than the cutoff"
    );
    // Chain heads are per tenant, not per tier: deleting never moves them.
    let heads: BTreeMap<String, ChainHead> =
        store.chain_heads().await.unwrap().into_iter().collect();
    assert_eq!(heads["acme"].seq, 20);

    // A delete beyond the head removes the whole hot tier and no more; the chain continues.
    assert_eq!(store.delete_events_through("acme", 1_000).await.unwrap(), 6);
    assert_eq!(store.first_hot_seq("acme").await.unwrap(), None);
    let outcomes = append(&*store, vec![vec![test_event("acme", "acme-21", 21)]]).await;
    assert_eq!(receipts(&outcomes[0])[0].seq, 21);
    store.reclaim_archived().await.expect("reclaim succeeds");
    assert_eq!(seqs(&all_events(&*store, "acme").await), vec![21]);
    assert_eq!(all_events(&*store, "beta").await.len(), 5);
}

/// The tree keeps growing after the leaves of its partly filled tile left the hot tier (the
/// lifecycle moved them to the archive): completing that tile, and the level-16 tile above it,
/// needs no leaf read back. Before frontiers were kept beside the heads, the next group that
/// completed such a tile failed for good.
pub async fn tiles_complete_after_their_leaves_left(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let mut all_leaves = Vec::new();
    let mut counter = 0u64;
    let mut grow = |events: u64| -> Vec<PendingEvent> {
        (0..events)
            .map(|_| {
                counter += 1;
                test_event("acme", &format!("e{counter}"), counter)
            })
            .collect()
    };
    // 100 events, all of them archived: the hot tier is empty, the first tile a quarter full.
    let first = append(&*store, vec![grow(100)]).await;
    all_leaves.extend(receipts(&first[0]).iter().map(|receipt| receipt.event_hash));
    assert_eq!(store.delete_events_through("acme", 100).await.unwrap(), 100);
    // Then groups that complete tile 8/0 and others, archiving again in between.
    for (events, archive_through) in [(155u64, 200u64), (1u64, 256), (700, 900), (65_000, 0)] {
        let outcomes = append(&*store, vec![grow(events)]).await;
        let AppendOutcome::Committed(receipts) = &outcomes[0] else {
            panic!("appending {events} events after archiving: {outcomes:?}");
        };
        all_leaves.extend(receipts.iter().map(|receipt| receipt.event_hash));
        if archive_through > 0 {
            store
                .delete_events_through("acme", archive_through)
                .await
                .unwrap();
        }
    }
    assert_eq!(all_leaves.len(), 65_956);
    // Every stored tile matches the tree of all leaves, archived or not.
    let level_8: Vec<[u8; 32]> = all_leaves.chunks_exact(256).map(tree_root).collect();
    for (block, expected) in level_8.chunks(256).enumerate() {
        assert_eq!(
            store.merkle_block("acme", 8, block as u64).await.unwrap(),
            expected,
            "level 8 block {block}"
        );
    }
    assert_eq!(
        store.merkle_block("acme", 16, 0).await.unwrap(),
        vec![tree_root(&level_8[..256])],
        "the level-16 tile"
    );
    let heads: BTreeMap<String, ChainHead> =
        store.chain_heads().await.unwrap().into_iter().collect();
    assert_eq!(heads["acme"].seq, 65_956);
}

/// Idempotency outlives the hot tier: once events left it (`delete_events_through`, as the
/// lifecycle does after archiving them), a retry of one, identical or without its timestamp,
/// gets its stored receipt and stores nothing; the same `event_id` with other content is a
/// conflict; `existing` still knows them; the chain continues from its head.
pub async fn a_retry_of_an_archived_event_gets_its_receipt(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    // Ingested over the API: each carries its capture decision, so it is also counted.
    let events: Vec<PendingEvent> = (1..=10)
        .map(|n| {
            let mut pending = test_event("acme", &format!("e{n}"), n);
            pending.capture = Some(CaptureDecision {
                class: 1,
                kept: true,
            });
            pending
        })
        .collect();
    let first = append(&*store, vec![events.clone()]).await;
    let first = receipts(&first[0]).to_vec();
    assert_eq!(store.delete_events_through("acme", 6).await.unwrap(), 6);

    // A whole-request retry (an import rerun): every receipt as stored, nothing new.
    let again = append(&*store, vec![events.clone()]).await;
    assert_eq!(receipts(&again[0]), &first[..]);
    // Without its timestamp, received later: still the archived event.
    let mut untimed = events[2].clone();
    untimed.event.timestamp_ns += 17;
    untimed.received_at_ns += 999;
    untimed.timestamp_supplied = false;
    let mixed = append(&*store, vec![vec![untimed, test_event("acme", "e11", 11)]]).await;
    let mixed = receipts(&mixed[0]);
    assert_eq!(mixed[0], first[2]);
    assert_eq!(mixed[1].seq, 11, "a new event continues the chain");
    // Other content under an archived event_id.
    let mut changed = events[1].clone();
    changed.event.action = "something.else".into();
    let conflict = append(&*store, vec![vec![test_event("acme", "e12", 12), changed]]).await;
    assert_eq!(
        conflict[0],
        AppendOutcome::Conflict {
            index: 1,
            event_id: "e2".into()
        }
    );
    let existing = store
        .existing(
            "acme",
            vec!["e1".into(), "e6".into(), "e7".into(), "e99".into()],
        )
        .await
        .unwrap();
    let found: BTreeMap<String, u64> = existing
        .iter()
        .map(|existing| (existing.receipt.event_id.clone(), existing.receipt.seq))
        .collect();
    assert_eq!(
        found,
        BTreeMap::from([("e1".into(), 1), ("e6".into(), 6), ("e7".into(), 7)])
    );
    let hot = all_events(&*store, "acme").await;
    assert_eq!(
        seqs(&hot),
        (7..=11).collect::<Vec<_>>(),
        "nothing stored twice"
    );
    let heads: BTreeMap<String, Option<ChainHead>> =
        store.tenant_heads().await.unwrap().into_iter().collect();
    assert_eq!(heads["acme"].map(|head| head.seq), Some(11));
    // Moving events out, retrying archived ones and a refused request changed no count: the
    // summaries count the 11 events once each, the sampling statistics the 10 decided ones.
    let summarized: u64 = store
        .actor_days("acme", ActorDayFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|(_, tally)| tally.kept)
        .sum();
    assert_eq!(summarized, 11);
    let sampled = store.sampling_counts("acme", None, None).await.unwrap();
    let (kept, seen) = sampled.iter().fold((0, 0), |(kept, seen), count| {
        (kept + count.tally.kept, seen + count.tally.seen)
    });
    assert_eq!((kept, seen), (10, 10));
}

/// Verification of a live store, in a loop while writers append to two tenants, never reports
/// a fault that is not there (each tenant is read in one snapshot); an edit made during the loop
/// is reported by every verification after it, at its `seq`, and only for its tenant.
pub async fn live_verification_reports_only_real_edits(fixture: &dyn Fixture) {
    const BATCHES: u64 = 60;
    const PER_BATCH: u64 = 40;
    let store = fixture.open().await;
    let key = test_verifier();
    let seed: Vec<AppendRequest> = ["acme", "beta"]
        .iter()
        .map(|tenant| {
            (1..=300)
                .map(|n| test_event(tenant, &format!("{tenant}-{n}"), n))
                .collect()
        })
        .collect();
    append(&*store, seed).await;
    let writer_store = fixture.open().await;
    let writer = tokio::spawn(async move {
        for batch in 0..BATCHES {
            let requests: Vec<AppendRequest> = ["acme", "beta"]
                .iter()
                .map(|tenant| {
                    (0..PER_BATCH)
                        .map(|i| {
                            let n = 301 + batch * PER_BATCH + i;
                            test_event(tenant, &format!("{tenant}-{n}"), n)
                        })
                        .collect()
                })
                .collect();
            append(&*writer_store, requests).await;
            tokio::task::yield_now().await;
        }
    });
    let mut rounds = 0;
    let mut edited = false;
    let mut rounds_after_edit = 0;
    while !writer.is_finished() || rounds_after_edit == 0 {
        let reports = verify_store(&*store, None, &key)
            .await
            .expect("verification runs");
        assert_eq!(reports.len(), 2);
        for report in &reports {
            match (&report.verdict, edited && report.tenant_id == "acme") {
                (Ok(_), false) => {}
                (Err(fault), true) => assert_eq!(fault.seq(), 7, "the edit is named: {fault}"),
                (verdict, _) => panic!(
                    "round {rounds}: tenant {} wrongly {verdict:?} (edited: {edited})",
                    report.tenant_id
                ),
            }
        }
        rounds += 1;
        if edited {
            rounds_after_edit += 1;
        } else if rounds == 3 {
            fixture.edit_event("acme", 7).await;
            edited = true;
        }
    }
    writer.await.expect("the writer finishes");
    assert!(
        rounds >= 4,
        "verification ran beside the writers ({rounds} rounds)"
    );
}

/// Sampling statistics commit with the events they count: a kept event counts as seen and kept
/// once (a retry adds nothing), a dropped event is never stored and counts as seen on every
/// delivery, a request refused for a conflict counts nothing, events outside sampling are not
/// counted, a statement's record moves only what it stated, and tenants never see each other's.
pub async fn sampling_counts_commit_with_their_events(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let decided = |tenant: &str, event_id: &str, n: u64, class: u8, kept: bool| {
        let mut pending = test_event(tenant, event_id, n);
        pending.capture = Some(CaptureDecision { class, kept });
        pending
    };
    // Actions by n: 1 and 4 are "update", 3 and 6 "read"; every timestamp is on 2026-01-15.
    let first = append(
        &*store,
        vec![
            vec![
                decided("acme", "e1", 1, 1, true),
                decided("acme", "d1", 4, 1, false),
                decided("acme", "e3", 3, 2, true),
                test_event("acme", "plain", 6),
            ],
            vec![decided("beta", "b1", 1, 1, true)],
        ],
    )
    .await;
    let kept: Vec<&str> = receipts(&first[0])
        .iter()
        .map(|receipt| receipt.event_id.as_str())
        .collect();
    assert_eq!(kept, ["e1", "e3", "plain"], "one receipt per kept event");
    let second = append(
        &*store,
        vec![
            vec![
                decided("acme", "e1", 1, 1, true),
                decided("acme", "d1", 4, 1, false),
            ],
            vec![
                decided("acme", "x", 7, 2, true),
                decided("acme", "e1", 2, 1, true),
            ],
        ],
    )
    .await;
    assert_eq!(receipts(&second[0]), &receipts(&first[0])[..1]);
    assert!(matches!(
        second[1],
        AppendOutcome::Conflict { index: 1, .. }
    ));
    let stored: Vec<String> = all_events(&*store, "acme")
        .await
        .into_iter()
        .map(|stored| stored.event.event_id)
        .collect();
    assert_eq!(
        stored,
        ["e1", "e3", "plain"],
        "a dropped event is never stored"
    );

    let tally = |kept, seen| SamplingTally { kept, seen };
    let summary = |counts: &[SamplingCount]| -> Vec<(String, String, u8, String, SamplingTally)> {
        counts
            .iter()
            .map(|count| {
                (
                    count.key.tenant_id.clone(),
                    count.key.day.clone(),
                    count.key.class,
                    count.key.action.clone(),
                    count.tally,
                )
            })
            .collect()
    };
    let acme = store.sampling_counts("acme", None, None).await.unwrap();
    let day = "2026-01-15".to_owned();
    assert_eq!(
        summary(&acme),
        [
            ("acme".into(), day.clone(), 1, "update".into(), tally(1, 3)),
            ("acme".into(), day.clone(), 2, "read".into(), tally(1, 1)),
        ]
    );
    assert!(acme
        .iter()
        .all(|count| count.stated == SamplingTally::default()));
    let beta = store
        .sampling_counts("beta", Some("2026-01-15"), Some("2026-01-15"))
        .await
        .unwrap();
    assert_eq!(
        summary(&beta),
        [("beta".into(), day.clone(), 1, "update".into(), tally(1, 1))]
    );
    assert!(store
        .sampling_counts("acme", Some("2026-01-16"), None)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .sampling_counts("acme", None, Some("2026-01-14"))
        .await
        .unwrap()
        .is_empty());

    // Only a statistic that dropped something is stated; once stated, it is not again until
    // it moves, and then the store remembers what was stated.
    let unstated = store.unstated_sampling_counts(100).await.unwrap();
    assert_eq!(summary(&unstated), summary(&acme[..1]));
    store.mark_sampling_stated(unstated).await.unwrap();
    assert!(store
        .unstated_sampling_counts(100)
        .await
        .unwrap()
        .is_empty());
    append(
        &*store,
        vec![vec![
            decided("acme", "d2", 4, 1, false),
            decided("beta", "bd", 4, 1, false),
        ]],
    )
    .await;
    let unstated = store.unstated_sampling_counts(100).await.unwrap();
    assert_eq!(unstated.len(), 2);
    assert_eq!(unstated[0].key.tenant_id, "acme");
    assert_eq!(
        (unstated[0].tally, unstated[0].stated),
        (tally(1, 4), tally(1, 3))
    );
    assert_eq!(
        (unstated[1].tally, unstated[1].stated),
        (tally(1, 2), tally(0, 0))
    );
    assert_eq!(store.unstated_sampling_counts(1).await.unwrap().len(), 1);
    assert_eq!(assert_verified(&*store).await["acme"], 3);
}

/// The actor directory: an upsert inserts or replaces whole entries, and each tenant has its
/// own (the same `actor_id` in two tenants is two people).
pub async fn actor_directory_upserts_per_tenant(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let actor = |actor_id: &str, department: &str, team: Option<&str>| Actor {
        actor_id: actor_id.to_owned(),
        display_name: Some(format!("{actor_id} (grüße)")),
        department: Some(department.to_owned()),
        team: team.map(str::to_owned),
        attributes: Some(r#"{"level":3}"#.to_owned()),
    };
    assert_eq!(store.actor("acme", "alice").await.unwrap(), None);
    let written = store
        .upsert_actors(
            "acme",
            vec![
                actor("alice", "finance", Some("payables")),
                actor("bob", "sales", None),
            ],
        )
        .await
        .unwrap();
    assert_eq!(written, 2);
    store
        .upsert_actors("beta", vec![actor("alice", "legal", None)])
        .await
        .unwrap();
    assert_eq!(
        store.actor("acme", "alice").await.unwrap(),
        Some(actor("alice", "finance", Some("payables")))
    );
    assert_eq!(
        store.actor("beta", "alice").await.unwrap(),
        Some(actor("alice", "legal", None))
    );
    // A second upsert replaces the entry whole: a member left out becomes empty.
    let moved = Actor {
        actor_id: "alice".into(),
        display_name: None,
        department: Some("treasury".into()),
        team: None,
        attributes: None,
    };
    store
        .upsert_actors("acme", vec![moved.clone()])
        .await
        .unwrap();
    assert_eq!(store.actor("acme", "alice").await.unwrap(), Some(moved));
    assert_eq!(
        store.actor("acme", "bob").await.unwrap(),
        Some(actor("bob", "sales", None))
    );
    assert_eq!(store.actor("beta", "bob").await.unwrap(), None);

    // Team members, through the index: only the named teams, only this tenant, in order, at
    // most the limit.
    store
        .upsert_actors(
            "acme",
            vec![
                actor("carol", "finance", Some("payables")),
                actor("dave", "finance", Some("receivables")),
                actor("erin", "finance", Some("payables")),
                actor("frank", "it", Some("ops \"eu\"")),
            ],
        )
        .await
        .unwrap();
    store
        .upsert_actors("beta", vec![actor("zed", "legal", Some("payables"))])
        .await
        .unwrap();
    let teams = |names: &[&str]| {
        names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        store
            .team_members("acme", &teams(&["payables", "ops \"eu\""]), 10)
            .await
            .unwrap(),
        ["carol", "erin", "frank"]
    );
    assert_eq!(
        store
            .team_members("acme", &teams(&["payables"]), 1)
            .await
            .unwrap(),
        ["carol"]
    );
    assert!(store
        .team_members("acme", &teams(&["nobody"]), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .team_members("acme", &[], 10)
        .await
        .unwrap()
        .is_empty());
}

/// Summaries count every new event once (a retry and a request refused for a conflict add
/// nothing) and, apart, every dropped one; a tenant's months add up its actor days, count its
/// actors and rank its resources; tenants never see each other's.
pub async fn summaries_count_committed_events(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let dropped = |tenant: &str, event_id: &str, n: u64| {
        let mut pending = test_event(tenant, event_id, n);
        pending.capture = Some(CaptureDecision {
            class: 1,
            kept: false,
        });
        pending
    };
    // By n: 1 is actor-1 update user res-1; 2 actor-2 delete document res-2; 4 actor-1 update
    // document; 5 actor-2 delete user res-1; 7 actor-1 update user without a resource_id.
    // Every timestamp is on 2026-01-15.
    let outcomes = append(
        &*store,
        vec![
            vec![
                test_event("acme", "e1", 1),
                test_event("acme", "e2", 2),
                dropped("acme", "d1", 4),
            ],
            vec![test_event("acme", "x", 7), test_event("acme", "e1", 2)],
            vec![test_event("beta", "b1", 1)],
        ],
    )
    .await;
    assert!(matches!(outcomes[1], AppendOutcome::Conflict { .. }));
    // 8 is actor-2 delete document res-0, and a failure: `failed` counts it; the dropped 4 was a
    // failure too, and counts nowhere but `sampled_out`.
    append(
        &*store,
        vec![vec![
            test_event("acme", "e1", 1),
            test_event("acme", "e5", 5),
            test_event("acme", "e8", 8),
        ]],
    )
    .await;

    let tally = |kept, sampled_out, failed| SummaryTally {
        kept,
        sampled_out,
        failed,
    };
    let rows: Vec<(String, String, String, SummaryTally)> = store
        .actor_days("acme", ActorDayFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|(key, tally)| {
            assert_eq!(
                (key.tenant_id.as_str(), key.day.as_str()),
                ("acme", "2026-01-15")
            );
            (key.actor_id, key.action, key.resource_type, tally)
        })
        .collect();
    let row = |actor: &str, action: &str, resource_type: &str, tally: SummaryTally| {
        (
            actor.to_owned(),
            action.to_owned(),
            resource_type.to_owned(),
            tally,
        )
    };
    assert_eq!(
        rows,
        [
            row("actor-1", "update", "document", tally(0, 1, 0)),
            row("actor-1", "update", "user", tally(1, 0, 0)),
            row("actor-2", "delete", "document", tally(2, 0, 1)),
            row("actor-2", "delete", "user", tally(1, 0, 0)),
        ]
    );
    let actor_2 = store
        .actor_days(
            "acme",
            ActorDayFilter {
                actor_id: Some("actor-2"),
                action: None,
                from_day: Some("2026-01-15"),
                to_day: Some("2026-01-15"),
            },
        )
        .await
        .unwrap();
    assert_eq!(actor_2.len(), 2);
    let updates = store
        .actor_days(
            "acme",
            ActorDayFilter {
                action: Some("update"),
                ..ActorDayFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        updates
            .iter()
            .map(|(key, tally)| (key.resource_type.as_str(), *tally))
            .collect::<Vec<_>>(),
        [("document", tally(0, 1, 0)), ("user", tally(1, 0, 0))]
    );
    assert!(store
        .actor_days(
            "acme",
            ActorDayFilter {
                from_day: Some("2026-01-16"),
                ..ActorDayFilter::default()
            },
        )
        .await
        .unwrap()
        .is_empty());

    let months = store.tenant_months("acme", None, None, 20).await.unwrap();
    assert_eq!(months.len(), 1);
    let month = &months[0];
    assert_eq!(month.month, "2026-01");
    assert_eq!(
        month.actions,
        BTreeMap::from([
            ("delete".to_owned(), tally(3, 0, 1)),
            ("update".to_owned(), tally(1, 1, 0))
        ])
    );
    assert_eq!(month.unique_actors, 2);
    assert_eq!(
        month.top_resources,
        [
            ("user".to_owned(), "res-1".to_owned(), 2),
            ("document".to_owned(), "res-0".to_owned(), 1),
            ("document".to_owned(), "res-2".to_owned(), 1)
        ]
    );
    let top_one = store
        .tenant_months("acme", Some("2026-01"), Some("2026-01"), 1)
        .await
        .unwrap();
    assert_eq!(top_one[0].top_resources.len(), 1);
    assert!(store
        .tenant_months("acme", Some("2026-02"), None, 20)
        .await
        .unwrap()
        .is_empty());
    let beta = store.tenant_months("beta", None, None, 20).await.unwrap();
    assert_eq!(
        beta[0].actions,
        BTreeMap::from([("update".to_owned(), tally(1, 0, 0))])
    );

    // Days sum the actor days per action; top actors rank by stored events.
    let days = store.tenant_days("acme", None, None).await.unwrap();
    assert_eq!(days.len(), 1);
    assert_eq!(days[0].day, "2026-01-15");
    assert_eq!(days[0].actions, month.actions);
    assert!(store
        .tenant_days("acme", Some("2026-01-16"), None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .tenant_days("acme", Some("2026-01-15"), Some("2026-01-15"))
            .await
            .unwrap(),
        days
    );
    assert_eq!(
        store.top_actors("acme", None, None, 20).await.unwrap(),
        [("actor-2".to_owned(), 3), ("actor-1".to_owned(), 1)]
    );
    assert_eq!(
        store
            .top_actors("acme", Some("2026-01-15"), Some("2026-01-15"), 1)
            .await
            .unwrap(),
        [("actor-2".to_owned(), 3)]
    );
    assert!(store
        .top_actors("acme", None, Some("2026-01-14"), 20)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.top_actors("beta", None, None, 20).await.unwrap(),
        [("actor-1".to_owned(), 1)]
    );
}

/// A month's revision moves with every commit that changes its events or summaries (a kept or
/// a dropped event), the directory's with every upsert; a retry, a conflicting request and
/// another tenant's commit move nothing: what the query result cache relies on.
pub async fn revisions_move_with_every_change_they_stamp(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let revisions = |tenant: &'static str| {
        let store = &store;
        async move { store.revisions(tenant).await.unwrap().0 }
    };
    assert!(revisions("acme").await.is_empty());
    // Every test timestamp is in 2026-01.
    append(&*store, vec![vec![test_event("acme", "e1", 1)]]).await;
    let first = revisions("acme").await;
    assert_eq!(first.keys().collect::<Vec<_>>(), ["2026-01"]);
    let before = first["2026-01"];
    assert!(before > 0);
    // A retry, and a request refused for a conflict: nothing changed.
    let outcomes = append(
        &*store,
        vec![
            vec![test_event("acme", "e1", 1)],
            vec![test_event("acme", "x", 7), test_event("acme", "e1", 2)],
        ],
    )
    .await;
    assert!(matches!(outcomes[1], AppendOutcome::Conflict { .. }));
    assert_eq!(revisions("acme").await, first);
    // Another tenant's commit and directory leave acme's revisions alone.
    append(&*store, vec![vec![test_event("beta", "b1", 1)]]).await;
    let actor = Actor {
        actor_id: "alice".into(),
        display_name: None,
        department: Some("finance".into()),
        team: None,
        attributes: None,
    };
    store
        .upsert_actors("beta", vec![actor.clone()])
        .await
        .unwrap();
    assert_eq!(revisions("acme").await, first);
    // A dropped event changes the month's summaries.
    let mut dropped = test_event("acme", "d1", 4);
    dropped.capture = Some(CaptureDecision {
        class: 1,
        kept: false,
    });
    append(&*store, vec![vec![dropped]]).await;
    let after_drop = revisions("acme").await["2026-01"];
    assert!(after_drop > before, "{after_drop} > {before}");
    // A new event moves it again; the directory has its own scope.
    append(&*store, vec![vec![test_event("acme", "e2", 2)]]).await;
    assert!(revisions("acme").await["2026-01"] > after_drop);
    store
        .upsert_actors("acme", vec![actor.clone()])
        .await
        .unwrap();
    let directory = revisions("acme").await[crate::REVISION_SCOPE_ACTORS];
    store.upsert_actors("acme", vec![actor]).await.unwrap();
    assert!(revisions("acme").await[crate::REVISION_SCOPE_ACTORS] > directory);
    assert_eq!(
        revisions("beta").await.keys().collect::<Vec<_>>(),
        ["2026-01", crate::REVISION_SCOPE_ACTORS]
    );
}
