//! Export bundles: what lets an auditor check an exported file (NDJSON, CSV, Parquet or OCSF)
//! offline, with nothing but the server's verifier key (docs/FORMAT.md, "Export bundles").
//!
//! An export holds the events of one tenant that match its filters (a `timestamp` range and
//! exact fields), in `seq` order. Its bundle holds a signed checkpoint, the inclusion proofs of
//! the first and the last event of the *span* (the `seq` range from the first matching event to
//! the last), and every event of the span that does not match, in full: the *witnesses*.
//!
//! Why that is enough: file rows and witnesses together must be the whole span, each event's
//! hash recomputed from its own fields and linked to its predecessor's (`prev_hash` is part of
//! the canonical encoding), so the proof of the span's last event pins every event of it. A row
//! edited, removed, added or moved then breaks a hash, a link or the count; a matching event
//! left out shows up as a witness that matches. What lies outside the span is covered by the
//! signed *statement*: the server's signature over the export's claims (tenant, filters, span,
//! tree size, file digest), a claim anyone holding the full log can refute.

use serde::{Deserialize, Serialize};

use sealtrail_model::{parse_timestamp, StoredEvent};

use crate::{event_hash, open_checkpoint, open_note, tenant_origin, InclusionProof, NoteVerifier};

/// Names the export bundle format and its version.
pub const EXPORT_BUNDLE_FORMAT: &str = "sealtrail-export-bundle-v1";

/// The first line of a statement's text.
const STATEMENT_TITLE: &str = "sealtrail export statement v1";

/// Which events an export holds: those with `from <= timestamp < to` (RFC 3339, either open)
/// whose named fields equal the given values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// A filter's time bounds, nanoseconds since the epoch.
pub type Bounds = (Option<i64>, Option<i64>);

impl ExportFilter {
    /// The `from` and `to` bounds, or which of them is not an RFC 3339 timestamp.
    pub fn bounds(&self) -> Result<Bounds, &'static str> {
        let parse = |text: &Option<String>, name| match text {
            None => Ok(None),
            Some(text) => parse_timestamp(text).map(Some).ok_or(name),
        };
        Ok((parse(&self.from, "from")?, parse(&self.to, "to")?))
    }

    /// Whether `stored` is one of the events this filter selects, `bounds` being its
    /// [`ExportFilter::bounds`].
    pub fn admits(&self, bounds: Bounds, stored: &StoredEvent) -> bool {
        let event = &stored.event;
        let (from, to) = bounds;
        let exact = [
            (&self.actor_id, Some(event.actor_id.as_str())),
            (&self.action, Some(event.action.as_str())),
            (&self.resource_type, Some(event.resource_type.as_str())),
            (&self.resource_id, event.resource_id.as_deref()),
            (&self.request_id, event.request_id.as_deref()),
            (&self.outcome, Some(event.outcome.as_str())),
        ];
        from.is_none_or(|from| event.timestamp_ns >= from)
            && to.is_none_or(|to| event.timestamp_ns < to)
            && exact.iter().all(|(wanted, found)| {
                wanted
                    .as_deref()
                    .is_none_or(|wanted| Some(wanted) == *found)
            })
    }
}

/// The first line of an export bundle; the witnesses follow, one event (API JSON) per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportHeader {
    pub format: String,
    pub tenant_id: String,
    pub export_id: String,
    /// `ndjson`, `csv`, `parquet` or `ocsf`.
    pub file_format: String,
    pub filters: ExportFilter,
    /// The span, `0` and `0` when nothing matched.
    pub first_seq: u64,
    pub last_seq: u64,
    /// Rows of the file.
    pub events: u64,
    /// Lines after this header.
    pub witnesses: u64,
    /// Size of the tree the export was taken at: later events are not part of it.
    pub tree_size: u64,
    /// SHA-256 of the exported file, lowercase hex.
    pub file_sha256: String,
    /// A signed checkpoint of the tenant's log at `tree_size` or later.
    pub checkpoint: String,
    /// Inclusion of the span's first and last event in the checkpoint's tree.
    pub inclusion: Vec<InclusionProof>,
    /// The signed statement of this header's claims ([`ExportHeader::statement_text`]).
    pub statement: String,
}

