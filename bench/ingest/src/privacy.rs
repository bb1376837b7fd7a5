//! Privacy benchmark (`bench/privacy/run`), against the real release server:
//!
//! 1. **Ingest cost of field encryption.** Two servers side by side, each on a fresh data
//!    directory: on the second every one of the 50 tenants has `ip_address`, `user_agent`,
//!    `changes` and `metadata` encrypted. Both take the same load in alternating rounds (sync
//!    and async batches of 1,000, closed loop, the ingest benchmark's events), after a warm-up
//!    round that also makes the 25,000 subjects' keys. The issue asks for the encrypted
//!    throughput within 15% of the plain one; medians of the rounds and their ratio.
//! 2. **Erasure time.** Subjects with 100,000 events each on the encrypted server; the time of
//!    `POST /v1/tenants/{t}/subjects/{actor}/erase` (asked: under 1 s), then a read showing
//!    the subject's fields erased.
//!
//! Usage: `bench/privacy/run [--seconds N] [--clients N] [--rounds N] [--subjects N]`.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sealtrail_bench_ingest::{
    cpu_model, run_scenario, start_server, Bodies, ScenarioResult, ADMIN_TOKEN, TENANTS,
};
use serde_json::{json, Value};

/// Events of each erased subject.
const SUBJECT_EVENTS: usize = 100_000;

struct Options {
    seconds: u64,
    clients: usize,
    rounds: usize,
    subjects: usize,
    server: String,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn post(agent: &ureq::Agent, url: &str, body: &Value) -> anyhow::Result<Value> {
    let response = agent
        .post(url)
        .set("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_json(body.clone())
        .with_context(|| format!("POST {url}"))?;
    Ok(response.into_json()?)
}

fn main() -> anyhow::Result<()> {
    let mut options = Options {
        seconds: 10,
        clients: 8,
        rounds: 3,
        subjects: 3,
        server: "target/release/sealtrail".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().context("every flag takes a value")?;
        match flag.as_str() {
            "--seconds" => options.seconds = value.parse()?,
            "--clients" => options.clients = value.parse()?,
            "--rounds" => options.rounds = value.parse()?,
            "--subjects" => options.subjects = value.parse()?,
            "--server" => options.server = value,
            other => bail!("unknown flag {other}"),
        }
    }
    println!("# Sealtrail privacy benchmark");
    println!(
        "machine: {} cores, {}",
        thread::available_parallelism()?.get(),
        cpu_model()
    );
    println!(
        "clients: {}, seconds per scenario: {}, rounds: {}\n",
        options.clients, options.seconds, options.rounds
    );
    let root = std::env::temp_dir().join(format!("sealtrail-bench-privacy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut plain = start_server(&options.server, &root.join("plain"), &[])?;
    let mut sealed = start_server(&options.server, &root.join("sealed"), &[])?;
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build();
    for tenant in 0..TENANTS {
        let url = format!("{}/v1/tenants/tenant-{tenant:02}", sealed.1);
        agent
            .put(&url)
            .set("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .send_json(json!({"encryption": {"fields": ["ip_address", "user_agent", "changes", "metadata"]}}))
            .with_context(|| format!("PUT {url}"))?;
    }
    let bodies = Bodies::new(1000, 7);
    let duration = Duration::from_secs(options.seconds);
    let run = |server: &(std::process::Child, String), durability: &str| -> ScenarioResult {
        run_scenario(
            &server.1,
            server.0.id(),
            &bodies,
            durability,
            options.clients,
            duration,
            None,
        )
    };
    // Warm-up: caches, and on the encrypted server every subject's key.
    let warm_plain = run(&plain, "sync");
    let warm_sealed = run(&sealed, "sync");
    println!(
        "warm-up (sync, batch 1000, makes the subjects' keys): plain {:.0} events/s, encrypted {:.0} events/s\n",
        warm_plain.events_per_sec, warm_sealed.events_per_sec
    );
    println!("| round | durability | plain events/s | encrypted events/s | ratio | plain p99 ms | encrypted p99 ms |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    let mut ratios = std::collections::BTreeMap::<&str, (Vec<f64>, Vec<f64>)>::new();
    for round in 1..=options.rounds {
        for durability in ["sync", "async"] {
            let a = run(&plain, durability);
            let b = run(&sealed, durability);
            println!(
                "| {round} | {durability} | {:.0} | {:.0} | {:.2} | {:.1} | {:.1} |",
                a.events_per_sec,
                b.events_per_sec,
                b.events_per_sec / a.events_per_sec,
                a.p99_ms,
                b.p99_ms
            );
            let entry = ratios.entry(durability).or_default();
            entry.0.push(a.events_per_sec);
            entry.1.push(b.events_per_sec);
        }
    }
    println!();
    for (durability, (mut a, mut b)) in ratios {
        let (a, b) = (median(&mut a), median(&mut b));
        println!(
            "median {durability}: plain {a:.0} events/s, encrypted {b:.0} events/s, ratio {:.2} ({:+.1}%)",
            b / a,
            (b / a - 1.0) * 100.0
        );
    }

    // Erasure of subjects with 100,000 events each.
    println!("\n| subject | events | erase ms | keys destroyed | fields after |");
    println!("|---|---:|---:|---:|---|");
    let mut times = Vec::new();
    for subject in 0..options.subjects {
        let actor = format!("subject-{subject}@customer-00.example.com");
        let template: Vec<Value> = (0..1000)
            .map(|n| {
                json!({"tenant_id": "tenant-00", "actor_id": actor, "action": "update",
                    "resource_type": "document", "resource_id": format!("doc-{n}"),
                    "ip_address": "192.0.2.44", "user_agent": "Mozilla/5.0 (erasure bench)",
                    "changes": {"before": {"title": "a"}, "after": {"title": "b"}},
                    "metadata": {"n": n}})
            })
            .collect();
        for _ in 0..SUBJECT_EVENTS / 1000 {
            post(&agent, &format!("{}/v1/events", sealed.1), &json!(template))?;
        }
        let started = Instant::now();
        let erased = post(
            &agent,
            &format!("{}/v1/tenants/tenant-00/subjects/{actor}/erase", sealed.1),
            &json!({}),
        )?;
        let took = started.elapsed().as_secs_f64() * 1000.0;
        times.push(took);
        let page: Value = agent
            .get(&format!(
                "{}/v1/events?tenant_id=tenant-00&actor_id={actor}&limit=1",
                sealed.1
            ))
            .set("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .call()?
            .into_json()?;
        let state = &page["events"][0]["sealed"]["ip_address"]["state"];
        println!(
            "| {subject} | {SUBJECT_EVENTS} | {took:.1} | {} | ip_address {state} |",
            erased["keys_destroyed"]
        );
    }
    if !times.is_empty() {
        println!("\nmedian erasure: {:.1} ms", median(&mut times));
    }
    for server in [&mut plain, &mut sealed] {
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(server.0.id().to_string())
            .status()?;
        server.0.wait()?;
    }
    let verify = std::process::Command::new(&options.server)
        .arg("verify")
        .arg("--data-dir")
        .arg(root.join("sealed"))
        .output()?;
    let verdict = String::from_utf8_lossy(&verify.stdout);
    println!(
        "verify (encrypted server, after the erasures): {}",
        verdict.lines().last().unwrap_or("")
    );
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
