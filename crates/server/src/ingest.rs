//! `POST /v1/events`: parse, validate, authorize, then commit (sync) or spool (async).
//!
//! A request is all or nothing: any invalid event rejects the whole request with every problem
//! listed, and nothing of it is written.
//!
//! Also the one rule for the media type of request bodies ([`body_media_type`]), which the other
//! endpoints with a JSON body apply through [`require_json_body`].

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sealtrail_hot::AppendOutcome;
use sealtrail_model::limits::{BATCH_EVENTS_MAX, BODY_BYTES_MAX};
use sealtrail_model::{check_events_json, validate_event, PendingEvent};
use sealtrail_policy::Durability;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::pipeline::Refusal;
use crate::problem::{ApiError, InvalidItem};
use crate::{now_ns, AppState};

/// `POST /v1/events`, counted in `/metrics`: events accepted by durability, and refused
/// requests (with their events, once the body was read) by durability and reason.
pub(crate) async fn post_events(
    State(state): State<Arc<AppState>>,
    principal: Result<Principal, ApiError>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let durability = match params.get("durability").map(String::as_str) {
        Some("async") => "async",
        _ => "sync",
    };
    let mut events = None;
    let result = match principal {
        Ok(principal) => {
            accept_events(&state, principal, &params, &headers, body, &mut events).await
        }
        Err(error) => Err(error),
    };
    let metrics = crate::metrics::registry();
    match &result {
        Ok(_) => metrics.ingest_accepted(durability, events.unwrap_or(0)),
        Err(error) => {
            let reason = crate::metrics::rejection_reason(error);
            metrics.ingest_rejected(durability, reason, events);
        }
    }
    result
}

/// The request itself; `events` is set to the request's event count once its body is parsed.
async fn accept_events(
    state: &AppState,
    principal: Principal,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
    events_read: &mut Option<usize>,
) -> Result<Response, ApiError> {
    let mut asked = None;
    for (name, value) in params {
        match (name.as_str(), value.as_str()) {
            ("durability", "sync") => asked = Some(Durability::Sync),
            ("durability", "async") => asked = Some(Durability::Async),
            ("durability", _) => {
                return Err(ApiError::invalid_field(
                    "durability",
                    "must be sync or async",
                ))
            }
            (other, _) => return Err(ApiError::invalid_field(other, "unknown query parameter")),
        }
    }
    let media_type = body_media_type(headers, &[JSON, NDJSON])?;
    let body = read_body(headers, body).await?;
    let values = parse_events(media_type, &body)?;
    drop(body);
    *events_read = Some(values.len());
    let received_at_ns = now_ns();
    let mut errors = Vec::new();
    let mut events = Vec::with_capacity(values.len());
    for (index, value) in values.into_iter().enumerate() {
        match validate_event(value, received_at_ns) {
            Ok(submitted) => events.push(submitted),
            Err(field_errors) => errors.extend(field_errors.into_iter().map(|error| InvalidItem {
                index: Some(index),
                field: error.field,
                reason: error.reason,
            })),
        }
    }
    if !errors.is_empty() {
        let invalid: std::collections::BTreeSet<_> =
            errors.iter().filter_map(|item| item.index).collect();
        return Err(ApiError::Invalid {
            detail: format!(
                "{} of the request's events are invalid; nothing was written",
                invalid.len()
            ),
            errors,
        });
    }
    if let Some((index, event)) = events
        .iter()
        .enumerate()
        .find(|(_, event)| !principal.may_ingest(&event.tenant_id))
    {
        return Err(ApiError::Forbidden(format!(
            "event {index}: this key may not write events for tenant {}",
            event.tenant_id
        )));
    }
    let mut request: Vec<PendingEvent> = events
        .into_iter()
        .map(|submitted| submitted.complete(received_at_ns, || uuid::Uuid::now_v7().to_string()))
        .collect();
    // Each event's class and keep decision; class 0 makes the whole request sync.
    let durability = crate::capture::decide(state, &mut request, asked).await?;
    let sampled_out: Vec<Option<Value>> = request.iter().map(crate::capture::sampled_out).collect();
    // From here on, a tenant's protected fields are ciphertext: in the spool, the store, every
    // tier and every copy.
    crate::privacy::seal_request(state, &mut request).await?;

    match durability {
        Durability::Sync => match state.pipeline.submit_sync(request).await.map_err(refusal)? {
            AppendOutcome::Committed(receipts) => {
                // One receipt per kept event, in order; a dropped event answers for itself.
                let mut receipts = receipts.into_iter();
                let results: Vec<Value> = sampled_out
                    .into_iter()
                    .map(|dropped| match dropped {
                        Some(dropped) => Ok(dropped),
                        None => receipts
                            .next()
                            .ok_or_else(|| ApiError::internal("a kept event got no receipt"))
                            .and_then(|receipt| {
                                serde_json::to_value(receipt).map_err(ApiError::internal)
                            }),
                    })
                    .collect::<Result<_, _>>()?;
                Ok((StatusCode::CREATED, Json(json!({ "results": results }))).into_response())
            }
            AppendOutcome::Conflict { index, event_id } => Err(conflict(index, &event_id)),
        },
        Durability::Async => {
            check_async_conflicts(state, &request).await?;
            let results: Vec<Value> = request
                .iter()
                .zip(sampled_out)
                .map(|(pending, dropped)| {
                    dropped.unwrap_or_else(|| {
                        json!({"event_id": pending.event.event_id, "tenant_id": pending.event.tenant_id})
                    })
                })
                .collect();
            state.pipeline.submit_async(request).map_err(refusal)?;
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({ "accepted": results.len(), "results": results })),
            )
                .into_response())
        }
    }
}

