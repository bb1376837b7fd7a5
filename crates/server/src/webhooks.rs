//! `/v1/tenants/{t}/webhooks` and `/v1/sinks`: registering the destinations of
//! [`crate::destinations`], listing them, removing them, and their dead-letter lists.
//!
//! A webhook belongs to one tenant (its admin keys manage it). A sink belongs to one tenant, or,
//! made by the platform admin without `tenant_id`, to every tenant. Secrets and tokens are
//! write-only: a generated webhook secret is returned once, in the answer that made it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use rand::RngCore;
use sealtrail_model::limits::{DESTINATION_URL_BYTES_MAX, SINKS_MAX, WEBHOOKS_PER_TENANT_MAX};
use sealtrail_realtime::webhook::WebhookSecret;
use serde_json::{json, Map, Value};

use crate::auth::Principal;
use crate::destinations::{self, Destination, Selection, Transport};
use crate::problem::ApiError;
use crate::{now_ns, AppState};

fn may_administer(principal: &Principal, tenant_id: &str) -> Result<(), ApiError> {
    crate::auth::administer(principal, tenant_id, "its webhooks and sinks")
}

fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

/// An `http(s)://` URL with a host, at most [`DESTINATION_URL_BYTES_MAX`] bytes.
fn read_url(object: &Map<String, Value>, allow_private: bool) -> Result<String, ApiError> {
    let Some(text) = object.get("url").and_then(Value::as_str) else {
        return Err(ApiError::invalid_field(
            "url",
            "required: the receiver's http(s) URL",
        ));
    };
    if text.len() > DESTINATION_URL_BYTES_MAX {
        return Err(ApiError::invalid_field(
            "url",
            format!("at most {DESTINATION_URL_BYTES_MAX} bytes"),
        ));
    }
    match reqwest::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            let host = url.host_str().unwrap_or_default();
            match destinations::refused_literal(host, allow_private) {
                Some(reason) => Err(ApiError::invalid_field("url", reason)),
                None => Ok(text.to_owned()),
            }
        }
        _ => Err(ApiError::invalid_field(
            "url",
            "must be an absolute http:// or https:// URL with a host",
        )),
    }
}

fn refuse_unknown(object: &Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    match object.keys().find(|name| !known.contains(&name.as_str())) {
        Some(name) => Err(ApiError::invalid_field(name, "unknown member")),
        None => Ok(()),
    }
}

/// `events` (`["alerts"]`, `["events"]` or both; default alerts) and `filters`.
fn read_selection(
    object: &Map<String, Value>,
    default_alerts: bool,
) -> Result<Selection, ApiError> {
    let kinds: Vec<&str> = match object.get("events") {
        None => vec![if default_alerts { "alerts" } else { "events" }],
        Some(Value::Array(kinds)) if !kinds.is_empty() => kinds
            .iter()
            .map(|kind| match kind.as_str() {
                Some(kind @ ("alerts" | "events")) => Ok(kind),
                _ => Err(ApiError::invalid_field(
                    "events",
                    "each member must be \"alerts\" or \"events\"",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::invalid_field(
                "events",
                "must be a non-empty array of \"alerts\" and \"events\"",
            ))
        }
    };
    Ok(Selection {
        alerts: kinds.contains(&"alerts"),
        events: kinds.contains(&"events"),
        filter: crate::query::filter_from_json(object.get("filters").unwrap_or(&Value::Null))?,
    })
}

/// `POST /v1/tenants/{t}/webhooks`: `{url, secret?, events?, filters?}` → 201 with the webhook
/// (and its secret, when the server generated it: shown only this once).
pub(crate) async fn create_webhook(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant_id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    may_administer(&principal, &tenant_id)?;
    let value = crate::problem::json_document(&body)?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::invalid_field("body", "must be a JSON object"));
    };
    refuse_unknown(object, &["url", "secret", "events", "filters"])?;
    let url = read_url(object, state.allow_private_destinations)?;
    let (secret, generated) = match object.get("secret") {
        None | Some(Value::Null) => {
            let mut bytes = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut bytes);
            (WebhookSecret::from_bytes(bytes), true)
        }
        Some(Value::String(text)) => (
            WebhookSecret::parse(text)
                .map_err(|error| ApiError::invalid_field("secret", error.to_string()))?,
            false,
        ),
        Some(_) => {
            return Err(ApiError::invalid_field(
                "secret",
                "must be a whsec_… string",
            ))
        }
    };
    let selection = read_selection(object, true)?;
    let destination = Destination {
        id: new_id("wh"),
        tenant_id: Some(tenant_id),
        selection,
        transport: Transport::Webhook {
            url,
            secret: secret.clone(),
        },
        created_at: sealtrail_model::format_timestamp(now_ns()),
    };
    state
        .destinations
        .add(&state, destination.clone(), WEBHOOKS_PER_TENANT_MAX)
        .await?;
    let mut body = destination.to_public();
    if generated {
        body["secret"] = secret.to_text().into();
    }
    Ok((StatusCode::CREATED, Json(body)))
}

