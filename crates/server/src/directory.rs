//! `PUT /v1/tenants/{tenant_id}/actors` (bulk upsert) and `GET /v1/tenants/{tenant_id}/actors/{actor_id}`:
//! each tenant's actor directory, which summaries join by department and team-scoped access reads.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use sealtrail_model::limits::ACTORS_PER_REQUEST_MAX;
use sealtrail_model::{check_events_json, check_tenant_id, validate_actor, Actor};
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::problem::{ApiError, InvalidItem};
use crate::AppState;

/// The answer for one actor: every member, absent ones as `null`; `attributes` as JSON.
fn actor_json(tenant_id: &str, actor: &Actor) -> Result<Value, ApiError> {
    let attributes = actor
        .attributes
        .as_deref()
        .map(serde_json::from_str::<Value>)
        .transpose()
        .map_err(ApiError::internal)?;
    Ok(json!({
        "tenant_id": tenant_id,
        "actor_id": actor.actor_id,
        "display_name": actor.display_name,
        "department": actor.department,
        "team": actor.team,
        "attributes": attributes,
    }))
}

/// Upserts a JSON array of actors, all or none: any invalid entry rejects the request with
/// every problem listed by index and member, and nothing is written. An entry replaces the
/// actor's stored one whole (a member left out becomes empty); of several entries for one
/// actor, the last one is written, as if they were sent one after another.
pub(crate) async fn put_actors(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_tenant_id(&tenant_id).map_err(|reason| ApiError::invalid_field("tenant_id", reason))?;
    if !principal.may_administer(&tenant_id) {
        return Err(ApiError::Forbidden(format!(
            "only an admin key of tenant {tenant_id} or the platform admin may change its actor directory"
        )));
    }
    let mut value: Value = serde_json::from_slice(&body)
        .map_err(|error| ApiError::invalid_field("body", format!("not valid JSON: {error}")))?;
    // What parsing would change silently (a repeated key, an integer beyond 64 bits) is refused,
    // as for events.
    let silently_changed = check_events_json(&body, &mut value);
    if !silently_changed.is_empty() {
        return Err(ApiError::Invalid {
            detail: "some actors hold JSON that would be changed silently; nothing was written"
                .into(),
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
    let Value::Array(entries) = value else {
        return Err(ApiError::invalid_field(
            "body",
            "must be a JSON array of actors {actor_id, display_name, department, team, attributes}",
        ));
    };
    if entries.is_empty() {
        return Err(ApiError::invalid_field("body", "holds no actors"));
    }
    if entries.len() > ACTORS_PER_REQUEST_MAX {
        return Err(ApiError::TooLarge(format!(
            "a request may upsert at most {ACTORS_PER_REQUEST_MAX} actors"
        )));
    }
    let mut actors = Vec::with_capacity(entries.len());
    let mut errors = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        match validate_actor(entry) {
            Ok(actor) => actors.push(actor),
            Err(problems) => errors.extend(problems.into_iter().map(|problem| InvalidItem {
                index: Some(index),
                field: problem.field,
                reason: problem.reason,
            })),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid {
            detail: "some actors are invalid; nothing was written".into(),
            errors,
        });
    }
    // One write per actor (a store writes a batch in one statement, which may touch a row once).
    let mut last: std::collections::HashMap<String, Actor> = std::collections::HashMap::new();
    for actor in actors {
        last.insert(actor.actor_id.clone(), actor);
    }
    let upserted = state
        .store
        .upsert_actors(&tenant_id, last.into_values().collect())
        .await?;
    Ok(Json(json!({"tenant_id": tenant_id, "upserted": upserted})))
}

/// One actor of the directory: readers and admins of the tenant, and the narrow levels for an
/// actor within their scope (another is as absent as one not in the directory).
pub(crate) async fn get_actor(
    State(state): State<Arc<AppState>>,
    request: crate::access::ReadRequest,
    Path((tenant_id, actor_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let reader = request.reader(&state, Some(&tenant_id)).await?;
    let found = match reader.admits(&actor_id) {
        true => state.store.actor(&tenant_id, &actor_id).await?,
        false => None,
    };
    reader.record(
        &state,
        json!({"actor_id": actor_id}),
        Some(usize::from(found.is_some())),
    )?;
    let actor = found.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no actor {actor_id} in tenant {tenant_id}'s directory"
        ))
    })?;
    Ok(Json(actor_json(&tenant_id, &actor)?))
}
