//! The tables `POST /v1/query` offers beside `events`: `actors` (the tenant's directory),
//! `summary_actor_day` and `summary_tenant_month` (the summaries kept as events arrive). Each is
//! built for one query from the caller's tenant's rows only, so like `events` it holds nothing
//! of another tenant, whatever the SQL.

use std::any::Any;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use sealtrail_hot::{ActorDayFilter, HotStore};
use sealtrail_model::{is_day_bound, is_month_bound};

use crate::Result;

/// One table of string columns (`None` is SQL NULL).
fn table(texts: Vec<(&str, Vec<Option<String>>)>) -> Result<Arc<dyn TableProvider>> {
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (name, values) in texts {
        let nullable = values.iter().any(Option::is_none);
        let mut builder = StringBuilder::new();
        for value in values {
            builder.append_option(value);
        }
        fields.push(Field::new(name, DataType::Utf8, nullable));
        columns.push(Arc::new(builder.finish()));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(DataFusionError::from)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// `actors(actor_id, display_name, department, team, attributes)`: `attributes` is JSON text.
pub(crate) async fn actors(hot: &dyn HotStore, tenant_id: &str) -> Result<Arc<dyn TableProvider>> {
    let actors = hot.actors(tenant_id).await?;
    let column =
        |get: fn(&sealtrail_model::Actor) -> Option<String>| actors.iter().map(get).collect();
    table(vec![
        ("actor_id", column(|actor| Some(actor.actor_id.clone()))),
        ("display_name", column(|actor| actor.display_name.clone())),
        ("department", column(|actor| actor.department.clone())),
        ("team", column(|actor| actor.team.clone())),
        ("attributes", column(|actor| actor.attributes.clone())),
    ])
}

/// `summary_actor_day(date, actor_id, action, resource_type, events, sampled_out, failed,
/// events_deleted)`: one row per UTC day, actor, action and resource type; `events` stored,
/// `sampled_out` dropped by sampling, `failed` the stored ones whose outcome is `failure`,
/// `events_deleted` when retention deleted events of the day.
pub(crate) fn actor_days(hot: Arc<dyn HotStore>, tenant_id: &str) -> Arc<dyn TableProvider> {
    let text = |name| Field::new(name, DataType::Utf8, false);
    let number = |name| Field::new(name, DataType::Int64, false);
    Arc::new(SummaryTable {
        hot,
        tenant_id: tenant_id.to_owned(),
        kind: Summary::ActorDays,
        schema: Arc::new(Schema::new(vec![
            text("date"),
            text("actor_id"),
            text("action"),
            text("resource_type"),
            number("events"),
            number("sampled_out"),
            number("failed"),
            Field::new("events_deleted", DataType::Boolean, false),
        ])),
    })
}

/// `summary_tenant_month(year_month, total_events, sampled_out_events, failed_events,
/// unique_actors, events_deleted)`: one row per UTC month that holds events (the action breakdown is in
/// `summary_actor_day`).
pub(crate) fn tenant_months(hot: Arc<dyn HotStore>, tenant_id: &str) -> Arc<dyn TableProvider> {
    let number = |name| Field::new(name, DataType::Int64, false);
    Arc::new(SummaryTable {
        hot,
        tenant_id: tenant_id.to_owned(),
        kind: Summary::TenantMonths,
        schema: Arc::new(Schema::new(vec![
            Field::new("year_month", DataType::Utf8, false),
            number("total_events"),
            number("sampled_out_events"),
            number("failed_events"),
            number("unique_actors"),
            Field::new("events_deleted", DataType::Boolean, false),
        ])),
    })
}

#[derive(Debug, Clone, Copy)]
enum Summary {
    ActorDays,
    TenantMonths,
}

/// A summary table read from the store when the query runs, asking only for the rows its
/// filters can admit: a range of `date` (or `year_month`), one `actor_id`, one `action`. A
/// year of a large tenant's actor days is hundreds of thousands of rows; a quarter's deletes
/// are a few thousand. The filters are applied again above the scan (`Inexact`), so what the
/// store is asked for only needs to hold every row they admit.
#[derive(Debug)]
struct SummaryTable {
    hot: Arc<dyn HotStore>,
    tenant_id: String,
    kind: Summary,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for SummaryTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let conjuncts: Vec<&Expr> = filters.iter().flat_map(split_conjunction).collect();
        let table = match self.kind {
            Summary::ActorDays => {
                let days = TextBounds::of(&conjuncts, "date", is_day_bound);
                let actor = TextBounds::of(&conjuncts, "actor_id", |_| true).equal;
                let action = TextBounds::of(&conjuncts, "action", |_| true).equal;
                let rows = self
                    .hot
                    .actor_days(
                        &self.tenant_id,
                        ActorDayFilter {
                            actor_id: actor.as_deref(),
                            action: action.as_deref(),
                            from_day: days.low.as_deref(),
                            to_day: days.high.as_deref(),
                        },
                    )
                    .await
                    .map_err(external)?;
                let deleted: HashSet<String> = self
                    .hot
                    .deleted_days(&self.tenant_id, days.low.as_deref(), days.high.as_deref())
                    .await
                    .map_err(external)?
                    .into_iter()
                    .collect();
                actor_day_rows(&self.schema, &rows, &deleted)?
            }
            Summary::TenantMonths => {
                let months = TextBounds::of(&conjuncts, "year_month", is_month_bound);
                let (low, high) = (months.low.as_deref(), months.high.as_deref());
                let months = self
                    .hot
                    .tenant_months(&self.tenant_id, low, high, 0)
                    .await
                    .map_err(external)?;
                let deleted = self
                    .hot
                    .deleted_months(&self.tenant_id, low, high)
                    .await
                    .map_err(external)?;
                tenant_month_rows(&self.schema, &months, &deleted)?
            }
        };
        table.scan(state, projection, &[], limit).await
    }
}

fn external(error: sealtrail_hot::Error) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

fn actor_day_rows(
    schema: &SchemaRef,
    rows: &[(sealtrail_hot::ActorDayKey, sealtrail_hot::SummaryTally)],
    deleted_days: &HashSet<String>,
) -> datafusion::error::Result<MemTable> {
    let text = |get: fn(&sealtrail_hot::ActorDayKey) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(key, _)| get(key)),
        ))
    };
    let number = |get: fn(&sealtrail_hot::SummaryTally) -> u64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|(_, tally)| saturating_i64(get(tally))),
        ))
    };
    let columns = vec![
        text(|key| &key.day),
        text(|key| &key.actor_id),
        text(|key| &key.action),
        text(|key| &key.resource_type),
        number(|tally| tally.kept),
        number(|tally| tally.sampled_out),
        number(|tally| tally.failed),
        Arc::new(BooleanArray::from_iter(
            rows.iter()
                .map(|(key, _)| Some(deleted_days.contains(&key.day))),
        )),
    ];
    memory_table(schema, columns)
}

