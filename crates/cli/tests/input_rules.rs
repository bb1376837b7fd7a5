//! Inputs the server once changed silently, against the real binary: a timestamp finer than
//! nanoseconds or on a leap second, a key repeated in one object, an integer beyond 64 bits.
//! Each is a 400 problem document naming the event and the field path, in a JSON body, an
//! array or NDJSON, and nothing of the request is written. A double is stored as the nearest
//! one to what was sent, in the canonical text docs/FORMAT.md specifies ("Numbers").

mod common;

use common::{get, post_raw, Server, ADMIN_TOKEN};
use serde_json::Value;

/// The server's clock in these tests (`SEALTRAIL_TEST_NOW`), so the timestamps below are never
/// too old or in the future, whatever the date the tests run.
const TEST_NOW: &str = "2026-01-15T12:00:00Z";

fn start(data_dir: &std::path::Path) -> Server {
    Server::start_with(
        data_dir,
        &[],
        &[
            ("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN),
            ("SEALTRAIL_TEST_NOW", TEST_NOW),
        ],
    )
}

/// An event's JSON text with `extra` (members, each followed by a comma) spliced in as text, so
/// a literal reaches the server exactly as written.
fn event_text(event_id: &str, extra: &str) -> String {
    format!(
        r#"{{{extra}"event_id":"{event_id}","tenant_id":"acme","actor_id":"alice","action":"login","resource_type":"session"}}"#
    )
}

/// The `metadata` text stored for `event_id` of tenant `acme`, read straight from the SQLite file.
fn stored_metadata(data_dir: &std::path::Path, event_id: &str) -> String {
    let conn = rusqlite::Connection::open_with_flags(
        data_dir.join("hot.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    conn.query_row(
        "SELECT metadata FROM events WHERE tenant_id = 'acme' AND event_id = ?1",
        [event_id],
        |row| row.get(0),
    )
    .unwrap()
}

/// A 400 problem document naming exactly `fields` (index, field path), each with a reason.
fn assert_refused(
    (status, body, _): (u16, Value, Option<String>),
    fields: &[(u64, &str)],
    case: &str,
) {
    assert_eq!(status, 400, "{case}: {body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("nothing was written"),
        "{case}: {body}"
    );
    let named: Vec<(u64, &str)> = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{case}: no errors in {body}"))
        .iter()
        .map(|error| {
            assert!(
                !error["reason"].as_str().unwrap_or("").is_empty(),
                "{case}: {body}"
            );
            (
                error["index"].as_u64().unwrap(),
                error["field"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(named, fields, "{case}: {body}");
}

#[test]
fn each_silently_changed_input_is_a_400_naming_the_field_and_writes_nothing() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path());
    let key = server.create_key("acme", "admin");
    let events = server.url("/v1/events");
    let post =
        |content_type: &str, body: &str| post_raw(&events, &key, content_type, body.as_bytes());
    let json = "application/json";

    let cases: [(&str, String, u64, &str); 7] = [
        (
            "ten fractional-second digits",
            event_text("e-1", r#""timestamp":"2026-01-15T11:00:00.1234567891Z","#),
            0,
            "timestamp",
        ),
        (
            "a leap second",
            event_text("e-1", r#""timestamp":"2025-12-31T23:59:60Z","#),
            0,
            "timestamp",
        ),
        (
            "a repeated event field",
            event_text("e-1", r#""actor_id":"mallory","#),
            0,
            "actor_id",
        ),
        (
            "a repeated key inside metadata",
            event_text("e-1", r#""metadata":{"role":"viewer","role":"admin"},"#),
            0,
            "metadata.role",
        ),
        (
            "an integer beyond u64",
            event_text("e-1", r#""metadata":{"count":18446744073709551616},"#),
            0,
            "metadata.count",
        ),
        (
            "an integer below i64, in an array",
            event_text("e-1", r#""metadata":{"deltas":[0,-9223372036854775809]},"#),
            0,
            "metadata.deltas[1]",
        ),
        (
            "an integer beyond u64 in changes",
            event_text(
                "e-1",
                r#""changes":{"before":{"n":1},"after":{"n":99999999999999999999}},"#,
            ),
            0,
            "changes.after.n",
        ),
    ];
    for (case, text, index, field) in &cases {
        assert_refused(post(json, text), &[(*index, field)], case);
        // The same event second in an array, beside a valid one that must not be written either.
        let array = format!("[{},{text}]", event_text("ok-1", ""));
        assert_refused(post(json, &array), &[(index + 1, field)], case);
        let ndjson = format!("{}\n{text}\n", event_text("ok-2", ""));
        assert_refused(
            post("application/x-ndjson", &ndjson),
            &[(index + 1, field)],
            case,
        );
    }
    let (status, body, _) = post(
        &format!("{json};charset=utf-8"),
        &format!(
            "[{},{}]",
            event_text("e-1", r#""metadata":{"a":1,"a":2,"b":{"c":1,"\u0063":2}},"#),
            event_text("e-2", r#""timestamp":"2026-01-15T11:00:00.0000000000Z","#),
        ),
    );
    assert_refused(
        (status, body, None),
        &[(0, "metadata.a"), (0, "metadata.b.c")],
        "every repeated key of a request is named, before validation",
    );
    assert_refused(
        post(
            json,
            &event_text("e-2", r#""timestamp":"2026-01-15T11:00:00.0000000000Z","#),
        ),
        &[(0, "timestamp")],
        "ten zero digits",
    );

    let (status, body) = get(&server.url("/v1/events?tenant_id=acme"), &key);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"], serde_json::json!([]), "nothing was written");
    assert!(common::stored_event_ids(data.path(), "acme").is_empty());
}

#[test]
fn numbers_are_stored_in_the_documented_canonical_text() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path());
    let key = server.create_key("acme", "admin");
    let metadata = r#"{"big":1e300,"e16":1E16,"e15":1e15,"small":0.000001,"e_5":0.00001,"near":1.5e-300,"negative_zero":-0,"u64_max":18446744073709551615,"i64_min":-9223372036854775808,"one":1.0}"#;
    let text = event_text(
        "numbers-1",
        &format!(r#""timestamp":"2026-01-15T11:00:00.123456789+01:00","metadata":{metadata},"#),
    );
    let (status, body, _) = post_raw(
        &server.url("/v1/events"),
        &key,
        "application/json",
        text.as_bytes(),
    );
    assert_eq!(status, 201, "{body}");
    let stored = stored_metadata(data.path(), "numbers-1");
    assert_eq!(
        stored,
        r#"{"big":1e+300,"e15":1000000000000000.0,"e16":1e+16,"e_5":0.00001,"i64_min":-9223372036854775808,"near":1.5e-300,"negative_zero":-0.0,"one":1.0,"small":1e-6,"u64_max":18446744073709551615}"#
    );
    let (status, body) = get(&server.url("/v1/events/numbers-1?tenant_id=acme"), &key);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["timestamp"], "2026-01-15T10:00:00.123456789Z");
}

#[test]
fn import_refuses_the_same_inputs_naming_line_and_field_and_writes_nothing() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("events.ndjson");
    for (text, named) in [
        (
            event_text("i-2", r#""metadata":{"count":18446744073709551616},"#),
            "line 2: metadata.count: is an integer outside the 64-bit range",
        ),
        (
            event_text("i-2", r#""metadata":{"k":1,"k":2},"#),
            "line 2: metadata.k: is given more than once",
        ),
        (
            event_text("i-2", r#""timestamp":"2020-01-01T00:00:00.1234567891Z","#),
            "line 2: timestamp: has 10 fractional-second digits",
        ),
    ] {
        std::fs::write(&file, format!("{}\n{text}\n", event_text("i-1", ""))).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sealtrail"))
            .arg("import")
            .arg("--data-dir")
            .arg(data.path())
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{named}: {stderr}");
        assert!(stderr.contains(named), "{named}: {stderr}");
        assert!(
            !data.path().join("hot.sqlite3").exists()
                || common::stored_event_ids(data.path(), "acme").is_empty(),
            "{named}: nothing is imported"
        );
    }
}

/// Runs the binary; returns the exit code and stdout then stderr.
fn sealtrail(args: &[&str]) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sealtrail"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn bundles_of_doubles_a_fast_parser_misreads_still_verify() {
    // `1.5e-300` is stored as written; serde_json's default parser reads it one unit in the
    // last place low, which would re-serialise to another text, and another hash.
    assert_ne!(
        serde_json::from_str::<f64>("1.5e-300").unwrap().to_bits(),
        1.5e-300_f64.to_bits()
    );
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path());
    let key = server.create_key("acme", "admin");
    let text = event_text(
        "doubles-1",
        r#""metadata":{"near":1.5e-300,"list":[2.5e-7,1e300,-0.0]},"#,
    );
    let (status, body, _) = post_raw(
        &server.url("/v1/events"),
        &key,
        "application/json",
        text.as_bytes(),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        stored_metadata(data.path(), "doubles-1"),
        r#"{"list":[2.5e-7,1e+300,-0.0],"near":1.5e-300}"#
    );
    assert!(server.signal_and_wait("TERM").success());

    let data_dir = data.path().to_str().unwrap();
    let (code, verifier) = sealtrail(&["keys", "show-verifier", "--data-dir", data_dir]);
    assert_eq!(code, 0, "{verifier}");
    let out = tempfile::tempdir().unwrap();
    for bundle in [out.path().join("bundle"), out.path().join("bundle.json")] {
        let bundle = bundle.to_str().unwrap();
        let (code, output) = sealtrail(&[
            "bundle",
            "--data-dir",
            data_dir,
            "--tenant",
            "acme",
            "--out",
            bundle,
        ]);
        assert_eq!(code, 0, "{output}");
        let (code, output) = sealtrail(&["verify-bundle", bundle, "--key", verifier.trim()]);
        assert_eq!(code, 0, "{bundle}: {output}");
    }
}
