//! The client: recording, batching, sending, spooling, replaying, flushing and shutting down.
//!
//! Three parts share one [`State`] behind a mutex (never held across an `.await`):
//!
//! - [`Client::record`] validates nothing more (the [`Event`] was checked when built), stamps the
//!   request context, and appends the event to the open batch of its durability, cutting the
//!   batch when it is full (events or bytes).
//! - The *sender* task cuts batches whose linger time is up and sends them in order. A batch that
//!   keeps failing (connection refused, 5xx, 429, …) after a few attempts goes to the spool; from
//!   then on, while the spool holds anything, new batches go to the spool too, behind it, so
//!   order is kept.
//! - The *replayer* task sends the spool's oldest entry until the server answers 2xx, then
//!   removes it, with exponential backoff meanwhile. It also replays what a previous process left.
//!
//! Every batch has an id; a `flush` waits until every batch up to the newest one is *settled*:
//! acknowledged, refused for good, or (async durability only) fsynced in the spool.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use rand::SeedableRng;
use sealtrail_model::limits::{BATCH_EVENTS_MAX, BODY_BYTES_MAX};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::context::{current_context, valid_request_id};
use crate::error::{Error, Failure, Result};
use crate::event::{Durability, Event};
use crate::limits::*;
use crate::spool::{EntryId, Spool};
use crate::transport::{Delivery, Item, Outcome, Transport};

/// How a [`Client`] reaches the server and how much it may hold. Start from [`Config::new`]
/// and change the fields that need it.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// The server, e.g. `https://audit.example.com` (the client appends `/v1/events`).
    pub base_url: String,
    /// An API key of role `ingest` (sent as `Authorization: Bearer …`).
    pub ingest_key: String,
    /// The spool directory, which only this client may use. Created if missing; whatever a
    /// previous process left there is replayed.
    pub spool_dir: PathBuf,
    /// Most bytes the spool may take on disk ([`SPOOL_BYTES_DEFAULT`]).
    pub spool_bytes_max: u64,
    /// Most events per request ([`BATCH_EVENTS_DEFAULT`]; at most the server's
    /// `BATCH_EVENTS_MAX`).
    pub batch_events_max: usize,
    /// Most bytes of JSON per request ([`BATCH_BYTES_DEFAULT`]; between [`BATCH_BYTES_MIN`] and
    /// the server's `BODY_BYTES_MAX`).
    pub batch_bytes_max: usize,
    /// How long a batch waits for more events before it is sent ([`BATCH_LINGER_MILLIS_DEFAULT`]).
    pub batch_linger: Duration,
    /// Most events held in memory before `record` refuses ([`QUEUE_EVENTS_DEFAULT`]).
    pub queue_events_max: usize,
    /// The durability of events that do not choose one ([`Durability::Async`]).
    pub default_durability: Durability,
    /// First pause before a retry ([`BACKOFF_BASE_MILLIS_DEFAULT`]).
    pub backoff_base: Duration,
    /// Longest pause between retries ([`BACKOFF_CAP_MILLIS_DEFAULT`]).
    pub backoff_cap: Duration,
    /// Attempts at a batch before it is spooled ([`SEND_ATTEMPTS_BEFORE_SPOOL_DEFAULT`]).
    pub send_attempts_before_spool: u32,
    /// Longest time one request may take ([`REQUEST_TIMEOUT_MILLIS_DEFAULT`]).
    pub request_timeout: Duration,
}

impl Config {
    pub fn new(
        base_url: impl Into<String>,
        ingest_key: impl Into<String>,
        spool_dir: impl Into<PathBuf>,
    ) -> Config {
        Config {
            base_url: base_url.into(),
            ingest_key: ingest_key.into(),
            spool_dir: spool_dir.into(),
            spool_bytes_max: SPOOL_BYTES_DEFAULT,
            batch_events_max: BATCH_EVENTS_DEFAULT,
            batch_bytes_max: BATCH_BYTES_DEFAULT,
            batch_linger: millis(BATCH_LINGER_MILLIS_DEFAULT),
            queue_events_max: QUEUE_EVENTS_DEFAULT,
            default_durability: Durability::Async,
            backoff_base: millis(BACKOFF_BASE_MILLIS_DEFAULT),
            backoff_cap: millis(BACKOFF_CAP_MILLIS_DEFAULT),
            send_attempts_before_spool: SEND_ATTEMPTS_BEFORE_SPOOL_DEFAULT,
            request_timeout: millis(REQUEST_TIMEOUT_MILLIS_DEFAULT),
        }
    }

