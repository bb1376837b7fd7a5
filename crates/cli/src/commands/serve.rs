//! `sealtrail serve`: flags, environment and config file, resolved in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use sealtrail_model::limits::{
    ASYNC_QUEUE_EVENTS_MAX, DELIVERY_ATTEMPTS_MAX, DELIVERY_RETRY_BASE_MILLIS_DEFAULT,
    DELIVERY_RETRY_CAP_MILLIS, EXPORT_EXPIRY_DAYS_DEFAULT, EXPORT_EXPIRY_DAYS_MAX,
    HOT_RETENTION_DAYS_DEFAULT, LIFECYCLE_INTERVAL_SECS_DEFAULT,
    SAMPLING_STATEMENT_INTERVAL_SECS_DEFAULT, WARM_RETENTION_DAYS_DEFAULT,
};
use sealtrail_server::{LifecycleSchedule, ServerConfig};
use serde::Deserialize;

const DATA_DIR_DEFAULT: &str = "./sealtrail-data";
const LISTEN_DEFAULT: &str = "127.0.0.1:7070";
const CHECKPOINT_INTERVAL_SECS_DEFAULT: u64 = 10;

/// The part of `serve --help` about settings read from the environment only.
pub(super) const ENVIRONMENT_HELP: &str = "\
Environment only (no flag, so a secret never shows in `ps`):
  SEALTRAIL_ADMIN_TOKEN  Platform-admin bearer token (creates API keys: POST /v1/keys); unset,
                         one is generated on first start and printed once (only its hash is
                         stored). At least 32 random bytes, as 64 hex or 43 base64 characters:
                         `openssl rand -hex 32`; a weaker one is refused at start
  SEALTRAIL_METRICS_TOKEN
                         Bearer token that opens GET /metrics and nothing else (for a
                         Prometheus scraper); same strength rule. Unset, only the platform-admin
                         token opens /metrics
  SEALTRAIL_LOG          Log filter, e.g. `info` (default), `warn`, `sealtrail_server=debug`
                         (tracing-subscriber EnvFilter syntax); logs go to stderr
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
                         Credentials of an S3 warm or cold tier