/// Reads the body, answering 413 as soon as it is known to exceed [`BODY_BYTES_MAX`].
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::TooLarge(format!("request body exceeds {BODY_BYTES_MAX} bytes"));
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared.is_some_and(|length| length > BODY_BYTES_MAX as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, BODY_BYTES_MAX)
        .await
        .map_err(|error| {
            let over_limit = std::error::Error::source(&error)
                .is_some_and(|source| source.to_string().contains("length limit"));
            if over_limit || declared.is_none() {
                too_large()
            } else {
                ApiError::invalid_field("body", format!("could not be read: {error}"))
            }
        })
}

const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";

/// The media type of a request body, one of `accepted`: the `Content-Type` essence (type and
/// subtype, case-insensitive), whose only parameter that matters, `charset`, must be UTF-8. A
/// body without `Content-Type` is read as JSON. Anything else is a 415.
pub(crate) fn body_media_type(
    headers: &HeaderMap,
    accepted: &[&'static str],
) -> Result<&'static str, ApiError> {
    let refuse = |reason: String| {
        ApiError::refused(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type", reason)
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(JSON);
    };
    let text = value
        .to_str()
        .map_err(|_| refuse("is not visible ASCII".into()))?;
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let Some(&media_type) = accepted.iter().find(|media_type| **media_type == essence) else {
        return Err(refuse(format!(
            "{text:?} is not accepted here; send {}",
            accepted.join(" or ")
        )));
    };
    for parameter in parts {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        if name.trim().eq_ignore_ascii_case("charset") {
            let charset = value.trim().trim_matches('"');
            if !charset.eq_ignore_ascii_case("utf-8") {
                return Err(refuse(format!(
                    "charset {charset:?} is not accepted; bodies are UTF-8"
                )));
            }
        }
    }
    Ok(media_type)
}

/// Middleware for endpoints whose body is one JSON document: any other media type is a 415,
/// answered before the body is read.
pub(crate) async fn require_json_body(request: Request, next: Next) -> Response {
    match body_media_type(request.headers(), &[JSON]) {
        Ok(_) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

/// Splits the body into event values: NDJSON by media type, otherwise one object or an array.
/// What parsing would change silently (a repeated key, an integer beyond 64 bits) is refused,
/// naming the event and field ([`check_events_json`]).
fn parse_events(media_type: &str, body: &[u8]) -> Result<Vec<Value>, ApiError> {
    let too_many = || {
        ApiError::TooLarge(format!(
            "a request may hold at most {BATCH_EVENTS_MAX} events"
        ))
    };
    let mut silently_changed = Vec::new();
    let values = if media_type == NDJSON {
        let mut values = Vec::new();
        for (line_number, line) in body.split(|byte| *byte == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if values.len() == BATCH_EVENTS_MAX {
                return Err(too_many());
            }
            let mut value = serde_json::from_slice(line).map_err(|error| ApiError::Invalid {
                detail: format!("line {}: not valid JSON", line_number + 1),
                errors: vec![InvalidItem {
                    index: Some(values.len()),
                    field: "body".into(),
                    reason: format!("line {}: {error}", line_number + 1),
                }],
            })?;
            let index = values.len();
            silently_changed.extend(
                check_events_json(line, &mut value)
                    .into_iter()
                    .map(|(_, error)| (index, error)),
            );
            values.push(value);
        }
        values
    } else {
        let parsed = serde_json::from_slice(body).map(|mut value| {
            silently_changed = check_events_json(body, &mut value);
            value
        });
        match parsed {
            Ok(Value::Array(values)) => values,
            Ok(value @ Value::Object(_)) => vec![value],
            Ok(_) => {
                return Err(ApiError::invalid_field(
                    "body",
                    "must be an event object, an array of events, or NDJSON",
                ))
            }
            Err(error) => {
                return Err(ApiError::invalid_field(
                    "body",
                    format!("not valid JSON: {error}"),
                ))
            }
        }
    };
    if values.is_empty() {
        return Err(ApiError::invalid_field("body", "holds no events"));
    }
    if values.len() > BATCH_EVENTS_MAX {
        return Err(too_many());
    }
    if !silently_changed.is_empty() {
        let invalid: std::collections::BTreeSet<_> =
            silently_changed.iter().map(|(index, _)| *index).collect();
        return Err(ApiError::Invalid {
            detail: format!(
                "{} of the request's events are invalid; nothing was written",
                invalid.len()
            ),
            errors: silently_changed
                .into_iter()
                .map(|(index, error)| InvalidItem {
                    index: Some(index),
                    field: error.field,
                    reason: error.reason,
                })
                .collect(),
        });
    }
    Ok(values)
}

/// For async requests the commit happens after the response, so a reused `event_id` with other
/// content is caught here, against what is already stored.
async fn check_async_conflicts(state: &AppState, request: &[PendingEvent]) -> Result<(), ApiError> {
    let mut by_tenant: HashMap<&str, Vec<(usize, &PendingEvent)>> = HashMap::new();
    // A dropped event is never stored: nothing to conflict with.
    let kept = request
        .iter()
        .enumerate()
        .filter(|(_, pending)| pending.capture.is_none_or(|capture| capture.kept));
    for (index, pending) in kept {
        by_tenant
            .entry(&pending.event.tenant_id)
            .or_default()
            .push((index, pending));
    }
    for (tenant_id, pendings) in by_tenant {
        let ids = pendings
            .iter()
            .map(|(_, pending)| pending.event.event_id.clone())
            .collect();
        let existing = state.store.existing(tenant_id, ids).await?;
        for found in existing {
            let Some((index, pending)) = pendings
                .iter()
                .find(|(_, pending)| pending.event.event_id == found.receipt.event_id)
            else {
                continue;
            };
            let same = sealtrail_ledger::content_digest(&pending.event) == found.content_digest
                && (!pending.timestamp_supplied
                    || pending.event.timestamp_ns == found.timestamp_ns);
            if !same {
                return Err(conflict(*index, &pending.event.event_id));
            }
        }
    }
    Ok(())
}

fn conflict(index: usize, event_id: &str) -> ApiError {
    ApiError::Conflict {
        detail: format!(
            "event {index}: event_id {event_id} is already stored for this tenant with different content; nothing was written"
        ),
        errors: vec![InvalidItem {
            index: Some(index),
            field: "event_id".into(),
            reason: "already stored with different content".into(),
        }],
    }
}

pub(crate) fn refusal(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::Full => {
            ApiError::Overloaded("the ingest queue is full; retry after the indicated delay".into())
        }
        Refusal::Unavailable => {
            ApiError::Overloaded("the event store is unavailable; nothing was written".into())
        }
    }
}
