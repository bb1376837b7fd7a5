//! Regions (docs/PRIVACY.md, "Regions"): one node (or one database's nodes) per region, each
//! with its own hot store, spool and archive, and every request about a tenant of another region
//! forwarded, whole and unread, to that region's node (`serve --peer <region>=<url>`). So a
//! tenant's events, keys, settings, exports and checkpoints are written only in its region: a
//! node never stores anything of another region's tenant, not even its id.
//!
//! Where a request goes (`route`, a middleware in front of every `/v1/` route):
//! - a tenant's key or viewer token this node does not know is tried on each peer in turn (a
//!   peer that does not know it answers 401 and did nothing), and where it was found is
//!   remembered in memory;
//! - the platform admin's request names its tenant (in the path, `?tenant_id=`, or the body's
//!   `tenant_id`, or each event's): a tenant this node holds (a chain or settings here) is served
//!   here; else the peer that holds it (`GET /v1/regions/holds/{tenant_id}`); else, for a new
//!   tenant, the region its settings name (`PUT /v1/tenants/{t}` with `region`), or here.
//!
//! A forwarded request carries [`FORWARDED_HEADER`] naming the forwarding node's region, and a
//! node never forwards a request whose header names one of its peers, so two nodes configured as
//! each other's peers cannot loop. (The header only keeps a request here: it grants nothing, the
//! request is authenticated as any other.) Its answer carries
//! [`REGION_HEADER`]. `GET /v1/regions/tenants` is the platform admin's cross-region view: each
//! region's tenants, combined from every region's own answer.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sealtrail_model::limits::{
    BODY_BYTES_MAX, REGION_CHARS_MAX, REGION_CONNECT_TIMEOUT_MILLIS, REGION_PEERS_MAX,
    REGION_PLACEMENTS_CACHED_MAX, REGION_PLACEMENT_CACHE_MILLIS,
};
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::problem::ApiError;
use crate::recent::Recent;
use crate::AppState;

/// Marks a request one node forwarded to another (its value: the forwarding node's region).
pub(crate) const FORWARDED_HEADER: &str = "sealtrail-forwarded-from";
/// The region whose node answered a forwarded request.
pub(crate) const REGION_HEADER: &str = "sealtrail-region";

/// Headers that describe one connection, not the request, so never passed on.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Another region's node.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) region: String,
    /// Base URL, without a trailing `/`.
    pub(crate) url: String,
}

/// Checks `serve --peer` values (`<region>=<url>`) against this node's region; the error names
/// the bad one.
pub fn parse_peers(own_region: &str, values: &[String]) -> Result<Vec<(String, String)>, String> {
    if values.len() > REGION_PEERS_MAX {
        return Err(format!("--peer: at most {REGION_PEERS_MAX} peers"));
    }
    let mut peers: Vec<(String, String)> = Vec::new();
    for value in values {
        let Some((region, url)) = value.split_once('=') else {
            return Err(format!("--peer {value}: expected <region>=<url>"));
        };
        if !is_region_name(region) {
            return Err(format!(
                "--peer {value}: the region must be 1-{REGION_CHARS_MAX} of a-z, 0-9 and -"
            ));
        }
        if region == own_region {
            return Err(format!("--peer {value}: that is this node's own region"));
        }
        if peers.iter().any(|(known, _)| known == region) {
            return Err(format!("--peer {value}: region {region} is given twice"));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "--peer {value}: the URL must be http:// or https://"
            ));
        }
        peers.push((region.to_owned(), url.trim_end_matches('/').to_owned()));
    }
    Ok(peers)
}

/// A region's name: what a tenant's settings may hold.
pub(crate) fn is_region_name(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= REGION_CHARS_MAX
        && region
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
}

/// This node's peers and where it last found tenants and credentials on them.
#[derive(Debug)]
pub(crate) struct Regions {
    peers: Vec<Peer>,
    client: reqwest::Client,
    /// Tenant id, or a credential's digest → index in `peers`.
    found: Recent<usize>,
}

