//! `sealtrail lifecycle run`: moves each tenant's events older than `--hot-retention-days`
//! from the SQLite hot tier to the warm tier (Parquet on a local directory or S3-compatible
//! storage). Safe to interrupt and re-run at any point (see `sealtrail_archive::lifecycle`).
//! It takes the data directory's lock, so it runs while the server is stopped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use sealtrail_archive::{Location, MigrationPolicy, MigrationStep, Reseal, S3Location, Tier};
use sealtrail_model::limits::{HOT_RETENTION_DAYS_DEFAULT, WARM_RETENTION_DAYS_DEFAULT};

use super::outln;

/// Crash-test hook: when set to `after-write`, `after-verify` or `mid-delete`, the process exits
/// at that step of the first file's migration, as a crash would leave it; `cold-after-write`,
/// `cold-after-verify` and `cold-mid-delete` do the same in the warm → cold compaction, and
/// `retention-after-record` after the first deletion record is written.
const FAULT_INJECT_ENV: &str = "SEALTRAIL_FAULT_INJECT";
/// Exit status of an injected crash, so tests can tell it from a real failure.
const FAULT_INJECT_EXIT: i32 = 86;

#[derive(Debug, Args)]
pub(crate) struct LifecycleArgs {
    #[command(subcommand)]
    command: LifecycleCommand,
}

#[derive(Debug, Subcommand)]
enum LifecycleCommand {
    /// Move due events hot → warm, compact due warm files into cold, apply retention, then exit.
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Data directory of the hot store.
    #[arg(long, env = "SEALTRAIL_DATA_DIR", default_value = "./sealtrail-data")]
    data_dir: PathBuf,
    /// PostgreSQL hot tier (`postgres://…`), as for `serve`; without it the SQLite store in the
    /// data directory. On PostgreSQL the run may go on while servers ingest, and whole monthly
    /// partitions whose rows are all archived are dropped.
    #[arg(long, env = "SEALTRAIL_DATABASE_URL")]
    database_url: Option<String>,
    /// Events whose timestamp is older than this many days move to the warm tier, as a `seq`
    /// prefix of each tenant's hot events: an old event behind a younger one (history imported
    /// after live events) stays hot until the younger one is due too, and the run says so.
    #[arg(long, env = "SEALTRAIL_HOT_RETENTION_DAYS", default_value_t = HOT_RETENTION_DAYS_DEFAULT)]
    hot_retention_days: u32,
    #[command(flatten)]
    warm: WarmArgs,
    /// Warm files whose newest event is older than this many days are compacted into the cold
    /// tier.
    #[arg(long, env = "SEALTRAIL_WARM_RETENTION_DAYS", default_value_t = WARM_RETENTION_DAYS_DEFAULT)]
    warm_retention_days: u32,
    #[command(flatten)]
    cold: ColdArgs,
    /// The key-encryption key file, as for `serve` (`SEALTRAIL_KEK` may hold the key itself):
    /// protected fields under an earlier data key of their tenant are re-encrypted under the
    /// current one as they move [default: <data-dir>/vault.kek; without one, none is]
    #[arg(long, env = "SEALTRAIL_KEK_FILE")]
    kek_file: Option<PathBuf>,
    /// Test-only: the current time (RFC 3339), also read from `SEALTRAIL_TEST_NOW` (the
    /// server's test clock, `sealtrail_server::TEST_NOW_ENV`), so a test's outcome does not
    /// depend on the calendar date it runs on; default: the system clock.
    #[arg(long, hide = true, env = sealtrail_server::TEST_NOW_ENV)]
    now: Option<String>,
}

