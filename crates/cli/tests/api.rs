//! End-to-end tests of the HTTP API against the real server process.

mod common;

use common::*;
use serde_json::{json, Value};

fn ingest(server: &Server, key: &str, body: &Value) -> (u16, Value) {
    post_json(&server.url("/v1/events"), key, body)
}

#[test]
fn single_array_and_ndjson_ingest_chain_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());

    let (status, body) = ingest(&server, ADMIN_TOKEN, &event("acme", "one"));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["results"][0]["seq"], 1);
    assert_eq!(body["results"][0]["event_id"], "one");

    let (status, body) = ingest(
        &server,
        ADMIN_TOKEN,
        &json!([event("acme", "two"), event("beta", "b-one")]),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["results"][0]["seq"], 2);
    assert_eq!(
        body["results"][1]["seq"], 1,
        "each tenant has its own chain"
    );

    let ndjson = format!("{}\n{}\n\n", event("acme", "three"), event("acme", "four"));
    let (status, body, _) = post_raw(
        &server.url("/v1/events"),
        ADMIN_TOKEN,
        "application/x-ndjson",
        ndjson.as_bytes(),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["results"][1]["seq"], 4);

    // The server assigns an event_id and timestamp when absent.
    let (status, body) = ingest(
        &server,
        ADMIN_TOKEN,
        &json!({"tenant_id": "acme", "actor_id": "bob", "action": "login", "resource_type": "session"}),
    );
    assert_eq!(status, 201);
    let assigned = body["results"][0]["event_id"].as_str().unwrap().to_owned();
    assert_eq!(assigned.len(), 36, "a UUID");

    let (status, stored) = get(
        &server.url(&format!("/v1/events/{assigned}?tenant_id=acme")),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 200);
    assert_eq!(stored["seq"], 5);
    assert_eq!(stored["actor_type"], "human");
    assert_eq!(stored["outcome"], "success");
    assert_eq!(stored["prev_hash"], body_hash(&server, "four"));
    let (code, output) = verify(dir.path(), None);
    assert_eq!(code, 0, "{output}");
}

fn body_hash(server: &Server, event_id: &str) -> Value {
    let (_, stored) = get(
        &server.url(&format!("/v1/events/{event_id}?tenant_id=acme")),
        ADMIN_TOKEN,
    );
    stored["event_hash"].clone()
}

/// Each rule: (what to change, the field the error must name).
fn invalid_cases() -> Vec<(Value, &'static str)> {
    let base = event("acme", "base");
    let with = |field: &str, value: Value| {
        let mut changed = base.clone();
        changed[field] = value;
        changed
    };
    let without = |field: &str| {
        let mut changed = base.clone();
        changed.as_object_mut().unwrap().remove(field);
        changed
    };
    let mut deep = json!("leaf");
    for _ in 0..sealtrail_model::limits::JSON_DEPTH_MAX {
        deep = json!({ "k": deep });
    }
    vec![
        (without("tenant_id"), "tenant_id"),
        (with("tenant_id", json!("")), "tenant_id"),
        (with("tenant_id", json!("has space")), "tenant_id"),
        (with("tenant_id", json!("t".repeat(65))), "tenant_id"),
        (without("actor_id"), "actor_id"),
        (with("actor_id", json!(42)), "actor_id"),
        (with("actor_id", json!("a".repeat(257))), "actor_id"),
        (without("action"), "action"),
        (with("action", json!("drop table")), "action"),
        (without("resource_type"), "resource_type"),
        (
            with("resource_type", json!("r".repeat(65))),
            "resource_type",
        ),
        (with("event_id", json!("e".repeat(129))), "event_id"),
        (with("actor_type", json!("robot")), "actor_type"),
        (with("outcome", json!("maybe")), "outcome"),
        (with("ip_address", json!("300.1.2.3")), "ip_address"),
        (with("user_agent", json!("u".repeat(513))), "user_agent"),
        (with("request_id", json!("q".repeat(129))), "request_id"),
        (with("resource_id", json!("x".repeat(257))), "resource_id"),
        (with("timestamp", json!("last tuesday")), "timestamp"),
        (
            with("timestamp", json!("2999-01-01T00:00:00Z")),
            "timestamp",
        ),
        (
            with("timestamp", json!("2001-01-01T00:00:00Z")),
            "timestamp",
        ),
        (with("changes", json!("not an object")), "changes"),
        (with("changes", json!({"during": {}})), "changes.during"),
        (with("metadata", json!([1, 2])), "metadata"),
        (
            with(
                "metadata",
                json!({"big": "m".repeat(sealtrail_model::limits::METADATA_BYTES_MAX)}),
            ),
            "metadata",
        ),
        (with("metadata", json!({ "k": deep })), "metadata"),
        (with("colour", json!("red")), "colour"),
    ]
}

