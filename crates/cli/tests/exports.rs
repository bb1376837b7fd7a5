//! Export jobs end to end: every format written, read back by a standard reader (Python's csv
//! module, pyarrow) and verified offline with `sealtrail verify-bundle`; tampered files and
//! bundles refused; a SIGKILL mid-job; other tenants kept out; bad input refused naming its
//! field. Across a lifecycle pass (warm and hot tiers) on SQLite and on PostgreSQL.

mod common;
mod lifecycle_harness;
#[path = "common/receivers.rs"]
mod receivers;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{delete, get, get_bytes, post_json, sealtrail, wait_until, Server, ADMIN_TOKEN};
use serde_json::{json, Value};

const DAY_NS: i64 = 86_400 * 1_000_000_000;
const FORMATS: [&str; 4] = ["ndjson", "csv", "parquet", "ocsf"];

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn stamp(ns: i64) -> String {
    sealtrail_model::format_timestamp(ns)
}

/// Event `n` of `tenant` at `at_ns`: every third a failed login, every fifth a delete, and
/// metadata a CSV writer must quote (commas, quotes, a newline, non-ASCII, a decimal).
fn event(tenant: &str, n: i64, at_ns: i64) -> Value {
    let (action, outcome) = match n {
        n if n % 3 == 0 => ("login", "failure"),
        n if n % 5 == 0 => ("delete", "success"),
        _ => ("update", "success"),
    };
    json!({"event_id": format!("{tenant}-{n:04}"), "tenant_id": tenant,
        "actor_id": format!("user-{}", n % 4), "action": action, "outcome": outcome,
        "resource_type": "document", "resource_id": format!("doc-{n}"),
        "ip_address": "203.0.113.7", "user_agent": "Mozilla/5.0 (X11, \"quoted\")",
        "timestamp": stamp(at_ns),
        "changes": {"before": {"title": "a, b"}, "after": {"title": "line\nbreak \u{e9}"}},
        "metadata": {"ratio": 0.1, "n": n, "note": "x\"y"}})
}

fn post_events(server: &Server, events: &[Value]) {
    for chunk in events.chunks(500) {
        let (status, body) = post_json(&server.url("/v1/events"), ADMIN_TOKEN, &json!(chunk));
        assert_eq!(status, 201, "{body}");
    }
}

/// Requests an export and waits for it to finish; returns the job.
fn export(server: &Server, key: &str, body: &Value) -> Value {
    let (status, job) = post_json(&server.url("/v1/exports"), key, body);
    assert_eq!(status, 202, "{job}");
    wait_done(server, key, job["export_id"].as_str().unwrap())
}

fn wait_done(server: &Server, key: &str, export_id: &str) -> Value {
    let url = server.url(&format!("/v1/exports/{export_id}?tenant_id=acme"));
    let mut job = Value::Null;
    assert!(
        wait_until(120, || {
            let (status, body) = get(&url, key);
            assert_eq!(status, 200, "{body}");
            job = body;
            !matches!(job["state"].as_str(), Some("queued" | "running"))
        }),
        "export {export_id} did not finish: {job}"
    );
    assert_eq!(job["state"], "done", "{job}");
    job
}

fn download(server: &Server, key: &str, export_id: &str, part: &str) -> (u16, Vec<u8>) {
    get_bytes(
        &server.url(&format!(
            "/v1/exports/{export_id}/download?tenant_id=acme&part={part}"
        )),
        key,
    )
}

/// Downloads an export into `dir` as `sealtrail export` lays it out; returns the data file.
fn fetch(server: &Server, key: &str, job: &Value, dir: &Path) -> PathBuf {
    let export_id = job["export_id"].as_str().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let extension = match job["format"].as_str().unwrap() {
        "ocsf" => "ocsf.ndjson",
        "report" => "ndjson",
        other => other,
    };
    let data = dir.join(format!("events.{extension}"));
    let (status, bytes) = download(server, key, export_id, "data");
    assert_eq!(status, 200);
    std::fs::write(&data, bytes).unwrap();
    let (status, bytes) = download(server, key, export_id, "bundle");
    assert_eq!(status, 200);
    std::fs::write(dir.join("bundle.ndjson"), bytes).unwrap();
    data
}

