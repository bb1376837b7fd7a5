//! Opens the hot store a command runs on: the embedded SQLite store in the data directory by
//! default, PostgreSQL when a database URL is given.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use sealtrail_hot::HotStore;
use sealtrail_hot_postgres::PostgresStore;
use sealtrail_hot_sqlite::SqliteStore;

/// Whether `url` names a PostgreSQL database (the two URL schemes libpq accepts).
pub(crate) fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Opens the store `serve` runs on. PostgreSQL is migrated to this build's schema first; several
/// processes may share one database (each with its own data directory for the async spool).
pub(crate) async fn open_hot_store(
    data_dir: &Path,
    database_url: Option<&str>,
) -> anyhow::Result<Arc<dyn HotStore>> {
    match database_url {
        None => Ok(Arc::new(SqliteStore::open(data_dir)?)),
        Some(url) if is_postgres_url(url) => Ok(Arc::new(
            PostgresStore::connect(url)
                .await
                .context("opening the PostgreSQL hot tier")?,
        )),
        Some(_) => bail!("--database-url must start with postgres:// or postgresql://"),
    }
}

/// Where a command beside the servers finds the key-encryption key, as `serve` does: the text
/// in `SEALTRAIL_KEK` (an empty one is none), and the file `kek_file`, default
/// `<data-dir>/vault.kek`.
pub(crate) fn kek_source(data_dir: &Path, kek_file: Option<&Path>) -> (Option<String>, PathBuf) {
    let text = std::env::var("SEALTRAIL_KEK")
        .ok()
        .filter(|key| !key.is_empty());
    let file = kek_file.map_or_else(
        || data_dir.join(sealtrail_server::KEK_FILE),
        Path::to_path_buf,
    );
    (text, file)
}

/// Opens an existing PostgreSQL hot tier for reading (`verify`): nothing is migrated or
/// created, and a schema of another version is refused.
pub(crate) async fn open_existing_postgres(url: &str) -> anyhow::Result<PostgresStore> {
    if !is_postgres_url(url) {
        bail!("--database-url must start with postgres:// or postgresql://");
    }
    PostgresStore::connect_existing(url)
        .await
        .context("opening the PostgreSQL hot tier")
}
