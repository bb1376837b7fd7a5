//! The pure core of a group commit: given the chain heads of the group's tenants (locked by the
//! caller) and the idempotency keys already stored for the group's events, decide each request's
//! outcome and link every new event into its chain. No IO, so the idempotency rules are tested
//! here without a database, and they are exactly those of the SQLite store:
//!
//! - an `event_id` already stored (or stored earlier in the same group or request) with the same
//!   content digest, and the same timestamp when the client supplied one, gets the stored
//!   receipt and adds nothing;
//! - with different content, its request is a [`AppendOutcome::Conflict`] and leaves no trace:
//!   no rows, and the heads as they were before the request;
//! - everything else is linked after its tenant's head, in request order.

use std::collections::{BTreeMap, HashMap};

use sealtrail_hot::{AppendOutcome, AppendRequest, ExistingEvent};
use sealtrail_ledger::{ChainHead, ChainLink};
use sealtrail_model::{EventReceipt, PendingEvent};

/// Stored idempotency keys: tenant, then `event_id`.
pub(crate) type StoredKeys = HashMap<String, HashMap<String, ExistingEvent>>;

/// A new event with its chain position, ready to insert.
#[derive(Debug)]
pub(crate) struct NewRow<'a> {
    pub(crate) pending: &'a PendingEvent,
    pub(crate) link: ChainLink,
    pub(crate) content_digest: [u8; 32],
}

/// What one group commit writes and answers.
#[derive(Debug)]
pub(crate) struct GroupPlan<'a> {
    /// One per request, in batch order.
    pub(crate) outcomes: Vec<AppendOutcome>,
    /// New events, in chain order per tenant.
    pub(crate) rows: Vec<NewRow<'a>>,
    /// The head of every tenant of the group after it (unchanged for a tenant that gained
    /// nothing).
    pub(crate) heads: BTreeMap<String, ChainHead>,
}

/// Plans a group commit. `heads` MUST hold every tenant of `batch` (the genesis head for a new
/// tenant); `digests[r][e]` is the content digest of event `e` of request `r`.
pub(crate) fn plan_group<'a>(
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
    for (request, request_digests) in batch.iter().zip(digests) {
        let rows_before = rows.len();
        let mut heads_before: Vec<(&str, ChainHead)> = Vec::new();
        let mut linked_here: Vec<(&'a str, &'a str)> = Vec::new();
        let mut receipts = Vec::with_capacity(request.len());
        let mut conflict = None;
        for (index, (pending, digest)) in request.iter().zip(request_digests).enumerate() {
            let event = &pending.event;
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
            rows.push(NewRow {
                pending,
                link,
                content_digest: *digest,
            });
        }
        match conflict {
            None => outcomes.push(AppendOutcome::Committed(receipts)),
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealtrail_ledger::content_digest;
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
        }
    }

    fn plan<'a>(batch: &'a [AppendRequest], stored: &StoredKeys) -> GroupPlan<'a> {
        let digests: Vec<Vec<[u8; 32]>> = batch
            .iter()
            .map(|request| {
                request
                    .iter()
                    .map(|pending| content_digest(&pending.event))
                    .collect()
            })
            .collect();
        let heads = batch
            .iter()
            .flatten()
            .map(|pending| (pending.event.tenant_id.clone(), ChainHead::default()))
            .collect();
        plan_group(batch, &digests, heads, stored)
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
}
