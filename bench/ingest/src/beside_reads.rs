//! Sync ingest latency at half load, quiet and beside heavy reads, side by side in one run (the
//! "one log core" figure: the p99 of sync batches of 100 at half load while a 12-month export
//! and a SQL aggregate run beside it is at most twice the quiet p99).
//!
//! Starts `sealtrail serve` on a data directory already holding history (see
//! `bench/ingest-beside-reads/run`, which imports 12 months and moves most of it to the warm
//! tier), then:
//!
//! 1. times one export and one aggregate alone (the cost of the heavy reads by themselves);
//! 2. finds the sync capacity for batches of 100: `--clients` closed-loop clients for
//!    `--capacity-seconds` (or takes `--rate`);
//! 3. runs `--rounds` rounds of two phases of `--seconds` each at half that rate (open loop,
//!    paced, latency measured from each request's scheduled send time): "quiet", then "beside",
//!    where one client keeps exporting `--export-tenant` whole (`GET /v1/export`) and another
//!    keeps running the aggregate on `--query-tenant` (`POST /v1/query`), both started a second
//!    before measuring and drained before the next phase;
//! 4. prints each phase's p50/p99, the medians over rounds, their ratio, and where the CPU went
//!    (server threads by name, the rest of the machine) per phase.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sealtrail_bench_ingest::{cpu_model, rss_mib, start_server, Bodies, ADMIN_TOKEN};

const BATCH: usize = 100;
const DEFAULT_SQL: &str =
    "SELECT action, outcome, count(*) AS n, count(DISTINCT actor_id) AS actors \
     FROM events GROUP BY action, outcome ORDER BY n DESC";

struct Options {
    server: String,
    data_dir: String,
    seconds: u64,
    rounds: usize,
    clients: usize,
    capacity_seconds: u64,
    rate: Option<f64>,
    export_tenant: String,
    query_tenant: String,
    sql: String,
}

static EVENT_COUNTER: AtomicU64 = AtomicU64::new(0);

fn main() -> anyhow::Result<()> {
    let mut options = Options {
        server: "target/release/sealtrail".into(),
        data_dir: String::new(),
        seconds: 15,
        rounds: 5,
        clients: 8,
        capacity_seconds: 10,
        rate: None,
        export_tenant: "history-00".into(),
        query_tenant: "history-01".into(),
        sql: DEFAULT_SQL.into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().context("every flag takes a value")?;
        match flag.as_str() {
            "--server" => options.server = value,
            "--data-dir" => options.data_dir = value,
            "--seconds" => options.seconds = value.parse()?,
            "--rounds" => options.rounds = value.parse()?,
            "--clients" => options.clients = value.parse()?,
            "--capacity-seconds" => options.capacity_seconds = value.parse()?,
            "--rate" => options.rate = Some(value.parse()?),
            "--export-tenant" => options.export_tenant = value,
            "--query-tenant" => options.query_tenant = value,
            "--sql" => options.sql = value,
            other => bail!("unknown flag {other}"),
        }
    }
    if options.data_dir.is_empty() {
        bail!("--data-dir (a data directory holding the seeded history) is required");
    }
    // No scheduled lifecycle pass during the measurement.
    let server_args = vec!["--lifecycle-interval-secs".to_owned(), "0".to_owned()];
    let (mut child, base) = start_server(
        &options.server,
        std::path::Path::new(&options.data_dir),
        &server_args,
    )?;
    let pid = child.id();
    let outcome = run(&options, &base, pid);
    Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()?;
    let status = child.wait()?;
    println!("server exited with {status}");
    outcome
}

