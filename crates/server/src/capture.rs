//! Capture policy at the edge: each tenant's policy, the decision for every ingested event, the
//! policy and sampling endpoints, and the sampling statements that commit the statistics into
//! each tenant's own log.
//!
//! The decisions themselves are pure (`sealtrail_policy`); the counts are kept by the store in
//! the group commit of the events they count (`sealtrail_hot::plan`), so they are exact after any
//! crash. What is left here is IO: reading policies (cached for [`POLICY_CACHE_MILLIS`], so a
//! change made on another node of a shared database applies within that time), recording every
//! policy change as an event, and the statement task.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::Json;
use sealtrail_hot::{AppendOutcome, HotStore, SamplingCount};
use sealtrail_model::limits::{
    METADATA_BYTES_MAX, POLICY_CACHE_MILLIS, POLICY_CACHE_TENANTS_MAX,
    SAMPLING_STATEMENT_COUNTS_MAX,
};
use sealtrail_model::{
    check_tenant_id, is_day_bound, validate_event, CaptureDecision, PendingEvent,
};
use sealtrail_policy::{Durability, Policy};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::pipeline::Pipeline;
use crate::problem::ApiError;
use crate::recent::Recent;
use crate::{now_ns, AppState};

/// The settings entry of a tenant's own policy (absent: the deployment's policy applies).
fn policy_setting(tenant_id: &str) -> String {
    format!("capture_policy/{tenant_id}")
}

/// The action of the event recording a policy change.
pub(crate) const POLICY_CHANGE_ACTION: &str = "policy.update";
/// The action of a sampling statement.
pub(crate) const SAMPLING_STATEMENT_ACTION: &str = "sampling.statement";

/// Every tenant's capture policy: its own, else the deployment's.
#[derive(Debug)]
pub(crate) struct Policies {
    deployment: Arc<Policy>,
    /// Each tenant's own policy as last read (`None`: it has none).
    cache: Recent<Option<Arc<Policy>>>,
}

impl Policies {
    pub(crate) fn new(deployment: Policy) -> Self {
        Policies {
            deployment: Arc::new(deployment),
            cache: Recent::new(POLICY_CACHE_MILLIS, POLICY_CACHE_TENANTS_MAX),
        }
    }

    /// The tenant's own policy, if it has one. A stored policy that does not decode is an
    /// error, never replaced by the default: ingest for that tenant fails until it is fixed.
    async fn own(
        &self,
        store: &dyn HotStore,
        tenant_id: &str,
    ) -> Result<Option<Arc<Policy>>, ApiError> {
        if let Some(policy) = self.cache.get(tenant_id) {
            return Ok(policy);
        }
        let stored = store.setting(&policy_setting(tenant_id)).await?;
        let policy = match stored {
            None => None,
            Some(bytes) => {
                let decoded = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|value| Policy::from_json(&value).ok());
                let Some(policy) = decoded else {
                    return Err(ApiError::internal(format!(
                        "the stored capture policy of tenant {tenant_id} does not decode; restore it with PUT /v1/tenants/{tenant_id}/policy"
                    )));
                };
                Some(Arc::new(policy))
            }
        };
        self.remember(tenant_id, policy.clone());
        Ok(policy)
    }

    fn remember(&self, tenant_id: &str, policy: Option<Arc<Policy>>) {
        self.cache.put(tenant_id.to_owned(), policy);
    }

    /// The policy that applies to a tenant's events.
    pub(crate) async fn for_tenant(
        &self,
        store: &dyn HotStore,
        tenant_id: &str,
    ) -> Result<Arc<Policy>, ApiError> {
        Ok(self
            .own(store, tenant_id)
            .await?
            .unwrap_or_else(|| self.deployment.clone()))
    }
}

