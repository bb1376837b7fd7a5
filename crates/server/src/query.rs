//! `GET /v1/events`, `GET /v1/events/{event_id}`, `POST /v1/query` and `GET /v1/export`: reads
//! across every tier through [`sealtrail_query::QueryEngine`].
//!
//! Pages are ordered by `seq`, the order in which the tenant's log received its events, and the
//! cursor is the last `seq` returned. New events always get a higher `seq`, so paging never skips
//! or repeats an event while others arrive: descending pages never see them, ascending pages see
//! them at the end.
//!
//! `POST /v1/query` and `GET /v1/export` are heavy reads: at most
//! [`QUERIES_PER_TENANT_CONCURRENT_MAX`] per tenant at once (429 with Retry-After beyond, from
//! [`TenantQuerySlots`]) and at most `QUERIES_CONCURRENT_MAX` across the process (503, from the
//! query engine). An export holds its tenant's slot until its last byte is handed over.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures::TryStreamExt;
use sealtrail_hot::{EventQuery, Order, ProtectedMatch};
use sealtrail_model::limits::{
    IP_ADDRESS_CHARS_MAX, QUERIES_PER_TENANT_CONCURRENT_MAX, QUERY_LIMIT_MAX, SEQ_MAX,
    SQL_TEXT_BYTES_MAX, USER_AGENT_CHARS_MAX,
};
use sealtrail_model::{parse_timestamp, LocatedEvent};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::access::ReadRequest;
use crate::problem::ApiError;
use crate::AppState;

const CURSOR_VERSION: &str = "c1";

/// Heavy reads (`POST /v1/query`, `GET /v1/export`) running per tenant.
#[derive(Debug, Default)]
pub(crate) struct TenantQuerySlots {
    running: std::sync::Mutex<HashMap<String, usize>>,
}

/// One tenant's running heavy read; its slot is given back when this is dropped.
#[derive(Debug)]
pub(crate) struct TenantQuerySlot {
    slots: Arc<TenantQuerySlots>,
    tenant_id: String,
}

impl TenantQuerySlots {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot for one heavy read of `tenant_id`, or 429 when the tenant already runs
    /// [`QUERIES_PER_TENANT_CONCURRENT_MAX`].
    pub(crate) fn admit(self: &Arc<Self>, tenant_id: &str) -> Result<TenantQuerySlot, ApiError> {
        let mut running = self.running();
        let count = running.entry(tenant_id.to_owned()).or_default();
        if *count >= QUERIES_PER_TENANT_CONCURRENT_MAX {
            return Err(ApiError::TooManyRequests(format!(
                "tenant {tenant_id} already runs {QUERIES_PER_TENANT_CONCURRENT_MAX} SQL \
                 queries or exports, the most one tenant may run at once; retry after the \
                 indicated delay"
            )));
        }
        *count += 1;
        Ok(TenantQuerySlot {
            slots: Arc::clone(self),
            tenant_id: tenant_id.to_owned(),
        })
    }
}

impl Drop for TenantQuerySlot {
    fn drop(&mut self) {
        let mut running = self.slots.running();
        if let Some(count) = running.get_mut(&self.tenant_id) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.tenant_id);
            }
        }
    }
}

/// One page of `GET /v1/events`.
#[derive(Debug, Serialize)]
pub(crate) struct Page {
    pub(crate) events: Vec<LocatedEvent>,
    next_cursor: Option<String>,
}