Every flag also reads the environment variable shown beside it.";

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Directory holding the hot store, the async spool and keys [default: ./sealtrail-data]
    #[arg(long, env = "SEALTRAIL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7070]
    #[arg(long, env = "SEALTRAIL_LISTEN")]
    listen: Option<SocketAddr>,
    /// PostgreSQL hot tier (`postgres://…`); without it the embedded SQLite store in the data
    /// directory is used.
    #[arg(long, env = "SEALTRAIL_DATABASE_URL")]
    database_url: Option<String>,
    #[arg(
        long,
        env = "SEALTRAIL_ASYNC_QUEUE_EVENTS_MAX",
        help = format!(
            "Capacity of the async ingest queue, in events; when full, async ingest answers 503 \
             [default: {ASYNC_QUEUE_EVENTS_MAX}]"
        )
    )]
    async_queue_events_max: Option<usize>,
    /// Checkpoint signing key file [default: <data-dir>/checkpoint-signing.key, created on first start]
    #[arg(long, env = "SEALTRAIL_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
    /// Key-encryption key file (64 hex digits or base64 of 32 bytes) wrapping every tenant's
    /// data key [default: <data-dir>/vault.kek, created on first start]. `SEALTRAIL_KEK` may hold
    /// the key itself instead; nodes of one database must share it
    #[arg(long, env = "SEALTRAIL_KEK_FILE")]
    kek_file: Option<PathBuf>,
    /// The key-encryption key being rotated away from: at start every tenant data key wrapped
    /// under it is rewrapped under the current one (events are not touched).
    /// `SEALTRAIL_KEK_PREVIOUS` may hold the key itself instead
    #[arg(long, env = "SEALTRAIL_PREVIOUS_KEK_FILE")]
    previous_kek_file: Option<PathBuf>,
    /// The region this deployment's stores are in; tenants' settings may name only it
    /// [default: default]
    #[arg(long, env = "SEALTRAIL_REGION")]
    region: Option<String>,
    /// Another region's node, `<region>=<url>` (repeatable; `SEALTRAIL_PEERS` separates them
    /// with commas): requests about that region's tenants are forwarded to it, so their data
    /// is stored only there (docs/PRIVACY.md, "Regions")
    #[arg(
        long = "peer",
        env = "SEALTRAIL_PEERS",
        value_delimiter = ',',
        value_name = "REGION=URL"
    )]
    peers: Vec<String>,
    /// Name of a newly created signing key, shown in every signature line [default: sealtrail]
    #[arg(long, env = "SEALTRAIL_KEY_NAME")]
    key_name: Option<String>,
    /// Directory every checkpoint is also copied to, append-only (a witness)
    #[arg(long, env = "SEALTRAIL_WITNESS_DIR")]
    witness_dir: Option<PathBuf>,
    /// Seconds between checkpoints of tenants whose log grew [default: 10]
    #[arg(long, env = "SEALTRAIL_CHECKPOINT_INTERVAL_SECS")]
    checkpoint_interval_secs: Option<u64>,
    #[arg(
        long,
        env = "SEALTRAIL_LIFECYCLE_INTERVAL_SECS",
        help = format!(
            "Seconds between the server's lifecycle passes (hot -> warm -> cold -> retention); 0 \
             turns them off [default: {LIFECYCLE_INTERVAL_SECS_DEFAULT}]"
        )
    )]
    lifecycle_interval_secs: Option<u64>,
    #[arg(
        long,
        env = "SEALTRAIL_HOT_RETENTION_DAYS",
        help = format!(
            "Events older than this many days move from the hot to the warm tier \
             [default: {HOT_RETENTION_DAYS_DEFAULT}]"
        )
    )]
    hot_retention_days: Option<u32>,
    #[arg(
        long,
        env = "SEALTRAIL_WARM_RETENTION_DAYS",
        help = format!(
            "Warm files older than this many days are compacted into the cold tier \
             [default: {WARM_RETENTION_DAYS_DEFAULT}]"
        )
    )]
    warm_retention_days: Option<u32>,
    /// Keep rates of the shipped capture policy: `off` keeps every event, `recommended` keeps
    /// class 1 at 50%, class 2 at 10% and class 3 at 1% (class 0 always) [default: off]
    #[arg(long, env = "SEALTRAIL_SAMPLING", value_enum)]
    sampling: Option<SamplingArg>,
    #[arg(
        long,
        env = "SEALTRAIL_SAMPLING_STATEMENT_INTERVAL_SECS",
        help = format!(
            "Seconds between sampling statements committed into each tenant's log \
             [default: {SAMPLING_STATEMENT_INTERVAL_SECS_DEFAULT}]"
        )
    )]
    sampling_statement_interval_secs: Option<u64>,
    #[arg(
        long,
        env = "SEALTRAIL_DELIVERY_RETRY_BASE_MILLIS",
        help = format!(
            "First pause before a failed webhook or sink delivery is tried again, doubled each \
             attempt (with jitter, at most {DELIVERY_RETRY_CAP_MILLIS} ms; parked after \
             {DELIVERY_ATTEMPTS_MAX} attempts) [default: {DELIVERY_RETRY_BASE_MILLIS_DEFAULT}]"
        )
    )]
    delivery_retry_base_millis: Option<u64>,
    /// Let webhooks and sinks reach loopback and private addresses (off by default, so that a
    /// tenant admin cannot make the server call its own network)
    #[arg(long, env = "SEALTRAIL_ALLOW_PRIVATE_DESTINATIONS")]
    allow_private_destinations: bool,
    #[arg(
        long,
        env = "SEALTRAIL_EXPORT_EXPIRY_DAYS",
        help = format!(
            "Days a finished export's files are kept before they are removed (at most \
             {EXPORT_EXPIRY_DAYS_MAX}) [default: {EXPORT_EXPIRY_DAYS_DEFAULT}]"
        )
    )]
    export_expiry_days: Option<u32>,
    #[command(flatten)]
    warm: super::lifecycle::WarmArgs,
    #[command(flatten)]
    cold: super::lifecycle::ColdArgs,
    /// TOML config file with the same settings (`data_dir`, `listen`, `database_url`,
    /// `async_queue_events_max`, `signing_key`, `key_name`, `witness_dir`,
    /// `checkpoint_interval_secs`, `lifecycle_interval_secs`, `hot_retention_days`,
    /// `warm_retention_days`, `log_format`, `sampling`, `sampling_statement_interval_secs`,
    /// `delivery_retry_base_millis`, `allow_private_destinations`, `export_expiry_days`,
    /// `kek_file`, `region`, `peers`),
    /// and `[policy]`, the deployment's capture policy in the wire shape of
    /// `PUT /v1/tenants/{t}/policy` (instead of `sampling`); flags and env win.
    #[arg(long, env = "SEALTRAIL_CONFIG")]
    config: Option<PathBuf>,
    /// Log lines on stderr: `text` for people, `json` (one JSON object per line) for a log
    /// collector [default: text]
    #[arg(long, env = "SEALTRAIL_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

