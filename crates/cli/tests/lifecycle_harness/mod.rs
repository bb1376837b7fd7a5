//! What the lifecycle end-to-end tests (`tiers.rs`, `cold.rs`) share: a data directory seeded
//! once over HTTP by the real server, copies of it, the `sealtrail` subcommands they run, and a
//! `moto_server` for the S3 path.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{self, post_json, stored_event_ids, Server};
use sealtrail_server::TEST_NOW_ENV;

pub const DAY_NS: i64 = 86_400 * 1_000_000_000;
pub const HOUR_NS: i64 = 3_600 * 1_000_000_000;
/// Exit status of an injected crash (`SEALTRAIL_FAULT_INJECT`).
pub const INJECTED_EXIT: i32 = 86;

/// The fixed instants ("now") the lifecycle, compaction and retention tests run at, so that
/// their outcome never depends on the calendar date CI runs on: which months are old enough to
/// move, to compact or to delete, and how many files each holds, all follow from the seed's
/// instant. They cover the 1st and the 15th of a month, each of the 28th to the 31st, 29
/// February, New Year's Eve one second before midnight, and 2026-11-30, the date on which the
/// wall-clock seed once left the cold crash test without its fault.
pub const INSTANTS: [&str; 9] = [
    "2026-03-01T00:00:01Z",
    "2026-01-15T12:00:00Z",
    "2026-02-28T23:30:00Z",
    "2024-02-29T12:00:00Z",
    "2026-04-30T06:00:00Z",
    "2025-05-31T18:00:00Z",
    "2025-12-31T23:59:59Z",
    "2026-11-30T18:28:17Z",
    "2025-07-29T09:00:00Z",
];

/// The instant of the tests that run once (the slow S3 ones): the date of the CI failure.
pub const DEFAULT_INSTANT: &str = "2026-11-30T18:28:17Z";

/// A seeded data directory the tests copy, and the instant it was seeded at.
pub struct Seed {
    pub _dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    /// The fixed "now" of the seed (RFC 3339), given to the server and to `lifecycle run`.
    pub now: String,
    pub now_ns: i64,
    /// Per tenant: event ids in seq order with their timestamps.
    pub events: Vec<(String, Vec<(String, i64)>)>,
}

/// The seed at [`DEFAULT_INSTANT`].
pub fn seed() -> &'static Seed {
    seed_at(DEFAULT_INSTANT)
}

/// The seed at `now` (made once per test process and instant), ingested over HTTP by the real
/// server running on a test clock started at `now` (`SEALTRAIL_TEST_NOW`), so the HTTP API's
/// age and skew limits apply as they would on that day.
///
/// `acme`: 120 events, one every 22 hours from 110 days before `now` (about three quarters
/// are older than 30 days, spread over four months). `globex`: 30 events, all older than 30
/// days, so its hot tier ends up empty.
pub fn seed_at(now: &str) -> &'static Seed {
    static SEEDS: Mutex<BTreeMap<String, &'static Seed>> = Mutex::new(BTreeMap::new());
    let mut seeds = SEEDS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(seed) = seeds.get(now) {
        return seed;
    }
    let seed: &'static Seed = Box::leak(Box::new(make_seed(now)));
    seeds.insert(now.to_owned(), seed);
    seed
}

fn make_seed(now: &str) -> Seed {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let now_ns = sealtrail_model::parse_timestamp(now).expect("an RFC 3339 instant");
    let plan: Vec<(String, Vec<(String, i64)>)> = vec![
        (
            "acme".into(),
            (0..120)
                .map(|i| {
                    (
                        format!("acme-{i:04}"),
                        now_ns - 110 * DAY_NS + i * 22 * HOUR_NS,
                    )
                })
                .collect(),
        ),
        (
            "globex".into(),
            (0..30)
                .map(|i| (format!("globex-{i:04}"), now_ns - 60 * DAY_NS + i * DAY_NS))
                .collect(),
        ),
    ];
    let server = Server::start_with(
        &data_dir,
        &[],
        &[
            ("SEALTRAIL_ADMIN_TOKEN", common::ADMIN_TOKEN),
            (TEST_NOW_ENV, now),
        ],
    );
    for (tenant, events) in &plan {
        let key = server.create_key(tenant, "ingest");
        for batch in events.chunks(25) {
            let body: Vec<Value> = batch
                .iter()
                .map(|(event_id, timestamp_ns)| {
                    let mut event = common::event(tenant, event_id);
                    event["timestamp"] = json!(sealtrail_model::format_timestamp(*timestamp_ns));
                    event["request_id"] = json!(format!("req-{event_id}"));
                    event["changes"] = json!({"before": {"title": "a"}, "after": {"title": "b"}});
                    event
                })
                .collect();
            let (status, response) =
                post_json(&server.url("/v1/events"), &key, &Value::Array(body));
            assert_eq!(status, 201, "{now}: {response}");
        }
    }
    // A clean stop seals a signed checkpoint, which verification must keep matching.
    assert!(server.signal_and_wait("TERM").success());
    Seed {
        _dir: dir,
        data_dir,
        now: now.to_owned(),
        now_ns,
        events: plan,
    }
}

