//! Durability end to end: graceful shutdown, SIGKILL mid-load, backpressure, and tampering.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// (tenant, event_id) of every acknowledged event.
type Acked = Arc<Mutex<Vec<(String, String)>>>;

const TENANTS: [&str; 3] = ["t-big", "t-mid", "t-small"];

/// Clients that keep sending sync and async batches and record every acknowledged event_id,
/// until `stop` is set or the server goes away.
fn load(
    server_url: String,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> (Acked, Vec<thread::JoinHandle<()>>) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let handles = (0..clients)
        .map(|client| {
            let (url, stop, acked) = (server_url.clone(), stop.clone(), acked.clone());
            thread::spawn(move || {
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    let tenant = TENANTS[(client + round) % TENANTS.len()];
                    let batch: Vec<Value> = (0..25)
                        .map(|n| event(tenant, &format!("c{client}-r{round}-n{n}")))
                        .collect();
                    let durability = if round % 2 == 0 { "sync" } else { "async" };
                    let body = Value::Array(batch.clone()).to_string();
                    let result = std::panic::catch_unwind(|| {
                        post_raw(
                            &format!("{url}/v1/events?durability={durability}"),
                            ADMIN_TOKEN,
                            "application/json",
                            body.as_bytes(),
                        )
                    });
                    match result {
                        Ok((201 | 202, _, _)) => {
                            let mut acked = acked.lock().unwrap();
                            for event in &batch {
                                acked.push((
                                    tenant.to_owned(),
                                    event["event_id"].as_str().unwrap().to_owned(),
                                ));
                            }
                        }
                        // A refused request (503 while draining) is not acknowledged.
                        Ok(_) => {}
                        // The connection died: the server was killed.
                        Err(_) => break,
                    }
                    round += 1;
                }
            })
        })
        .collect();
    (acked, handles)
}

fn assert_each_acked_once(data_dir: &Path, acked: &[(String, String)]) {
    let mut by_tenant: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (tenant, event_id) in acked {
        by_tenant.entry(tenant).or_default().insert(event_id);
    }
    for (tenant, expected) in by_tenant {
        let stored = stored_event_ids(data_dir, tenant);
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for event_id in &stored {
            *counts.entry(event_id.as_str()).or_default() += 1;
        }
        assert!(
            counts.values().all(|count| *count == 1),
            "tenant {tenant}: an event stored twice"
        );
        let missing: Vec<_> = expected
            .iter()
            .filter(|id| !counts.contains_key(**id))
            .collect();
        assert!(
            missing.is_empty(),
            "tenant {tenant}: {} acknowledged events lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(3)]
        );
    }
}

#[test]
fn graceful_shutdown_commits_every_accepted_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, clients) = load(server.base.clone(), 6, stop.clone());
    thread::sleep(Duration::from_millis(1500));
    let status = server.signal_and_wait("TERM");
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    assert!(status.success(), "clean exit: {status:?}");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "load ran ({} acknowledged)", acked.len());
    let spool_files = std::fs::read_dir(dir.path().join("spool")).unwrap().count();
    assert_eq!(
        spool_files, 0,
        "the spool is empty after a drain: everything was committed"
    );
    assert_each_acked_once(dir.path(), &acked);
    let (code, output) = verify(dir.path(), None);
    assert_eq!(code, 0, "{output}");
}

#[test]
fn sigkill_mid_load_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, clients) = load(server.base.clone(), 6, stop.clone());
    thread::sleep(Duration::from_millis(1500));
    let status = server.signal_and_wait("KILL");
    assert!(!status.success());
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "load ran ({} acknowledged)", acked.len());

    // Restart: the spool is replayed, idempotently.
    let server = Server::start(dir.path());
    let (status, _) = get(&server.url("/readyz"), "");
    assert_eq!(status, 200);
    // Replaying twice (kill again right away, restart again) must not duplicate anything.
    let status = server.signal_and_wait("KILL");
    assert!(!status.success());
    let server = Server::start(dir.path());
    let status = server.signal_and_wait("TERM");
    assert!(status.success());
    assert_each_acked_once(dir.path(), &acked);
    let (code, output) = verify(dir.path(), None);
    assert_eq!(code, 0, "{output}");
}

