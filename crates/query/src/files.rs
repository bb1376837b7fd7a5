//! Which archived files hold a tenant's events, and how DataFusion reads a set of them.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use sealtrail_archive::parquet_file::event_schema;
use sealtrail_archive::ArchiveTier;
use sealtrail_model::StorageTier;

use crate::{store_url, Error, QueryEngine, Result};

/// One recorded archive file: a contiguous `seq` range of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArchivedFile {
    pub(crate) tier: StorageTier,
    /// Full object path inside the tier's store.
    pub(crate) path: String,
    pub(crate) first_seq: u64,
    pub(crate) last_seq: u64,
    pub(crate) timestamp_min_ns: i64,
    pub(crate) timestamp_max_ns: i64,
}

impl ArchivedFile {
    /// Whether the file may hold events with `timestamp` in `[from_ns, to_ns)`.
    pub(crate) fn may_hold_time(&self, from_ns: Option<i64>, to_ns: Option<i64>) -> bool {
        from_ns.is_none_or(|from| self.timestamp_max_ns >= from)
            && to_ns.is_none_or(|to| self.timestamp_min_ns < to)
    }
}

impl QueryEngine {
    /// The tenant's recorded files across tiers, ascending by `seq`, each `seq` in exactly one
    /// file (see [`sealtrail_archive::archived_files`]: only files with a manifest count, a
    /// cold file wins over the warm files it was compacted from, and ranges removed by a
    /// retention deletion are gone).
    pub(crate) async fn archived_files(&self, tenant_id: &str) -> Result<Vec<ArchivedFile>> {
        let Some(warm) = &self.warm else {
            return Ok(Vec::new());
        };
        let files = sealtrail_archive::archived_files(warm, self.cold.as_ref(), tenant_id).await?;
        Ok(files
            .into_iter()
            .map(|file| ArchivedFile {
                tier: match file.tier {
                    ArchiveTier::Warm => StorageTier::Warm,
                    ArchiveTier::Cold => StorageTier::Cold,
                },
                path: file.path.to_string(),
                first_seq: file.first_seq,
                last_seq: file.last_seq,
                timestamp_min_ns: file.manifest.timestamp_min_ns,
                timestamp_max_ns: file.manifest.timestamp_max_ns,
            })
            .collect())
    }

    /// DataFusion tables over exactly these files, one per tier (a table reads from one object
    /// store), in the event schema with no partition columns: the tenant and months are
    /// already chosen by the file list. A recorded file that is missing is an error, never
    /// an empty result: a query must not quietly skip part of the log.
    pub(crate) async fn tier_tables(
        &self,
        files: &[&ArchivedFile],
    ) -> Result<Vec<Arc<dyn TableProvider>>> {
        Ok(self
            .tier_tables_by_kind(files)
            .await?
            .into_iter()
            .map(|(_, table)| table)
            .collect())
    }

    /// [`QueryEngine::tier_tables`], each with the tier it reads.
    pub(crate) async fn tier_tables_by_kind(
        &self,
        files: &[&ArchivedFile],
    ) -> Result<Vec<(StorageTier, Arc<dyn TableProvider>)>> {
        let mut tables = Vec::new();
        for (kind, tier) in [
            (StorageTier::Cold, &self.cold),
            (StorageTier::Warm, &self.warm),
        ] {
            let in_tier: Vec<&&ArchivedFile> =
                files.iter().filter(|file| file.tier == kind).collect();
            let Some(tier) = tier else { continue };
            if in_tier.is_empty() {
                continue;
            }
            let store = tier.object_store().0;
            futures::future::try_join_all(in_tier.iter().map(|file| {
                let store = Arc::clone(&store);
                async move {
                    match store.head(&file.path.as_str().into()).await {
                        Ok(_) => Ok(()),
                        Err(object_store::Error::NotFound { .. }) => Err(Error::MissingFile {
                            path: file.path.clone(),
                        }),
                        Err(error) => Err(Error::Engine(error.into())),
                    }
                }
            }))
            .await?;
            let urls = in_tier
                .iter()
                .map(|file| {
                    ListingTableUrl::parse(format!("{}{}", store_url(kind).as_str(), file.path))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet")
                .with_collect_stat(true);
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(event_schema());
            tables.push((
                kind,
                Arc::new(ListingTable::try_new(config)?) as Arc<dyn TableProvider>,
            ));
        }
        Ok(tables)
    }
}
