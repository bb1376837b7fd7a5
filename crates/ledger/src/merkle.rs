//! The RFC 6962 / RFC 9162 Merkle tree over a tenant's log: hashing, the append-only frontier,
//! and inclusion and consistency proofs (docs/MERKLE.md).
//!
//! Proofs are generated from a [`NodeSource`], which answers only for *complete* subtrees: a
//! complete subtree never changes once its last leaf is appended, so a store can persist it the
//! moment [`MerkleFrontier::append_with`] reports it and never rewrite it. The one incomplete node
//! a proof may need (on the right edge of the tree) is recomputed from at most `log2(tree_size)`
//! complete subtrees, so no proof needs the leaves in memory.
//!
//! Node coordinates: `(level, index)` is the complete subtree of `2^level` leaves that starts at
//! leaf `index * 2^level`. Level 0 holds the leaf hashes themselves.

use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// The root of the empty tree, `MTH({}) = SHA-256()` (RFC 9162 section 2.1.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Domain-separation prefix of a leaf hash, so a leaf can never pass for an interior node.
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of an interior node hash.
const NODE_PREFIX: u8 = 0x01;
/// Levels a `u64` tree size can need: a complete subtree of `2^63` leaves sits at level 63.
const LEVELS: usize = 64;

/// `SHA-256(0x00 || data)`: the hash of one leaf. Sealtrail's leaf data is the event's canonical
/// encoding ([`crate::canonical_bytes`]), so an event's leaf hash is its [`crate::event_hash`].
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(data);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([NODE_PREFIX]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the tree whose leaves have these hashes, in order ([`EMPTY_ROOT`] for none).
/// Allocates nothing: it folds the hashes through a [`MerkleFrontier`].
pub fn tree_root(leaf_hashes: &[Hash]) -> Hash {
    let mut frontier = MerkleFrontier::new();
    for leaf_hash in leaf_hashes {
        frontier.append(*leaf_hash);
    }
    frontier.root()
}

/// `value >> bits`, and 0 once every bit is shifted out (plain `>>` panics at 64).
fn shr(value: u64, bits: u32) -> u64 {
    value.checked_shr(bits).unwrap_or(0)
}

/// The number of significant bits of `value`.
fn bit_len(value: u64) -> u32 {
    u64::BITS - value.leading_zeros()
}

/// A complete subtree: `2^level` leaves starting at leaf `index * 2^level`, and their hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subtree {
    pub level: u8,
    pub index: u64,
    pub hash: Hash,
}

/// Where proofs read complete subtree hashes from: a store's persisted nodes or tiles, or a
/// [`MemoryTree`].
pub trait NodeSource {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The hash of the complete subtree of `2^level` leaves that starts at leaf
    /// `index * 2^level`; level 0 is the leaf hashes.
    ///
    /// Proof functions ask only for subtrees that lie wholly inside the tree size they prove
    /// against, so an implementation MUST answer for every such subtree of every tree size it
    /// serves, and MUST return the same hash every time it is asked.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

impl<S: NodeSource + ?Sized> NodeSource for &S {
    type Error = S::Error;

    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        (**self).node(level, index)
    }
}

/// The append-only "compact range" `[0, tree_size)`: the hash of each maximal complete subtree on
/// the tree's right edge, one per set bit of `tree_size`. This is all the state a log needs to
/// append leaves and compute its root; appending costs O(1) hashes amortised and never allocates.
#[derive(Clone)]
pub struct MerkleFrontier {
    tree_size: u64,
    /// `nodes[level]` is meaningful only while bit `level` of `tree_size` is set: it is then the
    /// hash of the complete subtree at `(level, (tree_size >> level) - 1)`.
    nodes: [Hash; LEVELS],
}

impl std::fmt::Debug for MerkleFrontier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MerkleFrontier")
            .field("tree_size", &self.tree_size)
            .field("root", &hex::encode(self.root()))
            .finish()
    }
}

/// Two frontiers are equal when they describe the same tree: the same size and the same compact
/// range. Slots of levels not in the compact range hold stale hashes and are ignored.
impl PartialEq for MerkleFrontier {
    fn eq(&self, other: &Self) -> bool {
        self.tree_size == other.tree_size && self.subtrees().eq(other.subtrees())
    }
}

impl Eq for MerkleFrontier {}

