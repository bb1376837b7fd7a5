//! The pure core of a group commit, shared by every backend: given the chain heads of the
//! group's tenants (locked, or owned by the only writer) and the idempotency keys already stored
//! for the group's events, decide each request's outcome, link every new event into its chain,
//! and grow each tenant's Merkle frontier by the new leaves. No IO, so the idempotency rules are
//! tested here without a database, and a backend only reads what the plan needs and writes what
//! it says:
//!
//! - an `event_id` already stored (or stored earlier in the same group or request) with the same
//!   content digest, and the same timestamp when the client supplied one, gets the stored
//!   receipt and adds nothing;
//! - with different content, its request is a [`AppendOutcome::Conflict`] and leaves no trace:
//!   no rows, and the heads as they were before the request;
//! - everything else is linked after its tenant's head, in request order;
//! - an event its tenant's capture policy dropped is never linked: it only counts as seen in the
//!   tenant's sampling statistics, which the plan also keeps for every new kept event
//!   ([`GroupPlan::sampling`]), so the statistics commit in the same transaction as the events
//!   and a conflicting request counts nothing.
//!
//! Both backends commit optimistically: they plan with only the keys no unique index can catch
//! for them, and if an insert then meets a stored `event_id`, they roll the group back and plan it
//! again with every stored key of the group read first.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sealtrail_ledger::{
    append_leaves, content_digest, ChainHead, ChainLink, Hash, MerkleFrontier, Tile,
};
use sealtrail_model::{format_day, EventReceipt, Outcome, PendingEvent};

use crate::{
    ActorDayKey, AppendOutcome, AppendRequest, Error, ExistingEvent, ResourceMonthKey, Result,
    SamplingKey, SamplingTally, SummaryTally,
};

/// Stored idempotency keys: tenant, then `event_id`.
pub type StoredKeys = HashMap<String, HashMap<String, ExistingEvent>>;

/// A new event with its chain position, ready to insert.
#[derive(Debug)]
pub struct NewRow<'a> {
    pub pending: &'a PendingEvent,
    pub link: ChainLink,
    pub content_digest: [u8; 32],
}

/// What one group commit writes and answers.
#[derive(Debug)]
pub struct GroupPlan<'a> {
    /// One per request, in batch order.
    pub outcomes: Vec<AppendOutcome>,
    /// New events, in chain order per tenant.
    pub rows: Vec<NewRow<'a>>,
    /// The head of every tenant of the group after it (unchanged for a tenant that gained
    /// nothing).
    pub heads: BTreeMap<String, ChainHead>,
    /// What the group adds to the sampling statistics (events with a capture decision only).
    pub sampling: BTreeMap<SamplingKey, SamplingTally>,
    /// What the group adds to the actor-day summaries: every new event, and apart every
    /// dropped one.
    pub actor_days: BTreeMap<ActorDayKey, SummaryTally>,
    /// What the group adds to the resource-month counts: every new event with a `resource_id`.
    pub resource_months: BTreeMap<ResourceMonthKey, u64>,
}

/// The Merkle side of a plan: what its new leaves add to each grown tenant's tree.
#[derive(Debug)]
pub struct GroupTrees<'p> {
    /// The stored tiles the new leaves complete, per tenant.
    pub tiles: Vec<(&'p str, Tile)>,
    /// Each grown tenant's frontier after the group, at the size of its new head.
    pub frontiers: HashMap<String, MerkleFrontier>,
}

/// The content digest of every event of `batch`: `digests[r][e]` for event `e` of request `r`.
/// It does not depend on the chain, so a backend computes it before taking any lock.
pub fn group_digests(batch: &[AppendRequest]) -> Vec<Vec<[u8; 32]>> {
    batch
        .iter()
        .map(|request| {
            request
                .iter()
                .map(|pending| content_digest(&pending.event))
                .collect()
        })
        .collect()
}

