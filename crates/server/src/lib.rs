//! The Sealtrail HTTP server: routes, authentication, the ingest pipeline and ordered shutdown.
//!
//! [`run`] owns the whole lifecycle: open the hot store, replay the async spool, start the
//! writer, serve until the injected shutdown future resolves, then stop accepting, finish
//! in-flight requests, drain and commit every queued event, and close.

mod access;
mod alerts;
mod auth;
mod capture;
mod checkpoints;
mod clock;
mod console;
mod destinations;
mod directory;
mod exports;
mod feed;
mod ingest;
mod keys;
mod lifecycle;
mod metrics;
mod openapi;
mod pipeline;
mod privacy;
mod problem;
mod proofs;
mod query;
mod recent;
mod regions;
mod rejections;
mod report;
mod retention;
mod spool;
mod stream;
mod summaries;
mod viewer;
mod webhooks;

use std::future::{Future, IntoFuture};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::Router;
use sealtrail_hot::HotStore;
use sealtrail_model::limits::{CONNECTIONS_MAX, REQUEST_TIMEOUT_MILLIS};

pub use auth::{check_token_strength, Principal};
use auth::{Authenticator, ADMIN_TOKEN_SETTING};
use checkpoints::Checkpointer;
pub use checkpoints::{load_or_create_signer, load_signer, DEFAULT_KEY_NAME, SIGNING_KEY_FILE};
pub use clock::TEST_NOW_ENV;
pub use lifecycle::{load_retention_policy, retention_cutoffs, LifecycleSchedule};
use pipeline::Pipeline;
pub use privacy::{tenant_encrypts, Resealer, Sealer, KEK_FILE};
pub use regions::parse_peers;
use spool::Spool;

