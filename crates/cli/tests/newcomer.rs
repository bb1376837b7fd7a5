//! The newcomer's path through the real binary: help texts that say what each command does,
//! logs without colour codes in a pipe, output into a pipe that closes early, an import run
//! twice, and the API refusing numbers and characters it cannot store faithfully.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{event, get, post_json, Server, ADMIN_TOKEN};
use serde_json::json;

fn sealtrail(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sealtrail"))
        .args(args)
        .env_remove("SEALTRAIL_DATA_DIR")
        .output()
        .expect("running sealtrail")
}

fn help(args: &[&str]) -> String {
    let output = sealtrail(args);
    assert!(output.status.success(), "{args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// The text clap prints beside `flag` in a help listing, continuation lines included.
fn flag_help<'a>(help: &'a str, flag: &str) -> &'a str {
    let start = help
        .find(flag)
        .unwrap_or_else(|| panic!("{flag} is not in the help:\n{help}"));
    let rest = &help[start + flag.len()..];
    let end = rest.find("\n  -").unwrap_or(rest.len());
    rest[..end].trim()
}

#[test]
fn help_texts_say_what_every_command_and_flag_does() {
    let top = help(&["--help"]);
    assert!(
        !top.contains("serve, verify."),
        "the description must not list two commands only:\n{top}"
    );
    for command in [
        "import",
        "lifecycle",
        "verify",
        "bundle",
        "retention",
        "keys",
    ] {
        assert!(
            top.lines()
                .next()
                .is_some_and(|about| about.contains(command)),
            "the first line of --help must mention {command}:\n{top}"
        );
    }
    let lifecycle = top
        .lines()
        .find(|line| line.trim_start().starts_with("lifecycle"))
        .unwrap();
    assert!(
        !lifecycle.contains("hot to warm") && lifecycle.contains("cold"),
        "{lifecycle}"
    );
    assert!(lifecycle.contains("retention"), "{lifecycle}");

    let serve = help(&["serve", "--help"]);
    for variable in ["SEALTRAIL_ADMIN_TOKEN", "SEALTRAIL_LOG"] {
        assert!(serve.contains(variable), "serve --help lacks {variable}");
    }
    let queue = flag_help(&serve, "--async-queue-events-max <ASYNC_QUEUE_EVENTS_MAX>");
    assert!(!queue.contains("sealtrail_model"), "{queue}");
    assert!(queue.contains("[default: 200000]"), "{queue}");

    for command in [
        &["bundle", "--help"][..],
        &["retention", "set", "--help"],
        &["retention", "show", "--help"],
    ] {
        let text = help(command);
        let tenant = flag_help(&text, "--tenant <TENANT>");
        assert!(
            tenant.to_lowercase().contains("tenant"),
            "{command:?}: --tenant has no help: {tenant:?}"
        );
    }
}

#[test]
fn logs_in_a_pipe_carry_no_colour_codes() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealtrail"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SEALTRAIL_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !String::from_utf8_lossy(&line).contains("listening on") {
        assert!(Instant::now() < deadline, "serve never said it listens");
        let mut byte = [0u8];
        if stdout.read(&mut byte).unwrap() == 0 {
            break;
        }
        line.push(byte[0]);
    }
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(stderr.contains("starting"), "no log lines: {stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI escape codes in piped logs: {stderr:?}"
    );
}

/// `count` events of `tenant_id`, one a day from 2020-01-01: old enough for every tier.
fn history(tenant_id: &str, count: usize, first: usize) -> String {
    (first..first + count)
        .map(|n| {
            let day = 1 + n % 28;
            let month = 1 + (n / 28) % 12;
            json!({
                "event_id": format!("{tenant_id}-{n}"),
                "tenant_id": tenant_id,
                "actor_id": "importer",
                "action": "update",
                "resource_type": "document",
                "timestamp": format!("2020-{month:02}-{day:02}T12:00:00Z"),
            })
            .to_string()
                + "\n"
        })
        .collect()
}

