//! End-to-end: capture policies. Each tenant's policy is read and replaced over the API, every
//! change being an event of its log; sampling decisions equal a re-implementation of
//! docs/FORMAT.md ("Sampling"), keep one request whole and keep 1% of class 3; class 0 is never
//! dropped and always acknowledged after a durable commit; the statistics are exact, survive
//! SIGKILL, and are stated in the tenant's verifiable log.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The decision the document defines, written from docs/FORMAT.md alone: kept when the point
/// of the sampling key is below the rate in parts per million.
fn documented_point(key: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(b"sealtrail-sampling-v1\n")
        .chain_update(key.as_bytes())
        .finalize();
    u64::from_be_bytes(digest[..8].try_into().unwrap()) % 1_000_000
}

fn heartbeat(event_id: &str, request_id: &str) -> Value {
    json!({"event_id": event_id, "tenant_id": "acme", "actor_id": "monitor", "actor_type": "service",
        "action": "heartbeat", "resource_type": "service", "request_id": request_id,
        "ip_address": "10.0.0.1"})
}

fn with_action(event_id: &str, action: &str, request_id: &str) -> Value {
    json!({"event_id": event_id, "tenant_id": "acme", "actor_id": "alice",
        "action": action, "resource_type": "document", "request_id": request_id})
}

fn events_with_action(server: &Server, key: &str, action: &str) -> Vec<Value> {
    let (status, body) = get(
        &server.url(&format!(
            "/v1/events?tenant_id=acme&action={action}&limit=1000"
        )),
        key,
    );
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().clone()
}

#[test]
fn policy_changes_are_events_and_bad_policies_name_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.create_key("acme", "admin");
    let reader = server.create_key("acme", "reader");
    let other_admin = server.create_key("beta", "admin");
    let url = server.url("/v1/tenants/acme/policy");

    let (status, shipped) = get(&url, &admin);
    assert_eq!(status, 200, "{shipped}");
    assert_eq!(shipped["source"], "deployment");
    assert_eq!(shipped["default_class"], 0);
    assert_eq!(
        shipped["rates"],
        json!({"0": 1.0, "1": 1.0, "2": 1.0, "3": 1.0})
    );
    assert_eq!(shipped["rules"][0], json!({"class": 0, "action": "login"}));

    // Class 0 cannot be sampled; every problem names its field; nothing changes.
    let (status, problem) = put_json(
        &url,
        &admin,
        &json!({"rates": {"0": 0.5, "3": 2}, "rules": [{"action": "x"}]}),
    );
    assert_eq!(status, 400, "{problem}");
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["rates.0", "rates.3", "rules[0].class"]);
    assert_eq!(get(&url, &admin).1["source"], "deployment");
    assert!(events_with_action(&server, &admin, "policy.update").is_empty());

    // Only the tenant's admins (and the platform admin) may read or change it.
    let policy = json!({"default_class": 1, "rates": {"1": 0.5, "2": 0.1, "3": 0.01},
        "rules": [{"class": 3, "action": "heartbeat"}, {"class": 0, "action_prefix": "auth."}],
        "default_durability": "async"});
    assert_eq!(put_json(&url, &reader, &policy).0, 403);
    assert_eq!(put_json(&url, &other_admin, &policy).0, 403);
    assert_eq!(get(&url, &reader).0, 403);

    let (status, stored) = put_json(&url, &admin, &policy);
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["source"], "tenant");
    assert_eq!(get(&url, &admin).1, stored);
    assert_eq!(get(&url, ADMIN_TOKEN).1, stored);

    // The change is an event of the tenant's log: who, before and after.
    let changes = events_with_action(&server, &admin, "policy.update");
    assert_eq!(changes.len(), 1, "{changes:?}");
    let change = &changes[0];
    let key_id = admin.split('_').nth(1).unwrap();
    assert_eq!(change["actor_id"], format!("api-key:{key_id}"));
    assert_eq!(change["changes"]["before"]["rates"], shipped["rates"]);
    assert_eq!(change["changes"]["after"]["rules"], policy["rules"]);
    assert!(!change
        .to_string()
        .contains(admin.splitn(3, '_').nth(2).unwrap()));

    server.signal_and_wait("TERM");
    let (code, output) = verify(dir.path(), Some("acme"));
    assert_eq!(code, 0, "{output}");
}