fn run(options: &Options, base: &str, pid: u32) -> anyhow::Result<()> {
    println!("# Sync ingest (batches of {BATCH}) at half load, quiet vs beside an export and a SQL aggregate");
    println!(
        "machine: {} cores, {}",
        thread::available_parallelism()?.get(),
        cpu_model()
    );
    println!(
        "server: {} (pid {pid}, data dir {})",
        options.server, options.data_dir
    );
    let bodies = Bodies::new(BATCH, 11);

    // 1. The heavy reads alone.
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(600))
        .build();
    let (events, bytes, seconds) = export_once(&agent, base, &options.export_tenant)?;
    println!(
        "export of {} alone (cold cache): {events} events, {:.1} MB in {seconds:.2} s ({:.0} events/s)",
        options.export_tenant,
        bytes as f64 / 1e6,
        events as f64 / seconds
    );
    let (events, bytes, seconds) = export_once(&agent, base, &options.export_tenant)?;
    println!(
        "export of {} alone: {events} events, {:.1} MB in {seconds:.2} s ({:.0} events/s)",
        options.export_tenant,
        bytes as f64 / 1e6,
        events as f64 / seconds
    );
    let (rows, seconds) = query_once(&agent, base, &options.query_tenant, &options.sql)?;
    println!(
        "aggregate over {} alone: {rows} bytes of answer in {seconds:.2} s: {}",
        options.query_tenant, options.sql
    );
    let (_, seconds) = query_once(&agent, base, &options.query_tenant, &options.sql)?;
    println!("aggregate again: {seconds:.2} s");

    // 2. Capacity for sync batches of 100.
    let rate = match options.rate {
        Some(rate) => {
            println!("capacity: not measured, --rate {rate:.0} events/s given as half load");
            rate
        }
        None => {
            let capacity = paced(
                base,
                &bodies,
                options.clients,
                Duration::from_secs(options.capacity_seconds),
                None,
            );
            println!(
                "capacity (sync, batch {BATCH}, {} closed-loop clients, {} s): {:.0} events/s, p50 {:.1} ms, p99 {:.1} ms, {} refused",
                options.clients,
                options.capacity_seconds,
                capacity.events_per_sec,
                capacity.p50_ms,
                capacity.p99_ms,
                capacity.refused
            );
            capacity.events_per_sec / 2.0
        }
    };
    println!(
        "half load: {rate:.0} events/s = {:.1} requests/s over {} clients; {} rounds of {} s quiet then {} s beside\n",
        rate / BATCH as f64,
        options.clients,
        options.rounds,
        options.seconds,
        options.seconds
    );

    // 3. Rounds.
    println!("| round | phase | events/s | requests | p50 ms | p99 ms | max ms | refused | exports | aggregates | heavy 429/503 | server CPU s | rest of machine CPU s |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let duration = Duration::from_secs(options.seconds);
    let mut p50 = [Vec::new(), Vec::new()];
    let mut p99 = [Vec::new(), Vec::new()];
    let mut threads_cpu: [BTreeMap<String, f64>; 2] = [BTreeMap::new(), BTreeMap::new()];
    let mut export_rates = Vec::new();
    let mut peak_rss = 0.0f64;
    for round in 1..=options.rounds {
        for (index, phase) in ["quiet", "beside"].into_iter().enumerate() {
            let heavy = index == 1;
            let stop = AtomicBool::new(false);
            let exports = Mutex::new(Vec::<(u64, f64)>::new());
            let aggregates = Mutex::new(Vec::<f64>::new());
            let busy = AtomicU64::new(0);
            let (result, cpu_before, cpu_after) = thread::scope(|scope| {
                if heavy {
                    scope.spawn(|| {
                        lower_this_thread();
                        let agent = ureq::AgentBuilder::new()
                            .timeout(Duration::from_secs(600))
                            .build();
                        while !stop.load(Ordering::Relaxed) {
                            match export_once(&agent, base, &options.export_tenant) {
                                Ok((events, _, seconds)) => {
                                    exports.lock().unwrap().push((events, seconds))
                                }
                                Err(error) if error.to_string().contains("busy") => {
                                    busy.fetch_add(1, Ordering::Relaxed);
                                    thread::sleep(Duration::from_millis(100));
                                }
                                Err(error) => panic!("export failed: {error:#}"),
                            }
                        }
                    });
                    scope.spawn(|| {
                        lower_this_thread();
                        let agent = ureq::AgentBuilder::new()
                            .timeout(Duration::from_secs(600))
                            .build();
                        while !stop.load(Ordering::Relaxed) {
                            match query_once(&agent, base, &options.query_tenant, &options.sql) {
                                Ok((_, seconds)) => aggregates.lock().unwrap().push(seconds),
                                Err(error) if error.to_string().contains("busy") => {
                                    busy.fetch_add(1, Ordering::Relaxed);
                                    thread::sleep(Duration::from_millis(100));
                                }
                                Err(error) => panic!("aggregate failed: {error:#}"),
                            }
                        }
                    });
                    // The heavy reads are under way before measuring starts.
                    thread::sleep(Duration::from_secs(1));
                }
                // CPU is counted over the measured window only, not the drain after it.
                let cpu_before = CpuSample::take(pid);
                let result = paced(base, &bodies, options.clients, duration, Some(rate));
                let cpu_after = CpuSample::take(pid);
                stop.store(true, Ordering::Relaxed);
                (result, cpu_before, cpu_after)
            });
            // Every heavy read in flight has finished (scope joined) before the next phase.
            peak_rss = peak_rss.max(rss_mib(pid));
            let (server_cpu, rest_cpu) = cpu_after.since(&cpu_before);
            for (name, seconds) in cpu_after.threads_since(&cpu_before) {
                *threads_cpu[index].entry(name).or_default() += seconds;
            }
            let exports = exports.into_inner().unwrap();
            for (events, seconds) in &exports {
                export_rates.push(*events as f64 / seconds);
            }
            let aggregates = aggregates.into_inner().unwrap();
            println!(
                "| {round} | {phase} | {:.0} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {server_cpu:.1} | {rest_cpu:.1} |",
                result.events_per_sec,
                result.requests,
                result.p50_ms,
                result.p99_ms,
                result.max_ms,
                result.refused,
                exports.len(),
                aggregates.len(),
                busy.load(Ordering::Relaxed),
            );
            p50[index].push(result.p50_ms);
            p99[index].push(result.p99_ms);
        }
    }

    // 4. Summary.
    let ratios: Vec<f64> = p99[0].iter().zip(&p99[1]).map(|(q, b)| b / q).collect();
    let (quiet_p99, beside_p99) = (median(&p99[0]), median(&p99[1]));
    let ratio = beside_p99 / quiet_p99;
    println!();
    println!(
        "median over {} rounds: quiet p50 {:.1} ms, p99 {quiet_p99:.1} ms; beside p50 {:.1} ms, p99 {beside_p99:.1} ms",
        options.rounds,
        median(&p50[0]),
        median(&p50[1])
    );
    println!(
        "ratio of the median p99s (beside / quiet): {ratio:.2}x; per round: {}; median of the per-round ratios {:.2}x",
        ratios
            .iter()
            .map(|r| format!("{r:.2}x"))
            .collect::<Vec<_>>()
            .join(", "),
        median(&ratios)
    );
    println!(
        "target (beside p99 at most 2x quiet p99): {}",
        if ratio <= 2.0 { "MET" } else { "NOT MET" }
    );
    if !export_rates.is_empty() {
        println!(
            "export beside ingest: median {:.0} events/s over {} exports",
            median(&export_rates),
            export_rates.len()
        );
    }
    println!("server peak RSS (sampled after each phase): {peak_rss:.0} MiB");
    println!("\nserver CPU seconds by thread name, all rounds (quiet | beside):");
    let mut names: Vec<&String> = threads_cpu[0].keys().chain(threads_cpu[1].keys()).collect();
    names.sort();
    names.dedup();
    let mut rows: Vec<(f64, f64, &String)> = names
        .into_iter()
        .map(|name| {
            (
                threads_cpu[0].get(name).copied().unwrap_or(0.0),
                threads_cpu[1].get(name).copied().unwrap_or(0.0),
                name,
            )
        })
        .filter(|(q, b, _)| q + b >= 0.05)
        .collect();
    rows.sort_by(|a, b| (b.0 + b.1).total_cmp(&(a.0 + a.1)));
    for (quiet, beside, name) in rows {
        println!("  {name:<24} {quiet:>7.1} | {beside:>7.1}");
    }
    Ok(())
}

