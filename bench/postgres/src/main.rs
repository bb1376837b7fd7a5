//! PostgreSQL ingest benchmark: Sealtrail on PostgreSQL beside plain PostgreSQL baselines, in
//! one run, on one database server, with the same events (the generator of `bench/ingest`: 50
//! tenants of Zipf-skewed sizes, ~500 bytes of JSON per event).
//!
//! 1. Sealtrail, sync: `sealtrail serve --database-url` (release build, one node), clients POST
//!    batches of 1,000 events over HTTP and wait for the 201 (committed, chained, fsynced).
//! 2. Sealtrail, async: the same with `durability=async` (202 after the node's local spool).
//! 3. Baseline, batched INSERT: the same events, parsed in advance, inserted by the same number
//!    of clients into one indexed `audit_events` table, 1,000 rows per multi-row INSERT
//!    statement, one commit each. No HTTP, no validation, no chain.
//! 4. Baseline, COPY: the same with binary COPY, 1,000 rows per COPY, one commit each.
//!
//! Every scenario writes to fresh tables of its own, after a CHECKPOINT, with
//! `synchronous_commit=on`. The Sealtrail database is owned by a role without superuser rights,
//! so row-level security is enforced on its writes as in production. Events/s counts
//! acknowledged events; latency is per request (HTTP) or per statement (baselines).
//!
//! Run: `bench/postgres/run` (builds release, then runs this). Flags: `--seconds N` per
//! scenario, `--clients N`, `--admin-url URL` (a role that may create roles and databases;
//! default `postgres://postgres@127.0.0.1:5432/test`), `--server-log FILTER` (the server's
//! `SEALTRAIL_LOG`; its log goes to stderr).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sealtrail_bench_ingest::{
    cpu_model, realistic_event, ADMIN_TOKEN, ID_PLACEHOLDER, ID_WIDTH, TENANTS,
};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

const BATCH_EVENTS: usize = 1_000;
/// Pre-built batches per body set; a client cycles through them.
const TEMPLATES: usize = 16;

struct Options {
    seconds: u64,
    clients: usize,
    server: String,
    admin_url: String,
    /// `SEALTRAIL_LOG` of the server, e.g. `sealtrail_hot_postgres=debug` for per-group timings.
    server_log: String,
}

