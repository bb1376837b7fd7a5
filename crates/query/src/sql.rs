//! `POST /v1/query`: read-only SQL over `events` and, beside it, the tenant's `actors`,
//! `summary_actor_day` and `summary_tenant_month` (`summary_tables.rs`).
//!
//! Tenant isolation is by construction, not by rewriting the caller's SQL: each query gets a
//! fresh DataFusion session whose catalog holds exactly these tables, `events` built from the
//! caller's tenant's archived files and hot rows only, the others from its own rows. Another tenant's data is not filtered
//! out, it is simply not reachable: there is no other table, no `information_schema`, no URL
//! tables (`SELECT * FROM 'path.parquet'`), and DDL (`CREATE EXTERNAL TABLE`), DML (`COPY`,
//! `INSERT`) and statements (`SET`) are refused before planning. `UNION`s and subqueries can
//! only ever reach `events` again.
//!
//! The table has the archived files' columns, then `event_hash` (the hot store's, or recomputed
//! from an archived row as every archive read does) and `tier` (`hot`, `warm` or `cold`): the
//! same values `GET /v1/events` returns for each event.
//!
//! Bounds, so that no query can take the service's memory or cores (every one in
//! `sealtrail_model::limits`):
//! - at most `QUERIES_CONCURRENT_MAX` queries and exports at once, on their own runtime at the
//!   lowest priority (`executor.rs`), each cancelled after [`SQL_TIMEOUT_MILLIS`];
//! - sorts, joins and aggregations share the engine's memory pool and never spill; the plan is
//!   capped at [`SQL_ROWS_MAX`] + 1 rows, so an `ORDER BY` keeps only its top rows and a cross
//!   join stops producing once the answer is full;
//! - batches of [`SQL_BATCH_ROWS`] rows, so the rows moving between operators, outside the
//!   pool, stay small;
//! - the answer is written row by row and cut, marked `truncated`, before it would exceed
//!   [`SQL_RESPONSE_BYTES_MAX`] bytes or [`SQL_ROWS_MAX`] rows.

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::FixedSizeBinaryBuilder;
use arrow_array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::json::writer::{LineDelimited, WriterBuilder};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::TableProvider;
use datafusion::datasource::{provider_as_source, ViewTable};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::{col, lit, SessionContext};
use futures::StreamExt;
use sealtrail_archive::parquet_file::{decode_batch, event_schema};
use sealtrail_model::limits::{
    SQL_BATCH_ROWS, SQL_RESPONSE_BYTES_MAX, SQL_ROWS_MAX, SQL_TIMEOUT_MILLIS,
};
use sealtrail_model::StorageTier;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::files::ArchivedFile;
use crate::hot_table::{hot_schema, HotPartition, EVENT_HASH_COLUMN};
use crate::{Error, QueryEngine, Result};

/// Rows encoded to JSON at a time while the answer is written: a few, so a batch of wide
/// rows never becomes one large buffer before the byte bound is checked.
const JSON_ROWS_PER_STEP: usize = 64;

/// Bytes of the answer around `columns` and `rows`: the other keys and the largest
/// `row_count`.
const ANSWER_FRAME_BYTES: usize = 128;

/// The table every tenant's SQL reads its events from.
const EVENTS_TABLE: &str = "events";
/// The per-month summary of the whole tenant: out of a narrow scope's reach.
const TENANT_MONTH_TABLE: &str = "summary_tenant_month";

/// A query ready to run: its text, the tables it names, the archived files `events` reads,
/// and the result-cache key of its answer over the data as it was when prepared.
#[derive(Debug)]
pub struct PreparedSql {
    tenant_id: String,
    /// The caller's scope: only these actors' rows (`None`: the whole tenant).
    actors: Option<Vec<String>>,
    sql: String,
    tables: BTreeSet<String>,
    files: Vec<ArchivedFile>,
    cache_key: String,
}

impl PreparedSql {
    /// The key its answer is cached under ([`crate::ResultCache`]).
    pub fn cache_key(&self) -> &str {
        &self.cache_key
    }
}

/// The names of the tables `sql` reads (not its CTEs); a statement that does not parse is
/// [`Error::InvalidSql`], as planning it would be.
fn referenced_tables(session: &SessionContext, sql: &str) -> Result<BTreeSet<String>> {
    let state = session.state();
    let dialect = state.config().options().sql_parser.dialect;
    let statement = state
        .sql_to_statement(sql, &dialect)
        .map_err(|error| Error::InvalidSql(error.to_string()))?;
    let references = state
        .resolve_table_references(&statement)
        .map_err(|error| Error::InvalidSql(error.to_string()))?;
    Ok(references
        .iter()
        .map(|reference| reference.table().to_owned())
        .collect())
}

