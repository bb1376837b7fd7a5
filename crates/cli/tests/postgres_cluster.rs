//! Several Sealtrail nodes on one PostgreSQL database: three real `sealtrail serve` processes
//! take sync and async batches from many clients into overlapping tenants; one is SIGKILLed
//! mid-load (its clients fail over to the others, retrying the batch that got no answer), then
//! restarted on its data directory to replay its spool. Afterwards `sealtrail verify
//! --database-url` passes and every acknowledged event is stored exactly once.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;
use sealtrail_hot_postgres::testing::TestDatabase;
use serde_json::Value;

const TENANTS: [&str; 4] = ["t-a", "t-b", "t-c", "t-d"];
const CLIENTS: usize = 9;
const BATCH_EVENTS: usize = 20;
/// Node 1 is killed after this much load, and the load goes on this long after it.
const LOAD_BEFORE_KILL: Duration = Duration::from_millis(2_000);
const LOAD_AFTER_KILL: Duration = Duration::from_millis(1_500);

/// What the clients saw: every acknowledged (tenant, event_id), and acknowledgements per node.
#[derive(Default)]
struct Acks {
    events: Vec<(String, String)>,
    by_node: [usize; 3],
}

/// Clients, each starting on node `client % 3`, sending batches alternately sync and async to
/// the tenant `(client + round) % 4`. A batch without an answer (the node died) is sent again,
/// unchanged, to the next live node: a retry that must not store anything twice.
fn start_clients(
    bases: Vec<String>,
    alive: Arc<[AtomicBool; 3]>,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Acks>>,
) -> Vec<thread::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|client| {
            let (bases, alive, stop, acks) =
                (bases.clone(), alive.clone(), stop.clone(), acks.clone());
            thread::spawn(move || {
                let mut node = client % 3;
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    let tenant = TENANTS[(client + round) % TENANTS.len()];
                    let batch: Vec<Value> = (0..BATCH_EVENTS)
                        .map(|n| event(tenant, &format!("c{client}-r{round}-n{n}")))
                        .collect();
                    let body = Value::Array(batch.clone()).to_string();
                    let durability = if round % 2 == 0 { "sync" } else { "async" };
                    // Until acknowledged, or the load stops (then the batch is simply not
                    // acknowledged).
                    while !stop.load(Ordering::Relaxed) {
                        let url = format!("{}/v1/events?durability={durability}", bases[node]);
                        let answer = std::panic::catch_unwind(|| {
                            post_raw(&url, ADMIN_TOKEN, "application/json", body.as_bytes())
                        });
                        match answer {
                            Ok((201 | 202, _, _)) => {
                                let mut acks = acks.lock().unwrap();
                                acks.by_node[node] += 1;
                                acks.events.extend(batch.iter().map(|event| {
                                    (
                                        tenant.to_owned(),
                                        event["event_id"].as_str().unwrap().to_owned(),
                                    )
                                }));
                                break;
                            }
                            // Refused (503 under load): not acknowledged; send it again.
                            Ok((status, body, _)) => {
                                assert_eq!(status, 503, "unexpected answer {body}");
                                thread::sleep(Duration::from_millis(50));
                            }
                            // No answer: the node is gone. Fail over with the same batch.
                            Err(_) => {
                                alive[node].store(false, Ordering::Relaxed);
                                node = (0..3)
                                    .map(|step| (node + step) % 3)
                                    .find(|candidate| alive[*candidate].load(Ordering::Relaxed))
                                    .expect("two nodes stay up");
                            }
                        }
                    }
                    round += 1;
                }
            })
        })
        .collect()
}

