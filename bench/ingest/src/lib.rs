//! Shared by the ingest benchmarks (`ingest-bench`, `ingest-beside-reads`): the realistic
//! request bodies, starting the server, and /proc readings.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

// 32 bytes as hex: the server refuses a weaker platform-admin token.
pub const ADMIN_TOKEN: &str = "5ea17a11b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e";
/// Tenants drawn by the bench events (`tenant-00` …).
pub const TENANTS: usize = 50;
/// Width of the unique part of each event_id, patched into pre-built bodies per request so the
/// client spends its CPU on sending, not on building JSON.
pub const ID_WIDTH: usize = 16;
/// Placeholder replaced by a unique id in every event_id.
pub const ID_PLACEHOLDER: &str = "################";

/// The CPU model from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Starts `sealtrail serve` on a free port of 127.0.0.1; returns the child and its base URL.
pub fn start_server(
    binary: &str,
    data_dir: &std::path::Path,
    extra: &[String],
) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SEALTRAIL_LOG", "error")
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
#[derive(Debug)]
pub struct Bodies {
    /// Request bodies (JSON arrays).
    pub templates: Vec<Vec<u8>>,
    /// Byte offsets of the placeholders in each template.
    pub slots: Vec<Vec<usize>>,
}

impl Bodies {
    /// 16 bodies of `batch` events each, every event drawing its tenant (Zipf over 50).
    pub fn new(batch: usize, seed: u64) -> Bodies {
        let mut rng = StdRng::seed_from_u64(seed);
        // Zipf-like tenant weights: tenant k gets weight 1/(k+1).
        let weights: Vec<f64> = (0..TENANTS).map(|k| 1.0 / (k as f64 + 1.0)).collect();
        let total: f64 = weights.iter().sum();
        let mut templates = Vec::new();
        let mut slots = Vec::new();
        for _ in 0..16 {
            // A SaaS backend batches the events of many customers: each event draws its tenant.
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
            let text = serde_json::to_string(&events).unwrap();
            let positions: Vec<usize> = text
                .match_indices(ID_PLACEHOLDER)
                .map(|(at, _)| at)
                .collect();
            assert_eq!(positions.len(), batch);
            templates.push(text.into_bytes());
            slots.push(positions);
        }
        Bodies { templates, slots }
    }

    /// A body with fresh, unique event ids.
    pub fn fill(&self, choice: usize, counter: &AtomicU64) -> Vec<u8> {
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

/// One event of `tenant-NN` with a placeholder event_id.
pub fn realistic_event(rng: &mut StdRng, tenant: usize) -> serde_json::Value {
    const ACTIONS: [&str; 8] = [
        "read",
        "update",
        "create",
        "delete",
        "login",
        "export",
        "role_assign",
        "api_key_rotate",
    ];
    const RESOURCES: [&str; 5] = ["document", "user", "setting", "api_key", "session"];
    const DEPARTMENTS: [&str; 5] = ["finance", "engineering", "sales", "legal", "support"];
    let actor = rng.gen_range(0..500);
    let action = ACTIONS[rng.gen_range(0..ACTIONS.len())];
    let resource_type = RESOURCES[rng.gen_range(0..RESOURCES.len())];
    let mut event = json!({
        "event_id": format!("evt-{ID_PLACEHOLDER}"),
        "tenant_id": format!("tenant-{tenant:02}"),
        "actor_id": format!("user-{actor}@customer-{tenant:02}.example.com"),
        "action": action,
        "resource_type": resource_type,
        "resource_id": format!("{resource_type}/{:08x}", rng.gen::<u32>()),
        "outcome": if rng.gen_ratio(1, 20) { "failure" } else { "success" },
        "ip_address": format!("10.{}.{}.{}", rng.gen::<u8>(), rng.gen::<u8>(), rng.gen::<u8>()),
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
        "request_id": format!("req-{:016x}", rng.gen::<u64>()),
        "metadata": {"department": DEPARTMENTS[rng.gen_range(0..DEPARTMENTS.len())], "session": format!("s-{:08x}", rng.gen::<u32>()), "bytes": rng.gen_range(0..10_000_000)},
    });
    if action == "update" || action == "role_assign" {
        event["changes"] = json!({"before": {"role": "viewer", "title": "Q3 plan"}, "after": {"role": "editor", "title": "Q3 plan v2"}});
    }
    event
}

/// Resident set size of a process, in MiB (0 when gone).
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| {
                    line.split_whitespace()
                        .nth(1)
                        .and_then(|kb| kb.parse::<f64>().ok())
                })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[derive(Debug, Clone, Default)]
pub struct ScenarioResult {
    pub events: u64,
    pub requests: u64,
    pub refused: u64,
    pub events_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub peak_rss_mib: f64,
}

static EVENT_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Loads the server from `clients` threads with `bodies` for `duration`: closed loop, or open
/// loop at `target_events_per_sec` (latency from the scheduled send time); reports events/s,
/// latency percentiles, 503s and the server's peak RSS.
pub fn run_scenario(
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
