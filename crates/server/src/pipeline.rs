//! The write path between the HTTP handlers and the hot store.
//!
//! Handlers submit whole requests; a writer task takes everything queued, up to
//! [`GROUP_COMMIT_EVENTS_MAX`] events, and commits it in one store transaction (group commit),
//! so concurrent sync requests share one fsync and durability does not cost throughput.
//!
//! There are as many writer tasks (lanes) as the store can commit groups at once
//! ([`HotStore::commit_lanes`]: one for SQLite's single writer connection, several for
//! PostgreSQL, where one group at a time would leave the server waiting on every round trip and
//! commit). A request goes to the lane picked by a hash of its first event's `tenant_id`, so the
//! requests of a single-tenant client stay in order and lanes rarely wait on each other's chain
//! locks. Correctness never depends on the routing: the store serializes groups that share a
//! tenant (the `HotStore::commit_lanes` contract).
//!
//! Admission is bounded twice: sync requests wait up to [`SYNC_ADMIT_WAIT_MILLIS_MAX`] for room
//! among [`SYNC_INFLIGHT_EVENTS_MAX`] in-flight events; async requests get room among
//! the async queue (by default
//! [`ASYNC_QUEUE_EVENTS_MAX`](sealtrail_model::limits::ASYNC_QUEUE_EVENTS_MAX) events) at once or are refused (503). Memory is bounded by those permits.
//! The channel itself is unbounded only because the permits already bound it.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sealtrail_hot::{AppendOutcome, AppendRequest, HotStore};
use sealtrail_model::limits::{
    GROUP_COMMIT_EVENTS_MAX, SHUTDOWN_DRAIN_SECS_MAX, SHUTDOWN_REFUSALS_MILLIS_MAX,
    SPOOL_FSYNC_INTERVAL_MILLIS, SYNC_ADMIT_WAIT_MILLIS_MAX, SYNC_INFLIGHT_EVENTS_MAX,
};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::feed::Feed;
use crate::rejections::{self, Rejection};
use crate::spool::{Spool, SpoolTicket};
use crate::{Error, Result};

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The queue is full: retry later.
    Full,
    /// The server is shutting down or the store failed.
    Unavailable,
}

enum Reply {
    Sync(oneshot::Sender<Result<AppendOutcome, String>>),
    Async(SpoolTicket),
}

enum Job {
    Append {
        request: AppendRequest,
        reply: Reply,
        _permit: OwnedSemaphorePermit,
    },
    /// Everything queued before this has been committed; the writer exits.
    Shutdown(oneshot::Sender<()>),
}

/// Handle to the write pipeline, shared by all handlers.
#[derive(Debug)]
pub(crate) struct Pipeline {
    /// One queue per lane; the permits below bound all of them together.
    lanes: Vec<mpsc::UnboundedSender<Job>>,
    sync_permits: Arc<Semaphore>,
    async_permits: Arc<Semaphore>,
    async_capacity_events: usize,
    spool: Arc<Spool>,
    /// Per lane: whether its last commit succeeded. One lane's success must not hide another
    /// lane's failing store calls.
    healthy: Arc<[AtomicBool]>,
    writers: std::sync::Mutex<Vec<JoinHandle<()>>>,
    syncer: JoinHandle<()>,
    /// Told of every commit, for the consumers of committed events.
    feed: Arc<Feed>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Append { request, .. } => write!(formatter, "Append({} events)", request.len()),
            Job::Shutdown(_) => formatter.write_str("Shutdown"),
        }
    }
}

impl Pipeline {
    /// Starts one writer task per commit lane of the store, and the spool's fsync task.
    /// `refused` are spooled requests that [`replay_spool`] could not commit: they are queued
    /// first, each on its lane, and retried like any refused async request.
    pub(crate) fn start(
        store: Arc<dyn HotStore>,
        spool: Arc<Spool>,
        async_queue_events_max: usize,
        refused: Vec<(AppendRequest, SpoolTicket)>,
    ) -> Self {
        // A store answering 0 still gets one writer: the pipeline must always make progress.
        let lane_count = store.commit_lanes().max(1);
        let healthy: Arc<[AtomicBool]> = (0..lane_count).map(|_| AtomicBool::new(true)).collect();
        let mut lanes = Vec::with_capacity(lane_count);
        let mut writers = Vec::with_capacity(lane_count);
        // The previous run's leftovers hold room of their own, so the queue bound of this run
        // is unchanged by them.
        let leftover_events: usize = refused
            .iter()
            .map(|(request, _)| request.len().max(1))
            .sum();
        let leftover_permits = Arc::new(Semaphore::new(leftover_events));
        let feed = Arc::new(Feed::default());
        for lane in 0..lane_count {
            let (jobs, receiver) = mpsc::unbounded_channel();
            for (request, ticket) in &refused {
                if lane_of(request, lane_count) == lane {
                    let _permit = leftover_permits
                        .clone()
                        .try_acquire_many_owned(permits_for(request))
                        .expect("room was made for every leftover");
                    let _ = jobs.send(Job::Append {
                        request: request.clone(),
                        reply: Reply::Async(*ticket),
                        _permit,
                    });
                }
            }
            lanes.push(jobs);
            writers.push(tokio::spawn(run_writer(
                store.clone(),
                spool.clone(),
                receiver,
                healthy.clone(),
                lane,
                feed.clone(),
            )));
        }
        let syncer = tokio::spawn(run_spool_sync(spool.clone()));
        Pipeline {
            lanes,
            sync_permits: Arc::new(Semaphore::new(SYNC_INFLIGHT_EVENTS_MAX)),
            async_permits: Arc::new(Semaphore::new(async_queue_events_max)),
            async_capacity_events: async_queue_events_max,
            spool,
            healthy,
            writers: std::sync::Mutex::new(writers),
            syncer,
            feed,
        }
    }

