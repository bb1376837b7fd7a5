//! Who may read what, decided in one place, and the read trail that records every read.
//!
//! Four levels (docs/ACCESS.md): `self` reads one actor's events, `team_admin` the events of
//! the actors its teams hold in the actor directory, `security_admin` (the `reader` role) and a
//! tenant's `admin` the whole tenant, `platform_admin` every tenant. A read route asks
//! [`ReadRequest::reader`] for a [`Reader`]: the tenant it reads and, for the narrow levels, the
//! actors it may see. The route then narrows what it reads to those actors
//! ([`Reader::narrow`], [`Reader::admits`]) or, if what it answers cannot be narrowed (a
//! tenant-wide summary), asks [`ReadRequest::whole_tenant`], which refuses the narrow levels.
//! Routes that never call either keep checking [`Principal::may_read`], which the narrow levels
//! never pass: a new route is closed to them until it narrows.
//!
//! Every answered read of audit data is recorded ([`Reader::record`]) as an `access.read` event
//! in the tenant's read trail, `_access.<tenant>`: a log of its own, chained, tree-hashed,
//! checkpointed and verified like every tenant's log, that no request can write to or name
//! (`sealtrail_model::ACCESS_TRAIL_TENANT_PREFIX`). The platform admin's reads are recorded in
//! the trail of the tenant they read, and no setting turns that off. Entries go through the
//! async lane: spooled before the answer is sent, so a read is never answered unrecorded; a full
//! queue answers the read 503 instead.

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Query, State};
use axum::http::request::Parts;
use axum::Json;
use sealtrail_hot::{EventQuery, KeyScope};
use sealtrail_model::limits::{REQUEST_ID_CHARS_MAX, SCOPE_ACTORS_MAX, TRAIL_DETAIL_BYTES_MAX};
use sealtrail_model::{access_trail_tenant, check_tenant_id, validate_event};
use serde_json::{json, Value};
use std::collections::HashMap;

use crate::auth::Principal;
use crate::problem::ApiError;
use crate::{now_ns, AppState};

/// The action of every read-trail entry.
pub(crate) const READ_ACTION: &str = "access.read";

/// A read route's caller: who, through which route, under which request id.
#[derive(Debug, Clone)]
pub(crate) struct ReadRequest {
    pub(crate) principal: Principal,
    route: String,
    request_id: Option<String>,
}

impl FromRequestParts<Arc<AppState>> for ReadRequest {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        let route = parts.extensions.get::<MatchedPath>().map_or_else(
            || parts.uri.path().to_owned(),
            |path| path.as_str().to_owned(),
        );
        // The caller's request id, if it is one the event format accepts; else the entry gets
        // none of its own.
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .filter(|id| {
                !id.is_empty()
                    && id.chars().count() <= REQUEST_ID_CHARS_MAX
                    && id.bytes().all(|byte| byte.is_ascii_graphic())
            })
            .map(str::to_owned);
        Ok(ReadRequest {
            principal,
            route,
            request_id,
        })
    }
}

/// A read admitted to one tenant: whose events it may see.
#[derive(Debug)]
pub(crate) struct Reader {
    pub(crate) tenant_id: String,
    /// `None`: every actor of the tenant; else only these (sorted, possibly none).
    actors: Option<Vec<String>>,
    request: ReadRequest,
}

impl ReadRequest {
    /// Admits a read of `requested` (or the caller's own tenant) at the caller's level: 400 for
    /// a malformed tenant id, 403 for a tenant or level that may not read it.
    pub(crate) async fn reader(
        self,
        state: &AppState,
        requested: Option<&String>,
    ) -> Result<Reader, ApiError> {
        let tenant_id = requested_tenant(&self.principal, requested)?;
        if !self.principal.may_read_within_scope(&tenant_id) {
            return Err(ApiError::Forbidden(format!(
                "this key may not read tenant {tenant_id}"
            )));
        }
        let actors = match &self.principal {
            Principal::Tenant {
                scope: Some(scope), ..
            } => {
                let mut actors = scope_actors(state, &tenant_id, scope).await?;
                actors.sort_unstable();
                actors.dedup();
                Some(actors)
            }
            _ => None,
        };
        Ok(Reader {
            tenant_id,
            actors,
            request: self,
        })
    }

