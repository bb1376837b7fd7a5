//! Alert rules at the edge: `/v1/tenants/{t}/alert-rules`, and the engine task that judges
//! every committed event against its tenant's rules and appends each alert to the tenant's own
//! log (`alert.triggered`, chained and provable like any event).
//!
//! The rules and their windows are pure (`sealtrail_realtime`). The engine is a feed consumer
//! (`alerts`): it reads each tenant's log in `seq` order from its durable cursor, appends the
//! alerts a batch raised (synchronously; each alert's `event_id` derives from its rule, group
//! and trigger, so a repeat after a crash is the same stored event), then saves its cursor. At
//! start it rebuilds a tenant's windows from the events within its rules' reach before the
//! cursor ([`Mode::Replay`]), so a burst that spans a restart is still caught, once.
//!
//! Alerts see every event that is stored; events the capture policy sampled out were never
//! stored and are never seen (docs/REALTIME.md).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use sealtrail_hot::{ActorDayFilter, EventQuery, Order};
use sealtrail_model::limits::{ALERT_REBUILD_EVENTS_MAX, BATCH_EVENTS_MAX, FEED_BATCH_EVENTS_MAX};
use sealtrail_model::{format_timestamp, StoredEvent};
use sealtrail_realtime::rules::{check_rule_count, default_rules, rules_from_json, AlertRule};
use sealtrail_realtime::window::{Mode, TenantAlerts};
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::feed::{self, Moved};
use crate::problem::ApiError;
use crate::AppState;

/// The engine's name as a feed consumer.
const CONSUMER: &str = "alerts";
/// The action of the event recording a change of a tenant's rules.
const RULES_CHANGE_ACTION: &str = "alert_rules.update";
const DAY_NS: i64 = 86_400 * 1_000_000_000;

fn rules_setting(tenant_id: &str) -> String {
    format!("alert_rules/{tenant_id}")
}

/// A tenant's rules: its own, else the defaults. A stored list that does not decode is an
/// error, never silently replaced by the defaults.
async fn tenant_rules(
    state: &AppState,
    tenant_id: &str,
) -> Result<(Vec<AlertRule>, bool), ApiError> {
    let Some(bytes) = state.store.setting(&rules_setting(tenant_id)).await? else {
        return Ok((default_rules(), false));
    };
    let value: Value = serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::internal(format!("stored alert rules of {tenant_id}: {error}"))
    })?;
    let rules = rules_from_json(&value).map_err(|errors| {
        ApiError::internal(format!("stored alert rules of {tenant_id}: {errors:?}"))
    })?;
    Ok((rules, true))
}

fn may_administer(principal: &Principal, tenant_id: &str) -> Result<(), ApiError> {
    crate::auth::administer(principal, tenant_id, "its alert rules")
}

fn rules_body(tenant_id: &str, rules: &[AlertRule], own: bool) -> Json<Value> {
    Json(json!({
        "tenant_id": tenant_id,
        "source": if own { "tenant" } else { "default" },
        "rules": rules.iter().map(AlertRule::to_json).collect::<Vec<_>>(),
    }))
}

/// `GET /v1/tenants/{t}/alert-rules`: the rules that apply, and whether they are the tenant's
/// own or the defaults.
pub(crate) async fn list_rules(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    may_administer(&principal, &tenant_id)?;
    let (rules, own) = tenant_rules(&state, &tenant_id).await?;
    Ok(rules_body(&tenant_id, &rules, own))
}

/// Records a change of rules as an event of the tenant's log (before and after), then stores
/// the new list; a change that cannot be recorded is not made.
async fn change_rules(
    state: &AppState,
    principal: &Principal,
    tenant_id: &str,
    before: &[AlertRule],
    after: Vec<AlertRule>,
) -> Result<(), ApiError> {
    // A valid rule the tenant has no room for: the state, not the request, is in the way.
    if let Err(errors) = check_rule_count(after.len()) {
        return Err(ApiError::Conflict {
            detail: errors[0].reason.clone(),
            errors: errors
                .into_iter()
                .map(|error| crate::problem::InvalidItem {
                    index: None,
                    field: error.field,
                    reason: error.reason,
                })
                .collect(),
        });
    }
    let as_json = |rules: &[AlertRule]| rules.iter().map(AlertRule::to_json).collect::<Vec<_>>();
    let event = json!({
        "tenant_id": tenant_id,
        "actor_id": principal.actor_id(),
        "actor_type": "service",
        "action": RULES_CHANGE_ACTION,
        "resource_type": "alert_rules",
        "resource_id": tenant_id,
        "outcome": "success",
        "changes": {"before": {"rules": as_json(before)}, "after": {"rules": as_json(&after)}},
    });
    crate::capture::record(&state.pipeline, event).await?;
    let stored = serde_json::to_vec(&as_json(&after)).map_err(ApiError::internal)?;
    state
        .store
        .set_setting(&rules_setting(tenant_id), stored)
        .await?;
    tracing::info!(tenant_id, rules = after.len(), "alert rules set");
    Ok(())
}