/// Decides every event of a request under its tenant's policy and returns the durability its
/// acknowledgement needs: sync when any kept event is class 0, else what the request asked,
/// else the strictest default of its tenants' policies.
pub(crate) async fn decide(
    state: &AppState,
    request: &mut [PendingEvent],
    asked: Option<Durability>,
) -> Result<Durability, ApiError> {
    let mut policies: HashMap<String, Arc<Policy>> = HashMap::new();
    for pending in request.iter() {
        let tenant_id = &pending.event.tenant_id;
        if !policies.contains_key(tenant_id) {
            let policy = state.policies.for_tenant(&*state.store, tenant_id).await?;
            policies.insert(tenant_id.clone(), policy);
        }
    }
    for pending in request.iter_mut() {
        let decision = policies[&pending.event.tenant_id].decide(&pending.event);
        if !decision.kept {
            // A dropped event only counts (tenant, day, class, action): what it says about a
            // person goes no further, not even into the async spool.
            let event = &mut pending.event;
            (
                event.ip_address,
                event.user_agent,
                event.changes,
                event.metadata,
            ) = (None, None, None, None);
            event.resource_id = None;
        }
        pending.capture = Some(CaptureDecision {
            class: decision.class,
            kept: decision.kept,
        });
    }
    // The strictest of what each tenant's policy requires for its kept events.
    let strictest = policies.iter().any(|(tenant_id, policy)| {
        let kept_classes = request
            .iter()
            .filter(|pending| pending.event.tenant_id == *tenant_id)
            .filter_map(|pending| pending.capture.filter(|capture| capture.kept))
            .map(|capture| capture.class);
        policy.durability(asked, kept_classes) == Durability::Sync
    });
    Ok(if strictest {
        Durability::Sync
    } else {
        Durability::Async
    })
}

/// The answer for an event the policy dropped.
pub(crate) fn sampled_out(pending: &PendingEvent) -> Option<Value> {
    let capture = pending.capture.filter(|capture| !capture.kept)?;
    Some(json!({
        "event_id": pending.event.event_id,
        "tenant_id": pending.event.tenant_id,
        "sampled_out": true,
        "class": capture.class,
    }))
}

fn may_administer(principal: &Principal, tenant_id: &str) -> Result<(), ApiError> {
    if principal.may_administer(tenant_id) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "only an admin key of tenant {tenant_id} or the platform admin may read or change its capture policy"
        )))
    }
}

fn policy_body(tenant_id: &str, policy: &Policy, own: bool) -> Json<Value> {
    let mut body = policy.to_json();
    body["tenant_id"] = tenant_id.into();
    body["source"] = if own { "tenant" } else { "deployment" }.into();
    Json(body)
}

/// `GET /v1/tenants/{tenant_id}/policy`: the policy that applies, and whether it is the
/// tenant's own or the deployment's.
pub(crate) async fn get_policy(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_tenant_id(&tenant_id).map_err(|reason| ApiError::invalid_field("tenant_id", reason))?;
    may_administer(&principal, &tenant_id)?;
    let own = state.policies.own(&*state.store, &tenant_id).await?;
    Ok(match own {
        Some(policy) => policy_body(&tenant_id, &policy, true),
        None => policy_body(&tenant_id, &state.policies.deployment, false),
    })
}

/// `PUT /v1/tenants/{tenant_id}/policy`: replaces the tenant's policy. The change is first
/// committed as an event of the tenant's log (class 0, whoever made it, before and after), then
/// stored; a change that cannot be recorded is not made.
pub(crate) async fn put_policy(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_tenant_id(&tenant_id).map_err(|reason| ApiError::invalid_field("tenant_id", reason))?;
    may_administer(&principal, &tenant_id)?;
    let value = crate::problem::json_document(&body)?;
    let policy = Policy::from_json(&value).map_err(ApiError::invalid_fields)?;
    let before = state.policies.for_tenant(&*state.store, &tenant_id).await?;
    let event = json!({
        "tenant_id": tenant_id,
        "actor_id": principal.actor_id(),
        "actor_type": "service",
        "action": POLICY_CHANGE_ACTION,
        "resource_type": "capture_policy",
        "resource_id": tenant_id,
        "outcome": "success",
        "changes": {"before": before.to_json(), "after": policy.to_json()},
    });
    record(&state.pipeline, event).await?;
    let policy = store_policy(&state, &tenant_id, policy).await?;
    tracing::info!(tenant_id, "capture policy set");
    Ok(policy_body(&tenant_id, &policy, true))
}

/// Stores a tenant's own policy (its change already recorded) and uses it at once.
pub(crate) async fn store_policy(
    state: &AppState,
    tenant_id: &str,
    policy: Policy,
) -> Result<Arc<Policy>, ApiError> {
    let stored = serde_json::to_vec(&policy.to_json()).map_err(ApiError::internal)?;
    state
        .store
        .set_setting(&policy_setting(tenant_id), stored)
        .await?;
    let policy = Arc::new(policy);
    state.policies.remember(tenant_id, Some(policy.clone()));
    Ok(policy)
}

