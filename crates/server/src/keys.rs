//! `POST /v1/keys`: issue an API key, optionally expiring. The key is returned once; only its
//! hash is stored. `DELETE /v1/keys/{key_id}`: revoke one, effective from the next request.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use sealtrail_hot::{KeyScope, Role};
use sealtrail_model::limits::{
    ACTOR_ID_CHARS_MAX, ACTOR_NAME_CHARS_MAX, API_KEY_TTL_DAYS_MAX, KEY_TEAMS_MAX,
};
use sealtrail_model::{check_tenant_id, format_timestamp, parse_timestamp};
use serde_json::{json, Value};

use crate::auth::{new_api_key, Principal};
use crate::problem::ApiError;
use crate::{now_ns, AppState};

pub(crate) async fn create_key(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(&body) else {
        return Err(ApiError::invalid_field(
            "body",
            "must be a JSON object {\"tenant_id\", \"role\"}",
        ));
    };
    let tenant_id = match fields.remove("tenant_id") {
        Some(Value::String(tenant_id)) => tenant_id,
        Some(_) => return Err(ApiError::invalid_field("tenant_id", "must be a string")),
        None => return Err(ApiError::invalid_field("tenant_id", "is required")),
    };
    check_tenant_id(&tenant_id).map_err(|reason| ApiError::invalid_field("tenant_id", reason))?;
    let role = match fields.remove("role") {
        Some(Value::String(role)) => Role::parse(&role).ok_or_else(|| {
            ApiError::invalid_field(
                "role",
                "must be ingest, reader (or security_admin), admin, team_admin or self",
            )
        })?,
        Some(_) => return Err(ApiError::invalid_field("role", "must be a string")),
        None => return Err(ApiError::invalid_field("role", "is required")),
    };
    let scope = key_scope(role, fields.remove("actor_id"), fields.remove("teams"))?;
    let created_at_ns = now_ns();
    let expires_at_ns = expiry(
        fields.remove("expires_at"),
        fields.remove("ttl_seconds"),
        created_at_ns,
    )?;
    if let Some(unknown) = fields.keys().next() {
        return Err(ApiError::invalid_field(unknown, "unknown field"));
    }
    let allowed = principal.may_administer(&tenant_id);
    if !allowed {
        return Err(ApiError::Forbidden(
            "only the platform admin, or an admin key of the same tenant, may create keys".into(),
        ));
    }
    let (key, record) = new_api_key(&tenant_id, role, created_at_ns, expires_at_ns, scope);
    let scope_json = match &record.scope {
        Some(KeyScope::Actor(actor_id)) => json!({"actor_id": actor_id}),
        Some(KeyScope::Teams(teams)) => json!({"teams": teams}),
        None => Value::Null,
    };
    let key_id = record.key_id.clone();
    state.store.insert_api_key(record).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "key": key,
            "key_id": key_id,
            "tenant_id": tenant_id,
            "role": role.as_str(),
            "scope": scope_json,
            "created_at": format_timestamp(created_at_ns),
            "expires_at": expires_at_ns.map(format_timestamp),
        })),
    ))
}

