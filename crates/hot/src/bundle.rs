//! Exports a proof bundle (see `sealtrail_ledger::Bundle`) of one tenant from the SQLite hot
//! store, offline: the events of a time range (widened to a contiguous `seq` range, because a
//! chain can only be checked without gaps), the checkpoints that cover them, and the proofs.

use std::path::Path;

use rusqlite::{params, Connection, OpenFlags};
use sealtrail_ledger::{
    blocks_needed, Bundle, BundleConsistency, ConsistencyProof, InclusionProof, NodeRecorder,
    TileSource, BUNDLE_FORMAT,
};

use crate::sqlite::{read_block, select_events_sql, stored_event_from_row, DATABASE_FILE};
use crate::{Error, Result};

/// Builds the bundle of `tenant_id`'s events with `from_ns <= timestamp < to_ns`.
pub fn export_bundle_sqlite(
    data_dir: &Path,
    tenant_id: &str,
    from_ns: Option<i64>,
    to_ns: Option<i64>,
) -> Result<Bundle> {
    let conn = Connection::open_with_flags(
        data_dir.join(DATABASE_FILE),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let invalid = |reason: String| Error::Corrupt {
        tenant_id: tenant_id.to_owned(),
        seq: 0,
        reason,
    };
    let (first_seq, last_seq): (Option<i64>, Option<i64>) = conn.query_row(
        "SELECT MIN(seq), MAX(seq) FROM events WHERE tenant_id = ?1 AND timestamp_ns >= ?2 AND timestamp_ns < ?3",
        params![tenant_id, from_ns.unwrap_or(i64::MIN), to_ns.unwrap_or(i64::MAX)],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let (Some(first_seq), Some(last_seq)) = (first_seq, last_seq) else {
        return Err(invalid("no events in that time range".into()));
    };
    let (first_seq, last_seq) = (first_seq as u64, last_seq as u64);
    // Every checkpoint that covers the range: the earliest shows when the range was first
    // committed to, the latest the state now; consistency proofs link them all.
    let mut statement = conn.prepare("SELECT tree_size, note FROM checkpoints WHERE tenant_id = ?1 AND tree_size >= ?2 ORDER BY tree_size")?;
    let covering: Vec<(u64, String)> = statement
        .query_map(params![tenant_id, last_seq as i64], |row| {
            Ok((row.get::<_, i64>(0)? as u64, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let chosen: Vec<(u64, String)> = match (covering.first(), covering.last()) {
        (Some(first), Some(last)) if first.0 != last.0 => vec![first.clone(), last.clone()],
        (Some(only), _) => vec![only.clone()],
        _ => return Err(invalid(format!("no checkpoint covers seq {last_seq} yet; cut one (POST /v1/tenants/{tenant_id}/checkpoint)"))),
    };
    let largest = chosen.last().expect("at least one").0;

    let load = |requests: &[(u8, u64)]| -> Result<TileSource> {
        let mut source = TileSource::new();
        for (level, block) in blocks_needed(requests) {
            source.insert_block(level, block, read_block(&conn, tenant_id, level, block)?);
        }
        Ok(source)
    };
    let prove_inclusion = |seq: u64| -> Result<InclusionProof> {
        let recorder = NodeRecorder::new();
        let _ = InclusionProof::generate(&recorder, seq - 1, largest);
        InclusionProof::generate(&load(&recorder.requests())?, seq - 1, largest)
            .map_err(|error| invalid(error.to_string()))
    };
    let mut inclusion = vec![prove_inclusion(first_seq)?];
    if last_seq != first_seq {
        inclusion.push(prove_inclusion(last_seq)?);
    }
    let mut consistency = Vec::new();
    for pair in chosen.windows(2) {
        let (first, second) = (pair[0].0, pair[1].0);
        let recorder = NodeRecorder::new();
        let _ = ConsistencyProof::generate(&recorder, first, second);
        let proof = ConsistencyProof::generate(&load(&recorder.requests())?, first, second)
            .map_err(|error| invalid(error.to_string()))?;
        consistency.push(BundleConsistency {
            first,
            second,
            proof,
        });
    }

    let mut events = Vec::with_capacity((last_seq - first_seq + 1) as usize);
    let mut statement = conn.prepare(&format!(
        "{} ORDER BY seq",
        select_events_sql("tenant_id = ?1 AND seq >= ?2 AND seq <= ?3")
    ))?;
    let mut rows = statement.query(params![tenant_id, first_seq as i64, last_seq as i64])?;
    while let Some(row) = rows.next()? {
        let stored = stored_event_from_row(row)?;
        events.push(serde_json::to_value(&stored).map_err(|error| invalid(error.to_string()))?);
    }
    Ok(Bundle {
        format: BUNDLE_FORMAT.to_owned(),
        tenant_id: tenant_id.to_owned(),
        first_seq,
        last_seq,
        events,
        checkpoints: chosen.into_iter().map(|(_, note)| note).collect(),
        inclusion,
        consistency,
    })
}