/// Commits one event the server writes itself (outside sampling), synchronously.
pub(crate) async fn record(pipeline: &Pipeline, event: Value) -> Result<AppendOutcome, ApiError> {
    record_with_id(pipeline, event, None).await
}

/// Commits events the server writes itself (outside sampling) as one synchronous request: all or
/// none, in one commit.
pub(crate) async fn record_all(
    pipeline: &Pipeline,
    events: Vec<Value>,
) -> Result<AppendOutcome, ApiError> {
    let received_at_ns = now_ns();
    let mut pending = Vec::with_capacity(events.len());
    for event in events {
        let submitted = validate_event(event, received_at_ns).map_err(|errors| {
            ApiError::internal(format!("the server's own event is invalid: {errors:?}"))
        })?;
        pending.push(submitted.complete(received_at_ns, || uuid::Uuid::now_v7().to_string()));
    }
    let outcome = pipeline
        .submit_sync(pending)
        .await
        .map_err(crate::ingest::refusal)?;
    match outcome {
        AppendOutcome::Committed(_) => Ok(outcome),
        AppendOutcome::Conflict { event_id, .. } => Err(ApiError::internal(format!(
            "the server's own event {event_id} conflicts with a stored one"
        ))),
    }
}

async fn record_with_id(
    pipeline: &Pipeline,
    mut event: Value,
    event_id: Option<String>,
) -> Result<AppendOutcome, ApiError> {
    if let Some(event_id) = event_id {
        event["event_id"] = event_id.into();
    }
    record_all(pipeline, vec![event]).await
}

