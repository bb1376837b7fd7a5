//! `GET /v1/events` and `GET /v1/events/{event_id}`.
//!
//! Pages are ordered by `seq`, the order in which the tenant's log received its events, and the
//! cursor is the last `seq` returned. New events always get a higher `seq`, so paging never skips
//! or repeats an event while others arrive: descending pages never see them, ascending pages see
//! them at the end.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sealtrail_hot::{EventQuery, Order};
use sealtrail_model::limits::{QUERY_LIMIT_DEFAULT, QUERY_LIMIT_MAX};
use sealtrail_model::{check_tenant_id, parse_timestamp, StoredEvent};
use serde::Serialize;

use crate::auth::Principal;
use crate::problem::ApiError;
use crate::AppState;

const CURSOR_VERSION: &str = "c1";

/// One page of `GET /v1/events`.
#[derive(Debug, Serialize)]
pub(crate) struct Page {
    events: Vec<StoredEvent>,
    next_cursor: Option<String>,
}

pub(crate) async fn list_events(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Page>, ApiError> {
    let tenant_id = readable_tenant(&principal, params.get("tenant_id"))?;
    let mut query = EventQuery {
        tenant_id,
        actor_id: None,
        action: None,
        resource_type: None,
        resource_id: None,
        request_id: None,
        outcome: None,
        from_ns: None,
        to_ns: None,
        order: Order::Desc,
        after_seq: None,
        limit: QUERY_LIMIT_DEFAULT,
    };
    let mut cursor = None;
    for (name, value) in &params {
        let slot = match name.as_str() {
            "tenant_id" => continue,
            "actor_id" => &mut query.actor_id,
            "action" => &mut query.action,
            "resource_type" => &mut query.resource_type,
            "resource_id" => &mut query.resource_id,
            "request_id" => &mut query.request_id,
            "outcome" => {
                if value != "success" && value != "failure" {
                    return Err(ApiError::invalid_field(
                        "outcome",
                        "must be success or failure",
                    ));
                }
                &mut query.outcome
            }
            "from" => {
                query.from_ns = Some(timestamp_param("from", value)?);
                continue;
            }
            "to" => {
                query.to_ns = Some(timestamp_param("to", value)?);
                continue;
            }
            "limit" => {
                query.limit = match value.parse::<usize>() {
                    Ok(limit) if (1..=QUERY_LIMIT_MAX).contains(&limit) => limit,
                    _ => {
                        return Err(ApiError::invalid_field(
                            "limit",
                            format!("must be an integer from 1 to {QUERY_LIMIT_MAX}"),
                        ))
                    }
                };
                continue;
            }
            "order" => {
                query.order = match value.as_str() {
                    "asc" => Order::Asc,
                    "desc" => Order::Desc,
                    _ => return Err(ApiError::invalid_field("order", "must be asc or desc")),
                };
                continue;
            }
            "cursor" => {
                cursor = Some(value.clone());
                continue;
            }
            other => return Err(ApiError::invalid_field(other, "unknown query parameter")),
        };
        if value.is_empty() {
            return Err(ApiError::invalid_field(name, "must not be empty"));
        }
        *slot = Some(value.clone());
    }
    if let (Some(from_ns), Some(to_ns)) = (query.from_ns, query.to_ns) {
        if from_ns >= to_ns {
            return Err(ApiError::invalid_field(
                "to",
                "must be later than from (the range is half-open)",
            ));
        }
    }
    if let Some(cursor) = cursor {
        query.after_seq = Some(decode_cursor(&cursor, query.order)?);
    }
    let limit = query.limit;
    let order = query.order;
    // One extra row tells whether another page exists without a second round trip.
    query.limit = limit + 1;
    let mut events = state.store.query(query).await?;
    let next_cursor = if events.len() > limit {
        events.truncate(limit);
        events.last().map(|last| encode_cursor(last.seq, order))
    } else {
        None
    };
    Ok(Json(Page {
        events,
        next_cursor,
    }))
}

pub(crate) async fn get_event(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(event_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<StoredEvent>, ApiError> {
    if let Some(unknown) = params.keys().find(|name| *name != "tenant_id") {
        return Err(ApiError::invalid_field(unknown, "unknown query parameter"));
    }
    let tenant_id = readable_tenant(&principal, params.get("tenant_id"))?;
    match state.store.get_event(&tenant_id, &event_id).await? {
        Some(stored) => Ok(Json(stored)),
        None => Err(ApiError::NotFound(format!(
            "no event {event_id} in tenant {tenant_id}"
        ))),
    }
}

/// The tenant a read is about: the `tenant_id` parameter, which a tenant-bound key may omit.
fn readable_tenant(principal: &Principal, requested: Option<&String>) -> Result<String, ApiError> {
    let tenant_id = match (requested, principal.tenant()) {
        (Some(requested), _) => {
            check_tenant_id(requested)
                .map_err(|reason| ApiError::invalid_field("tenant_id", reason))?;
            requested.clone()
        }
        (None, Some(own)) => own.to_owned(),
        (None, None) => {
            return Err(ApiError::invalid_field(
                "tenant_id",
                "is required for a platform-admin key",
            ))
        }
    };
    if !principal.may_read(&tenant_id) {
        return Err(ApiError::Forbidden(format!(
            "this key may not read tenant {tenant_id}"
        )));
    }
    Ok(tenant_id)
}

fn timestamp_param(name: &str, value: &str) -> Result<i64, ApiError> {
    parse_timestamp(value)
        .ok_or_else(|| ApiError::invalid_field(name, "must be an RFC 3339 date-time with offset"))
}

fn order_tag(order: Order) -> &'static str {
    match order {
        Order::Asc => "a",
        Order::Desc => "d",
    }
}

fn encode_cursor(seq: u64, order: Order) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_VERSION}.{}.{seq}", order_tag(order)))
}

fn decode_cursor(cursor: &str, order: Order) -> Result<u64, ApiError> {
    let invalid = || ApiError::invalid_field("cursor", "is not a cursor returned by this endpoint");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.split('.');
    let (Some(CURSOR_VERSION), Some(tag), Some(seq), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    if tag != order_tag(order) {
        return Err(ApiError::invalid_field(
            "cursor",
            "was issued for the other order; keep order unchanged while paging",
        ));
    }
    seq.parse().map_err(|_| invalid())
}
