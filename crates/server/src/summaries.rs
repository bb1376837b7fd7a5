//! `GET /v1/summaries/actor-day` and `GET /v1/summaries/tenant-month`: the summaries the group
//! commit keeps as events arrive (`sealtrail_hot::SummaryStore`), shaped as the practice's
//! `audit_summary_by_user_day` and `audit_summary_by_tenant_month`. Answered from the summary
//! tables, never from a scan of events, so a year costs what a year of summary rows costs.
//! Summaries outlive the events they count: a day or month whose events retention deleted is
//! still counted, with `"events_deleted": true`.
//! Answers are kept in the query result cache under the revisions of the months they cover, so
//! a repeated read of months nothing has changed since is answered without reading them again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use sealtrail_hot::{ActorDayFilter, ActorDayKey, SummaryTally};
use sealtrail_model::limits::{SUMMARY_ROWS_MAX, TOP_RESOURCES};
use sealtrail_model::{is_day_bound, is_month_bound};
use sealtrail_query::KeyBuilder;
use serde_json::{json, Map, Value};

use crate::access::ReadRequest;
use crate::problem::ApiError;
use crate::query::json_answer;
use crate::AppState;

/// Reads the query: `tenant_id` (platform admin), the range bounds (checked by `valid`), and
/// the named extras; anything else is a 400 naming it.
fn params<'a>(
    params: &'a HashMap<String, String>,
    extras: &[&str],
    valid: fn(&str) -> bool,
    shape: &str,
) -> Result<(Option<&'a str>, Option<&'a str>), ApiError> {
    for (name, value) in params {
        match name.as_str() {
            "from" | "to" if !valid(value) => {
                return Err(ApiError::invalid_field(name, format!("must be {shape}")))
            }
            "from" | "to" | "tenant_id" => {}
            other if extras.contains(&other) => {}
            other => return Err(ApiError::invalid_field(other, "unknown query parameter")),
        }
    }
    Ok((
        params.get("from").map(String::as_str),
        params.get("to").map(String::as_str),
    ))
}

/// One actor's day, from its rows (one per action and resource type). `events_deleted`: retention
/// deleted events of that day (the summary still counts them).
fn actor_day(
    key: &ActorDayKey,
    rows: &[(ActorDayKey, SummaryTally)],
    events_deleted: bool,
) -> Value {
    let mut actions: BTreeMap<&str, u64> = BTreeMap::new();
    let mut resource_types: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut total, mut sampled_out) = (0, 0);
    for (row, tally) in rows {
        total += tally.kept;
        sampled_out += tally.sampled_out;
        if tally.kept > 0 {
            *actions.entry(&row.action).or_default() += tally.kept;
            *resource_types.entry(&row.resource_type).or_default() += tally.kept;
        }
    }
    json!({
        "actor_id": key.actor_id,
        "date": key.day,
        "total_events": total,
        "sampled_out_events": sampled_out,
        "action_counts": actions,
        "resource_type_counts": resource_types,
        "events_deleted": events_deleted,
    })
}

/// `GET /v1/summaries/actor-day?actor_id=&from=&to=`: per actor per day, stored events in all
/// and by action and by resource type, and apart the events the capture policy dropped.
pub(crate) async fn actor_days(
    State(state): State<Arc<AppState>>,
    request: ReadRequest,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let reader = request.reader(&state, query.get("tenant_id")).await?;
    let tenant_id = reader.tenant_id.clone();
    // A narrow caller's answer is its own: computed for it, never cached for another.
    let scoped = reader.actors().is_some();
    let (from, to) = params(&query, &["actor_id"], is_day_bound, "a day, YYYY-MM-DD")?;
    let actor_id = query.get("actor_id").map(String::as_str);
    let key = cache_key(
        &state,
        KeyBuilder::new("actor-day", &tenant_id)
            .option(actor_id)
            .option(from)
            .option(to),
        &tenant_id,
        from.map(|day| &day[..7]),
        to.map(|day| &day[..7]),
    )
    .await?;
    if let Some(answer) = state.query.cache().get(&key).filter(|_| !scoped) {
        reader.record(&state, json!(query), summary_count(&answer))?;
        return Ok(json_answer(answer));
    }
    let mut rows = state
        .store
        .actor_days(
            &tenant_id,
            ActorDayFilter {
                actor_id,
                action: None,
                from_day: from,
                to_day: to,
            },
        )
        .await?;
    rows.retain(|(row, _)| reader.admits(&row.actor_id));
    let deleted: HashSet<String> = state
        .store
        .deleted_days(&tenant_id, from, to)
        .await?
        .into_iter()
        .collect();
    let mut summaries = Vec::new();
    let mut truncated = false;
    let mut start = 0;
    while start < rows.len() {
        let key = &rows[start].0;
        let end = start
            + rows[start..]
                .iter()
                .take_while(|(row, _)| row.day == key.day && row.actor_id == key.actor_id)
                .count();
        if summaries.len() == SUMMARY_ROWS_MAX {
            truncated = true;
            break;
        }
        summaries.push(actor_day(
            key,
            &rows[start..end],
            deleted.contains(&key.day),
        ));
        start = end;
    }
    reader.record(&state, json!(query), Some(summaries.len()))?;
    let answer = json!({
        "tenant_id": tenant_id,
        "summaries": summaries,
        "truncated": truncated,
    });
    Ok(match scoped {
        true => json_answer(Bytes::from(answer.to_string())),
        false => cached(&state, key, &answer),
    })
}

