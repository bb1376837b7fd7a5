//! `sealtrail keys show-verifier`: prints the verifier key auditors check checkpoints with.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::outln;

#[derive(Debug, Args)]
pub(crate) struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print the checkpoint verifier key (`name+keyid+base64`), safe to publish.
    ShowVerifier {
        /// Data directory holding checkpoint-signing.key.
        #[arg(long, env = "SEALTRAIL_DATA_DIR", default_value = "./sealtrail-data")]
        data_dir: PathBuf,
        /// Signing key file, if not in the data directory.
        #[arg(long, env = "SEALTRAIL_SIGNING_KEY")]
        signing_key: Option<PathBuf>,
    },
}

pub(crate) fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        KeysCommand::ShowVerifier {
            data_dir,
            signing_key,
        } => {
            let path =
                signing_key.unwrap_or_else(|| data_dir.join(sealtrail_server::SIGNING_KEY_FILE));
            let signer = sealtrail_server::load_signer(&path).map_err(|error| {
                anyhow::anyhow!("{error} (the server creates the key on its first start)")
            })?;
            outln!("{}", signer.verifier().verifier_key())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