#[test]
fn every_validation_rule_is_a_400_naming_the_field_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    for (position, (bad, field)) in invalid_cases().into_iter().enumerate() {
        // The bad event sits second in a batch: the good first event must not be written either.
        let batch = json!([event("acme", &format!("good-{position}")), bad]);
        let (status, body) = ingest(&server, ADMIN_TOKEN, &batch);
        assert_eq!(status, 400, "case {position} ({field}): {body}");
        let errors = body["errors"].as_array().unwrap();
        assert!(
            errors
                .iter()
                .any(|error| error["index"] == 1 && error["field"] == field),
            "case {position}: expected field {field} at index 1 in {body}"
        );
        assert!(
            errors.iter().all(|error| error["index"] == 1),
            "only the bad event is blamed: {body}"
        );
    }
    let (status, body) = get(&server.url("/v1/events?tenant_id=acme"), ADMIN_TOKEN);
    assert_eq!(status, 200);
    assert_eq!(
        body["events"].as_array().unwrap().len(),
        0,
        "nothing of a rejected request is written"
    );

    // Malformed bodies; a body of another media type is a 415 (issue 9).
    for (content_type, payload, field, expected) in [
        ("application/json", &b"{not json"[..], "body", 400),
        ("application/json", b"42", "body", 400),
        ("application/json", b"[]", "body", 400),
        ("text/plain", b"{}", "Content-Type", 415),
    ] {
        let (status, body, _) = post_raw(
            &server.url("/v1/events"),
            ADMIN_TOKEN,
            content_type,
            payload,
        );
        assert_eq!(status, expected, "{body}");
        assert_eq!(body["errors"][0]["field"], field);
    }
    let (status, body, _) = post_raw(
        &server.url("/v1/events?durability=maybe"),
        ADMIN_TOKEN,
        "application/json",
        event("acme", "x").to_string().as_bytes(),
    );
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["field"], "durability");
}

#[test]
fn oversized_requests_are_413() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let too_many: Vec<Value> = (0..=sealtrail_model::limits::BATCH_EVENTS_MAX)
        .map(|n| json!({"tenant_id": "acme", "actor_id": "a", "action": "read", "resource_type": "doc", "event_id": n.to_string()}))
        .collect();
    let (status, body) = ingest(&server, ADMIN_TOKEN, &Value::Array(too_many));
    assert_eq!(status, 413, "{body}");
    // A body declared too large is refused before it is sent (the client may stop uploading).
    use std::io::{Read, Write};
    let address = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n[",
        sealtrail_model::limits::BODY_BYTES_MAX + 1
    )
    .unwrap();
    let mut response = [0u8; 64];
    let read = stream.read(&mut response).unwrap();
    let head = String::from_utf8_lossy(&response[..read]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    let (_, body) = get(&server.url("/v1/events?tenant_id=acme"), ADMIN_TOKEN);
    assert_eq!(body["events"].as_array().unwrap().len(), 0);
}

#[test]
fn idempotent_retry_returns_the_stored_result_and_conflicts_are_409() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let original = event("acme", "order-1");
    let (status, first) = ingest(&server, ADMIN_TOKEN, &original);
    assert_eq!(status, 201);
    let (status, again) = ingest(&server, ADMIN_TOKEN, &original);
    assert_eq!(status, 201);
    assert_eq!(first, again, "a retry returns the stored receipt");

    // A retry inside a larger batch: the stored one is returned, the new one appended.
    let (status, mixed) = ingest(
        &server,
        ADMIN_TOKEN,
        &json!([original, event("acme", "order-2")]),
    );
    assert_eq!(status, 201);
    assert_eq!(mixed["results"][0], first["results"][0]);
    assert_eq!(mixed["results"][1]["seq"], 2);

    let mut changed = event("acme", "order-1");
    changed["actor_id"] = json!("mallory");
    let (status, body) = ingest(
        &server,
        ADMIN_TOKEN,
        &json!([event("acme", "order-3"), changed.clone()]),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["errors"][0]["index"], 1);
    assert_eq!(body["errors"][0]["field"], "event_id");
    let (status, body, _) = post_raw(
        &server.url("/v1/events?durability=async"),
        ADMIN_TOKEN,
        "application/json",
        changed.to_string().as_bytes(),
    );
    assert_eq!(status, 409, "async requests are checked too: {body}");

    // Same id in another tenant is a different event.
    let (status, _) = ingest(&server, ADMIN_TOKEN, &event("beta", "order-1"));
    assert_eq!(status, 201);

    assert_eq!(
        stored_event_ids(dir.path(), "acme"),
        ["order-1", "order-2"],
        "nothing of the 409 request was written"
    );
}

