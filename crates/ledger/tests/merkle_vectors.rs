//! Published RFC 6962 / Certificate Transparency Merkle test vectors.
//!
//! Sources (values read and re-typed here, checked independently against a direct
//! implementation of the RFC recursion):
//! - Hashes: transparency-dev/merkle `proof/verify_test.go` (`leaves`, `roots`,
//!   `inclusionProofs`, `consistencyProofs`), the same data as certificate-transparency-go's
//!   and the C++ certificate-transparency merkle tree tests.
//! - Proof shapes, as node coordinates: transparency-dev/merkle `proof/proof_test.go`
//!   (`TestInclusion`, `TestConsistency`).

use sealtrail_ledger::{
    consistency_proof, inclusion_proof, leaf_hash, node_hash, root_at, tree_root,
    verify_consistency, verify_inclusion, Hash, MemoryTree, MerkleFrontier, NodeSource, ProofError,
    EMPTY_ROOT,
};

/// The eight leaf inputs of the CT test tree, as hex.
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// `ROOTS[n - 1]` is the root of the tree of the first `n` leaves.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

const EMPTY_TREE_ROOT: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// An arbitrary hash that is no node of the test tree (`sha256SomeHash` in the Go tests).
const SOME_HASH: &str = "abacaba000000000000000000000000000000000000000000060061e00123456";

