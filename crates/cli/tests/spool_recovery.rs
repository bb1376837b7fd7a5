//! The async spool end to end: a killed server's spool segment is damaged on disk, and the
//! restarted server commits every intact acknowledged event exactly once, sets the damaged
//! segment aside for inspection, and refuses a segment of a format it does not read.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// Segment header bytes (magic, version) and record header bytes (see `spool.rs`).
const SEGMENT_HEADER_BYTES: usize = 12;
const RECORD_HEADER_BYTES: usize = 24;

/// Byte ranges of a spool segment's records, from their length fields.
fn record_ranges(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = SEGMENT_HEADER_BYTES;
    while start < bytes.len() {
        let length = u32::from_le_bytes(bytes[start + 12..start + 16].try_into().unwrap());
        let end = start + RECORD_HEADER_BYTES + length as usize;
        ranges.push(start..end);
        start = end;
    }
    assert_eq!(start, bytes.len());
    ranges
}

/// The `event_id`s of one record's payload.
fn record_event_ids(bytes: &[u8], range: &std::ops::Range<usize>) -> Vec<String> {
    let payload: Vec<Value> =
        serde_json::from_slice(&bytes[range.start + RECORD_HEADER_BYTES..range.end]).unwrap();
    payload
        .iter()
        .map(|event| event["event_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_damaged_spool_of_a_killed_server_loses_only_its_damaged_records() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    // Hold SQLite's write lock so nothing commits: every acknowledged request stays spooled.
    let blocker = rusqlite::Connection::open(dir.path().join("hot.sqlite3")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut acked = Vec::new();
    for request in 0..12 {
        let batch: Vec<Value> = (0..5)
            .map(|n| event("acme", &format!("spooled-{request}-{n}")))
            .collect();
        let (status, body, _) = post_raw(
            &server.url("/v1/events?durability=async"),
            ADMIN_TOKEN,
            "application/json",
            Value::Array(batch.clone()).to_string().as_bytes(),
        );
        assert_eq!(status, 202, "{body}");
        acked.extend(
            batch
                .iter()
                .map(|event| event["event_id"].as_str().unwrap().to_owned()),
        );
    }
    assert!(!server.signal_and_wait("KILL").success());
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    assert!(stored_event_ids(dir.path(), "acme").is_empty());

    // Damage the segment: a flipped payload byte in record 2, a flipped record number in
    // record 5's header, and a final write torn in the middle of record 11.
    let segment = dir.path().join("spool").join("000000000001.spool");
    let pristine = std::fs::read(&segment).unwrap();
    let ranges = record_ranges(&pristine);
    assert_eq!(ranges.len(), 12, "one record per acknowledged request");
    let mut bytes = pristine.clone();
    bytes[ranges[2].end - 3] ^= 0x04;
    bytes[ranges[5].start + 6] ^= 0x80;
    bytes.truncate(ranges[11].start + RECORD_HEADER_BYTES + 10);
    std::fs::write(&segment, &bytes).unwrap();
    let lost: Vec<String> = [2, 5, 11]
        .iter()
        .flat_map(|&record| record_event_ids(&pristine, &ranges[record]))
        .collect();

    // Restart: the intact records replay; the damaged segment is set aside, byte for byte.
    let server = Server::start(dir.path());
    let (status, _) = get(&server.url("/readyz"), "");
    assert_eq!(status, 200);
    assert!(server.signal_and_wait("TERM").success());
    let aside = dir.path().join("spool").join("000000000001.spool.damaged");
    assert_eq!(std::fs::read(&aside).unwrap(), bytes);
    assert!(!segment.exists());

    let stored = stored_event_ids(dir.path(), "acme");
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for event_id in &stored {
        *counts.entry(event_id).or_default() += 1;
    }
    for event_id in &acked {
        let expected = usize::from(!lost.contains(event_id));
        assert_eq!(
            counts.get(event_id.as_str()).copied().unwrap_or(0),
            expected,
            "{event_id}"
        );
    }
    assert_eq!(stored.len(), acked.len() - lost.len());
    // In the order they were acknowledged.
    let intact: Vec<&String> = acked.iter().filter(|id| !lost.contains(id)).collect();
    assert_eq!(stored.iter().collect::<Vec<_>>(), intact);

    // Another start replays nothing again: the set-aside segment is not read.
    let server = Server::start(dir.path());
    assert!(server.signal_and_wait("TERM").success());
    assert_eq!(stored_event_ids(dir.path(), "acme"), stored);
    assert!(aside.exists());
    let (code, output) = verify(dir.path(), None);
    assert_eq!(code, 0, "{output}");
}

#[test]
fn a_segment_of_an_unknown_format_version_stops_the_start_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let segment = spool.join("000000000001.spool");
    let mut bytes = b"SLTSPOOL".to_vec();
    bytes.extend_from_slice(&9u32.to_le_bytes());
    bytes.extend_from_slice(b"records of a future format");
    std::fs::write(&segment, &bytes).unwrap();

    let output = serve_until_exit(dir.path());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&segment.display().to_string()) && stderr.contains("version 9"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&segment).unwrap(), bytes, "left untouched");
}

fn serve_until_exit(data_dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sealtrail"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SEALTRAIL_LOG", "warn")
        .output()
        .unwrap()
}
