//! The log verifier: one tenant's events, in `seq` order, checked against the chain rules, the
//! Merkle tiles and signed checkpoints a store keeps, and the head and frontier it records.
//!
//! Every backend and every tier feeds the same state machine: a store only reads rows (from one
//! consistent snapshot), the archive only reads files, and this decides. That is what makes
//! "intact" mean the same on SQLite, on PostgreSQL and across the warm and cold tiers.

use std::collections::HashMap;

use sealtrail_model::StoredEvent;

use crate::{
    decode_frontier, open_checkpoint, tenant_origin, ChainFault, ChainHead, ChainVerifier,
    Checkpoint, EventView, Hash, MerkleFrontier, NoteVerifier, TILE_HEIGHT,
};

/// The verdict on one tenant's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantReport {
    pub tenant_id: String,
    /// Events checked before the verdict.
    pub events_checked: u64,
    /// The verified head, or the first fault.
    pub verdict: Result<ChainHead, TenantFault>,
}

/// Why a tenant's log is not intact: a fault of the chain or tree rules, or of the store's
/// record of where the chain ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantFault {
    #[error(transparent)]
    Chain(#[from] ChainFault),
    /// The recorded head is behind the last stored event, so the store's next write would reuse
    /// `seq` (and fail on every attempt).
    #[error("seq {seq}: chain head rolled back (it records seq {recorded}, but the log holds events through seq {last}); the store would assign seq {seq} again")]
    HeadBehindLog { seq: u64, recorded: u64, last: u64 },
    /// Events exist (hot or archived) but the store records no head: the tenant's hot rows were
    /// removed, and the store would restart its chain at seq 1.
    #[error("seq {seq}: chain head missing (the log holds events through seq {seq}, but the store records no head for this tenant)")]
    HeadMissing { seq: u64 },
    /// The Merkle frontier stored beside the head is not the tree of the log: the next tiles the
    /// store completes from it would be wrong.
    #[error("seq {seq}: the Merkle frontier stored beside the chain head does not match the tree of the log")]
    FrontierMismatch { seq: u64 },
    /// A stored value (a row's column, a tile, a checkpoint) that does not decode: it was
    /// edited or damaged. Names where it is.
    #[error("seq {seq}: stored value cannot be read ({what}): {reason}")]
    Undecodable {
        seq: u64,
        what: String,
        reason: String,
    },
    /// A fault found by a checkpoint kept in a witness directory.
    #[error("{fault} (witness checkpoint {path})")]
    Witnessed { fault: ChainFault, path: String },
}

impl TenantFault {
    /// The first `seq` that fails.
    pub fn seq(&self) -> u64 {
        match self {
            TenantFault::Chain(fault) | TenantFault::Witnessed { fault, .. } => fault.seq(),
            TenantFault::HeadBehindLog { seq, .. }
            | TenantFault::HeadMissing { seq }
            | TenantFault::FrontierMismatch { seq }
            | TenantFault::Undecodable { seq, .. } => *seq,
        }
    }
}

/// A signed checkpoint to hold the rebuilt tree against.
#[derive(Debug, Clone)]
pub struct CheckpointToCheck {
    tree_size: u64,
    /// The opened checkpoint, or why it failed to open.
    opened: Result<Checkpoint, String>,
    /// Where a witness keeps it; `None` for the store's own.
    witness: Option<String>,
}

impl CheckpointToCheck {
    /// Opens `note`, stored as `tenant_id`'s checkpoint of `tree_size`, with `key`. A note that
    /// does not open is kept as a fault to report when the tree reaches its size.
    pub fn open(
        tenant_id: &str,
        tree_size: u64,
        note: &str,
        key: &NoteVerifier,
        witness: Option<String>,
    ) -> Self {
        let opened = open_checkpoint(note, std::slice::from_ref(key), &tenant_origin(tenant_id))
            .map_err(|error| error.to_string())
            .and_then(|checkpoint| {
                if checkpoint.tree_size == tree_size {
                    Ok(checkpoint)
                } else {
                    Err(format!("its body says tree size {}", checkpoint.tree_size))
                }
            });
        CheckpointToCheck {
            tree_size,
            opened,
            witness,
        }
    }

