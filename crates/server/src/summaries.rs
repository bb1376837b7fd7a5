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
use sealtrail_hot::{
    assemble_tenant_days, rank_top, ActorDayFilter, ActorDayKey, SummaryTally, TenantDay,
};
use sealtrail_model::limits::{SUMMARY_ROWS_MAX, TOP_ACTORS, TOP_RESOURCES};
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
    let mut actions: BTreeMap<&str, SummaryTally> = BTreeMap::new();
    let mut resource_types: BTreeMap<&str, u64> = BTreeMap::new();
    for (row, tally) in rows {
        actions.entry(&row.action).or_default().add(tally);
        if tally.kept > 0 {
            *resource_types.entry(&row.resource_type).or_default() += tally.kept;
        }
    }
    let mut day = day_totals(&actions);
    day.insert("actor_id".into(), json!(key.actor_id));
    day.insert("date".into(), json!(key.day));
    day.insert("resource_type_counts".into(), json!(resource_types));
    day.insert("events_deleted".into(), json!(events_deleted));
    Value::Object(day)
}

/// A day's (or a month's) totals from its tallies per action: `total_events`,
/// `sampled_out_events`, `failed_events`, and per action the stored events (`action_counts`)
/// and the failed ones (`failure_counts`), each naming only actions with a count.
fn day_totals<A: AsRef<str>>(actions: &BTreeMap<A, SummaryTally>) -> Map<String, Value> {
    let per_action = |count: fn(&SummaryTally) -> u64| -> Map<String, Value> {
        actions
            .iter()
            .filter(|(_, tally)| count(tally) > 0)
            .map(|(action, tally)| (action.as_ref().to_owned(), json!(count(tally))))
            .collect()
    };
    let sum = |count: fn(&SummaryTally) -> u64| actions.values().map(count).sum::<u64>();
    Map::from_iter([
        ("total_events".into(), json!(sum(|tally| tally.kept))),
        (
            "sampled_out_events".into(),
            json!(sum(|tally| tally.sampled_out)),
        ),
        ("failed_events".into(), json!(sum(|tally| tally.failed))),
        (
            "action_counts".into(),
            Value::Object(per_action(|tally| tally.kept)),
        ),
        (
            "failure_counts".into(),
            Value::Object(per_action(|tally| tally.failed)),
        ),
    ])
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
            // The seed's month shape names the per-action counts `*_breakdown`.
            let mut totals = day_totals(&month.actions);
            let breakdown = totals.remove("action_counts").expect("set by day_totals");
            let failures = totals.remove("failure_counts").expect("set by day_totals");
            totals.insert("action_breakdown".into(), breakdown);
            totals.insert("failure_breakdown".into(), failures);
            totals.insert("year_month".into(), json!(month.month));
            totals.insert("unique_actors".into(), json!(month.unique_actors));
            totals.insert("events_deleted".into(), json!(deleted.contains(&month.month)));
            let top: Vec<Value> = month.top_resources.iter().map(|(resource_type, resource_id, events)| json!({
                "resource_type": resource_type, "resource_id": resource_id, "events": events,
            })).collect();
            totals.insert("top_resources".into(), json!(top));
            Value::Object(totals)
        })
        .collect();
    reader.record(&state, json!(query), Some(summaries.len()))?;
    Ok(cached(
        &state,
        key,
        &json!({"tenant_id": tenant_id, "summaries": summaries}),
    ))
}

/// `GET /v1/summaries/tenant-day?from=&to=`: per UTC day, the stored events in all, by action
/// and failed, the events dropped, and the period's most active actors: a chart per day reads
/// a row per day and action instead of a row per actor. A `self` or `team_admin` caller gets
/// the days of its own scope, summed from its actors' rows.
pub(crate) async fn tenant_days(
    State(state): State<Arc<AppState>>,
    request: ReadRequest,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let reader = request.reader(&state, query.get("tenant_id")).await?;
    let tenant_id = reader.tenant_id.clone();
    let scoped = reader.actors().is_some();
    let (from, to) = params(&query, &[], is_day_bound, "a day, YYYY-MM-DD")?;
    let key = cache_key(
        &state,
        KeyBuilder::new("tenant-day", &tenant_id)
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
    let (days, top_actors) = match scoped {
        // Two reads of the same rows on two connections at once: each is a scan of the period.
        false => tokio::try_join!(
            state.store.tenant_days(&tenant_id, from, to),
            state.store.top_actors(&tenant_id, from, to, TOP_ACTORS),
        )?,
        true => {
            let filter = ActorDayFilter {
                from_day: from,
                to_day: to,
                ..ActorDayFilter::default()
            };
            let rows = state.store.actor_days(&tenant_id, filter).await?;
            scoped_days(rows.iter().filter(|(row, _)| reader.admits(&row.actor_id)))
        }
    };
    let deleted: HashSet<String> = state
        .store
        .deleted_days(&tenant_id, from, to)
        .await?
        .into_iter()
        .collect();
    let truncated = days.len() > SUMMARY_ROWS_MAX;
    let summaries: Vec<Value> = days
        .iter()
        .take(SUMMARY_ROWS_MAX)
        .map(|day| {
            let mut totals = day_totals(&day.actions);
            totals.insert("date".into(), json!(day.day));
            totals.insert("events_deleted".into(), json!(deleted.contains(&day.day)));
            Value::Object(totals)
        })
        .collect();
    reader.record(&state, json!(query), Some(summaries.len()))?;
    let answer = json!({
        "tenant_id": tenant_id,
        "summaries": summaries,
        "top_actors": top_actors.iter().map(|(actor_id, events)| json!({"actor_id": actor_id, "events": events})).collect::<Vec<_>>(),
        "truncated": truncated,
    });
    Ok(match scoped {
        true => json_answer(Bytes::from(answer.to_string())),
        false => cached(&state, key, &answer),
    })
}

/// The days and top actors of a scope's actor-day rows (in day order), as the store sums them
/// for a whole tenant.
fn scoped_days<'a>(
    rows: impl Iterator<Item = &'a (ActorDayKey, SummaryTally)>,
) -> (Vec<TenantDay>, Vec<(String, u64)>) {
    let mut per_day: Vec<(String, String, SummaryTally)> = Vec::new();
    let mut per_actor: HashMap<String, u64> = HashMap::new();
    for (row, tally) in rows {
        per_day.push((row.day.clone(), row.action.clone(), *tally));
        *per_actor.entry(row.actor_id.clone()).or_default() += tally.kept;
    }
    (
        assemble_tenant_days(per_day),
        rank_top(per_actor, TOP_ACTORS),
    )
}
