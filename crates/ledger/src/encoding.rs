//! Canonical encoding, version 1 (docs/FORMAT.md, "Canonical encoding").
//!
//! A length-prefixed binary layout rather than canonical JSON: it has exactly one spelling per
//! event, needs no JSON canonicalisation rules to re-implement, and hashes without allocation.

use sha2::{Digest, Sha256};

use sealtrail_model::{sealed_commitment, Event, SEALED_PREFIX};

/// Leading bytes of every canonical encoding: names the format and its version, so a hash of a
/// v1 event can never collide with a hash of anything else Sealtrail signs or hashes.
pub const FORMAT_TAG: &[u8] = b"sealtrail.event.v1\n";
/// The tag of version 2, for an event holding at least one protected field as an envelope
/// (docs/FORMAT.md, "Canonical encoding, version 2"). An event without one keeps version 1.
pub const FORMAT_TAG_V2: &[u8] = b"sealtrail.event.v2\n";
/// Leading bytes of a protected field's salted commitment.
const COMMITMENT_TAG: &[u8] = b"sealtrail.commitment.v2\n";
/// RFC 6962's domain-separation byte for leaf hashes.
const LEAF_HASH_PREFIX: u8 = 0x00;
/// Leading bytes of the idempotency digest, which is internal and never published.
const CONTENT_TAG: &[u8] = b"sealtrail.content.v1\n";

/// Something bytes can be appended to: a `Vec<u8>` or a running SHA-256.
trait Sink {
    fn put(&mut self, bytes: &[u8]);

    /// A string field: `u32` big-endian byte length, then its UTF-8 bytes.
    fn put_str(&mut self, text: &[u8]) {
        let length = u32::try_from(text.len()).expect("validated strings are far below 4 GiB");
        self.put(&length.to_be_bytes());
        self.put(text);
    }

    fn put_opt(&mut self, text: Option<&[u8]>) {
        match text {
            None => self.put(&[0]),
            Some(text) => {
                self.put(&[1]);
                self.put_str(text);
            }
        }
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

/// An event's fields as UTF-8 bytes borrowed from wherever they live (an [`Event`], or a
/// database row read without copying or re-validating), so that hashing needs no allocation.
/// `actor_type` and `outcome` are the stored strings: a tampered value simply hashes differently.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    pub event_id: &'a [u8],
    pub timestamp_ns: i64,
    pub tenant_id: &'a [u8],
    pub actor_id: &'a [u8],
    pub actor_type: &'a [u8],
    pub action: &'a [u8],
    pub resource_type: &'a [u8],
    pub resource_id: Option<&'a [u8]>,
    pub outcome: &'a [u8],
    pub ip_address: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    pub request_id: Option<&'a [u8]>,
    pub changes: Option<&'a [u8]>,
    pub metadata: Option<&'a [u8]>,
}

impl<'a> From<&'a Event> for EventView<'a> {
    fn from(event: &'a Event) -> Self {
        EventView {
            event_id: event.event_id.as_bytes(),
            timestamp_ns: event.timestamp_ns,
            tenant_id: event.tenant_id.as_bytes(),
            actor_id: event.actor_id.as_bytes(),
            actor_type: event.actor_type.as_str().as_bytes(),
            action: event.action.as_bytes(),
            resource_type: event.resource_type.as_bytes(),
            resource_id: event.resource_id.as_deref().map(str::as_bytes),
            outcome: event.outcome.as_str().as_bytes(),
            ip_address: event.ip_address.as_deref().map(str::as_bytes),
            user_agent: event.user_agent.as_deref().map(str::as_bytes),
            request_id: event.request_id.as_deref().map(str::as_bytes),
            changes: event.changes.as_deref().map(str::as_bytes),
            metadata: event.metadata.as_deref().map(str::as_bytes),
        }
    }
}

/// The salted commitment to a protected field's plaintext (canonical JSON text for `changes`
/// and `metadata`): SHA-256 of a tag, the 32-byte salt and `str(plaintext)`. Without the salt,
/// which is kept only inside the ciphertext's key, a guess of a low-entropy value (an IP
/// address) cannot be checked against it.
pub fn commitment(salt: &[u8; 32], plaintext: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.put(COMMITMENT_TAG);
    hasher.put(salt);
    hasher.put_str(plaintext);
    hasher.finalize().into()
}

/// The commitment of a protected field held as an envelope, `None` for a plaintext value. Reads
/// only the envelope's head (prefix, commitment, colon), however long the field.
fn sealed(field: Option<&[u8]>) -> Option<[u8; 32]> {
    let head = field?.get(..SEALED_PREFIX.len() + 65)?;
    if !head.starts_with(SEALED_PREFIX.as_bytes()) {
        return None;
    }
    sealed_commitment(std::str::from_utf8(head).ok()?)
}