#[test]
fn keys_are_required_and_bound_to_tenant_and_role() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let ingest_key = server.create_key("acme", "ingest");
    let reader_key = server.create_key("acme", "reader");
    let admin_key = server.create_key("acme", "admin");
    let other_reader = server.create_key("beta", "reader");
    let events_url = server.url("/v1/events");

    // 401: no key, unknown key, tampered secret.
    for key in [
        "",
        "stk_0000000000000000_nope",
        &format!("{}x", &ingest_key[..ingest_key.len() - 1]),
        "wrong-admin-token",
    ] {
        let (status, body) = post_json(&events_url, key, &event("acme", "e1"));
        assert_eq!(status, 401, "key {key:?}: {body}");
        let (status, _) = get(&server.url("/v1/events?tenant_id=acme"), key);
        assert_eq!(status, 401);
    }
    let (status, _) = get(&server.url("/openapi.json"), "");
    assert_eq!(status, 401);
    let (status, _) = get(&server.url("/healthz"), "");
    assert_eq!(status, 200, "health needs no key");

    // 403: wrong tenant, wrong role.
    let (status, body) = post_json(&events_url, &ingest_key, &event("beta", "e1"));
    assert_eq!(status, 403, "{body}");
    let (status, _) = post_json(&events_url, &reader_key, &event("acme", "e1"));
    assert_eq!(status, 403, "a reader cannot write");
    let (status, _) = get(&server.url("/v1/events?tenant_id=acme"), &ingest_key);
    assert_eq!(status, 403, "an ingest key cannot read");
    let (status, _) = get(&server.url("/v1/events?tenant_id=acme"), &other_reader);
    assert_eq!(status, 403, "another tenant's reader cannot read");
    let (status, _) = post_json(
        &server.url("/v1/keys"),
        &ingest_key,
        &json!({"tenant_id": "acme", "role": "admin"}),
    );
    assert_eq!(status, 403);
    let (status, _) = post_json(
        &server.url("/v1/keys"),
        &admin_key,
        &json!({"tenant_id": "beta", "role": "reader"}),
    );
    assert_eq!(
        status, 403,
        "a tenant admin cannot mint keys for another tenant"
    );

    // Allowed paths.
    let (status, _) = post_json(&events_url, &ingest_key, &event("acme", "e1"));
    assert_eq!(status, 201);
    let (status, _) = post_json(&events_url, &admin_key, &event("acme", "e2"));
    assert_eq!(status, 201);
    let (status, page) = get(&events_url, &reader_key);
    assert_eq!(status, 200, "a tenant-bound key may omit tenant_id");
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    let (status, _) = get(&server.url("/v1/events/e1"), &other_reader);
    assert_eq!(
        status, 404,
        "beta has no e1: another tenant's events are invisible"
    );
    let (status, _) = get(&server.url("/v1/events/e1?tenant_id=acme"), &other_reader);
    assert_eq!(status, 403);
    let (status, body) = post_json(
        &server.url("/v1/keys"),
        &admin_key,
        &json!({"tenant_id": "acme", "role": "reader"}),
    );
    assert_eq!(status, 201, "{body}");

    // Keys are stored only as hashes.
    let conn = rusqlite::Connection::open(dir.path().join("hot.sqlite3")).unwrap();
    let secret = ingest_key.splitn(3, '_').nth(2).unwrap();
    let leaked: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM api_keys WHERE instr(CAST(secret_hash AS TEXT), ?1) > 0",
            [secret],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(leaked, 0);

    // Bad key requests name the field.
    let (status, body) = post_json(
        &server.url("/v1/keys"),
        ADMIN_TOKEN,
        &json!({"tenant_id": "acme", "role": "root"}),
    );
    assert_eq!(
        (status, body["errors"][0]["field"].clone()),
        (400, json!("role"))
    );
}

