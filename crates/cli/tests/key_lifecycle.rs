//! End-to-end: API keys are revoked at once by `DELETE /v1/keys/{key_id}` (by the platform
//! admin or an admin of the key's own tenant, never another tenant's), and keys created with an
//! expiry stop working when it passes.

mod common;

use std::io::Read;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// `DELETE path` with a bearer key: status, content type and body text.
fn delete(url: &str, key: &str) -> (u16, String, String) {
    let result = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build()
        .delete(url)
        .set("Authorization", &format!("Bearer {key}"))
        .call();
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(other) => panic!("transport error: {other}"),
    };
    let status = response.status();
    let content_type = response.header("content-type").unwrap_or("").to_owned();
    let mut text = String::new();
    response.into_reader().read_to_string(&mut text).unwrap();
    (status, content_type, text)
}

/// Creates a key as `creator`: the response body.
fn create_key(server: &Server, creator: &str, body: &Value) -> Value {
    let (status, response) = post_json(&server.url("/v1/keys"), creator, body);
    assert_eq!(status, 201, "{body} -> {response}");
    response
}

fn key_of(response: &Value) -> (String, String) {
    (
        response["key"].as_str().unwrap().to_owned(),
        response["key_id"].as_str().unwrap().to_owned(),
    )
}

/// Reads the tenant's events with `key`: the status and body.
fn read(server: &Server, key: &str) -> (u16, Value) {
    get(&server.url("/v1/events?tenant_id=acme"), key)
}

/// A 401 problem document whose detail says `why`, and that does not echo the key's secret.
fn assert_refused(status: u16, body: &Value, why: &str, key: &str) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["status"], 401, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains(why), "{detail}");
    let secret = key.splitn(3, '_').nth(2).unwrap();
    assert!(
        !body.to_string().contains(secret),
        "the secret is echoed: {body}"
    );
}

#[test]
fn a_revoked_key_is_refused_on_the_very_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let acme_admin = server.create_key("acme", "admin");
    let beta_admin = server.create_key("beta", "admin");
    let created = create_key(
        &server,
        ADMIN_TOKEN,
        &json!({"tenant_id": "acme", "role": "ingest"}),
    );
    assert_eq!(created["expires_at"], Value::Null, "{created}");
    let (key, key_id) = key_of(&created);

    let (status, body) = post_json(&server.url("/v1/events"), &key, &event("acme", "before"));
    assert_eq!(status, 201, "{body}");

    // Another tenant's admin cannot revoke it, nor learn that it exists; a reader key of its
    // own tenant may not revoke at all.
    let (status, content_type, text) =
        delete(&server.url(&format!("/v1/keys/{key_id}")), &beta_admin);
    assert_eq!(status, 404, "{text}");
    assert!(
        content_type.starts_with("application/problem+json"),
        "{content_type}"
    );
    let (_, _, unknown) = delete(&server.url("/v1/keys/0123456789abcdef"), &beta_admin);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["detail"],
        serde_json::from_str::<Value>(&unknown).unwrap()["detail"],
        "another tenant's key looks exactly like an unknown one"
    );
    let acme_reader = server.create_key("acme", "reader");
    let (status, _, text) = delete(&server.url(&format!("/v1/keys/{key_id}")), &acme_reader);
    assert_eq!(status, 403, "{text}");
    let (status, body) = post_json(&server.url("/v1/events"), &key, &event("acme", "still"));
    assert_eq!(
        status, 201,
        "the key still works after the refused revocations: {body}"
    );

    // Its own tenant's admin revokes it: 204 with no body, and the next request is refused.
    let (status, _, text) = delete(&server.url(&format!("/v1/keys/{key_id}")), &acme_admin);
    assert_eq!(status, 204, "{text}");
    assert_eq!(text, "");
    let (status, body) = post_json(&server.url("/v1/events"), &key, &event("acme", "after"));
    assert_refused(status, &body, "revoked", &key);
    let (status, body) = read(&server, &key);
    assert_refused(status, &body, "revoked", &key);

    // Revoking again is fine; an unknown key is 404, for the platform admin too.
    let (status, _, text) = delete(&server.url(&format!("/v1/keys/{key_id}")), ADMIN_TOKEN);
    assert_eq!(status, 204, "{text}");
    let (status, _, text) = delete(&server.url("/v1/keys/0123456789abcdef"), ADMIN_TOKEN);
    assert_eq!(status, 404, "{text}");

    // The platform admin revokes any tenant's key, including an admin key.
    let (status, body) = read(&server, &acme_admin);
    assert_eq!(status, 200, "{body}");
    let acme_admin_id = acme_admin.split('_').nth(1).unwrap();
    let (status, _, text) = delete(
        &server.url(&format!("/v1/keys/{acme_admin_id}")),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 204, "{text}");
    let (status, body) = read(&server, &acme_admin);
    assert_refused(status, &body, "revoked", &acme_admin);

    // Only what was stored before the revocation is there.
    let (status, body) = read(&server, ADMIN_TOKEN);
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{body}");
    assert!(ids.contains(&"before") && ids.contains(&"still"), "{body}");
}