fn import(data_dir: &Path, file: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_sealtrail"))
        .arg("import")
        .arg("--data-dir")
        .arg(data_dir)
        .arg(file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "import failed: {stderr}");
    stderr
}

#[test]
fn a_second_import_of_the_same_file_reports_events_already_present() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("history.ndjson");
    std::fs::write(&file, history("t1", 30, 0) + &history("t2", 20, 0)).unwrap();
    let first = import(data.path(), &file);
    assert!(
        first.contains("imported 50 new events; 0 already present"),
        "{first}"
    );
    let again = import(data.path(), &file);
    assert!(
        again.contains("imported 0 new events; 50 already present"),
        "{again}"
    );
    // t1-10..=t1-29 stored, t1-30..=t1-40 new, t1-30 twice in the file, t2 all stored.
    let t1_30 = history("t1", 1, 30);
    std::fs::write(
        &file,
        history("t1", 31, 10) + &t1_30 + &history("t2", 20, 0),
    )
    .unwrap();
    let mixed = import(data.path(), &file);
    assert!(
        mixed.contains("imported 11 new events; 41 already present"),
        "{mixed}"
    );
    assert_eq!(common::stored_event_ids(data.path(), "t1").len(), 41);
}

#[test]
fn a_reader_that_stops_early_makes_no_command_panic() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("history.ndjson");
    let tenants: String = (0..4).map(|t| history(&format!("t{t}"), 3, 0)).collect();
    std::fs::write(&file, tenants).unwrap();
    import(data.path(), &file);
    // `sealtrail lifecycle run | head -0`: the reader is gone before the first line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealtrail"))
        .args([
            "lifecycle",
            "run",
            "--now",
            "2026-06-15T00:00:00Z",
            "--data-dir",
        ])
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(status.success(), "{status}: {stderr}");
    // The run did its work although nobody read its report: the hot tier is empty.
    assert!(common::stored_event_ids(data.path(), "t0").is_empty());
    let (code, output) = common::verify(data.path(), None);
    assert_eq!(code, 0, "{output}");
}

#[test]
fn the_api_refuses_numbers_it_would_wrap_and_invisible_identifiers() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let (status, body) = post_json(
        &server.url("/v1/events"),
        ADMIN_TOKEN,
        &json!([event("acme", "e1"), event("acme", "e2")]),
    );
    assert_eq!(status, 201, "{body}");

    // "c1.a.18446744073709551615": u64::MAX, which used to wrap to -1 and list every event.
    let cursor = "YzEuYS4xODQ0Njc0NDA3MzcwOTU1MTYxNQ";
    for query in [
        format!("/v1/events?tenant_id=acme&order=asc&cursor={cursor}"),
        "/v1/events?tenant_id=acme&cursor=c1.a.18446744073709551615".to_owned(),
    ] {
        let (status, body) = get(&server.url(&query), ADMIN_TOKEN);
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["errors"][0]["field"], "cursor", "{body}");
    }
    let (status, body) = get(
        &server.url("/v1/tenants/acme/checkpoint?tree_size=18446744073709551615"),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "tree_size", "{body}");

    for (field, value) in [
        ("actor_id", "admin\u{202E}nimda"),
        ("event_id", "e\u{200B}3"),
        ("resource_id", "doc\u{2028}7"),
        ("request_id", "req\u{FEFF}"),
        ("user_agent", "curl\u{2066}/8"),
    ] {
        let mut invisible = event("acme", "e3");
        invisible[field] = json!(value);
        let (status, body) = post_json(&server.url("/v1/events"), ADMIN_TOKEN, &invisible);
        assert_eq!(status, 400, "{field}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{body}");
    }
    let (status, body) = get(&server.url("/v1/events?tenant_id=acme"), ADMIN_TOKEN);
    assert_eq!(status, 200);
    assert_eq!(body["events"].as_array().unwrap().len(), 2, "{body}");
}
