//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys: the envelope Sealtrail's
//! checkpoints are signed in, and the verifier and signer key strings that name those keys.
//!
//! The format is the one Go's `golang.org/x/mod/sumdb/note` reads and writes, so checkpoints can
//! be checked by existing transparency-log tooling (witnesses, monitors) as well as by ours.
//!
//! Key generation takes a caller-supplied 32-byte seed: the core stays deterministic, and the
//! caller decides where randomness comes from.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The signature type identifier byte of Ed25519 in key strings and key IDs.
pub const ED25519_SIGNATURE_TYPE: u8 = 0x01;
/// Signature lines a note may carry before it is rejected unread. The spec requires accepting at
/// least 16; Go's implementation stops at 100, and so do we, so that a hostile note cannot make a
/// verifier parse without bound.
pub const NOTE_SIGNATURES_MAX: usize = 100;

/// Every signature line starts with an em dash (U+2014) and a space.
const SIGNATURE_LINE_PREFIX: &str = "\u{2014} ";
/// Marks a signer key string, so a secret is never mistaken for a verifier key.
const SIGNER_KEY_PREFIX: &str = "PRIVATE+KEY+";
const ED25519_SIGNATURE_BYTES: usize = 64;
const KEY_ID_BYTES: usize = 4;

/// Whether `name` may name a key: non-empty, and free of Unicode spaces, `+` (the key string
/// separator) and control characters (which no note may contain).
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

/// The key ID of an Ed25519 key: the first four bytes, big-endian, of
/// `SHA-256(name || 0x0A || 0x01 || public_key)`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ED25519_SIGNATURE_TYPE]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Why a key or key string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key name {0:?} is empty or contains a space, a plus sign or a control character")]
    InvalidName(String),
    #[error("key string is not of the form {expected}")]
    Malformed { expected: &'static str },
    #[error("key ID {0:?} is not 8 lowercase hexadecimal digits")]
    InvalidKeyId(String),
    #[error("key material is not valid standard base64")]
    InvalidBase64,
    #[error("key material has {actual} bytes, expected 33 (type byte and 32-byte key)")]
    WrongKeyLength { actual: usize },
    #[error("signature type {0:#04x} is not supported (only Ed25519, 0x01)")]
    UnsupportedAlgorithm(u8),
    #[error("public key is not a valid Ed25519 point")]
    InvalidPublicKey,
    #[error("key ID {stated:08x} does not match the key, whose ID is {computed:08x}")]
    KeyIdMismatch { stated: u32, computed: u32 },
}

/// Checks a name for use in a key.
fn checked_name(name: &str) -> Result<String, KeyError> {
    if is_valid_key_name(name) {
        Ok(name.to_owned())
    } else {
        Err(KeyError::InvalidName(name.to_owned()))
    }
}

/// Parses `hex8+base64(0x01 || key)`, the tail shared by verifier and signer key strings.
fn parse_key_tail(tail: &str, expected: &'static str) -> Result<(u32, [u8; 32]), KeyError> {
    let (id_hex, key_base64) = tail
        .split_once('+')
        .ok_or(KeyError::Malformed { expected })?;
    let id_is_canonical = id_hex.len() == 8
        && id_hex
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
    let stated = u32::from_str_radix(id_hex, 16)
        .ok()
        .filter(|_| id_is_canonical)
        .ok_or_else(|| KeyError::InvalidKeyId(id_hex.to_owned()))?;
    let material = BASE64
        .decode(key_base64)
        .map_err(|_| KeyError::InvalidBase64)?;
    let (&algorithm, key) = material
        .split_first()
        .ok_or(KeyError::WrongKeyLength { actual: 0 })?;
    if algorithm != ED25519_SIGNATURE_TYPE {
        return Err(KeyError::UnsupportedAlgorithm(algorithm));
    }
    let key = <[u8; 32]>::try_from(key).map_err(|_| KeyError::WrongKeyLength {
        actual: material.len(),
    })?;
    Ok((stated, key))
}

/// `base64(0x01 || key)`.
fn encode_key_material(key: &[u8; 32]) -> String {
    let mut material = [0u8; 33];
    material[0] = ED25519_SIGNATURE_TYPE;
    material[1..].copy_from_slice(key);
    BASE64.encode(material)
}

