//! The canonical-encoding test vectors in docs/vectors/event-v1.json, checked against the code,
//! and against docs/FORMAT.md, which must quote every vector's hash so the prose cannot drift;
//! and the JSON input vectors in docs/vectors/json-v1.json (numbers, repeated keys, timestamps),
//! run through the same parse, check and validation as a request body.
//!
//! To regenerate after a deliberate format change (which also needs a new format version):
//! `SEALTRAIL_WRITE_VECTORS=1 cargo test -p sealtrail-ledger --test vectors`. That fills in
//! only the outputs (hashes, canonical texts, nanoseconds); `docs/verify_vectors.py` must then
//! still agree with them, from docs/FORMAT.md alone.

use sealtrail_ledger::{canonical_bytes, event_hash};
use sealtrail_model::{
    check_events_json, nearest_doubles, parse_timestamp, validate_imported_event, ActorType, Event,
    Outcome, SubmittedEvent,
};
use serde_json::{json, Value};

const VECTORS_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/vectors/event-v1.json"
);
const FORMAT_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/FORMAT.md");
const JSON_VECTORS_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/vectors/json-v1.json"
);

fn text(value: &Value, field: &str) -> Option<String> {
    value[field].as_str().map(str::to_owned)
}

/// Builds the event exactly as docs/FORMAT.md tells a verifier to: from the stored event's JSON.
fn event_from_json(value: &Value) -> (Event, u64, i64, [u8; 32]) {
    let json_text = |field: &str| match &value[field] {
        Value::Null => None,
        other => Some(serde_json::to_string(other).unwrap()),
    };
    let event = Event {
        event_id: text(value, "event_id").unwrap(),
        timestamp_ns: parse_timestamp(value["timestamp"].as_str().unwrap()).unwrap(),
        tenant_id: text(value, "tenant_id").unwrap(),
        actor_id: text(value, "actor_id").unwrap(),
        actor_type: ActorType::parse(value["actor_type"].as_str().unwrap()).unwrap(),
        action: text(value, "action").unwrap(),
        resource_type: text(value, "resource_type").unwrap(),
        resource_id: text(value, "resource_id"),
        outcome: Outcome::parse(value["outcome"].as_str().unwrap()).unwrap(),
        ip_address: text(value, "ip_address"),
        user_agent: text(value, "user_agent"),
        request_id: text(value, "request_id"),
        changes: json_text("changes"),
        metadata: json_text("metadata"),
    };
    let prev_hash: [u8; 32] = hex::decode(value["prev_hash"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let received_at_ns = parse_timestamp(value["received_at"].as_str().unwrap()).unwrap();
    (
        event,
        value["seq"].as_u64().unwrap(),
        received_at_ns,
        prev_hash,
    )
}

fn generate() -> Value {
    let first = json!({
        "event_id": "evt-0001", "timestamp": "2026-01-15T09:30:00Z", "tenant_id": "acme",
        "actor_id": "alice@acme.test", "actor_type": "human", "action": "login", "resource_type": "session",
        "resource_id": null, "outcome": "success", "ip_address": null, "user_agent": null, "request_id": null,
        "changes": null, "metadata": null, "seq": 1, "received_at": "2026-01-15T09:30:00.25Z",
        "prev_hash": hex::encode([0u8; 32])
    });
    let mut vectors = Vec::new();
    let mut prev = None;
    for (description, mut event) in [
        ("first event of a tenant: only required fields, defaults applied, prev_hash all zeros", first),
        ("second event: every optional field present, nested JSON, non-ASCII text, fractional seconds", json!({
            "event_id": "evt-0002", "timestamp": "2026-01-15T09:31:02.123456789Z", "tenant_id": "acme",
            "actor_id": "svc-billing", "actor_type": "service", "action": "role_assign", "resource_type": "user",
            "resource_id": "user/42", "outcome": "failure", "ip_address": "2001:db8::7", "user_agent": "curl/8.5 \u{2713}",
            "request_id": "req-9f8e", "changes": {"after": {"role": "admin"}, "before": {"role": "viewer"}},
            "metadata": {"bytes": 1048576, "department": "finance", "ratio": 0.5, "tags": ["a", "\u{fc}"]},
            "seq": 2, "received_at": "2026-01-15T09:31:02.2Z"
        })),
        ("third event: numbers at the edges of docs/FORMAT.md's rules (large and small doubles, negative zero, 64-bit integer limits)", json!({
            "event_id": "evt-0003", "timestamp": "2026-01-15T09:32:00.000000001Z", "tenant_id": "acme",
            "actor_id": "svc-metrics", "actor_type": "system", "action": "quota.report", "resource_type": "quota",
            "resource_id": null, "outcome": "success", "ip_address": null, "user_agent": null, "request_id": null,
            "changes": null,
            "metadata": {
                "double_1e300": 1e300, "double_1e16": 1e16, "double_1e15": 1e15, "double_max": f64::MAX,
                "double_1e-5": 1e-5, "double_1e-6": 1e-6, "double_1_5e-300": 1.5e-300, "double_min_subnormal": 5e-324,
                "double_negative_zero": -0.0, "double_2_pow_64": 18446744073709551616.0, "double_0_1": 0.1,
                "int_u64_max": u64::MAX, "int_i64_min": i64::MIN, "int_i64_max": i64::MAX, "int_2_pow_53_plus_1": 9007199254740993_u64
            },
            "seq": 3, "received_at": "2026-01-15T09:32:00.5Z"
        })),
    ] {
        if event.get("prev_hash").is_none() {
            event["prev_hash"] = json!(prev.unwrap());
        }
        let (parsed, seq, received_at_ns, prev_hash) = event_from_json(&event);
        let bytes = canonical_bytes(&parsed, seq, received_at_ns, &prev_hash);
        let hash = hex::encode(event_hash(&parsed, seq, received_at_ns, &prev_hash));
        event["event_hash"] = json!(hash);
        prev = Some(hash.clone());
        vectors.push(json!({
            "description": description, "event": event,
            "canonical_hex": hex::encode(bytes), "event_hash": hash,
        }));
    }
    Value::Array(vectors)
}

#[test]
fn vectors_match_the_code_and_the_document() {
    if std::env::var_os("SEALTRAIL_WRITE_VECTORS").is_some() {
        std::fs::write(
            VECTORS_PATH,
            serde_json::to_string_pretty(&generate()).unwrap() + "\n",
        )
        .unwrap();
    }
    // Read as a verifier must: each number as the nearest double.
    let text = std::fs::read_to_string(VECTORS_PATH).unwrap();
    let mut vectors: Value = serde_json::from_str(&text).unwrap();
    nearest_doubles(text.as_bytes(), &mut vectors);
    let format_doc = std::fs::read_to_string(FORMAT_PATH).unwrap();
    let vectors = vectors.as_array().unwrap();
    assert!(vectors.len() >= 2);
    let mut prev_hash = [0u8; 32];
    for vector in vectors {
        let (event, seq, received_at_ns, vector_prev) = event_from_json(&vector["event"]);
        assert_eq!(vector_prev, prev_hash, "vectors form a chain");
        let bytes = canonical_bytes(&event, seq, received_at_ns, &vector_prev);
        assert_eq!(
            hex::encode(&bytes),
            vector["canonical_hex"].as_str().unwrap()
        );
        let hash = event_hash(&event, seq, received_at_ns, &vector_prev);
        assert_eq!(hex::encode(hash), vector["event_hash"].as_str().unwrap());
        assert_eq!(vector["event"]["event_hash"], vector["event_hash"]);
        assert!(
            format_doc.contains(vector["event_hash"].as_str().unwrap()),
            "docs/FORMAT.md must quote the hash of every vector"
        );
        prev_hash = hash;
    }
}

const JSON_VECTORS_NOW: &str = "2026-02-01T00:00:00Z";

/// One event around `metadata_text` (and `timestamp`), read exactly as `POST /v1/events` reads a
/// body: parse, the JSON input check, then validation. Ok is the validated event; Err the fields
/// the 400 names.
fn ingest_text(metadata_text: &str, timestamp: &str) -> Result<SubmittedEvent, Vec<String>> {
    let text = format!(
        r#"{{"event_id":"e-1","tenant_id":"acme","actor_id":"alice","action":"login","resource_type":"session","timestamp":"{timestamp}","metadata":{metadata_text}}}"#
    );
    let mut value: Value = serde_json::from_str(&text).unwrap();
    let mut fields: Vec<String> = check_events_json(text.as_bytes(), &mut value)
        .into_iter()
        .map(|(index, error)| {
            assert_eq!(index, 0, "one event");
            error.field
        })
        .collect();
    let now_ns = parse_timestamp(JSON_VECTORS_NOW).unwrap();
    match validate_imported_event(value, now_ns) {
        Ok(submitted) if fields.is_empty() => Ok(submitted),
        Ok(_) => Err(fields),
        Err(errors) => {
            fields.extend(errors.into_iter().map(|error| error.field));
            Err(fields)
        }
    }
}

#[test]
fn json_input_vectors_match_the_code() {
    let mut vectors: Value =
        serde_json::from_str(&std::fs::read_to_string(JSON_VECTORS_PATH).unwrap()).unwrap();
    let write = std::env::var_os("SEALTRAIL_WRITE_VECTORS").is_some();
    let timestamp = "2026-01-15T09:31:02Z";
    for case in vectors["canonical"].as_array_mut().unwrap() {
        let input = case["input"].as_str().unwrap().to_owned();
        let stored = ingest_text(&input, timestamp)
            .unwrap_or_else(|fields| panic!("{input} was refused at {fields:?}"))
            .metadata
            .unwrap();
        if write {
            case["canonical"] = json!(stored);
        }
        assert_eq!(case["canonical"], json!(stored), "{input}");
        // Stored text is a fixed point: read back as a request, it is stored unchanged.
        assert_eq!(
            ingest_text(&stored, timestamp).unwrap().metadata.unwrap(),
            stored
        );
    }
    for case in vectors["refused"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        assert_eq!(
            ingest_text(input, timestamp).map(|submitted| submitted.metadata),
            Err(vec![case["field"].as_str().unwrap().to_owned()]),
            "{input}"
        );
    }
    for case in vectors["timestamps_accepted"].as_array_mut().unwrap() {
        let input = case["input"].as_str().unwrap().to_owned();
        let timestamp_ns = ingest_text("{}", &input).unwrap().timestamp_ns.unwrap();
        if write {
            case["timestamp_ns"] = json!(timestamp_ns);
        }
        assert_eq!(case["timestamp_ns"], json!(timestamp_ns), "{input}");
    }
    for case in vectors["timestamps_refused"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        assert_eq!(
            ingest_text("{}", input).map(|submitted| submitted.timestamp_ns),
            Err(vec![case["field"].as_str().unwrap().to_owned()]),
            "{input}"
        );
    }
    if write {
        std::fs::write(
            JSON_VECTORS_PATH,
            serde_json::to_string_pretty(&vectors).unwrap() + "\n",
        )
        .unwrap();
    }
}

const VECTORS_V2_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/vectors/event-v2.json"
);

/// A protected field as a reader allowed to see it gets it: the plaintext in the field, and in
/// `sealed` its commitment, the salt that opens it and `"state": "open"`.
fn open_field(event: &mut Value, field: &str, salt_byte: u8) {
    let salt = [salt_byte; 32];
    let plaintext = match &event[field] {
        Value::String(text) => text.clone(),
        other => serde_json::to_string(other).unwrap(),
    };
    let commitment = sealtrail_ledger::commitment(&salt, plaintext.as_bytes());
    event["sealed"][field] = json!({
        "commitment": hex::encode(commitment), "salt": hex::encode(salt), "state": "open",
    });
}

/// The same event as every reader gets it once its subject's key is destroyed.
fn erase_fields(event: &Value) -> Value {
    let mut erased = event.clone();
    for (field, entry) in event["sealed"].as_object().unwrap() {
        erased[field] = Value::Null;
        erased["sealed"][field] = json!({"commitment": entry["commitment"], "state": "erased"});
    }
    erased
}

fn generate_v2() -> Value {
    let mut events = [
        ("first event of tenant acme-eu: ip_address and user_agent encrypted and opened for the reader; changes and metadata in plaintext", json!({
            "event_id": "evt-0101", "timestamp": "2026-03-02T08:00:00Z", "tenant_id": "acme-eu",
            "actor_id": "marie@acme.test", "actor_type": "human", "action": "login", "resource_type": "session",
            "resource_id": null, "outcome": "success", "ip_address": "198.51.100.23",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0", "request_id": "req-0101",
            "changes": null, "metadata": {"mfa": true},
            "seq": 1, "received_at": "2026-03-02T08:00:00.1Z", "prev_hash": hex::encode([0u8; 32])
        }), vec![("ip_address", 0x11), ("user_agent", 0x22)]),
        ("second event: changes and metadata encrypted (their canonical JSON text is what is committed), ip_address encrypted, user_agent absent", json!({
            "event_id": "evt-0102", "timestamp": "2026-03-02T08:05:30.5Z", "tenant_id": "acme-eu",
            "actor_id": "marie@acme.test", "actor_type": "human", "action": "update", "resource_type": "patient_record",
            "resource_id": "pr-77", "outcome": "success", "ip_address": "2001:db8::23", "user_agent": null,
            "request_id": "req-0102",
            "changes": {"before": {"diagnosis": "J45.909", "ward": "3B"}, "after": {"ward": "4A", "diagnosis": "J45.909"}},
            "metadata": {"reason": "transfer", "zoë": 1.5},
            "seq": 2, "received_at": "2026-03-02T08:05:30.6Z"
        }), vec![("ip_address", 0x33), ("changes", 0x44), ("metadata", 0x55)]),
    ];
    let mut vectors = Vec::new();
    let mut prev: Option<String> = None;
    for (description, event, sealed) in events.iter_mut() {
        if event.get("prev_hash").is_none() {
            event["prev_hash"] = json!(prev.clone().unwrap());
        }
        for (field, salt_byte) in sealed.iter() {
            open_field(event, field, *salt_byte);
        }
        // The hash is not known yet; `from_json` only needs it to be well formed.
        let mut unhashed = event.clone();
        unhashed["event_hash"] = json!("00".repeat(32));
        let (hash, bytes) = hash_of_api_event(&unhashed);
        let hash = hex::encode(hash);
        event["event_hash"] = json!(hash);
        prev = Some(hash.clone());
        vectors.push(json!({
            "description": description, "event": event, "erased": erase_fields(event),
            "canonical_hex": hex::encode(bytes), "event_hash": hash,
        }));
    }
    Value::Array(vectors)
}

/// Reads an event as docs/FORMAT.md tells a verifier to, and returns its hash.
fn hash_of_api_event(value: &Value) -> ([u8; 32], Vec<u8>) {
    let stored = sealtrail_model::StoredEvent::from_json(value).unwrap();
    (
        event_hash(
            &stored.event,
            stored.seq,
            stored.received_at_ns,
            &stored.prev_hash,
        ),
        canonical_bytes(
            &stored.event,
            stored.seq,
            stored.received_at_ns,
            &stored.prev_hash,
        ),
    )
}

#[test]
fn v2_vectors_match_the_code_and_the_document_opened_and_erased() {
    if std::env::var_os("SEALTRAIL_WRITE_VECTORS").is_some() {
        std::fs::write(
            VECTORS_V2_PATH,
            serde_json::to_string_pretty(&generate_v2()).unwrap() + "\n",
        )
        .unwrap();
    }
    let vectors: Value =
        serde_json::from_str(&std::fs::read_to_string(VECTORS_V2_PATH).unwrap()).unwrap();
    let format_doc = std::fs::read_to_string(FORMAT_PATH).unwrap();
    let mut prev_hash = [0u8; 32];
    for vector in vectors.as_array().unwrap() {
        let event = &vector["event"];
        assert_eq!(event["prev_hash"], hex::encode(prev_hash), "a chain");
        let (hash, bytes) = hash_of_api_event(event);
        assert!(bytes.starts_with(sealtrail_ledger::FORMAT_TAG_V2));
        assert_eq!(
            hex::encode(&bytes),
            vector["canonical_hex"].as_str().unwrap()
        );
        assert_eq!(hex::encode(hash), vector["event_hash"].as_str().unwrap());
        assert_eq!(event["event_hash"], vector["event_hash"]);
        // Once erased the plaintext and salt are gone; the hash is the same.
        let (erased_hash, _) = hash_of_api_event(&vector["erased"]);
        assert_eq!(erased_hash, hash, "{}", vector["description"]);
        // Each opened commitment opens with its salt; a changed plaintext does not.
        for (field, entry) in event["sealed"].as_object().unwrap() {
            let salt: [u8; 32] = hex::decode(entry["salt"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            let plaintext = match &event[field] {
                Value::String(text) => text.clone(),
                other => serde_json::to_string(other).unwrap(),
            };
            let opened = sealtrail_ledger::commitment(&salt, plaintext.as_bytes());
            assert_eq!(hex::encode(opened), entry["commitment"].as_str().unwrap());
            let forged = sealtrail_ledger::commitment(&salt, b"203.0.113.1");
            assert_ne!(hex::encode(forged), entry["commitment"].as_str().unwrap());
        }
        assert!(
            format_doc.contains(vector["event_hash"].as_str().unwrap()),
            "docs/FORMAT.md must quote the hash of every vector"
        );
        prev_hash = hash;
    }
}
