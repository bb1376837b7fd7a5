//! Viewer tokens: short-lived credentials a tenant's backend mints for one end user, whose
//! browser then reads that user's own events (`self`) or their team's (`team`) directly.
//!
//! A token is PASETO `v4.public` (Ed25519; the format has no algorithm field to confuse).
//! Each tenant has its own signing key, made on first use and replaced by
//! `POST /v1/tenants/{t}/viewer-tokens/rotate-key`: every token signed with the old key stops
//! working at once. The footer (authenticated, not encrypted) names the tenant and the key id,
//! so the key is found before the signature is checked; the implicit assertion binds tokens to
//! this purpose. The claims: `sub` (the actor), `scope`, `jti`, `iat` and `exp` (RFC 3339),
//! checked against the server's clock here, not the library's.
//!
//! A `team` token's teams are read from the actor directory at each request, so moving the
//! actor to another team moves what the token reads.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use pasetors::keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate};
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use pasetors::Public;
use sealtrail_hot::{HotStore, KeyScope, Role};
use sealtrail_model::limits::{BEARER_BYTES_MAX, VIEWER_TOKEN_TTL_SECS_MAX};
use sealtrail_model::{format_timestamp, parse_timestamp};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{administer, random_bytes, Principal};
use crate::problem::ApiError;
use crate::{now_ns, AppState};

/// Every viewer token begins so.
const TOKEN_PREFIX: &str = "v4.public.";
/// The implicit assertion: a PASETO signed for another purpose never verifies as a viewer token.
const IMPLICIT_ASSERTION: &[u8] = b"sealtrail viewer token v1";
const SECOND_NS: i64 = 1_000_000_000;

fn key_setting(tenant_id: &str) -> String {
    format!("viewer-token-key/{tenant_id}")
}

/// Whether a bearer credential has the form of a viewer token.
pub(crate) fn is_viewer_token(bearer: &str) -> bool {
    bearer.starts_with(TOKEN_PREFIX)
}

/// A tenant's signing key as stored: its id and the Ed25519 secret (seed and public key).
struct SigningKey {
    key_id: String,
    secret: AsymmetricSecretKey<V4>,
}

impl SigningKey {
    fn generate() -> Result<Self, ApiError> {
        let pair = AsymmetricKeyPair::<V4>::generate()
            .map_err(|error| ApiError::internal(format!("viewer key: {error:?}")))?;
        Ok(SigningKey {
            key_id: hex::encode(random_bytes::<8>()),
            secret: pair.secret,
        })
    }

    fn to_bytes(&self) -> Vec<u8> {
        format!("{}:{}", self.key_id, hex::encode(self.secret.as_bytes())).into_bytes()
    }

    fn from_bytes(tenant_id: &str, bytes: &[u8]) -> Result<Self, ApiError> {
        let corrupt = || {
            ApiError::internal(format!(
                "the viewer-token key of tenant {tenant_id} is damaged"
            ))
        };
        let text = std::str::from_utf8(bytes).map_err(|_| corrupt())?;
        let (key_id, secret) = text.split_once(':').ok_or_else(corrupt)?;
        let secret = hex::decode(secret).map_err(|_| corrupt())?;
        Ok(SigningKey {
            key_id: key_id.to_owned(),
            secret: AsymmetricSecretKey::<V4>::from(&secret).map_err(|_| corrupt())?,
        })
    }

    fn public(&self) -> Result<AsymmetricPublicKey<V4>, ApiError> {
        AsymmetricPublicKey::<V4>::try_from(&self.secret)
            .map_err(|error| ApiError::internal(format!("viewer key: {error:?}")))
    }
}

async fn stored_key(store: &dyn HotStore, tenant_id: &str) -> Result<Option<SigningKey>, ApiError> {
    match store.setting(&key_setting(tenant_id)).await? {
        Some(bytes) => Ok(Some(SigningKey::from_bytes(tenant_id, &bytes)?)),
        None => Ok(None),
    }
}

