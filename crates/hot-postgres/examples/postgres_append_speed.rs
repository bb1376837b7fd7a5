//! Measures the PostgreSQL store's group commit alone (no HTTP, no parsing), with the CPU it
//! costs this process and the PostgreSQL server per event:
//! `cargo run --release -p sealtrail-hot-postgres --example postgres_append_speed [groups]`.
//! Uses a fresh database (see `sealtrail_hot_postgres::testing`), dropped at the end.

use std::sync::Arc;
use std::time::Instant;

use sealtrail_hot::EventStore;
use sealtrail_hot_postgres::testing::TestDatabase;
use sealtrail_hot_postgres::PostgresStore;
use sealtrail_model::{ActorType, Event, Outcome, PendingEvent};

/// Requests per group and events per request: a busy node's group commit.
const REQUESTS: usize = 8;
const REQUEST_EVENTS: usize = 1_000;
const TENANTS: u64 = 50;

/// CPU seconds (user + system) of a process, from /proc; 100 clock ticks per second.
fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<f64> = rest
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0.0))
        .collect();
    (fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0)) / 100.0
}

/// CPU seconds of every PostgreSQL process on this machine.
fn postgres_cpu_secs() -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "postgres")
        })
        .map(|pid| cpu_secs(&pid))
        .sum()
}

fn event(counter: u64, received_at_ns: i64) -> PendingEvent {
    PendingEvent {
        event: Event {
            event_id: format!("evt-{counter:016x}"),
            timestamp_ns: received_at_ns - 1_000_000 + counter as i64,
            tenant_id: format!("tenant-{:02}", counter % TENANTS),
            actor_id: format!("user-{}@customer.example.com", counter % 500),
            actor_type: ActorType::Human,
            action: "update".into(),
            resource_type: "document".into(),
            resource_id: Some(format!("document/{counter:08x}")),
            outcome: Outcome::Success,
            ip_address: Some("10.1.2.3".into()),
            user_agent: Some(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"
                    .into(),
            ),
            request_id: Some(format!("req-{counter:016x}")),
            changes: Some(r#"{"after":{"role":"editor"},"before":{"role":"viewer"}}"#.into()),
            metadata: Some(
                r#"{"bytes":123456,"department":"finance","session":"s-0a0b0c0d"}"#.into(),
            ),
        },
        received_at_ns,
        timestamp_supplied: true,
        capture: None,
    }
}

#[tokio::main]
async fn main() {
    let groups: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(40);
    let database = TestDatabase::create().await;
    let store = PostgresStore::connect(&database.url()).await.unwrap();
    let received_at_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let mut counter = 0u64;
    let mut batches_counter = 1_000_000u64;
    let batches: Vec<Vec<Vec<PendingEvent>>> = (0..groups)
        .map(|_| {
            (0..REQUESTS)
                .map(|_| {
                    (0..REQUEST_EVENTS)
                        .map(|_| {
                            batches_counter += 1;
                            event(batches_counter, received_at_ns)
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    // The store's own sessions (after a first append opened them), apart from the rest of the
    // server (WAL writer, checkpointer, autovacuum, other databases' sessions).
    let first: Vec<Vec<PendingEvent>> = (0..REQUESTS)
        .map(|_| {
            counter += 1;
            vec![event(counter, received_at_ns)]
        })
        .collect();
    store.append(Arc::new(first)).await.unwrap();
    let admin = database.admin_client().await;
    let sessions: Vec<String> = admin
        .query(
            "SELECT pid::text FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let sessions_cpu = || sessions.iter().map(|pid| cpu_secs(pid)).sum::<f64>();
    let (own_before, postgres_before, sessions_before) =
        (cpu_secs("self"), postgres_cpu_secs(), sessions_cpu());
    let started = Instant::now();
    for batch in batches {
        store.append(Arc::new(batch)).await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let events = (groups * REQUESTS * REQUEST_EVENTS) as f64;
    let per_event_us = |seconds: f64| seconds * 1e6 / events;
    let sessions = sessions_cpu() - sessions_before;
    println!(
        "{events} events in {groups} groups, {elapsed:.2}s: {:.0} events/s; CPU per event: \
         this process {:.1} µs, its PostgreSQL sessions {:.1} µs, rest of PostgreSQL {:.1} µs",
        events / elapsed,
        per_event_us(cpu_secs("self") - own_before),
        per_event_us(sessions),
        per_event_us(postgres_cpu_secs() - postgres_before - sessions),
    );
}