    /// Admits a read that answers for the whole tenant: as [`ReadRequest::reader`], but a
    /// `self` or `team_admin` caller is refused (403 naming the route).
    pub(crate) async fn whole_tenant(
        self,
        state: &AppState,
        requested: Option<&String>,
    ) -> Result<Reader, ApiError> {
        let route = self.route.clone();
        let reader = self.reader(state, requested).await?;
        if reader.actors.is_some() {
            return Err(ApiError::Forbidden(format!(
                "{route} answers for the whole tenant; a {} caller reads only its own scope",
                reader.request.principal.level()
            )));
        }
        Ok(reader)
    }
}

/// The tenant a whole-tenant read is about (its `tenant_id`, which a tenant-bound caller may
/// omit), for a caller that may read all of it; 403 for any other, the narrow levels included.
/// For routes that read without recording (export job states).
pub(crate) fn readable_tenant(
    principal: &Principal,
    requested: Option<&String>,
) -> Result<String, ApiError> {
    let tenant_id = requested_tenant(principal, requested)?;
    if !principal.may_read(&tenant_id) {
        return Err(ApiError::Forbidden(format!(
            "this key may not read tenant {tenant_id}"
        )));
    }
    Ok(tenant_id)
}

/// The tenant a read is about: the `tenant_id` parameter, which a tenant-bound caller may omit.
fn requested_tenant(principal: &Principal, requested: Option<&String>) -> Result<String, ApiError> {
    match (requested, principal.tenant()) {
        (Some(requested), _) => {
            check_tenant_id(requested)
                .map_err(|reason| ApiError::invalid_field("tenant_id", reason))?;
            Ok(requested.clone())
        }
        (None, Some(own)) => Ok(own.to_owned()),
        (None, None) => Err(ApiError::invalid_field(
            "tenant_id",
            "is required for a platform-admin key",
        )),
    }
}

/// The actors a narrow scope covers, read from the directory at each request (a move between
/// teams takes effect at once).
async fn scope_actors(
    state: &AppState,
    tenant_id: &str,
    scope: &KeyScope,
) -> Result<Vec<String>, ApiError> {
    match scope {
        KeyScope::Actor(actor_id) => Ok(vec![actor_id.clone()]),
        KeyScope::Teams(teams) => {
            // One more than the bound tells a scope beyond it without reading it whole.
            let actors = state
                .store
                .team_members(tenant_id, teams, SCOPE_ACTORS_MAX + 1)
                .await?;
            if actors.len() > SCOPE_ACTORS_MAX {
                return Err(ApiError::Forbidden(format!(
                    "the key's teams hold more than the {SCOPE_ACTORS_MAX} actors a team_admin \
                     scope may span; use a security_admin key"
                )));
            }
            Ok(actors)
        }
    }
}

impl Reader {
    /// Whether this read sees protected fields (docs/PRIVACY.md) in plaintext: every level but
    /// `team_admin`, which sees what its team did, not the personal data inside it.
    pub(crate) fn sees_protected_fields(&self) -> bool {
        self.request.principal.level() != "team_admin"
    }

    /// The actors this read may see; `None` for the whole tenant.
    pub(crate) fn actors(&self) -> Option<&[String]> {
        self.actors.as_deref()
    }

    /// Narrows an event query to the read's scope.
    pub(crate) fn narrow(&self, query: &mut EventQuery) {
        query.actor_in = self.actors.clone();
    }

    /// Whether an event of `actor_id` is within the read's scope.
    pub(crate) fn admits(&self, actor_id: &str) -> bool {
        self.actors.as_ref().is_none_or(|actors| {
            actors
                .binary_search_by(|actor| actor.as_str().cmp(actor_id))
                .is_ok()
        })
    }

