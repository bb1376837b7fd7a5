//! `sealtrail export` runs an export job on a server (`POST /v1/exports`), shows its progress,
//! downloads the file and its bundle, and checks them when given the verifier key;
//! `sealtrail verify-bundle` checks an export offline (`verify`).

use std::fs::{self, File};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use sealtrail_ledger::{ExportHeader, NoteVerifier, EXPORT_BUNDLE_FORMAT};
use sealtrail_query::formats::{verify_export, ExportFormat};
use serde_json::{json, Map, Value};

use super::outln;

/// The bundle's file name in an export directory.
const BUNDLE_FILE: &str = "bundle.ndjson";
/// Pause between two looks at a running job.
const POLL_MILLIS: u64 = 250;
/// Width of the progress bar, in characters.
const BAR_WIDTH: usize = 30;

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The server's base URL.
    #[arg(long, env = "SEALTRAIL_URL", default_value = "http://127.0.0.1:7070")]
    server: String,
    /// A reader or admin key of the tenant (or the platform-admin token with --tenant).
    #[arg(long, env = "SEALTRAIL_API_KEY", hide_env_values = true)]
    api_key: String,
    /// The tenant, for the platform-admin token; a tenant key implies its own.
    #[arg(long)]
    tenant: Option<String>,
    /// ndjson, csv, parquet or ocsf.
    #[arg(long, default_value = "ndjson")]
    format: String,
    /// RFC 3339; events with timestamp >= from.
    #[arg(long)]
    from: Option<String>,
    /// RFC 3339; events with timestamp < to.
    #[arg(long)]
    to: Option<String>,
    /// An exact-match filter, `name=value` (actor_id, action, resource_type, resource_id,
    /// request_id, outcome); repeatable.
    #[arg(long = "filter", value_name = "NAME=VALUE")]
    filters: Vec<String>,
    /// Directory to write `events.<format>` and `bundle.ndjson` to (created; must not exist).
    #[arg(long)]
    out: PathBuf,
    /// The published verifier key: the download is checked with it before the command succeeds.
    #[arg(long)]
    verify_key: Option<String>,
    /// Open the tenant's encrypted fields in the file (a tenant admin key or the platform-admin
    /// token only); an erasure in the tenant later removes the server's copy.
    #[arg(long)]
    plaintext: bool,
}