/// The answer to a SQL query.
#[derive(Debug, Serialize)]
pub struct SqlResult {
    pub columns: Vec<SqlColumn>,
    /// One JSON object per row, column name to value.
    pub rows: Box<RawValue>,
    pub row_count: usize,
    /// True when the result had more than [`SQL_ROWS_MAX`] rows, or more than would fit in
    /// [`SQL_RESPONSE_BYTES_MAX`] bytes, and was cut there.
    pub truncated: bool,
    /// True when the answer depends only on the data (no `now()`, `random()` or other
    /// function that is not immutable), so the same data gives it again and it may be cached.
    #[serde(skip)]
    pub deterministic: bool,
}

/// A result column: its name and Arrow type.
#[derive(Debug, Serialize)]
pub struct SqlColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
}

impl QueryEngine {
    /// Runs read-only `sql` over the tenant's tables. [`Error::Busy`] when
    /// [`QUERIES_CONCURRENT_MAX`] queries and exports are running.
    pub async fn sql(&self, tenant_id: &str, sql: &str) -> Result<SqlResult> {
        let prepared = self.prepare_sql(tenant_id, None, sql).await?;
        self.run_prepared(&prepared).await
    }

    /// Runs a query [`QueryEngine::prepare_sql`] prepared.
    pub async fn run_prepared(&self, prepared: &PreparedSql) -> Result<SqlResult> {
        let _permit = self.executor.admit()?;
        let millis = SQL_TIMEOUT_MILLIS;
        tokio::time::timeout(Duration::from_millis(millis), self.run_sql(prepared))
            .await
            .unwrap_or(Err(Error::Timeout { millis }))
    }

    /// Parses `sql` for the tables it names, and reads what its answer depends on: every
    /// revision of the tenant (any commit may change what arbitrary SQL answers) and, if it
    /// reads `events`, the archived files it would scan. The result-cache key is made of them,
    /// read before the answer is computed; a query that names no `events` lists no files.
    ///
    /// `actors` narrows every table to those actors' rows (a `self` or `team_admin` caller):
    /// `events`, `actors` and `summary_actor_day` are views that filter on `actor_id` beneath
    /// the caller's SQL, and `summary_tenant_month`, which counts the whole tenant, is
    /// [`Error::OutOfScope`].
    pub async fn prepare_sql(
        &self,
        tenant_id: &str,
        actors: Option<&[String]>,
        sql: &str,
    ) -> Result<PreparedSql> {
        let tables = referenced_tables(&self.session(1), sql)?;
        if actors.is_some() && tables.contains(TENANT_MONTH_TABLE) {
            return Err(Error::OutOfScope(format!(
                "{TENANT_MONTH_TABLE} counts the whole tenant; this caller reads only its own \
                 scope (use summary_actor_day)"
            )));
        }
        let revisions = self.hot.revisions(tenant_id).await?;
        let files = if tables.contains(EVENTS_TABLE) {
            self.archived_files(tenant_id).await?
        } else {
            Vec::new()
        };
        let mut key = crate::KeyBuilder::new("sql", tenant_id).part(sql);
        // The scope is part of the key: a narrow caller never gets a wider caller's answer.
        key = match actors {
            None => key.part("scope:tenant"),
            Some(actors) => actors
                .iter()
                .fold(key.part("scope:actors"), |key, actor| key.part(actor)),
        };
        for file in &files {
            key = key.part(&file.path).part(&file.last_seq.to_string());
        }
        let cache_key = key
            .revisions(
                revisions
                    .0
                    .iter()
                    .map(|(scope, revision)| (scope.as_str(), *revision)),
            )
            .build();
        Ok(PreparedSql {
            tenant_id: tenant_id.to_owned(),
            actors: actors.map(<[String]>::to_vec),
            sql: sql.to_owned(),
            tables,
            files,
            cache_key,
        })
    }

