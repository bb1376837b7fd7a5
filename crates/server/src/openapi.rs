//! `GET /openapi.json`: the OpenAPI 3.1 description of every endpoint.
//!
//! Written by hand (not derived) so it can say what a client needs to know, such as which limit
//! a 413 refers to. Every bound in it is taken from `sealtrail_model::limits`, so the document
//! and the server cannot drift apart: a schema accepts exactly the requests the server accepts
//! (as far as JSON Schema can say it; the clock window of `timestamp` and the SQL language are
//! described in words), and every response the server sends validates against its schema.
//! `scripts/schemathesis` checks both directions against the real binary.

use axum::Json;
use sealtrail_model::limits::{
    ACTION_CHARS_MAX, ACTORS_PER_REQUEST_MAX, ACTOR_ATTRIBUTES_BYTES_MAX, ACTOR_ID_CHARS_MAX,
    ACTOR_NAME_CHARS_MAX, ALERT_BASELINE_DAYS_MAX, ALERT_DEVIATIONS_MAX, ALERT_MIN_COUNT_MAX,
    ALERT_RULES_PER_TENANT_MAX, ALERT_RULE_MATCH_VALUES_MAX, ALERT_RULE_NAME_CHARS_MAX,
    ALERT_THRESHOLD_MAX, ALERT_WINDOW_SECONDS_MAX, API_KEY_TTL_DAYS_MAX, BATCH_EVENTS_MAX,
    BODY_BYTES_MAX, CHANGES_BYTES_MAX, CLOCK_SKEW_SECS_MAX, DESTINATION_URL_BYTES_MAX,
    EVENT_ID_CHARS_MAX, EXPORT_JOBS_PER_TENANT_MAX, IP_ADDRESS_CHARS_MAX, JSON_DEPTH_MAX,
    KEY_TEAMS_MAX, METADATA_BYTES_MAX, POLICY_MATCH_CHARS_MAX, POLICY_RULES_MAX,
    QUERIES_CONCURRENT_MAX, QUERIES_PER_TENANT_CONCURRENT_MAX, QUERY_LIMIT_DEFAULT,
    QUERY_LIMIT_MAX, REGION_CHARS_MAX, REQUEST_ID_CHARS_MAX, REQUEST_TIMEOUT_MILLIS,
    RESOURCE_ID_CHARS_MAX, RESOURCE_TYPE_CHARS_MAX, RETENTION_DAYS_MAX, RETENTION_YEARS_MAX,
    RETENTION_YEAR_DAYS, SEQ_MAX, SINKS_MAX, SQL_ROWS_MAX, SQL_TEXT_BYTES_MAX, SQL_TIMEOUT_MILLIS,
    STREAMS_MAX, SUMMARY_ROWS_MAX, TENANT_ID_CHARS_MAX, TIMESTAMP_AGE_DAYS_MAX,
    TIMESTAMP_FRACTION_DIGITS_MAX, TOP_ACTORS, TOP_RESOURCES, USER_AGENT_CHARS_MAX,
    VIEWER_TOKEN_TTL_SECS_MAX, WEBHOOKS_PER_TENANT_MAX,
};
use sealtrail_model::PROTECTED_FIELDS;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::keys::API_KEY_TTL_SECS_MAX;

pub(crate) async fn document(_principal: Principal) -> Json<Value> {
    Json(build())
}

/// Code points a free-text identifier (`actor_id`, `resource_id`, `event_id`, …) must not hold:
/// Unicode Cc, Cf, Zl and Zp, as `sealtrail_model::validate_event` refuses them. A unit test
/// below checks this table against the validator for every code point.
const IDENTIFIER_FORBIDDEN: &[(u32, u32)] = &[
    (0x0000, 0x001F),
    (0x007F, 0x009F),
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// One code point in a regular-expression character class: `\uXXXX` in the Basic Multilingual
/// Plane (ECMA 262 and Python alike), the character itself above it (neither dialect shares an
/// escape for astral code points).
fn class_char(code: u32) -> String {
    if code <= 0xFFFF {
        format!("\\u{code:04X}")
    } else {
        char::from_u32(code)
            .expect("the table holds only scalar values")
            .to_string()
    }
}

/// The `pattern` of a free-text identifier: no character of [`IDENTIFIER_FORBIDDEN`].
fn printable_pattern() -> String {
    let class: String = IDENTIFIER_FORBIDDEN
        .iter()
        .map(|&(first, last)| {
            if first == last {
                class_char(first)
            } else {
                format!("{}-{}", class_char(first), class_char(last))
            }
        })
        .collect();
    format!("^[^{class}]*$")
}

/// `tenant_id` as `sealtrail_model::check_tenant_id` accepts it.
fn tenant_id_schema() -> Value {
    // Read trails' ids (`_access.<tenant>`) are the service's own: no request may name one.
    let reserved = sealtrail_model::ACCESS_TRAIL_TENANT_PREFIX.replace('.', "\\.");
    json!({"type": "string", "pattern": format!("^[A-Za-z0-9_.-]{{1,{TENANT_ID_CHARS_MAX}}}$"),
        "not": {"pattern": format!("^{reserved}")}})
}

/// A free-text identifier of at most `chars_max` characters.
fn text_schema(chars_max: usize) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": chars_max, "pattern": printable_pattern()})
}

/// `action` and `resource_type`: names that end up in dashboards and alert rules.
fn verb_schema(chars_max: usize) -> Value {
    json!({"type": "string", "pattern": format!("^[A-Za-z0-9_.:-]{{1,{chars_max}}}$")})
}

/// An optional field: the server treats `null` as not sent.
fn nullable(schema: Value) -> Value {
    json!({"anyOf": [schema, {"type": "null"}]})
}

/// The body of `POST /v1/keys` for the roles `role` matches, with `scope` (their scope's
/// members, `required` among them) beside the members every key takes.
fn key_body(role: Value, scope: Value, required: &[&str]) -> Value {
    let mut properties = json!({"tenant_id": tenant_id_schema(), "role": role,
        "expires_at": {"type": "string", "format": "date-time",
            "description": format!("When the key stops working (RFC 3339): after now, at most {API_KEY_TTL_DAYS_MAX} days ahead. Not together with ttl_seconds.")},
        "ttl_seconds": {"type": "integer", "minimum": 1, "maximum": API_KEY_TTL_SECS_MAX,
            "description": "Seconds from now until the key stops working. Not together with expires_at."}});
    if let (Some(all), Some(extra)) = (properties.as_object_mut(), scope.as_object()) {
        all.extend(extra.clone());
    }
    let mut required_members = vec!["tenant_id", "role"];
    required_members.extend_from_slice(required);
    json!({"type": "object", "additionalProperties": false, "required": required_members, "properties": properties})
}

fn problem(description: &str) -> Value {
    json!({"description": description, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

fn json_body(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn text_body(description: &str) -> Value {
    json!({"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}})
}

/// A day bound of a range, compared as text: `YYYY-MM-DD`, month 01-12, day 01-31.
fn day_bound_schema() -> Value {
    json!({"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"})
}

fn tenant_path() -> Value {
    json!({"name": "tenant_id", "in": "path", "required": true, "schema": tenant_id_schema()})
}

fn tenant_query(description: &str) -> Value {
    json!({"name": "tenant_id", "in": "query", "required": false, "description": description, "schema": tenant_id_schema()})
}

fn timestamp_query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description,
        "schema": {"type": "string", "format": "date-time"}})
}

/// A tree size or `seq` in a query parameter: positive and at most [`SEQ_MAX`].
fn size_query(name: &str, required: bool, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": required, "description": description,
        "schema": {"type": "integer", "minimum": 1, "maximum": SEQ_MAX}})
}

fn exact_filter(name: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": "Exact match.",
        "schema": {"type": "string", "minLength": 1}})
}

/// A JSON value whose integers lie in the 64-bit ranges (docs/FORMAT.md, "Numbers"), checked
/// `levels` containers deep and anything below. Unrolled rather than recursive, since schema
/// tools handle recursive references poorly; a number is only refused as an integer out of
/// range, never for how it is written, which JSON Schema cannot see.
fn json_value_schema(levels: usize) -> Value {
    if levels == 0 {
        return json!({});
    }
    let inner = json_value_schema(levels - 1);
    json!({"anyOf": [
        {"type": ["null", "boolean", "string"]},
        {"type": "number", "not": {"anyOf": [
            {"type": "integer", "exclusiveMinimum": u64::MAX},
            {"type": "integer", "exclusiveMaximum": i64::MIN}]}},
        {"type": "array", "items": inner.clone()},
        {"type": "object", "additionalProperties": inner}
    ]})
}

/// How many container levels of `changes` and `metadata` [`json_value_schema`] spells out.
const JSON_SCHEMA_LEVELS: usize = 3;