pub(crate) fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    if args.out.exists() {
        bail!("{} already exists", args.out.display());
    }
    let format = ExportFormat::parse(&args.format).with_context(|| {
        format!(
            "--format must be one of ndjson, csv, parquet, ocsf, not {}",
            args.format
        )
    })?;
    let key = args
        .verify_key
        .as_deref()
        .map(|key| NoteVerifier::parse(key.trim()).context("--verify-key is not a verifier key"))
        .transpose()?;
    let mut filters = Map::new();
    for filter in &args.filters {
        let (name, value) = filter
            .split_once('=')
            .with_context(|| format!("--filter {filter}: expected NAME=VALUE"))?;
        filters.insert(name.to_owned(), value.into());
    }
    let base = args.server.trim_end_matches('/').to_owned();
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .build();
    let auth = format!("Bearer {}", args.api_key);
    let tenant_query = args
        .tenant
        .as_ref()
        .map(|tenant| format!("?tenant_id={tenant}"))
        .unwrap_or_default();
    let mut body =
        json!({"format": format.as_str(), "filters": filters, "plaintext": args.plaintext});
    for (name, value) in [
        ("from", &args.from),
        ("to", &args.to),
        ("tenant_id", &args.tenant),
    ] {
        if let Some(value) = value {
            body[name] = value.as_str().into();
        }
    }
    let created: Value = answer(
        agent
            .post(&format!("{base}/v1/exports"))
            .set("Authorization", &auth)
            .send_json(body),
    )?;
    let export_id = created["export_id"]
        .as_str()
        .context("the server's answer has no export_id")?
        .to_owned();
    eprintln!("export {export_id} queued");

    let job_url = format!("{base}/v1/exports/{export_id}{tenant_query}");
    let mut bar = Progress::new();
    let job = loop {
        let job: Value = answer(agent.get(&job_url).set("Authorization", &auth).call())?;
        bar.show(&job);
        match job["state"].as_str() {
            Some("done") => break job,
            Some("queued" | "running") => std::thread::sleep(Duration::from_millis(POLL_MILLIS)),
            other => {
                bar.end();
                bail!(
                    "export {export_id} ended {}: {}",
                    other.unwrap_or("in an unknown state"),
                    job["error"].as_str().unwrap_or("no reason given")
                );
            }
        }
    };
    bar.end();

    fs::create_dir_all(&args.out)?;
    let data_path = args.out.join(format!("events.{}", format.extension()));
    let separator = if tenant_query.is_empty() { '?' } else { '&' };
    for (part, path) in [
        ("data", &data_path),
        ("bundle", &args.out.join(BUNDLE_FILE)),
    ] {
        let url =
            format!("{base}/v1/exports/{export_id}/download{tenant_query}{separator}part={part}");
        let response = agent
            .get(&url)
            .set("Authorization", &auth)
            .call()
            .map_err(describe)?;
        let mut file = File::create(path)?;
        std::io::copy(&mut response.into_reader(), &mut file)
            .with_context(|| format!("downloading {part}"))?;
        file.sync_all()?;
    }
    outln!(
        "export {export_id}: {} events, {} bytes -> {}",
        job["events_written"],
        job["bytes"],
        args.out.display()
    )?;
    match key {
        Some(key) => verify(&args.out.join(BUNDLE_FILE), Some(&data_path), &key),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// A JSON answer, or the server's problem as the error.
fn answer(result: Result<ureq::Response, ureq::Error>) -> anyhow::Result<Value> {
    let response = result.map_err(describe)?;
    Ok(response.into_json()?)
}

fn describe(error: ureq::Error) -> anyhow::Error {
    match error {
        ureq::Error::Status(status, response) => {
            let body = response.into_string().unwrap_or_default();
            anyhow::anyhow!("the server answered {status}: {body}")
        }
        other => anyhow::anyhow!("{other}"),
    }
}

/// A one-line progress bar on stderr when it is a terminal, a line per second otherwise.
struct Progress {
    terminal: bool,
    last_line: Option<Instant>,
}

impl Progress {
    fn new() -> Self {
        Progress {
            terminal: std::io::stderr().is_terminal(),
            last_line: None,
        }
    }

    fn show(&mut self, job: &Value) {
        let read = job["events_read"].as_u64().unwrap_or(0);
        let expected = job["events_expected"].as_u64().unwrap_or(0);
        let state = job["state"].as_str().unwrap_or("?");
        let filled = (read * BAR_WIDTH as u64)
            .checked_div(expected)
            .map_or(0, |filled| filled.min(BAR_WIDTH as u64) as usize);
        let line = format!(
            "[{}{}] {read}/{expected} events read, {} written ({state})",
            "#".repeat(filled),
            " ".repeat(BAR_WIDTH - filled),
            job["events_written"].as_u64().unwrap_or(0),
        );
        if self.terminal {
            eprint!("\r{line}");
            let _ = std::io::stderr().flush();
        } else if self
            .last_line
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
            || state == "done"
        {
            eprintln!("{line}");
            self.last_line = Some(Instant::now());
        }
    }

    fn end(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

/// The export bundle at `path`, if it is one: an export directory, or an export's bundle file.
pub(crate) fn export_bundle_path(path: &Path) -> Option<PathBuf> {
    let candidate = if path.is_dir() {
        path.join(BUNDLE_FILE)
    } else {
        path.to_owned()
    };
    let file = File::open(&candidate).ok()?;
    let mut first = String::new();
    BufReader::new(file).read_line(&mut first).ok()?;
    let header: Value = serde_json::from_str(&first).ok()?;
    (header["format"] == EXPORT_BUNDLE_FORMAT).then_some(candidate)
}

/// Checks an exported file against its bundle, offline.
pub(crate) fn verify(
    bundle: &Path,
    file: Option<&Path>,
    key: &NoteVerifier,
) -> anyhow::Result<ExitCode> {
    let file = match file {
        Some(file) => file.to_owned(),
        None => {
            let mut first = String::new();
            BufReader::new(File::open(bundle)?).read_line(&mut first)?;
            let header: ExportHeader =
                serde_json::from_str(&first).context("the bundle's header")?;
            let format = ExportFormat::parse(&header.file_format)
                .with_context(|| format!("unknown file_format {}", header.file_format))?;
            bundle
                .parent()
                .unwrap_or(Path::new("."))
                .join(format!("events.{}", format.extension()))
        }
    };
    match verify_export(bundle, &file, key) {
        Ok(report) => {
            outln!(
                "ok      tenant {}: {} events in {} (and {} non-matching of seq {}..={}), \
                 none altered or missing, in a signed tree of size {}",
                report.tenant_id,
                report.events,
                file.display(),
                report.witnesses,
                report.first_seq,
                report.last_seq,
                report.tree_size
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(fault) => {
            outln!("FAILED  {}: {fault}", file.display())?;
            Ok(ExitCode::from(1))
        }
    }
}
