//! The HTTP contract, against the real binary: the OpenAPI document describes what the server
//! actually sends and accepts, request bodies are refused by media type with 415, and every error
//! (the router's 405, unreadable paths, even requests hyper cannot parse) is an RFC 9457
//! application/problem+json document that names the field or reason.
//!
//! `scripts/schemathesis` fuzzes the same contract with thousands of generated requests; these
//! tests pin the cases that once went wrong.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{get, post_json, post_raw, Server, ADMIN_TOKEN};
use sealtrail_model::limits;
use serde_json::{json, Value};

/// A minimal JSON Schema check over the subset the document uses: `$ref`, `type`, `enum`,
/// `required`, `properties`, `additionalProperties: false`, `items`, `anyOf`, `minimum` and the
/// lowercase-hex hash `pattern`. Returns every violation with its JSON path.
fn violations(document: &Value, schema: &Value, value: &Value, path: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .expect("local reference");
        return violations(
            document,
            &document["components"]["schemas"][name],
            value,
            path,
        );
    }
    if let Some(options) = schema["anyOf"].as_array() {
        if options
            .iter()
            .all(|option| !violations(document, option, value, path).is_empty())
        {
            found.push(format!("{path}: matches no anyOf option: {value}"));
        }
    }
    if let Some(all) = schema["allOf"].as_array() {
        for part in all {
            found.extend(violations(document, part, value, path));
        }
    }
    let type_name = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(number) if number.is_i64() || number.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let type_matches = |expected: &Value| {
        expected == type_name || (expected == "number" && type_name == "integer")
    };
    match &schema["type"] {
        Value::Null => {}
        Value::Array(types) if types.iter().any(type_matches) => {}
        single if !single.is_array() && type_matches(single) => {}
        other => found.push(format!("{path}: {value} is not of type {other}")),
    }
    if let Some(options) = schema["enum"].as_array() {
        if !options.contains(value) {
            found.push(format!("{path}: {value} is not one of {options:?}"));
        }
    }
    if let (Some(minimum), Some(number)) = (schema["minimum"].as_i64(), value.as_i64()) {
        if number < minimum {
            found.push(format!("{path}: {number} < {minimum}"));
        }
    }
    if schema["pattern"] == "^[0-9a-f]{64}$" {
        let text = value.as_str().unwrap_or("");
        if text.len() != 64
            || !text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            found.push(format!("{path}: {value} is not 64 lowercase hex digits"));
        }
    }
    if let Value::Object(fields) = value {
        for required in schema["required"].as_array().into_iter().flatten() {
            if !fields.contains_key(required.as_str().unwrap()) {
                found.push(format!("{path}: required field {required} is missing"));
            }
        }
        for (name, field) in fields {
            match schema["properties"].get(name) {
                Some(field_schema) => found.extend(violations(
                    document,
                    field_schema,
                    field,
                    &format!("{path}.{name}"),
                )),
                None if schema["additionalProperties"] == false => {
                    found.push(format!("{path}: field {name} is not allowed"))
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (index, item) in items.iter().enumerate() {
            found.extend(violations(
                document,
                item_schema,
                item,
                &format!("{path}[{index}]"),
            ));
        }
    }
    found
}

fn response_schema(document: &Value, path: &str, method: &str, status: &str) -> Value {
    let responses = &document["paths"][path][method]["responses"];
    let content = &responses[status]["content"];
    assert!(
        content.is_object(),
        "{method} {path} documents no content for {status}: {responses}"
    );
    content["application/json"]["schema"].clone()
}

#[test]
fn stored_events_validate_against_the_documented_schema() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let reader = server.create_key("acme", "reader");
    let (status, document) = get(&server.url("/openapi.json"), &reader);
    assert_eq!(status, 200);

    // A minimal event (every optional field absent, so resource_id and the rest are null) and
    // a full one.
    let minimal = json!({"event_id": "min-1", "tenant_id": "acme", "actor_id": "u1",
        "action": "login", "resource_type": "session"});
    let full = json!({"event_id": "full-1", "tenant_id": "acme", "actor_id": "u2",
        "actor_type": "service", "action": "doc.update", "resource_type": "document",
        "resource_id": "d-7", "outcome": "failure", "ip_address": "2001:db8::1",
        "user_agent": "curl/8", "request_id": "r-1",
        "changes": {"before": {"a": 1}, "after": null}, "metadata": {"k": [1, "x"]}});
    let (status, receipts) = post_json(
        &server.url("/v1/events"),
        ADMIN_TOKEN,
        &json!([minimal, full]),
    );
    assert_eq!(status, 201, "{receipts}");
    let schema = response_schema(&document, "/v1/events", "post", "201");
    assert_eq!(
        violations(&document, &schema, &receipts, "$"),
        Vec::<String>::new()
    );

    let (status, page) = get(&server.url("/v1/events"), &reader);
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert!(page["events"][1]["resource_id"].is_null(), "{page}");
    let schema = response_schema(&document, "/v1/events", "get", "200");
    assert_eq!(
        violations(&document, &schema, &page, "$"),
        Vec::<String>::new()
    );

    for event_id in ["min-1", "full-1"] {
        let (status, event) = get(&server.url(&format!("/v1/events/{event_id}")), &reader);
        assert_eq!(status, 200, "{event}");
        let schema = response_schema(&document, "/v1/events/{event_id}", "get", "200");
        assert_eq!(
            violations(&document, &schema, &event, "$"),
            Vec::<String>::new()
        );
    }

    // The stored-event schema is a closed object of its own, not EventV1 (closed too) plus
    // more fields, which no stored event could satisfy.
    let stored = &document["components"]["schemas"]["StoredEvent"];
    assert!(stored["allOf"].is_null(), "{stored}");
    for field in ["seq", "received_at", "prev_hash", "event_hash", "tier"] {
        assert!(stored["properties"][field].is_object(), "{field}");
    }
}

#[test]
fn request_schemas_state_the_limits_the_server_enforces() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let reader = server.create_key("acme", "reader");
    let (_, document) = get(&server.url("/openapi.json"), &reader);
    let event = &document["components"]["schemas"]["EventV1"]["properties"];
    assert_eq!(
        event["tenant_id"]["pattern"],
        format!("^[A-Za-z0-9_.-]{{1,{}}}$", limits::TENANT_ID_CHARS_MAX)
    );
    assert_eq!(event["actor_id"]["maxLength"], limits::ACTOR_ID_CHARS_MAX);
    assert_eq!(event["actor_id"]["minLength"], 1);

    // An empty tenant_id is refused by the server, and the document says so.
    let (status, body) = get(&server.url("/v1/events?tenant_id="), &reader);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "tenant_id", "{body}");
    let parameters = document["paths"]["/v1/events"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let tenant = parameters
        .iter()
        .find(|parameter| parameter["name"] == "tenant_id")
        .unwrap();
    assert!(tenant["schema"]["pattern"]
        .as_str()
        .unwrap()
        .contains("{1,"));

    // So is empty SQL.
    let (status, body) = post_json(&server.url("/v1/query"), &reader, &json!({"sql": ""}));
    assert_eq!(status, 400, "{body}");
    let sql = &document["paths"]["/v1/query"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"]["properties"]["sql"];
    assert_eq!(sql["minLength"], 1, "{sql}");
    assert_eq!(sql["maxLength"], limits::SQL_TEXT_BYTES_MAX, "{sql}");

    // Statuses the server answers are documented.
    let (status, body) = get(&server.url("/v1/events/e1?colour=red"), &reader);
    assert_eq!(status, 400, "{body}");
    let (status, body, _) = post_raw(
        &server.url("/v1/tenants/not%20a%20tenant/checkpoint"),
        ADMIN_TOKEN,
        "application/json",
        b"",
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = get(
        &server.url("/v1/tenants/not%20a%20tenant/retention"),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 400, "{body}");
    for (path, method) in [
        ("/v1/events/{event_id}", "get"),
        ("/v1/tenants/{tenant_id}/checkpoint", "post"),
        ("/v1/tenants/{tenant_id}/retention", "get"),
    ] {
        assert!(
            document["paths"][path][method]["responses"]["400"].is_object(),
            "{method} {path} does not document its 400"
        );
    }
}

fn assert_problem(status: u16, body: &Value, expected_status: u16, case: &str) {
    assert_eq!(status, expected_status, "{case}: {body}");
    assert_eq!(
        body["status"], expected_status,
        "{case}: not a problem document: {body}"
    );
    assert!(
        !body["detail"].as_str().unwrap_or("").is_empty(),
        "{case}: no detail: {body}"
    );
}

#[test]
fn bodies_are_refused_by_media_type_with_415() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let events_url = server.url("/v1/events");
    let event = json!({"tenant_id": "acme", "actor_id": "u1", "action": "login",
        "resource_type": "session"})
    .to_string();

    for content_type in [
        "text/plain",
        "application/jsonfoo",
        "application/json-seq",
        "application/json; charset=latin1",
    ] {
        let (status, body, _) = post_raw(&events_url, ADMIN_TOKEN, content_type, event.as_bytes());
        assert_problem(status, &body, 415, content_type);
        assert_eq!(body["errors"][0]["field"], "Content-Type", "{body}");
    }
    for content_type in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=\"UTF-8\"",
        "application/x-ndjson",
    ] {
        let (status, body, _) = post_raw(&events_url, ADMIN_TOKEN, content_type, event.as_bytes());
        assert_eq!(status, 201, "{content_type}: {body}");
    }
    for path in ["/v1/query", "/v1/keys"] {
        let (status, body, _) = post_raw(
            &server.url(path),
            ADMIN_TOKEN,
            "text/plain",
            br#"{"sql": "SELECT 1", "tenant_id": "acme"}"#,
        );
        assert_problem(status, &body, 415, path);
    }
}