impl Regions {
    pub(crate) fn new(peers: Vec<(String, String)>) -> crate::Result<Regions> {
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_millis(
                REGION_CONNECT_TIMEOUT_MILLIS,
            ))
            // A redirect would send the caller's credential somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| crate::Error::Task(format!("the peers' HTTP client: {error}")))?;
        Ok(Regions {
            peers: peers
                .into_iter()
                .map(|(region, url)| Peer { region, url })
                .collect(),
            client,
            found: Recent::new(REGION_PLACEMENT_CACHE_MILLIS, REGION_PLACEMENTS_CACHED_MAX),
        })
    }
}

/// Where a request is served.
enum Target {
    /// Here, by the caller it authenticated as (handed to the handlers, which so need not
    /// authenticate it again).
    Here(Principal),
    Peer(usize),
    /// A credential this node does not know: each peer in turn.
    AnyPeer,
}

/// Middleware: serves a request here, or forwards it to the node of its tenant's region.
pub(crate) async fn route(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if state.regions.peers.is_empty()
        || forwarded_by_peer(&state.regions, request.headers())
        || !path.starts_with("/v1/")
        || path.starts_with("/v1/regions/")
    {
        return next.run(request).await;
    }
    let Some(bearer) = crate::auth::bearer_token(request.headers())
        .filter(|token| !token.is_empty())
        .map(str::to_owned)
    else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, BODY_BYTES_MAX).await else {
        return ApiError::refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body",
            format!("larger than {BODY_BYTES_MAX} bytes"),
        )
        .into_response();
    };
    let target = match target(&state, &parts, &body, &bearer).await {
        Ok(target) => target,
        Err(error) => return error.into_response(),
    };
    match target {
        Target::Here(principal) => {
            let mut request = Request::from_parts(parts, Body::from(body));
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Target::Peer(index) => forward(&state, index, &parts, body).await,
        Target::AnyPeer => {
            for index in 0..state.regions.peers.len() {
                let answer = forward(&state, index, &parts, body.clone()).await;
                if answer.status() != StatusCode::UNAUTHORIZED {
                    if answer.status() != StatusCode::BAD_GATEWAY {
                        state.regions.found.put(credential_name(&bearer), index);
                    }
                    return answer;
                }
            }
            // Nobody knows it: this node's own 401.
            next.run(Request::from_parts(parts, Body::from(body))).await
        }
    }
}

/// Whether a peer forwarded this request here.
fn forwarded_by_peer(regions: &Regions, headers: &HeaderMap) -> bool {
    headers
        .get(FORWARDED_HEADER)
        .and_then(|from| from.to_str().ok())
        .is_some_and(|from| regions.peers.iter().any(|peer| peer.region == from))
}

/// A credential's name in the placement cache: its digest, never the secret.
fn credential_name(bearer: &str) -> String {
    format!(
        "credential/{}",
        hex::encode(crate::auth::sha256(bearer.as_bytes()))
    )
}

