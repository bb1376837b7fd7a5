//! Hot → warm lifecycle end to end: the real binary seeds a data directory over HTTP, moves old
//! events to Parquet (local directory or a real S3-compatible `moto_server`), survives a crash
//! at each step, and `sealtrail verify` checks one chain across tiers and catches tampering.
//!
//! Every test runs at fixed instants, never at the wall clock's: the local-directory tests at
//! each of the harness's [`INSTANTS`] (month ends, 29 February, New Year's Eve…), because which
//! months exist and how many files each holds follow from the date, and they are quick (one
//! seed and a few subcommand runs per instant). The S3 test starts a `moto_server` and talks
//! HTTP for every object, so it runs once, at [`DEFAULT_INSTANT`]: the S3 code path does not
//! depend on the date, only on the files, which the local tests cover at every instant.

mod common;
mod lifecycle_harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::stored_event_ids;
use lifecycle_harness::*;

#[test]
fn migration_moves_old_events_and_verify_passes_across_tiers() {
    for now in INSTANTS {
        migration_moves_old_events_at(seed_at(now));
    }
}

fn migration_moves_old_events_at(seed: &Seed) {
    let now = &seed.now;
    let (_dir, data_dir) = fresh_copy(seed);
    let (code, output) = lifecycle_run(seed, &data_dir, &[], &[]);
    assert_eq!(code, 0, "{now}: {output}");
    assert_migrated(seed, &data_dir, &[], &[]);
    let warm = data_dir.join("warm");
    let parquet = files_with_suffix(&warm, ".parquet");
    let manifests = files_with_suffix(&warm, ".manifest.json");
    assert_eq!(parquet.len(), manifests.len());
    // One file per tenant-month: acme's archived events (110 to 30 days old) span three or
    // four calendar months, globex's (60 to 31 days old) one or two.
    let months = |tenant: &str| {
        let cutoff = seed.now_ns - 30 * DAY_NS;
        let (_, events) = seed.events.iter().find(|(name, _)| name == tenant).unwrap();
        let mut months: Vec<String> = events
            .iter()
            .filter(|(_, timestamp_ns)| *timestamp_ns < cutoff)
            .map(|(_, timestamp_ns)| {
                sealtrail_model::format_timestamp(*timestamp_ns)[..7].to_owned()
            })
            .collect();
        months.dedup();
        months.len()
    };
    assert!((3..=4).contains(&months("acme")), "{now}");
    assert!((1..=2).contains(&months("globex")), "{now}");
    assert_eq!(
        parquet.len(),
        months("acme") + months("globex"),
        "{now}: {parquet:?}"
    );
    for path in &parquet {
        let relative = path
            .strip_prefix(&warm)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = relative.split('/').collect();
        assert!(parts[0].starts_with("tenant_id="), "{now}: {relative}");
        assert!(
            parts[1].starts_with("date=") && parts[1].len() == "date=YYYY-MM".len(),
            "{relative}"
        );
        assert!(parts[2].starts_with("part-"), "{relative}");
    }
    // A second run has nothing left to move and changes nothing.
    let (code, output) = lifecycle_run(seed, &data_dir, &[], &[]);
    assert_eq!(code, 0, "{now}: {output}");
    assert!(
        output.contains("tenant acme: 0 events moved"),
        "{now}: {output}"
    );
    assert_eq!(files_with_suffix(&warm, ".parquet"), parquet);
    assert_migrated(seed, &data_dir, &[], &[]);
}

#[test]
fn a_crash_at_any_step_loses_and_duplicates_nothing() {
    for (now, step) in INSTANTS
        .iter()
        .flat_map(|now| ["after-write", "after-verify", "mid-delete"].map(|step| (now, step)))
    {
        let seed = seed_at(now);
        let (_dir, data_dir) = fresh_copy(seed);
        let (code, output) =
            lifecycle_run(seed, &data_dir, &[], &[("SEALTRAIL_FAULT_INJECT", step)]);
        assert_eq!(code, INJECTED_EXIT, "{now} {step}: {output}");
        // The interrupted state is itself a valid log.
        let (code, output) = verify(&data_dir, &[], &[]);
        assert_eq!(code, 0, "{now} {step}: {output}");
        let (code, output) = lifecycle_run(seed, &data_dir, &[], &[]);
        assert_eq!(code, 0, "{now} {step}: {output}");
        assert_migrated(seed, &data_dir, &[], &[]);
        let warm = data_dir.join("warm");
        assert_eq!(
            files_with_suffix(&warm, ".parquet").len(),
            files_with_suffix(&warm, ".manifest.json").len(),
            "{now} {step}: no orphan file is left"
        );
    }
}

/// Migrates a fresh copy of the seed at `now` and returns it with acme's warm Parquet files.
fn migrated(now: &str) -> (tempfile::TempDir, PathBuf, Vec<PathBuf>) {
    let seed = seed_at(now);
    let (dir, data_dir) = fresh_copy(seed);
    let (code, output) = lifecycle_run(seed, &data_dir, &[], &[]);
    assert_eq!(code, 0, "{now}: {output}");
    let acme = files_with_suffix(&data_dir.join("warm/tenant_id=acme"), ".parquet");
    assert!(acme.len() >= 3, "{now}: {acme:?}");
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
    for now in INSTANTS {
        let (_dir, data_dir, files) = migrated(now);
        let target = &files[1];
        let mut bytes = std::fs::read(target).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(target, bytes).unwrap();
        assert_fails_at(&data_dir, first_seq_of(target), &format!("{now}: altered"));
    }
}