    /// The feed of committed events.
    pub(crate) fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    /// Whether every writer is running and the last commit of each succeeded.
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy
            .iter()
            .all(|healthy| healthy.load(Ordering::Relaxed))
            && self.lanes.iter().all(|lane| !lane.is_closed())
    }

    /// Async events acknowledged and not yet committed (for `/metrics`).
    pub(crate) fn async_queued_events(&self) -> usize {
        self.async_capacity_events - self.async_permits.available_permits()
    }

    /// The async queue's capacity in events.
    pub(crate) fn async_capacity_events(&self) -> usize {
        self.async_capacity_events
    }

    /// Spooled records an earlier process acknowledged that could not be read back at start
    /// (damaged on disk; see `spool.rs`), for `/metrics`.
    pub(crate) fn spool_lost_records(&self) -> u64 {
        self.spool.lost_records()
    }

    /// The queue of the lane that commits `request`.
    fn lane(&self, request: &AppendRequest) -> &mpsc::UnboundedSender<Job> {
        &self.lanes[lane_of(request, self.lanes.len())]
    }

    /// Commits a request and returns its outcome once it is durable.
    pub(crate) async fn submit_sync(
        &self,
        request: AppendRequest,
    ) -> Result<AppendOutcome, Refusal> {
        let permits = permits_for(&request);
        let admit = self.sync_permits.clone().acquire_many_owned(permits);
        let permit =
            match tokio::time::timeout(Duration::from_millis(SYNC_ADMIT_WAIT_MILLIS_MAX), admit)
                .await
            {
                Ok(Ok(permit)) => permit,
                Ok(Err(_closed)) => return Err(Refusal::Unavailable),
                Err(_elapsed) => return Err(Refusal::Full),
            };
        let (reply, outcome) = oneshot::channel();
        self.lane(&request)
            .send(Job::Append {
                request,
                reply: Reply::Sync(reply),
                _permit: permit,
            })
            .map_err(|_| Refusal::Unavailable)?;
        match outcome.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) | Err(_) => Err(Refusal::Unavailable),
        }
    }

    /// Spools a request and queues it for commit. When this returns `Ok`, the request survives a
    /// crash of this process.
    pub(crate) fn submit_async(&self, request: AppendRequest) -> Result<(), Refusal> {
        let permit = self
            .async_permits
            .clone()
            .try_acquire_many_owned(permits_for(&request))
            .map_err(|_| Refusal::Full)?;
        let ticket = self.spool.append(&request).map_err(|error| {
            tracing::error!(%error, "cannot write the async spool");
            Refusal::Unavailable
        })?;
        self.lane(&request)
            .send(Job::Append {
                request,
                reply: Reply::Async(ticket),
                _permit: permit,
            })
            .map_err(|_| Refusal::Unavailable)
    }

    /// Drains every queued request of every lane into the store and stops the writers, by
    /// `deadline`. Call after the HTTP server stopped accepting and finished its in-flight
    /// requests. Returns whether everything drained; past the deadline the writers are
    /// abandoned: async requests not yet committed stay in the spool (they are replayed on the
    /// next start) and sync callers still waiting get 503.
    pub(crate) async fn shutdown(&self, deadline: tokio::time::Instant) -> Result<bool> {
        // Past the deadline the writers may already be abandoned (`serve_until_deadline`), and
        // lanes without a writer would look drained at once.
        let drained = tokio::time::Instant::now() < deadline
            && tokio::time::timeout_at(deadline, self.drain_lanes())
                .await
                .is_ok();
        if !drained {
            tracing::error!(
                seconds = SHUTDOWN_DRAIN_SECS_MAX,
                "the ingest pipeline did not drain before the shutdown deadline; uncommitted \
                 async requests stay in the spool and are replayed on the next start"
            );
            self.abandon();
        }
        let writers =
            std::mem::take(&mut *self.writers.lock().expect("writer handle lock poisoned"));
        for writer in writers {
            match writer.await {
                Ok(()) => {}
                Err(join) if join.is_cancelled() => {}
                Err(join) => return Err(Error::Task(join.to_string())),
            }
        }
        self.syncer.abort();
        // `close` fsyncs: on the blocking pool, not a runtime worker.
        let spool = self.spool.clone();
        let pending = tokio::task::spawn_blocking(move || spool.close())
            .await
            .map_err(|join| Error::Task(join.to_string()))??;
        if pending > 0 {
            tracing::warn!(
                pending,
                "async requests remain in the spool; they are replayed on the next start"
            );
        }
        Ok(drained)
    }

    /// Sends every lane its Shutdown first, so the lanes drain in parallel; each answers once
    /// everything queued before it is committed (async requests retry until they are).
    async fn drain_lanes(&self) {
        let mut finished = Vec::with_capacity(self.lanes.len());
        for lane in &self.lanes {
            let (done, lane_finished) = oneshot::channel();
            if lane.send(Job::Shutdown(done)).is_ok() {
                finished.push(lane_finished);
            }
        }
        for lane_finished in finished {
            let _ = lane_finished.await;
        }
    }

    /// Stops every writer where it is. Every queued or half-committed job is dropped with its
    /// reply: a sync caller still waiting gets 503 (`Refusal::Unavailable`); an async request
    /// stays in the spool, uncommitted, for the next start. A commit the store had already begun
    /// may still land; its replay or the client's retry is idempotent.
    fn abandon(&self) {
        for writer in self
            .writers
            .lock()
            .expect("writer handle lock poisoned")
            .iter()
        {
            writer.abort();
        }
    }

    /// Runs `serving` (the HTTP server with its graceful shutdown) to its end: normally once the
    /// shutdown signal came and in-flight requests finished. Requests still in flight at the
    /// shutdown deadline are refused: the pipeline is abandoned, so sync callers waiting on it
    /// get 503, and they get [`SHUTDOWN_REFUSALS_MILLIS_MAX`] to send that answer before their
    /// connections are closed.
    pub(crate) async fn serve_until_deadline(
        &self,
        serving: impl Future<Output = std::io::Result<()>>,
        drain: &DrainDeadline,
    ) -> std::io::Result<()> {
        let mut serving = std::pin::pin!(serving);
        tokio::select! {
            served = &mut serving => return served,
            () = drain.passed() => {}
        }
        tracing::error!(
            seconds = SHUTDOWN_DRAIN_SECS_MAX,
            "requests still in flight at the shutdown deadline; refusing them"
        );
        self.abandon();
        let answered = Duration::from_millis(SHUTDOWN_REFUSALS_MILLIS_MAX);
        tokio::time::timeout(answered, serving)
            .await
            .unwrap_or(Ok(()))
    }
}