impl Default for MerkleFrontier {
    fn default() -> Self {
        MerkleFrontier {
            tree_size: 0,
            nodes: [[0; 32]; LEVELS],
        }
    }
}

impl MerkleFrontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the frontier of a tree of `tree_size` leaves from its compact range, given as
    /// the subtree hashes from left (largest) to right (smallest), as [`Self::subtrees`] lists
    /// them.
    pub fn from_subtrees(tree_size: u64, hashes: &[Hash]) -> Result<Self, FrontierError> {
        let expected = tree_size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(FrontierError::WrongSubtreeCount {
                tree_size,
                expected,
                actual: hashes.len(),
            });
        }
        let mut frontier = MerkleFrontier {
            tree_size,
            ..Self::default()
        };
        let levels = (0..LEVELS)
            .rev()
            .filter(|level| tree_size >> level & 1 == 1);
        for (level, hash) in levels.zip(hashes) {
            frontier.nodes[level] = *hash;
        }
        Ok(frontier)
    }

    /// Rebuilds the frontier of a tree of `tree_size` leaves with one node lookup per set bit of
    /// `tree_size`, as a store does on start-up.
    pub fn from_source<S: NodeSource + ?Sized>(
        source: &S,
        tree_size: u64,
    ) -> Result<Self, S::Error> {
        let mut frontier = MerkleFrontier {
            tree_size,
            ..Self::default()
        };
        for level in 0..LEVELS {
            if tree_size >> level & 1 == 1 {
                let index = (tree_size >> level) - 1;
                frontier.nodes[level] = source.node(level as u8, index)?;
            }
        }
        Ok(frontier)
    }

    /// The number of leaves appended so far.
    pub fn tree_size(&self) -> u64 {
        self.tree_size
    }

    /// Appends a leaf hash and returns its leaf index.
    pub fn append(&mut self, leaf_hash: Hash) -> u64 {
        self.append_with(leaf_hash, |_| {})
    }

    /// Appends a leaf hash, reports every subtree this completes (the leaf itself at level 0,
    /// then each parent it closes, bottom up), and returns the leaf index. A store persists the
    /// reported subtrees it keeps and can then serve them as a [`NodeSource`].
    ///
    /// # Panics
    /// When the tree already holds `u64::MAX` leaves, which no log reaches.
    pub fn append_with(&mut self, leaf_hash: Hash, mut completed: impl FnMut(Subtree)) -> u64 {
        let leaf_index = self.tree_size;
        assert!(
            leaf_index < u64::MAX,
            "a Merkle tree holds at most u64::MAX leaves"
        );
        let mut hash = leaf_hash;
        let mut level = 0u32;
        completed(Subtree {
            level: 0,
            index: leaf_index,
            hash,
        });
        // Each trailing one bit of `leaf_index` is a complete left sibling waiting for this
        // leaf's subtree; merging with it closes the parent one level up.
        while leaf_index >> level & 1 == 1 {
            hash = node_hash(&self.nodes[level as usize], &hash);
            level += 1;
            completed(Subtree {
                level: level as u8,
                index: leaf_index >> level,
                hash,
            });
        }
        self.nodes[level as usize] = hash;
        self.tree_size = leaf_index + 1;
        leaf_index
    }

    /// The root hash at the current tree size ([`EMPTY_ROOT`] when empty).
    pub fn root(&self) -> Hash {
        let mut levels = (0..LEVELS).filter(|level| self.tree_size >> level & 1 == 1);
        let Some(lowest) = levels.next() else {
            return EMPTY_ROOT;
        };
        // The right edge folds from the smallest subtree (rightmost) leftwards.
        levels.fold(self.nodes[lowest], |right, level| {
            node_hash(&self.nodes[level], &right)
        })
    }

    /// The compact range: the maximal complete subtrees covering `[0, tree_size)`, from left
    /// (largest) to right (smallest).
    pub fn subtrees(&self) -> impl Iterator<Item = Subtree> + '_ {
        (0..LEVELS)
            .rev()
            .filter(|level| self.tree_size >> level & 1 == 1)
            .map(|level| Subtree {
                level: level as u8,
                index: (self.tree_size >> level) - 1,
                hash: self.nodes[level],
            })
    }
}

/// Why a frontier could not be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrontierError {
    #[error(
        "a tree of {tree_size} leaves has {expected} subtrees in its compact range, got {actual}"
    )]
    WrongSubtreeCount {
        tree_size: u64,
        expected: usize,
        actual: usize,
    },
}

