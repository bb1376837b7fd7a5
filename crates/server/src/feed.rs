//! The committed-event feed: how the alert engine, webhooks, sinks and live streams learn that
//! a tenant's log grew, and read it in `seq` order from a durable cursor of their own.
//!
//! The writer tells the feed which tenants each group commit moved ([`Feed::committed`]); every
//! [`Subscription`] collects those tenants until its consumer asks, so a consumer never holds
//! the writer up: a slow one only falls behind, and its lag is a gauge in `/metrics`. A
//! consumer also looks at every tenant's head at least every [`FEED_POLL_MILLIS`], for commits
//! another node made on a shared database. Events are read through the query engine, so a
//! consumer that fell behind a lifecycle pass reads the rest from the warm and cold tiers.
//!
//! Cursors are settings of the hot store (`feed_cursor:<consumer>:<tenant>`): the `seq` of the
//! last event the consumer finished with. A consumer saves its cursor after acting on events,
//! so a crash in between repeats the action (at least once), never skips it; while it keeps
//! up it saves at most every [`FEED_CURSOR_SAVE_MILLIS`], because each save is a write through
//! the store's one writer, beside ingest.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sealtrail_hot::{EventQuery, HotStore, Order};
use sealtrail_model::limits::{FEED_CURSOR_SAVE_MILLIS, FEED_POLL_MILLIS};
use sealtrail_model::StoredEvent;
use sealtrail_query::QueryEngine;
use tokio::sync::Notify;

use crate::problem::ApiError;

/// What moved since a consumer last asked.
#[derive(Debug)]
pub(crate) enum Moved {
    /// These tenants' logs grew on this node.
    Tenants(HashSet<String>),
    /// The poll interval passed: look at every tenant.
    Poll,
}

/// One consumer's view of the commits.
#[derive(Debug)]
pub(crate) struct Subscription {
    moved: Mutex<HashSet<String>>,
    notify: Notify,
    /// When the consumer last looked at every tenant.
    polled: Mutex<Instant>,
}

impl Default for Subscription {
    fn default() -> Self {
        Subscription {
            moved: Mutex::default(),
            notify: Notify::new(),
            polled: Mutex::new(Instant::now()),
        }
    }
}

impl Subscription {
    /// Waits until a tenant's log grows or the poll interval passes. The poll comes every
    /// [`FEED_POLL_MILLIS`] however busy this node is, so another node's commits are never
    /// starved by this one's.
    pub(crate) async fn next(&self) -> Moved {
        let poll = Duration::from_millis(FEED_POLL_MILLIS);
        loop {
            let since_poll = lock(&self.polled).elapsed();
            if since_poll >= poll {
                *lock(&self.polled) = Instant::now();
                lock(&self.moved).clear();
                return Moved::Poll;
            }
            let moved = std::mem::take(&mut *lock(&self.moved));
            if !moved.is_empty() {
                return Moved::Tenants(moved);
            }
            // Woken by a commit, or at the next poll.
            let _ = tokio::time::timeout(poll - since_poll, self.notify.notified()).await;
        }
    }
}

/// The feed of one process.
#[derive(Debug, Default)]
pub(crate) struct Feed {
    subscribers: Mutex<Vec<Weak<Subscription>>>,
    /// Events each consumer is behind, by consumer name and tenant.
    lag: Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Feed {
    /// A new subscription; it ends when the returned handle is dropped.
    pub(crate) fn subscribe(&self) -> Arc<Subscription> {
        let subscription = Arc::new(Subscription::default());
        let mut subscribers = lock(&self.subscribers);
        subscribers.retain(|weak| weak.strong_count() > 0);
        subscribers.push(Arc::downgrade(&subscription));
        subscription
    }

    /// Called by the writer after a group commit: these tenants' logs grew.
    pub(crate) fn committed<'a>(&self, tenants: impl IntoIterator<Item = &'a str>) {
        let tenants: HashSet<&str> = tenants.into_iter().collect();
        if tenants.is_empty() {
            return;
        }
        let subscribers: Vec<Arc<Subscription>> = lock(&self.subscribers)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for subscription in subscribers {
            lock(&subscription.moved).extend(tenants.iter().map(|tenant| (*tenant).to_owned()));
            subscription.notify.notify_one();
        }
    }

    /// Records how many events `consumer` is behind in `tenant_id`'s log.
    pub(crate) fn set_lag(&self, consumer: &str, tenant_id: &str, events: u64) {
        let mut lag = lock(&self.lag);
        let tenants = lag.entry(consumer.to_owned()).or_default();
        if events == 0 {
            tenants.remove(tenant_id);
        } else {
            tenants.insert(tenant_id.to_owned(), events);
        }
    }

