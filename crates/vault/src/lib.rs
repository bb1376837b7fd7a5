//! Field encryption, pure: the envelope keys and the sealing and opening of protected fields
//! (docs/PRIVACY.md; the envelope and its commitment: docs/FORMAT.md, "Protected fields").
//!
//! Three levels of keys. A **key-encryption key** per deployment ([`KeyEncryptionKey`]: a local
//! key from a file or the environment, [`LocalKek`]; a cloud KMS is another implementation)
//! wraps each tenant's **data key**; a tenant's data key wraps the **subject keys** of its
//! actors; a subject key seals the protected fields of that actor's events. Destroying a subject
//! key erases that person's protected fields in every tier and copy at once (crypto-shredding),
//! and rotating the key-encryption key rewraps tenant keys without touching an event.
//!
//! Each field is sealed with AES-256-GCM. What is encrypted is the field's salt and plaintext;
//! the event's hash covers only the salted commitment (`sealtrail_ledger::commitment`), which
//! the envelope carries in the clear. The salt is derived from the subject key, the event and the
//! field, so a retried event seals to the same commitment (idempotency compares commitments),
//! and it is kept inside the ciphertext, so re-encryption under another key keeps it.
//!
//! *No IO, no clock*: the caller stores wrapped keys and envelopes.

mod error;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sealtrail_model::Sealed;
use zeroize::Zeroizing;

pub use error::{Error, Result};

/// Bytes of every key: AES-256.
pub const KEY_BYTES: usize = 32;
/// Leading bytes of a field's associated data: binds a ciphertext to its tenant, event, field
/// and commitment, so no ciphertext can be moved to another event or field.
const FIELD_AAD_TAG: &[u8] = b"sealtrail.field.v2\n";
/// Leading bytes of a wrapped key's associated data.
const WRAP_AAD_TAG: &[u8] = b"sealtrail.wrap.v1\n";
/// Leading bytes of the salt derivation.
const SALT_TAG: &[u8] = b"sealtrail.salt.v2\n";
/// Leading bytes of a blind index.
const BLIND_INDEX_TAG: &[u8] = b"sealtrail.blind-index.v1\n";
/// Leading bytes of a local key-encryption key's public id.
const KEK_ID_TAG: &[u8] = b"sealtrail.kek-id.v1\n";

/// A 256-bit key, zeroed when dropped; its `Debug` never shows it. Its AES and HMAC key
/// schedules are made once, since a key seals many fields.
pub struct DataKey {
    bytes: Zeroizing<[u8; KEY_BYTES]>,
    aead: LessSafeKey,
    hmac: ring::hmac::Key,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    /// A fresh key from the system's random number generator.
    pub fn generate() -> Result<DataKey> {
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| Error::Random)?;
        Ok(DataKey::from_bytes(*bytes))
    }

    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> DataKey {
        let bytes = Zeroizing::new(bytes);
        DataKey {
            aead: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, bytes.as_ref()).expect("32 bytes is an AES-256 key"),
            ),
            hmac: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes.as_ref()),
            bytes,
        }
    }

    fn aead(&self) -> &LessSafeKey {
        &self.aead
    }

    fn hmac(&self) -> &ring::hmac::Key {
        &self.hmac
    }
}

/// The deployment's key-encryption key: wraps and unwraps tenant data keys. `context` names
/// what is wrapped (tenant and key id), so a wrapped key cannot be passed off as another's.
pub trait KeyEncryptionKey: Send + Sync + std::fmt::Debug {
    /// A public name of this key, stored beside what it wraps, so a key that opens nothing
    /// (the wrong file, or a rotation not finished) is reported as such.
    fn id(&self) -> &str;

    fn wrap(&self, context: &[u8], key: &DataKey) -> Result<Vec<u8>>;

    fn unwrap(&self, context: &[u8], wrapped: &[u8]) -> Result<DataKey>;
}

/// A key-encryption key held by the process: 32 bytes from a file or an environment variable.
#[derive(Debug)]
pub struct LocalKek {
    id: String,
    key: DataKey,
}

