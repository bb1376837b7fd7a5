//! The per-tenant hash chain: appending and verifying.

use sealtrail_model::{Event, StoredEvent};

use crate::{event_hash, event_hash_of_view, EventView, GENESIS_HASH};

/// The end of a tenant's chain: the last `seq` and its `event_hash` (0 and zeros when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: [u8; 32],
}

impl Default for ChainHead {
    fn default() -> Self {
        ChainHead {
            seq: 0,
            hash: GENESIS_HASH,
        }
    }
}

/// An event's place in its tenant's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainLink {
    pub seq: u64,
    pub prev_hash: [u8; 32],
    pub event_hash: [u8; 32],
}

impl ChainHead {
    /// Links `event` after this head and advances the head to it.
    pub fn link(&mut self, event: &Event, received_at_ns: i64) -> ChainLink {
        let seq = self.seq + 1;
        let prev_hash = self.hash;
        let hash = event_hash(event, seq, received_at_ns, &prev_hash);
        self.seq = seq;
        self.hash = hash;
        ChainLink {
            seq,
            prev_hash,
            event_hash: hash,
        }
    }

    /// Like [`ChainHead::link`], returning the whole stored event.
    pub fn append(&mut self, event: Event, received_at_ns: i64) -> StoredEvent {
        let link = self.link(&event, received_at_ns);
        StoredEvent {
            event,
            seq: link.seq,
            received_at_ns,
            prev_hash: link.prev_hash,
            event_hash: link.event_hash,
        }
    }
}

/// Why a chain is not intact, naming the first `seq` that fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainFault {
    #[error("seq {seq}: event missing (the next stored event has seq {found})")]
    Missing { seq: u64, found: u64 },
    #[error("seq {seq}: event missing (the log ends at seq {found}, but its head records seq {seq} or later)")]
    Truncated { seq: u64, found: u64 },
    #[error("seq {seq}: order broken (prev_hash does not match the event_hash of seq {})", seq - 1)]
    OrderBroken { seq: u64 },
    #[error("seq {seq}: content changed (the recomputed event_hash differs from the stored one)")]
    ContentChanged { seq: u64 },
    #[error("seq {seq}: duplicate seq")]
    Duplicate { seq: u64 },
    #[error("seq {seq}: head hash differs from the last event's hash")]
    HeadMismatch { seq: u64 },
    #[error("seq {seq}: stored Merkle tile (level {level}, index {index}) differs from the events (tree rewritten)")]
    TileMismatch { seq: u64, level: u8, index: u64 },
    #[error("seq {seq}: the signed checkpoint at tree size {seq} has a different root (history rewritten or forked)")]
    CheckpointMismatch { seq: u64 },
    #[error("seq {seq}: event missing (a signed checkpoint covers tree size {tree_size}, but the log ends at seq {found})")]
    CheckpointBeyondLog {
        seq: u64,
        tree_size: u64,
        found: u64,
    },
    #[error("seq {seq}: the checkpoint at tree size {seq} does not verify: {reason}")]
    CheckpointInvalid { seq: u64, reason: String },
}

impl ChainFault {
    /// The first `seq` that fails.
    pub fn seq(&self) -> u64 {
        match self.clone() {
            ChainFault::Missing { seq, .. }
            | ChainFault::Truncated { seq, .. }
            | ChainFault::OrderBroken { seq }
            | ChainFault::ContentChanged { seq }
            | ChainFault::Duplicate { seq }
            | ChainFault::HeadMismatch { seq }
            | ChainFault::TileMismatch { seq, .. }
            | ChainFault::CheckpointMismatch { seq }
            | ChainFault::CheckpointBeyondLog { seq, .. }
            | ChainFault::CheckpointInvalid { seq, .. } => seq,
        }
    }
}

/// Checks one tenant's events, fed in ascending `seq` order, against the chain rules.
#[derive(Debug, Default)]
pub struct ChainVerifier {
    head: ChainHead,
}