/// Why a proof request is invalid or a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("tree size is zero: the empty tree contains no leaf")]
    EmptyTree,
    #[error("leaf index {leaf_index} is outside a tree of {tree_size} leaves")]
    LeafIndexOutOfRange { leaf_index: u64, tree_size: u64 },
    #[error("first tree size {first} is larger than second tree size {second}")]
    FirstAfterSecond { first: u64, second: u64 },
    #[error("proof has {actual} hashes, but these sizes need exactly {expected}")]
    WrongProofLength { expected: usize, actual: usize },
    #[error("the proof does not lead to the expected root hash")]
    RootMismatch,
    #[error("the proof does not lead to the first tree's root hash")]
    FirstRootMismatch,
}

/// Why a proof could not be generated: the request is invalid, or the node source failed.
#[derive(Debug, thiserror::Error)]
pub enum ProveError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Request(#[from] ProofError),
    #[error("cannot read a tree node")]
    Source(#[source] E),
}

/// An inclusion proof's shape: `inner` siblings on the path below the level where it joins the
/// tree's right edge (in either direction, by the bits of `leaf_index`), then `border` left
/// siblings above it. The right edge's missing right siblings are skipped (RFC 9162 promotes the
/// node instead), which is why the length is not simply `ceil(log2(tree_size))`.
fn inclusion_shape(leaf_index: u64, tree_size: u64) -> Result<(u32, u32), ProofError> {
    if tree_size == 0 {
        return Err(ProofError::EmptyTree);
    }
    if leaf_index >= tree_size {
        return Err(ProofError::LeafIndexOutOfRange {
            leaf_index,
            tree_size,
        });
    }
    Ok(path_shape(leaf_index, tree_size - 1))
}

/// `(inner, border)` of the path from node `index` to the root, where `last` is the index of the
/// tree's last node at the same level.
fn path_shape(index: u64, last: u64) -> (u32, u32) {
    let inner = bit_len(index ^ last);
    let border = shr(index, inner).count_ones();
    (inner, border)
}

/// The hash of leaves `[start, end)`, where `start` is a multiple of a power of two larger than
/// the range, computed from at most `log2(end - start)` complete subtrees.
fn edge_root<S: NodeSource + ?Sized>(source: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    debug_assert!(start < end);
    let length = end - start;
    let mut right_end = end;
    let mut root: Option<Hash> = None;
    // The range splits into one complete subtree per set bit of its length, largest first; RFC
    // 9162 hashes them right to left, so walk the bits from the smallest.
    for level in 0..u64::BITS {
        if length >> level & 1 == 1 {
            let first_leaf = right_end - (1 << level);
            let subtree = source.node(level as u8, first_leaf >> level)?;
            root = Some(match root {
                None => subtree,
                Some(right) => node_hash(&subtree, &right),
            });
            right_end = first_leaf;
        }
    }
    Ok(root.unwrap_or(EMPTY_ROOT))
}

/// Pushes the siblings on the path from node `(level, index)` to the root of a tree of
/// `tree_size` leaves, bottom up: the RFC 9162 audit path above that node.
fn push_path<S: NodeSource + ?Sized>(
    source: &S,
    mut level: u32,
    mut index: u64,
    tree_size: u64,
    proof: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let last_leaf = tree_size - 1;
    while shr(last_leaf, level) != 0 {
        let sibling = index ^ 1;
        if sibling <= shr(last_leaf, level) {
            let hash = if sibling < shr(tree_size, level) {
                source.node(level as u8, sibling)?
            } else {
                // The sibling is on the right edge and not yet complete.
                edge_root(source, sibling << level, tree_size)?
            };
            proof.push(hash);
        }
        index >>= 1;
        level += 1;
    }
    Ok(())
}

/// The root of the tree's first `tree_size` leaves, read from a node source with at most
/// `log2(tree_size)` lookups ([`EMPTY_ROOT`] for 0).
pub fn root_at<S: NodeSource + ?Sized>(source: &S, tree_size: u64) -> Result<Hash, S::Error> {
    if tree_size == 0 {
        return Ok(EMPTY_ROOT);
    }
    edge_root(source, 0, tree_size)
}

/// The RFC 9162 inclusion proof (audit path) of leaf `leaf_index` in the tree of the first
/// `tree_size` leaves, bottom up, with O(log n) node lookups.
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    source: &S,
    leaf_index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, ProveError<S::Error>> {
    let (inner, border) = inclusion_shape(leaf_index, tree_size)?;
    let mut proof = Vec::with_capacity((inner + border) as usize);
    push_path(source, 0, leaf_index, tree_size, &mut proof).map_err(ProveError::Source)?;
    debug_assert_eq!(proof.len(), (inner + border) as usize);
    Ok(proof)
}

/// The RFC 9162 consistency proof from the tree of the first `first` leaves to the tree of the
/// first `second` leaves, with O(log n) node lookups. Empty when `first` is 0 or equals `second`.
pub fn consistency_proof<S: NodeSource + ?Sized>(
    source: &S,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, ProveError<S::Error>> {
    if first > second {
        return Err(ProofError::FirstAfterSecond { first, second }.into());
    }
    if first == 0 || first == second {
        return Ok(Vec::new());
    }
    // The first tree's rightmost complete subtree: every later node of the proof is on the path
    // from it to the second tree's root. When the first tree is itself complete, the verifier
    // already holds that node (the first root), so it is left out.
    let level = first.trailing_zeros();
    let index = (first - 1) >> level;
    let (inner, border) = path_shape(index, (second - 1) >> level);
    let mut proof = Vec::with_capacity((inner + border + 1) as usize);
    if !first.is_power_of_two() {
        proof.push(
            source
                .node(level as u8, index)
                .map_err(ProveError::Source)?,
        );
    }
    push_path(source, level, index, second, &mut proof).map_err(ProveError::Source)?;
    Ok(proof)
}

/// The root that an inclusion proof leads to (RFC 9162 section 2.1.3.2), for a verifier that
/// compares it itself.
pub fn root_from_inclusion_proof(
    leaf_hash: &Hash,
    leaf_index: u64,
    tree_size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    let (inner, border) = inclusion_shape(leaf_index, tree_size)?;
    let expected = (inner + border) as usize;
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    let (inner_path, border_path) = proof.split_at(inner as usize);
    let mut hash = *leaf_hash;
    for (level, sibling) in inner_path.iter().enumerate() {
        hash = if leaf_index >> level & 1 == 0 {
            node_hash(&hash, sibling)
        } else {
            node_hash(sibling, &hash)
        };
    }
    for sibling in border_path {
        hash = node_hash(sibling, &hash);
    }
    Ok(hash)
}

/// Checks that `leaf_hash` is leaf `leaf_index` of the tree of `tree_size` leaves whose root is
/// `root` (RFC 9162 section 2.1.3.2). Costs one hash per proof element and allocates nothing.
///
/// The proof authenticates the leaf against the root; `tree_size` is authenticated by whatever
/// vouches for the root (a signed checkpoint), so take both from the same checkpoint.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    leaf_index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if root_from_inclusion_proof(leaf_hash, leaf_index, tree_size, proof)? == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Checks that the tree of `first` leaves with root `first_root` is a prefix of the tree of
/// `second` leaves with root `second_root` (RFC 9162 section 2.1.4.2).
///
/// Equal sizes need an empty proof and equal roots. The empty tree is a prefix of every tree:
/// `first` 0 needs an empty proof and `first_root` equal to [`EMPTY_ROOT`].
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::FirstAfterSecond { first, second });
    }
    if first == 0 || first == second {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength {
                expected: 0,
                actual: proof.len(),
            });
        }
        if first == 0 && *first_root != EMPTY_ROOT {
            return Err(ProofError::FirstRootMismatch);
        }
        if first == second && first_root != second_root {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }

    let level = first.trailing_zeros();
    let index = (first - 1) >> level;
    let (inner, border) = path_shape(index, (second - 1) >> level);
    let seeded = first.is_power_of_two();
    let expected = (inner + border) as usize + usize::from(!seeded);
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    // Start from the first tree's rightmost complete subtree; when the first tree is complete
    // that subtree is the first root itself.
    let (start, path) = match proof.split_first() {
        Some((node, rest)) if !seeded => (*node, rest),
        _ => (*first_root, proof),
    };
    let (inner_path, border_path) = path.split_at(inner as usize);
    let mut first_hash = start;
    let mut second_hash = start;
    for (offset, sibling) in inner_path.iter().enumerate() {
        if index >> offset & 1 == 1 {
            // A left sibling lies inside both trees.
            first_hash = node_hash(sibling, &first_hash);
            second_hash = node_hash(sibling, &second_hash);
        } else {
            // A right sibling holds only leaves appended after the first tree.
            second_hash = node_hash(&second_hash, sibling);
        }
    }
    for sibling in border_path {
        first_hash = node_hash(sibling, &first_hash);
        second_hash = node_hash(sibling, &second_hash);
    }
    if first_hash != *first_root {
        return Err(ProofError::FirstRootMismatch);
    }
    if second_hash != *second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// A [`NodeSource`] that keeps every complete subtree in memory: for tests, small bundles and the
