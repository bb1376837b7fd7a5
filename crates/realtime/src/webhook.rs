//! Standard Webhooks (<https://www.standardwebhooks.com>): the secret, the signature a sender
//! puts in `webhook-signature`, its check on the receiving side, and the JSON payload.
//!
//! A message is signed as HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}` with the
//! secret's raw bytes as the key, and sent as `v1,<base64 of the tag>`. Following the spec keeps
//! every receiver free to verify with the Standard Webhooks library of its own language, so
//! Sealtrail's deliveries need no bespoke code on the other side.
//!
//! Nothing here reads the clock: the signing time and the receiver's "now" are arguments, so
//! retries (which the spec says are signed anew, with a fresh timestamp) and the tolerance
//! window are decided by the caller and tested without sleeping.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of a secret's text form, as the spec writes it (`whsec_` + base64 of the key).
const SECRET_PREFIX: &str = "whsec_";

/// The signature scheme this module writes and the only one it accepts. The spec reserves other
/// prefixes (`v1a` for Ed25519) that a header may carry beside it; those are skipped.
const SIGNATURE_VERSION: &str = "v1";

/// Fewest key bytes a secret may have: the spec's lower bound (192 bits), below which a
/// brute-forced key is a real risk.
pub const SECRET_BYTES_MIN: usize = 24;

/// Most key bytes a secret may have: the spec's upper bound. HMAC would take longer keys (it
/// hashes them down), but libraries on the receiving side refuse them.
pub const SECRET_BYTES_MAX: usize = 64;

/// Most signatures a `webhook-signature` header may list. A sender rotating its secret sends two;
/// a header with more is malformed or an attempt to make the receiver do work for nothing.
const SIGNATURES_MAX: usize = 16;

/// A webhook endpoint's signing secret: the raw key bytes.
///
/// `Debug` never prints the key, so a secret can sit inside logged configuration safely.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

/// Why a secret's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret must start with \"{SECRET_PREFIX}\"")]
    MissingPrefix,
    #[error("a webhook secret must be standard base64 after \"{SECRET_PREFIX}\"")]
    NotBase64,
    #[error(
        "a webhook secret must hold {SECRET_BYTES_MIN} to {SECRET_BYTES_MAX} key bytes; \
         this one holds {key_bytes}"
    )]
    KeyLength { key_bytes: usize },
}

/// Why a delivery's signature was refused. A receiver answers every one of them the same way
/// (the message is not trusted), but the reason helps whoever debugs the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the timestamp is {age_secs} s old, more than the {tolerance_secs} s tolerated")]
    TimestampTooOld { age_secs: u64, tolerance_secs: u64 },
    #[error("the timestamp is {ahead_secs} s ahead, more than the {tolerance_secs} s tolerated")]
    TimestampInFuture {
        ahead_secs: u64,
        tolerance_secs: u64,
    },
    #[error("the signature header lists more than {SIGNATURES_MAX} signatures")]
    TooManySignatures,
    #[error("the signature header holds no \"{SIGNATURE_VERSION},\" signature")]
    NoSignature,
    #[error("no signature in the header matches the message")]
    Mismatch,
}

impl WebhookSecret {
    /// Reads a secret from its text form, `whsec_<standard base64 of 24 to 64 bytes>`. Spaces
    /// and line ends around it are ignored, as a secret pasted into a file usually brings one.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = BASE64.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        if !(SECRET_BYTES_MIN..=SECRET_BYTES_MAX).contains(&key.len()) {
            return Err(SecretError::KeyLength {
                key_bytes: key.len(),
            });
        }
        Ok(Self { key })
    }

    /// A secret from 32 bytes the caller drew from a cryptographic random source (this crate
    /// does no IO, so it cannot draw them itself).
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self { key: key.to_vec() }
    }

    /// The text form, `whsec_…`, to show once to the endpoint's owner and to store.
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}", BASE64.encode(&self.key))
    }

    /// A MAC keyed with the secret that has absorbed the signed content of one message.
    fn mac_over(&self, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length (longer ones are hashed down)");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp_secs.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("WebhookSecret(<redacted>)")
    }
}

