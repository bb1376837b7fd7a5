//! End-to-end: the summaries kept as events arrive equal a recount of the events, after a
//! SIGKILL loop under load, after the lifecycle moved events to the warm and cold tiers, after
//! a retry of archived events, more ingest and a restart, and after retention deleted the
//! oldest (the summaries of deleted months stay).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use common::{get, post_json, sealtrail, Server, ADMIN_TOKEN};
use serde_json::{json, Value};

const TENANT: &str = "acme";
const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// (day, actor, action, resource_type) → events, (month, resource) → events, and (day, actor,
/// action, resource_type) → failed events.
type Recount = (
    BTreeMap<(String, String, String, String), u64>,
    BTreeMap<(String, String, String), u64>,
    BTreeMap<(String, String, String, String), u64>,
);

/// (day, actor) → (stored events, per action, per resource type, failed per action): the
/// actor-day summaries.
type ActorDays = BTreeMap<(String, String), (u64, Value, Value, Value)>;
/// Events by name (an action).
type Counts = BTreeMap<String, u64>;
/// A month's stored events, events per action, actors, and failed events per action.
type MonthTally = (
    u64,
    BTreeMap<String, u64>,
    std::collections::BTreeSet<String>,
    BTreeMap<String, u64>,
);

fn serve(data_dir: &Path) -> Server {
    Server::start_with(
        data_dir,
        &["--lifecycle-interval-secs", "0"],
        &[("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
}

/// `sealtrail lifecycle run`: hot -> warm after 30 days, warm -> cold after 60, then retention.
fn lifecycle(data: &str) -> String {
    let (code, output) = sealtrail(&[
        "lifecycle",
        "run",
        "--data-dir",
        data,
        "--hot-retention-days",
        "30",
        "--warm-retention-days",
        "60",
    ]);
    assert_eq!(code, 0, "{output}");
    output
}

fn event(n: i64, timestamp_ns: i64, prefix: &str) -> Value {
    let action = ["delete", "update", "read", "login"][(n % 4) as usize];
    let resource_type = ["document", "invoice"][(n % 2) as usize];
    json!({
        "event_id": format!("{prefix}-{n:05}"),
        "tenant_id": TENANT,
        "timestamp": sealtrail_model::format_timestamp(timestamp_ns),
        "actor_id": format!("user-{}@acme.example", n % 7),
        "action": action,
        "resource_type": resource_type,
        "resource_id": format!("res-{}", n % 11),
        "outcome": if n % 3 == 0 { "failure" } else { "success" },
    })
}

/// Every event of the tenant in every tier, counted the way the summaries count.
fn recount(server: &Server) -> Recount {
    let response = ureq::get(&server.url(&format!("/v1/export?tenant_id={TENANT}")))
        .set("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .call()
        .unwrap();
    let (mut days, mut resources, mut failed) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    // Streamed line by line: a fast machine stores tens of thousands of events before each
    // kill, more than ureq's `into_string` will hold.
    for line in BufReader::new(response.into_reader()).lines() {
        let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let text = |field: &str| event[field].as_str().unwrap_or_default().to_owned();
        let day = text("timestamp")[..10].to_owned();
        let key = (
            day.clone(),
            text("actor_id"),
            text("action"),
            text("resource_type"),
        );
        if text("outcome") == "failure" {
            *failed.entry(key.clone()).or_default() += 1;
        }
        *days.entry(key).or_default() += 1;
        if event["resource_id"].is_string() {
            *resources
                .entry((
                    day[..7].to_owned(),
                    text("resource_type"),
                    text("resource_id"),
                ))
                .or_default() += 1;
        }
    }
    (days, resources, failed)
}

/// The actor-day summaries as the same map, from their per-action and per-type counts: the
/// totals must agree with both breakdowns, and nothing was sampled out. Also the days marked
/// as counting events retention deleted.
fn summarized(server: &Server) -> (ActorDays, Vec<Value>, BTreeSet<String>) {
    let (status, days) = get(
        &server.url(&format!("/v1/summaries/actor-day?tenant_id={TENANT}")),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 200, "{days}");
    assert_eq!(days["truncated"], false);
    let mut by_actor_day = BTreeMap::new();
    let mut deleted_days = BTreeSet::new();
    for summary in days["summaries"].as_array().unwrap() {
        if summary["events_deleted"] == true {
            deleted_days.insert(summary["date"].as_str().unwrap().to_owned());
        }
        let total = summary["total_events"].as_u64().unwrap();
        let sum = |member: &str| {
            summary[member]
                .as_object()
                .unwrap()
                .values()
                .map(|count| count.as_u64().unwrap())
                .sum::<u64>()
        };
        assert_eq!(
            (sum("action_counts"), sum("resource_type_counts")),
            (total, total)
        );
        assert_eq!(summary["sampled_out_events"], 0);
        by_actor_day.insert(
            (
                summary["date"].as_str().unwrap().to_owned(),
                summary["actor_id"].as_str().unwrap().to_owned(),
            ),
            (
                total,
                summary["action_counts"].clone(),
                summary["resource_type_counts"].clone(),
                summary["failure_counts"].clone(),
            ),
        );
    }
    let (status, months) = get(
        &server.url(&format!("/v1/summaries/tenant-month?tenant_id={TENANT}")),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 200, "{months}");
    (
        by_actor_day,
        months["summaries"].as_array().unwrap().clone(),
        deleted_days,
    )
}

/// The summaries, rebuilt from a recount: actor days and tenant months, those of
/// `deleted_months` marked as counting deleted events.
fn expected(recount: &Recount, deleted_months: &BTreeSet<String>) -> (ActorDays, Vec<Value>) {
    let (days, resources, failed) = recount;
    let mut by_actor_day: ActorDays = BTreeMap::new();
    for (key, count) in days {
        let (day, actor, action, resource_type) = key;
        let entry = by_actor_day
            .entry((day.clone(), actor.clone()))
            .or_insert_with(|| (0, json!({}), json!({}), json!({})));
        entry.0 += count;
        let add = |map: &mut Value, key: &str, count: u64| {
            let before = map[key].as_u64().unwrap_or(0);
            map[key] = json!(before + count);
        };
        add(&mut entry.1, action, *count);
        add(&mut entry.2, resource_type, *count);
        if let Some(failures) = failed.get(key) {
            add(&mut entry.3, action, *failures);
        }
    }
    let mut months: BTreeMap<String, MonthTally> = BTreeMap::new();
    for (key, count) in days {
        let (day, actor, action, _) = key;
        let month = months.entry(day[..7].to_owned()).or_default();
        month.0 += count;
        *month.1.entry(action.clone()).or_default() += count;
        month.2.insert(actor.clone());
        if let Some(failures) = failed.get(key) {
            *month.3.entry(action.clone()).or_default() += failures;
        }
    }
    let months = months
        .into_iter()
        .map(|(month, (total, actions, actors, failures))| {
            let mut top: Vec<(&(String, String, String), &u64)> = resources
                .iter()
                .filter(|((m, _, _), _)| *m == month)
                .collect();
            top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            top.truncate(20);
            json!({
                "year_month": month,
                "total_events": total,
                "sampled_out_events": 0,
                "failed_events": failures.values().sum::<u64>(),
                "unique_actors": actors.len(),
                "action_breakdown": actions,
                "failure_breakdown": failures,
                "events_deleted": deleted_months.contains(&month),
                "top_resources": top.iter().map(|((_, resource_type, resource_id), events)| json!({
                    "resource_type": resource_type, "resource_id": resource_id, "events": events,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    (by_actor_day, months)
}

fn assert_summaries_equal_a_recount(server: &Server, when: &str) -> Recount {
    let recount = recount(server);
    let (days, months, deleted_days) = summarized(server);
    assert!(
        deleted_days.is_empty(),
        "nothing deleted yet: {deleted_days:?}"
    );
    let (expected_days, expected_months) = expected(&recount, &BTreeSet::new());
    assert_eq!(days, expected_days, "actor-day summaries {when}");
    assert_eq!(months, expected_months, "tenant-month summaries {when}");
    assert_tenant_days_equal(server, &recount, when);
    recount
}

/// `GET /v1/summaries/tenant-day` equals the recount summed per day (stored and failed events
/// per action), and its top actors are the recount's, most events first.
fn assert_tenant_days_equal(server: &Server, recount: &Recount, when: &str) {
    let (status, answer) = get(
        &server.url(&format!("/v1/summaries/tenant-day?tenant_id={TENANT}")),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 200, "{answer}");
    let (days, _, failed) = recount;
    // day → (stored events per action, failed events per action)
    let mut expected: BTreeMap<String, (Counts, Counts)> = BTreeMap::new();
    let mut per_actor: BTreeMap<String, u64> = BTreeMap::new();
    for (key, count) in days {
        let (day, actor, action, _) = key;
        let entry = expected.entry(day.clone()).or_default();
        *entry.0.entry(action.clone()).or_default() += count;
        if let Some(failures) = failed.get(key) {
            *entry.1.entry(action.clone()).or_default() += failures;
        }
        *per_actor.entry(actor.clone()).or_default() += count;
    }
    let expected: Vec<Value> = expected
        .into_iter()
        .map(|(day, (actions, failures))| {
            json!({
                "date": day,
                "total_events": actions.values().sum::<u64>(),
                "sampled_out_events": 0,
                "failed_events": failures.values().sum::<u64>(),
                "action_counts": actions,
                "failure_counts": failures,
                "events_deleted": false,
            })
        })
        .collect();
    assert_eq!(
        answer["summaries"].as_array().unwrap(),
        &expected,
        "tenant-day summaries {when}"
    );
    let mut top: Vec<(String, u64)> = per_actor.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let top: Vec<Value> = top
        .iter()
        .take(sealtrail_model::limits::TOP_ACTORS)
        .map(|(actor, events)| json!({"actor_id": actor, "events": events}))
        .collect();
    assert_eq!(
        answer["top_actors"],
        json!(top),
        "tenant-day top actors {when}"
    );
    assert!(
        failed.values().sum::<u64>() > 0,
        "the events hold failures to count"
    );
}

#[test]
fn summaries_equal_a_recount_through_sigkill_lifecycle_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().unwrap();
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;

    // 400 events of history, one every 12 hours back to 200 days ago.
    let history: String = (0..400)
        .map(|n| {
            format!(
                "{}\n",
                event(n, now_ns - 200 * DAY_NS + n * DAY_NS / 2, "old")
            )
        })
        .collect();
    let history_file = dir.path().join("history.ndjson");
    std::fs::write(&history_file, history).unwrap();
    let (code, output) = sealtrail(&["import", "--data-dir", data, history_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{output}");

    // Live ingest, killed under load three times.
    let mut server = serve(&data_dir);
    for round in 0..3i64 {
        let url = server.url("/v1/events");
        let writer = std::thread::spawn(move || {
            for request in 0..400i64 {
                let batch: Vec<Value> = (0..25)
                    .map(|n| {
                        let n = round * 100_000 + request * 25 + n;
                        event(n, now_ns - (n % 3) * DAY_NS, "live")
                    })
                    .collect();
                let result = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .post(&url)
                    .set("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
                    .send_json(json!(batch));
                if result.is_err() {
                    return;
                }
            }
        });
        std::thread::sleep(Duration::from_millis(400 + 200 * round as u64));
        server.signal_and_wait("KILL");
        writer.join().unwrap();
        server = serve(&data_dir);
    }
    let before = assert_summaries_equal_a_recount(&server, "after SIGKILLs");
    assert!(
        before.0.values().sum::<u64>() > 400,
        "live events were stored"
    );
    finance_deletes_are_one_sql_statement(&server, now_ns, &before);
    server.signal_and_wait("TERM");

    // Hot -> warm (older than 30 days) -> cold (older than 60 days).
    lifecycle(data);
    let server = serve(&data_dir);
    let moved = assert_summaries_equal_a_recount(&server, "after lifecycle to warm and cold");
    assert_eq!(moved, before, "moving events changes no count");
    // After the lifecycle: a retry of archived events (the client never got their answers),
    // more ingest, a restart.
    let retry: Vec<Value> = (0..50)
        .map(|n| event(n, now_ns - 200 * DAY_NS + n * DAY_NS / 2, "old"))
        .collect();
    let (status, body) = post_json(&server.url("/v1/events"), ADMIN_TOKEN, &json!(retry));
    assert_eq!(status, 201, "{body}");
    assert!(
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|receipt| receipt["seq"].as_u64().unwrap() <= 400),
        "archived events get their stored receipts: {body}"
    );
    let fresh: Vec<Value> = (0..30)
        .map(|n| event(n, now_ns - n * 60_000_000_000, "after"))
        .collect();
    let (status, body) = post_json(&server.url("/v1/events"), ADMIN_TOKEN, &json!(fresh));
    assert_eq!(status, 201, "{body}");
    server.signal_and_wait("TERM");
    let server = serve(&data_dir);
    let grown = assert_summaries_equal_a_recount(&server, "after a retry, more ingest, a restart");
    assert_eq!(
        grown.0.values().sum::<u64>(),
        before.0.values().sum::<u64>() + 30,
        "the retried archived events are counted once"
    );
    let before = grown;
    server.signal_and_wait("TERM");

    // Retention deletes the oldest cold months; their summaries stay.
    let (code, output) = sealtrail(&[
        "retention",
        "set",
        "--data-dir",
        data,
        "--tenant",
        TENANT,
        "--days",
        "150",
        "--legal-hold",
        "false",
    ]);
    assert_eq!(code, 0, "{output}");
    let output = lifecycle(data);
    let server = serve(&data_dir);
    let remaining = recount(&server);
    let remaining_total: u64 = remaining.0.values().sum();
    assert!(
        remaining_total < before.0.values().sum::<u64>(),
        "retention deleted the oldest events: {output}"
    );
    // Every day that lost events, and only those, is marked; the counts stay the recount
    // taken before the deletion.
    let mut deleted_days = BTreeSet::new();
    for ((day, actor, action, resource_type), count) in &before.0 {
        let left = remaining
            .0
            .get(&(
                day.clone(),
                actor.clone(),
                action.clone(),
                resource_type.clone(),
            ))
            .copied()
            .unwrap_or(0);
        if left < *count {
            deleted_days.insert(day.clone());
        }
    }
    assert!(!deleted_days.is_empty());
    let deleted_months: BTreeSet<String> =
        deleted_days.iter().map(|day| day[..7].to_owned()).collect();
    let (days_after, months_after, marked_days) = summarized(&server);
    assert_eq!(
        marked_days, deleted_days,
        "the days retention deleted are marked"
    );
    let (expected_days, expected_months) = expected(&before, &deleted_months);
    assert_eq!(
        months_after, expected_months,
        "summaries outlive the events they count, marked"
    );
    assert_eq!(days_after, expected_days);
    server.signal_and_wait("TERM");
    let (code, output) = common::verify(&data_dir, Some(TENANT));
    assert_eq!(code, 0, "{output}");
}

/// The seed's question, "deletes by users of the finance department in the quarter", as one SQL
/// statement joining the actor-day summaries with the directory; it equals the recount. Another
/// tenant's SQL sees none of it.
fn finance_deletes_are_one_sql_statement(server: &Server, now_ns: i64, recount: &Recount) {
    let department = |n: u64| if n < 3 { "finance" } else { "sales" };
    let directory: Vec<Value> = (0..7)
        .map(|n| json!({"actor_id": format!("user-{n}@acme.example"), "department": department(n)}))
        .collect();
    let response = ureq::put(&server.url(&format!("/v1/tenants/{TENANT}/actors")))
        .set("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_json(json!(directory))
        .unwrap();
    assert_eq!(response.status(), 200);
    let from = sealtrail_model::format_day(now_ns - 90 * DAY_NS);
    let to = sealtrail_model::format_day(now_ns + DAY_NS);
    let sql = format!(
        "SELECT s.actor_id, SUM(s.events) AS deletes FROM summary_actor_day s \
         JOIN actors a ON a.actor_id = s.actor_id \
         WHERE a.department = 'finance' AND s.action = 'delete' AND s.date >= '{from}' AND s.date < '{to}' \
         GROUP BY s.actor_id ORDER BY s.actor_id"
    );
    let (status, answer) = post_json(
        &server.url("/v1/query"),
        ADMIN_TOKEN,
        &json!({"sql": sql, "tenant_id": TENANT}),
    );
    assert_eq!(status, 200, "{answer}");
    let got: BTreeMap<String, u64> = answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["actor_id"].as_str().unwrap().to_owned(),
                row["deletes"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for ((day, actor, action, _), count) in &recount.0 {
        // Failed logins also raise alerts: their events are the alert engine's, in no department.
        let Some(n) = actor
            .strip_prefix("user-")
            .and_then(|rest| rest[..1].parse::<u64>().ok())
        else {
            continue;
        };
        if action == "delete" && department(n) == "finance" && *day >= from && *day < to {
            *expected.entry(actor.clone()).or_default() += count;
        }
    }
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
    // The same question with its filters hidden from the summary table's scan (the engine
    // reads every row and filters them itself) gives the same answer.
    let unpushed = sql
        .replace("s.date >= ", "concat(s.date, '') >= ")
        .replace("s.action = ", "concat(s.action, '') = ");
    let (status, same) = post_json(
        &server.url("/v1/query"),
        ADMIN_TOKEN,
        &json!({"sql": unpushed, "tenant_id": TENANT}),
    );
    assert_eq!(status, 200, "{same}");
    assert_eq!(same["rows"], answer["rows"]);
    let (status, months) = post_json(
        &server.url("/v1/query"),
        ADMIN_TOKEN,
        &json!({"sql": "SELECT year_month, total_events, unique_actors FROM summary_tenant_month ORDER BY year_month", "tenant_id": TENANT}),
    );
    assert_eq!(status, 200, "{months}");
    let total: u64 = months["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["total_events"].as_u64().unwrap())
        .sum();
    assert_eq!(total, recount.0.values().sum::<u64>());
    for table in ["summary_actor_day", "summary_tenant_month", "actors"] {
        let (status, other) = post_json(
            &server.url("/v1/query"),
            ADMIN_TOKEN,
            &json!({"sql": format!("SELECT count(*) AS n FROM {table}"), "tenant_id": "globex"}),
        );
        assert_eq!(status, 200, "{other}");
        assert_eq!(
            other["rows"][0]["n"], 0,
            "{table} of another tenant: {other}"
        );
    }
}
