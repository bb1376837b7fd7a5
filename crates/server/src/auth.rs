//! API keys and the platform-admin token.
//!
//! Keys look like `stk_<key_id>_<secret>`: the id finds the record, the secret proves possession.
//! Only SHA-256 of the secret is stored. Secrets are 256 random bits, so a fast hash is enough
//! (nothing to brute-force), and comparisons are constant-time.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sealtrail_hot::{ApiKeyRecord, HotStore, KeyScope, Role};
use sealtrail_model::format_timestamp;
use sealtrail_model::limits::ADMIN_TOKEN_BITS_MIN;
use sha2::{Digest, Sha256};

use crate::problem::ApiError;
use crate::{now_ns, AppState};

const KEY_PREFIX: &str = "stk_";
const ADMIN_TOKEN_PREFIX: &str = "sta_";
/// Settings entry holding the SHA-256 of a generated admin token.
pub(crate) const ADMIN_TOKEN_SETTING: &str = "admin_token_sha256";

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The platform operator: every tenant, every action.
    PlatformAdmin,
    /// A key or a viewer token bound to one tenant and one role.
    Tenant {
        tenant_id: String,
        role: Role,
        /// Names the credential (`api-key:<key_id>`, `viewer-token:<token_id>`) in events and
        /// in the read trail; never its secret.
        credential: String,
        /// Whose events a `self` or `team_admin` caller reads (`None` for the other roles).
        scope: Option<KeyScope>,
        /// The end user a viewer token was minted for (`None` for an API key).
        on_behalf_of: Option<String>,
    },
}

impl Principal {
    /// Whether this caller may write events for `tenant_id`.
    pub fn may_ingest(&self, tenant_id: &str) -> bool {
        match self {
            Principal::PlatformAdmin => true,
            Principal::Tenant {
                tenant_id: own,
                role,
                ..
            } => own == tenant_id && matches!(role, Role::Ingest | Role::Admin),
        }
    }

    /// Whether this caller may read all of `tenant_id`'s audit data (a security admin, a tenant
    /// admin, the platform admin). Routes that can narrow what they answer to a caller's scope
    /// ask [`crate::access`] instead; every other read route is closed to `self` and
    /// `team_admin` callers by this.
    pub fn may_read(&self, tenant_id: &str) -> bool {
        match self {
            Principal::PlatformAdmin => true,
            Principal::Tenant {
                tenant_id: own,
                role,
                ..
            } => own == tenant_id && matches!(role, Role::Reader | Role::Admin),
        }
    }

    /// Whether this caller may read some of `tenant_id`'s events: the whole-tenant readers and
    /// the `self` and `team_admin` callers, within their scope.
    pub fn may_read_within_scope(&self, tenant_id: &str) -> bool {
        self.may_read(tenant_id)
            || matches!(self, Principal::Tenant { tenant_id: own, role, .. }
                if own == tenant_id && matches!(role, Role::Actor | Role::TeamAdmin))
    }

    /// Whether this caller may change `tenant_id`'s settings (its capture policy): its admin
    /// keys and the platform admin.
    pub fn may_administer(&self, tenant_id: &str) -> bool {
        match self {
            Principal::PlatformAdmin => true,
            Principal::Tenant {
                tenant_id: own,
                role,
                ..
            } => own == tenant_id && *role == Role::Admin,
        }
    }

    /// Who this caller is, as the `actor_id` of an event recording what it changed: the key id
    /// (never its secret), or `platform-admin`.
    pub fn actor_id(&self) -> String {
        match self {
            Principal::PlatformAdmin => "platform-admin".into(),
            Principal::Tenant { credential, .. } => credential.clone(),
        }
    }

    /// The access level's name: `platform_admin`, `admin`, `security_admin`, `team_admin`,
    /// `self` or `ingest`.
    pub fn level(&self) -> &'static str {
        match self {
            Principal::PlatformAdmin => "platform_admin",
            Principal::Tenant { role, .. } => match role {
                Role::Reader => "security_admin",
                other => other.as_str(),
            },
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

/// Admits a caller to `tenant_id`'s settings (`what`: "its alert rules", …): the tenant id must
/// be well formed (400 naming it), and the caller one of its admin keys or the platform admin
/// (403 saying so).
pub(crate) fn administer(
    principal: &Principal,
    tenant_id: &str,
    what: &str,
) -> Result<(), crate::problem::ApiError> {
    use crate::problem::ApiError;
    sealtrail_model::check_tenant_id(tenant_id)
        .map_err(|reason| ApiError::invalid_field("tenant_id", reason))?;
    if principal.may_administer(tenant_id) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "only an admin key of tenant {tenant_id} or the platform admin may manage {what}"
        )))
    }
}

/// Verifies bearer credentials against the admin token and the stored keys.
///
/// Every request reads its key from the store (one lookup by primary key): nothing is cached,
/// because a key can be revoked, on this node or on another one of a shared database, and the
/// very next request with it must be refused.
#[derive(Debug)]
pub(crate) struct Authenticator {
    admin_token_hash: [u8; 32],
    store: Arc<dyn HotStore>,
}

impl Authenticator {
    pub(crate) fn new(admin_token_hash: [u8; 32], store: Arc<dyn HotStore>) -> Self {
        Authenticator {
            admin_token_hash,
            store,
        }
    }

