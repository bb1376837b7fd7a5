//! Proof bundles: a self-contained export of a contiguous range of one tenant's log that an
//! auditor verifies with nothing but the server's verifier key (docs/FORMAT.md, "Bundles").
//!
//! Why the proofs a bundle carries are enough: every event's hash covers its predecessor's hash
//! (`prev_hash` is part of the canonical encoding), so an inclusion proof of the *last* event of
//! the range in a signed tree pins every earlier event of the range as well; the proof of the
//! first event pins where the range starts. Consistency proofs between the bundle's checkpoints
//! show that none of them forks from another.

use serde::{Deserialize, Serialize};

use sealtrail_model::StoredEvent;

use crate::{
    event_hash, open_checkpoint, tenant_origin, ConsistencyProof, Hash, InclusionProof,
    NoteVerifier,
};

/// Names the bundle format and its version.
pub const BUNDLE_FORMAT: &str = "sealtrail-bundle-v1";

/// A consistency proof between two of the bundle's checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleConsistency {
    pub first: u64,
    pub second: u64,
    #[serde(flatten)]
    pub proof: ConsistencyProof,
}

/// A whole bundle. On disk it is either one JSON file of this shape, or a directory with
/// `bundle.json` (the other fields), `events.ndjson` and `checkpoints/*.checkpoint`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    pub format: String,
    pub tenant_id: String,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The stored events, ascending by `seq`, as the API returns them.
    pub events: Vec<serde_json::Value>,
    /// Signed checkpoint notes, ascending by tree size.
    pub checkpoints: Vec<String>,
    /// Inclusion of the first and the last event in the largest checkpoint's tree.
    pub inclusion: Vec<InclusionProof>,
    /// Consistency of each checkpoint with the next.
    pub consistency: Vec<BundleConsistency>,
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleReport {
    pub tenant_id: String,
    pub events: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Tree sizes of the verified checkpoints.
    pub checkpoints: Vec<u64>,
}

/// Why a bundle does not verify; names the event `seq` where it can.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleFault {
    #[error("not a {BUNDLE_FORMAT} bundle: {0}")]
    Malformed(String),
    #[error("checkpoint {index}: {reason}")]
    Checkpoint { index: usize, reason: String },
    #[error("checkpoints at tree sizes {first} and {second} are not consistent (history forked): {reason}")]
    Fork {
        first: u64,
        second: u64,
        reason: String,
    },
    #[error("seq {seq}: {reason}")]
    Event { seq: u64, reason: String },
    #[error("seq {seq}: inclusion proof does not verify: {reason}")]
    Inclusion { seq: u64, reason: String },
}

/// Verifies a bundle with the server's verifier key. Pure: no IO, no clock.
pub fn verify_bundle(bundle: &Bundle, key: &NoteVerifier) -> Result<BundleReport, BundleFault> {
    if bundle.format != BUNDLE_FORMAT {
        return Err(BundleFault::Malformed(format!(
            "format is {:?}",
            bundle.format
        )));
    }
    if bundle.checkpoints.is_empty() {
        return Err(BundleFault::Malformed("it holds no checkpoint".into()));
    }
    let origin = tenant_origin(&bundle.tenant_id);
    let mut trees: Vec<(u64, Hash)> = Vec::new();
    for (index, note) in bundle.checkpoints.iter().enumerate() {
        let checkpoint =
            open_checkpoint(note, std::slice::from_ref(key), &origin).map_err(|error| {
                BundleFault::Checkpoint {
                    index,
                    reason: error.to_string(),
                }
            })?;
        trees.push((checkpoint.tree_size, checkpoint.root_hash));
    }
    trees.sort_by_key(|(size, _)| *size);
    for pair in trees.windows(2) {
        let ((first, first_root), (second, second_root)) = (pair[0], pair[1]);
        let fork = |reason: String| BundleFault::Fork {
            first,
            second,
            reason,
        };
        if first == second {
            if first_root != second_root {
                return Err(fork("same size, different roots".into()));
            }
            continue;
        }
        let proof = bundle
            .consistency
            .iter()
            .find(|entry| entry.first == first && entry.second == second)
            .ok_or_else(|| fork("no consistency proof between them".into()))?;
        proof
            .proof
            .verify(first, second, &first_root, &second_root)
            .map_err(|error| fork(error.to_string()))?;
    }

    let mut previous: Option<(u64, Hash)> = None;
    let mut hashes: Vec<(u64, Hash)> = Vec::with_capacity(bundle.events.len());
    for (position, value) in bundle.events.iter().enumerate() {
        let expected_seq = bundle.first_seq + position as u64;
        let stored = StoredEvent::from_json(value).map_err(|reason| BundleFault::Event {
            seq: expected_seq,
            reason,
        })?;
        let fault = |reason: &str| BundleFault::Event {
            seq: expected_seq,
            reason: reason.to_owned(),
        };
        if stored.seq != expected_seq {
            return Err(fault(&format!(
                "event missing or out of order (found seq {})",
                stored.seq
            )));
        }
        if stored.event.tenant_id != bundle.tenant_id {
            return Err(fault("belongs to another tenant"));
        }
        let recomputed = event_hash(
            &stored.event,
            stored.seq,
            stored.received_at_ns,
            &stored.prev_hash,
        );
        if recomputed != stored.event_hash {
            return Err(fault(
                "content changed (event_hash does not match the event)",
            ));
        }
        if let Some((_, previous_hash)) = previous {
            if stored.prev_hash != previous_hash {
                return Err(fault(
                    "order broken (prev_hash is not the previous event's hash)",
                ));
            }
        }
        previous = Some((stored.seq, recomputed));
        hashes.push((stored.seq, recomputed));
    }
    let (Some(&(first_seq, _)), Some(&(last_seq, _))) = (hashes.first(), hashes.last()) else {
        return Err(BundleFault::Malformed("it holds no events".into()));
    };
    if last_seq != bundle.last_seq {
        return Err(BundleFault::Event {
            seq: last_seq + 1,
            reason: format!(
                "event missing: the bundle declares events up to seq {}",
                bundle.last_seq
            ),
        });
    }
    for (seq, leaf_hash) in [hashes[0], hashes[hashes.len() - 1]] {
        let fault = |reason: String| BundleFault::Inclusion { seq, reason };
        let proof = bundle
            .inclusion
            .iter()
            .find(|proof| proof.leaf_index == seq - 1)
            .ok_or_else(|| fault("the bundle holds no inclusion proof for it".into()))?;
        if proof.leaf_hash != leaf_hash {
            return Err(fault("its leaf hash is not this event's hash".into()));
        }
        let root = trees
            .iter()
            .find(|(size, _)| *size == proof.tree_size)
            .map(|(_, root)| *root)
            .ok_or_else(|| fault(format!("no checkpoint of tree size {}", proof.tree_size)))?;
        proof
            .verify(&root)
            .map_err(|error| fault(error.to_string()))?;
    }
    Ok(BundleReport {
        tenant_id: bundle.tenant_id.clone(),
        events: hashes.len() as u64,
        first_seq,
        last_seq,
        checkpoints: trees.iter().map(|(size, _)| *size).collect(),
    })
}