fn tenant_month_rows(
    schema: &SchemaRef,
    months: &[sealtrail_hot::TenantMonth],
    deleted_months: &BTreeSet<String>,
) -> datafusion::error::Result<MemTable> {
    let sum = |get: fn(&sealtrail_hot::SummaryTally) -> u64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(months.iter().map(|month| {
            saturating_i64(month.actions.values().map(get).sum())
        })))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            months.iter().map(|month| month.month.as_str()),
        )),
        sum(|tally| tally.kept),
        sum(|tally| tally.sampled_out),
        sum(|tally| tally.failed),
        Arc::new(Int64Array::from_iter_values(
            months
                .iter()
                .map(|month| saturating_i64(month.unique_actors)),
        )),
        Arc::new(BooleanArray::from_iter(
            months
                .iter()
                .map(|month| Some(deleted_months.contains(&month.month))),
        )),
    ];
    memory_table(schema, columns)
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn memory_table(schema: &SchemaRef, columns: Vec<ArrayRef>) -> datafusion::error::Result<MemTable> {
    let batch = RecordBatch::try_new(Arc::clone(schema), columns)?;
    MemTable::try_new(Arc::clone(schema), vec![vec![batch]])
}

/// What a query's conjuncts say of one text column: the tightest inclusive bounds and an exact
/// value, from comparisons with text literals that `valid` accepts (others are left to the
/// filter above the scan). Only well-formed days and months bound a range, so every backend's
/// text order agrees with the engine's on them.
#[derive(Debug, Default, PartialEq, Eq)]
struct TextBounds {
    low: Option<String>,
    high: Option<String>,
    equal: Option<String>,
}