fn main() -> anyhow::Result<()> {
    let mut options = Options {
        seconds: 10,
        clients: 8,
        server: "target/release/sealtrail".into(),
        admin_url: "postgres://postgres@127.0.0.1:5432/test".into(),
        server_log: "error".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().context("every flag takes a value")?;
        match flag.as_str() {
            "--seconds" => options.seconds = value.parse()?,
            "--clients" => options.clients = value.parse()?,
            "--server" => options.server = value,
            "--admin-url" => options.admin_url = value,
            "--server-log" => options.server_log = value,
            other => bail!("unknown flag {other}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let bench = runtime.block_on(Bench::create(&options.admin_url))?;
    let result = run(&options, &runtime, &bench);
    runtime.block_on(bench.drop_all());
    result
}

fn run(options: &Options, runtime: &tokio::runtime::Runtime, bench: &Bench) -> anyhow::Result<()> {
    println!("# Sealtrail on PostgreSQL: ingest benchmark");
    println!(
        "machine: {} cores, {}",
        thread::available_parallelism()?.get(),
        cpu_model()
    );
    let server_version: String = runtime.block_on(async {
        let admin = connect(&options.admin_url).await?;
        anyhow::Ok(admin.query_one("SHOW server_version", &[]).await?.get(0))
    })?;
    println!(
        "PostgreSQL {server_version} (same server for every scenario); clients: {}, seconds per \
         scenario: {}, batch: {BATCH_EVENTS} events\n",
        options.clients, options.seconds
    );
    let duration = Duration::from_secs(options.seconds);
    let bodies = Bodies::new(BATCH_EVENTS, 7);
    println!(
        "event size: {:.0} bytes of JSON on average\n",
        bodies.templates[0].len() as f64 / BATCH_EVENTS as f64
    );
    let mut results: Vec<(&str, ScenarioResult)> = Vec::new();

    let data_dir =
        std::env::temp_dir().join(format!("sealtrail-bench-postgres-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let sealtrail_url = bench.url(&bench.sealtrail_db);
    let (mut server, base) = start_server(options, &data_dir, &sealtrail_url)?;
    for durability in ["sync", "async"] {
        runtime.block_on(bench.checkpoint())?;
        let before = cpu_sample(Some(server.id()));
        let result = http_scenario(&base, &bodies, durability, options.clients, duration)
            .with_cpu(before, cpu_sample(Some(server.id())));
        results.push((
            if durability == "sync" {
                "Sealtrail, sync (201 = chained + committed)"
            } else {
                "Sealtrail, async (202 = spooled)"
            },
            result,
        ));
    }
    Command::new("kill")
        .arg("-TERM")
        .arg(server.id().to_string())
        .status()?;
    let status = server.wait()?;
    let verify = Command::new(&options.server)
        .args(["verify", "--database-url", &sealtrail_url])
        // The node's data directory holds its signing key and warm tier.
        .arg("--data-dir")
        .arg(&data_dir)
        .output()?;
    let verdict = String::from_utf8_lossy(&verify.stdout);
    let _ = std::fs::remove_dir_all(&data_dir);

    let rows = Arc::new(Rows::new(&bodies));
    let baseline_url = bench.url(&bench.baseline_db);
    for method in [Method::Insert, Method::Copy] {
        runtime.block_on(bench.checkpoint())?;
        let before = cpu_sample(None);
        let (result, connections) = runtime.block_on(baseline_scenario(
            &baseline_url,
            rows.clone(),
            method,
            options.clients,
            duration,
        ))?;
        // Sampled before the connections close: a backend's CPU time leaves /proc with it.
        let result = result.with_cpu(before, cpu_sample(None));
        drop(connections);
        results.push((method.name(), result));
    }

    println!("| scenario | events/s | requests | p50 ms | p99 ms | 503s |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, result) in &results {
        println!(
            "| {name} | {:.0} | {} | {:.1} | {:.1} | {} |",
            result.events_per_sec, result.requests, result.p50_ms, result.p99_ms, result.refused
        );
    }
    println!("\nCPU seconds per 100,000 events (2 cores give 2 CPU seconds per second):\n");
    println!("| scenario | Sealtrail server | PostgreSQL | load generator | rest of machine |");
    println!("|---|---:|---:|---:|---:|");
    for (name, result) in &results {
        let (server, postgres, generator, other) = result.cpu_per_100k;
        println!("| {name} | {server:.2} | {postgres:.2} | {generator:.2} | {other:.2} |");
    }
    let sizes = runtime.block_on(bench.sizes())?;
    println!("\nstorage after the run: {sizes}");
    println!("server exited with {status}");
    println!("verify: {}", verdict.lines().last().unwrap_or(""));
    Ok(())
}

/// The benchmark's role and databases, created fresh and dropped at the end.
struct Bench {
    admin_url: String,
    role: String,
    sealtrail_db: String,
    baseline_db: String,
    host: String,
    port: u16,
}

async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl Bench {
    async fn create(admin_url: &str) -> anyhow::Result<Bench> {
        let config: tokio_postgres::Config = admin_url.parse()?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => "127.0.0.1".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let role = format!("sealtrail_bench_{}", std::process::id());
        let bench = Bench {
            admin_url: admin_url.to_owned(),
            sealtrail_db: format!("{role}_sealtrail"),
            baseline_db: format!("{role}_baseline"),
            role,
            host,
            port,
        };
        let admin = connect(admin_url).await?;
        admin
            .batch_execute(&format!(
                "CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS",
                bench.role
            ))
            .await?;
        for database in [&bench.sealtrail_db, &bench.baseline_db] {
            admin
                .batch_execute(&format!("CREATE DATABASE {database} OWNER {}", bench.role))
                .await?;
        }
        let baseline = connect(&bench.url(&bench.baseline_db)).await?;
        // One indexed table, as a team would write it by hand: a surrogate key, idempotency on
        // (tenant_id, event_id), and the tenant/time index a query API needs. Key columns use
        // the "C" collation, as Sealtrail's do.
        baseline
            .batch_execute(
                "CREATE TABLE audit_events (
                    id             bigserial PRIMARY KEY,
                    tenant_id      text COLLATE \"C\" NOT NULL,
                    event_id       text COLLATE \"C\" NOT NULL,
                    timestamp_ns   bigint NOT NULL,
                    received_at_ns bigint NOT NULL,
                    actor_id       text NOT NULL,
                    actor_type     text NOT NULL,
                    action         text NOT NULL,
                    resource_type  text NOT NULL,
                    resource_id    text,
                    outcome        text NOT NULL,
                    ip_address     text,
                    user_agent     text,
                    request_id     text,
                    changes        text,
                    metadata       text,
                    UNIQUE (tenant_id, event_id)
                );
                CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, timestamp_ns);",
            )
            .await?;
        Ok(bench)
    }

    fn url(&self, database: &str) -> String {
        format!(
            "postgres://{}@{}:{}/{database}",
            self.role, self.host, self.port
        )
    }

    async fn checkpoint(&self) -> anyhow::Result<()> {
        connect(&self.admin_url)
            .await?
            .batch_execute("CHECKPOINT")
            .await?;
        Ok(())
    }

    async fn sizes(&self) -> anyhow::Result<String> {
        let mut parts = Vec::new();
        for database in [&self.sealtrail_db, &self.baseline_db] {
            let client = connect(&self.url(database)).await?;
            let size: i64 = client
                .query_one("SELECT pg_database_size(current_database())", &[])
                .await?
                .get(0);
            parts.push(format!("{database} {:.0} MiB", size as f64 / 1048576.0));
        }
        Ok(parts.join(", "))
    }

    async fn drop_all(&self) {
        let Ok(admin) = connect(&self.admin_url).await else {
            return;
        };
        for statement in [
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.sealtrail_db),
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.baseline_db),
            format!("DROP ROLE IF EXISTS {}", self.role),
        ] {
            if let Err(error) = admin.batch_execute(&statement).await {
                eprintln!("cleanup: {statement}: {error}");
            }
        }
    }
}

fn start_server(
    options: &Options,
    data_dir: &std::path::Path,
    database_url: &str,
) -> anyhow::Result<(Child, String)> {
    let binary = &options.server;
    let mut child = Command::new(binary)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .env("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SEALTRAIL_LOG", &options.server_log)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {binary} (build it with cargo build --release)"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        if let Some(address) = line?.strip_prefix("sealtrail listening on ") {
            let address = address.to_owned();
            thread::spawn(move || for _ in lines {});
            return Ok((child, address));
        }
    }
    bail!("server exited before listening")
}

