//! `POST /v1/keys`: issue an API key. The key is returned once; only its hash is stored.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use sealtrail_hot::Role;
use sealtrail_model::{check_tenant_id, format_timestamp};
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
        Some(Value::String(role)) => Role::parse(&role)
            .ok_or_else(|| ApiError::invalid_field("role", "must be ingest, reader or admin"))?,
        Some(_) => return Err(ApiError::invalid_field("role", "must be a string")),
        None => return Err(ApiError::invalid_field("role", "is required")),
    };
    if let Some(unknown) = fields.keys().next() {
        return Err(ApiError::invalid_field(unknown, "unknown field"));
    }
    let allowed = match &principal {
        Principal::PlatformAdmin => true,
        Principal::Tenant {
            tenant_id: own,
            role,
        } => *role == Role::Admin && *own == tenant_id,
    };
    if !allowed {
        return Err(ApiError::Forbidden(
            "only the platform admin, or an admin key of the same tenant, may create keys".into(),
        ));
    }
    let created_at_ns = now_ns();
    let (key, record) = new_api_key(&tenant_id, role, created_at_ns);
    let key_id = record.key_id.clone();
    state.store.insert_api_key(record).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "key": key,
            "key_id": key_id,
            "tenant_id": tenant_id,
            "role": role.as_str(),
            "created_at": format_timestamp(created_at_ns),
        })),
    ))
}