fn event_v1_schema() -> Value {
    let json_member = |bytes_max: usize| {
        format!("A JSON object (or null: not sent) of at most {bytes_max} bytes as compact JSON, nested at most {JSON_DEPTH_MAX} levels deep (the field itself is level 1). No object may repeat a key; an integer (a number written without fraction or exponent) must lie in -9223372036854775808..=18446744073709551615 (send larger ones as strings); any other number is stored as the nearest IEEE 754 double. Violations are a 400 naming the field path, e.g. metadata.count (docs/FORMAT.md, \"Numbers\" and \"JSON input rules\").")
    };
    json!({
        "type": "object",
        "description": format!("Event format v1. Fields that are null are treated as not sent. At most {BODY_BYTES_MAX} bytes per request."),
        "additionalProperties": false,
        "required": ["tenant_id", "actor_id", "action", "resource_type"],
        "properties": {
            "event_id": nullable(json!({"allOf": [text_schema(EVENT_ID_CHARS_MAX)], "description": "The client's idempotency key; the server assigns a UUIDv7 when absent."})),
            "timestamp": nullable(json!({"type": "string", "format": "date-time",
                "description": format!("RFC 3339 with offset; at most {CLOCK_SKEW_SECS_MAX} s ahead of the server's clock and at most {TIMESTAMP_AGE_DAYS_MAX} days behind it (older history goes through `sealtrail import`); at most {TIMESTAMP_FRACTION_DIGITS_MAX} fractional-second digits, and no leap second (:60), since instants are kept in nanoseconds. Default: the time of receipt.")})),
            "tenant_id": tenant_id_schema(),
            "actor_id": text_schema(ACTOR_ID_CHARS_MAX),
            "actor_type": {"enum": ["human", "service", "system", null], "default": "human"},
            "action": verb_schema(ACTION_CHARS_MAX),
            "resource_type": verb_schema(RESOURCE_TYPE_CHARS_MAX),
            "resource_id": nullable(text_schema(RESOURCE_ID_CHARS_MAX)),
            "outcome": {"enum": ["success", "failure", null], "default": "success"},
            "ip_address": nullable(json!({"type": "string", "maxLength": IP_ADDRESS_CHARS_MAX,
                "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}], "description": "IPv4 or IPv6 address."})),
            "user_agent": nullable(text_schema(USER_AGENT_CHARS_MAX)),
            "request_id": nullable(text_schema(REQUEST_ID_CHARS_MAX)),
            "changes": {"type": ["object", "null"], "additionalProperties": false,
                "properties": {
                    "before": {"type": ["object", "null"], "additionalProperties": json_value_schema(JSON_SCHEMA_LEVELS)},
                    "after": {"type": ["object", "null"], "additionalProperties": json_value_schema(JSON_SCHEMA_LEVELS)}},
                "description": json_member(CHANGES_BYTES_MAX)},
            "metadata": {"type": ["object", "null"], "additionalProperties": json_value_schema(JSON_SCHEMA_LEVELS),
                "description": json_member(METADATA_BYTES_MAX)}
        }
    })
}

fn stored_event_schema() -> Value {
    let hash = json!({"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "SHA-256, lowercase hex."});
    let optional_text = json!({"type": ["string", "null"]});
    json!({
        "type": "object",
        "description": "A stored event: every format v1 field (null when not sent), then its place in the tenant's chain and the tier it was read from.",
        "additionalProperties": false,
        "required": ["event_id", "timestamp", "tenant_id", "actor_id", "actor_type", "action", "resource_type",
            "resource_id", "outcome", "ip_address", "user_agent", "request_id", "changes", "metadata",
            "seq", "received_at", "prev_hash", "event_hash", "tier"],
        "properties": {
            "event_id": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"},
            "tenant_id": {"type": "string"},
            "actor_id": {"type": "string"},
            "actor_type": {"enum": ["human", "service", "system"]},
            "action": {"type": "string"},
            "resource_type": {"type": "string"},
            "resource_id": optional_text,
            "outcome": {"enum": ["success", "failure"]},
            "ip_address": optional_text,
            "user_agent": optional_text,
            "request_id": optional_text,
            "changes": {"type": ["object", "null"]},
            "metadata": {"type": ["object", "null"]},
            "seq": {"type": "integer", "minimum": 1, "description": "Position in the tenant's log, from 1, without gaps."},
            "received_at": {"type": "string", "format": "date-time"},
            "prev_hash": hash,
            "event_hash": hash,
            "tier": {"enum": ["hot", "warm", "cold"]},
            "sealed": {"type": "object", "additionalProperties": false,
                "description": "Present when the event has protected (encrypted) fields (docs/FORMAT.md, \"Protected fields\"): each one's salted commitment, which its hash covers, and its state.",
                "properties": PROTECTED_FIELDS.map(|field| (field.to_owned(), json!({"type": "object", "additionalProperties": false,
                    "required": ["commitment", "state"], "properties": {
                        "commitment": hash, "state": {"enum": ["open", "encrypted", "withheld", "erased"]},
                        "salt": hash, "envelope": {"type": "string"}}}))).into_iter().collect::<serde_json::Map<_, _>>()}
        }
    })
}

fn build() -> Value {
    let hash_base64 = json!({"type": "string", "contentEncoding": "base64"});
    let mut event_filters = vec![tenant_query(
        "Tenant to read; optional for tenant-bound keys, required for the platform admin.",
    )];
    event_filters.extend(
        [
            "actor_id",
            "action",
            "resource_type",
            "resource_id",
            "request_id",
        ]
        .map(exact_filter),
    );
    event_filters.extend([
        json!({"name": "outcome", "in": "query", "required": false, "schema": {"enum": ["success", "failure"]}}),
        timestamp_query("from", "RFC 3339; events with timestamp >= from."),
        timestamp_query("to", "RFC 3339; events with timestamp < to; must be later than from."),
        json!({"name": "order", "in": "query", "required": false, "description": "By seq.", "schema": {"enum": ["desc", "asc"], "default": "desc"}}),
        json!({"name": "cursor", "in": "query", "required": false, "description": "next_cursor of the previous page, with the same order.", "schema": {"type": "string", "minLength": 1}}),
        json!({"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": QUERY_LIMIT_MAX, "default": QUERY_LIMIT_DEFAULT}}),
    ]);
    // Only GET /v1/events: on a tenant with the field encrypted, equality goes through the
    // tenant's blind index (docs/PRIVACY.md).
    let protected_filters = [("ip_address", IP_ADDRESS_CHARS_MAX), ("user_agent", USER_AGENT_CHARS_MAX)]
        .map(|(name, most)| json!({"name": name, "in": "query", "required": false,
            "description": "Equality; where the tenant has the field encrypted, through its keyed blind index. Refused (403) to a team_admin, which does not see protected fields.",
            "schema": {"type": "string", "minLength": 1, "maxLength": most}}));
    let events_array = json!({"type": "array", "minItems": 1, "maxItems": BATCH_EVENTS_MAX, "items": {"$ref": "#/components/schemas/EventV1"}});
    let mut paths = serde_json::Map::new();
    paths.insert("/healthz".into(), json!({"get": {"summary": "Liveness.", "security": [], "responses": {"200": text_body("Alive.")}}}));
    paths.insert(
        "/readyz".into(),
        json!({"get": {"summary": "Readiness: store reachable and writer running.", "security": [],
                "responses": {"200": text_body("Ready."), "503": problem("Not ready.")}}}),
    );
    paths.insert("/metrics".into(), json!({"get": {
                "summary": "Operating metrics in the Prometheus text exposition format 0.0.4.",
                "description": "Needs the metrics token (SEALTRAIL_METRICS_TOKEN) or the platform-admin token; tenant keys get 403, since the figures span every tenant. Ingest counts by durability and reason, request latency by route template, async queue and spool depth, spool records lost to damage, group commit size and duration, checkpoint age per tenant, lifecycle runs and bytes per tier.",
                "responses": {"200": {"description": "The metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    "401": problem("No valid credential."), "403": problem("A tenant key.")}}}));
    paths.insert("/openapi.json".into(), json!({"get": {"summary": "This document.", "responses": {
                "200": json_body("OpenAPI 3.1 document.", json!({"type": "object"})), "401": problem("No valid key.")}}}));
    paths.insert("/v1/events".into(), json!({
                "post": {
                    "summary": "Ingest one event, a JSON array of events, or NDJSON.",
                    "description": format!("At most {BATCH_EVENTS_MAX} events and {BODY_BYTES_MAX} bytes per request. A request with any invalid event is rejected whole. A body without Content-Type is read as JSON."),
                    "parameters": [{"name": "durability", "in": "query", "required": false, "schema": {"enum": ["sync", "async"]},
                        "description": "sync: 201 after an fsynced commit. async: 202 after the events are spooled locally. Without it, the default durability of the tenant's capture policy (shipped: sync). A request holding a kept class-0 event is always sync."}],
                    "requestBody": {"required": true, "content": {
                        "application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/EventV1"}, events_array.clone()]}},
                        "application/x-ndjson": {"schema": events_array, "description": "One event (EventV1) per line."}}},
                    "responses": {
                        "201": json_body("Committed (also for an async request holding a kept class-0 event). One result per event, in order: a receipt, or for an event the tenant's capture policy dropped, sampled_out.", json!({"type": "object", "additionalProperties": false, "required": ["results"],
                            "properties": {"results": {"type": "array", "items": {"oneOf": [
                                {"$ref": "#/components/schemas/Receipt"}, {"$ref": "#/components/schemas/SampledOut"}]}}}})),
                        "202": json_body("Accepted and spooled.", json!({"type": "object", "additionalProperties": false, "required": ["accepted", "results"],
                            "properties": {"accepted": {"type": "integer", "minimum": 1}, "results": {"type": "array", "items": {"oneOf": [{
                                "type": "object", "additionalProperties": false, "required": ["event_id", "tenant_id"],
                                "properties": {"event_id": {"type": "string"}, "tenant_id": {"type": "string"}}},
                                {"$ref": "#/components/schemas/SampledOut"}]}}}})),
                        "400": problem("Invalid events; each listed with index, field and reason. Also what parsing would silently change: a key repeated in one object, or an integer beyond the 64-bit ranges, named by its field path (metadata.count, metadata.items[2])."),
                        "401": problem("No valid key."), "403": problem("Key not allowed for this tenant or role."),
                        "409": problem("event_id reused with different content."),
                        "413": problem("Too many events or too many bytes."),
                        "415": problem("The body's Content-Type is not one this endpoint reads."),
                        "503": problem("Queue full: retry after the Retry-After header.")
                    }
                },
                "get": {
                    "summary": "Page through one tenant's events, newest first by default.",
                    "parameters": event_filters.iter().chain(&protected_filters).cloned().collect::<Vec<_>>(),
                    "responses": {
                        "200": json_body("A page.", json!({"type": "object", "additionalProperties": false, "required": ["events", "next_cursor"], "properties": {
                            "events": {"type": "array", "items": {"$ref": "#/components/schemas/StoredEvent"}},
                            "next_cursor": {"type": ["string", "null"]}}})),
                        "400": problem("Bad filter; the parameter is named."), "401": problem("No valid key."), "403": problem("Wrong tenant or role.")
                    }
                }
            }));
    paths.insert("/v1/query".into(), json!({"post": {
                "summary": "Read-only SQL over events (the caller's tenant across every tier) and the tenant's actors, summary_actor_day and summary_tenant_month.",
                "description": format!("Apache DataFusion SQL. Only SELECT (with joins, unions, subqueries, CTEs) over `events`, `actors(actor_id, display_name, department, team, attributes)`, `summary_actor_day(date, actor_id, action, resource_type, events, sampled_out, failed, events_deleted)` and `summary_tenant_month(year_month, total_events, sampled_out_events, failed_events, unique_actors, events_deleted)`, each holding only the caller's tenant; no other table, no information_schema, no DDL, DML or SET. At most {SQL_ROWS_MAX} rows (then `truncated` is true), {SQL_TIMEOUT_MILLIS} ms and {SQL_TEXT_BYTES_MAX} bytes of SQL. A repeated query is answered from a bounded result cache while nothing it can read has changed (no commit to the tenant, no change of its archived files); a query calling a function that is not immutable (`now()`, `random()`) is always computed afresh."),
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["sql"], "additionalProperties": false,
                    "properties": {
                        "sql": {"type": "string", "minLength": 1, "maxLength": SQL_TEXT_BYTES_MAX, "pattern": "\\S",
                            "description": format!("Not blank; at most {SQL_TEXT_BYTES_MAX} bytes of UTF-8.")},
                        "tenant_id": nullable(json!({"allOf": [tenant_id_schema()], "description": "Required for the platform admin."}))}}}}},
                "responses": {
                    "200": json_body("The result.", json!({"type": "object", "required": ["columns", "rows", "row_count", "truncated"], "properties": {
                        "columns": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "type": {"type": "string"}}}},
                        "rows": {"type": "array", "items": {"type": "object"}}, "row_count": {"type": "integer", "minimum": 0}, "truncated": {"type": "boolean"}}})),
                    "400": problem("The SQL does not parse, names something other than events, is not a read, or ran out of time (field sql)."),
                    "401": problem("No valid key."), "403": problem("Wrong tenant or role."), "413": problem("Body too large."), "415": problem("The body's Content-Type is not one this endpoint reads."),
                    "429": problem(&format!("The caller's tenant already runs {QUERIES_PER_TENANT_CONCURRENT_MAX} SQL queries or exports; retry after Retry-After seconds.")),
                    "503": problem(&format!("{QUERIES_CONCURRENT_MAX} SQL queries and exports already run; retry after Retry-After seconds."))
                }
            }}));
    paths.insert("/v1/export".into(), json!({"get": {
                "summary": "Every event of one tenant with timestamp in [from, to), in seq order, streamed as NDJSON from every tier.",
                "parameters": [tenant_query("Required for the platform admin."),
                    timestamp_query("from", "RFC 3339, inclusive."), timestamp_query("to", "RFC 3339, exclusive; must be later than from.")],
                "responses": {"200": {"description": "One StoredEvent JSON object per line.", "content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
                    "400": problem("Bad parameter; it is named."), "401": problem("No valid key."), "403": problem("Wrong tenant or role."),
                    "429": problem(&format!("The caller's tenant already runs {QUERIES_PER_TENANT_CONCURRENT_MAX} SQL queries or exports; retry after Retry-After seconds.")),
                    "503": problem(&format!("{QUERIES_CONCURRENT_MAX} SQL queries and exports already run; retry after Retry-After seconds."))}
            }}));
    let export_filters = json!({"type": "object", "additionalProperties": false, "description": "Exact-match filters of GET /v1/events, as strings (the range is the request's own from and to).", "properties": {
        "actor_id": {"type": "string", "minLength": 1}, "action": {"type": "string", "minLength": 1}, "resource_type": {"type": "string", "minLength": 1},
        "resource_id": {"type": "string", "minLength": 1}, "request_id": {"type": "string", "minLength": 1},
        "outcome": {"enum": ["success", "failure"]}}});
    let export_job = json!({"type": "object", "required": ["export_id", "tenant_id", "format", "filters", "state", "requested_by", "created_at", "events_expected", "events_read", "events_written", "bytes"], "properties": {
        "export_id": {"type": "string"}, "tenant_id": {"type": "string"}, "format": {"enum": ["ndjson", "csv", "parquet", "ocsf", "report"]},
        "filters": {"type": "object"}, "plaintext": {"type": "boolean", "description": "Protected fields are opened in the file."},
        "state": {"enum": ["queued", "running", "done", "failed", "cancelled", "expired"]},
        "requested_by": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"},
        "finished_at": {"type": "string", "format": "date-time"}, "expires_at": {"type": "string", "format": "date-time"},
        "events_expected": {"type": "integer", "minimum": 0, "description": "Events the job reads: its span, from the first matching event to the last."},
        "events_read": {"type": "integer", "minimum": 0}, "events_written": {"type": "integer", "minimum": 0, "description": "Rows in the file."},
        "bytes": {"type": "integer", "minimum": 0}, "sha256": {"type": "string"}, "tree_size": {"type": "integer", "minimum": 0},
        "error": {"type": "string"}, "download": {"type": "string"}, "bundle": {"type": "string"}}});
    let export_id_path =
        json!({"name": "export_id", "in": "path", "required": true, "schema": {"type": "string"}});
    let export_tenant = tenant_query("Required for the platform admin.");
    paths.insert("/v1/exports".into(), json!({
        "post": {
            "summary": "Start an export job of the caller's tenant (format report: a compliance evidence report in HTML and PDF beside an NDJSON export of the period): the events with timestamp in [from, to) that match the filters, in seq order, as NDJSON, CSV (RFC 4180), Parquet or OCSF, written to object storage with a proof bundle that verifies offline (sealtrail verify-bundle). The request, completion and each download are events of the tenant's log.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "required": ["format"], "properties": {
                "format": {"enum": ["ndjson", "csv", "parquet", "ocsf", "report"]},
                "from": {"type": "string", "format": "date-time"}, "to": {"type": "string", "format": "date-time"},
                "filters": export_filters,
                "plaintext": {"type": "boolean", "default": false, "description": "Open the tenant's protected fields in the file (docs/PRIVACY.md); a tenant admin or the platform admin only. An erasure in the tenant removes such files."},
                "tenant_id": nullable(json!({"allOf": [tenant_id_schema()], "description": "Required for the platform admin."}))}}}}},
            "responses": {"202": json_body("The job, queued.", export_job.clone()),
                "400": problem("A member is invalid; it is named."), "401": problem("No valid key."), "403": problem("Wrong tenant or role, or plaintext asked by a key that is not the tenant's admin."),
                "413": problem("Body too large."), "415": problem("The body's Content-Type is not one this endpoint reads."),
                "429": problem(&format!("The tenant has {EXPORT_JOBS_PER_TENANT_MAX} unfinished exports."))}
        },
        "get": {
            "summary": "The tenant's export jobs, newest first.",
            "parameters": [export_tenant.clone()],
            "responses": {"200": json_body("The jobs.", json!({"type": "object", "required": ["tenant_id", "exports"], "properties": {
                    "tenant_id": {"type": "string"}, "exports": {"type": "array", "items": export_job.clone()}}})),
                "400": problem("Bad parameter; it is named."), "401": problem("No valid key."), "403": problem("Wrong tenant or role.")}
        }
    }));
    paths.insert("/v1/exports/{export_id}".into(), json!({"parameters": [export_id_path.clone(), export_tenant.clone()],
        "get": {
            "summary": "One export job: its state, events read, expected and written, bytes, and when done where to download it.",
            "responses": {"200": json_body("The job.", export_job.clone()), "400": problem("Bad parameter; it is named."),
                "401": problem("No valid key."), "403": problem("Wrong tenant or role."), "404": problem("No export of that id for this tenant.")}
        },
        "delete": {
            "summary": "Cancel a job that has not finished, or remove the files of one that has (then expired).",
            "responses": {"200": json_body("The job.", export_job), "400": problem("Bad parameter; it is named."),
                "401": problem("No valid key."), "403": problem("Wrong tenant or role."), "404": problem("No export of that id for this tenant.")}
        }}));
    paths.insert("/v1/exports/{export_id}/download".into(), json!({"parameters": [export_id_path, export_tenant,
            {"name": "part", "in": "query", "required": false, "schema": {"enum": ["data", "bundle", "html", "pdf"]}, "description": "data (default): the exported file; bundle: its proof bundle (a header line, then the span's non-matching events); html, pdf: a report job's compliance evidence report."}],
        "get": {
            "summary": "Download a done export's file or its proof bundle.",
            "responses": {"200": {"description": "The file.", "content": {"application/x-ndjson": {"schema": {"type": "string"}}, "text/csv": {"schema": {"type": "string"}}, "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}, "text/html": {"schema": {"type": "string"}}, "application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
                "400": problem("Bad parameter; it is named."), "401": problem("No valid key."), "403": problem("Wrong tenant or role."),
                "404": problem("No export of that id for this tenant, or part html or pdf of an export that is not a report."), "409": problem("The export is not done (or its files expired).")}
        }}));
    paths.insert("/v1/events/{event_id}".into(), json!({"get": {
                "summary": "One stored event.",
                "parameters": [{"name": "event_id", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}},
                    tenant_query("Required for the platform admin.")],
                "responses": {"200": json_body("The event.", json!({"$ref": "#/components/schemas/StoredEvent"})),
                    "400": problem("Bad tenant_id or an unknown query parameter; it is named."),
                    "401": problem("No valid key."), "403": problem("Wrong tenant or role."), "404": problem("No such event.")}
            }}));
    paths.insert("/v1/verifier-key".into(), json!({"get": {
                "summary": "The C2SP note verifier key (name+keyid+base64) every checkpoint is signed with.",
                "responses": {"200": text_body("The key."), "401": problem("No valid key.")}
            }}));
    paths.insert("/v1/tenants/{tenant_id}/checkpoint".into(), json!({
                "get": {
                    "summary": "The latest signed checkpoint (C2SP tlog-checkpoint in a signed note), or the one cut at tree_size.",
                    "parameters": [tenant_path(), size_query("tree_size", false, "The tree size the checkpoint was cut at.")],
                    "responses": {"200": text_body("The note as is."),
                        "400": problem("Bad tenant_id or tree_size; it is named."), "401": problem("No valid key."), "403": problem("Wrong tenant or role."), "404": problem("No such checkpoint.")}
                },
                "post": {
                    "summary": "Cut a checkpoint now (if the log grew) and return the latest.",
                    "parameters": [tenant_path()],
                    "responses": {"201": text_body("The note."), "400": problem("Bad tenant_id; it is named."),
                        "401": problem("No valid key."), "403": problem("Wrong tenant or role."), "404": problem("No events.")}
                }
            }));
    paths.insert("/v1/tenants/{tenant_id}/proofs/inclusion".into(), json!({"get": {
                "summary": "RFC 9162 inclusion proof of an event in the tree of tree_size (default: the latest checkpoint's size).",
                "parameters": [tenant_path(), {"name": "event_id", "in": "query", "required": true, "schema": {"type": "string"}},
                    size_query("tree_size", false, "At least the event's seq and at most the tenant's tree size.")],
                "responses": {"200": json_body("The proof.", json!({"type": "object", "additionalProperties": false,
                        "required": ["leaf_index", "tree_size", "leaf_hash", "hashes"], "properties": {
                            "leaf_index": {"type": "integer", "minimum": 0}, "tree_size": {"type": "integer", "minimum": 1},
                            "leaf_hash": hash_base64.clone(), "hashes": {"type": "array", "items": hash_base64.clone()}}})),
                    "400": problem("Bad size: larger than the tree, or before the event; or bad tenant_id."), "401": problem("No valid key."),
                    "403": problem("Wrong tenant or role."), "404": problem("No such event.")}
            }}));
    paths.insert("/v1/tenants/{tenant_id}/proofs/consistency".into(), json!({"get": {
                "summary": "RFC 9162 consistency proof from tree size first to second.",
                "parameters": [tenant_path(), size_query("first", true, "At most second."),
                    size_query("second", true, "At most the tenant's tree size.")],
                "responses": {"200": json_body("The proof.", json!({"type": "object", "additionalProperties": false, "required": ["hashes"],
                        "properties": {"hashes": {"type": "array", "items": hash_base64.clone()}}})),
                    "400": problem("Bad sizes: first > second, or larger than the tree; or bad tenant_id."),
                    "401": problem("No valid key."), "403": problem("Wrong tenant or role.")}
            }}));
    paths.insert("/v1/keys".into(), json!({"post": {
                "summary": "Create an API key (platform admin, or a tenant admin for its own tenant). The key is shown once. It may be given an expiry, by expires_at or by ttl_seconds (not both), at most API_KEY_TTL_DAYS_MAX days ahead; without one it works until revoked.",
                "description": "Roles: ingest (writes events), reader or security_admin (reads the whole tenant), admin (reads and manages the tenant), team_admin (reads the events of the actors its teams hold in the actor directory; give teams), self (reads one actor's own events; give actor_id). docs/ACCESS.md.",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"oneOf": [
                    key_body(json!({"enum": ["ingest", "reader", "security_admin", "admin"]}), json!({}), &[]),
                    key_body(json!({"const": "self"}),
                        json!({"actor_id": {"type": "string", "minLength": 1, "maxLength": ACTOR_ID_CHARS_MAX, "description": "The actor whose events the key reads."}}),
                        &["actor_id"]),
                    key_body(json!({"const": "team_admin"}),
                        json!({"teams": {"type": "array", "minItems": 1, "maxItems": KEY_TEAMS_MAX, "items": {"type": "string", "minLength": 1, "maxLength": ACTOR_NAME_CHARS_MAX},
                            "description": "The teams (of the actor directory) whose actors' events the key reads."}}),
                        &["teams"]),
                ]}}}},
                "responses": {"201": json_body("The new key.", json!({"type": "object", "required": ["key", "key_id", "tenant_id", "role", "created_at", "expires_at"],
                        "properties": {"key": {"type": "string"}, "key_id": {"type": "string"}, "tenant_id": {"type": "string"},
                            "role": {"enum": ["ingest", "reader", "admin", "team_admin", "self"]}, "created_at": {"type": "string", "format": "date-time"},
                            "scope": {"description": "The actor or teams a self or team_admin key reads; null for the other roles."},
                            "expires_at": {"type": ["string", "null"], "format": "date-time", "description": "null: the key does not expire."}}})),
                    "400": problem("Bad tenant_id, role, expires_at or ttl_seconds (errors[].field names it)."), "401": problem("No valid key."),
                    "403": problem("Not allowed to create keys for this tenant."), "413": problem("Body too large."), "415": problem("The body's Content-Type is not one this endpoint reads.")}
            }}));
    paths.insert("/v1/regions/holds/{tenant_id}".into(), json!({"get": {
        "summary": "Whether this node's region holds the tenant (a chain or settings of it here): how another region's node finds where to forward a request (platform admin).",
        "parameters": [{"name": "tenant_id", "in": "path", "required": true, "schema": tenant_id_schema()}],
        "responses": {"200": json_body("Where the tenant is.", json!({"type": "object", "additionalProperties": false,
                "required": ["tenant_id", "region", "held"], "properties": {
                    "tenant_id": {"type": "string"}, "region": {"type": "string"}, "held": {"type": "boolean"}}})),
            "400": problem("Bad tenant id; it is named."), "401": problem("No valid key."), "403": problem("Not the platform admin.")}
    }}));
    paths.insert("/v1/regions/tenants".into(), json!({"get": {
        "summary": "Every region's tenants and their events, each region answering for its own: this node's, then each peer's (platform admin). A peer that does not answer is listed in unreachable.",
        "responses": {"200": json_body("The regions.", json!({"type": "object", "additionalProperties": false,
                "required": ["regions", "unreachable"], "properties": {
                    "regions": {"type": "array", "items": {"type": "object", "required": ["region", "tenants"], "properties": {
                        "region": {"type": "string"}, "tenants": {"type": "array", "items": {"type": "object",
                            "required": ["tenant_id", "events"], "properties": {"tenant_id": {"type": "string"}, "events": {"type": "integer", "minimum": 0}}}}}}},
                    "unreachable": {"type": "array", "items": {"type": "string"}}}})),
            "401": problem("No valid key."), "403": problem("Not the platform admin.")}
    }}));
    paths.insert("/v1/whoami".into(), json!({"get": {
        "summary": "The caller: its tenant, access level, scope and the name of its credential (never a secret).",
        "responses": {"200": json_body("The caller.", json!({"type": "object", "additionalProperties": false,
                "required": ["tenant_id", "role", "actor_id", "teams", "credential"], "properties": {
                    "tenant_id": {"type": ["string", "null"]},
                    "role": {"enum": ["platform_admin", "admin", "security_admin", "team_admin", "self", "ingest"]},
                    "actor_id": {"type": ["string", "null"]}, "teams": {"type": "array", "items": {"type": "string"}},
                    "credential": {"type": "string"}}})),
            "401": problem("No valid key or token.")}
    }}));
    paths.insert("/v1/viewer-tokens".into(), json!({"post": {
        "summary": "Mint a short-lived viewer token (PASETO v4.public) for one actor, for that person's browser to read their own events (scope self) or their team's (scope team) directly. A tenant's admin key, or the platform admin naming tenant_id.",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false,
            "required": ["actor_id"], "properties": {
                "actor_id": {"type": "string", "minLength": 1, "maxLength": ACTOR_ID_CHARS_MAX},
                "scope": {"enum": ["self", "team"], "description": "Default self. team needs the actor's team in the actor directory."},
                "ttl_seconds": {"type": "integer", "minimum": 1, "maximum": VIEWER_TOKEN_TTL_SECS_MAX, "description": "Default and most: one hour."},
                "tenant_id": tenant_id_schema()}}}}},
        "responses": {"201": json_body("The token: shown once, never stored.", json!({"type": "object", "additionalProperties": false,
                "required": ["token", "token_id", "tenant_id", "actor_id", "scope", "expires_at"], "properties": {
                    "token": {"type": "string"}, "token_id": {"type": "string"}, "tenant_id": {"type": "string"},
                    "actor_id": {"type": "string"}, "scope": {"enum": ["self", "team"]},
                    "expires_at": {"type": "string", "format": "date-time"}}})),
            "400": problem("Bad actor_id, scope or ttl_seconds (named); a team token for an actor without a team."),
            "401": problem("No valid key."), "403": problem("Not an admin of the tenant."),
            "413": problem("Body too large."), "415": problem("The body's Content-Type is not one this endpoint reads.")}
    }}));
    paths.insert("/v1/tenants/{tenant_id}/viewer-tokens/rotate-key".into(), json!({"post": {
        "summary": "Replace the tenant's viewer-token signing key: every token signed before stops working at once. Recorded in the tenant's log.",
        "parameters": [tenant_path()],
        "responses": {"200": json_body("The new key's id.", json!({"type": "object", "additionalProperties": false,
                "required": ["tenant_id", "key_id"], "properties": {"tenant_id": {"type": "string"}, "key_id": {"type": "string"}}})),
            "400": problem("Bad tenant_id."), "401": problem("No valid key."), "403": problem("Not an admin of the tenant.")}
    }}));
    paths.insert("/v1/access-trail".into(), json!({"get": {
        "summary": "The tenant's read trail: one access.read entry per read of its audit data (who, which key or token, route, filters or SQL, rows returned, request id), the platform admin's included. A log of its own (_access.<tenant>), chained and checkpointed; reading it is recorded in it. Security admins, admins and the platform admin.",
        "parameters": [tenant_query("Required with the platform-admin token; a tenant key reads its own tenant."),
            {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": QUERY_LIMIT_MAX}},
            {"name": "order", "in": "query", "required": false, "schema": {"enum": ["asc", "desc"]}},
            {"name": "cursor", "in": "query", "required": false, "schema": {"type": "string"}, "description": "next_cursor of the previous page."}],
        "responses": {"200": json_body("A page of entries.", json!({"type": "object", "additionalProperties": false, "required": ["events", "next_cursor"], "properties": {
                    "events": {"type": "array", "items": {"$ref": "#/components/schemas/StoredEvent"}},
                    "next_cursor": {"type": ["string", "null"]}}})),
            "400": problem("Bad parameter; it is named."), "401": problem("No valid key."),
            "403": problem("Wrong tenant, or a level that reads less than the whole tenant.")}
    }}));
    paths.insert("/v1/keys/{key_id}".into(), json!({"delete": {
                "summary": "Revoke an API key: the next request with it gets 401. The platform admin may revoke any key; a tenant admin key only keys of its own tenant (any other key is 404, as an unknown one). Revoking a revoked key again succeeds.",
                "parameters": [{"name": "key_id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
                    "description": "The key's id: the part between `stk_` and the next `_` of the key."}],
                "responses": {"204": {"description": "Revoked (or already revoked)."},
                    "401": problem("No valid key."), "403": problem("A tenant key without the admin role."),
                    "404": problem("No such key, or a key of another tenant.")}
            }}));
    paths.insert("/v1/tenants/{tenant_id}/rejected-events".into(), json!({"get": {
        "summary": "Async requests the store refused after their 202 (an event_id already stored with other content): the most recent ones, oldest first, and how many in all.",
        "parameters": [tenant_path()],
        "responses": {"200": json_body("The tenant's refusals.", json!({"type": "object", "additionalProperties": false,
                "required": ["tenant_id", "total", "rejected"], "properties": {
                    "tenant_id": {"type": "string"}, "total": {"type": "integer", "minimum": 0},
                    "rejected": {"type": "array", "items": {"type": "object", "additionalProperties": false,
                        "required": ["event_id", "index", "request_events", "reason", "rejected_at"], "properties": {
                            "event_id": {"type": "string"}, "index": {"type": "integer", "minimum": 0},
                            "request_events": {"type": "integer", "minimum": 1}, "reason": {"type": "string"},
                            "rejected_at": {"type": "string", "format": "date-time"}}}}}})),
            "400": problem("Bad tenant_id; it is named."), "401": problem("No valid key."),
            "403": problem("Wrong tenant or role.")}
    }}));
    let class = json!({"type": "integer", "minimum": 0, "maximum": 3});
    let rate = json!({"type": "number", "minimum": 0, "maximum": 1});
    let match_text = verb_schema(POLICY_MATCH_CHARS_MAX);
    let rule = json!({"type": "object", "additionalProperties": false, "required": ["class"], "properties": {
        "class": class, "action": match_text, "action_prefix": match_text, "resource_type": match_text,
        "actor_type": {"enum": ["human", "service", "system"]}, "outcome": {"enum": ["success", "failure"]}}});
    paths.insert("/v1/tenants/{tenant_id}/policy".into(), json!({
        "parameters": [tenant_path()],
        "put": {
            "summary": "Replace a tenant's capture policy (its admin keys or the platform admin). The change is first committed as a policy.update event of the tenant's log, with the policy before and after.",
            "description": "Rules are tried in order; the first whose every member matches gives the class, else default_class. Missing rates are 1.0; class 0 is always kept. docs/FORMAT.md, \"Sampling\", defines the decision.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "properties": {
                "default_class": class,
                "rates": {"type": "object", "additionalProperties": false, "properties": {
                    "0": {"type": "number", "minimum": 1, "maximum": 1}, "1": rate, "2": rate, "3": rate}},
                "rules": {"type": "array", "maxItems": POLICY_RULES_MAX, "items": rule},
                "default_durability": {"enum": ["sync", "async"]}}}}}},
            "responses": {"200": json_body("The stored policy.", json!({"$ref": "#/components/schemas/CapturePolicy"})),
                "400": problem("A member is invalid; each error names its field (rates.0, rules[2].class, …). Nothing is stored."),
                "401": problem("No valid key."), "403": problem("Not an admin of this tenant."), "413": problem("Body too large."),
                "415": problem("The body's Content-Type is not one this endpoint reads."),
                "503": problem("The change could not be recorded in the tenant's log; nothing is stored.")}
        },
        "get": {
            "summary": "The capture policy that applies to a tenant: its own (source tenant) or the deployment's (source deployment).",
            "responses": {"200": json_body("The policy.", json!({"$ref": "#/components/schemas/CapturePolicy"})),
                "400": problem("Bad tenant_id; it is named."), "401": problem("No valid key."),
                "403": problem("Not an admin of this tenant.")}
        }
    }));
    let day = |name: &str, description: &str| {
        json!({"name": name, "in": "query", "required": false, "description": description,
        "schema": day_bound_schema()})
    };
    let tally = json!({"type": "integer", "minimum": 0});
    paths.insert("/v1/tenants/{tenant_id}/sampling".into(), json!({"get": {
        "summary": "A tenant's sampling statistics: events seen and kept per UTC day of their timestamp, class and action, with what the latest sampling statement stated, and totals per class.",
        "parameters": [tenant_path(), day("from", "First day, YYYY-MM-DD (inclusive)."), day("to", "Last day, YYYY-MM-DD (inclusive).")],
        "responses": {"200": json_body("The statistics.", json!({"type": "object", "additionalProperties": false,
                "required": ["tenant_id", "from", "to", "rates", "totals", "counts"], "properties": {
                    "tenant_id": {"type": "string"}, "from": {"type": ["string", "null"]}, "to": {"type": ["string", "null"]},
                    "rates": {"type": "object", "additionalProperties": {"type": "number"}},
                    "totals": {"type": "array", "items": {"type": "object", "additionalProperties": false, "required": ["class", "kept", "seen"],
                        "properties": {"class": class, "kept": tally, "seen": tally}}},
                    "counts": {"type": "array", "items": {"type": "object", "additionalProperties": false,
                        "required": ["day", "class", "action", "kept", "seen", "stated_kept", "stated_seen"], "properties": {
                            "day": {"type": "string", "format": "date"}, "class": class, "action": {"type": "string"},
                            "kept": tally, "seen": tally, "stated_kept": tally, "stated_seen": tally}}}}})),
            "400": problem("Bad tenant_id or day; it is named."), "401": problem("No valid key."),
            "403": problem("Wrong tenant or role.")}
    }}));
    let name_text = nullable(text_schema(ACTOR_NAME_CHARS_MAX));
    paths.insert("/v1/tenants/{tenant_id}/actors".into(), json!({"put": {
        "summary": "Insert or replace entries of a tenant's actor directory (its admin keys or the platform admin), all or none. An entry replaces the stored one whole.",
        "parameters": [tenant_path()],
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "array", "minItems": 1, "maxItems": ACTORS_PER_REQUEST_MAX,
            "items": {"type": "object", "additionalProperties": false, "required": ["actor_id"], "properties": {
                "actor_id": text_schema(ACTOR_ID_CHARS_MAX),
                "display_name": name_text, "department": name_text, "team": name_text,
                "attributes": {"type": ["object", "null"], "description": format!("At most {ACTOR_ATTRIBUTES_BYTES_MAX} bytes as canonical JSON, at most {JSON_DEPTH_MAX} levels deep.")}}}}}}},
        "responses": {"200": json_body("Written.", json!({"type": "object", "additionalProperties": false, "required": ["tenant_id", "upserted"],
                "properties": {"tenant_id": {"type": "string"}, "upserted": {"type": "integer", "minimum": 1}}})),
            "400": problem("An entry is invalid (each listed with index and member) or an actor_id repeats; nothing is written."),
            "401": problem("No valid key."), "403": problem("Not an admin of this tenant."),
            "413": problem("Too many actors or too many bytes."),
            "415": problem("The body's Content-Type is not one this endpoint reads.")}
    }}));
    paths.insert("/v1/tenants/{tenant_id}/actors/{actor_id}".into(), json!({"get": {
        "summary": "One entry of a tenant's actor directory.",
        "parameters": [tenant_path(), {"name": "actor_id", "in": "path", "required": true, "schema": {"type": "string"}}],
        "responses": {"200": json_body("The actor.", json!({"type": "object", "additionalProperties": false,
                "required": ["tenant_id", "actor_id", "display_name", "department", "team", "attributes"], "properties": {
                    "tenant_id": {"type": "string"}, "actor_id": {"type": "string"},
                    "display_name": {"type": ["string", "null"]}, "department": {"type": ["string", "null"]},
                    "team": {"type": ["string", "null"]}, "attributes": {"type": ["object", "null"]}}})),
            "400": problem("Bad tenant_id; it is named."), "401": problem("No valid key."),
            "403": problem("Wrong tenant or role."), "404": problem("No such actor in the directory.")}
    }}));
    let counts_object =
        json!({"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}});
    let read_params = |range: Value, description: &str| {
        json!([tenant_query("Required with the platform-admin token; a tenant key reads its own tenant."),
            {"name": "from", "in": "query", "required": false, "schema": range, "description": format!("First {description} (inclusive).")},
            {"name": "to", "in": "query", "required": false, "schema": range, "description": format!("Last {description} (inclusive).")}])
    };
    let failed_events = json!({"type": "integer", "minimum": 0, "description": "Stored events whose outcome is failure (failure_counts per action)."});
    let day_summary = json!({"type": "object", "additionalProperties": false,
        "required": ["date", "total_events", "sampled_out_events", "failed_events", "action_counts", "failure_counts", "events_deleted"], "properties": {
            "date": {"type": "string", "format": "date"},
            "total_events": {"type": "integer", "minimum": 0}, "sampled_out_events": {"type": "integer", "minimum": 0},
            "failed_events": failed_events.clone(), "action_counts": counts_object, "failure_counts": counts_object,
            "events_deleted": {"type": "boolean", "description": "Retention deleted events of this day; the summary still counts them."}}});
    paths.insert("/v1/summaries/tenant-day".into(), json!({"get": {
        "summary": "Per UTC day: stored events in all, by action and failed by action, the events the capture policy dropped, and the period's most active actors. Summed from the actor-day summaries; a self or team_admin caller gets its scope's days.",
        "parameters": read_params(day_bound_schema(), "day, YYYY-MM-DD"),
        "responses": {"200": json_body("The days that hold events, in order.", json!({"type": "object", "additionalProperties": false,
                "required": ["tenant_id", "summaries", "top_actors", "truncated"], "properties": {
                    "tenant_id": {"type": "string"}, "truncated": {"type": "boolean", "description": format!("More than {SUMMARY_ROWS_MAX} days matched; narrow the range.")},
                    "summaries": {"type": "array", "items": day_summary},
                    "top_actors": {"type": "array", "maxItems": TOP_ACTORS, "items": {"type": "object", "additionalProperties": false,
                        "required": ["actor_id", "events"], "properties": {"actor_id": {"type": "string"}, "events": {"type": "integer", "minimum": 1}}}}}})),
            "400": problem("Bad parameter; it is named."), "401": problem("No valid key."), "403": problem("Wrong tenant or role.")}
    }}));
    let mut actor_day_params = read_params(day_bound_schema(), "day, YYYY-MM-DD");
    actor_day_params.as_array_mut().expect("an array").push(
        json!({"name": "actor_id", "in": "query", "required": false, "schema": {"type": "string"}}),
    );
    paths.insert("/v1/summaries/actor-day".into(), json!({"get": {
        "summary": "Per actor per UTC day: stored events in all, by action and by resource type, and apart the events the capture policy dropped. Kept as events arrive; never a scan of events.",
        "parameters": actor_day_params,
        "responses": {"200": json_body("The summaries, by day then actor.", json!({"type": "object", "additionalProperties": false,
                "required": ["tenant_id", "summaries", "truncated"], "properties": {
                    "tenant_id": {"type": "string"}, "truncated": {"type": "boolean", "description": format!("More than {SUMMARY_ROWS_MAX} summaries matched; narrow the range.")},
                    "summaries": {"type": "array", "items": {"type": "object", "additionalProperties": false,
                        "required": ["actor_id", "date", "total_events", "sampled_out_events", "failed_events", "action_counts", "failure_counts", "resource_type_counts", "events_deleted"], "properties": {
                            "actor_id": {"type": "string"}, "date": {"type": "string", "format": "date"},
                            "total_events": {"type": "integer", "minimum": 0}, "sampled_out_events": {"type": "integer", "minimum": 0},
                            "failed_events": failed_events.clone(),
                            "action_counts": counts_object, "failure_counts": counts_object, "resource_type_counts": counts_object,
                            "events_deleted": {"type": "boolean", "description": "Retention deleted events of this day; the summary still counts them."}}}}}})),
            "400": problem("Bad parameter; it is named."), "401": problem("No valid key."), "403": problem("Wrong tenant or role.")}
    }}));
    let month_pattern = json!({"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$"});
    let top_resources = json!({"type": "array", "maxItems": TOP_RESOURCES, "items": {"type": "object", "additionalProperties": false,
        "required": ["resource_type", "resource_id", "events"], "properties": {
            "resource_type": {"type": "string"}, "resource_id": {"type": "string"}, "events": {"type": "integer", "minimum": 1}}}});
    let month_summary = json!({"type": "object", "additionalProperties": false,
        "required": ["year_month", "total_events", "sampled_out_events", "failed_events", "unique_actors", "action_breakdown", "failure_breakdown", "events_deleted", "top_resources"], "properties": {
            "year_month": {"type": "string"}, "total_events": {"type": "integer", "minimum": 0},
            "events_deleted": {"type": "boolean", "description": "Retention deleted events of this month; the summary still counts them."},
            "sampled_out_events": {"type": "integer", "minimum": 0}, "unique_actors": {"type": "integer", "minimum": 0},
            "action_breakdown": counts_object, "failed_events": failed_events, "failure_breakdown": counts_object,
            "top_resources": top_resources}});
    paths.insert("/v1/summaries/tenant-month".into(), json!({"get": {
        "summary": "Per UTC month: stored events in all and by action, the events dropped, the failed ones, distinct actors, and the resources with the most stored events.",
        "parameters": read_params(month_pattern, "month, YYYY-MM"),
        "responses": {"200": json_body("The months that hold events, in order.", json!({"type": "object", "additionalProperties": false,
                "required": ["tenant_id", "summaries"], "properties": {
                    "tenant_id": {"type": "string"}, "summaries": {"type": "array", "items": month_summary}}})),
            "400": problem("Bad parameter; it is named."), "401": problem("No valid key."), "403": problem("Wrong tenant or role.")}
    }}));
    realtime_paths(&mut paths, &event_filters[..9]);
    paths.insert("/v1/tenants/{tenant_id}/retention".into(), json!({
                "parameters": [tenant_path()],
                "put": {
                    "summary": "Set a tenant's retention and legal hold (platform admin). Expired cold files are deleted by the lifecycle, each under a signed deletion record, unless legal_hold is true.",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "description": "Exactly one of retention_days or retention_years.",
                        "oneOf": [
                            {"type": "object", "additionalProperties": false, "required": ["retention_days", "legal_hold"], "properties": {
                                "retention_days": {"type": "integer", "minimum": 1, "maximum": RETENTION_DAYS_MAX},
                                "legal_hold": {"type": "boolean"}}},
                            {"type": "object", "additionalProperties": false, "required": ["retention_years", "legal_hold"], "properties": {
                                "retention_years": {"type": "integer", "minimum": 1, "maximum": RETENTION_YEARS_MAX,
                                    "description": format!("Counted as {RETENTION_YEAR_DAYS} days per year.")},
                                "legal_hold": {"type": "boolean"}}}
                        ]}}}},
                    "responses": {"200": json_body("The stored policy.", json!({"$ref": "#/components/schemas/RetentionPolicy"})),
                        "400": problem("A field is missing or invalid; each error names its field. Nothing is stored."),
                        "401": problem("No valid key."), "403": problem("Not the platform admin."), "413": problem("Body too large."), "415": problem("The body's Content-Type is not one this endpoint reads.")}
                },
                "get": {
                    "summary": "A tenant's retention policy (platform admin).",
                    "responses": {"200": json_body("The policy.", json!({"$ref": "#/components/schemas/RetentionPolicy"})),
                        "400": problem("Bad tenant_id; it is named."), "401": problem("No valid key."),
                        "403": problem("Not the platform admin."), "404": problem("No policy: events are kept indefinitely.")}
                }
            }));
    privacy_paths(&mut paths);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Sealtrail",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!("Tamper-evident audit trail service. Every /v1 endpoint needs `Authorization: Bearer <key>`. Every error is an RFC 9457 application/problem+json document naming the field or reason. A request whose response has not begun within {REQUEST_TIMEOUT_MILLIS} ms is answered 503 with Retry-After (a streamed export is not cut once it has begun).")
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "An API key (stk_<key_id>_<secret>) or the platform-admin token. A revoked or expired key gets 401 whose detail says which."}},
            "schemas": {
                "Problem": {
                    "type": "object",
                    "description": "RFC 9457 problem details.",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "errors": {"type": "array", "items": {"type": "object", "required": ["field", "reason"], "properties": {
                            "index": {"type": "integer", "description": "Position of the event in the request."},
                            "field": {"type": "string"}, "reason": {"type": "string"}}}}
                    }
                },
                "EventV1": event_v1_schema(),
                "StoredEvent": stored_event_schema(),
                "Receipt": {"type": "object", "additionalProperties": false, "required": ["event_id", "tenant_id", "seq", "event_hash"],
                    "properties": {"event_id": {"type": "string"}, "tenant_id": {"type": "string"}, "seq": {"type": "integer", "minimum": 1},
                        "event_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}},
                "SampledOut": {"type": "object", "additionalProperties": false, "required": ["event_id", "tenant_id", "sampled_out", "class"],
                    "description": "An event the tenant's capture policy dropped: not stored, counted in the sampling statistics.",
                    "properties": {"event_id": {"type": "string"}, "tenant_id": {"type": "string"}, "sampled_out": {"const": true},
                        "class": {"type": "integer", "minimum": 1, "maximum": 3}}},
                "CapturePolicy": {"type": "object", "additionalProperties": false,
                    "required": ["tenant_id", "source", "default_class", "rates", "rules", "default_durability"],
                    "properties": {"tenant_id": {"type": "string"}, "source": {"enum": ["tenant", "deployment"]},
                        "default_class": {"type": "integer", "minimum": 0, "maximum": 3},
                        "rates": {"type": "object", "additionalProperties": false, "required": ["0", "1", "2", "3"], "properties": {
                            "0": {"type": "number"}, "1": {"type": "number"}, "2": {"type": "number"}, "3": {"type": "number"}}},
                        "rules": {"type": "array", "items": {"type": "object"}},
                        "default_durability": {"enum": ["sync", "async"]}}},
                "RetentionPolicy": {"type": "object", "additionalProperties": false, "required": ["tenant_id", "legal_hold"],
                    "properties": {"tenant_id": {"type": "string"}, "retention_days": {"type": "integer"},
                        "retention_years": {"type": "integer"}, "legal_hold": {"type": "boolean"}}}
            }
        },
        "security": [{"bearer": []}],
        "paths": Value::Object(paths)
    })
}

