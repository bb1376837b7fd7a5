//! Signed deletion records: how a permitted retention deletion is told apart from tampering.
//!
//! When a tenant's oldest archived events expire, the lifecycle deletes them as a `seq` prefix of
//! the log, whole files at a time, and first writes one record per deleted range, signed as a
//! C2SP note with the checkpoint key. The record states what went (tenant, `seq` range, event
//! count), how the chain continues (the `prev_hash` of the first deleted event and the
//! `event_hash` of the last), how the tree continues (the compact range — the Merkle frontier —
//! of the whole deleted prefix `[0, last_seq)`), which policy permitted it, and when.
//!
//! A verifier that trusts the key can then start the chain at `last_seq + 1` from
//! `last_event_hash`, and the tree from the frontier, so every later leaf, stored tile and signed
//! checkpoint is still checked. Records of one tenant must chain: the first starts at seq 1 from
//! the genesis hash, each next one starts where the previous ended. The body format is in
//! docs/MERKLE.md ("Deletion records"). Parsing is strict, so a record has exactly one spelling.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sealtrail_model::{format_timestamp, parse_timestamp};

use crate::merkle::{Hash, MerkleFrontier};
use crate::note::{open_note, sign_note, NoteError, NoteSigner, NoteVerifier};
use crate::{tenant_origin, ChainHead, GENESIS_HASH};

/// First line of every deletion record body of this version.
pub const DELETION_RECORD_FORMAT: &str = "sealtrail-deletion-v1";

/// One permitted deletion of a contiguous `seq` range of a tenant's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionRecord {
    pub tenant_id: String,
    /// First and last deleted `seq`, inclusive.
    pub first_seq: u64,
    pub last_seq: u64,
    /// Events deleted: always `last_seq - first_seq + 1` (stated so a reader need not compute it).
    pub event_count: u64,
    /// `prev_hash` of `first_seq`: the genesis hash, or the previous record's `last_event_hash`.
    pub prev_hash: Hash,
    /// `event_hash` of `last_seq`; the first remaining event's `prev_hash` must equal it.
    pub last_event_hash: Hash,
    /// The compact range of the tree of the first `last_seq` leaves (the whole deleted prefix,
    /// not just this range).
    pub frontier: MerkleFrontier,
    /// The policy that permitted the deletion, e.g. `retention_days=365 legal_hold=false`.
    pub policy: String,
    /// When the record was written, nanoseconds since the epoch.
    pub deleted_at_ns: i64,
}

/// Why a deletion record could not be formatted, parsed, opened or chained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeletionError {
    #[error("deletion record line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("deletion record is for origin {actual:?}, expected {expected:?}")]
    WrongOrigin { expected: String, actual: String },
    #[error("deletion record seq {first_seq}-{last_seq}: {reason}")]
    Inconsistent {
        first_seq: u64,
        last_seq: u64,
        reason: String,
    },
    #[error("deletion record note: {0}")]
    Note(#[from] NoteError),
}

/// The keys of lines 2 to 9, in order; line 1 is [`DELETION_RECORD_FORMAT`].
const KEYS: [&str; 8] = [
    "origin",
    "seq",
    "events",
    "prev_hash",
    "last_event_hash",
    "frontier",
    "policy",
    "deleted_at",
];

impl DeletionRecord {
    /// Checks the record against itself: a range that starts at 1 or later and does not run
    /// backwards, a count that matches it, a frontier of exactly `last_seq` leaves, a one-line
    /// policy.
    pub fn check(&self) -> Result<(), DeletionError> {
        let inconsistent = |reason: &str| DeletionError::Inconsistent {
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            reason: reason.to_owned(),
        };
        if self.first_seq == 0 || self.last_seq < self.first_seq {
            return Err(inconsistent("the seq range is empty or starts at 0"));
        }
        if self.event_count != self.last_seq - self.first_seq + 1 {
            return Err(inconsistent("the event count does not match the seq range"));
        }
        if self.frontier.tree_size() != self.last_seq {
            return Err(inconsistent(
                "the Merkle frontier is not of the tree of the deleted prefix",
            ));
        }
        if self.policy.is_empty()
            || self.policy.trim() != self.policy
            || self.policy.chars().any(|c| c < ' ')
        {
            return Err(inconsistent(
                "the policy is empty, padded with spaces or holds a control character",
            ));
        }
        if self.tenant_id.is_empty() || self.tenant_id.chars().any(|c| c <= ' ') {
            return Err(inconsistent(
                "the tenant id is empty or holds a space or control character",
            ));
        }
        Ok(())
    }

