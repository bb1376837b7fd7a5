//! The query API over HTTP across tiers: `GET /v1/events`, `POST /v1/query` and
//! `GET /v1/export` answer the same before and after `sealtrail lifecycle run`, and refuse
//! bad requests and other tenants clearly.

mod common;

use std::process::Command;

use common::{get, post_json, post_raw, Server, ADMIN_TOKEN};
use serde_json::{json, Value};

const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// The fixed instant these tests run at (the server's test clock, `SEALTRAIL_TEST_NOW`, and
/// `lifecycle run --now`), so which months the events span, and which of them move, never
/// depend on the date the tests run.
const NOW: &str = "2026-03-01T00:00:30Z";

fn now_ns() -> i64 {
    sealtrail_model::parse_timestamp(NOW).unwrap()
}

/// The server on the test clock at [`NOW`].
fn start_server(data_dir: &std::path::Path, extra_args: &[&str]) -> Server {
    Server::start_with(
        data_dir,
        extra_args,
        &[
            ("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN),
            (sealtrail_server::TEST_NOW_ENV, NOW),
        ],
    )
}

fn without_tier(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.remove("tier");
    }
    value
}

/// Follows `next_cursor` to the end; returns every event and the tiers they came from.
fn all_pages(server: &Server, key: &str, query: &str) -> (Vec<Value>, Vec<String>) {
    let mut events = Vec::new();
    let mut tiers = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = server.url(&format!("/v1/events?{query}"));
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = get(&url, key);
        assert_eq!(status, 200, "{page}");
        for event in page["events"].as_array().unwrap() {
            tiers.push(event["tier"].as_str().unwrap().to_owned());
            events.push(without_tier(event.clone()));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (events, tiers),
        }
    }
}

fn export(server: &Server, key: &str, query: &str) -> Vec<Value> {
    let response = ureq::get(&server.url(&format!("/v1/export?{query}")))
        .set("Authorization", &format!("Bearer {key}"))
        .call()
        .unwrap();
    assert_eq!(response.content_type(), "application/x-ndjson");
    response
        .into_string()
        .unwrap()
        .lines()
        .map(|line| without_tier(serde_json::from_str(line).unwrap()))
        .collect()
}

fn sql(server: &Server, key: &str, text: &str) -> Value {
    let (status, body) = post_json(&server.url("/v1/query"), key, &json!({ "sql": text }));
    assert_eq!(status, 200, "{text}: {body}");
    body["rows"].clone()
}

/// Every read the test compares across tiers.
fn answers(server: &Server, key: &str) -> (Vec<Value>, Vec<String>) {
    let (newest_first, tiers) = all_pages(server, key, "limit=17");
    let (oldest_first, _) = all_pages(server, key, "limit=50&order=asc");
    let (failures, _) = all_pages(server, key, "outcome=failure&action=user.login");
    let (one_request, _) = all_pages(server, key, "request_id=req-acme-0007");
    let exported = export(server, key, "");
    let counts = sql(
        server,
        key,
        "SELECT action, outcome, count(*) AS n FROM events GROUP BY 1, 2 ORDER BY 1, 2",
    );
    let (status, single) = get(&server.url("/v1/events/acme-0003"), key);
    assert_eq!(status, 200, "{single}");
    let answers = vec![
        Value::Array(newest_first),
        Value::Array(oldest_first),
        Value::Array(failures),
        Value::Array(one_request),
        Value::Array(exported),
        counts,
        without_tier(single),
    ];
    (answers, tiers)
}

