//! `sealtrail verify`: offline chain verification of a data directory.

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
}

pub(crate) fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let reports = sealtrail_hot::verify_sqlite(&args.data_dir, args.tenant.as_deref())?;
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