    /// Records the read in the tenant's read trail: `detail` is what was asked (filters, SQL,
    /// an id), `rows` how many records were returned (`None` where the answer streams).
    pub(crate) fn record(
        &self,
        state: &AppState,
        detail: Value,
        rows: Option<usize>,
    ) -> Result<(), ApiError> {
        let principal = &self.request.principal;
        let (actor_id, actor_type) = match principal {
            Principal::Tenant {
                on_behalf_of: Some(user),
                ..
            } => (user.clone(), "human"),
            other => (other.actor_id(), "service"),
        };
        let mut metadata = json!({
            "credential": principal.actor_id(),
            "level": principal.level(),
            "route": self.request.route,
            "query": bounded(detail),
            "rows": rows,
        });
        if let Some(actors) = &self.actors {
            metadata["scope_actors"] = actors.len().into();
        }
        let mut event = json!({
            "tenant_id": self.tenant_id,
            "actor_id": actor_id,
            "actor_type": actor_type,
            "action": READ_ACTION,
            "resource_type": "route",
            "resource_id": self.request.route,
            "outcome": "success",
            "metadata": metadata,
        });
        if let Some(request_id) = &self.request.request_id {
            event["request_id"] = request_id.clone().into();
        }
        // Validated as an event of the tenant it is about, then filed in that tenant's trail:
        // the trail's id is one no request may name, so it fails the API's tenant rule.
        let received_at_ns = now_ns();
        let submitted = validate_event(event, received_at_ns).map_err(|errors| {
            ApiError::internal(format!("a read-trail entry is invalid: {errors:?}"))
        })?;
        let mut pending = submitted.complete(received_at_ns, || uuid::Uuid::now_v7().to_string());
        pending.event.tenant_id = access_trail_tenant(&self.tenant_id);
        state
            .pipeline
            .submit_async(vec![pending])
            .map_err(crate::ingest::refusal)
    }
}

/// A read's detail as recorded: cut to [`TRAIL_DETAIL_BYTES_MAX`] bytes of JSON, marked so.
fn bounded(detail: Value) -> Value {
    let text = detail.to_string();
    if text.len() <= TRAIL_DETAIL_BYTES_MAX {
        return detail;
    }
    let mut end = TRAIL_DETAIL_BYTES_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    json!({"truncated": true, "text": &text[..end]})
}

/// `GET /v1/whoami`: the caller's tenant, level, scope and credential name (never a secret).
pub(crate) async fn whoami(principal: Principal) -> Result<Json<Value>, ApiError> {
    let (actor_id, teams) = match &principal {
        Principal::Tenant {
            scope: Some(KeyScope::Actor(actor)),
            ..
        } => (Some(actor.clone()), Vec::new()),
        Principal::Tenant {
            scope: Some(KeyScope::Teams(teams)),
            on_behalf_of,
            ..
        } => (on_behalf_of.clone(), teams.clone()),
        _ => (None, Vec::new()),
    };
    Ok(Json(json!({
        "tenant_id": principal.tenant(),
        "role": principal.level(),
        "actor_id": actor_id,
        "teams": teams,
        "credential": principal.actor_id(),
    })))
}

/// `GET /v1/access-trail?limit=&order=&cursor=&tenant_id=`: pages of the tenant's read trail,
/// newest first; for its security admins, its admins and the platform admin. Reading it is a
/// read like any other, and is recorded in it.
pub(crate) async fn trail(
    State(state): State<Arc<AppState>>,
    request: ReadRequest,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let reader = request
        .whole_tenant(&state, params.get("tenant_id"))
        .await?;
    let mut query = EventQuery::for_tenant(&access_trail_tenant(&reader.tenant_id));
    let cursor = crate::query::page_params(&mut query, &params)?;
    let page = crate::query::read_page(&state, query, cursor).await?;
    reader.record(
        &state,
        json!({"trail": true, "params": params}),
        Some(page.events.len()),
    )?;
    Ok(Json(
        serde_json::to_value(page).map_err(ApiError::internal)?,
    ))
}