/// `(leaf_index, tree_size, audit path)`. The Go table numbers leaves from 1; these are the
/// 0-based indices.
const INCLUSION_PROOFS: [(u64, u64, &[&str]); 4] = [
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// `(first, second, consistency proof)`.
const CONSISTENCY_PROOFS: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn hash(text: &str) -> Hash {
    hex::decode(text).unwrap().try_into().unwrap()
}

fn hashes(texts: &[&str]) -> Vec<Hash> {
    texts.iter().map(|text| hash(text)).collect()
}

fn leaf_hashes() -> Vec<Hash> {
    LEAVES
        .iter()
        .map(|leaf| leaf_hash(&hex::decode(leaf).unwrap()))
        .collect()
}

fn root(tree_size: u64) -> Hash {
    hash(ROOTS[tree_size as usize - 1])
}

#[test]
fn empty_tree_root_is_sha256_of_nothing() {
    assert_eq!(EMPTY_ROOT, hash(EMPTY_TREE_ROOT));
}

#[test]
fn roots_match_for_every_size() {
    let leaves = leaf_hashes();
    let tree = MemoryTree::from_leaf_hashes(leaves.iter().copied());
    let mut frontier = MerkleFrontier::new();
    for (size, leaf) in (1..).zip(&leaves) {
        frontier.append(*leaf);
        assert_eq!(frontier.root(), root(size), "frontier, size {size}");
        assert_eq!(tree_root(&leaves[..size as usize]), root(size));
        assert_eq!(root_at(&tree, size).unwrap(), root(size));
    }
    assert_eq!(tree.root(), root(8));
}

#[test]
fn published_inclusion_proofs_are_generated_and_verify() {
    let leaves = leaf_hashes();
    let tree = MemoryTree::from_leaf_hashes(leaves.iter().copied());
    for (leaf_index, tree_size, expected) in INCLUSION_PROOFS {
        let expected = hashes(expected);
        let proof = inclusion_proof(&tree, leaf_index, tree_size).unwrap();
        assert_eq!(proof, expected, "inclusion of {leaf_index} in {tree_size}");
        let leaf = leaves[leaf_index as usize];
        verify_inclusion(&leaf, leaf_index, tree_size, &proof, &root(tree_size)).unwrap();
    }
}

#[test]
fn published_consistency_proofs_are_generated_and_verify() {
    let tree = MemoryTree::from_leaf_hashes(leaf_hashes());
    for (first, second, expected) in CONSISTENCY_PROOFS {
        let expected = hashes(expected);
        let proof = consistency_proof(&tree, first, second).unwrap();
        assert_eq!(proof, expected, "consistency of {first} with {second}");
        verify_consistency(first, second, &root(first), &root(second), &proof).unwrap();
    }
}

fn with(proof: &[Hash], edit: impl FnOnce(&mut Vec<Hash>)) -> Vec<Hash> {
    let mut proof = proof.to_vec();
    edit(&mut proof);
    proof
}

/// Everything a verifier is given to check an inclusion proof.
#[derive(Debug, Clone)]
struct InclusionClaim {
    leaf_index: u64,
    tree_size: u64,
    leaf: Hash,
    proof: Vec<Hash>,
    root: Hash,
}

impl InclusionClaim {
    fn verifies(&self) -> bool {
        let InclusionClaim {
            leaf_index,
            tree_size,
            leaf,
            proof,
            root,
        } = self;
        verify_inclusion(leaf, *leaf_index, *tree_size, proof, root).is_ok()
    }
}

/// The Go tests' `corruptInclusionProof` probes: each one must fail to verify.
#[test]
fn corrupted_inclusion_proofs_fail() {
    let leaves = leaf_hashes();
    let some_hash = hash(SOME_HASH);
    for (leaf_index, tree_size, proof) in INCLUSION_PROOFS {
        let good = InclusionClaim {
            leaf_index,
            tree_size,
            leaf: leaves[leaf_index as usize],
            proof: hashes(proof),
            root: root(tree_size),
        };
        assert!(good.verifies());
        let (proof, root) = (&good.proof, good.root);
        let edited = |edit: &dyn Fn(&mut Vec<Hash>)| InclusionClaim {
            proof: with(proof, edit),
            ..good.clone()
        };
        let mut probes = vec![
            (
                "leaf_index - 1",
                InclusionClaim {
                    leaf_index: leaf_index.wrapping_sub(1),
                    ..good.clone()
                },
            ),
            (
                "leaf_index + 1",
                InclusionClaim {
                    leaf_index: leaf_index + 1,
                    ..good.clone()
                },
            ),
            (
                "leaf_index ^ 2",
                InclusionClaim {
                    leaf_index: leaf_index ^ 2,
                    ..good.clone()
                },
            ),
            (
                "tree_size * 2",
                InclusionClaim {
                    tree_size: tree_size * 2,
                    ..good.clone()
                },
            ),
            (
                "tree_size / 2",
                InclusionClaim {
                    tree_size: tree_size / 2,
                    ..good.clone()
                },
            ),
            (
                "wrong leaf",
                InclusionClaim {
                    leaf: leaf_hash(b"WrongLeaf"),
                    ..good.clone()
                },
            ),
            (
                "empty root",
                InclusionClaim {
                    root: EMPTY_ROOT,
                    ..good.clone()
                },
            ),
            (
                "random root",
                InclusionClaim {
                    root: some_hash,
                    ..good.clone()
                },
            ),
            ("trailing zeros", edited(&|p| p.push([0; 32]))),
            ("trailing root", edited(&|p| p.push(root))),
            ("preceding zeros", edited(&|p| p.insert(0, [0; 32]))),
            ("preceding root", edited(&|p| p.insert(0, root))),
            ("removed component", edited(&|p| p.truncate(p.len() - 1))),
            ("inserted component", edited(&|p| p.insert(1, some_hash))),
        ];
        for position in 0..proof.len() {
            probes.push(("flipped bit", edited(&|p| p[position][0] ^= 8)));
        }
        for (what, claim) in probes {
            assert!(!claim.verifies(), "{what} verified: {claim:?}");
        }
    }
}

/// Everything a verifier is given to check a consistency proof.
#[derive(Debug, Clone)]
struct ConsistencyClaim {
    first: u64,
    second: u64,
    first_root: Hash,
    second_root: Hash,
    proof: Vec<Hash>,
}

impl ConsistencyClaim {
    fn verifies(&self) -> bool {
        let ConsistencyClaim {
            first,
            second,
            first_root,
            second_root,
            proof,
        } = self;
        verify_consistency(*first, *second, first_root, second_root, proof).is_ok()
    }
}

/// The Go tests' `corruptConsistencyProof` probes: each one must fail to verify.
#[test]
fn corrupted_consistency_proofs_fail() {
    let wrong_root = leaf_hash(b"WrongRoot");
    for (first, second, proof) in CONSISTENCY_PROOFS {
        let good = ConsistencyClaim {
            first,
            second,
            first_root: root(first),
            second_root: root(second),
            proof: hashes(proof),
        };
        assert!(good.verifies());
        if good.proof.is_empty() {
            continue;
        }
        let (proof, root1, root2) = (&good.proof, good.first_root, good.second_root);
        let edited = |edit: &dyn Fn(&mut Vec<Hash>)| ConsistencyClaim {
            proof: with(proof, edit),
            ..good.clone()
        };
        let mut probes = vec![
            (
                "first - 1",
                ConsistencyClaim {
                    first: first - 1,
                    ..good.clone()
                },
            ),
            (
                "first + 1",
                ConsistencyClaim {
                    first: first + 1,
                    ..good.clone()
                },
            ),
            (
                "first ^ 2",
                ConsistencyClaim {
                    first: first ^ 2,
                    ..good.clone()
                },
            ),
            (
                "second * 2",
                ConsistencyClaim {
                    second: second * 2,
                    ..good.clone()
                },
            ),
            (
                "second / 2",
                ConsistencyClaim {
                    second: second / 2,
                    ..good.clone()
                },
            ),
            (
                "wrong first root",
                ConsistencyClaim {
                    first_root: wrong_root,
                    ..good.clone()
                },
            ),
            (
                "wrong second root",
                ConsistencyClaim {
                    second_root: wrong_root,
                    ..good.clone()
                },
            ),
            (
                "swapped roots",
                ConsistencyClaim {
                    first_root: root2,
                    second_root: root1,
                    ..good.clone()
                },
            ),
            ("empty proof", edited(&|p| p.clear())),
            ("trailing zeros", edited(&|p| p.push([0; 32]))),
            ("trailing first root", edited(&|p| p.push(root1))),
            ("trailing second root", edited(&|p| p.push(root2))),
            ("preceding zeros", edited(&|p| p.insert(0, [0; 32]))),
            ("preceding first root", edited(&|p| p.insert(0, root1))),
            ("preceding second root", edited(&|p| p.insert(0, root2))),
            ("preceding proof[0]", edited(&|p| p.insert(0, p[0]))),
            ("truncated", edited(&|p| p.truncate(p.len() - 1))),
        ];
        for position in 0..proof.len() {
            probes.push(("flipped bit", edited(&|p| p[position][0] ^= 16)));
        }
        for (what, claim) in probes {
            assert!(!claim.verifies(), "{what} verified: {claim:?}");
        }
    }
}

/// The Go tests' edge cases of `VerifyConsistency`, adapted where Sealtrail is stricter: the
/// empty tree's root must be the empty root, where Go accepts any.
#[test]
fn consistency_edge_cases() {
    let (root1, root2) = (leaf_hash(b"don't care 1"), leaf_hash(b"don't care 2"));
    let one_hash = [EMPTY_ROOT];
    type Case<'a> = (u64, u64, Hash, Hash, &'a [Hash], Result<(), ProofError>);
    let cases: [Case; 11] = [
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, &[], Ok(())),
        (0, 1, EMPTY_ROOT, root2, &[], Ok(())),
        (1, 1, root2, root2, &[], Ok(())),
        (0, 1, root1, root2, &[], Err(ProofError::FirstRootMismatch)),
        (1, 1, root1, root2, &[], Err(ProofError::RootMismatch)),
        (
            1,
            0,
            root1,
            root2,
            &[],
            Err(ProofError::FirstAfterSecond {
                first: 1,
                second: 0,
            }),
        ),
        (
            2,
            1,
            root1,
            root2,
            &[],
            Err(ProofError::FirstAfterSecond {
                first: 2,
                second: 1,
            }),
        ),
        (
            1,
            2,
            root1,
            root2,
            &[],
            Err(ProofError::WrongProofLength {
                expected: 1,
                actual: 0,
            }),
        ),
        (
            0,
            0,
            EMPTY_ROOT,
            EMPTY_ROOT,
            &one_hash,
            Err(ProofError::WrongProofLength {
                expected: 0,
                actual: 1,
            }),
        ),
        (
            0,
            1,
            EMPTY_ROOT,
            EMPTY_ROOT,
            &one_hash,
            Err(ProofError::WrongProofLength {
                expected: 0,
                actual: 1,
            }),
        ),
        (
            1,
            1,
            EMPTY_ROOT,
            EMPTY_ROOT,
            &one_hash,
            Err(ProofError::WrongProofLength {
                expected: 0,
                actual: 1,
            }),
        ),
    ];
    for (first, second, first_root, second_root, proof, expected) in cases {
        assert_eq!(
            verify_consistency(first, second, &first_root, &second_root, proof),
            expected,
            "consistency of {first} with {second}"
        );
    }
}