    fn check(&self) -> Result<Transport> {
        let problem = |text: String| Err(Error::Config(text));
        if !(1..=BATCH_EVENTS_MAX).contains(&self.batch_events_max) {
            return problem(format!(
                "batch_events_max must be 1 to {BATCH_EVENTS_MAX} (the server's limit)"
            ));
        }
        if !(BATCH_BYTES_MIN..=BODY_BYTES_MAX).contains(&self.batch_bytes_max) {
            return problem(format!(
                "batch_bytes_max must be {BATCH_BYTES_MIN} to {BODY_BYTES_MAX} bytes (one event \
                 at its largest, and the server's body limit)"
            ));
        }
        // One batch at its largest, with its record header, envelope and a segment header.
        let one_batch = self.batch_bytes_max as u64 + 4096;
        if self.spool_bytes_max < one_batch {
            return problem(format!(
                "spool_bytes_max must hold at least one batch: {one_batch} bytes or more"
            ));
        }
        if self.queue_events_max < self.batch_events_max {
            return problem("queue_events_max must hold at least one batch".into());
        }
        if self.send_attempts_before_spool == 0 {
            return problem("send_attempts_before_spool must be at least 1".into());
        }
        if self.backoff_base.is_zero() || self.backoff_cap < self.backoff_base {
            return problem("backoff_base must be above zero and at most backoff_cap".into());
        }
        if self.request_timeout.is_zero() {
            return problem("request_timeout must be above zero".into());
        }
        let base = self.base_url.trim_end_matches('/');
        let url = |durability: &str| {
            reqwest::Url::parse(&format!("{base}/v1/events?durability={durability}"))
                .ok()
                .filter(|url| matches!(url.scheme(), "http" | "https"))
                .ok_or_else(|| {
                    Error::Config(format!(
                        "base_url {:?} is not an http(s) URL",
                        self.base_url
                    ))
                })
        };
        let (sync_url, async_url) = (url("sync")?, url("async")?);
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", self.ingest_key))
            .ok()
            .filter(|_| !self.ingest_key.is_empty())
            .ok_or_else(|| Error::Config("ingest_key must be a non-empty API key".into()))?;
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(self.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sealtrail-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::Http)?;
        Ok(Transport {
            http,
            sync_url,
            async_url,
            authorization,
        })
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            base: self.backoff_base,
            cap: self.backoff_cap,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The ingest key is a secret: it never reaches a log through Debug.
        f.debug_struct("Config")
            .field("base_url", &self.base_url)
            .field("ingest_key", &"<redacted>")
            .field("spool_dir", &self.spool_dir)
            .field("spool_bytes_max", &self.spool_bytes_max)
            .field("batch_events_max", &self.batch_events_max)
            .field("batch_bytes_max", &self.batch_bytes_max)
            .field("batch_linger", &self.batch_linger)
            .field("queue_events_max", &self.queue_events_max)
            .field("default_durability", &self.default_durability)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_cap", &self.backoff_cap)
            .field(
                "send_attempts_before_spool",
                &self.send_attempts_before_spool,
            )
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// What the client holds right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Events in memory: recorded, not yet acknowledged, refused or spooled.
    pub queued_events: usize,
    /// Batches in the spool, waiting for the server.
    pub spooled_batches: usize,
    /// Bytes the spool takes on disk.
    pub spooled_bytes: u64,
    /// Permanent failures not yet taken with [`Client::take_failures`] or `flush`.
    pub failures_pending: usize,
    /// Permanent failures dropped from the list beyond [`FAILURES_KEPT_MAX`] (each was logged).
    pub failures_forgotten: u64,
}

/// What [`Client::shutdown`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Batches still in the spool (the server did not take them in time); the next client that
    /// opens the spool directory sends them.
    pub spooled_batches: usize,
    /// Events that could neither be sent nor spooled (the spool was full or failed); each was
    /// logged at `error` with its `event_id`.
    pub lost_events: usize,
}

/// The answer for one recorded event: await it to learn how it was delivered, or drop it (the
/// event is delivered all the same).
#[derive(Debug)]
pub struct Recorded {
    event_id: String,
    receiver: oneshot::Receiver<Settled>,
}

impl Recorded {
    pub fn event_id(&self) -> &str {
        &self.event_id
    }
}

impl Future for Recorded {
    type Output = Result<Delivery>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|settled| match settled {
                Ok(Settled::Delivered(delivery)) => Ok(delivery),
                Ok(Settled::Refused(failure)) => Err(Error::Rejected {
                    failures: vec![failure],
                }),
                Err(_) => Err(Error::Closed),
            })
    }
}

#[derive(Debug)]
enum Settled {
    Delivered(Delivery),
    Refused(Failure),
}

/// A Sealtrail client. Cheap to clone; all clones share one queue, spool and set of tasks.
///
/// When the last clone is dropped without [`Client::shutdown`], `Drop` stops the background tasks
/// and writes every event not yet acknowledged to the spool (with fsync), from where the next
/// client on the same spool directory delivers it. `Drop` does no network IO: it may run on a
/// runtime thread, where waiting on the network would stall other tasks (and, on a
/// current-thread runtime, could never finish). It blocks only for that local write, bounded by
/// what is in memory ([`Config::queue_events_max`]). Call `shutdown` to deliver before exiting.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

struct Shared {
    config: Config,
    transport: Transport,
    state: Mutex<State>,
    spool: Mutex<Spool>,
    /// Mirrors of the spool's size, readable without waiting for a spool operation.
    spooled_batches: AtomicUsize,
    spooled_bytes: AtomicU64,
    /// Wakes the sender: a batch was cut, a batch was opened (its linger timer starts), a flush
    /// or shutdown began, or spool room was freed.
    sender_wake: Notify,
    /// Wakes the replayer: the spool got an entry.
    replayer_wake: Notify,
}

