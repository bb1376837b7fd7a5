//! The manifest beside each archived file: what the file holds and how it fits the chain.
//!
//! Written only after the file has been read back and checked, so *a file whose manifest is
//! present is complete*; a Parquet file without one is the leftover of an interrupted write.

use sealtrail_model::StoredEvent;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `format` of every manifest of this version.
pub const MANIFEST_FORMAT: &str = "sealtrail-archive-manifest-v1";

/// Describes one archived Parquet file. Hashes are lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub tenant_id: String,
    /// File name of the Parquet file, in the same directory as the manifest.
    pub file: String,
    pub event_count: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// `event_hash` of `first_seq` and of `last_seq`.
    pub first_event_hash: String,
    pub last_event_hash: String,
    /// RFC 9162 root over the file's `event_hash`es in `seq` order (`sealtrail_ledger::tree_root`).
    pub merkle_root: String,
    pub file_sha256: String,
    pub file_bytes: u64,
    /// Smallest and largest `timestamp` in the file, nanoseconds since the epoch, for pruning.
    pub timestamp_min_ns: i64,
    pub timestamp_max_ns: i64,
}

impl Manifest {
    /// The manifest of `events` (non-empty, ascending by `seq`) encoded as `file_bytes`.
    pub fn describe(file: &str, events: &[StoredEvent], file_bytes: &[u8]) -> Option<Manifest> {
        let (first, last) = (events.first()?, events.last()?);
        let hashes: Vec<[u8; 32]> = events.iter().map(|stored| stored.event_hash).collect();
        Some(Manifest {
            format: MANIFEST_FORMAT.to_owned(),
            tenant_id: first.event.tenant_id.clone(),
            file: file.to_owned(),
            event_count: events.len() as u64,
            first_seq: first.seq,
            last_seq: last.seq,
            first_event_hash: hex::encode(first.event_hash),
            last_event_hash: hex::encode(last.event_hash),
            merkle_root: hex::encode(sealtrail_ledger::tree_root(&hashes)),
            file_sha256: sha256_hex(file_bytes),
            file_bytes: file_bytes.len() as u64,
            timestamp_min_ns: events.iter().map(|s| s.event.timestamp_ns).min()?,
            timestamp_max_ns: events.iter().map(|s| s.event.timestamp_ns).max()?,
        })
    }

    /// The first difference between this manifest and a file's bytes and decoded events, as a
    /// sentence, with the `seq` it concerns. `None` when they agree on everything.
    pub fn disagreement(&self, file_bytes: &[u8], events: &[StoredEvent]) -> Option<(u64, String)> {
        if sha256_hex(file_bytes) != self.file_sha256 {
            return Some((
                self.first_seq,
                "file SHA-256 differs from its manifest (file altered or replaced)".into(),
            ));
        }
        let Some(described) = Manifest::describe(&self.file, events, file_bytes) else {
            return Some((self.first_seq, "file holds no events".into()));
        };
        let checks = [
            (described.tenant_id == self.tenant_id, "tenant differs"),
            (
                described.event_count == self.event_count,
                "event count differs",
            ),
            (described.first_seq == self.first_seq, "first seq differs"),
            (described.last_seq == self.last_seq, "last seq differs"),
            (
                described.first_event_hash == self.first_event_hash,
                "first event hash differs",
            ),
            (
                described.last_event_hash == self.last_event_hash,
                "last event hash differs",
            ),
            (
                described.merkle_root == self.merkle_root,
                "Merkle root differs",
            ),
        ];
        if let Some((_, reason)) = checks.iter().find(|(agrees, _)| !agrees) {
            return Some((self.first_seq, format!("{reason} from the manifest")));
        }
        // Every seq of the range exactly once, in order.
        for (offset, stored) in events.iter().enumerate() {
            let expected = self.first_seq + offset as u64;
            if stored.seq != expected || stored.event.tenant_id != self.tenant_id {
                return Some((expected, "rows out of order or of another tenant".into()));
            }
        }
        None
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
