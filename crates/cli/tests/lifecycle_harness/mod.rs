//! What the lifecycle end-to-end tests (`tiers.rs`, `cold.rs`) share: a data directory seeded
//! once over HTTP by the real server, copies of it, the `sealtrail` subcommands they run, and a
//! `moto_server` for the S3 path.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{self, post_json, stored_event_ids, Server};

pub const DAY_NS: i64 = 86_400 * 1_000_000_000;
pub const HOUR_NS: i64 = 3_600 * 1_000_000_000;
/// Exit status of an injected crash (`SEALTRAIL_FAULT_INJECT`).
pub const INJECTED_EXIT: i32 = 86;

/// The seeded data directory every test copies, and the clock reading it was seeded at.
pub struct Seed {
    pub _dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub now_ns: i64,
    /// Per tenant: event ids in seq order with their timestamps.
    pub events: Vec<(String, Vec<(String, i64)>)>,
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// `acme`: 120 events, one every 22 hours from 110 days ago (about three quarters are older
/// than 30 days, spread over four months). `globex`: 30 events, all older than 30 days, so its
/// hot tier ends up empty.
pub fn seed() -> &'static Seed {
    static SEED: OnceLock<Seed> = OnceLock::new();
    SEED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let now_ns = now_ns();
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
        let server = Server::start(&data_dir);
        for (tenant, events) in &plan {
            let key = server.create_key(tenant, "ingest");
            for batch in events.chunks(25) {
                let body: Vec<Value> = batch
                    .iter()
                    .map(|(event_id, timestamp_ns)| {
                        let mut event = common::event(tenant, event_id);
                        event["timestamp"] =
                            json!(sealtrail_model::format_timestamp(*timestamp_ns));
                        event["request_id"] = json!(format!("req-{event_id}"));
                        event["changes"] =
                            json!({"before": {"title": "a"}, "after": {"title": "b"}});
                        event
                    })
                    .collect();
                let (status, response) =
                    post_json(&server.url("/v1/events"), &key, &Value::Array(body));
                assert_eq!(status, 201, "{response}");
            }
        }
        // A clean stop seals a signed checkpoint, which verification must keep matching.
        assert!(server.signal_and_wait("TERM").success());
        Seed {
            _dir: dir,
            data_dir,
            now_ns,
            events: plan,
        }
    })
}

/// A private copy of the seeded data directory.
pub fn fresh_copy() -> (tempfile::TempDir, PathBuf) {
    let seed = seed();
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
        .env_remove("SEALTRAIL_FAULT_INJECT");
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

pub fn lifecycle_run(data_dir: &Path, extra: &[String], env: &[(&str, &str)]) -> (i32, String) {
    let now = sealtrail_model::format_timestamp(seed().now_ns);
    let mut args = vec!["--now".to_owned(), now];
    args.extend_from_slice(extra);
    sealtrail(&["lifecycle", "run"], data_dir, &args, env)
}

pub fn verify(data_dir: &Path, extra: &[String], env: &[(&str, &str)]) -> (i32, String) {
    sealtrail(&["verify"], data_dir, extra, env)
}

/// Events a tenant must keep hot after migrating with the default 30-day retention.
pub fn expected_hot(tenant: &str) -> Vec<String> {
    let seed = seed();
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
pub fn assert_migrated(data_dir: &Path, extra: &[String], env: &[(&str, &str)]) {
    let (code, output) = verify(data_dir, extra, env);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("ok      tenant acme: 120 events, head seq 120"),
        "{output}"
    );
    assert!(
        output.contains("ok      tenant globex: 30 events, head seq 30"),
        "{output}"
    );
    for tenant in ["acme", "globex"] {
        assert_eq!(
            stored_event_ids(data_dir, tenant),
            expected_hot(tenant),
            "{tenant}"
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
