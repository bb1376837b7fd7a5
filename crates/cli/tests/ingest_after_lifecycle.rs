//! A tenant's log keeps growing after the lifecycle moved part of a Merkle tile to the archive,
//! and one tenant whose stored chain the store cannot extend stalls nobody else.
//!
//! The sequences matter, not each tier alone: import → lifecycle → serve → ingest sync and async
//! → SIGTERM → restart → verify → bundle → verify-bundle.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{get, post_json, post_raw, sealtrail, Server, ADMIN_TOKEN};
use serde_json::{json, Value};

const TENANT: &str = "t1";

/// A server with no lifecycle schedule, so only the explicit `lifecycle run` moves events.
fn serve(data_dir: &Path) -> Server {
    Server::start_with(
        data_dir,
        &["--lifecycle-interval-secs", "0"],
        &[("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
}

fn events(tenant_id: &str, prefix: &str, count: usize) -> Value {
    Value::Array(
        (0..count)
            .map(|n| common::event(tenant_id, &format!("{prefix}-{n:04}")))
            .collect(),
    )
}

fn seqs(body: &Value) -> Vec<u64> {
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {body}"))
        .iter()
        .map(|receipt| receipt["seq"].as_u64().unwrap())
        .collect()
}

/// `count(*)`, `min(seq)` and `max(seq)` of the tenant, across every tier.
fn seq_summary(server: &Server, reader: &str) -> (u64, u64, u64) {
    let (status, body) = post_json(
        &server.url("/v1/query"),
        reader,
        &json!({"sql": "SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi, count(DISTINCT event_id) AS ids FROM events"}),
    );
    assert_eq!(status, 200, "{body}");
    let row = &body["rows"][0];
    assert_eq!(row["n"], row["ids"], "no event_id is stored twice: {row}");
    (
        row["n"].as_u64().unwrap(),
        row["lo"].as_u64().unwrap(),
        row["hi"].as_u64().unwrap(),
    )
}

/// Imports 100 events of 90 days ago for [`TENANT`] and moves them all to the warm tier: the
/// hot tier is empty and the first 256-leaf tile is 100 leaves full, all of them archived. Ages,
/// not dates, decide what moves, so the outcome is the same on any calendar day.
fn archive_a_partial_tile(dir: &Path, data_dir: &Path) {
    let data = data_dir.to_str().unwrap();

    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let ninety_days_ago = now_ns - 90 * 86_400 * 1_000_000_000;
    let history: String = (0..100i64)
        .map(|n| {
            let mut event = common::event(TENANT, &format!("old-{n:04}"));
            event["timestamp"] = json!(sealtrail_model::format_timestamp(
                ninety_days_ago + n * 1_000_000_000
            ));
            format!("{event}\n")
        })
        .collect();
    let history_file = dir.join("history.ndjson");
    std::fs::write(&history_file, history).unwrap();
    let (code, output) = sealtrail(&["import", "--data-dir", data, history_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{output}");
    let (code, output) = sealtrail(&["lifecycle", "run", "--data-dir", data]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("100 events moved"), "{output}");
}

#[test]
fn a_tenant_archived_inside_a_tile_keeps_ingesting_through_restart_verify_and_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().unwrap();
    archive_a_partial_tile(dir.path(), &data_dir);

    let server = serve(&data_dir);
    let ingest = server.create_key(TENANT, "ingest");
    let other = server.create_key("t2", "ingest");
    let url = server.url("/v1/events");
    // 155 events complete the first tile (seq 101..=255), one more starts the next.
    let (status, body) = post_json(&url, &ingest, &events(TENANT, "fill", 155));
    assert_eq!(status, 201, "{body}");
    assert_eq!(seqs(&body), (101..=255).collect::<Vec<_>>());
    let (status, body) = post_json(&url, &ingest, &events(TENANT, "next", 1));
    assert_eq!(status, 201, "{body}");
    assert_eq!(seqs(&body), vec![256]);
    // A thousand more, sync and async alternating, beside another tenant.
    for batch in 0..20 {
        let body = events(TENANT, &format!("b{batch:02}"), 50);
        if batch % 2 == 0 {
            let (status, body) = post_json(&url, &ingest, &body);
            assert_eq!(status, 201, "{body}");
        } else {
            let (status, body, _) = post_raw(
                &server.url("/v1/events?durability=async"),
                &ingest,
                "application/json",
                body.to_string().as_bytes(),
            );
            assert_eq!(status, 202, "{body}");
        }
        let (status, body) = post_json(&url, &other, &events("t2", &format!("o{batch:02}"), 3));
        assert_eq!(status, 201, "{body}");
    }
    let (status, ready) = get(&server.url("/readyz"), "");
    assert_eq!(status, 200, "{ready}");
    let started = Instant::now();
    assert!(server.signal_and_wait("TERM").success());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "SIGTERM took {:?}",
        started.elapsed()
    );
    assert!(
        std::fs::read_dir(data_dir.join("spool"))
            .unwrap()
            .next()
            .is_none(),
        "every async event was committed before exit"
    );

    let server = serve(&data_dir);
    let reader = server.create_key(TENANT, "reader");
    let ingest = server.create_key(TENANT, "ingest");
    let (status, body) = post_json(
        &server.url("/v1/events"),
        &ingest,
        &events(TENANT, "after", 1),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(seqs(&body), vec![1_257]);
    // A retry of an archived event (the first imported one) gets its stored receipt.
    let history = std::fs::read_to_string(dir.path().join("history.ndjson")).unwrap();
    let first: Value = serde_json::from_str(history.lines().next().unwrap()).unwrap();
    let (status, body) = post_json(&server.url("/v1/events"), &ingest, &first);
    assert!(status == 200 || status == 201, "{status}: {body}");
    assert_eq!(seqs(&body), vec![1]);
    assert_eq!(seq_summary(&server, &reader), (1_257, 1, 1_257));
    assert!(server.signal_and_wait("TERM").success());
    // So does a rerun of the import, after lifecycle and more ingest.
    let (code, output) = sealtrail(&[
        "import",
        "--data-dir",
        data,
        dir.path().join("history.ndjson").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("imported 0 new events; 100 already present"),
        "{output}"
    );

    let (code, output) = sealtrail(&["verify", "--data-dir", data]);
    assert_eq!(code, 0, "{output}");
    let (code, key) = sealtrail(&["keys", "show-verifier", "--data-dir", data]);
    assert_eq!(code, 0, "{key}");
    let bundle_dir = dir.path().join("bundle");
    let (code, output) = sealtrail(&[
        "bundle",
        "--data-dir",
        data,
        "--tenant",
        TENANT,
        "--out",
        bundle_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("seq 1..=1257"), "{output}");
    let (code, output) = sealtrail(&[
        "verify-bundle",
        bundle_dir.to_str().unwrap(),
        "--key",
        key.trim(),
    ]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("1257 events"), "{output}");
}

#[test]
fn a_tenant_the_store_cannot_extend_stalls_no_other_tenant_shutdown_or_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_owned();
    let server = serve(&data_dir);
    let broken_key = server.create_key("broken", "ingest");
    let healthy_key = server.create_key("healthy", "ingest");
    let (status, body) = post_json(
        &server.url("/v1/events"),
        &broken_key,
        &events("broken", "first", 5),
    );
    assert_eq!(status, 201, "{body}");
    assert!(server.signal_and_wait("TERM").success());

    // Roll the tenant's recorded head back behind its stored log: its next event's seq is taken.
    let conn = rusqlite::Connection::open(data_dir.join("hot.sqlite3")).unwrap();
    let head: Vec<u8> = conn
        .query_row(
            "SELECT event_hash FROM events WHERE tenant_id = 'broken' AND seq = 3",
            [],
            |row| row.get(0),
        )
        .unwrap();
    conn.execute(
        "UPDATE chain_heads SET seq = 3, head_hash = ?1, frontier = NULL WHERE tenant_id = 'broken'",
        [head],
    )
    .unwrap();
    drop(conn);

    let server = serve(&data_dir);
    // An async request of the broken tenant is accepted (it is spooled) and cannot commit.
    let (status, body, _) = post_raw(
        &server.url("/v1/events?durability=async"),
        &broken_key,
        "application/json",
        events("broken", "stuck", 2).to_string().as_bytes(),
    );
    assert_eq!(status, 202, "{body}");
    // Other tenants' sync requests commit at once meanwhile, on the same single commit lane.
    for round in 0..5 {
        let started = Instant::now();
        let (status, body) = post_json(
            &server.url("/v1/events"),
            &healthy_key,
            &events("healthy", &format!("r{round}"), 10),
        );
        assert_eq!(status, 201, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a healthy tenant waited {:?}",
            started.elapsed()
        );
    }
    // A sync request of the broken tenant is told, and names the reason.
    let (status, body) = post_json(
        &server.url("/v1/events"),
        &broken_key,
        &events("broken", "sync", 1),
    );
    assert_eq!(status, 503, "{body}");
    let (status, ready) = get(&server.url("/readyz"), "");
    assert_eq!(
        status, 200,
        "one tenant's stored log does not make the node unready: {ready}"
    );

    // Shutdown finishes; the refused async request stays in the spool, not lost.
    let started = Instant::now();
    assert!(server.signal_and_wait("TERM").success());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "SIGTERM took {:?}",
        started.elapsed()
    );
    let spooled: Vec<_> = std::fs::read_dir(data_dir.join("spool")).unwrap().collect();
    assert_eq!(spooled.len(), 1, "the refused request is kept in the spool");

    // The restart replays what it can and serves; the broken tenant's request is still kept.
    let server = serve(&data_dir);
    let (status, body) = post_json(
        &server.url("/v1/events"),
        &healthy_key,
        &events("healthy", "after-restart", 1),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(seqs(&body), vec![51]);
    assert!(server.signal_and_wait("TERM").success());
    let spooled = std::fs::read_dir(data_dir.join("spool")).unwrap().count();
    assert_eq!(
        spooled, 1,
        "still kept for when the tenant's log is repaired"
    );
    let (code, output) = sealtrail(&["verify", "--data-dir", data_dir.to_str().unwrap()]);
    assert_ne!(code, 0, "verify reports the rolled-back head: {output}");
}

/// A data directory written before frontiers were kept beside the heads, in which the lifecycle
/// already archived a partly filled tile's leaves (the wedged state of earlier versions): the
/// lifecycle and the server restore the frontier from the archive, and ingest continues.
#[test]
fn a_data_dir_wedged_by_an_earlier_version_heals_on_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().unwrap();
    archive_a_partial_tile(dir.path(), &data_dir);
    let forget_frontier = || {
        let conn = rusqlite::Connection::open(data_dir.join("hot.sqlite3")).unwrap();
        let changed = conn
            .execute(
                "UPDATE chain_heads SET frontier = NULL WHERE tenant_id = ?1",
                [TENANT],
            )
            .unwrap();
        assert_eq!(changed, 1);
    };

    forget_frontier();
    let (code, output) = sealtrail(&["lifecycle", "run", "--data-dir", data]);
    assert_eq!(
        code, 0,
        "the lifecycle restores the frontier first: {output}"
    );

    forget_frontier();
    let server = serve(&data_dir);
    let ingest = server.create_key(TENANT, "ingest");
    let (status, body) = post_json(
        &server.url("/v1/events"),
        &ingest,
        &events(TENANT, "up", 156),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(seqs(&body), (101..=256).collect::<Vec<_>>());
    assert!(server.signal_and_wait("TERM").success());
    let (code, output) = sealtrail(&["verify", "--data-dir", data]);
    assert_eq!(code, 0, "{output}");
}