/// The `webhook-signature` header value for one delivery: `v1,<base64 HMAC-SHA256 over
/// "{msg_id}.{timestamp_secs}.{body}">`. `body` MUST be the exact bytes sent, since the receiver
/// verifies the raw body before parsing it.
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let tag = secret
        .mac_over(msg_id, timestamp_secs, body)
        .finalize()
        .into_bytes();
    format!("{SIGNATURE_VERSION},{}", BASE64.encode(tag))
}

/// Checks a delivery as a receiver does: the timestamp MUST lie within `tolerance_secs` of
/// `now_secs` either way (the spec's replay protection; it suggests five minutes), and at least one
/// `v1` signature among the space-separated entries of `header_value` MUST match. Tags are compared
/// in constant time, so a forger learns nothing from how long a refusal took.
pub fn verify(
    secret: &WebhookSecret,
    msg_id: &str,
    timestamp_secs: i64,
    body: &[u8],
    header_value: &str,
    now_secs: i64,
    tolerance_secs: u64,
) -> Result<(), VerifyError> {
    let drift_secs = now_secs.abs_diff(timestamp_secs);
    if drift_secs > tolerance_secs {
        return Err(if timestamp_secs < now_secs {
            VerifyError::TimestampTooOld {
                age_secs: drift_secs,
                tolerance_secs,
            }
        } else {
            VerifyError::TimestampInFuture {
                ahead_secs: drift_secs,
                tolerance_secs,
            }
        });
    }
    let entries: Vec<&str> = header_value.split_ascii_whitespace().collect();
    if entries.len() > SIGNATURES_MAX {
        return Err(VerifyError::TooManySignatures);
    }
    let tags: Vec<Vec<u8>> = entries
        .iter()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == SIGNATURE_VERSION)
        // An undecodable entry cannot match; it is skipped like a foreign version, so one
        // garbled signature does not hide a good one beside it.
        .filter_map(|(_, encoded)| BASE64.decode(encoded).ok())
        .collect();
    if tags.is_empty() {
        return Err(VerifyError::NoSignature);
    }
    let mac = secret.mac_over(msg_id, timestamp_secs, body);
    if tags.iter().any(|tag| mac.clone().verify_slice(tag).is_ok()) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// The JSON payload of a delivery, in the spec's envelope: `{"type": kind, "timestamp": RFC 3339
/// of timestamp_ns, "data": data}`, written compactly in that order.
pub fn message_body(kind: &str, timestamp_ns: i64, data: &serde_json::Value) -> Vec<u8> {
    // Written by hand rather than through a `json!` map, whose keys serde_json sorts: the spec
    // and its examples put `type` first, and a human reading a delivery log expects it there.
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(b"{\"type\":");
    push_json(&mut body, &serde_json::Value::from(kind));
    body.extend_from_slice(b",\"timestamp\":");
    push_json(
        &mut body,
        &serde_json::Value::from(sealtrail_model::format_timestamp(timestamp_ns)),
    );
    body.extend_from_slice(b",\"data\":");
    push_json(&mut body, data);
    body.push(b'}');
    body
}

