//! Measures the hot store's append rate alone (no HTTP, no parsing):
//! `cargo run --release -p sealtrail-hot-sqlite --example append_speed`.

use std::sync::Arc;
use std::time::Instant;

use sealtrail_hot::EventStore;
use sealtrail_hot_sqlite::SqliteStore;
use sealtrail_model::{ActorType, Event, Outcome, PendingEvent};

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("append-speed-{}", std::process::id()));
    let store = SqliteStore::open(&dir).unwrap();
    let batches = 300;
    let batch_size = 1000;
    let mut counter = 0u64;
    let started = Instant::now();
    for _ in 0..batches {
        let request: Vec<PendingEvent> = (0..batch_size)
            .map(|_| {
                counter += 1;
                PendingEvent {
                    event: Event {
                        event_id: format!("evt-{counter:016x}"),
                        timestamp_ns: 1_790_000_000_000_000_000 + counter as i64,
                        tenant_id: format!("tenant-{:02}", counter % 50),
                        actor_id: format!("user-{}@customer.example.com", counter % 500),
                        actor_type: ActorType::Human,
                        action: "update".into(),
                        resource_type: "document".into(),
                        resource_id: Some(format!("document/{counter:08x}")),
                        outcome: Outcome::Success,
                        ip_address: Some("10.1.2.3".into()),
                        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0".into()),
                        request_id: Some(format!("req-{counter:016x}")),
                        changes: Some(r#"{"after":{"role":"editor"},"before":{"role":"viewer"}}"#.into()),
                        metadata: Some(r#"{"bytes":123456,"department":"finance","session":"s-0a0b0c0d"}"#.into()),
                    },
                    received_at_ns: 1_790_000_000_000_000_000,
                    timestamp_supplied: true,
                    capture: None,
                }
            })
            .collect();
        store.append(Arc::new(vec![request])).await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{} events in {elapsed:.2}s: {:.0} events/s",
        batches * batch_size,
        (batches * batch_size) as f64 / elapsed
    );
    let _ = std::fs::remove_dir_all(&dir);
}