impl LocalKek {
    pub fn new(key: DataKey) -> LocalKek {
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            &[KEK_ID_TAG, key.bytes.as_ref()].concat(),
        );
        LocalKek {
            id: format!("local:{}", hex::encode(&digest.as_ref()[..8])),
            key,
        }
    }

    /// Reads a key written as 64 hex digits or as base64 of 32 bytes (surrounding whitespace
    /// ignored). The error never repeats the text.
    pub fn parse(text: &str) -> Result<LocalKek> {
        let text = text.trim();
        let bytes = hex::decode(text)
            .ok()
            .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
            .ok_or_else(|| Error::Kek("must be 64 hex digits or base64 of 32 bytes".into()))?;
        let bytes = Zeroizing::new(bytes);
        let key: [u8; KEY_BYTES] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| Error::Kek(format!("must be {KEY_BYTES} bytes, not {}", bytes.len())))?;
        Ok(LocalKek::new(DataKey::from_bytes(key)))
    }

    /// A new random key in the text form [`LocalKek::parse`] reads.
    pub fn generate_text() -> Result<Zeroizing<String>> {
        let key = DataKey::generate()?;
        Ok(Zeroizing::new(hex::encode(key.bytes.as_ref())))
    }
}

impl KeyEncryptionKey for LocalKek {
    fn id(&self) -> &str {
        &self.id
    }

    fn wrap(&self, context: &[u8], key: &DataKey) -> Result<Vec<u8>> {
        wrap_key(&self.key, context, key)
    }

    fn unwrap(&self, context: &[u8], wrapped: &[u8]) -> Result<DataKey> {
        unwrap_key(&self.key, context, wrapped)
    }
}

/// Encrypts `plaintext` under `key`: `nonce || ciphertext || tag`. With `nonce` `None` a random
/// one; a field passes its own (see [`encrypt_field`]).
fn encrypt(
    key: &DataKey,
    aad: &[u8],
    plaintext: &[u8],
    nonce: Option<[u8; NONCE_LEN]>,
) -> Result<Vec<u8>> {
    let nonce = match nonce {
        Some(nonce) => nonce,
        None => {
            let mut nonce = [0u8; NONCE_LEN];
            SystemRandom::new()
                .fill(&mut nonce)
                .map_err(|_| Error::Random)?;
            nonce
        }
    };
    let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(plaintext);
    let tag = key
        .aead()
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut sealed[NONCE_LEN..],
        )
        .map_err(|_| Error::Random)?;
    sealed.extend_from_slice(tag.as_ref());
    Ok(sealed)
}

fn decrypt(
    key: &DataKey,
    aad: &[u8],
    sealed: &[u8],
    what: &'static str,
) -> Result<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(Error::Open { what });
    }
    let nonce =
        Nonce::try_assume_unique_for_key(&sealed[..NONCE_LEN]).map_err(|_| Error::Open { what })?;
    let mut buffer = Zeroizing::new(sealed[NONCE_LEN..].to_vec());
    let length = key
        .aead()
        .open_in_place(nonce, Aad::from(aad), buffer.as_mut_slice())
        .map_err(|_| Error::Open { what })?
        .len();
    buffer.truncate(length);
    Ok(buffer)
}

fn wrap_aad(context: &[u8]) -> Vec<u8> {
    [WRAP_AAD_TAG, context].concat()
}

/// Wraps `child` under `parent` (a tenant key under the key-encryption key, a subject key under
/// its tenant's key).
pub fn wrap_key(parent: &DataKey, context: &[u8], child: &DataKey) -> Result<Vec<u8>> {
    encrypt(parent, &wrap_aad(context), child.bytes.as_ref(), None)
}

pub fn unwrap_key(parent: &DataKey, context: &[u8], wrapped: &[u8]) -> Result<DataKey> {
    let bytes = decrypt(parent, &wrap_aad(context), wrapped, "a wrapped key")?;
    let key: [u8; KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| Error::Open {
        what: "a wrapped key",
    })?;
    Ok(DataKey::from_bytes(key))
}

/// Where a field lives: its ciphertext is bound to exactly this place.
#[derive(Debug, Clone, Copy)]
pub struct FieldContext<'a> {
    pub tenant_id: &'a str,
    pub event_id: &'a str,
    pub field: &'a str,
}

impl FieldContext<'_> {
    fn put(&self, out: &mut Vec<u8>) {
        for part in [self.tenant_id, self.event_id, self.field] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }

    fn aad(&self, commitment: &[u8; 32]) -> Vec<u8> {
        let mut aad = FIELD_AAD_TAG.to_vec();
        self.put(&mut aad);
        aad.extend_from_slice(commitment);
        aad
    }
}

/// The salt of a field sealed under `key`: a keyed derivation, so a retry of the same event
/// seals to the same commitment, and nobody without the key can compute it.
fn salt(key: &DataKey, context: &FieldContext<'_>) -> [u8; 32] {
    let mut message = SALT_TAG.to_vec();
    context.put(&mut message);
    let tag = ring::hmac::sign(key.hmac(), &message);
    tag.as_ref().try_into().expect("HMAC-SHA-256 is 32 bytes")
}