/// The tenant's key, made (once, whichever node is first) if it has none.
async fn signing_key(store: &dyn HotStore, tenant_id: &str) -> Result<SigningKey, ApiError> {
    if let Some(key) = stored_key(store, tenant_id).await? {
        return Ok(key);
    }
    let key = SigningKey::generate()?;
    if store
        .set_setting_if_absent(&key_setting(tenant_id), key.to_bytes())
        .await?
    {
        return Ok(key);
    }
    stored_key(store, tenant_id)
        .await?
        .ok_or_else(|| ApiError::internal("the viewer-token key vanished while it was made"))
}

/// What the footer of a token says (authenticated by the signature).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Footer {
    tenant: String,
    kid: String,
}

/// The claims of a token.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    scope: String,
    jti: String,
    exp: String,
}

/// Checks a viewer token and turns it into the caller it speaks for. Every failure is 401; the
/// reason is told only where it helps a legitimate holder (expired, key rotated).
pub(crate) async fn authenticate(
    store: &dyn HotStore,
    bearer: &str,
) -> Result<Principal, ApiError> {
    if bearer.len() > BEARER_BYTES_MAX {
        return Err(ApiError::Unauthorized);
    }
    let untrusted =
        UntrustedToken::<Public, V4>::try_from(bearer).map_err(|_| ApiError::Unauthorized)?;
    let footer_bytes = untrusted.untrusted_footer().to_vec();
    let footer: Footer =
        serde_json::from_slice(&footer_bytes).map_err(|_| ApiError::Unauthorized)?;
    if sealtrail_model::check_tenant_id(&footer.tenant).is_err() {
        return Err(ApiError::Unauthorized);
    }
    let key = stored_key(store, &footer.tenant)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let trusted = PublicToken::verify(
        &key.public()?,
        &untrusted,
        Some(&footer_bytes),
        Some(IMPLICIT_ASSERTION),
    )
    .map_err(|_| {
        if footer.kid == key.key_id {
            ApiError::Unauthorized
        } else {
            ApiError::KeyRefused(format!(
                "the viewer token was signed with key {}, which tenant {} rotated",
                footer.kid, footer.tenant
            ))
        }
    })?;
    let claims: Claims =
        serde_json::from_str(trusted.payload()).map_err(|_| ApiError::Unauthorized)?;
    let expires_at_ns = parse_timestamp(&claims.exp).ok_or(ApiError::Unauthorized)?;
    if now_ns() >= expires_at_ns {
        return Err(ApiError::KeyRefused(format!(
            "the viewer token {} expired at {}",
            claims.jti, claims.exp
        )));
    }
    let (role, scope) = match claims.scope.as_str() {
        "self" => (Role::Actor, KeyScope::Actor(claims.sub.clone())),
        "team" => {
            let teams = store
                .actor(&footer.tenant, &claims.sub)
                .await?
                .and_then(|actor| actor.team)
                .into_iter()
                .collect();
            (Role::TeamAdmin, KeyScope::Teams(teams))
        }
        _ => return Err(ApiError::Unauthorized),
    };
    Ok(Principal::Tenant {
        tenant_id: footer.tenant,
        role,
        credential: format!("viewer-token:{}", claims.jti),
        scope: Some(scope),
        on_behalf_of: Some(claims.sub),
    })
}