    pub(crate) async fn authenticate(&self, bearer: &str) -> Result<Principal, ApiError> {
        if constant_time_eq(&sha256(bearer.as_bytes()), &self.admin_token_hash) {
            return Ok(Principal::PlatformAdmin);
        }
        if crate::viewer::is_viewer_token(bearer) {
            return crate::viewer::authenticate(&*self.store, bearer).await;
        }
        let (key_id, secret) = parse_key(bearer).ok_or(ApiError::Unauthorized)?;
        let record = self
            .store
            .find_api_key(key_id)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        if !constant_time_eq(&sha256(secret.as_bytes()), &record.secret_hash) {
            return Err(ApiError::Unauthorized);
        }
        // Only a caller holding the secret learns why its key no longer works.
        key_usable(&record, now_ns()).map_err(ApiError::KeyRefused)?;
        Ok(Principal::Tenant {
            tenant_id: record.tenant_id,
            role: record.role,
            credential: format!("api-key:{}", record.key_id),
            scope: record.scope,
            on_behalf_of: None,
        })
    }
}

/// Whether a stored key still authenticates at `now_ns`; if not, why (naming the key by its
/// id, never by its secret).
fn key_usable(record: &ApiKeyRecord, now_ns: i64) -> Result<(), String> {
    if let Some(revoked_at_ns) = record.revoked_at_ns {
        return Err(format!(
            "the API key {} was revoked at {}",
            record.key_id,
            format_timestamp(revoked_at_ns)
        ));
    }
    match record.expires_at_ns {
        Some(expires_at_ns) if now_ns >= expires_at_ns => Err(format!(
            "the API key {} expired at {}",
            record.key_id,
            format_timestamp(expires_at_ns)
        )),
        _ => Ok(()),
    }
}

/// A new key: the full secret string (shown once) and the record to store.
pub(crate) fn new_api_key(
    tenant_id: &str,
    role: Role,
    created_at_ns: i64,
    expires_at_ns: Option<i64>,
    scope: Option<KeyScope>,
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
        expires_at_ns,
        revoked_at_ns: None,
        scope,
    };
    (key, record)
}

/// Refuses a configured bearer token (`variable` names where it came from) that carries less
/// than [`ADMIN_TOKEN_BITS_MIN`] bits of entropy, with a message that says how to make one.
///
/// Entropy cannot be measured from one string, so the rule is about its form. After an optional
/// `sta_` prefix (the form of generated tokens) and any trailing `=` padding, the token must be
/// hex or base64 (standard or URL-safe alphabet), and count 4 bits per character when every
/// character is a hex digit and 6 otherwise: at least 64 hex characters (`openssl rand -hex
/// 32`) or 43 base64 characters (`openssl rand -base64 32`). A token of fewer than
/// [`TOKEN_DISTINCT_CHARS_MIN`] different characters (`aaaa…`, `abab…`) is refused whatever its
/// length; a random token of that size has fewer with a probability far below 2^-100.
pub fn check_token_strength(variable: &str, token: &str) -> Result<(), String> {
    let how = format!(
        "it must carry at least {ADMIN_TOKEN_BITS_MIN} bits ({} bytes) of randomness, as hex \
         (at least {} characters) or base64 (at least {} characters); make one with \
         `openssl rand -hex 32`",
        ADMIN_TOKEN_BITS_MIN / 8,
        ADMIN_TOKEN_BITS_MIN.div_ceil(4),
        ADMIN_TOKEN_BITS_MIN.div_ceil(6),
    );
    let body = token.strip_prefix(ADMIN_TOKEN_PREFIX).unwrap_or(token);
    let body = body.trim_end_matches('=');
    if !body
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'+' | b'/'))
    {
        return Err(format!(
            "{variable} holds characters outside hex and base64; {how}"
        ));
    }
    let bits_per_char = if body.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        4
    } else {
        6
    };
    let distinct = body
        .bytes()
        .collect::<std::collections::BTreeSet<u8>>()
        .len();
    if body.len() * bits_per_char < ADMIN_TOKEN_BITS_MIN || distinct < TOKEN_DISTINCT_CHARS_MIN {
        return Err(format!("{variable} is too weak: {how}"));
    }
    Ok(())
}

/// Fewest different characters a configured token may hold (see [`check_token_strength`]).
const TOKEN_DISTINCT_CHARS_MIN: usize = 8;

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

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

pub(crate) fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The credential of an `Authorization: Bearer …` header, trimmed.
pub(crate) fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))?;
    Some(token.trim())
}

impl FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        // Already authenticated in front of the routes (`regions::route`, with peers).
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        let bearer = bearer_token(&parts.headers).ok_or(ApiError::Unauthorized)?;
        state.auth.authenticate(bearer).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_of_256_random_bits_pass_and_shorter_or_repetitive_ones_do_not() {
        let hex_32_bytes = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let base64_32_bytes = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=";
        for strong in [
            hex_32_bytes,
            base64_32_bytes,
            &new_admin_token(),
            &format!("sta_{hex_32_bytes}"),
        ] {
            assert_eq!(check_token_strength("T", strong), Ok(()), "{strong}");
        }
        // 31 bytes of hex, 42 base64 characters, a generated token cut short.
        for weak in [
            &hex_32_bytes[..62],
            &base64_32_bytes[..42],
            &new_admin_token()[..40],
            "test-admin-token-0123456789",
            "",
        ] {
            let message = check_token_strength("SEALTRAIL_ADMIN_TOKEN", weak).unwrap_err();
            assert!(message.contains("SEALTRAIL_ADMIN_TOKEN"), "{message}");
            assert!(message.contains("openssl rand -hex 32"), "{message}");
        }
        // Long enough, but no randomness in it.
        assert!(check_token_strength("T", &"a".repeat(100)).is_err());
        assert!(check_token_strength("T", &"abcdefg".repeat(20)).is_err());
        // Not hex or base64 at all: a passphrase is not measured.
        assert!(check_token_strength("T", &"correct horse battery staple ".repeat(3)).is_err());
    }
}
