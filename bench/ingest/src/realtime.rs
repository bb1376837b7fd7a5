//! Real-time benchmark (`bench/realtime/run`), against the real release server:
//!
//! 1. **Ingest cost of rules and a sink.** Sync batches of 1,000, closed loop, on a server whose
//!    50 tenants have no alert rules and no sink, then on a fresh server where each tenant has
//!    3 rules (the defaults but `api-key-rate`) and one platform-wide Splunk HEC sink delivers
//!    to a local receiver. The issue asks for the second within 10% of the first.
//! 2. **HEC forwarding rate.** Events the local HEC receiver got per second while the sink
//!    catches up with what scenario 1 ingested (it must keep up with 50,000 events/s).
//! 3. **Alert latency.** At half of scenario 1's rate (open loop, batches of 100, as in the
//!    ingest benchmark), a probe tenant gets one event every 100 ms that fires a rule; from the
//!    probe's 201 to the arrival of the alert's signed webhook (p99 under 1 s) and to the SSE
//!    client's receipt of the probe event itself (p99 under 500 ms).
//!
//! Usage: `bench/realtime/run [--seconds N] [--clients N]`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sealtrail_bench_ingest::{cpu_model, run_scenario, start_server, Bodies, ADMIN_TOKEN, TENANTS};
use serde_json::{json, Value};

struct Options {
    seconds: u64,
    clients: usize,
    server: String,
}