/// A private copy of the seeded data directory.
pub fn fresh_copy(seed: &Seed) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(&seed.data_dir)
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let data_dir = dir.path().join("data");
    std::fs::remove_file(data_dir.join("sealtrail.lock")).ok();
    (dir, data_dir)
}

/// Runs a `sealtrail` subcommand; returns (exit code, stdout + stderr).
pub fn sealtrail(
    args: &[&str],
    data_dir: &Path,
    extra: &[String],
    env: &[(&str, &str)],
) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sealtrail"));
    command
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env("SEALTRAIL_LOG", "warn")
        .env_remove("SEALTRAIL_FAULT_INJECT")
        .env_remove(TEST_NOW_ENV);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// `lifecycle run` at the seed's instant.
pub fn lifecycle_run(
    seed: &Seed,
    data_dir: &Path,
    extra: &[String],
    env: &[(&str, &str)],
) -> (i32, String) {
    lifecycle_run_at(&seed.now, data_dir, extra, env)
}

/// `lifecycle run` at the instant `now` (RFC 3339).
pub fn lifecycle_run_at(
    now: &str,
    data_dir: &Path,
    extra: &[String],
    env: &[(&str, &str)],
) -> (i32, String) {
    let mut args = vec!["--now".to_owned(), now.to_owned()];
    args.extend_from_slice(extra);
    sealtrail(&["lifecycle", "run"], data_dir, &args, env)
}

pub fn verify(data_dir: &Path, extra: &[String], env: &[(&str, &str)]) -> (i32, String) {
    sealtrail(&["verify"], data_dir, extra, env)
}

/// Events a tenant must keep hot after migrating with the default 30-day retention.
pub fn expected_hot(seed: &Seed, tenant: &str) -> Vec<String> {
    let cutoff = seed.now_ns - 30 * DAY_NS;
    let (_, events) = seed.events.iter().find(|(name, _)| name == tenant).unwrap();
    events
        .iter()
        .filter(|(_, timestamp_ns)| *timestamp_ns >= cutoff)
        .map(|(event_id, _)| event_id.clone())
        .collect()
}

/// After a complete migration: every event exactly once (verify walks seq 1..n across tiers,
/// so a gap or a duplicate fails it), and exactly the recent events still hot.
pub fn assert_migrated(seed: &Seed, data_dir: &Path, extra: &[String], env: &[(&str, &str)]) {
    let now = &seed.now;
    let (code, output) = verify(data_dir, extra, env);
    assert_eq!(code, 0, "{now}: {output}");
    assert!(
        output.contains("ok      tenant acme: 120 events, head seq 120"),
        "{now}: {output}"
    );
    assert!(
        output.contains("ok      tenant globex: 30 events, head seq 30"),
        "{now}: {output}"
    );
    for tenant in ["acme", "globex"] {
        assert_eq!(
            stored_event_ids(data_dir, tenant),
            expected_hot(seed, tenant),
            "{now}: {tenant}"
        );
    }
}

pub fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_with_suffix(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// A `moto_server` on a free port, killed on drop.
pub struct Moto {
    pub child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (pip install 'moto[server]'; scripts/test installs it)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while ureq::get(&endpoint).call().is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, endpoint }
    }

    /// Creates a bucket named `prefix` and this process's id; returns its name.
    pub fn create_bucket(&self, prefix: &str) -> String {
        let bucket = format!("{prefix}-{}", std::process::id());
        ureq::put(&format!("{}/{bucket}", self.endpoint))
            .call()
            .expect("creating the bucket");
        bucket
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn first_seq_of(path: &Path) -> u64 {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    name["part-".len()..]
        .split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