/// offline verifier. A tree of `n` leaves holds just under `2n` hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryTree {
    /// `levels[level][index]` is the complete subtree `(level, index)`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// The tree of these leaf hashes, in order.
    pub fn from_leaf_hashes(leaf_hashes: impl IntoIterator<Item = Hash>) -> Self {
        let mut tree = Self::new();
        for leaf_hash in leaf_hashes {
            tree.push(leaf_hash);
        }
        tree
    }

    /// Appends a leaf hash and returns its leaf index.
    pub fn push(&mut self, leaf_hash: Hash) -> u64 {
        let leaf_index = self.tree_size();
        let mut hash = leaf_hash;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let nodes = &mut self.levels[level];
            nodes.push(hash);
            // An even count means the node just pushed was a right child: its parent is complete.
            if nodes.len() % 2 == 1 {
                break;
            }
            hash = node_hash(&nodes[nodes.len() - 2], &hash);
            level += 1;
        }
        leaf_index
    }

    /// The number of leaves.
    pub fn tree_size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// The leaf hashes, in order.
    pub fn leaf_hashes(&self) -> &[Hash] {
        self.levels.first().map_or(&[], Vec::as_slice)
    }

    /// The root at the current tree size.
    pub fn root(&self) -> Hash {
        root_at(self, self.tree_size()).expect("a memory tree holds every complete subtree")
    }
}