/// When an orderly shutdown must be over: [`SHUTDOWN_DRAIN_SECS_MAX`] after the shutdown
/// signal. Before the signal there is no deadline.
#[derive(Debug, Clone)]
pub(crate) struct DrainDeadline {
    at: Arc<tokio::sync::watch::Sender<Option<tokio::time::Instant>>>,
    limit: Duration,
}

impl DrainDeadline {
    /// A deadline [`SHUTDOWN_DRAIN_SECS_MAX`] after the signal.
    pub(crate) fn new() -> Self {
        Self::after(Duration::from_secs(SHUTDOWN_DRAIN_SECS_MAX))
    }

    fn after(limit: Duration) -> Self {
        DrainDeadline {
            at: Arc::new(tokio::sync::watch::Sender::new(None)),
            limit,
        }
    }

    /// Resolves when `shutdown` does, and starts the clock.
    pub(crate) fn starts_after(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let deadline = self.clone();
        async move {
            shutdown.await;
            deadline.start();
        }
    }

    /// Starts the clock, unless it already runs; returns the deadline.
    fn start(&self) -> tokio::time::Instant {
        let limit = self.limit;
        self.at.send_if_modified(|at| {
            let unset = at.is_none();
            at.get_or_insert_with(|| tokio::time::Instant::now() + limit);
            unset
        });
        self.at.borrow().expect("just set")
    }

    /// The deadline (starting the clock if the signal never came).
    pub(crate) fn deadline(&self) -> tokio::time::Instant {
        self.start()
    }

