//! `sealtrail import FILE.ndjson`: bulk-loads history into the hot store, one event (format v1)
//! per line, chaining each tenant's events in file order as it goes.
//!
//! The whole file is validated first, so a file with a bad line imports nothing and the error
//! names the line, field and reason. Then events are appended in large group commits, parsing
//! the next group while the store commits the previous one. Every line must carry its
//! `event_id`: an interrupted import is finished by running it again, and events already stored
//! are recognized by id, never stored twice. Runs with the server stopped (it takes the data
//! directory's lock), or against PostgreSQL with `--database-url`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Args;
use sealtrail_hot::{AppendOutcome, AppendRequest};
use sealtrail_model::limits::{
    GROUP_COMMIT_EVENTS_MAX, IMPORT_LINE_BYTES_MAX, IMPORT_REQUEST_EVENTS,
};
use sealtrail_model::{check_events_json, validate_imported_event, PendingEvent};
use tokio::sync::mpsc;

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// NDJSON file of events (format v1, one per line, each with `event_id`); `-` for stdin is
    /// not supported because the file is read twice (validated, then imported).
    file: PathBuf,
    /// Data directory of the hot store.
    #[arg(long, env = "SEALTRAIL_DATA_DIR", default_value = "./sealtrail-data")]
    data_dir: PathBuf,
    /// PostgreSQL hot tier (`postgres://…`) instead of the data directory's SQLite store.
    #[arg(long, env = "SEALTRAIL_DATABASE_URL")]
    database_url: Option<String>,
    /// The key-encryption key file, as for `serve` (`SEALTRAIL_KEK` may hold the key itself):
    /// the events of a tenant with encrypted fields are sealed with it before they are written
    /// [default: <data-dir>/vault.kek]
    #[arg(long, env = "SEALTRAIL_KEK_FILE")]
    kek_file: Option<PathBuf>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
        })
}

/// Calls `each` with every non-empty line and its 1-based number.
fn for_each_line(
    file: &PathBuf,
    mut each: impl FnMut(usize, &str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let reader = BufReader::with_capacity(
        1 << 20,
        File::open(file).with_context(|| format!("opening {}", file.display()))?,
    );
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("{}: line {number}", file.display()))?;
        if line.len() > IMPORT_LINE_BYTES_MAX {
            bail!("line {number}: longer than {IMPORT_LINE_BYTES_MAX} bytes");
        }
        if line.trim().is_empty() {
            continue;
        }
        each(number, &line)?;
    }
    Ok(())
}

/// Parses and validates one line.
fn parse(number: usize, line: &str, now_ns: i64) -> anyhow::Result<PendingEvent> {
    let mut value: serde_json::Value = serde_json::from_str(line)
        .map_err(|error| anyhow::anyhow!("line {number}: not JSON: {error}"))?;
    // What parsing changed silently (a repeated key, an integer beyond 64 bits) is refused, as
    // on the ingest path.
    let mut errors: Vec<_> = check_events_json(line.as_bytes(), &mut value)
        .into_iter()
        .map(|(_, error)| error)
        .collect();
    let validated = validate_imported_event(value, now_ns);
    if let Err(validation_errors) = &validated {
        errors.extend(validation_errors.iter().cloned());
    }
    if !errors.is_empty() {
        let reasons: Vec<String> = errors
            .iter()
            .map(|error| format!("{}: {}", error.field, error.reason))
            .collect();
        bail!("line {number}: {}", reasons.join("; "));
    }
    let submitted = validated.expect("no errors means the event validated");
    Ok(submitted.complete(now_ns, || unreachable!("imports require event_id")))
}

