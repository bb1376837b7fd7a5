//! Privacy at the edge (docs/PRIVACY.md): each tenant's settings resource, the vault of
//! envelope keys, field encryption at ingest and opening at read, erasure by crypto-shredding,
//! and data-key rotation.
//!
//! The cryptography is pure (`sealtrail_vault`); the envelope and the hash that commits to it
//! without needing it are the format's (`sealtrail_model::Sealed`, `sealtrail_ledger`). What
//! is left here is IO: keys live in the hot store's settings, wrapped (a tenant's data key under
//! the deployment's key-encryption key, a subject's key under its tenant's), and are cached
//! unwrapped for [`VAULT_CACHE_MILLIS`], so an erasure or rotation on another node of a shared
//! database applies here within that time.
//!
//! Settings names, all under `vault/<tenant>/` (a tenant id holds no `/`):
//! - `current`: the id of the tenant data key new events use;
//! - `tenant/<tid>`: that data key, wrapped under the key-encryption key;
//! - `subject/<tag>/<tid>`: the subject key of one actor (`<tag>`: a digest of its id) under
//!   tenant key `<tid>`, with its own random id, so a key made after an erasure is never
//!   mistaken for the destroyed one.
//!
//! An envelope names its key as `<tid>.<sid>`: the tenant key, and the subject key's id.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sealtrail_hot::HotStore;
use sealtrail_model::limits::{
    ACTOR_ID_CHARS_MAX, REGION_CHARS_MAX, TENANT_SETTINGS_CACHE_TENANTS_MAX, VAULT_CACHE_MILLIS,
    VAULT_KEYS_CACHED_MAX,
};
use sealtrail_model::{
    check_tenant_id, Closed, LocatedEvent, PendingEvent, RetentionPolicy, Sealed, StoredEvent,
    PROTECTED_FIELDS,
};
use sealtrail_policy::Durability;
use sealtrail_vault::{
    blind_index, open_field, reseal_field, seal_field, unwrap_key, wrap_key, DataKey, FieldContext,
    KeyEncryptionKey,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::problem::{ApiError, InvalidItem};
use crate::recent::Recent;
use crate::AppState;

/// The key-encryption key's file in the data directory when none is configured.
pub const KEK_FILE: &str = "vault.kek";
/// The action of the event recording a change of a tenant's settings.
pub(crate) const SETTINGS_CHANGE_ACTION: &str = "tenant_settings.update";
/// The action of the event recording a subject's erasure.
pub(crate) const SUBJECT_ERASE_ACTION: &str = "subject.erase";
/// The action of the event recording a tenant's erasure.
pub(crate) const TENANT_ERASE_ACTION: &str = "tenant.erase";
/// The protected fields an equality filter of `GET /v1/events` may name, so the ones whose
/// envelopes carry a blind index. (`changes` and `metadata` are documents, not values.)
const INDEXED_FIELDS: [&str; 2] = ["ip_address", "user_agent"];

/// The action of the event recording a data-key rotation.
pub(crate) const KEY_ROTATE_ACTION: &str = "data_key.rotate";

/// A tenant's own settings, as stored under [`settings_name`]. Retention keeps its own setting
/// (`RetentionPolicy`), and the default durability is its capture policy's: the resource shows
/// and changes them in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TenantSettings {
    /// The region its data lives in; `None` until set (the deployment's region).
    pub(crate) region: Option<String>,
    /// The protected fields sealed on ingest, in canonical order; empty: none.
    pub(crate) encrypted: Vec<&'static str>,
    /// The format of an export job that names none.
    pub(crate) export_format: Option<String>,
}

fn settings_name(tenant_id: &str) -> String {
    format!("tenant_settings/{tenant_id}")
}

impl TenantSettings {
    fn to_json(&self) -> Value {
        json!({
            "region": self.region,
            "encryption": {"fields": self.encrypted},
            "export_format": self.export_format,
        })
    }

    fn from_stored(bytes: &[u8]) -> Option<TenantSettings> {
        let value: Value = serde_json::from_slice(bytes).ok()?;
        let encrypted = match value["encryption"]["fields"].as_array() {
            Some(names) => encrypted_fields(names).ok()?,
            None => Vec::new(),
        };
        Some(TenantSettings {
            region: value["region"].as_str().map(str::to_owned),
            encrypted,
            export_format: value["export_format"].as_str().map(str::to_owned),
        })
    }
}

/// Protected field names as canonical `&'static str`s, in canonical order; the error is the
/// first name that is not one.
fn encrypted_fields(names: &[Value]) -> Result<Vec<&'static str>, String> {
    let mut fields = Vec::new();
    for name in names {
        let Some(text) = name.as_str() else {
            return Err("each field must be a string".into());
        };
        let Some(field) = PROTECTED_FIELDS.iter().find(|field| **field == text) else {
            let reason = if text.contains('.') {
                format!("{text}: paths inside a field are not supported; encrypt the whole field")
            } else {
                format!("{text}: must be one of {}", PROTECTED_FIELDS.join(", "))
            };
            return Err(reason);
        };
        fields.push(*field);
    }
    fields.sort_by_key(|field| PROTECTED_FIELDS.iter().position(|known| known == field));
    fields.dedup();
    Ok(fields)
}

/// Whether a tenant's settings have any field encrypted (for `sealtrail import`, which writes
/// to the store without the server and so cannot seal: it refuses such a tenant instead).
pub async fn tenant_encrypts(store: &dyn HotStore, tenant_id: &str) -> crate::Result<bool> {
    let Some(stored) = store.setting(&settings_name(tenant_id)).await? else {
        return Ok(false);
    };
    let settings = TenantSettings::from_stored(&stored).ok_or_else(|| {
        crate::Error::CorruptSetting(format!(
            "the stored settings of tenant {tenant_id} do not decode"
        ))
    })?;
    Ok(!settings.encrypted.is_empty())
}

