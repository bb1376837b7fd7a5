//! The verifiable log end to end: signed checkpoints, proofs through the API, offline
//! verification of the data directory, and proof bundles verified with only the verifier key.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use sealtrail_ledger::{
    open_checkpoint, sign_checkpoint, tenant_origin, ChainHead, Checkpoint, ConsistencyProof,
    InclusionProof, MerkleFrontier, NoteSigner, NoteVerifier, TILE_HEIGHT,
};
use sealtrail_model::StoredEvent;
use serde_json::{json, Value};

fn ingest(server: &Server, tenant: &str, prefix: &str, count: usize) {
    for chunk in 0..count.div_ceil(500) {
        let batch: Vec<Value> = (chunk * 500..((chunk + 1) * 500).min(count))
            .map(|n| event(tenant, &format!("{prefix}-{n}")))
            .collect();
        let (status, body) =
            post_json(&server.url("/v1/events"), ADMIN_TOKEN, &Value::Array(batch));
        assert_eq!(status, 201, "{body}");
    }
}

fn text_get(url: &str, key: &str) -> (u16, String) {
    let (status, body) = get(url, key);
    (
        status,
        body.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_string()),
    )
}

fn cut(server: &Server, tenant: &str) -> String {
    let (status, body, _) = post_raw(
        &server.url(&format!("/v1/tenants/{tenant}/checkpoint")),
        ADMIN_TOKEN,
        "application/json",
        b"",
    );
    assert_eq!(status, 201, "{body}");
    body.as_str().unwrap().to_owned()
}

