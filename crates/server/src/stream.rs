//! `GET /v1/stream`: a tenant's committed events (alerts among them) as Server-Sent Events, live.
//!
//! The filters are those of `GET /v1/events`. Each event's SSE `id` is its `seq`, so a client
//! that reconnects with `Last-Event-ID` (what browsers' `EventSource` does by itself) resumes
//! right after the last event it saw, from whichever tier now holds the rest. Without it (or
//! `after=<seq>`) the stream starts at the log's head. Alerts come as SSE events of type
//! `alert`, everything else as `event`. At most [`STREAMS_MAX`] streams are open on a node
//! (503 beyond); a stream ends when the server begins to shut down.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use sealtrail_hot::EventQuery;
use sealtrail_hot::Order;
use sealtrail_model::limits::{FEED_BATCH_EVENTS_MAX, STREAMS_MAX, STREAM_KEEPALIVE_SECS};
use sealtrail_model::LocatedEvent;
use sealtrail_realtime::window::is_alert;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::feed::{self, Moved, Subscription};
use crate::pipeline::DrainDeadline;
use crate::problem::ApiError;
use crate::AppState;

/// Streams open on this node.
#[derive(Debug)]
pub(crate) struct Streams(Arc<Semaphore>);

impl Default for Streams {
    fn default() -> Self {
        Streams(Arc::new(Semaphore::new(STREAMS_MAX)))
    }
}

struct Tail {
    state: Arc<AppState>,
    filter: EventQuery,
    cursor: u64,
    buffered: VecDeque<LocatedEvent>,
    subscription: Arc<Subscription>,
    drain: DrainDeadline,
    _permit: OwnedSemaphorePermit,
}

pub(crate) async fn stream(
    State(state): State<Arc<AppState>>,
    request: crate::access::ReadRequest,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let reader = request.reader(&state, params.get("tenant_id")).await?;
    let tenant_id = reader.tenant_id.clone();
    let mut filter = EventQuery::for_tenant(&tenant_id);
    let mut after = None;
    for (name, value) in &params {
        match name.as_str() {
            "tenant_id" => {}
            "after" => after = Some(seq_param("after", value)?),
            _ => crate::query::filter_param(&mut filter, name, value)?,
        }
    }
    if let Some(last) = headers.get("last-event-id") {
        let text = last
            .to_str()
            .map_err(|_| ApiError::invalid_field("Last-Event-ID", "must be a seq"))?;
        after = Some(seq_param("Last-Event-ID", text)?);
    }
    // The scope is resolved once, when the stream opens.
    reader.narrow(&mut filter);
    let permit = state.streams.0.clone().try_acquire_owned().map_err(|_| {
        ApiError::Overloaded(format!(
            "{STREAMS_MAX} live streams are open on this node, the most it serves; retry later"
        ))
    })?;
    let cursor = match after {
        Some(seq) => seq,
        None => feed::head(&*state.store, &tenant_id).await?,
    };
    // A stream's rows are not known when it opens: it is recorded once, as opened.
    reader.record(&state, serde_json::json!(params), None)?;
    let tail = Tail {
        subscription: state.feed.subscribe(),
        drain: state.drain.clone(),
        state,
        filter,
        cursor,
        buffered: VecDeque::new(),
        _permit: permit,
    };
    let events = futures::stream::unfold(tail, |mut tail| async move {
        let event = tail.next().await?;
        Some((Ok(event), tail))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(STREAM_KEEPALIVE_SECS))))
}

fn seq_param(name: &str, value: &str) -> Result<u64, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::invalid_field(name, "must be a seq (a whole number)"))
}

impl Tail {
    /// The next SSE event; `None` ends the stream (shutdown, or a read that failed: the client
    /// reconnects with `Last-Event-ID`).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(located) = self.buffered.pop_front() {
                let kind = if is_alert(&located.stored.event) {
                    "alert"
                } else {
                    "event"
                };
                let event = Event::default()
                    .id(located.stored.seq.to_string())
                    .event(kind)
                    .json_data(&located)
                    .ok()?;
                return Some(event);
            }
            let query = EventQuery {
                order: Order::Asc,
                after_seq: Some(self.cursor),
                limit: FEED_BATCH_EVENTS_MAX,
                ..self.filter.clone()
            };
            let page = match self.state.query.page(query).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "live stream ended: its log could not be read");
                    return None;
                }
            };
            if let Some(last) = page.last() {
                self.cursor = last.stored.seq;
                self.buffered.extend(page);
                continue;
            }
            // Caught up: wait for this tenant's log to grow (or the poll, for other nodes).
            loop {
                tokio::select! {
                    moved = self.subscription.next() => match moved {
                        Moved::Tenants(tenants) if !tenants.contains(&self.filter.tenant_id) => continue,
                        _ => break,
                    },
                    () = self.drain.started() => return None,
                }
            }
        }
    }
}