/// The Go tests' edge cases of `VerifyInclusion`.
#[test]
fn inclusion_edge_cases() {
    let some_hash = hash(SOME_HASH);
    for (leaf_index, tree_size) in [(0, 0), (0, 1), (1, 0), (2, 1)] {
        for (leaf, root) in [(some_hash, EMPTY_ROOT), (EMPTY_ROOT, some_hash)] {
            assert!(verify_inclusion(&leaf, leaf_index, tree_size, &[], &root).is_err());
        }
    }
    // A one-leaf tree's root is its leaf hash, and the proof is empty.
    let leaf = leaf_hash(b"data");
    verify_inclusion(&leaf, 0, 1, &[], &leaf).unwrap();
    assert_eq!(
        verify_inclusion(&leaf, 0, 1, &[], &EMPTY_ROOT),
        Err(ProofError::RootMismatch)
    );
    assert_eq!(
        verify_inclusion(&leaf, 0, 0, &[], &leaf),
        Err(ProofError::EmptyTree)
    );
    assert_eq!(
        verify_inclusion(&leaf, 1, 1, &[], &leaf),
        Err(ProofError::LeafIndexOutOfRange {
            leaf_index: 1,
            tree_size: 1
        })
    );
}

/// One element of an expected proof: a stored node, or a right-edge node recomputed by hashing
/// stored nodes listed from the right (each later one is the left child of the fold so far).
type Element = &'static [(u8, u64)];

