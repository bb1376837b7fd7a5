//! The write path between the HTTP handlers and the hot store.
//!
//! Handlers submit whole requests; one writer task takes everything queued, up to
//! [`GROUP_COMMIT_EVENTS_MAX`] events, and commits it in one store transaction (group commit),
//! so concurrent sync requests share one fsync and durability does not cost throughput.
//!
//! Admission is bounded twice: sync requests wait up to [`SYNC_ADMIT_WAIT_MILLIS_MAX`] for room
//! among [`SYNC_INFLIGHT_EVENTS_MAX`] in-flight events; async requests get room among
//! the async queue (by default
//! [`ASYNC_QUEUE_EVENTS_MAX`](sealtrail_model::limits::ASYNC_QUEUE_EVENTS_MAX) events) at once or are refused (503). Memory is bounded by those permits.
//! The channel itself is unbounded only because the permits already bound it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sealtrail_hot::{AppendOutcome, AppendRequest, HotStore};
use sealtrail_model::limits::{
    GROUP_COMMIT_EVENTS_MAX, SPOOL_FSYNC_INTERVAL_MILLIS, SYNC_ADMIT_WAIT_MILLIS_MAX,
    SYNC_INFLIGHT_EVENTS_MAX,
};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

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
    jobs: mpsc::UnboundedSender<Job>,
    sync_permits: Arc<Semaphore>,
    async_permits: Arc<Semaphore>,
    spool: Arc<Spool>,
    healthy: Arc<AtomicBool>,
    writer: std::sync::Mutex<Option<JoinHandle<()>>>,
    syncer: JoinHandle<()>,
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
    /// Starts the writer task and the spool's fsync task.
    pub(crate) fn start(
        store: Arc<dyn HotStore>,
        spool: Arc<Spool>,
        async_queue_events_max: usize,
    ) -> Self {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let healthy = Arc::new(AtomicBool::new(true));
        let writer = tokio::spawn(run_writer(store, spool.clone(), receiver, healthy.clone()));
        let syncer = tokio::spawn(run_spool_sync(spool.clone()));
        Pipeline {
            jobs,
            sync_permits: Arc::new(Semaphore::new(SYNC_INFLIGHT_EVENTS_MAX)),
            async_permits: Arc::new(Semaphore::new(async_queue_events_max)),
            spool,
            healthy,
            writer: std::sync::Mutex::new(Some(writer)),
            syncer,
        }
    }

    /// Whether the writer is running and its last commit succeeded.
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.jobs.is_closed()
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
        self.jobs
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
        self.jobs
            .send(Job::Append {
                request,
                reply: Reply::Async(ticket),
                _permit: permit,
            })
            .map_err(|_| Refusal::Unavailable)
    }

    /// Drains every queued request into the store and stops the writer. Call after the HTTP
    /// server stopped accepting and finished its in-flight requests.
    pub(crate) async fn shutdown(&self) -> Result<()> {
        let (done, finished) = oneshot::channel();
        if self.jobs.send(Job::Shutdown(done)).is_ok() {
            let _ = finished.await;
        }
        let writer = self
            .writer
            .lock()
            .expect("writer handle lock poisoned")
            .take();
        if let Some(writer) = writer {
            writer.await.map_err(|join| Error::Task(join.to_string()))?;
        }
        self.syncer.abort();
        let pending = self.spool.close()?;
        if pending > 0 {
            tracing::warn!(
                pending,
                "async requests remain in the spool; they are replayed on the next start"
            );
        }
        Ok(())
    }
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

async fn run_writer(
    store: Arc<dyn HotStore>,
    spool: Arc<Spool>,
    mut receiver: mpsc::UnboundedReceiver<Job>,
    healthy: Arc<AtomicBool>,
) {
    let mut shutdown = None;
    while shutdown.is_none() {
        let Some(first) = receiver.recv().await else {
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
            commit_group(&*store, &spool, jobs, &healthy).await;
        }
    }
    if let Some(done) = shutdown {
        let _ = done.send(());
    }
}

/// Commits one group. If the store fails, sync callers are told at once (nothing of theirs was
/// written) and the async requests are retried, with growing pauses, until the store accepts
/// them: an acknowledged async event is never dropped, and the full queue pushes back on
/// new async requests meanwhile.
async fn commit_group(
    store: &dyn HotStore,
    spool: &Spool,
    jobs: Vec<(AppendRequest, Reply, OwnedSemaphorePermit)>,
    healthy: &AtomicBool,
) {
    let mut batch = Vec::with_capacity(jobs.len());
    let mut replies = Vec::with_capacity(jobs.len());
    for (request, reply, permit) in jobs {
        batch.push(request);
        replies.push((reply, permit));
    }
    let mut batch = Arc::new(batch);
    let mut attempt = 0u32;
    let outcomes = loop {
        match store.append(batch.clone()).await {
            Ok(outcomes) => {
                healthy.store(true, Ordering::Relaxed);
                break outcomes;
            }
            Err(error) => {
                healthy.store(false, Ordering::Relaxed);
                tracing::error!(%error, attempt, "group commit failed; nothing of it was stored");
                let requests = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
                let mut kept = Vec::new();
                let mut kept_replies = Vec::new();
                for (request, (reply, permit)) in requests.into_iter().zip(replies) {
                    match reply {
                        Reply::Sync(sender) => {
                            let _ = sender.send(Err(error.to_string()));
                        }
                        Reply::Async(ticket) => {
                            kept.push(request);
                            kept_replies.push((Reply::Async(ticket), permit));
                        }
                    }
                }
                if kept.is_empty() {
                    return;
                }
                batch = Arc::new(kept);
                replies = kept_replies;
                attempt += 1;
                let pause_millis = (50u64 << attempt.min(5)).min(RETRY_PAUSE_MILLIS_MAX);
                tokio::time::sleep(Duration::from_millis(pause_millis)).await;
            }
        }
    };
    for (((reply, _permit), outcome), request) in
        replies.into_iter().zip(outcomes).zip(batch.iter())
    {
        match reply {
            Reply::Sync(sender) => {
                let _ = sender.send(Ok(outcome));
            }
            Reply::Async(ticket) => {
                if let AppendOutcome::Conflict { index, event_id } = &outcome {
                    tracing::warn!(
                        index,
                        event_id = %event_id,
                        tenant_id = %request[*index].event.tenant_id,
                        "async request rejected at commit: event_id reused with different content"
                    );
                }
                if let Err(error) = spool.committed(ticket) {
                    tracing::error!(%error, "cannot retire a spool segment");
                }
            }
        }
    }
}

/// Longest pause between retries of a failed async commit, in milliseconds.
const RETRY_PAUSE_MILLIS_MAX: u64 = 1_000;
