//! `sealtrail retention set|show`: a tenant's retention policy and legal hold, stored in the
//! data directory's hot store (it takes the directory's lock, so the server must be stopped; a
//! running server is managed through `PUT /v1/tenants/{tenant_id}/retention`). Also the warm →
//! cold and retention steps of `sealtrail lifecycle run`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use sealtrail_archive::{CompactionPolicy, CompactionStep, Location, RetentionStep, Tier};
use sealtrail_hot::HotStore;
use sealtrail_hot_sqlite::SqliteStore;
use sealtrail_model::{check_tenant_id, RetentionPolicy};

use super::outln;
use sealtrail_hot::SettingsStore;

#[derive(Debug, Args)]
pub(crate) struct RetentionArgs {
    #[command(subcommand)]
    command: RetentionCommand,
}

#[derive(Debug, Subcommand)]
enum RetentionCommand {
    /// Set a tenant's retention (days or years) and legal hold.
    Set(SetArgs),
    /// Print a tenant's policy as JSON.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
struct SetArgs {
    /// Data directory of the hot store.
    #[arg(long, env = "SEALTRAIL_DATA_DIR", default_value = "./sealtrail-data")]
    data_dir: PathBuf,
    /// Tenant whose policy this is.
    #[arg(long)]
    tenant: String,
    /// Keep archived events this many days.
    #[arg(long, conflicts_with = "years", required_unless_present = "years")]
    days: Option<u32>,
    /// Keep archived events this many years (counted as 366 days each).
    #[arg(long)]
    years: Option<u32>,
    /// Suspend every deletion of the tenant's events (`true` or `false`; required, so a hold is
    /// never lifted by omission).
    #[arg(long, action = clap::ArgAction::Set)]
    legal_hold: bool,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// Data directory of the hot store.
    #[arg(long, env = "SEALTRAIL_DATA_DIR", default_value = "./sealtrail-data")]
    data_dir: PathBuf,
    /// Tenant whose policy this is.
    #[arg(long)]
    tenant: String,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A tenant's stored policy; `None` when it has none (kept forever).
pub(crate) async fn load_policy(
    store: &dyn HotStore,
    tenant_id: &str,
) -> anyhow::Result<Option<RetentionPolicy>> {
    sealtrail_server::load_retention_policy(store, tenant_id)
        .await
        .map_err(anyhow::Error::msg)
}

pub(crate) fn run(args: RetentionArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RetentionCommand::Set(args) => {
            check_tenant_id(&args.tenant)
                .map_err(|reason| anyhow::anyhow!("--tenant: {reason}"))?;
            let mut body = match (args.days, args.years) {
                (Some(days), _) => serde_json::json!({ "retention_days": days }),
                (None, Some(years)) => serde_json::json!({ "retention_years": years }),
                (None, None) => bail!("--days or --years is required"),
            };
            body["legal_hold"] = args.legal_hold.into();
            let policy = RetentionPolicy::from_json(&body).map_err(|errors| {
                let error = &errors[0];
                let flag = match error.field.as_str() {
                    "retention_days" => "--days",
                    "retention_years" => "--years",
                    other => other,
                };
                anyhow::anyhow!("{flag}: {}", error.reason)
            })?;
            runtime()?.block_on(async {
                let store = SqliteStore::open(&args.data_dir)?;
                store
                    .set_setting(
                        &RetentionPolicy::setting_name(&args.tenant),
                        serde_json::to_vec(&policy.to_json())?,
                    )
                    .await?;
                anyhow::Ok(())
            })?;
            outln!("tenant {}: {}", args.tenant, policy.describe())?;
        }
        RetentionCommand::Show(args) => {
            check_tenant_id(&args.tenant)
                .map_err(|reason| anyhow::anyhow!("--tenant: {reason}"))?;
            let policy = runtime()?.block_on(async {
                let store = SqliteStore::open(&args.data_dir)?;
                load_policy(&store, &args.tenant).await
            })?;
            let mut shown = match policy {
                Some(policy) => policy.to_json(),
                None => serde_json::json!({ "retention": "indefinite", "legal_hold": false }),
            };
            shown["tenant_id"] = args.tenant.clone().into();
            outln!("{shown}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The second and third steps of `lifecycle run`: compact due warm files into the cold tier,
/// then delete expired cold files of tenants without a legal hold (their policies in `hot`, the
/// store the run moved from), each under a deletion record signed with the data directory's
/// checkpoint key. `fault_point` is the crash-test hook.
#[allow(clippy::too_many_arguments)] // each is one step's own setting
pub(crate) fn run_cold_and_retention(
    runtime: &tokio::runtime::Runtime,
    hot: &dyn HotStore,
    data_dir: &Path,
    warm: &Location,
    cold: &Location,
    warm_retention_days: u32,
    now_ns: i64,
    reseal: Option<&dyn sealtrail_archive::Reseal>,
    fault_point: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<()> {
    // The data directory's checkpoint key signs deletion records; a directory filled by
    // `sealtrail import` alone gets its key here, as `serve` would create it on first start.
    let signer = sealtrail_server::load_or_create_signer(
        &data_dir.join(sealtrail_server::SIGNING_KEY_FILE),
        sealtrail_server::DEFAULT_KEY_NAME,
    )
    .context("loading the checkpoint signing key, which signs deletion records")?;
    let warm = Tier::open(warm).context("opening the warm tier")?;
    let cold = Tier::open(cold).context("opening the cold tier")?;
    let policy = CompactionPolicy {
        warm_retention_days,
        now_ns,
    };
    let mut on_compaction_step = |step: CompactionStep| {
        fault_point(match step {
            CompactionStep::AfterWrite => "cold-after-write",
            CompactionStep::AfterVerify => "cold-after-verify",
            CompactionStep::MidDelete => "cold-mid-delete",
        })
    };
    let compactions = runtime.block_on(sealtrail_archive::migrate_warm_to_cold(
        &warm,
        &cold,
        policy,
        reseal,
        &mut on_compaction_step,
    ))?;
    for report in &compactions {
        outln!(
            "tenant {}: warm -> cold: {} events compacted from {} warm files into {} cold files ({} bytes, {} fields re-encrypted); {} leftover warm files deleted, {} orphan cold files removed",
            report.tenant_id,
            report.events_moved,
            report.warm_files_replaced,
            report.files_written,
            report.bytes_written,
            report.fields_reencrypted,
            report.leftover_warm_files_deleted,
            report.orphans_removed
        )?;
    }
    let retentions = runtime.block_on(async {
        // Every archived tenant is reported, so a hold or a missing policy is visible too.
        let mut tenants = cold.tenants().await?;
        tenants.extend(warm.tenants().await?);
        tenants.sort();
        tenants.dedup();
        let mut policies = Vec::with_capacity(tenants.len());
        for tenant_id in tenants {
            let policy = load_policy(hot, &tenant_id).await?;
            policies.push((tenant_id, policy));
        }
        let mut on_retention_step = |step: RetentionStep| {
            fault_point(match step {
                RetentionStep::AfterRecord => "retention-after-record",
            })
        };
        anyhow::Ok(
            sealtrail_archive::apply_retention(
                &warm,
                &cold,
                hot,
                &policies,
                &signer,
                now_ns,
                &mut on_retention_step,
            )
            .await?,
        )
    })?;
    for report in &retentions {
        let policy = match report.policy {
            None => "no policy, kept indefinitely".to_owned(),
            Some(policy) if policy.legal_hold => format!("{}: on legal hold", policy.describe()),
            Some(policy) => policy.describe(),
        };
        outln!(
            "tenant {}: retention ({policy}): {} events deleted in {} files under signed deletion records; {} leftover files deleted; deleted through seq {}",
            report.tenant_id,
            report.events_deleted,
            report.files_deleted,
            report.leftover_files_deleted,
            report.deleted_through
        )?;
    }
    Ok(())
}