/// Pre-built request bodies with a placeholder in every event_id.
struct Bodies {
    templates: Vec<Vec<u8>>,
    /// Byte offsets of the placeholders in each template.
    slots: Vec<Vec<usize>>,
    /// The same events as JSON values, for the baselines.
    events: Vec<Vec<serde_json::Value>>,
}

impl Bodies {
    fn new(batch: usize, seed: u64) -> Bodies {
        let mut rng = StdRng::seed_from_u64(seed);
        // Zipf-like tenant weights: tenant k gets weight 1/(k+1).
        let weights: Vec<f64> = (0..TENANTS).map(|k| 1.0 / (k as f64 + 1.0)).collect();
        let total: f64 = weights.iter().sum();
        let mut templates = Vec::new();
        let mut slots = Vec::new();
        let mut all_events = Vec::new();
        for _ in 0..TEMPLATES {
            // A SaaS backend batches the events of many customers: each event draws its tenant
            // (as in bench/ingest).
            let events: Vec<serde_json::Value> = (0..batch)
                .map(|_| {
                    let mut pick = rng.gen::<f64>() * total;
                    let mut tenant = TENANTS - 1;
                    for (k, weight) in weights.iter().enumerate() {
                        if pick < *weight {
                            tenant = k;
                            break;
                        }
                        pick -= weight;
                    }
                    realistic_event(&mut rng, tenant)
                })
                .collect();
            let text = serde_json::to_string(&events).expect("JSON values serialize");
            let positions: Vec<usize> = text
                .match_indices(ID_PLACEHOLDER)
                .map(|(at, _)| at)
                .collect();
            assert_eq!(positions.len(), batch);
            templates.push(text.into_bytes());
            slots.push(positions);
            all_events.push(events);
        }
        Bodies {
            templates,
            slots,
            events: all_events,
        }
    }

