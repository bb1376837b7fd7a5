//! Field encryption and erasure end to end, on SQLite and on PostgreSQL: a tenant whose
//! `ip_address`, `user_agent`, `changes` and `metadata` are encrypted leaves none of them in
//! plaintext in any file (the data directory, the WAL, the spool, the warm tier's Parquet files,
//! exports, the PostgreSQL database's files and a `pg_dump`), found by a byte search that does
//! find another tenant's plaintext; readers see them by level; erasing one subject destroys its
//! key (no copy of it left in SQLite's files) while every hash, proof, `sealtrail verify` and an
//! export bundle made before still check; a data-key rotation and a SIGKILL lose nothing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{
    files_holding, get, get_bytes, post_json, put_json, sealtrail, wait_until, Server, ADMIN_TOKEN,
};
use sealtrail_ledger::{open_checkpoint, tenant_origin, InclusionProof, NoteVerifier};
use sealtrail_model::{Sealed, StoredEvent};
use serde_json::{json, Value};

const DAY_NS: i64 = 86_400 * 1_000_000_000;
const PROTECTED: [&str; 4] = ["ip_address", "user_agent", "changes", "metadata"];

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Values no other test run writes: each run's own, so a byte search of shared PostgreSQL files
/// finds only this run's.
struct Markers {
    run: String,
}

impl Markers {
    fn new() -> Markers {
        Markers {
            run: format!("{:012x}", now_ns() as u64 & 0xffff_ffff_ffff),
        }
    }

    fn ip(&self, actor: &str) -> String {
        let tag = match actor {
            "alice" => "a11c",
            "bob" => "b0b",
            _ => "ca01",
        };
        format!("2001:db8:{}:{}:{tag}::7", &self.run[..4], &self.run[4..8])
    }

    fn agent(&self, actor: &str) -> String {
        format!("MarkerAgent/{}-{actor}", self.run)
    }

    fn email(&self, actor: &str) -> String {
        format!("{actor}-{}@marker.test", self.run)
    }

    fn note(&self, actor: &str) -> String {
        format!("note-{}-{actor}", self.run)
    }

    /// Every protected value of `actor`.
    fn of(&self, actor: &str) -> Vec<String> {
        vec![
            self.ip(actor),
            self.agent(actor),
            self.email(actor),
            self.note(actor),
        ]
    }

    fn event(&self, tenant: &str, actor: &str, id: &str, at_ns: i64) -> Value {
        json!({"event_id": id, "tenant_id": tenant, "actor_id": actor, "actor_type": "human",
            "action": "update", "resource_type": "profile", "resource_id": format!("p-{actor}"),
            "ip_address": self.ip(actor), "user_agent": self.agent(actor),
            "timestamp": sealtrail_model::format_timestamp(at_ns),
            "changes": {"before": {"email": self.email(actor)}, "after": {"email": "x@y.test"}},
            "metadata": {"note": self.note(actor)}})
    }
}

/// Where this run's bytes may be: the test directory, and on PostgreSQL a `pg_dump` of the
/// database and the database's own files (after a checkpoint writes them out).
struct Haystack<'a> {
    dir: &'a Path,
    database: Option<&'a sealtrail_hot_postgres::testing::TestDatabase>,
    runtime: &'a tokio::runtime::Runtime,
}

impl Haystack<'_> {
    /// Where `needle` is found.
    fn search(&self, needle: &str) -> Vec<String> {
        let mut found = files_holding(self.dir, needle.as_bytes());
        if let Some(database) = self.database {
            if common::pg_dump(database)
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
            {
                found.push("pg_dump".into());
            }
            let files = self.runtime.block_on(async {
                let client = database.admin_client().await;
                client.batch_execute("CHECKPOINT").await.unwrap();
                let row = client
                    .query_one(
                        "SELECT current_setting('data_directory') || '/base/' || oid::text \
                         FROM pg_database WHERE datname = current_database()",
                        &[],
                    )
                    .await
                    .unwrap();
                row.get::<_, String>(0)
            });
            found.extend(files_holding(Path::new(&files), needle.as_bytes()));
        }
        found
    }
}

/// The events of `tenant` as `key` reads them, by event id.
fn events_of(server: &Server, key: &str, tenant: &str) -> BTreeMap<String, Value> {
    let (status, page) = get(
        &server.url(&format!("/v1/events?tenant_id={tenant}&limit=1000")),
        key,
    );
    assert_eq!(status, 200, "{page}");
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["event_id"].as_str().unwrap().to_owned(),
                event.clone(),
            )
        })
        .collect()
}

