//! The same reads give the same answers wherever the events live, and SQL never leaves the
//! caller's tenant.

use std::sync::Arc;

use futures::StreamExt;
use sealtrail_archive::{
    migrate_hot_to_warm, migrate_warm_to_cold, CompactionPolicy, Location, MigrationPolicy, Tier,
};
use sealtrail_hot::EventStore;
use sealtrail_hot::{AppendOutcome, EventQuery, Order};
use sealtrail_hot_sqlite::SqliteStore;
use sealtrail_model::{ActorType, Event, Outcome, PendingEvent, StorageTier};
use sealtrail_query::QueryEngine;
use serde_json::Value;

const DAY_NS: i64 = 86_400 * 1_000_000_000;
const NOW_NS: i64 = 1_780_000_000 * 1_000_000_000;

fn event(tenant_id: &str, index: u64, timestamp_ns: i64) -> Event {
    let actions = [
        "user.login",
        "document.update",
        "document.delete",
        "user.invite",
    ];
    Event {
        event_id: format!("{tenant_id}-{index:08}"),
        timestamp_ns,
        tenant_id: tenant_id.to_owned(),
        actor_id: format!("user-{}", index * 7 % 23),
        actor_type: ActorType::Human,
        action: actions[(index % 4) as usize].to_owned(),
        resource_type: "document".to_owned(),
        resource_id: Some(format!("doc-{}", index % 50)),
        outcome: if index.is_multiple_of(5) {
            Outcome::Failure
        } else {
            Outcome::Success
        },
        ip_address: Some("10.0.0.1".to_owned()),
        user_agent: None,
        request_id: Some(format!("req-{index:06}")),
        changes: None,
        metadata: Some(format!(r#"{{"department":"dept-{}"}}"#, index % 3)),
    }
}

/// A tenant's log: `count` events, oldest `days` days ago, evenly spread up to now.
async fn ingest(store: &SqliteStore, tenant_id: &str, count: u64, days: i64) {
    let first_ns = NOW_NS - days * DAY_NS;
    let step = days * DAY_NS / count as i64;
    let requests: Vec<Vec<PendingEvent>> = (0..count)
        .map(|index| {
            let timestamp_ns = first_ns + index as i64 * step;
            vec![PendingEvent {
                event: event(tenant_id, index, timestamp_ns),
                received_at_ns: timestamp_ns + 1_000,
                timestamp_supplied: true,
                capture: None,
            }]
        })
        .collect();
    for outcome in store.append(Arc::new(requests)).await.unwrap() {
        assert!(matches!(outcome, AppendOutcome::Committed(_)));
    }
}

fn query(tenant_id: &str) -> EventQuery {
    EventQuery {
        limit: 100,
        ..EventQuery::for_tenant(tenant_id)
    }
}

/// Every page of a query, followed by cursor, as API JSON without the `tier` field.
async fn all_pages(engine: &QueryEngine, mut query: EventQuery) -> Vec<Value> {
    let mut rows = Vec::new();
    loop {
        let page = engine.page(query.clone()).await.unwrap();
        let Some(last) = page.last() else { break };
        query.after_seq = Some(last.stored.seq);
        let full = page.len() == query.limit;
        rows.extend(page.iter().map(without_tier));
        if !full {
            break;
        }
    }
    rows
}

fn without_tier(event: &sealtrail_model::LocatedEvent) -> Value {
    let mut value = serde_json::to_value(event).unwrap();
    value.as_object_mut().unwrap().remove("tier");
    value
}

/// The investigation reads the issue names, answered once per tier layout.
async fn answers(engine: &Arc<QueryEngine>) -> Vec<Value> {
    let mut out = Vec::new();
    let mut all = query("acme");
    out.push(Value::Array(all_pages(engine, all.clone()).await));
    all.order = Order::Asc;
    all.limit = 37;
    out.push(Value::Array(all_pages(engine, all).await));
    let mut actor_month = query("acme");
    actor_month.actor_id = Some("user-3".into());
    actor_month.from_ns = Some(NOW_NS - 70 * DAY_NS);
    actor_month.to_ns = Some(NOW_NS - 40 * DAY_NS);
    out.push(Value::Array(all_pages(engine, actor_month).await));
    let mut failures = query("acme");
    failures.action = Some("user.login".into());
    failures.outcome = Some("failure".into());
    failures.limit = 7;
    out.push(Value::Array(all_pages(engine, failures).await));
    let mut request = query("acme");
    request.request_id = Some("req-000123".into());
    out.push(Value::Array(all_pages(engine, request).await));
    let mut resource = query("acme");
    resource.resource_id = Some("doc-7".into());
    resource.order = Order::Asc;
    out.push(Value::Array(all_pages(engine, resource).await));
    for event_id in [
        "acme-00000005",
        "acme-00002999",
        "acme-99999999",
        "globex-00000001",
    ] {
        let found = engine.event("acme", event_id).await.unwrap();
        out.push(found.as_ref().map_or(Value::Null, without_tier));
    }
    for sql in [
        "SELECT count(*) AS n, min(seq) AS first, max(seq) AS last FROM events",
        "SELECT action, outcome, count(*) AS n FROM events GROUP BY action, outcome ORDER BY action, outcome",
        "SELECT actor_id, date_trunc('day', timestamp) AS day, count(*) AS failures FROM events \
         WHERE action = 'user.login' AND outcome = 'failure' GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT seq, event_id, metadata FROM events WHERE metadata LIKE '%\"department\":\"dept-1\"%' \
         AND action = 'document.delete' ORDER BY seq DESC LIMIT 20",
    ] {
        let result = engine.sql("acme", sql).await.unwrap();
        out.push(serde_json::to_value(&result).unwrap());
    }
    let mut export = Vec::new();
    let mut stream = Box::pin(
        engine
            .export("acme".into(), Some(NOW_NS - 80 * DAY_NS), None)
            .unwrap(),
    );
    while let Some(chunk) = stream.next().await {
        export.extend(chunk.unwrap());
    }
    let lines: Vec<Value> = export
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let mut value: Value = serde_json::from_slice(line).unwrap();
            value.as_object_mut().unwrap().remove("tier");
            value
        })
        .collect();
    out.push(Value::Array(lines));
    out
}

