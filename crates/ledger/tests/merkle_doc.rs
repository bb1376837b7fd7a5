//! The worked example in docs/MERKLE.md, recomputed from the event vectors in
//! docs/vectors/event-v1.json: the document must quote every value this test computes, so the
//! prose cannot drift from the code.

use sealtrail_ledger::{
    leaf_hash, open_checkpoint, sign_checkpoint, tenant_origin, Checkpoint, ConsistencyProof,
    InclusionProof, MemoryTree, NoteSigner,
};
use serde_json::Value;

const VECTORS_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/vectors/event-v1.json"
);
const MERKLE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/MERKLE.md");

/// The example key's seed, `00 01 02 … 1f`. It is published in docs/MERKLE.md and MUST NOT sign
/// anything real.
fn example_seed() -> [u8; 32] {
    std::array::from_fn(|n| n as u8)
}

#[test]
fn the_worked_example_matches_the_code() {
    let vectors: Value =
        serde_json::from_str(&std::fs::read_to_string(VECTORS_PATH).unwrap()).unwrap();
    let doc = std::fs::read_to_string(MERKLE_PATH).unwrap();
    let leaves: Vec<[u8; 32]> = vectors
        .as_array()
        .unwrap()
        .iter()
        .take(2)
        .map(|vector| leaf_hash(&hex::decode(vector["canonical_hex"].as_str().unwrap()).unwrap()))
        .collect();
    for (leaf, vector) in leaves.iter().zip(vectors.as_array().unwrap()) {
        assert_eq!(
            hex::encode(leaf),
            vector["event_hash"].as_str().unwrap(),
            "an event's leaf hash is its event_hash"
        );
    }
    let tree = MemoryTree::from_leaf_hashes(leaves.iter().copied());

    let signer = NoteSigner::from_seed(&tenant_origin("acme"), &example_seed()).unwrap();
    let checkpoint = Checkpoint::new(tenant_origin("acme"), 2, tree.root());
    let note = sign_checkpoint(&checkpoint, &signer).unwrap();
    assert_eq!(
        open_checkpoint(&note, &[signer.verifier()], "sealtrail/acme"),
        Ok(checkpoint)
    );
    let inclusion = InclusionProof::generate(&tree, 1, 2).unwrap();
    inclusion.verify(&tree.root()).unwrap();
    let consistency = ConsistencyProof::generate(&tree, 1, 2).unwrap();
    consistency.verify(1, 2, &leaves[0], &tree.root()).unwrap();

    let quoted = [
        ("leaf hash of seq 1", hex::encode(leaves[0])),
        ("leaf hash of seq 2", hex::encode(leaves[1])),
        ("root at tree size 2", hex::encode(tree.root())),
        ("signer key", signer.signer_key()),
        ("verifier key", signer.verifier().verifier_key()),
        ("signed checkpoint", note),
        (
            "inclusion proof",
            serde_json::to_string_pretty(&inclusion).unwrap(),
        ),
        (
            "consistency proof",
            serde_json::to_string_pretty(&consistency).unwrap(),
        ),
    ];
    for (what, text) in quoted {
        assert!(
            doc.contains(&text),
            "docs/MERKLE.md must quote the {what}:\n{text}"
        );
    }
}
