//! The Merkle frontier a writer keeps beside each chain head, and the tiles a group completes.
//!
//! A store keeps every complete subtree at levels 8, 16, 24, … (the tiles of [`crate::tiles`]),
//! written in the same transaction as the events that complete it. To know a tile's hash when
//! its last leaf arrives, a writer needs the tree's compact range (its [`MerkleFrontier`]: one
//! hash per set bit of the tree size). Stores keep it beside the chain head it belongs to and
//! write it back with the new head, so no leaf or tile is ever read back on the write path: the
//! leaves of a partly filled tile may already have left the hot tier for the archive.
//! A missing or malformed stored frontier is rebuilt from the stored nodes of the partly filled
//! block at each stored level (at most 255 nodes per level). Pure: the caller does the reading.

use crate::merkle::{Hash, MerkleFrontier};
use crate::tiles::{TILE_HEIGHT, TILE_WIDTH};

/// Stored nodes of `level` with index in `[first, end)`: the filled part of the last, partly
/// filled block of that level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialBlock {
    pub level: u8,
    pub first: u64,
    pub end: u64,
}

/// A tile to store: the node at `level` (a multiple of [`TILE_HEIGHT`]) and `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub level: u8,
    pub index: u64,
    pub hash: Hash,
}

/// The stored frontier's bytes: the compact range's hashes, largest subtree first.
pub fn encode_frontier(frontier: &MerkleFrontier) -> Vec<u8> {
    frontier
        .subtrees()
        .flat_map(|subtree| subtree.hash)
        .collect()
}

/// The frontier of a tree of `tree_size` leaves from its stored bytes; `None` if they do not
/// have one hash per set bit of `tree_size`.
pub fn decode_frontier(tree_size: u64, bytes: &[u8]) -> Option<MerkleFrontier> {
    let hashes: Vec<Hash> = bytes
        .chunks(32)
        .map(|chunk| chunk.try_into().ok())
        .collect::<Option<_>>()?;
    MerkleFrontier::from_subtrees(tree_size, &hashes).ok()
}

/// The partly filled blocks whose stored nodes rebuild the frontier of `tree_size` leaves, from
/// level 0 up.
pub fn partial_blocks(tree_size: u64) -> Vec<PartialBlock> {
    let mut blocks = Vec::new();
    let mut level = 0u8;
    while u32::from(level) < u64::BITS && tree_size >> level > 0 {
        let end = tree_size >> level;
        let first = end / TILE_WIDTH * TILE_WIDTH;
        if first < end {
            blocks.push(PartialBlock { level, first, end });
        }
        level += TILE_HEIGHT;
    }
    blocks
}

/// Why a frontier could not be rebuilt: a block's stored nodes are not all there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingNodes {
    pub level: u8,
    pub expected: u64,
    pub found: u64,
}

/// Rebuilds the frontier of `tree_size` leaves from the stored nodes of [`partial_blocks`]:
/// `nodes(level)` returns those of the block at `level`, in index order. The compact range of a
/// partly filled block (which starts at a multiple of 256) is exactly the part of the tree's
/// compact range between its level and the next stored level.
pub fn rebuild_frontier(
    tree_size: u64,
    nodes: impl Fn(u8) -> Vec<Hash>,
) -> Result<MerkleFrontier, MissingNodes> {
    let mut hashes = Vec::new();
    for block in partial_blocks(tree_size).into_iter().rev() {
        let stored = nodes(block.level);
        let expected = block.end - block.first;
        if stored.len() as u64 != expected {
            return Err(MissingNodes {
                level: block.level,
                expected,
                found: stored.len() as u64,
            });
        }
        let mut local = MerkleFrontier::new();
        for hash in stored {
            local.append(hash);
        }
        hashes.extend(local.subtrees().map(|subtree| subtree.hash));
    }
    Ok(MerkleFrontier::from_subtrees(tree_size, &hashes)
        .expect("one hash per set bit: each block contributes the set bits of its own count"))
}