    /// Resolves once the shutdown signal came (live streams end then, so they do not hold the
    /// drain up).
    pub(crate) async fn started(&self) {
        let mut started = self.at.subscribe();
        if started.wait_for(Option::is_some).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once the deadline has passed; never before the shutdown signal.
    async fn passed(&self) {
        let mut started = self.at.subscribe();
        let at = match started.wait_for(Option::is_some).await {
            Ok(at) => at.expect("waited for it"),
            Err(_) => return std::future::pending().await,
        };
        tokio::time::sleep_until(at).await;
    }
}

/// Commits requests an earlier process accepted asynchronously, before serving. Replay is
/// idempotent: every spooled event carries its final `event_id`, so one already committed is
/// not stored twice. A request the store refuses does not stop the start: it is written to the
/// new spool (and synced) before the old segments go, and returned for the pipeline to retry.
/// A leftover segment goes only once each of its intact requests is committed or spooled again:
/// an intact one is deleted, a damaged one renamed aside (`Spool::retire_replayed`).
pub(crate) async fn replay_spool(
    store: &dyn HotStore,
    spool: &Spool,
    leftovers: crate::spool::Leftovers,
) -> Result<Vec<(AppendRequest, SpoolTicket)>> {
    let mut retired = Vec::with_capacity(leftovers.len());
    let mut replayed = 0usize;
    let mut refused = Vec::new();
    for segment in leftovers {
        let mut group = Vec::new();
        let mut events = 0;
        for request in segment.requests {
            events += request.len();
            replayed += request.len();
            group.push(request);
            if events >= GROUP_COMMIT_EVENTS_MAX {
                refused.extend(replay_group(store, std::mem::take(&mut group)).await);
                events = 0;
            }
        }
        if !group.is_empty() {
            refused.extend(replay_group(store, group).await);
        }
        retired.push((segment.path, segment.damaged));
    }
    let mut kept = Vec::with_capacity(refused.len());
    for request in refused {
        let ticket = spool.append(&request)?;
        kept.push((request, ticket));
    }
    // Before serving, so no append waits on these fsyncs.
    spool.sync()?;
    spool.retire_replayed(&retired)?;
    let recovery = spool.recovery();
    if replayed > 0 || recovery.lost > 0 {
        tracing::info!(
            events = replayed,
            refused_requests = kept.len(),
            segments = recovery.segments,
            lost_records = recovery.lost,
            damaged_segments = recovery.damaged_segments,
            "replayed the async spool"
        );
    }
    Ok(kept)
}

/// Commits one replayed group; on failure, each request alone. Conflicts are recorded like
/// those of live async requests. Returns the requests the store refused.
async fn replay_group(store: &dyn HotStore, group: Vec<AppendRequest>) -> Vec<AppendRequest> {
    let mut committed = Vec::new();
    let mut refused = Vec::new();
    let group = Arc::new(group);
    match store.append(group.clone()).await {
        Ok(outcomes) => committed.extend(group.iter().cloned().zip(outcomes)),
        Err(_) => {
            let group = Arc::try_unwrap(group).unwrap_or_else(|shared| (*shared).clone());
            for request in group {
                match store.append(Arc::new(vec![request.clone()])).await {
                    Ok(mut outcomes) => {
                        let outcome = outcomes.pop().expect("one outcome per request");
                        committed.push((request, outcome));
                    }
                    Err(error) => {
                        tracing::error!(
                            %error,
                            events = request.len(),
                            "a spooled request cannot be committed yet; it stays spooled"
                        );
                        refused.push(request);
                    }
                }
            }
        }
    }
    for (request, outcome) in committed {
        record_conflict(store, &request, &outcome).await;
    }
    refused
}

/// The lane of a request among `lane_count`: a hash of its first event's `tenant_id` (a request
/// with several tenants goes by its first; an empty one to lane 0). `DefaultHasher::new()` has
/// fixed keys, so a tenant keeps its lane for the life of the process.
fn lane_of(request: &AppendRequest, lane_count: usize) -> usize {
    let Some(first) = request.first() else {
        return 0;
    };
    let mut hasher = std::hash::DefaultHasher::new();
    first.event.tenant_id.hash(&mut hasher);
    usize::try_from(hasher.finish() % lane_count as u64).expect("a lane index fits in usize")
}

fn permits_for(request: &AppendRequest) -> u32 {
    u32::try_from(request.len().max(1)).expect("requests are bounded by BATCH_EVENTS_MAX")
}

async fn run_spool_sync(spool: Arc<Spool>) {
    let mut interval = tokio::time::interval(Duration::from_millis(SPOOL_FSYNC_INTERVAL_MILLIS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let spool = spool.clone();
        match tokio::task::spawn_blocking(move || spool.sync()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "spool fsync failed"),
            Err(join) => tracing::error!(%join, "spool fsync task failed"),
        }
    }
}

/// An async request waiting in the spool for the store to accept it; it keeps its queue room.
type Queued = (AppendRequest, SpoolTicket, OwnedSemaphorePermit);

async fn run_writer(
    store: Arc<dyn HotStore>,
    spool: Arc<Spool>,
    mut receiver: mpsc::UnboundedReceiver<Job>,
    healthy: Arc<[AtomicBool]>,
    lane: usize,
    feed: Arc<Feed>,
) {
    // Async requests the store refused on their own (one tenant's chain it cannot extend, say).
    // They stay spooled and are retried with growing pauses *beside* new work, never in front
    // of it: one request the store cannot take must not stall the lane, shutdown or restart.
    let mut parked: Vec<Queued> = Vec::new();
    let mut parked_attempts = 0u32;
    let mut retry_at = tokio::time::Instant::now();
    let mut shutdown = None;
    while shutdown.is_none() {
        let first = if parked.is_empty() {
            receiver.recv().await
        } else {
            tokio::select! {
                job = receiver.recv() => job,
                () = tokio::time::sleep_until(retry_at) => {
                    let retry = std::mem::take(&mut parked)
                        .into_iter()
                        .map(|(request, ticket, permit)| (request, Reply::Async(ticket), permit))
                        .collect();
                    parked = commit_group(&*store, &spool, retry, &healthy[lane], &feed).await;
                    parked_attempts = if parked.is_empty() { 0 } else { parked_attempts + 1 };
                    retry_at = tokio::time::Instant::now() + retry_pause(parked_attempts);
                    continue;
                }
            }
        };
        let Some(first) = first else {
            break;
        };
        let mut jobs = Vec::new();
        let mut events = 0;
        let mut next = Some(first);
        // Take whatever else is already queued: that is the group commit.
        while let Some(job) = next.take() {
            match job {
                Job::Shutdown(done) => {
                    shutdown = Some(done);
                    break;
                }
                Job::Append {
                    request,
                    reply,
                    _permit,
                } => {
                    events += request.len();
                    jobs.push((request, reply, _permit));
                }
            }
            if events < GROUP_COMMIT_EVENTS_MAX {
                next = receiver.try_recv().ok();
            }
        }
        if !jobs.is_empty() {
            let refused = commit_group(&*store, &spool, jobs, &healthy[lane], &feed).await;
            if !refused.is_empty() && parked.is_empty() {
                retry_at = tokio::time::Instant::now() + retry_pause(parked_attempts);
            }
            parked.extend(refused);
        }
    }
    if !parked.is_empty() {
        // One last try; whatever the store still refuses stays in the spool for the next start.
        let retry = parked
            .into_iter()
            .map(|(request, ticket, permit)| (request, Reply::Async(ticket), permit))
            .collect();
        let left = commit_group(&*store, &spool, retry, &healthy[lane], &feed).await;
        if !left.is_empty() {
            tracing::warn!(
                lane,
                requests = left.len(),
                "the store still refuses these async requests; they stay in the spool and are \
                 retried on the next start"
            );
        }
    }
    if let Some(done) = shutdown {
        let _ = done.send(());
    }
}

/// The pause before retry `attempt` of parked async requests.
fn retry_pause(attempt: u32) -> Duration {
    Duration::from_millis((50u64 << attempt.min(5)).min(RETRY_PAUSE_MILLIS_MAX))
}

/// Commits one group and answers its callers; returns the async requests the store refused,
/// still spooled, for the caller to retry later.
///
/// If the group fails as a whole, each request is retried alone, so a request the store cannot
/// take (a tenant whose chain it cannot extend) fails only itself: sync callers are told (nothing
/// of theirs was written), async requests come back to be retried. An acknowledged async event is
/// never dropped.
async fn commit_group(
    store: &dyn HotStore,
    spool: &Spool,
    jobs: Vec<(AppendRequest, Reply, OwnedSemaphorePermit)>,
    healthy: &AtomicBool,
    feed: &Feed,
) -> Vec<Queued> {
    let mut batch = Vec::with_capacity(jobs.len());
    let mut replies = Vec::with_capacity(jobs.len());
    for (request, reply, permit) in jobs {
        batch.push(request);
        replies.push((reply, permit));
    }
    let batch = Arc::new(batch);
    let started = std::time::Instant::now();
    let appended = store.append(batch.clone()).await;
    let events = batch.iter().map(Vec::len).sum();
    crate::metrics::registry().group_commit(events, started.elapsed(), appended.is_ok());
    let error = match appended {
        Ok(outcomes) => {
            healthy.store(true, Ordering::Relaxed);
            feed.committed(
                batch
                    .iter()
                    .flatten()
                    .map(|pending| pending.event.tenant_id.as_str()),
            );
            for ((reply, _permit), (outcome, request)) in replies
                .into_iter()
                .zip(outcomes.into_iter().zip(batch.iter()))
            {
                answer(store, spool, reply, request, outcome).await;
            }
            return Vec::new();
        }
        Err(error) => error,
    };
    let requests = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
    // A group of one already failed alone: its error is the answer, without asking again.
    let mut group_error = Some(error).filter(|_| requests.len() == 1);
    let mut refused = Vec::new();
    for (request, (reply, permit)) in requests.into_iter().zip(replies) {
        let result = match group_error.take() {
            Some(error) => Err(error),
            None => store.append(Arc::new(vec![request.clone()])).await,
        };
        match result {
            Ok(mut outcomes) => {
                healthy.store(true, Ordering::Relaxed);
                feed.committed(
                    request
                        .iter()
                        .map(|pending| pending.event.tenant_id.as_str()),
                );
                let outcome = outcomes.pop().expect("one outcome per request");
                answer(store, spool, reply, &request, outcome).await;
            }
            Err(error) => {
                // A fault confined to one tenant's stored log leaves the store ready for others.
                if !matches!(error, sealtrail_hot::Error::Corrupt { .. }) {
                    healthy.store(false, Ordering::Relaxed);
                }
                let reason = error.to_string();
                let tenant_id = request
                    .first()
                    .map(|pending| pending.event.tenant_id.clone());
                tracing::error!(
                    error = %reason,
                    tenant_id = tenant_id.as_deref().unwrap_or(""),
                    events = request.len(),
                    "commit failed; nothing of the request was stored"
                );
                match reply {
                    Reply::Sync(sender) => {
                        let _ = sender.send(Err(reason));
                    }
                    Reply::Async(ticket) => refused.push((request, ticket, permit)),
                }
            }
        }
    }
    refused
}

/// Answers one committed request's caller: the outcome to a sync caller; for an async one,
/// records a refusal where the sender can find it (the caller is gone), then retires its
/// spool record.
async fn answer(
    store: &dyn HotStore,
    spool: &Spool,
    reply: Reply,
    request: &AppendRequest,
    outcome: AppendOutcome,
) {
    match reply {
        Reply::Sync(sender) => {
            let _ = sender.send(Ok(outcome));
        }
        Reply::Async(ticket) => {
            // The spool record goes only after the refusal is recorded: a crash in between
            // replays the request, which is refused and recorded again.
            record_conflict(store, request, &outcome).await;
            if let Err(error) = spool.committed(ticket) {
                tracing::error!(%error, "cannot retire a spool segment");
            }
        }
    }
}

/// Records an async request's refusal at commit (its sender is gone) for
/// `GET /v1/tenants/{tenant_id}/rejected-events`; nothing for a committed request.
async fn record_conflict(store: &dyn HotStore, request: &AppendRequest, outcome: &AppendOutcome) {
    let AppendOutcome::Conflict { index, event_id } = outcome else {
        return;
    };
    let tenant_id = &request[*index].event.tenant_id;
    tracing::warn!(
        index,
        event_id = %event_id,
        tenant_id = %tenant_id,
        "async request rejected at commit: event_id reused with different content"
    );
    let rejection = Rejection {
        event_id: event_id.clone(),
        index: *index,
        request_events: request.len(),
        reason: "event_id is already stored with different content; nothing of the request was \
                 stored"
            .into(),
        rejected_at: sealtrail_model::format_timestamp(crate::now_ns()),
    };
    if let Err(error) = rejections::record(store, tenant_id, rejection).await {
        tracing::error!(?error, "cannot record an async rejection");
    }
}

/// Longest pause between retries of a failed async commit, in milliseconds.
const RETRY_PAUSE_MILLIS_MAX: u64 = 1_000;

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicUsize;

