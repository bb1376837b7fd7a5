//! Ingest benchmark: starts the real release server on a fresh data directory and loads it over
//! HTTP from concurrent clients with realistic events (50 tenants of Zipf-skewed sizes, ~500
//! bytes per event), then reports events/s and request latency percentiles per scenario:
//!
//! 1. sync, batches of 1,000, closed loop (as fast as the server commits);
//! 2. sync, batches of 100, open loop at half of scenario 1's rate (latency at moderate load);
//! 3. async, batches of 1,000, closed loop;
//! 4. async overload: more clients than the writer can absorb; counts 503s and tracks the
//!    server's peak RSS, which must stay bounded.
//!
//! Run: `bench/ingest/run` (builds release, then runs this). Flags: `--seconds N` per scenario,
//! `--clients N`.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sealtrail_bench_ingest::{cpu_model, rss_mib, start_server, Bodies, ADMIN_TOKEN};

struct Options {
    seconds: u64,
    clients: usize,
    server: String,
    /// Extra arguments for `sealtrail serve` (repeat `--server-arg`).
    server_args: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let mut options = Options {
        seconds: 10,
        clients: 8,
        server: "target/release/sealtrail".into(),
        server_args: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().context("every flag takes a value")?;
        match flag.as_str() {
            "--seconds" => options.seconds = value.parse()?,
            "--clients" => options.clients = value.parse()?,
            "--server" => options.server = value,
            "--server-arg" => options.server_args.push(value),
            other => bail!("unknown flag {other}"),
        }
    }
    let data_dir =
        std::env::temp_dir().join(format!("sealtrail-bench-ingest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut server = start_server(&options.server, &data_dir, &options.server_args)?;
    let base = server.1.clone();
    let pid = server.0.id();
    println!("# Sealtrail ingest benchmark");
    println!(
        "machine: {} cores, {}",
        thread::available_parallelism()?.get(),
        cpu_model()
    );
    println!(
        "server: {} (data dir {})",
        options.server,
        data_dir.display()
    );
    println!(
        "clients: {}, seconds per scenario: {}\n",
        options.clients, options.seconds
    );

    let bodies_1000 = Bodies::new(1000, 7);
    let bodies_100 = Bodies::new(100, 11);
    println!(
        "event size: {:.0} bytes of JSON on average\n",
        bodies_1000.templates[0].len() as f64 / 1000.0
    );
    let duration = Duration::from_secs(options.seconds);
    let mut results = Vec::new();

    let sync_1000 = run_scenario(
        &base,
        pid,
        &bodies_1000,
        "sync",
        options.clients,
        duration,
        None,
    );
    results.push(("sync, batch 1000, closed loop", sync_1000.clone()));
    let half_rate = sync_1000.events_per_sec / 2.0;
    let sync_100 = run_scenario(
        &base,
        pid,
        &bodies_100,
        "sync",
        options.clients,
        duration,
        Some(half_rate),
    );
    results.push((
        "sync, batch 100, open loop at half the batch-1000 rate",
        sync_100,
    ));
    let async_1000 = run_scenario(
        &base,
        pid,
        &bodies_1000,
        "async",
        options.clients,
        duration,
        None,
    );
    results.push(("async, batch 1000, closed loop", async_1000));
    let overload = run_scenario(
        &base,
        pid,
        &bodies_1000,
        "async",
        options.clients * 4,
        duration,
        None,
    );
    results.push(("async overload, batch 1000, 4x clients", overload));

    println!("| scenario | events/s | requests | p50 ms | p99 ms | 503s | server peak RSS MiB |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, result) in &results {
        println!(
            "| {name} | {:.0} | {} | {:.1} | {:.1} | {} | {:.0} |",
            result.events_per_sec,
            result.requests,
            result.p50_ms,
            result.p99_ms,
            result.refused,
            result.peak_rss_mib
        );
    }
    if let Some(rate) = Some(half_rate) {
        println!("\nopen-loop target rate: {rate:.0} events/s");
    }

    // Graceful stop: every accepted event must be committed.
    Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()?;
    let status = server.0.wait()?;
    let total: u64 = results.iter().map(|(_, r)| r.events).sum();
    println!("\nserver exited with {status}; {total} events acknowledged in all");
    let verify = Command::new(&options.server)
        .arg("verify")
        .arg("--data-dir")
        .arg(&data_dir)
        .output()?;
    let verdict = String::from_utf8_lossy(&verify.stdout);
    println!("verify: {}", verdict.lines().last().unwrap_or(""));
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

#[derive(Debug, Clone, Default)]
struct ScenarioResult {
    events: u64,
    requests: u64,
    refused: u64,
    events_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    peak_rss_mib: f64,
}

static EVENT_COUNTER: AtomicU64 = AtomicU64::new(0);

fn run_scenario(
    base: &str,
    pid: u32,
    bodies: &Bodies,
    durability: &str,
    clients: usize,
    duration: Duration,
    target_events_per_sec: Option<f64>,
) -> ScenarioResult {
    let url = format!("{base}/v1/events?durability={durability}");
    let latencies = Mutex::new(Vec::<Duration>::new());
    let events = AtomicU64::new(0);
    let refused = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let peak_rss = Mutex::new(0.0f64);
    let batch = bodies.slots[0].len() as f64;
    let started = Instant::now();
    thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let rss = rss_mib(pid);
                let mut peak = peak_rss.lock().unwrap();
                *peak = peak.max(rss);
                drop(peak);
                thread::sleep(Duration::from_millis(100));
            }
        });
        for client in 0..clients {
            let (url, latencies, events, refused) = (&url, &latencies, &events, &refused);
            scope.spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(60))
                    .build();
                let interval = target_events_per_sec
                    .map(|rate| Duration::from_secs_f64(batch * clients as f64 / rate));
                let mut local = Vec::new();
                let mut sent = 0u32;
                let begin = Instant::now() + Duration::from_millis(client as u64 * 3);
                while begin.elapsed() < duration {
                    let body = bodies.fill(client * 7 + sent as usize, &EVENT_COUNTER);
                    // Open loop: the clock starts at the scheduled send time, so a slow response
                    // cannot hide queueing delay (no coordinated omission).
                    let scheduled = match interval {
                        Some(interval) => {
                            let at = begin + interval * sent;
                            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                                thread::sleep(wait);
                            }
                            at
                        }
                        None => Instant::now(),
                    };
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
                            events.fetch_add(batch as u64, Ordering::Relaxed);
                        }
                        Err(ureq::Error::Status(503, _)) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            thread::sleep(Duration::from_millis(50));
                        }
                        Err(error) => panic!("request failed: {error}"),
                    }
                }
                latencies.lock().unwrap().extend(local);
            });
        }
        // Clients stop on their own; the RSS sampler stops after them.
        thread::sleep(duration + Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies = latencies.into_inner().unwrap();
    latencies.sort();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[index].as_secs_f64() * 1000.0
    };
    let events = events.into_inner();
    let result = ScenarioResult {
        events,
        requests: latencies.len() as u64,
        refused: refused.into_inner(),
        events_per_sec: events as f64 / elapsed,
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        peak_rss_mib: *peak_rss.lock().unwrap(),
    };
    eprintln!("{durability} x{clients}: {result:?}");
    result
}