/// `POST /v1/viewer-tokens {actor_id, scope: "self" | "team", ttl_seconds, tenant_id}`: a
/// tenant's admin key (or the platform admin, naming the tenant) mints a token for one actor.
pub(crate) async fn mint(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let value = crate::problem::json_document(&body)?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::invalid_field(
            "body",
            "must be a JSON object {\"actor_id\", \"scope\", \"ttl_seconds\"}",
        ));
    };
    for name in object.keys() {
        if !["actor_id", "scope", "ttl_seconds", "tenant_id"].contains(&name.as_str()) {
            return Err(ApiError::invalid_field(name, "unknown member"));
        }
    }
    let tenant_id = match object.get("tenant_id") {
        None => principal
            .tenant()
            .ok_or_else(|| {
                ApiError::invalid_field("tenant_id", "is required for the platform admin")
            })?
            .to_owned(),
        Some(Value::String(tenant_id)) => tenant_id.clone(),
        Some(_) => return Err(ApiError::invalid_field("tenant_id", "must be a string")),
    };
    administer(&principal, &tenant_id, "its viewer tokens")?;
    let actor_id = match object.get("actor_id") {
        Some(Value::String(actor_id)) => actor_id.clone(),
        Some(_) => return Err(ApiError::invalid_field("actor_id", "must be a string")),
        None => return Err(ApiError::invalid_field("actor_id", "is required")),
    };
    crate::keys::check_actor_id(&actor_id)?;
    let scope = match object.get("scope") {
        None => "self",
        Some(Value::String(scope)) if scope == "self" || scope == "team" => scope.as_str(),
        Some(_) => return Err(ApiError::invalid_field("scope", "must be self or team")),
    };
    let ttl_seconds = match object.get("ttl_seconds") {
        None => VIEWER_TOKEN_TTL_SECS_MAX,
        // A whole number written with a fraction part (`75.0`) is the same JSON number.
        Some(value) => value
            .as_i64()
            .or_else(|| {
                value
                    .as_f64()
                    .filter(|ttl| ttl.fract() == 0.0 && ttl.abs() < 1e15)
                    .map(|ttl| ttl as i64)
            })
            .filter(|ttl| (1..=VIEWER_TOKEN_TTL_SECS_MAX).contains(ttl))
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "ttl_seconds",
                    format!("must be an integer from 1 to {VIEWER_TOKEN_TTL_SECS_MAX}"),
                )
            })?,
    };
    if scope == "team"
        && state
            .store
            .actor(&tenant_id, &actor_id)
            .await?
            .and_then(|actor| actor.team)
            .is_none()
    {
        return Err(ApiError::invalid_field(
            "actor_id",
            format!(
                "has no team in tenant {tenant_id}'s actor directory, so a team token would read \
                 nothing; set it with PUT /v1/tenants/{tenant_id}/actors"
            ),
        ));
    }
    let key = signing_key(&*state.store, &tenant_id).await?;
    let issued_at_ns = now_ns();
    let expires_at_ns = issued_at_ns.saturating_add(ttl_seconds * SECOND_NS);
    let token_id = hex::encode(random_bytes::<12>());
    let claims = json!({
        "sub": actor_id,
        "scope": scope,
        "jti": token_id,
        "iat": format_timestamp(issued_at_ns),
        "exp": format_timestamp(expires_at_ns),
    });
    let footer = json!({"tenant": tenant_id, "kid": key.key_id});
    let token = PublicToken::sign(
        &key.secret,
        claims.to_string().as_bytes(),
        Some(footer.to_string().as_bytes()),
        Some(IMPLICIT_ASSERTION),
    )
    .map_err(|error| ApiError::internal(format!("could not sign a viewer token: {error:?}")))?;
    tracing::info!(tenant_id, token_id, scope, "viewer token minted");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "token_id": token_id,
            "tenant_id": tenant_id,
            "actor_id": actor_id,
            "scope": scope,
            "expires_at": format_timestamp(expires_at_ns),
        })),
    ))
}

/// `POST /v1/tenants/{tenant_id}/viewer-tokens/rotate-key`: a new signing key; every viewer token
/// of the tenant signed before stops working. Recorded in the tenant's log.
pub(crate) async fn rotate_key(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    administer(&principal, &tenant_id, "its viewer tokens")?;
    let before = stored_key(&*state.store, &tenant_id)
        .await?
        .map(|key| key.key_id);
    let key = SigningKey::generate()?;
    crate::capture::record(
        &state.pipeline,
        json!({
            "tenant_id": tenant_id,
            "actor_id": principal.actor_id(),
            "actor_type": "service",
            "action": "viewer_tokens.key_rotated",
            "resource_type": "viewer_token_key",
            "resource_id": key.key_id,
            "outcome": "success",
            "changes": {"before": {"key_id": before}, "after": {"key_id": key.key_id}},
        }),
    )
    .await?;
    state
        .store
        .set_setting(&key_setting(&tenant_id), key.to_bytes())
        .await?;
    tracing::info!(tenant_id, key_id = key.key_id, "viewer-token key rotated");
    Ok(Json(json!({"tenant_id": tenant_id, "key_id": key.key_id})))
}