    /// A body with fresh, unique event ids.
    fn fill(&self, choice: usize, counter: &AtomicU64) -> Vec<u8> {
        let index = choice % self.templates.len();
        let mut body = self.templates[index].clone();
        for &at in &self.slots[index] {
            let id = counter.fetch_add(1, Ordering::Relaxed);
            let text = format!("{id:0width$x}", width = ID_WIDTH);
            body[at..at + ID_WIDTH].copy_from_slice(text.as_bytes());
        }
        body
    }
}

#[derive(Debug, Clone, Default)]
struct ScenarioResult {
    events: u64,
    requests: u64,
    refused: u64,
    events_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU seconds spent per 100,000 acknowledged events: (Sealtrail server, every PostgreSQL
    /// process, this load generator, everything else on the machine).
    cpu_per_100k: (f64, f64, f64, f64),
}

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`, 100 on Linux).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds used so far by a process (user + system), from /proc.
fn process_cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start at the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / CLOCK_TICKS_PER_SEC
}

/// CPU seconds so far of: the server, all PostgreSQL processes, this process, and the whole
/// machine (from /proc/stat).
#[derive(Debug, Clone, Copy, Default)]
struct CpuSample {
    server: f64,
    postgres: f64,
    generator: f64,
    machine: f64,
}

fn cpu_sample(server_pid: Option<u32>) -> CpuSample {
    let mut postgres = 0.0;
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "postgres" {
                postgres += process_cpu_secs(pid);
            }
        }
    }
    let machine = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            let line = stat.lines().next()?.to_owned();
            // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
            let values: Vec<f64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            let busy: f64 = values
                .iter()
                .enumerate()
                .filter(|(index, _)| *index != 3 && *index != 4)
                .map(|(_, value)| value)
                .sum();
            Some(busy / CLOCK_TICKS_PER_SEC)
        })
        .unwrap_or(0.0);
    CpuSample {
        server: server_pid.map_or(0.0, |pid| process_cpu_secs(&pid.to_string())),
        postgres,
        generator: process_cpu_secs("self"),
        machine,
    }
}

impl ScenarioResult {
    fn with_cpu(mut self, before: CpuSample, after: CpuSample) -> Self {
        let per = |seconds: f64| {
            if self.events == 0 {
                0.0
            } else {
                seconds * 100_000.0 / self.events as f64
            }
        };
        let server = after.server - before.server;
        let postgres = after.postgres - before.postgres;
        let generator = after.generator - before.generator;
        let other = (after.machine - before.machine) - server - postgres - generator;
        self.cpu_per_100k = (
            per(server),
            per(postgres),
            per(generator),
            per(other.max(0.0)),
        );
        self
    }
}

fn summarize(
    mut latencies: Vec<Duration>,
    events: u64,
    refused: u64,
    elapsed: Duration,
) -> ScenarioResult {
    latencies.sort();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[index].as_secs_f64() * 1000.0
    };
    ScenarioResult {
        events,
        requests: latencies.len() as u64,
        refused,
        events_per_sec: events as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        cpu_per_100k: (0.0, 0.0, 0.0, 0.0),
    }
}

static EVENT_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Closed loop over HTTP: every client sends its next batch when the last one was answered.
fn http_scenario(
    base: &str,
    bodies: &Bodies,
    durability: &str,
    clients: usize,
    duration: Duration,
) -> ScenarioResult {
    let url = format!("{base}/v1/events?durability={durability}");
    let latencies = Mutex::new(Vec::<Duration>::new());
    let events = AtomicU64::new(0);
    let refused = AtomicU64::new(0);
    let started = Instant::now();
    thread::scope(|scope| {
        for client in 0..clients {
            let (url, latencies, events, refused) = (&url, &latencies, &events, &refused);
            scope.spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(60))
                    .build();
                let mut local = Vec::new();
                let mut sent = 0usize;
                while started.elapsed() < duration {
                    let body = bodies.fill(client * 7 + sent, &EVENT_COUNTER);
                    let begin = Instant::now();
                    let response = agent
                        .post(url)
                        .set("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
                        .set("Content-Type", "application/json")
                        .send_bytes(&body);
                    sent += 1;
                    match response {
                        Ok(_) => {
                            local.push(begin.elapsed());
                            events.fetch_add(BATCH_EVENTS as u64, Ordering::Relaxed);
                        }
                        Err(ureq::Error::Status(503, _)) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            thread::sleep(Duration::from_millis(50));
                        }
                        Err(error) => panic!("request failed: {error}"),
                    }
                }
                latencies
                    .lock()
                    .expect("latency lock poisoned")
                    .extend(local);
            });
        }
    });
    let result = summarize(
        latencies.into_inner().expect("latency lock poisoned"),
        events.into_inner(),
        refused.into_inner(),
        started.elapsed(),
    );
    eprintln!("sealtrail {durability}: {result:?}");
    result
}

/// One event as the baseline stores it.
struct Row {
    tenant_id: String,
    timestamp_ns: i64,
    actor_id: String,
    actor_type: String,
    action: String,
    resource_type: String,
    resource_id: Option<String>,
    outcome: String,
    ip_address: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    changes: Option<String>,
    metadata: Option<String>,
}

/// The benchmark's events, parsed into columns before the clock starts.
struct Rows {
    batches: Vec<Vec<Row>>,
}

impl Rows {
    fn new(bodies: &Bodies) -> Rows {
        let text = |value: &serde_json::Value| value.as_str().map(str::to_owned);
        let batches = bodies
            .events
            .iter()
            .map(|events| {
                events
                    .iter()
                    .enumerate()
                    .map(|(n, event)| Row {
                        tenant_id: text(&event["tenant_id"]).unwrap_or_default(),
                        timestamp_ns: 1_768_469_400_000_000_000 + n as i64,
                        actor_id: text(&event["actor_id"]).unwrap_or_default(),
                        actor_type: "human".into(),
                        action: text(&event["action"]).unwrap_or_default(),
                        resource_type: text(&event["resource_type"]).unwrap_or_default(),
                        resource_id: text(&event["resource_id"]),
                        outcome: text(&event["outcome"]).unwrap_or_default(),
                        ip_address: text(&event["ip_address"]),
                        user_agent: text(&event["user_agent"]),
                        request_id: text(&event["request_id"]),
                        changes: (!event["changes"].is_null())
                            .then(|| event["changes"].to_string()),
                        metadata: (!event["metadata"].is_null())
                            .then(|| event["metadata"].to_string()),
                    })
                    .collect()
            })
            .collect();
        Rows { batches }
    }
}

#[derive(Debug, Clone, Copy)]
enum Method {
    Insert,
    Copy,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Insert => "plain PostgreSQL, batched INSERT (1,000 rows/statement), no chain",
            Method::Copy => "plain PostgreSQL, binary COPY (1,000 rows/COPY), no chain",
        }
    }
}

const BASELINE_COLUMNS: &str =
    "tenant_id, event_id, timestamp_ns, received_at_ns, actor_id, actor_type, action, \
     resource_type, resource_id, outcome, ip_address, user_agent, request_id, changes, metadata";
const BASELINE_COLUMN_COUNT: usize = 15;

/// The multi-row INSERT of one batch: `VALUES ($1, …, $15), ($16, …), …`.
fn insert_sql(rows: usize) -> String {
    let mut sql = format!("INSERT INTO audit_events ({BASELINE_COLUMNS}) VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..BASELINE_COLUMN_COUNT {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", row * BASELINE_COLUMN_COUNT + column + 1));
        }
        sql.push(')');
    }
    sql
}

/// Closed loop straight into PostgreSQL: every client inserts its next batch when the last one
/// committed.
async fn baseline_scenario(
    url: &str,
    rows: Arc<Rows>,
    method: Method,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<(ScenarioResult, Vec<Client>)> {
    let mut tasks = Vec::new();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    for client in 0..clients {
        let client_db = connect(url).await?;
        let rows = rows.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let insert = client_db.prepare(&insert_sql(BATCH_EVENTS)).await?;
            let copy = format!("COPY audit_events ({BASELINE_COLUMNS}) FROM STDIN BINARY");
            let types = [
                Type::TEXT,
                Type::TEXT,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
            ];
            let mut latencies = Vec::new();
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) && started.elapsed() < duration {
                let batch = &rows.batches[(client * 7 + sent) % rows.batches.len()];
                let first_id = EVENT_COUNTER.fetch_add(BATCH_EVENTS as u64, Ordering::Relaxed);
                let event_ids: Vec<String> = (0..batch.len() as u64)
                    .map(|n| format!("evt-{:0width$x}", first_id + n, width = ID_WIDTH))
                    .collect();
                let received_at_ns = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_nanos() as i64;
                let begin = Instant::now();
                match method {
                    Method::Insert => {
                        let mut params: Vec<&(dyn ToSql + Sync)> =
                            Vec::with_capacity(batch.len() * BASELINE_COLUMN_COUNT);
                        for (row, event_id) in batch.iter().zip(&event_ids) {
                            params.extend(row_params(row, event_id, &received_at_ns));
                        }
                        client_db.execute(&insert, &params).await?;
                    }
                    Method::Copy => {
                        let sink = client_db.copy_in(&copy).await?;
                        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
                        for (row, event_id) in batch.iter().zip(&event_ids) {
                            writer
                                .as_mut()
                                .write(&row_params(row, event_id, &received_at_ns))
                                .await?;
                        }
                        writer.finish().await?;
                    }
                }
                latencies.push(begin.elapsed());
                sent += 1;
            }
            anyhow::Ok((latencies, client_db))
        }));
    }
    let mut latencies = Vec::new();
    let mut connections = Vec::new();
    for task in tasks {
        let (task_latencies, connection) = task.await??;
        latencies.extend(task_latencies);
        connections.push(connection);
    }
    stop.store(true, Ordering::Relaxed);
    let events = latencies.len() as u64 * BATCH_EVENTS as u64;
    let result = summarize(latencies, events, 0, started.elapsed());
    eprintln!("baseline {method:?}: {result:?}");
    Ok((result, connections))
}

fn row_params<'a>(
    row: &'a Row,
    event_id: &'a String,
    received_at_ns: &'a i64,
) -> [&'a (dyn ToSql + Sync); BASELINE_COLUMN_COUNT] {
    [
        &row.tenant_id,
        event_id,
        &row.timestamp_ns,
        received_at_ns,
        &row.actor_id,
        &row.actor_type,
        &row.action,
        &row.resource_type,
        &row.resource_id,
        &row.outcome,
        &row.ip_address,
        &row.user_agent,
        &row.request_id,
        &row.changes,
        &row.metadata,
    ]
}