#[derive(Default)]
struct State {
    /// The batch being filled, per durability (`Sync`, `Async`).
    open: [Option<OpenBatch>; 2],
    /// Cut batches, in order, waiting for the sender.
    ready: VecDeque<Batch>,
    /// A copy of the batch the sender works on, so that `Drop` can spool it.
    in_flight: Option<Batch>,
    /// Events in `open`, `ready` and `in_flight`: the memory bound.
    queued_events: usize,
    next_batch_id: u64,
    /// Unsettled events per batch id; a batch is settled when it leaves this map.
    unsettled: BTreeMap<u64, usize>,
    /// Who waits for each event, by `event_id`.
    waiters: HashMap<Arc<str>, Vec<Waiter>>,
    flushes: Vec<FlushWaiter>,
    failures: VecDeque<Failure>,
    failures_forgotten: u64,
    /// Why the spool refuses appends, while it does: `record` refuses too.
    spool_refusal: Option<SpoolRefusal>,
    /// Set when a live batch was spooled, cleared when the spool drains: for one log line per
    /// outage instead of one per batch.
    outage_logged: bool,
    closing: bool,
    stopped: bool,
}

struct OpenBatch {
    id: u64,
    items: Vec<Item>,
    /// Bytes of the request body these items make (`[`, the events, commas, `]`).
    body_bytes: usize,
    deadline: Instant,
}

#[derive(Debug, Clone)]
struct Batch {
    durability: Durability,
    request_id: Arc<str>,
    items: Vec<Item>,
}

struct Waiter {
    sender: oneshot::Sender<Settled>,
    batch_id: u64,
    durability: Durability,
}

struct FlushWaiter {
    /// Every batch with an id up to this one must be settled.
    up_to: u64,
    sender: oneshot::Sender<Result<()>>,
}

#[derive(Debug, Clone)]
enum SpoolRefusal {
    Full { bytes_max: u64 },
    Failed(String),
}

