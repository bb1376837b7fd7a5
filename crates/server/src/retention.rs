//! `PUT|GET /v1/tenants/{tenant_id}/retention`: a tenant's retention policy and legal hold,
//! platform admin only (retention decides what is destroyed, so no tenant key may change it).
//! The policy is stored as a hot-store setting; the lifecycle reads it when it deletes expired
//! cold files, and each deletion is signed with the policy that permitted it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use sealtrail_model::{check_tenant_id, RetentionPolicy};
use serde_json::Value;

use crate::auth::Principal;
use crate::problem::ApiError;
use crate::AppState;

fn admin_only(principal: &Principal) -> Result<(), ApiError> {
    match principal {
        Principal::PlatformAdmin => Ok(()),
        Principal::Tenant { .. } => Err(ApiError::Forbidden(
            "only the platform admin may read or change retention policies".into(),
        )),
    }
}

fn response(tenant_id: &str, policy: &RetentionPolicy) -> Json<Value> {
    let mut body = policy.to_json();
    body["tenant_id"] = tenant_id.into();
    Json(body)
}

pub(crate) async fn put_retention(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    admin_only(&principal)?;
    check_tenant_id(&tenant_id).map_err(|reason| ApiError::invalid_field("tenant_id", reason))?;
    let value: Value = serde_json::from_slice(&body).map_err(|_| {
        ApiError::invalid_field(
            "body",
            "must be a JSON object {\"retention_days\" or \"retention_years\", \"legal_hold\"}",
        )
    })?;
    // Every violation is reported, each naming its field; nothing is stored.
    let policy = RetentionPolicy::from_json(&value).map_err(ApiError::invalid_fields)?;
    let stored = serde_json::to_vec(&policy.to_json()).map_err(ApiError::internal)?;
    state
        .store
        .set_setting(&RetentionPolicy::setting_name(&tenant_id), stored)
        .await?;
    tracing::info!(tenant_id, policy = %policy.describe(), "retention policy set");
    Ok(response(&tenant_id, &policy))
}

pub(crate) async fn get_retention(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&principal)?;
    check_tenant_id(&tenant_id).map_err(|reason| ApiError::invalid_field("tenant_id", reason))?;
    let policy = crate::lifecycle::load_retention_policy(&*state.store, &tenant_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "tenant {tenant_id} has no retention policy; its events are kept indefinitely"
            ))
        })?;
    Ok(response(&tenant_id, &policy))
}
