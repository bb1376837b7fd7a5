//! Warm → cold compaction and retention end to end: the real binary seeds a data directory over
//! HTTP, `lifecycle run` moves old events hot → warm → cold (local directories or a real
//! S3-compatible `moto_server`) and deletes expired cold files under signed deletion records,
//! surviving a crash at each step; `sealtrail verify` accepts a recorded deletion and fails on
//! an unrecorded one or a tampered record; the admin API validates retention policies.
//!
//! The local-directory tests run at each of the harness's fixed [`INSTANTS`] (the 1st, the
//! 15th, the 28th to the 31st, 29 February, New Year's Eve, and 2026-11-30, whose wall-clock
//! seed once left `cold-mid-delete` with nothing to interrupt): which months go cold and which
//! expire follow from the date, and each instant costs one seed and a few subcommand runs. The
//! S3 test runs once, at [`DEFAULT_INSTANT`]: it starts a `moto_server` and pays an HTTP round
//! trip per object, and the S3 code path differs from the local one in where objects live, not
//! in which ones exist on a given date.

mod common;
mod lifecycle_harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{stored_event_ids, Server};
use lifecycle_harness::*;
use serde_json::{json, Value};

/// Warm files whose newest event is older than this go cold in these tests (the HTTP API takes
/// timestamps up to 366 days old, so the default of 365 would leave nothing to compact).
const WARM_RETENTION_DAYS: &str = "60";

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| (*arg).to_owned()).collect()
}

fn cold_run(seed: &Seed, data_dir: &Path, extra: &[String], env: &[(&str, &str)]) -> (i32, String) {
    let mut all = args(&["--warm-retention-days", WARM_RETENTION_DAYS]);
    all.extend_from_slice(extra);
    lifecycle_run(seed, data_dir, &all, env)
}

/// How many of `tenant`'s events (a seq prefix) are in calendar months whose newest event is
/// older than `days` before the seed's instant: what compaction (60 days) or retention must
/// take of files holding whole months, oldest first.
fn events_in_months_older_than(seed: &Seed, tenant: &str, days: i64) -> u64 {
    let cutoff = seed.now_ns - days * DAY_NS;
    let (_, events) = seed.events.iter().find(|(name, _)| name == tenant).unwrap();
    let month = |timestamp_ns: i64| sealtrail_model::format_timestamp(timestamp_ns)[..7].to_owned();
    let mut count = 0;
    for (index, (_, timestamp_ns)) in events.iter().enumerate() {
        let newest_of_month = events[index..]
            .iter()
            .take_while(|(_, other)| month(*other) == month(*timestamp_ns))
            .map(|(_, other)| *other)
            .max()
            .unwrap();
        if newest_of_month >= cutoff {
            break;
        }
        count += 1;
    }
    count
}

fn acme_events_in_months_older_than(seed: &Seed, days: i64) -> u64 {
    events_in_months_older_than(seed, "acme", days)
}

/// Parquet files and manifests pair up in both tiers: no orphan is left.
fn assert_no_orphans(data_dir: &Path) {
    for tier in ["warm", "cold"] {
        let dir = data_dir.join(tier);
        assert_eq!(
            files_with_suffix(&dir, ".parquet").len(),
            files_with_suffix(&dir, ".manifest.json").len(),
            "{tier}"
        );
    }
}