/// Each tenant's settings, cached like capture policies.
#[derive(Debug)]
pub(crate) struct Settings {
    cache: Recent<Arc<TenantSettings>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cache: Recent::new(VAULT_CACHE_MILLIS, TENANT_SETTINGS_CACHE_TENANTS_MAX),
        }
    }
}

impl Settings {
    pub(crate) async fn for_tenant(
        &self,
        store: &dyn HotStore,
        tenant_id: &str,
    ) -> Result<Arc<TenantSettings>, ApiError> {
        if let Some(settings) = self.cache.get(tenant_id) {
            return Ok(settings);
        }
        let settings = match store.setting(&settings_name(tenant_id)).await? {
            None => TenantSettings::default(),
            Some(bytes) => TenantSettings::from_stored(&bytes).ok_or_else(|| {
                ApiError::internal(format!(
                    "the stored settings of tenant {tenant_id} do not decode; restore them with PUT /v1/tenants/{tenant_id}"
                ))
            })?,
        };
        let settings = Arc::new(settings);
        self.remember(tenant_id, settings.clone());
        Ok(settings)
    }

    fn remember(&self, tenant_id: &str, settings: Arc<TenantSettings>) {
        self.cache.put(tenant_id.to_owned(), settings);
    }
}

/// The envelope keys: the key-encryption key and the unwrapped keys read lately.
#[derive(Debug)]
pub(crate) struct Vault {
    kek: Box<dyn KeyEncryptionKey>,
    /// Unwrapped keys by settings name: the key's own id and the key.
    keys: Recent<CachedKey>,
}

#[derive(Debug, Clone)]
struct CachedKey {
    id: String,
    key: Arc<DataKey>,
}

fn vault_prefix(tenant_id: &str) -> String {
    format!("vault/{tenant_id}/")
}

fn current_name(tenant_id: &str) -> String {
    format!("vault/{tenant_id}/current")
}

/// The tenant's blind-index key (one per tenant, never rotated with the data keys: indexes
/// made under it must keep matching).
fn index_key_name(tenant_id: &str) -> String {
    format!("vault/{tenant_id}/index")
}

fn tenant_key_name(tenant_id: &str, tid: &str) -> String {
    format!("vault/{tenant_id}/tenant/{tid}")
}

/// The settings prefix of one actor's subject keys: a digest of the actor id, so every id is a
/// name of one fixed length and no actor's prefix is another's.
fn subject_prefix(tenant_id: &str, actor_id: &str) -> String {
    let digest = Sha256::digest([b"sealtrail.subject.v1\n", actor_id.as_bytes()].concat());
    format!("vault/{tenant_id}/subject/{}/", hex::encode(&digest[..16]))
}

/// The setting `name`; when absent and `create`, the one `made` answers, stored unless another
/// node stored one first (then that one: every node uses the same key).
async fn stored_or_made(
    store: &dyn HotStore,
    name: &str,
    create: bool,
    made: impl FnOnce() -> Result<Value, ApiError>,
) -> Result<Option<Vec<u8>>, ApiError> {
    if let Some(stored) = store.setting(name).await? {
        return Ok(Some(stored));
    }
    if !create {
        return Ok(None);
    }
    let fresh = serde_json::to_vec(&made()?).map_err(ApiError::internal)?;
    store.set_setting_if_absent(name, fresh).await?;
    let stored = store
        .setting(name)
        .await?
        .ok_or_else(|| ApiError::internal(format!("{name} vanished")))?;
    Ok(Some(stored))
}

/// A fresh key id: a letter and 16 random hex digits.
fn random_id(letter: char) -> String {
    let mut bytes = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    format!("{letter}{}", hex::encode(bytes))
}

impl Vault {
    pub(crate) fn new(kek: Box<dyn KeyEncryptionKey>) -> Vault {
        Vault {
            kek,
            keys: Recent::new(VAULT_CACHE_MILLIS, VAULT_KEYS_CACHED_MAX),
        }
    }

    fn cached(&self, name: &str) -> Option<CachedKey> {
        self.keys.get(name)
    }

    fn remember(&self, name: String, id: String, key: Arc<DataKey>) {
        self.keys.put(name, CachedKey { id, key });
    }

    fn forget(&self, prefix: &str) {
        self.keys.forget(prefix);
    }

    /// The id of the tenant data key new events use, made on first use.
    async fn current_tid(&self, store: &dyn HotStore, tenant_id: &str) -> Result<String, ApiError> {
        let name = current_name(tenant_id);
        if let Some(cached) = self.cached(&name) {
            return Ok(cached.id);
        }
        let tid = match store.setting(&name).await? {
            Some(tid) => String::from_utf8(tid).map_err(ApiError::internal)?,
            None => {
                let tid = self.new_tenant_key(store, tenant_id).await?;
                if store
                    .set_setting_if_absent(&name, tid.clone().into_bytes())
                    .await?
                {
                    tid
                } else {
                    // Another node made the tenant's first key meanwhile: use its.
                    let stored = store.setting(&name).await?.ok_or_else(|| {
                        ApiError::internal("the tenant's current data key vanished")
                    })?;
                    String::from_utf8(stored).map_err(ApiError::internal)?
                }
            }
        };
        let key = self
            .tenant_key(store, tenant_id, &tid)
            .await?
            .ok_or_else(|| {
                ApiError::internal(format!("tenant {tenant_id}'s data key {tid} is missing"))
            })?;
        self.remember(name, tid.clone(), key);
        Ok(tid)
    }