fn main() -> anyhow::Result<()> {
    let mut options = Options {
        seconds: 10,
        clients: 8,
        server: "target/release/sealtrail".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().context("every flag takes a value")?;
        match flag.as_str() {
            "--seconds" => options.seconds = value.parse()?,
            "--clients" => options.clients = value.parse()?,
            "--server" => options.server = value,
            other => bail!("unknown flag {other}"),
        }
    }
    println!("# Sealtrail real-time benchmark");
    println!(
        "machine: {} cores, {}",
        thread::available_parallelism()?.get(),
        cpu_model()
    );
    println!(
        "clients: {}, seconds per scenario: {}\n",
        options.clients, options.seconds
    );
    let duration = Duration::from_secs(options.seconds);
    let bodies = Bodies::new(1000, 7);
    let bodies_100 = Bodies::new(100, 11);

    // 1a. No rules, no sink.
    let (mut server, base, data_dir) = fresh_server(&options.server, "plain")?;
    for tenant in 0..TENANTS {
        for rule in ["brute-force", "bulk-export", "admin-burst", "api-key-rate"] {
            delete(
                &base,
                &format!("/v1/tenants/tenant-{tenant:02}/alert-rules/{rule}"),
            )?;
        }
    }
    let plain = run_scenario(
        &base,
        server.id(),
        &bodies,
        "sync",
        options.clients,
        duration,
        None,
    );
    stop(&mut server, &data_dir)?;

    // 1b. Three rules per tenant and a platform-wide HEC sink.
    let hec = Receiver::start();
    let (mut server, base, data_dir) = fresh_server(&options.server, "rules")?;
    for tenant in 0..TENANTS {
        delete(
            &base,
            &format!("/v1/tenants/tenant-{tenant:02}/alert-rules/api-key-rate"),
        )?;
    }
    post(
        &base,
        "/v1/sinks",
        &json!({"kind": "splunk_hec", "url": format!("{}/services/collector/event", hec.url), "token": "bench"}),
    )?;
    let sink_started = Instant::now();
    let with_rules = run_scenario(
        &base,
        server.id(),
        &bodies,
        "sync",
        options.clients,
        duration,
        None,
    );
    let ingested = with_rules.events;
    // 2. The sink catches up: its rate is what the receiver got over the time it took.
    let caught_up = wait_for(Duration::from_secs(600), || hec.events() >= ingested);
    let forwarded = hec.events();
    let forward_secs = hec
        .last_arrival()
        .map_or(0.0, |last| last.duration_since(sink_started).as_secs_f64());
    let alerts = metric(&base, "sealtrail_alerts_raised_total")?;

    // 3. Alert and stream latency at half load, on the same server.
    let half_rate = plain.events_per_sec / 2.0;
    let hook = Receiver::start();
    post(
        &base,
        "/v1/tenants/probe/webhooks",
        &json!({"url": format!("{}/hook", hook.url)}),
    )?;
    post(
        &base,
        "/v1/tenants/probe/alert-rules",
        &json!({"name": "every-probe", "match": {"action": "bench.probe"}, "group_by": "resource_id",
            "window_seconds": 60, "aggregate": "count", "threshold": 0}),
    )?;
    let sse = SseClient::start(&base, "probe");
    let acks: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let prober = {
        let (acks, done, base) = (acks.clone(), done.clone(), base.clone());
        thread::spawn(move || {
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(30))
                .build();
            let mut n = 0u64;
            thread::sleep(Duration::from_millis(500));
            while !done.load(Ordering::Relaxed) {
                let id = format!("probe-{n}");
                let sent = agent
                    .post(&format!("{base}/v1/events"))
                    .set("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
                    .send_json(
                        json!({"event_id": id, "tenant_id": "probe", "actor_id": "bench",
                        "action": "bench.probe", "resource_type": "probe", "resource_id": id}),
                    );
                if sent.is_ok() {
                    acks.lock().unwrap().insert(id, Instant::now());
                }
                n += 1;
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // Where the time goes: how far the alert engine and the webhook fall behind the log.
    let lag_peaks: Arc<Mutex<(u64, u64)>> = Arc::default();
    let sampler = {
        let (lag_peaks, done, base) = (lag_peaks.clone(), done.clone(), base.clone());
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let (engine, hook) = feed_lags(&base);
                let mut peaks = lag_peaks.lock().unwrap();
                *peaks = (peaks.0.max(engine), peaks.1.max(hook));
                drop(peaks);
                thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let loaded = run_scenario(
        &base,
        server.id(),
        &bodies_100,
        "sync",
        options.clients,
        duration,
        Some(half_rate),
    );
    done.store(true, Ordering::Relaxed);
    prober.join().expect("prober");
    sampler.join().expect("sampler");
    let (engine_lag, hook_lag) = *lag_peaks.lock().unwrap();
    thread::sleep(Duration::from_secs(3));
    let acks = acks.lock().unwrap().clone();
    let webhook_ms = latencies(
        &acks,
        &hook.arrivals_by(|body| {
            body["data"]["metadata"]["events"][0]
                .as_str()
                .map(str::to_owned)
        }),
    );
    let sse_ms = latencies(&acks, &sse.arrivals());
    stop(&mut server, &data_dir)?;

    println!("| scenario | figure |");
    println!("|---|---:|");
    println!(
        "| sync batch 1000, no rules, no sink | {:.0} events/s |",
        plain.events_per_sec
    );
    println!(
        "| sync batch 1000, 3 rules per tenant + HEC sink | {:.0} events/s ({:.2}x; {alerts} alerts raised) |",
        with_rules.events_per_sec,
        with_rules.events_per_sec / plain.events_per_sec
    );
    println!(
        "| HEC forwarding | {forwarded} of {ingested} events in {forward_secs:.1} s = {:.0} events/s{} |",
        forwarded as f64 / forward_secs.max(1e-9),
        if caught_up { "" } else { " (did not catch up in 600 s)" }
    );
    println!(
        "| load beside the probes (half rate {half_rate:.0} events/s) | {:.0} events/s, p99 {:.0} ms |",
        loaded.events_per_sec, loaded.p99_ms
    );
    println!(
        "| peak lag at half load (sampled every 200 ms) | alert engine {engine_lag} events, alert webhook {hook_lag} events |"
    );
    for (name, values) in [
        ("probe 201 → alert webhook", &webhook_ms),
        ("probe 201 → SSE event", &sse_ms),
    ] {
        println!(
            "| {name} | {} of {} probes; p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms |",
            values.len(),
            acks.len(),
            percentile(values, 0.50),
            percentile(values, 0.99),
            percentile(values, 1.0)
        );
    }
    Ok(())
}

fn fresh_server(
    binary: &str,
    name: &str,
) -> anyhow::Result<(std::process::Child, String, std::path::PathBuf)> {
    let data_dir = std::env::temp_dir().join(format!(
        "sealtrail-bench-realtime-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&data_dir);
    // The receivers are on this machine.
    let (child, base) = start_server(binary, &data_dir, &["--allow-private-destinations".into()])?;
    Ok((child, base, data_dir))
}

fn stop(server: &mut std::process::Child, data_dir: &std::path::Path) -> anyhow::Result<()> {
    Command::new("kill")
        .arg("-TERM")
        .arg(server.id().to_string())
        .status()?;
    server.wait()?;
    let _ = std::fs::remove_dir_all(data_dir);
    Ok(())
}

fn request(method: &str, url: &str) -> ureq::Request {
    ureq::request(method, url).set("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
}

fn post(base: &str, path: &str, body: &Value) -> anyhow::Result<()> {
    request("POST", &format!("{base}{path}"))
        .send_json(body.clone())
        .with_context(|| format!("POST {path}"))?;
    Ok(())
}

fn delete(base: &str, path: &str) -> anyhow::Result<()> {
    request("DELETE", &format!("{base}{path}"))
        .call()
        .with_context(|| format!("DELETE {path}"))?;
    Ok(())
}

fn metric(base: &str, name: &str) -> anyhow::Result<u64> {
    let text = request("GET", &format!("{base}/metrics"))
        .call()?
        .into_string()?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0))
}

/// The alert engine's and the webhooks' lag from `/metrics`, in events.
fn feed_lags(base: &str) -> (u64, u64) {
    let Ok(text) = request("GET", &format!("{base}/metrics"))
        .call()
        .map_err(anyhow::Error::from)
        .and_then(|response| Ok(response.into_string()?))
    else {
        return (0, 0);
    };
    let mut lags = (0, 0);
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("sealtrail_feed_lag_events{consumer=\"") else {
            continue;
        };
        let value: u64 = rest
            .rsplit(' ')
            .next()
            .and_then(|value| value.parse().ok())
            .unwrap_or(0);
        if rest.starts_with("alerts\"") {
            lags.0 = value;
        } else if rest.starts_with("destination/wh_") {
            lags.1 = lags.1.max(value);
        }
    }
    lags
}

fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    condition()
}

/// Milliseconds from each probe's acknowledgement to its arrival.
fn latencies(acks: &HashMap<String, Instant>, arrivals: &HashMap<String, Instant>) -> Vec<f64> {
    let mut values: Vec<f64> = acks
        .iter()
        .filter_map(|(id, ack)| {
            let arrived = arrivals.get(id)?;
            Some(arrived.saturating_duration_since(*ack).as_secs_f64() * 1000.0)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    values
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Request bodies with their arrival times.
type Arrived = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

/// A local HTTP receiver: answers 200 at once and keeps each body with its arrival time.
struct Receiver {
    url: String,
    bodies: Arrived,
    events: Arc<AtomicU64>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let bodies: Arrived = Arc::default();
        let events = Arc::new(AtomicU64::new(0));
        let (shared, count) = (bodies.clone(), events.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (shared, count) = (shared.clone(), count.clone());
                thread::spawn(move || {
                    let mut writer = stream.try_clone().expect("a stream");
                    let mut reader = BufReader::new(stream);
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut length = 0;
                        loop {
                            let mut header = String::new();
                            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                                return;
                            }
                            let header = header.trim_end().to_ascii_lowercase();
                            if header.is_empty() {
                                break;
                            }
                            if let Some(value) = header.strip_prefix("content-length:") {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; length];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        // HEC batches hold one JSON object per line.
                        let lines = body
                            .split(|byte| *byte == b'\n')
                            .filter(|l| !l.is_empty())
                            .count();
                        count.fetch_add(lines as u64, Ordering::Relaxed);
                        shared.lock().unwrap().push((Instant::now(), body));
                        if writer
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Receiver {
            url,
            bodies,
            events,
        }
    }

    fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    fn last_arrival(&self) -> Option<Instant> {
        self.bodies.lock().unwrap().last().map(|(at, _)| *at)
    }

    /// First arrival time by the key `key` finds in each JSON body.
    fn arrivals_by(&self, key: impl Fn(&Value) -> Option<String>) -> HashMap<String, Instant> {
        let mut arrivals = HashMap::new();
        for (at, body) in self.bodies.lock().unwrap().iter() {
            if let Some(id) = serde_json::from_slice(body).ok().as_ref().and_then(&key) {
                arrivals.entry(id).or_insert(*at);
            }
        }
        arrivals
    }
}

/// A live-stream client: first arrival time of each event id.
struct SseClient {
    arrivals: Arc<Mutex<HashMap<String, Instant>>>,
}

impl SseClient {
    fn start(base: &str, tenant: &str) -> SseClient {
        let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let url = format!("{base}/v1/stream?tenant_id={tenant}&action=bench.probe");
        let shared = arrivals.clone();
        thread::spawn(move || {
            let Ok(response) = request("GET", &url).call() else {
                return;
            };
            for line in BufReader::new(response.into_reader()).lines() {
                let Ok(line) = line else { return };
                if let Some(data) = line.strip_prefix("data: ") {
                    let at = Instant::now();
                    if let Some(id) = serde_json::from_str::<Value>(data)
                        .ok()
                        .and_then(|event| event["event_id"].as_str().map(str::to_owned))
                    {
                        shared.lock().unwrap().entry(id).or_insert(at);
                    }
                }
            }
        });
        SseClient { arrivals }
    }

    fn arrivals(&self) -> HashMap<String, Instant> {
        self.arrivals.lock().unwrap().clone()
    }
}
