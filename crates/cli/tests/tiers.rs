//! Hot → warm lifecycle end to end: the real binary seeds a data directory over HTTP, moves old
//! events to Parquet (local directory or a real S3-compatible `moto_server`), survives a crash
//! at each step, and `sealtrail verify` checks one chain across tiers and catches tampering.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{post_json, stored_event_ids, Server};
use serde_json::{json, Value};

const DAY_NS: i64 = 86_400 * 1_000_000_000;
const HOUR_NS: i64 = 3_600 * 1_000_000_000;
/// Exit status of an injected crash (`SEALTRAIL_FAULT_INJECT`).
const INJECTED_EXIT: i32 = 86;

/// The seeded data directory every test copies, and the clock reading it was seeded at.
struct Seed {
    _dir: tempfile::TempDir,
    data_dir: PathBuf,
    now_ns: i64,
    /// Per tenant: event ids in seq order with their timestamps.
    events: Vec<(String, Vec<(String, i64)>)>,
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// `acme`: 120 events, one every 22 hours from 110 days ago (about three quarters are older
/// than 30 days, spread over four months). `globex`: 30 events, all older than 30 days, so its
/// hot tier ends up empty.
fn seed() -> &'static Seed {
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
fn fresh_copy() -> (tempfile::TempDir, PathBuf) {
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
fn sealtrail(
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

fn lifecycle_run(data_dir: &Path, extra: &[String], env: &[(&str, &str)]) -> (i32, String) {
    let now = sealtrail_model::format_timestamp(seed().now_ns);
    let mut args = vec!["--now".to_owned(), now];
    args.extend_from_slice(extra);
    sealtrail(&["lifecycle", "run"], data_dir, &args, env)
}

fn verify(data_dir: &Path, extra: &[String], env: &[(&str, &str)]) -> (i32, String) {
    sealtrail(&["verify"], data_dir, extra, env)
}

/// Events a tenant must keep hot after migrating with the default 30-day retention.
fn expected_hot(tenant: &str) -> Vec<String> {
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
fn assert_migrated(data_dir: &Path, extra: &[String], env: &[(&str, &str)]) {
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

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
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

#[test]
fn migration_moves_old_events_and_verify_passes_across_tiers() {
    let (_dir, data_dir) = fresh_copy();
    let (code, output) = lifecycle_run(&data_dir, &[], &[]);
    assert_eq!(code, 0, "{output}");
    assert_migrated(&data_dir, &[], &[]);
    let warm = data_dir.join("warm");
    let parquet = files_with_suffix(&warm, ".parquet");
    let manifests = files_with_suffix(&warm, ".manifest.json");
    assert_eq!(parquet.len(), manifests.len());
    // acme's archived events span four calendar months at most, globex's three.
    assert!(parquet.len() >= 3 && parquet.len() <= 8, "{parquet:?}");
    for path in &parquet {
        let relative = path
            .strip_prefix(&warm)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = relative.split('/').collect();
        assert!(parts[0].starts_with("tenant_id="), "{relative}");
        assert!(
            parts[1].starts_with("date=") && parts[1].len() == "date=YYYY-MM".len(),
            "{relative}"
        );
        assert!(parts[2].starts_with("part-"), "{relative}");
    }
    // A second run has nothing left to move and changes nothing.
    let (code, output) = lifecycle_run(&data_dir, &[], &[]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("tenant acme: 0 events moved"), "{output}");
    assert_eq!(files_with_suffix(&warm, ".parquet"), parquet);
    assert_migrated(&data_dir, &[], &[]);
}

#[test]
fn a_crash_at_any_step_loses_and_duplicates_nothing() {
    for step in ["after-write", "after-verify", "mid-delete"] {
        let (_dir, data_dir) = fresh_copy();
        let (code, output) = lifecycle_run(&data_dir, &[], &[("SEALTRAIL_FAULT_INJECT", step)]);
        assert_eq!(code, INJECTED_EXIT, "{step}: {output}");
        // The interrupted state is itself a valid log.
        let (code, output) = verify(&data_dir, &[], &[]);
        assert_eq!(code, 0, "{step}: {output}");
        let (code, output) = lifecycle_run(&data_dir, &[], &[]);
        assert_eq!(code, 0, "{step}: {output}");
        assert_migrated(&data_dir, &[], &[]);
        let warm = data_dir.join("warm");
        assert_eq!(
            files_with_suffix(&warm, ".parquet").len(),
            files_with_suffix(&warm, ".manifest.json").len(),
            "{step}: no orphan file is left"
        );
    }
}

/// Migrates a fresh copy and returns it with its warm Parquet files.
fn migrated() -> (tempfile::TempDir, PathBuf, Vec<PathBuf>) {
    let (dir, data_dir) = fresh_copy();
    let (code, output) = lifecycle_run(&data_dir, &[], &[]);
    assert_eq!(code, 0, "{output}");
    let acme = files_with_suffix(&data_dir.join("warm/tenant_id=acme"), ".parquet");
    assert!(acme.len() >= 2, "{acme:?}");
    (dir, data_dir, acme)
}

fn first_seq_of(path: &Path) -> u64 {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    name["part-".len()..]
        .split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn assert_fails_at(data_dir: &Path, seq: u64, what: &str) {
    let (code, output) = verify(data_dir, &[], &[]);
    assert_eq!(code, 1, "{what}: {output}");
    assert!(
        output.contains(&format!("FAILED  tenant acme: seq {seq}:")),
        "{what}: expected a failure naming acme seq {seq}: {output}"
    );
    assert!(output.contains("ok      tenant globex"), "{what}: {output}");
}

#[test]
fn verify_fails_when_a_parquet_file_is_altered() {
    let (_dir, data_dir, files) = migrated();
    let target = &files[1];
    let mut bytes = std::fs::read(target).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(target, bytes).unwrap();
    assert_fails_at(&data_dir, first_seq_of(target), "altered");
}

#[test]
fn verify_fails_when_a_parquet_file_is_removed() {
    let (_dir, data_dir, files) = migrated();
    std::fs::remove_file(&files[1]).unwrap();
    assert_fails_at(&data_dir, first_seq_of(&files[1]), "removed");
    // Removing the manifest as well leaves a gap, which the chain names.
    let manifest = files[1].with_file_name(format!(
        "_{}",
        files[1]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".parquet", ".manifest.json")
    ));
    std::fs::remove_file(manifest).unwrap();
    assert_fails_at(
        &data_dir,
        first_seq_of(&files[1]),
        "removed with its manifest",
    );
}

#[test]
fn verify_fails_when_a_parquet_file_is_replaced() {
    let (_dir, data_dir, files) = migrated();
    // Another valid file of the same tenant in its place.
    std::fs::copy(&files[0], &files[1]).unwrap();
    assert_fails_at(&data_dir, first_seq_of(&files[1]), "replaced");
}

#[test]
fn parquet_files_open_in_pyarrow_with_the_expected_schema() {
    let (_dir, data_dir, files) = migrated();
    let script = r#"
import sys, pyarrow.parquet as pq
f = pq.ParquetFile(sys.argv[1])
schema = f.schema_arrow
print(",".join(f"{field.name}:{field.type}" for field in schema))
print(f.metadata.num_rows)
md = f.metadata.row_group(0)
print(md.column(0).statistics.has_min_max, md.column(0).compression)
t = f.read()
print(t.column("seq")[0].as_py(), t.column("tenant_id")[0].as_py())
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&files[0])
        .output()
        .expect("python3 with pyarrow (scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "seq:int64,tenant_id:string,event_id:string,timestamp:timestamp[ns, tz=UTC],\
received_at:timestamp[ns, tz=UTC],actor_id:string,actor_type:string,action:string,\
resource_type:string,resource_id:string,outcome:string,ip_address:string,user_agent:string,\
request_id:string,changes:string,metadata:string,prev_hash:fixed_size_binary[32]"
    );
    assert!(lines[1].parse::<u64>().unwrap() > 0);
    assert_eq!(lines[2], "True ZSTD");
    assert_eq!(lines[3], "1 acme");
    let _ = data_dir;
}

/// A `moto_server` on a free port, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
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

#[test]
fn the_s3_path_migrates_survives_a_crash_and_verifies_against_moto() {
    let moto = Moto::start();
    let bucket = format!("sealtrail-test-{}", std::process::id());
    ureq::put(&format!("{}/{bucket}", moto.endpoint))
        .call()
        .expect("creating the bucket");
    let extra: Vec<String> = [
        "--s3-bucket",
        &bucket,
        "--s3-endpoint",
        &moto.endpoint,
        "--s3-region",
        "us-east-1",
        "--s3-prefix",
        "tiers/warm",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let (_dir, data_dir) = fresh_copy();
    let mut crash_env = env.to_vec();
    crash_env.push(("SEALTRAIL_FAULT_INJECT", "mid-delete"));
    let (code, output) = lifecycle_run(&data_dir, &extra, &crash_env);
    assert_eq!(code, INJECTED_EXIT, "{output}");
    let (code, output) = lifecycle_run(&data_dir, &extra, &env);
    assert_eq!(code, 0, "{output}");
    assert!(
        !data_dir.join("warm").exists(),
        "S3 was used, not the local default"
    );
    assert_migrated(&data_dir, &extra, &env);
    // Without the bucket, the archived events are missing and verify says where they start.
    let (code, output) = verify(&data_dir, &[], &[]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("FAILED  tenant acme: seq 1:"), "{output}");
}