#[test]
fn class_zero_is_kept_and_durable_before_the_answer_whatever_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.create_key("acme", "admin");
    let ingest = server.create_key("acme", "ingest");
    // A policy that would drop every event of classes 1-3.
    let (status, _) = put_json(
        &server.url("/v1/tenants/acme/policy"),
        &admin,
        &json!({"rates": {"1": 0, "2": 0, "3": 0},
            "rules": [{"class": 3, "action": "heartbeat"}, {"class": 2, "action": "read"}]}),
    );
    assert_eq!(status, 200);
    let async_url = server.url("/v1/events?durability=async");

    // Class 0 (here: anything without a rule) in an async request: 201 with receipts.
    let batch: Vec<Value> = (0..20)
        .map(|n| with_action(&format!("login-{n}"), "login", &format!("r{n}")))
        .collect();
    let (status, body) = post_json(&async_url, &ingest, &json!(batch));
    assert_eq!(status, 201, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 20);
    assert!(
        results
            .iter()
            .all(|result| result["seq"].as_u64().is_some()),
        "{body}"
    );

    // A batch mixing classes is acknowledged at its strictest: 201; the rest is dropped.
    let mixed = json!([
        with_action("m-1", "read", "rm"),
        with_action("m-2", "login", "rm"),
        heartbeat("m-3", "rm")
    ]);
    let (status, body) = post_json(&async_url, &ingest, &mixed);
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["results"][0],
        json!({"event_id": "m-1", "tenant_id": "acme", "sampled_out": true, "class": 2})
    );
    assert!(body["results"][1]["seq"].as_u64().is_some(), "{body}");
    assert_eq!(body["results"][2]["sampled_out"], true);

    // Only classes 1-3: the request's own durability.
    let (status, body) = post_json(&async_url, &ingest, &json!([heartbeat("h-1", "rh")]));
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["results"][0]["sampled_out"], true);

    server.signal_and_wait("TERM");
    let stored = stored_event_ids(dir.path(), "acme");
    assert_eq!(
        stored
            .iter()
            .filter(|id| id.starts_with("login-") || *id == "m-2")
            .count(),
        21
    );
    assert!(!stored
        .iter()
        .any(|id| id == "m-1" || id == "m-3" || id == "h-1"));
}

