//! Events as stored: the submitted event plus its place in the tenant's chain.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

use crate::{format_timestamp, Event, Sealed};

/// An event with its chain position. Hashes are raw bytes here and lowercase hex on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub event: Event,
    /// Position in the tenant's log, from 1, without gaps.
    pub seq: u64,
    pub received_at_ns: i64,
    pub prev_hash: [u8; 32],
    pub event_hash: [u8; 32],
}

/// What a client learns about a committed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventReceipt {
    pub event_id: String,
    pub tenant_id: String,
    pub seq: u64,
    pub event_hash: [u8; 32],
}

impl Serialize for EventReceipt {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("event_id", &self.event_id)?;
        map.serialize_entry("tenant_id", &self.tenant_id)?;
        map.serialize_entry("seq", &self.seq)?;
        map.serialize_entry("event_hash", &to_hex(&self.event_hash))?;
        map.end()
    }
}

/// Where an event is kept. Reported with every event the API returns, so an investigator knows
/// what a read cost and an auditor where to look for the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageTier {
    Hot,
    Warm,
    Cold,
}

impl StorageTier {
    pub fn as_str(self) -> &'static str {
        match self {
            StorageTier::Hot => "hot",
            StorageTier::Warm => "warm",
            StorageTier::Cold => "cold",
        }
    }
}

/// A stored event and the tier it was read from, as the query API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedEvent {
    pub stored: StoredEvent,
    pub tier: StorageTier,
}

/// The API representation of a hot-tier event (see [`LocatedEvent`]).
impl Serialize for StoredEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_located(self, Some(StorageTier::Hot), serializer)
    }
}

/// An event's API representation without `tier`: the rows of an export, where an event was
/// stored says nothing about it.
#[derive(Debug, Clone, Copy)]
pub struct Untiered<'a>(pub &'a StoredEvent);

impl Serialize for Untiered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_located(self.0, None, serializer)
    }
}

/// The API representation: format v1 fields, then `seq`, `received_at`, `prev_hash`,
/// `event_hash` and `tier`. `changes` and `metadata` are emitted verbatim from their canonical
/// text, so what a client reads is byte for byte what was hashed.
impl Serialize for LocatedEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_located(&self.stored, Some(self.tier), serializer)
    }
}

fn serialize_located<S: Serializer>(
    stored: &StoredEvent,
    tier: Option<StorageTier>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let event = &stored.event;
    let mut map = serializer.serialize_map(None)?;
    map.serialize_entry("event_id", &event.event_id)?;
    map.serialize_entry("timestamp", &format_timestamp(event.timestamp_ns))?;
    map.serialize_entry("tenant_id", &event.tenant_id)?;
    map.serialize_entry("actor_id", &event.actor_id)?;
    map.serialize_entry("actor_type", event.actor_type.as_str())?;
    map.serialize_entry("action", &event.action)?;
    map.serialize_entry("resource_type", &event.resource_type)?;
    map.serialize_entry("resource_id", &event.resource_id)?;
    map.serialize_entry("outcome", event.outcome.as_str())?;
    // A protected field shows its plaintext only when opened; its envelope is described in
    // `sealed` below (docs/FORMAT.md, "Protected fields").
    let shown = |text: &Option<String>| -> Option<String> {
        let text = text.as_deref()?;
        match Sealed::parse(text) {
            None => Some(text.to_owned()),
            Some(Sealed::Open { plaintext, .. }) => Some(plaintext.to_owned()),
            Some(_) => None,
        }
    };
    map.serialize_entry("ip_address", &shown(&event.ip_address))?;
    map.serialize_entry("user_agent", &shown(&event.user_agent))?;
    map.serialize_entry("request_id", &event.request_id)?;
    for (name, text) in [("changes", &event.changes), ("metadata", &event.metadata)] {
        match shown(text) {
            Some(text) => {
                let raw: &RawValue =
                    serde_json::from_str(&text).map_err(serde::ser::Error::custom)?;
                map.serialize_entry(name, raw)?;
            }
            None => map.serialize_entry(name, &Option::<()>::None)?,
        }
    }
    let sealed = sealed_json(event);
    if !sealed.is_empty() {
        map.serialize_entry("sealed", &sealed)?;
    }
    map.serialize_entry("seq", &stored.seq)?;
    map.serialize_entry("received_at", &format_timestamp(stored.received_at_ns))?;
    map.serialize_entry("prev_hash", &to_hex(&stored.prev_hash))?;
    map.serialize_entry("event_hash", &to_hex(&stored.event_hash))?;
    if let Some(tier) = tier {
        map.serialize_entry("tier", tier.as_str())?;
    }
    map.end()
}

