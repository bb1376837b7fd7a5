//! `sealtrail-client` against the real server: an outage mid-stream, a client killed while it
//! spools, and the tower layer's request context, each checked by reading the stored events back.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::routing::delete;
use axum::Router;
use common::*;
use sealtrail_client::{
    current_request_id, Client, Config, Delivery, Durability, Event, RequestContextLayer,
};
use serde_json::Value;

/// Every stored event of `tenant`, read back over `GET /v1/events` with a reader key.
fn stored_events(server: &Server, reader_key: &str, tenant: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = server.url(&format!("/v1/events?tenant_id={tenant}&limit=1000"));
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = get(&url, reader_key);
        assert_eq!(status, 200, "{page}");
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return events,
        }
    }
}

/// Reads the stored events until at least `expected` are there (async events are committed
/// shortly after their 202), then once more, so a late duplicate would show.
fn stored_events_settled(
    server: &Server,
    reader_key: &str,
    tenant: &str,
    expected: usize,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = stored_events(server, reader_key, tenant);
        if events.len() >= expected || Instant::now() >= deadline {
            std::thread::sleep(Duration::from_millis(300));
            return stored_events(server, reader_key, tenant);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn counts_by_event_id(events: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for event in events {
        *counts
            .entry(event["event_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    counts
}

/// A TCP forwarder on a fixed address in front of the server, as a load balancer would be: the
/// server restarts on another port (`serve` is started on port 0), the client keeps its URL.
struct Forwarder {
    address: SocketAddr,
    upstream: Arc<Mutex<String>>,
}

impl Forwarder {
    async fn start(upstream: &str) -> Forwarder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let upstream = Arc::new(Mutex::new(upstream.to_owned()));
        let target = Arc::clone(&upstream);
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let target = target.lock().unwrap().clone();
                tokio::spawn(async move {
                    // A stopped server refuses the connection; the client then sees its
                    // connection closed, as it would behind a real balancer.
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Forwarder { address, upstream }
    }

    fn point_at(&self, server: &Server) {
        *self.upstream.lock().unwrap() = host_port(server);
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

fn host_port(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

fn fast_config(base_url: &str, key: &str, spool: &Path) -> Config {
    let mut config = Config::new(base_url, key, spool);
    config.batch_events_max = 40;
    config.batch_linger = Duration::from_millis(50);
    config.backoff_base = Duration::from_millis(20);
    config.backoff_cap = Duration::from_millis(300);
    config.send_attempts_before_spool = 2;
    config.request_timeout = Duration::from_secs(10);
    config
}

#[test]
fn a_server_outage_mid_stream_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let ingest_key = server.create_key("acme", "ingest");
    let reader_key = server.create_key("acme", "reader");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let forwarder = runtime.block_on(Forwarder::start(&host_port(&server)));
    let client = runtime
        .block_on(Client::new(fast_config(
            &forwarder.url(),
            &ingest_key,
            &dir.path().join("spool"),
        )))
        .unwrap();

    const EVENTS: usize = 600;
    let mut server = Some(server);
    let mut event_ids = Vec::new();
    let mut critical = Vec::new();
    let mut spooled_during_outage = 0;
    for index in 0..EVENTS {
        if index == 200 {
            // The server dies mid-stream; the client keeps recording.
            let status = server.take().unwrap().signal_and_wait("KILL");
            assert!(!status.success());
        }
        if index == 399 {
            spooled_during_outage = client.status().spooled_batches;
        }
        if index == 400 {
            let restarted = Server::start(&data);
            forwarder.point_at(&restarted);
            server = Some(restarted);
        }
        // Every tenth event is a critical action: settled only by the server's 201.
        let durability = if index % 10 == 0 {
            Durability::Sync
        } else {
            Durability::Async
        };
        let event = Event::builder("acme", format!("user-{}", index % 7), "update", "document")
            .resource_id(format!("doc-{index}"))
            .durability(durability)
            .build()
            .unwrap();
        let recorded = client.record(event).unwrap();
        event_ids.push(recorded.event_id().to_owned());
        if durability == Durability::Sync {
            critical.push(recorded);
        }
        std::thread::sleep(Duration::from_millis(4));
    }
    assert!(
        spooled_during_outage > 0,
        "the outage must have sent batches to the spool"
    );
    runtime.block_on(async {
        // Bounded waits: a lost event must fail the test, not hang it.
        let patience = Duration::from_secs(30);
        for recorded in critical {
            let delivery = tokio::time::timeout(patience, recorded)
                .await
                .expect("every critical event is committed once the server is back");
            assert_eq!(delivery.unwrap(), Delivery::Committed);
        }
        tokio::time::timeout(patience, client.flush())
            .await
            .expect("flush returns once the server is back")
            .unwrap();
        let report = client.shutdown(Duration::from_secs(30)).await;
        assert_eq!(report.spooled_batches, 0, "{report:?}");
        assert_eq!(report.lost_events, 0, "{report:?}");
    });

    let server = server.unwrap();
    let stored = stored_events_settled(&server, &reader_key, "acme", EVENTS);
    let counts = counts_by_event_id(&stored);
    assert_eq!(stored.len(), EVENTS, "one stored row per recorded event");
    assert_eq!(counts.len(), EVENTS, "no event stored twice");
    let recorded: HashSet<&String> = event_ids.iter().collect();
    assert!(
        counts.keys().all(|id| recorded.contains(id)),
        "only recorded events"
    );
}

/// Set in the child process of [`a_killed_client_loses_no_event_it_had_flushed`]: the spool
/// directory it writes to.
const SPOOL_WRITER_DIR: &str = "SEALTRAIL_CLIENT_TEST_SPOOL_WRITER_DIR";
const SPOOL_WRITER_URL: &str = "SEALTRAIL_CLIENT_TEST_SPOOL_WRITER_URL";
const TEST_NAME: &str = "a_killed_client_loses_no_event_it_had_flushed";

#[test]
fn a_killed_client_loses_no_event_it_had_flushed() {
    if let Ok(spool_dir) = std::env::var(SPOOL_WRITER_DIR) {
        // The child: this test binary run again, as the client that gets killed.
        let url = std::env::var(SPOOL_WRITER_URL).unwrap();
        spool_writer(&url, Path::new(&spool_dir));
        unreachable!("the spool writer runs until it is killed");
    }
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    // An address nothing listens on: bound, then released.
    let unreachable = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(SPOOL_WRITER_DIR, &spool)
        .env(SPOOL_WRITER_URL, &unreachable)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, received) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let flushed = |line: &str| {
        line.strip_prefix("flushed ")
            .map(|count| count.trim().parse::<usize>().unwrap())
    };
    // Let it flush a few hundred events, then kill it while it keeps recording and spooling.
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut last_flushed = 0;
    while last_flushed < 400 {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let line = received
            .recv_timeout(remaining)
            .expect("the spool writer reports its flushes");
        last_flushed = flushed(&line).unwrap_or(last_flushed);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    // Lines printed before the kill: each was printed after its flush returned.
    for line in received.try_iter() {
        last_flushed = flushed(&line).unwrap_or(last_flushed);
    }

    // The server comes up; a new client on the same spool delivers what the dead one left.
    let server = Server::start(&dir.path().join("data"));
    let ingest_key = server.create_key("acme", "ingest");
    let reader_key = server.create_key("acme", "reader");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = Client::new(fast_config(&server.base, &ingest_key, &spool))
            .await
            .unwrap();
        let report = client.shutdown(Duration::from_secs(30)).await;
        assert_eq!(report.spooled_batches, 0, "{report:?}");
    });
    let stored = stored_events_settled(&server, &reader_key, "acme", last_flushed);
    let counts = counts_by_event_id(&stored);
    assert!(
        counts.values().all(|count| *count == 1),
        "no event stored twice"
    );
    let missing: Vec<String> = (0..last_flushed)
        .map(spooled_event_id)
        .filter(|id| !counts.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {last_flushed} flushed events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
    let spool_files: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|item| item.unwrap().file_name())
        .filter(|name| name.to_string_lossy().ends_with(".seg"))
        .collect();
    assert!(spool_files.is_empty(), "{spool_files:?}");
}

fn spooled_event_id(index: usize) -> String {
    format!("spooled-{index:06}")
}

/// The child of [`a_killed_client_loses_no_event_it_had_flushed`]: records events against a
/// server that is not there, flushes every 25, prints `flushed K` after each flush returned,
/// and goes on until it is killed.
fn spool_writer(url: &str, spool: &Path) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut config = fast_config(url, "stk_unused_while_unreachable", spool);
        config.send_attempts_before_spool = 1;
        let client = Client::new(config).await.unwrap();
        let mut recorded = 0;
        loop {
            for _ in 0..25 {
                let event = Event::builder("acme", "writer", "update", "document")
                    .event_id(spooled_event_id(recorded))
                    .resource_id(format!("doc-{recorded}"))
                    .build()
                    .unwrap();
                client.record(event).unwrap();
                recorded += 1;
            }
            client.flush().await.unwrap();
            println!("flushed {recorded}");
        }
    })
}

#[test]
fn the_tower_layer_stamps_request_context_on_recorded_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let ingest_key = server.create_key("acme", "ingest");
    let reader_key = server.create_key("acme", "reader");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime
        .block_on(Client::new(fast_config(
            &server.base,
            &ingest_key,
            &dir.path().join("spool"),
        )))
        .unwrap();

    async fn delete_document(
        State(client): State<Client>,
        UrlPath(document): UrlPath<String>,
    ) -> String {
        let event = Event::builder("acme", "alice", "delete", "document")
            .resource_id(document)
            .durability(Durability::Sync)
            .build()
            .unwrap();
        // Committed before the handler answers; the event carries the request's context.
        client.record(event).unwrap().await.unwrap();
        current_request_id().unwrap()
    }
    let app = Router::new()
        .route("/documents/{id}", delete(delete_document))
        .layer(RequestContextLayer::new())
        .with_state(client.clone());
    let address = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap()
        });
        address
    });
    let call = |document: &str, headers: &[(&str, &str)]| {
        let mut request = ureq::delete(&format!("http://{address}/documents/{document}"));
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let response = request.call().unwrap();
        let header = response.header("x-request-id").unwrap().to_owned();
        let body = response.into_string().unwrap();
        assert_eq!(
            header, body,
            "the response carries the handler's request id"
        );
        header
    };
    let given = call(
        "doc-1",
        &[
            ("X-Request-Id", "req-layer-1"),
            ("User-Agent", "layer-test/1.0"),
            ("X-Forwarded-For", "203.0.113.50, 10.0.0.1"),
        ],
    );
    assert_eq!(given, "req-layer-1");
    let traced = call(
        "doc-2",
        &[(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )],
    );
    assert_eq!(traced, "0af7651916cd43dd8448eb211c80319c");
    let made = call("doc-3", &[]);
    assert!(
        made.len() == 36 && made.as_bytes()[14] == b'7',
        "a new UUIDv7: {made}"
    );
    runtime.block_on(async {
        assert_eq!(
            client
                .shutdown(Duration::from_secs(10))
                .await
                .spooled_batches,
            0
        );
    });

    let by_request = |request_id: &str| {
        let (status, page) = get(
            &server.url(&format!(
                "/v1/events?tenant_id=acme&request_id={request_id}"
            )),
            &reader_key,
        );
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().unwrap().clone();
        assert_eq!(events.len(), 1, "{request_id}: {page}");
        events.into_iter().next().unwrap()
    };
    let first = by_request("req-layer-1");
    assert_eq!(first["resource_id"], "doc-1");
    assert_eq!(
        first["ip_address"], "203.0.113.50",
        "the first forwarded hop"
    );
    assert_eq!(first["user_agent"], "layer-test/1.0");
    let second = by_request(&traced);
    assert_eq!(second["resource_id"], "doc-2");
    assert_eq!(
        second["ip_address"], "127.0.0.1",
        "the connection's address"
    );
    assert!(second["user_agent"]
        .as_str()
        .is_some_and(|agent| agent.starts_with("ureq")));
    let third = by_request(&made);
    assert_eq!(third["resource_id"], "doc-3");
    assert_eq!(stored_events(&server, &reader_key, "acme").len(), 3);
}