#[test]
fn sampling_matches_the_document_keeps_requests_whole_and_states_exact_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &[
            "--sampling",
            "recommended",
            "--sampling-statement-interval-secs",
            "1",
        ],
        &[("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    let ingest = server.create_key("acme", "ingest");
    let reader = server.create_key("acme", "reader");

    // 100,000 class-3 events, each its own request id, in requests of 10,000.
    let mut kept_ids = Vec::new();
    for request in 0..10 {
        let batch: Vec<Value> = (0..10_000)
            .map(|n| {
                let id = format!("hb-{request}-{n}");
                heartbeat(&id, &format!("req-{request}-{n}"))
            })
            .collect();
        let (status, body) = post_json(&server.url("/v1/events"), &ingest, &json!(batch));
        assert_eq!(status, 201, "{body}");
        for (n, result) in body["results"].as_array().unwrap().iter().enumerate() {
            let request_id = format!("req-{request}-{n}");
            let documented = documented_point(&request_id) < 10_000;
            let sampled_out = result["sampled_out"] == true;
            assert_eq!(
                !sampled_out, documented,
                "decision for {request_id}: {result}"
            );
            if !sampled_out {
                assert_eq!(result["event_id"], format!("hb-{request}-{n}"));
                kept_ids.push(result["event_id"].as_str().unwrap().to_owned());
            } else {
                assert_eq!(result["class"], 3);
            }
        }
    }
    let kept = kept_ids.len();
    assert!(
        (800..=1_200).contains(&kept),
        "kept {kept} of 100,000 at 1%"
    );

    // Class 2 at 10%: 200 request ids, 5 events each, shuffled through one batch.
    let mut batch = Vec::new();
    for round in 0..5 {
        for request in 0..200 {
            batch.push(with_action(
                &format!("view-{request}-{round}"),
                "view",
                &format!("page-{request}"),
            ));
        }
    }
    let (status, body) = post_json(&server.url("/v1/events"), &ingest, &json!(batch));
    assert_eq!(status, 201, "{body}");
    let mut by_request: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    for (event, result) in batch.iter().zip(body["results"].as_array().unwrap()) {
        by_request
            .entry(event["request_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(result["sampled_out"] != true);
    }
    let mut views_kept = 0;
    for (request_id, decisions) in &by_request {
        assert!(
            decisions.iter().all(|d| *d == decisions[0]),
            "{request_id}: {decisions:?}"
        );
        assert_eq!(
            decisions[0],
            documented_point(request_id) < 100_000,
            "{request_id}"
        );
        views_kept += decisions.iter().filter(|d| **d).count();
    }

    // The statistics are exact: seen every delivered event, kept exactly the stored ones.
    let (status, stats) = get(&server.url("/v1/tenants/acme/sampling"), &reader);
    assert_eq!(status, 200, "{stats}");
    let totals: HashMap<u64, (u64, u64)> = stats["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["class"].as_u64().unwrap(),
                (t["kept"].as_u64().unwrap(), t["seen"].as_u64().unwrap()),
            )
        })
        .collect();
    assert_eq!(totals[&3], (kept as u64, 100_000));
    assert_eq!(totals[&2], (views_kept as u64, 1_000));
    assert_eq!(stats["rates"]["3"], 0.01);
    let (status, none) = get(
        &server.url("/v1/tenants/acme/sampling?from=2999-01-01"),
        &reader,
    );
    assert_eq!((status, none["counts"].as_array().unwrap().len()), (200, 0));
    let (status, problem) = get(
        &server.url("/v1/tenants/acme/sampling?from=2026-13-01"),
        &reader,
    );
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "from");

    // Within a few statement intervals every count is stated in the tenant's own log.
    let deadline = Instant::now() + Duration::from_secs(60);
    let stated = loop {
        let (_, stats) = get(&server.url("/v1/tenants/acme/sampling"), &reader);
        // Every statistic that dropped events is stated (one that dropped none needs no
        // statement: its events are all in the log).
        let counts: Vec<Value> = stats["counts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["seen"] != c["kept"])
            .cloned()
            .collect();
        assert!(!counts.is_empty(), "{stats}");
        if counts
            .iter()
            .all(|c| c["stated_seen"] == c["seen"] && c["stated_kept"] == c["kept"])
        {
            break counts;
        }
        assert!(Instant::now() < deadline, "never stated: {stats}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let statements = events_with_action(&server, &reader, "sampling.statement");
    assert!(!statements.is_empty());
    let mut latest: HashMap<(String, u64, String), (u64, u64)> = HashMap::new();
    for statement in statements.iter().rev() {
        assert_eq!(statement["actor_type"], "system");
        assert_eq!(statement["metadata"]["statement"], "sampling/v1");
        for count in statement["metadata"]["counts"].as_array().unwrap() {
            latest.insert(
                (
                    count["day"].as_str().unwrap().into(),
                    count["class"].as_u64().unwrap(),
                    count["action"].as_str().unwrap().into(),
                ),
                (
                    count["kept"].as_u64().unwrap(),
                    count["seen"].as_u64().unwrap(),
                ),
            );
        }
    }
    for count in &stated {
        let key = (
            count["day"].as_str().unwrap().to_owned(),
            count["class"].as_u64().unwrap(),
            count["action"].as_str().unwrap().to_owned(),
        );
        assert_eq!(
            latest[&key],
            (
                count["kept"].as_u64().unwrap(),
                count["seen"].as_u64().unwrap()
            ),
            "{key:?}"
        );
    }

    server.signal_and_wait("TERM");
    // Only kept events were stored; the statements are chained and checkpointed with them.
    let stored = stored_event_ids(dir.path(), "acme");
    assert_eq!(
        stored.iter().filter(|id| id.starts_with("hb-")).count(),
        kept
    );
    assert_eq!(
        stored.iter().filter(|id| id.starts_with("view-")).count(),
        views_kept
    );
    let (code, output) = verify(dir.path(), Some("acme"));
    assert_eq!(code, 0, "{output}");
}

#[test]
fn statistics_stay_exact_across_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--sampling",
        "recommended",
        "--sampling-statement-interval-secs",
        "3600",
    ];
    let env = [("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)];
    let mut server = Server::start_with(dir.path(), &args, &env);
    let ingest = server.create_key("acme", "ingest");
    let (mut acknowledged, mut sent) = (0u64, 0u64);
    for round in 0..4 {
        // A writer posts mixed requests while the server is killed under it.
        let url = server.url("/v1/events");
        let key = ingest.clone();
        let writer = std::thread::spawn(move || {
            let (mut acked, mut sent) = (0u64, 0u64);
            for request in 0..1_000 {
                let batch: Vec<Value> = (0..50)
                    .map(|n| {
                        let id = format!("k{round}-{request}-{n}");
                        let action = ["update", "read", "heartbeat"][n % 3];
                        with_action(&id, action, &format!("r{round}-{request}-{}", n % 7))
                    })
                    .collect();
                sent += 50;
                match post_raw_json(&url, &key, &json!(batch)) {
                    Some(201) => acked += 50,
                    _ => break,
                }
            }
            (acked, sent)
        });
        std::thread::sleep(Duration::from_millis(700 + 300 * round));
        server.signal_and_wait("KILL");
        let (acked, sent_now) = writer.join().unwrap();
        acknowledged += acked;
        sent += sent_now;
        server = Server::start_with(dir.path(), &args, &env);
    }
    let (_, stats) = get(&server.url("/v1/tenants/acme/sampling"), ADMIN_TOKEN);
    let (kept, seen) = stats["totals"]
        .as_array()
        .unwrap()
        .iter()
        .fold((0, 0), |(k, s), t| {
            (
                k + t["kept"].as_u64().unwrap(),
                s + t["seen"].as_u64().unwrap(),
            )
        });
    server.signal_and_wait("TERM");
    let stored = stored_event_ids(dir.path(), "acme")
        .iter()
        .filter(|id| id.starts_with('k'))
        .count() as u64;
    assert!(acknowledged > 0);
    // Kept is exactly what is stored; seen counts every acknowledged event, and no more than
    // were sent (a request cut by the kill may have committed before its answer).
    assert_eq!(kept, stored, "{stats}");
    assert!(
        seen >= acknowledged && seen <= sent,
        "seen {seen}, acknowledged {acknowledged}, sent {sent}"
    );
    assert!(kept < seen, "sampling dropped some of classes 1-3");
}

/// POSTs JSON; the status, or `None` when the connection failed (the server was killed).
fn post_raw_json(url: &str, key: &str, body: &Value) -> Option<u16> {
    let result = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build()
        .post(url)
        .set("Authorization", &format!("Bearer {key}"))
        .send_json(body.clone());
    match result {
        Ok(response) => Some(response.status()),
        Err(ureq::Error::Status(status, _)) => Some(status),
        Err(_) => None,
    }
}