pub(crate) fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let checked_at = now_ns();
    let mut total = 0u64;
    let mut tenants = std::collections::BTreeSet::new();
    for_each_line(&args.file, |number, line| {
        let pending = parse(number, line, checked_at)?;
        if !tenants.contains(&pending.event.tenant_id) {
            tenants.insert(pending.event.tenant_id);
        }
        total += 1;
        Ok(())
    })?;
    eprintln!("{}: {total} valid events; importing", args.file.display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let store = runtime.block_on(super::store::open_hot_store(
        &args.data_dir,
        args.database_url.as_deref(),
    ))?;
    // A tenant with encrypted fields (docs/PRIVACY.md) gets its events sealed before they are
    // written, as ingest seals them, with the deployment's key-encryption key; without one the
    // file is refused before anything is written.
    let (kek_text, kek_file) = super::store::kek_source(&args.data_dir, args.kek_file.as_deref());
    let sealer = sealtrail_server::Sealer::open(store.clone(), kek_text.as_deref(), &kek_file)
        .context("loading the key-encryption key, which sealing needs")?;
    if sealer.is_none() {
        for tenant_id in &tenants {
            if runtime.block_on(sealtrail_server::tenant_encrypts(&*store, tenant_id))? {
                bail!(
                    "tenant {tenant_id} has fields encrypted (GET /v1/tenants/{tenant_id}), and \
                     no key-encryption key is given to seal them ({} does not exist; pass \
                     --kek-file or SEALTRAIL_KEK as for serve): nothing was imported",
                    kek_file.display()
                );
            }
        }
    }
    // The store commits one group while this thread parses the next.
    let (groups, mut receiver) = mpsc::channel::<(usize, Vec<AppendRequest>)>(2);
    let committer = runtime.spawn(async move {
        let mut counts = ImportCounts::default();
        let mut newest_seq: HashMap<String, u64> = store
            .chain_heads()
            .await?
            .into_iter()
            .map(|(tenant_id, head)| (tenant_id, head.seq))
            .collect();
        while let Some((first_line, mut group)) = receiver.recv().await {
            if let Some(sealer) = &sealer {
                for request in &mut group {
                    sealer.seal(request).await.map_err(|error| {
                        anyhow::anyhow!("sealing the group starting at line {first_line}: {error}")
                    })?;
                }
            }
            let outcomes = store.append(Arc::new(group)).await?;
            for outcome in outcomes {
                match outcome {
                    AppendOutcome::Conflict { event_id, .. } => bail!(
                        "event_id {event_id} (in the group starting at line {first_line}) is \
                         already stored with different content; nothing of its group was \
                         imported"
                    ),
                    AppendOutcome::Committed(receipts) => {
                        for receipt in receipts {
                            counts.count(&mut newest_seq, &receipt.tenant_id, receipt.seq);
                        }
                    }
                }
            }
        }
        anyhow::Ok(counts)
    });
    let mut group: Vec<AppendRequest> = Vec::new();
    let mut request: AppendRequest = Vec::with_capacity(IMPORT_REQUEST_EVENTS);
    let mut group_events = 0;
    let mut group_first_line = 1;
    let mut received_at = now_ns();
    let sent = for_each_line(&args.file, |number, line| {
        if group_events == 0 {
            group_first_line = number;
            received_at = now_ns();
        }
        request.push(parse(number, line, received_at)?);
        group_events += 1;
        if request.len() == IMPORT_REQUEST_EVENTS {
            group.push(std::mem::replace(
                &mut request,
                Vec::with_capacity(IMPORT_REQUEST_EVENTS),
            ));
        }
        if group_events >= GROUP_COMMIT_EVENTS_MAX {
            if !request.is_empty() {
                group.push(std::mem::take(&mut request));
            }
            groups
                .blocking_send((group_first_line, std::mem::take(&mut group)))
                .map_err(|_| anyhow::anyhow!("the store stopped accepting events"))?;
            group_events = 0;
        }
        Ok(())
    });
    if sent.is_ok() {
        if !request.is_empty() {
            group.push(request);
        }
        if !group.is_empty() {
            // A closed channel means the committer failed; its error is reported below.
            let _ = groups.blocking_send((group_first_line, group));
        }
    }
    drop(groups);
    let counts = runtime
        .block_on(committer)
        .context("the import's commit task")??;
    sent?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "imported {} new events; {} already present (same event_id and content, kept as \
         stored); {:.1} s ({:.0} events/s, validation included)",
        counts.imported,
        counts.already_present,
        seconds,
        (counts.imported + counts.already_present) as f64 / seconds.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

/// What an import did with the events of its file.
#[derive(Debug, Default, PartialEq, Eq)]
struct ImportCounts {
    /// Events this run stored.
    imported: u64,
    /// Events whose `event_id` was already stored with the same content (an earlier run, or an
    /// earlier line of the same file): answered with the stored receipt, stored nothing.
    already_present: u64,
}

impl ImportCounts {
    /// Counts one receipt. The store gives each tenant's new events increasing `seq`s above
    /// every stored one, and an event already stored keeps its earlier `seq`, so a receipt is
    /// new exactly when its `seq` is above the newest seen so far (the chain head at the start,
    /// then this run's receipts).
    fn count(&mut self, newest_seq: &mut HashMap<String, u64>, tenant_id: &str, seq: u64) {
        let newest = newest_seq.get(tenant_id).copied().unwrap_or(0);
        if seq > newest {
            self.imported += 1;
            newest_seq.insert(tenant_id.to_owned(), seq);
        } else {
            self.already_present += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_at_or_below_the_newest_seq_are_already_present() {
        let mut newest_seq = HashMap::from([("t1".to_owned(), 2)]);
        let mut counts = ImportCounts::default();
        // t1 had seq 1..=2; this run stores 3 and 4, meets seq 1 again, and repeats its own 3.
        for (tenant_id, seq) in [
            ("t1", 1),
            ("t1", 3),
            ("t2", 1),
            ("t1", 4),
            ("t1", 3),
            ("t2", 1),
        ] {
            counts.count(&mut newest_seq, tenant_id, seq);
        }
        assert_eq!(
            counts,
            ImportCounts {
                imported: 3,
                already_present: 3
            }
        );
    }
}
