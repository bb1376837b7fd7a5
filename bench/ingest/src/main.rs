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
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context};
use sealtrail_bench_ingest::{cpu_model, run_scenario, start_server, Bodies};

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
