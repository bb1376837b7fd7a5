//! End-to-end: the query result cache answers a repeated SQL or summary read only while nothing
//! it depends on changed. A commit to the month it reads, a directory change or a query whose
//! answer depends on the clock is computed afresh; a commit to another month leaves a summary
//! of past months cached. Across the lifecycle, a retry of an archived event, more ingest and a
//! restart, a repeated question follows the data (on PostgreSQL, `lifecycle_cluster.rs` polls a
//! repeated question on one node while another moves the events).

mod common;

use std::io::Read;

use common::{get, post_json, put_json, verify, Server, ADMIN_TOKEN};
use serde_json::{json, Value};

const METRICS_TOKEN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const TENANT: &str = "acme";
const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// Lookups answered from the cache so far (`sealtrail_query_cache_lookups_total{result="hit"}`).
fn hits(server: &Server) -> u64 {
    let response = ureq::get(&server.url("/metrics"))
        .set("Authorization", &format!("Bearer {METRICS_TOKEN}"))
        .call()
        .unwrap();
    let mut text = String::new();
    response.into_reader().read_to_string(&mut text).unwrap();
    let line = text
        .lines()
        .find(|line| line.starts_with("sealtrail_query_cache_lookups_total{result=\"hit\"}"))
        .unwrap_or_else(|| panic!("no cache hits series in {text}"));
    line.rsplit_once(' ').unwrap().1.parse().unwrap()
}