/// A public key that verifies note signatures, with its name and key ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: u32,
    public_key: VerifyingKey,
}

impl NoteVerifier {
    /// The verifier of an Ed25519 public key under `name`.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<Self, KeyError> {
        let name = checked_name(name)?;
        let public_key =
            VerifyingKey::from_bytes(public_key).map_err(|_| KeyError::InvalidPublicKey)?;
        Ok(NoteVerifier {
            key_id: key_id(&name, public_key.as_bytes()),
            name,
            public_key,
        })
    }

    /// Parses a verifier key string, `name+hex8keyid+base64(0x01 || public_key)`, and checks that
    /// the key ID matches the name and key.
    pub fn parse(verifier_key: &str) -> Result<Self, KeyError> {
        const EXPECTED: &str = "name+keyid+base64";
        let (name, tail) = verifier_key
            .split_once('+')
            .ok_or(KeyError::Malformed { expected: EXPECTED })?;
        let (stated, public_key) = parse_key_tail(tail, EXPECTED)?;
        let verifier = NoteVerifier::new(name, &public_key)?;
        if verifier.key_id != stated {
            return Err(KeyError::KeyIdMismatch {
                stated,
                computed: verifier.key_id,
            });
        }
        Ok(verifier)
    }

    /// The verifier key string, `name+hex8keyid+base64(0x01 || public_key)`.
    pub fn verifier_key(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            encode_key_material(self.public_key.as_bytes())
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.public_key.to_bytes()
    }

    /// Whether `signature` (64 bytes, without the key ID) is this key's signature of `message`.
    /// Uses strict verification, which also rejects weak keys and non-canonical signatures.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = <[u8; ED25519_SIGNATURE_BYTES]>::try_from(signature) else {
            return false;
        };
        self.public_key
            .verify_strict(message, &Signature::from_bytes(&signature))
            .is_ok()
    }
}

impl std::fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.verifier_key())
    }
}

impl std::str::FromStr for NoteVerifier {
    type Err = KeyError;

    fn from_str(verifier_key: &str) -> Result<Self, KeyError> {
        NoteVerifier::parse(verifier_key)
    }
}

/// A private key that signs notes, with its name and key ID. Its `Debug` output leaves the
/// secret out; [`NoteSigner::signer_key`] is the only way to get it back.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key_id: u32,
    signing_key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// The signer whose Ed25519 private key is `seed` (RFC 8032's 32-byte secret key). To
    /// generate a new key, pass 32 bytes from a cryptographically secure random source.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, KeyError> {
        let name = checked_name(name)?;
        let signing_key = SigningKey::from_bytes(seed);
        Ok(NoteSigner {
            key_id: key_id(&name, signing_key.verifying_key().as_bytes()),
            name,
            signing_key,
        })
    }

    /// Parses a signer key string, `PRIVATE+KEY+name+hex8keyid+base64(0x01 || seed)`, and checks
    /// that the key ID matches the name and the derived public key.
    pub fn parse(signer_key: &str) -> Result<Self, KeyError> {
        const EXPECTED: &str = "PRIVATE+KEY+name+keyid+base64";
        let rest = signer_key
            .strip_prefix(SIGNER_KEY_PREFIX)
            .ok_or(KeyError::Malformed { expected: EXPECTED })?;
        let (name, tail) = rest
            .split_once('+')
            .ok_or(KeyError::Malformed { expected: EXPECTED })?;
        let (stated, seed) = parse_key_tail(tail, EXPECTED)?;
        let signer = NoteSigner::from_seed(name, &seed)?;
        if signer.key_id != stated {
            return Err(KeyError::KeyIdMismatch {
                stated,
                computed: signer.key_id,
            });
        }
        Ok(signer)
    }

    /// The signer key string, `PRIVATE+KEY+name+hex8keyid+base64(0x01 || seed)`. It is the
    /// secret: store it like a password.
    pub fn signer_key(&self) -> String {
        format!(
            "{SIGNER_KEY_PREFIX}{}+{:08x}+{}",
            self.name,
            self.key_id,
            encode_key_material(self.signing_key.as_bytes())
        )
    }

    /// The matching verifier, to publish.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            public_key: self.signing_key.verifying_key(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The Ed25519 signature of `message` (deterministic, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing_key.sign(message).to_bytes()
    }
}