#[test]
fn filters_and_bad_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut batch = Vec::new();
    for n in 0..30 {
        batch.push(json!({
            "event_id": format!("e{n}"), "tenant_id": "acme", "actor_id": format!("user-{}", n % 3),
            "action": if n % 2 == 0 { "login" } else { "delete" }, "resource_type": "doc",
            "resource_id": format!("doc-{}", n % 5), "request_id": format!("req-{}", n / 10),
            "outcome": if n % 4 == 0 { "failure" } else { "success" },
            "timestamp": sealtrail_model::format_timestamp(1_790_000_000_000_000_000 + n * 60_000_000_000),
        }));
    }
    let (status, body) = ingest(&server, ADMIN_TOKEN, &Value::Array(batch));
    assert_eq!(status, 201, "{body}");
    let ids = |query: &str| -> Vec<String> {
        let (status, body) = get(
            &server.url(&format!(
                "/v1/events?tenant_id=acme&limit=1000&order=asc{query}"
            )),
            ADMIN_TOKEN,
        );
        assert_eq!(status, 200, "{query}: {body}");
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let expect = |filter: fn(i64) -> bool| -> Vec<String> {
        (0..30)
            .filter(|n| filter(*n))
            .map(|n| format!("e{n}"))
            .collect()
    };
    assert_eq!(ids("&actor_id=user-1"), expect(|n| n % 3 == 1));
    assert_eq!(
        ids("&action=delete&outcome=success"),
        expect(|n| n % 2 == 1 && n % 4 != 0)
    );
    assert_eq!(
        ids("&resource_type=doc&resource_id=doc-2"),
        expect(|n| n % 5 == 2)
    );
    assert_eq!(ids("&request_id=req-1"), expect(|n| n / 10 == 1));
    assert_eq!(ids("&outcome=failure"), expect(|n| n % 4 == 0));
    let from = sealtrail_model::format_timestamp(1_790_000_000_000_000_000 + 5 * 60_000_000_000);
    let to = sealtrail_model::format_timestamp(1_790_000_000_000_000_000 + 9 * 60_000_000_000);
    assert_eq!(
        ids(&format!("&from={from}&to={to}")),
        expect(|n| (5..9).contains(&n)),
        "half-open range"
    );

    for (query, parameter) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("order=sideways", "order"),
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("outcome=meh", "outcome"),
        ("cursor=garbage", "cursor"),
        ("tenant_id=bad%20tenant", "tenant_id"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = get(
            &server.url(&format!("/v1/events?tenant_id=acme&{query}")),
            ADMIN_TOKEN,
        );
        assert_eq!(status, 400, "{query}: {body}");
        let named = body["errors"][0]["field"].as_str().unwrap();
        assert_eq!(named, parameter, "{query}");
    }
    let (status, _) = get(&server.url("/v1/events"), ADMIN_TOKEN);
    assert_eq!(status, 400, "the platform admin must name a tenant");
    let (status, _) = get(
        &server.url("/v1/events/missing?tenant_id=acme"),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 404);
}