impl SpoolRefusal {
    fn error(&self) -> Error {
        match self {
            SpoolRefusal::Full { bytes_max } => Error::SpoolFull {
                bytes_max: *bytes_max,
            },
            SpoolRefusal::Failed(reason) => Error::SpoolUnavailable(reason.clone()),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not turn `Drop` into a second panic (an abort): the state stays
    // consistent between statements that hold the lock.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn slot(durability: Durability) -> usize {
    match durability {
        Durability::Sync => 0,
        Durability::Async => 1,
    }
}

impl Client {
    /// Starts a client: checks the configuration, opens the spool (replaying what a previous
    /// process left there) and starts the background tasks on the current Tokio runtime.
    pub async fn new(config: Config) -> Result<Client> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let transport = config.check()?;
        let (dir, bytes_max) = (config.spool_dir.clone(), config.spool_bytes_max);
        let spool = tokio::task::spawn_blocking(move || Spool::open(&dir, bytes_max))
            .await
            .expect("opening the spool does not panic")?;
        if !spool.is_empty() {
            tracing::info!(
                batches = spool.len(),
                bytes = spool.bytes(),
                dir = %config.spool_dir.display(),
                "sealtrail client: replaying the spool left by a previous run"
            );
        }
        let shared = Arc::new(Shared {
            spooled_batches: AtomicUsize::new(spool.len()),
            spooled_bytes: AtomicU64::new(spool.bytes()),
            config,
            transport,
            state: Mutex::new(State {
                next_batch_id: 1,
                ..State::default()
            }),
            spool: Mutex::new(spool),
            sender_wake: Notify::new(),
            replayer_wake: Notify::new(),
        });
        let tasks = vec![
            runtime.spawn(Arc::clone(&shared).run_sender()),
            runtime.spawn(Arc::clone(&shared).run_replayer()),
        ];
        Ok(Client {
            inner: Arc::new(Inner {
                shared,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    /// Records an event: stamps the current request context on it (`request_id`, `ip_address`,
    /// `user_agent`, unless the event sets them) and queues it for the next batch. Returns at
    /// once; the returned [`Recorded`] resolves when the event is settled (see [`Durability`]).
    ///
    /// Refuses, without recording, when the client is shutting down ([`Error::Closed`]) or
    /// under backpressure ([`Error::QueueFull`], [`Error::SpoolFull`],
    /// [`Error::SpoolUnavailable`]).
    pub fn record(&self, event: Event) -> Result<Recorded> {
        let shared = &self.inner.shared;
        let durability = event.durability.unwrap_or(shared.config.default_durability);
        let mut wire = event.wire;
        if let Some(context) = current_context() {
            if wire.request_id.is_none() {
                wire.request_id = Some(context.request_id);
            }
            if wire.ip_address.is_none() {
                wire.ip_address = context.ip_address.map(|ip| ip.to_string());
            }
            if wire.user_agent.is_none() {
                wire.user_agent = context.user_agent;
            }
        }
        let json = serde_json::to_string(&wire).expect("an event always serializes");
        let item = Item {
            event_id: wire.event_id.as_str().into(),
            json: json.into(),
            request_id: wire.request_id.map(Into::into),
        };
        let (sender, receiver) = oneshot::channel();
        let wake = {
            let mut state = lock(&shared.state);
            if state.closing {
                return Err(Error::Closed);
            }
            if let Some(refusal) = &state.spool_refusal {
                return Err(refusal.error());
            }
            if state.queued_events >= shared.config.queue_events_max {
                return Err(Error::QueueFull {
                    events_max: shared.config.queue_events_max,
                });
            }
            state.add(item, durability, sender, &shared.config)
        };
        if wake {
            shared.sender_wake.notify_one();
        }
        Ok(Recorded {
            event_id: wire.event_id,
            receiver,
        })
    }

    /// Sends what is batched now and waits until every event recorded before this call is
    /// settled: acknowledged by the server, refused for good, or fsynced in the spool. An event
    /// of [`Durability::Sync`] is settled only by the server's `201`, so while the server is
    /// unreachable a flush covering one waits (wrap it in a timeout if that matters).
    ///
    /// While the server fails, a flush does not wait for retries: a batch that fails once is
    /// spooled at once. Returns [`Error::Rejected`] with every permanent failure not yet handed
    /// out (see [`Client::take_failures`]), and the spool's error if it refuses writes.
    pub async fn flush(&self) -> Result<()> {
        let shared = &self.inner.shared;
        let receiver = {
            let mut state = lock(&shared.state);
            if state.stopped {
                return Err(Error::Closed);
            }
            state.cut_all();
            let up_to = state.next_batch_id - 1;
            if state.is_settled(up_to) {
                None
            } else if let Some(refusal) = &state.spool_refusal {
                return Err(refusal.error());
            } else {
                let (sender, receiver) = oneshot::channel();
                state.flushes.push(FlushWaiter { up_to, sender });
                Some(receiver)
            }
        };
        shared.sender_wake.notify_one();
        if let Some(receiver) = receiver {
            receiver.await.map_err(|_| Error::Closed)??;
        }
        let failures = self.take_failures();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Rejected { failures })
        }
    }

    /// Every permanent failure not yet handed out, oldest first. Each was also logged at `error`
    /// and given to its events' [`Recorded`].
    pub fn take_failures(&self) -> Vec<Failure> {
        lock(&self.inner.shared.state).failures.drain(..).collect()
    }

    pub fn status(&self) -> Status {
        let shared = &self.inner.shared;
        let state = lock(&shared.state);
        Status {
            queued_events: state.queued_events,
            spooled_batches: shared.spooled_batches.load(Ordering::SeqCst),
            spooled_bytes: shared.spooled_bytes.load(Ordering::SeqCst),
            failures_pending: state.failures.len(),
            failures_forgotten: state.failures_forgotten,
        }
    }

    /// Stops accepting events, sends everything batched, and waits up to `timeout` for the
    /// server to take it all (the spool included). Whatever is left then is written to the spool
    /// for the next client on the same directory. Afterwards `record` and `flush` answer
    /// [`Error::Closed`], on every clone.
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let shared = &self.inner.shared;
        {
            let mut state = lock(&shared.state);
            state.closing = true;
            state.cut_all();
        }
        shared.sender_wake.notify_one();
        let deadline = Instant::now() + timeout;
        loop {
            let queued = lock(&shared.state).queued_events;
            let spooled = shared.spooled_batches.load(Ordering::SeqCst);
            let now = Instant::now();
            if (queued == 0 && spooled == 0) || now >= deadline {
                break;
            }
            tokio::time::sleep((deadline - now).min(millis(SHUTDOWN_POLL_MILLIS))).await;
        }
        let tasks: Vec<JoinHandle<()>> = lock(&self.inner.tasks).drain(..).collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        let shared = Arc::clone(shared);
        tokio::task::spawn_blocking(move || shared.stop())
            .await
            .expect("stopping the client does not panic")
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.shared.config.base_url)
            .field("status", &self.status())
            .finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        self.shared.stop();
    }
}

impl State {
    /// Queues one event; whether the sender must wake (a batch was cut or opened).
    fn add(
        &mut self,
        item: Item,
        durability: Durability,
        sender: oneshot::Sender<Settled>,
        config: &Config,
    ) -> bool {
        let slot = slot(durability);
        let mut wake = false;
        if let Some(open) = &self.open[slot] {
            if open.body_bytes + 1 + item.json.len() > config.batch_bytes_max {
                self.cut(slot);
                wake = true;
            }
        }
        if self.open[slot].is_none() {
            self.open[slot] = Some(OpenBatch {
                id: self.next_batch_id,
                items: Vec::new(),
                body_bytes: 2,
                deadline: Instant::now() + config.batch_linger,
            });
            self.next_batch_id += 1;
            wake = true;
        }
        let open = self.open[slot].as_mut().expect("opened above");
        open.body_bytes += item.json.len() + usize::from(!open.items.is_empty());
        *self.unsettled.entry(open.id).or_insert(0) += 1;
        self.waiters
            .entry(Arc::clone(&item.event_id))
            .or_default()
            .push(Waiter {
                sender,
                batch_id: open.id,
                durability,
            });
        open.items.push(item);
        self.queued_events += 1;
        if open.items.len() >= config.batch_events_max {
            self.cut(slot);
            wake = true;
        }
        wake
    }

    fn cut(&mut self, slot: usize) {
        let Some(open) = self.open[slot].take() else {
            return;
        };
        let durability = if slot == 0 {
            Durability::Sync
        } else {
            Durability::Async
        };
        // The request's X-Request-Id: the events' own id when they share one, else a new one.
        let first = open.items.first().and_then(|item| item.request_id.clone());
        let shared = first.filter(|id| {
            valid_request_id(id)
                && open
                    .items
                    .iter()
                    .all(|item| item.request_id.as_deref() == Some(&**id))
        });
        let request_id = shared.unwrap_or_else(|| uuid::Uuid::now_v7().to_string().into());
        self.ready.push_back(Batch {
            durability,
            request_id,
            items: open.items,
        });
    }

    fn cut_all(&mut self) {
        self.cut(0);
        self.cut(1);
    }

    /// Cuts the batches whose linger time is up; returns the next deadline of an open batch.
    fn cut_expired(&mut self, now: Instant) -> Option<Instant> {
        for slot in 0..2 {
            if self.open[slot]
                .as_ref()
                .is_some_and(|open| open.deadline <= now)
            {
                self.cut(slot);
            }
        }
        self.open.iter().flatten().map(|open| open.deadline).min()
    }

    fn is_settled(&self, up_to: u64) -> bool {
        self.unsettled.range(..=up_to).next().is_none()
    }

    /// Settles one event: answers whoever waits for it and counts it off its batch. Events of a
    /// previous process have no waiter.
    fn resolve(&mut self, event_id: &str, settled: impl Fn() -> Settled) {
        let Some(waiters) = self.waiters.remove(event_id) else {
            return;
        };
        for waiter in waiters {
            // The receiver may be gone: the caller did not wait. That is fine.
            let _ = waiter.sender.send(settled());
            self.count_off(waiter.batch_id);
        }
        self.answer_flushes();
    }

    /// Settles the events of a spooled batch that wait only for the spool (async durability);
    /// the sync ones keep waiting for the server.
    fn resolve_spooled(&mut self, items: &[Item]) {
        for item in items {
            let Some(waiters) = self.waiters.get_mut(&item.event_id) else {
                continue;
            };
            let (settled, waiting): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(waiters)
                .into_iter()
                .partition(|waiter| waiter.durability == Durability::Async);
            *waiters = waiting;
            if waiters.is_empty() {
                self.waiters.remove(&item.event_id);
            }
            for waiter in settled {
                let _ = waiter.sender.send(Settled::Delivered(Delivery::Spooled));
                self.count_off(waiter.batch_id);
            }
        }
        self.answer_flushes();
    }

    fn count_off(&mut self, batch_id: u64) {
        if let Some(count) = self.unsettled.get_mut(&batch_id) {
            *count -= 1;
            if *count == 0 {
                self.unsettled.remove(&batch_id);
            }
        }
    }

    fn answer_flushes(&mut self) {
        let mut index = 0;
        while index < self.flushes.len() {
            if self.is_settled(self.flushes[index].up_to) {
                let flush = self.flushes.swap_remove(index);
                let _ = flush.sender.send(Ok(()));
            } else {
                index += 1;
            }
        }
    }

    fn refuse_flushes(&mut self, refusal: &SpoolRefusal) {
        for flush in self.flushes.drain(..) {
            let _ = flush.sender.send(Err(refusal.error()));
        }
    }

    fn keep_failure(&mut self, failure: Failure) {
        if self.failures.len() == FAILURES_KEPT_MAX {
            self.failures.pop_front();
            self.failures_forgotten += 1;
        }
        self.failures.push_back(failure);
    }

    /// Applies what the server answered: acknowledged and refused events are settled (and leave
    /// memory, when `in_memory`).
    fn apply(&mut self, outcome: &mut Outcome, in_memory: bool) {
        for (item, delivery) in outcome.acknowledged.drain(..) {
            self.resolve(&item.event_id, || Settled::Delivered(delivery));
            if in_memory {
                // Saturating: after `stop` (which zeroes the count) an aborted task may still
                // finish the step it was in.
                self.queued_events = self.queued_events.saturating_sub(1);
            }
        }
        for refusal in outcome.refused.drain(..) {
            let events: Vec<serde_json::Value> = refusal
                .items
                .iter()
                .map(|item| serde_json::from_str(&item.json).expect("events are JSON we wrote"))
                .collect();
            let failure = Failure {
                status: refusal.status,
                detail: refusal.detail,
                events,
            };
            let ids: Vec<&str> = refusal.items.iter().map(|item| &*item.event_id).collect();
            tracing::error!(
                status = failure.status,
                detail = %failure.detail,
                events = ids.len(),
                event_ids = ?ids,
                "sealtrail client: the server refused events for good; they are handed to the \
                 caller (Client::take_failures, flush, Recorded)"
            );
            for (item, event) in refusal.items.iter().zip(&failure.events) {
                let single = Failure {
                    status: failure.status,
                    detail: failure.detail.clone(),
                    events: vec![event.clone()],
                };
                self.resolve(&item.event_id, || Settled::Refused(single.clone()));
                if in_memory {
                    self.queued_events = self.queued_events.saturating_sub(1);
                }
            }
            self.keep_failure(failure);
        }
    }
}

/// The spool record of a batch.
#[derive(Deserialize)]
struct SpooledBatch {
    version: u32,
    durability: Durability,
    request_id: String,
    events: Vec<Box<RawValue>>,
}

#[derive(Deserialize)]
struct EventIdOnly {
    event_id: String,
}

const SPOOL_BATCH_VERSION: u32 = 1;

fn encode(batch: &Batch) -> Vec<u8> {
    let mut payload = String::with_capacity(
        128 + batch
            .items
            .iter()
            .map(|item| item.json.len() + 1)
            .sum::<usize>(),
    );
    payload.push_str(&format!(
        "{{\"version\":{SPOOL_BATCH_VERSION},\"durability\":\"{}\",\"request_id\":{},\"events\":[",
        batch.durability.as_str(),
        serde_json::to_string(&*batch.request_id).expect("a string serializes")
    ));
    for (index, item) in batch.items.iter().enumerate() {
        if index > 0 {
            payload.push(',');
        }
        payload.push_str(&item.json);
    }
    payload.push_str("]}");
    payload.into_bytes()
}

fn decode(payload: &[u8]) -> std::result::Result<Batch, String> {
    let spooled: SpooledBatch =
        serde_json::from_slice(payload).map_err(|error| format!("not a spooled batch: {error}"))?;
    if spooled.version != SPOOL_BATCH_VERSION {
        return Err(format!("spooled batch of version {}", spooled.version));
    }
    let mut items = Vec::with_capacity(spooled.events.len());
    for raw in spooled.events {
        let id: EventIdOnly = serde_json::from_str(raw.get())
            .map_err(|error| format!("a spooled event without event_id: {error}"))?;
        items.push(Item {
            event_id: id.event_id.into(),
            json: raw.get().into(),
            request_id: None,
        });
    }
    let request_id = if valid_request_id(&spooled.request_id) {
        spooled.request_id.into()
    } else {
        uuid::Uuid::now_v7().to_string().into()
    };
    Ok(Batch {
        durability: spooled.durability,
        request_id,
        items,
    })
}

impl Shared {
    async fn run_sender(self: Arc<Self>) {
        let mut rng = rand::rngs::StdRng::from_entropy();
        loop {
            let next = {
                let mut state = lock(&self.state);
                let deadline = state.cut_expired(Instant::now());
                match state.ready.pop_front() {
                    Some(batch) => {
                        state.in_flight = Some(batch.clone());
                        Ok(batch)
                    }
                    None => Err(deadline),
                }
            };
            match next {
                Ok(batch) => self.process(batch, &mut rng).await,
                Err(Some(deadline)) => {
                    tokio::select! {
                        () = self.sender_wake.notified() => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    }
                }
                Err(None) => self.sender_wake.notified().await,
            }
        }
    }

    /// Sends one batch, retrying a few times, and spools what the server would not take.
    async fn process(self: &Arc<Self>, mut batch: Batch, rng: &mut rand::rngs::StdRng) {
        if self.spooled_batches.load(Ordering::SeqCst) == 0 {
            let backoff = self.config.backoff();
            let mut failures = 0;
            'attempts: loop {
                let mut outcome = self
                    .transport
                    .deliver(batch.durability, &batch.request_id, batch.items)
                    .await;
                let (transient, give_up) = {
                    let mut state = lock(&self.state);
                    state.apply(&mut outcome, true);
                    let Some(transient) = outcome.transient else {
                        state.in_flight = None;
                        return;
                    };
                    batch.items = outcome.remaining;
                    state.in_flight = Some(batch.clone());
                    failures += 1;
                    let give_up = failures >= self.config.send_attempts_before_spool
                        || state.closing
                        || !state.flushes.is_empty();
                    if give_up && !state.outage_logged {
                        state.outage_logged = true;
                        tracing::warn!(
                            reason = %transient.reason,
                            attempts = failures,
                            "sealtrail client: the server is failing; spooling events until it \
                             answers again"
                        );
                    }
                    (transient, give_up)
                };
                if give_up {
                    break;
                }
                let pause = backoff.pause(failures, transient.retry_after, rng);
                tracing::debug!(reason = %transient.reason, ?pause, "sealtrail client: retrying");
                let until = Instant::now() + pause;
                // A flush or shutdown cuts the pause short (the batch is spooled at once);
                // other wake-ups do not.
                loop {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => break,
                        () = self.sender_wake.notified() => {
                            let state = lock(&self.state);
                            if state.closing || !state.flushes.is_empty() {
                                break 'attempts;
                            }
                        }
                    }
                }
            }
        }
        self.spool_batch(batch).await;
    }

