//! Opens the hot store a command runs on: the embedded SQLite store in the data directory by
//! default, PostgreSQL when a database URL is given.

use std::path::Path;
use std::sync::Arc;

use anyhow::bail;
use sealtrail_hot::{HotStore, SqliteStore};

pub(crate) async fn open_hot_store(
    data_dir: &Path,
    database_url: Option<&str>,
) -> anyhow::Result<Arc<dyn HotStore>> {
    match database_url {
        None => Ok(Arc::new(SqliteStore::open(data_dir)?)),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            bail!("the PostgreSQL hot tier is not available in this build")
        }
        Some(_) => bail!("--database-url must start with postgres:// or postgresql://"),
    }
}
