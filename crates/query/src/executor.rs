//! Where heavy reads run: `POST /v1/query` and `GET /v1/export` execute on a small runtime of
//! their own, [`QUERY_THREADS`] threads at the lowest scheduling priority, and at most
//! [`QUERIES_CONCURRENT_MAX`] of them at once.
//!
//! A cross join or a large `generate_series` is CPU-bound for as long as its timeout allows.
//! On the request runtime it took the cores that ingest's group commit and `GET /v1/events`
//! run on (`GET` p99 rose to 18 s). Here it can use at most [`QUERY_THREADS`] cores, and only
//! the time nothing else asks for: the kernel schedules the other threads first. Another
//! heavy read beyond [`QUERIES_CONCURRENT_MAX`] is refused ([`Error::Busy`], a 503 with
//! Retry-After at the HTTP edge) instead of queueing without bound.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use sealtrail_model::limits::{QUERIES_CONCURRENT_MAX, QUERY_THREADS};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::{Error, Result};

/// Nice value of the query threads: the lowest priority, so any other runnable thread of the
/// machine goes first.
const QUERY_THREAD_NICE: i32 = 19;

/// The query runtime and its admission bound.
#[derive(Debug)]
pub(crate) struct QueryExecutor {
    /// Always `Some` until dropped; taken in `drop` to shut it down without blocking.
    runtime: Option<Runtime>,
    permits: Arc<Semaphore>,
}

impl QueryExecutor {
    pub(crate) fn new() -> std::io::Result<Self> {
        Self::build("sealtrail-query", QUERY_THREADS, QUERIES_CONCURRENT_MAX)
    }

    fn build(thread_name: &str, threads: usize, concurrent_max: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            // File reads and hot-store pages of running queries; a few are plenty.
            .max_blocking_threads(threads * 4)
            .thread_name(thread_name)
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        Ok(QueryExecutor {
            runtime: Some(runtime),
            permits: Arc::new(Semaphore::new(concurrent_max)),
        })
    }

    /// A slot for one heavy read, held until the returned permit is dropped, or
    /// [`Error::Busy`] when [`QUERIES_CONCURRENT_MAX`] are running.
    pub(crate) fn admit(&self) -> Result<OwnedSemaphorePermit> {
        Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| Error::Busy {
                running: QUERIES_CONCURRENT_MAX,
            })
    }

    fn handle(&self) -> &Handle {
        self.runtime
            .as_ref()
            .expect("the query runtime lives as long as the executor")
            .handle()
    }

    /// Spawns `work` on the query runtime. Everything it spawns in turn (DataFusion's
    /// partition tasks, blocking file reads) runs there too.
    pub(crate) fn spawn<F>(&self, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle().spawn(work)
    }

    /// Runs `work` on the query runtime and waits for it. Dropping the returned future (the
    /// caller's timeout, a client gone) cancels `work` at its next await point.
    pub(crate) fn run<F, T>(&self, work: F) -> impl Future<Output = Result<T>> + Send + 'static
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let task = AbortOnDrop(self.spawn(work));
        async move {
            match task.await {
                Ok(result) => result,
                Err(join) => Err(Error::Task(join.to_string())),
            }
        }
    }
}

impl Drop for QueryExecutor {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its threads stop, which panics inside another
        // runtime (a test, the server's shutdown); running queries are abandoned anyway.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A runtime of its own for the server's scheduled lifecycle pass: one thread
/// (`sealtrail-lifecycle`) at the lowest priority, like the query runtime's.
///
/// The pass encodes Parquet with zstd (level 15 for the cold tier) and reads every file back,
/// seconds of CPU per file inside ordinary async calls. On the request runtime it would hold a
/// worker that ingest and `GET /v1/events` need; on the query runtime its one thread, so SQL and
/// exports would stall behind it into their timeouts. Here it takes only what nothing else asks
/// for. Dropping the runtime abandons a running pass, which the next one finishes (every
/// lifecycle step is crash-safe).
#[derive(Debug)]
pub struct MaintenanceRuntime(QueryExecutor);

impl MaintenanceRuntime {
    pub fn new() -> std::io::Result<Self> {
        QueryExecutor::build("sealtrail-lifecycle", 1, 1).map(MaintenanceRuntime)
    }

    /// Runs `work` on this runtime and waits for it; dropping the returned future cancels it.
    pub fn run<F, T>(&self, work: F) -> impl Future<Output = Result<T>> + Send + 'static
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.0.run(async move { Ok(work.await) })
    }
}

/// A spawned task that is cancelled when its handle is dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = std::result::Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(context)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Lowers the calling thread's priority (Linux: nice is per thread). Failure only costs the
/// isolation, never correctness, so it is logged, not raised.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let thread = rustix::thread::gettid();
        if let Err(error) = rustix::process::setpriority_process(Some(thread), QUERY_THREAD_NICE) {
            tracing::warn!(%error, "could not lower the query thread's priority");
        }
    }
}