    /// The note text (see the module docs and docs/MERKLE.md).
    pub fn format_body(&self) -> Result<String, DeletionError> {
        self.check()?;
        let frontier: Vec<String> = self
            .frontier
            .subtrees()
            .map(|subtree| BASE64.encode(subtree.hash))
            .collect();
        Ok(format!(
            "{DELETION_RECORD_FORMAT}\norigin {}\nseq {} {}\nevents {}\nprev_hash {}\n\
             last_event_hash {}\nfrontier {}\npolicy {}\ndeleted_at {}\n",
            tenant_origin(&self.tenant_id),
            self.first_seq,
            self.last_seq,
            self.event_count,
            BASE64.encode(self.prev_hash),
            BASE64.encode(self.last_event_hash),
            frontier.join(" "),
            self.policy,
            format_timestamp(self.deleted_at_ns),
        ))
    }

    /// Parses a body strictly: exactly the nine lines in order, canonical numbers and base64,
    /// then [`DeletionRecord::check`].
    pub fn parse_body(body: &str) -> Result<Self, DeletionError> {
        let malformed = |line: usize, reason: &str| DeletionError::Malformed {
            line,
            reason: reason.to_owned(),
        };
        let text = body
            .strip_suffix('\n')
            .ok_or_else(|| malformed(0, "the body must end in a newline"))?;
        let lines: Vec<&str> = text.split('\n').collect();
        if lines.len() != KEYS.len() + 1 {
            return Err(malformed(
                lines.len(),
                &format!(
                    "the body has {} lines, expected {}",
                    lines.len(),
                    KEYS.len() + 1
                ),
            ));
        }
        if lines[0] != DELETION_RECORD_FORMAT {
            return Err(malformed(
                1,
                &format!("expected {DELETION_RECORD_FORMAT:?}"),
            ));
        }
        let mut values = Vec::with_capacity(KEYS.len());
        for (offset, key) in KEYS.iter().enumerate() {
            let line = offset + 2;
            let value = lines[offset + 1]
                .strip_prefix(key)
                .and_then(|rest| rest.strip_prefix(' '))
                .filter(|value| !value.is_empty())
                .ok_or_else(|| malformed(line, &format!("expected \"{key} <value>\"")))?;
            values.push((line, value));
        }
        let number = |(line, text): (usize, &str)| -> Result<u64, DeletionError> {
            let canonical = text.bytes().all(|byte| byte.is_ascii_digit())
                && (text == "0" || !text.starts_with('0'));
            canonical
                .then(|| text.parse().ok())
                .flatten()
                .ok_or_else(|| malformed(line, "not a canonical decimal number"))
        };
        let hash = |(line, text): (usize, &str)| -> Result<Hash, DeletionError> {
            BASE64
                .decode(text)
                .ok()
                .and_then(|bytes| Hash::try_from(bytes).ok())
                .ok_or_else(|| malformed(line, "not the base64 of 32 bytes"))
        };
        let origin = values[0].1;
        let tenant_id = origin
            .strip_prefix(crate::ORIGIN_PREFIX)
            .filter(|tenant| !tenant.is_empty())
            .ok_or_else(|| malformed(2, "the origin is not sealtrail/<tenant_id>"))?;
        let (line, range) = values[1];
        let (first, last) = range
            .split_once(' ')
            .ok_or_else(|| malformed(line, "expected \"seq <first> <last>\""))?;
        let first_seq = number((line, first))?;
        let last_seq = number((line, last))?;
        let event_count = number(values[2])?;
        let prev_hash = hash(values[3])?;
        let last_event_hash = hash(values[4])?;
        let (line, subtrees) = values[5];
        let subtrees = subtrees
            .split(' ')
            .map(|text| hash((line, text)))
            .collect::<Result<Vec<_>, _>>()?;
        let frontier = MerkleFrontier::from_subtrees(last_seq, &subtrees)
            .map_err(|error| malformed(line, &error.to_string()))?;
        let policy = values[6].1.to_owned();
        let (line, time) = values[7];
        let deleted_at_ns =
            parse_timestamp(time).ok_or_else(|| malformed(line, "not an RFC 3339 timestamp"))?;
        let record = DeletionRecord {
            tenant_id: tenant_id.to_owned(),
            first_seq,
            last_seq,
            event_count,
            prev_hash,
            last_event_hash,
            frontier,
            policy,
            deleted_at_ns,
        };
        record.check()?;
        // One spelling only: the body must be exactly what formatting the record gives back.
        if record.format_body()? != body {
            return Err(malformed(0, "not in canonical form"));
        }
        Ok(record)
    }
}