fn expected_proof(tree: &MemoryTree, elements: &[Element]) -> Vec<Hash> {
    elements
        .iter()
        .map(|nodes| {
            let mut nodes = nodes
                .iter()
                .map(|(level, index)| tree.node(*level, *index).unwrap());
            let first = nodes.next().unwrap();
            nodes.fold(first, |right, left| node_hash(&left, &right))
        })
        .collect()
}

fn test_tree() -> MemoryTree {
    MemoryTree::from_leaf_hashes((0u64..95).map(|n| leaf_hash(&n.to_le_bytes())))
}

#[test]
fn inclusion_proof_shapes_match_the_published_node_lists() {
    let tree = test_tree();
    let cases: [(u64, u64, &[Element]); 17] = [
        (1, 0, &[]),
        (2, 0, &[&[(0, 1)]]),
        (2, 1, &[&[(0, 0)]]),
        (3, 1, &[&[(0, 0)], &[(0, 2)]]),
        (7, 0, &[&[(0, 1)], &[(1, 1)], &[(0, 6), (1, 2)]]),
        (7, 1, &[&[(0, 0)], &[(1, 1)], &[(0, 6), (1, 2)]]),
        (7, 2, &[&[(0, 3)], &[(1, 0)], &[(0, 6), (1, 2)]]),
        (7, 3, &[&[(0, 2)], &[(1, 0)], &[(0, 6), (1, 2)]]),
        (7, 4, &[&[(0, 5)], &[(0, 6)], &[(2, 0)]]),
        (7, 5, &[&[(0, 4)], &[(0, 6)], &[(2, 0)]]),
        (7, 6, &[&[(1, 2)], &[(2, 0)]]),
        (4, 2, &[&[(0, 3)], &[(1, 0)]]),
        (5, 3, &[&[(0, 2)], &[(1, 0)], &[(0, 4)]]),
        (6, 3, &[&[(0, 2)], &[(1, 0)], &[(1, 2)]]),
        (6, 4, &[&[(0, 5)], &[(2, 0)]]),
        (
            15,
            10,
            &[&[(0, 11)], &[(1, 4)], &[(0, 14), (1, 6)], &[(3, 0)]],
        ),
        (
            31,
            24,
            &[
                &[(0, 25)],
                &[(1, 13)],
                &[(0, 30), (1, 14)],
                &[(3, 2)],
                &[(4, 0)],
            ],
        ),
    ];
    for (tree_size, leaf_index, elements) in cases {
        let proof = inclusion_proof(&tree, leaf_index, tree_size).unwrap();
        assert_eq!(
            proof,
            expected_proof(&tree, elements),
            "{leaf_index} in {tree_size}"
        );
    }
    let proof = inclusion_proof(&tree, 81, 95).unwrap();
    let expected: &[Element] = &[
        &[(0, 80)],
        &[(1, 41)],
        &[(2, 21)],
        &[(0, 94), (1, 46), (2, 22)],
        &[(4, 4)],
        &[(6, 0)],
    ];
    assert_eq!(proof, expected_proof(&tree, expected));
    for (tree_size, leaf_index) in [(0, 0), (0, 1), (1, 2), (0, 3), (7, 8)] {
        assert!(inclusion_proof(&tree, leaf_index, tree_size).is_err());
    }
}