/// Why a note could not be signed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("note contains a control character other than newline")]
    ControlCharacter,
    #[error("note text must be non-empty and end in a newline")]
    TextWithoutFinalNewline,
    #[error("note has no signature block (a blank line followed by signature lines)")]
    MissingSignatures,
    #[error("signature line {line} is malformed: {reason}")]
    MalformedSignatureLine { line: usize, reason: &'static str },
    #[error("note has more than {NOTE_SIGNATURES_MAX} signature lines")]
    TooManySignatures,
    #[error("more than one verifier has key {name}+{key_id:08x}")]
    AmbiguousKey { name: String, key_id: u32 },
    #[error("signature by known key {name}+{key_id:08x} does not verify")]
    InvalidSignature { name: String, key_id: u32 },
    #[error("note has no valid signature from a known key")]
    NoKnownSignature,
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    /// The signature bytes after the key ID.
    pub signature: Vec<u8>,
}

/// A note with at least one valid signature from a known key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedNote {
    /// The signed text, including its final newline.
    pub text: String,
    /// Signatures that verified, one per known key, in note order.
    pub verified: Vec<NoteSignature>,
    /// Signatures from keys the caller did not pass, ignored as the spec requires (a witness's
    /// cosignature, say), without repeats, in note order.
    pub unverified: Vec<NoteSignature>,
}

/// Rejects control characters other than newline, which no note may contain.
fn check_characters(text: &str) -> Result<(), NoteError> {
    if text.bytes().any(|byte| byte < 0x20 && byte != b'\n') {
        return Err(NoteError::ControlCharacter);
    }
    Ok(())
}

/// Signs `text` and returns the note: the text, a blank line, and the signature line
/// `— name base64(keyid || signature)`. The text MUST end in a newline.
pub fn sign_note(text: &str, signer: &NoteSigner) -> Result<String, NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::TextWithoutFinalNewline);
    }
    check_characters(text)?;
    let mut signature = [0u8; KEY_ID_BYTES + ED25519_SIGNATURE_BYTES];
    signature[..KEY_ID_BYTES].copy_from_slice(&signer.key_id.to_be_bytes());
    signature[KEY_ID_BYTES..].copy_from_slice(&signer.sign(text.as_bytes()));
    Ok(format!(
        "{text}\n{SIGNATURE_LINE_PREFIX}{} {}\n",
        signer.name,
        BASE64.encode(signature)
    ))
}

/// Parses one signature line (without its newline).
fn parse_signature_line(line: &str, number: usize) -> Result<NoteSignature, NoteError> {
    let malformed = |reason| NoteError::MalformedSignatureLine {
        line: number,
        reason,
    };
    let rest = line
        .strip_prefix(SIGNATURE_LINE_PREFIX)
        .ok_or(malformed("does not start with an em dash and a space"))?;
    let (name, signature_base64) = rest
        .split_once(' ')
        .ok_or(malformed("has no space between key name and signature"))?;
    if !is_valid_key_name(name) {
        return Err(malformed(
            "key name is empty or contains a space or plus sign",
        ));
    }
    let bytes = BASE64
        .decode(signature_base64)
        .map_err(|_| malformed("signature is not valid standard base64"))?;
    if bytes.len() <= KEY_ID_BYTES {
        return Err(malformed("signature is too short to hold a key ID"));
    }
    let (id, signature) = bytes.split_at(KEY_ID_BYTES);
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
        signature: signature.to_vec(),
    })
}

