//! Hot → warm lifecycle end to end: the real binary seeds a data directory over HTTP, moves old
//! events to Parquet (local directory or a real S3-compatible `moto_server`), survives a crash
//! at each step, and `sealtrail verify` checks one chain across tiers and catches tampering.

mod common;
mod lifecycle_harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use lifecycle_harness::*;

#[test]
fn migration_moves_old_events_and_verify_passes_across_tiers() {
    let (_dir, data_dir) = fresh_copy();
    let (code, output) = lifecycle_run(&data_dir, &[], &[]);
    assert_eq!(code, 0, "{output}");
    assert_migrated(&data_dir, &[], &[]);
    let warm = data_dir.join("warm");
    let parquet = files_with_suffix(&warm, ".parquet");
    let manifests = files_with_suffix(&warm, ".manifest.json");
    assert_eq!(parquet.len(), manifests.len());
    // acme's archived events span four calendar months at most, globex's three.
    assert!(parquet.len() >= 3 && parquet.len() <= 8, "{parquet:?}");
    for path in &parquet {
        let relative = path
            .strip_prefix(&warm)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = relative.split('/').collect();
        assert!(parts[0].starts_with("tenant_id="), "{relative}");
        assert!(
            parts[1].starts_with("date=") && parts[1].len() == "date=YYYY-MM".len(),
            "{relative}"
        );
        assert!(parts[2].starts_with("part-"), "{relative}");
    }
    // A second run has nothing left to move and changes nothing.
    let (code, output) = lifecycle_run(&data_dir, &[], &[]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("tenant acme: 0 events moved"), "{output}");
    assert_eq!(files_with_suffix(&warm, ".parquet"), parquet);
    assert_migrated(&data_dir, &[], &[]);
}

#[test]
fn a_crash_at_any_step_loses_and_duplicates_nothing() {
    for step in ["after-write", "after-verify", "mid-delete"] {
        let (_dir, data_dir) = fresh_copy();
        let (code, output) = lifecycle_run(&data_dir, &[], &[("SEALTRAIL_FAULT_INJECT", step)]);
        assert_eq!(code, INJECTED_EXIT, "{step}: {output}");
        // The interrupted state is itself a valid log.
        let (code, output) = verify(&data_dir, &[], &[]);
        assert_eq!(code, 0, "{step}: {output}");
        let (code, output) = lifecycle_run(&data_dir, &[], &[]);
        assert_eq!(code, 0, "{step}: {output}");
        assert_migrated(&data_dir, &[], &[]);
        let warm = data_dir.join("warm");
        assert_eq!(
            files_with_suffix(&warm, ".parquet").len(),
            files_with_suffix(&warm, ".manifest.json").len(),
            "{step}: no orphan file is left"
        );
    }
}

/// Migrates a fresh copy and returns it with its warm Parquet files.
fn migrated() -> (tempfile::TempDir, PathBuf, Vec<PathBuf>) {
    let (dir, data_dir) = fresh_copy();
    let (code, output) = lifecycle_run(&data_dir, &[], &[]);
    assert_eq!(code, 0, "{output}");
    let acme = files_with_suffix(&data_dir.join("warm/tenant_id=acme"), ".parquet");
    assert!(acme.len() >= 2, "{acme:?}");
    (dir, data_dir, acme)
}

fn assert_fails_at(data_dir: &Path, seq: u64, what: &str) {
    let (code, output) = verify(data_dir, &[], &[]);
    assert_eq!(code, 1, "{what}: {output}");
    assert!(
        output.contains(&format!("FAILED  tenant acme: seq {seq}:")),
        "{what}: expected a failure naming acme seq {seq}: {output}"
    );
    assert!(output.contains("ok      tenant globex"), "{what}: {output}");
}

#[test]
fn verify_fails_when_a_parquet_file_is_altered() {
    let (_dir, data_dir, files) = migrated();
    let target = &files[1];
    let mut bytes = std::fs::read(target).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(target, bytes).unwrap();
    assert_fails_at(&data_dir, first_seq_of(target), "altered");
}