    /// Makes and stores a new tenant data key, wrapped under the key-encryption key; its id.
    async fn new_tenant_key(
        &self,
        store: &dyn HotStore,
        tenant_id: &str,
    ) -> Result<String, ApiError> {
        let tid = random_id('t');
        let key = DataKey::generate().map_err(ApiError::internal)?;
        let context = tenant_key_name(tenant_id, &tid);
        let wrapped = self
            .kek
            .wrap(context.as_bytes(), &key)
            .map_err(ApiError::internal)?;
        let stored = json!({"kek": self.kek.id(), "wrapped": BASE64.encode(wrapped)});
        store
            .set_setting(
                &context,
                serde_json::to_vec(&stored).map_err(ApiError::internal)?,
            )
            .await?;
        Ok(tid)
    }

    /// The tenant's blind-index key, made with `create` when it has none; `None` otherwise.
    async fn index_key(
        &self,
        store: &dyn HotStore,
        tenant_id: &str,
        create: bool,
    ) -> Result<Option<Arc<DataKey>>, ApiError> {
        let name = index_key_name(tenant_id);
        if let Some(cached) = self.cached(&name) {
            return Ok(Some(cached.key));
        }
        let made = || {
            let key = DataKey::generate().map_err(ApiError::internal)?;
            let wrapped = self
                .kek
                .wrap(name.as_bytes(), &key)
                .map_err(ApiError::internal)?;
            Ok(json!({"kek": self.kek.id(), "wrapped": BASE64.encode(wrapped)}))
        };
        let Some(stored) = stored_or_made(store, &name, create, made).await? else {
            return Ok(None);
        };
        let key = Arc::new(self.unwrap_stored(&name, &stored)?);
        self.remember(name, String::new(), key.clone());
        Ok(Some(key))
    }

    /// A key stored as `{"kek", "wrapped"}` under the key-encryption key, unwrapped.
    fn unwrap_stored(&self, name: &str, stored: &[u8]) -> Result<DataKey, ApiError> {
        let stored: Value = serde_json::from_slice(stored).map_err(ApiError::internal)?;
        let wrapped = stored["wrapped"]
            .as_str()
            .and_then(|text| BASE64.decode(text).ok())
            .ok_or_else(|| ApiError::internal(format!("{name} does not decode")))?;
        self.kek.unwrap(name.as_bytes(), &wrapped).map_err(|error| {
            ApiError::internal(format!(
                "{name} was wrapped under key-encryption key {}, and the configured one ({}) does not open it: {error}",
                stored["kek"].as_str().unwrap_or("?"),
                self.kek.id()
            ))
        })
    }

    /// A tenant data key, unwrapped; `None` when it was destroyed.
    async fn tenant_key(
        &self,
        store: &dyn HotStore,
        tenant_id: &str,
        tid: &str,
    ) -> Result<Option<Arc<DataKey>>, ApiError> {
        let name = tenant_key_name(tenant_id, tid);
        if let Some(cached) = self.cached(&name) {
            return Ok(Some(cached.key));
        }
        let Some(stored) = store.setting(&name).await? else {
            return Ok(None);
        };
        let key = Arc::new(self.unwrap_stored(&name, &stored)?);
        self.remember(name, tid.to_owned(), key.clone());
        Ok(Some(key))
    }

    /// The subject key of `actor_id` under tenant key `tid`: its id and the key. With `create`,
    /// one is made when there is none; else `None` means it was destroyed (erased).
    async fn subject_key(
        &self,
        store: &dyn HotStore,
        tenant_id: &str,
        actor_id: &str,
        tid: &str,
        create: bool,
    ) -> Result<Option<(String, Arc<DataKey>)>, ApiError> {
        let name = format!("{}{tid}", subject_prefix(tenant_id, actor_id));
        if let Some(cached) = self.cached(&name) {
            return Ok(Some((cached.id, cached.key)));
        }
        let Some(tenant_key) = self.tenant_key(store, tenant_id, tid).await? else {
            return Ok(None);
        };
        let made = || {
            let sid = random_id('s');
            let key = DataKey::generate().map_err(ApiError::internal)?;
            let wrapped = wrap_key(&tenant_key, format!("{name}/{sid}").as_bytes(), &key)
                .map_err(ApiError::internal)?;
            Ok(json!({"id": sid, "wrapped": BASE64.encode(wrapped)}))
        };
        let Some(stored) = stored_or_made(store, &name, create, made).await? else {
            return Ok(None);
        };
        let stored: Value = serde_json::from_slice(&stored).map_err(ApiError::internal)?;
        let (Some(sid), Some(wrapped)) = (
            stored["id"].as_str(),
            stored["wrapped"]
                .as_str()
                .and_then(|text| BASE64.decode(text).ok()),
        ) else {
            return Err(ApiError::internal(format!("{name} does not decode")));
        };
        let key = unwrap_key(&tenant_key, format!("{name}/{sid}").as_bytes(), &wrapped)
            .map_err(|error| ApiError::internal(format!("{name}: {error}")))?;
        let key = Arc::new(key);
        self.remember(name, sid.to_owned(), key.clone());
        Ok(Some((sid.to_owned(), key)))
    }

