//! Property tests of the Merkle proofs: for random trees of up to 2048 leaves every proof
//! verifies, and any single change to what a verifier is given makes verification fail.
//!
//! One tree of 2048 leaves serves every case: the tree of the first `n` leaves is a prefix of
//! it, and proofs and roots for size `n` read only the complete subtrees inside that prefix.

use std::sync::OnceLock;

use proptest::prelude::*;
use sealtrail_ledger::{
    consistency_proof, inclusion_proof, leaf_hash, root_at, verify_consistency, verify_inclusion,
    Hash, MemoryTree, MerkleFrontier, NodeSource,
};

const LEAVES_MAX: u64 = 2048;

fn tree() -> &'static MemoryTree {
    static TREE: OnceLock<MemoryTree> = OnceLock::new();
    TREE.get_or_init(|| {
        MemoryTree::from_leaf_hashes(
            (0..LEAVES_MAX).map(|n| leaf_hash(format!("event {n}").as_bytes())),
        )
    })
}

fn root_of(tree_size: u64) -> Hash {
    root_at(tree(), tree_size).unwrap()
}

fn leaf_at(leaf_index: u64) -> Hash {
    tree().node(0, leaf_index).unwrap()
}

fn flip(hash: &Hash, bit: usize) -> Hash {
    let mut flipped = *hash;
    flipped[bit / 8] ^= 1 << (bit % 8);
    flipped
}

/// A tree size and a leaf index inside it.
fn size_and_index() -> impl Strategy<Value = (u64, u64)> {
    (1..=LEAVES_MAX).prop_flat_map(|tree_size| (Just(tree_size), 0..tree_size))
}

/// Two tree sizes, `first <= second`, both at least 1.
fn two_sizes() -> impl Strategy<Value = (u64, u64)> {
    (1..=LEAVES_MAX).prop_flat_map(|second| (1..=second, Just(second)))
}

proptest! {
    #[test]
    fn inclusion_proofs_verify((tree_size, leaf_index) in size_and_index()) {
        let proof = inclusion_proof(tree(), leaf_index, tree_size).unwrap();
        prop_assert!(proof.len() <= 11);
        prop_assert_eq!(
            verify_inclusion(&leaf_at(leaf_index), leaf_index, tree_size, &proof, &root_of(tree_size)),
            Ok(())
        );
    }

    #[test]
    fn any_change_breaks_an_inclusion_proof(
        (tree_size, leaf_index) in size_and_index(),
        element in any::<prop::sample::Index>(),
        bit in 0..256usize,
        other_size in 1..=LEAVES_MAX,
        other_index in any::<prop::sample::Index>(),
    ) {
        let proof = inclusion_proof(tree(), leaf_index, tree_size).unwrap();
        let (leaf, root) = (leaf_at(leaf_index), root_of(tree_size));

        if !proof.is_empty() {
            let mut flipped = proof.clone();
            let position = element.index(proof.len());
            flipped[position] = flip(&flipped[position], bit);
            prop_assert!(verify_inclusion(&leaf, leaf_index, tree_size, &flipped, &root).is_err());
        }
        prop_assert!(verify_inclusion(&flip(&leaf, bit), leaf_index, tree_size, &proof, &root).is_err());
        prop_assert!(verify_inclusion(&leaf, leaf_index, tree_size, &proof, &flip(&root, bit)).is_err());

        // Another leaf index of the same tree.
        let index = other_index.index(tree_size as usize) as u64;
        if index != leaf_index {
            prop_assert!(verify_inclusion(&leaf, index, tree_size, &proof, &root).is_err());
        }
        // Another tree size, checked against that size's own root (as a verifier holding its
        // checkpoint would).
        if other_size != tree_size && other_size > leaf_index {
            prop_assert!(
                verify_inclusion(&leaf, leaf_index, other_size, &proof, &root_of(other_size)).is_err()
            );
        }
        // Doubling or halving the size fails even against the original root.
        prop_assert!(verify_inclusion(&leaf, leaf_index, tree_size * 2, &proof, &root).is_err());
        if tree_size > 1 {
            prop_assert!(verify_inclusion(&leaf, leaf_index, tree_size / 2, &proof, &root).is_err());
        }
    }

    #[test]
    fn consistency_proofs_verify((first, second) in two_sizes()) {
        let proof = consistency_proof(tree(), first, second).unwrap();
        prop_assert!(proof.len() <= 12);
        prop_assert_eq!(
            verify_consistency(first, second, &root_of(first), &root_of(second), &proof),
            Ok(())
        );
    }

    #[test]
    fn any_change_breaks_a_consistency_proof(
        (first, second) in two_sizes(),
        element in any::<prop::sample::Index>(),
        bit in 0..256usize,
        other_first in 1..=LEAVES_MAX,
        other_second in 1..=LEAVES_MAX,
    ) {
        let proof = consistency_proof(tree(), first, second).unwrap();
        let (root1, root2) = (root_of(first), root_of(second));

        if !proof.is_empty() {
            let mut flipped = proof.clone();
            let position = element.index(proof.len());
            flipped[position] = flip(&flipped[position], bit);
            prop_assert!(verify_consistency(first, second, &root1, &root2, &flipped).is_err());
            let mut shortened = proof.clone();
            shortened.pop();
            prop_assert!(verify_consistency(first, second, &root1, &root2, &shortened).is_err());
        }
        let mut extended = proof.clone();
        extended.push(root2);
        prop_assert!(verify_consistency(first, second, &root1, &root2, &extended).is_err());
        prop_assert!(verify_consistency(first, second, &flip(&root1, bit), &root2, &proof).is_err());
        prop_assert!(verify_consistency(first, second, &root1, &flip(&root2, bit), &proof).is_err());

        // Other sizes, each checked against that size's own root.
        if other_first != first {
            prop_assert!(
                verify_consistency(other_first, second, &root_of(other_first), &root2, &proof).is_err()
            );
        }
        if other_second != second {
            prop_assert!(
                verify_consistency(first, other_second, &root1, &root_of(other_second), &proof).is_err()
            );
        }
    }

    #[test]
    fn the_frontier_agrees_with_the_stored_tree(tree_size in 0..=LEAVES_MAX) {
        let mut frontier = MerkleFrontier::new();
        let mut completed = 0usize;
        for leaf_index in 0..tree_size {
            frontier.append_with(leaf_at(leaf_index), |subtree| {
                completed += 1;
                assert_eq!(tree().node(subtree.level, subtree.index), Ok(subtree.hash));
            });
        }
        prop_assert_eq!(frontier.root(), root_of(tree_size));
        // A tree of n leaves has 2n - popcount(n) complete subtrees.
        prop_assert_eq!(completed as u64, 2 * tree_size - u64::from(tree_size.count_ones()));
        let restored = MerkleFrontier::from_source(tree(), tree_size).unwrap();
        prop_assert_eq!(restored, frontier);
    }
}