/// Where the warm tier lives: `<data-dir>/warm` unless a directory or an S3 bucket is given.
/// S3 credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
#[derive(Debug, Clone, Args)]
pub(crate) struct WarmArgs {
    /// Warm tier directory (default: `<data-dir>/warm`).
    #[arg(long, env = "SEALTRAIL_WARM_DIR", conflicts_with = "s3_bucket")]
    warm_dir: Option<PathBuf>,
    /// S3-compatible bucket of the warm tier.
    #[arg(long, env = "SEALTRAIL_S3_BUCKET")]
    s3_bucket: Option<String>,
    /// Key prefix inside the bucket.
    #[arg(long, env = "SEALTRAIL_S3_PREFIX", default_value = "warm")]
    s3_prefix: String,
    /// Endpoint URL of a non-AWS S3 service (`http://` allowed for local ones).
    #[arg(long, env = "SEALTRAIL_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// Region of the bucket.
    #[arg(long, env = "SEALTRAIL_S3_REGION")]
    s3_region: Option<String>,
}

impl WarmArgs {
    pub(crate) fn location(&self, data_dir: &Path) -> Location {
        match &self.s3_bucket {
            Some(bucket) => Location::S3(S3Location {
                bucket: bucket.clone(),
                prefix: self.s3_prefix.clone(),
                endpoint: self.s3_endpoint.clone(),
                region: self.s3_region.clone(),
            }),
            None => Location::Local(
                self.warm_dir
                    .clone()
                    .unwrap_or_else(|| data_dir.join("warm")),
            ),
        }
    }

    /// The tiers `verify` reads: none when the warm directory does not exist (verification
    /// never creates anything).
    pub(crate) fn tiers_to_verify(&self, data_dir: &Path) -> anyhow::Result<Vec<Tier>> {
        let location = self.location(data_dir);
        if let Location::Local(dir) = &location {
            if !dir.exists() {
                return Ok(Vec::new());
            }
        }
        Ok(vec![Tier::open(&location).context("opening the warm tier")?])
    }
}

/// Where the cold tier lives: `<data-dir>/cold` by default; with a warm S3 bucket, the same
/// bucket under `--cold-s3-prefix`; or another bucket. Endpoint, region and credentials are the
/// warm tier's.
#[derive(Debug, Clone, Args)]
pub(crate) struct ColdArgs {
    /// Cold tier directory (default: `<data-dir>/cold`).
    #[arg(long, env = "SEALTRAIL_COLD_DIR", conflicts_with = "cold_s3_bucket")]
    cold_dir: Option<PathBuf>,
    /// S3-compatible bucket of the cold tier (default: the warm tier's bucket, if any).
    #[arg(long, env = "SEALTRAIL_COLD_S3_BUCKET")]
    cold_s3_bucket: Option<String>,
    /// Key prefix of the cold tier inside its bucket.
    #[arg(long, env = "SEALTRAIL_COLD_S3_PREFIX", default_value = "cold")]
    cold_s3_prefix: String,
}

impl ColdArgs {
    pub(crate) fn location(&self, warm: &WarmArgs, data_dir: &Path) -> Location {
        let bucket = match (&self.cold_dir, &self.cold_s3_bucket, &warm.s3_bucket) {
            (Some(dir), _, _) => return Location::Local(dir.clone()),
            (None, Some(bucket), _) | (None, None, Some(bucket)) => bucket,
            (None, None, None) => return Location::Local(data_dir.join("cold")),
        };
        Location::S3(S3Location {
            bucket: bucket.clone(),
            prefix: self.cold_s3_prefix.clone(),
            endpoint: warm.s3_endpoint.clone(),
            region: warm.s3_region.clone(),
        })
    }

    /// The cold tier `verify` reads: none when its directory does not exist.
    pub(crate) fn tier_to_verify(
        &self,
        warm: &WarmArgs,
        data_dir: &Path,
    ) -> anyhow::Result<Option<Tier>> {
        let location = self.location(warm, data_dir);
        if let Location::Local(dir) = &location {
            if !dir.exists() {
                return Ok(None);
            }
        }
        Ok(Some(
            Tier::open(&location).context("opening the cold tier")?,
        ))
    }
}

/// Ends the process when `SEALTRAIL_FAULT_INJECT` names `step`, as a crash there would.
fn fault_point(inject: Option<&str>, step: &str) {
    if inject == Some(step) {
        eprintln!("{FAULT_INJECT_ENV}: exiting at {step}");
        std::process::exit(FAULT_INJECT_EXIT);
    }
}

