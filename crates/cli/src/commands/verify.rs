//! `sealtrail verify`: offline verification of a data directory: every tenant's hash chain
//! across the hot, warm and cold tiers, its stored Merkle tiles, its signed checkpoints, and the
//! signed deletion records of any prefix removed by retention. With `--database-url`, the PostgreSQL hot
//! tier's chains instead, through the store trait (`sealtrail_hot::verify_store`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Data directory to check.
    #[arg(long, env = "SEALTRAIL_DATA_DIR", default_value = "./sealtrail-data")]
    data_dir: PathBuf,
    /// Check only this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Verify the PostgreSQL hot tier at this URL (`postgres://…`) instead of a data directory:
    /// every tenant's chain, read as the database role in the URL (it needs the privileges of
    /// the tables' owner, as `serve` has). Nothing is written.
    #[arg(long, env = "SEALTRAIL_DATABASE_URL")]
    database_url: Option<String>,
    /// Verifier key checkpoints must be signed with (`name+keyid+base64`). Default: derived from
    /// the data directory's signing key. An auditor passes the published key instead.
    #[arg(long)]
    key: Option<String>,
    /// The warm tier whose files continue each chain (SQLite only).
    #[command(flatten)]
    warm: super::lifecycle::WarmArgs,
    /// The cold tier, and the signed deletion records of each tenant's deleted prefix.
    #[command(flatten)]
    cold: super::lifecycle::ColdArgs,
}

/// The verifier key: the one given, else the one of the data directory's signing key.
pub(crate) fn checkpoint_key(
    key: Option<&str>,
    data_dir: &std::path::Path,
) -> anyhow::Result<sealtrail_ledger::NoteVerifier> {
    match key {
        Some(text) => Ok(sealtrail_ledger::NoteVerifier::parse(text.trim())?),
        None => Ok(sealtrail_server::load_signer(
            &data_dir.join(sealtrail_server::SIGNING_KEY_FILE),
        )?
        .verifier()),
    }
}

pub(crate) fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut archive_faults = 0;
    let reports = match &args.database_url {
        Some(url) => verify_postgres(url, args.tenant.as_deref())?,
        None => {
            let key = checkpoint_key(args.key.as_deref(), &args.data_dir)?;
            let warm = args.warm.tiers_to_verify(&args.data_dir)?.pop();
            let cold = args.cold.tier_to_verify(&args.warm, &args.data_dir)?;
            let report = sealtrail_archive::verify_sqlite_tiers(
                &args.data_dir,
                args.tenant.as_deref(),
                &key,
                warm.as_ref(),
                cold.as_ref(),
            )?;
            // Archive damage first: it explains the chain fault that follows it.
            for fault in &report.faults {
                println!("FAILED  tenant {}: {fault}", fault.tenant_id);
            }
            for (tenant_id, last_seq, records) in &report.deletions {
                println!(
                    "deleted tenant {tenant_id}: seq 1-{last_seq} removed by retention under {records} signed deletion records"
                );
            }
            archive_faults = report.faults.len();
            report.tenants
        }
    };
    let mut failed = 0;
    for report in &reports {
        match &report.verdict {
            Ok(head) => println!(
                "ok      tenant {}: {} events, head seq {} hash {}",
                report.tenant_id,
                report.events_checked,
                head.seq,
                hex_string(&head.hash)
            ),
            Err(fault) => {
                failed += 1;
                println!("FAILED  tenant {}: {fault}", report.tenant_id);
            }
        }
    }
    if failed == 0 && archive_faults > 0 {
        // Cannot happen while the chain rules hold (a damaged file stops the chain short), but
        // damage must never pass silently.
        failed = 1;
    }
    if failed > 0 {
        println!("{failed} of {} tenants failed verification", reports.len());
        Ok(ExitCode::from(1))
    } else {
        println!("all {} tenants intact", reports.len());
        Ok(ExitCode::SUCCESS)
    }
}

/// Chains of the PostgreSQL hot tier, through the same trait the server uses. Merkle tiles and
/// checkpoints are not re-checked here: `verify_store` checks chains only.
fn verify_postgres(
    url: &str,
    only_tenant: Option<&str>,
) -> anyhow::Result<Vec<sealtrail_hot::TenantReport>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let store = super::store::open_existing_postgres(url).await?;
        Ok(sealtrail_hot::verify_store(&store, only_tenant).await?)
    })
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
