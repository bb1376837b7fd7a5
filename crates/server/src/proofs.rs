//! The verifiable-log API: checkpoints, inclusion and consistency proofs, the verifier key.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sealtrail_ledger::{ConsistencyProof, InclusionProof};
use sealtrail_model::check_tenant_id;
use sealtrail_model::limits::SEQ_MAX;
use serde_json::json;

use crate::access::ReadRequest;
use crate::auth::Principal;
use crate::checkpoints::{consistency, inclusion};
use crate::problem::ApiError;
use crate::AppState;

fn note_response(note: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response()
}

/// Checks the path's tenant and that the caller may read all of it; returns the tenant's tree
/// size.
async fn readable_tree(
    state: &AppState,
    principal: &Principal,
    tenant_id: &str,
) -> Result<u64, ApiError> {
    check_tenant_id(tenant_id).map_err(|reason| ApiError::invalid_field("tenant_id", reason))?;
    if !principal.may_read(tenant_id) {
        return Err(ApiError::Forbidden(format!(
            "this key may not read tenant {tenant_id}"
        )));
    }
    tree_size(state, tenant_id).await
}

/// The tenant's tree size (its log's length).
async fn tree_size(state: &AppState, tenant_id: &str) -> Result<u64, ApiError> {
    let heads = state.store.chain_heads().await?;
    Ok(heads
        .into_iter()
        .find(|(tenant, _)| tenant == tenant_id)
        .map_or(0, |(_, head)| head.seq))
}

fn size_param(
    params: &HashMap<String, String>,
    name: &str,
    allowed: &[&str],
) -> Result<Option<u64>, ApiError> {
    if let Some(unknown) = params.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(ApiError::invalid_field(unknown, "unknown query parameter"));
    }
    match params.get(name) {
        None => Ok(None),
        // Tree sizes are stored as signed 64-bit integers: a larger number would wrap.
        Some(text) => match text.parse::<u64>() {
            Ok(size) if (1..=SEQ_MAX).contains(&size) => Ok(Some(size)),
            _ => Err(ApiError::invalid_field(
                name,
                format!("must be a positive integer tree size, at most {SEQ_MAX}"),
            )),
        },
    }
}

/// `GET /v1/tenants/{tenant_id}/checkpoint[?tree_size=N]`: the signed note as is.
/// A checkpoint holds no event: every level that reads some of the tenant may fetch it.
pub(crate) async fn get_checkpoint(
    State(state): State<Arc<AppState>>,
    request: ReadRequest,
    Path(tenant_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let tree_size = size_param(&params, "tree_size", &["tree_size"])?;
    let reader = request.reader(&state, Some(&tenant_id)).await?;
    let found = state.store.checkpoint(&tenant_id, tree_size).await?;
    reader.record(&state, json!(params), Some(usize::from(found.is_some())))?;
    match found {
        Some(checkpoint) => {
            // When it was cut, so a reader can tell its age without trusting its own clock
            // for anything but the difference.
            let mut response = note_response(checkpoint.note);
            if let Some(value) = http_date(checkpoint.created_at_ns) {
                response.headers_mut().insert(header::LAST_MODIFIED, value);
            }
            Ok(response)
        }
        None => Err(ApiError::NotFound(match tree_size {
            Some(size) => {
                format!("no checkpoint of tenant {tenant_id} was cut at tree size {size}")
            }
            None => format!("tenant {tenant_id} has no checkpoint yet"),
        })),
    }
}

/// An HTTP date (RFC 9110 IMF-fixdate) of an instant in nanoseconds since the epoch.
fn http_date(ns: i64) -> Option<axum::http::HeaderValue> {
    let format = time::format_description::parse_borrowed::<2>(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT",
    )
    .ok()?;
    let instant = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).ok()?;
    axum::http::HeaderValue::from_str(&instant.format(&format).ok()?).ok()
}

/// `POST /v1/tenants/{tenant_id}/checkpoint`: cut one now (if the log grew) and return it.
pub(crate) async fn cut_checkpoint(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant_id): Path<String>,
) -> Result<Response, ApiError> {
    let tree_size = readable_tree(&state, &principal, &tenant_id).await?;
    if tree_size == 0 {
        return Err(ApiError::NotFound(format!(
            "tenant {tenant_id} has no events"
        )));
    }
    state
        .checkpointer
        .cut(&tenant_id, tree_size)
        .await
        .map_err(ApiError::internal)?;
    let latest = state.store.checkpoint(&tenant_id, None).await?;
    let note = latest
        .ok_or_else(|| ApiError::internal("a cut checkpoint was not stored"))?
        .note;
    Ok((StatusCode::CREATED, note_response(note)).into_response())
}

