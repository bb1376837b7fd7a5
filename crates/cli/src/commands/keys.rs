//! `sealtrail keys show-verifier`: prints the verifier key auditors check checkpoints with.
//! `sealtrail keys revoke`: revokes an API key in the hot store (the SQLite data directory's
//! lock means its server is stopped; PostgreSQL nodes keep running and refuse the key from their
//! next request). A running server is asked with `DELETE /v1/keys/{key_id}` instead.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Subcommand};

use super::outln;
use super::store::open_hot_store;

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
    /// Revoke an API key by its id (the part between `stk_` and the next `_`): every request
    /// with it is refused from then on. Revoking a revoked key again succeeds.
    Revoke {
        /// The key's id.
        key_id: String,
        /// Data directory of the hot store (SQLite; the server must be stopped).
        #[arg(long, env = "SEALTRAIL_DATA_DIR", default_value = "./sealtrail-data")]
        data_dir: PathBuf,
        /// PostgreSQL hot tier instead of the data directory's SQLite store.
        #[arg(long, env = "SEALTRAIL_DATABASE_URL")]
        database_url: Option<String>,
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
        KeysCommand::Revoke {
            key_id,
            data_dir,
            database_url,
        } => {
            if database_url.is_none() && !data_dir.is_dir() {
                anyhow::bail!("no data directory {}", data_dir.display());
            }
            let now_ns = i64::try_from(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .context("the clock is before 1970")?
                    .as_nanos(),
            )
            .context("the clock is past 2262")?;
            let revoked = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(async {
                    let store = open_hot_store(&data_dir, database_url.as_deref()).await?;
                    anyhow::Ok(store.revoke_api_key(&key_id, now_ns).await?)
                })?;
            if revoked {
                outln!("revoked API key {key_id}")?;
                Ok(ExitCode::SUCCESS)
            } else {
                anyhow::bail!("no API key {key_id:?}")
            }
        }
    }
}
