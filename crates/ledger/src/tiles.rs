//! Tiles: which Merkle nodes a store persists, and how proofs are served from them.
//!
//! A store keeps the leaf hashes (each event's `event_hash`, stored with the event anyway) and
//! one node per complete subtree at every level that is a multiple of [`TILE_HEIGHT`] (8, 16,
//! 24, …): one extra row per 256 events, one more per 65,536. Any complete subtree is then the
//! root of at most 256 stored nodes of one *block* (256 consecutive stored nodes of one stored
//! level), so a proof, which needs about `log2(n)` nodes on at most `log2(n) / 8` stored levels,
//! costs a handful of block reads instead of a rebuild.
//!
//! Proof generation is two-phase so that stores with async IO can serve it: run the proof with a
//! [`NodeRecorder`] to learn which nodes it needs, read the [`blocks_needed`] for them, then run
//! it again over a [`TileSource`] holding those blocks. Both phases are pure.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use crate::merkle::{tree_root, Hash, NodeSource};

/// Stored levels are the multiples of this height.
pub const TILE_HEIGHT: u8 = 8;
/// Nodes in one block of a stored level: `2^TILE_HEIGHT`.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

/// The stored nodes `(level, index)` (level a positive multiple of [`TILE_HEIGHT`]) that become
/// complete when a tree grows from `old_size` to `new_size` leaves, bottom up, so each can be
/// computed from stored nodes of the level below.
pub fn completed_tiles(old_size: u64, new_size: u64) -> Vec<(u8, u64)> {
    let mut tiles = Vec::new();
    let mut level = TILE_HEIGHT;
    while u32::from(level) < u64::BITS {
        let span = 1u64 << level;
        if span > new_size {
            break;
        }
        for index in old_size / span..new_size / span {
            tiles.push((level, index));
        }
        level += TILE_HEIGHT;
    }
    tiles
}

/// The stored level a node at `level` is computed from.
fn base_level(level: u8) -> u8 {
    level - level % TILE_HEIGHT
}

/// Records which nodes a proof asks for; answers with placeholder hashes.
#[derive(Debug, Default)]
pub struct NodeRecorder {
    requests: RefCell<Vec<(u8, u64)>>,
}

impl NodeRecorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The nodes asked for so far.
    pub fn requests(&self) -> Vec<(u8, u64)> {
        self.requests.borrow().clone()
    }
}

/// Error type of the recorder, which never fails.
#[derive(Debug, thiserror::Error)]
#[error("unreachable")]
pub struct NeverFails;

impl NodeSource for NodeRecorder {
    type Error = NeverFails;

    fn node(&self, level: u8, index: u64) -> Result<Hash, NeverFails> {
        self.requests.borrow_mut().push((level, index));
        Ok([0; 32])
    }
}

/// The blocks `(stored level, block number)` holding the stored nodes that the requested nodes
/// are computed from. Block `b` of level `L` is stored nodes `b * 256 .. (b + 1) * 256`.
pub fn blocks_needed(requests: &[(u8, u64)]) -> BTreeSet<(u8, u64)> {
    requests
        .iter()
        .map(|&(level, index)| {
            let base = base_level(level);
            let first = index << (level - base);
            (base, first / TILE_WIDTH)
        })
        .collect()
}

/// A node was asked for whose block was not loaded.
#[derive(Debug, thiserror::Error)]
#[error("node at level {level}, index {index} needs a block that was not loaded")]
pub struct MissingBlock {
    pub level: u8,
    pub index: u64,
}

/// Serves complete-subtree nodes from loaded blocks of stored nodes.
#[derive(Debug, Default)]
pub struct TileSource {
    blocks: HashMap<(u8, u64), Vec<Hash>>,
}

