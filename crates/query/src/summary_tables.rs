//! The tables `POST /v1/query` offers beside `events`: `actors` (the tenant's directory),
//! `summary_actor_day` and `summary_tenant_month` (the summaries kept as events arrive). Each is
//! built for one query from the caller's tenant's rows only, so like `events` it holds nothing
//! of another tenant, whatever the SQL.

use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use sealtrail_hot::HotStore;

use crate::Result;

/// One table from string and integer columns (`None` is SQL NULL).
fn table(
    texts: Vec<(&str, Vec<Option<String>>)>,
    numbers: Vec<(&str, Vec<u64>)>,
) -> Result<Arc<dyn TableProvider>> {
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
    for (name, values) in numbers {
        let mut builder = Int64Builder::new();
        for value in values {
            builder.append_value(i64::try_from(value).unwrap_or(i64::MAX));
        }
        fields.push(Field::new(name, DataType::Int64, false));
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
    table(
        vec![
            ("actor_id", column(|actor| Some(actor.actor_id.clone()))),
            ("display_name", column(|actor| actor.display_name.clone())),
            ("department", column(|actor| actor.department.clone())),
            ("team", column(|actor| actor.team.clone())),
            ("attributes", column(|actor| actor.attributes.clone())),
        ],
        Vec::new(),
    )
}

/// `summary_actor_day(date, actor_id, action, resource_type, events, sampled_out)`: one row per
/// UTC day, actor, action and resource type; `events` stored, `sampled_out` dropped by sampling.
pub(crate) async fn actor_days(
    hot: &dyn HotStore,
    tenant_id: &str,
) -> Result<Arc<dyn TableProvider>> {
    let rows = hot.actor_days(tenant_id, None, None, None).await?;
    let text = |get: fn(&sealtrail_hot::ActorDayKey) -> &String| {
        rows.iter().map(|(key, _)| Some(get(key).clone())).collect()
    };
    table(
        vec![
            ("date", text(|key| &key.day)),
            ("actor_id", text(|key| &key.actor_id)),
            ("action", text(|key| &key.action)),
            ("resource_type", text(|key| &key.resource_type)),
        ],
        vec![
            ("events", rows.iter().map(|(_, tally)| tally.kept).collect()),
            (
                "sampled_out",
                rows.iter().map(|(_, tally)| tally.sampled_out).collect(),
            ),
        ],
    )
}

/// `summary_tenant_month(year_month, total_events, sampled_out_events, unique_actors)`: one row
/// per UTC month that holds events (the action breakdown is in `summary_actor_day`).
pub(crate) async fn tenant_months(
    hot: &dyn HotStore,
    tenant_id: &str,
) -> Result<Arc<dyn TableProvider>> {
    let months = hot.tenant_months(tenant_id, None, None, 0).await?;
    table(
        vec![(
            "year_month",
            months
                .iter()
                .map(|month| Some(month.month.clone()))
                .collect(),
        )],
        vec![
            (
                "total_events",
                months
                    .iter()
                    .map(|month| month.actions.values().map(|tally| tally.kept).sum())
                    .collect(),
            ),
            (
                "sampled_out_events",
                months
                    .iter()
                    .map(|month| month.actions.values().map(|tally| tally.sampled_out).sum())
                    .collect(),
            ),
            (
                "unique_actors",
                months.iter().map(|month| month.unique_actors).collect(),
            ),
        ],
    )
}