/// The node a [`MemoryTree`] was asked for is not a complete subtree of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no complete subtree at level {level}, index {index} in a tree of {tree_size} leaves")]
pub struct UnknownNode {
    pub level: u8,
    pub index: u64,
    pub tree_size: u64,
}

impl NodeSource for MemoryTree {
    type Error = UnknownNode;

    fn node(&self, level: u8, index: u64) -> Result<Hash, UnknownNode> {
        usize::try_from(index)
            .ok()
            .and_then(|index| self.levels.get(usize::from(level))?.get(index))
            .copied()
            .ok_or(UnknownNode {
                level,
                index,
                tree_size: self.tree_size(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(count: u64) -> Vec<Hash> {
        (0..count).map(|n| leaf_hash(&n.to_be_bytes())).collect()
    }

    /// RFC 9162 section 2.1.1 `MTH`, written as the recursion it specifies.
    fn reference_root(leaf_hashes: &[Hash]) -> Hash {
        match leaf_hashes.len() {
            0 => EMPTY_ROOT,
            1 => leaf_hashes[0],
            n => {
                let split = split_point(n);
                node_hash(
                    &reference_root(&leaf_hashes[..split]),
                    &reference_root(&leaf_hashes[split..]),
                )
            }
        }
    }

    /// The largest power of two smaller than `n` (n > 1).
    fn split_point(n: usize) -> usize {
        (n - 1).next_power_of_two() / if (n - 1).is_power_of_two() { 1 } else { 2 }
    }

    /// RFC 9162 section 2.1.3.1 `PATH(m, D[n])`.
    fn reference_path(m: usize, leaf_hashes: &[Hash]) -> Vec<Hash> {
        let n = leaf_hashes.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = split_point(n);
        let (mut path, sibling) = if m < k {
            (
                reference_path(m, &leaf_hashes[..k]),
                reference_root(&leaf_hashes[k..]),
            )
        } else {
            (
                reference_path(m - k, &leaf_hashes[k..]),
                reference_root(&leaf_hashes[..k]),
            )
        };
        path.push(sibling);
        path
    }

    /// RFC 9162 section 2.1.4.1 `SUBPROOF(m, D[n], b)`.
    fn reference_subproof(m: usize, leaf_hashes: &[Hash], complete: bool) -> Vec<Hash> {
        let n = leaf_hashes.len();
        if m == n {
            return if complete {
                Vec::new()
            } else {
                vec![reference_root(leaf_hashes)]
            };
        }
        let k = split_point(n);
        let (mut proof, sibling) = if m <= k {
            (
                reference_subproof(m, &leaf_hashes[..k], complete),
                reference_root(&leaf_hashes[k..]),
            )
        } else {
            (
                reference_subproof(m - k, &leaf_hashes[k..], false),
                reference_root(&leaf_hashes[..k]),
            )
        };
        proof.push(sibling);
        proof
    }

    #[test]
    fn split_point_is_the_largest_power_of_two_below() {
        let expected = [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (1000, 512)];
        for (n, k) in expected {
            assert_eq!(split_point(n), k, "n = {n}");
        }
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest([])));
        assert_eq!(tree_root(&[]), EMPTY_ROOT);
        assert_eq!(MemoryTree::new().root(), EMPTY_ROOT);
    }

    #[test]
    fn roots_match_the_rfc_recursion() {
        let all = leaves(130);
        let mut frontier = MerkleFrontier::new();
        let mut tree = MemoryTree::new();
        for (size, leaf) in all.iter().enumerate() {
            let expected = reference_root(&all[..size]);
            assert_eq!(frontier.root(), expected, "frontier, size {size}");
            assert_eq!(tree.root(), expected, "memory tree, size {size}");
            assert_eq!(tree_root(&all[..size]), expected, "tree_root, size {size}");
            assert_eq!(frontier.append(*leaf), size as u64);
            assert_eq!(tree.push(*leaf), size as u64);
        }
        for size in 0..=all.len() {
            assert_eq!(
                root_at(&tree, size as u64),
                Ok(reference_root(&all[..size]))
            );
        }
    }

    #[test]
    fn frontier_reports_exactly_the_complete_subtrees() {
        let all = leaves(77);
        let tree = MemoryTree::from_leaf_hashes(all.iter().copied());
        let mut frontier = MerkleFrontier::new();
        let mut reported = Vec::new();
        for leaf in &all {
            frontier.append_with(*leaf, |subtree| reported.push(subtree));
        }
        let expected: Vec<Subtree> = tree
            .levels
            .iter()
            .enumerate()
            .flat_map(|(level, nodes)| {
                nodes.iter().enumerate().map(move |(index, hash)| Subtree {
                    level: level as u8,
                    index: index as u64,
                    hash: *hash,
                })
            })
            .collect();
        let mut sorted = reported.clone();
        sorted.sort_by_key(|subtree| (subtree.level, subtree.index));
        assert_eq!(sorted, expected);
        // Every subtree is reported once, and a parent only after its children.
        assert_eq!(reported.len(), expected.len());
    }

    #[test]
    fn frontier_round_trips_through_its_subtrees_and_a_source() {
        let all = leaves(45);
        let tree = MemoryTree::from_leaf_hashes(all.iter().copied());
        let mut frontier = MerkleFrontier::new();
        for (size, leaf) in all.iter().enumerate() {
            let hashes: Vec<Hash> = frontier.subtrees().map(|subtree| subtree.hash).collect();
            let rebuilt = MerkleFrontier::from_subtrees(size as u64, &hashes).unwrap();
            assert_eq!(rebuilt.root(), frontier.root());
            let restored = MerkleFrontier::from_source(&tree, size as u64).unwrap();
            assert_eq!(restored.root(), frontier.root());
            for subtree in frontier.subtrees() {
                assert_eq!(tree.node(subtree.level, subtree.index), Ok(subtree.hash));
            }
            frontier.append(*leaf);
        }
        assert_eq!(
            MerkleFrontier::from_subtrees(3, &[EMPTY_ROOT]),
            Err(FrontierError::WrongSubtreeCount {
                tree_size: 3,
                expected: 2,
                actual: 1
            })
        );
    }

    #[test]
    fn proofs_match_the_rfc_recursion_for_every_small_tree() {
        let all = leaves(40);
        let tree = MemoryTree::from_leaf_hashes(all.iter().copied());
        for second in 1..=all.len() {
            let prefix = &all[..second];
            let root = reference_root(prefix);
            for (leaf_index, leaf) in prefix.iter().enumerate() {
                let proof = inclusion_proof(&tree, leaf_index as u64, second as u64).unwrap();
                assert_eq!(proof, reference_path(leaf_index, prefix));
                verify_inclusion(leaf, leaf_index as u64, second as u64, &proof, &root).unwrap();
            }
            for first in 1..=second {
                let proof = consistency_proof(&tree, first as u64, second as u64).unwrap();
                assert_eq!(proof, reference_subproof(first, prefix, true));
                let first_root = reference_root(&all[..first]);
                verify_consistency(first as u64, second as u64, &first_root, &root, &proof)
                    .unwrap();
            }
        }
    }

    #[test]
    fn proof_requests_outside_the_tree_are_rejected() {
        let tree = MemoryTree::from_leaf_hashes(leaves(5));
        assert!(matches!(
            inclusion_proof(&tree, 0, 0),
            Err(ProveError::Request(ProofError::EmptyTree))
        ));
        assert!(matches!(
            inclusion_proof(&tree, 5, 5),
            Err(ProveError::Request(ProofError::LeafIndexOutOfRange {
                leaf_index: 5,
                tree_size: 5
            }))
        ));
        assert!(matches!(
            consistency_proof(&tree, 4, 3),
            Err(ProveError::Request(ProofError::FirstAfterSecond {
                first: 4,
                second: 3
            }))
        ));
        // Sizes beyond what the source holds surface as a source error, not a panic.
        assert!(matches!(
            inclusion_proof(&tree, 0, 6),
            Err(ProveError::Source(UnknownNode { .. }))
        ));
        assert_eq!(consistency_proof(&tree, 0, 5).unwrap(), Vec::<Hash>::new());
    }

    /// Records how many nodes a proof reads, to hold generation to O(log n) lookups.
    #[derive(Debug)]
    struct CountingSource<'a> {
        tree: &'a MemoryTree,
        lookups: std::cell::Cell<usize>,
    }

    impl NodeSource for CountingSource<'_> {
        type Error = UnknownNode;

        fn node(&self, level: u8, index: u64) -> Result<Hash, UnknownNode> {
            self.lookups.set(self.lookups.get() + 1);
            self.tree.node(level, index)
        }
    }