pub(crate) async fn list_events(
    State(state): State<Arc<AppState>>,
    request: ReadRequest,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Page>, ApiError> {
    let reader = request.reader(&state, params.get("tenant_id")).await?;
    let mut query = EventQuery::for_tenant(&reader.tenant_id);
    let cursor = page_params(&mut query, &params)?;
    reader.narrow(&mut query);
    crate::privacy::blind_filters(&state, &reader, &mut query).await?;
    // The read trail records what was asked; a value of an encrypted field only by its blind
    // index, or the trail would keep in plaintext what the events keep encrypted.
    let mut asked = params.clone();
    for (field, matched) in query.protected_filters() {
        if let Some(index) = matched.and_then(|matched| matched.blind_index.as_ref()) {
            asked.insert(field.to_owned(), format!("blind_index:{index}"));
        }
    }
    let mut page = read_page(&state, query, cursor).await?;
    crate::privacy::open_events(&state, reader.sees_protected_fields(), &mut page.events).await?;
    reader.record(&state, json!(asked), Some(page.events.len()))?;
    Ok(Json(page))
}

/// Reads `GET /v1/events`'s parameters into `query` (`limit`, `order` and the filters; the
/// caller has read `tenant_id`) and returns the `cursor`. An unknown name is refused.
pub(crate) fn page_params(
    query: &mut EventQuery,
    params: &HashMap<String, String>,
) -> Result<Option<String>, ApiError> {
    let mut cursor = None;
    for (name, value) in params {
        match name.as_str() {
            "tenant_id" => {}
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
            }
            "order" => {
                query.order = match value.as_str() {
                    "asc" => Order::Asc,
                    "desc" => Order::Desc,
                    _ => return Err(ApiError::invalid_field("order", "must be asc or desc")),
                };
            }
            "cursor" => cursor = Some(value.clone()),
            // Equality on fields a tenant may encrypt: the caller completes these with the
            // tenant's blind indexes (`privacy::blind_filters`).
            "ip_address" | "user_agent" => {
                let most = match name.as_str() {
                    "ip_address" => IP_ADDRESS_CHARS_MAX,
                    _ => USER_AGENT_CHARS_MAX,
                };
                if value.is_empty() || value.chars().count() > most {
                    return Err(ApiError::invalid_field(
                        name,
                        format!("must be 1 to {most} characters"),
                    ));
                }
                let matched = Some(ProtectedMatch {
                    plaintext: value.clone(),
                    blind_index: None,
                });
                match name.as_str() {
                    "ip_address" => query.ip_address = matched,
                    _ => query.user_agent = matched,
                }
            }
            _ => filter_param(query, name, value)?,
        }
    }
    Ok(cursor)
}

/// One page of `query` after `cursor` (a cursor this module issued), with the cursor of the
/// next page when there is one.
pub(crate) async fn read_page(
    state: &AppState,
    mut query: EventQuery,
    cursor: Option<String>,
) -> Result<Page, ApiError> {
    check_range(&query)?;
    if let Some(cursor) = cursor {
        query.after_seq = Some(decode_cursor(&cursor, query.order)?);
    }
    let limit = query.limit;
    let order = query.order;
    // One extra row tells whether another page exists without a second round trip.
    query.limit = limit + 1;
    let mut events = state.query.page(query).await?;
    let next_cursor = if events.len() > limit {
        events.truncate(limit);
        events
            .last()
            .map(|last| encode_cursor(last.stored.seq, order))
    } else {
        None
    };
    Ok(Page {
        events,
        next_cursor,
    })
}

/// The filters `GET /v1/events`, the live stream and webhooks share: exact fields and the
/// half-open `[from, to)` range on `timestamp`. An unknown name is refused.
pub(crate) fn filter_param(
    query: &mut EventQuery,
    name: &str,
    value: &str,
) -> Result<(), ApiError> {
    let slot = match name {
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
            return Ok(());
        }
        "to" => {
            query.to_ns = Some(timestamp_param("to", value)?);
            return Ok(());
        }
        other => return Err(ApiError::invalid_field(other, "unknown query parameter")),
    };
    if value.is_empty() {
        return Err(ApiError::invalid_field(name, "must not be empty"));
    }
    *slot = Some(value.to_owned());
    Ok(())
}

/// Whether `stored` passes `filter`'s filters (its tenant, order, cursor and limit aside).
pub(crate) fn filter_admits(filter: &EventQuery, stored: &sealtrail_model::StoredEvent) -> bool {
    let event = &stored.event;
    let exact = [
        (&filter.actor_id, Some(event.actor_id.as_str())),
        (&filter.action, Some(event.action.as_str())),
        (&filter.resource_type, Some(event.resource_type.as_str())),
        (&filter.resource_id, event.resource_id.as_deref()),
        (&filter.request_id, event.request_id.as_deref()),
        (&filter.outcome, Some(event.outcome.as_str())),
    ];
    exact.iter().all(|(wanted, found)| {
        wanted
            .as_deref()
            .is_none_or(|wanted| Some(wanted) == *found)
    }) && filter
        .actor_in
        .as_ref()
        .is_none_or(|actors| actors.contains(&event.actor_id))
        && filter.from_ns.is_none_or(|from| event.timestamp_ns >= from)
        && filter.to_ns.is_none_or(|to| event.timestamp_ns < to)
}

/// The filters as a JSON object of their query-string values.
pub(crate) fn filter_to_json(filter: &EventQuery) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    for (name, value) in filter.exact_filters() {
        if let Some(value) = value {
            object.insert(name.into(), value.into());
        }
    }
    for (name, bound) in [("from", filter.from_ns), ("to", filter.to_ns)] {
        if let Some(bound) = bound {
            object.insert(name.into(), sealtrail_model::format_timestamp(bound).into());
        }
    }
    object.into()
}