    /// Plans on the caller's runtime (reading manifests, cheap), then executes and writes the
    /// answer on the query runtime.
    async fn run_sql(&self, prepared: &PreparedSql) -> Result<SqlResult> {
        let (tenant_id, sql) = (prepared.tenant_id.as_str(), prepared.sql.as_str());
        let session = self.session(1);
        session
            .state_ref()
            .write()
            .config_mut()
            .options_mut()
            .execution
            .batch_size = SQL_BATCH_ROWS;
        // Only the tables the statement names are built: `events` costs a manifest listing,
        // `actors` a read of the directory.
        let wants = |table: &str| prepared.tables.contains(table);
        let actors = prepared.actors.as_deref();
        if wants(EVENTS_TABLE) {
            session.register_table(
                EVENTS_TABLE,
                narrowed(self.events_table(tenant_id, &prepared.files).await?, actors)?,
            )?;
        }
        let hot = &*self.hot;
        if wants("actors") {
            session.register_table(
                "actors",
                narrowed(crate::summary_tables::actors(hot, tenant_id).await?, actors)?,
            )?;
        }
        if wants("summary_actor_day") {
            session.register_table(
                "summary_actor_day",
                narrowed(
                    crate::summary_tables::actor_days(Arc::clone(&self.hot), tenant_id),
                    actors,
                )?,
            )?;
        }
        if wants(TENANT_MONTH_TABLE) && actors.is_none() {
            session.register_table(
                TENANT_MONTH_TABLE,
                crate::summary_tables::tenant_months(Arc::clone(&self.hot), tenant_id),
            )?;
        }
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = session
            .sql_with_options(sql, options)
            .await
            .map_err(|error| Error::InvalidSql(error.to_string()))?;
        let deterministic = is_deterministic(frame.logical_plan())?;
        let columns: Vec<SqlColumn> = frame
            .schema()
            .fields()
            .iter()
            .map(|field| SqlColumn {
                name: field.name().clone(),
                data_type: field.data_type().to_string(),
            })
            .collect();
        // One row more than an answer holds tells that it was cut; none beyond it is made.
        let plan = frame
            .limit(0, Some(SQL_ROWS_MAX + 1))
            .map_err(execution_error)?
            .create_physical_plan()
            .await
            .map_err(execution_error)?;
        let task = session.task_ctx();
        let columns_bytes = serde_json::to_vec(&columns)
            .map_err(|error| DataFusionError::External(Box::new(error)))?
            .len();
        let rows_bytes_max =
            SQL_RESPONSE_BYTES_MAX.saturating_sub(columns_bytes + ANSWER_FRAME_BYTES);
        let rows = self
            .executor
            .run(async move {
                let stream = execute_stream(plan, task).map_err(execution_error)?;
                write_rows(stream, rows_bytes_max).await
            })
            .await?;
        Ok(SqlResult {
            columns,
            rows: rows.json,
            row_count: rows.count,
            truncated: rows.truncated,
            deterministic,
        })
    }