/// The shipped capture policy's keep rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SamplingArg {
    /// Every class kept at 1.0.
    Off,
    /// 1.0 / 0.5 / 0.1 / 0.01 for classes 0 to 3.
    Recommended,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`), nothing else.
    Json,
}

/// The log format of `serve`: the flag or environment, else the config file, else text. Read
/// before the server starts, so the first line is already in the chosen format.
pub(crate) fn log_format(args: &ServeArgs) -> anyhow::Result<LogFormat> {
    if let Some(format) = args.log_format {
        return Ok(format);
    }
    Ok(match &args.config {
        Some(path) => read_config(path)?.log_format.unwrap_or_default(),
        None => LogFormat::Text,
    })
}

/// The config file: every field optional, unknown fields rejected so a typo is not ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    async_queue_events_max: Option<usize>,
    signing_key: Option<PathBuf>,
    key_name: Option<String>,
    witness_dir: Option<PathBuf>,
    checkpoint_interval_secs: Option<u64>,
    lifecycle_interval_secs: Option<u64>,
    hot_retention_days: Option<u32>,
    warm_retention_days: Option<u32>,
    log_format: Option<LogFormat>,
    sampling: Option<SamplingArg>,
    sampling_statement_interval_secs: Option<u64>,
    delivery_retry_base_millis: Option<u64>,
    allow_private_destinations: Option<bool>,
    export_expiry_days: Option<u32>,
    kek_file: Option<PathBuf>,
    region: Option<String>,
    peers: Option<Vec<String>>,
    policy: Option<toml::Value>,
}

/// The deployment's capture policy: the config file's `[policy]`, else the shipped one at the
/// `sampling` rates.
fn capture_policy(
    sampling: Option<SamplingArg>,
    table: Option<toml::Value>,
) -> anyhow::Result<sealtrail_policy::Policy> {
    use sealtrail_policy::{Policy, Sampling};
    match (table, sampling) {
        (Some(_), Some(_)) => anyhow::bail!(
            "the config file sets [policy], which holds its own rates; remove `sampling` (or the \
             --sampling flag / SEALTRAIL_SAMPLING)"
        ),
        (Some(table), None) => {
            let value = serde_json::to_value(table).context("reading [policy]")?;
            Policy::from_json(&value).map_err(|errors| {
                let reasons: Vec<String> = errors
                    .iter()
                    .map(|error| format!("policy.{}: {}", error.field, error.reason))
                    .collect();
                anyhow::anyhow!(
                    "the config file's [policy] is invalid: {}",
                    reasons.join("; ")
                )
            })
        }
        (None, Some(SamplingArg::Recommended)) => Ok(Policy::shipped(Sampling::Recommended)),
        (None, _) => Ok(Policy::shipped(Sampling::Off)),
    }
}

fn read_config(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => read_config(path)?,
        None => ConfigFile::default(),
    };
    let data_dir = args
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| DATA_DIR_DEFAULT.into());
    let lifecycle_interval = args
        .lifecycle_interval_secs
        .or(file.lifecycle_interval_secs)
        .unwrap_or(LIFECYCLE_INTERVAL_SECS_DEFAULT);
    let lifecycle = (lifecycle_interval > 0).then(|| LifecycleSchedule {
        interval: std::time::Duration::from_secs(lifecycle_interval),
        hot_retention_days: args
            .hot_retention_days
            .or(file.hot_retention_days)
            .unwrap_or(HOT_RETENTION_DAYS_DEFAULT),
        warm_retention_days: args
            .warm_retention_days
            .or(file.warm_retention_days)
            .unwrap_or(WARM_RETENTION_DAYS_DEFAULT),
    });
    let capture_policy = capture_policy(args.sampling.or(file.sampling), file.policy)?;
    let region = args
        .region
        .or(file.region)
        .unwrap_or_else(|| "default".into());
    let peers = match args.peers.is_empty() {
        true => file.peers.unwrap_or_default(),
        false => args.peers,
    };
    let peers = sealtrail_server::parse_peers(&region, &peers).map_err(anyhow::Error::msg)?;
    let config = ServerConfig {
        capture_policy,
        sampling_statement_interval: std::time::Duration::from_secs(
            args.sampling_statement_interval_secs
                .or(file.sampling_statement_interval_secs)
                .unwrap_or(SAMPLING_STATEMENT_INTERVAL_SECS_DEFAULT)
                .max(1),
        ),
        delivery_retry_base: std::time::Duration::from_millis(
            args.delivery_retry_base_millis
                .or(file.delivery_retry_base_millis)
                .unwrap_or(DELIVERY_RETRY_BASE_MILLIS_DEFAULT)
                .clamp(1, DELIVERY_RETRY_CAP_MILLIS),
        ),
        allow_private_destinations: args.allow_private_destinations
            || file.allow_private_destinations.unwrap_or(false),
        export_expiry_days: args
            .export_expiry_days
            .or(file.export_expiry_days)
            .unwrap_or(EXPORT_EXPIRY_DAYS_DEFAULT)
            .min(EXPORT_EXPIRY_DAYS_MAX),
        lifecycle,
        warm: args.warm.location(&data_dir),
        cold: Some(args.cold.location(&args.warm, &data_dir)),
        listen: args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| LISTEN_DEFAULT.parse().expect("default address parses")),
        data_dir,
        async_queue_events_max: args
            .async_queue_events_max
            .or(file.async_queue_events_max)
            .unwrap_or(ASYNC_QUEUE_EVENTS_MAX),
        signing_key_path: args.signing_key.or(file.signing_key),
        // Read from the environment only, like the admin token.
        kek: std::env::var("SEALTRAIL_KEK")
            .ok()
            .filter(|key| !key.is_empty()),
        kek_path: args.kek_file.or(file.kek_file),
        previous_kek: std::env::var("SEALTRAIL_KEK_PREVIOUS")
            .ok()
            .filter(|key| !key.is_empty()),
        previous_kek_path: args.previous_kek_file,
        region,
        peers,
        key_name: args
            .key_name
            .or(file.key_name)
            .unwrap_or_else(|| sealtrail_server::DEFAULT_KEY_NAME.into()),
        witness_dir: args.witness_dir.or(file.witness_dir),
        checkpoint_interval: std::time::Duration::from_secs(
            args.checkpoint_interval_secs
                .or(file.checkpoint_interval_secs)
                .unwrap_or(CHECKPOINT_INTERVAL_SECS_DEFAULT)
                .max(1),
        ),
        // Read from the environment only: a token on the command line would show in `ps`.
        admin_token: std::env::var("SEALTRAIL_ADMIN_TOKEN")
            .ok()
            .filter(|token| !token.is_empty()),
        metrics_token: std::env::var("SEALTRAIL_METRICS_TOKEN")
            .ok()
            .filter(|token| !token.is_empty()),
    };
    // Refused before anything is opened; `sealtrail_server::run` checks again for embedders.
    for (variable, token) in [
        ("SEALTRAIL_ADMIN_TOKEN", &config.admin_token),
        ("SEALTRAIL_METRICS_TOKEN", &config.metrics_token),
    ] {
        if let Some(token) = token {
            sealtrail_server::check_token_strength(variable, token).map_err(anyhow::Error::msg)?;
        }
    }
    let database_url = args.database_url.or(file.database_url);
    tracing::info!(?config, postgres = database_url.is_some(), "starting");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        let store = super::store::open_hot_store(&config.data_dir, database_url.as_deref()).await?;
        sealtrail_server::run(config, store, shutdown).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A future that resolves on SIGINT or SIGTERM. The handlers are installed here, before the
/// server listens, not when the future is first polled: a signal sent as soon as the address is
/// printed MUST be an orderly shutdown, not the default action that kills the process.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutdown requested");
    })
}