#[test]
fn consistency_proof_shapes_match_the_published_node_lists() {
    let tree = test_tree();
    let cases: [(u64, u64, &[Element]); 25] = [
        (1, 2, &[&[(0, 1)]]),
        (1, 4, &[&[(0, 1)], &[(1, 1)]]),
        (1, 6, &[&[(0, 1)], &[(1, 1)], &[(1, 2)]]),
        (2, 3, &[&[(0, 2)]]),
        (2, 8, &[&[(1, 1)], &[(2, 1)]]),
        (3, 7, &[&[(0, 2)], &[(0, 3)], &[(1, 0)], &[(0, 6), (1, 2)]]),
        (4, 7, &[&[(0, 6), (1, 2)]]),
        (5, 7, &[&[(0, 4)], &[(0, 5)], &[(0, 6)], &[(2, 0)]]),
        (6, 7, &[&[(1, 2)], &[(0, 6)], &[(2, 0)]]),
        (7, 8, &[&[(0, 6)], &[(0, 7)], &[(1, 2)], &[(2, 0)]]),
        (1, 1, &[]),
        (2, 2, &[]),
        (3, 3, &[]),
        (4, 4, &[]),
        (5, 5, &[]),
        (7, 7, &[]),
        (8, 8, &[]),
        (2, 4, &[&[(1, 1)]]),
        (3, 5, &[&[(0, 2)], &[(0, 3)], &[(1, 0)], &[(0, 4)]]),
        (3, 6, &[&[(0, 2)], &[(0, 3)], &[(1, 0)], &[(1, 2)]]),
        (4, 6, &[&[(1, 2)]]),
        (1, 7, &[&[(0, 1)], &[(1, 1)], &[(0, 6), (1, 2)]]),
        (
            10,
            15,
            &[&[(1, 4)], &[(1, 5)], &[(0, 14), (1, 6)], &[(3, 0)]],
        ),
        (24, 31, &[&[(3, 2)], &[(0, 30), (1, 14), (2, 6)], &[(4, 0)]]),
        (
            81,
            95,
            &[
                &[(0, 80)],
                &[(0, 81)],
                &[(1, 41)],
                &[(2, 21)],
                &[(0, 94), (1, 46), (2, 22)],
                &[(4, 4)],
                &[(6, 0)],
            ],
        ),
    ];
    for (first, second, elements) in cases {
        let proof = consistency_proof(&tree, first, second).unwrap();
        assert_eq!(
            proof,
            expected_proof(&tree, elements),
            "{first} to {second}"
        );
        let (first_root, second_root) = (
            root_at(&tree, first).unwrap(),
            root_at(&tree, second).unwrap(),
        );
        verify_consistency(first, second, &first_root, &second_root, &proof).unwrap();
    }
    for (first, second) in [(5, 0), (9, 8)] {
        assert!(consistency_proof(&tree, first, second).is_err());
    }
}