fn verifier_key(data_dir: &Path) -> String {
    let (code, key) = sealtrail(&[
        "keys",
        "show-verifier",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{key}");
    key.trim().to_owned()
}

fn verify_bundle(dir: &Path, file: Option<&Path>, key: &str) -> (i32, String) {
    let mut args = vec!["verify-bundle", dir.to_str().unwrap(), "--key", key];
    if let Some(file) = file {
        args.extend(["--file", file.to_str().unwrap()]);
    }
    sealtrail(&args)
}

fn python(script: &str, args: &[&str]) -> String {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn events_of(server: &Server, action: &str) -> Vec<Value> {
    let (status, body) = get(
        &server.url(&format!(
            "/v1/events?tenant_id=acme&action={action}&limit=1000"
        )),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().clone()
}

#[test]
fn exports_in_every_format_verify_across_tiers_and_a_sigkill_on_sqlite() {
    exports_across_tiers_and_time(None);
}

#[test]
fn exports_in_every_format_verify_across_tiers_and_a_sigkill_on_postgres() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let database = runtime.block_on(sealtrail_hot_postgres::testing::TestDatabase::create());
    exports_across_tiers_and_time(Some(&database.url()));
}

/// 300 events of 45 days ago moved to the warm tier by a lifecycle pass, 60 of an hour ago in
/// the hot tier, another tenant's beside them; an export of each format over both tiers, read
/// back by standard readers and verified offline; a SIGKILL while a job runs; then `verify`.
fn exports_across_tiers_and_time(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let serve_args = common::on_backend(&[], database_url);
    let serve_args: Vec<&str> = serve_args.iter().map(String::as_str).collect();
    let env = [("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)];
    let server = Server::start_with(dir.path(), &serve_args, &env);
    let old_ns = now_ns() - 45 * DAY_NS;
    let mut old: Vec<Value> = (0..300)
        .map(|n| event("acme", n, old_ns + n * 1_000_000_000))
        .collect();
    old.extend((0..50).map(|n| event("other", n, old_ns + n * 1_000_000_000)));
    post_events(&server, &old);
    server.signal_and_wait("TERM");
    common::move_older_than_30_days(&data, database_url);

    let server = Server::start_with(dir.path(), &serve_args, &env);
    // A retry of an archived event gets its stored receipt and stores nothing again.
    let (status, body) = post_json(&server.url("/v1/events"), ADMIN_TOKEN, &json!([old[7]]));
    assert_eq!(
        (status, &body["results"][0]["seq"]),
        (201, &json!(8)),
        "{body}"
    );
    let recent_ns = now_ns() - 3_600 * 1_000_000_000;
    let recent: Vec<Value> = (300..360)
        .map(|n| event("acme", n, recent_ns + n * 1_000_000))
        .collect();
    post_events(&server, &recent);
    let reader = server.create_key("acme", "reader");
    // The range ends before the export events the requests themselves add.
    let until = stamp(now_ns() - 60 * 1_000_000_000);
    let key = verifier_key(dir.path());
    let expected_ids: Vec<String> = (0..360).map(|n| format!("acme-{n:04}")).collect();

    for format in FORMATS {
        let job = export(&server, &reader, &json!({"format": format, "to": until}));
        assert_eq!(job["events_written"], 360, "{format}: {job}");
        let out = dir.path().join(format!("export-{format}"));
        let file = fetch(&server, &reader, &job, &out);
        let (code, output) = verify_bundle(&out, None, &key);
        assert_eq!(code, 0, "{format}: {output}");
        assert!(
            output.contains("ok") && output.contains("360 events"),
            "{output}"
        );
        let ids = match format {
            "csv" => python(
                "import csv,json,sys\nrows=list(csv.DictReader(open(sys.argv[1],newline='')))\n\
                 assert json.loads(rows[1]['metadata'])=={'ratio':0.1,'n':1,'note':'x\"y'}, rows[1]\n\
                 assert json.loads(rows[1]['changes'])['after']['title']=='line\\nbreak \\u00e9'\n\
                 print('\\n'.join(r['event_id'] for r in rows))",
                &[file.to_str().unwrap()],
            ),
            "parquet" => python(
                "import pyarrow.parquet as pq,sys\nt=pq.read_table(sys.argv[1])\n\
                 assert t.schema.field('seq').type=='int64'\n\
                 print('\\n'.join(t.column('event_id').to_pylist()))",
                &[file.to_str().unwrap()],
            ),
            "ocsf" => {
                let text = std::fs::read_to_string(&file).unwrap();
                let records: Vec<Value> =
                    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
                for record in &records {
                    for field in ["class_uid", "category_uid", "activity_id", "time"] {
                        assert!(record[field].is_number(), "{field}: {record}");
                    }
                    assert!(record["metadata"]["version"].is_string(), "{record}");
                }
                assert_eq!(records[0]["class_uid"], 3002, "a login is Authentication");
                assert_eq!(records[1]["class_uid"], 6003, "an update is API Activity");
                records
                    .iter()
                    .map(|record| {
                        let raw: Value =
                            serde_json::from_str(record["raw_data"].as_str().unwrap()).unwrap();
                        raw["event_id"].as_str().unwrap().to_owned()
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            _ => std::fs::read_to_string(&file)
                .unwrap()
                .lines()
                .map(|line| {
                    let event: Value = serde_json::from_str(line).unwrap();
                    assert!(event.get("tier").is_none(), "{event}");
                    event["event_id"].as_str().unwrap().to_owned()
                })
                .collect::<Vec<_>>()
                .join("\n"),
        };
        let ids: Vec<&str> = ids.lines().collect();
        assert_eq!(
            ids, expected_ids,
            "{format}: every event once, in seq order"
        );
    }
    // Each request, completion and download is in the tenant's log.
    assert_eq!(events_of(&server, "export.requested").len(), 4);
    assert_eq!(events_of(&server, "export.completed").len(), 4);
    assert_eq!(events_of(&server, "export.downloaded").len(), 8);

    // A SIGKILL right after a job is accepted: after the restart it runs again and finishes,
    // and it was never done with a partial file.
    let (status, job) = post_json(
        &server.url("/v1/exports"),
        &reader,
        &json!({"format": "parquet", "to": until}),
    );
    assert_eq!(status, 202, "{job}");
    let export_id = job["export_id"].as_str().unwrap().to_owned();
    server.signal_and_wait("KILL");
    let server = Server::start_with(dir.path(), &serve_args, &env);
    let job = wait_done(&server, &reader, &export_id);
    assert_eq!(job["events_written"], 360, "{job}");
    let out = dir.path().join("export-after-kill");
    fetch(&server, &reader, &job, &out);
    let (code, output) = verify_bundle(&out, None, &key);
    assert_eq!(code, 0, "{output}");
    let completed: Vec<Value> = events_of(&server, "export.completed")
        .into_iter()
        .filter(|event| event["resource_id"] == export_id.as_str())
        .collect();
    assert_eq!(completed.len(), 1, "completed once: {completed:?}");
    server.signal_and_wait("TERM");

    let (code, output) = common::sealtrail_on(&["verify", "--data-dir", &data], database_url);
    assert_eq!(code, 0, "{output}");
}

/// Rewrites `file` through `change` (its lines).
fn edit_lines(file: &Path, change: impl FnOnce(&mut Vec<String>)) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    change(&mut lines);
    std::fs::write(file, lines.join("\n") + "\n").unwrap();
}

/// Copies an export directory, applies `tamper` to the copy, and asserts `verify-bundle`
/// refuses it with `expected` in its message.
fn assert_refused(out: &Path, key: &str, case: &str, expected: &str, tamper: impl FnOnce(&Path)) {
    let copy = out.with_file_name(format!(
        "{}-{}",
        out.file_name().unwrap().to_str().unwrap(),
        case.replace(' ', "-")
    ));
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(out).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
    }
    tamper(&copy);
    let (code, output) = verify_bundle(&copy, None, key);
    assert_eq!(code, 1, "{case}: {output}");
    assert!(
        output.contains("FAILED") && output.contains(expected),
        "{case}: expected {expected:?} in {output}"
    );
}

#[test]
fn a_tampered_export_is_refused_and_a_filtered_one_proves_nothing_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let base_ns = now_ns() - 2 * 3_600 * 1_000_000_000;
    let events: Vec<Value> = (0..120)
        .map(|n| event("acme", n, base_ns + n * 1_000_000_000))
        .collect();
    post_events(&server, &events);
    let reader = server.create_key("acme", "reader");
    let key = verifier_key(dir.path());
    let until = stamp(now_ns() - 60 * 1_000_000_000);

    let mut outs = std::collections::HashMap::new();
    for format in FORMATS {
        let job = export(&server, &reader, &json!({"format": format, "to": until}));
        let out = dir.path().join(format!("x-{format}"));
        fetch(&server, &reader, &job, &out);
        let (code, output) = verify_bundle(&out, None, &key);
        assert_eq!(code, 0, "{format}: {output}");
        outs.insert(format, out);
    }
    let ndjson = &outs["ndjson"];
    let data = |dir: &Path| dir.join("events.ndjson");
    assert_refused(ndjson, &key, "edited row", "content changed", |dir| {
        edit_lines(&data(dir), |lines| {
            lines[10] = lines[10].replace("\"user-2\"", "\"user-3\"");
        })
    });
    assert_refused(ndjson, &key, "removed row", "event missing", |dir| {
        edit_lines(&data(dir), |lines| {
            lines.remove(40);
        })
    });
    assert_refused(
        ndjson,
        &key,
        "added row",
        "out of order or repeated",
        |dir| {
            edit_lines(&data(dir), |lines| {
                let copy = lines[7].clone();
                lines.insert(8, copy);
            })
        },
    );
    assert_refused(ndjson, &key, "reordered rows", "moved", |dir| {
        edit_lines(&data(dir), |lines| lines.swap(20, 21))
    });
    assert_refused(ndjson, &key, "last row cut", "event missing", |dir| {
        edit_lines(&data(dir), |lines| {
            lines.pop();
        })
    });
    // A bundle claiming another range than it was issued for: the statement no longer states it.
    assert_refused(ndjson, &key, "wider claim", "statement", |dir| {
        edit_lines(&dir.join("bundle.ndjson"), |lines| {
            let mut header: Value = serde_json::from_str(&lines[0]).unwrap();
            header["filters"]["from"] = stamp(base_ns - DAY_NS).into();
            lines[0] = header.to_string();
        })
    });
    assert_refused(
        &outs["csv"],
        &key,
        "edited cell",
        "content changed",
        |dir| {
            edit_lines(&dir.join("events.csv"), |lines| {
                lines[5] = lines[5].replacen("document", "folder", 1);
            })
        },
    );
    assert_refused(
        &outs["parquet"],
        &key,
        "parquet row dropped",
        "event missing",
        |dir| {
            let file = dir.join("events.parquet");
            python(
                "import pyarrow.parquet as pq,sys\nt=pq.read_table(sys.argv[1])\n\
             pq.write_table(t.slice(0,t.num_rows-1),sys.argv[1])",
                &[file.to_str().unwrap()],
            );
        },
    );
    assert_refused(
        &outs["ocsf"],
        &key,
        "ocsf attribute",
        "not the mapping",
        |dir| {
            edit_lines(&dir.join("events.ocsf.ndjson"), |lines| {
                lines[0] = lines[0].replace("\"class_uid\":3002", "\"class_uid\":6003");
            })
        },
    );

    // Filtered: failed logins of one actor. The bundle carries the span's other events, so a
    // matching row dropped from the file is caught; the unfiltered file does not pass as it.
    let filters = json!({"action": "login", "actor_id": "user-0"});
    let job = export(
        &server,
        &reader,
        &json!({"format": "ndjson", "to": until, "filters": filters}),
    );
    let expected = (0..120).filter(|n| n % 3 == 0 && n % 4 == 0).count();
    assert_eq!(job["events_written"], expected, "{job}");
    let filtered = dir.path().join("x-filtered");
    fetch(&server, &reader, &job, &filtered);
    let (code, output) = verify_bundle(&filtered, None, &key);
    assert_eq!(code, 0, "{output}");
    assert_refused(
        &filtered,
        &key,
        "matching row dropped",
        "event missing",
        |dir| {
            edit_lines(&data(dir), |lines| {
                lines.remove(2);
            })
        },
    );
    assert_refused(
        &filtered,
        &key,
        "matching row moved to the witnesses",
        "missing from the file",
        |dir| {
            let mut moved = String::new();
            edit_lines(&data(dir), |lines| moved = lines.remove(2));
            let seq = |line: &str| {
                serde_json::from_str::<Value>(line).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            };
            edit_lines(&dir.join("bundle.ndjson"), |lines| {
                let at = 1 + lines[1..]
                    .iter()
                    .take_while(|line| seq(line) < seq(&moved))
                    .count();
                lines.insert(at, moved.clone());
            });
        },
    );
    let (code, output) = verify_bundle(&filtered, Some(&data(ndjson)), &key);
    assert_eq!(
        code, 1,
        "the unfiltered file is not the filtered export: {output}"
    );

    // The CLI runs the same kind of job, shows progress, downloads and verifies.
    let out = dir.path().join("cli");
    let (code, output) = sealtrail(&[
        "export",
        "--server",
        &server.base,
        "--api-key",
        &reader,
        "--format",
        "csv",
        "--to",
        &until,
        "--filter",
        "outcome=failure",
        "--out",
        out.to_str().unwrap(),
        "--verify-key",
        &key,
    ]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("events read") && output.contains("ok "),
        "{output}"
    );
}

#[test]
fn export_jobs_belong_to_their_tenant_and_bad_requests_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    post_events(
        &server,
        &[event("acme", 1, now_ns()), event("globex", 1, now_ns())],
    );
    let acme = server.create_key("acme", "reader");
    let globex = server.create_key("globex", "reader");
    let ingest = server.create_key("acme", "ingest");
    let exports = server.url("/v1/exports");

    for (body, field) in [
        (json!({"format": "xlsx"}), "format"),
        (json!({}), "format"),
        (json!({"format": "csv", "from": "yesterday"}), "from"),
        (
            json!({"format": "csv", "from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}),
            "to",
        ),
        (
            json!({"format": "csv", "filters": {"colour": "red"}}),
            "filters.colour",
        ),
        (
            json!({"format": "csv", "filters": {"outcome": "maybe"}}),
            "filters.outcome",
        ),
        (
            json!({"format": "csv", "filters": {"from": "2026-01-01T00:00:00Z"}}),
            "filters.from",
        ),
        (json!({"format": "csv", "shape": 1}), "shape"),
    ] {
        let (status, answer) = post_json(&exports, &acme, &body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer.to_string().contains(field),
            "{body} names {field}: {answer}"
        );
    }
    let (status, _) = post_json(&exports, &ingest, &json!({"format": "csv"}));
    assert_eq!(status, 403, "an ingest key does not read");
    let (status, _) = post_json(&exports, "", &json!({"format": "csv"}));
    assert_eq!(status, 401);
    let (status, body) = get(&exports, &acme);
    assert_eq!(
        (status, body["exports"].as_array().unwrap().len()),
        (200, 0),
        "{body}"
    );
    assert!(
        events_of(&server, "export.requested").is_empty(),
        "refused requests wrote nothing"
    );

    let job = export(&server, &acme, &json!({"format": "ndjson"}));
    let export_id = job["export_id"].as_str().unwrap();
    let own = format!("/v1/exports/{export_id}");
    for path in [own.clone(), format!("{own}/download")] {
        let (status, body) = get(&server.url(&path), &globex);
        assert_eq!(status, 404, "another tenant's job is not there: {body}");
    }
    let (status, body) = get(&server.url(&format!("{own}?tenant_id=acme")), &globex);
    assert_eq!(status, 403, "{body}");
    let (status, _) = delete(&server.url(&own), &globex);
    assert_eq!(status, 404);
    let (status, body) = get(&exports, &globex);
    assert_eq!(
        body["exports"].as_array().unwrap().len(),
        0,
        "{status} {body}"
    );
    let (status, body) = get(&exports, &acme);
    assert_eq!(
        body["exports"].as_array().unwrap().len(),
        1,
        "{status} {body}"
    );

    // Deleting a done export removes its files; it cannot be downloaded afterwards.
    let (status, body) = delete(&server.url(&own), &acme);
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("expired")),
        "{body}"
    );
    let (status, _) = download(&server, &acme, export_id, "data");
    assert_eq!(status, 409);
    let export_dir = dir
        .path()
        .join("warm")
        .join("_exports")
        .join("acme")
        .join(export_id);
    assert!(
        !export_dir.join("events.ndjson").exists(),
        "the file is gone from the warm store"
    );
    assert_eq!(events_of(&server, "export.deleted").len(), 1);
}

#[test]
fn a_compliance_report_states_the_period_and_its_verification_in_html_and_pdf() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let base_ns = now_ns() - 3_600 * 1_000_000_000;
    let mut events: Vec<Value> = (0..30)
        .map(|n| event("acme", n, base_ns + n * 1_000_000_000))
        .collect();
    events.push(
        json!({"event_id": "grant-1", "tenant_id": "acme", "actor_id": "root",
        "action": "permission_grant", "resource_type": "role", "resource_id": "billing-admin",
        "timestamp": stamp(base_ns + 40 * 1_000_000_000)}),
    );
    post_events(&server, &events);
    let (status, _) = put_json_status(
        &server,
        "/v1/tenants/acme/retention",
        &json!({"retention_years": 7, "legal_hold": true}),
    );
    assert_eq!(status, 200);
    let reader = server.create_key("acme", "reader");
    let until = stamp(now_ns() - 60 * 1_000_000_000);
    let job = export(&server, &reader, &json!({"format": "report", "to": until}));
    let export_id = job["export_id"].as_str().unwrap();
    let (status, html) = download(&server, &reader, export_id, "html");
    assert_eq!(status, 200);
    let html = String::from_utf8(html).unwrap();
    for expected in [
        "Audit evidence report: tenant acme",
        "PASSED",
        "permission_grant",
        "billing-admin",
        "retention_years=7",
        "Legal hold: on",
        "Failed logins per day",
        "sealtrail verify-bundle",
    ] {
        assert!(html.contains(expected), "{expected} in {html}");
    }
    let (status, pdf) = download(&server, &reader, export_id, "pdf");
    assert_eq!(status, 200);
    assert!(pdf.starts_with(b"%PDF-"), "a PDF");
    let text = String::from_utf8_lossy(&pdf);
    assert!(
        text.contains("PASSED") && text.contains("permission_grant"),
        "{text}"
    );
    // The report's evidence verifies offline like any export.
    let out = dir.path().join("report");
    fetch(&server, &reader, &job, &out);
    let key = verifier_key(dir.path());
    let (code, output) = verify_bundle(&out, None, &key);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("31 events"), "{output}");
    // A plain export has no report parts.
    let plain = export(&server, &reader, &json!({"format": "ndjson", "to": until}));
    let (status, _) = download(
        &server,
        &reader,
        plain["export_id"].as_str().unwrap(),
        "pdf",
    );
    assert_eq!(status, 404);
}

fn put_json_status(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    common::put_json(&server.url(path), ADMIN_TOKEN, body)
}

#[test]
fn a_webhook_hears_when_an_export_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &["--allow-private-destinations"],
        &[("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    post_events(&server, &[event("acme", 1, now_ns())]);
    let hook = receivers::HttpReceiver::start(|_| 200);
    let (status, body) = post_json(
        &server.url("/v1/tenants/acme/webhooks"),
        ADMIN_TOKEN,
        &json!({"url": hook.url, "events": ["events"], "filters": {"action": "export.completed"}}),
    );
    assert_eq!(status, 201, "{body}");
    let reader = server.create_key("acme", "reader");
    let job = export(&server, &reader, &json!({"format": "csv"}));
    let notices = || {
        hook.accepted()
            .iter()
            .map(|request| serde_json::from_slice::<Value>(&request.body).unwrap())
            .collect::<Vec<_>>()
    };
    assert!(
        receivers::wait_until(30, || !notices().is_empty()),
        "no notice"
    );
    let notice = notices()[0].to_string();
    assert!(
        notice.contains("export.completed") && notice.contains(job["export_id"].as_str().unwrap()),
        "{notice}"
    );
    assert_eq!(notices().len(), 1, "only the completion, once");
}

#[test]
fn an_export_expires_after_its_days_and_its_files_go() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)];
    let server = Server::start_with(dir.path(), &["--export-expiry-days", "1"], &env);
    post_events(&server, &[event("acme", 1, now_ns())]);
    let reader = server.create_key("acme", "reader");
    let job = export(&server, &reader, &json!({"format": "ndjson"}));
    let export_id = job["export_id"].as_str().unwrap().to_owned();
    let finished = sealtrail_model::parse_timestamp(job["finished_at"].as_str().unwrap()).unwrap();
    let expires = sealtrail_model::parse_timestamp(job["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires - finished, DAY_NS, "{job}");
    let file = dir
        .path()
        .join("warm/_exports/acme")
        .join(&export_id)
        .join("events.ndjson");
    assert!(file.exists());
    server.signal_and_wait("TERM");

    // Two days later: the first sweep after the start removes the files.
    let later = stamp(now_ns() + 2 * DAY_NS);
    let env = [
        ("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN),
        ("SEALTRAIL_TEST_NOW", later.as_str()),
    ];
    let server = Server::start_with(dir.path(), &["--export-expiry-days", "1"], &env);
    let url = server.url(&format!("/v1/exports/{export_id}"));
    assert!(
        wait_until(20, || get(&url, &reader).1["state"] == "expired"),
        "{}",
        get(&url, &reader).1
    );
    assert!(!file.exists(), "the file is gone");
    let (status, _) = download(&server, &reader, &export_id, "data");
    assert_eq!(status, 409);
}

/// The warm tier on S3 (a real `moto_server`): an export of more than one upload part lands in
/// the bucket, downloads and verifies; nothing is written to the local warm directory.
#[test]
fn an_export_to_an_s3_warm_tier_is_uploaded_in_parts_and_verifies_against_moto() {
    let moto = lifecycle_harness::Moto::start();
    let bucket = moto.create_bucket("sealtrail-exports");
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let server = Server::start_with(
        dir.path(),
        &[
            "--s3-bucket",
            &bucket,
            "--s3-endpoint",
            &moto.endpoint,
            "--s3-region",
            "us-east-1",
            "--s3-prefix",
            "exports-test/warm",
        ],
        &env,
    );
    // About 25 MB of NDJSON: more than two 8 MiB parts.
    let base_ns = now_ns() - 3_600 * 1_000_000_000;
    let events: Vec<Value> = (0..36_000)
        .map(|n| event("acme", n, base_ns + n * 1_000_000))
        .collect();
    post_events(&server, &events);
    let reader = server.create_key("acme", "reader");
    let until = stamp(now_ns() - 60 * 1_000_000_000);
    let job = export(&server, &reader, &json!({"format": "ndjson", "to": until}));
    assert_eq!(job["events_written"], 36_000, "{job}");
    assert!(job["bytes"].as_u64().unwrap() > 16 * 1024 * 1024, "{job}");
    let export_id = job["export_id"].as_str().unwrap();
    let object = format!(
        "{}/{bucket}/exports-test/warm/_exports/acme/{export_id}/events.ndjson",
        moto.endpoint
    );
    let stored = ureq::head(&object)
        .call()
        .expect("the object is in the bucket");
    assert_eq!(
        stored.header("content-length"),
        Some(job["bytes"].to_string().as_str())
    );
    assert!(
        !dir.path().join("warm").join("_exports").exists(),
        "nothing went to the local warm directory"
    );
    let out = dir.path().join("s3-export");
    fetch(&server, &reader, &job, &out);
    let (code, output) = verify_bundle(&out, None, &verifier_key(dir.path()));
    assert_eq!(code, 0, "{output}");
}
