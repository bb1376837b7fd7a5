//! End-to-end: each tenant's actor directory. A bulk upsert is all or none, with every bad
//! entry named by index and member; entries are replaced whole; tenants never see each other's
//! directory; only a tenant's admins write it.

mod common;

use common::*;
use serde_json::{json, Value};

fn fields(problem: &Value) -> Vec<(u64, String)> {
    let mut fields: Vec<(u64, String)> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| {
            (
                error["index"].as_u64().unwrap_or(u64::MAX),
                error["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    fields.sort();
    fields
}

#[test]
fn the_directory_is_written_whole_per_tenant_by_its_admins() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.create_key("acme", "admin");
    let reader = server.create_key("acme", "reader");
    let ingest = server.create_key("acme", "ingest");
    let beta_admin = server.create_key("beta", "admin");
    let url = server.url("/v1/tenants/acme/actors");
    let alice = |department: &str| {
        json!({"actor_id": "alice@acme.example", "display_name": "Alice Ng",
            "department": department, "team": "payables", "attributes": {"level": 3, "region": "eu"}})
    };

    let body = json!([alice("finance"), {"actor_id": "bob@acme.example", "department": "sales"}]);
    let (status, written) = put_raw_json(&url, &admin, &body.to_string());
    assert_eq!(status, 200, "{written}");
    assert_eq!(written["upserted"], 2);
    let (status, found) = get(
        &server.url("/v1/tenants/acme/actors/alice@acme.example"),
        &reader,
    );
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        found,
        json!({"tenant_id": "acme", "actor_id": "alice@acme.example", "display_name": "Alice Ng",
            "department": "finance", "team": "payables", "attributes": {"level": 3, "region": "eu"}})
    );

    // A bad entry anywhere rejects the request whole, naming index and member.
    let bad = format!(
        "[{}, {{\"actor_id\": \"\"}}, {{\"actor_id\": \"c\", \"team\": 7, \"colour\": \"red\"}}, {{\"actor_id\": \"d\", \"attributes\": {{\"a\": 1, \"a\": 2}}}}, {}]",
        alice("treasury"),
        json!({"actor_id": "bob@acme.example", "department": "x"})
    );
    let (status, problem) = put_raw_json(&url, &admin, &bad);
    assert_eq!(status, 400, "{problem}");
    assert_eq!(
        fields(&problem),
        [(3, "attributes.a".to_owned())],
        "{problem}"
    );
    let bad = json!([alice("treasury"), {"actor_id": ""}, {"actor_id": "c", "team": 7, "colour": "red"},
        alice("legal")]);
    let (status, problem) = put_raw_json(&url, &admin, &bad.to_string());
    assert_eq!(status, 400, "{problem}");
    assert_eq!(
        fields(&problem),
        [
            (1, "actor_id".to_owned()),
            (2, "colour".to_owned()),
            (2, "team".to_owned())
        ],
        "{problem}"
    );
    let (_, unchanged) = get(
        &server.url("/v1/tenants/acme/actors/alice@acme.example"),
        &reader,
    );
    assert_eq!(
        unchanged["department"], "finance",
        "nothing of a refused request is written"
    );

    // An entry replaces the stored one whole.
    let (status, _) = put_raw_json(
        &url,
        &admin,
        &json!([{"actor_id": "alice@acme.example", "department": "treasury"}]).to_string(),
    );
    assert_eq!(status, 200);
    let (_, moved) = get(
        &server.url("/v1/tenants/acme/actors/alice@acme.example"),
        &reader,
    );
    assert_eq!(moved["department"], "treasury");
    assert_eq!(moved["team"], Value::Null);
    assert_eq!(moved["attributes"], Value::Null);
    // Several entries for one actor: the last is written, as if sent one after another.
    let twice = json!([alice("legal"), alice("audit")]);
    let (status, written) = put_raw_json(&url, &admin, &twice.to_string());
    assert_eq!(
        (status, &written["upserted"]),
        (200, &json!(1)),
        "{written}"
    );
    let (_, last) = get(
        &server.url("/v1/tenants/acme/actors/alice@acme.example"),
        &reader,
    );
    assert_eq!(last["department"], "audit");

    // Only the tenant's admins write; other tenants neither write nor read it.
    for key in [&reader, &ingest, &beta_admin] {
        assert_eq!(put_raw_json(&url, key, &body.to_string()).0, 403);
    }
    assert_eq!(
        get(
            &server.url("/v1/tenants/acme/actors/bob@acme.example"),
            &beta_admin
        )
        .0,
        403
    );
    assert_eq!(
        get(
            &server.url("/v1/tenants/beta/actors/bob@acme.example"),
            &beta_admin
        )
        .0,
        404
    );
    assert_eq!(
        get(&server.url("/v1/tenants/acme/actors/nobody"), &reader).0,
        404
    );
    let too_many: Vec<Value> = (0..1_001)
        .map(|n| json!({"actor_id": format!("a{n}")}))
        .collect();
    assert_eq!(
        put_raw_json(&url, &admin, &json!(too_many).to_string()).0,
        413
    );
    server.signal_and_wait("TERM");
}
