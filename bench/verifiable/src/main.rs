//! Verifiable-log benchmark on one large tenant (default 10 million events):
//!
//! 1. loads the tenant straight into the SQLite hot store (the same append path the server's
//!    group commit uses, so tiles are written as in production), reusing the data directory on
//!    later runs;
//! 2. starts the release server on it, cuts a checkpoint, and times inclusion proofs for random
//!    events over HTTP (each proof is also verified against the signed root);
//! 3. stops the server and times `sealtrail verify` of the whole tenant.
//!
//! Run: `bench/verifiable/run [--events N]`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use sealtrail_hot::EventStore;
use sealtrail_hot_sqlite::SqliteStore;
use sealtrail_ledger::{open_checkpoint, tenant_origin, InclusionProof, NoteVerifier};
use sealtrail_model::{ActorType, Event, Outcome, PendingEvent};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TENANT: &str = "big-tenant";
// 32 bytes as hex: the server refuses a weaker platform-admin token.
const ADMIN_TOKEN: &str = "5ea17a11b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e";
const PROOFS: usize = 2_000;

fn main() -> anyhow::Result<()> {
    let mut events: u64 = 10_000_000;
    let mut server = PathBuf::from("target/release/sealtrail");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().context("every flag takes a value")?;
        match flag.as_str() {
            "--events" => events = value.parse()?,
            "--server" => server = value.into(),
            other => bail!("unknown flag {other}"),
        }
    }
    let data_dir = std::env::temp_dir().join(format!("sealtrail-bench-verifiable-{events}"));
    println!("# Sealtrail verifiable-log benchmark: one tenant of {events} events");
    load(&data_dir, events)?;
    let size = std::fs::metadata(data_dir.join("hot.sqlite3"))?.len();
    println!(
        "hot store: {:.1} GiB ({:.0} bytes per event)",
        size as f64 / (1u64 << 30) as f64,
        size as f64 / events as f64
    );
    prove(&server, &data_dir, events)?;
    verify(&server, &data_dir, events)?;
    Ok(())
}

fn load(data_dir: &Path, events: u64) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let store = SqliteStore::open(data_dir)?;
        let have = store
            .chain_heads()
            .await?
            .into_iter()
            .find(|(tenant, _)| tenant == TENANT)
            .map_or(0, |(_, head)| head.seq);
        if have >= events {
            println!(
                "reusing {} (already holds {have} events)",
                data_dir.display()
            );
            return anyhow::Ok(());
        }
        let started = Instant::now();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let batch = 10_000u64;
        let mut next = have;
        while next < events {
            let request: Vec<PendingEvent> = (next..(next + batch).min(events))
                .map(|n| realistic(&mut rng, n))
                .collect();
            next += request.len() as u64;
            store.append(Arc::new(vec![request])).await?;
            if next % 1_000_000 == 0 {
                println!(
                    "  loaded {next} events ({:.0}/s)",
                    (next - have) as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
        println!(
            "loaded {} events in {:.0} s",
            events - have,
            started.elapsed().as_secs_f64()
        );
        anyhow::Ok(())
    })
}

fn realistic(rng: &mut impl Rng, n: u64) -> PendingEvent {
    let timestamp_ns = 1_780_000_000_000_000_000 + n as i64 * 1_000_000;
    PendingEvent {
        event: Event {
            event_id: format!("evt-{n}"),
            timestamp_ns,
            tenant_id: TENANT.into(),
            actor_id: format!("user-{}@customer.example.com", rng.gen_range(0..5_000)),
            actor_type: ActorType::Human,
            action: ["read", "update", "create", "delete", "login"][rng.gen_range(0..5)].into(),
            resource_type: "document".into(),
            resource_id: Some(format!("document/{:08x}", rng.gen::<u32>())),
            outcome: if rng.gen_ratio(1, 20) { Outcome::Failure } else { Outcome::Success },
            ip_address: Some(format!("10.{}.{}.{}", rng.gen::<u8>(), rng.gen::<u8>(), rng.gen::<u8>())),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0".into()),
            request_id: Some(format!("req-{:016x}", rng.gen::<u64>())),
            changes: None,
            metadata: Some(format!(r#"{{"bytes":{},"department":"finance"}}"#, rng.gen_range(0..1_000_000))),
        },
        received_at_ns: timestamp_ns,
        timestamp_supplied: true,
        capture: None,
    }
}

fn prove(server: &Path, data_dir: &Path, events: u64) -> anyhow::Result<()> {
    let mut child = Command::new(server)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SEALTRAIL_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the server (cargo build --release first)")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let base = loop {
        let line = lines.next().context("server exited")??;
        if let Some(address) = line.strip_prefix("sealtrail listening on ") {
            break address.to_owned();
        }
    };
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(600))
        .build();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let started = Instant::now();
    let note = agent
        .post(&format!("{base}/v1/tenants/{TENANT}/checkpoint"))
        .set("Authorization", &auth)
        .call()?
        .into_string()?;
    println!(
        "checkpoint of {events} events cut in {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let key = NoteVerifier::parse(
        agent
            .get(&format!("{base}/v1/verifier-key"))
            .set("Authorization", &auth)
            .call()?
            .into_string()?
            .trim(),
    )?;
    let checkpoint = open_checkpoint(&note, &[key], &tenant_origin(TENANT))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let mut latencies = Vec::with_capacity(PROOFS);
    for _ in 0..PROOFS {
        let n = rng.gen_range(0..events);
        let url = format!(
            "{base}/v1/tenants/{TENANT}/proofs/inclusion?event_id=evt-{n}&tree_size={}",
            checkpoint.tree_size
        );
        let started = Instant::now();
        let body = agent
            .get(&url)
            .set("Authorization", &auth)
            .call()?
            .into_string()?;
        latencies.push(started.elapsed());
        let proof: InclusionProof = serde_json::from_str(&body)?;
        proof
            .verify(&checkpoint.root_hash)
            .map_err(|error| anyhow::anyhow!("proof for evt-{n} failed: {error}"))?;
    }
    latencies.sort();
    let percentile =
        |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;
    println!(
        "inclusion proofs over HTTP ({PROOFS}, random events, each verified): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(0.5),
        percentile(0.99),
        percentile(1.0)
    );
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()?;
    child.wait()?;
    Ok(())
}

fn verify(server: &Path, data_dir: &Path, events: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let output = Command::new(server)
        .arg("verify")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--tenant", TENANT])
        .output()?;
    let seconds = started.elapsed().as_secs_f64();
    let verdict = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("verify failed: {verdict}");
    }
    println!(
        "full verification (chain, tiles, checkpoints) of {events} events: {seconds:.1} s = {:.0} events/s",
        events as f64 / seconds
    );
    Ok(())
}