/// A tenant's settings, erasure and data-key rotation (docs/PRIVACY.md).
fn privacy_paths(paths: &mut serde_json::Map<String, Value>) {
    let fields = json!({"type": "array", "uniqueItems": true, "items": {"enum": PROTECTED_FIELDS}});
    let formats: Vec<&str> = sealtrail_query::formats::ExportFormat::ALL
        .map(sealtrail_query::formats::ExportFormat::as_str)
        .into_iter()
        .chain([crate::exports::REPORT_FORMAT])
        .collect();
    let retention = json!({"oneOf": [
        {"type": "object", "additionalProperties": false, "required": ["retention_days", "legal_hold"], "properties": {
            "retention_days": {"type": "integer", "minimum": 1, "maximum": RETENTION_DAYS_MAX}, "legal_hold": {"type": "boolean"}}},
        {"type": "object", "additionalProperties": false, "required": ["retention_years", "legal_hold"], "properties": {
            "retention_years": {"type": "integer", "minimum": 1, "maximum": RETENTION_YEARS_MAX}, "legal_hold": {"type": "boolean"}}}]});
    let region =
        json!({"type": "string", "pattern": format!("^[a-z0-9-]{{1,{REGION_CHARS_MAX}}}$")});
    let settings = json!({"type": "object", "additionalProperties": false,
        "required": ["tenant_id", "region", "encryption", "retention", "default_durability", "export_format"],
        "properties": {
            "tenant_id": {"type": "string"}, "region": {"type": "string"},
            "encryption": {"type": "object", "additionalProperties": false, "required": ["fields"], "properties": {"fields": fields}},
            "retention": {"oneOf": [{"type": "null"}, {"type": "object"}]},
            "default_durability": {"enum": ["sync", "async"]},
            "export_format": {"oneOf": [{"type": "null"}, {"enum": formats}]}}});
    let denied = |what: &str| {
        problem(&format!(
            "Not an admin key of the tenant, nor the platform admin: {what}."
        ))
    };
    paths.insert("/v1/tenants/{tenant_id}".into(), json!({
        "parameters": [tenant_path()],
        "get": {
            "summary": "The tenant's settings: region, encrypted fields, retention and legal hold, default durability, preferred export format (tenant admin or platform admin).",
            "responses": {"200": json_body("The settings.", settings.clone()),
                "400": problem("Bad tenant_id; it is named."), "401": problem("No valid key."), "403": denied("they are its admins'")}
        },
        "put": {
            "summary": "Changes the members given; every change is first recorded as a tenant_settings.update event of the tenant's log. Changing region or retention is the platform admin's; a region is fixed once set.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": false, "properties": {
                    "tenant_id": tenant_id_schema(), "region": region,
                    "encryption": {"oneOf": [{"type": "null"}, {"type": "object", "additionalProperties": false,
                        "required": ["fields"], "properties": {"fields": fields}}]},
                    "retention": {"oneOf": [{"type": "null"}, retention]},
                    "default_durability": {"enum": ["sync", "async"]},
                    "export_format": {"oneOf": [{"type": "null"}, {"enum": formats}]}}}}}},
            "responses": {"200": json_body("The settings now.", settings),
                "400": problem("A member is invalid, or changes what this caller may not; each error names its member. Nothing is changed."),
                "401": problem("No valid key."), "403": denied("they are its admins'"), "413": problem("Body too large."),
                "415": problem("The body's Content-Type is not one this endpoint reads.")}
        }
    }));
    let destroyed = json!({"type": "object", "additionalProperties": false, "required": ["tenant_id", "keys_destroyed", "plaintext_exports_removed"], "properties": {
        "tenant_id": {"type": "string"}, "actor_id": {"type": "string"}, "keys_destroyed": {"type": "integer", "minimum": 0},
        "plaintext_exports_removed": {"type": "integer", "minimum": 0, "description": "Plaintext exports of the tenant whose files were removed (or whose run was cancelled)."}}});
    paths.insert("/v1/tenants/{tenant_id}/subjects/{actor_id}/erase".into(), json!({
        "parameters": [tenant_path(), {"name": "actor_id", "in": "path", "required": true,
            "schema": {"type": "string", "minLength": 1, "maxLength": ACTOR_ID_CHARS_MAX}}],
        "post": {
            "summary": "Erases a subject by destroying its keys: its protected fields read as erased in every tier and copy, every proof stays valid. Recorded as a subject.erase event.",
            "responses": {"200": json_body("Keys destroyed.", destroyed.clone()),
                "400": problem("Bad tenant_id or actor_id; it is named."), "401": problem("No valid key."), "403": denied("erasure is its admins'")}
        }
    }));
    paths.insert("/v1/tenants/{tenant_id}/erase".into(), json!({
        "parameters": [tenant_path()],
        "post": {
            "summary": "Offboarding: destroys every key of the tenant, so all its protected fields read as erased. Recorded as a tenant.erase event.",
            "responses": {"200": json_body("Keys destroyed.", destroyed),
                "400": problem("Bad tenant_id; it is named."), "401": problem("No valid key."), "403": denied("erasure is its admins'")}
        }
    }));
    paths.insert("/v1/tenants/{tenant_id}/keys/rotate".into(), json!({
        "parameters": [tenant_path()],
        "post": {
            "summary": "A new data key for the tenant, used by every event from now on; earlier events keep opening with their keys and hashes never change. Recorded as a data_key.rotate event.",
            "responses": {"200": json_body("The new key's id.", json!({"type": "object", "additionalProperties": false,
                    "required": ["tenant_id", "key_id"], "properties": {"tenant_id": {"type": "string"}, "key_id": {"type": "string"}}})),
                "400": problem("Bad tenant_id; it is named."), "401": problem("No valid key."), "403": denied("rotation is its admins'")}
        }
    }));
}