/// Formats and signs a deletion record, returning the signed note.
pub fn sign_deletion_record(
    record: &DeletionRecord,
    signer: &NoteSigner,
) -> Result<String, DeletionError> {
    Ok(sign_note(&record.format_body()?, signer)?)
}

/// Opens a signed deletion record of `tenant_id`: a signature from `verifiers` must verify, the
/// body must parse, and its origin must be the tenant's, so one tenant's record cannot be passed
/// off as another's when one key signs them all.
pub fn open_deletion_record(
    note: &str,
    verifiers: &[NoteVerifier],
    tenant_id: &str,
) -> Result<DeletionRecord, DeletionError> {
    let opened = open_note(note, verifiers)?;
    let record = DeletionRecord::parse_body(&opened.text)?;
    if record.tenant_id != tenant_id {
        return Err(DeletionError::WrongOrigin {
            expected: tenant_origin(tenant_id),
            actual: tenant_origin(&record.tenant_id),
        });
    }
    Ok(record)
}

/// Where a tenant's remaining log starts after its deleted prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedPrefix {
    /// The last deleted event: `seq` and `event_hash`. The chain continues from it.
    pub head: ChainHead,
    /// The tree of the deleted prefix; the next leaf is appended to it.
    pub frontier: MerkleFrontier,
    /// How many records cover the prefix.
    pub records: usize,
}