fn encrypt_field(
    key: &DataKey,
    key_id: &str,
    index: Option<&str>,
    context: &FieldContext<'_>,
    salt: &[u8; 32],
    plaintext: &str,
) -> Result<String> {
    let commitment = sealtrail_ledger::commitment(salt, plaintext.as_bytes());
    let payload = Zeroizing::new([salt.as_slice(), plaintext.as_bytes()].concat());
    // The nonce is the commitment's first 12 bytes: under one key two fields share it only when
    // they share salt and plaintext (the same field of the same event), and then their
    // ciphertexts are equal too, so nothing repeats that GCM must not repeat. No system call
    // per field, and a retry seals to the very same envelope.
    // It is not stored: the envelope carries the commitment already.
    let sealed = encrypt(
        key,
        &context.aad(&commitment),
        &payload,
        Some(field_nonce(&commitment)),
    )?;
    Ok(Sealed::Cipher {
        commitment,
        key_id,
        index,
        data: &URL_SAFE_NO_PAD.encode(&sealed[NONCE_LEN..]),
    }
    .to_text())
}

/// A field's nonce: the first 12 bytes of its commitment.
fn field_nonce(commitment: &[u8; 32]) -> [u8; NONCE_LEN] {
    commitment[..NONCE_LEN].try_into().expect("12 of 32 bytes")
}

/// Seals a protected field's plaintext (canonical JSON text for `changes` and `metadata`) under
/// the subject key `key_id`: the envelope stored in its place, carrying `index` (its
/// [`blind_index`], for a field equality filters match) in the clear.
pub fn seal_field(
    key: &DataKey,
    key_id: &str,
    index: Option<&str>,
    context: &FieldContext<'_>,
    plaintext: &str,
) -> Result<String> {
    debug_assert!(!key_id.contains(':'), "a key id is one envelope component");
    encrypt_field(key, key_id, index, context, &salt(key, context), plaintext)
}

/// The salt and plaintext inside a stored envelope, checked against its commitment.
fn decrypt_field(
    key: &DataKey,
    context: &FieldContext<'_>,
    commitment: &[u8; 32],
    data: &str,
) -> Result<([u8; 32], Zeroizing<String>)> {
    let what = "a field's ciphertext";
    let sealed = URL_SAFE_NO_PAD
        .decode(data)
        .map_err(|_| Error::Open { what })?;
    let sealed = [field_nonce(commitment).as_slice(), &sealed].concat();
    let payload = decrypt(key, &context.aad(commitment), &sealed, what)?;
    if payload.len() < 32 {
        return Err(Error::Open { what });
    }
    let salt: [u8; 32] = payload[..32].try_into().expect("32 bytes");
    let plaintext = std::str::from_utf8(&payload[32..]).map_err(|_| Error::Open { what })?;
    if sealtrail_ledger::commitment(&salt, plaintext.as_bytes()) != *commitment {
        return Err(Error::Commitment {
            field: context.field.to_owned(),
        });
    }
    Ok((salt, Zeroizing::new(plaintext.to_owned())))
}

/// Opens a stored envelope (`Sealed::Cipher`) for a reader: the opened envelope's text, with
/// plaintext and salt, which the API shows as the field's value and its `sealed` entry.
pub fn open_field(
    key: &DataKey,
    context: &FieldContext<'_>,
    commitment: &[u8; 32],
    data: &str,
) -> Result<String> {
    let (salt, plaintext) = decrypt_field(key, context, commitment, data)?;
    Ok(Sealed::Open {
        commitment: *commitment,
        salt,
        plaintext: &plaintext,
    }
    .to_text())
}

/// Re-encrypts a stored envelope under another subject key: same salt, same commitment (and
/// the same blind index), so the event's hash does not change.
pub fn reseal_field(
    old_key: &DataKey,
    new_key: &DataKey,
    new_key_id: &str,
    index: Option<&str>,
    context: &FieldContext<'_>,
    commitment: &[u8; 32],
    data: &str,
) -> Result<String> {
    let (salt, plaintext) = decrypt_field(old_key, context, commitment, data)?;
    encrypt_field(new_key, new_key_id, index, context, &salt, &plaintext)
}