/// Recomputes an event's hash from its API representation alone, as docs/FORMAT.md tells a
/// verifier to, whatever state its protected fields are in.
fn assert_hash_recomputes(event: &Value) {
    let stored = StoredEvent::from_json(event).unwrap_or_else(|error| panic!("{error}: {event}"));
    let hash = sealtrail_ledger::event_hash(
        &stored.event,
        stored.seq,
        stored.received_at_ns,
        &stored.prev_hash,
    );
    assert_eq!(hex::encode(hash), event["event_hash"], "{event}");
}

/// The protected fields of `event` are `state`, and open ones hold what was sent.
fn assert_fields(event: &Value, state: &str, markers: &Markers) {
    let actor = event["actor_id"].as_str().unwrap();
    for field in PROTECTED {
        assert_eq!(event["sealed"][field]["state"], state, "{field}: {event}");
        if state != "open" {
            assert_eq!(event[field], Value::Null, "{field}: {event}");
        }
    }
    if state == "open" {
        assert_eq!(event["ip_address"], markers.ip(actor));
        assert_eq!(event["user_agent"], markers.agent(actor));
        assert_eq!(event["changes"]["before"]["email"], markers.email(actor));
        assert_eq!(event["metadata"]["note"], markers.note(actor));
        for field in PROTECTED {
            let entry = &event["sealed"][field];
            let salt: [u8; 32] = hex::decode(entry["salt"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            let plaintext = match &event[field] {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let opened = sealtrail_ledger::commitment(&salt, plaintext.as_bytes());
            assert_eq!(hex::encode(opened), entry["commitment"], "{field}");
        }
    }
    assert_hash_recomputes(event);
}

fn wait_export(server: &Server, key: &str, export_id: &str) -> Value {
    let url = server.url(&format!("/v1/exports/{export_id}"));
    let mut job = Value::Null;
    assert!(wait_until(120, || {
        job = get(&url, key).1;
        !matches!(job["state"].as_str(), Some("queued" | "running"))
    }));
    assert_eq!(job["state"], "done", "{job}");
    job
}

/// The wrapped subject keys of acme, by settings name, read from the store behind the server.
fn subject_keys(dir: &Path, haystack: &Haystack<'_>) -> BTreeMap<String, Vec<u8>> {
    let sql = "SELECT name, value FROM settings WHERE name LIKE 'vault/acme/subject/%'";
    match haystack.database {
        None => {
            let connection = rusqlite::Connection::open_with_flags(
                dir.join("hot.sqlite3"),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            let mut statement = connection.prepare(sql).unwrap();
            let rows = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .unwrap();
            rows.map(Result::unwrap).collect()
        }
        Some(database) => haystack.runtime.block_on(async {
            let client = database.admin_client().await;
            client
                .query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect()
        }),
    }
}

#[test]
fn encrypted_fields_leave_no_plaintext_and_erasure_keeps_every_proof_on_sqlite() {
    privacy(None);
}

#[test]
fn encrypted_fields_leave_no_plaintext_and_erasure_keeps_every_proof_on_postgres() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let database = runtime.block_on(sealtrail_hot_postgres::testing::TestDatabase::create());
    privacy(Some((&database, &runtime)));
}

fn privacy(
    postgres: Option<(
        &sealtrail_hot_postgres::testing::TestDatabase,
        &tokio::runtime::Runtime,
    )>,
) {
    let local_runtime;
    let (database, runtime) = match postgres {
        Some((database, runtime)) => (Some(database), runtime),
        None => {
            local_runtime = tokio::runtime::Runtime::new().unwrap();
            (None, &local_runtime)
        }
    };
    let database_url = database.map(|database| database.url());
    let database_url = database_url.as_deref();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let serve_args = common::on_backend(&["--region", "us"], database_url);
    let serve_args: Vec<&str> = serve_args.iter().map(String::as_str).collect();
    let env = [("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)];
    let haystack = Haystack {
        dir: dir.path(),
        database,
        runtime,
    };
    let markers = Markers::new();
    // The first phase runs 45 days ago (the server's test clock), so the settings' events and
    // the old events are a prefix of the log the lifecycle will move to the warm tier.
    let old = now_ns() - 45 * DAY_NS;
    let recent = now_ns() - 3_600 * 1_000_000_000;
    let back_then = sealtrail_model::format_timestamp(old - 60_000_000_000);
    let env_back_then = [env[0], ("SEALTRAIL_TEST_NOW", back_then.as_str())];
    let server = Server::start_with(dir.path(), &serve_args, &env_back_then);
    let admin = server.create_key("acme", "admin");
    let tenant = server.url("/v1/tenants/acme");

    // Settings: bad input is refused naming the field, and changes nothing.
    for (body, field) in [
        (
            json!({"encryption": {"fields": ["password"]}}),
            "encryption.fields",
        ),
        (
            json!({"encryption": {"fields": ["changes.before.email"]}}),
            "encryption.fields",
        ),
        (
            json!({"encryption": {"fields": "ip_address"}}),
            "encryption.fields",
        ),
        (json!({"region": "eu"}), "region"),
        (
            json!({"retention": {"retention_days": 30, "legal_hold": false}}),
            "retention",
        ),
        (json!({"tenant_id": "beta"}), "tenant_id"),
        (json!({"export_format": "xml"}), "export_format"),
        (
            json!({"default_durability": "eventually"}),
            "default_durability",
        ),
        (json!({"colour": "blue"}), "colour"),
    ] {
        let (status, answer) = put_json(&tenant, &admin, &body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["errors"][0]["field"], field, "{answer}");
    }
    let (status, before) = get(&tenant, &admin);
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["encryption"]["fields"], json!([]));
    assert_eq!(before["region"], "us");
    assert_eq!(before["default_durability"], "sync");
    // The platform admin alone sets the region, and only to one this deployment serves.
    let (status, answer) = put_json(&tenant, ADMIN_TOKEN, &json!({"region": "eu"}));
    assert_eq!(
        (status, &answer["errors"][0]["field"]),
        (400, &json!("region"))
    );
    let (status, answer) = put_json(&tenant, ADMIN_TOKEN, &json!({"region": "us"}));
    assert_eq!(status, 200, "{answer}");
    // What GET answers can be sent back as it is: no change, by anyone who may PUT.
    let (status, same) = put_json(&tenant, &admin, &answer);
    assert_eq!((status, &same), (200, &answer));
    let (status, settings) = put_json(
        &tenant,
        &admin,
        &json!({"encryption": {"fields": ["metadata", "ip_address", "user_agent", "changes"]},
                "export_format": "csv"}),
    );
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["encryption"]["fields"], json!(PROTECTED));
    assert_eq!(settings["export_format"], "csv");
    let (status, _) = get(&tenant, &server.create_key("acme", "reader"));
    assert_eq!(status, 403, "settings are the tenant admin's");
    let (status, _) = get(&tenant, &server.create_key("beta", "admin"));
    assert_eq!(status, 403);

    // Old events (to be moved to the warm tier), then recent ones, and beta's in plaintext:
    // beta's are the byte search's control.
    let batch = |offset: usize, at: i64| -> Vec<Value> {
        let mut events = Vec::new();
        for (index, actor) in ["alice", "bob"].iter().enumerate() {
            for n in 0..3 {
                let id = format!("{actor}-{}", offset + n);
                events.push(markers.event("acme", actor, &id, at + (index * 3 + n) as i64));
            }
        }
        events
    };
    let (status, body) = post_json(
        &server.url("/v1/events"),
        ADMIN_TOKEN,
        &json!(batch(0, old)),
    );
    assert_eq!(status, 201, "{body}");
    server.signal_and_wait("TERM");
    let server = Server::start_with(dir.path(), &serve_args, &env);
    let mut events = batch(10, recent);
    events.push(markers.event("beta", "carol", "carol-0", recent));
    let (status, body) = post_json(&server.url("/v1/events"), ADMIN_TOKEN, &json!(events));
    assert_eq!(status, 201, "{body}");
    // An idempotent retry seals to the same commitments: its stored receipt, nothing new.
    let (status, retry) = post_json(&server.url("/v1/events"), ADMIN_TOKEN, &json!(events));
    assert_eq!(status, 201, "{retry}");
    assert_eq!(retry["results"], body["results"]);
    // And async events go through the spool.
    let asynchronous: Vec<Value> = ["alice", "bob"]
        .iter()
        .map(|actor| markers.event("acme", actor, &format!("{actor}-async"), recent + 100))
        .collect();
    let (status, body) = post_json(
        &server.url("/v1/events?durability=async"),
        ADMIN_TOKEN,
        &json!(asynchronous),
    );
    assert_eq!(status, 202, "{body}");
    server.signal_and_wait("TERM");
    common::move_older_than_30_days(&data, database_url);

    let server = Server::start_with(dir.path(), &serve_args, &env);
    let reader = server.create_key("acme", "reader");
    let read = events_of(&server, &reader, "acme");
    let people: Vec<&Value> = read
        .values()
        .filter(|event| event["resource_type"] == "profile")
        .collect();
    assert_eq!(people.len(), 14, "{read:?}");
    assert_eq!(
        people
            .iter()
            .filter(|event| event["tier"] == "warm")
            .count(),
        6,
        "the old events are in the warm tier"
    );
    // A retry of an event the lifecycle moved seals to the same commitments: its stored receipt.
    let (status, retried) = post_json(
        &server.url("/v1/events"),
        ADMIN_TOKEN,
        &json!([markers.event("acme", "alice", "alice-0", old)]),
    );
    assert_eq!(status, 201, "{retried}");
    assert_eq!(read["alice-0"]["tier"], "warm");
    assert_eq!(retried["results"][0]["seq"], read["alice-0"]["seq"]);
    assert_eq!(
        retried["results"][0]["event_hash"],
        read["alice-0"]["event_hash"]
    );
    for event in &people {
        assert_fields(event, "open", &markers);
    }
    // A team admin sees what its team did, not the personal data in it.
    let (status, body) = put_json(
        &server.url("/v1/tenants/acme/actors"),
        &admin,
        &json!([{"actor_id": "alice", "team": "pay"}, {"actor_id": "bob", "team": "pay"}]),
    );
    assert_eq!(status, 200, "{body}");
    let (status, team_key) = post_json(
        &server.url("/v1/keys"),
        ADMIN_TOKEN,
        &json!({"tenant_id": "acme", "role": "team_admin", "teams": ["pay"]}),
    );
    assert_eq!(status, 201, "{team_key}");
    let team_key = team_key["key"].as_str().unwrap();
    let (status, one) = get(&server.url("/v1/events/bob-0"), team_key);
    assert_eq!(status, 200, "{one}");
    assert_fields(&one, "withheld", &markers);
    // Equality filters on encrypted fields go through the blind index, in both tiers; a
    // team admin, which sees no protected field, may not probe them with a filter.
    for (filter, actor) in [
        (format!("ip_address={}", markers.ip("bob")), "bob"),
        (format!("user_agent={}", markers.agent("alice")), "alice"),
    ] {
        let (status, page) = get(
            &server.url(&format!("/v1/events?limit=100&{filter}")),
            &reader,
        );
        assert_eq!(status, 200, "{page}");
        let found: Vec<(&str, &str)> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| {
                (
                    event["actor_id"].as_str().unwrap(),
                    event["tier"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(found.len(), 7, "{filter}: {found:?}");
        assert!(found.iter().all(|(who, _)| *who == actor), "{found:?}");
        assert!(found.iter().any(|(_, tier)| *tier == "warm"), "{found:?}");
    }
    let (status, _) = get(
        &server.url(&format!("/v1/events?ip_address={}", markers.ip("bob"))),
        team_key,
    );
    assert_eq!(
        status, 403,
        "a team admin may not filter on a withheld field"
    );
    // SQL sees the stored envelope, never the plaintext.
    let (status, answer) = post_json(
        &server.url("/v1/query"),
        &reader,
        &json!({"sql": "SELECT ip_address, user_agent, changes, metadata FROM events"}),
    );
    assert_eq!(status, 200, "{answer}");
    let answer = answer.to_string();
    for marker in markers.of("alice").iter().chain(&markers.of("bob")) {
        assert!(
            !answer.contains(marker.as_str()),
            "{marker} in SQL: {answer}"
        );
    }

    // An export made before the erasure: CSV, the tenant's preferred format.
    let (status, job) = post_json(&server.url("/v1/exports"), &admin, &json!({}));
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["format"], "csv", "{job}");
    let job = wait_export(&server, &admin, job["export_id"].as_str().unwrap());
    let export_dir = dir.path().join("export-before");
    std::fs::create_dir_all(&export_dir).unwrap();
    let export_id = job["export_id"].as_str().unwrap();
    let export_file = export_dir.join("events.csv");
    for (part, path) in [
        ("data", export_file.clone()),
        ("bundle", export_dir.join("bundle.ndjson")),
    ] {
        let (status, bytes) = get_bytes(
            &server.url(&format!("/v1/exports/{export_id}/download?part={part}")),
            &admin,
        );
        assert_eq!(status, 200);
        std::fs::write(path, bytes).unwrap();
    }

    // A plaintext export: the tenant admin's to ask for, not a security admin's. Its file holds
    // every field opened (OCSF's typed attributes too) and still verifies. It is downloaded
    // outside the searched directory.
    let exports = server.url("/v1/exports");
    let (status, refused) = post_json(
        &exports,
        &reader,
        &json!({"format": "ndjson", "plaintext": true}),
    );
    assert_eq!(status, 403, "{refused}");
    let (status, refused) = post_json(
        &exports,
        &admin,
        &json!({"format": "ndjson", "plaintext": "yes"}),
    );
    assert_eq!(
        (status, &refused["errors"][0]["field"]),
        (400, &json!("plaintext")),
        "{refused}"
    );
    let (status, job) = post_json(
        &exports,
        &admin,
        &json!({"format": "ocsf", "plaintext": true}),
    );
    assert_eq!((status, &job["plaintext"]), (202, &json!(true)), "{job}");
    let plain_id = job["export_id"].as_str().unwrap().to_owned();
    wait_export(&server, &admin, &plain_id);
    let outside = tempfile::tempdir().unwrap();
    let plain_file = outside.path().join("events.ocsf.ndjson");
    for (part, path) in [
        ("data", plain_file.clone()),
        ("bundle", outside.path().join("bundle.ndjson")),
    ] {
        let (status, bytes) = get_bytes(
            &server.url(&format!("/v1/exports/{plain_id}/download?part={part}")),
            &admin,
        );
        assert_eq!(status, 200);
        std::fs::write(path, bytes).unwrap();
    }
    let plain_text = std::fs::read_to_string(&plain_file).unwrap();
    for marker in markers.of("alice").iter().chain(&markers.of("bob")) {
        assert!(plain_text.contains(marker.as_str()), "{marker} not opened");
    }
    let bob_0: Value = plain_text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|record| record["raw_data"].as_str().unwrap().contains("\"bob-0\""))
        .unwrap();
    assert_eq!(bob_0["src_endpoint"]["ip"], markers.ip("bob"), "{bob_0}");
    assert_eq!(
        bob_0["http_request"]["user_agent"],
        markers.agent("bob"),
        "{bob_0}"
    );
    let (code, verifier_key) = sealtrail(&["keys", "show-verifier", "--data-dir", &data]);
    assert_eq!(code, 0, "{verifier_key}");
    let (code, output) = sealtrail(&[
        "verify-bundle",
        outside.path().to_str().unwrap(),
        "--key",
        verifier_key.trim(),
        "--file",
        plain_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "a plaintext export verifies: {output}");

    // Nothing of acme's protected fields in plaintext anywhere but in that export's own file;
    // beta's plaintext is found.
    for marker in markers.of("alice").iter().chain(&markers.of("bob")) {
        let found = haystack.search(marker);
        assert!(
            found.iter().all(|path| path.contains(&plain_id)),
            "{marker}: {found:?}"
        );
    }
    assert!(
        haystack
            .search(&markers.note("bob"))
            .iter()
            .any(|path| path.contains(&plain_id)),
        "the byte search finds the plaintext export's file"
    );
    assert!(
        !haystack.search(&markers.note("carol")).is_empty(),
        "the byte search finds a tenant's plaintext"
    );

    // Erase alice.
    let keys_before = subject_keys(dir.path(), &haystack);
    assert_eq!(keys_before.len(), 2, "one subject key per actor");
    // Where each wrapped key is found: files of the data directory on SQLite, the dump on
    // PostgreSQL (whose own WAL keeps deleted rows until it is recycled; docs/PRIVACY.md).
    // (A dump shows a bytea value as hex.)
    let key_holders = |stored: &[u8]| -> usize {
        match database {
            None => {
                let value: Value = serde_json::from_slice(stored).unwrap();
                let wrapped = value["wrapped"].as_str().unwrap();
                files_holding(dir.path(), wrapped.as_bytes()).len()
            }
            Some(database) => {
                let needle = hex::encode(stored);
                usize::from(String::from_utf8_lossy(&common::pg_dump(database)).contains(&needle))
            }
        }
    };
    let key_holders_before: BTreeMap<&Vec<u8>, usize> = keys_before
        .values()
        .map(|stored| (stored, key_holders(stored)))
        .collect();
    let (status, _) = post_json(
        &server.url("/v1/tenants/acme/subjects/alice/erase"),
        &reader,
        &json!({}),
    );
    assert_eq!(status, 403, "erasure is the tenant admin's");
    let (status, erased) = post_json(
        &server.url("/v1/tenants/acme/subjects/alice/erase"),
        &admin,
        &json!({}),
    );
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["keys_destroyed"], 1);
    // The plaintext export was a copy outside the keys: the erasure removed it.
    assert_eq!(erased["plaintext_exports_removed"], 1, "{erased}");
    let (status, job) = get(&server.url(&format!("/v1/exports/{plain_id}")), &admin);
    assert_eq!((status, &job["state"]), (200, &json!("expired")), "{job}");
    let (status, _) = get_bytes(
        &server.url(&format!("/v1/exports/{plain_id}/download")),
        &admin,
    );
    assert_eq!(status, 409, "its file is gone");
    for marker in markers.of("alice") {
        assert_eq!(haystack.search(&marker), Vec::<String>::new(), "{marker}");
    }
    let keys_after = subject_keys(dir.path(), &haystack);
    assert_eq!(keys_after.len(), 1);
    let (_, destroyed) = keys_before
        .iter()
        .find(|(name, _)| !keys_after.contains_key(*name))
        .unwrap();
    // SQLite: the deleted row's pages are zeroed and the WAL that wrote them is gone, where
    // the search found it before. PostgreSQL: the dump no longer holds it.
    assert!(
        key_holders_before[destroyed] > 0,
        "the search found the key before the erasure"
    );
    assert_eq!(key_holders(destroyed), 0, "no copy of the destroyed key");

    let read = events_of(&server, &reader, "acme");
    for event in read
        .values()
        .filter(|event| event["resource_type"] == "profile")
    {
        let state = if event["actor_id"] == "alice" {
            "erased"
        } else {
            "open"
        };
        assert_fields(event, state, &markers);
    }
    assert!(
        read.values()
            .any(|event| event["action"] == "subject.erase" && event["resource_id"] == "alice"),
        "the erasure is an event of the log"
    );

    // Every proof still holds: an erased event's inclusion in a fresh checkpoint, hot and warm.
    let (status, note, _) = common::post_raw(
        &server.url("/v1/tenants/acme/checkpoint"),
        &admin,
        "application/json",
        b"",
    );
    assert_eq!(status, 201, "{note}");
    let (status, key_text) = get(&server.url("/v1/verifier-key"), &reader);
    assert_eq!(status, 200);
    let verifier = NoteVerifier::parse(key_text.as_str().unwrap().trim()).unwrap();
    let checkpoint = open_checkpoint(
        note.as_str().unwrap(),
        std::slice::from_ref(&verifier),
        &tenant_origin("acme"),
    )
    .unwrap();
    let (root, size) = (checkpoint.root_hash, checkpoint.tree_size);
    for id in ["alice-0", "alice-10"] {
        let (status, proof) = get(
            &server.url(&format!(
                "/v1/tenants/acme/proofs/inclusion?event_id={id}&tree_size={size}"
            )),
            &reader,
        );
        assert_eq!(status, 200, "{proof}");
        let proof: InclusionProof = serde_json::from_value(proof).unwrap();
        proof.verify(&root).unwrap();
        assert_eq!(hex::encode(proof.leaf_hash), read[id]["event_hash"]);
    }
    let (code, output) = sealtrail(&[
        "verify-bundle",
        export_dir.to_str().unwrap(),
        "--key",
        verifier_key.trim(),
        "--file",
        export_file.to_str().unwrap(),
    ]);
    assert_eq!(
        code, 0,
        "the export made before the erasure still verifies: {output}"
    );
    // And a proof bundle of the whole log made after it, checked offline.
    let output = common::bundle_and_verify(
        &data,
        "acme",
        &dir.path().join("bundle-after"),
        database_url,
    );
    assert!(output.contains("ok      tenant acme"), "{output}");

    // A new data key: new events use it at once, every older one still opens.
    let (status, rotated) = post_json(
        &server.url("/v1/tenants/acme/keys/rotate"),
        &admin,
        &json!({}),
    );
    assert_eq!(status, 200, "{rotated}");
    let fresh: Vec<Value> = ["alice", "bob"]
        .iter()
        .map(|actor| markers.event("acme", actor, &format!("{actor}-rotated"), recent + 200))
        .collect();
    let (status, body) = post_json(&server.url("/v1/events"), ADMIN_TOKEN, &json!(fresh));
    assert_eq!(status, 201, "{body}");
    // And async events spooled just before a SIGKILL.
    let killed: Vec<Value> = ["alice", "bob"]
        .iter()
        .map(|actor| markers.event("acme", actor, &format!("{actor}-killed"), recent + 300))
        .collect();
    let (status, body) = post_json(
        &server.url("/v1/events?durability=async"),
        ADMIN_TOKEN,
        &json!(killed),
    );
    assert_eq!(status, 202, "{body}");
    server.signal_and_wait("KILL");
    for marker in markers.of("alice").iter().chain(&markers.of("bob")) {
        assert_eq!(
            files_holding(dir.path(), marker.as_bytes()),
            Vec::<String>::new()
        );
    }
    let server = Server::start_with(dir.path(), &serve_args, &env);
    let read = events_of(&server, &reader, "acme");
    for event in read
        .values()
        .filter(|event| event["resource_type"] == "profile")
    {
        let id = event["event_id"].as_str().unwrap();
        // Alice's events after the erasure are sealed under a new key of hers: readable.
        let state = match (
            event["actor_id"].as_str(),
            id.ends_with("rotated") || id.ends_with("killed"),
        ) {
            (Some("alice"), false) => "erased",
            _ => "open",
        };
        assert_fields(event, state, &markers);
    }
    assert_eq!(
        read.values()
            .filter(|event| event["resource_type"] == "profile")
            .count(),
        18
    );

    // Re-encryption on the way down the tiers: what the lifecycle writes to warm and cold is
    // sealed under the new data key, but for an erased subject's fields, which stay erased.
    // The stored envelope names its key (`<tenant key>.<subject key>`); SQL shows it.
    let new_tid = rotated["key_id"].as_str().unwrap().to_owned();
    let tenant_keys = |server: &Server| -> BTreeMap<String, String> {
        let (status, body) = post_json(
            &server.url("/v1/query"),
            &reader,
            &json!({"sql": "SELECT event_id, ip_address, user_agent, changes, metadata FROM events \
                            WHERE resource_type = 'profile'"}),
        );
        assert_eq!(status, 200, "{body}");
        let mut keys = BTreeMap::new();
        for row in body["rows"].as_array().unwrap() {
            let tids: Vec<String> = PROTECTED
                .iter()
                .map(|field| match row[field].as_str().and_then(Sealed::parse) {
                    Some(Sealed::Cipher { key_id, .. }) => {
                        key_id.split('.').next().unwrap().to_owned()
                    }
                    other => panic!("{field} is not a stored envelope: {other:?} in {row}"),
                })
                .collect();
            assert!(tids.iter().all(|tid| *tid == tids[0]), "{row}");
            keys.insert(
                row["event_id"].as_str().unwrap().to_owned(),
                tids[0].clone(),
            );
        }
        keys
    };
    let before = tenant_keys(&server);
    let old_tid = before["bob-10"].clone();
    assert_ne!(old_tid, new_tid);
    assert_eq!(before["bob-0"], old_tid);
    assert_eq!(before["bob-rotated"], new_tid);
    server.signal_and_wait("TERM");
    let moved = common::move_everything_to_cold(&data, database_url);
    let reencrypted = |step: &str| -> u64 {
        let line = moved
            .lines()
            .find(|line| line.starts_with("tenant acme:") && line.contains(step))
            .unwrap_or_else(|| panic!("no {step} line: {moved}"));
        let (before, _) = line.split_once(" fields re-encrypted").unwrap();
        before.rsplit(' ').next().unwrap().parse().unwrap()
    };
    // Hot -> warm took bob's hot events, warm -> cold his old warm ones.
    assert!(reencrypted("events moved") >= 16, "{moved}");
    assert!(reencrypted("warm -> cold") >= 12, "{moved}");
    let server = Server::start_with(dir.path(), &serve_args, &env);
    let after = tenant_keys(&server);
    assert_eq!(after.len(), 18);
    for (id, tid) in &after {
        let erased = id.starts_with("alice") && !id.ends_with("rotated") && !id.ends_with("killed");
        let expected = if erased { &old_tid } else { &new_tid };
        assert_eq!(tid, expected, "{id}: {after:?}");
    }
    let read_after = events_of(&server, &reader, "acme");
    for (id, event) in &read_after {
        if event["resource_type"] != "profile" {
            continue;
        }
        assert_eq!(event["tier"], "cold", "{event}");
        assert_eq!(event["event_hash"], read[id]["event_hash"], "{id}");
        let state = read[id]["sealed"]["ip_address"]["state"].as_str().unwrap();
        assert_fields(event, state, &markers);
    }
    server.signal_and_wait("TERM");
    for marker in markers.of("alice").iter().chain(&markers.of("bob")) {
        assert_eq!(haystack.search(marker), Vec::<String>::new(), "{marker}");
    }
    let (code, output) = common::sealtrail_on(&["verify", "--data-dir", &data], database_url);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("tenant acme"), "{output}");
    let output = common::bundle_and_verify(
        &data,
        "acme",
        &dir.path().join("bundle-reencrypted"),
        database_url,
    );
    assert!(output.contains("ok      tenant acme"), "{output}");
}

/// Rotating the key-encryption key rewraps every tenant data key at start and touches no
/// event: hashes are the same, fields open; a server given only the new key before the rewrap
/// cannot open them (500), and one given only the old key after it cannot either.
#[test]
fn rotating_the_key_encryption_key_rewraps_data_keys_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let old_kek = "11".repeat(32);
    let new_kek = "22".repeat(32);
    let env = |kek: &str, previous: Option<&str>| -> Vec<(String, String)> {
        let mut env = vec![
            ("SEALTRAIL_ADMIN_TOKEN".to_owned(), ADMIN_TOKEN.to_owned()),
            ("SEALTRAIL_KEK".to_owned(), kek.to_owned()),
        ];
        if let Some(previous) = previous {
            env.push(("SEALTRAIL_KEK_PREVIOUS".to_owned(), previous.to_owned()));
        }
        env
    };
    let start = |env: &[(String, String)]| {
        let env: Vec<(&str, &str)> = env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        Server::start_with(dir.path(), &[], &env)
    };
    let markers = Markers::new();
    let server = start(&env(&old_kek, None));
    let (status, body) = put_json(
        &server.url("/v1/tenants/acme"),
        ADMIN_TOKEN,
        &json!({"encryption": {"fields": PROTECTED}}),
    );
    assert_eq!(status, 200, "{body}");
    let events: Vec<Value> = ["alice", "bob"]
        .iter()
        .map(|actor| {
            markers.event(
                "acme",
                actor,
                &format!("{actor}-1"),
                now_ns() - 1_000_000_000,
            )
        })
        .collect();
    let (status, body) = post_json(&server.url("/v1/events"), ADMIN_TOKEN, &json!(events));
    assert_eq!(status, 201, "{body}");
    let before = events_of(&server, ADMIN_TOKEN, "acme");
    server.signal_and_wait("TERM");

    // Only the new key: the tenant key does not open.
    let server = start(&env(&new_kek, None));
    let (status, body) = get(&server.url("/v1/events?tenant_id=acme"), ADMIN_TOKEN);
    assert_eq!(status, 500, "{body}");
    server.signal_and_wait("TERM");

    // The new key with the previous one: rewrapped at start; every event opens, unchanged.
    for round in [Some(old_kek.as_str()), None] {
        let server = start(&env(&new_kek, round));
        let after = events_of(&server, ADMIN_TOKEN, "acme");
        for (id, event) in &after {
            assert_eq!(event["event_hash"], before[id]["event_hash"], "{id}");
            if event["resource_type"] == "profile" {
                assert_fields(event, "open", &markers);
            }
        }
        server.signal_and_wait("TERM");
    }
    // Now the old key alone opens nothing.
    let server = start(&env(&old_kek, None));
    let (status, _) = get(&server.url("/v1/events?tenant_id=acme"), ADMIN_TOKEN);
    assert_eq!(status, 500);
    server.signal_and_wait("TERM");
    let (code, output) = sealtrail(&["verify", "--data-dir", &data]);
    assert_eq!(code, 0, "{output}");

    // `sealtrail import` seals as ingest does, with the deployment's key-encryption key; without
    // one, a file naming a tenant with encrypted fields is refused whole, naming it, and nothing
    // of it is written.
    let outside = tempfile::tempdir().unwrap();
    let file = outside.path().join("import.ndjson");
    let lines: Vec<String> = [("beta", "carol"), ("acme", "alice")]
        .iter()
        .map(|(tenant, actor)| {
            markers
                .event(
                    tenant,
                    actor,
                    &format!("imported-{actor}"),
                    now_ns() - 1_000_000_000,
                )
                .to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let (code, output) = sealtrail(&["import", file.to_str().unwrap(), "--data-dir", &data]);
    assert_ne!(code, 0, "{output}");
    assert!(
        output.contains("tenant acme has fields encrypted"),
        "{output}"
    );
    assert_eq!(
        common::stored_event_ids(dir.path(), "beta"),
        Vec::<String>::new()
    );
    assert_eq!(
        files_holding(dir.path(), markers.note("alice").as_bytes()),
        Vec::<String>::new()
    );
    let import = [
        "import",
        file.to_str().unwrap(),
        "--data-dir",
        data.as_str(),
    ];
    for round in ["first", "again"] {
        let (code, output) = common::sealtrail_with_env(&import, &[("SEALTRAIL_KEK", &new_kek)]);
        assert_eq!(code, 0, "{round}: {output}");
        let expected = match round {
            "first" => "imported 2 new events; 0 already present",
            _ => "imported 0 new events; 2 already present",
        };
        assert!(output.contains(expected), "{round}: {output}");
    }
    assert_eq!(
        files_holding(dir.path(), markers.note("alice").as_bytes()),
        Vec::<String>::new(),
        "the imported event is sealed"
    );
    let server = start(&env(&new_kek, None));
    let read = events_of(&server, ADMIN_TOKEN, "acme");
    assert_fields(&read["imported-alice"], "open", &markers);
    let beta = events_of(&server, ADMIN_TOKEN, "beta");
    assert_eq!(
        beta["imported-carol"]["metadata"]["note"],
        markers.note("carol")
    );
    assert!(
        beta["imported-carol"]["sealed"].is_null(),
        "beta encrypts nothing"
    );
    server.signal_and_wait("TERM");
    let (code, output) = sealtrail(&["verify", "--data-dir", &data]);
    assert_eq!(code, 0, "{output}");
}
