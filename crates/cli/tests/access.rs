//! The four access levels, viewer tokens and the read trail, end to end on SQLite and on
//! PostgreSQL, over events in the warm tier (moved by a lifecycle pass) and in the hot tier:
//! every read route × every level and token × own and other tenant, actor and team, with the
//! status and the row set each must get; SQL that tries to escape a narrow scope; refused
//! tokens; and a read trail that holds one entry per read and verifies with `sealtrail verify`.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{get, post_json, put_json, wait_until, Server, ADMIN_TOKEN};
use serde_json::{json, Value};

const DAY_NS: i64 = 86_400 * 1_000_000_000;
/// Each actor's team in acme's directory (dave has no entry).
const TEAMS: [(&str, &str); 3] = [("alice", "pay"), ("bob", "pay"), ("carol", "ops")];
/// The people whose events acme holds.
const PEOPLE: [&str; 4] = ["alice", "bob", "carol", "dave"];

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Event `n` of `actor` in `tenant` at `at_ns`: `{tenant}-{actor}-{n}`.
fn event(tenant: &str, actor: &str, n: i64, at_ns: i64) -> Value {
    json!({"event_id": format!("{tenant}-{actor}-{n}"), "tenant_id": tenant,
        "actor_id": actor, "actor_type": "human",
        "action": if n % 2 == 0 { "login" } else { "update" },
        "outcome": if n % 3 == 0 { "failure" } else { "success" },
        "resource_type": "document", "resource_id": format!("doc-{n}"),
        "user_agent": format!("agent-of-{actor}"),
        "timestamp": sealtrail_model::format_timestamp(at_ns),
        "changes": {"before": {"title": "a"}, "after": {"title": format!("{actor} {n}")}}})
}

/// Every event of the test: 5 per person 45 days ago (to be moved to the warm tier), 5 per
/// person an hour ago, and beta's own.
fn events() -> Vec<Value> {
    let old = now_ns() - 45 * DAY_NS;
    let recent = now_ns() - 3_600 * 1_000_000_000;
    // The old ones first: the lifecycle moves a prefix of the log.
    let mut events = Vec::new();
    for (index, actor) in PEOPLE.iter().enumerate() {
        for n in 0..5 {
            let at = old + (index as i64 * 5 + n) * 1_000_000_000;
            events.push(event("acme", actor, n, at));
        }
    }
    for (index, actor) in PEOPLE.iter().enumerate() {
        for n in 0..5 {
            let at = recent + (index as i64 * 5 + n) * 1_000_000;
            events.push(event("acme", actor, n + 5, at));
        }
    }
    for n in 0..4 {
        events.push(event("beta", "erin", n, recent + n * 1_000_000));
    }
    events
}

/// The acme event ids of `actors`.
fn ids_of(actors: &[&str]) -> BTreeSet<String> {
    actors
        .iter()
        .flat_map(|actor| (0..10).map(move |n| format!("acme-{actor}-{n}")))
        .collect()
}

/// Event ids of every page of `GET /v1/events` (`query` appended), or the first refusal.
fn listed(server: &Server, key: &str, query: &str) -> Result<BTreeSet<String>, u16> {
    let mut ids = BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let (status, body) = get(
            &server.url(&format!("/v1/events?limit=7{query}{cursor}")),
            key,
        );
        if status != 200 {
            return Err(status);
        }
        for event in body["events"].as_array().unwrap() {
            ids.insert(event["event_id"].as_str().unwrap().to_owned());
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return Ok(ids),
        }
    }
}

/// Only the people's events (the tenant also holds the server's own: key rotations, exports).
fn people(ids: BTreeSet<String>) -> BTreeSet<String> {
    ids.into_iter()
        .filter(|id| PEOPLE.iter().any(|p| id.starts_with(&format!("acme-{p}-"))))
        .collect()
}

