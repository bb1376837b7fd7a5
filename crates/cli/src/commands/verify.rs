//! `sealtrail verify`: offline verification of a data directory: every tenant's hash chain
//! across the hot, warm and cold tiers, its stored Merkle tiles, its signed checkpoints, the
//! signed deletion records of any prefix removed by retention, and the checkpoints a witness
//! directory kept. With `--database-url`, the PostgreSQL hot tier takes the data directory's
//! place: the same checks (`sealtrail_archive::verify_tiers` over `sealtrail_hot::verify_log`),
//! each tenant read in one consistent snapshot, so a live store can be verified while it ingests.
//!
//! Tenants are enumerated from everything that knows them (the store's tables, the archive's
//! files and deletion records, the witness), so a tenant whose hot rows were removed is
//! reported, not skipped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::outln;
use serde::Deserialize;

const DATA_DIR_DEFAULT: &str = "./sealtrail-data";

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Data directory to check [default: ./sealtrail-data]
    #[arg(long, env = "SEALTRAIL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Check only this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Verify the PostgreSQL hot tier at this URL (`postgres://…`) instead of the data
    /// directory's SQLite store, with the same checks and tiers, read as the database role in
    /// the URL (it needs the privileges of the tables' owner, as `serve` has). Nothing is
    /// written.
    #[arg(long, env = "SEALTRAIL_DATABASE_URL")]
    database_url: Option<String>,
    /// Verifier key checkpoints must be signed with (`name+keyid+base64`). Default: derived from
    /// the server's signing key (`--signing-key`). An auditor passes the published key instead.
    #[arg(long)]
    key: Option<String>,
    /// The server's checkpoint signing key file, from which the verifier key is derived when
    /// `--key` is not given [default: <data-dir>/checkpoint-signing.key]
    #[arg(long, env = "SEALTRAIL_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
    /// Witness directory whose checkpoints are replayed against the log (the server's
    /// `--witness-dir`): a truncation that also removed the later checkpoints, or a history
    /// rewritten and re-signed, disagrees with them. Default: the configured witness, if any.
    #[arg(long, env = "SEALTRAIL_WITNESS_DIR")]
    witness: Option<PathBuf>,
    /// The server's TOML config file; `data_dir`, `database_url`, `signing_key` and
    /// `witness_dir` are read from it (other settings are ignored); flags and env win.
    #[arg(long, env = "SEALTRAIL_CONFIG")]
    config: Option<PathBuf>,
    /// The warm tier whose files continue each chain.
    #[command(flatten)]
    warm: super::lifecycle::WarmArgs,
    /// The cold tier, and the signed deletion records of each tenant's deleted prefix.
    #[command(flatten)]
    cold: super::lifecycle::ColdArgs,
}

/// The settings `verify` shares with the server's config file. Unlike `serve`, unknown fields
/// are accepted: they are the server's other settings.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    signing_key: Option<PathBuf>,
    witness_dir: Option<PathBuf>,
}

fn read_config(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

/// The verifier key: the one given, else the one of the signing key file.
fn checkpoint_key(
    key: Option<&str>,
    signing_key: &Path,
) -> anyhow::Result<sealtrail_ledger::NoteVerifier> {
    match key {
        Some(text) => Ok(sealtrail_ledger::NoteVerifier::parse(text.trim())?),
        None => Ok(sealtrail_server::load_signer(signing_key)
            .with_context(|| {
                format!(
                    "reading the signing key {} (or pass the verifier key with --key)",
                    signing_key.display()
                )
            })?
            .verifier()),
    }
}

pub(crate) fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => read_config(path)?,
        None => ConfigFile::default(),
    };
    let data_dir = args
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| DATA_DIR_DEFAULT.into());
    let database_url = args.database_url.or(file.database_url);
    let signing_key = args
        .signing_key
        .or(file.signing_key)
        .unwrap_or_else(|| data_dir.join(sealtrail_server::SIGNING_KEY_FILE));
    let witness = match args.witness.or(file.witness_dir) {
        Some(dir) => {
            let witness = sealtrail_hot::Witness::read(&dir)
                .with_context(|| format!("reading the witness directory {}", dir.display()))?;
            outln!(
                "witness {}: {} checkpoints of {} tenants",
                dir.display(),
                witness.checkpoint_count(),
                witness.tenants().count()
            )?;
            Some(witness)
        }
        None => None,
    };
    let key = checkpoint_key(args.key.as_deref(), &signing_key)?;
    let warm = args.warm.tiers_to_verify(&data_dir)?.pop();
    let cold = args.cold.tier_to_verify(&args.warm, &data_dir)?;
    let witness = witness.unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(async {
        let store: Box<dyn sealtrail_hot::LogSource> = match &database_url {
            Some(url) => Box::new(super::store::open_existing_postgres(url).await?),
            None => Box::new(sealtrail_hot_sqlite::SqliteStore::open_read_only(
                &data_dir,
            )?),
        };
        anyhow::Ok(
            sealtrail_archive::verify_tiers(
                &*store,
                args.tenant.as_deref(),
                &key,
                warm.as_ref(),
                cold.as_ref(),
                &witness,
            )
            .await?,
        )
    })?;
    // Archive damage first: it explains the chain fault that follows it.
    for fault in &report.faults {
        outln!("FAILED  tenant {}: {fault}", fault.tenant_id)?;
    }
    for (tenant_id, last_seq, records) in &report.deletions {
        outln!(
            "deleted tenant {tenant_id}: seq 1-{last_seq} removed by retention under {records} signed deletion records"
        )?;
    }
    let archive_faults = report.faults.len();
    let reports = report.tenants;
    let mut failed = 0;
    for report in &reports {
        match &report.verdict {
            Ok(head) => outln!(
                "ok      tenant {}: {} events, head seq {} hash {}",
                report.tenant_id,
                report.events_checked,
                head.seq,
                hex_string(&head.hash)
            )?,
            Err(fault) => {
                failed += 1;
                outln!("FAILED  tenant {}: {fault}", report.tenant_id)?;
            }
        }
    }
    if failed == 0 && archive_faults > 0 {
        // Cannot happen while the chain rules hold (a damaged file stops the chain short), but
        // damage must never pass silently.
        failed = 1;
    }
    if failed > 0 {
        outln!("{failed} of {} tenants failed verification", reports.len())?;
        Ok(ExitCode::from(1))
    } else {
        outln!("all {} tenants intact", reports.len())?;
        Ok(ExitCode::SUCCESS)
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
