//! End-to-end: real time. The default alert rules fire once just above their thresholds and
//! never at them; an alert is an event of the tenant's log that verifies like any other; a burst
//! that spans a SIGKILL still alerts, once; a baseline rule fires on an actor's deviation from
//! its own daily history. Webhooks (Standard Webhooks signatures checked by the receiver) and
//! sinks (Splunk HEC, syslog over TCP, OCSF over HTTP) deliver everything, in order, to
//! receivers that were down for a while and through a SIGKILL of the server, with exactly one
//! copy of each event after the receivers' dedupe by event id; a message that never gets
//! through is parked and can be replayed. The live stream tails a tenant and resumes with
//! `Last-Event-ID`. Bad input is refused naming its field.

mod common;
#[path = "common/receivers.rs"]
mod receivers;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use receivers::{wait_until, HttpReceiver, Request, SyslogReceiver};
use sealtrail_realtime::webhook::WebhookSecret;
use serde_json::{json, Value};

/// The receivers are on this machine: the tests allow private destinations.
const LOCAL: &str = "--allow-private-destinations";
const RETRY_FAST: &[&str] = &[LOCAL, "--delivery-retry-base-millis", "200"];

fn local_server(dir: &std::path::Path) -> Server {
    Server::start_with(dir, &[LOCAL], &[("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)])
}

fn secret() -> WebhookSecret {
    WebhookSecret::from_bytes([7; 32])
}

/// A receiver that accepts a webhook only when its Standard Webhooks signature verifies.
fn webhook_receiver() -> HttpReceiver {
    let secret = secret();
    HttpReceiver::start(move |request: &Request| {
        let (Some(id), Some(timestamp), Some(signature)) = (
            request.header("webhook-id"),
            request
                .header("webhook-timestamp")
                .and_then(|t| t.parse::<i64>().ok()),
            request.header("webhook-signature"),
        ) else {
            return 400;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        match sealtrail_realtime::webhook::verify(
            &secret,
            id,
            timestamp,
            &request.body,
            signature,
            now,
            300,
        ) {
            Ok(()) => 200,
            Err(_) => 401,
        }
    })
}

fn alerts(server: &Server, tenant: &str) -> Vec<Value> {
    let (status, body) = get(
        &server.url(&format!(
            "/v1/events?tenant_id={tenant}&action=alert.triggered&order=asc&limit=1000"
        )),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().clone()
}

fn post_events(server: &Server, events: &[Value]) {
    for chunk in events.chunks(500) {
        let (status, body) = post_json(&server.url("/v1/events"), ADMIN_TOKEN, &json!(chunk));
        assert_eq!(status, 201, "{body}");
    }
}

fn action_event(id: &str, actor: &str, action: &str, outcome: &str, metadata: Value) -> Value {
    json!({"event_id": id, "tenant_id": "acme", "actor_id": actor, "action": action,
        "resource_type": "session", "outcome": outcome, "metadata": metadata})
}

/// Waits until the tenant holds `count` alerts, then a little longer to see that no more come.
fn expect_alerts(server: &Server, count: usize, case: &str) -> Vec<Value> {
    assert!(
        wait_until(20, || alerts(server, "acme").len() >= count),
        "{case}: expected {count} alerts, got {:?}",
        alerts(server, "acme")
    );
    std::thread::sleep(Duration::from_millis(1_500));
    let found = alerts(server, "acme");
    assert_eq!(found.len(), count, "{case}: {found:?}");
    found
}

#[test]
fn default_rules_fire_once_above_their_thresholds_and_alerts_verify() {
    let dir = tempfile::tempdir().unwrap();
    let server = local_server(dir.path());
    let hook = webhook_receiver();
    let (status, body) = post_json(
        &server.url("/v1/tenants/acme/webhooks"),
        ADMIN_TOKEN,
        &json!({"url": format!("{}/alerts", hook.url), "secret": secret().to_text()}),
    );
    assert_eq!(status, 201, "{body}");
    assert!(
        body.get("secret").is_none(),
        "a given secret is never echoed: {body}"
    );
    // Filters narrow alerts too: alerts are events whose resource_id is their rule.
    let one_rule = webhook_receiver();
    let (status, body) = post_json(
        &server.url("/v1/tenants/acme/webhooks"),
        ADMIN_TOKEN,
        &json!({"url": one_rule.url, "secret": secret().to_text(), "filters": {"resource_id": "brute-force"}}),
    );
    assert_eq!(status, 201, "{body}");

    // Brute force: five failed logins are the threshold, the sixth is above it.
    let failures: Vec<Value> = (0..9)
        .map(|n| {
            action_event(
                &format!("login-{n}"),
                "mallory",
                "login",
                "failure",
                json!({}),
            )
        })
        .collect();
    post_events(&server, &failures[..5]);
    // Successes and another actor's failures never count.
    post_events(
        &server,
        &[
            action_event("ok-1", "mallory", "login", "success", json!({})),
            action_event("other-1", "alice", "login", "failure", json!({})),
        ],
    );
    expect_alerts(&server, 0, "five failures");
    post_events(&server, &failures[5..6]);
    let found = expect_alerts(&server, 1, "six failures");
    // More failures inside the cool-down raise nothing: no event counts towards two alerts.
    post_events(&server, &failures[6..]);
    expect_alerts(&server, 1, "failures in the cool-down");
    let alert = &found[0];
    assert_eq!(alert["actor_id"], "sealtrail");
    assert_eq!(alert["actor_type"], "system");
    assert_eq!(alert["resource_id"], "brute-force");
    let metadata = &alert["metadata"];
    assert_eq!(metadata["group"], "mallory");
    assert_eq!(metadata["value"], 6.0);
    let contributing: Vec<&str> = metadata["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    assert_eq!(
        contributing,
        ["login-0", "login-1", "login-2", "login-3", "login-4", "login-5"]
    );

    // Bulk export: 100,000,000 bytes in an hour is the threshold.
    let export = |n: u64, bytes: u64| {
        action_event(
            &format!("export-{n}"),
            "carol",
            "export",
            "success",
            json!({"bytes": bytes}),
        )
    };
    post_events(&server, &[export(0, 60_000_000), export(1, 40_000_000)]);
    expect_alerts(&server, 1, "exports at the threshold");
    post_events(&server, &[export(2, 1)]);
    expect_alerts(&server, 2, "exports above the threshold");

    // Admin burst: ten administrative actions in ten minutes is the threshold.
    let admin: Vec<Value> = (0..11)
        .map(|n| {
            let action = [
                "role_assign",
                "permission_grant",
                "admin.user_disable",
                "config_change",
            ][n % 4];
            action_event(&format!("admin-{n}"), "root", action, "success", json!({}))
        })
        .collect();
    post_events(&server, &admin[..10]);
    expect_alerts(&server, 2, "ten admin actions");
    post_events(&server, &admin[10..]);
    expect_alerts(&server, 3, "eleven admin actions");

    // API key rate: 600 requests per key in a minute is the threshold.
    let reads: Vec<Value> = (0..601)
        .map(|n| {
            action_event(
                &format!("read-{n}"),
                "svc",
                "read",
                "success",
                json!({"api_key_id": "key-1"}),
            )
        })
        .collect();
    post_events(&server, &reads[..600]);
    expect_alerts(&server, 3, "600 requests of one key");
    post_events(&server, &reads[600..]);
    let found = expect_alerts(&server, 4, "601 requests of one key");
    let rules: Vec<&str> = found
        .iter()
        .map(|alert| alert["resource_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        ["brute-force", "bulk-export", "admin-burst", "api-key-rate"]
    );
    assert_eq!(found[3]["metadata"]["group"], "key-1");
    assert_eq!(found[3]["metadata"]["events"].as_array().unwrap().len(), 20);

    // Every alert reached the webhook, signed; nothing was refused by the receiver.
    assert!(
        wait_until(20, || hook.accepted().len() >= 4),
        "{:?}",
        hook.requests()
    );
    assert!(hook.requests().iter().all(|request| request.status == 200));
    let delivered: Vec<Value> = hook
        .accepted()
        .iter()
        .map(|request| serde_json::from_slice(&request.body).unwrap())
        .collect();
    assert!(delivered
        .iter()
        .all(|message| message["type"] == "alert.triggered"));
    let ids: Vec<&str> = delivered
        .iter()
        .map(|message| message["data"]["event_id"].as_str().unwrap())
        .collect();
    let stored: Vec<&str> = found
        .iter()
        .map(|alert| alert["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, stored, "in log order");

    let only: Vec<String> = one_rule
        .accepted()
        .iter()
        .map(|request| request.header("webhook-id").unwrap().to_owned())
        .collect();
    assert_eq!(only, [stored[0]], "one rule's alerts");
    // Alerts are chained and covered by the signed checkpoints like any event.
    server.signal_and_wait("TERM");
    let (code, output) = verify(dir.path(), Some("acme"));
    assert_eq!(code, 0, "{output}");
}

#[test]
fn a_burst_spanning_a_sigkill_alerts_once_and_the_stream_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let stream_lines = |server: &Server, query: &str, last_event_id: Option<&str>| {
        let mut request = ureq::get(&server.url(&format!("/v1/stream?tenant_id=acme{query}")))
            .set("Authorization", &format!("Bearer {ADMIN_TOKEN}"));
        if let Some(last) = last_event_id {
            request = request.set("Last-Event-ID", last);
        }
        let response = request.call().unwrap();
        assert_eq!(response.content_type(), "text/event-stream");
        let (sender, receiver) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(response.into_reader()).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        receiver
    };
    // `(id, event type, event_id)` of the next `count` stream events.
    let take = |lines: &mpsc::Receiver<String>, count: usize| {
        let mut events = Vec::new();
        let (mut id, mut kind) = (String::new(), String::new());
        while events.len() < count {
            let line = lines
                .recv_timeout(Duration::from_secs(20))
                .expect("a stream event");
            if let Some(value) = line.strip_prefix("id: ") {
                id = value.to_owned();
            } else if let Some(value) = line.strip_prefix("event: ") {
                kind = value.to_owned();
            } else if let Some(data) = line.strip_prefix("data: ") {
                let event: Value = serde_json::from_str(data).unwrap();
                events.push((
                    id.clone(),
                    kind.clone(),
                    event["event_id"].as_str().unwrap().to_owned(),
                ));
            }
        }
        events
    };
    let logins = stream_lines(&server, "&action=login", None);
    let failures: Vec<Value> = (0..8)
        .map(|n| action_event(&format!("fail-{n}"), "eve", "login", "failure", json!({})))
        .collect();
    post_events(&server, &failures[..4]);
    let seen = take(&logins, 4);
    assert_eq!(
        seen.iter()
            .map(|(_, kind, id)| (kind.as_str(), id.as_str()))
            .collect::<Vec<_>>(),
        [
            ("event", "fail-0"),
            ("event", "fail-1"),
            ("event", "fail-2"),
            ("event", "fail-3")
        ]
    );
    // The engine judged them (its cursor is saved) before the kill.
    std::thread::sleep(Duration::from_millis(1_500));
    server.signal_and_wait("KILL");
    let server = Server::start(dir.path());
    post_events(&server, &failures[4..6]);
    let found = expect_alerts(&server, 1, "a burst across a SIGKILL");
    assert_eq!(found[0]["metadata"]["value"], 6.0);
    // Resuming with the last id seen gets exactly the events after it, alerts included.
    let resumed = stream_lines(&server, "", Some(&seen[3].0));
    let next = take(&resumed, 3);
    assert_eq!(
        next.iter()
            .map(|(_, kind, id)| (kind.as_str(), id.as_str()))
            .collect::<Vec<_>>(),
        [
            ("event", "fail-4"),
            ("event", "fail-5"),
            ("alert", found[0]["event_id"].as_str().unwrap())
        ]
    );
    // A restart rebuilds the windows: the same burst is never alerted again.
    server.signal_and_wait("KILL");
    let server = Server::start(dir.path());
    post_events(&server, &failures[6..]);
    expect_alerts(&server, 1, "after another restart");
    // A reader of another tenant cannot tail acme; no key, no stream.
    let beta_reader = server.create_key("beta", "reader");
    let (status, _) = get(&server.url("/v1/stream?tenant_id=acme"), &beta_reader);
    assert_eq!(status, 403);
    let (status, _) = get(&server.url("/v1/stream?tenant_id=acme"), "");
    assert_eq!(status, 401);
    let (status, body) = get(
        &server.url("/v1/stream?tenant_id=acme&colour=red"),
        ADMIN_TOKEN,
    );
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (400, Some("colour")),
        "{body}"
    );
}

#[test]
fn a_baseline_rule_fires_on_an_actor_above_its_own_history() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Ten days of history: dave exports twice a day.
    let day_start = now_s - now_s % 86_400;
    let history: String = (1..=10)
        .flat_map(|back| (0..2).map(move |n| (back, n)))
        .map(|(back, n)| {
            let at = day_start - back * 86_400 + 3_600 + n;
            let event = json!({"event_id": format!("h-{back}-{n}"), "tenant_id": "acme", "actor_id": "dave",
                "action": "export", "resource_type": "report",
                "timestamp": format!("{}Z", time_text(at))});
            format!("{event}\n")
        })
        .collect();
    let file = dir.path().join("history.ndjson");
    std::fs::write(&file, history).unwrap();
    let (code, output) = sealtrail(&[
        "import",
        "--data-dir",
        data_dir.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{output}");
    let server = Server::start(&data_dir);
    let rule = json!({"name": "unusual-exports", "kind": "baseline", "match": {"action": "export"},
        "deviations": 2, "baseline_days": 10, "min_count": 3});
    let (status, body) = post_json(
        &server.url("/v1/tenants/acme/alert-rules"),
        ADMIN_TOKEN,
        &rule,
    );
    assert_eq!(status, 201, "{body}");
    // History: 2 a day, no deviation: the limit is max(2 + 2 * 0, 3) = 3.
    let today: Vec<Value> = (0..5)
        .map(|n| {
            json!({"event_id": format!("t-{n}"), "tenant_id": "acme", "actor_id": "dave",
            "action": "export", "resource_type": "report"})
        })
        .collect();
    post_events(&server, &today[..3]);
    expect_alerts(&server, 0, "three exports today");
    post_events(&server, &today[3..4]);
    let found = expect_alerts(&server, 1, "four exports today");
    assert_eq!(
        found[0]["metadata"]["baseline"],
        json!({"mean": 2.0, "standard_deviation": 0.0})
    );
    assert_eq!(found[0]["metadata"]["limit"], 3.0);
    post_events(&server, &today[4..]);
    expect_alerts(&server, 1, "once a day");
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time, UTC.
fn time_text(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// Every stored event id of a tenant, in `seq` order.
fn stored_ids(server: &Server, tenant: &str) -> Vec<String> {
    let response = ureq::get(&server.url(&format!("/v1/export?tenant_id={tenant}")))
        .set("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .call()
        .unwrap();
    BufReader::new(response.into_reader())
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
            event["event_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// The ids in first-arrival order, each once: what a receiver deduplicating by id keeps.
fn deduplicated(ids: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = HashSet::new();
    ids.into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

#[test]
fn deliveries_reach_receivers_that_were_down_in_order_once_through_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)];
    let server = Server::start_with(dir.path(), RETRY_FAST, &env);
    let hook = webhook_receiver();
    let hec = HttpReceiver::start(|request: &Request| {
        if request.header("authorization") == Some("Splunk hec-token")
            && request.path == "/services/collector/event"
        {
            200
        } else {
            401
        }
    });
    let ocsf = HttpReceiver::start(|_: &Request| 200);
    let syslog = SyslogReceiver::start();
    let create = |path: &str, body: Value| {
        let (status, body) = post_json(&server.url(path), ADMIN_TOKEN, &body);
        assert_eq!(status, 201, "{body}");
        body
    };
    let made = create(
        "/v1/tenants/acme/webhooks",
        json!({"url": format!("{}/events", hook.url), "events": ["events"], "filters": {"resource_type": "document"}}),
    );
    assert!(
        made["secret"].as_str().unwrap().starts_with("whsec_"),
        "generated, shown once: {made}"
    );
    let hook_id = made["id"].as_str().unwrap().to_owned();
    // The test's receiver checks signatures with a secret of its own: replace the webhook.
    let (status, _) = common::delete(
        &server.url(&format!("/v1/tenants/acme/webhooks/{hook_id}")),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 204);
    create(
        "/v1/tenants/acme/webhooks",
        json!({"url": format!("{}/events", hook.url), "secret": secret().to_text(), "events": ["events"], "filters": {"resource_type": "document"}}),
    );
    create(
        "/v1/sinks",
        json!({"kind": "splunk_hec", "tenant_id": "acme", "url": format!("{}/services/collector/event", hec.url), "token": "hec-token"}),
    );
    create(
        "/v1/sinks",
        json!({"kind": "ocsf_http", "url": format!("{}/ocsf", ocsf.url)}),
    );
    create(
        "/v1/sinks",
        json!({"kind": "syslog", "tenant_id": "acme", "address": syslog.address}),
    );

    hook.set_down(true);
    hec.set_down(true);
    let document = |n: usize| {
        json!({"event_id": format!("doc-{n:05}"), "tenant_id": "acme", "actor_id": format!("u{}", n % 5),
        "action": "update", "resource_type": if n.is_multiple_of(10) { "folder" } else { "document" }, "resource_id": format!("d{n}")})
    };
    let first: Vec<Value> = (0..1_000).map(document).collect();
    post_events(&server, &first);
    let beta: Vec<Value> = (0..100)
        .map(|n| json!({"event_id": format!("beta-{n}"), "tenant_id": "beta", "actor_id": "b", "action": "login", "resource_type": "session"}))
        .collect();
    post_events(&server, &beta);
    // The up receivers are being served while the down ones are retried; then the server dies.
    assert!(wait_until(20, || !ocsf.accepted().is_empty()
        && !syslog.frames().is_empty()));
    assert!(
        wait_until(20, || hook.requests().len() >= 2),
        "the webhook was tried and retried"
    );
    server.signal_and_wait("KILL");
    let server = Server::start_with(dir.path(), RETRY_FAST, &env);
    let second: Vec<Value> = (1_000..1_200).map(document).collect();
    post_events(&server, &second);
    std::thread::sleep(Duration::from_millis(500));
    hook.set_down(false);
    hec.set_down(false);

    let acme = stored_ids(&server, "acme");
    let beta_ids = stored_ids(&server, "beta");
    assert_eq!(acme.len(), 1_200);
    let documents: Vec<String> = (0..1_200)
        .filter(|n: &usize| !n.is_multiple_of(10))
        .map(|n| format!("doc-{n:05}"))
        .collect();
    let hook_ids = || {
        deduplicated(hook.accepted().iter().map(|request| {
            let message: Value = serde_json::from_slice(&request.body).unwrap();
            assert_eq!(
                request.header("webhook-id"),
                message["data"]["event_id"].as_str()
            );
            message["data"]["event_id"].as_str().unwrap().to_owned()
        }))
    };
    assert!(
        wait_until(60, || hook_ids().len() >= documents.len()),
        "webhook got {}",
        hook_ids().len()
    );
    assert_eq!(hook_ids(), documents, "every document event once, in order");

    let hec_ids = || -> Vec<String> {
        hec_events(&hec)
            .iter()
            .map(|event| event["event_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        wait_until(60, || hec_ids().len() >= acme.len()),
        "HEC got {}",
        hec_ids().len()
    );
    assert_eq!(hec_ids(), acme, "HEC: every acme event once, in order");

    let ocsf_by_tenant = || {
        let mut by_tenant: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for request in ocsf.accepted() {
            let batch: Vec<Value> = serde_json::from_slice(&request.body).unwrap();
            for event in batch {
                let tenant = event["metadata"]["tenant_uid"].as_str().unwrap().to_owned();
                by_tenant
                    .entry(tenant)
                    .or_default()
                    .push(event["metadata"]["uid"].as_str().unwrap().to_owned());
            }
        }
        by_tenant
            .into_iter()
            .map(|(tenant, ids)| (tenant, deduplicated(ids)))
            .collect::<BTreeMap<_, _>>()
    };
    assert!(wait_until(60, || ocsf_by_tenant()
        .get("acme")
        .map_or(0, Vec::len)
        >= acme.len()));
    let by_tenant = ocsf_by_tenant();
    assert_eq!(
        by_tenant["acme"], acme,
        "OCSF: every acme event once, in order"
    );
    assert_eq!(
        by_tenant["beta"], beta_ids,
        "OCSF (platform-wide): beta too"
    );

    let syslog_ids = || {
        deduplicated(syslog.frames().iter().map(|frame| {
            let text = String::from_utf8_lossy(frame);
            let at = text
                .find("event_id=\"")
                .expect("structured data names the event")
                + 10;
            text[at..at + text[at..].find('"').unwrap()].to_owned()
        }))
    };
    assert!(
        wait_until(60, || syslog_ids().len() >= acme.len()),
        "syslog got {}",
        syslog_ids().len()
    );
    assert_eq!(
        syslog_ids(),
        acme,
        "syslog: every acme event once, in order"
    );

    // The retries were counted, nothing was parked.
    let metrics = metrics_text(&server);
    assert!(
        metrics.contains("sealtrail_deliveries_total{kind=\"webhook\",outcome=\"retried\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("outcome=\"parked\"} 1"), "{metrics}");
    assert!(
        metrics.contains("sealtrail_feed_lag_events{consumer=\"alerts\"} 0"),
        "{metrics}"
    );
}

fn metrics_text(server: &Server) -> String {
    let (status, body) = get(&server.url("/metrics"), ADMIN_TOKEN);
    assert_eq!(status, 200);
    body.as_str().unwrap().to_owned()
}

#[test]
fn an_undeliverable_message_is_parked_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)];
    let server = Server::start_with(
        dir.path(),
        &[LOCAL, "--delivery-retry-base-millis", "10"],
        &env,
    );
    let hook = webhook_receiver();
    hook.set_down(true);
    let (status, made) = post_json(
        &server.url("/v1/tenants/acme/webhooks"),
        ADMIN_TOKEN,
        &json!({"url": hook.url, "secret": secret().to_text(), "events": ["events"]}),
    );
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_str().unwrap();
    post_events(
        &server,
        &[action_event("lost-1", "a", "update", "success", json!({}))],
    );
    let letters_url = server.url(&format!("/v1/tenants/acme/webhooks/{id}/dead-letters"));
    assert!(wait_until(30, || get(&letters_url, ADMIN_TOKEN).1
        ["dead_letters"]
        .as_array()
        .is_some_and(|list| list.len() == 1)));
    let (_, letters) = get(&letters_url, ADMIN_TOKEN);
    let letter = &letters["dead_letters"][0];
    assert_eq!(letter["event_ids"], json!(["lost-1"]));
    assert_eq!(letter["attempts"], 8);
    assert!(
        letter["error"].as_str().unwrap().contains("503"),
        "{letter}"
    );
    assert_eq!(hook.requests().len(), 8, "one request per attempt");
    assert!(metrics_text(&server)
        .contains("sealtrail_deliveries_total{kind=\"webhook\",outcome=\"parked\"} 1"));
    // The worker went on: a later event still arrives once the receiver is back.
    hook.set_down(false);
    post_events(
        &server,
        &[action_event("later-1", "a", "update", "success", json!({}))],
    );
    assert!(wait_until(20, || hook.accepted().len() == 1));
    let (status, replayed) = post_json(&format!("{letters_url}/replay"), ADMIN_TOKEN, &json!({}));
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(
        (
            replayed["delivered"].as_u64(),
            replayed["still_parked"].as_u64()
        ),
        (Some(1), Some(0))
    );
    let arrived: Vec<String> = hook
        .accepted()
        .iter()
        .map(|request| request.header("webhook-id").unwrap().to_owned())
        .collect();
    assert_eq!(arrived, ["later-1", "lost-1"]);
    let (_, letters) = get(&letters_url, ADMIN_TOKEN);
    assert_eq!(letters["dead_letters"], json!([]));
    // Another tenant's admin sees neither the webhook nor its letters.
    let beta_admin = server.create_key("beta", "admin");
    let (status, _) = get(&letters_url, &beta_admin);
    assert_eq!(status, 403);
    let (status, _) = get(
        &server.url(&format!("/v1/tenants/beta/webhooks/{id}/dead-letters")),
        &beta_admin,
    );
    assert_eq!(status, 404);
}

#[test]
fn rules_webhooks_and_sinks_refuse_bad_input_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let rules_url = server.url("/v1/tenants/acme/alert-rules");
    let (status, body) = get(&rules_url, ADMIN_TOKEN);
    assert_eq!((status, body["source"].as_str()), (200, Some("default")));
    let names: BTreeSet<&str> = body["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| rule["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["brute-force", "bulk-export", "admin-burst", "api-key-rate"])
    );
    let fields = |body: &Value| -> Vec<String> {
        body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|error| error["field"].as_str().unwrap().to_owned())
            .collect()
    };
    let bad = json!({"name": "x y", "match": {"outcome": "maybe"}, "group_by": "email", "window_seconds": 0, "threshold": -1});
    let (status, body) = post_json(&rules_url, ADMIN_TOKEN, &bad);
    assert_eq!(status, 400, "{body}");
    for field in [
        "name",
        "match.outcome",
        "group_by",
        "window_seconds",
        "threshold",
    ] {
        assert!(fields(&body).contains(&field.to_owned()), "{field}: {body}");
    }
    let (status, body) = post_json(
        &rules_url,
        ADMIN_TOKEN,
        &json!({"name": "brute-force", "group_by": "actor_id", "window_seconds": 60, "threshold": 1}),
    );
    assert_eq!(status, 409, "{body}");
    // A reader cannot manage rules; nothing was written by any refusal.
    let reader = server.create_key("acme", "reader");
    let (status, _) = post_json(
        &rules_url,
        &reader,
        &json!({"name": "r", "group_by": "actor_id", "window_seconds": 60, "threshold": 1}),
    );
    assert_eq!(status, 403);
    assert_eq!(get(&rules_url, ADMIN_TOKEN).1["source"], "default");
    // A change is an event of the tenant's log.
    let (status, body) = put_json(
        &server.url("/v1/tenants/acme/alert-rules/quiet"),
        ADMIN_TOKEN,
        &json!({"match": {"action": "login"}, "group_by": "ip_address", "window_seconds": 60, "threshold": 100}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(
        &server.url("/v1/events?tenant_id=acme&action=alert_rules.update"),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 200);
    assert_eq!(
        body["events"][0]["changes"]["after"]["rules"]
            .as_array()
            .unwrap()
            .len(),
        5,
        "{body}"
    );
    let (status, _) = common::delete(
        &server.url("/v1/tenants/acme/alert-rules/quiet"),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 204);
    let (status, _) = common::delete(
        &server.url("/v1/tenants/acme/alert-rules/quiet"),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 404);

    let hooks_url = server.url("/v1/tenants/acme/webhooks");
    for (body, field) in [
        (json!({"url": "ftp://example.com/x"}), "url"),
        (json!({}), "url"),
        (
            json!({"url": "https://hooks.example.com/x", "secret": "whsec_short"}),
            "secret",
        ),
        (
            json!({"url": "https://hooks.example.com/x", "events": ["everything"]}),
            "events",
        ),
        (
            json!({"url": "https://hooks.example.com/x", "events": ["events"], "filters": {"outcome": "meh"}}),
            "filters.outcome",
        ),
        (
            json!({"url": "https://hooks.example.com/x", "colour": "red"}),
            "colour",
        ),
        // Without --allow-private-destinations the server calls no address of its own network.
        (json!({"url": "http://127.0.0.1:8080/x"}), "url"),
        (json!({"url": "http://[::1]/x"}), "url"),
        (
            json!({"url": "http://169.254.169.254/latest/meta-data"}),
            "url",
        ),
        (json!({"url": "http://10.1.2.3/x"}), "url"),
    ] {
        let (status, answer) = post_json(&hooks_url, ADMIN_TOKEN, &body);
        assert_eq!(
            (status, fields(&answer)),
            (400, vec![field.to_owned()]),
            "{body}: {answer}"
        );
    }
    assert_eq!(get(&hooks_url, ADMIN_TOKEN).1["webhooks"], json!([]));
    let sinks_url = server.url("/v1/sinks");
    for (body, field) in [
        (
            json!({"tenant_id": "acme", "url": "https://siem.example.com"}),
            "kind",
        ),
        (
            json!({"kind": "syslog", "tenant_id": "acme", "address": "nowhere"}),
            "address",
        ),
        (
            json!({"kind": "splunk_hec", "tenant_id": "acme", "url": "https://siem.example.com"}),
            "token",
        ),
        (
            json!({"kind": "syslog", "tenant_id": "acme", "address": "siem.example.com:514", "tls": "yes"}),
            "tls",
        ),
        (
            json!({"kind": "syslog", "tenant_id": "acme", "address": "192.168.0.10:514"}),
            "address",
        ),
    ] {
        let (status, answer) = post_json(&sinks_url, ADMIN_TOKEN, &body);
        assert_eq!(
            (status, fields(&answer)),
            (400, vec![field.to_owned()]),
            "{body}: {answer}"
        );
    }
    // Only the platform admin makes a sink of every tenant.
    let admin = server.create_key("acme", "admin");
    let (status, _) = post_json(
        &sinks_url,
        &admin,
        &json!({"kind": "ocsf_http", "url": "https://hooks.example.com/x"}),
    );
    assert_eq!(status, 403);
    let (status, body) = post_json(
        &sinks_url,
        &admin,
        &json!({"kind": "ocsf_http", "tenant_id": "acme", "url": "https://hooks.example.com/x", "authorization": "Bearer t"}),
    );
    assert_eq!(status, 201, "{body}");
    assert!(
        body.get("authorization").is_none(),
        "tokens are write-only: {body}"
    );
    let (status, body) = get(&server.url("/v1/sinks?tenant_id=acme"), &admin);
    assert_eq!(
        (status, body["sinks"].as_array().unwrap().len()),
        (200, 1),
        "{body}"
    );
}

#[test]
fn a_sink_and_the_alerts_cross_a_lifecycle_pass_ingest_a_retry_and_a_restart_on_sqlite() {
    sink_and_alerts_across_tiers_and_time(None);
}

#[test]
fn a_sink_and_the_alerts_cross_a_lifecycle_pass_ingest_a_retry_and_a_restart_on_postgres() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let database = runtime.block_on(sealtrail_hot_postgres::testing::TestDatabase::create());
    sink_and_alerts_across_tiers_and_time(Some(&database.url()));
}

/// A HEC sink that was down while old events and a burst of failed logins came in; then a
/// lifecycle pass moves the old events to the warm tier, and the sink catches up from there;
/// then more ingest, a retry of an archived event, a SIGKILL and a restart; then verify and a
/// bundle. The sink has every event once, in `seq` order; the burst alerted once.
fn sink_and_alerts_across_tiers_and_time(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let on_backend = |args: &[&str]| common::on_backend(args, database_url);
    let serve_args = on_backend(RETRY_FAST);
    let serve_args: Vec<&str> = serve_args.iter().map(String::as_str).collect();
    let env = [("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)];
    let server = Server::start_with(dir.path(), &serve_args, &env);
    let hec = HttpReceiver::start(|_: &Request| 200);
    hec.set_down(true);
    let (status, body) = post_json(
        &server.url("/v1/sinks"),
        ADMIN_TOKEN,
        &json!({"kind": "splunk_hec", "tenant_id": "acme", "url": format!("{}/services/collector/event", hec.url), "token": "t"}),
    );
    assert_eq!(status, 201, "{body}");
    // Events of 45 days ago (the next lifecycle pass moves them to the warm tier), the last six
    // of them failed logins of one actor: a brute force, judged as the events arrive.
    let old_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
        - 45 * 86_400 * 1_000_000_000;
    let old = |n: i64| {
        let (action, outcome) = if n >= 194 {
            ("login", "failure")
        } else {
            ("update", "success")
        };
        json!({"event_id": format!("old-{n:03}"), "tenant_id": "acme", "actor_id": "a",
            "action": action, "outcome": outcome, "resource_type": "document",
            "timestamp": sealtrail_model::format_timestamp(old_ns + n * 1_000_000_000)})
    };
    let events: Vec<Value> = (0..200).map(old).collect();
    post_events(&server, &events);
    let alert_ids = |server: &Server| -> Vec<String> {
        alerts(server, "acme")
            .iter()
            .map(|alert| alert["event_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(wait_until(20, || alert_ids(&server).len() == 1));
    server.signal_and_wait("TERM");
    let output = common::move_older_than_30_days(&data, database_url);
    assert!(output.contains("200"), "the old events moved: {output}");

    // The sink never got them; they are in the warm tier now, and it catches up from there.
    let server = Server::start_with(dir.path(), &serve_args, &env);
    hec.set_down(false);
    let received = || hec_events(&hec);
    assert!(
        wait_until(30, || received().len() >= 201),
        "got {}",
        received().len()
    );
    // More ingest, and a retry of an archived event: it gets its stored receipt, and nothing
    // new reaches the sink.
    let fresh: Vec<Value> = (0..20)
        .map(|n| {
            json!({"event_id": format!("new-{n:02}"), "tenant_id": "acme", "actor_id": "a",
            "action": "update", "resource_type": "document"})
        })
        .collect();
    post_events(&server, &fresh);
    let (status, body) = post_json(&server.url("/v1/events"), ADMIN_TOKEN, &json!([old(7)]));
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["results"][0]["seq"], 8,
        "the archived event's stored receipt: {body}"
    );
    assert!(
        wait_until(30, || received().len() >= 221),
        "got {}",
        received().len()
    );
    // A SIGKILL and a restart: the windows are rebuilt, the sink resumes; nothing is doubled.
    server.signal_and_wait("KILL");
    let server = Server::start_with(dir.path(), &serve_args, &env);
    post_events(&server, &[fresh[0].clone()]);
    std::thread::sleep(Duration::from_millis(2_500));

    let got = received();
    let ids: Vec<&str> = got
        .iter()
        .map(|event| event["event_id"].as_str().unwrap())
        .collect();
    let alerts_now = alert_ids(&server);
    assert_eq!(
        alerts_now.len(),
        1,
        "the burst alerted once, across the pass and restarts"
    );
    let mut expected: Vec<String> = (0..200).map(|n| format!("old-{n:03}")).collect();
    expected.push(alerts_now[0].clone());
    expected.extend((0..20).map(|n| format!("new-{n:02}")));
    assert_eq!(ids, expected, "every event once, in order");
    let seqs: Vec<u64> = got
        .iter()
        .map(|event| event["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=221).collect::<Vec<u64>>());
    assert!(
        got[0].get("tier").is_none(),
        "where it is stored is no part of the event"
    );
    server.signal_and_wait("TERM");

    let (code, output) = common::sealtrail_on(&["verify", "--data-dir", &data], database_url);
    assert_eq!(code, 0, "{output}");
    let output = common::bundle_and_verify(&data, "acme", &dir.path().join("bundle"), database_url);
    assert!(output.contains("221 events"), "{output}");
}

/// What a HEC receiver accepted: each event once, in first-arrival order.
fn hec_events(hec: &HttpReceiver) -> Vec<Value> {
    deduplicated_events(hec.accepted().iter().flat_map(|request| {
        serde_json::Deserializer::from_slice(&request.body)
            .into_iter::<Value>()
            .map(|event| event.unwrap()["event"].clone())
            .collect::<Vec<_>>()
    }))
}

/// The events in first-arrival order, each `event_id` once.
fn deduplicated_events(events: impl IntoIterator<Item = Value>) -> Vec<Value> {
    let mut seen = HashSet::new();
    events
        .into_iter()
        .filter(|event| seen.insert(event["event_id"].as_str().unwrap_or_default().to_owned()))
        .collect()
}