/// `GET /v1/tenants/{tenant_id}/sampling?from=&to=`: the tenant's sampling statistics for the
/// days `from..=to` (`YYYY-MM-DD`, either open), with totals per class.
pub(crate) async fn get_sampling(
    State(state): State<Arc<AppState>>,
    request: crate::access::ReadRequest,
    Path(tenant_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let reader = request.whole_tenant(&state, Some(&tenant_id)).await?;
    let mut range = [None, None];
    for (name, value) in &params {
        let slot = match name.as_str() {
            "from" => 0,
            "to" => 1,
            other => return Err(ApiError::invalid_field(other, "unknown query parameter")),
        };
        if !is_day_bound(value) {
            return Err(ApiError::invalid_field(
                name,
                "must be a calendar day, YYYY-MM-DD",
            ));
        }
        range[slot] = Some(value.as_str());
    }
    let [from, to] = range;
    let counts = state.store.sampling_counts(&tenant_id, from, to).await?;
    let mut totals: BTreeMap<u8, (u64, u64)> = BTreeMap::new();
    for count in &counts {
        let total = totals.entry(count.key.class).or_default();
        total.0 += count.tally.kept;
        total.1 += count.tally.seen;
    }
    let policy = state.policies.for_tenant(&*state.store, &tenant_id).await?;
    reader.record(&state, json!(params), Some(counts.len()))?;
    Ok(Json(json!({
        "tenant_id": tenant_id,
        "from": from,
        "to": to,
        "rates": policy.to_json()["rates"],
        "totals": totals.iter().map(|(class, (kept, seen))| json!({"class": class, "kept": kept, "seen": seen})).collect::<Vec<_>>(),
        "counts": counts.iter().map(count_json).collect::<Vec<_>>(),
    })))
}

fn count_json(count: &SamplingCount) -> Value {
    json!({
        "day": count.key.day,
        "class": count.key.class,
        "action": count.key.action,
        "kept": count.tally.kept,
        "seen": count.tally.seen,
        "stated_kept": count.stated.kept,
        "stated_seen": count.stated.seen,
    })
}

/// States every statistic that dropped events and moved since its last statement, each tenant's in events
/// of its own log (`sampling.statement`), then records what was stated. Each statement carries
/// the cumulative counts it states, so a statement repeated after a crash between its commit
/// and that record says the same thing: its `event_id` is derived from its content, and the
/// retry gets the stored receipt. The statement's time is its event's own `timestamp`, which a
/// retry may carry differently (it is not supplied by a client). A signed checkpoint covers it at the checkpointer's next cut.
pub(crate) async fn state_sampling(
    store: &dyn HotStore,
    pipeline: &Pipeline,
) -> Result<usize, ApiError> {
    let mut statements = 0;
    loop {
        let counts = store
            .unstated_sampling_counts(SAMPLING_STATEMENT_COUNTS_MAX)
            .await?;
        if counts.is_empty() {
            return Ok(statements);
        }
        let full = counts.len() == SAMPLING_STATEMENT_COUNTS_MAX;
        for chunk in statement_chunks(counts) {
            let tenant_id = chunk[0].key.tenant_id.clone();
            let metadata = json!({
                "statement": "sampling/v1",
                "counts": chunk.iter().map(|count| json!({
                    "day": count.key.day,
                    "class": count.key.class,
                    "action": count.key.action,
                    "kept": count.tally.kept,
                    "seen": count.tally.seen,
                })).collect::<Vec<_>>(),
            });
            // Named by what it states (not when), so a repeat is recognised.
            let digest = Sha256::new()
                .chain_update(tenant_id.as_bytes())
                .chain_update(b"\n")
                .chain_update(metadata["counts"].to_string().as_bytes())
                .finalize();
            let event = json!({
                "tenant_id": tenant_id,
                "actor_id": "sealtrail",
                "actor_type": "system",
                "action": SAMPLING_STATEMENT_ACTION,
                "resource_type": "sampling_statistics",
                "outcome": "success",
                "metadata": metadata,
            });
            let event_id = format!("sampling-{}", hex::encode(&digest[..20]));
            record_with_id(pipeline, event, Some(event_id)).await?;
            store.mark_sampling_stated(chunk).await?;
            statements += 1;
        }
        if !full {
            return Ok(statements);
        }
    }
}

/// Splits statistics into one statement's worth each: one tenant per statement, and metadata
/// within [`METADATA_BYTES_MAX`] (with room for the envelope).
fn statement_chunks(counts: Vec<SamplingCount>) -> Vec<Vec<SamplingCount>> {
    let budget = METADATA_BYTES_MAX - 256;
    let mut chunks: Vec<Vec<SamplingCount>> = Vec::new();
    let mut bytes = 0;
    for count in counts {
        let size = count_json(&count).to_string().len() + 1;
        let fits = chunks.last().is_some_and(|chunk| {
            chunk[0].key.tenant_id == count.key.tenant_id && bytes + size <= budget
        });
        if fits {
            bytes += size;
            chunks.last_mut().expect("checked above").push(count);
        } else {
            bytes = size;
            chunks.push(vec![count]);
        }
    }
    chunks
}

/// Runs [`state_sampling`] at start (what an earlier run left unstated) and then every
/// `interval` until the server stops.
pub(crate) async fn run_statements(state: Arc<AppState>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match state_sampling(&*state.store, &state.pipeline).await {
            Ok(0) => {}
            Ok(statements) => tracing::info!(statements, "sampling statements committed"),
            Err(error) => {
                tracing::warn!(%error, "sampling statements failed; retried next interval")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealtrail_hot::{SamplingKey, SamplingTally};

    fn count(tenant: &str, action: &str) -> SamplingCount {
        SamplingCount {
            key: SamplingKey {
                tenant_id: tenant.into(),
                day: "2026-12-01".into(),
                class: 3,
                action: action.into(),
            },
            tally: SamplingTally { kept: 1, seen: 100 },
            stated: SamplingTally::default(),
        }
    }

    #[test]
    fn statements_hold_one_tenant_each_and_fit_the_metadata_limit() {
        let mut counts: Vec<SamplingCount> = (0..400)
            .map(|n| count("acme", &format!("action.{n:040}")))
            .collect();
        counts.push(count("beta", "poll"));
        let chunks = statement_chunks(counts);
        assert!(chunks.len() >= 3, "{}", chunks.len());
        assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 401);
        for chunk in &chunks {
            assert!(chunk
                .iter()
                .all(|c| c.key.tenant_id == chunk[0].key.tenant_id));
            let json = json!({"counts": chunk.iter().map(count_json).collect::<Vec<_>>()});
            assert!(json.to_string().len() <= METADATA_BYTES_MAX - 256);
        }
        assert_eq!(chunks.last().unwrap()[0].key.tenant_id, "beta");
    }
}