    /// Seals the protected fields `fields` of a kept event under its actor's current subject key.
    async fn seal(
        &self,
        store: &dyn HotStore,
        pending: &mut PendingEvent,
        fields: &[&'static str],
    ) -> Result<(), ApiError> {
        let event = &mut pending.event;
        if fields.iter().all(|field| {
            event
                .protected_field_mut(field)
                .is_none_or(|value| value.is_none())
        }) {
            return Ok(());
        }
        let tid = self.current_tid(store, &event.tenant_id).await?;
        let (sid, key) = self
            .subject_key(store, &event.tenant_id, &event.actor_id, &tid, true)
            .await?
            .ok_or_else(|| ApiError::internal("a subject key was made but cannot be read"))?;
        let key_id = format!("{tid}.{sid}");
        let (tenant_id, event_id) = (event.tenant_id.clone(), event.event_id.clone());
        let index_key = match fields.iter().any(|field| INDEXED_FIELDS.contains(field)) {
            true => self.index_key(store, &tenant_id, true).await?,
            false => None,
        };
        for field in fields {
            let value = event
                .protected_field_mut(field)
                .expect("a protected field name");
            if let Some(plaintext) = value.as_deref() {
                let context = FieldContext {
                    tenant_id: &tenant_id,
                    event_id: &event_id,
                    field,
                };
                let index = index_key
                    .as_ref()
                    .filter(|_| INDEXED_FIELDS.contains(field))
                    .map(|index_key| blind_index(index_key, field, plaintext));
                *value = Some(
                    seal_field(&key, &key_id, index.as_deref(), &context, plaintext)
                        .map_err(ApiError::internal)?,
                );
            }
        }
        Ok(())
    }

    /// Replaces each stored envelope of `stored` by its opened form when `may_see`, else by
    /// `withheld`; an envelope whose key was destroyed reads as `erased`.
    async fn open(
        &self,
        store: &dyn HotStore,
        stored: &mut StoredEvent,
        may_see: bool,
    ) -> Result<(), ApiError> {
        let event = &mut stored.event;
        let (tenant_id, event_id, actor_id) = (
            event.tenant_id.clone(),
            event.event_id.clone(),
            event.actor_id.clone(),
        );
        for field in PROTECTED_FIELDS {
            let value = event
                .protected_field_mut(field)
                .expect("a protected field name");
            let Some(Sealed::Cipher {
                commitment,
                key_id,
                data,
                ..
            }) = value.as_deref().and_then(Sealed::parse)
            else {
                continue;
            };
            let closed = |closed| Sealed::Closed { commitment, closed }.to_text();
            if !may_see {
                *value = Some(closed(Closed::Withheld));
                continue;
            }
            let Some((tid, sid)) = key_id.split_once('.') else {
                *value = Some(closed(Closed::Withheld));
                continue;
            };
            let key = self
                .subject_key(store, &tenant_id, &actor_id, tid, false)
                .await?;
            let opened = match key {
                // The key was destroyed, or destroyed and a new one made since.
                None => closed(Closed::Erased),
                Some((stored_sid, _)) if stored_sid != sid => closed(Closed::Erased),
                Some((_, key)) => {
                    let context = FieldContext {
                        tenant_id: &tenant_id,
                        event_id: &event_id,
                        field,
                    };
                    match open_field(&key, &context, &commitment, data) {
                        Ok(opened) => opened,
                        Err(error) => {
                            tracing::error!(tenant_id, event_id, field, %error, "a sealed field does not open");
                            closed(Closed::Withheld)
                        }
                    }
                }
            };
            *value = Some(opened);
        }
        Ok(())
    }
}

impl Vault {
    /// Re-encrypts each envelope of `events` that is under an earlier tenant data key than its
    /// tenant's current one, under its actor's subject key of the current tenant key (made if
    /// needed): the re-encryption after a rotation, done as the lifecycle writes events to the
    /// warm and cold tiers. Salt and commitment stay, so no hash changes. An envelope whose key
    /// was destroyed (an erased subject, an offboarded tenant) stays as it is. Returns how many
    /// fields moved.
    async fn reseal_events(
        &self,
        store: &dyn HotStore,
        events: &mut [StoredEvent],
    ) -> Result<u64, ApiError> {
        type Key = Option<(String, Arc<DataKey>)>;
        // The keys of this batch: each actor's current subject key, then each old one.
        let mut current_keys: HashMap<(String, String), Key> = HashMap::new();
        let mut old_keys: HashMap<(String, String, String), Key> = HashMap::new();
        let mut moved = 0;
        for stored in events.iter_mut() {
            if !sealtrail_ledger::EventView::from(&stored.event).is_sealed() {
                continue;
            }
            let event = &mut stored.event;
            let (tenant_id, event_id, actor_id) = (
                event.tenant_id.clone(),
                event.event_id.clone(),
                event.actor_id.clone(),
            );
            let current = self.current_tid(store, &tenant_id).await?;
            for field in PROTECTED_FIELDS {
                let value = event
                    .protected_field_mut(field)
                    .expect("a protected field name");
                let Some(Sealed::Cipher {
                    commitment,
                    key_id,
                    index,
                    data,
                }) = value.as_deref().and_then(Sealed::parse)
                else {
                    continue;
                };
                let Some((tid, sid)) = key_id.split_once('.') else {
                    continue;
                };
                if tid == current {
                    continue;
                }
                // An old key this node knows of is read again from the store once the current
                // key exists: an erasure that destroyed it before that read leaves the field as
                // it is; one after it destroys the current key too. Re-encryption never brings
                // back what an erasure took, nor makes a key for a subject with nothing to move.
                let actor = (tenant_id.clone(), actor_id.clone());
                let old = (tenant_id.clone(), actor_id.clone(), tid.to_owned());
                if !old_keys.contains_key(&old) {
                    let mut key = self
                        .subject_key(store, &tenant_id, &actor_id, tid, false)
                        .await?;
                    if key.is_some() {
                        if !current_keys.contains_key(&actor) {
                            let current_key = self
                                .subject_key(store, &tenant_id, &actor_id, &current, true)
                                .await?;
                            current_keys.insert(actor.clone(), current_key);
                        }
                        self.forget(&tenant_key_name(&tenant_id, tid));
                        self.forget(&format!("{}{tid}", subject_prefix(&tenant_id, &actor_id)));
                        key = self
                            .subject_key(store, &tenant_id, &actor_id, tid, false)
                            .await?;
                    }
                    old_keys.insert(old.clone(), key);
                }
                let (Some(Some((old_sid, old_key))), Some(Some((new_sid, new_key)))) =
                    (old_keys.get(&old), current_keys.get(&actor))
                else {
                    continue;
                };
                if old_sid != sid {
                    // Destroyed, and a new key of the subject's made since: erased.
                    continue;
                }
                let context = FieldContext {
                    tenant_id: &tenant_id,
                    event_id: &event_id,
                    field,
                };
                let resealed = reseal_field(
                    old_key,
                    new_key,
                    &format!("{current}.{new_sid}"),
                    index,
                    &context,
                    &commitment,
                    data,
                )
                .map_err(|error| {
                    ApiError::internal(format!(
                        "tenant {tenant_id}, event {event_id}, {field}: {error}"
                    ))
                })?;
                *value = Some(resealed);
                moved += 1;
            }
        }
        Ok(moved)
    }
}

/// Re-encrypts protected fields under their tenant's current data key as the lifecycle writes
/// them to the warm and cold tiers (`sealtrail_archive::Reseal`, docs/PRIVACY.md "Rotation").
#[derive(Debug, Clone)]
pub struct Resealer {
    store: Arc<dyn HotStore>,
    vault: Arc<Vault>,
}

impl Resealer {
    pub(crate) fn new(store: Arc<dyn HotStore>, vault: Arc<Vault>) -> Resealer {
        Resealer { store, vault }
    }

