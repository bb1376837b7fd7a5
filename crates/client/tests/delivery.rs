//! The client against a scripted HTTP server on 127.0.0.1:0: retries, Retry-After, refusals that
//! must not be retried, splitting, batching, the spool and its bound, and the request context.
//! (The real server is exercised in `crates/cli/tests/client.rs`.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::Router;
use sealtrail_client::{
    Client, Config, Delivery, Durability, Error, Event, RequestContext, ShutdownReport,
};
use serde_json::{json, Value};

/// What the scripted server answers: a status, maybe a Retry-After, maybe a problem document.
struct Reply {
    status: u16,
    retry_after: Option<&'static str>,
    problem: Option<Value>,
}

impl Reply {
    fn status(status: u16) -> Reply {
        Reply {
            status,
            retry_after: None,
            problem: None,
        }
    }
}

/// One request the scripted server saw, with what it answered.
#[derive(Debug, Clone)]
struct Seen {
    query: String,
    authorization: String,
    request_id: String,
    events: Vec<Value>,
    status: u16,
}

type Responder = dyn Fn(usize, &[Value]) -> Reply + Send + Sync;

struct Stub {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

struct StubState {
    responder: Box<Responder>,
    calls: AtomicUsize,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Stub {
    async fn start(responder: impl Fn(usize, &[Value]) -> Reply + Send + Sync + 'static) -> Stub {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(StubState {
            responder: Box::new(responder),
            calls: AtomicUsize::new(0),
            seen: Arc::clone(&seen),
        });
        let app = Router::new()
            .route("/v1/events", axum::routing::post(handle))
            .layer(DefaultBodyLimit::disable())
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Stub { base, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The event ids the server acknowledged (2xx), in the order it did.
    fn acknowledged_ids(&self) -> Vec<String> {
        self.seen()
            .iter()
            .filter(|seen| (200..300).contains(&seen.status))
            .flat_map(|seen| seen.events.iter().map(event_id))
            .collect()
    }
}

async fn handle(
    State(state): State<Arc<StubState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let events: Vec<Value> = serde_json::from_slice(&body).expect("the client sends an array");
    let call = state.calls.fetch_add(1, Ordering::SeqCst);
    let reply = (state.responder)(call, &events);
    let header = |name: &str| {
        headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    state.seen.lock().unwrap().push(Seen {
        query: uri.query().unwrap_or("").to_owned(),
        authorization: header("authorization"),
        request_id: header("x-request-id"),
        events,
        status: reply.status,
    });
    let mut response = Response::builder().status(reply.status);
    if let Some(retry_after) = reply.retry_after {
        response = response.header("retry-after", retry_after);
    }
    let body = match reply.problem {
        Some(problem) => {
            response = response.header("content-type", "application/problem+json");
            Body::from(problem.to_string())
        }
        None => Body::from(r#"{"results":[]}"#),
    };
    response.body(body).unwrap()
}

fn event_id(event: &Value) -> String {
    event["event_id"].as_str().unwrap().to_owned()
}

/// A configuration with short pauses, so the tests take seconds, not minutes.
fn config(stub: &Stub, spool: &std::path::Path) -> Config {
    let mut config = Config::new(&stub.base, "stk_test_key", spool);
    config.batch_linger = Duration::from_millis(20);
    config.backoff_base = Duration::from_millis(2);
    config.backoff_cap = Duration::from_millis(50);
    config.send_attempts_before_spool = 2;
    config.request_timeout = Duration::from_secs(5);
    config
}

fn event(resource_id: &str) -> Event {
    Event::builder("acme", "alice", "update", "document")
        .resource_id(resource_id)
        .build()
        .unwrap()
}

fn is_success(report: &ShutdownReport) -> bool {
    report.spooled_batches == 0 && report.lost_events == 0
}

#[tokio::test]
async fn retry_after_of_503_and_429_is_honoured_and_the_sync_event_waits_for_201() {
    let stub = Stub::start(|call, _| match call {
        0 => Reply {
            retry_after: Some("1"),
            ..Reply::status(503)
        },
        1 => Reply {
            retry_after: Some("1"),
            ..Reply::status(429)
        },
        _ => Reply::status(201),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&stub, dir.path());
    config.send_attempts_before_spool = 5;
    let client = Client::new(config).await.unwrap();
    let started = Instant::now();
    let recorded = client
        .record(
            Event::builder("acme", "alice", "delete", "document")
                .durability(Durability::Sync)
                .build()
                .unwrap(),
        )
        .unwrap();
    let recorded_id = recorded.event_id().to_owned();
    assert_eq!(recorded.await.unwrap(), Delivery::Committed);
    // The backoff alone (2 ms base) would have retried at once; the server asked for 1 s twice.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let seen = stub.seen();
    assert_eq!(
        seen.iter().map(|seen| seen.status).collect::<Vec<_>>(),
        [503, 429, 201]
    );
    for request in &seen {
        assert_eq!(request.query, "durability=sync");
        assert_eq!(request.authorization, "Bearer stk_test_key");
        assert_eq!(request.events.len(), 1);
        assert_eq!(
            event_id(&request.events[0]),
            recorded_id,
            "the same id each time"
        );
        // Each retry is the same request, under the same X-Request-Id.
        assert_eq!(request.request_id, seen[0].request_id);
        assert!(!request.request_id.is_empty());
    }
    assert!(is_success(&client.shutdown(Duration::from_secs(5)).await));
}

#[tokio::test]
async fn server_errors_and_timeouts_are_retried_without_retry_after() {
    let stub = Stub::start(|call, _| match call {
        0 => Reply::status(500),
        1 => Reply::status(502),
        2 => Reply::status(408),
        _ => Reply::status(202),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&stub, dir.path());
    config.send_attempts_before_spool = 5;
    let client = Client::new(config).await.unwrap();
    let recorded = client.record(event("doc-1")).unwrap();
    assert_eq!(recorded.await.unwrap(), Delivery::Accepted);
    let statuses: Vec<u16> = stub.seen().iter().map(|seen| seen.status).collect();
    assert_eq!(statuses, [500, 502, 408, 202]);
    assert_eq!(stub.seen()[0].query, "durability=async");
    assert!(is_success(&client.shutdown(Duration::from_secs(5)).await));
}

#[tokio::test]
async fn an_event_the_server_refuses_fails_alone_and_is_not_retried() {
    // Like the server: a request is all or nothing, and its 400 names the bad event's index.
    let stub = Stub::start(|_, events| {
        match events
            .iter()
            .position(|event| event["resource_id"] == "poison")
        {
            Some(index) => Reply {
                problem: Some(json!({
                    "type": "https://sealtrail.dev/problems/invalid-request",
                    "status": 400,
                    "detail": "1 of the request's events are invalid; nothing was written",
                    "errors": [{"index": index, "field": "resource_id", "reason": "poisoned"}],
                })),
                ..Reply::status(400)
            },
            None => Reply::status(202),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(config(&stub, dir.path())).await.unwrap();
    let good_a = client.record(event("doc-a")).unwrap();
    let poison = client.record(event("poison")).unwrap();
    let good_b = client.record(event("doc-b")).unwrap();
    let poison_id = poison.event_id().to_owned();

    let Err(Error::Rejected { failures }) = client.flush().await else {
        panic!("flush must report the refused event")
    };
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].status, 400);
    assert_eq!(failures[0].event_ids(), [poison_id.as_str()]);
    assert!(
        failures[0].detail.contains("poisoned"),
        "{}",
        failures[0].detail
    );
    assert_eq!(failures[0].events[0]["resource_id"], "poison");
    assert!(matches!(poison.await, Err(Error::Rejected { .. })));
    assert_eq!(good_a.await.unwrap(), Delivery::Accepted);
    assert_eq!(good_b.await.unwrap(), Delivery::Accepted);
    // Two requests: the batch, then the batch without the refused event. Never the poison again.
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].events.len(), 3);
    assert_eq!(seen[1].events.len(), 2);
    assert!(!stub.acknowledged_ids().contains(&poison_id));
    // The failure was handed out once.
    assert!(client.take_failures().is_empty());
    assert!(is_success(&client.shutdown(Duration::from_secs(5)).await));
}

#[tokio::test]
async fn unauthorized_and_conflict_are_reported_and_never_retried() {
    let stub = Stub::start(|_, events| {
        if events[0]["resource_id"] == "conflict" {
            Reply {
                problem: Some(json!({
                    "status": 409,
                    "detail": "event 0: event_id is already stored with different content",
                    "errors": [{"index": 0, "field": "event_id", "reason": "already stored"}],
                })),
                ..Reply::status(409)
            }
        } else {
            Reply {
                problem: Some(json!({"status": 401, "detail": "a valid API key is required"})),
                ..Reply::status(401)
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(config(&stub, dir.path())).await.unwrap();
    let unauthorized = client.record(event("doc-1")).unwrap();
    let Err(Error::Rejected { failures }) = client.flush().await else {
        panic!("flush must report the refusal")
    };
    assert_eq!(failures[0].status, 401);
    assert!(matches!(unauthorized.await, Err(Error::Rejected { .. })));
    let conflict = client.record(event("conflict")).unwrap();
    let Err(Error::Rejected { failures }) = client.flush().await else {
        panic!("flush must report the conflict")
    };
    assert_eq!(failures[0].status, 409);
    assert!(matches!(conflict.await, Err(Error::Rejected { .. })));
    // One request each: neither was retried, nor spooled.
    assert_eq!(stub.seen().len(), 2);
    assert_eq!(client.status().spooled_batches, 0);
    assert!(is_success(&client.shutdown(Duration::from_secs(5)).await));
}

#[tokio::test]
async fn a_batch_too_large_for_the_server_is_split() {
    let stub = Stub::start(|_, events| {
        if events.len() > 2 {
            Reply::status(413)
        } else {
            Reply::status(201)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(config(&stub, dir.path())).await.unwrap();
    let recorded: Vec<_> = (0..5)
        .map(|index| client.record(event(&format!("doc-{index}"))).unwrap())
        .collect();
    let ids: Vec<String> = recorded.iter().map(|r| r.event_id().to_owned()).collect();
    client.flush().await.unwrap();
    for recorded in recorded {
        assert_eq!(recorded.await.unwrap(), Delivery::Committed);
    }
    assert_eq!(stub.acknowledged_ids(), ids, "each once, in order");
    assert!(is_success(&client.shutdown(Duration::from_secs(5)).await));
}

#[tokio::test]
async fn batches_are_cut_by_count_and_by_time() {
    let stub = Stub::start(|_, _| Reply::status(202)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&stub, dir.path());
    config.batch_linger = Duration::from_millis(300);
    let client = Client::new(config).await.unwrap();
    for index in 0..1_200 {
        client.record(event(&format!("doc-{index}"))).unwrap();
    }
    // Two full batches go at once; the rest when its linger time is up, without a flush.
    let deadline = Instant::now() + Duration::from_secs(5);
    while stub.acknowledged_ids().len() < 1_200 {
        assert!(Instant::now() < deadline, "the last batch was never sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sizes: Vec<usize> = stub.seen().iter().map(|seen| seen.events.len()).collect();
    assert_eq!(sizes, [500, 500, 200]);
    assert!(is_success(&client.shutdown(Duration::from_secs(5)).await));
}

#[tokio::test]
async fn while_the_server_fails_events_are_spooled_then_replayed_in_order_exactly_once() {
    let down = Arc::new(AtomicBool::new(true));
    let stub = Stub::start({
        let down = Arc::clone(&down);
        move |_, _| {
            if down.load(Ordering::SeqCst) {
                Reply::status(503)
            } else {
                Reply::status(201)
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(config(&stub, dir.path())).await.unwrap();
    let mut ids = Vec::new();
    let mut spooled = Vec::new();
    for round in 0..3 {
        for index in 0..10 {
            let recorded = client
                .record(event(&format!("doc-{round}-{index}")))
                .unwrap();
            ids.push(recorded.event_id().to_owned());
            spooled.push(recorded);
        }
        // The server fails: flush returns once the events are fsynced in the spool.
        client.flush().await.unwrap();
    }
    for recorded in spooled {
        assert_eq!(recorded.await.unwrap(), Delivery::Spooled);
    }
    assert!(
        client.status().spooled_batches >= 3,
        "{:?}",
        client.status()
    );
    // A sync event is not settled by the spool: it waits for the server's 201.
    let critical = client
        .record(
            Event::builder("acme", "alice", "delete", "document")
                .durability(Durability::Sync)
                .build()
                .unwrap(),
        )
        .unwrap();
    ids.push(critical.event_id().to_owned());
    let critical = tokio::spawn(critical);
    let flush = tokio::spawn({
        let client = client.clone();
        async move { client.flush().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!critical.is_finished() && !flush.is_finished());
    assert_eq!(stub.acknowledged_ids(), Vec::<String>::new());

    down.store(false, Ordering::SeqCst);
    assert_eq!(critical.await.unwrap().unwrap(), Delivery::Committed);
    flush.await.unwrap().unwrap();
    assert!(is_success(&client.shutdown(Duration::from_secs(10)).await));
    assert_eq!(
        stub.acknowledged_ids(),
        ids,
        "each event once, in recorded order"
    );
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|item| !item
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".seg")));
}

#[tokio::test]
async fn a_full_spool_refuses_new_events_and_drains_when_the_server_returns() {
    let down = Arc::new(AtomicBool::new(true));
    let stub = Stub::start({
        let down = Arc::clone(&down);
        move |_, _| {
            Reply::status(if down.load(Ordering::SeqCst) {
                503
            } else {
                202
            })
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&stub, dir.path());
    config.batch_events_max = 10;
    config.batch_bytes_max = sealtrail_client::limits::BATCH_BYTES_MIN;
    // Room for one batch of ten 15 KB events, not two.
    config.spool_bytes_max = sealtrail_client::limits::BATCH_BYTES_MIN as u64 + 4_096;
    let client = Client::new(config).await.unwrap();
    let big = |index: usize| {
        Event::builder("acme", "alice", "export", "report")
            .resource_id(format!("report-{index}"))
            .metadata_entry("padding", "p".repeat(15_000))
            .build()
            .unwrap()
    };
    let mut ids = Vec::new();
    for index in 0..10 {
        ids.push(client.record(big(index)).unwrap().event_id().to_owned());
    }
    client.flush().await.unwrap();
    for index in 10..20 {
        ids.push(client.record(big(index)).unwrap().event_id().to_owned());
    }
    assert!(matches!(client.flush().await, Err(Error::SpoolFull { .. })));
    // Backpressure: nothing more is accepted, nothing accepted is dropped.
    assert!(matches!(
        client.record(big(99)),
        Err(Error::SpoolFull { .. })
    ));
    assert_eq!(client.status().queued_events, 10);

    down.store(false, Ordering::SeqCst);
    assert!(is_success(&client.shutdown(Duration::from_secs(10)).await));
    assert_eq!(stub.acknowledged_ids(), ids);
}

#[tokio::test]
async fn a_spool_left_by_a_dropped_client_is_replayed_by_the_next_one() {
    let down = Arc::new(AtomicBool::new(true));
    let stub = Stub::start({
        let down = Arc::clone(&down);
        move |_, _| {
            Reply::status(if down.load(Ordering::SeqCst) {
                503
            } else {
                202
            })
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    {
        let mut config = config(&stub, dir.path());
        // Long enough that nothing is sent before the drop.
        config.batch_linger = Duration::from_secs(60);
        let client = Client::new(config).await.unwrap();
        for index in 0..5 {
            ids.push(
                client
                    .record(event(&format!("doc-{index}")))
                    .unwrap()
                    .event_id()
                    .to_owned(),
            );
        }
        client.flush().await.unwrap();
        // Recorded, never flushed: Drop writes them to the spool.
        for index in 5..8 {
            ids.push(
                client
                    .record(event(&format!("doc-{index}")))
                    .unwrap()
                    .event_id()
                    .to_owned(),
            );
        }
    }
    // A request the dropped client had on the wire is answered (503) before the server
    // returns: its answer is lost with the client, and a 202 to it would be a duplicate that
    // only the real server's idempotency hides (crates/cli/tests/client.rs covers that).
    tokio::time::sleep(Duration::from_millis(200)).await;
    down.store(false, Ordering::SeqCst);
    let client = Client::new(config(&stub, dir.path())).await.unwrap();
    assert!(is_success(&client.shutdown(Duration::from_secs(10)).await));
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in stub.acknowledged_ids() {
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!(counts.len(), ids.len());
    assert!(
        ids.iter().all(|id| counts.get(id) == Some(&1)),
        "{counts:?}"
    );
}

#[tokio::test]
async fn events_recorded_in_a_request_context_carry_it_and_so_does_the_request() {
    let stub = Stub::start(|_, _| Reply::status(202)).await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(config(&stub, dir.path())).await.unwrap();
    let context = RequestContext {
        request_id: "req-ctx-1".into(),
        ip_address: Some("198.51.100.7".parse().unwrap()),
        user_agent: Some("browser/1.0".into()),
    };
    context
        .clone()
        .scope(async {
            client.record(event("doc-1")).unwrap();
            client.flush().await.unwrap();
            // The event's own values win over the context's.
            client
                .record(
                    Event::builder("acme", "alice", "update", "document")
                        .request_id("own-id")
                        .ip_address("203.0.113.1".parse().unwrap())
                        .build()
                        .unwrap(),
                )
                .unwrap();
            client.flush().await.unwrap();
        })
        .await;
    client.record(event("outside")).unwrap();
    client.flush().await.unwrap();

    let seen = stub.seen();
    assert_eq!(seen.len(), 3);
    let stamped = &seen[0].events[0];
    assert_eq!(stamped["request_id"], "req-ctx-1");
    assert_eq!(stamped["ip_address"], "198.51.100.7");
    assert_eq!(stamped["user_agent"], "browser/1.0");
    assert_eq!(seen[0].request_id, "req-ctx-1", "the POST carries the id");
    let own = &seen[1].events[0];
    assert_eq!(own["request_id"], "own-id");
    assert_eq!(own["ip_address"], "203.0.113.1");
    assert_eq!(own["user_agent"], "browser/1.0");
    let outside = &seen[2].events[0];
    assert!(outside.get("request_id").is_none(), "{outside}");
    assert!(is_success(&client.shutdown(Duration::from_secs(5)).await));
}

#[tokio::test]
async fn after_shutdown_nothing_is_accepted() {
    let stub = Stub::start(|_, _| Reply::status(202)).await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(config(&stub, dir.path())).await.unwrap();
    let other = client.clone();
    client.record(event("doc-1")).unwrap();
    assert!(is_success(&client.shutdown(Duration::from_secs(5)).await));
    assert_eq!(stub.acknowledged_ids().len(), 1);
    assert!(matches!(other.record(event("doc-2")), Err(Error::Closed)));
    assert!(matches!(other.flush().await, Err(Error::Closed)));
}

#[tokio::test]
async fn a_configuration_beyond_the_server_limits_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = Config::new("http://127.0.0.1:9", "stk_secret_value", dir.path());
    let mut too_many = base.clone();
    too_many.batch_events_max = sealtrail_model::limits::BATCH_EVENTS_MAX + 1;
    let mut too_big = base.clone();
    too_big.batch_bytes_max = 64 * 1024 * 1024;
    let mut small_spool = base.clone();
    small_spool.spool_bytes_max = 1024;
    let mut not_http = base.clone();
    not_http.base_url = "ftp://example.com".into();
    for config in [too_many, too_big, small_spool, not_http] {
        assert!(matches!(Client::new(config).await, Err(Error::Config(_))));
    }
    // The ingest key never shows in Debug output.
    assert!(!format!("{base:?}").contains("stk_secret_value"));
}