    use async_trait::async_trait;
    use sealtrail_hot::conformance::test_event;
    use sealtrail_hot::{
        ApiKeyRecord, CheckpointStore, EventQuery, EventStore, ExistingEvent, LifecycleStore,
        SettingsStore, StoredCheckpoint, TreeStore,
    };
    use sealtrail_ledger::ChainHead;
    use sealtrail_model::{EventReceipt, StoredEvent};

    use super::*;

    /// A store whose appends take a while and record how many ran at once; it numbers each
    /// tenant's events 1, 2, … in commit order.
    #[derive(Debug)]
    struct SlowStore {
        lanes: usize,
        running: AtomicUsize,
        most_running: AtomicUsize,
        seqs: std::sync::Mutex<HashMap<String, u64>>,
        settings: std::sync::Mutex<HashMap<String, Vec<u8>>>,
        /// When set, appends never finish (a hung store).
        hang: AtomicBool,
    }

    impl SlowStore {
        fn new(lanes: usize) -> Self {
            SlowStore {
                lanes,
                running: AtomicUsize::new(0),
                most_running: AtomicUsize::new(0),
                seqs: std::sync::Mutex::new(HashMap::new()),
                settings: std::sync::Mutex::new(HashMap::new()),
                hang: AtomicBool::new(false),
            }
        }
    }

    // The pipeline never verifies; a test store has no log to read.
    #[async_trait]
    impl sealtrail_hot::LogSource for SlowStore {
        async fn known_tenants(&self) -> sealtrail_hot::Result<Vec<String>> {
            Ok(Vec::new())
        }

