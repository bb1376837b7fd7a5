//! Three nodes on one PostgreSQL database with one shared archive: every node runs the
//! lifecycle on a schedule, exactly one moves at a time (the database's lifecycle lease), and
//! every node answers the same queries before and after. Then more ingest (sync and async, on
//! other nodes), a retry of an archived event and a restart lose and duplicate nothing; and, on
//! the production backend: the
//! same `verify` as on SQLite across hot, warm and cold; a bundle; an import rerun after
//! lifecycle that adds nothing; a Parquet byte flip that `verify` catches; and a node with a
//! per-node archive refused at start.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{post_json, sealtrail, Server, ADMIN_TOKEN};
use sealtrail_hot_postgres::testing::TestDatabase;
use serde_json::{json, Value};

const TENANTS: [&str; 3] = ["t-a", "t-b", "t-c"];
const EVENTS_PER_TENANT: usize = 1_500;

/// Per tenant: events, lowest and highest seq, distinct event ids, and events still hot.
fn summary(server: &Server) -> Vec<Value> {
    TENANTS
        .iter()
        .map(|tenant| {
            let (status, body) = post_json(
                &server.url("/v1/query"),
                ADMIN_TOKEN,
                &json!({"tenant_id": tenant, "sql": "SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi, \
                    count(DISTINCT event_id) AS ids, sum(CASE WHEN tier = 'hot' THEN 1 ELSE 0 END) AS hot \
                    FROM events"}),
            );
            assert_eq!(status, 200, "{body}");
            body["rows"][0].clone()
        })
        .collect()
}

/// `[started, finished]` of each lifecycle pass a node logged, as RFC 3339 instants.
fn pass_intervals(log: &str) -> (Vec<(i64, i64)>, usize) {
    let mut intervals = Vec::new();
    let mut started = None;
    let mut skipped = 0;
    for line in log.lines() {
        // The text format starts with the instant; strip any colour codes first.
        let plain: String = strip_ansi(line);
        let Some(instant) = plain
            .split_whitespace()
            .next()
            .and_then(sealtrail_model::parse_timestamp)
        else {
            continue;
        };
        if plain.contains("lifecycle pass started") {
            started = Some(instant);
        } else if plain.contains("lifecycle pass finished")
            || plain.contains("lifecycle pass failed")
        {
            intervals.push((
                started.take().expect("a pass ends after it starts"),
                instant,
            ));
        } else if plain.contains("lifecycle pass skipped") {
            skipped += 1;
        }
    }
    (intervals, skipped)
}

fn strip_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