fn sealtrail(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_sealtrail"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn checkpoints_and_proofs_verify_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let witness = dir.path().join("witness");
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--checkpoint-interval-secs",
            "1",
            "--witness-dir",
            witness.to_str().unwrap(),
        ],
        &[("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    let reader = server.create_key("acme", "reader");
    let (status, key_text) = text_get(&server.url("/v1/verifier-key"), &reader);
    assert_eq!(status, 200);
    let key = NoteVerifier::parse(key_text.trim()).unwrap();

    ingest(&server, "acme", "early", 700);
    let first_note = cut(&server, "acme");
    let first = open_checkpoint(
        &first_note,
        std::slice::from_ref(&key),
        &tenant_origin("acme"),
    )
    .unwrap();
    assert_eq!(first.tree_size, 700);

    // "An hour of events" later: many more events, then a second checkpoint.
    ingest(&server, "acme", "later", 4_000);
    let second_note = cut(&server, "acme");
    let second = open_checkpoint(
        &second_note,
        std::slice::from_ref(&key),
        &tenant_origin("acme"),
    )
    .unwrap();
    assert_eq!(second.tree_size, 4_700);
    let (status, latest) = text_get(&server.url("/v1/tenants/acme/checkpoint"), &reader);
    assert_eq!((status, latest), (200, second_note.clone()));
    let (status, old) = text_get(
        &server.url("/v1/tenants/acme/checkpoint?tree_size=700"),
        &reader,
    );
    assert_eq!(
        (status, old),
        (200, first_note.clone()),
        "every checkpoint is kept"
    );

    for (event_id, tree_size) in [
        ("early-0", 700),
        ("early-699", 700),
        ("early-5", 4_700),
        ("later-3999", 4_700),
        ("later-1234", 4_700),
    ] {
        let (status, body) = get(
            &server.url(&format!(
                "/v1/tenants/acme/proofs/inclusion?event_id={event_id}&tree_size={tree_size}"
            )),
            &reader,
        );
        assert_eq!(status, 200, "{body}");
        let proof: InclusionProof = serde_json::from_value(body).unwrap();
        let root = if tree_size == 700 {
            first.root_hash
        } else {
            second.root_hash
        };
        proof.verify(&root).unwrap();
        let (_, stored) = get(&server.url(&format!("/v1/events/{event_id}")), &reader);
        assert_eq!(
            hex::encode(proof.leaf_hash),
            stored["event_hash"].as_str().unwrap(),
            "the leaf is the event"
        );
    }
    let (status, body) = get(
        &server.url("/v1/tenants/acme/proofs/consistency?first=700&second=4700"),
        &reader,
    );
    assert_eq!(status, 200, "{body}");
    let proof: ConsistencyProof = serde_json::from_value(body).unwrap();
    proof
        .verify(700, 4_700, &first.root_hash, &second.root_hash)
        .unwrap();
    assert!(proof
        .verify(700, 4_700, &second.root_hash, &second.root_hash)
        .is_err());

    for (query, field) in [
        ("proofs/consistency?first=0&second=10", "first"),
        ("proofs/consistency?first=10&second=5", "first"),
        ("proofs/consistency?first=1&second=99999", "second"),
        ("proofs/inclusion?event_id=early-1&tree_size=0", "tree_size"),
        (
            "proofs/inclusion?event_id=early-1&tree_size=99999",
            "tree_size",
        ),
        (
            "proofs/inclusion?event_id=later-1&tree_size=700",
            "tree_size",
        ),
        ("proofs/inclusion?tree_size=700", "event_id"),
        ("checkpoint?tree_size=abc", "tree_size"),
    ] {
        let (status, body) = get(&server.url(&format!("/v1/tenants/acme/{query}")), &reader);
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{query}");
    }
    let (status, _) = get(
        &server.url("/v1/tenants/acme/checkpoint?tree_size=701"),
        &reader,
    );
    assert_eq!(status, 404);
    let other = server.create_key("beta", "reader");
    let (status, _) = get(&server.url("/v1/tenants/acme/checkpoint"), &other);
    assert_eq!(status, 403);
    let (status, _) = get(&server.url("/v1/verifier-key"), "");
    assert_eq!(status, 401);

    // The periodic checkpointer covers new events without being asked.
    ingest(&server, "acme", "tail", 10);
    let mut periodic = String::new();
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        periodic = text_get(&server.url("/v1/tenants/acme/checkpoint"), &reader).1;
        if periodic.contains("\n4710\n") {
            break;
        }
    }
    assert!(periodic.contains("\n4710\n"), "{periodic}");
    let witnessed = std::fs::read_dir(witness.join("acme")).unwrap().count();
    assert!(
        witnessed >= 3,
        "every checkpoint is copied to the witness ({witnessed})"
    );

    let (code, shown) = sealtrail(&[
        "keys",
        "show-verifier",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert_eq!(shown.trim(), key_text.trim());
    drop(server);
}

/// Ingests into three tenants with checkpoints along the way and stops the server cleanly (which
/// seals a final checkpoint). Returns the data dir and the verifier key.
fn populated() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    for tenant in ["t-a", "t-b", "t-c"] {
        ingest(&server, tenant, tenant, 300);
        cut(&server, tenant);
        ingest(&server, tenant, &format!("{tenant}-more"), 300);
    }
    let (_, key) = text_get(&server.url("/v1/verifier-key"), ADMIN_TOKEN);
    assert!(server.signal_and_wait("TERM").success());
    (dir, key.trim().to_owned())
}

fn sql(dir: &Path, statement: &str) {
    rusqlite::Connection::open(dir.join("hot.sqlite3"))
        .unwrap()
        .execute_batch(statement)
        .unwrap();
}

/// Rewrites event `seq` of `tenant` and recomputes everything an attacker with database access
/// can: every later hash, the chain head and the Merkle tiles. Only signed checkpoints remain.
fn rewrite_history(dir: &Path, tenant: &str, seq: u64) {
    let conn = rusqlite::Connection::open(dir.join("hot.sqlite3")).unwrap();
    conn.execute(
        "UPDATE events SET actor_id = 'mallory' WHERE tenant_id = ?1 AND seq = ?2",
        rusqlite::params![tenant, seq as i64],
    )
    .unwrap();
    let server_events: Vec<Value> = {
        let mut statement = conn
            .prepare(
                "SELECT event_id, timestamp_ns, actor_id, actor_type, action, resource_type, resource_id, outcome, \
                 ip_address, user_agent, request_id, changes, metadata, seq, received_at_ns FROM events \
                 WHERE tenant_id = ?1 ORDER BY seq",
            )
            .unwrap();
        let rows = statement
            .query_map([tenant], |row| {
                let json_of = |text: Option<String>| text.map(|t| serde_json::from_str::<Value>(&t).unwrap()).unwrap_or(Value::Null);
                Ok(json!({
                    "event_id": row.get::<_, String>(0)?, "timestamp": sealtrail_model::format_timestamp(row.get(1)?),
                    "tenant_id": tenant, "actor_id": row.get::<_, String>(2)?, "actor_type": row.get::<_, String>(3)?,
                    "action": row.get::<_, String>(4)?, "resource_type": row.get::<_, String>(5)?,
                    "resource_id": row.get::<_, Option<String>>(6)?, "outcome": row.get::<_, String>(7)?,
                    "ip_address": row.get::<_, Option<String>>(8)?, "user_agent": row.get::<_, Option<String>>(9)?,
                    "request_id": row.get::<_, Option<String>>(10)?, "changes": json_of(row.get(11)?),
                    "metadata": json_of(row.get(12)?), "seq": row.get::<_, i64>(13)?,
                    "received_at": sealtrail_model::format_timestamp(row.get(14)?),
                    "prev_hash": hex::encode([0u8; 32]), "event_hash": hex::encode([0u8; 32]),
                }))
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    };
    let mut head = ChainHead::default();
    let mut frontier = MerkleFrontier::new();
    conn.execute("DELETE FROM merkle_tiles WHERE tenant_id = ?1", [tenant])
        .unwrap();
    for value in &server_events {
        let stored = StoredEvent::from_json(value).unwrap();
        let relinked = head.append(stored.event, stored.received_at_ns);
        conn.execute(
            "UPDATE events SET prev_hash = ?1, event_hash = ?2 WHERE tenant_id = ?3 AND seq = ?4",
            rusqlite::params![
                &relinked.prev_hash[..],
                &relinked.event_hash[..],
                tenant,
                relinked.seq as i64
            ],
        )
        .unwrap();
        frontier.append_with(relinked.event_hash, |subtree| {
            if subtree.level > 0 && subtree.level % TILE_HEIGHT == 0 {
                conn.execute(
                    "INSERT INTO merkle_tiles (tenant_id, level, idx, hash) VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![tenant, subtree.level, subtree.index as i64, &subtree.hash[..]],
                )
                .unwrap();
            }
        });
    }
    conn.execute(
        "UPDATE chain_heads SET seq = ?1, head_hash = ?2 WHERE tenant_id = ?3",
        rusqlite::params![head.seq as i64, &head.hash[..], tenant],
    )
    .unwrap();
}

#[test]
fn tamper_matrix_is_detected_and_named() {
    let (dir, key) = populated();
    let (code, output) = sealtrail(&[
        "verify",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--key",
        &key,
    ]);
    assert_eq!(code, 0, "{output}");

    let other_signer = NoteSigner::from_seed("sealtrail", &[7; 32]).unwrap();
    let resigned = {
        let body = Checkpoint::new(tenant_origin("t-b"), 300, [1; 32]);
        sign_checkpoint(&body, &other_signer).unwrap()
    };
    type Tamper = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Tamper, &str, &str)> = vec![
        (
            "edit",
            Box::new(|d| {
                sql(
                    d,
                    "UPDATE events SET action = 'read' WHERE tenant_id = 't-a' AND seq = 42",
                )
            }),
            "t-a",
            "seq 42: content changed",
        ),
        (
            "delete",
            Box::new(|d| sql(d, "DELETE FROM events WHERE tenant_id = 't-b' AND seq = 17")),
            "t-b",
            "seq 17: event missing",
        ),
        (
            // Truncation, with the chain head rewound too: only the signed checkpoint knows.
            "truncate",
            Box::new(|d| {
                sql(d, "DELETE FROM events WHERE tenant_id = 't-c' AND seq = 600; \
                        UPDATE chain_heads SET seq = 599, head_hash = (SELECT event_hash FROM events WHERE tenant_id = 't-c' AND seq = 599) WHERE tenant_id = 't-c'")
            }),
            "t-c",
            "seq 600: event missing (a signed checkpoint covers tree size 600",
        ),
        (
            "swap",
            Box::new(|d| {
                sql(
                    d,
                    "UPDATE events SET seq = -1 WHERE tenant_id = 't-a' AND seq = 10; \
                        UPDATE events SET seq = 10 WHERE tenant_id = 't-a' AND seq = 11; \
                        UPDATE events SET seq = 11 WHERE tenant_id = 't-a' AND seq = -1;",
                )
            }),
            "t-a",
            "seq 10: order broken",
        ),
        (
            "re-signed",
            Box::new(move |d| {
                let conn = rusqlite::Connection::open(d.join("hot.sqlite3")).unwrap();
                conn.execute(
                    "UPDATE checkpoints SET note = ?1 WHERE tenant_id = 't-b' AND tree_size = 300",
                    [&resigned],
                )
                .unwrap();
            }),
            "t-b",
            "seq 300: the checkpoint at tree size 300 does not verify",
        ),
        (
            "fork",
            Box::new(|d| rewrite_history(d, "t-c", 250)),
            "t-c",
            "seq 300: the signed checkpoint at tree size 300 has a different root",
        ),
    ];
    for (name, tamper, tenant, expected) in cases {
        let copy = copy_data(dir.path());
        tamper(copy.path());
        let (code, output) = sealtrail(&[
            "verify",
            "--data-dir",
            copy.path().to_str().unwrap(),
            "--key",
            &key,
        ]);
        assert_eq!(code, 1, "{name}: {output}");
        assert_one_failure(&output, tenant, expected, name);
    }
}

#[test]
fn bundles_verify_offline_and_tampering_is_named() {
    let (dir, key) = populated();
    let data = dir.path().to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let bundle_dir = out.path().join("bundle");
    let (code, output) = sealtrail(&[
        "bundle",
        "--data-dir",
        data,
        "--tenant",
        "t-b",
        "--out",
        bundle_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{output}");
    let (code, output) = sealtrail(&["verify-bundle", bundle_dir.to_str().unwrap(), "--key", &key]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("600 events"), "{output}");
    // A range inside the first checkpoint: the bundle carries that checkpoint, the latest one,
    // and the consistency proof between them.
    let boundary: i64 = rusqlite::Connection::open(dir.path().join("hot.sqlite3"))
        .unwrap()
        .query_row(
            "SELECT timestamp_ns FROM events WHERE tenant_id = 't-b' AND seq = 301",
            [],
            |row| row.get(0),
        )
        .unwrap();
    let to = sealtrail_model::format_timestamp(boundary);
    let bundle_file = out.path().join("bundle.json");
    let (code, _) = sealtrail(&[
        "bundle",
        "--data-dir",
        data,
        "--tenant",
        "t-b",
        "--to",
        &to,
        "--out",
        bundle_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    let (code, output) = sealtrail(&[
        "verify-bundle",
        bundle_file.to_str().unwrap(),
        "--key",
        &key,
    ]);
    assert_eq!(code, 0, "{output}");

    let original: Value = serde_json::from_slice(&std::fs::read(&bundle_file).unwrap()).unwrap();
    assert_eq!(
        original["checkpoints"].as_array().unwrap().len(),
        2,
        "the first covering and the latest checkpoint"
    );
    let signing_key = std::fs::read_to_string(dir.path().join("checkpoint-signing.key")).unwrap();
    let operator = NoteSigner::parse(signing_key.trim()).unwrap();
    let other = NoteSigner::from_seed("sealtrail", &[9; 32]).unwrap();
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "edited event",
            Box::new(|b| b["events"][7]["resource_id"] = json!("doc-x")),
            "seq 8: content changed",
        ),
        (
            "removed event",
            Box::new(|b| {
                b["events"].as_array_mut().unwrap().remove(20);
            }),
            "seq 21: event missing",
        ),
        (
            "truncated",
            Box::new(|b| {
                b["events"].as_array_mut().unwrap().pop();
            }),
            "seq 300: event missing",
        ),
        (
            "swapped",
            Box::new(|b| b["events"].as_array_mut().unwrap().swap(3, 4)),
            "seq 4: event missing or out of order",
        ),
        (
            "re-signed",
            Box::new(move |b| {
                let note = b["checkpoints"][1].as_str().unwrap().to_owned();
                let body = note.split("\n\n").next().unwrap().to_owned() + "\n";
                b["checkpoints"][1] = json!(sealtrail_ledger::sign_note(&body, &other).unwrap());
            }),
            "checkpoint 1:",
        ),
        (
            // A misbehaving operator signs a second history with the real key: the fork shows.
            "forked checkpoint",
            Box::new(move |b| {
                let forked = Checkpoint::new(tenant_origin("t-b"), 600, [3; 32]);
                b["checkpoints"][1] = json!(sign_checkpoint(&forked, &operator).unwrap());
            }),
            "not consistent (history forked)",
        ),
    ];
    for (name, edit, expected) in cases {
        let mut tampered = original.clone();
        edit(&mut tampered);
        let path = out.path().join(format!("{}.json", name.replace(' ', "-")));
        std::fs::write(&path, serde_json::to_vec(&tampered).unwrap()).unwrap();
        let (code, output) = sealtrail(&["verify-bundle", path.to_str().unwrap(), "--key", &key]);
        assert_eq!(code, 1, "{name}: {output}");
        assert!(
            output.contains(expected),
            "{name}: expected {expected:?} in {output}"
        );
    }
}