        async fn snapshot(
            &self,
            _tenant_id: &str,
        ) -> sealtrail_hot::Result<Box<dyn sealtrail_hot::TenantSnapshot>> {
            Err(sealtrail_hot::Error::Task(
                "a test store keeps no log".into(),
            ))
        }
    }

    #[async_trait]
    impl EventStore for SlowStore {
        async fn append(
            &self,
            batch: Arc<Vec<AppendRequest>>,
        ) -> sealtrail_hot::Result<Vec<AppendOutcome>> {
            if self.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_running.fetch_max(running, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut seqs = self.seqs.lock().unwrap();
            let outcomes = batch
                .iter()
                .map(|request| {
                    // An `event_id` named `conflict-…` is "stored with other content".
                    if let Some(index) = request
                        .iter()
                        .position(|pending| pending.event.event_id.starts_with("conflict-"))
                    {
                        return AppendOutcome::Conflict {
                            index,
                            event_id: request[index].event.event_id.clone(),
                        };
                    }
                    AppendOutcome::Committed(
                        request
                            .iter()
                            .map(|pending| {
                                let seq = seqs.entry(pending.event.tenant_id.clone()).or_default();
                                *seq += 1;
                                EventReceipt {
                                    event_id: pending.event.event_id.clone(),
                                    tenant_id: pending.event.tenant_id.clone(),
                                    seq: *seq,
                                    event_hash: [0; 32],
                                }
                            })
                            .collect(),
                    )
                })
                .collect();
            self.running.fetch_sub(1, Ordering::SeqCst);
            Ok(outcomes)
        }

        fn commit_lanes(&self) -> usize {
            self.lanes
        }

        async fn existing(
            &self,
            _tenant_id: &str,
            _event_ids: Vec<String>,
        ) -> sealtrail_hot::Result<Vec<ExistingEvent>> {
            Ok(Vec::new())
        }

        async fn get_event(
            &self,
            _tenant_id: &str,
            _event_id: &str,
        ) -> sealtrail_hot::Result<Option<StoredEvent>> {
            Ok(None)
        }

        async fn query(&self, _query: EventQuery) -> sealtrail_hot::Result<Vec<StoredEvent>> {
            Ok(Vec::new())
        }

        async fn tenant_heads(&self) -> sealtrail_hot::Result<Vec<(String, Option<ChainHead>)>> {
            Ok(Vec::new())
        }

        async fn scan_events(
            &self,
            _tenant_id: &str,
            _after_seq: u64,
            _limit: usize,
        ) -> sealtrail_hot::Result<Vec<StoredEvent>> {
            Ok(Vec::new())
        }

        async fn chain_heads(&self) -> sealtrail_hot::Result<Vec<(String, ChainHead)>> {
            Ok(Vec::new())
        }
    }

    #[async_trait]
    impl TreeStore for SlowStore {
        async fn merkle_block(
            &self,
            _tenant_id: &str,
            _level: u8,
            _block: u64,
        ) -> sealtrail_hot::Result<Vec<[u8; 32]>> {
            Ok(Vec::new())
        }
    }

    #[async_trait]
    impl CheckpointStore for SlowStore {
        async fn insert_checkpoint(
            &self,
            _tenant_id: &str,
            _checkpoint: StoredCheckpoint,
        ) -> sealtrail_hot::Result<bool> {
            Ok(false)
        }

        async fn checkpoint(
            &self,
            _tenant_id: &str,
            _tree_size: Option<u64>,
        ) -> sealtrail_hot::Result<Option<StoredCheckpoint>> {
            Ok(None)
        }
    }

    #[async_trait]
    impl SettingsStore for SlowStore {
        async fn insert_api_key(&self, _key: ApiKeyRecord) -> sealtrail_hot::Result<()> {
            Ok(())
        }

        async fn find_api_key(&self, _key_id: &str) -> sealtrail_hot::Result<Option<ApiKeyRecord>> {
            Ok(None)
        }

        async fn revoke_api_key(
            &self,
            _key_id: &str,
            _revoked_at_ns: i64,
        ) -> sealtrail_hot::Result<bool> {
            Ok(false)
        }

        async fn setting(&self, name: &str) -> sealtrail_hot::Result<Option<Vec<u8>>> {
            Ok(self.settings.lock().unwrap().get(name).cloned())
        }

        async fn set_setting_if_absent(
            &self,
            _name: &str,
            _value: Vec<u8>,
        ) -> sealtrail_hot::Result<bool> {
            Ok(false)
        }

        async fn set_setting(&self, name: &str, value: Vec<u8>) -> sealtrail_hot::Result<()> {
            self.settings.lock().unwrap().insert(name.to_owned(), value);
            Ok(())
        }

        async fn settings_with_prefix(
            &self,
            _prefix: &str,
        ) -> sealtrail_hot::Result<Vec<(String, Vec<u8>)>> {
            Ok(Vec::new())
        }

        async fn delete_settings(&self, _prefix: &str) -> sealtrail_hot::Result<u64> {
            Ok(0)
        }
    }

    #[async_trait]
    impl sealtrail_hot::SummaryStore for SlowStore {
        async fn actor_days(
            &self,
            _tenant_id: &str,
            _filter: sealtrail_hot::ActorDayFilter<'_>,
        ) -> sealtrail_hot::Result<Vec<(sealtrail_hot::ActorDayKey, sealtrail_hot::SummaryTally)>>
        {
            Ok(Vec::new())
        }

        async fn tenant_days(
            &self,
            _tenant_id: &str,
            _from_day: Option<&str>,
            _to_day: Option<&str>,
        ) -> sealtrail_hot::Result<Vec<sealtrail_hot::TenantDay>> {
            Ok(Vec::new())
        }

