//! The pure ledger core: the canonical byte encoding of an event, the per-tenant hash chain and
//! its verification, the RFC 9162 Merkle tree over the chain with its proofs, and signed
//! checkpoints of that tree.
//!
//! Architecture invariant: this crate does no IO. Every function is synchronous and
//! deterministic, so the server, the `verify` command and any offline verifier share exactly one
//! definition of what an intact log is. docs/FORMAT.md specifies the same encoding in prose and
//! docs/MERKLE.md the tree, proofs and checkpoints; the test vectors in `tests/` keep the code and
//! the prose in step.

mod bundle;
mod chain;
mod checkpoint;
mod deletion;
mod encoding;
mod export_bundle;
mod frontier;
mod log_check;
mod merkle;
mod note;
mod proof_json;
mod tiles;

pub use bundle::{
    verify_bundle, Bundle, BundleConsistency, BundleFault, BundleReport, BUNDLE_FORMAT,
};
pub use chain::{ChainFault, ChainHead, ChainLink, ChainVerifier};
pub use checkpoint::{
    open_checkpoint, sign_checkpoint, tenant_origin, Checkpoint, CheckpointError, ORIGIN_PREFIX,
};
pub use deletion::{
    open_deletion_record, sign_deletion_record, DeletedPrefix, DeletionError, DeletionRecord,
    DELETION_RECORD_FORMAT,
};
pub use encoding::{
    canonical_bytes, commitment, content_digest, encode_canonical, event_hash, event_hash_of_view,
    EventView, FORMAT_TAG, FORMAT_TAG_V2,
};
pub use export_bundle::{
    Bounds, ExportCheck, ExportFault, ExportFilter, ExportHeader, ExportReport,
    EXPORT_BUNDLE_FORMAT,
};
pub use frontier::{
    append_leaves, decode_frontier, encode_frontier, partial_blocks, rebuild_frontier,
    MissingNodes, PartialBlock, Tile,
};
pub use log_check::{CheckpointToCheck, LogCheck, StoredTree, TenantFault, TenantReport};
pub use merkle::{
    consistency_proof, inclusion_proof, leaf_hash, node_hash, root_at, root_from_inclusion_proof,
    tree_root, verify_consistency, verify_inclusion, FrontierError, Hash, MemoryTree,
    MerkleFrontier, NodeSource, ProofError, ProveError, Subtree, UnknownNode, EMPTY_ROOT,
};
pub use note::{
    is_valid_key_name, key_id, open_note, sign_note, KeyError, NoteError, NoteSignature,
    NoteSigner, NoteVerifier, VerifiedNote, ED25519_SIGNATURE_TYPE, NOTE_SIGNATURES_MAX,
};
pub use proof_json::{ConsistencyProof, InclusionProof};
pub use tiles::{
    blocks_needed, completed_tiles, MissingBlock, NeverFails, NodeRecorder, TileSource,
    TILE_HEIGHT, TILE_WIDTH,
};

/// `prev_hash` of a tenant's first event.
pub const GENESIS_HASH: [u8; 32] = [0; 32];
