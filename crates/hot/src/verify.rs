//! Offline verification of the SQLite hot tier: re-checks every tenant's chain from the database
//! file alone, with no server running and nothing trusted but the ledger's rules.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use sealtrail_ledger::{ChainFault, ChainHead, ChainVerifier};

use crate::sqlite::{select_events_sql, stored_event_from_row, DATABASE_FILE};
use crate::{Error, Result};

/// The verdict on one tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantReport {
    pub tenant_id: String,
    /// Events checked before the verdict.
    pub events_checked: u64,
    /// The verified head, or the first fault.
    pub verdict: std::result::Result<ChainHead, ChainFault>,
}

/// Verifies every tenant (or just `only_tenant`) in the hot store under `data_dir`.
pub fn verify_sqlite(data_dir: &Path, only_tenant: Option<&str>) -> Result<Vec<TenantReport>> {
    let path = data_dir.join(DATABASE_FILE);
    if !path.exists() {
        return Err(Error::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no hot store in this data directory",
            ),
        });
    }
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    // A tenant whose rows were all deleted still has a recorded head, so list both sources.
    let mut tenants: Vec<String> = {
        let mut statement = conn.prepare(
            "SELECT tenant_id FROM chain_heads UNION SELECT DISTINCT tenant_id FROM events ORDER BY 1",
        )?;
        let rows = statement.query_map([], |row| row.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    if let Some(only) = only_tenant {
        tenants.retain(|tenant| tenant == only);
        if tenants.is_empty() {
            tenants.push(only.to_owned());
        }
    }
    tenants
        .into_iter()
        .map(|tenant_id| verify_tenant(&conn, tenant_id))
        .collect()
}

fn verify_tenant(conn: &Connection, tenant_id: String) -> Result<TenantReport> {
    let recorded = conn
        .query_row(
            "SELECT seq, head_hash FROM chain_heads WHERE tenant_id = ?1",
            [&tenant_id],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)),
        )
        .optional()?
        .map(|(seq, hash)| ChainHead {
            seq: seq as u64,
            hash: hash.try_into().unwrap_or([0xff; 32]),
        });
    let mut verifier = ChainVerifier::new();
    let mut events_checked = 0;
    let mut statement = conn.prepare(&format!(
        "{} ORDER BY seq",
        select_events_sql("tenant_id = ?1")
    ))?;
    let mut rows = statement.query([&tenant_id])?;
    while let Some(row) = rows.next()? {
        let checked = match stored_event_from_row(row) {
            Ok(stored) => verifier.check(&stored),
            // A row that no longer decodes was edited.
            Err(Error::Corrupt { seq, .. }) => Err(ChainFault::ContentChanged { seq }),
            Err(other) => return Err(other),
        };
        if let Err(fault) = checked {
            return Ok(TenantReport {
                tenant_id,
                events_checked,
                verdict: Err(fault),
            });
        }
        events_checked += 1;
    }
    Ok(TenantReport {
        tenant_id,
        events_checked,
        verdict: verifier.finish(recorded),
    })
}