/// Runs `sealtrail verify --database-url` and returns (exit code, stdout).
fn verify_database(url: &str, signing_key: &str, warm: &str, cold: &str) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_sealtrail"))
        .args([
            "verify",
            "--database-url",
            url,
            "--signing-key",
            signing_key,
        ])
        .args(["--warm-dir", warm, "--cold-dir", cold])
        .env_remove("SEALTRAIL_DATA_DIR")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn three_nodes_one_database_survive_a_sigkill_with_one_chain_per_tenant() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let database = runtime.block_on(TestDatabase::create());
    let url = database.url();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // Nodes of one deployment share one checkpoint signing key.
    let key_dir = tempfile::tempdir().unwrap();
    let signing_key = key_dir.path().join("checkpoint-signing.key");
    let signing_key = signing_key.to_str().unwrap();
    // Nodes of one database share one archive (a per-node directory is refused at start).
    let warm = key_dir.path().join("warm");
    let cold = key_dir.path().join("cold");
    let (warm, cold) = (warm.to_str().unwrap(), cold.to_str().unwrap());
    let args = [
        "--database-url",
        url.as_str(),
        "--signing-key",
        signing_key,
        "--warm-dir",
        warm,
        "--cold-dir",
        cold,
    ];
    let env = [("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)];
    // Started one after another only so that the first creates the shared key file.
    let mut nodes: Vec<Option<Server>> = dirs
        .iter()
        .map(|dir| Some(Server::start_with(dir.path(), &args, &env)))
        .collect();
    let bases: Vec<String> = nodes
        .iter()
        .map(|node| node.as_ref().unwrap().base.clone())
        .collect();

    let alive = Arc::new([
        AtomicBool::new(true),
        AtomicBool::new(true),
        AtomicBool::new(true),
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(Mutex::new(Acks::default()));
    let clients = start_clients(bases, alive.clone(), stop.clone(), acks.clone());
    thread::sleep(LOAD_BEFORE_KILL);
    let acked_by_victim = acks.lock().unwrap().by_node[1];
    alive[1].store(false, Ordering::Relaxed);
    let status = nodes[1].take().unwrap().signal_and_wait("KILL");
    assert!(!status.success());
    let acked_at_kill = acks.lock().unwrap().events.len();
    thread::sleep(LOAD_AFTER_KILL);
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    eprintln!(
        "acknowledged {} events ({} before the kill); requests per node {:?}",
        acks.events.len(),
        acked_at_kill,
        acks.by_node
    );
    assert!(acked_by_victim > 0, "the killed node was taking load");
    assert!(
        acks.events.len() > acked_at_kill,
        "the other nodes went on after the kill"
    );
    assert!(
        acks.by_node[0] > 0 && acks.by_node[2] > 0,
        "every node took load: {:?}",
        acks.by_node
    );

    // The killed node's acknowledged async requests are in its spool until it restarts there.
    nodes[1] = Some(Server::start_with(dirs[1].path(), &args, &env));
    for node in nodes.iter_mut() {
        let status = node.take().unwrap().signal_and_wait("TERM");
        assert!(status.success(), "clean exit: {status:?}");
    }

    let (code, output) = verify_database(&url, signing_key, warm, cold);
    assert_eq!(code, 0, "verify failed:\n{output}");
    assert!(
        output.contains(&format!("all {} tenants intact", TENANTS.len())),
        "{output}"
    );

    // Behind the store's back (as superuser): each acknowledged event exactly once, and each
    // chain's seqs exactly 1..n.
    let (stored, chains) = runtime.block_on(async {
        let admin = database.admin_client().await;
        let stored: Vec<(String, String, i64)> = admin
            .query(
                "SELECT tenant_id, event_id, count(*) FROM events GROUP BY 1, 2",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
        let chains: Vec<(String, i64, i64, i64)> = admin
            .query(
                "SELECT tenant_id, count(*), count(DISTINCT seq), max(seq) FROM events GROUP BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
            .collect();
        (stored, chains)
    });
    let duplicated: Vec<_> = stored.iter().filter(|(_, _, count)| *count > 1).collect();
    assert!(duplicated.is_empty(), "stored twice: {duplicated:?}");
    let stored: HashSet<(String, String)> = stored
        .into_iter()
        .map(|(tenant, event_id, _)| (tenant, event_id))
        .collect();
    let acked: HashSet<(String, String)> = acks.events.into_iter().collect();
    let lost: Vec<_> = acked.difference(&stored).take(5).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but not stored ({} in all), e.g. {lost:?}",
        acked.difference(&stored).count()
    );
    let chains: BTreeMap<String, (i64, i64, i64)> = chains
        .into_iter()
        .map(|(tenant, count, distinct, max)| (tenant, (count, distinct, max)))
        .collect();
    assert_eq!(chains.len(), TENANTS.len());
    for (tenant, (count, distinct, max)) in chains {
        assert_eq!((count, distinct), (max, max), "{tenant}: seq is 1..n");
    }
    let per_tenant: HashMap<&str, usize> =
        acked
            .iter()
            .fold(HashMap::new(), |mut counts, (tenant, _)| {
                *counts.entry(tenant.as_str()).or_default() += 1;
                counts
            });
    assert!(
        per_tenant.values().all(|count| *count >= BATCH_EVENTS),
        "every tenant got load: {per_tenant:?}"
    );
}
