//! Async requests refused at commit, kept where their sender can find them.
//!
//! An async request is acknowledged (202) once spooled, before the store has decided on it. If
//! the store then refuses it (one of its `event_id`s is already stored with other content), the
//! sender is gone: the refusal is recorded per tenant, with the reason, and served by
//! `GET /v1/tenants/{tenant_id}/rejected-events` to the tenant's reader and admin keys and the
//! platform admin. The most recent [`ASYNC_REJECTIONS_KEPT_MAX`] are kept; `total` counts all.
//! Stored as a hot-store setting, so every node of a shared database sees the same list.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use sealtrail_hot::HotStore;
use sealtrail_model::check_tenant_id;
use sealtrail_model::limits::ASYNC_REJECTIONS_KEPT_MAX;
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::problem::ApiError;
use crate::AppState;

/// One refused async request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rejection {
    /// The `event_id` that was refused, and its index in the request.
    pub(crate) event_id: String,
    pub(crate) index: usize,
    /// How many events the request held; none of them was stored.
    pub(crate) request_events: usize,
    pub(crate) reason: String,
    /// When the store refused it (RFC 3339).
    pub(crate) rejected_at: String,
}

/// A tenant's refusals: the most recent ones, oldest first, and how many there were in all.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Rejections {
    pub(crate) tenant_id: String,
    pub(crate) total: u64,
    pub(crate) rejected: VecDeque<Rejection>,
}

fn setting_name(tenant_id: &str) -> String {
    format!("async_rejections/{tenant_id}")
}

async fn load(store: &dyn HotStore, tenant_id: &str) -> Result<Rejections, ApiError> {
    let Some(bytes) = store.setting(&setting_name(tenant_id)).await? else {
        return Ok(Rejections {
            tenant_id: tenant_id.to_owned(),
            ..Rejections::default()
        });
    };
    serde_json::from_slice(&bytes).map_err(ApiError::internal)
}

/// Records a refusal. Called by the tenant's commit lane, which is the only writer of the
/// tenant's list on this node.
pub(crate) async fn record(
    store: &dyn HotStore,
    tenant_id: &str,
    rejection: Rejection,
) -> Result<(), ApiError> {
    let mut rejections = load(store, tenant_id).await?;
    rejections.total += 1;
    rejections.rejected.push_back(rejection);
    while rejections.rejected.len() > ASYNC_REJECTIONS_KEPT_MAX {
        rejections.rejected.pop_front();
    }
    let bytes = serde_json::to_vec(&rejections).map_err(ApiError::internal)?;
    store.set_setting(&setting_name(tenant_id), bytes).await?;
    Ok(())
}

/// `GET /v1/tenants/{tenant_id}/rejected-events`.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant_id): Path<String>,
) -> Result<Json<Rejections>, ApiError> {
    check_tenant_id(&tenant_id).map_err(|reason| ApiError::invalid_field("tenant_id", reason))?;
    if !principal.may_read(&tenant_id) {
        return Err(ApiError::Forbidden(format!(
            "this key may not read tenant {tenant_id}"
        )));
    }
    Ok(Json(load(&*state.store, &tenant_id).await?))
}