    /// For `sealtrail lifecycle run`, which runs beside the servers: the key-encryption key from
    /// `text` (`SEALTRAIL_KEK`), else the file at `path`. `None` when neither is there (a data
    /// directory no server has started in: nothing in it is encrypted).
    pub fn open(
        store: Arc<dyn HotStore>,
        text: Option<&str>,
        path: &std::path::Path,
    ) -> crate::Result<Option<Resealer>> {
        Ok(offline_vault(text, path)?.map(|vault| Resealer::new(store, Arc::new(vault))))
    }
}

#[async_trait::async_trait]
impl sealtrail_archive::Reseal for Resealer {
    async fn reseal(&self, events: &mut [StoredEvent]) -> Result<u64, String> {
        self.vault
            .reseal_events(&*self.store, events)
            .await
            .map_err(|error| error.to_string())
    }
}

/// The vault of a command that runs beside the servers (`lifecycle run`, `import`): the
/// key-encryption key from `text`, else the file at `path`, never made; `None` when neither is
/// there (a data directory no server has started in, so nothing in it is encrypted).
fn offline_vault(text: Option<&str>, path: &std::path::Path) -> crate::Result<Option<Vault>> {
    if text.is_none() && !path.exists() {
        return Ok(None);
    }
    Ok(Some(Vault::new(load_kek(text, path, false)?)))
}

/// Loads the key-encryption key: the text in `SEALTRAIL_KEK` (given as `text`), else the file
/// at `path`, made with a fresh key on first start when it is the data directory's default.
pub(crate) fn load_kek(
    text: Option<&str>,
    path: &std::path::Path,
    create: bool,
) -> crate::Result<Box<dyn KeyEncryptionKey>> {
    use std::io::Write;
    let parse = |text: &str, source: &str| {
        sealtrail_vault::LocalKek::parse(text)
            .map(|kek| Box::new(kek) as Box<dyn KeyEncryptionKey>)
            .map_err(|error| crate::Error::Task(format!("{source}: {error}")))
    };
    if let Some(text) = text {
        return parse(text, "the key-encryption key's text");
    }
    let io = |source| crate::Error::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &path.display().to_string()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && create => {
            let text = sealtrail_vault::LocalKek::generate_text()
                .map_err(|error| crate::Error::Task(error.to_string()))?;
            let mut options = std::fs::File::options();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(io)?;
            file.write_all(format!("{}\n", text.as_str()).as_bytes())
                .map_err(io)?;
            file.sync_all().map_err(io)?;
            parse(&text, &path.display().to_string())
        }
        Err(error) => Err(io(error)),
    }
}

/// Rewraps every tenant data key wrapped under `previous` under the vault's key-encryption key:
/// the rotation of the key-encryption key, run at start. Events are not touched (they are sealed
/// under subject keys, which are wrapped under the tenant keys). Returns how many were rewrapped;
/// keys already under the current key are left alone, so every node may run it.
pub(crate) async fn rewrap_tenant_keys(
    store: &dyn HotStore,
    vault: &Vault,
    previous: &dyn KeyEncryptionKey,
) -> crate::Result<usize> {
    let corrupt =
        |name: &str, reason: &str| crate::Error::CorruptSetting(format!("{name}: {reason}"));
    let mut rewrapped = 0;
    for (name, stored) in store.settings_with_prefix("vault/").await? {
        if !matches!(name.split('/').nth(2), Some("tenant" | "index")) {
            continue;
        }
        let stored: Value =
            serde_json::from_slice(&stored).map_err(|error| corrupt(&name, &error.to_string()))?;
        let kek = stored["kek"].as_str().unwrap_or_default();
        if kek == vault.kek.id() {
            continue;
        }
        if kek != previous.id() {
            return Err(corrupt(
                &name,
                &format!(
                    "wrapped under key-encryption key {kek}, which is neither the current ({}) nor the previous ({})",
                    vault.kek.id(),
                    previous.id()
                ),
            ));
        }
        let wrapped = stored["wrapped"]
            .as_str()
            .and_then(|text| BASE64.decode(text).ok())
            .ok_or_else(|| corrupt(&name, "its wrapped key does not decode"))?;
        let key = previous
            .unwrap(name.as_bytes(), &wrapped)
            .map_err(|error| corrupt(&name, &error.to_string()))?;
        let wrapped = vault
            .kek
            .wrap(name.as_bytes(), &key)
            .map_err(|error| crate::Error::Task(error.to_string()))?;
        let fresh = json!({"kek": vault.kek.id(), "wrapped": BASE64.encode(wrapped)});
        let fresh =
            serde_json::to_vec(&fresh).map_err(|error| crate::Error::Task(error.to_string()))?;
        store.set_setting(&name, fresh).await?;
        rewrapped += 1;
    }
    Ok(rewrapped)
}