#[test]
fn verify_fails_when_a_parquet_file_is_removed() {
    let (_dir, data_dir, files) = migrated();
    std::fs::remove_file(&files[1]).unwrap();
    assert_fails_at(&data_dir, first_seq_of(&files[1]), "removed");
    // Removing the manifest as well leaves a gap, which the chain names.
    let manifest = files[1].with_file_name(format!(
        "_{}",
        files[1]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".parquet", ".manifest.json")
    ));
    std::fs::remove_file(manifest).unwrap();
    assert_fails_at(
        &data_dir,
        first_seq_of(&files[1]),
        "removed with its manifest",
    );
}

#[test]
fn verify_fails_when_a_parquet_file_is_replaced() {
    let (_dir, data_dir, files) = migrated();
    // Another valid file of the same tenant in its place.
    std::fs::copy(&files[0], &files[1]).unwrap();
    assert_fails_at(&data_dir, first_seq_of(&files[1]), "replaced");
}

#[test]
fn parquet_files_open_in_pyarrow_with_the_expected_schema() {
    let (_dir, data_dir, files) = migrated();
    let script = r#"
import sys, pyarrow.parquet as pq
f = pq.ParquetFile(sys.argv[1])
schema = f.schema_arrow
print(",".join(f"{field.name}:{field.type}" for field in schema))
print(f.metadata.num_rows)
md = f.metadata.row_group(0)
print(md.column(0).statistics.has_min_max, md.column(0).compression)
t = f.read()
print(t.column("seq")[0].as_py(), t.column("tenant_id")[0].as_py())
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&files[0])
        .output()
        .expect("python3 with pyarrow (scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "seq:int64,tenant_id:string,event_id:string,timestamp:timestamp[ns, tz=UTC],\
received_at:timestamp[ns, tz=UTC],actor_id:string,actor_type:string,action:string,\
resource_type:string,resource_id:string,outcome:string,ip_address:string,user_agent:string,\
request_id:string,changes:string,metadata:string,prev_hash:fixed_size_binary[32]"
    );
    assert!(lines[1].parse::<u64>().unwrap() > 0);
    assert_eq!(lines[2], "True ZSTD");
    assert_eq!(lines[3], "1 acme");
    let _ = data_dir;
}

#[test]
fn the_s3_path_migrates_survives_a_crash_and_verifies_against_moto() {
    let moto = Moto::start();
    let bucket = format!("sealtrail-test-{}", std::process::id());
    ureq::put(&format!("{}/{bucket}", moto.endpoint))
        .call()
        .expect("creating the bucket");
    let extra: Vec<String> = [
        "--s3-bucket",
        &bucket,
        "--s3-endpoint",
        &moto.endpoint,
        "--s3-region",
        "us-east-1",
        "--s3-prefix",
        "tiers/warm",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let (_dir, data_dir) = fresh_copy();
    let mut crash_env = env.to_vec();
    crash_env.push(("SEALTRAIL_FAULT_INJECT", "mid-delete"));
    let (code, output) = lifecycle_run(&data_dir, &extra, &crash_env);
    assert_eq!(code, INJECTED_EXIT, "{output}");
    let (code, output) = lifecycle_run(&data_dir, &extra, &env);
    assert_eq!(code, 0, "{output}");
    // The server that seeded the directory made the default tier directories; what matters
    // is that no archived file landed there.
    assert!(
        files_with_suffix(&data_dir.join("warm"), ".parquet").is_empty(),
        "S3 was used, not the local default"
    );
    assert_migrated(&data_dir, &extra, &env);
    // Without the bucket, the archived events are missing and verify says where they start.
    let (code, output) = verify(&data_dir, &[], &[]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("FAILED  tenant acme: seq 1:"), "{output}");
}