/// Sends raw bytes and returns the status, the headers (lowercase) and the body of the answer.
fn raw_exchange(base: &str, request: &[u8]) -> (u16, String, String) {
    let address = base.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The server may answer and close before the whole request is written.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn every_error_is_a_problem_document() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());

    // The router's own answers: a method the path does not have, an unknown path, a path and a
    // query string that are not UTF-8.
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}\r\n");
    let cases: [(&str, u16); 4] = [
        ("DELETE /v1/events HTTP/1.1", 405),
        ("GET /no/such/endpoint HTTP/1.1", 404),
        ("GET /v1/events/%FF%FE?tenant_id=acme HTTP/1.1", 400),
        ("GET /v1/events?tenant_id=%FF HTTP/1.1", 400),
    ];
    for (request_line, expected) in cases {
        let request = format!("{request_line}\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
        let (status, head, body) = raw_exchange(&server.base, request.as_bytes());
        assert!(
            head.contains("content-type: application/problem+json"),
            "{request_line}: {head}"
        );
        let body: Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{request_line}: {body:?}"));
        assert_problem(status, &body, expected, request_line);
        assert!(
            body["errors"][0]["field"].is_string(),
            "{request_line}: {body}"
        );
        if expected == 405 {
            assert!(head.contains("\r\nallow: "), "405 keeps Allow: {head}");
        }
    }

    // Requests hyper refuses before any handler runs: a malformed request line, header fields
    // larger than it reads.
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(1024 * 1024)
    );
    let cases: [(&[u8], u16); 3] = [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n", 400),
        (huge_header.as_bytes(), 431),
    ];
    for (request, expected) in cases {
        let (status, head, body) = raw_exchange(&server.base, request);
        let case = String::from_utf8_lossy(&request[..request.len().min(40)]).into_owned();
        assert!(
            head.contains("content-type: application/problem+json"),
            "{case}: {head}"
        );
        let body: Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{case}: {body:?}"));
        assert_problem(status, &body, expected, &case);
        assert_eq!(body["errors"][0]["field"], "request", "{body}");
    }

    // The server still serves afterwards.
    let (status, _) = get(&server.url("/healthz"), "");
    assert_eq!(status, 200);
}