    #[test]
    fn proofs_read_logarithmically_many_nodes() {
        let tree = MemoryTree::from_leaf_hashes(leaves(1023));
        let source = CountingSource {
            tree: &tree,
            lookups: std::cell::Cell::new(0),
        };
        // log2(1023) < 10: a path of at most 10 siblings, one of them on the right edge built
        // from at most 10 subtrees.
        for (leaf_index, first) in [(0, 1), (511, 511), (700, 1000), (1022, 1022)] {
            source.lookups.set(0);
            inclusion_proof(&source, leaf_index, 1023).unwrap();
            assert!(
                source.lookups.get() <= 20,
                "inclusion read {}",
                source.lookups.get()
            );
            source.lookups.set(0);
            consistency_proof(&source, first, 1023).unwrap();
            assert!(
                source.lookups.get() <= 21,
                "consistency read {}",
                source.lookups.get()
            );
        }
    }

    #[test]
    fn huge_tree_sizes_do_not_overflow() {
        // A tree whose leaves are all equal has one hash per level, which stands in for a tree
        // of 2^64 - 1 leaves; only the arithmetic is under test.
        #[derive(Debug)]
        struct Uniform([Hash; 64]);
        impl NodeSource for Uniform {
            type Error = UnknownNode;
            fn node(&self, level: u8, _index: u64) -> Result<Hash, UnknownNode> {
                Ok(self.0[usize::from(level)])
            }
        }
        let mut levels = [leaf_hash(b"same"); 64];
        for level in 1..64 {
            levels[level] = node_hash(&levels[level - 1], &levels[level - 1]);
        }
        let uniform = Uniform(levels);
        let tree_size = u64::MAX;
        for leaf_index in [0, 1 << 63, u64::MAX - 1] {
            let proof = inclusion_proof(&uniform, leaf_index, tree_size).unwrap();
            let root = root_from_inclusion_proof(&levels[0], leaf_index, tree_size, &proof);
            assert_eq!(root, Ok(root_at(&uniform, tree_size).unwrap()));
        }
        for first in [1, 3, 1 << 63, u64::MAX - 1] {
            let proof = consistency_proof(&uniform, first, tree_size).unwrap();
            let first_root = root_at(&uniform, first).unwrap();
            let second_root = root_at(&uniform, tree_size).unwrap();
            verify_consistency(first, tree_size, &first_root, &second_root, &proof).unwrap();
        }
    }
}