async fn target(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: &Bytes,
    bearer: &str,
) -> Result<Target, ApiError> {
    let principal = match state.auth.authenticate(bearer).await {
        Ok(principal) => principal,
        Err(ApiError::Unauthorized) => {
            return Ok(match state.regions.found.get(&credential_name(bearer)) {
                Some(index) => Target::Peer(index),
                None => Target::AnyPeer,
            })
        }
        Err(other) => return Err(other),
    };
    if principal != Principal::PlatformAdmin {
        // A credential of this node: its tenant is here.
        return Ok(Target::Here(principal));
    }
    // Each tenant named, and the peer holding it (`None`: here).
    let mut chosen: Option<(String, Option<usize>)> = None;
    for tenant_id in named_tenants(parts, body) {
        let peer = placement(state, &tenant_id, bearer, parts, body).await;
        match &chosen {
            None => chosen = Some((tenant_id, peer)),
            Some((first, earlier)) if *earlier != peer => {
                return Err(ApiError::invalid_field(
                    "tenant_id",
                    format!(
                        "tenants {first} and {tenant_id} are in different regions: send each \
                         region's tenants in their own request"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(match chosen.and_then(|(_, peer)| peer) {
        Some(index) => Target::Peer(index),
        None => Target::Here(principal),
    })
}

/// The tenants a platform admin's request is about: the path's, `?tenant_id=`, the body's
/// `tenant_id`, or each event's.
fn named_tenants(parts: &axum::http::request::Parts, body: &Bytes) -> Vec<String> {
    let mut tenants = Vec::new();
    if let Some(rest) = parts.uri.path().strip_prefix("/v1/tenants/") {
        if let Some(tenant_id) = rest.split('/').next().filter(|id| !id.is_empty()) {
            tenants.push(tenant_id.to_owned());
        }
    }
    // A tenant id has no character a query string escapes (`check_tenant_id`).
    for pair in parts.uri.query().unwrap_or_default().split('&') {
        if let Some(tenant_id) = pair.strip_prefix("tenant_id=").filter(|id| !id.is_empty()) {
            tenants.push(tenant_id.to_owned());
        }
    }
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let items = match &value {
            Value::Array(items) => items.iter().collect(),
            Value::Object(object) => match object.get("events") {
                Some(Value::Array(items)) => items.iter().collect(),
                _ => vec![&value],
            },
            _ => Vec::new(),
        };
        for item in items {
            if let Some(tenant_id) = item.get("tenant_id").and_then(Value::as_str) {
                tenants.push(tenant_id.to_owned());
            }
        }
    }
    tenants.sort();
    tenants.dedup();
    tenants
}

/// Whether this node's store holds `tenant_id`: a chain or settings of it.
async fn holds(state: &AppState, tenant_id: &str) -> Result<bool, ApiError> {
    if state
        .store
        .setting(&format!("tenant_settings/{tenant_id}"))
        .await?
        .is_some()
    {
        return Ok(true);
    }
    Ok(state
        .store
        .chain_heads()
        .await?
        .iter()
        .any(|(id, _)| id == tenant_id))
}

/// The peer that serves a platform admin's request about `tenant_id`; `None`: this node.
async fn placement(
    state: &AppState,
    tenant_id: &str,
    bearer: &str,
    parts: &axum::http::request::Parts,
    body: &Bytes,
) -> Option<usize> {
    match holds(state, tenant_id).await {
        Ok(true) => return None,
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(tenant_id, %error, "could not tell whether this node holds the tenant");
            return None;
        }
    }
    let name = format!("tenant/{tenant_id}");
    if let Some(index) = state.regions.found.get(&name) {
        return Some(index);
    }
    for (index, peer) in state.regions.peers.iter().enumerate() {
        let url = format!("{}/v1/regions/holds/{tenant_id}", peer.url);
        let answer = state
            .regions
            .client
            .get(url)
            .bearer_auth(bearer)
            .header(FORWARDED_HEADER, &state.region)
            .send()
            .await;
        let held = match answer {
            Ok(answer) if answer.status().is_success() => json_of(answer)
                .await
                .is_some_and(|value| value["held"] == true),
            Ok(answer) => {
                tracing::warn!(region = peer.region, status = %answer.status(), "a peer did not say where a tenant is");
                false
            }
            Err(error) => {
                tracing::warn!(region = peer.region, %error, "a peer did not answer where a tenant is");
                false
            }
        };
        if held {
            state.regions.found.put(name, index);
            return Some(index);
        }
    }
    // A new tenant: where its settings put it, else here.
    if parts.method == axum::http::Method::PUT
        && parts.uri.path() == format!("/v1/tenants/{tenant_id}")
    {
        if let Ok(value) = serde_json::from_slice::<Value>(body) {
            if let Some(index) = value["region"].as_str().and_then(|region| {
                state
                    .regions
                    .peers
                    .iter()
                    .position(|peer| peer.region == region)
            }) {
                return Some(index);
            }
        }
    }
    None
}

/// Sends the request to peer `index` and answers with what it answered, the body streamed.
async fn forward(
    state: &AppState,
    index: usize,
    parts: &axum::http::request::Parts,
    body: Bytes,
) -> Response {
    let peer = &state.regions.peers[index];
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |path| path.as_str());
    let mut request = state
        .regions
        .client
        .request(parts.method.clone(), format!("{}{path}", peer.url))
        .header(FORWARDED_HEADER, &state.region)
        .body(body);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            request = request.header(name, value);
        }
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(region = peer.region, %error, "forwarding to another region failed");
            return ApiError::refused(
                StatusCode::BAD_GATEWAY,
                "region",
                format!(
                    "the node of region {} did not answer; retry later",
                    peer.region
                ),
            )
            .into_response();
        }
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            response = response.header(name, value);
        }
    }
    if let Ok(region) = HeaderValue::from_str(&peer.region) {
        response = response.header(HeaderName::from_static(REGION_HEADER), region);
    }
    let chunks = futures::stream::unfold(answer, |mut answer| async move {
        match answer.chunk().await {
            Ok(Some(chunk)) => Some((Ok::<_, reqwest::Error>(chunk), answer)),
            Ok(None) => None,
            Err(error) => Some((Err(error), answer)),
        }
    });
    response
        .body(Body::from_stream(chunks))
        .unwrap_or_else(|error| ApiError::internal(error).into_response())
}