    /// Checks it against the tree of its size, whose root is `root`.
    fn check(&self, root: Hash) -> Option<TenantFault> {
        let fault = match &self.opened {
            Err(reason) => ChainFault::CheckpointInvalid {
                seq: self.tree_size,
                reason: reason.clone(),
            },
            Ok(checkpoint) if checkpoint.root_hash != root => ChainFault::CheckpointMismatch {
                seq: self.tree_size,
            },
            Ok(_) => return None,
        };
        Some(self.attribute(fault))
    }

    /// Names the witness file when the fault comes from one.
    fn attribute(&self, fault: ChainFault) -> TenantFault {
        match &self.witness {
            Some(path) => TenantFault::Witnessed {
                fault,
                path: path.clone(),
            },
            None => TenantFault::Chain(fault),
        }
    }
}

/// What a store keeps of a tenant's tree, read from the same snapshot as its rows.
#[derive(Debug, Clone, Default)]
pub struct StoredTree {
    /// Stored tiles by `(level, index)`; `None` when the source keeps none to check.
    pub tiles: Option<HashMap<(u8, u64), Hash>>,
    /// Signed checkpoints (the store's and any witness's), opened.
    pub checkpoints: Vec<CheckpointToCheck>,
}

/// One tenant's log check. Feed the events in `seq` order (after
/// [`start_after`](LogCheck::start_after) for a log whose prefix was deleted under signed
/// records), then [`finish`](LogCheck::finish) with the head the store records.
#[derive(Debug)]
pub struct LogCheck {
    verifier: ChainVerifier,
    frontier: MerkleFrontier,
    tiles: Option<HashMap<(u8, u64), Hash>>,
    /// Ascending by tree size; at one size the store's before the witness's.
    checkpoints: Vec<CheckpointToCheck>,
    next_checkpoint: usize,
    events_checked: u64,
    fault: Option<TenantFault>,
}

impl LogCheck {
    pub fn new(tree: StoredTree) -> Self {
        let StoredTree {
            tiles,
            mut checkpoints,
        } = tree;
        checkpoints.sort_by_key(|checkpoint| checkpoint.tree_size);
        let mut check = LogCheck {
            verifier: ChainVerifier::new(),
            frontier: MerkleFrontier::new(),
            tiles,
            checkpoints,
            next_checkpoint: 0,
            events_checked: 0,
            fault: None,
        };
        check.settle(MerkleFrontier::new(), 0);
        check
    }

    /// The last event checked (seq 0 before any).
    pub fn head(&self) -> ChainHead {
        self.verifier.head()
    }

    /// Whether a fault was found: nothing after it is checked.
    pub fn failed(&self) -> bool {
        self.fault.is_some()
    }

    /// Continues after a deleted prefix ending at `head`, whose tree is `frontier`. Checkpoints
    /// inside the prefix can no longer be checked against events; one at its exact size is
    /// checked against the frontier's root.
    pub fn start_after(&mut self, head: ChainHead, frontier: MerkleFrontier) {
        self.verifier = ChainVerifier::continuing(head);
        self.settle(frontier, head.seq);
    }

    /// Sets the tree to `frontier` (of size `tree_size`), passing the checkpoints up to that
    /// size; one of exactly that size is checked against the frontier's root.
    fn settle(&mut self, frontier: MerkleFrontier, tree_size: u64) {
        while let Some(checkpoint) = self.checkpoints.get(self.next_checkpoint) {
            if checkpoint.tree_size > tree_size {
                break;
            }
            self.next_checkpoint += 1;
            if checkpoint.tree_size == tree_size {
                let fault = checkpoint.check(frontier.root());
                if fault.is_some() && self.fault.is_none() {
                    self.fault = fault;
                }
            }
        }
        self.frontier = frontier;
    }

    /// Checks the next event; returns false once a fault is found, since every later link
    /// depends on this one.
    pub fn feed(&mut self, stored: &StoredEvent) -> bool {
        if self.fault.is_some() {
            return false;
        }
        let checked = self
            .verifier
            .check(stored)
            .map_err(TenantFault::from)
            .and_then(|()| self.append_leaf(stored.seq, stored.event_hash));
        self.settle_result(checked)
    }