/// How many summaries a cached answer holds.
fn summary_count(answer: &[u8]) -> Option<usize> {
    #[derive(serde::Deserialize)]
    struct Summaries {
        summaries: Vec<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Summaries>(answer)
        .ok()
        .map(|answer| answer.summaries.len())
}

/// The result-cache key of a summary read of the months `from_month..=to_month`: the question,
/// and the revisions of those months (a commit to another month leaves the answer as it is).
/// Read before the answer is computed.
async fn cache_key(
    state: &AppState,
    question: KeyBuilder,
    tenant_id: &str,
    from_month: Option<&str>,
    to_month: Option<&str>,
) -> Result<String, ApiError> {
    let revisions = state.store.revisions(tenant_id).await?;
    Ok(question
        .revisions(revisions.months(from_month, to_month))
        .build())
}

/// Serializes `answer`, keeps it in the result cache under `key`, and answers it.
fn cached(state: &AppState, key: String, answer: &Value) -> Response {
    let body = Bytes::from(answer.to_string());
    state.query.cache().put(key, body.clone());
    json_answer(body)
}

/// `GET /v1/summaries/tenant-month?from=&to=`: per month, stored events in all and by action,
/// the events dropped, distinct actors, and the resources with the most stored events.
pub(crate) async fn tenant_months(
    State(state): State<Arc<AppState>>,
    request: ReadRequest,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let reader = request.whole_tenant(&state, query.get("tenant_id")).await?;
    let tenant_id = reader.tenant_id.clone();
    let (from, to) = params(&query, &[], is_month_bound, "a month, YYYY-MM")?;
    let key = cache_key(
        &state,
        KeyBuilder::new("tenant-month", &tenant_id)
            .option(from)
            .option(to),
        &tenant_id,
        from,
        to,
    )
    .await?;
    if let Some(answer) = state.query.cache().get(&key) {
        reader.record(&state, json!(query), summary_count(&answer))?;
        return Ok(json_answer(answer));
    }
    let months = state
        .store
        .tenant_months(&tenant_id, from, to, TOP_RESOURCES)
        .await?;
    let deleted = state.store.deleted_months(&tenant_id, from, to).await?;
    let summaries: Vec<Value> = months
        .iter()
        .map(|month| {
            let breakdown: Map<String, Value> = month
                .actions
                .iter()
                .filter(|(_, tally)| tally.kept > 0)
                .map(|(action, tally)| (action.clone(), json!(tally.kept)))
                .collect();
            json!({
                "year_month": month.month,
                "total_events": month.actions.values().map(|tally| tally.kept).sum::<u64>(),
                "sampled_out_events": month.actions.values().map(|tally| tally.sampled_out).sum::<u64>(),
                "unique_actors": month.unique_actors,
                "action_breakdown": breakdown,
                "events_deleted": deleted.contains(&month.month),
                "top_resources": month.top_resources.iter().map(|(resource_type, resource_id, events)| json!({
                    "resource_type": resource_type, "resource_id": resource_id, "events": events,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    reader.record(&state, json!(query), Some(summaries.len()))?;
    Ok(cached(
        &state,
        key,
        &json!({"tenant_id": tenant_id, "summaries": summaries}),
    ))
}