/// acme's months whose newest event is older than 60 days are cold, one file per month; the
/// younger ones stay warm.
fn assert_compacted(data_dir: &Path) -> Vec<PathBuf> {
    let cold = files_with_suffix(&data_dir.join("cold/tenant_id=acme"), ".parquet");
    assert!(!cold.is_empty(), "acme has cold files");
    let months: std::collections::HashSet<String> = cold
        .iter()
        .map(|path| {
            path.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        months.len(),
        cold.len(),
        "one cold file per month: {cold:?}"
    );
    assert!(
        !files_with_suffix(&data_dir.join("warm/tenant_id=acme"), ".parquet").is_empty(),
        "recent months stay warm"
    );
    assert_no_orphans(data_dir);
    cold
}

#[test]
fn lifecycle_compacts_warm_into_cold_and_verify_passes() {
    for now in INSTANTS {
        compacts_warm_into_cold_at(seed_at(now));
    }
}

fn compacts_warm_into_cold_at(seed: &Seed) {
    let now = &seed.now;
    let (_dir, data_dir) = fresh_copy(seed);
    let (code, output) = cold_run(seed, &data_dir, &[], &[]);
    assert_eq!(code, 0, "{now}: {output}");
    let compacted = acme_events_in_months_older_than(seed, 60);
    assert!(compacted > 0, "{now}: the oldest month is always due");
    assert!(
        output.contains(&format!("tenant acme: warm -> cold: {compacted} events")),
        "{now}: {output}"
    );
    assert!(
        output.contains("tenant acme: retention (no policy"),
        "{now}: {output}"
    );
    assert_migrated(seed, &data_dir, &[], &[]);
    let cold = assert_compacted(&data_dir);
    // Cold files are at the higher zstd level, still open Parquet with the same schema.
    let output = Command::new("python3")
        .arg("-c")
        .arg("import sys, pyarrow.parquet as pq; f = pq.ParquetFile(sys.argv[1]); print(f.metadata.row_group(0).column(0).compression, f.schema_arrow.field('prev_hash').type)")
        .arg(&cold[0])
        .output()
        .expect("python3 with pyarrow");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "ZSTD fixed_size_binary[32]",
        "{now}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A second run changes nothing.
    let (code, output) = cold_run(seed, &data_dir, &[], &[]);
    assert_eq!(code, 0, "{now}: {output}");
    assert_eq!(
        files_with_suffix(&data_dir.join("cold/tenant_id=acme"), ".parquet"),
        cold,
        "{now}"
    );
    assert_migrated(seed, &data_dir, &[], &[]);
}

#[test]
fn a_crash_at_any_cold_step_loses_and_duplicates_nothing() {
    for (now, step) in INSTANTS.iter().flat_map(|now| {
        ["cold-after-write", "cold-after-verify", "cold-mid-delete"].map(|step| (now, step))
    }) {
        let seed = seed_at(now);
        let (_dir, data_dir) = fresh_copy(seed);
        let (code, output) = cold_run(seed, &data_dir, &[], &[("SEALTRAIL_FAULT_INJECT", step)]);
        assert_eq!(code, INJECTED_EXIT, "{now} {step}: {output}");
        // The interrupted state is itself a valid log: every event counted once.
        assert_migrated(seed, &data_dir, &[], &[]);
        let (code, output) = cold_run(seed, &data_dir, &[], &[]);
        assert_eq!(code, 0, "{now} {step}: {output}");
        assert_migrated(seed, &data_dir, &[], &[]);
        assert_compacted(&data_dir);
    }
}

fn set_retention(data_dir: &Path, tenant: &str, policy: &[&str]) {
    let mut extra = args(&["--tenant", tenant]);
    extra.extend(args(policy));
    let (code, output) = sealtrail(&["retention", "set"], data_dir, &extra, &[]);
    assert_eq!(code, 0, "{output}");
}

/// acme's retention in these tests, in days. Longer than the warm retention (60), so what
/// expires is cold; and at least 79 days (110 days of history less one 31-day month) less a
/// few, so the oldest month expires at every instant.
const RETENTION_DAYS: &str = "75";

/// Compacts, then applies 75-day retention to acme and to globex under legal hold. Returns the
/// last deleted seq of acme.
fn compact_and_retain(seed: &Seed, data_dir: &Path) -> u64 {
    set_retention(
        data_dir,
        "acme",
        &["--days", RETENTION_DAYS, "--legal-hold", "false"],
    );
    set_retention(data_dir, "globex", &["--days", "1", "--legal-hold", "true"]);
    let (code, output) = sealtrail(
        &["retention", "show"],
        data_dir,
        &args(&["--tenant", "globex"]),
        &[],
    );
    assert_eq!(code, 0, "{output}");
    assert!(output.contains(r#""legal_hold":true"#), "{output}");
    let (code, output) = cold_run(seed, data_dir, &[], &[]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("tenant globex: retention (retention_days=1 legal_hold=true: on legal hold): 0 events deleted"), "{output}");
    deleted_through(&output)
}

fn deleted_through(output: &str) -> u64 {
    deleted_through_of(output, "acme")
}

fn deleted_through_of(output: &str, tenant: &str) -> u64 {
    let line = output
        .lines()
        .find(|line| line.starts_with(&format!("tenant {tenant}: retention")))
        .unwrap_or_else(|| panic!("{output}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn assert_deleted_and_intact(data_dir: &Path, through: u64) {
    let (code, output) = verify(data_dir, &[], &[]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains(&format!(
            "deleted tenant acme: seq 1-{through} removed by retention"
        )),
        "{output}"
    );
    assert!(output.contains("head seq 120"), "{output}");
    assert!(
        output.contains("ok      tenant globex: 30 events, head seq 30"),
        "{output}"
    );
    assert_no_orphans(data_dir);
}

#[test]
fn retention_deletes_only_expired_data_of_tenants_without_hold() {
    for now in INSTANTS {
        retention_deletes_only_expired_data_at(seed_at(now));
    }
}

fn retention_deletes_only_expired_data_at(seed: &Seed) {
    let now = &seed.now;
    let (_dir, data_dir) = fresh_copy(seed);
    let through = compact_and_retain(seed, &data_dir);
    let acme = &seed.events[0].1;
    let retention_days: i64 = RETENTION_DAYS.parse().unwrap();
    let cutoff = seed.now_ns - retention_days * DAY_NS;
    // Exactly the whole months whose newest event expired, oldest first.
    assert_eq!(
        through,
        acme_events_in_months_older_than(seed, retention_days),
        "{now}"
    );
    assert!(through > 0, "{now}: something expired");
    assert!(
        acme[through as usize - 1].1 < cutoff,
        "{now}: only expired events are deleted"
    );
    assert!(
        acme[through as usize].1 > cutoff - 31 * DAY_NS,
        "{now}: whole months only, oldest first"
    );
    assert_deleted_and_intact(&data_dir, through);
    // globex is on legal hold: its cold files all remain (and it had nothing due anyway for
    // the warm cutoff, so check its archive is whole).
    assert!(
        files_with_suffix(&data_dir.join("cold/tenant_id=globex/_deletions"), ".note").is_empty(),
        "{now}"
    );
    // A rerun deletes nothing more.
    let (code, output) = cold_run(seed, &data_dir, &[], &[]);
    assert_eq!(code, 0, "{now}: {output}");
    assert_eq!(deleted_through(&output), through, "{now}");
}

#[test]
fn a_crash_after_the_deletion_record_is_finished_by_the_rerun() {
    for now in INSTANTS {
        let seed = seed_at(now);
        let (_dir, data_dir) = fresh_copy(seed);
        set_retention(
            &data_dir,
            "acme",
            &["--days", RETENTION_DAYS, "--legal-hold", "false"],
        );
        let (code, output) = cold_run(
            seed,
            &data_dir,
            &[],
            &[("SEALTRAIL_FAULT_INJECT", "retention-after-record")],
        );
        assert_eq!(code, INJECTED_EXIT, "{now}: {output}");
        // The recorded file is still there, but counted as deleted, not twice.
        let (code, output) = verify(&data_dir, &[], &[]);
        assert_eq!(code, 0, "{now}: {output}");
        let (code, output) = cold_run(seed, &data_dir, &[], &[]);
        assert_eq!(code, 0, "{now}: {output}");
        let through = deleted_through(&output);
        assert_eq!(
            through,
            acme_events_in_months_older_than(seed, RETENTION_DAYS.parse().unwrap()),
            "{now}"
        );
        assert_deleted_and_intact(&data_dir, through);
    }
}

#[test]
fn verify_fails_after_an_unrecorded_deletion_or_a_tampered_record() {
    for now in INSTANTS {
        verify_fails_after_an_unrecorded_deletion_at(seed_at(now));
    }
}

fn verify_fails_after_an_unrecorded_deletion_at(seed: &Seed) {
    let (_dir, data_dir) = fresh_copy(seed);
    let through = compact_and_retain(seed, &data_dir);
    let records = files_with_suffix(&data_dir.join("cold/tenant_id=acme/_deletions"), ".note");
    assert!(!records.is_empty());
    let original = std::fs::read_to_string(&records[0]).unwrap();
    // Tampered: the policy line claims another retention.
    std::fs::write(
        &records[0],
        original.replace("retention_days=75", "retention_days=7"),
    )
    .unwrap();
    let (code, output) = verify(&data_dir, &[], &[]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("FAILED  tenant acme: seq 1:"), "{output}");
    assert!(output.contains("ok      tenant globex"), "{output}");
    // Removed: the deletion is no longer recorded.
    std::fs::remove_file(&records[0]).unwrap();
    let (code, output) = verify(&data_dir, &[], &[]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("FAILED  tenant acme: seq 1:"), "{output}");
    // Restored, it verifies again.
    std::fs::write(&records[0], &original).unwrap();
    assert_deleted_and_intact(&data_dir, through);
    // An unrecorded deletion: the oldest remaining archived file goes without a record.
    let mut remaining = files_with_suffix(&data_dir.join("cold/tenant_id=acme"), ".parquet");
    remaining.extend(files_with_suffix(
        &data_dir.join("warm/tenant_id=acme"),
        ".parquet",
    ));
    remaining.sort_by_key(|path| first_seq_of(path));
    let victim = &remaining[0];
    assert_eq!(first_seq_of(victim), through + 1);
    let manifest = victim.with_file_name(format!(
        "_{}",
        victim
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".parquet", ".manifest.json")
    ));
    std::fs::remove_file(victim).unwrap();
    std::fs::remove_file(manifest).unwrap();
    let (code, output) = verify(&data_dir, &[], &[]);
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains(&format!("FAILED  tenant acme: seq {}:", through + 1)),
        "{output}"
    );
}

#[test]
fn the_s3_path_compacts_into_cold_and_survives_a_crash_against_moto() {
    let moto = Moto::start();
    let bucket = moto.create_bucket("sealtrail-cold");
    let extra = args(&[
        "--s3-bucket",
        &bucket,
        "--s3-endpoint",
        &moto.endpoint,
        "--s3-region",
        "us-east-1",
        "--s3-prefix",
        "tiers/warm",
        "--cold-s3-prefix",
        "tiers/cold",
    ]);
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let seed = seed();
    let (_dir, data_dir) = fresh_copy(seed);
    let mut crash_env = env.to_vec();
    crash_env.push(("SEALTRAIL_FAULT_INJECT", "cold-mid-delete"));
    let (code, output) = cold_run(seed, &data_dir, &extra, &crash_env);
    assert_eq!(code, INJECTED_EXIT, "{output}");
    assert_migrated(seed, &data_dir, &extra, &env);
    let (code, output) = cold_run(seed, &data_dir, &extra, &env);
    assert_eq!(code, 0, "{output}");
    // The crash came after the first cold file (acme's oldest month) was recorded: the rerun
    // deletes that month's leftover warm file and compacts the other due months, if any (two
    // at the default instant).
    let month = |timestamp_ns: i64| sealtrail_model::format_timestamp(timestamp_ns)[..7].to_owned();
    let acme = &seed.events[0].1;
    let oldest_month = acme
        .iter()
        .take_while(|(_, timestamp_ns)| month(*timestamp_ns) == month(acme[0].1))
        .count() as u64;
    let rest = acme_events_in_months_older_than(seed, 60) - oldest_month;
    assert!(
        output.contains(&format!("tenant acme: warm -> cold: {rest} events")),
        "{output}"
    );
    assert!(output.contains("1 leftover warm files deleted"), "{output}");
    // The server that seeded the directory may have made the default directories; what
    // matters is that no archived file landed in them.
    for tier in ["warm", "cold"] {
        assert!(
            files_with_suffix(&data_dir.join(tier), ".parquet").is_empty(),
            "S3 was used for {tier}, not the local default"
        );
    }
    assert_migrated(seed, &data_dir, &extra, &env);
    // The cold prefix holds acme's old months.
    let listing = ureq::get(&format!(
        "{}/{bucket}?list-type=2&prefix=tiers/cold/tenant_id=acme/",
        moto.endpoint
    ))
    .call()
    .unwrap()
    .into_string()
    .unwrap();
    assert!(listing.contains(".parquet"), "{listing}");
    // Without the cold prefix, acme's chain is missing its start.
    let mut without_cold = extra.clone();
    without_cold.truncate(8);
    without_cold.extend(args(&["--cold-s3-prefix", "elsewhere"]));
    let (code, output) = verify(&data_dir, &without_cold, &env);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("FAILED  tenant acme: seq 1:"), "{output}");
}

/// A retention shorter than the warm (60 days) and even the hot (30 days) retention deletes in
/// every tier: acme keeps 20 days, so its expired cold months, its warm months and its events
/// still hot but older than 20 days all go, each under a signed deletion record, and `verify`
/// accepts the log. globex keeps 45 days: its expired months are warm. At every instant,
/// because which tier holds an expired month follows from the date.
#[test]
fn a_retention_shorter_than_the_warm_or_hot_retention_deletes_in_every_tier() {
    for now in INSTANTS {
        let seed = seed_at(now);
        let (_dir, data_dir) = fresh_copy(seed);
        set_retention(
            &data_dir,
            "acme",
            &["--days", "20", "--legal-hold", "false"],
        );
        set_retention(
            &data_dir,
            "globex",
            &["--days", "45", "--legal-hold", "false"],
        );
        let (code, output) = cold_run(seed, &data_dir, &[], &[]);
        assert_eq!(code, 0, "{now}: {output}");
        // acme: every event older than 20 days, though the hot retention is 30: the expired
        // hot events were archived (checked, recorded) and deleted like any archived file.
        let cutoff = seed.now_ns - 20 * DAY_NS;
        let acme = &seed.events[0].1;
        let expired = acme
            .iter()
            .filter(|(_, timestamp_ns)| *timestamp_ns < cutoff)
            .count() as u64;
        let through = deleted_through_of(&output, "acme");
        assert_eq!(through, expired, "{now}: {output}");
        let kept: Vec<String> = acme[expired as usize..]
            .iter()
            .map(|(event_id, _)| event_id.clone())
            .collect();
        assert_eq!(stored_event_ids(&data_dir, "acme"), kept, "{now}");
        // globex: whole warm months whose newest event is older than 45 days.
        let globex_through = deleted_through_of(&output, "globex");
        assert_eq!(
            globex_through,
            events_in_months_older_than(seed, "globex", 45),
            "{now}: {output}"
        );
        // Nothing of the deleted ranges is left in any tier, every deletion is signed, and the
        // chain and tree verify past them.
        for (tenant, through) in [("acme", through), ("globex", globex_through)] {
            for tier in ["warm", "cold"] {
                for file in files_with_suffix(
                    &data_dir.join(format!("{tier}/tenant_id={tenant}")),
                    ".parquet",
                ) {
                    assert!(first_seq_of(&file) > through, "{now}: {file:?} left");
                }
            }
        }
        let (code, output) = verify(&data_dir, &[], &[]);
        assert_eq!(code, 0, "{now}: {output}");
        assert!(
            output.contains(&format!(
                "deleted tenant acme: seq 1-{through} removed by retention"
            )),
            "{now}: {output}"
        );
        assert!(output.contains("head seq 120"), "{now}: {output}");
        assert!(output.contains("head seq 30"), "{now}: {output}");
        assert_no_orphans(&data_dir);
        // A rerun deletes nothing more.
        let (code, output) = cold_run(seed, &data_dir, &[], &[]);
        assert_eq!(code, 0, "{now}: {output}");
        assert_eq!(deleted_through_of(&output, "acme"), through, "{now}");
    }
}

fn admin_request(method: &str, url: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let request = ureq::request(method, url).set("Authorization", &format!("Bearer {token}"));
    let result = match body {
        Some(body) => request.send_json(body.clone()),
        None => request.call(),
    };
    let response = match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("{error}"),
    };
    let status = response.status();
    (status, response.into_json().unwrap_or(Value::Null))
}

#[test]
fn the_admin_api_sets_and_validates_retention() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let url = server.url("/v1/tenants/acme/retention");
    let admin = common::ADMIN_TOKEN;
    let (status, body) = admin_request("GET", &url, admin, None);
    assert_eq!(status, 404, "{body}");
    for (bad, field) in [
        (json!({"legal_hold": false}), "retention_days"),
        (
            json!({"retention_days": 0, "legal_hold": false}),
            "retention_days",
        ),
        (
            json!({"retention_years": 101, "legal_hold": false}),
            "retention_years",
        ),
        (
            json!({"retention_days": 30, "retention_years": 1, "legal_hold": false}),
            "retention_years",
        ),
        (json!({"retention_days": 30}), "legal_hold"),
        (
            json!({"retention_days": 30, "legal_hold": "yes"}),
            "legal_hold",
        ),
        (
            json!({"retention_days": 30, "legal_hold": true, "extra": 1}),
            "extra",
        ),
    ] {
        let (status, body) = admin_request("PUT", &url, admin, Some(&bad));
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{bad}: {body}");
        // A rejected request writes nothing.
        assert_eq!(admin_request("GET", &url, admin, None).0, 404);
    }
    let (status, body) = admin_request(
        "PUT",
        &server.url("/v1/tenants/not%20valid/retention"),
        admin,
        Some(&json!({"retention_days": 30, "legal_hold": false})),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "tenant_id");
    // Tenant keys, even admin ones, may not touch retention.
    let tenant_admin = server.create_key("acme", "admin");
    let policy = json!({"retention_years": 7, "legal_hold": true});
    assert_eq!(
        admin_request("PUT", &url, &tenant_admin, Some(&policy)).0,
        403
    );
    let (status, body) = admin_request("PUT", &url, admin, Some(&policy));
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin_request("GET", &url, admin, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"retention_years": 7, "legal_hold": true, "tenant_id": "acme"})
    );
    // Lifting the hold replaces the policy.
    let lifted = json!({"retention_days": 400, "legal_hold": false});
    assert_eq!(admin_request("PUT", &url, admin, Some(&lifted)).0, 200);
    assert_eq!(
        admin_request("GET", &url, admin, None).1["retention_days"],
        400
    );
}
