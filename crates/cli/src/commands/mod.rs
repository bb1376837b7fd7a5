//! Command-line entry: parses flags and dispatches to a subcommand.

mod bundle;
mod import;
mod keys;
mod lifecycle;
mod retention;
mod serve;
mod store;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sealtrail: a tamper-evident audit trail service.
#[derive(Debug, Parser)]
#[command(name = "sealtrail", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve(serve::ServeArgs),
    /// Re-check every tenant's chain, Merkle tiles and checkpoints offline (files, or a database).
    Verify(verify::VerifyArgs),
    /// Export a proof bundle of one tenant's events for offline verification.
    Bundle(bundle::BundleArgs),
    /// Verify a proof bundle with only the server's verifier key.
    VerifyBundle(bundle::VerifyBundleArgs),
    /// Signing keys.
    Keys(keys::KeysArgs),
    /// Move events between tiers (hot to warm).
    Lifecycle(lifecycle::LifecycleArgs),
    /// A tenant's retention policy and legal hold (server stopped).
    Retention(retention::RetentionArgs),
    /// Bulk-load history from an NDJSON file, chaining each tenant's events as it goes.
    Import(import::ImportArgs),
}

pub(crate) fn startup() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SEALTRAIL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Bundle(args) => bundle::run_bundle(args),
        Command::VerifyBundle(args) => bundle::run_verify_bundle(args),
        Command::Keys(args) => keys::run(args),
        Command::Lifecycle(args) => lifecycle::run(args),
        Command::Retention(args) => retention::run(args),
        Command::Import(args) => import::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