fn push_json(out: &mut Vec<u8>, value: &serde_json::Value) {
    serde_json::to_writer(out, value)
        .expect("a JSON value always serialises, and writing to a Vec never fails");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The reference vector shared by the Standard Webhooks libraries' test suites.
    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: i64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const FIVE_MINUTES_SECS: u64 = 300;

    fn vector_secret() -> WebhookSecret {
        WebhookSecret::parse(VECTOR_SECRET).unwrap()
    }

    fn verify_vector(header: &str, now_secs: i64) -> Result<(), VerifyError> {
        verify(
            &vector_secret(),
            VECTOR_MSG_ID,
            VECTOR_TIMESTAMP,
            VECTOR_BODY,
            header,
            now_secs,
            FIVE_MINUTES_SECS,
        )
    }

    #[test]
    fn signs_the_reference_vector() {
        let signature = sign(
            &vector_secret(),
            VECTOR_MSG_ID,
            VECTOR_TIMESTAMP,
            VECTOR_BODY,
        );
        assert_eq!(signature, VECTOR_SIGNATURE);
    }

    #[test]
    fn verifies_the_reference_vector() {
        assert_eq!(verify_vector(VECTOR_SIGNATURE, VECTOR_TIMESTAMP), Ok(()));
    }

    #[test]
    fn a_changed_body_id_timestamp_or_secret_fails() {
        let secret = vector_secret();
        let other_secret = WebhookSecret::from_bytes([7; 32]);
        let check = |secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]| {
            verify(
                secret,
                msg_id,
                timestamp,
                body,
                VECTOR_SIGNATURE,
                timestamp,
                FIVE_MINUTES_SECS,
            )
        };
        let mismatch = Err(VerifyError::Mismatch);
        assert_eq!(
            check(
                &secret,
                VECTOR_MSG_ID,
                VECTOR_TIMESTAMP,
                br#"{"test": 2432232315}"#
            ),
            mismatch
        );
        assert_eq!(
            check(&secret, "msg_other", VECTOR_TIMESTAMP, VECTOR_BODY),
            mismatch
        );
        assert_eq!(
            check(&secret, VECTOR_MSG_ID, VECTOR_TIMESTAMP + 1, VECTOR_BODY),
            mismatch
        );
        assert_eq!(
            check(&other_secret, VECTOR_MSG_ID, VECTOR_TIMESTAMP, VECTOR_BODY),
            mismatch
        );
    }

    #[test]
    fn one_matching_signature_among_several_is_enough() {
        // A sender rotating its secret signs with both; a receiver holding either one accepts.
        let header = format!("v1,Zm9v v1a,c29tZWVkMjU1MTk= v1,%%%notbase64 {VECTOR_SIGNATURE}");
        assert_eq!(verify_vector(&header, VECTOR_TIMESTAMP), Ok(()));
        let rotated = WebhookSecret::from_bytes([9; 32]);
        let both = format!(
            "{} {}",
            sign(&rotated, VECTOR_MSG_ID, VECTOR_TIMESTAMP, VECTOR_BODY),
            sign(
                &vector_secret(),
                VECTOR_MSG_ID,
                VECTOR_TIMESTAMP,
                VECTOR_BODY
            ),
        );
        for secret in [&rotated, &vector_secret()] {
            let result = verify(
                secret,
                VECTOR_MSG_ID,
                VECTOR_TIMESTAMP,
                VECTOR_BODY,
                &both,
                VECTOR_TIMESTAMP,
                FIVE_MINUTES_SECS,
            );
            assert_eq!(result, Ok(()));
        }
    }

    #[test]
    fn a_header_without_a_v1_signature_is_refused() {
        for header in ["", "   ", "v1a,c29tZQ==", "nocomma", "v1,###"] {
            assert_eq!(
                verify_vector(header, VECTOR_TIMESTAMP),
                Err(VerifyError::NoSignature),
                "{header:?}"
            );
        }
        assert_eq!(
            verify_vector("v1,AAAA", VECTOR_TIMESTAMP),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn a_header_with_too_many_signatures_is_refused() {
        let header = vec![VECTOR_SIGNATURE; SIGNATURES_MAX + 1].join(" ");
        assert_eq!(
            verify_vector(&header, VECTOR_TIMESTAMP),
            Err(VerifyError::TooManySignatures)
        );
        let header = vec![VECTOR_SIGNATURE; SIGNATURES_MAX].join(" ");
        assert_eq!(verify_vector(&header, VECTOR_TIMESTAMP), Ok(()));
    }

    #[test]
    fn timestamps_outside_the_tolerance_are_refused_either_way() {
        let tolerance = i64::try_from(FIVE_MINUTES_SECS).unwrap();
        assert_eq!(
            verify_vector(VECTOR_SIGNATURE, VECTOR_TIMESTAMP + tolerance),
            Ok(())
        );
        assert_eq!(
            verify_vector(VECTOR_SIGNATURE, VECTOR_TIMESTAMP - tolerance),
            Ok(())
        );
        assert_eq!(
            verify_vector(VECTOR_SIGNATURE, VECTOR_TIMESTAMP + tolerance + 1),
            Err(VerifyError::TimestampTooOld {
                age_secs: FIVE_MINUTES_SECS + 1,
                tolerance_secs: FIVE_MINUTES_SECS
            })
        );
        assert_eq!(
            verify_vector(VECTOR_SIGNATURE, VECTOR_TIMESTAMP - tolerance - 1),
            Err(VerifyError::TimestampInFuture {
                ahead_secs: FIVE_MINUTES_SECS + 1,
                tolerance_secs: FIVE_MINUTES_SECS
            })
        );
        // Extreme clocks must not overflow the drift computation.
        assert!(verify_vector(VECTOR_SIGNATURE, i64::MIN).is_err());
        assert!(verify_vector(VECTOR_SIGNATURE, i64::MAX).is_err());
    }

    #[test]
    fn secret_text_round_trips() {
        let secret = WebhookSecret::from_bytes([0xa5; 32]);
        let text = secret.to_text();
        assert!(text.starts_with("whsec_"), "{text}");
        assert_eq!(WebhookSecret::parse(&text), Ok(secret));
        assert_eq!(vector_secret().to_text(), VECTOR_SECRET);
    }

    #[test]
    fn secret_parse_names_the_reason() {
        assert_eq!(
            WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::MissingPrefix)
        );
        assert_eq!(
            WebhookSecret::parse("whsec_not base64!"),
            Err(SecretError::NotBase64)
        );
        let encode = |len: usize| format!("whsec_{}", BASE64.encode(vec![1u8; len]));
        assert_eq!(
            WebhookSecret::parse(&encode(SECRET_BYTES_MIN - 1)),
            Err(SecretError::KeyLength {
                key_bytes: SECRET_BYTES_MIN - 1
            })
        );
        assert_eq!(
            WebhookSecret::parse(&encode(SECRET_BYTES_MAX + 1)),
            Err(SecretError::KeyLength {
                key_bytes: SECRET_BYTES_MAX + 1
            })
        );
        assert!(WebhookSecret::parse(&encode(SECRET_BYTES_MIN)).is_ok());
        assert!(WebhookSecret::parse(&encode(SECRET_BYTES_MAX)).is_ok());
        let message = SecretError::KeyLength { key_bytes: 3 }.to_string();
        assert!(
            message.contains("24 to 64") && message.contains('3'),
            "{message}"
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let secret = vector_secret();
        let shown = format!("{secret:?} {:?}", Some(&secret));
        assert!(!shown.contains("MfKQ9r8G"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn message_body_is_the_spec_envelope() {
        let data = json!({"seq": 7, "tenant_id": "acme"});
        let body = message_body("alert.triggered", 1_614_265_330_500_000_000, &data);
        assert_eq!(
            String::from_utf8(body.clone()).unwrap(),
            r#"{"type":"alert.triggered","timestamp":"2021-02-25T15:02:10.5Z","data":{"seq":7,"tenant_id":"acme"}}"#
        );
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["data"], data);
        // A kind needing escapes stays valid JSON.
        let odd = message_body("a\"b\\c", 0, &json!(null));
        let parsed: serde_json::Value = serde_json::from_slice(&odd).unwrap();
        assert_eq!(parsed["type"], "a\"b\\c");
        assert_eq!(parsed["timestamp"], "1970-01-01T00:00:00Z");
    }

    #[test]
    fn a_signed_body_verifies() {
        let secret = WebhookSecret::from_bytes([42; 32]);
        let body = message_body(
            "event.committed",
            1_700_000_000_000_000_000,
            &json!({"a": 1}),
        );
        let header = sign(&secret, "msg_1", 1_700_000_000, &body);
        assert_eq!(
            verify(
                &secret,
                "msg_1",
                1_700_000_000,
                &body,
                &header,
                1_700_000_100,
                300
            ),
            Ok(())
        );
    }
}