pub(crate) fn run(args: LifecycleArgs) -> anyhow::Result<ExitCode> {
    let LifecycleCommand::Run(args) = args.command;
    let now_ns = match &args.now {
        Some(text) => sealtrail_model::parse_timestamp(text)
            .with_context(|| format!("--now {text:?} is not an RFC 3339 timestamp"))?,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("the system clock is before 1970")?
            .as_nanos() as i64,
    };
    let policy = MigrationPolicy {
        hot_retention_days: args.hot_retention_days,
        now_ns,
    };
    let inject = std::env::var(FAULT_INJECT_ENV).ok();
    let mut on_step = move |step: MigrationStep| {
        let name = match step {
            MigrationStep::AfterWrite => "after-write",
            MigrationStep::AfterVerify => "after-verify",
            MigrationStep::MidDelete => "mid-delete",
        };
        if inject.as_deref() == Some(name) {
            eprintln!("{FAULT_INJECT_ENV}: exiting at {name}");
            std::process::exit(FAULT_INJECT_EXIT);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let reports = runtime.block_on(async {
        let hot =
            super::store::open_hot_store(&args.data_dir, args.database_url.as_deref()).await?;
        // One mover at a time: a server node's scheduled pass may be running.
        let Some(lease) = hot.lifecycle_lease().await? else {
            anyhow::bail!(
                "another node is running a lifecycle pass on this database; run again when it ends"
            );
        };
        let warm =
            Tier::open(&args.warm.location(&args.data_dir)).context("opening the warm tier")?;
        let cold = Tier::open(&args.cold.location(&args.warm, &args.data_dir))
            .context("opening the cold tier")?;
        // Heads written before frontiers were kept get theirs first: moving a partly filled
        // tile's leaves needs it, and its leaves may already be archived.
        sealtrail_query::QueryEngine::new(hot.clone(), Some(warm.clone()), Some(cold.clone()))?
            .restore_frontiers()
            .await
            .context("restoring Merkle frontiers")?;
        // Retention applies in every tier: events expired while still hot are archived now
        // and deleted by the retention step below, under signed records.
        let expiring = sealtrail_server::retention_cutoffs(&*hot, now_ns)
            .await
            .map_err(anyhow::Error::msg)?;
        let (kek_text, kek_file) =
            super::store::kek_source(&args.data_dir, args.kek_file.as_deref());
        let resealer =
            sealtrail_server::Resealer::open(hot.clone(), kek_text.as_deref(), &kek_file)
                .context("loading the key-encryption key, which re-encryption needs")?;
        let reports = sealtrail_archive::migrate_hot_to_warm_expiring(
            &*hot,
            &warm,
            Some(&cold),
            policy,
            &expiring,
            resealer.as_ref().map(|resealer| resealer as &dyn Reseal),
            &mut on_step,
        )
        .await?;
        anyhow::Ok((reports, lease, hot, resealer))
    })?;
    let (reports, lease, hot, resealer) = reports;
    for report in &reports {
        outln!(
            "tenant {}: {} events moved in {} files ({} bytes, {} fields re-encrypted); {} leftover hot rows deleted, {} orphan files removed",
            report.tenant_id,
            report.events_moved,
            report.files_written,
            report.bytes_written,
            report.fields_reencrypted,
            report.leftover_rows_deleted,
            report.orphans_removed
        )?;
        if let Some(held_back) = &report.held_back {
            outln!("tenant {}: {}", report.tenant_id, held_back.describe())?;
        }
    }
    super::retention::run_cold_and_retention(
        &runtime,
        &*hot,
        &args.data_dir,
        &args.warm.location(&args.data_dir),
        &args.cold.location(&args.warm, &args.data_dir),
        args.warm_retention_days,
        now_ns,
        resealer.as_ref().map(|resealer| resealer as &dyn Reseal),
        &|step| fault_point(std::env::var(FAULT_INJECT_ENV).ok().as_deref(), step),
    )?;
    runtime.block_on(lease.release())?;
    Ok(ExitCode::SUCCESS)
}
