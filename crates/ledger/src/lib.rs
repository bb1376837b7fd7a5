//! The pure ledger core: the canonical byte encoding of an event, the per-tenant hash chain and
//! its verification.
//!
//! Architecture invariant: this crate does no IO. Every function is synchronous and
//! deterministic, so the server, the `verify` command and any offline verifier share exactly one
//! definition of what an intact log is. docs/FORMAT.md specifies the same encoding in prose;
//! the test vectors in `tests/vectors.rs` keep the two in step.

mod chain;
mod encoding;

pub use chain::{ChainFault, ChainHead, ChainVerifier};
pub use encoding::{canonical_bytes, content_digest, encode_canonical, event_hash, FORMAT_TAG};

/// `prev_hash` of a tenant's first event.
pub const GENESIS_HASH: [u8; 32] = [0; 32];