/// Seals the configured protected fields of every kept event of a request, before it is
/// spooled or committed: from here on only ciphertext is written anywhere.
pub(crate) async fn seal_request(
    state: &AppState,
    request: &mut [PendingEvent],
) -> Result<(), ApiError> {
    seal_events(&state.settings, &state.vault, &*state.store, request).await
}

/// [`seal_request`]'s work, for the server and for `sealtrail import` ([`Sealer`]).
async fn seal_events(
    settings: &Settings,
    vault: &Vault,
    store: &dyn HotStore,
    request: &mut [PendingEvent],
) -> Result<(), ApiError> {
    for pending in request.iter_mut() {
        if pending.capture.is_some_and(|capture| !capture.kept) {
            continue;
        }
        let tenant = settings.for_tenant(store, &pending.event.tenant_id).await?;
        if !tenant.encrypted.is_empty() {
            vault.seal(store, pending, &tenant.encrypted).await?;
        }
    }
    Ok(())
}

/// Seals the protected fields of events written to the store without the server (`sealtrail
/// import`), as ingest does: under each tenant's settings, with the deployment's keys.
#[derive(Debug)]
pub struct Sealer {
    store: Arc<dyn HotStore>,
    settings: Settings,
    vault: Vault,
}

impl Sealer {
    /// The key-encryption key from `text` (`SEALTRAIL_KEK`), else the file at `path`; `None`
    /// when neither is there.
    pub fn open(
        store: Arc<dyn HotStore>,
        text: Option<&str>,
        path: &std::path::Path,
    ) -> crate::Result<Option<Sealer>> {
        Ok(offline_vault(text, path)?.map(|vault| Sealer {
            store,
            settings: Settings::default(),
            vault,
        }))
    }

    /// Seals every event of `request` whose tenant has fields encrypted.
    pub async fn seal(&self, request: &mut [PendingEvent]) -> Result<(), String> {
        seal_events(&self.settings, &self.vault, &*self.store, request)
            .await
            .map_err(|error| error.to_string())
    }
}

/// Opens the protected fields of events about to be answered: plaintext where the reader's
/// level may see it, `withheld` where it may not, `erased` where the key is gone.
pub(crate) async fn open_events(
    state: &AppState,
    may_see: bool,
    events: &mut [LocatedEvent],
) -> Result<(), ApiError> {
    for located in events {
        if sealtrail_ledger::EventView::from(&located.stored.event).is_sealed() {
            state
                .vault
                .open(&*state.store, &mut located.stored, may_see)
                .await?;
        }
    }
    Ok(())
}

/// Opens the protected fields of one event for a plaintext export (whose requester may see
/// them): plaintext, or `erased` where the key is gone.
pub(crate) async fn open_event(state: &AppState, stored: &mut StoredEvent) -> Result<(), ApiError> {
    if sealtrail_ledger::EventView::from(&stored.event).is_sealed() {
        state.vault.open(&*state.store, stored, true).await?;
    }
    Ok(())
}

/// Completes the equality filters on protected fields of a read with the tenant's blind
/// indexes. A reader that may not see protected fields may not filter on them either (the
/// answers would tell it their values).
pub(crate) async fn blind_filters(
    state: &AppState,
    reader: &crate::access::Reader,
    query: &mut sealtrail_hot::EventQuery,
) -> Result<(), ApiError> {
    let asked: Vec<&str> = query
        .protected_filters()
        .into_iter()
        .filter_map(|(field, matched)| matched.map(|_| field))
        .collect();
    let Some(field) = asked.first() else {
        return Ok(());
    };
    if !reader.sees_protected_fields() {
        return Err(ApiError::Forbidden(format!(
            "this key may not filter on {field}: protected fields are withheld from it"
        )));
    }
    let Some(key) = state
        .vault
        .index_key(&*state.store, &reader.tenant_id, false)
        .await?
    else {
        return Ok(());
    };
    for (field, matched) in [
        ("ip_address", query.ip_address.as_mut()),
        ("user_agent", query.user_agent.as_mut()),
    ] {
        if let Some(matched) = matched {
            matched.blind_index = Some(blind_index(&key, field, &matched.plaintext));
        }
    }
    Ok(())
}

/// The tenant a settings route is about, for a caller that administers it.
fn administered(principal: &Principal, tenant_id: &str) -> Result<(), ApiError> {
    check_tenant_id(tenant_id).map_err(|reason| ApiError::invalid_field("tenant_id", reason))?;
    if principal.may_administer(tenant_id) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "only an admin key of tenant {tenant_id} or the platform admin may read or change its settings"
        )))
    }
}

/// The whole resource: stored settings, the retention policy and the capture policy's default
/// durability.
async fn resource(state: &AppState, tenant_id: &str) -> Result<Value, ApiError> {
    let settings = state.settings.for_tenant(&*state.store, tenant_id).await?;
    let retention = crate::lifecycle::load_retention_policy(&*state.store, tenant_id)
        .await
        .map_err(ApiError::internal)?;
    let policy = state.policies.for_tenant(&*state.store, tenant_id).await?;
    let mut body = settings.to_json();
    body["tenant_id"] = tenant_id.into();
    body["region"] = settings
        .region
        .clone()
        .unwrap_or_else(|| state.region.clone())
        .into();
    body["retention"] = retention.map_or(Value::Null, |policy| policy.to_json());
    body["default_durability"] = policy.default_durability.as_str().into();
    Ok(body)
}

/// `GET /v1/tenants/{tenant_id}`: the tenant's settings.
pub(crate) async fn get_settings(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    administered(&principal, &tenant_id)?;
    Ok(Json(resource(&state, &tenant_id).await?))
}

