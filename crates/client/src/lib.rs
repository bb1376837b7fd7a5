//! A Rust client for Sealtrail: record audit events from an application without slowing it
//! down or losing them.
//!
//! - [`Event::builder`] builds an event of format v1 and checks it with the server's own rules;
//!   the event gets its `event_id` (a UUIDv7) and `timestamp` when built, so every resend of it is
//!   idempotent: the server answers a repeated `event_id` with the stored receipt.
//! - [`Client::record`] queues it. Events are sent in batches (by default 500 events or 500 ms,
//!   whichever comes first, and never above the server's limits), retried with exponential
//!   backoff and full jitter, honouring `Retry-After`. A refusal that cannot pass (400, 401, 403,
//!   409, 413) is not retried; it is logged and handed back to the caller (the event's
//!   [`Recorded`], [`Client::flush`], [`Client::take_failures`]), never dropped unseen.
//! - While the server cannot be reached, batches go to a bounded, fsynced spool on disk and are
//!   replayed in order when it answers again, by this process or the next one. When the spool is
//!   full, `record` refuses ([`Error::SpoolFull`]): backpressure, not loss.
//! - [`Durability::Sync`] events (critical actions) are settled only by the server's `201`;
//!   [`Durability::Async`] ones by its `202`, or by the spool's fsync while it is unreachable.
//! - [`RequestContextLayer`] (a tower layer, for axum) gives each request an id, and every event
//!   recorded while handling it carries that `request_id` with the client's `ip_address` and
//!   `user_agent`.
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{http::StatusCode, routing::post, Router};
//! use sealtrail_client::{Client, Config, Durability, Event, RequestContextLayer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::new(Config::new(
//!     "http://127.0.0.1:7070",
//!     std::env::var("SEALTRAIL_INGEST_KEY")?,
//!     "/var/lib/myapp/sealtrail-spool",
//! ))
//! .await?;
//!
//! let audit = client.clone();
//! let app: Router = Router::new()
//!     .route(
//!         "/documents/{id}/delete",
//!         post(move || {
//!             let audit = audit.clone();
//!             async move {
//!                 let unavailable = |error: sealtrail_client::Error| {
//!                     (StatusCode::SERVICE_UNAVAILABLE, error.to_string())
//!                 };
//!                 let event = Event::builder("acme", "alice", "delete", "document")
//!                     .resource_id("doc-7")
//!                     .durability(Durability::Sync)
//!                     .build()
//!                     .map_err(unavailable)?;
//!                 // A critical action: wait until the server has committed the event. It
//!                 // carries the request's X-Request-Id, client address and user agent.
//!                 audit.record(event).map_err(unavailable)?.await.map_err(unavailable)?;
//!                 Ok::<_, (StatusCode, String)>("deleted")
//!             }
//!         }),
//!     )
//!     .layer(RequestContextLayer::new());
//! # let _ = app;
//!
//! // Before exit: deliver what is queued, or leave it in the spool for the next start.
//! let report = client.shutdown(Duration::from_secs(10)).await;
//! assert_eq!(report.lost_events, 0);
//! # Ok(()) }
//! ```
//!
//! *Contract:* once [`Client::flush`] returns `Ok`, every event recorded before it is either
//! acknowledged by the server or fsynced in the spool (async events), or committed (sync
//! events). A process killed after that loses none of them.

mod backoff;
mod client;
mod context;
mod error;
mod event;
mod layer;
pub mod limits;
mod spool;
mod transport;

pub use client::{Client, Config, Recorded, ShutdownReport, Status};
pub use context::{
    current_context, current_request_id, forward_headers, trace_id, ForwardRequestId,
    RequestContext, TRACEPARENT, X_REQUEST_ID,
};
pub use error::{Error, Failure, Result};
pub use event::{ActorType, Durability, Event, EventBuilder, Outcome};
pub use layer::{RequestContextLayer, RequestContextService};
pub use transport::Delivery;