#[test]
fn verify_fails_when_a_parquet_file_is_removed() {
    for now in INSTANTS {
        let (_dir, data_dir, files) = migrated(now);
        std::fs::remove_file(&files[1]).unwrap();
        assert_fails_at(
            &data_dir,
            first_seq_of(&files[1]),
            &format!("{now}: removed"),
        );
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
            &format!("{now}: removed with its manifest"),
        );
    }
}

#[test]
fn verify_fails_when_a_parquet_file_is_replaced() {
    for now in INSTANTS {
        let (_dir, data_dir, files) = migrated(now);
        // Another valid file of the same tenant in its place.
        std::fs::copy(&files[0], &files[1]).unwrap();
        assert_fails_at(
            &data_dir,
            first_seq_of(&files[1]),
            &format!("{now}: replaced"),
        );
    }
}

#[test]
fn parquet_files_open_in_pyarrow_with_the_expected_schema() {
    // The file format does not depend on the date: one instant.
    let (_dir, data_dir, files) = migrated(DEFAULT_INSTANT);
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
    let bucket = moto.create_bucket("sealtrail-test");
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
    let seed = seed();
    let (_dir, data_dir) = fresh_copy(seed);
    let mut crash_env = env.to_vec();
    crash_env.push(("SEALTRAIL_FAULT_INJECT", "mid-delete"));
    let (code, output) = lifecycle_run(seed, &data_dir, &extra, &crash_env);
    assert_eq!(code, INJECTED_EXIT, "{output}");
    let (code, output) = lifecycle_run(seed, &data_dir, &extra, &env);
    assert_eq!(code, 0, "{output}");
    // The server that seeded the directory made the default tier directories; what matters
    // is that no archived file landed there.
    assert!(
        files_with_suffix(&data_dir.join("warm"), ".parquet").is_empty(),
        "S3 was used, not the local default"
    );
    assert_migrated(seed, &data_dir, &extra, &env);
    // Without the bucket, the archived events are missing and verify says where they start.
    let (code, output) = verify(&data_dir, &[], &[]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("FAILED  tenant acme: seq 1:"), "{output}");
}

/// History imported after live events sits behind them in `seq` order, and only a `seq` prefix
/// of the hot tier moves: the run moves nothing, and says why instead of a bare "0 events
/// moved". One instant: the rule is about `seq` order, not about the calendar.
#[test]
fn a_run_that_moves_nothing_because_of_imported_history_says_why() {
    let now = DEFAULT_INSTANT;
    let now_ns = sealtrail_model::parse_timestamp(now).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    // Live events first (seq 1-5, an hour old), over HTTP on the test clock.
    let server = common::Server::start_with(
        &data_dir,
        &[],
        &[
            ("SEALTRAIL_ADMIN_TOKEN", common::ADMIN_TOKEN),
            (sealtrail_server::TEST_NOW_ENV, now),
        ],
    );
    let key = server.create_key("acme", "ingest");
    let live: Vec<serde_json::Value> = (0..5)
        .map(|index| {
            let mut event = common::event("acme", &format!("live-{index}"));
            event["timestamp"] = sealtrail_model::format_timestamp(now_ns - HOUR_NS).into();
            event
        })
        .collect();
    let (status, body) = common::post_json(
        &server.url("/v1/events"),
        &key,
        &serde_json::Value::Array(live),
    );
    assert_eq!(status, 201, "{body}");
    assert!(server.signal_and_wait("TERM").success());
    // Then a year's history (seq 6-25, 200 to 10 days old) with `sealtrail import`.
    let history = dir.path().join("history.ndjson");
    let lines: Vec<String> = (0..20)
        .map(|index| {
            let mut event = common::event("acme", &format!("history-{index:02}"));
            event["timestamp"] =
                sealtrail_model::format_timestamp(now_ns - (200 - index * 10) * DAY_NS).into();
            event.to_string()
        })
        .collect();
    std::fs::write(&history, lines.join("\n")).unwrap();
    let (code, output) = sealtrail(
        &["import"],
        &data_dir,
        &[history.display().to_string()],
        &[],
    );
    assert_eq!(code, 0, "{output}");

    let (code, output) = lifecycle_run_at(now, &data_dir, &[], &[]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("tenant acme: 0 events moved"), "{output}");
    let cutoff = sealtrail_model::format_timestamp(now_ns - 30 * DAY_NS);
    let first = sealtrail_model::format_timestamp(now_ns - HOUR_NS);
    assert!(
        output.contains(&format!(
            "tenant acme: events older than the cutoff {cutoff} stay hot from seq 6 on, \
             because the lifecycle moves only a seq prefix of the hot tier and seq 1 ({first}) \
             is not older than the cutoff"
        )),
        "{output}"
    );
    // Nothing moved, and the log is intact.
    assert_eq!(stored_event_ids(&data_dir, "acme").len(), 25);
    let (code, output) = verify(&data_dir, &[], &[]);
    assert_eq!(code, 0, "{output}");
}
