//! Test harness: starts the real `sealtrail` binary on an ephemeral port and talks HTTP to it.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A platform-admin token of 32 bytes (64 hex characters), as the server requires.
pub const ADMIN_TOKEN: &str = "5ea17a11b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e";

/// A running server process.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub stdout_lines: mpsc::Receiver<String>,
    /// What the server printed before its address line (a generated admin token, for one).
    pub preamble: Vec<String>,
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[], &[("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)])
    }

    pub fn start_with(data_dir: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_logging(data_dir, extra_args, env, Stdio::inherit())
    }

    /// [`Server::start_with`], its log (stderr) going to `stderr`.
    pub fn start_logging(
        data_dir: &Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sealtrail"));
        command.arg("serve").arg("--data-dir").arg(data_dir);
        // Any free port, unless the test names one (nodes that must know each other's).
        if !extra_args.contains(&"--listen") {
            command.arg("--listen").arg("127.0.0.1:0");
        }
        command
            .args(extra_args)
            .env_remove("SEALTRAIL_ADMIN_TOKEN")
            .env("SEALTRAIL_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawning sealtrail serve");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        let base = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = receiver.recv_timeout(remaining).unwrap_or_else(|_| {
                panic!("server did not report its address; stdout so far: {seen:?}")
            });
            if let Some(address) = line.strip_prefix("sealtrail listening on ") {
                break address.trim().to_owned();
            }
            seen.push(line);
        };
        Server {
            child,
            base,
            data_dir: data_dir.to_owned(),
            stdout_lines: receiver,
            preamble: seen,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal and waits for the exit status.
    pub fn signal_and_wait(mut self, signal: &str) -> ExitStatus {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn create_key(&self, tenant_id: &str, role: &str) -> String {
        let (status, body) = post_json(
            &self.url("/v1/keys"),
            ADMIN_TOKEN,
            &json!({"tenant_id": tenant_id, "role": role}),
        );
        assert_eq!(status, 201, "{body}");
        body["key"].as_str().unwrap().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build()
}

/// The response, whatever its status; a transport error fails the test.
fn response_of(result: Result<ureq::Response, ureq::Error>) -> ureq::Response {
    match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(other) => panic!("transport error: {other}"),
    }
}

fn finish(result: Result<ureq::Response, ureq::Error>) -> (u16, Value, Option<String>) {
    let response = response_of(result);
    let status = response.status();
    let retry_after = response.header("retry-after").map(str::to_owned);
    let content_type = response.header("content-type").unwrap_or("").to_owned();
    let mut text = String::new();
    response.into_reader().read_to_string(&mut text).unwrap();
    let body = if content_type.contains("json") {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    } else {
        Value::String(text)
    };
    (status, body, retry_after)
}

pub fn post_raw(
    url: &str,
    key: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Value, Option<String>) {
    let mut request = agent().post(url).set("Content-Type", content_type);
    if !key.is_empty() {
        request = request.set("Authorization", &format!("Bearer {key}"));
    }
    finish(request.send_bytes(body))
}

pub fn post_json(url: &str, key: &str, body: &Value) -> (u16, Value) {
    let (status, body, _) = post_raw(url, key, "application/json", body.to_string().as_bytes());
    (status, body)
}

/// `PUT url` with a JSON text body (sent as written, so a test can repeat a key): status and body.
pub fn put_raw_json(url: &str, key: &str, body: &str) -> (u16, Value) {
    let request = agent()
        .put(url)
        .set("Authorization", &format!("Bearer {key}"))
        .set("Content-Type", "application/json");
    let (status, body, _) = finish(request.send_bytes(body.as_bytes()));
    (status, body)
}

pub fn put_json(url: &str, key: &str, body: &Value) -> (u16, Value) {
    put_raw_json(url, key, &body.to_string())
}

/// `DELETE url` with a key: status and body.
pub fn delete(url: &str, key: &str) -> (u16, Value) {
    let request = agent()
        .delete(url)
        .set("Authorization", &format!("Bearer {key}"));
    let (status, body, _) = finish(request.call());
    (status, body)
}

/// `GET url` with a key: status and the body's bytes, as sent (a file, say).
pub fn get_bytes(url: &str, key: &str) -> (u16, Vec<u8>) {
    let response = response_of(
        agent()
            .get(url)
            .set("Authorization", &format!("Bearer {key}"))
            .call(),
    );
    let status = response.status();
    let mut bytes = Vec::new();
    response.into_reader().read_to_end(&mut bytes).unwrap();
    (status, bytes)
}

/// `args` for a subcommand or `serve`, on PostgreSQL at `database_url` when given.
pub fn on_backend(args: &[&str], database_url: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    if let Some(url) = database_url {
        args.extend(["--database-url".to_owned(), url.to_owned()]);
    }
    args
}

pub fn get(url: &str, key: &str) -> (u16, Value) {
    let mut request = agent().get(url);
    if !key.is_empty() {
        request = request.set("Authorization", &format!("Bearer {key}"));
    }
    let (status, body, _) = finish(request.call());
    (status, body)
}

/// A valid event for `tenant_id` with a unique `event_id`.
pub fn event(tenant_id: &str, event_id: &str) -> Value {
    json!({
        "event_id": event_id,
        "tenant_id": tenant_id,
        "actor_id": format!("actor-{}", event_id.len() % 7),
        "action": "update",
        "resource_type": "document",
        "resource_id": format!("doc-{event_id}"),
        "metadata": {"department": "finance", "n": event_id.len()}
    })
}

/// Counts each event_id stored for a tenant, read straight from the SQLite file.
pub fn stored_event_ids(data_dir: &Path, tenant_id: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(
        data_dir.join("hot.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut statement = conn
        .prepare("SELECT event_id FROM events WHERE tenant_id = ?1 ORDER BY seq")
        .unwrap();
    let rows = statement
        .query_map([tenant_id], |row| row.get::<_, String>(0))
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// Runs `sealtrail verify` and returns (exit code, stdout).
pub fn verify(data_dir: &Path, tenant: Option<&str>) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sealtrail"));
    command.arg("verify").arg("--data-dir").arg(data_dir);
    if let Some(tenant) = tenant {
        command.arg("--tenant").arg(tenant);
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// A copy of a stopped server's data directory (database and signing key), to tamper with.
pub fn copy_data(from: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for file in [
        "hot.sqlite3",
        "hot.sqlite3-wal",
        "hot.sqlite3-shm",
        "checkpoint-signing.key",
    ] {
        if from.join(file).exists() {
            std::fs::copy(from.join(file), copy.path().join(file)).unwrap();
        }
    }
    copy
}

/// Asserts that `verify` output reports exactly one failed tenant, `tenant`, with `expected`.
pub fn assert_one_failure(output: &str, tenant: &str, expected: &str, case: &str) {
    let failed: Vec<&str> = output
        .lines()
        .filter(|line| line.starts_with("FAILED"))
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "{case}: exactly one tenant fails: {output}"
    );
    assert!(
        failed[0].contains(&format!("tenant {tenant}:")) && failed[0].contains(expected),
        "{case}: {output}"
    );
}

/// Runs the binary with `args` and `env` (its own `SEALTRAIL_*` settings not inherited, logs at
/// warn); returns (exit code, stdout + stderr).
pub fn sealtrail_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sealtrail"));
    command
        .args(args)
        .env("SEALTRAIL_LOG", "warn")
        .env_remove("SEALTRAIL_DATA_DIR")
        .env_remove("SEALTRAIL_WITNESS_DIR")
        .env_remove("SEALTRAIL_CONFIG")
        .env_remove("SEALTRAIL_SIGNING_KEY");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("running sealtrail");
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// [`sealtrail_with_env`] with no extra environment.
pub fn sealtrail(args: &[&str]) -> (i32, String) {
    sealtrail_with_env(args, &[])
}

/// Polls `condition` until it holds or `seconds` pass; returns whether it held.
pub fn wait_until(seconds: u64, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

/// Runs `sealtrail args…` (a subcommand), on PostgreSQL at `database_url` when given.
pub fn sealtrail_on(args: &[&str], database_url: Option<&str>) -> (i32, String) {
    let args = on_backend(args, database_url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sealtrail(&args)
}

/// `sealtrail lifecycle run` on the data directory (and PostgreSQL at `database_url`) with
/// `args`, which must succeed. Returns its output.
fn lifecycle_run(data_dir: &str, database_url: Option<&str>, args: &[&str]) -> String {
    let mut all = vec!["lifecycle", "run", "--data-dir", data_dir];
    all.extend(args);
    let (code, output) = sealtrail_on(&all, database_url);
    assert_eq!(code, 0, "{output}");
    output
}

/// `sealtrail lifecycle run --hot-retention-days 30`: moves events older than 30 days to the
/// warm tier. Returns its output.
pub fn move_older_than_30_days(data_dir: &str, database_url: Option<&str>) -> String {
    lifecycle_run(data_dir, database_url, &["--hot-retention-days", "30"])
}

/// `sealtrail lifecycle run` on a clock three days ahead, with hot and warm retention of one day:
/// every event moves hot -> warm -> cold in one run. Returns its output.
pub fn move_everything_to_cold(data_dir: &str, database_url: Option<&str>) -> String {
    let later = sealtrail_model::format_timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64
            + 3 * 86_400 * 1_000_000_000,
    );
    lifecycle_run(
        data_dir,
        database_url,
        &[
            "--hot-retention-days",
            "1",
            "--warm-retention-days",
            "1",
            "--now",
            &later,
        ],
    )
}

/// Every file under `root` whose bytes hold `needle`, by path.
pub fn files_holding(root: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if std::fs::read(&path)
            .is_ok_and(|bytes| bytes.windows(needle.len()).any(|window| window == needle))
        {
            found.push(path.display().to_string());
        }
    }
    found
}

/// A `pg_dump` of the test database (a `bytea` value shows as hex in it), for a byte search.
pub fn pg_dump(database: &sealtrail_hot_postgres::testing::TestDatabase) -> Vec<u8> {
    let dump = Command::new("pg_dump")
        .arg(format!("--dbname={}", database.url_as("postgres")))
        .output()
        .expect("pg_dump runs");
    assert!(dump.status.success(), "pg_dump: {dump:?}");
    dump.stdout
}

/// `sealtrail bundle` of one tenant's whole log into `out`, then `verify-bundle` with the data
/// directory's verifier key, as an auditor would offline. Returns what `verify-bundle` printed.
pub fn bundle_and_verify(
    data_dir: &str,
    tenant: &str,
    out: &Path,
    database_url: Option<&str>,
) -> String {
    let out = out.to_str().unwrap();
    let (code, output) = sealtrail_on(
        &[
            "bundle",
            "--data-dir",
            data_dir,
            "--tenant",
            tenant,
            "--out",
            out,
        ],
        database_url,
    );
    assert_eq!(code, 0, "{output}");
    let (code, key) = sealtrail(&["keys", "show-verifier", "--data-dir", data_dir]);
    assert_eq!(code, 0, "{key}");
    let (code, output) = sealtrail(&["verify-bundle", out, "--key", key.trim()]);
    assert_eq!(code, 0, "{output}");
    output
}
