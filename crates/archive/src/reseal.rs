//! Re-encryption on the way down the tiers (docs/PRIVACY.md, "Rotation").
//!
//! After a tenant's data key is rotated, the events it sealed earlier keep their old keys until
//! they are written again. The lifecycle writes every event again exactly twice, hot → warm and
//! warm → cold, so that is where they move to the current key, as the practice does: a
//! [`Reseal`] given to [`crate::migrate_hot_to_warm_expiring`] and [`crate::migrate_warm_to_cold`]
//! re-encrypts each protected field before the file is written. Only the envelope's ciphertext
//! changes; its commitment, and so the event's hash, stay (docs/FORMAT.md, "Protected fields").
//! The file is checked as always, and against the rows it replaces with each envelope reduced to
//! its commitment ([`same_but_ciphertext`]).
//!
//! The keys live with the server (`sealtrail_server::privacy`); this crate only calls the hook.

use std::borrow::Cow;

use sealtrail_ledger::EventView;
use sealtrail_model::{sealed_commitment, Closed, Sealed, StoredEvent, PROTECTED_FIELDS};

/// Re-encrypts the protected fields of events about to be written to an archive file.
#[async_trait::async_trait]
pub trait Reseal: Send + Sync + std::fmt::Debug {
    /// Re-encrypts in place every envelope of `events` that is not under its tenant's current
    /// data key and whose key still exists (an erased subject's stay as they are). MUST NOT
    /// change anything but envelopes' ciphertext and key id. Returns how many fields moved.
    async fn reseal(&self, events: &mut [StoredEvent]) -> Result<u64, String>;
}

/// `stored` with each protected field's envelope reduced to its commitment: what an event's
/// hash covers of it, whatever key its ciphertext is under.
fn committed(stored: &StoredEvent) -> StoredEvent {
    let mut reduced = stored.clone();
    for field in PROTECTED_FIELDS {
        let value = reduced
            .event
            .protected_field_mut(field)
            .expect("a protected field name");
        if let Some(commitment) = value.as_deref().and_then(sealed_commitment) {
            *value = Some(
                Sealed::Closed {
                    commitment,
                    closed: Closed::Withheld,
                }
                .to_text(),
            );
        }
    }
    reduced
}

/// Whether two copies of an event are the same but for the ciphertext of their envelopes (a
/// re-encryption): every other field equal, and each envelope committing to the same value.
pub fn same_but_ciphertext(a: &StoredEvent, b: &StoredEvent) -> bool {
    a == b || committed(a) == committed(b)
}

/// Re-encrypts `events` with `reseal` when one is given, checking that it changed nothing it
/// may not: what to write (`events` themselves when nothing in them is sealed).
pub(crate) async fn resealed<'a>(
    reseal: Option<&dyn Reseal>,
    events: &'a [StoredEvent],
) -> crate::Result<(Cow<'a, [StoredEvent]>, u64)> {
    let Some(reseal) = reseal else {
        return Ok((Cow::Borrowed(events), 0));
    };
    if !events
        .iter()
        .any(|stored| EventView::from(&stored.event).is_sealed())
    {
        return Ok((Cow::Borrowed(events), 0));
    }
    let mut copy = events.to_vec();
    let moved = reseal
        .reseal(&mut copy)
        .await
        .map_err(crate::Error::Reseal)?;
    if let Some((before, _)) = events
        .iter()
        .zip(&copy)
        .find(|(before, after)| !same_but_ciphertext(before, after))
    {
        return Err(crate::Error::Reseal(format!(
            "tenant {}, seq {}: re-encryption changed more than the ciphertext",
            before.event.tenant_id, before.seq
        )));
    }
    Ok((Cow::Owned(copy), moved))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(ip: &str) -> StoredEvent {
        StoredEvent {
            event: sealtrail_model::Event {
                event_id: "evt-1".into(),
                timestamp_ns: 1_700_000_000_000_000_000,
                tenant_id: "acme".into(),
                actor_id: "alice".into(),
                actor_type: sealtrail_model::ActorType::Human,
                action: "update".into(),
                resource_type: "profile".into(),
                resource_id: None,
                outcome: sealtrail_model::Outcome::Success,
                ip_address: Some(ip.to_owned()),
                user_agent: None,
                request_id: None,
                changes: None,
                metadata: None,
            },
            seq: 1,
            received_at_ns: 1_700_000_000_000_000_000,
            prev_hash: [0; 32],
            event_hash: [1; 32],
        }
    }

    #[test]
    fn only_ciphertext_may_differ() {
        let commitment = [7u8; 32];
        let envelope = |key_id: &str, data: &str| {
            Sealed::Cipher {
                commitment,
                key_id,
                index: None,
                data,
            }
            .to_text()
        };
        let old = stored(&envelope("t1.s1", "AAAA"));
        let moved = stored(&envelope("t2.s9", "BBBB"));
        assert!(same_but_ciphertext(&old, &moved));
        let other = Sealed::Cipher {
            commitment: [8u8; 32],
            key_id: "t2.s9",
            index: None,
            data: "BBBB",
        }
        .to_text();
        assert!(!same_but_ciphertext(&old, &stored(&other)));
        assert!(!same_but_ciphertext(&old, &stored("198.51.100.7")));
        let mut later = moved.clone();
        later.seq += 1;
        assert!(!same_but_ciphertext(&old, &later));
    }
}