        async fn top_actors(
            &self,
            _tenant_id: &str,
            _from_day: Option<&str>,
            _to_day: Option<&str>,
            _top: usize,
        ) -> sealtrail_hot::Result<Vec<(String, u64)>> {
            Ok(Vec::new())
        }

        async fn revisions(
            &self,
            _tenant_id: &str,
        ) -> sealtrail_hot::Result<sealtrail_hot::Revisions> {
            Ok(sealtrail_hot::Revisions::default())
        }

        async fn mark_deleted_days(
            &self,
            _tenant_id: &str,
            _days: Vec<String>,
        ) -> sealtrail_hot::Result<()> {
            Ok(())
        }

        async fn deleted_days(
            &self,
            _tenant_id: &str,
            _from_day: Option<&str>,
            _to_day: Option<&str>,
        ) -> sealtrail_hot::Result<Vec<String>> {
            Ok(Vec::new())
        }

        async fn tenant_months(
            &self,
            _tenant_id: &str,
            _from_month: Option<&str>,
            _to_month: Option<&str>,
            _top: usize,
        ) -> sealtrail_hot::Result<Vec<sealtrail_hot::TenantMonth>> {
            Ok(Vec::new())
        }
    }

    #[async_trait]
    impl sealtrail_hot::DirectoryStore for SlowStore {
        async fn upsert_actors(
            &self,
            _tenant_id: &str,
            actors: Vec<sealtrail_model::Actor>,
        ) -> sealtrail_hot::Result<u64> {
            Ok(actors.len() as u64)
        }

        async fn actor(
            &self,
            _tenant_id: &str,
            _actor_id: &str,
        ) -> sealtrail_hot::Result<Option<sealtrail_model::Actor>> {
            Ok(None)
        }

        async fn actors(
            &self,
            _tenant_id: &str,
        ) -> sealtrail_hot::Result<Vec<sealtrail_model::Actor>> {
            Ok(Vec::new())
        }

        async fn team_members(
            &self,
            _tenant_id: &str,
            _teams: &[String],
            _limit: usize,
        ) -> sealtrail_hot::Result<Vec<String>> {
            Ok(Vec::new())
        }
    }

    #[async_trait]
    impl sealtrail_hot::SamplingStore for SlowStore {
        async fn sampling_counts(
            &self,
            _tenant_id: &str,
            _from_day: Option<&str>,
            _to_day: Option<&str>,
        ) -> sealtrail_hot::Result<Vec<sealtrail_hot::SamplingCount>> {
            Ok(Vec::new())
        }

        async fn unstated_sampling_counts(
            &self,
            _limit: usize,
        ) -> sealtrail_hot::Result<Vec<sealtrail_hot::SamplingCount>> {
            Ok(Vec::new())
        }

        async fn mark_sampling_stated(
            &self,
            _counts: Vec<sealtrail_hot::SamplingCount>,
        ) -> sealtrail_hot::Result<()> {
            Ok(())
        }
    }

    #[async_trait]
    impl LifecycleStore for SlowStore {
        async fn hot_prefix_older_than(
            &self,
            _tenant_id: &str,
            _cutoff_ns: i64,
        ) -> sealtrail_hot::Result<Option<(u64, u64)>> {
            Ok(None)
        }

        async fn first_hot_seq(&self, _tenant_id: &str) -> sealtrail_hot::Result<Option<u64>> {
            Ok(None)
        }

        async fn events_in_seq_range(
            &self,
            _tenant_id: &str,
            _first: u64,
            _last: u64,
        ) -> sealtrail_hot::Result<Vec<StoredEvent>> {
            Ok(Vec::new())
        }

        async fn delete_events_through(
            &self,
            _tenant_id: &str,
            _last_seq: u64,
        ) -> sealtrail_hot::Result<u64> {
            Ok(0)
        }
    }

    /// A shutdown deadline no test reaches.
    fn far_deadline() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(600)
    }

    fn request(tenant_id: &str, first: u64, events: u64) -> AppendRequest {
        (first..first + events)
            .map(|n| test_event(tenant_id, &format!("{tenant_id}-{n}"), n))
            .collect()
    }