impl DeletedPrefix {
    /// Chains a tenant's opened records, ascending by `first_seq`: the first starts at seq 1
    /// from the genesis hash, each next one where the previous ended. Returns the end of the
    /// prefix, or `None` for no records.
    pub fn from_records(records: &[DeletionRecord]) -> Result<Option<Self>, DeletionError> {
        let mut head = ChainHead {
            seq: 0,
            hash: GENESIS_HASH,
        };
        for record in records {
            record.check()?;
            let broken = |reason: &str| DeletionError::Inconsistent {
                first_seq: record.first_seq,
                last_seq: record.last_seq,
                reason: reason.to_owned(),
            };
            if record.first_seq != head.seq + 1 {
                return Err(broken(&format!(
                    "does not continue the deleted prefix, which ends at seq {}",
                    head.seq
                )));
            }
            if record.prev_hash != head.hash {
                return Err(broken(
                    "its prev_hash is not the last event_hash of the previous record",
                ));
            }
            if records
                .first()
                .is_some_and(|first| first.tenant_id != record.tenant_id)
            {
                return Err(broken("records of different tenants"));
            }
            head = ChainHead {
                seq: record.last_seq,
                hash: record.last_event_hash,
            };
        }
        Ok(records.last().map(|last| DeletedPrefix {
            head,
            frontier: last.frontier.clone(),
            records: records.len(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{leaf_hash, tree_root};

    fn leaves(count: u64) -> Vec<Hash> {
        (0..count).map(|n| leaf_hash(&n.to_be_bytes())).collect()
    }

    fn record(first_seq: u64, last_seq: u64, all: &[Hash]) -> DeletionRecord {
        let mut frontier = MerkleFrontier::new();
        for leaf in &all[..last_seq as usize] {
            frontier.append(*leaf);
        }
        DeletionRecord {
            tenant_id: "acme".into(),
            first_seq,
            last_seq,
            event_count: last_seq - first_seq + 1,
            prev_hash: if first_seq == 1 {
                GENESIS_HASH
            } else {
                all[first_seq as usize - 2]
            },
            last_event_hash: all[last_seq as usize - 1],
            frontier,
            policy: "retention_days=365 legal_hold=false".into(),
            deleted_at_ns: 1_780_000_000_123_000_000,
        }
    }

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("sealtrail", &[9; 32]).unwrap()
    }

    #[test]
    fn body_round_trips_and_keeps_the_tree() {
        let all = leaves(300);
        let deleted = record(1, 100, &all);
        let body = deleted.format_body().unwrap();
        assert!(body.starts_with("sealtrail-deletion-v1\norigin sealtrail/acme\nseq 1 100\n"));
        let parsed = DeletionRecord::parse_body(&body).unwrap();
        assert_eq!(parsed, deleted);
        // Appending the remaining leaves to the recorded frontier gives the full tree's root.
        let mut frontier = parsed.frontier;
        for leaf in &all[100..] {
            frontier.append(*leaf);
        }
        assert_eq!(frontier.root(), tree_root(&all));
    }

    #[test]
    fn signed_records_open_only_with_the_key_and_for_their_tenant() {
        let all = leaves(10);
        let note = sign_deletion_record(&record(1, 4, &all), &signer()).unwrap();
        let key = signer().verifier();
        assert_eq!(
            open_deletion_record(&note, std::slice::from_ref(&key), "acme")
                .unwrap()
                .last_seq,
            4
        );
        assert!(matches!(
            open_deletion_record(&note, std::slice::from_ref(&key), "globex"),
            Err(DeletionError::WrongOrigin { .. })
        ));
        let other = NoteSigner::from_seed("sealtrail", &[1; 32])
            .unwrap()
            .verifier();
        assert!(open_deletion_record(&note, &[other], "acme").is_err());
        // Any edit of the body breaks the signature.
        let forged = note.replace("seq 1 4", "seq 1 5");
        assert!(matches!(
            open_deletion_record(&forged, &[key], "acme"),
            Err(DeletionError::Note(NoteError::InvalidSignature { .. }))
        ));
    }

    #[test]
    fn strict_parsing_rejects_other_spellings() {
        let body = record(1, 4, &leaves(4)).format_body().unwrap();
        for (from, to) in [
            ("seq 1 4", "seq 01 4"),
            ("events 4", "events 5"),
            ("policy retention", "policy  retention"),
            ("sealtrail-deletion-v1", "sealtrail-deletion-v2"),
            ("origin sealtrail/acme", "origin other/acme"),
        ] {
            let changed = body.replace(from, to);
            assert!(
                DeletionRecord::parse_body(&changed).is_err(),
                "{from} -> {to} must not parse"
            );
        }
        assert!(DeletionRecord::parse_body(body.trim_end()).is_err());
        // A frontier of the wrong size for the range is refused.
        let wrong = body.replace("seq 1 4\nevents 4", "seq 1 3\nevents 3");
        assert!(DeletionRecord::parse_body(&wrong).is_err());
    }

    #[test]
    fn records_must_chain_from_genesis_without_gaps() {
        let all = leaves(50);
        let first = record(1, 10, &all);
        let second = record(11, 30, &all);
        let prefix = DeletedPrefix::from_records(&[first.clone(), second.clone()])
            .unwrap()
            .unwrap();
        assert_eq!(prefix.head.seq, 30);
        assert_eq!(prefix.head.hash, all[29]);
        assert_eq!(prefix.records, 2);
        assert_eq!(DeletedPrefix::from_records(&[]).unwrap(), None);
        // A gap, a record not starting at 1, or a broken hash link is refused.
        assert!(DeletedPrefix::from_records(std::slice::from_ref(&second)).is_err());
        let gap = record(12, 30, &all);
        assert!(DeletedPrefix::from_records(&[first.clone(), gap]).is_err());
        let mut unlinked = second;
        unlinked.prev_hash = [7; 32];
        assert!(DeletedPrefix::from_records(&[first, unlinked]).is_err());
    }
}
