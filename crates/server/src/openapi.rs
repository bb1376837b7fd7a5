//! `GET /openapi.json`: the OpenAPI 3.1 description of every endpoint.
//!
//! Written by hand (not derived) so it can say what a client needs to know, such as which limit
//! a 413 refers to; tests check that every routed path appears here.

use axum::Json;
use sealtrail_model::limits::{
    BATCH_EVENTS_MAX, BODY_BYTES_MAX, QUERY_LIMIT_DEFAULT, QUERY_LIMIT_MAX, SQL_ROWS_MAX,
    SQL_TEXT_BYTES_MAX, SQL_TIMEOUT_MILLIS,
};
use serde_json::{json, Value};

use crate::auth::Principal;

pub(crate) async fn document(_principal: Principal) -> Json<Value> {
    Json(build())
}

fn problem(description: &str) -> Value {
    json!({"description": description, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

fn tenant_path() -> Value {
    json!({"name": "tenant_id", "in": "path", "required": true, "schema": {"type": "string"}})
}

fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}})
}

fn build() -> Value {
    let event_filters: Vec<Value> = [
        ("tenant_id", "Tenant to read; optional for tenant-bound keys, required for the platform admin."),
        ("actor_id", "Exact match."),
        ("action", "Exact match."),
        ("resource_type", "Exact match."),
        ("resource_id", "Exact match."),
        ("request_id", "Exact match."),
        ("outcome", "success or failure."),
        ("from", "RFC 3339; events with timestamp >= from."),
        ("to", "RFC 3339; events with timestamp < to."),
        ("order", "desc (default) or asc, by seq."),
        ("cursor", "next_cursor of the previous page."),
    ]
    .iter()
    .map(|(name, description)| query_param(name, description))
    .chain([json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": QUERY_LIMIT_MAX, "default": QUERY_LIMIT_DEFAULT}})])
    .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Sealtrail",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Tamper-evident audit trail service. Every /v1 endpoint needs `Authorization: Bearer <key>`."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Problem": {
                    "type": "object",
                    "description": "RFC 9457 problem details.",
                    "properties": {
                        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "errors": {"type": "array", "items": {"type": "object", "properties": {
                            "index": {"type": "integer", "description": "Position of the event in the request."},
                            "field": {"type": "string"}, "reason": {"type": "string"}}}}
                    }
                },
                "EventV1": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["tenant_id", "actor_id", "action", "resource_type"],
                    "properties": {
                        "event_id": {"type": "string", "maxLength": 128},
                        "timestamp": {"type": "string", "format": "date-time"},
                        "tenant_id": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
                        "actor_id": {"type": "string", "maxLength": 256},
                        "actor_type": {"enum": ["human", "service", "system"], "default": "human"},
                        "action": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
                        "resource_type": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
                        "resource_id": {"type": "string", "maxLength": 256},
                        "outcome": {"enum": ["success", "failure"], "default": "success"},
                        "ip_address": {"type": "string", "description": "IPv4 or IPv6 address."},
                        "user_agent": {"type": "string", "maxLength": 512},
                        "request_id": {"type": "string", "maxLength": 128},
                        "changes": {"type": "object", "properties": {"before": {"type": "object"}, "after": {"type": "object"}}, "additionalProperties": false},
                        "metadata": {"type": "object"}
                    }
                },
                "StoredEvent": {
                    "allOf": [{"$ref": "#/components/schemas/EventV1"}, {"type": "object", "properties": {
                        "seq": {"type": "integer"}, "received_at": {"type": "string", "format": "date-time"},
                        "prev_hash": {"type": "string", "description": "hex"}, "event_hash": {"type": "string", "description": "hex"},
                        "tier": {"type": "string"}}}]
                },
                "Receipt": {"type": "object", "properties": {
                    "event_id": {"type": "string"}, "tenant_id": {"type": "string"}, "seq": {"type": "integer"},
                    "event_hash": {"type": "string"}}}
            }
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": {"summary": "Liveness.", "security": [], "responses": {"200": {"description": "Alive."}}}},
            "/readyz": {"get": {"summary": "Readiness: store reachable and writer running.", "security": [],
                "responses": {"200": {"description": "Ready."}, "503": {"description": "Not ready."}}}},
            "/openapi.json": {"get": {"summary": "This document.", "responses": {"200": {"description": "OpenAPI 3.1 document."}, "401": problem("No valid key.")}}},
            "/v1/events": {
                "post": {
                    "summary": "Ingest one event, a JSON array of events, or NDJSON.",
                    "description": format!("At most {BATCH_EVENTS_MAX} events and {BODY_BYTES_MAX} bytes per request. A request with any invalid event is rejected whole."),
                    "parameters": [{"name": "durability", "in": "query", "schema": {"enum": ["sync", "async"], "default": "sync"},
                        "description": "sync: 201 after an fsynced commit. async: 202 after the events are spooled locally."}],
                    "requestBody": {"required": true, "content": {
                        "application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/EventV1"}, {"type": "array", "items": {"$ref": "#/components/schemas/EventV1"}}]}},
                        "application/x-ndjson": {"schema": {"type": "string"}}}},
                    "responses": {
                        "201": {"description": "Committed.", "content": {"application/json": {"schema": {"type": "object", "properties": {"results": {"type": "array", "items": {"$ref": "#/components/schemas/Receipt"}}}}}}},
                        "202": {"description": "Accepted and spooled."},
                        "400": problem("Invalid events; each listed with index, field and reason."),
                        "401": problem("No valid key."), "403": problem("Key not allowed for this tenant or role."),
                        "409": problem("event_id reused with different content."),
                        "413": problem("Too many events or too many bytes."),
                        "503": problem("Queue full: retry after the Retry-After header.")
                    }
                },
                "get": {
                    "summary": "Page through one tenant's events, newest first by default.",
                    "parameters": event_filters,
                    "responses": {
                        "200": {"description": "A page.", "content": {"application/json": {"schema": {"type": "object", "properties": {
                            "events": {"type": "array", "items": {"$ref": "#/components/schemas/StoredEvent"}},
                            "next_cursor": {"type": ["string", "null"]}}}}}},
                        "400": problem("Bad filter; the parameter is named."), "401": problem("No valid key."), "403": problem("Wrong tenant or role.")
                    }
                }
            },
            "/v1/query": {"post": {
                "summary": "Read-only SQL over one table, events, holding only the caller's tenant across every tier.",
                "description": format!("Apache DataFusion SQL. Only SELECT (with joins, unions, subqueries, CTEs) over `events`; no other table, no information_schema, no DDL, DML or SET. At most {SQL_ROWS_MAX} rows (then `truncated` is true), {SQL_TIMEOUT_MILLIS} ms and {SQL_TEXT_BYTES_MAX} bytes of SQL."),
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["sql"], "additionalProperties": false,
                    "properties": {"sql": {"type": "string"}, "tenant_id": {"type": "string", "description": "Required for the platform admin."}}}}}},
                "responses": {
                    "200": {"description": "The result.", "content": {"application/json": {"schema": {"type": "object", "properties": {
                        "columns": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "type": {"type": "string"}}}},
                        "rows": {"type": "array", "items": {"type": "object"}}, "row_count": {"type": "integer"}, "truncated": {"type": "boolean"}}}}}},
                    "400": problem("The SQL does not parse, names something other than events, is not a read, or ran out of time (field sql)."),
                    "401": problem("No valid key."), "403": problem("Wrong tenant or role.")
                }
            }},
            "/v1/export": {"get": {
                "summary": "Every event of one tenant with timestamp in [from, to), in seq order, streamed as NDJSON from every tier.",
                "parameters": [query_param("tenant_id", "Required for the platform admin."), query_param("from", "RFC 3339, inclusive."), query_param("to", "RFC 3339, exclusive.")],
                "responses": {"200": {"description": "One StoredEvent JSON object per line.", "content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
                    "400": problem("Bad parameter; it is named."), "401": problem("No valid key."), "403": problem("Wrong tenant or role.")}
            }},
            "/v1/events/{event_id}": {"get": {
                "summary": "One stored event.",
                "parameters": [{"name": "event_id", "in": "path", "required": true, "schema": {"type": "string"}}, query_param("tenant_id", "Required for the platform admin.")],
                "responses": {"200": {"description": "The event.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StoredEvent"}}}},
                    "401": problem("No valid key."), "403": problem("Wrong tenant or role."), "404": problem("No such event.")}
            }},
            "/v1/verifier-key": {"get": {
                "summary": "The C2SP note verifier key (name+keyid+base64) every checkpoint is signed with.",
                "responses": {"200": {"description": "The key.", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": problem("No valid key.")}
            }},
            "/v1/tenants/{tenant_id}/checkpoint": {
                "get": {
                    "summary": "The latest signed checkpoint (C2SP tlog-checkpoint in a signed note), or the one cut at tree_size.",
                    "parameters": [tenant_path(), {"name": "tree_size", "in": "query", "schema": {"type": "integer", "minimum": 1}}],
                    "responses": {"200": {"description": "The note as is.", "content": {"text/plain": {"schema": {"type": "string"}}}},
                        "400": problem("Bad tree_size."), "401": problem("No valid key."), "403": problem("Wrong tenant or role."), "404": problem("No such checkpoint.")}
                },
                "post": {
                    "summary": "Cut a checkpoint now (if the log grew) and return the latest.",
                    "parameters": [tenant_path()],
                    "responses": {"201": {"description": "The note.", "content": {"text/plain": {"schema": {"type": "string"}}}},
                        "401": problem("No valid key."), "403": problem("Wrong tenant or role."), "404": problem("No events.")}
                }
            },
            "/v1/tenants/{tenant_id}/proofs/inclusion": {"get": {
                "summary": "RFC 9162 inclusion proof of an event in the tree of tree_size (default: the latest checkpoint's size).",
                "parameters": [tenant_path(), {"name": "event_id", "in": "query", "required": true, "schema": {"type": "string"}},
                    {"name": "tree_size", "in": "query", "schema": {"type": "integer", "minimum": 1}}],
                "responses": {"200": {"description": "{leaf_index, tree_size, leaf_hash, hashes: [base64]}"},
                    "400": problem("Bad size: 0, larger than the tree, or before the event."), "401": problem("No valid key."),
                    "403": problem("Wrong tenant or role."), "404": problem("No such event.")}
            }},
            "/v1/tenants/{tenant_id}/proofs/consistency": {"get": {
                "summary": "RFC 9162 consistency proof from tree size first to second.",
                "parameters": [tenant_path(), {"name": "first", "in": "query", "required": true, "schema": {"type": "integer", "minimum": 1}},
                    {"name": "second", "in": "query", "required": true, "schema": {"type": "integer", "minimum": 1}}],
                "responses": {"200": {"description": "{hashes: [base64]}"}, "400": problem("Bad sizes: 0, first > second, or larger than the tree."),
                    "401": problem("No valid key."), "403": problem("Wrong tenant or role.")}
            }},
            "/v1/keys": {"post": {
                "summary": "Create an API key (platform admin, or a tenant admin for its own tenant). The key is shown once.",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["tenant_id", "role"],
                    "properties": {"tenant_id": {"type": "string"}, "role": {"enum": ["ingest", "reader", "admin"]}}}}}},
                "responses": {"201": {"description": "The new key."}, "400": problem("Bad tenant_id or role."),
                    "401": problem("No valid key."), "403": problem("Not allowed to create keys for this tenant.")}
            }},
            "/v1/tenants/{tenant_id}/retention": {
                "parameters": [{"name": "tenant_id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "put": {
                    "summary": "Set a tenant's retention and legal hold (platform admin). Expired cold files are deleted by the lifecycle, each under a signed deletion record, unless legal_hold is true.",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["legal_hold"],
                        "properties": {
                            "retention_days": {"type": "integer", "minimum": 1, "maximum": sealtrail_model::limits::RETENTION_DAYS_MAX},
                            "retention_years": {"type": "integer", "minimum": 1, "maximum": sealtrail_model::limits::RETENTION_YEARS_MAX,
                                "description": format!("Counted as {} days per year.", sealtrail_model::limits::RETENTION_YEAR_DAYS)},
                            "legal_hold": {"type": "boolean"}},
                        "description": "Exactly one of retention_days or retention_years."}}}},
                    "responses": {"200": {"description": "The stored policy."}, "400": problem("A field is missing or invalid; each error names its field. Nothing is stored."),
                        "401": problem("No valid key."), "403": problem("Not the platform admin.")}
                },
                "get": {
                    "summary": "A tenant's retention policy (platform admin).",
                    "responses": {"200": {"description": "The policy."}, "401": problem("No valid key."),
                        "403": problem("Not the platform admin."), "404": problem("No policy: events are kept indefinitely.")}
                }
            }
        }
    })
}