/// Errors that stop the server from starting or from shutting down cleanly.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("hot store: {0}")]
    Store(#[from] sealtrail_hot::Error),
    #[error("I/O on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("archive tier: {0}")]
    Archive(#[from] sealtrail_archive::Error),
    #[error("query engine: {0}")]
    Query(#[from] sealtrail_query::Error),
    #[error("background task failed: {0}")]
    Task(String),
    /// A configured token too weak to guard what it opens.
    #[error("{0}")]
    WeakToken(String),
    /// A node of a shared database whose archive is not the one the other nodes use.
    #[error("{0}")]
    SharedArchive(String),
    /// A stored setting that does not decode: reported, never replaced by a default.
    #[error("{0}")]
    CorruptSetting(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything `serve` needs, already resolved from flags, environment and config file.
#[derive(Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The platform-admin bearer token; generated on first start when absent. A configured one
    /// MUST pass [`check_token_strength`], or the server refuses to start.
    pub admin_token: Option<String>,
    /// A bearer token that opens `GET /metrics` and nothing else (for a Prometheus scraper);
    /// without it only the platform-admin token does. Same strength rule as the admin token.
    pub metrics_token: Option<String>,
    /// Where the checkpoint signing key lives; default `<data_dir>/checkpoint-signing.key`,
    /// created on first start.
    pub signing_key_path: Option<PathBuf>,
    /// Key name used when a signing key is created.
    pub key_name: String,
    /// A second, append-only directory each checkpoint is copied to.
    pub witness_dir: Option<PathBuf>,
    /// How often checkpoints are cut for tenants whose log grew.
    pub checkpoint_interval: std::time::Duration,
    /// Where the warm tier lives (Parquet files the lifecycle moved out of the hot store);
    /// queries read it in place.
    pub warm: sealtrail_archive::Location,
    /// Where the cold tier lives, if one is configured.
    pub cold: Option<sealtrail_archive::Location>,
    /// The lifecycle pass the server runs on a timer (hot → warm → cold → retention); `None`
    /// leaves it to `sealtrail lifecycle run`.
    pub lifecycle: Option<LifecycleSchedule>,
    /// Capacity of the async queue in events (default
    /// [`ASYNC_QUEUE_EVENTS_MAX`](sealtrail_model::limits::ASYNC_QUEUE_EVENTS_MAX)).
    pub async_queue_events_max: usize,
    /// The capture policy of every tenant without one of its own.
    pub capture_policy: sealtrail_policy::Policy,
    /// How often sampling statistics that moved are stated in each tenant's log.
    pub sampling_statement_interval: std::time::Duration,
    /// The first pause before a failed webhook or sink delivery is tried again.
    pub delivery_retry_base: std::time::Duration,
    /// Whether webhooks and sinks may reach loopback and private addresses (off: a tenant admin
    /// cannot make the server call its own network).
    pub allow_private_destinations: bool,
    /// Days a finished export's files are kept.
    pub export_expiry_days: u32,
    /// The key-encryption key as text (64 hex digits or base64), from `SEALTRAIL_KEK`; else the
    /// file [`ServerConfig::kek_path`].
    pub kek: Option<String>,
    /// The key-encryption key's file; default `<data_dir>/vault.kek`, created on first start.
    pub kek_path: Option<PathBuf>,
    /// The key-encryption key being rotated away from, as text (`SEALTRAIL_KEK_PREVIOUS`) or a
    /// file: at start every tenant data key still wrapped under it is rewrapped under the
    /// current one.
    pub previous_kek: Option<String>,
    pub previous_kek_path: Option<PathBuf>,
    /// The region this deployment's stores are in; a tenant's settings may name only it.
    pub region: String,
    /// Other regions' nodes, `(region, base URL)` (`regions::parse_peers`): requests about
    /// their tenants are forwarded to them.
    pub peers: Vec<(String, String)>,
}

impl std::fmt::Debug for ServerConfig {
    // Hand-written so the admin token can never reach a log line.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<redacted>"),
            )
            .field("kek", &self.kek.as_ref().map(|_| "<redacted>"))
            .field(
                "previous_kek",
                &self.previous_kek.as_ref().map(|_| "<redacted>"),
            )
            .field("region", &self.region)
            .field("peers", &self.peers)
            .finish()
    }
}

/// Shared state of every handler.
#[derive(Debug)]
pub(crate) struct AppState {
    store: Arc<dyn HotStore>,
    /// Reads across the hot store and the archive tiers.
    query: Arc<sealtrail_query::QueryEngine>,
    pipeline: Pipeline,
    auth: Authenticator,
    checkpointer: Arc<Checkpointer>,
    /// SHA-256 of the metrics token, when one is configured.
    metrics_token_hash: Option<[u8; 32]>,
    /// The async spool's directory (its depth is read from it for `/metrics`).
    spool_dir: PathBuf,
    /// Connections served at once, bounded by [`CONNECTIONS_MAX`].
    connections: problem::ConnectionLimit,
    /// Heavy reads running per tenant, bounded by
    /// [`QUERIES_PER_TENANT_CONCURRENT_MAX`](sealtrail_model::limits::QUERIES_PER_TENANT_CONCURRENT_MAX).
    tenant_queries: Arc<query::TenantQuerySlots>,
    /// Each tenant's capture policy.
    policies: capture::Policies,
    /// Each tenant's settings (region, encrypted fields, export format).
    settings: privacy::Settings,
    /// The envelope keys of field encryption (shared with the lifecycle's re-encryption).
    vault: Arc<privacy::Vault>,
    /// The region this deployment serves.
    region: String,
    /// Other regions' nodes, and where tenants and credentials were found on them.
    regions: regions::Regions,
    /// The committed-event feed (the pipeline's).
    feed: Arc<feed::Feed>,
    /// Webhooks and sinks, and their workers.
    destinations: destinations::Destinations,
    delivery_retry_base: std::time::Duration,
    allow_private_destinations: bool,
    /// Export jobs.
    exports: exports::Exports,
    /// Live streams open (bounded).
    streams: stream::Streams,
    /// Started by the shutdown signal: live streams end then.
    drain: pipeline::DrainDeadline,
}

/// The server's clock, in nanoseconds since the Unix epoch (a test may start it at a fixed
/// instant: [`TEST_NOW_ENV`]).
pub(crate) fn now_ns() -> i64 {
    clock::now_ns()
}

/// Runs the server on an opened hot store until `shutdown` resolves, then drains and exits.
pub async fn run(
    config: ServerConfig,
    store: Arc<dyn HotStore>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    if let Some(token) = &config.admin_token {
        check_token_strength("SEALTRAIL_ADMIN_TOKEN", token).map_err(Error::WeakToken)?;
    }
    if let Some(token) = &config.metrics_token {
        check_token_strength("SEALTRAIL_METRICS_TOKEN", token).map_err(Error::WeakToken)?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    let admin_token_hash = resolve_admin_token(&*store, config.admin_token, local_addr).await?;

    let spool_dir = config.data_dir.join("spool");
    let (spool, leftovers) = Spool::open(&spool_dir)?;
    let refused = pipeline::replay_spool(&*store, &spool, leftovers).await?;
    let signing_key_path = config
        .signing_key_path
        .clone()
        .unwrap_or_else(|| config.data_dir.join(checkpoints::SIGNING_KEY_FILE));
    let signer = checkpoints::load_or_create_signer(&signing_key_path, &config.key_name)?;
    let kek = privacy::load_kek(
        config.kek.as_deref(),
        &config
            .kek_path
            .clone()
            .unwrap_or_else(|| config.data_dir.join(privacy::KEK_FILE)),
        config.kek_path.is_none(),
    )?;
    let vault = Arc::new(privacy::Vault::new(kek));
    let previous_kek = match (&config.previous_kek, &config.previous_kek_path) {
        (None, None) => None,
        (text, path) => Some(privacy::load_kek(
            text.as_deref(),
            path.as_deref().unwrap_or(std::path::Path::new("")),
            false,
        )?),
    };
    if let Some(previous) = previous_kek {
        let rewrapped = privacy::rewrap_tenant_keys(&*store, &vault, &*previous).await?;
        tracing::info!(
            rewrapped,
            "tenant data keys rewrapped under the current key-encryption key"
        );
    }
    let warm = sealtrail_archive::Tier::open(&config.warm)?;
    let cold = config
        .cold
        .as_ref()
        .map(sealtrail_archive::Tier::open)
        .transpose()?;
    let tiers: Vec<&sealtrail_archive::Tier> = std::iter::once(&warm).chain(&cold).collect();
    lifecycle::check_shared_archive(&*store, &tiers).await?;
    let lifecycle_task = match (config.lifecycle, &cold) {
        (Some(schedule), Some(cold)) => {
            let runtime =
                sealtrail_query::MaintenanceRuntime::new().map_err(|source| Error::Io {
                    path: "the lifecycle runtime".into(),
                    source,
                })?;
            Some(tokio::spawn(lifecycle::run_schedule(
                Arc::new(runtime),
                store.clone(),
                warm.clone(),
                cold.clone(),
                load_signer(&signing_key_path)?,
                Arc::new(privacy::Resealer::new(store.clone(), vault.clone())),
                schedule,
            )))
        }
        _ => None,
    };
    let export_store = warm.clone();
    let query = Arc::new(sealtrail_query::QueryEngine::new(
        store.clone(),
        Some(warm),
        cold,
    )?);
    // Heads written before frontiers were kept get theirs before any write needs it. A tenant
    // whose frontier cannot be rebuilt is logged and fails its own writes only.
    query.restore_frontiers().await?;
    let checkpointer = Arc::new(Checkpointer::new(
        store.clone(),
        query.clone(),
        signer,
        config.witness_dir.clone(),
    ));
    let pipeline = Pipeline::start(
        store.clone(),
        Arc::new(spool),
        config.async_queue_events_max.max(1),
        refused,
    );

    let connections = problem::ConnectionLimit::new(CONNECTIONS_MAX);
    // Everything after the signal is bounded by one deadline (SHUTDOWN_DRAIN_SECS_MAX).
    let drain = pipeline::DrainDeadline::new();
    let state = Arc::new(AppState {
        feed: pipeline.feed().clone(),
        auth: Authenticator::new(admin_token_hash, store.clone()),
        query,
        store,
        pipeline,
        checkpointer: checkpointer.clone(),
        metrics_token_hash: config
            .metrics_token
            .as_ref()
            .map(|token| auth::sha256(token.as_bytes())),
        spool_dir,
        connections: connections.clone(),
        tenant_queries: Arc::default(),
        policies: capture::Policies::new(config.capture_policy.clone()),
        settings: privacy::Settings::default(),
        vault,
        region: config.region.clone(),
        regions: regions::Regions::new(config.peers.clone())?,
        destinations: destinations::Destinations::default(),
        delivery_retry_base: config.delivery_retry_base,
        allow_private_destinations: config.allow_private_destinations,
        exports: exports::Exports::new(&config.data_dir, export_store, config.export_expiry_days),
        streams: stream::Streams::default(),
        drain: drain.clone(),
    });
    let checkpoint_task = tokio::spawn(checkpoints::run_checkpointer(
        checkpointer.clone(),
        config.checkpoint_interval,
    ));
    let statement_task = tokio::spawn(capture::run_statements(
        state.clone(),
        config.sampling_statement_interval,
    ));
    let alert_task = tokio::spawn(alerts::run_engine(state.clone()));
    let export_task = tokio::spawn(exports::run_jobs(state.clone()));
    destinations::Destinations::start(&state)
        .await
        .map_err(|error| Error::CorruptSetting(format!("webhooks and sinks: {error}")))?;
    // Tests and scripts read this line to find the port when listening on port 0.
    println!("sealtrail listening on http://{local_addr}");
    let _ = std::io::stdout().flush();
    tracing::info!(%local_addr, data_dir = %config.data_dir.display(), "serving");

    let listener = problem::ProblemListener {
        listener,
        limit: connections,
    };
    let serving = axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(drain.starts_after(shutdown))
        .into_future();
    state
        .pipeline
        .serve_until_deadline(serving, &drain)
        .await
        .map_err(|source| Error::Io {
            path: local_addr.to_string(),
            source,
        })?;
    tracing::info!("stopped accepting; draining the ingest pipeline");
    statement_task.abort();
    // Feed consumers stop before the pipeline drains: what they have not handled yet, they
    // handle after the next start, from their cursors.
    alert_task.abort();
    // A running export stops here; it runs again from the beginning on the next start.
    export_task.abort();
    state.exports.stop();
    state.destinations.stop();
    let drained = state.pipeline.shutdown(drain.deadline()).await?;
    checkpoint_task.abort();
    // Every lifecycle step is crash-safe; an interrupted pass is finished by the next one.
    if let Some(task) = lifecycle_task {
        task.abort();
    }
    // Seal: the last checkpoint covers every event accepted before shutdown. Past the deadline
    // the next start's checkpoint timer covers them instead.
    let sealed = match drained {
        true => tokio::time::timeout_at(drain.deadline(), checkpointer.cut_all())
            .await
            .ok(),
        false => None,
    };
    let Some(sealed) = sealed else {
        tracing::error!("shutdown deadline passed; exiting without a final checkpoint");
        return Ok(());
    };
    let sealed = sealed?;
    tracing::info!(
        checkpoints = sealed,
        "every accepted event is committed and checkpointed; exiting"
    );
    Ok(())
}

fn router(state: Arc<AppState>) -> Router {
    // Endpoints whose body is one JSON document refuse other media types with 415.
    let json_body = || axum::middleware::from_fn(ingest::require_json_body);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi::document))
        .route("/metrics", get(metrics::scrape))
        .route(
            "/v1/events",
            post(ingest::post_events).get(query::list_events),
        )
        .route("/v1/events/{event_id}", get(query::get_event))
        .route("/v1/query", post(query::run_sql).layer(json_body()))
        .route("/v1/export", get(query::export))
        .route(
            "/v1/exports",
            get(exports::list).post(exports::create.layer(json_body())),
        )
        .route(
            "/v1/exports/{export_id}",
            get(exports::get).delete(exports::cancel),
        )
        .route("/v1/exports/{export_id}/download", get(exports::download))
        .route("/v1/keys", post(keys::create_key).layer(json_body()))
        .route("/v1/keys/{key_id}", delete(keys::revoke_key))
        .route(
            "/v1/tenants/{tenant_id}/retention",
            get(retention::get_retention).put(retention::put_retention.layer(json_body())),
        )
        .route(
            "/v1/tenants/{tenant_id}",
            get(privacy::get_settings).put(privacy::put_settings.layer(json_body())),
        )
        .route(
            "/v1/tenants/{tenant_id}/subjects/{actor_id}/erase",
            post(privacy::erase_subject),
        )
        .route("/v1/tenants/{tenant_id}/erase", post(privacy::erase_tenant))
        .route(
            "/v1/tenants/{tenant_id}/keys/rotate",
            post(privacy::rotate_key),
        )
        .route(
            "/v1/tenants/{tenant_id}/rejected-events",
            get(rejections::list),
        )
        .route(
            "/v1/tenants/{tenant_id}/policy",
            get(capture::get_policy).put(capture::put_policy.layer(json_body())),
        )
        .route(
            "/v1/tenants/{tenant_id}/sampling",
            get(capture::get_sampling),
        )
        .route("/v1/stream", get(stream::stream))
        .route(
            "/v1/tenants/{tenant_id}/alert-rules",
            get(alerts::list_rules).post(alerts::create_rule.layer(json_body())),
        )
        .route(
            "/v1/tenants/{tenant_id}/alert-rules/{name}",
            put(alerts::put_rule.layer(json_body())).delete(alerts::delete_rule),
        )
        .route(
            "/v1/tenants/{tenant_id}/webhooks",
            get(webhooks::list_webhooks).post(webhooks::create_webhook.layer(json_body())),
        )
        .route(
            "/v1/tenants/{tenant_id}/webhooks/{id}",
            delete(webhooks::delete_webhook),
        )
        .route(
            "/v1/tenants/{tenant_id}/webhooks/{id}/dead-letters",
            get(webhooks::webhook_dead_letters),
        )
        .route(
            "/v1/tenants/{tenant_id}/webhooks/{id}/dead-letters/replay",
            post(webhooks::replay_webhook_dead_letters),
        )
        .route(
            "/v1/sinks",
            get(webhooks::list_sinks).post(webhooks::create_sink.layer(json_body())),
        )
        .route("/v1/sinks/{id}", delete(webhooks::delete_sink))
        .route(
            "/v1/sinks/{id}/dead-letters",
            get(webhooks::sink_dead_letters),
        )
        .route(
            "/v1/sinks/{id}/dead-letters/replay",
            post(webhooks::replay_sink_dead_letters),
        )
        .route("/v1/summaries/actor-day", get(summaries::actor_days))
        .route("/v1/summaries/tenant-month", get(summaries::tenant_months))
        .route("/v1/summaries/tenant-day", get(summaries::tenant_days))
        .route(
            "/v1/tenants/{tenant_id}/actors",
            put(directory::put_actors.layer(json_body())),
        )
        .route(
            "/v1/tenants/{tenant_id}/actors/{actor_id}",
            get(directory::get_actor),
        )
        .route("/v1/verifier-key", get(proofs::get_verifier_key))
        .route("/v1/whoami", get(access::whoami))
        .route("/v1/regions/holds/{tenant_id}", get(regions::holds_tenant))
        .route("/v1/regions/tenants", get(regions::tenants))
        .route("/v1/access-trail", get(access::trail))
        .route("/v1/viewer-tokens", post(viewer::mint.layer(json_body())))
        .route(
            "/v1/tenants/{tenant_id}/viewer-tokens/rotate-key",
            post(viewer::rotate_key),
        )
        .route("/console", get(console::index))
        .route("/console/", get(console::index))
        .route("/console/{file}", get(console::asset))
        .route(
            "/v1/tenants/{tenant_id}/checkpoint",
            get(proofs::get_checkpoint).post(proofs::cut_checkpoint),
        )
        .route(
            "/v1/tenants/{tenant_id}/proofs/inclusion",
            get(proofs::get_inclusion),
        )
        .route(
            "/v1/tenants/{tenant_id}/proofs/consistency",
            get(proofs::get_consistency),
        )
        .fallback(not_found)
        .with_state(state.clone())
        // A request about another region's tenant goes to that region's node, unread.
        .layer(axum::middleware::from_fn_with_state(state, regions::route))
        .layer(axum::middleware::from_fn(request_timeout))
        // Outermost but for the metrics, so it sees every response, the router's own 405s
        // included.
        .layer(axum::middleware::from_fn(problem::problem_for_bare_errors))
        // Layers of the router run after routing, so the matched route template is known.
        .layer(axum::middleware::from_fn(metrics::observe_requests))
}