#[test]
fn full_async_queue_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &["--async-queue-events-max", "100"],
        &[("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    // Hold SQLite's write lock so the writer cannot commit: the queue can only fill.
    let blocker = rusqlite::Connection::open(dir.path().join("hot.sqlite3")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let url = server.url("/v1/events?durability=async");
    let mut accepted = Vec::new();
    let mut refused = None;
    for round in 0..20 {
        let batch: Vec<Value> = (0..30)
            .map(|n| event("acme", &format!("q{round}-{n}")))
            .collect();
        let (status, body, retry_after) = post_raw(
            &url,
            ADMIN_TOKEN,
            "application/json",
            Value::Array(batch.clone()).to_string().as_bytes(),
        );
        match status {
            202 => accepted.extend(
                batch
                    .iter()
                    .map(|e| e["event_id"].as_str().unwrap().to_owned()),
            ),
            503 => {
                refused = Some((body, retry_after));
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let (body, retry_after) = refused.expect("the bounded queue refuses instead of growing");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(body["status"], 503);
    assert!(accepted.len() <= 100, "never more than the queue holds");
    assert!(!accepted.is_empty());
    // Release the lock: everything accepted is committed; nothing refused was written.
    blocker.execute_batch("COMMIT").unwrap();
    drop(blocker);
    let status = server.signal_and_wait("TERM");
    assert!(status.success());
    let stored = stored_event_ids(dir.path(), "acme");
    assert_eq!(stored.len(), accepted.len());
    let stored: HashSet<_> = stored.into_iter().collect();
    assert!(accepted.iter().all(|id| stored.contains(id)));
    let _ = json!(null);
}

/// Ingests 20 events into each of three tenants, stops the server, and returns the data dir.
fn populated() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    for tenant in TENANTS {
        for chunk in 0..4 {
            let batch: Vec<Value> = (0..5)
                .map(|n| event(tenant, &format!("{tenant}-{chunk}-{n}")))
                .collect();
            assert_eq!(
                post_json(&server.url("/v1/events"), ADMIN_TOKEN, &Value::Array(batch)).0,
                201
            );
        }
    }
    assert!(server.signal_and_wait("TERM").success());
    dir
}

fn tamper(dir: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(dir.join("hot.sqlite3")).unwrap();
    conn.execute_batch(sql).unwrap();
}

#[test]
fn verify_names_tenant_and_seq_of_tampering() {
    let dir = populated();
    let (code, output) = verify(dir.path(), None);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("all 3 tenants intact"), "{output}");

    let cases = [
        ("UPDATE events SET actor_id = 'mallory' WHERE tenant_id = 't-mid' AND seq = 7", "t-mid", "seq 7: content changed"),
        ("UPDATE events SET metadata = '{\"department\":\"hr\"}' WHERE tenant_id = 't-big' AND seq = 3", "t-big", "seq 3: content changed"),
        ("DELETE FROM events WHERE tenant_id = 't-small' AND seq = 12", "t-small", "seq 12: event missing"),
        ("DELETE FROM events WHERE tenant_id = 't-small' AND seq = 20", "t-small", "seq 20: event missing"),
        (
            "UPDATE events SET seq = -1 WHERE tenant_id = 't-big' AND seq = 5; \
             UPDATE events SET seq = 5 WHERE tenant_id = 't-big' AND seq = 9; \
             UPDATE events SET seq = 9 WHERE tenant_id = 't-big' AND seq = -1;",
            "t-big",
            "seq 5: order broken",
        ),
        ("UPDATE events SET outcome = 'maybe' WHERE tenant_id = 't-mid' AND seq = 2", "t-mid", "seq 2: content changed"),
    ];
    for (sql, tenant, expected) in cases {
        let copy = copy_data(dir.path());
        tamper(copy.path(), sql);
        let (code, output) = verify(copy.path(), None);
        assert_ne!(code, 0, "{sql}: {output}");
        assert_one_failure(&output, tenant, expected, sql);
        let (code, _) = verify(copy.path(), Some("t-small"));
        assert_eq!(
            code == 0,
            tenant != "t-small",
            "--tenant checks only that tenant"
        );
    }
}