    /// [`LogCheck::feed`] of a row's borrowed fields (no allocation per row).
    pub fn feed_view(
        &mut self,
        view: &EventView<'_>,
        seq: u64,
        received_at_ns: i64,
        prev_hash: &Hash,
        event_hash: &Hash,
    ) -> bool {
        if self.fault.is_some() {
            return false;
        }
        let checked = self
            .verifier
            .check_view(view, seq, received_at_ns, prev_hash, event_hash)
            .map_err(TenantFault::from)
            .and_then(|()| self.append_leaf(seq, *event_hash));
        self.settle_result(checked)
    }

    /// The row at `seq` could not be decoded (`what`: the column or value): it was edited.
    pub fn feed_undecodable(&mut self, seq: u64, what: &str, reason: &str) -> bool {
        if self.fault.is_none() {
            self.fault = Some(TenantFault::Undecodable {
                seq,
                what: what.to_owned(),
                reason: reason.to_owned(),
            });
        }
        false
    }

    fn settle_result(&mut self, checked: Result<(), TenantFault>) -> bool {
        match checked {
            Ok(()) => {
                self.events_checked += 1;
                true
            }
            Err(fault) => {
                self.fault = Some(fault);
                false
            }
        }
    }

    /// Adds the next leaf; the first disagreement with a stored tile or checkpoint is a fault.
    fn append_leaf(&mut self, seq: u64, event_hash: Hash) -> Result<(), TenantFault> {
        let mut fault = None;
        let tiles = &self.tiles;
        self.frontier.append_with(event_hash, |subtree| {
            if let Some(tiles) = tiles {
                if fault.is_none()
                    && subtree.level > 0
                    && subtree.level % TILE_HEIGHT == 0
                    && tiles.get(&(subtree.level, subtree.index)) != Some(&subtree.hash)
                {
                    fault = Some(ChainFault::TileMismatch {
                        seq,
                        level: subtree.level,
                        index: subtree.index,
                    });
                }
            }
        });
        if let Some(fault) = fault {
            return Err(fault.into());
        }
        while let Some(checkpoint) = self.checkpoints.get(self.next_checkpoint) {
            if checkpoint.tree_size != seq {
                break;
            }
            self.next_checkpoint += 1;
            if let Some(fault) = checkpoint.check(self.frontier.root()) {
                return Err(fault);
            }
        }
        Ok(())
    }

    /// The verdict. `recorded` is the chain head the store records, read in the snapshot the
    /// rows came from (a log that ends short of it was truncated), with the Merkle frontier
    /// stored beside it when the store keeps one (it must be the tree of the log).
    /// `recorded_after` is a head read after the events, when some came from outside the
    /// snapshot (the archive, which a concurrent lifecycle pass may have extended): a log that
    /// goes past it has a head rolled back. A live store's head only ever moves forward.
    pub fn finish(
        self,
        tenant_id: String,
        recorded: Option<(ChainHead, Option<&[u8]>)>,
        recorded_after: Option<ChainHead>,
    ) -> TenantReport {
        let last_seq = self.verifier.head().seq;
        let verdict = match self.fault {
            Some(fault) => Err(fault),
            None => match self.checkpoints.get(self.next_checkpoint) {
                // A checkpoint beyond the last event means events were removed from the end.
                Some(checkpoint) => Err(checkpoint.attribute(ChainFault::CheckpointBeyondLog {
                    seq: last_seq + 1,
                    tree_size: checkpoint.tree_size,
                    found: last_seq,
                })),
                None => self
                    .verifier
                    .finish(recorded.map(|(head, _)| head))
                    .map_err(TenantFault::from)
                    .and_then(|head| match recorded_after {
                        _ if head.seq == 0 => Ok(head),
                        None => Err(TenantFault::HeadMissing { seq: head.seq }),
                        Some(after) if after.seq < head.seq => Err(TenantFault::HeadBehindLog {
                            seq: after.seq + 1,
                            recorded: after.seq,
                            last: head.seq,
                        }),
                        Some(_) => Ok(head),
                    })
                    .and_then(|head| match recorded {
                        Some((recorded, Some(bytes)))
                            if recorded.seq == head.seq
                                && !decode_frontier(head.seq, bytes).is_some_and(|stored| {
                                    stored.root() == self.frontier.root()
                                }) =>
                        {
                            Err(TenantFault::FrontierMismatch { seq: head.seq })
                        }
                        _ => Ok(head),
                    }),
            },
        };
        TenantReport {
            tenant_id,
            events_checked: self.events_checked,
            verdict,
        }
    }
}