fn read_rule(body: &Bytes) -> Result<AlertRule, ApiError> {
    let value = crate::problem::json_document(body)?;
    AlertRule::from_json(&value).map_err(ApiError::invalid_fields)
}

/// `POST /v1/tenants/{t}/alert-rules`: adds one rule (409 when its name is taken).
pub(crate) async fn create_rule(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant_id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    may_administer(&principal, &tenant_id)?;
    let rule = read_rule(&body)?;
    let (before, _) = tenant_rules(&state, &tenant_id).await?;
    if before.iter().any(|other| other.name == rule.name) {
        return Err(ApiError::Conflict {
            detail: format!(
                "tenant {tenant_id} already has an alert rule named {}",
                rule.name
            ),
            errors: vec![crate::problem::InvalidItem {
                index: None,
                field: "name".into(),
                reason: "taken; PUT /v1/tenants/{tenant_id}/alert-rules/{name} replaces it".into(),
            }],
        });
    }
    let body = rule.to_json();
    let mut after = before.clone();
    after.push(rule);
    change_rules(&state, &principal, &tenant_id, &before, after).await?;
    Ok((StatusCode::CREATED, Json(body)))
}

/// `PUT /v1/tenants/{t}/alert-rules/{name}`: adds or replaces one rule.
pub(crate) async fn put_rule(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path((tenant_id, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    may_administer(&principal, &tenant_id)?;
    let mut value = crate::problem::json_document(&body)?;
    // The path names the rule; a second name in the body could only disagree with it.
    match value.as_object_mut() {
        Some(object) if object.contains_key("name") => {
            return Err(ApiError::invalid_field(
                "name",
                "is the path's {name}; leave it out of the body",
            ))
        }
        Some(object) => {
            object.insert("name".into(), name.clone().into());
        }
        None => return Err(ApiError::invalid_field("body", "must be a JSON object")),
    }
    let rule = AlertRule::from_json(&value).map_err(ApiError::invalid_fields)?;
    let (before, _) = tenant_rules(&state, &tenant_id).await?;
    let mut after = before.clone();
    match after.iter_mut().find(|other| other.name == name) {
        Some(slot) => *slot = rule.clone(),
        None => after.push(rule.clone()),
    }
    change_rules(&state, &principal, &tenant_id, &before, after).await?;
    Ok(Json(rule.to_json()))
}

/// `DELETE /v1/tenants/{t}/alert-rules/{name}`.
pub(crate) async fn delete_rule(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path((tenant_id, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    may_administer(&principal, &tenant_id)?;
    let (before, _) = tenant_rules(&state, &tenant_id).await?;
    if !before.iter().any(|rule| rule.name == name) {
        return Err(ApiError::NotFound(format!(
            "tenant {tenant_id} has no alert rule named {name}"
        )));
    }
    let after = before
        .iter()
        .filter(|rule| rule.name != name)
        .cloned()
        .collect();
    change_rules(&state, &principal, &tenant_id, &before, after).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One tenant as the engine knows it.
#[derive(Debug)]
struct Tenant {
    alerts: TenantAlerts,
    /// The last `seq` judged.
    cursor: feed::Cursor,
}

/// The engine: runs until the server stops (the task is aborted before the pipeline drains).
pub(crate) async fn run_engine(state: Arc<AppState>) {
    let subscription = state.feed.subscribe();
    let mut tenants: HashMap<String, Tenant> = HashMap::new();
    let mut moved = Moved::Poll;
    loop {
        let names: Vec<(String, Option<u64>)> = match moved {
            Moved::Tenants(names) => names.into_iter().map(|name| (name, None)).collect(),
            Moved::Poll => match feed::heads(&*state.store).await {
                Ok(heads) => heads
                    .into_iter()
                    .map(|(name, head)| (name, Some(head)))
                    .collect(),
                Err(error) => {
                    tracing::warn!(%error, "alert engine cannot read the tenants' heads");
                    Vec::new()
                }
            },
        };
        for (tenant_id, head) in names {
            if head.is_some_and(|head| {
                tenants
                    .get(&tenant_id)
                    .is_some_and(|known| known.cursor.seq >= head)
            }) {
                // Caught up: the poll saves what the last catch-up left unsaved.
                if let Some(known) = tenants.get_mut(&tenant_id) {
                    let saved = known
                        .cursor
                        .save(&*state.store, CONSUMER, &tenant_id, true)
                        .await;
                    if let Err(error) = saved {
                        tracing::warn!(%error, tenant_id, "alert engine cannot save its cursor");
                    }
                }
                continue;
            }
            if let Err(error) = catch_up(&state, &mut tenants, &tenant_id).await {
                // Its windows may hold events whose alerts were not appended: rebuild them
                // from the log (up to the saved cursor) before judging again.
                tenants.remove(&tenant_id);
                tracing::warn!(%error, tenant_id, "alert engine could not judge the tenant's new events; retrying");
            }
        }
        moved = subscription.next().await;
    }
}

/// Judges every event of `tenant_id` after the engine's cursor.
async fn catch_up(
    state: &AppState,
    tenants: &mut HashMap<String, Tenant>,
    tenant_id: &str,
) -> Result<(), ApiError> {
    if !tenants.contains_key(tenant_id) {
        let tenant = load(state, tenant_id).await?;
        tenants.insert(tenant_id.to_owned(), tenant);
    }
    let tenant = tenants.get_mut(tenant_id).expect("inserted above");
    let head = feed::head(&*state.store, tenant_id).await?;
    state
        .feed
        .set_lag(CONSUMER, tenant_id, head.saturating_sub(tenant.cursor.seq));
    loop {
        let query = EventQuery::for_tenant(tenant_id);
        let events = feed::read(
            &state.query,
            &*state.store,
            query,
            tenant.cursor.seq,
            FEED_BATCH_EVENTS_MAX,
        )
        .await?;
        let Some(last) = events.last().map(|event| event.seq) else {
            break;
        };
        let mut raised = Vec::new();
        for event in &events {
            raised.extend(judge(state, tenant_id, &mut tenant.alerts, event, Mode::Live).await?);
        }
        // One request for the batch's alerts: one commit, however many fired.
        for chunk in raised.chunks(BATCH_EVENTS_MAX) {
            crate::capture::record_all(&state.pipeline, chunk.to_vec()).await?;
            crate::metrics::registry().alerts_raised(chunk.len());
        }
        tenant.cursor.seq = last;
        tenant
            .cursor
            .save(&*state.store, CONSUMER, tenant_id, false)
            .await?;
        if events.len() < FEED_BATCH_EVENTS_MAX {
            break;
        }
    }
    state.feed.set_lag(CONSUMER, tenant_id, 0);
    Ok(())
}

/// Feeds one event to the tenant's rules; returns the alerts it raises, as events to append.
/// A change of rules takes effect exactly where its event stands in the log, on every node
/// and in every replay.
async fn judge(
    state: &AppState,
    tenant_id: &str,
    alerts: &mut TenantAlerts,
    event: &StoredEvent,
    mode: Mode,
) -> Result<Vec<Value>, ApiError> {
    if let Some(rules) = changed_rules(event) {
        alerts.replace_rules(rules);
        return Ok(Vec::new());
    }
    if mode == Mode::Live {
        for wanted in alerts.baseline_wanted(&event.event) {
            let history = baseline_history(state, tenant_id, &wanted, alerts).await?;
            alerts.set_baseline(&wanted.rule, &wanted.actor_id, wanted.day, &history);
        }
    }
    Ok(alerts
        .observe(event, mode)
        .into_iter()
        .map(|alert| {
            tracing::info!(
                tenant_id,
                rule = alert.rule.name,
                group = alert.group,
                value = alert.value,
                "alert raised"
            );
            alert.to_json()
        })
        .collect())
}

/// The rules an `alert_rules.update` event installed (`changes.after.rules`).
fn changed_rules(stored: &StoredEvent) -> Option<Vec<AlertRule>> {
    let event = &stored.event;
    if event.action != RULES_CHANGE_ACTION || event.resource_type != "alert_rules" {
        return None;
    }
    let changes: Value = serde_json::from_str(event.changes.as_deref()?).ok()?;
    match rules_from_json(&changes["after"]["rules"]) {
        Ok(rules) => Some(rules),
        Err(errors) => {
            tracing::warn!(tenant_id = event.tenant_id, seq = stored.seq, ?errors, "an alert_rules.update event holds rules this build does not read; the rules before it stay");
            None
        }
    }
}

/// An actor's daily counts of a baseline rule's events over the days before `wanted.day`, from
/// the per-actor daily summaries (never a scan of events).
async fn baseline_history(
    state: &AppState,
    tenant_id: &str,
    wanted: &sealtrail_realtime::window::BaselineWanted,
    alerts: &TenantAlerts,
) -> Result<Vec<u64>, ApiError> {
    let Some(rule) = alerts.rules().find(|rule| rule.name == wanted.rule) else {
        return Ok(Vec::new());
    };
    let day = |offset: i64| format_timestamp((wanted.day + offset) * DAY_NS)[..10].to_owned();
    let (from_day, to_day) = (day(-i64::from(wanted.days)), day(-1));
    let rows = state
        .store
        .actor_days(
            tenant_id,
            ActorDayFilter {
                actor_id: Some(&wanted.actor_id),
                action: None,
                from_day: Some(&from_day),
                to_day: Some(&to_day),
            },
        )
        .await?;
    let mut by_day: HashMap<String, u64> = HashMap::new();
    for (key, tally) in rows {
        if rule
            .matcher
            .matches_summary(&key.action, &key.resource_type)
        {
            *by_day.entry(key.day).or_default() += tally.kept;
        }
    }
    Ok((1..=i64::from(wanted.days))
        .rev()
        .map(|back| by_day.get(&day(-back)).copied().unwrap_or(0))
        .collect())
}

/// Reads a tenant's rules and cursor, and rebuilds its windows from the events within the
/// rules' reach before the cursor. A tenant the engine never judged starts judging at the
/// oldest event within that reach of its head: history older than any window raises nothing.
async fn load(state: &AppState, tenant_id: &str) -> Result<Tenant, ApiError> {
    let (rules, _) = tenant_rules(state, tenant_id).await?;
    let mut alerts = TenantAlerts::new(rules);
    let saved = feed::cursor(&*state.store, CONSUMER, tenant_id).await?;
    let anchor = match saved {
        Some(cursor) => cursor,
        None => feed::head(&*state.store, tenant_id).await?,
    };
    let recent = within_reach(state, tenant_id, anchor, alerts.reach_seconds()).await?;
    let cursor = saved.unwrap_or_else(|| recent.first().map_or(anchor, |event| event.seq - 1));
    let replayed = recent.iter().filter(|event| event.seq <= cursor).count();
    for event in recent.iter().filter(|event| event.seq <= cursor) {
        judge(state, tenant_id, &mut alerts, event, Mode::Replay).await?;
    }
    tracing::debug!(tenant_id, cursor, replayed, "alert windows rebuilt");
    Ok(Tenant {
        alerts,
        cursor: feed::Cursor::at(cursor, saved.is_some()),
    })
}

/// The events at or before `anchor` received within `reach_seconds` of it (at most
/// [`ALERT_REBUILD_EVENTS_MAX`]), oldest first.
async fn within_reach(
    state: &AppState,
    tenant_id: &str,
    anchor: u64,
    reach_seconds: u64,
) -> Result<Vec<StoredEvent>, ApiError> {
    let mut recent: Vec<StoredEvent> = Vec::new();
    let reach_ns = i64::try_from(reach_seconds).unwrap_or(i64::MAX / 2) * 1_000_000_000;
    let mut bound_ns = None;
    let mut below = anchor + 1;
    while recent.len() < ALERT_REBUILD_EVENTS_MAX && below > 1 {
        let query = EventQuery {
            order: Order::Desc,
            after_seq: Some(below),
            limit: FEED_BATCH_EVENTS_MAX,
            ..EventQuery::for_tenant(tenant_id)
        };
        let page = state.query.page(query).await?;
        let Some(oldest) = page.last() else {
            break;
        };
        below = oldest.stored.seq;
        let mut done = false;
        for located in page {
            let bound = *bound_ns.get_or_insert(located.stored.received_at_ns - reach_ns);
            if located.stored.received_at_ns < bound {
                done = true;
                break;
            }
            recent.push(located.stored);
        }
        if done {
            break;
        }
    }
    recent.reverse();
    Ok(recent)
}