/// The `sealed` member: for each protected field held as an envelope, its commitment and
/// state, with the salt when opened and the stored envelope itself when encrypted (so an
/// export keeps the ciphertext and [`StoredEvent::from_json`] restores the stored text).
fn sealed_json(event: &Event) -> serde_json::Map<String, serde_json::Value> {
    let mut sealed = serde_json::Map::new();
    for (name, text) in event.protected_fields() {
        let Some(envelope) = text.and_then(Sealed::parse) else {
            continue;
        };
        let mut entry = serde_json::Map::new();
        entry.insert("commitment".into(), to_hex(&envelope.commitment()).into());
        match envelope {
            Sealed::Cipher { .. } => {
                entry.insert("state".into(), "encrypted".into());
                entry.insert("envelope".into(), text.unwrap_or_default().into());
            }
            Sealed::Open { salt, .. } => {
                entry.insert("state".into(), "open".into());
                entry.insert("salt".into(), to_hex(&salt).into());
            }
            Sealed::Closed { closed, .. } => {
                entry.insert("state".into(), closed.as_str().into());
            }
        }
        sealed.insert(name.into(), entry.into());
    }
    sealed
}

fn to_hex(bytes: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(64);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    text
}

impl StoredEvent {
    /// Reads a stored event back from its API representation, as docs/FORMAT.md tells an
    /// independent verifier to: `changes` and `metadata` are re-serialised canonically (compact,
    /// keys sorted), which reproduces the stored text byte for byte.
    pub fn from_json(value: &serde_json::Value) -> Result<StoredEvent, String> {
        use serde_json::Value;
        let text = |field: &str| -> Result<String, String> {
            value[field]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{field}: missing or not a string"))
        };
        let optional = |field: &str| -> Result<Option<String>, String> {
            match &value[field] {
                Value::Null => Ok(None),
                Value::String(text) => Ok(Some(text.clone())),
                _ => Err(format!("{field}: not a string")),
            }
        };
        let json_text = |field: &str| -> Result<Option<String>, String> {
            match &value[field] {
                Value::Null => Ok(None),
                object @ Value::Object(_) => Ok(Some(
                    serde_json::to_string(object).map_err(|error| error.to_string())?,
                )),
                _ => Err(format!("{field}: not an object")),
            }
        };
        let instant = |field: &str| -> Result<i64, String> {
            crate::parse_timestamp(&text(field)?)
                .ok_or_else(|| format!("{field}: not an RFC 3339 timestamp"))
        };
        let hash = |field: &str| -> Result<[u8; 32], String> {
            let hex = text(field)?;
            if hex.len() != 64 {
                return Err(format!("{field}: not 64 hex digits"));
            }
            let mut bytes = [0u8; 32];
            for (index, byte) in bytes.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[index * 2..index * 2 + 2], 16)
                    .map_err(|_| format!("{field}: not hex"))?;
            }
            Ok(bytes)
        };
        let mut event = Event {
            event_id: text("event_id")?,
            timestamp_ns: instant("timestamp")?,
            tenant_id: text("tenant_id")?,
            actor_id: text("actor_id")?,
            actor_type: crate::ActorType::parse(&text("actor_type")?)
                .ok_or("actor_type: unknown value")?,
            action: text("action")?,
            resource_type: text("resource_type")?,
            resource_id: optional("resource_id")?,
            outcome: crate::Outcome::parse(&text("outcome")?).ok_or("outcome: unknown value")?,
            ip_address: optional("ip_address")?,
            user_agent: optional("user_agent")?,
            request_id: optional("request_id")?,
            changes: json_text("changes")?,
            metadata: json_text("metadata")?,
        };
        restore_sealed(&mut event, &value["sealed"])?;
        Ok(StoredEvent {
            event,
            seq: value["seq"]
                .as_u64()
                .ok_or("seq: missing or not a positive integer")?,
            received_at_ns: instant("received_at")?,
            prev_hash: hash("prev_hash")?,
            event_hash: hash("event_hash")?,
        })
    }
}

/// Puts back each protected field's envelope from the API's `sealed` member: the stored
/// envelope when the answer carries it, else the opened or closed shape around its commitment
/// (all the event's hash needs).
fn restore_sealed(event: &mut Event, sealed: &serde_json::Value) -> Result<(), String> {
    let Some(sealed) = sealed.as_object() else {
        return match sealed {
            serde_json::Value::Null => Ok(()),
            _ => Err("sealed: not an object".into()),
        };
    };
    for (name, entry) in sealed {
        let shown = event
            .protected_field_mut(name)
            .ok_or_else(|| format!("sealed.{name}: not a protected field"))?;
        let commitment = entry["commitment"]
            .as_str()
            .and_then(crate::hex32)
            .ok_or_else(|| format!("sealed.{name}.commitment: not 64 lowercase hex digits"))?;
        let text = if let Some(envelope) = entry["envelope"].as_str() {
            if crate::sealed_commitment(envelope) != Some(commitment) {
                return Err(format!(
                    "sealed.{name}.envelope: does not hold the commitment given"
                ));
            }
            envelope.to_owned()
        } else if let Some(salt) = entry["salt"].as_str() {
            let salt = crate::hex32(salt)
                .ok_or_else(|| format!("sealed.{name}.salt: not 64 lowercase hex digits"))?;
            let plaintext = shown
                .as_deref()
                .ok_or_else(|| format!("{name}: opened but null"))?;
            Sealed::Open {
                commitment,
                salt,
                plaintext,
            }
            .to_text()
        } else {
            let closed = match entry["state"].as_str() {
                Some("erased") => crate::Closed::Erased,
                _ => crate::Closed::Withheld,
            };
            Sealed::Closed { commitment, closed }.to_text()
        };
        *shown = Some(text);
    }
    Ok(())
}
