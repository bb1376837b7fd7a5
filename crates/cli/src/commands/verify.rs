//! `sealtrail verify`: offline verification of a data directory: every tenant's hash chain, its
//! stored Merkle tiles, and its signed checkpoints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Data directory to check.
    #[arg(long, env = "SEALTRAIL_DATA_DIR", default_value = "./sealtrail-data")]
    data_dir: PathBuf,
    /// Check only this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Verifier key checkpoints must be signed with (`name+keyid+base64`). Default: derived from
    /// the data directory's signing key. An auditor passes the published key instead.
    #[arg(long)]
    key: Option<String>,
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
    let key = checkpoint_key(args.key.as_deref(), &args.data_dir)?;
    let reports = sealtrail_hot::verify_sqlite(&args.data_dir, args.tenant.as_deref(), &key)?;
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
    if failed > 0 {
        println!("{failed} of {} tenants failed verification", reports.len());
        Ok(ExitCode::from(1))
    } else {
        println!("all {} tenants intact", reports.len());
        Ok(ExitCode::SUCCESS)
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