#[test]
fn reads_are_the_same_in_every_tier_and_bad_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = start_server(&data_dir, &[]);
    let now = now_ns();
    for (tenant, count) in [("acme", 120), ("globex", 30)] {
        let key = server.create_key(tenant, "ingest");
        let events: Vec<Value> = (0..count)
            .map(|index: i64| {
                let mut event = common::event(tenant, &format!("{tenant}-{index:04}"));
                event["timestamp"] = json!(sealtrail_model::format_timestamp(
                    now - 100 * DAY_NS + index * 20 * 3_600_000_000_000
                ));
                event["action"] = json!(if index % 3 == 0 {
                    "user.login"
                } else {
                    "document.read"
                });
                event["outcome"] = json!(if index % 4 == 0 { "failure" } else { "success" });
                event["request_id"] = json!(format!("req-{tenant}-{index:04}"));
                event
            })
            .collect();
        let (status, body) = post_json(&server.url("/v1/events"), &key, &Value::Array(events));
        assert_eq!(status, 201, "{body}");
    }
    let reader = server.create_key("acme", "reader");
    let (before, tiers) = answers(&server, &reader);
    assert_eq!(before[0].as_array().unwrap().len(), 120);
    assert_eq!(
        before[4].as_array().unwrap().len(),
        120,
        "the export holds every event"
    );
    assert!(tiers.iter().all(|tier| tier == "hot"));
    let rows = sql(
        &server,
        &reader,
        "SELECT count(*) AS n, count(DISTINCT tenant_id) AS t FROM events",
    );
    assert_eq!(rows, json!([{"n": 120, "t": 1}]));

    // Refusals: each names the field or the reason, and reads nothing of another tenant.
    let query_url = server.url("/v1/query");
    let cases = [
        (json!({"sql": "SELECT * FROM globex.events"}), 400, "sql"),
        (
            json!({"sql": "SELECT * FROM information_schema.tables"}),
            400,
            "sql",
        ),
        (json!({"sql": "   "}), 400, "sql"),
        (json!({"sql": "SELECT 1", "limit": 3}), 400, "body"),
        (
            json!({"sql": "SELECT * FROM events", "tenant_id": "globex"}),
            403,
            "",
        ),
    ];
    for (body, status, field) in cases {
        let (got, problem) = post_json(&query_url, &reader, &body);
        assert_eq!(got, status, "{body}: {problem}");
        if !field.is_empty() {
            assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        }
    }
    let too_long = "SELECT 1 ".repeat(2_000);
    let (status, problem) = post_json(&query_url, &reader, &json!({ "sql": too_long }));
    assert_eq!(status, 400, "{problem}");
    let (status, _, _) = post_raw(&query_url, "", "application/json", br#"{"sql":"SELECT 1"}"#);
    assert_eq!(status, 401);
    let ingest = server.create_key("acme", "ingest");
    let (status, _) = post_json(&query_url, &ingest, &json!({"sql": "SELECT 1"}));
    assert_eq!(status, 403, "an ingest key cannot read");
    let (status, problem) = get(
        &server.url("/v1/export?from=2026-01-01T00:00:00Z&to=2025-01-01T00:00:00Z"),
        &reader,
    );
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "to");
    let (status, _) = get(&server.url("/v1/export?tenant_id=globex"), &reader);
    assert_eq!(status, 403);
    assert!(server.signal_and_wait("TERM").success());

    // Move everything older than 30 days to the warm tier, then ask again.
    let output = Command::new(env!("CARGO_BIN_EXE_sealtrail"))
        .args(["lifecycle", "run", "--now", NOW, "--data-dir"])
        .arg(&data_dir)
        .env("SEALTRAIL_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let server = start_server(&data_dir, &[]);
    let (after, tiers) = answers(&server, &reader);
    for (index, (before, after)) in before.iter().zip(&after).enumerate() {
        assert_eq!(before, after, "answer {index} changed after hot -> warm");
    }
    assert!(
        tiers.contains(&"hot".to_owned()) && tiers.contains(&"warm".to_owned()),
        "{tiers:?}"
    );
    // A platform-admin token names the tenant; it still sees only that tenant.
    let (status, body) = post_json(
        &server.url("/v1/query"),
        ADMIN_TOKEN,
        &json!({"sql": "SELECT count(*) AS n FROM events", "tenant_id": "globex"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([{"n": 30}]));
}

#[test]
fn the_server_moves_old_events_on_its_lifecycle_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = start_server(&data_dir, &["--lifecycle-interval-secs", "1"]);
    let key = server.create_key("acme", "ingest");
    let now = now_ns();
    let events: Vec<Value> = (0..40)
        .map(|index: i64| {
            let mut event = common::event("acme", &format!("acme-{index:04}"));
            event["timestamp"] = json!(sealtrail_model::format_timestamp(
                now - 100 * DAY_NS + index * 60 * 3_600_000_000_000
            ));
            event
        })
        .collect();
    let (status, body) = post_json(&server.url("/v1/events"), &key, &Value::Array(events));
    assert_eq!(status, 201, "{body}");
    let reader = server.create_key("acme", "reader");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let tiers = loop {
        let (_, tiers) = all_pages(&server, &reader, "limit=100");
        if tiers.contains(&"warm".to_owned()) {
            break tiers;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no event reached the warm tier: {tiers:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // Events of the last 30 days stay hot; the 40 events are all still there, each once.
    assert_eq!(tiers.len(), 40);
    assert!(tiers.contains(&"hot".to_owned()), "{tiers:?}");
    // The tree stays provable: a checkpoint over both tiers, and an archived event's proof,
    // whose leaves now come from the Parquet files.
    let (status, checkpoint) = post_json(
        &server.url("/v1/tenants/acme/checkpoint"),
        &reader,
        &json!({}),
    );
    assert!(status == 200 || status == 201, "{checkpoint}");
    let (status, proof) = get(
        &server.url("/v1/tenants/acme/proofs/inclusion?event_id=acme-0000&tree_size=40"),
        &reader,
    );
    assert_eq!(status, 200, "{proof}");
    assert!(server.signal_and_wait("TERM").success());
    let (code, report) = common::verify(&data_dir, None);
    assert_eq!(code, 0, "{report}");
}
