//! API keys and the platform-admin token.
//!
//! Keys look like `stk_<key_id>_<secret>`: the id finds the record, the secret proves possession.
//! Only SHA-256 of the secret is stored. Secrets are 256 random bits, so a fast hash is enough
//! (nothing to brute-force), and comparisons are constant-time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sealtrail_hot::{ApiKeyRecord, HotStore, Role};
use sha2::{Digest, Sha256};

use crate::problem::ApiError;
use crate::AppState;

const KEY_PREFIX: &str = "stk_";
const ADMIN_TOKEN_PREFIX: &str = "sta_";
/// Settings entry holding the SHA-256 of a generated admin token.
pub(crate) const ADMIN_TOKEN_SETTING: &str = "admin_token_sha256";

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The platform operator: every tenant, every action.
    PlatformAdmin,
    /// A key bound to one tenant and one role.
    Tenant { tenant_id: String, role: Role },
}

impl Principal {
    /// Whether this caller may write events for `tenant_id`.
    pub fn may_ingest(&self, tenant_id: &str) -> bool {
        match self {
            Principal::PlatformAdmin => true,
            Principal::Tenant {
                tenant_id: own,
                role,
            } => own == tenant_id && matches!(role, Role::Ingest | Role::Admin),
        }
    }

    /// Whether this caller may read events of `tenant_id`.
    pub fn may_read(&self, tenant_id: &str) -> bool {
        match self {
            Principal::PlatformAdmin => true,
            Principal::Tenant {
                tenant_id: own,
                role,
            } => own == tenant_id && matches!(role, Role::Reader | Role::Admin),
        }
    }

    /// The tenant a key is bound to, if any.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Principal::PlatformAdmin => None,
            Principal::Tenant { tenant_id, .. } => Some(tenant_id),
        }
    }
}

/// Verifies bearer credentials against the admin token and the stored keys.
#[derive(Debug)]
pub(crate) struct Authenticator {
    admin_token_hash: [u8; 32],
    store: Arc<dyn HotStore>,
    /// Keys already looked up. Keys are never modified once created, so caching is exact.
    cache: RwLock<HashMap<String, ApiKeyRecord>>,
}

impl Authenticator {
    pub(crate) fn new(admin_token_hash: [u8; 32], store: Arc<dyn HotStore>) -> Self {
        Authenticator {
            admin_token_hash,
            store,
            cache: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) async fn authenticate(&self, bearer: &str) -> Result<Principal, ApiError> {
        if constant_time_eq(&sha256(bearer.as_bytes()), &self.admin_token_hash) {
            return Ok(Principal::PlatformAdmin);
        }
        let (key_id, secret) = parse_key(bearer).ok_or(ApiError::Unauthorized)?;
        let cached = self
            .cache
            .read()
            .expect("key cache lock poisoned")
            .get(key_id)
            .cloned();
        let record = match cached {
            Some(record) => record,
            None => {
                let record = self
                    .store
                    .find_api_key(key_id)
                    .await?
                    .ok_or(ApiError::Unauthorized)?;
                self.cache
                    .write()
                    .expect("key cache lock poisoned")
                    .insert(key_id.to_owned(), record.clone());
                record
            }
        };
        if !constant_time_eq(&sha256(secret.as_bytes()), &record.secret_hash) {
            return Err(ApiError::Unauthorized);
        }
        Ok(Principal::Tenant {
            tenant_id: record.tenant_id,
            role: record.role,
        })
    }
}

/// A new key: the full secret string (shown once) and the record to store.
pub(crate) fn new_api_key(
    tenant_id: &str,
    role: Role,
    created_at_ns: i64,
) -> (String, ApiKeyRecord) {
    let key_id = hex::encode(random_bytes::<8>());
    let secret = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let key = format!("{KEY_PREFIX}{key_id}_{secret}");
    let record = ApiKeyRecord {
        key_id,
        tenant_id: tenant_id.to_owned(),
        role,
        secret_hash: sha256(secret.as_bytes()),
        created_at_ns,
    };
    (key, record)
}

/// A new platform-admin token.
pub(crate) fn new_admin_token() -> String {
    format!(
        "{ADMIN_TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<32>())
    )
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn parse_key(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(KEY_PREFIX)?;
    let (key_id, secret) = rest.split_once('_')?;
    (key_id.len() == 16 && !secret.is_empty()).then_some((key_id, secret))
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

impl FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let bearer = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(ApiError::Unauthorized)?;
        state.auth.authenticate(bearer.trim()).await
    }
}
