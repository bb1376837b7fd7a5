//! Command-line entry: parses flags and dispatches to a subcommand.

mod bundle;
mod export;
mod import;
mod keys;
mod lifecycle;
mod retention;
mod serve;
mod store;
mod verify;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};

/// Sealtrail: a tamper-evident audit log service. `serve` runs the HTTP API; `import` bulk-loads
/// history; `lifecycle run` moves events hot → warm → cold and applies retention; `verify`,
/// `bundle` and `verify-bundle` check the log offline; `keys` and `retention` manage the signing
/// key and tenants' retention policies.
#[derive(Debug, Parser)]
#[command(name = "sealtrail", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service.
    #[command(after_help = serve::ENVIRONMENT_HELP)]
    // Boxed: the largest of the arguments by far, and parsed once.
    Serve(Box<serve::ServeArgs>),
    /// Re-check every tenant's chain, Merkle tiles and checkpoints offline (files, or a database).
    Verify(verify::VerifyArgs),
    /// Export a proof bundle of one tenant's events for offline verification.
    Bundle(bundle::BundleArgs),
    /// Run an export job on a server, show its progress, and download the file and its bundle.
    Export(export::ExportArgs),
    /// Verify a proof bundle, or an exported file and its bundle, with only the server's
    /// verifier key.
    VerifyBundle(bundle::VerifyBundleArgs),
    /// Signing keys.
    Keys(keys::KeysArgs),
    /// Run the lifecycle once: hot → warm, warm → cold compaction, then retention deletions.
    Lifecycle(lifecycle::LifecycleArgs),
    /// A tenant's retention policy and legal hold (server stopped).
    Retention(retention::RetentionArgs),
    /// Bulk-load history from an NDJSON file, chaining each tenant's events as it goes.
    Import(import::ImportArgs),
}

pub(crate) fn startup() -> ExitCode {
    let cli = Cli::parse();
    let log_format = match &cli.command {
        Command::Serve(args) => match serve::log_format(args) {
            Ok(format) => format,
            Err(error) => {
                eprintln!("error: {error:#}");
                return ExitCode::FAILURE;
            }
        },
        _ => serve::LogFormat::Text,
    };
    init_logging(log_format);
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Verify(args) => verify::run(args),
        Command::Bundle(args) => bundle::run_bundle(args),
        Command::VerifyBundle(args) => bundle::run_verify_bundle(args),
        Command::Export(args) => export::run(args),
        Command::Keys(args) => keys::run(args),
        Command::Lifecycle(args) => lifecycle::run(args),
        Command::Retention(args) => retention::run(args),
        Command::Import(args) => import::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            match log_format {
                serve::LogFormat::Text => eprintln!("error: {error:#}"),
                // Every stderr line stays one JSON object for the log collector.
                serve::LogFormat::Json => tracing::error!(error = %format!("{error:#}"), "exiting"),
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, filtered by `SEALTRAIL_LOG` (default `info`). Nothing logs request
/// headers or tokens; the server's config is logged through its redacting `Debug`.
fn init_logging(format: serve::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEALTRAIL_LOG")
        .unwrap_or_else(|_| "info".into());
    match format {
        serve::LogFormat::Text => {
            // Colour only for a person at a terminal: a log file, a pipe or a journal gets plain
            // text, and NO_COLOR (https://no-color.org) turns it off everywhere.
            let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(ansi)
                .with_writer(std::io::stderr)
                .init();
        }
        serve::LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .init(),
    }
}

/// Set once stdout's reader has gone away (`sealtrail lifecycle run | head`).
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes one line of a command's output to stdout. A reader that stopped reading (a broken
/// pipe) is not an error of the command: the line and every later one are dropped and the
/// command finishes its work, because a lifecycle run or an import MUST NOT stop half-way, or
/// panic, because `head` had seen enough. Any other write error is returned.
pub(crate) fn write_stdout_line(line: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        result => result,
    }
}

/// `println!` for command output, through [`write_stdout_line`]: `outln!(...)?` in a command.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::commands::write_stdout_line(format_args!($($arg)*))
    };
}
pub(crate) use outln;