/// Reads filters from a JSON object of query-string values (`"filters"` of a webhook); absent
/// or `null` is no filter. Errors name the member (`filters.outcome`).
pub(crate) fn filter_from_json(value: &serde_json::Value) -> Result<EventQuery, ApiError> {
    let mut query = EventQuery::for_tenant("");
    if value.is_null() {
        return Ok(query);
    }
    let Some(object) = value.as_object() else {
        return Err(ApiError::invalid_field("filters", "must be a JSON object"));
    };
    for (name, member) in object {
        let Some(text) = member.as_str() else {
            return Err(ApiError::invalid_field(
                &format!("filters.{name}"),
                "must be a string",
            ));
        };
        filter_param(&mut query, name, text).map_err(|error| match error {
            ApiError::Invalid { detail, errors } => ApiError::Invalid {
                detail: format!("filters.{detail}"),
                errors: errors
                    .into_iter()
                    .map(|mut item| {
                        item.field = format!("filters.{}", item.field);
                        item
                    })
                    .collect(),
            },
            other => other,
        })?;
    }
    check_range(&query)?;
    Ok(query)
}

/// A range must be non-empty: `to` later than `from`.
fn check_range(query: &EventQuery) -> Result<(), ApiError> {
    if let (Some(from_ns), Some(to_ns)) = (query.from_ns, query.to_ns) {
        if from_ns >= to_ns {
            return Err(ApiError::invalid_field(
                "to",
                "must be later than from (the range is half-open)",
            ));
        }
    }
    Ok(())
}

pub(crate) async fn get_event(
    State(state): State<Arc<AppState>>,
    request: ReadRequest,
    Path(event_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<LocatedEvent>, ApiError> {
    if let Some(unknown) = params.keys().find(|name| *name != "tenant_id") {
        return Err(ApiError::invalid_field(unknown, "unknown query parameter"));
    }
    let reader = request.reader(&state, params.get("tenant_id")).await?;
    let tenant_id = &reader.tenant_id;
    // An event outside the caller's scope is as absent as one that does not exist.
    let mut found = state
        .query
        .event(tenant_id, &event_id)
        .await?
        .filter(|found| reader.admits(&found.stored.event.actor_id));
    crate::privacy::open_events(&state, reader.sees_protected_fields(), found.as_mut_slice())
        .await?;
    reader.record(
        &state,
        json!({"event_id": event_id}),
        Some(usize::from(found.is_some())),
    )?;
    match found {
        Some(stored) => Ok(Json(stored)),
        None => Err(ApiError::NotFound(format!(
            "no event {event_id} in tenant {tenant_id}"
        ))),
    }
}

/// The body of `POST /v1/query`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    /// Required for a platform-admin key; a tenant key may omit it.
    tenant_id: Option<String>,
}

/// `POST /v1/query`: read-only SQL over the caller's tenant's `events`, across every tier.
pub(crate) async fn run_sql(
    State(state): State<Arc<AppState>>,
    request: ReadRequest,
    body: Bytes,
) -> Result<Response, ApiError> {
    let read = request;
    let request: SqlRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::invalid_field(
            "body",
            format!("must be a JSON object {{\"sql\": \"...\"}}: {error}"),
        )
    })?;
    if request.sql.trim().is_empty() {
        return Err(ApiError::invalid_field("sql", "must not be empty"));
    }
    if request.sql.len() > SQL_TEXT_BYTES_MAX {
        return Err(ApiError::invalid_field(
            "sql",
            format!("must be at most {SQL_TEXT_BYTES_MAX} bytes"),
        ));
    }
    let reader = read.reader(&state, request.tenant_id.as_ref()).await?;
    let tenant_id = reader.tenant_id.clone();
    // The key is read before the answer is computed (see `sealtrail_query::ResultCache`); a
    // hit takes no query slot.
    let prepared = state
        .query
        .prepare_sql(&tenant_id, reader.actors(), &request.sql)
        .await?;
    let cache = state.query.cache();
    let detail = json!({"sql": request.sql});
    if let Some(answer) = cache.get(prepared.cache_key()) {
        reader.record(&state, detail, answer_rows(&answer))?;
        return Ok(json_answer(answer));
    }
    let _slot = state.tenant_queries.admit(&tenant_id)?;
    let result = state
        .query
        .run_prepared(&prepared)
        .await
        .map_err(heavy_read_error)?;
    let answer =
        Bytes::from(serde_json::to_vec(&result).map_err(|error| {
            ApiError::Internal(format!("could not write the SQL answer: {error}"))
        })?);
    if result.deterministic {
        cache.put(prepared.cache_key().to_owned(), answer.clone());
    }
    reader.record(&state, detail, Some(result.row_count))?;
    Ok(json_answer(answer))
}