impl EventView<'_> {
    /// The commitments of the protected fields held as envelopes, in canonical order
    /// (`ip_address`, `user_agent`, `changes`, `metadata`).
    fn commitments(&self) -> [Option<[u8; 32]>; 4] {
        [
            self.ip_address,
            self.user_agent,
            self.changes,
            self.metadata,
        ]
        .map(sealed)
    }

    /// Whether the event holds a protected field as an envelope, and so hashes as version 2.
    pub fn is_sealed(&self) -> bool {
        self.commitments().iter().any(Option::is_some)
    }
}

/// A protected field: as `opt` in version 1; in version 2 an envelope is the byte `0x02` and
/// its 32-byte commitment instead.
fn put_protected(sink: &mut impl Sink, field: Option<&[u8]>, commitment: Option<[u8; 32]>) {
    match commitment {
        Some(commitment) => {
            sink.put(&[2]);
            sink.put(&commitment);
        }
        None => sink.put_opt(field),
    }
}

/// The fields of an event that its client chose, in canonical order, with the commitments of
/// its protected fields ([`EventView::commitments`]).
fn put_content(sink: &mut impl Sink, event: &EventView<'_>, sealed: &[Option<[u8; 32]>; 4]) {
    sink.put_str(event.actor_id);
    sink.put_str(event.actor_type);
    sink.put_str(event.action);
    sink.put_str(event.resource_type);
    sink.put_opt(event.resource_id);
    sink.put_str(event.outcome);
    put_protected(sink, event.ip_address, sealed[0]);
    put_protected(sink, event.user_agent, sealed[1]);
    sink.put_opt(event.request_id);
    put_protected(sink, event.changes, sealed[2]);
    put_protected(sink, event.metadata, sealed[3]);
}

fn put_canonical(
    sink: &mut impl Sink,
    event: &EventView<'_>,
    seq: u64,
    received_at_ns: i64,
    prev_hash: &[u8; 32],
) {
    let sealed = event.commitments();
    sink.put(if sealed.iter().any(Option::is_some) {
        FORMAT_TAG_V2
    } else {
        FORMAT_TAG
    });
    sink.put(&seq.to_be_bytes());
    sink.put(prev_hash);
    sink.put_str(event.tenant_id);
    sink.put_str(event.event_id);
    sink.put(&event.timestamp_ns.to_be_bytes());
    sink.put(&received_at_ns.to_be_bytes());
    put_content(sink, event, &sealed);
}

/// Appends the canonical encoding of an event at chain position `seq` to `out`.
pub fn encode_canonical(
    out: &mut Vec<u8>,
    event: &Event,
    seq: u64,
    received_at_ns: i64,
    prev_hash: &[u8; 32],
) {
    put_canonical(out, &event.into(), seq, received_at_ns, prev_hash);
}

/// The canonical encoding of an event at chain position `seq`. This is also the Merkle leaf data.
pub fn canonical_bytes(
    event: &Event,
    seq: u64,
    received_at_ns: i64,
    prev_hash: &[u8; 32],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    put_canonical(&mut out, &event.into(), seq, received_at_ns, prev_hash);
    out
}

/// `event_hash` = SHA-256(0x00 || canonical encoding): exactly the RFC 6962 leaf hash of the
/// canonical encoding, so the chain and the Merkle tree share one hash per event and the tree
/// costs no extra hashing.
pub fn event_hash(event: &Event, seq: u64, received_at_ns: i64, prev_hash: &[u8; 32]) -> [u8; 32] {
    event_hash_of_view(&event.into(), seq, received_at_ns, prev_hash)
}

/// [`event_hash`] of borrowed fields.
pub fn event_hash_of_view(
    event: &EventView<'_>,
    seq: u64,
    received_at_ns: i64,
    prev_hash: &[u8; 32],
) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.put(&[LEAF_HASH_PREFIX]);
    put_canonical(&mut hasher, event, seq, received_at_ns, prev_hash);
    hasher.finalize().into()
}

/// Digest of what a client sent for an `event_id`, used to tell an idempotent retry (same
/// digest) from a conflicting reuse of the id (409). It leaves out the timestamp, which a retry
/// may omit and which the store compares separately, and everything the server assigns.
pub fn content_digest(event: &Event) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.put(CONTENT_TAG);
    hasher.put_str(event.tenant_id.as_bytes());
    hasher.put_str(event.event_id.as_bytes());
    let view = EventView::from(event);
    put_content(&mut hasher, &view, &view.commitments());
    hasher.finalize().into()
}