    /// Appends a batch to the spool, waiting for room if it is full.
    async fn spool_batch(self: &Arc<Self>, batch: Batch) {
        let payload = Arc::new(encode(&batch));
        loop {
            let appended = self
                .blocking({
                    let payload = Arc::clone(&payload);
                    move |shared| {
                        let mut spool = lock(&shared.spool);
                        let appended = spool.append(&payload);
                        shared.mirror(&spool);
                        appended
                    }
                })
                .await;
            {
                let mut state = lock(&self.state);
                match appended {
                    Ok(_) => {
                        state.spool_refusal = None;
                        state.queued_events = state.queued_events.saturating_sub(batch.items.len());
                        state.in_flight = None;
                        state.resolve_spooled(&batch.items);
                        drop(state);
                        self.replayer_wake.notify_one();
                        return;
                    }
                    Err(error) => {
                        let refusal = match error {
                            Error::SpoolFull { bytes_max } => SpoolRefusal::Full { bytes_max },
                            other => SpoolRefusal::Failed(other.to_string()),
                        };
                        if state.spool_refusal.is_none() {
                            tracing::error!(
                                error = %refusal.error(),
                                "sealtrail client: the spool refuses writes; new events are \
                                 refused until it takes them"
                            );
                        }
                        state.refuse_flushes(&refusal);
                        state.spool_refusal = Some(refusal);
                    }
                }
            }
            // Room appears when the replayer delivers an entry (it wakes the sender).
            tokio::select! {
                () = self.sender_wake.notified() => {}
                () = tokio::time::sleep(self.config.backoff_cap) => {}
            }
        }
    }