    /// Forgets a consumer that stopped.
    pub(crate) fn forget(&self, consumer: &str) {
        lock(&self.lag).remove(consumer);
    }

    /// Every consumer's lag summed over tenants, for `/metrics`.
    pub(crate) fn lags(&self) -> Vec<(String, u64)> {
        lock(&self.lag)
            .iter()
            .map(|(name, tenants)| (name.clone(), tenants.values().sum()))
            .collect()
    }
}

fn cursor_setting(consumer: &str, tenant_id: &str) -> String {
    format!("feed_cursor:{consumer}:{tenant_id}")
}

/// The `seq` `consumer` finished with in `tenant_id`'s log, if it ever saved one.
pub(crate) async fn cursor(
    store: &dyn HotStore,
    consumer: &str,
    tenant_id: &str,
) -> Result<Option<u64>, ApiError> {
    let Some(bytes) = store.setting(&cursor_setting(consumer, tenant_id)).await? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
        ApiError::internal(format!(
            "the feed cursor of {consumer} for {tenant_id} is damaged"
        ))
    })?;
    Ok(Some(u64::from_be_bytes(bytes)))
}

pub(crate) async fn save_cursor(
    store: &dyn HotStore,
    consumer: &str,
    tenant_id: &str,
    seq: u64,
) -> Result<(), ApiError> {
    store
        .set_setting(
            &cursor_setting(consumer, tenant_id),
            seq.to_be_bytes().to_vec(),
        )
        .await?;
    Ok(())
}

/// A consumer's cursor in one tenant's log: where it is, and what it last saved. Saves are
/// spaced [`FEED_CURSOR_SAVE_MILLIS`] apart (see there).
#[derive(Debug)]
pub(crate) struct Cursor {
    pub(crate) seq: u64,
    saved: u64,
    saved_at: Instant,
}

impl Cursor {
    /// A cursor read back from the store (or starting at `seq`, unsaved).
    pub(crate) fn at(seq: u64, saved: bool) -> Self {
        Cursor {
            seq,
            saved: if saved { seq } else { u64::MAX },
            saved_at: Instant::now(),
        }
    }

    /// Saves the position if it moved and the last save is old enough (or `now`).
    pub(crate) async fn save(
        &mut self,
        store: &dyn HotStore,
        consumer: &str,
        tenant_id: &str,
        now: bool,
    ) -> Result<(), ApiError> {
        let due = now || self.saved_at.elapsed() >= Duration::from_millis(FEED_CURSOR_SAVE_MILLIS);
        if self.seq != self.saved && due {
            save_cursor(store, consumer, tenant_id, self.seq).await?;
            self.saved = self.seq;
            self.saved_at = Instant::now();
        }
        Ok(())
    }
}

/// Up to `limit` events of `query`'s tenant after `after_seq`, in `seq` order, from whichever
/// tier holds them. `query` carries the filters a consumer pushes down; its order, cursor and
/// limit are set here.
///
/// A consumer that keeps up reads what was just committed: an unfiltered read goes straight to
/// the hot store's scan, and only when the hot tier does not begin right after `after_seq` (the
/// lifecycle moved those events) through the query engine and the archive.
pub(crate) async fn read(
    engine: &QueryEngine,
    store: &dyn HotStore,
    mut query: EventQuery,
    after_seq: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, ApiError> {
    let unfiltered = query
        .exact_filters()
        .iter()
        .all(|(_, value)| value.is_none())
        && query.from_ns.is_none()
        && query.to_ns.is_none();
    if unfiltered {
        let hot = store
            .scan_events(&query.tenant_id, after_seq, limit)
            .await?;
        // The hot tier is a contiguous suffix of the log: starting right after the cursor, it
        // holds everything up to its head.
        if hot.first().is_some_and(|first| first.seq == after_seq + 1) {
            return Ok(hot);
        }
    }
    query.order = Order::Asc;
    query.after_seq = Some(after_seq);
    query.limit = limit;
    Ok(engine
        .page(query)
        .await?
        .into_iter()
        .map(|located| located.stored)
        .collect())
}

/// Every tenant's head `seq` (0 for a tenant with no events).
pub(crate) async fn heads(store: &dyn HotStore) -> Result<Vec<(String, u64)>, ApiError> {
    Ok(store
        .tenant_heads()
        .await?
        .into_iter()
        .map(|(tenant_id, head)| (tenant_id, head.map_or(0, |head| head.seq)))
        .collect())
}

/// One tenant's head `seq`.
pub(crate) async fn head(store: &dyn HotStore, tenant_id: &str) -> Result<u64, ApiError> {
    Ok(store
        .chain_heads()
        .await?
        .into_iter()
        .find(|(tenant, _)| tenant == tenant_id)
        .map_or(0, |(_, head)| head.seq))
}