#[test]
fn pagination_never_skips_or_repeats_while_events_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let first: Vec<Value> = (0..250)
        .map(|n| event("acme", &format!("pre-{n}")))
        .collect();
    assert_eq!(ingest(&server, ADMIN_TOKEN, &Value::Array(first)).0, 201);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (url, stop) = (server.url("/v1/events"), stop.clone());
        std::thread::spawn(move || {
            let mut round = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<Value> = (0..20)
                    .map(|n| event("acme", &format!("live-{round}-{n}")))
                    .collect();
                assert_eq!(post_json(&url, ADMIN_TOKEN, &Value::Array(batch)).0, 201);
                round += 1;
            }
            round
        })
    };
    for order in ["desc", "asc"] {
        let mut seqs: Vec<u64> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut url = server.url(&format!("/v1/events?tenant_id=acme&limit=37&order={order}"));
            if let Some(cursor) = &cursor {
                url.push_str(&format!("&cursor={cursor}"));
            }
            let (status, page) = get(&url, ADMIN_TOKEN);
            assert_eq!(status, 200, "{page}");
            seqs.extend(
                page["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["seq"].as_u64().unwrap()),
            );
            pages += 1;
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
            // Ascending paging chases a growing log; stop the writer after a few pages.
            if pages == 8 {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let expected: Vec<u64> = match order {
            "desc" => (1..=seqs[0]).rev().collect(),
            _ => (1..=*seqs.last().unwrap()).collect(),
        };
        assert_eq!(
            seqs, expected,
            "order {order}: every seq exactly once, in order"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = writer.join().unwrap();
    assert!(rounds > 0, "events arrived during paging");
    // A cursor is bound to its order.
    let (_, page) = get(
        &server.url("/v1/events?tenant_id=acme&limit=5&order=asc"),
        ADMIN_TOKEN,
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let (status, body) = get(
        &server.url(&format!(
            "/v1/events?tenant_id=acme&order=desc&cursor={cursor}"
        )),
        ADMIN_TOKEN,
    );
    assert_eq!(
        (status, body["errors"][0]["field"].clone()),
        (400, json!("cursor"))
    );
}

#[test]
fn openapi_describes_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let key = server.create_key("acme", "reader");
    let (status, document) = get(&server.url("/openapi.json"), &key);
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    for path in [
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/v1/events",
        "/v1/events/{event_id}",
        "/v1/keys",
    ] {
        assert!(document["paths"][path].is_object(), "{path} missing");
    }
    assert!(document["paths"]["/v1/events"]["post"]["responses"]["503"].is_object());
    let (status, body) = get(&server.url("/readyz"), "");
    assert_eq!((status, body), (200, json!("ready")));
}

#[test]
fn config_file_and_environment_settings_apply() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("from-config");
    let config = dir.path().join("sealtrail.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\n",
            data_dir.display().to_string()
        ),
    )
    .unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sealtrail"));
    let output = command
        .args(["serve", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "a missing config file is an error"
    );

    std::fs::write(dir.path().join("typo.toml"), "data_dri = \"x\"\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sealtrail"))
        .args(["serve", "--config"])
        .arg(dir.path().join("typo.toml"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("data_dri"),
        "the unknown key is named"
    );

    // The data dir comes from the file; the admin token from the environment.
    let server = Server::start_with(
        dir.path().join("ignored").as_path(),
        &["--config", config.to_str().unwrap()],
        &[("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    // --data-dir on the command line wins over the file, so this server uses "ignored".
    assert_eq!(
        post_json(&server.url("/v1/events"), ADMIN_TOKEN, &event("acme", "x")).0,
        201
    );
    drop(server);
    assert!(dir.path().join("ignored/hot.sqlite3").exists());
    assert!(!data_dir.exists());
}

#[test]
fn first_start_generates_an_admin_token_shown_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sealtrail"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("SEALTRAIL_ADMIN_TOKEN")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut token = None;
    let mut base = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(found) = line.trim().strip_prefix("sta_") {
            token = Some(format!("sta_{found}"));
        }
        if let Some(address) = line.strip_prefix("sealtrail listening on ") {
            base = Some(address.to_owned());
            break;
        }
    }
    let (token, base) = (token.expect("token printed"), base.unwrap());
    let (status, _) = post_json(
        &format!("{base}/v1/keys"),
        &token,
        &json!({"tenant_id": "acme", "role": "reader"}),
    );
    assert_eq!(status, 201, "the printed token works");
    child.kill().unwrap();
    child.wait().unwrap();
    let settings = rusqlite::Connection::open(dir.path().join("hot.sqlite3")).unwrap();
    let stored: Vec<u8> = settings
        .query_row(
            "SELECT value FROM settings WHERE name = 'admin_token_sha256'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored.len(), 32, "only the hash is stored");
    assert!(!String::from_utf8_lossy(&stored).contains(&token[4..]));

    // The second start prints no token, and the first token still works.
    let server = Server::start_with(dir.path(), &[], &[]);
    assert!(
        server.preamble.iter().all(|line| !line.contains("sta_")),
        "{:?}",
        server.preamble
    );
    let (status, _) = post_json(
        &server.url("/v1/keys"),
        &token,
        &json!({"tenant_id": "acme", "role": "reader"}),
    );
    assert_eq!(status, 201);
    drop(server);
}