/// The scope a key of `role` reads: `self` names one `actor_id`, `team_admin` one or more
/// `teams` (at most [`KEY_TEAMS_MAX`]); the other roles take neither.
fn key_scope(
    role: Role,
    actor_id: Option<Value>,
    teams: Option<Value>,
) -> Result<Option<KeyScope>, ApiError> {
    match (role, actor_id, teams) {
        (Role::Actor, Some(Value::String(actor_id)), None) => {
            check_actor_id(&actor_id)?;
            Ok(Some(KeyScope::Actor(actor_id)))
        }
        (Role::Actor, Some(_), None) => {
            Err(ApiError::invalid_field("actor_id", "must be a string"))
        }
        (Role::Actor, None, _) => Err(ApiError::invalid_field(
            "actor_id",
            "is required for a self key: the actor whose events it reads",
        )),
        (Role::TeamAdmin, None, Some(Value::Array(teams))) => {
            if teams.is_empty() || teams.len() > KEY_TEAMS_MAX {
                return Err(ApiError::invalid_field(
                    "teams",
                    format!("must list from 1 to {KEY_TEAMS_MAX} teams"),
                ));
            }
            let teams = teams
                .into_iter()
                .enumerate()
                .map(|(index, team)| match team {
                    Value::String(team)
                        if !team.is_empty() && team.chars().count() <= ACTOR_NAME_CHARS_MAX =>
                    {
                        Ok(team)
                    }
                    _ => Err(ApiError::invalid_field(
                        &format!("teams[{index}]"),
                        format!("must be a non-empty string of at most {ACTOR_NAME_CHARS_MAX} characters"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(KeyScope::Teams(teams)))
        }
        (Role::TeamAdmin, None, Some(_)) => Err(ApiError::invalid_field(
            "teams",
            "must be an array of team names",
        )),
        (Role::TeamAdmin, _, None) => Err(ApiError::invalid_field(
            "teams",
            "is required for a team_admin key: the teams whose actors' events it reads",
        )),
        (_, Some(_), _) => Err(ApiError::invalid_field(
            "actor_id",
            "is only for a self key",
        )),
        (_, _, Some(_)) => Err(ApiError::invalid_field(
            "teams",
            "is only for a team_admin key",
        )),
        (_, None, None) => Ok(None),
    }
}

/// An actor id as the event format allows it.
pub(crate) fn check_actor_id(actor_id: &str) -> Result<(), ApiError> {
    if actor_id.is_empty() || actor_id.chars().count() > ACTOR_ID_CHARS_MAX {
        return Err(ApiError::invalid_field(
            "actor_id",
            format!("must be a non-empty string of at most {ACTOR_ID_CHARS_MAX} characters"),
        ));
    }
    Ok(())
}

/// Longest life of a key, in seconds ([`API_KEY_TTL_DAYS_MAX`] days).
pub(crate) const API_KEY_TTL_SECS_MAX: i64 = API_KEY_TTL_DAYS_MAX * 86_400;
const SECOND_NS: i64 = 1_000_000_000;

/// When a key created at `now_ns` expires: `expires_at` (RFC 3339) or `ttl_seconds` (at most
/// one of them), after now and at most [`API_KEY_TTL_DAYS_MAX`] days ahead; `None` if neither.
fn expiry(
    expires_at: Option<Value>,
    ttl_seconds: Option<Value>,
    now_ns: i64,
) -> Result<Option<i64>, ApiError> {
    let latest_ns = now_ns.saturating_add(API_KEY_TTL_SECS_MAX * SECOND_NS);
    match (expires_at, ttl_seconds) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(ApiError::invalid_field(
            "ttl_seconds",
            "give expires_at or ttl_seconds, not both",
        )),
        (Some(expires_at), None) => {
            let Value::String(text) = expires_at else {
                return Err(ApiError::invalid_field(
                    "expires_at",
                    "must be an RFC 3339 timestamp string",
                ));
            };
            let expires_at_ns = parse_timestamp(&text).ok_or_else(|| {
                ApiError::invalid_field("expires_at", "must be an RFC 3339 timestamp")
            })?;
            if expires_at_ns <= now_ns {
                return Err(ApiError::invalid_field(
                    "expires_at",
                    format!(
                        "must be in the future (now is {})",
                        format_timestamp(now_ns)
                    ),
                ));
            }
            if expires_at_ns > latest_ns {
                return Err(ApiError::invalid_field(
                    "expires_at",
                    format!("must be at most {API_KEY_TTL_DAYS_MAX} days ahead"),
                ));
            }
            Ok(Some(expires_at_ns))
        }
        (None, Some(ttl_seconds)) => {
            let ttl = ttl_seconds
                .as_i64()
                .filter(|ttl| (1..=API_KEY_TTL_SECS_MAX).contains(ttl))
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "ttl_seconds",
                        format!(
                            "must be an integer from 1 to {API_KEY_TTL_SECS_MAX} \
                             ({API_KEY_TTL_DAYS_MAX} days)"
                        ),
                    )
                })?;
            Ok(Some(now_ns.saturating_add(ttl * SECOND_NS)))
        }
    }
}

/// Whether `text` has the form of a key id (16 lowercase hex digits, as `new_api_key` makes).
fn is_key_id(text: &str) -> bool {
    text.len() == 16
        && text
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// `DELETE /v1/keys/{key_id}`: revokes a key, so that the next request with it gets 401. The
/// platform admin may revoke any key, a tenant's admin key only its own tenant's keys: any
/// other key is "not found" to it, exactly as a key that does not exist. Revoking a revoked key
/// again is a success.
pub(crate) async fn revoke_key(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // The path is not echoed: a caller may have pasted a whole key, secret included.
    let not_found = || ApiError::NotFound("no such API key".into());
    if !is_key_id(&key_id) {
        // Never a stored id: not looked up, so no text of any form reaches the store.
        return Err(not_found());
    }
    match &principal {
        Principal::PlatformAdmin => {}
        Principal::Tenant {
            tenant_id: own,
            role,
            ..
        } => {
            if *role != Role::Admin {
                return Err(ApiError::Forbidden(
                    "only the platform admin, or an admin key of the key's tenant, may revoke keys"
                        .into(),
                ));
            }
            match state.store.find_api_key(&key_id).await? {
                Some(record) if record.tenant_id == *own => {}
                _ => return Err(not_found()),
            }
        }
    }
    if state.store.revoke_api_key(&key_id, now_ns()).await? {
        tracing::info!(key_id, "API key revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}