/// `GET /v1/tenants/{tenant_id}/proofs/inclusion?event_id=..&tree_size=N`. Without `tree_size`,
/// the size of the latest checkpoint.
/// Only for an event within the caller's scope: another is as absent as one that does not exist.
pub(crate) async fn get_inclusion(
    State(state): State<Arc<AppState>>,
    request: ReadRequest,
    Path(tenant_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<InclusionProof>, ApiError> {
    let requested = size_param(&params, "tree_size", &["tree_size", "event_id"])?;
    let event_id = params
        .get("event_id")
        .ok_or_else(|| ApiError::invalid_field("event_id", "is required"))?;
    let reader = request.reader(&state, Some(&tenant_id)).await?;
    let current = tree_size(&state, &tenant_id).await?;
    let tree_size = match requested {
        Some(size) => size,
        None => state
            .store
            .checkpoint(&tenant_id, None)
            .await?
            .map(|checkpoint| checkpoint.tree_size)
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "tree_size",
                    "is required: the tenant has no checkpoint yet",
                )
            })?,
    };
    if tree_size > current {
        return Err(ApiError::invalid_field(
            "tree_size",
            format!("is larger than the tree ({current} events)"),
        ));
    }
    let stored = state
        .query
        .event(&tenant_id, event_id)
        .await?
        .filter(|found| reader.admits(&found.stored.event.actor_id))
        .ok_or_else(|| ApiError::NotFound(format!("no event {event_id} in tenant {tenant_id}")))?
        .stored;
    if stored.seq > tree_size {
        return Err(ApiError::invalid_field(
            "tree_size",
            format!(
                "the event has seq {}, so it is not in the tree of size {tree_size}",
                stored.seq
            ),
        ));
    }
    let proof = inclusion(&state.query, &tenant_id, stored.seq - 1, tree_size).await?;
    reader.record(&state, json!(params), Some(1))?;
    Ok(Json(proof))
}

/// `GET /v1/tenants/{tenant_id}/proofs/consistency?first=M&second=N`.
pub(crate) async fn get_consistency(
    State(state): State<Arc<AppState>>,
    request: ReadRequest,
    Path(tenant_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    let first = size_param(&params, "first", &["first", "second"])?
        .ok_or_else(|| ApiError::invalid_field("first", "is required"))?;
    let second = size_param(&params, "second", &["first", "second"])?
        .ok_or_else(|| ApiError::invalid_field("second", "is required"))?;
    if first > second {
        return Err(ApiError::invalid_field(
            "first",
            "must not be larger than second",
        ));
    }
    let reader = request.reader(&state, Some(&tenant_id)).await?;
    let current = tree_size(&state, &tenant_id).await?;
    if second > current {
        return Err(ApiError::invalid_field(
            "second",
            format!("is larger than the tree ({current} events)"),
        ));
    }
    let proof = consistency(&state.query, &tenant_id, first, second).await?;
    reader.record(&state, json!(params), Some(1))?;
    Ok(Json(proof))
}

/// `GET /v1/verifier-key`: the note verifier key checkpoints are signed with.
pub(crate) async fn get_verifier_key(
    State(state): State<Arc<AppState>>,
    _principal: Principal,
) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", state.checkpointer.verifier_key()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn http_dates_are_imf_fixdates() {
        let date = http_date(784_111_777_000_000_000).unwrap();
        assert_eq!(date, "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn a_tree_size_beyond_the_stored_range_is_refused_naming_its_field() {
        for name in ["tree_size", "first", "second"] {
            for text in [
                "18446744073709551615",
                "9223372036854775808",
                "0",
                "-1",
                "x",
            ] {
                let result = size_param(&params(&[(name, text)]), name, &[name]);
                match result {
                    Err(ApiError::Invalid { errors, .. }) => {
                        assert_eq!(errors[0].field, name, "{name}={text}")
                    }
                    other => panic!("{name}={text}: expected a 400, got {other:?}"),
                }
            }
            let largest = SEQ_MAX.to_string();
            assert_eq!(
                size_param(&params(&[(name, &largest)]), name, &[name]).unwrap(),
                Some(SEQ_MAX)
            );
        }
    }
}
