//! `sealtrail bundle` exports a proof bundle; `sealtrail verify-bundle` checks one offline, with
//! no server and no database: only the bundle and the published verifier key.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use sealtrail_hot::HotStore;
use sealtrail_hot_sqlite::SqliteStore;
use sealtrail_ledger::{verify_bundle, Bundle, NoteVerifier};
use sealtrail_model::nearest_doubles;
use serde_json::Value;

use super::outln;

#[derive(Debug, Args)]
pub(crate) struct BundleArgs {
    /// Data directory of the (embedded) hot store.
    #[arg(long, env = "SEALTRAIL_DATA_DIR", default_value = "./sealtrail-data")]
    data_dir: PathBuf,
    /// Tenant whose events (and the checkpoints covering them) the bundle holds.
    #[arg(long)]
    tenant: String,
    /// PostgreSQL hot tier to read instead of the data directory's SQLite store.
    #[arg(long, env = "SEALTRAIL_DATABASE_URL")]
    database_url: Option<String>,
    #[command(flatten)]
    warm: super::lifecycle::WarmArgs,
    #[command(flatten)]
    cold: super::lifecycle::ColdArgs,
    /// RFC 3339; events with timestamp >= from.
    #[arg(long)]
    from: Option<String>,
    /// RFC 3339; events with timestamp < to.
    #[arg(long)]
    to: Option<String>,
    /// Directory to write (created; must not exist), or a file ending in .json for one document.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyBundleArgs {
    /// A bundle directory or a single bundle .json file; or an export: its directory (as
    /// `sealtrail export` writes it) or its `bundle.ndjson`.
    bundle: PathBuf,
    /// The server's verifier key (`sealtrail keys show-verifier`, or GET /v1/verifier-key).
    #[arg(long)]
    key: String,
    /// The exported file an export bundle vouches for (default: `events.<format>` beside the
    /// bundle).
    #[arg(long)]
    file: Option<PathBuf>,
}

fn instant(name: &str, text: Option<&str>) -> anyhow::Result<Option<i64>> {
    text.map(|text| {
        sealtrail_model::parse_timestamp(text)
            .with_context(|| format!("--{name} must be an RFC 3339 date-time"))
    })
    .transpose()
}

pub(crate) fn run_bundle(args: BundleArgs) -> anyhow::Result<ExitCode> {
    let from_ns = instant("from", args.from.as_deref())?;
    let to_ns = instant("to", args.to.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Events and leaves are read from whichever tier holds them, so a range that reaches into
    // the warm or cold tier bundles like a hot one.
    let bundle = runtime.block_on(async {
        let hot: Arc<dyn HotStore> = match args.database_url.as_deref() {
            Some(url) => Arc::new(super::store::open_existing_postgres(url).await?),
            None => Arc::new(
                SqliteStore::open_read_only(&args.data_dir)
                    .with_context(|| format!("opening {}", args.data_dir.display()))?,
            ),
        };
        let warm = args
            .warm
            .tiers_to_verify(&args.data_dir)?
            .into_iter()
            .next();
        let cold = args.cold.tier_to_verify(&args.warm, &args.data_dir)?;
        let engine = sealtrail_query::QueryEngine::new(hot, warm, cold)?;
        anyhow::Ok(engine.bundle(&args.tenant, from_ns, to_ns).await?)
    })?;
    if args.out.extension().is_some_and(|ext| ext == "json") {
        fs::write(&args.out, serde_json::to_vec_pretty(&bundle)?)?;
    } else {
        write_dir(&args.out, &bundle)?;
    }
    outln!(
        "bundle of tenant {}: seq {}..={} ({} events), {} checkpoint(s) -> {}",
        bundle.tenant_id,
        bundle.first_seq,
        bundle.last_seq,
        bundle.events.len(),
        bundle.checkpoints.len(),
        args.out.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The directory form: `bundle.json` (everything but events and checkpoints), `events.ndjson`,
/// `checkpoints/<tree_size>.checkpoint`.
fn write_dir(dir: &Path, bundle: &Bundle) -> anyhow::Result<()> {
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    fs::create_dir_all(dir.join("checkpoints"))?;
    let mut manifest = serde_json::to_value(bundle)?;
    let object = manifest
        .as_object_mut()
        .expect("a bundle serializes to an object");
    object.remove("events");
    object.remove("checkpoints");
    fs::write(
        dir.join("bundle.json"),
        serde_json::to_vec_pretty(&manifest)?,
    )?;
    let mut events = String::new();
    for event in &bundle.events {
        events.push_str(&serde_json::to_string(event)?);
        events.push('\n');
    }
    fs::write(dir.join("events.ndjson"), events)?;
    for (index, note) in bundle.checkpoints.iter().enumerate() {
        fs::write(
            dir.join("checkpoints")
                .join(format!("{index:04}.checkpoint")),
            note,
        )?;
    }
    Ok(())
}

/// Reads a bundle file or directory. Numbers are read as the nearest double
/// ([`nearest_doubles`]): the events' `changes` and `metadata` are re-serialised to recompute
/// their hashes, which a double off by one unit in the last place would change.
fn read_bundle(path: &Path) -> anyhow::Result<Bundle> {
    if path.is_file() {
        let text = fs::read(path)?;
        let mut value: Value =
            serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?;
        nearest_doubles(&text, &mut value);
        return serde_json::from_value(value)
            .with_context(|| format!("parsing {}", path.display()));
    }
    let mut manifest: Value = serde_json::from_slice(
        &fs::read(path.join("bundle.json")).context("reading bundle.json")?,
    )?;
    let events: Vec<Value> = fs::read_to_string(path.join("events.ndjson"))
        .context("reading events.ndjson")?
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut event: Value = serde_json::from_str(line)?;
            nearest_doubles(line.as_bytes(), &mut event);
            Ok::<_, serde_json::Error>(event)
        })
        .collect::<Result<_, _>>()
        .context("parsing events.ndjson")?;
    let mut notes: Vec<(PathBuf, String)> = Vec::new();
    for entry in fs::read_dir(path.join("checkpoints")).context("reading checkpoints/")? {
        let file = entry?.path();
        notes.push((file.clone(), fs::read_to_string(&file)?));
    }
    notes.sort();
    let object = manifest
        .as_object_mut()
        .context("bundle.json must be an object")?;
    object.insert("events".into(), Value::Array(events));
    object.insert(
        "checkpoints".into(),
        Value::Array(
            notes
                .into_iter()
                .map(|(_, note)| Value::String(note))
                .collect(),
        ),
    );
    serde_json::from_value(manifest).context("bundle.json does not have the bundle's fields")
}

pub(crate) fn run_verify_bundle(args: VerifyBundleArgs) -> anyhow::Result<ExitCode> {
    let key = NoteVerifier::parse(args.key.trim()).context("--key is not a verifier key")?;
    if let Some(export_bundle) = super::export::export_bundle_path(&args.bundle) {
        return super::export::verify(&export_bundle, args.file.as_deref(), &key);
    }
    let bundle = read_bundle(&args.bundle)?;
    match verify_bundle(&bundle, &key) {
        Ok(report) => {
            outln!(
                "ok      tenant {}: {} events, seq {}..={}, included in signed tree(s) of size {:?}",
                report.tenant_id, report.events, report.first_seq, report.last_seq, report.checkpoints
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(fault) => {
            outln!("FAILED  tenant {}: {fault}", bundle.tenant_id)?;
            Ok(ExitCode::from(1))
        }
    }
}