impl ChainVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// A verifier that continues after `head`: the events through `head.seq` are vouched for
    /// elsewhere (a signed deletion record of a permitted retention deletion), so the next event
    /// checked must be `head.seq + 1` with `prev_hash` equal to `head.hash`.
    pub fn continuing(head: ChainHead) -> Self {
        ChainVerifier { head }
    }

    /// Checks the next stored event. Returns the first fault; the caller stops at it, since every
    /// later link depends on this one.
    pub fn check(&mut self, stored: &StoredEvent) -> Result<(), ChainFault> {
        self.check_view(
            &(&stored.event).into(),
            stored.seq,
            stored.received_at_ns,
            &stored.prev_hash,
            &stored.event_hash,
        )
    }

    /// [`ChainVerifier::check`] of borrowed fields (a row read without copying).
    pub fn check_view(
        &mut self,
        event: &EventView<'_>,
        seq: u64,
        received_at_ns: i64,
        prev_hash: &[u8; 32],
        stored_hash: &[u8; 32],
    ) -> Result<(), ChainFault> {
        let expected = self.head.seq + 1;
        if seq < expected {
            return Err(ChainFault::Duplicate { seq });
        }
        if seq > expected {
            return Err(ChainFault::Missing {
                seq: expected,
                found: seq,
            });
        }
        if *prev_hash != self.head.hash {
            return Err(ChainFault::OrderBroken { seq: expected });
        }
        if event_hash_of_view(event, seq, received_at_ns, prev_hash) != *stored_hash {
            return Err(ChainFault::ContentChanged { seq: expected });
        }
        self.head = ChainHead {
            seq,
            hash: *stored_hash,
        };
        Ok(())
    }

    /// Checks the end of the chain against the head the store recorded: a log that ends early was
    /// truncated.
    pub fn finish(&self, recorded_head: Option<ChainHead>) -> Result<ChainHead, ChainFault> {
        if let Some(recorded) = recorded_head {
            if recorded.seq > self.head.seq {
                return Err(ChainFault::Truncated {
                    seq: self.head.seq + 1,
                    found: self.head.seq,
                });
            }
            if recorded.seq == self.head.seq && recorded.hash != self.head.hash {
                return Err(ChainFault::HeadMismatch { seq: recorded.seq });
            }
        }
        Ok(self.head)
    }

    pub fn head(&self) -> ChainHead {
        self.head
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealtrail_model::{ActorType, Outcome};

    fn event(n: u64) -> Event {
        Event {
            event_id: format!("e{n}"),
            timestamp_ns: 1_700_000_000_000_000_000 + n as i64,
            tenant_id: "acme".into(),
            actor_id: "alice".into(),
            actor_type: ActorType::Human,
            action: "update".into(),
            resource_type: "document".into(),
            resource_id: Some(format!("doc-{n}")),
            outcome: Outcome::Success,
            ip_address: None,
            user_agent: None,
            request_id: None,
            changes: None,
            metadata: None,
        }
    }

    fn chain(length: u64) -> Vec<StoredEvent> {
        let mut head = ChainHead::default();
        (1..=length)
            .map(|n| head.append(event(n), n as i64))
            .collect()
    }

    fn first_fault(events: &[StoredEvent]) -> Option<ChainFault> {
        let mut verifier = ChainVerifier::new();
        events
            .iter()
            .find_map(|stored| verifier.check(stored).err())
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(first_fault(&chain(5)), None);
    }

    #[test]
    fn edit_delete_and_swap_are_named() {
        let mut edited = chain(5);
        edited[2].event.actor_id = "mallory".into();
        assert_eq!(
            first_fault(&edited),
            Some(ChainFault::ContentChanged { seq: 3 })
        );

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(
            first_fault(&deleted),
            Some(ChainFault::Missing { seq: 2, found: 3 })
        );

        let mut swapped = chain(5);
        let (a, b) = (swapped[1].seq, swapped[3].seq);
        swapped[1].seq = b;
        swapped[3].seq = a;
        swapped.sort_by_key(|stored| stored.seq);
        assert_eq!(
            first_fault(&swapped),
            Some(ChainFault::OrderBroken { seq: 2 })
        );
    }

    #[test]
    fn truncation_is_caught_by_the_recorded_head() {
        let events = chain(5);
        let mut verifier = ChainVerifier::new();
        for stored in &events[..4] {
            verifier.check(stored).unwrap();
        }
        let recorded = ChainHead {
            seq: 5,
            hash: events[4].event_hash,
        };
        assert_eq!(
            verifier.finish(Some(recorded)),
            Err(ChainFault::Truncated { seq: 5, found: 4 })
        );
    }
}