/// The heavy-read clients stand for callers on other machines: their own CPU (reading ~1 GB
/// of NDJSON per export) runs at nice 19 so it does not take the server's cores from it.
fn lower_this_thread() {
    if let Ok(link) = std::fs::read_link("/proc/thread-self") {
        if let Some(tid) = link.file_name() {
            let _ = Command::new("renice")
                .args(["-n", "19", "-p"])
                .arg(tid)
                .stdout(std::process::Stdio::null())
                .status();
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// One whole export, read to the end: (events, bytes, seconds). An error mentioning "busy" is a
/// 429/503 (the tenant's or the process's heavy-read slots are taken).
fn export_once(agent: &ureq::Agent, base: &str, tenant: &str) -> anyhow::Result<(u64, u64, f64)> {
    let started = Instant::now();
    let response = match agent
        .get(&format!("{base}/v1/export?tenant_id={tenant}"))
        .set("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .call()
    {
        Ok(response) => response,
        Err(ureq::Error::Status(429 | 503, _)) => bail!("busy"),
        Err(error) => return Err(error.into()),
    };
    let mut reader = response.into_reader();
    let mut buffer = vec![0u8; 1 << 16];
    let (mut bytes, mut events) = (0u64, 0u64);
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        bytes += read as u64;
        events += buffer[..read].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    Ok((events, bytes, started.elapsed().as_secs_f64()))
}

/// One SQL query: (answer bytes, seconds).
fn query_once(
    agent: &ureq::Agent,
    base: &str,
    tenant: &str,
    sql: &str,
) -> anyhow::Result<(usize, f64)> {
    let started = Instant::now();
    let response = match agent
        .post(&format!("{base}/v1/query"))
        .set("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_json(serde_json::json!({"sql": sql, "tenant_id": tenant}))
    {
        Ok(response) => response,
        Err(ureq::Error::Status(429 | 503, _)) => bail!("busy"),
        Err(ureq::Error::Status(code, response)) => {
            bail!(
                "HTTP {code}: {}",
                response.into_string().unwrap_or_default()
            )
        }
        Err(error) => return Err(error.into()),
    };
    let body = response.into_string()?;
    Ok((body.len(), started.elapsed().as_secs_f64()))
}

#[derive(Debug, Default)]
struct Paced {
    events_per_sec: f64,
    requests: usize,
    refused: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// Sync batches of 100 from `clients` threads for `duration`: closed loop without a rate, else
/// open loop at `rate` events/s, each request's latency counted from its scheduled send time
/// (a slow answer cannot hide the queueing it causes).
fn paced(
    base: &str,
    bodies: &Bodies,
    clients: usize,
    duration: Duration,
    rate: Option<f64>,
) -> Paced {
    let url = format!("{base}/v1/events?durability=sync");
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
                let interval =
                    rate.map(|rate| Duration::from_secs_f64(BATCH as f64 * clients as f64 / rate));
                // Clients are spread evenly over one interval.
                let offset =
                    interval.map_or(Duration::ZERO, |i| i * client as u32 / clients as u32);
                let begin = Instant::now() + offset;
                let end = started + duration;
                let mut local = Vec::new();
                let mut sent = 0u32;
                loop {
                    let scheduled = match interval {
                        Some(interval) => begin + interval * sent,
                        None => Instant::now(),
                    };
                    if scheduled >= end {
                        break;
                    }
                    if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                        thread::sleep(wait);
                    }
                    let body = bodies.fill(client * 7 + sent as usize, &EVENT_COUNTER);
                    let response = agent
                        .post(url)
                        .set("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
                        .set("Content-Type", "application/json")
                        .send_bytes(&body);
                    let elapsed = scheduled.elapsed();
                    sent += 1;
                    match response {
                        Ok(_) => {
                            local.push(elapsed);
                            events.fetch_add(BATCH as u64, Ordering::Relaxed);
                        }
                        Err(ureq::Error::Status(503, _)) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => panic!("ingest request failed: {error}"),
                    }
                }
                latencies.lock().unwrap().extend(local);
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies = latencies.into_inner().unwrap();
    latencies.sort();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[index].as_secs_f64() * 1000.0
    };
    Paced {
        events_per_sec: events.into_inner() as f64 / elapsed,
        requests: latencies.len(),
        refused: refused.into_inner(),
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        max_ms: percentile(1.0),
    }
}

/// CPU time of the server (per thread) and of the whole machine, from /proc.
struct CpuSample {
    server: f64,
    machine_busy: f64,
    threads: BTreeMap<u32, (String, f64)>,
}

fn ticks() -> f64 {
    100.0 // USER_HZ on Linux
}

/// utime + stime of a /proc/.../stat line, in seconds, and the thread's name.
fn stat_times(text: &str) -> Option<(String, f64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text[open + 1..close].to_owned();
    let fields: Vec<&str> = text[close + 2..].split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name, (utime + stime) / ticks()))
}

impl CpuSample {
    fn take(pid: u32) -> CpuSample {
        let server = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|text| stat_times(&text))
            .map_or(0.0, |(_, seconds)| seconds);
        let machine_busy = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| {
                let line = text.lines().next()?.to_owned();
                let values: Vec<f64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|v| v.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
                let total: f64 = values.iter().take(8).sum();
                Some((total - values.get(3)? - values.get(4)?) / ticks())
            })
            .unwrap_or(0.0);
        let mut threads = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for entry in entries.flatten() {
                let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                if let Some(times) = std::fs::read_to_string(entry.path().join("stat"))
                    .ok()
                    .and_then(|text| stat_times(&text))
                {
                    threads.insert(tid, times);
                }
            }
        }
        CpuSample {
            server,
            machine_busy,
            threads,
        }
    }

    /// (server CPU seconds, CPU seconds of everything else on the machine) since `before`.
    fn since(&self, before: &CpuSample) -> (f64, f64) {
        let server = self.server - before.server;
        (server, self.machine_busy - before.machine_busy - server)
    }

    /// CPU seconds per thread name since `before` (threads born since count from zero).
    fn threads_since(&self, before: &CpuSample) -> BTreeMap<String, f64> {
        let mut by_name = BTreeMap::new();
        for (tid, (name, seconds)) in &self.threads {
            let earlier = before.threads.get(tid).map_or(0.0, |(_, s)| *s);
            *by_name.entry(name.clone()).or_insert(0.0) += seconds - earlier;
        }
        by_name
    }
}
