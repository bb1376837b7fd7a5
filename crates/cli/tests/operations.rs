//! Operating the server, end to end through the real binary: `GET /metrics` counts exactly what
//! was sent and needs a credential; `--log-format json` writes one JSON object per stderr line
//! and no secret; a weak platform-admin token is refused before anything starts; a tenant gets
//! 429 beyond its concurrent heavy reads while another tenant is served.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{event, get, post_json, post_raw, Server, ADMIN_TOKEN};
use sealtrail_model::limits::QUERIES_PER_TENANT_CONCURRENT_MAX;
use serde_json::{json, Value};

/// The scraper's token: 32 bytes as hex, like the admin token.
const METRICS_TOKEN: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00123456789abcdef0fedcba987654321";

/// `GET /metrics` with `key`: status, content type and body text.
fn scrape_raw(server: &Server, key: &str) -> (u16, String, String) {
    let mut request = ureq::get(&server.url("/metrics")).timeout(Duration::from_secs(30));
    if !key.is_empty() {
        request = request.set("Authorization", &format!("Bearer {key}"));
    }
    let response = match request.call() {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(other) => panic!("transport error: {other}"),
    };
    let status = response.status();
    let content_type = response.header("content-type").unwrap_or("").to_owned();
    let mut text = String::new();
    response.into_reader().read_to_string(&mut text).unwrap();
    (status, content_type, text)
}

/// Every sample of a scrape, keyed by its series (`name{labels}` exactly as written).
fn scrape(server: &Server) -> HashMap<String, f64> {
    let (status, content_type, text) = scrape_raw(server, METRICS_TOKEN);
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample is `series value`");
            let value = value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
            (series.to_owned(), value)
        })
        .collect()
}

/// How much `series` grew between two scrapes (a series not yet present counts as 0).
fn grew(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    let value = |samples: &HashMap<String, f64>| samples.get(series).copied().unwrap_or(0.0);
    value(after) - value(before)
}