impl ExportHeader {
    /// The text the server signs: every claim of the header but the proofs.
    pub fn statement_text(&self) -> String {
        let filters = serde_json::to_string(&self.filters).unwrap_or_default();
        format!(
            "{STATEMENT_TITLE}\ntenant {}\nexport {}\nformat {}\nfilters {filters}\nspan {} {}\n\
             tree {}\nevents {}\nwitnesses {}\nsha256 {}\n",
            self.tenant_id,
            self.export_id,
            self.file_format,
            self.first_seq,
            self.last_seq,
            self.tree_size,
            self.events,
            self.witnesses,
            self.file_sha256,
        )
    }
}

/// Why an export does not verify; names the event `seq` where it can.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportFault {
    #[error("not a {EXPORT_BUNDLE_FORMAT} bundle: {0}")]
    Malformed(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("statement: {0}")]
    Statement(String),
    #[error("seq {seq}: {reason}")]
    Event { seq: u64, reason: String },
    #[error("file row {row}: {reason}")]
    Row { row: u64, reason: String },
    #[error("the file: {0}")]
    File(String),
}

/// What a successful check established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    pub tenant_id: String,
    pub events: u64,
    pub witnesses: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub tree_size: u64,
}

/// Checks an export as it streams: [`ExportCheck::new`] opens the header, then the file's rows
/// and the witnesses are fed in `seq` order each ([`ExportCheck::row`], [`ExportCheck::witness`],
/// interleaved by the caller so that `seq`s arrive ascending overall), then
/// [`ExportCheck::finish`] with the file's digest. Memory stays constant whatever the export.
#[derive(Debug)]
pub struct ExportCheck {
    header: ExportHeader,
    bounds: Bounds,
    /// The next `seq` the span needs, and the hash of the event before it.
    next_seq: u64,
    previous_hash: Option<[u8; 32]>,
    rows: u64,
    witnesses: u64,
    /// The highest `seq` read from the file, to catch reordered rows.
    last_row_seq: u64,
}

impl ExportCheck {
    /// Opens the header: the checkpoint and the statement must be signed by `key`, and the
    /// statement must state this header's claims.
    pub fn new(header: ExportHeader, key: &NoteVerifier) -> Result<Self, ExportFault> {
        if header.format != EXPORT_BUNDLE_FORMAT {
            return Err(ExportFault::Malformed(format!(
                "format is {:?}",
                header.format
            )));
        }
        let verifiers = std::slice::from_ref(key);
        let checkpoint = open_checkpoint(
            &header.checkpoint,
            verifiers,
            &tenant_origin(&header.tenant_id),
        )
        .map_err(|error| ExportFault::Checkpoint(error.to_string()))?;
        if checkpoint.tree_size < header.tree_size {
            return Err(ExportFault::Checkpoint(format!(
                "it covers {} events, the export claims a tree of {}",
                checkpoint.tree_size, header.tree_size
            )));
        }
        let statement = open_note(&header.statement, verifiers)
            .map_err(|error| ExportFault::Statement(error.to_string()))?;
        if statement.text != header.statement_text() {
            return Err(ExportFault::Statement(
                "it does not state this bundle's claims (tenant, filters, span, counts or file \
                 digest changed)"
                    .into(),
            ));
        }
        let bounds = header.filters.bounds().map_err(|name| {
            ExportFault::Malformed(format!("filters.{name} is not an RFC 3339 timestamp"))
        })?;
        let empty = header.first_seq == 0 && header.last_seq == 0;
        if !empty
            && (header.first_seq == 0
                || header.last_seq < header.first_seq
                || header.last_seq > header.tree_size)
        {
            return Err(ExportFault::Malformed(format!(
                "span {}..={} does not fit a tree of {}",
                header.first_seq, header.last_seq, header.tree_size
            )));
        }
        if !empty {
            for seq in [header.first_seq, header.last_seq] {
                let proof = header
                    .inclusion
                    .iter()
                    .find(|proof| proof.leaf_index == seq - 1)
                    .ok_or_else(|| ExportFault::Event {
                        seq,
                        reason: "the bundle holds no inclusion proof for it".into(),
                    })?;
                if proof.tree_size != checkpoint.tree_size {
                    return Err(ExportFault::Event {
                        seq,
                        reason: "its inclusion proof is not for the checkpoint's tree".into(),
                    });
                }
                proof
                    .verify(&checkpoint.root_hash)
                    .map_err(|error| ExportFault::Event {
                        seq,
                        reason: format!("inclusion proof does not verify: {error}"),
                    })?;
            }
        }
        Ok(ExportCheck {
            next_seq: header.first_seq.max(1),
            bounds,
            header,
            previous_hash: None,
            rows: 0,
            witnesses: 0,
            last_row_seq: 0,
        })
    }

