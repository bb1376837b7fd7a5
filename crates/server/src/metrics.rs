//! `GET /metrics`: the server's operating figures in the Prometheus text exposition format
//! (version 0.0.4).
//!
//! Written by hand rather than with `prometheus-client`: the set is a dozen metrics with fixed
//! label sets, and the text format is a few lines per sample, so a crate (and its derive macro)
//! would add build time and a dependency for what [`render`] does in a page.
//!
//! The credential: every endpoint except `/healthz` and `/readyz` requires one. A scraper
//! should not hold the platform-admin token (which creates keys for every tenant), so the
//! server accepts a dedicated metrics token, `SEALTRAIL_METRICS_TOKEN` (environment only, the
//! same strength rule as the admin token), which opens `/metrics` and nothing else; the
//! platform-admin token opens it too. Tenant keys never do: the figures span every tenant.
//!
//! Counters live in one process-wide [`Registry`] ([`registry`]), the Prometheus client
//! convention: the write pipeline and the lifecycle record into it without the handle being
//! threaded through them. Gauges (queue and spool depth, checkpoint age, open connections) and
//! the spool's lost records (counted by the spool's recovery at start) are read when scraped.
//! Cardinality is bounded: routes are the router's templates, never raw paths, ingest reasons
//! and lifecycle tiers are fixed sets, and the one per-tenant series is the checkpoint age.
//!
//! Verification is not measured here: the server runs none. `sealtrail verify` is a separate
//! command (its exit status is the figure to alert on).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{self, Principal};
use crate::problem::ApiError;
use crate::AppState;

/// Upper bounds of the request latency buckets, in seconds (the last one is the request
/// timeout).
const LATENCY_BUCKETS_SECS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Upper bounds of the group-commit size buckets, in events (the last one is
/// `GROUP_COMMIT_EVENTS_MAX`).
const GROUP_EVENTS_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1_024.0, 4_096.0, 10_000.0, 20_000.0,
];
/// Upper bounds of the group-commit duration buckets, in seconds.
const GROUP_SECS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A cumulative histogram with fixed buckets.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Observations at or below each bound (not yet cumulative), then above the last one.
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    fn observe(&mut self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum += value;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let separator = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.counts[self.bounds.len()];
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {cumulative}"
        );
        let braces = |labels: &str| {
            if labels.is_empty() {
                String::new()
            } else {
                format!("{{{labels}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
    }
}

/// Why an ingest request was refused: a fixed set, so the label stays bounded.
pub(crate) fn rejection_reason(error: &ApiError) -> &'static str {
    match error {
        ApiError::Unauthorized | ApiError::KeyRefused(_) => "unauthorized",
        ApiError::Forbidden(_) => "forbidden",
        ApiError::Invalid { .. } => "invalid",
        ApiError::TooLarge(_) => "too_large",
        ApiError::Conflict { .. } => "conflict",
        ApiError::Refused { .. } => "unsupported",
        ApiError::Overloaded(_) | ApiError::TooManyRequests(_) => "overloaded",
        ApiError::NotFound(_) | ApiError::Internal(_) => "internal",
    }
}

#[derive(Debug, Default)]
struct Counters {
    /// Events committed (sync) or spooled (async), by durability.
    accepted_events: BTreeMap<&'static str, u64>,
    /// Refused ingest requests and the events they held (when the body could be read), by
    /// durability and reason.
    rejected: BTreeMap<(&'static str, &'static str), (u64, u64)>,
    /// Request latency until the response head, by method, route template and status.
    requests: BTreeMap<(&'static str, Arc<str>, u16), Histogram>,
    group_events: Option<Histogram>,
    group_secs: Option<Histogram>,
    group_failures: u64,
    /// Lifecycle passes by outcome (`ok`, `failed`).
    lifecycle_runs: BTreeMap<&'static str, u64>,
    /// Parquet bytes the lifecycle wrote, by tier.
    lifecycle_bytes: BTreeMap<&'static str, u64>,
    /// Events the lifecycle moved or deleted, by step.
    lifecycle_events: BTreeMap<&'static str, u64>,
    /// Alerts the rules raised.
    alerts_raised: u64,
    /// Delivery attempts of webhooks and sinks, by destination kind and outcome (`delivered`,
    /// `retried`, `parked`).
    deliveries: BTreeMap<(&'static str, &'static str), u64>,
}

/// The process's counters and histograms.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    counters: Mutex<Counters>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);

/// The process-wide registry.
pub(crate) fn registry() -> &'static Registry {
    &REGISTRY
}

impl Registry {
    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        // A panic while holding the lock leaves plain numbers behind; keep counting.
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn ingest_accepted(&self, durability: &'static str, events: usize) {
        *self
            .counters()
            .accepted_events
            .entry(durability)
            .or_default() += events as u64;
    }

