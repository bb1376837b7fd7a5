//! Merkle leaves wherever the events live.
//!
//! The hot store keeps every complete tile (levels 8, 16, …) forever, but level 0 — the events'
//! own `event_hash`es — leaves the hot store with the events. Proofs and checkpoints that need
//! leaves of archived events read them here, from the archived files, so a tree stays provable
//! after its events move to the warm or cold tier.

use datafusion::prelude::{col, lit};
use sealtrail_ledger::{partial_blocks, rebuild_frontier, MerkleFrontier, TILE_HEIGHT, TILE_WIDTH};

use crate::files::ArchivedFile;
use crate::page::decode;
use crate::{Error, QueryEngine, Result};

impl QueryEngine {
    /// Block `block` of stored Merkle level `level`, as [`sealtrail_hot::HotStore::merkle_block`]
    /// defines it, with level-0 leaves of archived events read from their files.
    pub async fn merkle_block(
        &self,
        tenant_id: &str,
        level: u8,
        block: u64,
    ) -> Result<Vec<[u8; 32]>> {
        if level != 0 {
            return Ok(self.hot.merkle_block(tenant_id, level, block).await?);
        }
        let width = 1u64 << TILE_HEIGHT;
        let first_seq = block * width + 1;
        let last_seq = first_seq + width - 1;
        let files = self.archived_files(tenant_id).await?;
        let archived_through = files.last().map_or(0, |file| file.last_seq);
        if first_seq > archived_through {
            return Ok(self.hot.merkle_block(tenant_id, level, block).await?);
        }
        let covering: Vec<&ArchivedFile> = files
            .iter()
            .filter(|file| file.last_seq >= first_seq && file.first_seq <= last_seq)
            .collect();
        let session = self.session(1);
        let mut frames = self
            .tier_tables(&covering)
            .await?
            .into_iter()
            .map(|table| session.read_table(table));
        let mut leaves = Vec::with_capacity(width as usize);
        if let Some(first) = frames.next() {
            let frame = frames.try_fold(first?, |all, next| all.union(next?))?;
            let batches = frame
                .filter(
                    col("seq")
                        .gt_eq(lit(first_seq as i64))
                        .and(col("seq").lt_eq(lit(last_seq as i64))),
                )?
                .sort(vec![col("seq").sort(true, false)])?
                .collect()
                .await?;
            leaves.extend(decode(&batches)?.iter().map(|stored| stored.event_hash));
        }
        if last_seq > archived_through {
            let after = archived_through.max(first_seq - 1);
            let hot = self
                .hot
                .scan_events(tenant_id, after, (last_seq - after) as usize)
                .await?;
            leaves.extend(hot.iter().map(|stored| stored.event_hash));
        }
        Ok(leaves)
    }

    /// Gives every chain head the hot store keeps without a Merkle frontier (written before
    /// frontiers were kept) its frontier, rebuilt from the stored nodes wherever they live: the
    /// leaves of a partly filled tile may already be in the archive, which left such a tenant
    /// unable to complete that tile. Returns how many heads it repaired. Idempotent.
    pub async fn restore_frontiers(&self) -> Result<usize> {
        let mut restored = 0;
        for (tenant_id, tree_size) in self.hot.heads_without_frontier().await? {
            // One tenant whose nodes are missing must not keep the others' frontiers unrestored:
            // it is logged, and its own writes will name it.
            match self.restore_frontier(&tenant_id, tree_size).await {
                Ok(()) => restored += 1,
                Err(error) => tracing::error!(
                    tenant_id,
                    tree_size,
                    %error,
                    "cannot restore the Merkle frontier of a chain head; run `sealtrail verify`"
                ),
            }
        }
        Ok(restored)
    }

    async fn restore_frontier(&self, tenant_id: &str, tree_size: u64) -> Result<()> {
        let mut nodes = std::collections::HashMap::new();
        for block in partial_blocks(tree_size) {
            let stored = self
                .merkle_block(tenant_id, block.level, block.first / TILE_WIDTH)
                .await?;
            nodes.insert(block.level, stored);
        }
        let frontier: MerkleFrontier = rebuild_frontier(tree_size, |level| {
            nodes.get(&level).cloned().unwrap_or_default()
        })
        .map_err(|gap| {
            Error::Corrupt(format!(
                "tenant {tenant_id}: level {} holds {} of the {} nodes its Merkle frontier needs",
                gap.level, gap.found, gap.expected
            ))
        })?;
        self.hot.restore_frontier(tenant_id, frontier).await?;
        tracing::info!(
            tenant_id,
            tree_size,
            "restored the Merkle frontier of a chain head"
        );
        Ok(())
    }
}