/// `GET /v1/tenants/{t}/webhooks`.
pub(crate) async fn list_webhooks(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    may_administer(&principal, &tenant_id)?;
    let webhooks: Vec<Value> = destinations::stored(&*state.store)
        .await?
        .iter()
        .filter(|destination| {
            destination.transport.kind() == "webhook"
                && destination.tenant_id.as_deref() == Some(tenant_id.as_str())
        })
        .map(Destination::to_public)
        .collect();
    Ok(Json(json!({"tenant_id": tenant_id, "webhooks": webhooks})))
}

/// The destination `id` as seen by `principal`: a webhook of `tenant_id`, or a sink the caller
/// may manage. Anything else is 404, so ids of other tenants are not revealed.
async fn find(
    state: &AppState,
    principal: &Principal,
    id: &str,
    webhook_of: Option<&str>,
) -> Result<Destination, ApiError> {
    let found = destinations::stored(&*state.store)
        .await?
        .into_iter()
        .find(|destination| {
            destination.id == id
                && match webhook_of {
                    Some(tenant_id) => {
                        destination.transport.kind() == "webhook"
                            && destination.tenant_id.as_deref() == Some(tenant_id)
                    }
                    None => {
                        destination.transport.kind() != "webhook"
                            && match &destination.tenant_id {
                                Some(tenant_id) => principal.may_administer(tenant_id),
                                None => *principal == Principal::PlatformAdmin,
                            }
                    }
                }
        });
    found.ok_or_else(|| ApiError::NotFound(format!("no webhook or sink {id} here")))
}

