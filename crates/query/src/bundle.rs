//! Proof bundles (see `sealtrail_ledger::Bundle`) across tiers: the events of a time range
//! (widened to a contiguous `seq` range, because a chain can only be checked without gaps),
//! the checkpoints that cover them, and the proofs, wherever the events and leaves live.

use sealtrail_hot::{EventQuery, Order};
use sealtrail_ledger::{
    blocks_needed, Bundle, BundleConsistency, ConsistencyProof, InclusionProof, NodeRecorder,
    TileSource, BUNDLE_FORMAT,
};
use sealtrail_model::limits::QUERY_LIMIT_MAX;

use crate::{Error, QueryEngine, Result};

impl QueryEngine {
    /// Builds the bundle of `tenant_id`'s events with `from_ns <= timestamp < to_ns`, from
    /// whichever tiers hold them. [`Error::Invalid`] when the range holds no event or no
    /// checkpoint covers it yet.
    pub async fn bundle(
        &self,
        tenant_id: &str,
        from_ns: Option<i64>,
        to_ns: Option<i64>,
    ) -> Result<Bundle> {
        let mut bounds = EventQuery::for_tenant(tenant_id);
        bounds.from_ns = from_ns;
        bounds.to_ns = to_ns;
        bounds.limit = 1;
        bounds.order = Order::Asc;
        let first = self.page(bounds.clone()).await?;
        bounds.order = Order::Desc;
        let last = self.page(bounds).await?;
        let (Some(first), Some(last)) = (first.first(), last.first()) else {
            return Err(Error::Invalid {
                field: "from",
                reason: format!("tenant {tenant_id} has no events in that time range"),
            });
        };
        let (first_seq, last_seq) = (first.stored.seq, last.stored.seq);

        // The earliest checkpoint that covers the range shows when it was first committed to,
        // the latest the state now; a consistency proof links them.
        let latest = self.hot.checkpoint(tenant_id, None).await?;
        let earliest = self
            .hot
            .first_checkpoint_covering(tenant_id, last_seq)
            .await?;
        let chosen = match (earliest, latest) {
            (_, Some(latest)) if latest.tree_size < last_seq => None,
            (Some(earliest), Some(latest)) if earliest.tree_size < latest.tree_size => {
                Some(vec![earliest, latest])
            }
            (_, Some(latest)) => Some(vec![latest]),
            (_, None) => None,
        };
        let Some(chosen) = chosen else {
            return Err(Error::Invalid {
                field: "to",
                reason: format!(
                    "no checkpoint covers seq {last_seq} yet; cut one (POST /v1/tenants/{tenant_id}/checkpoint)"
                ),
            });
        };
        let largest = chosen.last().expect("at least one").tree_size;

        let mut inclusion = vec![self.prove_inclusion(tenant_id, first_seq, largest).await?];
        if last_seq != first_seq {
            inclusion.push(self.prove_inclusion(tenant_id, last_seq, largest).await?);
        }
        let mut consistency = Vec::new();
        for pair in chosen.windows(2) {
            let (first, second) = (pair[0].tree_size, pair[1].tree_size);
            let recorder = NodeRecorder::new();
            let _ = ConsistencyProof::generate(&recorder, first, second);
            let source = self.tile_source(tenant_id, &recorder.requests()).await?;
            let proof = ConsistencyProof::generate(&source, first, second)
                .map_err(|error| Error::Corrupt(format!("tenant {tenant_id}: {error}")))?;
            consistency.push(BundleConsistency {
                first,
                second,
                proof,
            });
        }

        let mut events = Vec::with_capacity((last_seq - first_seq + 1) as usize);
        let mut page_query = EventQuery::for_tenant(tenant_id);
        page_query.order = Order::Asc;
        page_query.limit = QUERY_LIMIT_MAX;
        let mut after = first_seq - 1;
        while after < last_seq {
            page_query.after_seq = Some(after);
            let page = self.page(page_query.clone()).await?;
            let Some(end) = page.last().map(|located| located.stored.seq) else {
                return Err(Error::Corrupt(format!(
                    "tenant {tenant_id}: events after seq {after} are missing"
                )));
            };
            for located in page
                .into_iter()
                .take_while(|located| located.stored.seq <= last_seq)
            {
                // Through the API text, read as the nearest doubles: `to_value` would parse
                // `changes` and `metadata` with serde_json's fast float parser, which can miss a
                // stored double by one unit in the last place and so change the event's hash.
                let text = serde_json::to_string(&located.stored)
                    .map_err(|error| Error::Corrupt(error.to_string()))?;
                let mut event: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|error| Error::Corrupt(error.to_string()))?;
                sealtrail_model::nearest_doubles(text.as_bytes(), &mut event);
                events.push(event);
            }
            after = end;
        }
        Ok(Bundle {
            format: BUNDLE_FORMAT.to_owned(),
            tenant_id: tenant_id.to_owned(),
            first_seq,
            last_seq,
            events,
            checkpoints: chosen
                .into_iter()
                .map(|checkpoint| checkpoint.note)
                .collect(),
            inclusion,
            consistency,
        })
    }

    /// The inclusion proof of event `seq` in the tree of `tree_size`, from whichever tier
    /// holds its leaves.
    pub async fn prove_inclusion(
        &self,
        tenant_id: &str,
        seq: u64,
        tree_size: u64,
    ) -> Result<InclusionProof> {
        let recorder = NodeRecorder::new();
        let _ = InclusionProof::generate(&recorder, seq - 1, tree_size);
        let source = self.tile_source(tenant_id, &recorder.requests()).await?;
        InclusionProof::generate(&source, seq - 1, tree_size)
            .map_err(|error| Error::Corrupt(format!("tenant {tenant_id}: {error}")))
    }

    /// The stored blocks holding `requests`' nodes, leaves from whichever tier holds them.
    async fn tile_source(&self, tenant_id: &str, requests: &[(u8, u64)]) -> Result<TileSource> {
        let mut source = TileSource::new();
        for (level, block) in blocks_needed(requests) {
            source.insert_block(
                level,
                block,
                self.merkle_block(tenant_id, level, block).await?,
            );
        }
        Ok(source)
    }
}