    pub fn header(&self) -> &ExportHeader {
        &self.header
    }

    /// One row of the exported file, in file order.
    pub fn row(&mut self, stored: &StoredEvent) -> Result<(), ExportFault> {
        self.rows += 1;
        let row = self.rows;
        if stored.seq <= self.last_row_seq {
            return Err(ExportFault::Row {
                row,
                reason: format!(
                    "seq {} after seq {}: rows are out of order or repeated",
                    stored.seq, self.last_row_seq
                ),
            });
        }
        self.last_row_seq = stored.seq;
        if !self.header.filters.admits(self.bounds, stored) {
            return Err(ExportFault::Row {
                row,
                reason: format!(
                    "seq {} does not match the export's filters (outside its range or fields)",
                    stored.seq
                ),
            });
        }
        self.link(stored)
    }

    /// One witness line, in bundle order.
    pub fn witness(&mut self, stored: &StoredEvent) -> Result<(), ExportFault> {
        self.witnesses += 1;
        if self.header.filters.admits(self.bounds, stored) {
            return Err(ExportFault::Event {
                seq: stored.seq,
                reason: "matches the export's filters but is missing from the file".into(),
            });
        }
        self.link(stored)
    }

    /// The next event of the span: its place, tenant, hash and link.
    fn link(&mut self, stored: &StoredEvent) -> Result<(), ExportFault> {
        let seq = self.next_seq;
        let fault = |reason: String| ExportFault::Event { seq, reason };
        if stored.seq != seq {
            return Err(fault(format!(
                "event missing, or one added or moved (found seq {} where seq {seq} belongs)",
                stored.seq
            )));
        }
        if seq > self.header.last_seq {
            return Err(fault(format!(
                "outside the span the export claims (seq {}..={})",
                self.header.first_seq, self.header.last_seq
            )));
        }
        if stored.event.tenant_id != self.header.tenant_id {
            return Err(fault("belongs to another tenant".into()));
        }
        let recomputed = event_hash(
            &stored.event,
            stored.seq,
            stored.received_at_ns,
            &stored.prev_hash,
        );
        if recomputed != stored.event_hash {
            return Err(fault(
                "content changed (event_hash does not match the event's fields)".into(),
            ));
        }
        if let Some(previous) = self.previous_hash {
            if stored.prev_hash != previous {
                return Err(fault(
                    "order broken (prev_hash is not the previous event's hash)".into(),
                ));
            }
        }
        for proof in &self.header.inclusion {
            if proof.leaf_index == seq - 1 && proof.leaf_hash != recomputed {
                return Err(fault(
                    "not the event the signed tree holds at this seq (leaf hash differs)".into(),
                ));
            }
        }
        self.previous_hash = Some(recomputed);
        self.next_seq += 1;
        Ok(())
    }