fn ingest(server: &Server, events: &[Value]) {
    let (status, body) = post_json(&server.url("/v1/events"), ADMIN_TOKEN, &json!(events));
    assert_eq!(status, 201, "{body}");
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn start(data_dir: &std::path::Path, extra_args: &[&str]) -> Server {
    Server::start_with(
        data_dir,
        extra_args,
        &[
            ("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN),
            ("SEALTRAIL_METRICS_TOKEN", METRICS_TOKEN),
        ],
    )
}

fn event(id: &str, timestamp_ns: i64) -> Value {
    json!({
        "event_id": id,
        "tenant_id": TENANT,
        "timestamp": sealtrail_model::format_timestamp(timestamp_ns),
        "actor_id": "user-1@acme.example",
        "action": "update",
        "resource_type": "document",
        "resource_id": format!("doc-{id}"),
    })
}

fn sql(server: &Server, text: &str) -> Value {
    let (status, body) = post_json(
        &server.url("/v1/query"),
        ADMIN_TOKEN,
        &json!({"sql": text, "tenant_id": TENANT}),
    );
    assert_eq!(status, 200, "{body}");
    body["rows"].clone()
}

fn months(server: &Server, from: &str, to: &str) -> Value {
    let (status, body) = get(
        &server.url(&format!(
            "/v1/summaries/tenant-month?tenant_id={TENANT}&from={from}&to={to}"
        )),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 200, "{body}");
    body["summaries"].clone()
}

#[test]
fn a_cached_answer_is_reused_only_while_what_it_read_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &[]);
    let now_ns = now_ns();
    // Two events about 70 days back (a past month), one now.
    let past_ns = now_ns - 70 * DAY_NS;
    let past = &sealtrail_model::format_day(past_ns)[..7];
    let current = &sealtrail_model::format_day(now_ns)[..7];
    ingest(
        &server,
        &[
            event("p1", past_ns),
            event("p2", past_ns + 1),
            event("c1", now_ns),
        ],
    );

    // SQL: the repeat is a hit with the same answer; a commit makes the next one fresh.
    let count = "SELECT count(*) AS n FROM events";
    let first = sql(&server, count);
    let before = hits(&server);
    assert_eq!(sql(&server, count), first);
    assert_eq!(
        hits(&server),
        before + 1,
        "the repeat is answered from the cache"
    );
    ingest(&server, &[event("c2", now_ns + 1)]);
    assert_eq!(sql(&server, count)[0]["n"], 4, "never the stale 3");

    // A query that reads the clock is never cached.
    let clock = "SELECT now() AS t, count(*) AS n FROM events";
    sql(&server, clock);
    let before = hits(&server);
    sql(&server, clock);
    assert_eq!(hits(&server), before, "now() is computed afresh");

    // Summaries of the past month stay cached while the current month grows.
    let past_only = months(&server, past, past);
    assert_eq!(past_only[0]["total_events"], 2, "{past_only}");
    let all = months(&server, past, current);
    let before = hits(&server);
    ingest(&server, &[event("c3", now_ns + 2)]);
    assert_eq!(months(&server, past, past), past_only);
    assert_eq!(hits(&server), before + 1, "another month's commit keeps it");
    let grown = months(&server, past, current);
    assert_ne!(grown, all, "the range holding the commit is read again");
    let current_total = |summaries: &Value| {
        summaries
            .as_array()
            .unwrap()
            .iter()
            .find(|month| month["year_month"] == current)
            .map(|month| month["total_events"].as_u64().unwrap())
    };
    assert_eq!(current_total(&grown), Some(3));
    // A commit to the past month (a late event) refreshes it too.
    ingest(&server, &[event("p3", past_ns + 2)]);
    assert_eq!(months(&server, past, past)[0]["total_events"], 3);

    // The directory has its own revision: a change to it is seen at once.
    let actors = "SELECT count(*) AS n FROM actors";
    assert_eq!(sql(&server, actors)[0]["n"], 0);
    let (status, body) = put_json(
        &server.url(&format!("/v1/tenants/{TENANT}/actors")),
        ADMIN_TOKEN,
        &json!([{"actor_id": "user-1@acme.example", "department": "finance"}]),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(sql(&server, actors)[0]["n"], 1);

    // Another tenant's identical question is its own entry, never acme's answer.
    let (status, body) = post_json(
        &server.url("/v1/query"),
        ADMIN_TOKEN,
        &json!({"sql": count, "tenant_id": "globex"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0]["n"], 0);
    server.signal_and_wait("TERM");
}

/// The same questions asked again and again while the scheduled lifecycle moves old events to
/// the warm tier, a client retries an archived event, more events arrive and the server
/// restarts: each answer is the data as it is then, never a cached earlier one.
#[test]
fn repeated_questions_follow_the_lifecycle_a_retry_more_ingest_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = start(&data_dir, &["--lifecycle-interval-secs", "1"]);
    let now_ns = now_ns();
    let old: Vec<Value> = (0..20)
        .map(|n| event(&format!("old-{n:02}"), now_ns - 100 * DAY_NS + n))
        .collect();
    let recent: Vec<Value> = (0..10)
        .map(|n| event(&format!("new-{n:02}"), now_ns - n))
        .collect();
    ingest(&server, &old);
    ingest(&server, &recent);
    let tiers = "SELECT tier, count(*) AS n FROM events GROUP BY tier ORDER BY tier";
    let (from, to) = (
        &sealtrail_model::format_day(now_ns - 100 * DAY_NS)[..7],
        &sealtrail_model::format_day(now_ns)[..7],
    );
    let summaries_before = months(&server, from, to);

    // The scheduled pass moves the 100-day-old events; the repeated question sees it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if sql(&server, tiers) == json!([{"tier": "hot", "n": 10}, {"tier": "warm", "n": 20}]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the repeated question never saw the lifecycle: {}",
            sql(&server, tiers)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        months(&server, from, to),
        summaries_before,
        "moving events changes no summary"
    );

    // A retry of an archived event gets its stored receipt and changes no answer.
    let (status, body) = post_json(
        &server.url("/v1/events"),
        ADMIN_TOKEN,
        &json!([old[3].clone()]),
    );
    assert!(status == 200 || status == 201, "{status}: {body}");
    assert_eq!(body["results"][0]["seq"], 4, "{body}");
    assert_eq!(sql(&server, tiers)[1]["n"], 20);
    assert_eq!(months(&server, from, to), summaries_before);

    // More ingest: the same questions answer the grown log.
    ingest(&server, &[event("later-1", now_ns + 1)]);
    assert_eq!(
        sql(&server, tiers),
        json!([{"tier": "hot", "n": 11}, {"tier": "warm", "n": 20}])
    );
    let grown = months(&server, from, to);
    assert_ne!(grown, summaries_before);
    let total = |summaries: &Value| -> u64 {
        summaries
            .as_array()
            .unwrap()
            .iter()
            .map(|month| month["total_events"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(total(&grown), 31);

    // A restart: the cache is gone, the answers are the same, and the log verifies.
    assert!(server.signal_and_wait("TERM").success());
    let server = start(&data_dir, &["--lifecycle-interval-secs", "1"]);
    assert_eq!(
        sql(&server, tiers),
        json!([{"tier": "hot", "n": 11}, {"tier": "warm", "n": 20}])
    );
    assert_eq!(months(&server, from, to), grown);
    assert!(server.signal_and_wait("TERM").success());
    let (code, report) = verify(&data_dir, Some(TENANT));
    assert_eq!(code, 0, "{report}");
}