/// `GET /v1/regions/holds/{tenant_id}` (platform admin): whether this node holds the tenant.
pub(crate) async fn holds_tenant(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    platform_admin(&principal)?;
    sealtrail_model::check_tenant_id(&tenant_id)
        .map_err(|reason| ApiError::invalid_field("tenant_id", reason))?;
    let held = holds(&state, &tenant_id).await?;
    Ok(Json(
        json!({"tenant_id": tenant_id, "region": state.region, "held": held}),
    ))
}

/// `GET /v1/regions/tenants` (platform admin): every region's tenants, each region answering
/// for its own (a peer that does not answer is listed as unreachable, not left out silently).
pub(crate) async fn tenants(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    platform_admin(&principal)?;
    let own: Vec<Value> = state
        .store
        .chain_heads()
        .await?
        .into_iter()
        .map(|(tenant_id, head)| json!({"tenant_id": tenant_id, "events": head.seq}))
        .collect();
    let mut regions = vec![json!({"region": state.region, "tenants": own})];
    let mut unreachable = Vec::new();
    // A peer asked by another node answers for itself only.
    if !forwarded_by_peer(&state.regions, &headers) {
        let bearer = crate::auth::bearer_token(&headers).unwrap_or_default();
        for peer in &state.regions.peers {
            let answer = state
                .regions
                .client
                .get(format!("{}/v1/regions/tenants", peer.url))
                .bearer_auth(bearer)
                .header(FORWARDED_HEADER, &state.region)
                .send()
                .await;
            let listed = match answer {
                Ok(answer) if answer.status().is_success() => json_of(answer).await,
                _ => None,
            };
            match listed.and_then(|value| value["regions"].get(0).cloned()) {
                Some(region) => regions.push(region),
                None => unreachable.push(json!(peer.region)),
            }
        }
    }
    Ok(Json(
        json!({"regions": regions, "unreachable": unreachable}),
    ))
}

/// A peer's JSON answer (reqwest is built without its `json` feature).
async fn json_of(answer: reqwest::Response) -> Option<Value> {
    serde_json::from_slice(&answer.bytes().await.ok()?).ok()
}

fn platform_admin(principal: &Principal) -> Result<(), ApiError> {
    match principal {
        Principal::PlatformAdmin => Ok(()),
        _ => Err(ApiError::Forbidden(
            "only the platform admin may ask where tenants are".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_checked_and_named() {
        let ok = parse_peers("us", &["eu=http://10.0.0.2:7070/".into()]).unwrap();
        assert_eq!(
            ok,
            vec![("eu".to_owned(), "http://10.0.0.2:7070".to_owned())]
        );
        for (bad, reason) in [
            ("eu", "expected <region>=<url>"),
            ("EU=http://x", "the region must be"),
            ("us=http://x", "own region"),
            ("eu=ftp://x", "http:// or https://"),
        ] {
            let error = parse_peers("us", &[bad.to_owned()]).unwrap_err();
            assert!(error.contains(reason), "{bad}: {error}");
        }
        let twice = ["eu=http://a".to_owned(), "eu=http://b".to_owned()];
        assert!(parse_peers("us", &twice).unwrap_err().contains("twice"));
    }
}