#[test]
fn three_nodes_share_one_archive_and_move_one_at_a_time() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let database = runtime.block_on(TestDatabase::create());
    let url = database.url();
    let shared = tempfile::tempdir().unwrap();
    let path = |name: &str| shared.path().join(name).to_str().unwrap().to_owned();
    let (signing_key, warm, cold) = (path("checkpoint-signing.key"), path("warm"), path("cold"));
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();

    // History of 90 days ago, imported into the database: every pass has something to move.
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let old_ns = now_ns - 90 * 86_400 * 1_000_000_000;
    let old_event = |tenant: &str, n: usize| {
        let mut event = common::event(tenant, &format!("old-{n:05}"));
        event["timestamp"] = json!(sealtrail_model::format_timestamp(
            old_ns + n as i64 * 1_000_000_000
        ));
        event
    };
    let history: String = TENANTS
        .iter()
        .flat_map(|tenant| (0..EVENTS_PER_TENANT).map(|n| format!("{}\n", old_event(tenant, n))))
        .collect();
    let history_file = shared.path().join("history.ndjson");
    std::fs::write(&history_file, history).unwrap();
    let import = |expect_new: usize| {
        let (code, output) = sealtrail(&[
            "import",
            "--database-url",
            &url,
            "--data-dir",
            dirs[0].path().to_str().unwrap(),
            history_file.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{output}");
        assert!(
            output.contains(&format!("{expect_new} new")),
            "import reports {expect_new} new events: {output}"
        );
    };
    import(TENANTS.len() * EVENTS_PER_TENANT);

    let args = [
        "--database-url",
        url.as_str(),
        "--signing-key",
        &signing_key,
        "--warm-dir",
        &warm,
        "--cold-dir",
        &cold,
        "--lifecycle-interval-secs",
        "1",
    ];
    let env = [
        ("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN),
        ("SEALTRAIL_LOG", "info"),
    ];
    let logs: Vec<std::path::PathBuf> =
        dirs.iter().map(|dir| dir.path().join("node.log")).collect();
    let mut nodes: Vec<Server> = dirs
        .iter()
        .zip(&logs)
        .map(|(dir, log)| {
            let file = std::fs::File::create(log).unwrap();
            Server::start_logging(dir.path(), &args, &env, Stdio::from(file))
        })
        .collect();

    // Before: every node answers the same (wherever each event is by then).
    let before: Vec<Vec<Value>> = nodes.iter().map(summary).collect();
    for (tenant, row) in TENANTS.iter().zip(&before[0]) {
        assert_eq!(row["n"], json!(EVENTS_PER_TENANT), "{tenant}: {row}");
        assert_eq!(row["ids"], row["n"], "{tenant}: {row}");
    }

    // The scheduled passes move everything to the warm tier.
    let deadline = Instant::now() + Duration::from_secs(180);
    while summary(&nodes[0]).iter().any(|row| row["hot"] != json!(0)) {
        assert!(
            Instant::now() < deadline,
            "the schedule did not archive the history"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // A few more rounds of every node's schedule, with nothing left to move.
    std::thread::sleep(Duration::from_secs(3));
    let after: Vec<Vec<Value>> = nodes.iter().map(summary).collect();
    for node in &after {
        let without_tier: Vec<Value> = node
            .iter()
            .map(|row| json!([row["n"], row["lo"], row["hi"], row["ids"]]))
            .collect();
        let expected: Vec<Value> = before[0]
            .iter()
            .map(|row| json!([row["n"], row["lo"], row["hi"], row["ids"]]))
            .collect();
        assert_eq!(without_tier, expected, "every node answers as before");
    }

    // After the lifecycle: more ingest on other nodes (sync and async), a retry of an archived
    // event, then a restart.
    const NEW: usize = 50;
    let new_events = |prefix: &str| {
        Value::Array(
            (0..NEW)
                .map(|n| common::event("t-b", &format!("{prefix}-{n:02}")))
                .collect(),
        )
    };
    // Node 0 answers a summary question twice (the second from its result cache)...
    let total_b = |node: &Server| {
        let (status, body) = post_json(
            &node.url("/v1/query"),
            ADMIN_TOKEN,
            &json!({"tenant_id": "t-b", "sql": "SELECT sum(total_events) AS total FROM summary_tenant_month"}),
        );
        assert_eq!(status, 200, "{body}");
        body["rows"][0]["total"].clone()
    };
    for _ in 0..2 {
        assert_eq!(total_b(&nodes[0]), json!(EVENTS_PER_TENANT));
    }
    let (status, body) = post_json(
        &nodes[1].url("/v1/events?durability=sync"),
        ADMIN_TOKEN,
        &new_events("new-sync"),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["results"][0]["seq"],
        json!(EVENTS_PER_TENANT + 1),
        "{body}"
    );
    // ...and after another node's commit, never its cached answer: the revisions it is keyed
    // by live in the shared database.
    assert_eq!(total_b(&nodes[0]), json!(EVENTS_PER_TENANT + NEW));
    let (status, body) = post_json(
        &nodes[2].url("/v1/events?durability=async"),
        ADMIN_TOKEN,
        &new_events("new-async"),
    );
    assert_eq!(status, 202, "{body}");
    let (status, body) = post_json(
        &nodes[0].url("/v1/events?durability=sync"),
        ADMIN_TOKEN,
        &json!([old_event("t-a", 7)]),
    );
    assert!(status == 200 || status == 201, "{status}: {body}");
    assert_eq!(
        body["results"][0]["seq"],
        json!(8),
        "an archived event's retry gets its stored receipt: {body}"
    );
    for (node, log) in nodes.drain(..).zip(&logs) {
        let status = node.signal_and_wait("TERM");
        assert!(
            status.success(),
            "clean exit ({status:?}); log:\n{}",
            std::fs::read_to_string(log).unwrap()
        );
    }
    let restart_log = dirs[0].path().join("restart.log");
    let restarted = Server::start_logging(
        dirs[0].path(),
        &args,
        &env,
        Stdio::from(std::fs::File::create(&restart_log).unwrap()),
    );
    let counts: Vec<(Value, Value)> = summary(&restarted)
        .iter()
        .map(|row| (row["n"].clone(), row["ids"].clone()))
        .collect();
    let (old, with_new) = (json!(EVENTS_PER_TENANT), json!(EVENTS_PER_TENANT + 2 * NEW));
    assert_eq!(
        counts,
        vec![
            (old.clone(), old.clone()),
            (with_new.clone(), with_new),
            (old.clone(), old)
        ],
        "every acknowledged event once, the retried one not twice"
    );
    // The summaries, kept in the group commits of three nodes, count each of those events once:
    // lifecycle, ingest elsewhere, the archived retry and the restart moved no count.
    for (tenant, (events, _)) in TENANTS.iter().zip(&counts) {
        let (status, body) = post_json(
            &restarted.url("/v1/query"),
            ADMIN_TOKEN,
            &json!({"tenant_id": tenant, "sql": "SELECT sum(total_events) AS total FROM summary_tenant_month"}),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(&body["rows"][0]["total"], events, "summaries of {tenant}");
    }
    assert!(restarted.signal_and_wait("TERM").success());

    // Exactly one mover at a time: no two logged passes overlap, across all nodes.
    let mut passes = Vec::new();
    let mut attempts_per_node = Vec::new();
    for log in &logs {
        let (intervals, skipped) = pass_intervals(&std::fs::read_to_string(log).unwrap());
        attempts_per_node.push(intervals.len() + skipped);
        passes.extend(intervals);
    }
    passes.sort();
    assert!(passes.len() >= 3, "passes ran: {passes:?}");
    assert!(
        attempts_per_node.iter().all(|attempts| *attempts > 0),
        "every node ran its schedule: {attempts_per_node:?}"
    );
    for pair in passes.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "two lifecycle passes overlap: {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }

    // The same verification as on SQLite, across tiers, on the production backend.
    let verify = || {
        sealtrail(&[
            "verify",
            "--database-url",
            &url,
            "--signing-key",
            &signing_key,
            "--warm-dir",
            &warm,
            "--cold-dir",
            &cold,
        ])
    };
    let (code, output) = verify();
    assert_eq!(code, 0, "{output}");
    // The three tenants, and the read trail of each (the reads above are recorded there).
    assert!(output.contains("all 6 tenants intact"), "{output}");
    for tenant in ["t-a", "t-b", "t-c"] {
        assert!(
            output.contains(&format!("ok      tenant _access.{tenant}:")),
            "{output}"
        );
    }

    // A rerun of the import after lifecycle adds nothing.
    import(0);
    let (code, output) = verify();
    assert_eq!(code, 0, "{output}");

    // A bundle of archived events from the database, verified offline.
    let bundle = shared.path().join("bundle.json");
    let (code, output) = sealtrail(&[
        "bundle",
        "--database-url",
        &url,
        "--data-dir",
        dirs[0].path().to_str().unwrap(),
        "--warm-dir",
        &warm,
        "--cold-dir",
        &cold,
        "--tenant",
        "t-b",
        "--out",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains(&format!("({} events)", EVENTS_PER_TENANT + 2 * NEW)),
        "{output}"
    );
    let (code, verifier_key) = sealtrail(&["keys", "show-verifier", "--signing-key", &signing_key]);
    assert_eq!(code, 0, "{verifier_key}");
    let (code, output) = sealtrail(&[
        "verify-bundle",
        bundle.to_str().unwrap(),
        "--key",
        verifier_key.trim(),
    ]);
    assert_eq!(code, 0, "{output}");

    // A byte flipped in an archived file is caught.
    let parquet = walk(std::path::Path::new(&warm))
        .into_iter()
        .find(|file| {
            file.to_string_lossy().contains("t-c")
                && file.extension().is_some_and(|ext| ext == "parquet")
        })
        .expect("t-c has a warm file");
    let mut bytes = std::fs::read(&parquet).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&parquet, bytes).unwrap();
    let (code, output) = verify();
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("FAILED  tenant t-c"), "{output}");
    assert!(output.contains("ok      tenant t-a"), "{output}");

    // A node whose archive is its own directory is refused: it would lose what others moved.
    let lonely = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sealtrail"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &url])
        .args(["--signing-key", &signing_key, "--data-dir"])
        .arg(lonely.path())
        .env("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SEALTRAIL_LOG", "warn")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("must share their warm and cold tiers"),
        "{stderr}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Copies a directory tree (a tier), so that each tampering case starts from the intact one.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// The one warm manifest of `tenant` under `warm`.
fn warm_manifest(warm: &std::path::Path, tenant: &str) -> std::path::PathBuf {
    let manifests: Vec<std::path::PathBuf> = walk(warm)
        .into_iter()
        .filter(|file| {
            file.to_string_lossy()
                .contains(&format!("tenant_id={tenant}/"))
                && file.to_string_lossy().ends_with(".manifest.json")
        })
        .collect();
    assert_eq!(manifests.len(), 1, "{tenant}: {manifests:?}");
    manifests.into_iter().next().unwrap()
}

/// Tampering with each tier is caught on PostgreSQL, end to end: a swapped or edited warm
/// manifest, warm files deleted without a deletion record, and a hot row edited in the
/// database. Each names the tenant (and exits 1) while the untouched tenants verify.
#[test]
fn tampering_in_each_tier_is_caught_on_postgres() {
    const OLD: usize = 200;
    const RECENT: usize = 20;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let database = runtime.block_on(TestDatabase::create());
    let url = database.url();
    let shared = tempfile::tempdir().unwrap();
    let data_dir = shared.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let path = |name: &str| shared.path().join(name).to_str().unwrap().to_owned();
    let (signing_key, warm, cold) = (path("checkpoint-signing.key"), path("warm"), path("cold"));
    let signer = sealtrail_ledger::NoteSigner::from_seed("sealtrail-test", &[9; 32]).unwrap();
    std::fs::write(&signing_key, format!("{}\n", signer.signer_key())).unwrap();

    // Per tenant: 200 events of 90 days ago (they move to the warm tier), then 20 of the last
    // hour (they stay hot).
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let second = 1_000_000_000;
    let old_ns = now_ns - 90 * 86_400 * second;
    let recent_ns = now_ns - 3_600 * second;
    let mut events = String::new();
    for tenant in TENANTS {
        for n in 0..OLD + RECENT {
            let (id, at) = if n < OLD {
                (format!("old-{n:05}"), old_ns + n as i64 * second)
            } else {
                (format!("new-{n:05}"), recent_ns + n as i64 * second)
            };
            let mut event = common::event(tenant, &id);
            event["timestamp"] = json!(sealtrail_model::format_timestamp(at));
            events.push_str(&format!("{event}\n"));
        }
    }
    let events_file = shared.path().join("events.ndjson");
    std::fs::write(&events_file, events).unwrap();
    let data = data_dir.to_str().unwrap();
    let (code, output) = sealtrail(&[
        "import",
        "--database-url",
        &url,
        "--data-dir",
        data,
        events_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{output}");
    let (code, output) = sealtrail(&[
        "lifecycle",
        "run",
        "--database-url",
        &url,
        "--data-dir",
        data,
        "--warm-dir",
        &warm,
        "--cold-dir",
        &cold,
        "--hot-retention-days",
        "30",
        "--warm-retention-days",
        "365",
    ]);
    assert_eq!(code, 0, "{output}");

    let verify = |warm: &str| {
        sealtrail(&[
            "verify",
            "--database-url",
            &url,
            "--signing-key",
            &signing_key,
            "--warm-dir",
            warm,
            "--cold-dir",
            &cold,
        ])
    };
    let (code, output) = verify(&warm);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("all 3 tenants intact"), "{output}");
    for tenant in TENANTS {
        assert!(
            output.contains(&format!(
                "ok      tenant {tenant}: {} events, head seq {}",
                OLD + RECENT,
                OLD + RECENT
            )),
            "{output}"
        );
    }

    // Verifies a fresh copy of the intact warm tier after `tamper` changed it, and asserts
    // that exactly `tenant` fails, at `seq`.
    let case = |name: &str, tenant: &str, seq: usize, tamper: &dyn Fn(&std::path::Path)| {
        let copy = shared.path().join(format!("warm-{name}"));
        copy_dir(std::path::Path::new(&warm), &copy);
        tamper(&copy);
        let (code, output) = verify(copy.to_str().unwrap());
        assert_fails(name, code, &output, tenant, seq);
    };
    // A manifest swapped for another tenant's (same range and name, other file's digest).
    case("manifest swap", "t-a", 1, &|warm| {
        std::fs::copy(warm_manifest(warm, "t-b"), warm_manifest(warm, "t-a")).unwrap();
    });
    // A manifest whose count was edited.
    case("manifest count", "t-b", 1, &|warm| {
        let manifest = warm_manifest(warm, "t-b");
        let mut fields: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        assert_eq!(fields["event_count"], json!(OLD), "{fields}");
        fields["event_count"] = json!(OLD - 1);
        std::fs::write(&manifest, serde_json::to_vec(&fields).unwrap()).unwrap();
    });
    // A Parquet file and its manifest removed, with no deletion record.
    case("unrecorded deletion", "t-c", 1, &|warm| {
        let manifest = warm_manifest(warm, "t-c");
        let parquet = walk(manifest.parent().unwrap())
            .into_iter()
            .filter(|file| file.extension().is_some_and(|ext| ext == "parquet"))
            .collect::<Vec<_>>();
        assert_eq!(parquet.len(), 1, "{parquet:?}");
        std::fs::remove_file(&parquet[0]).unwrap();
        std::fs::remove_file(&manifest).unwrap();
    });

    // A hot row edited in the database, as the superuser (row-level security does not bind it).
    let edited = OLD + 5;
    runtime.block_on(async {
        let admin = database.admin_client().await;
        let changed = admin
            .execute(
                "UPDATE events SET action = 'x' WHERE tenant_id = 't-b' AND seq = $1",
                &[&(edited as i64)],
            )
            .await
            .unwrap();
        assert_eq!(changed, 1, "the edited event is still hot");
    });
    let (code, output) = verify(&warm);
    assert_fails("hot row edit", code, &output, "t-b", edited);
}

/// `verify` exited 1 naming `tenant` (and its first failing `seq`), and only it: the others
/// report `ok`.
fn assert_fails(case: &str, code: i32, output: &str, tenant: &str, seq: usize) {
    assert_eq!(code, 1, "{case}: {output}");
    assert!(
        output.contains(&format!("FAILED  tenant {tenant}: seq {seq}:")),
        "{case}: {output}"
    );
    for other in TENANTS.iter().filter(|other| **other != tenant) {
        assert!(
            output.contains(&format!("ok      tenant {other}: ")),
            "{case}: {other} verifies: {output}"
        );
    }
    // The damage and the chain fault it causes may each have a line; both name the tenant.
    assert!(
        output
            .lines()
            .filter(|line| line.starts_with("FAILED"))
            .all(|line| line.starts_with(&format!("FAILED  tenant {tenant}: "))),
        "{case}: {output}"
    );
    assert!(
        output.contains("1 of 3 tenants failed verification"),
        "{case}: {output}"
    );
}
