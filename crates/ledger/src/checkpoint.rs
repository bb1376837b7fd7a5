//! C2SP tlog checkpoints (<https://c2sp.org/tlog-checkpoint>): the signed statement "the log
//! `origin` has `tree_size` leaves and this root hash", which clients keep and later check
//! consistency proofs against.
//!
//! The body is three lines, `origin`, the decimal tree size and the base64 root hash, optionally
//! followed by extension lines; it is signed as a note (see `note.rs`). Parsing is strict, so a
//! checkpoint has exactly one spelling and anything we format we can parse back.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::merkle::Hash;
use crate::note::{open_note, sign_note, NoteError, NoteSigner, NoteVerifier};

/// Origins of Sealtrail's per-tenant logs are this prefix followed by the tenant id
/// (docs/MERKLE.md).
pub const ORIGIN_PREFIX: &str = "sealtrail/";

/// The conventional origin of a tenant's log, `sealtrail/<tenant_id>`. Tenant ids are
/// `[A-Za-z0-9_.-]`, so the origin is also a valid key name.
pub fn tenant_origin(tenant_id: &str) -> String {
    format!("{ORIGIN_PREFIX}{tenant_id}")
}

/// A log's tree head: its identity, size and root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Names the log that issued the checkpoint; for Sealtrail, `sealtrail/<tenant_id>`.
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: Hash,
    /// Opaque lines after the root hash. Sealtrail writes none (the spec does not recommend
    /// them, since monitors cannot audit them), but keeps any it reads.
    pub extensions: Vec<String>,
}

/// Why a checkpoint body could not be formatted, parsed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint body must end in a newline")]
    MissingFinalNewline,
    #[error("checkpoint body has {lines} lines, needs at least 3 (origin, tree size, root hash)")]
    TooFewLines { lines: usize },
    #[error("checkpoint origin is empty")]
    EmptyOrigin,
    #[error("checkpoint line {line} contains a control character")]
    ControlCharacter { line: usize },
    #[error(
        "checkpoint tree size {0:?} is not a decimal number without leading zeros that fits in 64 bits"
    )]
    InvalidTreeSize(String),
    #[error("checkpoint root hash {0:?} is not the canonical base64 of 32 bytes")]
    InvalidRootHash(String),
    #[error("checkpoint extension line {line} is empty")]
    EmptyExtensionLine { line: usize },
    #[error("checkpoint is for origin {actual:?}, expected {expected:?}")]
    WrongOrigin { expected: String, actual: String },
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
}

/// Rejects characters below U+0020: no line of a body may contain one (newline separates lines).
fn check_line(text: &str, line: usize) -> Result<(), CheckpointError> {
    if text.chars().any(|c| c < ' ') {
        return Err(CheckpointError::ControlCharacter { line });
    }
    Ok(())
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: impl Into<String>, tree_size: u64, root_hash: Hash) -> Self {
        Checkpoint {
            origin: origin.into(),
            tree_size,
            root_hash,
            extensions: Vec::new(),
        }
    }

    /// The note text: `origin\n`, `tree_size\n`, `base64(root_hash)\n`, then each extension line.
    /// Fails on what [`Checkpoint::parse_body`] would reject: an empty origin, an empty
    /// extension line, or a control character (including newline) in either.
    pub fn format_body(&self) -> Result<String, CheckpointError> {
        if self.origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        check_line(&self.origin, 1)?;
        for (offset, extension) in self.extensions.iter().enumerate() {
            let line = offset + 4;
            if extension.is_empty() {
                return Err(CheckpointError::EmptyExtensionLine { line });
            }
            check_line(extension, line)?;
        }
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.tree_size,
            BASE64.encode(self.root_hash)
        );
        for extension in &self.extensions {
            body.push_str(extension);
            body.push('\n');
        }
        Ok(body)
    }

    /// Parses a checkpoint body strictly: every line non-empty and free of control characters,
    /// the tree size canonical decimal (`0`, or no leading zero), the root hash the canonical
    /// padded base64 of exactly 32 bytes.
    pub fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        let lines = body
            .strip_suffix('\n')
            .ok_or(CheckpointError::MissingFinalNewline)?;
        let lines: Vec<&str> = lines.split('\n').collect();
        let [origin, tree_size, root_hash, extensions @ ..] = lines.as_slice() else {
            return Err(CheckpointError::TooFewLines { lines: lines.len() });
        };
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        check_line(origin, 1)?;
        let tree_size = parse_tree_size(tree_size)?;
        let root_hash = parse_root_hash(root_hash)?;
        for (offset, extension) in extensions.iter().enumerate() {
            let line = offset + 4;
            if extension.is_empty() {
                return Err(CheckpointError::EmptyExtensionLine { line });
            }
            check_line(extension, line)?;
        }
        Ok(Checkpoint {
            origin: (*origin).to_owned(),
            tree_size,
            root_hash,
            extensions: extensions.iter().map(|line| (*line).to_owned()).collect(),
        })
    }
}