impl TextBounds {
    fn of(conjuncts: &[&Expr], column: &str, valid: fn(&str) -> bool) -> Self {
        let mut bounds = TextBounds::default();
        for conjunct in conjuncts {
            match conjunct {
                Expr::BinaryExpr(binary) => {
                    let (value, op) = match (&*binary.left, &*binary.right) {
                        (Expr::Column(found), value) if found.name == column => (value, binary.op),
                        (value, Expr::Column(found)) if found.name == column => {
                            let Some(op) = binary.op.swap() else { continue };
                            (value, op)
                        }
                        _ => continue,
                    };
                    let Some(value) = text_literal(value).filter(|value| valid(value)) else {
                        continue;
                    };
                    match op {
                        Operator::Eq => {
                            bounds.equal = Some(value.to_owned());
                            bounds.raise(value);
                            bounds.lower(value);
                        }
                        Operator::Gt | Operator::GtEq => bounds.raise(value),
                        Operator::Lt | Operator::LtEq => bounds.lower(value),
                        _ => {}
                    }
                }
                Expr::Between(between) if !between.negated => {
                    if !matches!(&*between.expr, Expr::Column(found) if found.name == column) {
                        continue;
                    }
                    if let Some(low) = text_literal(&between.low).filter(|value| valid(value)) {
                        bounds.raise(low);
                    }
                    if let Some(high) = text_literal(&between.high).filter(|value| valid(value)) {
                        bounds.lower(high);
                    }
                }
                _ => {}
            }
        }
        bounds
    }

    fn raise(&mut self, low: &str) {
        if self.low.as_deref().is_none_or(|current| low > current) {
            self.low = Some(low.to_owned());
        }
    }

    fn lower(&mut self, high: &str) {
        if self.high.as_deref().is_none_or(|current| high < current) {
            self.high = Some(high.to_owned());
        }
    }
}

fn text_literal(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(text))
            | ScalarValue::Utf8View(Some(text))
            | ScalarValue::LargeUtf8(Some(text)),
            _,
        ) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::*;

    fn bounds(filters: &[Expr], column: &str) -> TextBounds {
        let conjuncts: Vec<&Expr> = filters.iter().flat_map(split_conjunction).collect();
        TextBounds::of(&conjuncts, column, is_day_bound)
    }

    #[test]
    fn the_tightest_day_range_is_read() {
        let filters = [
            col("date")
                .gt_eq(lit("2025-10-01"))
                .and(col("date").lt_eq(lit("2025-12-31"))),
            lit("2025-11-01").lt(col("date")),
            col("date").between(lit("2025-09-01"), lit("2025-12-15")),
        ];
        assert_eq!(
            bounds(&filters, "date"),
            TextBounds {
                low: Some("2025-11-01".into()),
                high: Some("2025-12-15".into()),
                equal: None,
            }
        );
    }

    #[test]
    fn what_is_not_a_day_or_not_a_plain_comparison_bounds_nothing() {
        let filters = [
            col("date").gt_eq(lit("2025-10")),
            col("date").not_eq(lit("2025-10-01")),
            col("date").like(lit("2025-%")),
            col("date")
                .gt_eq(lit("2025-10-01"))
                .or(col("actor_id").eq(lit("a"))),
            col("other").gt_eq(lit("2025-10-01")),
        ];
        assert_eq!(bounds(&filters, "date"), TextBounds::default());
    }

    #[test]
    fn an_equality_is_the_value_and_both_bounds() {
        let filters = [col("date").eq(lit("2025-10-02"))];
        let found = bounds(&filters, "date");
        assert_eq!(found.equal.as_deref(), Some("2025-10-02"));
        assert_eq!(found.low, found.high);
    }
}
