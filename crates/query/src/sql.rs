//! `POST /v1/query`: read-only SQL over one table, `events`.
//!
//! Tenant isolation is by construction, not by rewriting the caller's SQL: each query gets a
//! fresh DataFusion session whose catalog holds exactly one table, `events`, built from the
//! caller's tenant's archived files and hot rows only. Another tenant's data is not filtered
//! out, it is simply not reachable: there is no other table, no `information_schema`, no URL
//! tables (`SELECT * FROM 'path.parquet'`), and DDL (`CREATE EXTERNAL TABLE`), DML (`COPY`,
//! `INSERT`) and statements (`SET`) are refused before planning. `UNION`s and subqueries can
//! only ever reach `events` again.
//!
//! Each query runs under [`SQL_TIMEOUT_MILLIS`], returns at most [`SQL_ROWS_MAX`] rows (cut
//! and marked `truncated`), and shares the engine's memory pool, so no query can take the
//! service's memory.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::json::writer::{JsonArray, WriterBuilder};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::TableProvider;
use datafusion::datasource::{provider_as_source, ViewTable};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlanBuilder;
use futures::StreamExt;
use sealtrail_archive::parquet_file::event_schema;
use sealtrail_model::limits::{SQL_ROWS_MAX, SQL_TIMEOUT_MILLIS};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::files::ArchivedFile;
use crate::hot_table::HotPartition;
use crate::page::num_partitions;
use crate::{Error, QueryEngine, Result};

/// The answer to a SQL query.
#[derive(Debug, Serialize)]
pub struct SqlResult {
    pub columns: Vec<SqlColumn>,
    /// One JSON object per row, column name to value.
    pub rows: Box<RawValue>,
    pub row_count: usize,
    /// True when the result had more than [`SQL_ROWS_MAX`] rows and was cut there.
    pub truncated: bool,
}

/// A result column: its name and Arrow type.
#[derive(Debug, Serialize)]
pub struct SqlColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
}

impl QueryEngine {
    /// Runs read-only `sql` over the tenant's `events` table.
    pub async fn sql(&self, tenant_id: &str, sql: &str) -> Result<SqlResult> {
        let millis = SQL_TIMEOUT_MILLIS;
        tokio::time::timeout(Duration::from_millis(millis), self.run_sql(tenant_id, sql))
            .await
            .unwrap_or(Err(Error::Timeout { millis }))
    }

    async fn run_sql(&self, tenant_id: &str, sql: &str) -> Result<SqlResult> {
        let session = self.session(num_partitions());
        session.register_table("events", self.events_table(tenant_id).await?)?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = session
            .sql_with_options(sql, options)
            .await
            .map_err(|error| Error::InvalidSql(error.to_string()))?;
        let columns = frame
            .schema()
            .fields()
            .iter()
            .map(|field| SqlColumn {
                name: field.name().clone(),
                data_type: field.data_type().to_string(),
            })
            .collect();
        let mut stream = frame.execute_stream().await.map_err(execution_error)?;
        let mut batches = Vec::new();
        let mut row_count = 0;
        let mut truncated = false;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(execution_error)?;
            let room = SQL_ROWS_MAX - row_count;
            if batch.num_rows() > room {
                batches.push(batch.slice(0, room));
                row_count = SQL_ROWS_MAX;
                truncated = true;
                break;
            }
            row_count += batch.num_rows();
            batches.push(batch);
        }
        drop(stream);
        let mut json = Vec::new();
        {
            let mut writer = WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, JsonArray>(&mut json);
            for batch in &batches {
                writer.write(batch).map_err(DataFusionError::from)?;
            }
            writer.finish().map_err(DataFusionError::from)?;
        }
        if json.is_empty() {
            json = b"[]".to_vec();
        }
        let rows = RawValue::from_string(String::from_utf8_lossy(&json).into_owned())
            .map_err(|error| DataFusionError::External(Box::new(error)))?;
        Ok(SqlResult {
            columns,
            rows,
            row_count,
            truncated,
        })
    }

    /// The tenant's `events`: its archived files, then its hot rows above them.
    async fn events_table(&self, tenant_id: &str) -> Result<Arc<dyn TableProvider>> {
        let files = self.archived_files(tenant_id).await?;
        let archived_through = files.last().map_or(0, |file| file.last_seq);
        let file_refs: Vec<&ArchivedFile> = files.iter().collect();
        let hot = StreamingTable::try_new(
            event_schema(),
            vec![Arc::new(HotPartition::new(
                Arc::clone(&self.hot),
                tenant_id,
                archived_through,
            ))],
        )?;
        let mut plan = LogicalPlanBuilder::scan("hot", provider_as_source(Arc::new(hot)), None)?;
        for (index, table) in self.tier_tables(&file_refs).await?.into_iter().enumerate() {
            let scan = LogicalPlanBuilder::scan(
                format!("archive_{index}"),
                provider_as_source(table),
                None,
            )?
            .build()?;
            plan = plan.union(scan)?;
        }
        let plan = plan.build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

/// Errors while running: the caller's query at fault (a cast, an overflow, the memory bound)
/// is a client error; storage failures are the service's.
fn execution_error(error: DataFusionError) -> Error {
    match error.find_root() {
        DataFusionError::ObjectStore(_)
        | DataFusionError::IoError(_)
        | DataFusionError::ParquetError(_)
        | DataFusionError::External(_) => Error::Engine(error),
        _ => Error::InvalidSql(error.to_string()),
    }
}