/// Middleware: a request whose response head is not ready within [`REQUEST_TIMEOUT_MILLIS`] is
/// answered 503 with Retry-After. Only the head is timed: an export keeps streaming its body
/// for as long as it keeps sending. A timed-out sync ingest may still commit (its request is
/// already queued); retrying it with the same `event_id`s stores nothing twice.
async fn request_timeout(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let limit = std::time::Duration::from_millis(REQUEST_TIMEOUT_MILLIS);
    problem::respond_within(limit, next.run(request)).await
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let store_ok = state.store.setting(ADMIN_TOKEN_SETTING).await.is_ok();
    if store_ok && state.pipeline.is_healthy() {
        (StatusCode::OK, "ready").into_response()
    } else {
        problem::ApiError::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "service",
            "not ready: the store is unreachable or the writer stopped",
        )
        .into_response()
    }
}

async fn not_found(uri: axum::http::Uri) -> problem::ApiError {
    problem::ApiError::refused(
        StatusCode::NOT_FOUND,
        "path",
        format!("no such endpoint: {}; see /openapi.json", uri.path()),
    )
}

/// The stored admin token hash. A value that is not a SHA-256 was damaged or edited: starting
/// with a freshly generated token instead would hide that (and, since the damaged value stays
/// stored, hand out a token that no other node and no restart accepts), so it stops the start.
fn stored_admin_token_hash(stored: &[u8]) -> Result<[u8; 32]> {
    <[u8; 32]>::try_from(stored).map_err(|_| {
        Error::CorruptSetting(format!(
            "the stored setting {ADMIN_TOKEN_SETTING} holds {} bytes, not a 32-byte SHA-256: it \
             was damaged or edited. Restore it, or set SEALTRAIL_ADMIN_TOKEN",
            stored.len()
        ))
    })
}