impl TileSource {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds block `block` of stored level `level`: up to 256 consecutive stored nodes (fewer for
    /// the last, partly filled block).
    pub fn insert_block(&mut self, level: u8, block: u64, nodes: Vec<Hash>) {
        self.blocks.insert((level, block), nodes);
    }
}

impl NodeSource for TileSource {
    type Error = MissingBlock;

    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingBlock> {
        let base = base_level(level);
        let span = 1u64 << (level - base);
        let first = index * span;
        let missing = MissingBlock { level, index };
        let block = self
            .blocks
            .get(&(base, first / TILE_WIDTH))
            .ok_or(MissingBlock { level, index })?;
        let start = (first % TILE_WIDTH) as usize;
        let children = block.get(start..start + span as usize).ok_or(missing)?;
        Ok(if span == 1 {
            children[0]
        } else {
            tree_root(children)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{consistency_proof, inclusion_proof, leaf_hash, root_at, MemoryTree};

    /// Builds the stored levels of a tree the way a store does, tile by tile as it grows.
    fn stored_levels(leaves: &[Hash], growth: &[u64]) -> HashMap<u8, Vec<Hash>> {
        let mut levels: HashMap<u8, Vec<Hash>> = HashMap::new();
        levels.insert(0, Vec::new());
        let mut size = 0u64;
        for &grown in growth {
            levels
                .get_mut(&0)
                .unwrap()
                .extend_from_slice(&leaves[size as usize..grown as usize]);
            for (level, index) in completed_tiles(size, grown) {
                let below = &levels[&(level - TILE_HEIGHT)];
                let first = (index * TILE_WIDTH) as usize;
                let hash = tree_root(&below[first..first + TILE_WIDTH as usize]);
                let stored = levels.entry(level).or_default();
                assert_eq!(stored.len() as u64, index, "tiles complete in order");
                stored.push(hash);
            }
            size = grown;
        }
        levels
    }

    fn source_for(levels: &HashMap<u8, Vec<Hash>>, requests: &[(u8, u64)]) -> TileSource {
        let mut source = TileSource::new();
        for (level, block) in blocks_needed(requests) {
            let nodes = &levels[&level];
            let first = (block * TILE_WIDTH) as usize;
            let last = (first + TILE_WIDTH as usize).min(nodes.len());
            source.insert_block(level, block, nodes[first..last].to_vec());
        }
        source
    }

    #[test]
    fn completed_tiles_cover_each_stored_node_once() {
        let mut all = Vec::new();
        let mut size = 0;
        for grown in [1, 255, 256, 257, 1000, 65_535, 65_536, 70_000] {
            all.extend(completed_tiles(size, grown));
            size = grown;
        }
        let level8: Vec<u64> = all
            .iter()
            .filter(|(l, _)| *l == 8)
            .map(|(_, i)| *i)
            .collect();
        assert_eq!(level8, (0..70_000 / 256).collect::<Vec<_>>());
        assert_eq!(all.iter().filter(|(l, _)| *l == 16).count(), 1);
    }

    #[test]
    fn two_phase_proofs_equal_in_memory_proofs() {
        let leaves: Vec<Hash> = (0..70_000u32)
            .map(|n| leaf_hash(&n.to_be_bytes()))
            .collect();
        let levels = stored_levels(&leaves, &[100, 256, 300, 65_536, 66_000, 70_000]);
        let memory = MemoryTree::from_leaf_hashes(leaves.clone());
        for (leaf_index, tree_size) in [
            (0, 1),
            (5, 70_000),
            (69_999, 70_000),
            (65_535, 65_536),
            (300, 66_000),
        ] {
            let recorder = NodeRecorder::new();
            inclusion_proof(&recorder, leaf_index, tree_size).unwrap();
            let source = source_for(&levels, &recorder.requests());
            assert_eq!(
                inclusion_proof(&source, leaf_index, tree_size).unwrap(),
                inclusion_proof(&memory, leaf_index, tree_size).unwrap()
            );
            assert!(
                blocks_needed(&recorder.requests()).len() <= 6,
                "a handful of block reads"
            );
        }
        for (first, second) in [
            (1, 70_000),
            (256, 65_537),
            (65_536, 70_000),
            (12_345, 66_000),
        ] {
            let recorder = NodeRecorder::new();
            consistency_proof(&recorder, first, second).unwrap();
            root_at(&recorder, second).unwrap();
            let source = source_for(&levels, &recorder.requests());
            assert_eq!(
                consistency_proof(&source, first, second).unwrap(),
                consistency_proof(&memory, first, second).unwrap()
            );
            assert_eq!(
                root_at(&source, second).unwrap(),
                tree_root(&leaves[..second as usize])
            );
        }
    }
}
