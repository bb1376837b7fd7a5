//! One query surface over every tier.
//!
//! A tenant's log is split by `seq`: the archive (warm and cold Parquet files, each a
//! contiguous `seq` range recorded by a manifest) holds the prefix `1..=A`, the hot store the
//! rest. [`QueryEngine`] answers three kinds of reads without the caller knowing where an event
//! lives:
//!
//! - [`QueryEngine::page`]: the `GET /v1/events` filters and `seq` cursor. The hot store answers
//!   from its indexes; archived files are read with Apache DataFusion, chosen by their manifests
//!   (time range and `seq` range prune whole files), then filtered with predicate pushdown into
//!   the Parquet row groups (statistics, bloom filters on `actor_id`, `resource_id`,
//!   `request_id`).
//! - [`QueryEngine::sql`]: read-only SQL over one table, `events`, which holds only the caller's
//!   tenant (see `sql.rs` for why no SQL can reach another tenant).
//! - [`QueryEngine::export`]: every event of a time range in `seq` order, streamed as NDJSON.
//! - [`QueryEngine::bundle`]: a proof bundle of a time range, for `sealtrail bundle`.
//!
//! Hot rows at or below `A` (left for a moment by an interrupted migration, whose manifest is
//! written before the hot rows are deleted) are never returned: the archive is authoritative for
//! its range, so no event is ever seen twice.

mod bundle;
mod cache;
mod error;
mod executor;
mod export;
mod files;
pub mod formats;
mod hot_table;
mod leaves;
mod page;
mod sql;
mod summary_tables;

use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use sealtrail_archive::Tier;
use sealtrail_hot::HotStore;
use sealtrail_model::limits::{QUERY_MEMORY_BYTES_MAX, QUERY_MEMORY_POOL_FRACTION};
use sealtrail_model::StorageTier;

pub use cache::{KeyBuilder, ResultCache};
pub use error::{Error, Result};
pub use executor::MaintenanceRuntime;
pub use export::Chunk;
pub use sql::{PreparedSql, SqlColumn, SqlResult};

/// Reads across the hot store and the archive tiers.
#[derive(Debug)]
pub struct QueryEngine {
    hot: Arc<dyn HotStore>,
    warm: Option<Tier>,
    cold: Option<Tier>,
    /// Shared by every query's session: it holds the tiers' object stores.
    runtime: Arc<RuntimeEnv>,
    /// Where SQL and exports run, and how many at once.
    executor: executor::QueryExecutor,
    /// Answers of SQL and summary reads, by what they were computed from.
    cache: ResultCache,
}

impl QueryEngine {
    /// An engine over `hot` and whichever archive tiers are configured.
    pub fn new(hot: Arc<dyn HotStore>, warm: Option<Tier>, cold: Option<Tier>) -> Result<Self> {
        // No spill files: a query over the memory bound fails instead of filling the disk.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(QUERY_MEMORY_BYTES_MAX, QUERY_MEMORY_POOL_FRACTION)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()?;
        let executor = executor::QueryExecutor::new()
            .map_err(|error| Error::Engine(DataFusionError::IoError(error)))?;
        for (kind, tier) in [(StorageTier::Warm, &warm), (StorageTier::Cold, &cold)] {
            if let Some(tier) = tier {
                let url = store_url(kind);
                runtime.register_object_store(url.as_ref(), tier.object_store().0);
            }
        }
        Ok(QueryEngine {
            hot,
            warm,
            cold,
            runtime,
            executor,
            cache: ResultCache::default(),
        })
    }

    /// The result cache, shared by every read this engine's callers answer from it.
    pub fn cache(&self) -> &ResultCache {
        &self.cache
    }

    /// A fresh session: nothing registered, no catalog views, no URL tables, no
    /// `information_schema`. Parquet reads push filters into the scan and use bloom filters.
    fn session(&self, target_partitions: usize) -> SessionContext {
        let mut config = SessionConfig::new()
            .with_information_schema(false)
            .with_target_partitions(target_partitions)
            .with_default_catalog_and_schema("sealtrail", "tenant");
        let options = config.options_mut();
        options.execution.parquet.pushdown_filters = true;
        options.execution.parquet.reorder_filters = true;
        options.execution.parquet.bloom_filter_on_read = true;
        options.execution.parquet.enable_page_index = true;
        SessionContext::new_with_config_rt(config, Arc::clone(&self.runtime))
    }
}

/// The URL under which a tier's object store is registered with DataFusion.
fn store_url(tier: StorageTier) -> ObjectStoreUrl {
    ObjectStoreUrl::parse(format!("sealtrail-{}://archive", tier.as_str()))
        .expect("a static, valid URL")
}