#[test]
fn the_cli_revokes_a_key_of_a_stopped_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (key, key_id) = key_of(&create_key(
        &server,
        ADMIN_TOKEN,
        &json!({"tenant_id": "acme", "role": "reader"}),
    ));
    let (status, body) = read(&server, &key);
    assert_eq!(status, 200, "{body}");
    assert!(server.signal_and_wait("TERM").success());

    let revoke = |id: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sealtrail"))
            .args(["keys", "revoke", id, "--data-dir"])
            .arg(dir.path())
            .env_remove("SEALTRAIL_DATABASE_URL")
            .output()
            .unwrap()
    };
    let output = revoke(&key_id);
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains(&key_id));
    let output = revoke("0123456789abcdef");
    assert!(!output.status.success(), "an unknown key: {output:?}");

    let server = Server::start(dir.path());
    let (status, body) = read(&server, &key);
    assert_refused(status, &body, "revoked", &key);
}

#[test]
fn a_key_stops_working_when_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let acme_admin = server.create_key("acme", "admin");

    // A tenant admin creates a key of its own tenant that lives two seconds.
    let created = create_key(
        &server,
        &acme_admin,
        &json!({"tenant_id": "acme", "role": "reader", "ttl_seconds": 2}),
    );
    let (key, _) = key_of(&created);
    let created_at = created["created_at"].as_str().unwrap();
    let expires_at = created["expires_at"].as_str().unwrap();
    assert!(expires_at > created_at, "{created}");

    // One with an explicit expiry a day ahead shows it as given.
    let (status, body) = get(&server.url("/v1/keys/unused"), ADMIN_TOKEN);
    assert_eq!(status, 405, "{body}");
    let tomorrow = shift(created_at, 86_400);
    let later = create_key(
        &server,
        ADMIN_TOKEN,
        &json!({"tenant_id": "acme", "role": "reader", "expires_at": tomorrow}),
    );
    assert_eq!(
        later["expires_at"],
        Value::String(tomorrow.clone()),
        "{later}"
    );

    let (status, body) = read(&server, &key);
    assert_eq!(status, 200, "the key works before it expires: {body}");
    std::thread::sleep(Duration::from_millis(2_500));
    let (status, body) = read(&server, &key);
    assert_refused(status, &body, "expired", &key);
    let (later_key, _) = key_of(&later);
    let (status, body) = read(&server, &later_key);
    assert_eq!(status, 200, "a key expiring tomorrow still works: {body}");
}

#[test]
fn bad_expiries_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (_, probe) = post_json(
        &server.url("/v1/keys"),
        ADMIN_TOKEN,
        &json!({"tenant_id": "acme", "role": "reader"}),
    );
    let now = probe["created_at"].as_str().unwrap().to_owned();
    let cases = [
        (
            json!({"expires_at": shift(&now, -60)}),
            "expires_at",
            "future",
        ),
        (
            json!({"expires_at": shift(&now, 400 * 86_400)}),
            "expires_at",
            "days ahead",
        ),
        (json!({"expires_at": "tomorrow"}), "expires_at", "RFC 3339"),
        (json!({"expires_at": 12}), "expires_at", "RFC 3339"),
        (json!({"ttl_seconds": 0}), "ttl_seconds", "integer from 1"),
        (json!({"ttl_seconds": -5}), "ttl_seconds", "integer from 1"),
        (json!({"ttl_seconds": 1.5}), "ttl_seconds", "integer from 1"),
        (
            json!({"ttl_seconds": "60"}),
            "ttl_seconds",
            "integer from 1",
        ),
        (
            json!({"ttl_seconds": 400 * 86_400}),
            "ttl_seconds",
            "integer from 1",
        ),
        (
            json!({"ttl_seconds": 60, "expires_at": shift(&now, 3_600)}),
            "ttl_seconds",
            "not both",
        ),
    ];
    for (extra, field, reason) in cases {
        let mut body = json!({"tenant_id": "acme", "role": "reader"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, problem) = post_json(&server.url("/v1/keys"), ADMIN_TOKEN, &body);
        assert_eq!(status, 400, "{body} -> {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{body} -> {problem}");
        let reason_text = problem["errors"][0]["reason"].as_str().unwrap();
        assert!(reason_text.contains(reason), "{body} -> {problem}");
    }
}

/// `timestamp` (RFC 3339) moved by `seconds`, in the server's format.
fn shift(timestamp: &str, seconds: i64) -> String {
    let ns = sealtrail_model::parse_timestamp(timestamp).unwrap();
    sealtrail_model::format_timestamp(ns + seconds * 1_000_000_000)
}