/// The tenants of `batch`, each once, in order: the heads a group must lock (in this order, so
/// two groups never wait on each other).
pub fn group_tenants(batch: &[AppendRequest]) -> Vec<&str> {
    batch
        .iter()
        .flatten()
        .map(|pending| pending.event.tenant_id.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Plans a group commit. `heads` MUST hold every tenant of `batch` (the genesis head for a new
/// tenant); `digests` comes from [`group_digests`].
pub fn plan_group<'a>(
    batch: &'a [AppendRequest],
    digests: &[Vec<[u8; 32]>],
    mut heads: BTreeMap<String, ChainHead>,
    stored: &StoredKeys,
) -> GroupPlan<'a> {
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut rows: Vec<NewRow<'a>> = Vec::new();
    // Keys linked earlier in this group, so a retry inside one group behaves like a retry
    // across groups.
    let mut linked: HashMap<(&'a str, &'a str), ExistingEvent> = HashMap::new();
    let mut sampling: BTreeMap<SamplingKey, SamplingTally> = BTreeMap::new();
    let mut actor_days: BTreeMap<ActorDayKey, SummaryTally> = BTreeMap::new();
    let mut resource_months: BTreeMap<ResourceMonthKey, u64> = BTreeMap::new();
    for (request, request_digests) in batch.iter().zip(digests) {
        let rows_before = rows.len();
        // Counted only once the request commits: events with a capture decision (kept or not)
        // in the sampling statistics, every new or dropped event in the summaries.
        let mut counted: Vec<(&'a PendingEvent, bool)> = Vec::new();
        let mut summarized: Vec<(&'a PendingEvent, bool)> = Vec::new();
        let mut heads_before: Vec<(&str, ChainHead)> = Vec::new();
        let mut linked_here: Vec<(&'a str, &'a str)> = Vec::new();
        let mut receipts = Vec::with_capacity(request.len());
        let mut conflict = None;
        for (index, (pending, digest)) in request.iter().zip(request_digests).enumerate() {
            let event = &pending.event;
            if pending.capture.is_some_and(|capture| !capture.kept) {
                counted.push((pending, false));
                summarized.push((pending, false));
                continue;
            }
            let key = (event.tenant_id.as_str(), event.event_id.as_str());
            let known = linked.get(&key).or_else(|| {
                stored
                    .get(&event.tenant_id)
                    .and_then(|keys| keys.get(&event.event_id))
            });
            if let Some(known) = known {
                let same = known.content_digest == *digest
                    && (!pending.timestamp_supplied || known.timestamp_ns == event.timestamp_ns);
                if same {
                    receipts.push(known.receipt.clone());
                    continue;
                }
                conflict = Some(AppendOutcome::Conflict {
                    index,
                    event_id: event.event_id.clone(),
                });
                break;
            }
            let head = heads
                .get_mut(&event.tenant_id)
                .expect("the caller locked a head for every tenant of the group");
            if !heads_before
                .iter()
                .any(|(tenant, _)| *tenant == event.tenant_id)
            {
                heads_before.push((&event.tenant_id, *head));
            }
            let link = head.link(event, pending.received_at_ns);
            let receipt = EventReceipt {
                event_id: event.event_id.clone(),
                tenant_id: event.tenant_id.clone(),
                seq: link.seq,
                event_hash: link.event_hash,
            };
            linked.insert(
                key,
                ExistingEvent {
                    content_digest: *digest,
                    timestamp_ns: event.timestamp_ns,
                    receipt: receipt.clone(),
                },
            );
            linked_here.push(key);
            receipts.push(receipt);
            if pending.capture.is_some() {
                counted.push((pending, true));
            }
            summarized.push((pending, true));
            rows.push(NewRow {
                pending,
                link,
                content_digest: *digest,
            });
        }
        match conflict {
            None => {
                for (pending, kept) in counted {
                    let event = &pending.event;
                    let capture = pending.capture.expect("only decided events are counted");
                    let tally = sampling
                        .entry(SamplingKey {
                            tenant_id: event.tenant_id.clone(),
                            day: format_day(event.timestamp_ns),
                            class: capture.class,
                            action: event.action.clone(),
                        })
                        .or_default();
                    tally.seen += 1;
                    tally.kept += u64::from(kept);
                }
                for (pending, kept) in summarized {
                    summarize(pending, kept, &mut actor_days, &mut resource_months);
                }
                outcomes.push(AppendOutcome::Committed(receipts));
            }
            Some(conflict) => {
                // Undo the request: its rows, its keys and its heads.
                rows.truncate(rows_before);
                for key in linked_here {
                    linked.remove(&key);
                }
                for (tenant, head) in heads_before {
                    heads.insert(tenant.to_owned(), head);
                }
                outcomes.push(conflict);
            }
        }
    }
    GroupPlan {
        outcomes,
        rows,
        heads,
        sampling,
        actor_days,
        resource_months,
    }
}

/// Adds one committed event to the summaries: stored (`kept`) or dropped.
fn summarize(
    pending: &PendingEvent,
    kept: bool,
    actor_days: &mut BTreeMap<ActorDayKey, SummaryTally>,
    resource_months: &mut BTreeMap<ResourceMonthKey, u64>,
) {
    let event = &pending.event;
    let day = format_day(event.timestamp_ns);
    let tally = actor_days
        .entry(ActorDayKey {
            tenant_id: event.tenant_id.clone(),
            day: day.clone(),
            actor_id: event.actor_id.clone(),
            action: event.action.clone(),
            resource_type: event.resource_type.clone(),
        })
        .or_default();
    if !kept {
        tally.sampled_out += 1;
        return;
    }
    tally.kept += 1;
    if event.outcome == Outcome::Failure {
        tally.failed += 1;
    }
    if let Some(resource_id) = &event.resource_id {
        *resource_months
            .entry(ResourceMonthKey {
                tenant_id: event.tenant_id.clone(),
                month: day[..7].to_owned(),
                resource_type: event.resource_type.clone(),
                resource_id: resource_id.clone(),
            })
            .or_default() += 1;
    }
}

impl<'a> GroupPlan<'a> {
    /// What the group adds to each `(tenant, YYYY-MM, action)`'s month totals: the actor days
    /// rolled up, so a month report reads a row per action instead of every actor day.
    pub fn month_actions(&self) -> BTreeMap<(&str, &str, &str), SummaryTally> {
        let mut months: BTreeMap<(&str, &str, &str), SummaryTally> = BTreeMap::new();
        for (key, tally) in &self.actor_days {
            months
                .entry((key.tenant_id.as_str(), &key.day[..7], key.action.as_str()))
                .or_default()
                .add(tally);
        }
        months
    }

    /// The `(tenant, YYYY-MM, actor)`s with a stored event in the group: a month's distinct
    /// actors are the rows it has.
    pub fn month_actors(&self) -> BTreeSet<(&str, &str, &str)> {
        self.actor_days
            .iter()
            .filter(|(_, tally)| tally.kept > 0)
            .map(|(key, _)| (key.tenant_id.as_str(), &key.day[..7], key.actor_id.as_str()))
            .collect()
    }

    /// The `(tenant, YYYY-MM)` months whose events or summaries the group changes: their
    /// revisions move in its transaction ([`crate::SummaryStore::revisions`]).
    pub fn changed_months(&self) -> BTreeSet<(&str, &str)> {
        self.actor_days
            .keys()
            .map(|key| (key.tenant_id.as_str(), &key.day[..7]))
            .collect()
    }

    /// The tenants that gained events, with their new leaf hashes in `seq` order.
    pub fn new_leaves(&self) -> BTreeMap<&'a str, Vec<Hash>> {
        let mut leaves: BTreeMap<&'a str, Vec<Hash>> = BTreeMap::new();
        for row in &self.rows {
            leaves
                .entry(row.pending.event.tenant_id.as_str())
                .or_default()
                .push(row.link.event_hash);
        }
        leaves
    }

    /// Grows the trees of the tenants that gained events. `frontiers` MUST hold each such
    /// tenant's committed frontier (at the size of its head before the group); a frontier whose
    /// size then differs from the new head's `seq` is that tenant's corruption, reported rather
    /// than written.
    pub fn grow_trees(
        &self,
        mut frontiers: HashMap<String, MerkleFrontier>,
    ) -> Result<GroupTrees<'a>> {
        let mut tiles = Vec::new();
        let mut grown = HashMap::new();
        for (tenant, leaves) in self.new_leaves() {
            let mut frontier = frontiers
                .remove(tenant)
                .expect("the caller read a frontier for every grown tenant");
            tiles.extend(
                append_leaves(&mut frontier, &leaves)
                    .into_iter()
                    .map(|tile| (tenant, tile)),
            );
            let head = self.heads[tenant];
            if frontier.tree_size() != head.seq {
                return Err(Error::Corrupt {
                    tenant_id: tenant.to_owned(),
                    seq: head.seq,
                    reason: format!(
                        "the Merkle frontier has {} leaves but the chain head is at seq {}",
                        frontier.tree_size(),
                        head.seq
                    ),
                });
            }
            grown.insert(tenant.to_owned(), frontier);
        }
        Ok(GroupTrees {
            tiles,
            frontiers: grown,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealtrail_ledger::{MemoryTree, TILE_WIDTH};
    use sealtrail_model::{ActorType, Event, Outcome};

    fn pending(tenant: &str, event_id: &str, action: &str) -> PendingEvent {
        PendingEvent {
            event: Event {
                event_id: event_id.into(),
                timestamp_ns: 1_700_000_000_000_000_000,
                tenant_id: tenant.into(),
                actor_id: "alice".into(),
                actor_type: ActorType::Human,
                action: action.into(),
                resource_type: "document".into(),
                resource_id: None,
                outcome: Outcome::Success,
                ip_address: None,
                user_agent: None,
                request_id: None,
                changes: None,
                metadata: None,
            },
            received_at_ns: 1_700_000_000_500_000_000,
            timestamp_supplied: true,
            capture: None,
        }
    }

    fn plan<'a>(batch: &'a [AppendRequest], stored: &StoredKeys) -> GroupPlan<'a> {
        let heads = group_tenants(batch)
            .into_iter()
            .map(|tenant| (tenant.to_owned(), ChainHead::default()))
            .collect();
        plan_group(batch, &group_digests(batch), heads, stored)
    }

    fn seqs(outcome: &AppendOutcome) -> Vec<u64> {
        match outcome {
            AppendOutcome::Committed(receipts) => {
                receipts.iter().map(|receipt| receipt.seq).collect()
            }
            AppendOutcome::Conflict { .. } => panic!("unexpected conflict: {outcome:?}"),
        }
    }

    #[test]
    fn a_conflicting_request_leaves_no_rows_and_no_head_movement() {
        let batch = vec![
            vec![pending("acme", "e1", "read")],
            // e2 is new and linked first, then e1 conflicts: e2 must vanish with its request.
            vec![
                pending("acme", "e2", "read"),
                pending("acme", "e1", "delete"),
            ],
            vec![pending("acme", "e3", "read")],
        ];
        let plan = plan(&batch, &StoredKeys::new());
        assert_eq!(seqs(&plan.outcomes[0]), vec![1]);
        assert_eq!(
            plan.outcomes[1],
            AppendOutcome::Conflict {
                index: 1,
                event_id: "e1".into()
            }
        );
        assert_eq!(seqs(&plan.outcomes[2]), vec![2]);
        let stored_ids: Vec<&str> = plan
            .rows
            .iter()
            .map(|row| row.pending.event.event_id.as_str())
            .collect();
        assert_eq!(stored_ids, ["e1", "e3"]);
        assert_eq!(plan.heads["acme"].seq, 2);
        assert_eq!(plan.heads["acme"].hash, plan.rows[1].link.event_hash);
    }

    #[test]
    fn retries_inside_a_group_and_a_request_get_the_first_receipt() {
        let batch = vec![
            vec![pending("acme", "e1", "read"), pending("acme", "e1", "read")],
            vec![pending("acme", "e1", "read"), pending("beta", "e1", "read")],
        ];
        let plan = plan(&batch, &StoredKeys::new());
        assert_eq!(seqs(&plan.outcomes[0]), vec![1, 1]);
        // The same event_id in another tenant is another event.
        assert_eq!(seqs(&plan.outcomes[1]), vec![1, 1]);
        assert_eq!(plan.rows.len(), 2);
    }

    #[test]
    fn a_stored_key_answers_a_retry_and_refuses_new_content() {
        let mut stored = StoredKeys::new();
        let original = pending("acme", "e1", "read");
        stored.entry("acme".into()).or_default().insert(
            "e1".into(),
            ExistingEvent {
                content_digest: content_digest(&original.event),
                timestamp_ns: original.event.timestamp_ns,
                receipt: EventReceipt {
                    event_id: "e1".into(),
                    tenant_id: "acme".into(),
                    seq: 7,
                    event_hash: [7; 32],
                },
            },
        );
        // A retry that omitted its timestamp got the server's clock instead: still a retry.
        let mut untimed = pending("acme", "e1", "read");
        untimed.event.timestamp_ns += 1;
        untimed.timestamp_supplied = false;
        // A retry that supplies a different timestamp is different content.
        let mut retimed = pending("acme", "e1", "read");
        retimed.event.timestamp_ns += 1;
        let batch = vec![vec![original], vec![untimed], vec![retimed]];
        let plan = plan(&batch, &stored);
        assert_eq!(seqs(&plan.outcomes[0]), vec![7]);
        assert_eq!(seqs(&plan.outcomes[1]), vec![7]);
        assert!(matches!(
            plan.outcomes[2],
            AppendOutcome::Conflict { index: 0, .. }
        ));
        assert!(plan.rows.is_empty());
        assert_eq!(plan.heads["acme"], ChainHead::default());
    }

    #[test]
    fn grown_trees_match_the_tree_of_the_planned_leaves() {
        // 300 events over two requests: tenant "acme" crosses a tile boundary (256 leaves).
        let batch: Vec<AppendRequest> = (0..2)
            .map(|request| {
                (0..150)
                    .map(|event| pending("acme", &format!("e{request}-{event}"), "read"))
                    .collect()
            })
            .collect();
        let plan = plan(&batch, &StoredKeys::new());
        let frontiers = HashMap::from([("acme".to_owned(), MerkleFrontier::new())]);
        let trees = plan.grow_trees(frontiers).unwrap();
        let leaves: Vec<Hash> = plan.rows.iter().map(|row| row.link.event_hash).collect();
        let frontier = &trees.frontiers["acme"];
        assert_eq!(frontier.tree_size(), 300);
        assert_eq!(
            frontier.root(),
            MemoryTree::from_leaf_hashes(leaves.clone()).root()
        );
        // One completed tile at level 8: the hash of the first 256 leaves.
        assert_eq!(trees.tiles.len(), 1);
        let (tenant, tile) = &trees.tiles[0];
        assert_eq!((*tenant, tile.level, tile.index), ("acme", 8, 0));
        assert_eq!(
            tile.hash,
            MemoryTree::from_leaf_hashes(leaves[..TILE_WIDTH as usize].iter().copied()).root()
        );
    }

    #[test]
    fn a_frontier_behind_the_head_is_reported_not_grown() {
        let batch = vec![vec![pending("acme", "e1", "read")]];
        let digests = group_digests(&batch);
        let head = ChainHead {
            seq: 5,
            hash: [5; 32],
        };
        let plan = plan_group(
            &batch,
            &digests,
            BTreeMap::from([("acme".to_owned(), head)]),
            &StoredKeys::new(),
        );
        let frontiers = HashMap::from([("acme".to_owned(), MerkleFrontier::new())]);
        let error = plan.grow_trees(frontiers).unwrap_err();
        assert!(
            matches!(&error, Error::Corrupt { tenant_id, seq: 6, .. } if tenant_id == "acme"),
            "{error}"
        );
    }
}