/// A keyed blind index of a protected field's value: equal values of one tenant and field give
/// equal indexes, and nobody without the tenant's key can compute or reverse one.
pub fn blind_index(key: &DataKey, field: &str, plaintext: &str) -> String {
    let mut message = BLIND_INDEX_TAG.to_vec();
    for part in [field, plaintext] {
        message.extend_from_slice(&(part.len() as u32).to_be_bytes());
        message.extend_from_slice(part.as_bytes());
    }
    hex::encode(&ring::hmac::sign(key.hmac(), &message).as_ref()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(field: &str) -> FieldContext<'_> {
        FieldContext {
            tenant_id: "acme",
            event_id: "evt-1",
            field,
        }
    }

    fn cipher(text: &str) -> ([u8; 32], String) {
        match Sealed::parse(text) {
            Some(Sealed::Cipher {
                commitment, data, ..
            }) => (commitment, data.to_owned()),
            other => panic!("not a stored envelope: {other:?}"),
        }
    }

    #[test]
    fn a_sealed_field_opens_only_with_its_key_in_its_place() {
        let key = DataKey::generate().unwrap();
        let envelope =
            seal_field(&key, "s1", None, &context("ip_address"), "198.51.100.7").unwrap();
        assert!(!envelope.contains("198.51.100.7"));
        let (commitment, data) = cipher(&envelope);
        let opened = open_field(&key, &context("ip_address"), &commitment, &data).unwrap();
        match Sealed::parse(&opened) {
            Some(Sealed::Open {
                plaintext, salt, ..
            }) => {
                assert_eq!(plaintext, "198.51.100.7");
                assert_eq!(
                    sealtrail_ledger::commitment(&salt, plaintext.as_bytes()),
                    commitment
                );
            }
            other => panic!("{other:?}"),
        }
        // Another key, another field or another event: refused.
        let other = DataKey::generate().unwrap();
        assert!(open_field(&other, &context("ip_address"), &commitment, &data).is_err());
        assert!(open_field(&key, &context("user_agent"), &commitment, &data).is_err());
        let elsewhere = FieldContext {
            event_id: "evt-2",
            ..context("ip_address")
        };
        assert!(open_field(&key, &elsewhere, &commitment, &data).is_err());
        // A commitment swapped in from elsewhere: refused by the associated data.
        assert!(open_field(&key, &context("ip_address"), &[0u8; 32], &data).is_err());
    }

    #[test]
    fn a_retry_seals_to_the_same_commitment_and_a_reseal_keeps_it() {
        let key = DataKey::generate().unwrap();
        let first = seal_field(&key, "s1", None, &context("metadata"), r#"{"a":1}"#).unwrap();
        let again = seal_field(&key, "s1", None, &context("metadata"), r#"{"a":1}"#).unwrap();
        assert_eq!(first, again, "a retry seals to the same envelope");
        let (commitment, data) = cipher(&first);
        let other = seal_field(&key, "s1", None, &context("metadata"), r#"{"a":2}"#).unwrap();
        assert_ne!(cipher(&other).0, commitment);
        let new_key = DataKey::generate().unwrap();
        let moved = reseal_field(
            &key,
            &new_key,
            "s2",
            None,
            &context("metadata"),
            &commitment,
            &data,
        )
        .unwrap();
        let (moved_commitment, moved_data) = cipher(&moved);
        assert_eq!(moved_commitment, commitment);
        assert!(open_field(&new_key, &context("metadata"), &commitment, &moved_data).is_ok());
        assert!(open_field(&key, &context("metadata"), &commitment, &moved_data).is_err());
    }

    #[test]
    fn wrapped_keys_open_only_in_their_context() {
        let kek = LocalKek::parse(&LocalKek::generate_text().unwrap()).unwrap();
        let tenant_key = DataKey::generate().unwrap();
        let wrapped = kek.wrap(b"acme/t1", &tenant_key).unwrap();
        let unwrapped = kek.unwrap(b"acme/t1", &wrapped).unwrap();
        assert_eq!(unwrapped.bytes.as_ref(), tenant_key.bytes.as_ref());
        assert!(kek.unwrap(b"other/t1", &wrapped).is_err());
        let other = LocalKek::parse(&LocalKek::generate_text().unwrap()).unwrap();
        assert_ne!(other.id(), kek.id());
        assert!(other.unwrap(b"acme/t1", &wrapped).is_err());
        assert!(LocalKek::parse("not a key").is_err());
        assert!(LocalKek::parse(&"ab".repeat(16)).is_err());
        assert!(!format!("{kek:?}").contains(&hex::encode(tenant_key.bytes.as_ref())));
    }

    #[test]
    fn blind_indexes_match_equal_values_only() {
        let key = DataKey::generate().unwrap();
        let a = blind_index(&key, "ip_address", "10.0.0.1");
        assert_eq!(a, blind_index(&key, "ip_address", "10.0.0.1"));
        assert_ne!(a, blind_index(&key, "ip_address", "10.0.0.2"));
        assert_ne!(a, blind_index(&key, "user_agent", "10.0.0.1"));
        let other = DataKey::generate().unwrap();
        assert_ne!(a, blind_index(&other, "ip_address", "10.0.0.1"));
    }
}