    /// Ends the check: the whole span was read, the counts are the claimed ones and the file is
    /// the one the statement names.
    pub fn finish(self, file_sha256: &str) -> Result<ExportReport, ExportFault> {
        let header = &self.header;
        let read_through = self.next_seq - 1;
        if header.last_seq != 0 && read_through != header.last_seq {
            return Err(ExportFault::Event {
                seq: read_through + 1,
                reason: format!(
                    "event missing: the span runs to seq {}, file and witnesses end at seq \
                     {read_through}",
                    header.last_seq
                ),
            });
        }
        if self.rows != header.events {
            return Err(ExportFault::File(format!(
                "{} rows, the statement says {}",
                self.rows, header.events
            )));
        }
        if self.witnesses != header.witnesses {
            return Err(ExportFault::Malformed(format!(
                "{} witnesses, the statement says {}",
                self.witnesses, header.witnesses
            )));
        }
        if !file_sha256.eq_ignore_ascii_case(&header.file_sha256) {
            return Err(ExportFault::File(
                "its SHA-256 is not the one the statement names (bytes changed that no event \
                 hash covers)"
                    .into(),
            ));
        }
        Ok(ExportReport {
            tenant_id: header.tenant_id.clone(),
            events: self.rows,
            witnesses: self.witnesses,
            first_seq: header.first_seq,
            last_seq: header.last_seq,
            tree_size: header.tree_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{sign_checkpoint, sign_note, ChainHead, Checkpoint, MemoryTree, NoteSigner};
    use sealtrail_model::{ActorType, Event, Outcome};

    fn log(events: usize) -> Vec<StoredEvent> {
        let mut head = ChainHead::default();
        (0..events)
            .map(|n| {
                head.append(
                    Event {
                        event_id: format!("e{n}"),
                        timestamp_ns: n as i64 * 1_000,
                        tenant_id: "acme".into(),
                        actor_id: format!("user-{}", n % 2),
                        actor_type: ActorType::Human,
                        action: if n % 3 == 0 { "login" } else { "update" }.into(),
                        resource_type: "doc".into(),
                        resource_id: None,
                        outcome: Outcome::Success,
                        ip_address: None,
                        user_agent: None,
                        request_id: None,
                        changes: None,
                        metadata: None,
                    },
                    7,
                )
            })
            .collect()
    }

    /// An export of `log` under `filters`, as the server builds it: the rows, the witnesses and
    /// the header.
    fn export(
        log: &[StoredEvent],
        filters: ExportFilter,
        signer: &NoteSigner,
    ) -> (Vec<StoredEvent>, Vec<StoredEvent>, ExportHeader) {
        let bounds = filters.bounds().unwrap();
        let matching: Vec<&StoredEvent> = log
            .iter()
            .filter(|stored| filters.admits(bounds, stored))
            .collect();
        let (first, last) = (matching[0].seq, matching[matching.len() - 1].seq);
        let span = &log[first as usize - 1..last as usize];
        let (rows, witnesses): (Vec<StoredEvent>, Vec<StoredEvent>) = span
            .iter()
            .cloned()
            .partition(|stored| filters.admits(bounds, stored));
        let tree = MemoryTree::from_leaf_hashes(log.iter().map(|stored| stored.event_hash));
        let size = tree.tree_size();
        let checkpoint = Checkpoint::new(tenant_origin("acme"), size, tree.root());
        let prove = |seq: u64| InclusionProof::generate(&tree, seq - 1, size).unwrap();
        let mut header = ExportHeader {
            format: EXPORT_BUNDLE_FORMAT.into(),
            tenant_id: "acme".into(),
            export_id: "exp_1".into(),
            file_format: "ndjson".into(),
            filters,
            first_seq: first,
            last_seq: last,
            events: rows.len() as u64,
            witnesses: witnesses.len() as u64,
            tree_size: size,
            file_sha256: "ab".repeat(32),
            checkpoint: sign_checkpoint(&checkpoint, signer).unwrap(),
            inclusion: vec![prove(first), prove(last)],
            statement: String::new(),
        };
        header.statement = sign_note(&header.statement_text(), signer).unwrap();
        (rows, witnesses, header)
    }

    /// Feeds rows and witnesses merged by `seq`, as a verifier reads them.
    fn check(
        rows: &[StoredEvent],
        witnesses: &[StoredEvent],
        header: ExportHeader,
        key: &NoteVerifier,
    ) -> Result<ExportReport, ExportFault> {
        let digest = header.file_sha256.clone();
        let mut check = ExportCheck::new(header, key)?;
        let mut witnesses = witnesses.iter().peekable();
        for row in rows {
            while let Some(witness) = witnesses.next_if(|witness| witness.seq < row.seq) {
                check.witness(witness)?;
            }
            check.row(row)?;
        }
        for witness in witnesses {
            check.witness(witness)?;
        }
        check.finish(&digest)
    }

    fn setup() -> (Vec<StoredEvent>, NoteSigner) {
        (log(40), NoteSigner::from_seed("test", &[7; 32]).unwrap())
    }

    #[test]
    fn an_untouched_filtered_export_verifies() {
        let (log, signer) = setup();
        let filters = ExportFilter {
            action: Some("login".into()),
            from: Some(sealtrail_model::format_timestamp(3_000)),
            ..ExportFilter::default()
        };
        let (rows, witnesses, header) = export(&log, filters, &signer);
        let report = check(&rows, &witnesses, header, &signer.verifier()).unwrap();
        assert_eq!((report.first_seq, report.last_seq), (4, 40));
        assert_eq!(report.events, 13);
        assert_eq!(report.witnesses, 24);
    }

    #[test]
    fn every_kind_of_tampering_is_refused() {
        let (log, signer) = setup();
        let key = signer.verifier();
        let filters = ExportFilter {
            action: Some("login".into()),
            ..ExportFilter::default()
        };
        let (rows, witnesses, header) = export(&log, filters, &signer);
        let refused = |rows: &[StoredEvent], witnesses: &[StoredEvent], header: ExportHeader| {
            check(rows, witnesses, header, &key)
                .unwrap_err()
                .to_string()
        };

        let mut edited = rows.clone();
        edited[2].event.actor_id = "mallory".into();
        assert!(refused(&edited, &witnesses, header.clone()).contains("content changed"));
        let mut removed = rows.clone();
        removed.remove(3);
        assert!(refused(&removed, &witnesses, header.clone()).contains("event missing"));
        let mut reordered = rows.clone();
        reordered.swap(1, 2);
        assert!(refused(&reordered, &witnesses, header.clone()).contains("moved"));
        // A matching event passed off as a witness.
        let mut hidden = rows.clone();
        let moved = hidden.remove(4);
        let mut more_witnesses = witnesses.clone();
        more_witnesses.push(moved);
        more_witnesses.sort_by_key(|stored| stored.seq);
        assert!(refused(&hidden, &more_witnesses, header.clone()).contains("missing from the file"));
        // A claim the server did not sign.
        let mut narrowed = header.clone();
        narrowed.filters.from = Some(sealtrail_model::format_timestamp(1));
        assert!(refused(&rows, &witnesses, narrowed).contains("statement"));
        // Another key.
        let other = NoteSigner::from_seed("test", &[8; 32]).unwrap().verifier();
        assert!(check(&rows, &witnesses, header.clone(), &other).is_err());
        // The file's bytes are not the ones stated.
        let digest_changed = ExportCheck::new(header.clone(), &key).and_then(|mut check| {
            for stored in log[..40].iter() {
                if header.filters.admits((None, None), stored) {
                    check.row(stored)?;
                } else {
                    check.witness(stored)?;
                }
            }
            check.finish(&"cd".repeat(32))
        });
        assert!(digest_changed.unwrap_err().to_string().contains("SHA-256"));
    }
}