/// `row_count` of a SQL answer as cached.
fn answer_rows(answer: &[u8]) -> Option<usize> {
    #[derive(Deserialize)]
    struct Count {
        row_count: usize,
    }
    serde_json::from_slice::<Count>(answer)
        .ok()
        .map(|count| count.row_count)
}

/// A JSON answer already serialized (as the result cache keeps it).
pub(crate) fn json_answer(body: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// A query or export refused because too many are running is overload (503 with Retry-After),
/// not the caller's mistake nor the service's failure.
fn heavy_read_error(error: sealtrail_query::Error) -> ApiError {
    match error {
        sealtrail_query::Error::Busy { .. } => ApiError::Overloaded(error.to_string()),
        other => other.into(),
    }
}

/// `GET /v1/export`: every event of a tenant with `timestamp` in `[from, to)`, in `seq` order,
/// streamed as NDJSON.
pub(crate) async fn export(
    State(state): State<Arc<AppState>>,
    request: ReadRequest,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut from_ns = None;
    let mut to_ns = None;
    for (name, value) in &params {
        match name.as_str() {
            "tenant_id" => {}
            "from" => from_ns = Some(timestamp_param("from", value)?),
            "to" => to_ns = Some(timestamp_param("to", value)?),
            other => return Err(ApiError::invalid_field(other, "unknown query parameter")),
        }
    }
    if let (Some(from_ns), Some(to_ns)) = (from_ns, to_ns) {
        if from_ns >= to_ns {
            return Err(ApiError::invalid_field(
                "to",
                "must be later than from (the range is half-open)",
            ));
        }
    }
    let reader = request
        .whole_tenant(&state, params.get("tenant_id"))
        .await?;
    let tenant_id = reader.tenant_id.clone();
    let slot = state.tenant_queries.admit(&tenant_id)?;
    // The answer streams: its row count is not known when it is recorded.
    reader.record(&state, json!(params), None)?;
    let chunks = state
        .query
        .export(tenant_id, from_ns, to_ns)
        .map_err(heavy_read_error)?
        // The stream owns the tenant's slot: it is given back when the body is finished or the
        // client goes away, not when the head is sent.
        .map_ok(move |chunk| {
            let _held = &slot;
            Bytes::from(chunk)
        });
    let mut response = Body::from_stream(chunks).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
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
    // A `seq` is stored as a signed 64-bit integer everywhere; a larger number would wrap to a
    // negative one and read the log from its start.
    // Only the digits this endpoint writes: no sign, no leading '+'.
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    match seq.parse::<u64>() {
        Ok(seq) if seq <= SEQ_MAX => Ok(seq),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_gets_its_slots_and_429_beyond_while_others_are_unaffected() {
        let slots = Arc::new(TenantQuerySlots::default());
        let held: Vec<_> = (0..QUERIES_PER_TENANT_CONCURRENT_MAX)
            .map(|_| slots.admit("acme").unwrap())
            .collect();
        match slots.admit("acme") {
            Err(ApiError::TooManyRequests(detail)) => assert!(detail.contains("acme"), "{detail}"),
            other => panic!("expected 429, got {other:?}"),
        }
        let other = slots.admit("beta").unwrap();
        drop(held);
        let again = slots.admit("acme").unwrap();
        drop((other, again));
        assert!(slots.running().is_empty(), "every slot was given back");
    }

    fn rejected_field(result: Result<u64, ApiError>) -> String {
        match result {
            Err(ApiError::Invalid { errors, .. }) => errors[0].field.clone(),
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    fn raw_cursor(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    #[test]
    fn a_cursor_round_trips() {
        for seq in [0, 1, 255, SEQ_MAX] {
            for order in [Order::Asc, Order::Desc] {
                assert_eq!(
                    decode_cursor(&encode_cursor(seq, order), order).unwrap(),
                    seq
                );
            }
        }
    }

    #[test]
    fn a_cursor_beyond_the_stored_seq_range_is_refused_not_wrapped() {
        for seq in [
            "18446744073709551615",
            "9223372036854775808",
            "-1",
            "+1",
            "1e3",
            "",
        ] {
            let cursor = raw_cursor(&format!("c1.a.{seq}"));
            assert_eq!(
                rejected_field(decode_cursor(&cursor, Order::Asc)),
                "cursor",
                "{seq}"
            );
        }
        let cursor = raw_cursor("c1.d.18446744073709551615");
        assert_eq!(
            rejected_field(decode_cursor(&cursor, Order::Desc)),
            "cursor"
        );
        // The plain text form of a cursor is not a cursor either.
        assert_eq!(
            rejected_field(decode_cursor("c1.a.18446744073709551615", Order::Asc)),
            "cursor"
        );
    }
}