/// Parses a signed note and checks its signatures against `verifiers`.
///
/// A signature whose key name and ID match a known verifier MUST verify, or the whole note is
/// rejected; signatures from unknown keys are skipped; at least one known key must have signed.
pub fn open_note(note: &str, verifiers: &[NoteVerifier]) -> Result<VerifiedNote, NoteError> {
    check_characters(note)?;
    // The text ends at the last blank line; everything after it is signature lines.
    let split = note.rfind("\n\n").ok_or(NoteError::MissingSignatures)?;
    let (text, signature_block) = (&note[..=split], &note[split + 2..]);
    let lines = signature_block
        .strip_suffix('\n')
        .ok_or(NoteError::MissingSignatures)?;

    let mut verified: Vec<NoteSignature> = Vec::new();
    let mut unverified: Vec<NoteSignature> = Vec::new();
    for (offset, line) in lines.split('\n').enumerate() {
        if offset == NOTE_SIGNATURES_MAX {
            return Err(NoteError::TooManySignatures);
        }
        let signature = parse_signature_line(line, offset + 1)?;
        let mut known = verifiers
            .iter()
            .filter(|v| v.name == signature.name && v.key_id == signature.key_id);
        let Some(verifier) = known.next() else {
            if !unverified.contains(&signature) {
                unverified.push(signature);
            }
            continue;
        };
        if known.next().is_some() {
            // A verifier list with two keys of one name and ID is misconfigured or tampered
            // with; refuse rather than guess which key is meant.
            return Err(NoteError::AmbiguousKey {
                name: signature.name,
                key_id: signature.key_id,
            });
        }
        if verified
            .iter()
            .any(|seen| seen.name == signature.name && seen.key_id == signature.key_id)
        {
            continue;
        }
        if !verifier.verify(text.as_bytes(), &signature.signature) {
            return Err(NoteError::InvalidSignature {
                name: signature.name,
                key_id: signature.key_id,
            });
        }
        verified.push(signature);
    }
    if verified.is_empty() {
        return Err(NoteError::NoKnownSignature);
    }
    Ok(VerifiedNote {
        text: text.to_owned(),
        verified,
        unverified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(name: &str, seed_byte: u8) -> NoteSigner {
        NoteSigner::from_seed(name, &[seed_byte; 32]).unwrap()
    }

    #[test]
    fn key_names_follow_the_spec() {
        for name in ["a", "example.com/log42", "sealtrail/acme", "ünïcode"] {
            assert!(is_valid_key_name(name), "{name:?}");
        }
        for name in ["", "a b", "a+b", "a\tb", "a\u{2003}b", "a\u{1}b", "a\nb"] {
            assert!(!is_valid_key_name(name), "{name:?}");
        }
        assert_eq!(
            NoteSigner::from_seed("a+b", &[1; 32]).unwrap_err(),
            KeyError::InvalidName("a+b".into())
        );
    }

    #[test]
    fn key_strings_round_trip() {
        let signer = signer("sealtrail.example/log", 9);
        let verifier = signer.verifier();
        let parsed_signer = NoteSigner::parse(&signer.signer_key()).unwrap();
        assert_eq!(parsed_signer.signer_key(), signer.signer_key());
        assert_eq!(
            NoteVerifier::parse(&verifier.verifier_key()),
            Ok(verifier.clone())
        );
        assert_eq!(verifier.to_string().parse::<NoteVerifier>(), Ok(verifier));
        assert!(signer
            .signer_key()
            .starts_with("PRIVATE+KEY+sealtrail.example/log+"));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let signer = signer("log", 3);
        let debug = format!("{signer:?}");
        let secret = signer.signer_key();
        let seed_base64 = secret.rsplit('+').next().unwrap();
        assert!(!debug.contains(seed_base64), "{debug}");
        assert!(debug.contains("log"));
    }

    #[test]
    fn mangled_key_strings_are_rejected() {
        let verifier = signer("log", 5).verifier();
        let key = verifier.verifier_key();
        // Every strict prefix, suffix and single-character change must fail.
        for end in 0..key.len() {
            if key.is_char_boundary(end) {
                assert!(NoteVerifier::parse(&key[..end]).is_err(), "{}", &key[..end]);
                assert!(NoteVerifier::parse(&key[end + 1..]).is_err());
            }
        }
        let mut bytes = key.clone().into_bytes();
        for position in 0..bytes.len() {
            bytes[position] = bytes[position].wrapping_add(1);
            if let Ok(mangled) = std::str::from_utf8(&bytes) {
                assert!(NoteVerifier::parse(mangled).is_err(), "{mangled}");
            }
            bytes[position] = bytes[position].wrapping_sub(1);
        }
        assert_eq!(
            NoteVerifier::parse(&key.to_uppercase()).map(|_| ()),
            Err(KeyError::InvalidKeyId(
                key.split('+').nth(1).unwrap().to_uppercase()
            ))
        );
    }

    #[test]
    fn signed_notes_open_with_the_right_key_only() {
        let alice = signer("alice", 1);
        let bob = signer("bob", 2);
        let text = "line one\n\nline three\n";
        let note = sign_note(text, &alice).unwrap();
        let opened = open_note(&note, &[alice.verifier()]).unwrap();
        assert_eq!(opened.text, text);
        assert_eq!(opened.verified.len(), 1);
        assert_eq!(opened.verified[0].key_id, alice.key_id());
        assert_eq!(
            open_note(&note, &[bob.verifier()]),
            Err(NoteError::NoKnownSignature)
        );
        assert_eq!(open_note(&note, &[]), Err(NoteError::NoKnownSignature));
    }

    #[test]
    fn a_bad_signature_from_a_known_key_rejects_the_note() {
        let alice = signer("alice", 1);
        let note = sign_note("hello\n", &alice).unwrap();
        let tampered = note.replacen("hello", "hellO", 1);
        assert_eq!(
            open_note(&tampered, &[alice.verifier()]),
            Err(NoteError::InvalidSignature {
                name: "alice".into(),
                key_id: alice.key_id()
            })
        );
        // Same name, different key: the ID differs, so the signature is merely unknown.
        let impostor = signer("alice", 7);
        assert_eq!(
            open_note(&note, &[impostor.verifier()]),
            Err(NoteError::NoKnownSignature)
        );
    }

    #[test]
    fn cosignatures_from_unknown_keys_are_kept_aside() {
        let log = signer("log", 1);
        let witness = signer("witness", 2);
        let text = "body\n";
        let note = sign_note(text, &log).unwrap();
        let witness_note = sign_note(text, &witness).unwrap();
        let witness_line = witness_note.rsplit_once("\n\n").unwrap().1;
        let cosigned = format!("{note}{witness_line}{witness_line}");
        let opened = open_note(&cosigned, &[log.verifier()]).unwrap();
        assert_eq!(opened.verified.len(), 1);
        assert_eq!(opened.unverified.len(), 1, "repeats are dropped");
        assert_eq!(opened.unverified[0].name, "witness");
        let both = open_note(&cosigned, &[log.verifier(), witness.verifier()]).unwrap();
        assert_eq!(both.verified.len(), 2);
        assert!(both.unverified.is_empty());
        assert_eq!(
            open_note(&note, &[log.verifier(), log.verifier()]),
            Err(NoteError::AmbiguousKey {
                name: "log".into(),
                key_id: log.key_id()
            })
        );
    }

    #[test]
    fn malformed_notes_are_rejected() {
        let log = signer("log", 1);
        let note = sign_note("text\n", &log).unwrap();
        let signature_line = note.rsplit_once("\n\n").unwrap().1;
        let verifiers = [log.verifier()];
        let cases: Vec<(String, &str)> = vec![
            ("text\n".into(), "no signatures"),
            ("text\n\n".into(), "empty signature block"),
            (note.trim_end_matches('\n').into(), "no final newline"),
            (format!("text\r\n\n{signature_line}"), "carriage return"),
            (
                format!("\u{1}text\n\n{signature_line}"),
                "control character",
            ),
            (format!("{note}\n"), "trailing blank line"),
            (format!("{note}Unexpected line.\n"), "trailing text"),
            (note.replace('\u{2014}', "-"), "hyphen instead of em dash"),
            (note.replace("— log ", "— log  "), "double space"),
            (note.replace("— log ", "— lo+g "), "plus in name"),
            (
                "text\n\n— log AAAA\n".into(),
                "signature shorter than a key ID",
            ),
            ("text\n\n— log !!!!\n".into(), "bad base64"),
            (
                format!("text\n\n{}", signature_line.repeat(NOTE_SIGNATURES_MAX + 1)),
                "too many signatures",
            ),
        ];
        for (bad, why) in cases {
            assert!(open_note(&bad, &verifiers).is_err(), "accepted: {why}");
        }
        assert_eq!(
            sign_note("no newline", &log),
            Err(NoteError::TextWithoutFinalNewline)
        );
        assert_eq!(sign_note("", &log), Err(NoteError::TextWithoutFinalNewline));
        assert_eq!(sign_note("a\tb\n", &log), Err(NoteError::ControlCharacter));
    }
}