fn tiers_of(pages: &[sealtrail_model::LocatedEvent]) -> Vec<StorageTier> {
    let mut tiers: Vec<StorageTier> = pages.iter().map(|event| event.tier).collect();
    tiers.dedup();
    tiers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_identical_before_and_after_each_migration() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
    ingest(&store, "acme", 3_000, 100).await;
    ingest(&store, "globex", 400, 100).await;
    let warm_location = Location::Local(dir.path().join("warm"));
    let cold_location = Location::Local(dir.path().join("cold"));
    let engine = Arc::new(
        QueryEngine::new(
            store.clone(),
            Some(Tier::open(&warm_location).unwrap()),
            Some(Tier::open(&cold_location).unwrap()),
        )
        .unwrap(),
    );
    let before = answers(&engine).await;
    // Sanity: the reads are not trivially empty.
    assert_eq!(before[0].as_array().unwrap().len(), 3_000);
    assert_eq!(before[1].as_array().unwrap().len(), 3_000);
    assert!(!before[2].as_array().unwrap().is_empty());
    assert_eq!(before[4].as_array().unwrap().len(), 1);
    assert!(before[6].is_object() && before[7].is_object() && before[8].is_null());
    assert!(
        before[9].is_null(),
        "another tenant's event id is not found"
    );

    let warm = Tier::open(&warm_location).unwrap();
    let policy = MigrationPolicy {
        hot_retention_days: 30,
        now_ns: NOW_NS,
    };
    let moved: u64 = migrate_hot_to_warm(&*store, &warm, None, policy, &mut |_| {})
        .await
        .unwrap()
        .iter()
        .map(|report| report.events_moved)
        .sum();
    assert!(moved > 2_000, "most events moved: {moved}");
    let after = answers(&engine).await;
    for (index, (before, after)) in before.iter().zip(&after).enumerate() {
        assert_eq!(before, after, "answer {index} changed after hot -> warm");
    }
    // And the pages really did come from both tiers.
    let mut newest_first = query("acme");
    newest_first.limit = 1_000;
    newest_first.after_seq = Some(1_200);
    let page = engine.page(newest_first).await.unwrap();
    assert_eq!(tiers_of(&page), vec![StorageTier::Warm]);
    let page = engine.page(query("acme")).await.unwrap();
    assert_eq!(tiers_of(&page), vec![StorageTier::Hot]);

    // Warm files whose events are all older than 60 days are compacted into the cold tier.
    let cold = Tier::open(&cold_location).unwrap();
    let compaction = CompactionPolicy {
        warm_retention_days: 60,
        now_ns: NOW_NS,
    };
    let compacted = migrate_warm_to_cold(&warm, &cold, compaction, None, &mut |_| {})
        .await
        .unwrap();
    assert!(
        !compacted.is_empty(),
        "something moved to cold: {compacted:?}"
    );
    let after_cold = answers(&engine).await;
    for (index, (before, after)) in before.iter().zip(&after_cold).enumerate() {
        assert_eq!(before, after, "answer {index} changed after warm -> cold");
    }
    let mut oldest_first = query("acme");
    oldest_first.order = Order::Asc;
    oldest_first.limit = 1_000;
    let page = engine.page(oldest_first).await.unwrap();
    assert_eq!(page[0].tier, StorageTier::Cold);
    let all_tiers = {
        let mut everything = query("acme");
        everything.limit = 1_000;
        let mut tiers = Vec::new();
        loop {
            let page = engine.page(everything.clone()).await.unwrap();
            let Some(last) = page.last() else { break };
            everything.after_seq = Some(last.stored.seq);
            tiers.extend(tiers_of(&page));
        }
        tiers.dedup();
        tiers
    };
    assert_eq!(
        all_tiers,
        vec![StorageTier::Hot, StorageTier::Warm, StorageTier::Cold]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_cannot_leave_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
    ingest(&store, "acme", 300, 100).await;
    ingest(&store, "globex", 200, 100).await;
    let warm_location = Location::Local(dir.path().join("warm"));
    let warm = Tier::open(&warm_location).unwrap();
    let policy = MigrationPolicy {
        hot_retention_days: 30,
        now_ns: NOW_NS,
    };
    migrate_hot_to_warm(&*store, &warm, None, policy, &mut |_| {})
        .await
        .unwrap();
    let engine = QueryEngine::new(store.clone(), Some(warm), None).unwrap();
    let rows = |result: sealtrail_query::SqlResult| -> Vec<Value> {
        serde_json::from_str(result.rows.get()).unwrap()
    };

    // Everything `events` holds is the caller's, from both tiers.
    let all = rows(
        engine
            .sql(
                "acme",
                "SELECT tenant_id, count(*) AS n FROM events GROUP BY tenant_id",
            )
            .await
            .unwrap(),
    );
    assert_eq!(
        all,
        vec![serde_json::json!({"tenant_id": "acme", "n": 300})]
    );
    let filtered = rows(
        engine
            .sql(
                "acme",
                "SELECT count(*) AS n FROM events WHERE tenant_id = 'globex'",
            )
            .await
            .unwrap(),
    );
    assert_eq!(filtered, vec![serde_json::json!({"n": 0})]);
    let union = rows(
        engine
            .sql(
                "acme",
                "SELECT count(*) AS n FROM (SELECT * FROM events UNION ALL SELECT * FROM events \
                 WHERE seq IN (SELECT seq FROM events WHERE tenant_id <> 'acme'))",
            )
            .await
            .unwrap(),
    );
    assert_eq!(union, vec![serde_json::json!({"n": 300})]);

    let globex_file = std::fs::read_dir(dir.path().join("warm/tenant_id=globex"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let escapes = [
        "SELECT * FROM globex".to_owned(),
        "SELECT * FROM globex.events".to_owned(),
        "SELECT * FROM events UNION ALL SELECT * FROM hot".to_owned(),
        "SELECT * FROM archive".to_owned(),
        "SELECT * FROM information_schema.tables".to_owned(),
        "SELECT * FROM datafusion.information_schema.tables".to_owned(),
        "SHOW TABLES".to_owned(),
        format!("SELECT * FROM '{}'", globex_file.display()),
        format!(
            "CREATE EXTERNAL TABLE other STORED AS PARQUET LOCATION '{}'",
            globex_file.display()
        ),
        "COPY events TO '/tmp/sealtrail-escape.parquet'".to_owned(),
        "INSERT INTO events SELECT * FROM events".to_owned(),
        "SET datafusion.catalog.information_schema = true".to_owned(),
        "DROP TABLE events".to_owned(),
    ];
    for sql in &escapes {
        let error = engine.sql("acme", sql).await.expect_err(sql);
        assert!(error.is_client_error(), "{sql}: {error}");
    }
    // The rejected statements changed nothing.
    let again = rows(
        engine
            .sql("acme", "SELECT count(*) AS n FROM events")
            .await
            .unwrap(),
    );
    assert_eq!(again, vec![serde_json::json!({"n": 300})]);
    assert!(!std::path::Path::new("/tmp/sealtrail-escape.parquet").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_results_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
    ingest(&store, "acme", 50, 10).await;
    let engine = QueryEngine::new(store.clone(), None, None).unwrap();
    let result = engine
        .sql(
            "acme",
            "SELECT value FROM generate_series(1, 1000000) AS t(value)",
        )
        .await
        .unwrap();
    assert_eq!(result.row_count, sealtrail_model::limits::SQL_ROWS_MAX);
    assert!(result.truncated);
    let small = engine.sql("acme", "SELECT seq FROM events").await.unwrap();
    assert_eq!(small.row_count, 50);
    assert!(!small.truncated);
    let error = engine.sql("acme", "SELEC 1").await.unwrap_err();
    assert!(error.is_client_error(), "{error}");
}