/// The `actor_id` column of a SQL answer, or the refusal's status.
fn sql_actors(server: &Server, key: &str, sql: &str) -> Result<BTreeSet<String>, u16> {
    let (status, body) = post_json(&server.url("/v1/query"), key, &json!({"sql": sql}));
    if status != 200 {
        return Err(status);
    }
    Ok(body["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|row| row["actor_id"].as_str().unwrap_or("<null>").to_owned())
        .collect())
}

/// The event ids the live stream sends from the start of the log, until it is quiet.
fn streamed(server: &Server, key: &str) -> Result<BTreeSet<String>, u16> {
    let response = ureq::get(&server.url("/v1/stream?after=0"))
        .set("Authorization", &format!("Bearer {key}"))
        .call();
    let response = match response {
        Ok(response) => response,
        Err(ureq::Error::Status(status, _)) => return Err(status),
        Err(other) => panic!("{other}"),
    };
    let (sender, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(response.into_reader()).lines() {
            let Ok(line) = line else { return };
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    let mut ids = BTreeSet::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_millis(1_500)) {
        if let Some(data) = line.strip_prefix("data:") {
            let event: Value = serde_json::from_str(data.trim()).unwrap();
            ids.insert(event["event_id"].as_str().unwrap().to_owned());
        }
    }
    Ok(ids)
}

/// Mints a viewer token with the tenant's admin key.
fn viewer_token(server: &Server, admin: &str, actor: &str, scope: &str, ttl: i64) -> String {
    let (status, body) = post_json(
        &server.url("/v1/viewer-tokens"),
        admin,
        &json!({"actor_id": actor, "scope": scope, "ttl_seconds": ttl}),
    );
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// Every entry of a tenant's read trail, oldest first, read by `key`, but the entries that
/// record reads of the trail itself (each page read adds one).
fn trail(server: &Server, key: &str, tenant: Option<&str>) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut cursor = String::new();
    let tenant = tenant.map_or(String::new(), |t| format!("&tenant_id={t}"));
    loop {
        let (status, body) = get(
            &server.url(&format!(
                "/v1/access-trail?order=asc&limit=500{tenant}{cursor}"
            )),
            key,
        );
        assert_eq!(status, 200, "{body}");
        entries.extend(body["events"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => {
                entries.retain(|entry| entry["resource_id"] != "/v1/access-trail");
                return entries;
            }
        }
    }
}

#[test]
fn every_read_route_answers_each_level_within_its_scope_on_sqlite() {
    access_levels(None);
}

#[test]
fn every_read_route_answers_each_level_within_its_scope_on_postgres() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let database = runtime.block_on(sealtrail_hot_postgres::testing::TestDatabase::create());
    access_levels(Some(&database.url()));
}

/// One read through one route, answering its status.
type Read<'a> = Box<dyn Fn() -> u16 + 'a>;

/// Who is asking, and what they must see.
struct Caller {
    name: &'static str,
    key: String,
    /// The people whose events it reads; `None` when it may not read acme at all.
    sees: Option<Vec<&'static str>>,
    /// Whether it reads the whole tenant (tenant-wide routes answer it).
    whole: bool,
}

fn access_levels(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let serve_args = common::on_backend(&[], database_url);
    let serve_args: Vec<&str> = serve_args.iter().map(String::as_str).collect();
    let env = [("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)];

    // The old half of the events goes to the warm tier.
    let server = Server::start_with(dir.path(), &serve_args, &env);
    let all = events();
    let (status, body) = post_json(&server.url("/v1/events"), ADMIN_TOKEN, &json!(all));
    assert_eq!(status, 201, "{body}");
    server.signal_and_wait("TERM");
    common::move_older_than_30_days(&data, database_url);
    let server = Server::start_with(dir.path(), &serve_args, &env);
    let (_, page) = get(
        &server.url("/v1/events?tenant_id=acme&limit=100"),
        ADMIN_TOKEN,
    );
    let warm: Vec<&Value> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["tier"] == "warm")
        .map(|event| &event["event_id"])
        .collect();
    assert_eq!(
        warm.len(),
        20,
        "acme's 20 old events are in the warm tier: {warm:?}"
    );
    // A retry of an event the lifecycle moved gets its stored receipt and stores nothing again.
    let archived = all
        .iter()
        .find(|event| event["event_id"] == "acme-alice-1")
        .unwrap();
    let (status, body) = post_json(&server.url("/v1/events"), ADMIN_TOKEN, &json!([archived]));
    assert_eq!(status, 201, "{body}");
    let (_, stored) = get(
        &server.url("/v1/events/acme-alice-1?tenant_id=acme"),
        ADMIN_TOKEN,
    );
    assert_eq!(
        (&body["results"][0]["seq"], stored["tier"].as_str()),
        (&stored["seq"], Some("warm")),
        "{body}"
    );

    let directory: Vec<Value> = TEAMS
        .iter()
        .map(|(actor, team)| json!({"actor_id": actor, "team": team, "display_name": actor}))
        .collect();
    let (status, body) = put_json(
        &server.url("/v1/tenants/acme/actors"),
        ADMIN_TOKEN,
        &json!(directory),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_json(
        &server.url("/v1/tenants/acme/checkpoint"),
        ADMIN_TOKEN,
        &json!({}),
    );
    assert_eq!(status, 201, "{body}");

    let admin = server.create_key("acme", "admin");
    let key_with = |body: Value| {
        let (status, answer) = post_json(&server.url("/v1/keys"), ADMIN_TOKEN, &body);
        assert_eq!(status, 201, "{answer}");
        answer["key"].as_str().unwrap().to_owned()
    };
    let callers = vec![
        Caller {
            name: "platform admin",
            key: ADMIN_TOKEN.into(),
            sees: Some(PEOPLE.to_vec()),
            whole: true,
        },
        Caller {
            name: "tenant admin",
            key: admin.clone(),
            sees: Some(PEOPLE.to_vec()),
            whole: true,
        },
        Caller {
            name: "security admin",
            key: key_with(json!({"tenant_id": "acme", "role": "security_admin"})),
            sees: Some(PEOPLE.to_vec()),
            whole: true,
        },
        Caller {
            name: "team admin of pay",
            key: key_with(json!({"tenant_id": "acme", "role": "team_admin", "teams": ["pay"]})),
            sees: Some(vec!["alice", "bob"]),
            whole: false,
        },
        Caller {
            name: "team admin of an empty team",
            key: key_with(json!({"tenant_id": "acme", "role": "team_admin", "teams": ["none"]})),
            sees: Some(vec![]),
            whole: false,
        },
        Caller {
            name: "self key of alice",
            key: key_with(json!({"tenant_id": "acme", "role": "self", "actor_id": "alice"})),
            sees: Some(vec!["alice"]),
            whole: false,
        },
        Caller {
            name: "viewer token of bob (self)",
            key: viewer_token(&server, &admin, "bob", "self", 600),
            sees: Some(vec!["bob"]),
            whole: false,
        },
        Caller {
            name: "viewer token of carol (team ops)",
            key: viewer_token(&server, &admin, "carol", "team", 600),
            sees: Some(vec!["carol"]),
            whole: false,
        },
        Caller {
            name: "ingest key",
            key: server.create_key("acme", "ingest"),
            sees: None,
            whole: false,
        },
        Caller {
            name: "reader of beta",
            key: server.create_key("beta", "reader"),
            sees: None,
            whole: false,
        },
    ];
    let tenant = |caller: &Caller| match caller.key == ADMIN_TOKEN {
        true => "&tenant_id=acme",
        false => "",
    };

    for caller in &callers {
        let name = caller.name;
        let t = tenant(caller);
        // The path, with `tenant_id=acme` for the platform admin.
        let own_tenant = |path: &str| match (t.is_empty(), path.contains('?')) {
            (true, _) => server.url(path),
            (false, true) => server.url(&format!("{path}{t}")),
            (false, false) => server.url(&format!("{path}?{}", &t[1..])),
        };
        let Some(sees) = &caller.sees else {
            // A caller that may not read acme gets 403 from every read route.
            let query = if caller.key.starts_with("stk_") && name == "reader of beta" {
                "&tenant_id=acme"
            } else {
                ""
            };
            assert_eq!(listed(&server, &caller.key, query), Err(403), "{name}");
            let (status, _) = post_json(
                &server.url("/v1/query"),
                &caller.key,
                &json!({"sql": "SELECT 1", "tenant_id": "acme"}),
            );
            assert_eq!(status, 403, "{name}: SQL");
            let (status, _) = get(
                &server.url("/v1/tenants/acme/proofs/inclusion?event_id=acme-alice-1"),
                &caller.key,
            );
            assert_eq!(status, 403, "{name}: inclusion");
            let (status, _) = get(
                &server.url("/v1/summaries/actor-day?tenant_id=acme"),
                &caller.key,
            );
            assert_eq!(status, 403, "{name}: actor-day");
            let (status, _) = get(
                &server.url("/v1/summaries/tenant-day?tenant_id=acme"),
                &caller.key,
            );
            assert_eq!(status, 403, "{name}: tenant-day");
            continue;
        };
        let expected = ids_of(sees);

        // Events, every page, across both tiers.
        let ids = listed(&server, &caller.key, t).unwrap();
        assert_eq!(people(ids.clone()), expected, "{name}: GET /v1/events");
        if !caller.whole {
            assert_eq!(ids, expected, "{name}: nothing but its scope's events");
        }
        // A filter for another actor narrows within the scope, never beyond it.
        let ids = listed(&server, &caller.key, &format!("{t}&actor_id=carol")).unwrap();
        assert_eq!(
            ids,
            ids_of(
                &sees
                    .iter()
                    .copied()
                    .filter(|a| *a == "carol")
                    .collect::<Vec<_>>()
            ),
            "{name}: actor_id=carol"
        );
        // One event by id: each person's old (warm) and recent (hot) event.
        for person in PEOPLE {
            for n in [1, 6] {
                let id = format!("acme-{person}-{n}");
                let (status, body) = get(&own_tenant(&format!("/v1/events/{id}")), &caller.key);
                let want = if sees.contains(&person) { 200 } else { 404 };
                assert_eq!(status, want, "{name}: GET /v1/events/{id}: {body}");
                let (status, body) = get(
                    &server.url(&format!("/v1/tenants/acme/proofs/inclusion?event_id={id}")),
                    &caller.key,
                );
                assert_eq!(status, want, "{name}: inclusion proof of {id}: {body}");
            }
        }
        // SQL over every table it may read.
        let people_set: BTreeSet<String> = sees.iter().map(|p| (*p).to_owned()).collect();
        let with_tenant = |sql: &str| {
            let (status, body) = post_json(
                &server.url("/v1/query"),
                &caller.key,
                &match caller.key == ADMIN_TOKEN {
                    true => json!({"sql": sql, "tenant_id": "acme"}),
                    false => json!({"sql": sql}),
                },
            );
            (status, body)
        };
        let (status, body) = with_tenant(
            "SELECT event_id FROM events WHERE actor_id IN ('alice','bob','carol','dave')",
        );
        assert_eq!(status, 200, "{name}: {body}");
        let sql_ids: BTreeSet<String> = body["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["event_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(sql_ids, expected, "{name}: SQL over events");
        // The live stream from the start of the log.
        if caller.key != ADMIN_TOKEN {
            let ids = streamed(&server, &caller.key).unwrap();
            assert_eq!(people(ids.clone()), expected, "{name}: the live stream");
            if !caller.whole {
                assert_eq!(ids, expected, "{name}: the live stream, nothing else");
            }
        }
        // The actor-day summary: only the scope's actors.
        let (status, body) = get(&own_tenant("/v1/summaries/actor-day"), &caller.key);
        assert_eq!(status, 200, "{name}: {body}");
        let summarized: BTreeSet<String> = body["summaries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["actor_id"].as_str().unwrap().to_owned())
            .filter(|actor| PEOPLE.contains(&actor.as_str()))
            .collect();
        assert_eq!(summarized, people_set, "{name}: actor-day summary");
        // The day summary: a narrow caller's days count its scope's events and nothing else.
        let (status, body) = get(&own_tenant("/v1/summaries/tenant-day"), &caller.key);
        assert_eq!(status, 200, "{name}: tenant-day: {body}");
        let top: BTreeSet<String> = body["top_actors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["actor_id"].as_str().unwrap().to_owned())
            .filter(|actor| PEOPLE.contains(&actor.as_str()))
            .collect();
        assert_eq!(top, people_set, "{name}: tenant-day top actors");
        if !caller.whole {
            let counted: u64 = body["summaries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|day| day["total_events"].as_u64().unwrap())
                .sum();
            assert_eq!(counted, expected.len() as u64, "{name}: tenant-day totals");
        }
        // The directory: an actor in scope is found, another is not.
        for (person, _) in TEAMS {
            let (status, _) = get(
                &server.url(&format!("/v1/tenants/acme/actors/{person}")),
                &caller.key,
            );
            let want = if sees.contains(&person) { 200 } else { 404 };
            assert_eq!(status, want, "{name}: directory entry of {person}");
        }
        // The checkpoint holds no event: every level that reads acme may fetch it.
        let (status, _) = get(&server.url("/v1/tenants/acme/checkpoint"), &caller.key);
        assert_eq!(status, 200, "{name}: checkpoint");
        // Tenant-wide routes: the whole-tenant levels only.
        let want = if caller.whole { 200 } else { 403 };
        let (status, body) = get(&own_tenant("/v1/summaries/tenant-month"), &caller.key);
        assert_eq!(status, want, "{name}: tenant-month: {body}");
        let (status, _) = common::get_bytes(&own_tenant("/v1/export"), &caller.key);
        assert_eq!(status, want, "{name}: GET /v1/export");
        let (status, _) = get(&own_tenant("/v1/access-trail"), &caller.key);
        assert_eq!(status, want, "{name}: the read trail");
        let (status, _) = get(&server.url("/v1/tenants/acme/sampling"), &caller.key);
        assert_eq!(status, want, "{name}: sampling statistics");
        let (status, body) = with_tenant("SELECT * FROM summary_tenant_month");
        assert_eq!(status, want, "{name}: summary_tenant_month: {body}");
        let (status, _) = get(&own_tenant("/v1/exports"), &caller.key);
        assert_eq!(status, want, "{name}: export jobs");
        // Another tenant: refused, whatever the level within acme.
        if caller.key != ADMIN_TOKEN {
            assert_eq!(
                listed(&server, &caller.key, "&tenant_id=beta"),
                Err(403),
                "{name}: beta"
            );
            let (status, _) = get(
                &server.url("/v1/tenants/beta/proofs/inclusion?event_id=beta-erin-1"),
                &caller.key,
            );
            assert_eq!(status, 403, "{name}: beta's inclusion proof");
        }

        // SQL that tries to reach beyond the scope.
        if !caller.whole {
            for sql in [
                "SELECT actor_id FROM events",
                "SELECT e.actor_id FROM events e JOIN actors a ON a.actor_id <> e.actor_id",
                "SELECT actor_id FROM events WHERE seq IN (SELECT seq FROM events)",
                "SELECT actor_id FROM events UNION SELECT actor_id FROM actors \
                 UNION SELECT actor_id FROM summary_actor_day",
                "SELECT actor_id FROM (SELECT * FROM events WHERE 1 = 1 OR actor_id <> '') AS x",
                "WITH everyone AS (SELECT * FROM events) SELECT actor_id FROM everyone",
                "SELECT actor_id FROM actors",
                "SELECT actor_id FROM summary_actor_day",
                "SELECT a.actor_id FROM actors a LEFT JOIN events e ON true",
            ] {
                let seen = sql_actors(&server, &caller.key, sql).unwrap();
                assert!(
                    seen.is_subset(&people_set),
                    "{name}: {sql} reached {seen:?}, beyond {people_set:?}"
                );
            }
            let (status, body) = with_tenant("SELECT count(*) AS n FROM events");
            assert_eq!(status, 200);
            assert_eq!(
                body["rows"][0]["n"],
                json!(expected.len()),
                "{name}: count(*) counts the scope"
            );
        }
    }

    // Refused tokens: 401, whatever route they are tried on.
    let expiring = viewer_token(&server, &admin, "alice", "self", 1);
    std::thread::sleep(Duration::from_millis(1_500));
    let beta_admin = server.create_key("beta", "admin");
    let beta_token = viewer_token(&server, &beta_admin, "erin", "self", 600);
    let good = viewer_token(&server, &admin, "alice", "self", 600);
    let parts: Vec<&str> = good.split('.').collect();
    let payload = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    // The claims end where the 64-byte signature begins; name another actor in them.
    let claims_end = payload.len() - 64;
    let claims = String::from_utf8(payload[..claims_end].to_vec()).unwrap();
    let forged_claims = claims.replace("\"alice\"", "\"carol\"");
    assert_ne!(claims, forged_claims);
    let mut forged = forged_claims.into_bytes();
    forged.extend_from_slice(&payload[claims_end..]);
    let forged = format!("v4.public.{}.{}", URL_SAFE_NO_PAD.encode(&forged), parts[3]);
    // Beta's token with a footer that names acme: signed by beta's key, so acme's refuses it.
    let beta_parts: Vec<&str> = beta_token.split('.').collect();
    let footer: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(beta_parts[3]).unwrap()).unwrap();
    let acme_kid = {
        let acme_parts: Vec<&str> = good.split('.').collect();
        let footer: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(acme_parts[3]).unwrap()).unwrap();
        footer["kid"].clone()
    };
    let wrong_tenant = format!(
        "v4.public.{}.{}",
        beta_parts[2],
        URL_SAFE_NO_PAD.encode(json!({"tenant": "acme", "kid": acme_kid}).to_string())
    );
    assert_eq!(footer["tenant"], "beta");
    let (status, _) = post_json(
        &server.url("/v1/tenants/acme/viewer-tokens/rotate-key"),
        &admin,
        &json!({}),
    );
    assert_eq!(status, 200);
    let after_rotation = viewer_token(&server, &admin, "alice", "self", 600);
    for (case, token) in [
        ("expired", expiring.as_str()),
        ("forged claims", forged.as_str()),
        ("signed with the rotated key", good.as_str()),
        ("another tenant's signature", wrong_tenant.as_str()),
        ("not a token", "v4.public.AAAA"),
    ] {
        for path in ["/v1/events", "/v1/tenants/acme/checkpoint", "/v1/whoami"] {
            let (status, body) = get(&server.url(path), token);
            assert_eq!(status, 401, "{case} on {path}: {body}");
        }
    }
    assert_eq!(
        listed(&server, &after_rotation, "").map(people),
        Ok(ids_of(&["alice"])),
        "a token minted after the rotation works"
    );
    // The beta token reads beta, and only as erin.
    assert_eq!(listed(&server, &beta_token, "").unwrap().len(), 4);

    // Bad requests for keys and tokens name their field and create nothing.
    for (body, field) in [
        (json!({"tenant_id": "acme", "role": "self"}), "actor_id"),
        (json!({"tenant_id": "acme", "role": "team_admin"}), "teams"),
        (
            json!({"tenant_id": "acme", "role": "team_admin", "teams": []}),
            "teams",
        ),
        (
            json!({"tenant_id": "acme", "role": "team_admin", "teams": [""]}),
            "teams[0]",
        ),
        (
            json!({"tenant_id": "acme", "role": "reader", "actor_id": "alice"}),
            "actor_id",
        ),
        (
            json!({"tenant_id": "_access.acme", "role": "reader"}),
            "tenant_id",
        ),
    ] {
        let (status, answer) = post_json(&server.url("/v1/keys"), ADMIN_TOKEN, &body);
        assert_eq!(
            (status, answer["errors"][0]["field"].as_str()),
            (400, Some(field)),
            "{body}: {answer}"
        );
    }
    for (body, field) in [
        (json!({"scope": "self"}), "actor_id"),
        (json!({"actor_id": "alice", "scope": "all"}), "scope"),
        (
            json!({"actor_id": "alice", "ttl_seconds": 3_601}),
            "ttl_seconds",
        ),
        (
            json!({"actor_id": "alice", "ttl_seconds": 0}),
            "ttl_seconds",
        ),
        (json!({"actor_id": "dave", "scope": "team"}), "actor_id"),
        (json!({"actor_id": "alice", "colour": "red"}), "colour"),
    ] {
        let (status, answer) = post_json(&server.url("/v1/viewer-tokens"), &admin, &body);
        assert_eq!(
            (status, answer["errors"][0]["field"].as_str()),
            (400, Some(field)),
            "{body}: {answer}"
        );
    }
    // Only a tenant's admin mints its tokens; a security admin may not.
    let security = server.create_key("acme", "reader");
    let (status, _) = post_json(
        &server.url("/v1/viewer-tokens"),
        &security,
        &json!({"actor_id": "alice"}),
    );
    assert_eq!(status, 403);
    // No request may write to, or read as, a read trail.
    let (status, body) = post_json(
        &server.url("/v1/events"),
        ADMIN_TOKEN,
        &json!([event("_access.acme", "mallory", 1, now_ns())]),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        listed(&server, ADMIN_TOKEN, "&tenant_id=_access.acme"),
        Err(400)
    );

    // The read trail: one entry per read, for each read through every route. Entries are
    // committed through the async lane; wait until the count stops moving.
    let mut before = trail(&server, &admin, None);
    assert!(wait_until(20, || {
        std::thread::sleep(Duration::from_millis(300));
        let now = trail(&server, &admin, None);
        let settled = now.len() == before.len();
        before = now;
        settled
    }));
    let reads: Vec<(&str, Read)> = vec![
        (
            "/v1/events",
            Box::new(|| get(&server.url("/v1/events"), &security).0),
        ),
        (
            "/v1/events/{event_id}",
            Box::new(|| get(&server.url("/v1/events/acme-bob-2"), &security).0),
        ),
        (
            "/v1/query",
            Box::new(|| {
                post_json(
                    &server.url("/v1/query"),
                    &security,
                    &json!({"sql": "SELECT count(*) FROM events"}),
                )
                .0
            }),
        ),
        (
            "/v1/export",
            Box::new(|| common::get_bytes(&server.url("/v1/export"), &security).0),
        ),
        (
            "/v1/summaries/actor-day",
            Box::new(|| get(&server.url("/v1/summaries/actor-day"), &security).0),
        ),
        (
            "/v1/summaries/tenant-month",
            Box::new(|| get(&server.url("/v1/summaries/tenant-month"), &security).0),
        ),
        (
            "/v1/summaries/tenant-day",
            Box::new(|| get(&server.url("/v1/summaries/tenant-day"), &security).0),
        ),
        (
            "/v1/tenants/{tenant_id}/checkpoint",
            Box::new(|| get(&server.url("/v1/tenants/acme/checkpoint"), &security).0),
        ),
        (
            "/v1/tenants/{tenant_id}/proofs/inclusion",
            Box::new(|| {
                get(
                    &server.url("/v1/tenants/acme/proofs/inclusion?event_id=acme-bob-2"),
                    &security,
                )
                .0
            }),
        ),
        (
            "/v1/tenants/{tenant_id}/proofs/consistency",
            Box::new(|| {
                get(
                    &server.url("/v1/tenants/acme/proofs/consistency?first=1&second=2"),
                    &security,
                )
                .0
            }),
        ),
        (
            "/v1/tenants/{tenant_id}/actors/{actor_id}",
            Box::new(|| get(&server.url("/v1/tenants/acme/actors/bob"), &security).0),
        ),
        (
            "/v1/tenants/{tenant_id}/sampling",
            Box::new(|| get(&server.url("/v1/tenants/acme/sampling"), &security).0),
        ),
        (
            "/v1/stream",
            Box::new(|| {
                let response = ureq::get(&server.url("/v1/stream?after=0"))
                    .set("Authorization", &format!("Bearer {security}"))
                    .call()
                    .unwrap();
                response.status()
            }),
        ),
    ];
    for (route, read) in &reads {
        assert_eq!(read(), 200, "{route}");
    }
    // A platform admin's read of acme lands in acme's trail; its read of beta in beta's only.
    assert_eq!(
        get(&server.url("/v1/events?tenant_id=acme"), ADMIN_TOKEN).0,
        200
    );
    assert_eq!(
        get(&server.url("/v1/events?tenant_id=beta"), ADMIN_TOKEN).0,
        200
    );
    let read_routes: Vec<&str> = reads.iter().map(|(route, _)| *route).collect();
    drop(reads);
    let expected = before.len() + read_routes.len() + 1;
    let mut after = Vec::new();
    assert!(
        wait_until(20, || {
            after = trail(&server, &admin, None);
            after.len() >= expected
        }),
        "{} entries, {expected} expected",
        after.len()
    );
    // Counting again: exactly as many as the reads (and the looks at the trail), no more.
    let new: Vec<&Value> = after[before.len()..].iter().collect();
    let routes: Vec<&str> = new
        .iter()
        .map(|entry| entry["resource_id"].as_str().unwrap())
        .collect();
    let mut wanted = read_routes.clone();
    wanted.push("/v1/events");
    let mut sorted_routes = routes.clone();
    sorted_routes.sort_unstable();
    wanted.sort_unstable();
    assert_eq!(sorted_routes, wanted, "one entry per read: {routes:?}");
    let platform: Vec<&&Value> = new
        .iter()
        .filter(|entry| entry["actor_id"] == "platform-admin")
        .collect();
    assert_eq!(platform.len(), 1, "the platform admin's read of acme");
    assert_eq!(platform[0]["metadata"]["level"], "platform_admin");
    let by_security = new
        .iter()
        .find(|entry| entry["resource_id"] == "/v1/query")
        .unwrap();
    assert_eq!(
        by_security["metadata"]["query"]["sql"],
        "SELECT count(*) FROM events"
    );
    assert_eq!(by_security["metadata"]["rows"], 1);
    assert_eq!(by_security["metadata"]["level"], "security_admin");
    assert!(by_security["actor_id"]
        .as_str()
        .unwrap()
        .starts_with("api-key:"));
    let beta_trail = trail(&server, ADMIN_TOKEN, Some("beta"));
    assert!(
        beta_trail
            .iter()
            .any(|entry| entry["actor_id"] == "platform-admin"
                && entry["metadata"]["query"]["tenant_id"] == "beta"),
        "the platform admin's read of beta is in beta's trail"
    );
    assert!(
        !beta_trail
            .iter()
            .any(|entry| entry["metadata"]["query"]["tenant_id"] == "acme"),
        "and its reads of acme are not"
    );
    // A viewer's reads name the person, and the token.
    let viewer_entry = after
        .iter()
        .find(|entry| entry["actor_id"] == "bob")
        .expect("bob's viewer-token reads are in the trail");
    assert!(viewer_entry["metadata"]["credential"]
        .as_str()
        .unwrap()
        .starts_with("viewer-token:"));
    assert_eq!(viewer_entry["metadata"]["level"], "self");

    // Reads answered just before a SIGKILL are in the trail after the restart: each entry was
    // spooled before its answer was sent.
    let settled = |server: &Server| {
        let mut last = trail(server, &admin, None);
        assert!(wait_until(20, || {
            std::thread::sleep(Duration::from_millis(300));
            let now = trail(server, &admin, None);
            let same = now.len() == last.len();
            last = now;
            same
        }));
        last
    };
    let before_kill = settled(&server);
    for n in 0..5 {
        let (status, _) = get(
            &server.url(&format!("/v1/events?limit={}", n + 1)),
            &security,
        );
        assert_eq!(status, 200);
    }
    server.signal_and_wait("KILL");
    let server = Server::start_with(dir.path(), &serve_args, &env);
    let after_restart = settled(&server);
    let limits: Vec<&str> = after_restart[before_kill.len()..]
        .iter()
        .map(|entry| entry["metadata"]["query"]["limit"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        limits,
        ["1", "2", "3", "4", "5"],
        "the five reads before the SIGKILL, once each, in order"
    );
    server.signal_and_wait("TERM");

    // Each trail is a log like any other: `sealtrail verify` checks it.
    let (code, output) = common::sealtrail_on(&["verify", "--data-dir", &data], database_url);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("tenant _access.acme") && output.contains("tenant _access.beta"),
        "{output}"
    );
    // And an auditor can take a trail away as a proof bundle and check it offline.
    let output = common::bundle_and_verify(
        &data,
        "_access.acme",
        &dir.path().join("trail-bundle"),
        database_url,
    );
    assert!(output.contains("ok      tenant _access.acme"), "{output}");
}