    /// A refused ingest request; `events` is `None` when its body was never parsed.
    pub(crate) fn ingest_rejected(
        &self,
        durability: &'static str,
        reason: &'static str,
        events: Option<usize>,
    ) {
        let mut counters = self.counters();
        let entry = counters.rejected.entry((durability, reason)).or_default();
        entry.0 += 1;
        entry.1 += events.unwrap_or(0) as u64;
    }

    /// One group commit of the write pipeline: its size, how long the store took, and whether
    /// the store took the group whole.
    pub(crate) fn group_commit(&self, events: usize, elapsed: Duration, committed: bool) {
        let mut counters = self.counters();
        counters
            .group_events
            .get_or_insert_with(|| Histogram::new(GROUP_EVENTS_BUCKETS))
            .observe(events as f64);
        counters
            .group_secs
            .get_or_insert_with(|| Histogram::new(GROUP_SECS_BUCKETS))
            .observe(elapsed.as_secs_f64());
        if !committed {
            counters.group_failures += 1;
        }
    }

    /// One lifecycle pass: whether it finished, the Parquet bytes it wrote to each tier, and the
    /// events of each step.
    pub(crate) fn lifecycle_pass(
        &self,
        ok: bool,
        bytes_by_tier: &[(&'static str, u64)],
        events_by_step: &[(&'static str, u64)],
    ) {
        let mut counters = self.counters();
        *counters
            .lifecycle_runs
            .entry(if ok { "ok" } else { "failed" })
            .or_default() += 1;
        for (tier, bytes) in bytes_by_tier {
            *counters.lifecycle_bytes.entry(tier).or_default() += bytes;
        }
        for (step, events) in events_by_step {
            *counters.lifecycle_events.entry(step).or_default() += events;
        }
    }

    pub(crate) fn alerts_raised(&self, alerts: usize) {
        self.counters().alerts_raised += alerts as u64;
    }

    /// One delivery of a webhook or sink message: `delivered`, `retried` (an attempt failed and
    /// another follows) or `parked` (the final failure: the message went to the dead letters).
    pub(crate) fn delivery(&self, kind: &'static str, outcome: &'static str) {
        *self
            .counters()
            .deliveries
            .entry((kind, outcome))
            .or_default() += 1;
    }

    fn request(&self, method: &'static str, route: Arc<str>, status: u16, elapsed: Duration) {
        self.counters()
            .requests
            .entry((method, route, status))
            .or_insert_with(|| Histogram::new(LATENCY_BUCKETS_SECS))
            .observe(elapsed.as_secs_f64());
    }
}

/// A method as a label: the ones the API has, everything else as `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::HEAD => "HEAD",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Middleware: the latency of every request until its response head, by method, matched route
/// template (`/v1/tenants/{tenant_id}/checkpoint`, never the tenant's name) and status. A path
/// no route matches is `unmatched`. A streamed body (an export) is not timed past its head.
pub(crate) async fn observe_requests(request: Request, next: Next) -> Response {
    let route: Arc<str> = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| Arc::from("unmatched"), |path| Arc::from(path.as_str()));
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    registry().request(method, route, response.status().as_u16(), started.elapsed());
    response
}

/// `GET /metrics`: the metrics token or the platform-admin token.
pub(crate) async fn scrape(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(bearer) = bearer else {
        return ApiError::Unauthorized.into_response();
    };
    let is_metrics_token = state
        .metrics_token_hash
        .is_some_and(|hash| auth::constant_time_eq(&auth::sha256(bearer.as_bytes()), &hash));
    if !is_metrics_token {
        match state.auth.authenticate(bearer).await {
            Ok(Principal::PlatformAdmin) => {}
            Ok(Principal::Tenant { .. }) => {
                return ApiError::Forbidden(
                    "metrics span every tenant: use the metrics token or the platform-admin token"
                        .into(),
                )
                .into_response()
            }
            Err(error) => return error.into_response(),
        }
    }
    let mut response = render(&state).await.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Writes `# HELP` and `# TYPE` of one metric.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the text format quotes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The spool's segments and bytes, read from its directory: segments not yet retired hold
/// accepted async requests that are not known to be committed.
fn spool_depth(dir: &Path) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    let mut segments = 0;
    let mut bytes = 0;
    for entry in entries.flatten() {
        if entry.path().extension().is_some_and(|ext| ext == "spool") {
            segments += 1;
            bytes += entry.metadata().map_or(0, |metadata| metadata.len());
        }
    }
    (segments, bytes)
}

/// The whole exposition.
async fn render(state: &AppState) -> String {
    let mut out = String::new();
    let checkpoint_times = state.checkpointer.latest_checkpoint_times();
    let spool_dir = state.spool_dir.clone();
    let (spool_segments, spool_bytes) =
        tokio::task::spawn_blocking(move || spool_depth(&spool_dir))
            .await
            .unwrap_or((0, 0));
    let now_ns = crate::now_ns();
    let counters = registry().counters();

    family(
        &mut out,
        "sealtrail_events_accepted_total",
        "counter",
        "Events acknowledged: committed and fsynced (sync, 201) or spooled (async, 202).",
    );
    for durability in ["sync", "async"] {
        let events = counters
            .accepted_events
            .get(durability)
            .copied()
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "sealtrail_events_accepted_total{{durability=\"{durability}\"}} {events}"
        );
    }
    family(
        &mut out,
        "sealtrail_events_rejected_total",
        "counter",
        "Events of refused ingest requests, by reason (a body that could not be read counts none).",
    );
    for ((durability, reason), (_, events)) in &counters.rejected {
        let _ = writeln!(out, "sealtrail_events_rejected_total{{durability=\"{durability}\",reason=\"{reason}\"}} {events}");
    }
    family(
        &mut out,
        "sealtrail_ingest_requests_rejected_total",
        "counter",
        "Refused ingest requests, by reason.",
    );
    for ((durability, reason), (requests, _)) in &counters.rejected {
        let _ = writeln!(out, "sealtrail_ingest_requests_rejected_total{{durability=\"{durability}\",reason=\"{reason}\"}} {requests}");
    }

    family(
        &mut out,
        "sealtrail_http_request_duration_seconds",
        "histogram",
        "Time from request to response head, by method, route template and status.",
    );
    for ((method, route, status), histogram) in &counters.requests {
        let labels = format!(
            "method=\"{method}\",route=\"{}\",status=\"{status}\"",
            escape(route)
        );
        histogram.render(&mut out, "sealtrail_http_request_duration_seconds", &labels);
    }
    family(
        &mut out,
        "sealtrail_http_connections_open",
        "gauge",
        "TCP connections being served; at CONNECTIONS_MAX further ones wait in the accept backlog.",
    );
    let _ = writeln!(
        out,
        "sealtrail_http_connections_open {}",
        state.connections.open()
    );

    let (hits, misses) = state.query.cache().hits_and_misses();
    family(
        &mut out,
        "sealtrail_query_cache_lookups_total",
        "counter",
        "SQL and summary reads looked up in the result cache, by whether they were answered from it.",
    );
    let _ = writeln!(
        out,
        "sealtrail_query_cache_lookups_total{{result=\"hit\"}} {hits}"
    );
    let _ = writeln!(
        out,
        "sealtrail_query_cache_lookups_total{{result=\"miss\"}} {misses}"
    );
    family(
        &mut out,
        "sealtrail_query_cache_bytes",
        "gauge",
        "Bytes of keys and answers the result cache holds (at most QUERY_CACHE_BYTES_MAX).",
    );
    let _ = writeln!(
        out,
        "sealtrail_query_cache_bytes {}",
        state.query.cache().bytes()
    );

    family(
        &mut out,
        "sealtrail_async_queue_events",
        "gauge",
        "Async events acknowledged and not yet committed (the async queue's depth).",
    );
    let _ = writeln!(
        out,
        "sealtrail_async_queue_events {}",
        state.pipeline.async_queued_events()
    );
    family(
        &mut out,
        "sealtrail_async_queue_capacity_events",
        "gauge",
        "Capacity of the async queue; at it, async ingest answers 503.",
    );
    let _ = writeln!(
        out,
        "sealtrail_async_queue_capacity_events {}",
        state.pipeline.async_capacity_events()
    );
    family(
        &mut out,
        "sealtrail_spool_segments",
        "gauge",
        "Spool segment files not yet retired (they hold async requests not known to be committed).",
    );
    let _ = writeln!(out, "sealtrail_spool_segments {spool_segments}");
    family(
        &mut out,
        "sealtrail_spool_bytes",
        "gauge",
        "Bytes of those spool segments.",
    );
    let _ = writeln!(out, "sealtrail_spool_bytes {spool_bytes}");
    family(
        &mut out,
        "sealtrail_spool_records_lost_total",
        "counter",
        "Acknowledged async records found damaged in the spool at start, so never committed (the \
         error log names the files).",
    );
    let lost = state.pipeline.spool_lost_records();
    let _ = writeln!(out, "sealtrail_spool_records_lost_total {lost}");

    let empty = Histogram::new(GROUP_EVENTS_BUCKETS);
    family(
        &mut out,
        "sealtrail_group_commit_events",
        "histogram",
        "Events per group commit (one store transaction, one fsync).",
    );
    counters.group_events.as_ref().unwrap_or(&empty).render(
        &mut out,
        "sealtrail_group_commit_events",
        "",
    );
    let empty = Histogram::new(GROUP_SECS_BUCKETS);
    family(
        &mut out,
        "sealtrail_group_commit_duration_seconds",
        "histogram",
        "Time the store took to commit one group.",
    );
    counters.group_secs.as_ref().unwrap_or(&empty).render(
        &mut out,
        "sealtrail_group_commit_duration_seconds",
        "",
    );
    family(
        &mut out,
        "sealtrail_group_commit_failures_total",
        "counter",
        "Groups the store refused whole (their requests are then retried one by one).",
    );
    let _ = writeln!(
        out,
        "sealtrail_group_commit_failures_total {}",
        counters.group_failures
    );

    family(
        &mut out,
        "sealtrail_checkpoint_age_seconds",
        "gauge",
        "Seconds since the tenant's latest signed checkpoint was cut.",
    );
    for (tenant_id, created_at_ns) in &checkpoint_times {
        let age = (now_ns - created_at_ns).max(0) as f64 / 1e9;
        let _ = writeln!(
            out,
            "sealtrail_checkpoint_age_seconds{{tenant_id=\"{}\"}} {age}",
            escape(tenant_id)
        );
    }

    family(
        &mut out,
        "sealtrail_lifecycle_runs_total",
        "counter",
        "Scheduled lifecycle passes (hot -> warm -> cold -> retention), by outcome.",
    );
    for outcome in ["ok", "failed"] {
        let runs = counters.lifecycle_runs.get(outcome).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "sealtrail_lifecycle_runs_total{{outcome=\"{outcome}\"}} {runs}"
        );
    }
    family(
        &mut out,
        "sealtrail_lifecycle_bytes_written_total",
        "counter",
        "Parquet bytes the scheduled lifecycle wrote, by tier.",
    );
    for tier in ["warm", "cold"] {
        let bytes = counters.lifecycle_bytes.get(tier).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "sealtrail_lifecycle_bytes_written_total{{tier=\"{tier}\"}} {bytes}"
        );
    }
    family(
        &mut out,
        "sealtrail_lifecycle_events_total",
        "counter",
        "Events the scheduled lifecycle moved (hot_to_warm, warm_to_cold) or deleted (retention).",
    );
    for step in ["hot_to_warm", "warm_to_cold", "retention"] {
        let events = counters.lifecycle_events.get(step).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "sealtrail_lifecycle_events_total{{step=\"{step}\"}} {events}"
        );
    }
    family(
        &mut out,
        "sealtrail_alerts_raised_total",
        "counter",
        "Alerts the alert rules raised (each is an alert.triggered event of its tenant's log).",
    );
    let _ = writeln!(
        out,
        "sealtrail_alerts_raised_total {}",
        counters.alerts_raised
    );
    family(
        &mut out,
        "sealtrail_deliveries_total",
        "counter",
        "Webhook and sink messages by kind and outcome; parked is a final failure (dead-lettered).",
    );
    for kind in ["webhook", "splunk_hec", "syslog", "ocsf_http"] {
        for outcome in ["delivered", "retried", "parked"] {
            let count = counters
                .deliveries
                .get(&(kind, outcome))
                .copied()
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "sealtrail_deliveries_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {count}"
            );
        }
    }
    family(
        &mut out,
        "sealtrail_feed_lag_events",
        "gauge",
        "Committed events each consumer (the alert engine, each webhook and sink) has yet to handle.",
    );
    for (consumer, lag) in state.pipeline.feed().lags() {
        let _ = writeln!(
            out,
            "sealtrail_feed_lag_events{{consumer=\"{}\"}} {lag}",
            escape(&consumer)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_cumulative_and_ends_in_inf() {
        let mut histogram = Histogram::new(&[1.0, 10.0]);
        for value in [0.5, 1.0, 5.0, 50.0] {
            histogram.observe(value);
        }
        let mut out = String::new();
        histogram.render(&mut out, "x", "route=\"/a\"");
        assert_eq!(
            out,
            "x_bucket{route=\"/a\",le=\"1\"} 2\n\
             x_bucket{route=\"/a\",le=\"10\"} 3\n\
             x_bucket{route=\"/a\",le=\"+Inf\"} 4\n\
             x_sum{route=\"/a\"} 56.5\n\
             x_count{route=\"/a\"} 4\n"
        );
        let mut out = String::new();
        Histogram::new(&[1.0]).render(&mut out, "y", "");
        assert_eq!(
            out,
            "y_bucket{le=\"1\"} 0\ny_bucket{le=\"+Inf\"} 0\ny_sum 0\ny_count 0\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