fn start(data_dir: &std::path::Path) -> Server {
    Server::start_with(
        data_dir,
        &[],
        &[
            ("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN),
            ("SEALTRAIL_METRICS_TOKEN", METRICS_TOKEN),
        ],
    )
}

#[test]
fn metrics_move_by_exactly_what_was_sent_and_need_a_credential() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"));
    let ingest = server.create_key("acme", "ingest");
    let reader = server.create_key("acme", "reader");

    // Without a credential: 401 as problem+json. A tenant key: 403 (metrics span tenants).
    let (status, content_type, text) = scrape_raw(&server, "");
    assert_eq!(status, 401, "{text}");
    assert_eq!(content_type, "application/problem+json", "{text}");
    let (status, _, text) = scrape_raw(&server, &reader);
    assert_eq!(status, 403, "{text}");
    let (status, _, text) = scrape_raw(&server, "stk_0123456789abcdef_not-a-key");
    assert_eq!(status, 401, "{text}");
    // The platform-admin token opens it too.
    assert_eq!(scrape_raw(&server, ADMIN_TOKEN).0, 200);

    let before = scrape(&server);
    let events_url = server.url("/v1/events");
    let sync_batch: Vec<Value> = (0..3).map(|n| event("acme", &format!("s-{n}"))).collect();
    let (status, body) = post_json(&events_url, &ingest, &Value::Array(sync_batch));
    assert_eq!(status, 201, "{body}");
    let async_batch: Vec<Value> = (0..2).map(|n| event("acme", &format!("a-{n}"))).collect();
    let (status, body) = post_json(
        &format!("{events_url}?durability=async"),
        &ingest,
        &Value::Array(async_batch),
    );
    assert_eq!(status, 202, "{body}");
    // Two events, one invalid: the request of 2 is refused whole.
    let mut invalid = event("acme", "bad-1");
    invalid["action"] = json!("no spaces allowed");
    let (status, body) = post_json(
        &events_url,
        &ingest,
        &json!([event("acme", "bad-0"), invalid]),
    );
    assert_eq!(status, 400, "{body}");
    // A body that is not JSON: a refused request whose events are unknown.
    let (status, body, _) = post_raw(&events_url, &ingest, "application/json", b"{not json");
    assert_eq!(status, 400, "{body}");
    // No key at all: refused before anything is read.
    let (status, body) = post_json(&events_url, "", &event("acme", "anon"));
    assert_eq!(status, 401, "{body}");

    // The async events are committed once the queue is empty.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let samples = scrape(&server);
        if samples["sealtrail_async_queue_events"] == 0.0 {
            break samples;
        }
        assert!(Instant::now() < deadline, "the async queue never drained");
        std::thread::sleep(Duration::from_millis(50));
    };
    let grew = |series: &str| grew(&before, &after, series);
    assert_eq!(
        grew(r#"sealtrail_events_accepted_total{durability="sync"}"#),
        3.0
    );
    assert_eq!(
        grew(r#"sealtrail_events_accepted_total{durability="async"}"#),
        2.0
    );
    assert_eq!(
        grew(r#"sealtrail_events_rejected_total{durability="sync",reason="invalid"}"#),
        2.0
    );
    assert_eq!(
        grew(r#"sealtrail_ingest_requests_rejected_total{durability="sync",reason="invalid"}"#),
        2.0
    );
    assert_eq!(
        grew(
            r#"sealtrail_ingest_requests_rejected_total{durability="sync",reason="unauthorized"}"#
        ),
        1.0
    );
    // Every accepted event went through a group commit, and nothing else did.
    assert_eq!(grew("sealtrail_group_commit_events_sum"), 5.0);
    assert!(grew("sealtrail_group_commit_events_count") >= 1.0);
    assert!(grew("sealtrail_group_commit_duration_seconds_count") >= 1.0);
    assert_eq!(grew("sealtrail_group_commit_failures_total"), 0.0);
    // Latency by route template and status: one 201, one 202, three refusals.
    let route = |status: u16| {
        format!(
            r#"sealtrail_http_request_duration_seconds_count{{method="POST",route="/v1/events",status="{status}"}}"#
        )
    };
    assert_eq!(grew(&route(201)), 1.0);
    assert_eq!(grew(&route(202)), 1.0);
    assert_eq!(grew(&route(400)), 2.0);
    assert_eq!(grew(&route(401)), 1.0);
    assert!(after.contains_key("sealtrail_spool_segments"));
    assert!(after.contains_key("sealtrail_spool_bytes"));
    assert_eq!(after["sealtrail_spool_records_lost_total"], 0.0);
    assert!(after.contains_key(r#"sealtrail_lifecycle_runs_total{outcome="ok"}"#));
    assert_eq!(
        after[r#"sealtrail_lifecycle_bytes_written_total{tier="warm"}"#],
        0.0
    );
    assert!(after["sealtrail_http_connections_open"] >= 1.0);

    // A path with a tenant in it is counted under its template, never its raw path.
    let (status, _) = post_json(
        &server.url("/v1/tenants/acme/checkpoint"),
        &reader,
        &json!({}),
    );
    assert_eq!(status, 201);
    let (status, _) = get(&server.url("/no/such/path"), &reader);
    assert_eq!(status, 404);
    let samples = scrape(&server);
    assert_eq!(
        samples[r#"sealtrail_http_request_duration_seconds_count{method="POST",route="/v1/tenants/{tenant_id}/checkpoint",status="201"}"#],
        1.0
    );
    assert_eq!(
        samples[r#"sealtrail_http_request_duration_seconds_count{method="GET",route="unmatched",status="404"}"#],
        1.0
    );
    assert!(
        samples
            .keys()
            .all(|series| !series.contains("route=\"/v1/tenants/acme")
                && !series.contains("/no/such/path")),
        "a raw path became a label"
    );
    // The checkpoint just cut is the tenant's latest: seconds old at most.
    let age = samples[r#"sealtrail_checkpoint_age_seconds{tenant_id="acme"}"#];
    assert!((0.0..60.0).contains(&age), "{age}");
}

#[test]
fn json_logs_are_one_object_per_stderr_line_and_hold_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let stderr_path = dir.path().join("stderr.log");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealtrail"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SEALTRAIL_METRICS_TOKEN", METRICS_TOKEN)
        .env("SEALTRAIL_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let base = loop {
        line.clear();
        let read = std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert!(read > 0, "the server exited before listening");
        if let Some(address) = line.trim().strip_prefix("sealtrail listening on ") {
            break address.to_owned();
        }
    };
    // Some work to log about: a key, an event, a refused request.
    let (status, body) = post_json(
        &format!("{base}/v1/keys"),
        ADMIN_TOKEN,
        &json!({"tenant_id": "acme", "role": "ingest"}),
    );
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    let (status, _) = post_json(&format!("{base}/v1/events"), &key, &event("acme", "one"));
    assert_eq!(status, 201);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());

    let text = std::fs::read_to_string(&stderr_path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Start, serving, shutdown requested, draining, sealed: at least these.
    assert!(lines.len() >= 4, "too few log lines to judge: {text}");
    let mut messages = Vec::new();
    for line in &lines {
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
        assert!(value["timestamp"].is_string(), "{line}");
        assert!(value["level"].is_string(), "{line}");
        messages.push(value["fields"]["message"].as_str().unwrap_or("").to_owned());
    }
    assert!(
        messages.iter().any(|message| message == "serving"),
        "{text}"
    );
    assert!(
        messages.iter().any(|message| message == "starting"),
        "{text}"
    );
    // The configuration is logged, its tokens redacted; keys never appear.
    assert!(text.contains("<redacted>"), "{text}");
    for secret in [ADMIN_TOKEN, METRICS_TOKEN, &key] {
        assert!(!text.contains(secret), "a secret reached the log: {text}");
    }
}

#[test]
fn a_weak_admin_or_metrics_token_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let refused = |variable: &str, token: &str, format: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sealtrail"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", format])
            .arg("--data-dir")
            .arg(&data_dir)
            .env_remove("SEALTRAIL_ADMIN_TOKEN")
            .env_remove("SEALTRAIL_METRICS_TOKEN")
            .env(variable, token);
        if variable != "SEALTRAIL_ADMIN_TOKEN" {
            command.env("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN);
        }
        let output = command.output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(1),
            "{variable}={token} was accepted"
        );
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(variable), "{stderr}");
        assert!(stderr.contains("openssl rand -hex 32"), "{stderr}");
        assert!(
            !stderr.contains(token),
            "the refused token was echoed: {stderr}"
        );
        stderr
    };
    // 31 bytes of hex, a short phrase, 20 random-looking base64 characters.
    refused("SEALTRAIL_ADMIN_TOKEN", &ADMIN_TOKEN[..62], "text");
    refused(
        "SEALTRAIL_ADMIN_TOKEN",
        "test-admin-token-0123456789",
        "text",
    );
    refused("SEALTRAIL_METRICS_TOKEN", "Zm9vYmFyYmF6cXV4cXV1", "text");
    // With JSON logs the refusal is a JSON line too.
    let stderr = refused("SEALTRAIL_ADMIN_TOKEN", "changeme-changeme", "json");
    for line in stderr.lines() {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("{line}"));
        assert_eq!(value["level"], "ERROR", "{line}");
    }
    // Refused before the store was opened or the port bound: nothing was created.
    assert!(!data_dir.exists());
}

#[test]
fn a_tenant_beyond_its_concurrent_heavy_reads_gets_429_while_another_tenant_is_served() {
    assert_eq!(
        QUERIES_PER_TENANT_CONCURRENT_MAX, 1,
        "the test holds one read"
    );
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"));
    let acme = server.create_key("acme", "reader");
    let beta = server.create_key("beta", "reader");
    for tenant in ["acme", "beta"] {
        let ingest = server.create_key(tenant, "ingest");
        let (status, body) = post_json(
            &server.url("/v1/events"),
            &ingest,
            &event(tenant, &format!("{tenant}-1")),
        );
        assert_eq!(status, 201, "{body}");
    }

    // An answer acme has had once is in the result cache.
    let cached_sql = json!({"sql": "SELECT 42 AS answer"});
    let (status, first) = post_json(&server.url("/v1/query"), &acme, &cached_sql);
    assert_eq!(status, 200, "{first}");

    // Acme's one heavy read: CPU-bound until the SQL timeout. Its answer is never awaited; the
    // server is stopped at the end of the test. A 429 (the probe below held acme's slot for a
    // moment) is retried.
    let url = server.url("/v1/query");
    let holder_key = acme.clone();
    let (finished, holder_answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || loop {
        let answer = ureq::post(&url)
            .timeout(Duration::from_secs(120))
            .set("Authorization", &format!("Bearer {holder_key}"))
            .send_json(json!({"sql": "SELECT count(*) AS n \
                 FROM generate_series(1, 1000000000000) AS t(v) WHERE v % 7 = 3"}))
            .map(|response| response.status())
            .map_err(|error| error.to_string());
        if !matches!(&answer, Err(error) if error.contains("status code 429")) {
            let _ = finished.send(answer);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    });
    // Until the server runs it, acme's light queries still pass; then they get 429 (the probe
    // is the only other acme query, so a 429 means the heavy one holds the slot). Each probe is
    // a new question, so none is answered from the result cache.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut probe = 0;
    let (body, retry_after) = loop {
        probe += 1;
        let (status, body, retry_after) = post_raw(
            &server.url("/v1/query"),
            &acme,
            "application/json",
            format!(r#"{{"sql": "SELECT {probe} AS one"}}"#).as_bytes(),
        );
        if status == 429 {
            break (body, retry_after);
        }
        assert_eq!(status, 200, "{body}");
        if let Ok(answer) = holder_answer.try_recv() {
            panic!("the heavy query ended before another was refused: {answer:?}");
        }
        assert!(Instant::now() < deadline, "the heavy query never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(body["status"], 429, "{body}");
    assert_eq!(
        body["type"],
        "https://sealtrail.dev/problems/too-many-requests"
    );
    assert!(body["detail"].as_str().unwrap().contains("acme"), "{body}");
    assert!(retry_after.is_some(), "429 without Retry-After");
    // A cached answer is no heavy read: it is served while the slot is held.
    let (status, again) = post_json(&server.url("/v1/query"), &acme, &cached_sql);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, first);
    // An export of the same tenant counts against the same slot.
    let (status, body) = get(&server.url("/v1/export"), &acme);
    assert_eq!(status, 429, "{body}");
    // Another tenant is served meanwhile: a query and an export.
    let (status, body) = post_json(
        &server.url("/v1/query"),
        &beta,
        &json!({"sql": "SELECT count(*) AS n FROM events"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0]["n"], 1, "{body}");
    let (status, body) = get(&server.url("/v1/export"), &beta);
    assert_eq!(status, 200, "{body}");
    // One NDJSON line, which reads as one JSON object.
    assert_eq!(body["event_id"], "beta-1", "{body}");
    // The 429s were counted under their routes.
    let samples = scrape(&server);
    assert!(
        samples[r#"sealtrail_http_request_duration_seconds_count{method="POST",route="/v1/query",status="429"}"#]
            >= 1.0
    );
}

#[test]
fn the_scheduled_lifecycle_is_counted_by_tier_and_step() {
    const NOW: &str = "2026-03-01T00:00:30Z";
    const DAY_NS: i64 = 86_400 * 1_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--lifecycle-interval-secs", "1"],
        &[
            ("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN),
            ("SEALTRAIL_METRICS_TOKEN", METRICS_TOKEN),
            (sealtrail_server::TEST_NOW_ENV, NOW),
        ],
    );
    let now = sealtrail_model::parse_timestamp(NOW).unwrap();
    let ingest = server.create_key("acme", "ingest");
    // 30 events 100 days old (past the 30-day hot retention) and 10 from today.
    let events: Vec<Value> = (0..40i64)
        .map(|index| {
            let mut event = event("acme", &format!("acme-{index:04}"));
            let age = if index < 30 {
                100 * DAY_NS
            } else {
                DAY_NS / 24
            };
            event["timestamp"] = json!(sealtrail_model::format_timestamp(
                now - age + index * 1_000_000_000
            ));
            event
        })
        .collect();
    let (status, body) = post_json(&server.url("/v1/events"), &ingest, &Value::Array(events));
    assert_eq!(status, 201, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let samples = loop {
        let samples = scrape(&server);
        if samples[r#"sealtrail_lifecycle_events_total{step="hot_to_warm"}"#] > 0.0 {
            break samples;
        }
        assert!(
            Instant::now() < deadline,
            "no lifecycle pass moved anything"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Exactly the old events moved, in one pass; later passes find nothing more to move.
    assert_eq!(
        samples[r#"sealtrail_lifecycle_events_total{step="hot_to_warm"}"#],
        30.0
    );
    assert!(samples[r#"sealtrail_lifecycle_runs_total{outcome="ok"}"#] >= 1.0);
    assert_eq!(
        samples[r#"sealtrail_lifecycle_runs_total{outcome="failed"}"#],
        0.0
    );
    let warm_bytes = samples[r#"sealtrail_lifecycle_bytes_written_total{tier="warm"}"#];
    let on_disk: u64 = walk_bytes(&server.data_dir.join("warm"), "parquet");
    assert_eq!(
        warm_bytes, on_disk as f64,
        "the warm bytes counted are the Parquet written"
    );
    assert_eq!(
        samples[r#"sealtrail_lifecycle_bytes_written_total{tier="cold"}"#],
        0.0
    );
}

/// Bytes of every file under `dir` whose name ends in `extension`.
fn walk_bytes(dir: &std::path::Path, extension: &str) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            total += walk_bytes(&path, extension);
        } else if path.extension().is_some_and(|ext| ext == extension) {
            total += entry.metadata().unwrap().len();
        }
    }
    total
}