/// `0`, or ASCII digits without a leading zero, that fit in a `u64`.
fn parse_tree_size(text: &str) -> Result<u64, CheckpointError> {
    let canonical = !text.is_empty()
        && text.bytes().all(|byte| byte.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical
        .then(|| text.parse().ok())
        .flatten()
        .ok_or_else(|| CheckpointError::InvalidTreeSize(text.to_owned()))
}

/// Padded standard base64 of exactly 32 bytes, in its one canonical spelling.
fn parse_root_hash(text: &str) -> Result<Hash, CheckpointError> {
    // The decoder already rejects non-zero trailing bits, so any decoding that succeeds is the
    // canonical spelling of its bytes.
    BASE64
        .decode(text)
        .ok()
        .and_then(|bytes| Hash::try_from(bytes).ok())
        .ok_or_else(|| CheckpointError::InvalidRootHash(text.to_owned()))
}

/// Formats and signs a checkpoint, returning the signed note.
pub fn sign_checkpoint(
    checkpoint: &Checkpoint,
    signer: &NoteSigner,
) -> Result<String, CheckpointError> {
    Ok(sign_note(&checkpoint.format_body()?, signer)?)
}

/// Opens a signed checkpoint: at least one signature from `verifiers` must verify, the body must
/// parse, and its origin must be `origin`. Checking the origin is what stops a valid checkpoint
/// of one tenant's log from being passed off as another's when one key signs them all.
pub fn open_checkpoint(
    note: &str,
    verifiers: &[NoteVerifier],
    origin: &str,
) -> Result<Checkpoint, CheckpointError> {
    let opened = open_note(note, verifiers)?;
    let checkpoint = Checkpoint::parse_body(&opened.text)?;
    if checkpoint.origin != origin {
        return Err(CheckpointError::WrongOrigin {
            expected: origin.to_owned(),
            actual: checkpoint.origin,
        });
    }
    Ok(checkpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: Hash = [0xab; 32];

    #[test]
    fn body_round_trips() {
        let mut checkpoint = Checkpoint::new(tenant_origin("acme"), 20_852_163, ROOT);
        let body = checkpoint.format_body().unwrap();
        assert_eq!(
            body,
            "sealtrail/acme\n20852163\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n"
        );
        assert_eq!(Checkpoint::parse_body(&body), Ok(checkpoint.clone()));

        checkpoint.extensions = vec!["ext one".into(), "ext two".into()];
        let body = checkpoint.format_body().unwrap();
        assert!(body.ends_with("\next one\next two\n"));
        assert_eq!(Checkpoint::parse_body(&body), Ok(checkpoint));

        let empty = Checkpoint::new("log", 0, crate::EMPTY_ROOT);
        assert_eq!(
            Checkpoint::parse_body(&empty.format_body().unwrap()),
            Ok(empty)
        );
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        let root = BASE64.encode(ROOT);
        let cases = [
            (format!("log\n5\n{root}"), "no final newline"),
            ("log\n5\n".to_string(), "two lines"),
            (format!("\n5\n{root}\n"), "empty origin"),
            (format!("lo\rg\n5\n{root}\n"), "control character in origin"),
            (format!("log\n05\n{root}\n"), "leading zero"),
            (format!("log\n00\n{root}\n"), "zero with leading zero"),
            (format!("log\n+5\n{root}\n"), "sign"),
            (format!("log\n-1\n{root}\n"), "negative"),
            (format!("log\n 5\n{root}\n"), "space"),
            (format!("log\n\n{root}\n"), "empty size"),
            (format!("log\n18446744073709551616\n{root}\n"), "overflow"),
            (format!("log\n5\n{}\n", &root[..43]), "unpadded root"),
            (
                format!("log\n5\n{}\n", BASE64.encode([1u8; 31])),
                "short root",
            ),
            (
                format!("log\n5\n{}\n", BASE64.encode([1u8; 33])),
                "long root",
            ),
            (
                format!("log\n5\n{}\n", root.replace("s=", "t=")),
                "trailing bits",
            ),
            (format!("log\n5\n{root}\n\n"), "empty extension line"),
            (format!("log\n5\n{root}\next\n\n"), "empty last line"),
            (format!("log\r\n5\n{root}\n"), "CRLF"),
        ];
        for (body, why) in cases {
            assert!(Checkpoint::parse_body(&body).is_err(), "accepted: {why}");
        }
        assert_eq!(
            Checkpoint::parse_body(
                "log\n18446744073709551615\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n"
            )
            .map(|c| c.tree_size),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn unformattable_checkpoints_are_refused() {
        assert_eq!(
            Checkpoint::new("", 1, ROOT).format_body(),
            Err(CheckpointError::EmptyOrigin)
        );
        assert_eq!(
            Checkpoint::new("a\nb", 1, ROOT).format_body(),
            Err(CheckpointError::ControlCharacter { line: 1 })
        );
        let mut checkpoint = Checkpoint::new("log", 1, ROOT);
        checkpoint.extensions.push(String::new());
        assert_eq!(
            checkpoint.format_body(),
            Err(CheckpointError::EmptyExtensionLine { line: 4 })
        );
    }

    #[test]
    fn signed_checkpoints_open_for_their_own_origin_only() {
        let signer = NoteSigner::from_seed("sealtrail.example/log", &[4; 32]).unwrap();
        let verifiers = [signer.verifier()];
        let checkpoint = Checkpoint::new(tenant_origin("acme"), 7, ROOT);
        let note = sign_checkpoint(&checkpoint, &signer).unwrap();
        assert!(note.starts_with(&checkpoint.format_body().unwrap()));
        assert_eq!(
            open_checkpoint(&note, &verifiers, "sealtrail/acme"),
            Ok(checkpoint)
        );
        assert_eq!(
            open_checkpoint(&note, &verifiers, "sealtrail/globex"),
            Err(CheckpointError::WrongOrigin {
                expected: "sealtrail/globex".into(),
                actual: "sealtrail/acme".into()
            })
        );
        let other = NoteSigner::from_seed("sealtrail.example/log", &[5; 32]).unwrap();
        assert_eq!(
            open_checkpoint(&note, &[other.verifier()], "sealtrail/acme"),
            Err(CheckpointError::Note(NoteError::NoKnownSignature))
        );
        let tampered = note.replacen("\n7\n", "\n8\n", 1);
        assert!(matches!(
            open_checkpoint(&tampered, &verifiers, "sealtrail/acme"),
            Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
        ));
    }
}
