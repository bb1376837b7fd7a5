//! The hot tier as a DataFusion table: one tenant's hot rows above the archived prefix, read
//! page by page in `seq` order, so a query never holds the hot tier in memory.

use std::sync::Arc;

use arrow_schema::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use sealtrail_archive::parquet_file::{event_schema, to_batch};
use sealtrail_hot::HotStore;
use sealtrail_model::limits::ARCHIVE_SCAN_EVENTS;

/// A tenant's hot rows with `seq > after_seq`.
#[derive(Debug)]
pub(crate) struct HotPartition {
    pub(crate) hot: Arc<dyn HotStore>,
    pub(crate) tenant_id: String,
    pub(crate) after_seq: u64,
    pub(crate) schema: SchemaRef,
}

impl HotPartition {
    pub(crate) fn new(hot: Arc<dyn HotStore>, tenant_id: &str, after_seq: u64) -> Self {
        HotPartition {
            hot,
            tenant_id: tenant_id.to_owned(),
            after_seq,
            schema: event_schema(),
        }
    }
}

impl PartitionStream for HotPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _context: Arc<TaskContext>) -> SendableRecordBatchStream {
        let hot = Arc::clone(&self.hot);
        let tenant_id = self.tenant_id.clone();
        let pages = futures::stream::try_unfold(Some(self.after_seq), move |after| {
            let hot = Arc::clone(&hot);
            let tenant_id = tenant_id.clone();
            async move {
                let Some(after) = after else {
                    return Ok(None);
                };
                let page = hot
                    .scan_events(&tenant_id, after, ARCHIVE_SCAN_EVENTS)
                    .await
                    .map_err(|error| DataFusionError::External(Box::new(error)))?;
                let Some(last) = page.last().map(|stored| stored.seq) else {
                    return Ok(None);
                };
                let next = (page.len() == ARCHIVE_SCAN_EVENTS).then_some(last);
                Ok(Some((to_batch(&page)?, next)))
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), pages))
    }
}
