//! The JSON shapes of inclusion and consistency proofs (docs/MERKLE.md, "Proof JSON"), defined
//! once so the server that serves them and every verifier that reads them agree byte for byte.
//! Hashes are standard base64 with padding, like the checkpoint's root hash.

use serde::{Deserialize, Serialize};

use crate::merkle::{
    consistency_proof, inclusion_proof, verify_consistency, verify_inclusion, Hash, NodeSource,
    ProofError, ProveError,
};

/// `{"leaf_index", "tree_size", "leaf_hash", "hashes": [base64...]}`: proves that `leaf_hash`
/// is leaf `leaf_index` of the tree of `tree_size` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    #[serde(with = "base64_hash")]
    pub leaf_hash: Hash,
    /// The audit path, bottom up.
    #[serde(with = "base64_hashes")]
    pub hashes: Vec<Hash>,
}

impl InclusionProof {
    /// Builds the proof of leaf `leaf_index` in the tree of the first `tree_size` leaves.
    pub fn generate<S: NodeSource + ?Sized>(
        source: &S,
        leaf_index: u64,
        tree_size: u64,
    ) -> Result<Self, ProveError<S::Error>> {
        let hashes = inclusion_proof(source, leaf_index, tree_size)?;
        let leaf_hash = source.node(0, leaf_index).map_err(ProveError::Source)?;
        Ok(InclusionProof {
            leaf_index,
            tree_size,
            leaf_hash,
            hashes,
        })
    }

    /// Checks the proof against the root hash of a checkpoint whose tree size is `tree_size`.
    pub fn verify(&self, root: &Hash) -> Result<(), ProofError> {
        verify_inclusion(
            &self.leaf_hash,
            self.leaf_index,
            self.tree_size,
            &self.hashes,
            root,
        )
    }
}

/// `{"hashes": [base64...]}`: proves that one tree is a prefix of another. The two sizes and
/// roots come from the checkpoints being compared, not from the proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    #[serde(with = "base64_hashes")]
    pub hashes: Vec<Hash>,
}

impl ConsistencyProof {
    /// Builds the proof from the tree of `first` leaves to the tree of `second` leaves.
    pub fn generate<S: NodeSource + ?Sized>(
        source: &S,
        first: u64,
        second: u64,
    ) -> Result<Self, ProveError<S::Error>> {
        Ok(ConsistencyProof {
            hashes: consistency_proof(source, first, second)?,
        })
    }

    /// Checks that the tree of `first` leaves with `first_root` is a prefix of the tree of
    /// `second` leaves with `second_root`.
    pub fn verify(
        &self,
        first: u64,
        second: u64,
        first_root: &Hash,
        second_root: &Hash,
    ) -> Result<(), ProofError> {
        verify_consistency(first, second, first_root, second_root, &self.hashes)
    }
}

/// Decodes one padded standard base64 hash of exactly 32 bytes.
fn decode_hash(text: &str) -> Result<Hash, String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|error| format!("hash {text:?} is not standard base64: {error}"))?;
    Hash::try_from(bytes.as_slice())
        .map_err(|_| format!("hash {text:?} has {} bytes, expected 32", bytes.len()))
}

fn encode_hash(hash: &Hash) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(hash)
}

mod base64_hash {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    use super::{decode_hash, encode_hash, Hash};

    pub(super) fn serialize<S: Serializer>(hash: &Hash, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&encode_hash(hash))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Hash, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        decode_hash(&text).map_err(D::Error::custom)
    }
}

mod base64_hashes {
    use serde::{de::Error as _, ser::SerializeSeq as _, Deserialize, Deserializer, Serializer};

    use super::{decode_hash, encode_hash, Hash};

    pub(super) fn serialize<S: Serializer>(
        hashes: &[Hash],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(hashes.len()))?;
        for hash in hashes {
            seq.serialize_element(&encode_hash(hash))?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Hash>, D::Error> {
        let texts = <Vec<std::borrow::Cow<'de, str>>>::deserialize(deserializer)?;
        texts
            .iter()
            .map(|text| decode_hash(text).map_err(D::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{leaf_hash, MemoryTree};

    fn tree(size: u64) -> MemoryTree {
        MemoryTree::from_leaf_hashes((0..size).map(|n| leaf_hash(&n.to_be_bytes())))
    }

    #[test]
    fn inclusion_proof_json_has_the_documented_shape() {
        let tree = tree(3);
        let proof = InclusionProof::generate(&tree, 2, 3).unwrap();
        let json = serde_json::to_value(&proof).unwrap();
        let expected = serde_json::json!({
            "leaf_index": 2,
            "tree_size": 3,
            "leaf_hash": encode_hash(&tree.leaf_hashes()[2]),
            "hashes": [encode_hash(&crate::node_hash(&tree.leaf_hashes()[0], &tree.leaf_hashes()[1]))],
        });
        assert_eq!(json, expected);
        let parsed: InclusionProof = serde_json::from_value(json).unwrap();
        assert_eq!(parsed, proof);
        parsed.verify(&tree.root()).unwrap();
    }

    #[test]
    fn consistency_proof_json_round_trips() {
        let tree = tree(11);
        let first_root = crate::root_at(&tree, 6).unwrap();
        let proof = ConsistencyProof::generate(&tree, 6, 11).unwrap();
        let text = serde_json::to_string(&proof).unwrap();
        assert!(text.starts_with("{\"hashes\":[\""), "{text}");
        let parsed: ConsistencyProof = serde_json::from_str(&text).unwrap();
        parsed.verify(6, 11, &first_root, &tree.root()).unwrap();
    }

    #[test]
    fn malformed_hashes_are_rejected() {
        let good = encode_hash(&[1; 32]);
        for bad in [
            good.trim_end_matches('=').to_string(),
            encode_hash(&[1; 32])[..40].to_string(),
            "not base64!".to_string(),
            format!("{good}AAAA"),
        ] {
            let json = serde_json::json!({ "hashes": [bad] });
            assert!(
                serde_json::from_value::<ConsistencyProof>(json).is_err(),
                "{bad}"
            );
        }
        let json = serde_json::json!({
            "leaf_index": 0, "tree_size": 1, "leaf_hash": "AAAA", "hashes": []
        });
        assert!(serde_json::from_value::<InclusionProof>(json).is_err());
    }
}
