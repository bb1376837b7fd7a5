//! `sealtrail verify` against logs that are not intact in ways the hot tables alone do not show:
//! a tenant removed from the hot store, a chain head rolled back behind the log, an archive
//! manifest whose time range was shifted, and tampering that only a witness's checkpoints
//! reveal (a truncation that also dropped the later checkpoints, a history rewritten and
//! re-signed with the data directory's own key). Each runs the real binary on a real data
//! directory, tampered the way an attacker with file access would.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use sealtrail_ledger::{
    sign_checkpoint, tenant_origin, ChainHead, Checkpoint, MerkleFrontier, NoteSigner, TILE_HEIGHT,
};
use sealtrail_model::StoredEvent;
use serde_json::{json, Value};

fn verify_dir(data_dir: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["verify", "--data-dir", data_dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    sealtrail(&args)
}

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

fn cut(server: &Server, tenant: &str) {
    let (status, body, _) = post_raw(
        &server.url(&format!("/v1/tenants/{tenant}/checkpoint")),
        ADMIN_TOKEN,
        "application/json",
        b"",
    );
    assert_eq!(status, 201, "{body}");
}

/// A data directory (`<dir>/data`) with a witness beside it (`<dir>/witness`): tenants
/// `t-a`, `t-b` and `t-c`, each with 600 events and signed checkpoints at tree sizes 300 and
/// 600, every one also copied to the witness. The server is stopped cleanly.
fn witnessed() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let witness = dir.path().join("witness");
    let server = Server::start_with(
        &data_dir,
        &[
            "--witness-dir",
            witness.to_str().unwrap(),
            "--lifecycle-interval-secs",
            "0",
            // Only the checkpoints cut below, so the witness holds a known set.
            "--checkpoint-interval-secs",
            "86400",
        ],
        &[("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    for tenant in ["t-a", "t-b", "t-c"] {
        ingest(&server, tenant, tenant, 300);
        cut(&server, tenant);
        ingest(&server, tenant, &format!("{tenant}-more"), 300);
        cut(&server, tenant);
    }
    assert!(server.signal_and_wait("TERM").success());
    (dir, data_dir, witness)
}

fn sql(data_dir: &Path, statement: &str) {
    rusqlite::Connection::open(data_dir.join("hot.sqlite3"))
        .unwrap()
        .execute_batch(statement)
        .unwrap();
}

/// Imports `count` events of `tenant` dated 2026-09-01 into `data_dir`, then moves them all to
/// the warm tier: the hot tier keeps only the tenant's chain head.
fn import_and_archive(dir: &Path, data_dir: &Path, tenant: &str, count: usize) {
    let history: String = (0..count)
        .map(|n| {
            let mut event = event(tenant, &format!("{tenant}-old-{n:04}"));
            event["timestamp"] = json!(format!("2026-09-01T10:{:02}:{:02}Z", n / 60, n % 60));
            format!("{event}\n")
        })
        .collect();
    let history_file = dir.join(format!("{tenant}.ndjson"));
    std::fs::write(&history_file, history).unwrap();
    let data = data_dir.to_str().unwrap();
    let (code, output) = sealtrail(&["import", "--data-dir", data, history_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{output}");
    let (code, output) = sealtrail(&[
        "lifecycle",
        "run",
        "--data-dir",
        data,
        "--now",
        "2026-11-30T00:00:00Z",
    ]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains(&format!("{count} events moved")),
        "{output}"
    );
}

/// Every warm manifest of `tenant` under `data_dir`.
fn warm_manifests(data_dir: &Path, tenant: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![data_dir.join("warm").join(format!("tenant_id={tenant}"))];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.to_str().unwrap().ends_with(".manifest.json") {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn a_tenant_removed_from_the_hot_store_is_still_verified() {
    // Case 1: its events, chain head and tiles are deleted; its signed checkpoints remain.
    let (_dir, data_dir, _witness) = witnessed();
    let (code, output) = verify_dir(&data_dir, &[]);
    assert_eq!(code, 0, "{output}");
    let copy = copy_data(&data_dir);
    sql(
        copy.path(),
        "DELETE FROM events WHERE tenant_id = 't-b'; \
         DELETE FROM chain_heads WHERE tenant_id = 't-b'; \
         DELETE FROM merkle_tiles WHERE tenant_id = 't-b';",
    );
    let (code, output) = verify_dir(copy.path(), &[]);
    assert_eq!(code, 1, "{output}");
    assert_one_failure(
        &output,
        "t-b",
        "seq 1: event missing (a signed checkpoint covers tree size 300, but the log ends at seq 0)",
        "hot rows removed, checkpoints kept",
    );
    assert!(output.contains("1 of 3 tenants failed"), "{output}");

    // Case 2: a tenant whose events all live in the warm tier; its chain head (the only hot
    // row it has) is deleted. Only the archive still knows it.
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    import_and_archive(dir.path(), &data_dir, "t-archived", 100);
    import_and_archive(dir.path(), &data_dir, "t-other", 50);
    let (code, output) = verify_dir(&data_dir, &[]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("all 2 tenants intact"), "{output}");
    sql(
        &data_dir,
        "DELETE FROM chain_heads WHERE tenant_id = 't-archived'",
    );
    let (code, output) = verify_dir(&data_dir, &[]);
    assert_eq!(code, 1, "{output}");
    assert_one_failure(
        &output,
        "t-archived",
        "seq 100: chain head missing",
        "only the archive knows the tenant",
    );
}

#[test]
fn a_chain_head_rolled_back_behind_the_log_is_named() {
    let (_dir, data_dir, _witness) = witnessed();
    let copy = copy_data(&data_dir);
    sql(
        copy.path(),
        "UPDATE chain_heads SET seq = 500, head_hash = \
           (SELECT event_hash FROM events WHERE tenant_id = 't-a' AND seq = 500) \
         WHERE tenant_id = 't-a'",
    );
    let (code, output) = verify_dir(copy.path(), &[]);
    assert_eq!(code, 1, "{output}");
    assert_one_failure(
        &output,
        "t-a",
        "seq 501: chain head rolled back (it records seq 500, but the log holds events through seq 600)",
        "rolled-back head",
    );
}

#[test]
fn a_merkle_frontier_that_is_not_the_tree_of_the_log_is_named() {
    let (_dir, data_dir, _witness) = witnessed();
    let copy = copy_data(&data_dir);
    // Same length (one hash per set bit of 600), other bytes: the next tiles would be wrong.
    sql(
        copy.path(),
        "UPDATE chain_heads SET frontier = zeroblob(length(frontier)) WHERE tenant_id = 't-a'",
    );
    let (code, output) = verify_dir(copy.path(), &[]);
    assert_eq!(code, 1, "{output}");
    assert_one_failure(
        &output,
        "t-a",
        "seq 600: the Merkle frontier stored beside the chain head does not match the tree of the log",
        "tampered frontier",
    );
}

#[test]
fn a_manifest_whose_time_range_was_shifted_is_named() {
    const FIVE_YEARS_NS: i64 = 5 * 365 * 86_400 * 1_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    import_and_archive(dir.path(), &data_dir, "t1", 389);
    let (code, output) = verify_dir(&data_dir, &[]);
    assert_eq!(code, 0, "{output}");
    let manifests = warm_manifests(&data_dir, "t1");
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    let original = std::fs::read(&manifests[0]).unwrap();

    for (field, shift) in [
        ("timestamp_min_ns", FIVE_YEARS_NS),
        ("timestamp_max_ns", -FIVE_YEARS_NS),
        ("file_bytes", 1),
    ] {
        let mut manifest: Value = serde_json::from_slice(&original).unwrap();
        let stated = manifest[field].as_i64().unwrap();
        manifest[field] = json!(stated + shift);
        if field == "timestamp_min_ns" {
            // Shifted as a whole, the way it hides the file from reads by time.
            let max = manifest["timestamp_max_ns"].as_i64().unwrap();
            manifest["timestamp_max_ns"] = json!(max + shift);
        }
        std::fs::write(&manifests[0], serde_json::to_vec(&manifest).unwrap()).unwrap();
        let (code, output) = verify_dir(&data_dir, &[]);
        assert_eq!(code, 1, "{field}: {output}");
        let expected = format!(
            "manifest field {field} says {}, but the file's rows say {stated}",
            stated + shift
        );
        assert!(
            output
                .lines()
                .any(|line| line.starts_with("FAILED  tenant t1: seq 1:")
                    && line.contains(&expected)),
            "{field}: expected {expected:?} in {output}"
        );
        assert!(
            output.contains("FAILED  tenant t1: seq 1: event missing"),
            "{field}: the chain stops at the file: {output}"
        );
    }
    std::fs::write(&manifests[0], &original).unwrap();
    let (code, output) = verify_dir(&data_dir, &[]);
    assert_eq!(code, 0, "{output}");
}

#[test]
fn a_truncation_that_also_dropped_later_checkpoints_fails_against_the_witness() {
    let (dir, data_dir, witness) = witnessed();
    let witness_arg = witness.to_str().unwrap();
    let (code, output) = verify_dir(&data_dir, &["--witness", witness_arg]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("6 checkpoints of 3 tenants"),
        "every witnessed checkpoint is replayed: {output}"
    );

    // t-a loses seq 301-600 with everything in the store that would tell: its head, the tile
    // those events completed, the checkpoint that covered them. t-c is removed from the store
    // altogether, checkpoints included: only the witness still knows it.
    let copy = copy_data(&data_dir);
    sql(
        copy.path(),
        &format!(
            "DELETE FROM events WHERE tenant_id = 't-a' AND seq > 300; \
             UPDATE chain_heads SET seq = 300, head_hash = \
               (SELECT event_hash FROM events WHERE tenant_id = 't-a' AND seq = 300) \
             WHERE tenant_id = 't-a'; \
             DELETE FROM merkle_tiles WHERE tenant_id = 't-a' AND (level > {TILE_HEIGHT} OR idx > 0); \
             DELETE FROM checkpoints WHERE tenant_id = 't-a' AND tree_size > 300; \
             DELETE FROM events WHERE tenant_id = 't-c'; \
             DELETE FROM chain_heads WHERE tenant_id = 't-c'; \
             DELETE FROM merkle_tiles WHERE tenant_id = 't-c'; \
             DELETE FROM checkpoints WHERE tenant_id = 't-c';"
        ),
    );
    let expected_a = format!(
        "seq 301: event missing (a signed checkpoint covers tree size 600, but the log ends at seq 300) (witness checkpoint {})",
        witness.join("t-a").join(format!("{:020}.checkpoint", 600)).display()
    );
    let expected_c = "seq 1: event missing (a signed checkpoint covers tree size 300, but the log ends at seq 0) (witness checkpoint";
    let config = dir.path().join("sealtrail.toml");
    std::fs::write(
        &config,
        format!(
            "witness_dir = {:?}\nlisten = \"127.0.0.1:7070\"\n",
            witness_arg
        ),
    )
    .unwrap();
    let copy_arg = copy.path().to_str().unwrap();
    // The witness given on the command line, configured in the environment as for `serve`,
    // or in the server's config file: each is replayed.
    for (how, args, env) in [
        (
            "--witness",
            vec!["verify", "--data-dir", copy_arg, "--witness", witness_arg],
            vec![],
        ),
        (
            "SEALTRAIL_WITNESS_DIR",
            vec!["verify", "--data-dir", copy_arg],
            vec![("SEALTRAIL_WITNESS_DIR", witness_arg)],
        ),
        (
            "--config",
            vec![
                "verify",
                "--data-dir",
                copy_arg,
                "--config",
                config.to_str().unwrap(),
            ],
            vec![],
        ),
    ] {
        let (code, output) = sealtrail_with_env(&args, &env);
        assert_eq!(code, 1, "{how}: {output}");
        let failed: Vec<&str> = output
            .lines()
            .filter(|line| line.starts_with("FAILED"))
            .collect();
        assert_eq!(failed.len(), 2, "{how}: {output}");
        assert!(
            failed[0].starts_with("FAILED  tenant t-a: ") && failed[0].contains(&expected_a),
            "{how}: {output}"
        );
        assert!(
            failed[1].starts_with("FAILED  tenant t-c: ") && failed[1].contains(expected_c),
            "{how}: {output}"
        );
        assert!(output.contains("2 of 3 tenants failed"), "{how}: {output}");
    }
}

/// Rewrites event `seq` of `tenant` and recomputes everything the holder of the data directory
/// can: every later hash, the chain head, the Merkle tiles, and every stored checkpoint,
/// re-signed with the data directory's own signing key.
fn rewrite_and_resign(data_dir: &Path, tenant: &str, seq: u64) {
    let signing_key = std::fs::read_to_string(data_dir.join("checkpoint-signing.key")).unwrap();
    let signer = NoteSigner::parse(signing_key.trim()).unwrap();
    let conn = rusqlite::Connection::open(data_dir.join("hot.sqlite3")).unwrap();
    conn.execute(
        "UPDATE events SET actor_id = 'mallory' WHERE tenant_id = ?1 AND seq = ?2",
        rusqlite::params![tenant, seq as i64],
    )
    .unwrap();
    let stored_events: Vec<StoredEvent> = {
        let mut statement = conn
            .prepare(
                "SELECT event_id, timestamp_ns, actor_id, actor_type, action, resource_type, resource_id, outcome, \
                 ip_address, user_agent, request_id, changes, metadata, seq, received_at_ns FROM events \
                 WHERE tenant_id = ?1 ORDER BY seq",
            )
            .unwrap();
        let rows = statement
            .query_map([tenant], |row| {
                let json_of = |text: Option<String>| {
                    text.map(|t| serde_json::from_str::<Value>(&t).unwrap())
                        .unwrap_or(Value::Null)
                };
                Ok(json!({
                    "event_id": row.get::<_, String>(0)?,
                    "timestamp": sealtrail_model::format_timestamp(row.get(1)?),
                    "tenant_id": tenant,
                    "actor_id": row.get::<_, String>(2)?,
                    "actor_type": row.get::<_, String>(3)?,
                    "action": row.get::<_, String>(4)?,
                    "resource_type": row.get::<_, String>(5)?,
                    "resource_id": row.get::<_, Option<String>>(6)?,
                    "outcome": row.get::<_, String>(7)?,
                    "ip_address": row.get::<_, Option<String>>(8)?,
                    "user_agent": row.get::<_, Option<String>>(9)?,
                    "request_id": row.get::<_, Option<String>>(10)?,
                    "changes": json_of(row.get(11)?),
                    "metadata": json_of(row.get(12)?),
                    "seq": row.get::<_, i64>(13)?,
                    "received_at": sealtrail_model::format_timestamp(row.get(14)?),
                    "prev_hash": hex::encode([0u8; 32]),
                    "event_hash": hex::encode([0u8; 32]),
                }))
            })
            .unwrap();
        rows.map(|value| StoredEvent::from_json(&value.unwrap()).unwrap())
            .collect()
    };
    let checkpoint_sizes: Vec<u64> = {
        let mut statement = conn
            .prepare("SELECT tree_size FROM checkpoints WHERE tenant_id = ?1")
            .unwrap();
        let rows = statement
            .query_map([tenant], |row| row.get::<_, i64>(0))
            .unwrap();
        rows.map(|size| size.unwrap() as u64).collect()
    };
    let mut head = ChainHead::default();
    let mut frontier = MerkleFrontier::new();
    conn.execute("DELETE FROM merkle_tiles WHERE tenant_id = ?1", [tenant])
        .unwrap();
    for stored in stored_events {
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
        if checkpoint_sizes.contains(&relinked.seq) {
            let body = Checkpoint::new(tenant_origin(tenant), relinked.seq, frontier.root());
            conn.execute(
                "UPDATE checkpoints SET note = ?1, root_hash = ?2 WHERE tenant_id = ?3 AND tree_size = ?4",
                rusqlite::params![
                    sign_checkpoint(&body, &signer).unwrap(),
                    &frontier.root()[..],
                    tenant,
                    relinked.seq as i64
                ],
            )
            .unwrap();
        }
    }
    // The frontier beside the head too, as the store keeps it, so nothing but a witness can
    // tell the rewrite apart.
    let frontier_bytes = sealtrail_ledger::encode_frontier(&frontier);
    conn.execute(
        "UPDATE chain_heads SET seq = ?1, head_hash = ?2, frontier = ?3 WHERE tenant_id = ?4",
        rusqlite::params![head.seq as i64, &head.hash[..], frontier_bytes, tenant],
    )
    .unwrap();
}

#[test]
fn a_history_rewritten_and_resigned_with_the_data_dirs_key_fails_against_the_witness() {
    let (_dir, data_dir, witness) = witnessed();
    let copy = copy_data(&data_dir);
    rewrite_and_resign(copy.path(), "t-b", 250);
    // The data directory alone is consistent again: its holder re-signed every checkpoint with
    // the key kept beside it. This is why the key belongs elsewhere, and the witness too.
    let (code, output) = verify_dir(copy.path(), &[]);
    assert_eq!(code, 0, "the rewrite is complete: {output}");

    let (code, output) = verify_dir(copy.path(), &["--witness", witness.to_str().unwrap()]);
    assert_eq!(code, 1, "{output}");
    assert_one_failure(
        &output,
        "t-b",
        &format!(
            "seq 300: the signed checkpoint at tree size 300 has a different root (history rewritten or forked) (witness checkpoint {})",
            witness.join("t-b").join(format!("{:020}.checkpoint", 300)).display()
        ),
        "rewritten and re-signed",
    );
}