/// `DELETE /v1/tenants/{t}/webhooks/{id}`.
pub(crate) async fn delete_webhook(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path((tenant_id, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    may_administer(&principal, &tenant_id)?;
    let destination = find(&state, &principal, &id, Some(&tenant_id)).await?;
    state
        .destinations
        .remove(&state, &destination.id, destination.tenant_id.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/tenants/{t}/webhooks/{id}/dead-letters`.
pub(crate) async fn webhook_dead_letters(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path((tenant_id, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    may_administer(&principal, &tenant_id)?;
    let destination = find(&state, &principal, &id, Some(&tenant_id)).await?;
    dead_letters_body(&state, &destination).await
}

/// `POST /v1/tenants/{t}/webhooks/{id}/dead-letters/replay`.
pub(crate) async fn replay_webhook_dead_letters(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path((tenant_id, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    may_administer(&principal, &tenant_id)?;
    let destination = find(&state, &principal, &id, Some(&tenant_id)).await?;
    replay_body(&state, &destination).await
}

async fn dead_letters_body(
    state: &AppState,
    destination: &Destination,
) -> Result<Json<Value>, ApiError> {
    let letters = destinations::dead_letters(&*state.store, &destination.id).await?;
    Ok(Json(json!({"id": destination.id, "dead_letters": letters})))
}

async fn replay_body(state: &AppState, destination: &Destination) -> Result<Json<Value>, ApiError> {
    let (delivered, parked) = destinations::replay_dead_letters(state, destination).await?;
    Ok(Json(
        json!({"id": destination.id, "delivered": delivered, "still_parked": parked}),
    ))
}

/// `POST /v1/sinks`: `{kind, tenant_id?, …}`; `kind` is `splunk_hec` (`url`, `token`),
/// `syslog` (`address` host:port, `tls`) or `ocsf_http` (`url`, `authorization`). Without
/// `tenant_id` (platform admin only) the sink forwards every tenant's events.
pub(crate) async fn create_sink(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let value = crate::problem::json_document(&body)?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::invalid_field("body", "must be a JSON object"));
    };
    let tenant_id = match object.get("tenant_id") {
        None | Some(Value::Null) => {
            if principal != Principal::PlatformAdmin {
                return Err(ApiError::Forbidden(
                    "only the platform admin may make a sink of every tenant; give tenant_id"
                        .into(),
                ));
            }
            None
        }
        Some(Value::String(tenant_id)) => {
            may_administer(&principal, tenant_id)?;
            Some(tenant_id.clone())
        }
        Some(_) => return Err(ApiError::invalid_field("tenant_id", "must be a string")),
    };
    let text = |name: &str| -> Result<String, ApiError> {
        match object.get(name).and_then(Value::as_str) {
            Some(text) if !text.is_empty() && text.len() <= DESTINATION_URL_BYTES_MAX => {
                Ok(text.to_owned())
            }
            _ => Err(ApiError::invalid_field(
                name,
                format!("required: a string of 1 to {DESTINATION_URL_BYTES_MAX} bytes"),
            )),
        }
    };
    let (transport, members): (Transport, &[&str]) =
        match object.get("kind").and_then(Value::as_str) {
            Some("splunk_hec") => (
                Transport::SplunkHec {
                    url: read_url(object, state.allow_private_destinations)?,
                    token: text("token")?,
                },
                &["kind", "tenant_id", "url", "token", "filters"],
            ),
            Some("ocsf_http") => (
                Transport::OcsfHttp {
                    url: read_url(object, state.allow_private_destinations)?,
                    authorization: object
                        .contains_key("authorization")
                        .then(|| text("authorization"))
                        .transpose()?,
                },
                &["kind", "tenant_id", "url", "authorization", "filters"],
            ),
            Some("syslog") => {
                let address = text("address")?;
                let port_ok = address.rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0)
                });
                if !port_ok {
                    return Err(ApiError::invalid_field("address", "must be host:port"));
                }
                let host = address.rsplit_once(':').map_or("", |(host, _)| host);
                if let Some(reason) =
                    destinations::refused_literal(host, state.allow_private_destinations)
                {
                    return Err(ApiError::invalid_field("address", reason));
                }
                let tls = match object.get("tls") {
                    None => false,
                    Some(Value::Bool(tls)) => *tls,
                    Some(_) => return Err(ApiError::invalid_field("tls", "must be true or false")),
                };
                (
                    Transport::Syslog { address, tls },
                    &["kind", "tenant_id", "address", "tls", "filters"],
                )
            }
            _ => {
                return Err(ApiError::invalid_field(
                    "kind",
                    "required: \"splunk_hec\", \"syslog\" or \"ocsf_http\"",
                ))
            }
        };
    refuse_unknown(object, members)?;
    let selection = read_selection(object, false)?;
    let destination = Destination {
        id: new_id("sink"),
        tenant_id,
        selection,
        transport,
        created_at: sealtrail_model::format_timestamp(now_ns()),
    };
    state
        .destinations
        .add(&state, destination.clone(), SINKS_MAX)
        .await?;
    Ok((StatusCode::CREATED, Json(destination.to_public())))
}

/// `GET /v1/sinks[?tenant_id=]`: the sinks the caller may manage.
pub(crate) async fn list_sinks(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    if let Some(unknown) = params.keys().find(|name| *name != "tenant_id") {
        return Err(ApiError::invalid_field(unknown, "unknown query parameter"));
    }
    // A tenant's key lists its own tenant's sinks; the platform admin every sink, or one
    // tenant's.
    let tenant_id = params
        .get("tenant_id")
        .map(String::as_str)
        .or(principal.tenant())
        .map(str::to_owned);
    if let Some(tenant_id) = &tenant_id {
        may_administer(&principal, tenant_id)?;
    }
    let sinks: Vec<Value> = destinations::stored(&*state.store)
        .await?
        .iter()
        .filter(|destination| {
            destination.transport.kind() != "webhook"
                && tenant_id
                    .as_ref()
                    .is_none_or(|tenant_id| destination.tenant_id.as_ref() == Some(tenant_id))
        })
        .map(Destination::to_public)
        .collect();
    Ok(Json(json!({"sinks": sinks})))
}

/// `DELETE /v1/sinks/{id}`.
pub(crate) async fn delete_sink(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let destination = find(&state, &principal, &id, None).await?;
    state
        .destinations
        .remove(&state, &destination.id, destination.tenant_id.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/sinks/{id}/dead-letters`.
pub(crate) async fn sink_dead_letters(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let destination = find(&state, &principal, &id, None).await?;
    dead_letters_body(&state, &destination).await
}

/// `POST /v1/sinks/{id}/dead-letters/replay`.
pub(crate) async fn replay_sink_dead_letters(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let destination = find(&state, &principal, &id, None).await?;
    replay_body(&state, &destination).await
}