    /// The tenant's `events`: its archived `files`, then its hot rows above them, each with its
    /// `event_hash` and `tier`.
    async fn events_table(
        &self,
        tenant_id: &str,
        files: &[ArchivedFile],
    ) -> Result<Arc<dyn TableProvider>> {
        let archived_through = files.last().map_or(0, |file| file.last_seq);
        let file_refs: Vec<&ArchivedFile> = files.iter().collect();
        let hot = StreamingTable::try_new(
            hot_schema(),
            vec![Arc::new(HotPartition::new(
                Arc::clone(&self.hot),
                tenant_id,
                archived_through,
            ))],
        )?;
        let mut hot_columns = event_columns();
        hot_columns.push(col(EVENT_HASH_COLUMN));
        hot_columns.push(tier_column(StorageTier::Hot));
        let mut plan = LogicalPlanBuilder::scan("hot", provider_as_source(Arc::new(hot)), None)?
            .project(hot_columns)?;
        let event_hash = ScalarUDF::new_from_impl(EventHash::new());
        for (index, (tier, table)) in self
            .tier_tables_by_kind(&file_refs)
            .await?
            .into_iter()
            .enumerate()
        {
            let mut columns = event_columns();
            columns.push(event_hash.call(event_columns()).alias(EVENT_HASH_COLUMN));
            columns.push(tier_column(tier));
            let scan = LogicalPlanBuilder::scan(
                format!("archive_{index}"),
                provider_as_source(table),
                None,
            )?
            .project(columns)?
            .build()?;
            plan = plan.union(scan)?;
        }
        let plan = plan.build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

/// `table` seen through a view that keeps only the rows of `actors` (by its `actor_id`
/// column); `table` itself when there is no scope. The caller's SQL plans over the view, so no
/// join, subquery or `UNION` reaches a row beneath it.
fn narrowed(
    table: Arc<dyn TableProvider>,
    actors: Option<&[String]>,
) -> Result<Arc<dyn TableProvider>> {
    let Some(actors) = actors else {
        return Ok(table);
    };
    let keep = if actors.is_empty() {
        lit(false)
    } else {
        col("actor_id").in_list(actors.iter().map(lit).collect(), false)
    };
    let plan = LogicalPlanBuilder::scan("scoped", provider_as_source(table), None)?
        .filter(keep)?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// The columns of the event schema, in its order.
fn event_columns() -> Vec<Expr> {
    event_schema()
        .fields()
        .iter()
        .map(|field| col(field.name()))
        .collect()
}

fn tier_column(tier: StorageTier) -> Expr {
    lit(tier.as_str()).alias("tier")
}

/// The rows of an answer as a JSON array.
struct Rows {
    json: Box<RawValue>,
    count: usize,
    truncated: bool,
}

/// Writes the stream's rows as a JSON array of at most `bytes_max` bytes and
/// [`SQL_ROWS_MAX`] rows; a row that would cross either bound is left out, with every row
/// after it, and the answer marked truncated. Stops reading (and so stops the plan) there.
async fn write_rows(mut stream: SendableRecordBatchStream, bytes_max: usize) -> Result<Rows> {
    let mut json = Vec::with_capacity(4_096);
    json.push(b'[');
    let mut count = 0;
    let mut truncated = false;
    let mut lines = Vec::new();
    'batches: while let Some(batch) = stream.next().await {
        let batch = batch.map_err(execution_error)?;
        let mut offset = 0;
        while offset < batch.num_rows() {
            let step = JSON_ROWS_PER_STEP.min(batch.num_rows() - offset);
            lines.clear();
            let mut writer = WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, LineDelimited>(&mut lines);
            writer
                .write(&batch.slice(offset, step))
                .map_err(DataFusionError::from)?;
            writer.finish().map_err(DataFusionError::from)?;
            drop(writer);
            offset += step;
            for line in lines.split(|byte| *byte == b'\n') {
                if line.is_empty() {
                    continue;
                }
                // The row, its separating comma and the closing bracket must fit.
                if count == SQL_ROWS_MAX || json.len() + line.len() + 2 > bytes_max {
                    truncated = true;
                    break 'batches;
                }
                if count > 0 {
                    json.push(b',');
                }
                json.extend_from_slice(line);
                count += 1;
            }
        }
    }
    drop(stream);
    json.push(b']');
    let text =
        String::from_utf8(json).map_err(|error| DataFusionError::External(Box::new(error)))?;
    let json =
        RawValue::from_string(text).map_err(|error| DataFusionError::External(Box::new(error)))?;
    Ok(Rows {
        json,
        count,
        truncated,
    })
}

/// `event_hash` of archived rows: Parquet files do not store it (see
/// `sealtrail_archive::parquet_file`), so it is recomputed from the row, as every archive
/// read does. Takes every column of the event schema, in order. Not registered by name:
/// only the `events` view calls it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct EventHash {
    signature: Signature,
}

impl EventHash {
    fn new() -> Self {
        EventHash {
            signature: Signature::any(event_schema().fields().len(), Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for EventHash {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "sealtrail_event_hash"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::FixedSizeBinary(32))
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let schema = event_schema();
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let columns = arrays
            .iter()
            .zip(schema.fields())
            .map(|(array, field)| cast(array, field.data_type()))
            .collect::<Result<Vec<_>, _>>()?;
        let batch = RecordBatch::try_new_with_options(
            schema,
            columns,
            &RecordBatchOptions::new().with_row_count(Some(args.number_rows)),
        )?;
        let mut events = Vec::with_capacity(args.number_rows);
        decode_batch(&batch, &mut events)
            .map_err(|error| DataFusionError::External(Box::new(error)))?;
        let mut hashes = FixedSizeBinaryBuilder::with_capacity(events.len(), 32);
        for stored in &events {
            hashes.append_value(stored.event_hash)?;
        }
        Ok(ColumnarValue::Array(Arc::new(hashes.finish())))
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

/// Whether every function `plan` calls, in every subquery, is immutable: the same rows give the
/// same answer. `now()` is stable, not immutable (one value per query, another the next).
fn is_deterministic(plan: &datafusion::logical_expr::LogicalPlan) -> Result<bool> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut deterministic = true;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|expr| {
                if let Expr::ScalarFunction(call) = expr {
                    if call.func.signature().volatility != Volatility::Immutable {
                        deterministic = false;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(deterministic)
}