/// Returns the SHA-256 of the admin token: the configured one, else the stored hash of one
/// generated earlier, else a new one, printed once.
async fn resolve_admin_token(
    store: &dyn HotStore,
    configured: Option<String>,
    addr: SocketAddr,
) -> Result<[u8; 32]> {
    if let Some(token) = configured {
        return Ok(auth::sha256(token.as_bytes()));
    }
    if let Some(stored) = store.setting(ADMIN_TOKEN_SETTING).await? {
        return stored_admin_token_hash(&stored);
    }
    let token = auth::new_admin_token();
    let hash = auth::sha256(token.as_bytes());
    if !store
        .set_setting_if_absent(ADMIN_TOKEN_SETTING, hash.to_vec())
        .await?
    {
        // Another start stored one first; use that.
        if let Some(stored) = store.setting(ADMIN_TOKEN_SETTING).await? {
            return stored_admin_token_hash(&stored);
        }
    }
    println!(
        "\nNo SEALTRAIL_ADMIN_TOKEN was set, so a platform-admin token was generated.\n\
         It is shown only this once; only its hash is stored:\n\n    {token}\n\n\
         Create an API key for a tenant with:\n\n    \
         curl -X POST http://{addr}/v1/keys -H 'Authorization: Bearer {token}' \\\n        \
         -H 'Content-Type: application/json' -d '{{\"tenant_id\": \"acme\", \"role\": \"ingest\"}}'\n\n\
         To choose the token yourself, set SEALTRAIL_ADMIN_TOKEN before starting.\n"
    );
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_admin_token_hash_is_reported_not_replaced() {
        let hash = auth::sha256(b"token");
        assert_eq!(stored_admin_token_hash(&hash).unwrap(), hash);
        let error = stored_admin_token_hash(&hash[..3]).unwrap_err();
        assert!(matches!(error, Error::CorruptSetting(_)), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains(ADMIN_TOKEN_SETTING) && message.contains("3 bytes"),
            "{message}"
        );
    }
}