/// Appends `leaves` to `frontier` and returns the tiles they complete, bottom up per leaf.
pub fn append_leaves(frontier: &mut MerkleFrontier, leaves: &[Hash]) -> Vec<Tile> {
    let mut tiles = Vec::new();
    for leaf in leaves {
        frontier.append_with(*leaf, |subtree| {
            if subtree.level > 0 && subtree.level % TILE_HEIGHT == 0 {
                tiles.push(Tile {
                    level: subtree.level,
                    index: subtree.index,
                    hash: subtree.hash,
                });
            }
        });
    }
    tiles
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{leaf_hash, MemoryTree};
    use crate::tiles::completed_tiles;
    use std::collections::HashMap;

    fn leaves(count: u64) -> Vec<Hash> {
        (0..count).map(|n| leaf_hash(&n.to_be_bytes())).collect()
    }

    /// Grows a tree in groups of the given sizes, keeping the frontier only in its stored
    /// bytes between groups (and rebuilding it from stored nodes every other group), and checks
    /// every tile against a tree held in memory.
    fn grow(group_sizes: &[u64]) {
        let total: u64 = group_sizes.iter().sum();
        let all = leaves(total);
        let mut stored_tiles: HashMap<(u8, u64), Hash> = HashMap::new();
        let mut stored_frontier = encode_frontier(&MerkleFrontier::new());
        let mut size = 0u64;
        for (group_number, &group) in group_sizes.iter().enumerate() {
            let mut frontier = if group_number % 2 == 0 {
                decode_frontier(size, &stored_frontier).expect("stored frontier decodes")
            } else {
                rebuild_frontier(size, |level| {
                    let block = partial_blocks(size)
                        .into_iter()
                        .find(|block| block.level == level)
                        .expect("asked only for its blocks");
                    (block.first..block.end)
                        .map(|index| {
                            if level == 0 {
                                all[index as usize]
                            } else {
                                stored_tiles[&(level, index)]
                            }
                        })
                        .collect()
                })
                .expect("every stored node is there")
            };
            let new_leaves = &all[size as usize..(size + group) as usize];
            let tiles = append_leaves(&mut frontier, new_leaves);
            let got: Vec<(u8, u64)> = tiles.iter().map(|tile| (tile.level, tile.index)).collect();
            let mut expected = completed_tiles(size, size + group);
            expected.sort_by_key(|(level, index)| (index << level, *level));
            let mut got_sorted = got.clone();
            got_sorted.sort_by_key(|(level, index)| (index << level, *level));
            assert_eq!(got_sorted, expected, "tiles growing {size} by {group}");
            for tile in tiles {
                let first = tile.index << tile.level;
                let span = 1u64 << tile.level;
                let tree = MemoryTree::from_leaf_hashes(
                    all[first as usize..(first + span) as usize].iter().copied(),
                );
                assert_eq!(tile.hash, tree.root(), "tile {}/{}", tile.level, tile.index);
                stored_tiles.insert((tile.level, tile.index), tile.hash);
            }
            size += group;
            let memory = MemoryTree::from_leaf_hashes(all[..size as usize].iter().copied());
            assert_eq!(frontier.root(), memory.root(), "root after {size} leaves");
            stored_frontier = encode_frontier(&frontier);
        }
    }

    #[test]
    fn tiles_match_the_tree_whatever_the_group_sizes() {
        grow(&[1, 255, 1, 300, 256, 10]);
        grow(&[1000]);
        grow(&[255, 2, 3]);
    }

    #[test]
    fn a_level_16_tile_completes_across_groups() {
        // 65,536 leaves complete tile 16/0; the groups split both level-8 and level-16 blocks,
        // and the second group's frontier is rebuilt from stored leaves and tiles.
        grow(&[40_000, 25_000, 536, 300]);
    }

    #[test]
    fn a_malformed_stored_frontier_is_refused() {
        assert!(decode_frontier(3, &[0; 64]).is_some());
        assert!(decode_frontier(3, &[0; 32]).is_none(), "one hash short");
        assert!(decode_frontier(3, &[0; 70]).is_none(), "not whole hashes");
        assert!(decode_frontier(0, &[]).is_some());
    }

    #[test]
    fn a_short_block_is_reported() {
        let error =
            rebuild_frontier(300, |level| leaves(if level == 0 { 10 } else { 1 })).unwrap_err();
        assert_eq!(
            error,
            MissingNodes {
                level: 0,
                expected: 44,
                found: 10
            }
        );
        assert_eq!(
            partial_blocks(300),
            vec![
                PartialBlock {
                    level: 0,
                    first: 256,
                    end: 300
                },
                PartialBlock {
                    level: 8,
                    first: 0,
                    end: 1
                }
            ]
        );
    }
}
