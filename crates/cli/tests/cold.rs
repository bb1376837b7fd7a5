//! Warm → cold compaction and retention end to end: the real binary seeds a data directory over
//! HTTP, `lifecycle run` moves old events hot → warm → cold (local directories or a real
//! S3-compatible `moto_server`) and deletes expired cold files under signed deletion records,
//! surviving a crash at each step; `sealtrail verify` accepts a recorded deletion and fails on
//! an unrecorded one or a tampered record; the admin API validates retention policies.

mod common;
mod lifecycle_harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Server;
use lifecycle_harness::*;
use serde_json::{json, Value};

/// Warm files whose newest event is older than this go cold in these tests (the HTTP API takes
/// timestamps up to 366 days old, so the default of 365 would leave nothing to compact).
const WARM_RETENTION_DAYS: &str = "60";

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| (*arg).to_owned()).collect()
}

fn cold_run(data_dir: &Path, extra: &[String], env: &[(&str, &str)]) -> (i32, String) {
    let mut all = args(&["--warm-retention-days", WARM_RETENTION_DAYS]);
    all.extend_from_slice(extra);
    lifecycle_run(data_dir, &all, env)
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
    let (_dir, data_dir) = fresh_copy();
    let (code, output) = cold_run(&data_dir, &[], &[]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("tenant acme: warm -> cold:"), "{output}");
    assert!(
        output.contains("tenant acme: retention (no policy"),
        "{output}"
    );
    assert_migrated(&data_dir, &[], &[]);
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
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A second run changes nothing.
    let (code, output) = cold_run(&data_dir, &[], &[]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        files_with_suffix(&data_dir.join("cold/tenant_id=acme"), ".parquet"),
        cold
    );
    assert_migrated(&data_dir, &[], &[]);
}

#[test]
fn a_crash_at_any_cold_step_loses_and_duplicates_nothing() {
    for step in ["cold-after-write", "cold-after-verify", "cold-mid-delete"] {
        let (_dir, data_dir) = fresh_copy();
        let (code, output) = cold_run(&data_dir, &[], &[("SEALTRAIL_FAULT_INJECT", step)]);
        assert_eq!(code, INJECTED_EXIT, "{step}: {output}");
        // The interrupted state is itself a valid log: every event counted once.
        assert_migrated(&data_dir, &[], &[]);
        let (code, output) = cold_run(&data_dir, &[], &[]);
        assert_eq!(code, 0, "{step}: {output}");
        assert_migrated(&data_dir, &[], &[]);
        assert_compacted(&data_dir);
    }
}

fn set_retention(data_dir: &Path, tenant: &str, policy: &[&str]) {
    let mut extra = args(&["--tenant", tenant]);
    extra.extend(args(policy));
    let (code, output) = sealtrail(&["retention", "set"], data_dir, &extra, &[]);
    assert_eq!(code, 0, "{output}");
}

/// Compacts, then applies 80-day retention to acme and to globex under legal hold. Returns the
/// last deleted seq of acme.
fn compact_and_retain(data_dir: &Path) -> u64 {
    set_retention(data_dir, "acme", &["--days", "80", "--legal-hold", "false"]);
    set_retention(data_dir, "globex", &["--days", "1", "--legal-hold", "true"]);
    let (code, output) = sealtrail(
        &["retention", "show"],
        data_dir,
        &args(&["--tenant", "globex"]),
        &[],
    );
    assert_eq!(code, 0, "{output}");
    assert!(output.contains(r#""legal_hold":true"#), "{output}");
    let (code, output) = cold_run(data_dir, &[], &[]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("tenant globex: retention (retention_days=1 legal_hold=true: on legal hold): 0 events deleted"), "{output}");
    deleted_through(&output)
}

fn deleted_through(output: &str) -> u64 {
    let line = output
        .lines()
        .find(|line| line.starts_with("tenant acme: retention"))
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
    let (_dir, data_dir) = fresh_copy();
    let through = compact_and_retain(&data_dir);
    let seed = seed();
    let acme = &seed.events[0].1;
    let cutoff = seed.now_ns - 80 * DAY_NS;
    assert!(through > 0, "something expired");
    assert!(
        acme[through as usize - 1].1 < cutoff,
        "only expired events are deleted"
    );
    assert!(
        acme[through as usize].1 > cutoff - 31 * DAY_NS,
        "whole months only, oldest first"
    );
    assert_deleted_and_intact(&data_dir, through);
    // globex is on legal hold: its cold files all remain (and it had nothing due anyway for
    // the warm cutoff, so check its archive is whole).
    assert!(
        files_with_suffix(&data_dir.join("cold/tenant_id=globex/_deletions"), ".note").is_empty()
    );
    // A rerun deletes nothing more.
    let (code, output) = cold_run(&data_dir, &[], &[]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(deleted_through(&output), through);
}

#[test]
fn a_crash_after_the_deletion_record_is_finished_by_the_rerun() {
    let (_dir, data_dir) = fresh_copy();
    set_retention(
        &data_dir,
        "acme",
        &["--days", "80", "--legal-hold", "false"],
    );
    let (code, output) = cold_run(
        &data_dir,
        &[],
        &[("SEALTRAIL_FAULT_INJECT", "retention-after-record")],
    );
    assert_eq!(code, INJECTED_EXIT, "{output}");
    // The recorded file is still there, but counted as deleted, not twice.
    let (code, output) = verify(&data_dir, &[], &[]);
    assert_eq!(code, 0, "{output}");
    let (code, output) = cold_run(&data_dir, &[], &[]);
    assert_eq!(code, 0, "{output}");
    let through = deleted_through(&output);
    assert_deleted_and_intact(&data_dir, through);
}

#[test]
fn verify_fails_after_an_unrecorded_deletion_or_a_tampered_record() {
    let (_dir, data_dir) = fresh_copy();
    let through = compact_and_retain(&data_dir);
    let records = files_with_suffix(&data_dir.join("cold/tenant_id=acme/_deletions"), ".note");
    assert!(!records.is_empty());
    let original = std::fs::read_to_string(&records[0]).unwrap();
    // Tampered: the policy line claims another retention.
    std::fs::write(
        &records[0],
        original.replace("retention_days=80", "retention_days=8"),
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
    let bucket = format!("sealtrail-cold-{}", std::process::id());
    ureq::put(&format!("{}/{bucket}", moto.endpoint))
        .call()
        .expect("creating the bucket");
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
    let (_dir, data_dir) = fresh_copy();
    let mut crash_env = env.to_vec();
    crash_env.push(("SEALTRAIL_FAULT_INJECT", "cold-mid-delete"));
    let (code, output) = cold_run(&data_dir, &extra, &crash_env);
    assert_eq!(code, INJECTED_EXIT, "{output}");
    assert_migrated(&data_dir, &extra, &env);
    let (code, output) = cold_run(&data_dir, &extra, &env);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("tenant acme: warm -> cold: 0 events"),
        "{output}"
    );
    // The server that seeded the directory may have made the default directories; what
    // matters is that no archived file landed in them.
    for tier in ["warm", "cold"] {
        assert!(
            files_with_suffix(&data_dir.join(tier), ".parquet").is_empty(),
            "S3 was used for {tier}, not the local default"
        );
    }
    assert_migrated(&data_dir, &extra, &env);
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