/// Alert rules, webhooks, sinks and the live stream (docs/REALTIME.md).
fn realtime_paths(paths: &mut serde_json::Map<String, Value>, stream_filters: &[Value]) {
    let verb = verb_schema(POLICY_MATCH_CHARS_MAX);
    let verbs = json!({"oneOf": [verb, {"type": "array", "minItems": 1, "maxItems": ALERT_RULE_MATCH_VALUES_MAX, "items": verb}]});
    let metadata_path = json!({"type": "string", "maxLength": POLICY_MATCH_CHARS_MAX, "pattern": "^metadata(\\.[A-Za-z0-9_-]+)+$"});
    let seconds = json!({"type": "integer", "minimum": 1, "maximum": ALERT_WINDOW_SECONDS_MAX});
    let rule_name = json!({"type": "string", "pattern": format!("^[A-Za-z0-9._-]{{1,{ALERT_RULE_NAME_CHARS_MAX}}}$")});
    let threshold_match = json!({"type": "object", "additionalProperties": false, "properties": {
        "action": verbs, "action_prefix": verbs, "resource_type": verb,
        "outcome": {"enum": ["success", "failure"]}, "actor_type": {"enum": ["human", "service", "system"]}}});
    let baseline_match = json!({"type": "object", "additionalProperties": false, "properties": {
        "action": verbs, "action_prefix": verbs, "resource_type": verb}});
    // `with_name`: the body of POST (the name inside) or of PUT …/{name} (the path's).
    let rule = |with_name: bool| {
        let mut threshold = json!({"type": "object", "additionalProperties": false,
            "required": ["group_by", "window_seconds", "threshold"], "properties": {
                "kind": {"const": "threshold"}, "match": threshold_match,
                "group_by": {"anyOf": [{"enum": ["actor_id", "ip_address", "resource_id"]}, metadata_path]},
                "window_seconds": seconds,
                "aggregate": {"oneOf": [{"const": "count"}, {"type": "object", "additionalProperties": false, "required": ["sum"], "properties": {"sum": metadata_path}}]},
                "threshold": {"type": "number", "minimum": 0, "maximum": ALERT_THRESHOLD_MAX, "description": "The rule fires when the value exceeds it."},
                "cooldown_seconds": {"type": "integer", "minimum": 0, "maximum": ALERT_WINDOW_SECONDS_MAX, "description": "Default: window_seconds."}}});
        let mut baseline = json!({"type": "object", "additionalProperties": false,
            "required": ["kind"], "properties": {
                "kind": {"const": "baseline"}, "match": baseline_match, "group_by": {"const": "actor_id"},
                "deviations": {"type": "number", "minimum": 0, "maximum": ALERT_DEVIATIONS_MAX, "default": 3},
                "baseline_days": {"type": "integer", "minimum": 1, "maximum": ALERT_BASELINE_DAYS_MAX, "default": 30},
                "min_count": {"type": "integer", "minimum": 0, "maximum": ALERT_MIN_COUNT_MAX, "default": 10}}});
        if with_name {
            for schema in [&mut threshold, &mut baseline] {
                schema["properties"]["name"] = rule_name.clone();
                schema["required"]
                    .as_array_mut()
                    .expect("an array")
                    .push("name".into());
            }
        }
        json!({"oneOf": [threshold, baseline]})
    };
    let rule_out = json!({"type": "object", "required": ["name", "kind", "match"], "properties": {
        "name": {"type": "string"}, "kind": {"enum": ["threshold", "baseline"]}, "match": {"type": "object"}}});
    let name_path = json!({"name": "name", "in": "path", "required": true, "schema": rule_name});
    let changed = "The change is first committed as an alert_rules.update event of the tenant's log (rules before and after).";
    paths.insert("/v1/tenants/{tenant_id}/alert-rules".into(), json!({
        "parameters": [tenant_path()],
        "get": {
            "summary": "The alert rules that apply to a tenant (its admin keys or the platform admin): its own (source tenant) or the defaults (source default). docs/REALTIME.md.",
            "responses": {"200": json_body("The rules.", json!({"type": "object", "additionalProperties": false, "required": ["tenant_id", "source", "rules"], "properties": {
                    "tenant_id": {"type": "string"}, "source": {"enum": ["tenant", "default"]}, "rules": {"type": "array", "items": rule_out}}})),
                "400": problem("Bad tenant_id; it is named."), "401": problem("No valid key."), "403": problem("Not an admin of this tenant.")}
        },
        "post": {
            "summary": format!("Add one alert rule: a threshold over a sliding window, or an actor's deviation from its own daily baseline. {changed}"),
            "requestBody": {"required": true, "content": {"application/json": {"schema": rule(true)}}},
            "responses": {"201": json_body("The rule as stored.", rule_out.clone()),
                "400": problem("A member is invalid; each is named (match.outcome, group_by, …). Nothing is stored."),
                "401": problem("No valid key."), "403": problem("Not an admin of this tenant."),
                "409": problem(&format!("The tenant has a rule of that name, or {ALERT_RULES_PER_TENANT_MAX} rules already.")), "413": problem("Body too large."),
                "415": problem("The body's Content-Type is not one this endpoint reads."),
                "503": problem("The change could not be recorded in the tenant's log; nothing is stored.")}
        }
    }));
    paths.insert("/v1/tenants/{tenant_id}/alert-rules/{name}".into(), json!({
        "parameters": [tenant_path(), name_path],
        "put": {
            "summary": format!("Add or replace the rule of this name (the name is the path's, not in the body). {changed}"),
            "requestBody": {"required": true, "content": {"application/json": {"schema": rule(false)}}},
            "responses": {"200": json_body("The rule as stored.", rule_out),
                "400": problem("A member is invalid; each is named. Nothing is stored."), "401": problem("No valid key."),
                "403": problem("Not an admin of this tenant."),
                "409": problem(&format!("A new rule, and the tenant has {ALERT_RULES_PER_TENANT_MAX} rules already.")),
                "413": problem("Body too large."),
                "415": problem("The body's Content-Type is not one this endpoint reads."),
                "503": problem("The change could not be recorded in the tenant's log; nothing is stored.")}
        },
        "delete": {
            "summary": format!("Remove the rule. {changed}"),
            "responses": {"204": {"description": "Removed."}, "400": problem("Bad tenant_id; it is named."),
                "401": problem("No valid key."), "403": problem("Not an admin of this tenant."),
                "404": problem("No rule of that name.")}
        }
    }));
    let url = json!({"type": "string", "minLength": 1, "maxLength": DESTINATION_URL_BYTES_MAX, "description": "An absolute http:// or https:// URL with a host."});
    let filters = json!({"type": "object", "additionalProperties": false, "description": "The filters of GET /v1/events, as strings.", "properties": {
        "actor_id": {"type": "string", "minLength": 1}, "action": {"type": "string", "minLength": 1}, "resource_type": {"type": "string", "minLength": 1},
        "resource_id": {"type": "string", "minLength": 1}, "request_id": {"type": "string", "minLength": 1},
        "outcome": {"enum": ["success", "failure"]}, "from": {"type": "string", "format": "date-time"}, "to": {"type": "string", "format": "date-time"}}});
    let kinds = json!({"type": "array", "minItems": 1, "items": {"enum": ["alerts", "events"]}});
    let destination = json!({"type": "object", "required": ["id", "kind", "tenant_id", "created_at", "events"], "properties": {
        "id": {"type": "string"}, "kind": {"enum": ["webhook", "splunk_hec", "syslog", "ocsf_http"]},
        "tenant_id": {"type": ["string", "null"]}, "created_at": {"type": "string", "format": "date-time"},
        "url": {"type": "string"}, "address": {"type": "string"}, "tls": {"type": "boolean"},
        "events": kinds, "filters": {"type": "object"},
        "secret": {"type": "string", "description": "Only when the server generated it: shown this once."}}});
    let letters = json_body(
        "The parked messages, oldest first.",
        json!({"type": "object", "additionalProperties": false, "required": ["id", "dead_letters"], "properties": {
        "id": {"type": "string"}, "dead_letters": {"type": "array", "items": {"type": "object", "required": ["tenant_id", "first_seq", "last_seq", "event_ids", "events", "attempts", "error", "parked_at"]}}}}),
    );
    let replayed = json_body(
        "Each parked message was sent once more; those that arrived left the list.",
        json!({"type": "object", "additionalProperties": false,
        "required": ["id", "delivered", "still_parked"], "properties": {"id": {"type": "string"},
        "delivered": {"type": "integer", "minimum": 0}, "still_parked": {"type": "integer", "minimum": 0}}}),
    );
    // The ids `webhooks.rs` makes: a prefix and 12 random bytes in hex.
    let id_path = json!({"name": "id", "in": "path", "required": true,
        "schema": {"type": "string", "pattern": "^[a-z]+_[0-9a-f]{24}$"}});
    paths.insert("/v1/tenants/{tenant_id}/webhooks".into(), json!({
        "parameters": [tenant_path()],
        "post": {
            "summary": "Register a Standard Webhooks endpoint for the tenant's alerts (default) or events (with filters), from now on. Deliveries are signed, retried with backoff and jitter in order, and parked after the last attempt.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "required": ["url"], "properties": {
                "url": url, "secret": {"type": "string", "pattern": "^whsec_", "description": "whsec_ and the base64 of 24 to 64 bytes; generated (and returned once) when absent."},
                "events": kinds, "filters": filters}}}}},
            "description": "filters narrow what events selects: with [\"alerts\"] and {\"resource_id\": \"brute-force\"}, one rule's alerts.",
            "responses": {"201": json_body("The webhook (with its secret if generated).", destination.clone()),
                "400": problem("A member is invalid; it is named."), "401": problem("No valid key."),
                "403": problem("Not an admin of this tenant."),
                "409": problem(&format!("The tenant has {WEBHOOKS_PER_TENANT_MAX} webhooks already.")), "413": problem("Body too large."),
                "415": problem("The body's Content-Type is not one this endpoint reads.")}
        },
        "get": {
            "summary": "The tenant's webhooks (never their secrets).",
            "responses": {"200": json_body("The webhooks.", json!({"type": "object", "additionalProperties": false, "required": ["tenant_id", "webhooks"], "properties": {
                    "tenant_id": {"type": "string"}, "webhooks": {"type": "array", "items": destination}}})),
                "400": problem("Bad tenant_id; it is named."), "401": problem("No valid key."), "403": problem("Not an admin of this tenant.")}
        }
    }));
    let gone = |what: &str| problem(&format!("No {what} of that id here."));
    paths.insert("/v1/tenants/{tenant_id}/webhooks/{id}".into(), json!({"parameters": [tenant_path(), id_path], "delete": {
        "summary": "Remove a webhook; its deliveries stop.",
        "responses": {"204": {"description": "Removed."}, "400": problem("Bad tenant_id; it is named."), "401": problem("No valid key."),
            "403": problem("Not an admin of this tenant."), "404": gone("webhook")}}}));
    paths.insert("/v1/tenants/{tenant_id}/webhooks/{id}/dead-letters".into(), json!({"parameters": [tenant_path(), id_path], "get": {
        "summary": "The webhook's parked messages.",
        "responses": {"200": letters, "400": problem("Bad tenant_id; it is named."), "401": problem("No valid key."),
            "403": problem("Not an admin of this tenant."), "404": gone("webhook")}}}));
    paths.insert("/v1/tenants/{tenant_id}/webhooks/{id}/dead-letters/replay".into(), json!({"parameters": [tenant_path(), id_path], "post": {
        "summary": "Send each parked message once more.",
        "responses": {"200": replayed, "400": problem("Bad tenant_id; it is named."), "401": problem("No valid key."),
            "403": problem("Not an admin of this tenant."), "404": gone("webhook")}}}));
    let sink = |kind: &str, required: &[&str], extra: Value| {
        let mut properties =
            json!({"kind": {"const": kind}, "tenant_id": tenant_id_schema(), "filters": filters});
        for (name, schema) in extra.as_object().expect("an object") {
            properties[name] = schema.clone();
        }
        let mut required: Vec<&str> = required.to_vec();
        required.push("kind");
        json!({"type": "object", "additionalProperties": false, "required": required, "properties": properties})
    };
    let token = json!({"type": "string", "minLength": 1, "maxLength": DESTINATION_URL_BYTES_MAX});
    paths.insert("/v1/sinks".into(), json!({
        "post": {
            "summary": "Forward a tenant's events (tenant_id: its admin keys), or every tenant's (no tenant_id: the platform admin), to a SIEM: Splunk HEC, syslog RFC 5424 over TCP or TLS, or OCSF JSON over HTTP. At least once, in order per tenant, batched, with backoff and dead letters.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"oneOf": [
                sink("splunk_hec", &["url", "token"], json!({"url": url, "token": token})),
                sink("ocsf_http", &["url"], json!({"url": url, "authorization": token})),
                sink("syslog", &["address"], json!({"address": {"type": "string", "pattern": "^[^:]+:[1-9][0-9]{0,4}$", "maxLength": DESTINATION_URL_BYTES_MAX}, "tls": {"type": "boolean"}}))]}}}},
            "responses": {"201": json_body("The sink (never its token).", destination.clone()),
                "400": problem("A member is invalid; it is named."), "401": problem("No valid key."),
                "403": problem("Not an admin of that tenant, or a tenant key asking for every tenant."),
                "409": problem(&format!("{SINKS_MAX} sinks exist already.")), "413": problem("Body too large."),
                "415": problem("The body's Content-Type is not one this endpoint reads.")}
        },
        "get": {
            "summary": "The sinks the caller manages: a tenant's (a tenant key's own, or tenant_id), or with the platform-admin token every sink.",
            "parameters": [tenant_query("A tenant key lists its own tenant's sinks; the platform admin every sink, or this tenant's.")],
            "responses": {"200": json_body("The sinks.", json!({"type": "object", "additionalProperties": false, "required": ["sinks"], "properties": {
                    "sinks": {"type": "array", "items": destination}}})),
                "400": problem("Bad parameter; it is named."), "401": problem("No valid key."), "403": problem("Not an admin of this tenant.")}
        }
    }));
    paths.insert("/v1/sinks/{id}".into(), json!({"parameters": [id_path], "delete": {
        "summary": "Remove a sink; its forwarding stops.",
        "responses": {"204": {"description": "Removed."}, "401": problem("No valid key."), "404": gone("sink")}}}));
    paths.insert(
        "/v1/sinks/{id}/dead-letters".into(),
        json!({"parameters": [id_path], "get": {
        "summary": "The sink's parked batches.",
        "responses": {"200": letters, "401": problem("No valid key."), "404": gone("sink")}}}),
    );
    paths.insert(
        "/v1/sinks/{id}/dead-letters/replay".into(),
        json!({"parameters": [id_path], "post": {
        "summary": "Send each parked batch once more.",
        "responses": {"200": replayed, "401": problem("No valid key."), "404": gone("sink")}}}),
    );
    let mut stream_parameters = stream_filters.to_vec();
    stream_parameters.push(json!({"name": "after", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0},
        "description": "Start after this seq (Last-Event-ID wins). Without either, the stream starts at the log's head."}));
    stream_parameters.push(json!({"name": "Last-Event-ID", "in": "header", "required": false, "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
        "description": "The id (seq) of the last event received: the stream resumes right after it."}));
    paths.insert("/v1/stream".into(), json!({"get": {
        "summary": "A tenant's committed events as Server-Sent Events, live: id is the seq, event is `event` or `alert`, data the event's JSON (StoredEvent). Resumable with Last-Event-ID. docs/REALTIME.md.",
        "parameters": stream_parameters,
        "responses": {"200": {"description": "An endless event stream.", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
            "400": problem("Bad filter; the parameter is named."), "401": problem("No valid key."),
            "403": problem("Wrong tenant or role."), "503": problem(&format!("{STREAMS_MAX} streams are open on this node."))}
    }}));
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealtrail_model::validate_event;

    fn forbidden(code: u32) -> bool {
        IDENTIFIER_FORBIDDEN
            .iter()
            .any(|&(first, last)| (first..=last).contains(&code))
    }

    /// The pattern the document publishes refuses exactly what the validator refuses.
    #[test]
    fn identifier_pattern_matches_the_validator_for_every_code_point() {
        let now_ns = 1_790_000_000_000_000_000;
        for code in (0..=0x10FFFF).filter(|code| !(0xD800..=0xDFFF).contains(code)) {
            let character = char::from_u32(code).unwrap();
            let event = json!({"tenant_id": "acme", "actor_id": format!("a{character}"),
                "action": "login", "resource_type": "session"});
            assert_eq!(
                validate_event(event, now_ns).is_err(),
                forbidden(code),
                "U+{code:04X}"
            );
        }
    }

    #[test]
    fn limits_come_from_the_limits_module() {
        let document = build();
        let event = &document["components"]["schemas"]["EventV1"]["properties"];
        assert_eq!(event["actor_id"]["maxLength"], ACTOR_ID_CHARS_MAX);
        assert_eq!(
            event["tenant_id"]["pattern"],
            format!("^[A-Za-z0-9_.-]{{1,{TENANT_ID_CHARS_MAX}}}$")
        );
        assert!(printable_pattern().starts_with("^[^\\u0000-\\u001F\\u007F-\\u009F"));
    }
}