/// What a `PUT` asks to change, every member checked before anything is written.
#[derive(Debug, Default)]
struct Change {
    settings: Option<TenantSettings>,
    retention: Option<RetentionPolicy>,
    durability: Option<Durability>,
}

/// Reads a `PUT` body against what is stored. A member equal to what the tenant has is no
/// change, whoever sends it (a body read with `GET` can be sent back); changing `region` or
/// `retention` is the platform admin's.
fn read_change(
    state: &AppState,
    principal: &Principal,
    tenant_id: &str,
    stored: &TenantSettings,
    retention: Option<RetentionPolicy>,
    value: &Value,
) -> Result<Change, ApiError> {
    let Some(object) = value.as_object() else {
        return Err(ApiError::invalid_field("body", "must be a JSON object"));
    };
    let mut errors = Vec::new();
    let mut invalid = |field: &str, reason: String| {
        errors.push(InvalidItem {
            index: None,
            field: field.to_owned(),
            reason,
        })
    };
    let mut settings = stored.clone();
    let mut change = Change::default();
    let platform = matches!(principal, Principal::PlatformAdmin);
    for (name, member) in object {
        match name.as_str() {
            "region" => {
                let Some(region) = member.as_str() else {
                    invalid("region", "must be a string".into());
                    continue;
                };
                let effective = stored.region.as_deref().unwrap_or(&state.region);
                if region == effective && (stored.region.is_some() || !platform) {
                    continue;
                }
                if !platform {
                    invalid(
                        "region",
                        "only the platform admin may set a tenant's region".into(),
                    );
                } else if region.is_empty()
                    || region.len() > REGION_CHARS_MAX
                    || !region.bytes().all(|byte| {
                        byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-'
                    })
                {
                    invalid(
                        "region",
                        format!("must be 1-{REGION_CHARS_MAX} of a-z, 0-9 and -"),
                    );
                } else if region != state.region {
                    invalid(
                        "region",
                        format!(
                            "region {region} is not served by this deployment, which serves {}",
                            state.region
                        ),
                    );
                } else if stored.region.as_deref().is_some_and(|old| old != region) {
                    invalid(
                        "region",
                        "a tenant's region is fixed once set; it changes only by a move job".into(),
                    );
                } else {
                    settings.region = Some(region.to_owned());
                }
            }
            "encryption" => match member {
                Value::Null => settings.encrypted.clear(),
                Value::Object(encryption) => {
                    if let Some(unknown) = encryption.keys().find(|key| *key != "fields") {
                        invalid(&format!("encryption.{unknown}"), "unknown member".into());
                        continue;
                    }
                    match encryption.get("fields").and_then(Value::as_array) {
                        Some(names) => match encrypted_fields(names) {
                            Ok(fields) => settings.encrypted = fields,
                            Err(reason) => invalid("encryption.fields", reason),
                        },
                        None => invalid(
                            "encryption.fields",
                            format!("required: an array of {}", PROTECTED_FIELDS.join(", ")),
                        ),
                    }
                }
                _ => invalid(
                    "encryption",
                    "must be an object {\"fields\": [...]} or null".into(),
                ),
            },
            "export_format" => match member {
                Value::Null => settings.export_format = None,
                Value::String(format) if crate::exports::is_job_format(format) => {
                    settings.export_format = Some(format.clone());
                }
                _ => invalid(
                    "export_format",
                    format!("must be one of {}", crate::exports::job_format_names()),
                ),
            },
            "default_durability" => match member.as_str().and_then(Durability::parse) {
                Some(durability) => change.durability = Some(durability),
                None => invalid("default_durability", "must be sync or async".into()),
            },
            "retention" if member.is_null() => {
                if retention.is_some() {
                    invalid(
                        "retention",
                        "a retention policy cannot be removed, only replaced".into(),
                    );
                }
            }
            "retention" => match RetentionPolicy::from_json(member) {
                Ok(policy) if Some(policy) == retention => {}
                Ok(_) if !platform => invalid(
                    "retention",
                    "only the platform admin may change retention (it decides what is destroyed)"
                        .into(),
                ),
                Ok(policy) => change.retention = Some(policy),
                Err(field_errors) => {
                    for error in field_errors {
                        invalid(&format!("retention.{}", error.field), error.reason);
                    }
                }
            },
            "tenant_id" => {
                if member.as_str() != Some(tenant_id) {
                    invalid(
                        "tenant_id",
                        format!("must be {tenant_id}, the tenant of the path"),
                    );
                }
            }
            other => invalid(other, "unknown member".into()),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid {
            detail: "the settings are invalid; nothing was changed".into(),
            errors,
        });
    }
    if settings != *stored {
        change.settings = Some(settings);
    }
    Ok(change)
}