    #[test]
    fn a_tenant_keeps_its_lane_and_tenants_spread_over_every_lane() {
        let lanes = 4;
        let mut used = vec![0; lanes];
        for tenant in 0..64 {
            let tenant_id = format!("tenant-{tenant}");
            let lane = lane_of(&request(&tenant_id, 0, 1), lanes);
            // Whatever else the request holds, its first event's tenant decides.
            let mut mixed = request(&tenant_id, 1, 2);
            mixed.extend(request("other", 0, 3));
            assert_eq!(lane_of(&mixed, lanes), lane);
            used[lane] += 1;
        }
        assert!(used.iter().all(|&tenants| tenants > 0), "{used:?}");
        assert_eq!(lane_of(&Vec::new(), lanes), 0);
        assert_eq!(lane_of(&request("any", 0, 1), 1), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lanes_commit_at_once_and_shutdown_drains_every_lane() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, leftovers) = Spool::open(dir.path()).unwrap();
        assert!(leftovers.is_empty());
        let store = Arc::new(SlowStore::new(4));
        let pipeline = Arc::new(Pipeline::start(
            store.clone(),
            Arc::new(spool),
            1_000,
            Vec::new(),
        ));

        // Async requests first, one per tenant, so every lane has queued work at shutdown.
        let tenants: Vec<String> = (0..16).map(|tenant| format!("tenant-{tenant}")).collect();
        for tenant_id in &tenants {
            pipeline.submit_async(request(tenant_id, 0, 2)).unwrap();
        }
        let sync_requests = tenants.iter().map(|tenant_id| {
            let pipeline = pipeline.clone();
            let tenant_id = tenant_id.clone();
            tokio::spawn(async move { pipeline.submit_sync(request(&tenant_id, 2, 3)).await })
        });
        for (handle, tenant_id) in sync_requests.collect::<Vec<_>>().into_iter().zip(&tenants) {
            match handle.await.unwrap() {
                Ok(AppendOutcome::Committed(receipts)) => {
                    // The async request of the same tenant went to the same lane, before.
                    let seqs: Vec<u64> = receipts.iter().map(|receipt| receipt.seq).collect();
                    assert_eq!(seqs, vec![3, 4, 5], "{tenant_id}");
                }
                other => panic!("{tenant_id}: {other:?}"),
            }
        }
        assert!(
            store.most_running.load(Ordering::SeqCst) > 1,
            "the lanes committed one group at a time"
        );
        assert!(pipeline.is_healthy());

        for tenant_id in &tenants {
            pipeline.submit_async(request(tenant_id, 5, 1)).unwrap();
        }
        assert!(pipeline.shutdown(far_deadline()).await.unwrap());
        let seqs = store.seqs.lock().unwrap();
        for tenant_id in &tenants {
            assert_eq!(
                seqs.get(tenant_id),
                Some(&6),
                "{tenant_id}: every event committed"
            );
        }
        // Every spooled request was committed, so shutdown left no segment to replay.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_async_request_refused_at_commit_is_recorded_for_its_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let store = Arc::new(SlowStore::new(1));
        let pipeline = Pipeline::start(store.clone(), Arc::new(spool), 1_000, Vec::new());
        let mut refused = request("acme", 0, 3);
        refused[1].event.event_id = "conflict-1".into();
        pipeline.submit_async(refused).unwrap();
        pipeline.submit_async(request("acme", 10, 2)).unwrap();
        assert!(pipeline.shutdown(far_deadline()).await.unwrap());

        let stored = store
            .setting("async_rejections/acme")
            .await
            .unwrap()
            .expect("the refusal is recorded");
        let rejections: serde_json::Value = serde_json::from_slice(&stored).unwrap();
        assert_eq!(rejections["total"], 1);
        let rejected = &rejections["rejected"][0];
        assert_eq!(rejected["event_id"], "conflict-1");
        assert_eq!(rejected["index"], 1);
        assert_eq!(rejected["request_events"], 3);
        assert!(rejected["reason"]
            .as_str()
            .unwrap()
            .contains("different content"));
        // The other request committed, and the refused one left the spool: it is answered.
        assert_eq!(store.seqs.lock().unwrap().get("acme"), Some(&2));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_the_shutdown_deadline_sync_callers_get_503_and_async_requests_stay_spooled() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let store = Arc::new(SlowStore::new(1));
        store.hang.store(true, Ordering::SeqCst);
        let pipeline = Arc::new(Pipeline::start(
            store.clone(),
            Arc::new(spool),
            1_000,
            Vec::new(),
        ));
        let spooled = request("acme", 0, 2);
        pipeline.submit_async(spooled.clone()).unwrap();
        // A sync request in flight when the signal comes: the hung store never answers it.
        let in_flight = {
            let pipeline = pipeline.clone();
            tokio::spawn(async move { pipeline.submit_sync(request("acme", 2, 1)).await })
        };

        let limit = Duration::from_millis(300);
        let drain = DrainDeadline::after(limit);
        let signal = drain.starts_after(async {});
        // Like axum's graceful shutdown: after the signal, wait for the in-flight request.
        let (answer_sender, mut answer) = oneshot::channel();
        let serving = async move {
            signal.await;
            let _ = answer_sender.send(in_flight.await.unwrap());
            Ok(())
        };
        let started = tokio::time::Instant::now();
        pipeline
            .serve_until_deadline(serving, &drain)
            .await
            .unwrap();
        assert!(started.elapsed() >= limit, "not before the deadline");
        let answer = answer
            .try_recv()
            .expect("the in-flight request was answered");
        assert!(
            matches!(answer, Err(Refusal::Unavailable)),
            "503: {answer:?}"
        );

        // The drain is over at once: the deadline has passed.
        assert!(!pipeline.shutdown(drain.deadline()).await.unwrap());
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(matches!(
            pipeline.submit_sync(request("acme", 3, 1)).await,
            Err(Refusal::Unavailable)
        ));
        assert_eq!(store.seqs.lock().unwrap().get("acme"), None);

        // The acknowledged async request waits in the spool for the next start.
        drop(pipeline);
        let (_, leftovers) = Spool::open(dir.path()).unwrap();
        let replayed: Vec<_> = leftovers
            .into_iter()
            .flat_map(|segment| segment.requests)
            .collect();
        assert_eq!(replayed, vec![spooled]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_segment_is_replayed_then_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let written: Vec<_> = (0..6).map(|n| request("acme", n * 2, 2)).collect();
        {
            let (spool, _) = Spool::open(dir.path()).unwrap();
            for request in &written {
                spool.append(request).unwrap();
            }
        }
        // Flip one byte inside the third record's payload (a JSON `event_id` character).
        let path = dir.path().join("000000000001.spool");
        let mut bytes = std::fs::read(&path).unwrap();
        let needle = b"acme-4";
        let at = bytes
            .windows(needle.len())
            .position(|window| window == needle)
            .unwrap();
        bytes[at] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();

        let (spool, leftovers) = Spool::open(dir.path()).unwrap();
        let store = SlowStore::new(1);
        let refused = replay_spool(&store, &spool, leftovers).await.unwrap();
        assert!(refused.is_empty());
        assert_eq!(spool.lost_records(), 1);
        // Five intact requests, ten events, committed once each.
        assert_eq!(store.seqs.lock().unwrap().get("acme"), Some(&10));
        assert!(!path.exists());
        let aside = dir.path().join("000000000001.spool.damaged");
        assert_eq!(std::fs::read(aside).unwrap(), bytes);
    }
}