    async fn run_replayer(self: Arc<Self>) {
        let backoff = self.config.backoff();
        let mut rng = rand::rngs::StdRng::from_entropy();
        let mut failures = 0;
        // Events of the oldest entry already settled (acknowledged or refused) while the rest
        // of it failed: they are not sent again.
        let mut settled_in_front: Option<(EntryId, std::collections::HashSet<Arc<str>>)> = None;
        loop {
            if self.spooled_batches.load(Ordering::SeqCst) == 0 {
                self.replayer_wake.notified().await;
                continue;
            }
            let front = self.blocking(|shared| lock(&shared.spool).front()).await;
            let Some((entry_id, payload)) = front else {
                // Emptied meanwhile (only by `stop`): wait for the next entry.
                self.replayer_wake.notified().await;
                continue;
            };
            let batch = payload
                .map_err(|error| error.to_string())
                .and_then(|payload| decode(&payload));
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(reason) => {
                    self.set_aside(entry_id, &reason).await;
                    continue;
                }
            };
            if let Some((id, settled)) = &settled_in_front {
                if *id == entry_id {
                    batch.items.retain(|item| !settled.contains(&item.event_id));
                }
            }
            let all: Vec<Arc<str>> = batch
                .items
                .iter()
                .map(|item| Arc::clone(&item.event_id))
                .collect();
            let mut outcome = self
                .transport
                .deliver(batch.durability, &batch.request_id, batch.items)
                .await;
            lock(&self.state).apply(&mut outcome, false);
            if let Some(transient) = outcome.transient {
                let remaining: std::collections::HashSet<Arc<str>> = outcome
                    .remaining
                    .iter()
                    .map(|item| Arc::clone(&item.event_id))
                    .collect();
                let settled = settled_in_front
                    .take()
                    .filter(|(id, _)| *id == entry_id)
                    .map(|(_, settled)| settled)
                    .unwrap_or_default();
                let settled = settled
                    .into_iter()
                    .chain(all.into_iter().filter(|id| !remaining.contains(id)))
                    .collect();
                settled_in_front = Some((entry_id, settled));
                failures += 1;
                let pause = backoff.pause(failures, transient.retry_after, &mut rng);
                tracing::debug!(
                    reason = %transient.reason,
                    ?pause,
                    "sealtrail client: the server still fails; replaying the spool later"
                );
                tokio::time::sleep(pause).await;
                continue;
            }
            failures = 0;
            settled_in_front = None;
            self.remove_front(entry_id).await;
        }
    }

    async fn remove_front(self: &Arc<Self>, entry_id: EntryId) {
        let removed = self
            .blocking(move |shared| {
                let mut spool = lock(&shared.spool);
                let removed = spool.pop_front(entry_id);
                shared.mirror(&spool);
                removed
            })
            .await;
        if let Err(error) = removed {
            // The entry is delivered; failing to delete it only means it is sent again later,
            // which the server answers with the stored receipts.
            tracing::warn!(%error, "sealtrail client: could not remove a delivered spool entry");
        }
        if self.spooled_batches.load(Ordering::SeqCst) == 0 {
            let mut state = lock(&self.state);
            if state.outage_logged {
                state.outage_logged = false;
                tracing::info!("sealtrail client: the spool is delivered; sending directly again");
            }
        }
        // Room was freed, and the sender may go back to sending directly.
        self.sender_wake.notify_one();
    }

    async fn set_aside(self: &Arc<Self>, entry_id: EntryId, reason: &str) {
        let set_aside = self
            .blocking(move |shared| {
                let mut spool = lock(&shared.spool);
                let set_aside = spool.set_aside_front(entry_id);
                shared.mirror(&spool);
                set_aside
            })
            .await;
        match set_aside {
            Ok(path) => tracing::error!(
                reason,
                kept_in = %path.display(),
                "sealtrail client: a spool entry cannot be read; it was moved aside and is not sent"
            ),
            Err(error) => {
                tracing::error!(reason, %error, "sealtrail client: a spool entry cannot be read");
                tokio::time::sleep(self.config.backoff_cap).await;
            }
        }
    }

    /// Runs spool IO on the blocking pool.
    async fn blocking<R: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Shared) -> R + Send + 'static,
    ) -> R {
        // The task is aborted only on shutdown; the work, once started, finishes regardless.
        let shared = Arc::clone(self);
        tokio::task::spawn_blocking(move || work(&shared))
            .await
            .expect("spool work does not panic")
    }

    fn mirror(&self, spool: &Spool) {
        self.spooled_batches.store(spool.len(), Ordering::SeqCst);
        self.spooled_bytes.store(spool.bytes(), Ordering::SeqCst);
    }

    /// Stops for good: everything still in memory goes to the spool, every waiter is answered.
    /// Blocking; runs from `Drop` or from `shutdown` (on the blocking pool).
    fn stop(&self) -> ShutdownReport {
        let (batches, waiters, flushes) = {
            let mut state = lock(&self.state);
            if state.stopped {
                return ShutdownReport {
                    spooled_batches: self.spooled_batches.load(Ordering::SeqCst),
                    lost_events: 0,
                };
            }
            state.stopped = true;
            state.closing = true;
            state.cut_all();
            let mut batches: Vec<Batch> = state.in_flight.take().into_iter().collect();
            batches.extend(state.ready.drain(..));
            state.queued_events = 0;
            (
                batches,
                std::mem::take(&mut state.waiters),
                std::mem::take(&mut state.flushes),
            )
        };
        let mut lost_events = 0;
        let mut spool = lock(&self.spool);
        for batch in &batches {
            if let Err(error) = spool.append(&encode(batch)) {
                let ids: Vec<&str> = batch.items.iter().map(|item| &*item.event_id).collect();
                lost_events += ids.len();
                tracing::error!(
                    %error,
                    event_ids = ?ids,
                    "sealtrail client: stopping, and these events could neither be sent nor \
                     spooled"
                );
            }
        }
        self.mirror(&spool);
        // Dropping the waiters answers each `Recorded` with `Error::Closed`.
        drop(waiters);
        for flush in flushes {
            let _ = flush.sender.send(Err(Error::Closed));
        }
        ShutdownReport {
            spooled_batches: spool.len(),
            lost_events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(event_id: &str, request_id: Option<&str>) -> Item {
        Item {
            event_id: event_id.into(),
            json: format!(r#"{{"event_id":"{event_id}","tenant_id":"acme"}}"#).into(),
            request_id: request_id.map(Into::into),
        }
    }

    #[test]
    fn a_spooled_batch_reads_back_as_written() {
        let batch = Batch {
            durability: Durability::Sync,
            request_id: "req-1".into(),
            items: vec![item("a", None), item("b", None)],
        };
        let decoded = decode(&encode(&batch)).unwrap();
        assert_eq!(decoded.durability, Durability::Sync);
        assert_eq!(&*decoded.request_id, "req-1");
        let ids: Vec<&str> = decoded.items.iter().map(|i| &*i.event_id).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(decoded.items[1].json, batch.items[1].json);
        // Anything else is refused, never half read.
        assert!(decode(
            b"{\"version\":2,\"durability\":\"sync\",\"request_id\":\"r\",\"events\":[]}"
        )
        .is_err());
        assert!(decode(b"[1,2]").is_err());
    }

    #[test]
    fn a_batch_uses_its_events_request_id_only_when_they_share_a_valid_one() {
        let config = Config::new("http://127.0.0.1:9", "key", "/nonexistent");
        let cut = |request_ids: &[Option<&str>]| {
            let mut state = State::default();
            for (index, request_id) in request_ids.iter().enumerate() {
                let (sender, _receiver) = oneshot::channel();
                state.add(
                    item(&format!("e{index}"), *request_id),
                    Durability::Async,
                    sender,
                    &config,
                );
            }
            state.cut_all();
            state.ready.pop_front().unwrap().request_id
        };
        assert_eq!(&*cut(&[Some("req-9"), Some("req-9")]), "req-9");
        for mixed in [
            vec![Some("req-9"), Some("req-8")],
            vec![Some("req-9"), None],
            vec![Some("résumé")],
        ] {
            let id = cut(&mixed);
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{mixed:?}: {id}");
        }
    }

    #[test]
    fn batches_are_cut_by_count_and_by_bytes() {
        let mut config = Config::new("http://127.0.0.1:9", "key", "/nonexistent");
        config.batch_events_max = 3;
        let mut state = State::default();
        for index in 0..7 {
            let (sender, _receiver) = oneshot::channel();
            state.add(
                item(&format!("e{index}"), None),
                Durability::Async,
                sender,
                &config,
            );
        }
        let sizes: Vec<usize> = state.ready.iter().map(|batch| batch.items.len()).collect();
        assert_eq!(sizes, [3, 3]);
        assert_eq!(state.queued_events, 7);

        config.batch_events_max = 1_000;
        config.batch_bytes_max = BATCH_BYTES_MIN;
        let mut state = State::default();
        let big = "x".repeat(100_000);
        for index in 0..5 {
            let (sender, _receiver) = oneshot::channel();
            let mut item = item(&format!("e{index}"), None);
            item.json = format!(r#"{{"event_id":"e{index}","pad":"{big}"}}"#).into();
            state.add(item, Durability::Async, sender, &config);
        }
        state.cut_all();
        let sizes: Vec<usize> = state.ready.iter().map(|batch| batch.items.len()).collect();
        // 256 KiB hold two events of 100 KB, not three.
        assert_eq!(sizes, [2, 2, 1]);
        // Sync and async events never share a batch.
        let (sender, _receiver) = oneshot::channel();
        state.add(item("s", None), Durability::Sync, sender, &config);
        let (sender, _receiver) = oneshot::channel();
        state.add(item("a", None), Durability::Async, sender, &config);
        state.cut_all();
        let last: Vec<(Durability, usize)> = state
            .ready
            .iter()
            .skip(3)
            .map(|batch| (batch.durability, batch.items.len()))
            .collect();
        assert_eq!(last, [(Durability::Sync, 1), (Durability::Async, 1)]);
    }
}