/// `PUT /v1/tenants/{tenant_id}`: changes the members given (every member optional). The
/// change is first committed as an event of the tenant's log, then stored; one that cannot be
/// recorded is not made.
pub(crate) async fn put_settings(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    administered(&principal, &tenant_id)?;
    let value = crate::problem::json_document(&body)?;
    let stored = state.settings.for_tenant(&*state.store, &tenant_id).await?;
    let retention = crate::lifecycle::load_retention_policy(&*state.store, &tenant_id)
        .await
        .map_err(ApiError::internal)?;
    let change = read_change(&state, &principal, &tenant_id, &stored, retention, &value)?;
    let mut before = resource(&state, &tenant_id).await?;
    // Naming the deployment's own region fixes a region that was only the default: a change,
    // though the resource reads the same, and what places a new tenant in this region (so
    // other regions' nodes find it here: docs/PRIVACY.md, "Regions").
    let fixes_region = stored.region.is_none()
        && change
            .settings
            .as_ref()
            .is_some_and(|settings| settings.region.is_some());
    if fixes_region {
        before["region"] = Value::Null;
    }
    let mut policy = None;
    if let Some(durability) = change.durability {
        let mut changed = (*state.policies.for_tenant(&*state.store, &tenant_id).await?).clone();
        if changed.default_durability != durability {
            changed.default_durability = durability;
            policy = Some(changed);
        }
    }
    let mut after = before.clone();
    if let Some(settings) = &change.settings {
        for (name, member) in settings.to_json().as_object().into_iter().flatten() {
            after[name] = member.clone();
        }
        after["region"] = settings
            .region
            .clone()
            .unwrap_or_else(|| state.region.clone())
            .into();
    }
    if let Some(retention) = &change.retention {
        after["retention"] = retention.to_json();
    }
    if let Some(policy) = &policy {
        after["default_durability"] = policy.default_durability.as_str().into();
    }
    if after == before {
        return Ok(Json(before));
    }
    record_event(
        &state,
        &principal,
        &tenant_id,
        SETTINGS_CHANGE_ACTION,
        "tenant_settings",
        &tenant_id,
        json!({"before": before, "after": after}),
    )
    .await?;
    if let Some(settings) = change.settings {
        let bytes = serde_json::to_vec(&settings.to_json()).map_err(ApiError::internal)?;
        state
            .store
            .set_setting(&settings_name(&tenant_id), bytes)
            .await?;
        state.settings.remember(&tenant_id, Arc::new(settings));
    }
    if let Some(retention) = change.retention {
        let bytes = serde_json::to_vec(&retention.to_json()).map_err(ApiError::internal)?;
        state
            .store
            .set_setting(&RetentionPolicy::setting_name(&tenant_id), bytes)
            .await?;
    }
    if let Some(policy) = policy {
        crate::capture::store_policy(&state, &tenant_id, policy).await?;
    }
    tracing::info!(tenant_id, "tenant settings changed");
    Ok(Json(resource(&state, &tenant_id).await?))
}

/// Commits an event the server writes about a tenant, synchronously, before the change it
/// records is made.
async fn record_event(
    state: &AppState,
    principal: &Principal,
    tenant_id: &str,
    action: &str,
    resource_type: &str,
    resource_id: &str,
    changes: Value,
) -> Result<(), ApiError> {
    let mut event = json!({
        "tenant_id": tenant_id,
        "actor_id": principal.actor_id(),
        "actor_type": "service",
        "action": action,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "outcome": "success",
    });
    if !changes.is_null() {
        event["changes"] = changes;
    }
    crate::capture::record(&state.pipeline, event).await?;
    Ok(())
}

/// `POST /v1/tenants/{tenant_id}/subjects/{actor_id}/erase`: destroys every key of one
/// subject. Its protected fields read as `erased` from then on, in every tier and every copy,
/// while every hash, proof and checkpoint stays valid.
pub(crate) async fn erase_subject(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path((tenant_id, actor_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    administered(&principal, &tenant_id)?;
    if actor_id.is_empty() || actor_id.chars().count() > ACTOR_ID_CHARS_MAX {
        return Err(ApiError::invalid_field(
            "actor_id",
            format!("must be 1 to {ACTOR_ID_CHARS_MAX} characters"),
        ));
    }
    record_event(
        &state,
        &principal,
        &tenant_id,
        SUBJECT_ERASE_ACTION,
        "subject",
        &actor_id,
        Value::Null,
    )
    .await?;
    let prefix = subject_prefix(&tenant_id, &actor_id);
    let destroyed = state.store.delete_settings(&prefix).await?;
    state.vault.forget(&prefix);
    let exports_removed = crate::exports::remove_plaintext(
        &state,
        &tenant_id,
        "removed: a subject of the tenant was erased after it was requested",
    )
    .await?;
    tracing::info!(tenant_id, destroyed, exports_removed, "subject erased");
    Ok(Json(json!({
        "tenant_id": tenant_id,
        "actor_id": actor_id,
        "keys_destroyed": destroyed,
        "plaintext_exports_removed": exports_removed,
    })))
}

/// `POST /v1/tenants/{tenant_id}/erase`: offboarding; destroys every key of the tenant, so all
/// its protected fields read as `erased`.
pub(crate) async fn erase_tenant(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    administered(&principal, &tenant_id)?;
    record_event(
        &state,
        &principal,
        &tenant_id,
        TENANT_ERASE_ACTION,
        "tenant",
        &tenant_id,
        Value::Null,
    )
    .await?;
    let prefix = vault_prefix(&tenant_id);
    let destroyed = state.store.delete_settings(&prefix).await?;
    state.vault.forget(&prefix);
    let exports_removed = crate::exports::remove_plaintext(
        &state,
        &tenant_id,
        "removed: the tenant was erased after it was requested",
    )
    .await?;
    tracing::info!(tenant_id, destroyed, exports_removed, "tenant erased");
    Ok(Json(json!({
        "tenant_id": tenant_id,
        "keys_destroyed": destroyed,
        "plaintext_exports_removed": exports_removed,
    })))
}

/// `POST /v1/tenants/{tenant_id}/keys/rotate`: a new tenant data key, used by every event from
/// now on (each actor gets a new subject key under it). Events sealed earlier keep opening with
/// their own keys.
pub(crate) async fn rotate_key(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    administered(&principal, &tenant_id)?;
    let tid = state
        .vault
        .new_tenant_key(&*state.store, &tenant_id)
        .await?;
    record_event(
        &state,
        &principal,
        &tenant_id,
        KEY_ROTATE_ACTION,
        "data_key",
        &tid,
        Value::Null,
    )
    .await?;
    state
        .store
        .set_setting(&current_name(&tenant_id), tid.clone().into_bytes())
        .await?;
    state.vault.forget(&current_name(&tenant_id));
    Ok(Json(json!({"tenant_id": tenant_id, "key_id": tid})))
}
