//! The hot tier as a DataFusion table: one tenant's hot rows above the archived prefix, read
//! page by page in `seq` order, so a query never holds the hot tier in memory.
//!
//! Besides the archived files' columns, each row carries the `event_hash` the hot store keeps
//! (archived rows get theirs recomputed, see `sql.rs`).

use std::sync::Arc;

use arrow_array::{ArrayRef, FixedSizeBinaryArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use sealtrail_archive::parquet_file::{event_schema, to_batch};
use sealtrail_hot::HotStore;
use sealtrail_model::limits::SQL_BATCH_ROWS;

/// The column each SQL row's event hash is in.
pub(crate) const EVENT_HASH_COLUMN: &str = "event_hash";

/// The event schema and `event_hash`: what a hot page holds.
pub(crate) fn hot_schema() -> SchemaRef {
    let mut fields: Vec<Field> = event_schema()
        .fields()
        .iter()
        .map(|field| field.as_ref().clone())
        .collect();
    fields.push(Field::new(
        EVENT_HASH_COLUMN,
        DataType::FixedSizeBinary(32),
        false,
    ));
    Arc::new(Schema::new(fields))
}

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
            schema: hot_schema(),
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
        let schema = self.schema.clone();
        let pages = futures::stream::try_unfold(Some(self.after_seq), move |after| {
            let hot = Arc::clone(&hot);
            let tenant_id = tenant_id.clone();
            let schema = schema.clone();
            async move {
                let Some(after) = after else {
                    return Ok(None);
                };
                // Pages of one SQL batch: an event row may be ~82 KB, and a page is held
                // outside the memory pool until the plan has passed it on.
                let page = hot
                    .scan_events(&tenant_id, after, SQL_BATCH_ROWS)
                    .await
                    .map_err(|error| DataFusionError::External(Box::new(error)))?;
                let Some(last) = page.last().map(|stored| stored.seq) else {
                    return Ok(None);
                };
                let next = (page.len() == SQL_BATCH_ROWS).then_some(last);
                let mut columns = to_batch(&page)?.columns().to_vec();
                let hashes = FixedSizeBinaryArray::try_from_iter(
                    page.iter().map(|stored| stored.event_hash),
                )?;
                columns.push(Arc::new(hashes) as ArrayRef);
                Ok(Some((RecordBatch::try_new(schema, columns)?, next)))
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), pages))
    }
}
