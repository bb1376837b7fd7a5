//! The alert engine of one tenant: its rules' sliding windows and daily counts, fed the
//! tenant's committed events in `seq` order.
//!
//! Time is the events' own `timestamp`: a group's window is the matching events whose timestamp
//! lies in `(newest - window, newest]`, `newest` being the latest timestamp the group has seen;
//! an event older than that window when it arrives is not counted.
//!
//! State is rebuilt at start by feeding the events within the rules' reach before the
//! consumer's cursor in [`Mode::Replay`]: they fill the windows but fire nothing (they were
//! judged before the restart), and the alert events among them restore what each firing
//! did — the group's window emptied of the events it counted, the cool-down. So a burst that
//! spans a restart is caught, once. An alert's `event_id` derives from its rule, group and
//! triggering event, so the same alert raised twice (by a crash between its append and the
//! cursor's save, or by two nodes) is one stored event.

use std::collections::{HashMap, VecDeque};

use sealtrail_model::limits::{
    ALERT_CONTRIBUTING_EVENTS_MAX, ALERT_GROUPS_PER_RULE_MAX, ALERT_WINDOW_EVENTS_MAX,
};
use sealtrail_model::{format_timestamp, parse_timestamp, ActorType, Event, StoredEvent};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::rules::{AlertRule, RuleKind};

/// The action of the events alerts are recorded as.
pub const ALERT_ACTION: &str = "alert.triggered";
/// The `actor_id` of alert events: the server itself.
pub const ALERT_ACTOR: &str = "sealtrail";
/// The `resource_type` of alert events; their `resource_id` is the rule's name.
pub const ALERT_RESOURCE_TYPE: &str = "alert_rule";
/// Domain separator of alert ids.
const ALERT_ID_DOMAIN: &[u8] = b"sealtrail-alert-v1\n";
const DAY_NS: i64 = 86_400 * 1_000_000_000;
/// Observations between sweeps of a rule's idle groups.
const SWEEP_EVERY: u32 = 4_096;

/// Whether an event is judged now or only restores state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The event is new to this consumer: rules may fire on it.
    Live,
    /// The event was judged before a restart: it fills windows, fires nothing.
    Replay,
}

/// One alert a rule raised.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub rule: AlertRule,
    pub group: String,
    /// The triggering event: the window ends at it.
    pub trigger: StoredEvent,
    pub window_from_ns: i64,
    pub value: f64,
    /// What the value exceeded: the threshold, or the baseline's limit.
    pub limit: f64,
    /// `seq` of the oldest event the window counted.
    pub first_seq: u64,
    /// Ids of up to [`ALERT_CONTRIBUTING_EVENTS_MAX`] contributing events, newest last.
    pub contributing: Vec<String>,
    /// For a baseline: the mean and standard deviation of the history.
    pub baseline: Option<(f64, f64)>,
}

impl Alert {
    /// The id of the alert's event: the same rule, group and trigger always give the same id.
    pub fn event_id(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [
            self.trigger.event.tenant_id.as_bytes(),
            self.rule.name.as_bytes(),
            self.group.as_bytes(),
        ] {
            hasher.update(part);
            hasher.update(b"\n");
        }
        hasher.update(self.trigger.seq.to_be_bytes());
        let digest = hasher.finalize();
        let mut domain = Sha256::new();
        domain.update(ALERT_ID_DOMAIN);
        domain.update(digest);
        format!("alert-{}", hex::encode(&domain.finalize()[..16]))
    }

    /// The alert as an event of the tenant's own log, in the wire shape of `POST /v1/events`.
    /// Its content is a function of the alert alone and it carries no `timestamp` (the server
    /// stamps it when it appends), so a repeat is recognised as the same event.
    pub fn to_json(&self) -> Value {
        let trigger = &self.trigger.event;
        let mut metadata = json!({
            "rule": self.rule.to_json(),
            "group": self.group,
            "window": {
                "from": format_timestamp(self.window_from_ns),
                "to": format_timestamp(trigger.timestamp_ns),
            },
            "value": self.value,
            "limit": self.limit,
            "first_seq": self.first_seq,
            "last_seq": self.trigger.seq,
            "events": self.contributing,
        });
        if let Some((mean, deviation)) = self.baseline {
            metadata["baseline"] = json!({"mean": mean, "standard_deviation": deviation});
        }
        json!({
            "event_id": self.event_id(),
            "tenant_id": trigger.tenant_id,
            "actor_id": ALERT_ACTOR,
            "actor_type": "system",
            "action": ALERT_ACTION,
            "resource_type": ALERT_RESOURCE_TYPE,
            "resource_id": self.rule.name,
            "outcome": "success",
            "metadata": metadata,
        })
    }
}

/// Whether `event` is an alert the server raised.
pub fn is_alert(event: &Event) -> bool {
    event.action == ALERT_ACTION
        && event.actor_type == ActorType::System
        && event.actor_id == ALERT_ACTOR
}

/// A baseline the engine needs before it can judge an event: the actor's daily counts of the
/// rule's events over the `days` days before `day`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaselineWanted {
    pub rule: String,
    pub actor_id: String,
    /// Days since the Unix epoch (UTC).
    pub day: i64,
    pub days: u32,
}

#[derive(Debug, Default)]
struct Group {
    /// `(timestamp_ns, value, seq)`, in `seq` order.
    entries: VecDeque<(i64, f64, u64)>,
    value: f64,
    /// The newest events' `(seq, event_id)`, for the alert's list.
    recent: VecDeque<(u64, String)>,
    newest_ns: i64,
    quiet_until_ns: i64,
}

#[derive(Debug)]
struct ActorDay {
    day: i64,
    count: u64,
    /// `(limit, mean, deviation)` once the history is known.
    limit: Option<(f64, f64, f64)>,
    fired: bool,
}

#[derive(Debug)]
struct RuleState {
    rule: AlertRule,
    groups: HashMap<String, Group>,
    days: HashMap<String, ActorDay>,
    observations: u32,
}

/// The alert state of one tenant.
#[derive(Debug)]
pub struct TenantAlerts {
    rules: Vec<RuleState>,
    /// New groups not tracked because a rule held [`ALERT_GROUPS_PER_RULE_MAX`].
    groups_refused: u64,
}

impl TenantAlerts {
    pub fn new(rules: Vec<AlertRule>) -> Self {
        let mut alerts = TenantAlerts {
            rules: Vec::new(),
            groups_refused: 0,
        };
        alerts.replace_rules(rules);
        alerts
    }

    pub fn rules(&self) -> impl Iterator<Item = &AlertRule> {
        self.rules.iter().map(|state| &state.rule)
    }

    /// How far back the rules' state reaches, in seconds: what a rebuild must read.
    pub fn reach_seconds(&self) -> u64 {
        self.rules()
            .map(AlertRule::reach_seconds)
            .max()
            .unwrap_or(0)
    }

    /// Groups refused so far for want of room.
    pub fn groups_refused(&self) -> u64 {
        self.groups_refused
    }

    /// Installs a new rule list; a rule whose definition is unchanged keeps its windows.
    pub fn replace_rules(&mut self, rules: Vec<AlertRule>) {
        let mut old = std::mem::take(&mut self.rules);
        self.rules = rules
            .into_iter()
            .map(
                |rule| match old.iter().position(|state| state.rule == rule) {
                    Some(index) => old.swap_remove(index),
                    None => RuleState {
                        rule,
                        groups: HashMap::new(),
                        days: HashMap::new(),
                        observations: 0,
                    },
                },
            )
            .collect();
    }

    /// The baselines [`observe`](Self::observe) needs for `event` and does not have yet.
    pub fn baseline_wanted(&self, event: &Event) -> Vec<BaselineWanted> {
        let day = event.timestamp_ns.div_euclid(DAY_NS);
        self.rules
            .iter()
            .filter_map(|state| {
                let RuleKind::Baseline { baseline_days, .. } = state.rule.kind else {
                    return None;
                };
                if !state.rule.matcher.matches(event) || is_alert(event) {
                    return None;
                }
                let known = state
                    .days
                    .get(&event.actor_id)
                    .is_some_and(|known| known.day == day && known.limit.is_some());
                (!known).then(|| BaselineWanted {
                    rule: state.rule.name.clone(),
                    actor_id: event.actor_id.clone(),
                    day,
                    days: baseline_days,
                })
            })
            .collect()
    }

    /// Gives a baseline rule an actor's history: one count per day before `day`, oldest first
    /// (a day without events counts 0).
    pub fn set_baseline(&mut self, rule: &str, actor_id: &str, day: i64, history: &[u64]) {
        let Some(state) = self.rules.iter_mut().find(|state| state.rule.name == rule) else {
            return;
        };
        let RuleKind::Baseline {
            deviations,
            min_count,
            ..
        } = state.rule.kind
        else {
            return;
        };
        let (mean, deviation) = mean_and_deviation(history);
        let limit = (mean + deviations * deviation).max(min_count as f64);
        let entry = actor_day(&mut state.days, actor_id, day);
        entry.limit = Some((limit, mean, deviation));
    }

    /// Feeds one committed event (in `seq` order); in [`Mode::Live`] returns the alerts it
    /// raises.
    pub fn observe(&mut self, stored: &StoredEvent, mode: Mode) -> Vec<Alert> {
        let event = &stored.event;
        if is_alert(event) {
            self.restore(event);
            return Vec::new();
        }
        let mut alerts = Vec::new();
        for state in &mut self.rules {
            if !state.rule.matcher.matches(event) {
                continue;
            }
            let alert = match &state.rule.kind {
                RuleKind::Threshold { .. } => {
                    observe_threshold(state, stored, mode, &mut self.groups_refused)
                }
                RuleKind::Baseline { .. } => observe_baseline(state, stored, mode),
            };
            alerts.extend(alert);
        }
        alerts
    }

    /// Applies an alert event read from the log: its group's window loses the events it
    /// counted, and the cool-down (or the day, for a baseline) starts.
    fn restore(&mut self, event: &Event) {
        let Some(metadata) = event
            .metadata
            .as_deref()
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
        else {
            return;
        };
        let rule_name = event.resource_id.as_deref().unwrap_or_default();
        let Some(state) = self
            .rules
            .iter_mut()
            .find(|state| state.rule.name == rule_name && state.rule.to_json() == metadata["rule"])
        else {
            return;
        };
        let (Some(group), Some(last_seq), Some(to_ns)) = (
            metadata["group"].as_str(),
            metadata["last_seq"].as_u64(),
            metadata["window"]["to"].as_str().and_then(parse_timestamp),
        ) else {
            return;
        };
        match state.rule.kind {
            RuleKind::Threshold {
                cooldown_seconds, ..
            } => {
                let entry = state.groups.entry(group.to_owned()).or_default();
                entry.entries.retain(|(_, _, seq)| *seq > last_seq);
                entry.recent.retain(|(seq, _)| *seq > last_seq);
                entry.value = entry.entries.iter().map(|(_, value, _)| value).sum();
                entry.quiet_until_ns = entry
                    .quiet_until_ns
                    .max(to_ns + seconds_ns(cooldown_seconds));
            }
            RuleKind::Baseline { .. } => {
                actor_day(&mut state.days, group, to_ns.div_euclid(DAY_NS)).fired = true;
            }
        }
    }
}

fn seconds_ns(seconds: u64) -> i64 {
    i64::try_from(seconds)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000_000)
}

fn actor_day<'a>(
    days: &'a mut HashMap<String, ActorDay>,
    actor_id: &str,
    day: i64,
) -> &'a mut ActorDay {
    let entry = days.entry(actor_id.to_owned()).or_insert(ActorDay {
        day,
        count: 0,
        limit: None,
        fired: false,
    });
    if entry.day != day {
        *entry = ActorDay {
            day,
            count: 0,
            limit: None,
            fired: false,
        };
    }
    entry
}

fn mean_and_deviation(history: &[u64]) -> (f64, f64) {
    if history.is_empty() {
        return (0.0, 0.0);
    }
    let n = history.len() as f64;
    let mean = history.iter().map(|&count| count as f64).sum::<f64>() / n;
    let variance = history
        .iter()
        .map(|&count| (count as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, variance.sqrt())
}

fn observe_threshold(
    state: &mut RuleState,
    stored: &StoredEvent,
    mode: Mode,
    groups_refused: &mut u64,
) -> Option<Alert> {
    let RuleKind::Threshold {
        group_by,
        window_seconds,
        aggregate,
        threshold,
        cooldown_seconds,
    } = &state.rule.kind
    else {
        return None;
    };
    let event = &stored.event;
    let key = group_by.value_of(event)?;
    let value = aggregate.value_of(event)?;
    let window_ns = seconds_ns(*window_seconds);
    state.observations = state.observations.wrapping_add(1);
    if state.observations.is_multiple_of(SWEEP_EVERY) {
        let reach_ns = seconds_ns(state.rule.reach_seconds());
        let now_ns = event.timestamp_ns;
        state.groups.retain(|_, group| {
            group.newest_ns > now_ns.saturating_sub(reach_ns) || group.quiet_until_ns > now_ns
        });
    }
    if !state.groups.contains_key(&key) && state.groups.len() >= ALERT_GROUPS_PER_RULE_MAX {
        *groups_refused += 1;
        return None;
    }
    let group = state.groups.entry(key.clone()).or_default();
    if event.timestamp_ns <= group.newest_ns.saturating_sub(window_ns) {
        return None; // older than the window already: it cannot count.
    }
    group.newest_ns = group.newest_ns.max(event.timestamp_ns);
    let start_ns = group.newest_ns.saturating_sub(window_ns);
    while group
        .entries
        .front()
        .is_some_and(|(timestamp_ns, _, _)| *timestamp_ns <= start_ns)
        || group.entries.len() >= ALERT_WINDOW_EVENTS_MAX
    {
        let (_, value, _) = group.entries.pop_front().expect("checked");
        group.value -= value;
    }
    if group.entries.is_empty() {
        group.value = 0.0; // no drift carried from one burst to the next
    }
    group
        .entries
        .push_back((event.timestamp_ns, value, stored.seq));
    group.value += value;
    group.recent.push_back((stored.seq, event.event_id.clone()));
    if group.recent.len() > ALERT_CONTRIBUTING_EVENTS_MAX {
        group.recent.pop_front();
    }
    if mode == Mode::Replay
        || group.value <= *threshold
        || event.timestamp_ns < group.quiet_until_ns
    {
        return None;
    }
    let (window_from_ns, _, first_seq) = *group.entries.front().expect("just pushed");
    let contributing = group
        .recent
        .iter()
        .filter(|(seq, _)| *seq >= first_seq)
        .map(|(_, event_id)| event_id.clone())
        .collect();
    let alert = Alert {
        rule: state.rule.clone(),
        group: key,
        trigger: stored.clone(),
        window_from_ns,
        value: group.value,
        limit: *threshold,
        first_seq,
        contributing,
        baseline: None,
    };
    // A firing empties the window: no event counts towards two alerts.
    group.entries.clear();
    group.recent.clear();
    group.value = 0.0;
    group.quiet_until_ns = event.timestamp_ns + seconds_ns(*cooldown_seconds);
    Some(alert)
}

fn observe_baseline(state: &mut RuleState, stored: &StoredEvent, mode: Mode) -> Option<Alert> {
    let event = &stored.event;
    let day = event.timestamp_ns.div_euclid(DAY_NS);
    if state.days.len() >= ALERT_GROUPS_PER_RULE_MAX && !state.days.contains_key(&event.actor_id) {
        state.days.retain(|_, known| known.day >= day);
    }
    let known = actor_day(&mut state.days, &event.actor_id, day);
    known.count += 1;
    let (limit, mean, deviation) = known.limit?;
    if mode == Mode::Replay || known.fired || known.count as f64 <= limit {
        return None;
    }
    known.fired = true;
    Some(Alert {
        rule: state.rule.clone(),
        group: event.actor_id.clone(),
        trigger: stored.clone(),
        window_from_ns: day * DAY_NS,
        value: known.count as f64,
        limit,
        first_seq: stored.seq,
        contributing: vec![event.event_id.clone()],
        baseline: Some((mean, deviation)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::default_rules;
    use sealtrail_model::Outcome;

    const SECOND: i64 = 1_000_000_000;

    fn stored(seq: u64, action: &str, actor: &str, outcome: Outcome, at_s: i64) -> StoredEvent {
        StoredEvent {
            event: Event {
                event_id: format!("e{seq}"),
                timestamp_ns: 1_800_000_000 * SECOND + at_s * SECOND,
                tenant_id: "acme".into(),
                actor_id: actor.into(),
                actor_type: ActorType::Human,
                action: action.into(),
                resource_type: "session".into(),
                resource_id: None,
                outcome,
                ip_address: None,
                user_agent: None,
                request_id: None,
                changes: None,
                metadata: None,
            },
            seq,
            received_at_ns: 0,
            prev_hash: [0; 32],
            event_hash: [0; 32],
        }
    }

    /// The alert as the server stores it: validated, stamped later than its trigger.
    fn alert_event(alert: &Alert, seq: u64) -> StoredEvent {
        let submitted = sealtrail_model::validate_event(
            alert.to_json(),
            alert.trigger.event.timestamp_ns + SECOND,
        )
        .unwrap();
        let pending =
            submitted.complete(alert.trigger.event.timestamp_ns + SECOND, || unreachable!());
        StoredEvent {
            event: pending.event,
            seq,
            received_at_ns: 0,
            prev_hash: [0; 32],
            event_hash: [0; 32],
        }
    }

    fn failed_login(seq: u64, actor: &str, at_s: i64) -> StoredEvent {
        stored(seq, "login", actor, Outcome::Failure, at_s)
    }

    #[test]
    fn brute_force_fires_above_five_once_per_window() {
        let mut alerts = TenantAlerts::new(default_rules());
        for seq in 1..=5 {
            assert!(alerts
                .observe(&failed_login(seq, "mallory", seq as i64), Mode::Live)
                .is_empty());
        }
        // Another actor's failures and mallory's successes never count.
        assert!(alerts
            .observe(&failed_login(6, "alice", 6), Mode::Live)
            .is_empty());
        assert!(alerts
            .observe(
                &stored(7, "login", "mallory", Outcome::Success, 7),
                Mode::Live
            )
            .is_empty());
        let fired = alerts.observe(&failed_login(8, "mallory", 8), Mode::Live);
        assert_eq!(fired.len(), 1);
        let alert = &fired[0];
        assert_eq!(
            (alert.rule.name.as_str(), alert.group.as_str()),
            ("brute-force", "mallory")
        );
        assert_eq!(alert.value, 6.0);
        assert_eq!(alert.contributing, ["e1", "e2", "e3", "e4", "e5", "e8"]);
        let event = alert_event(alert, 99);
        assert!(is_alert(&event.event));
        assert_eq!(event.event.event_id, alert.event_id());
        // Six more inside the cool-down do not fire; after it, the next six do.
        for seq in 9..=14 {
            assert!(alerts
                .observe(&failed_login(seq, "mallory", 10), Mode::Live)
                .is_empty());
        }
        let later = alerts.observe(&failed_login(15, "mallory", 8 + 300), Mode::Live);
        assert_eq!(
            later.len(),
            1,
            "the cool-down is over and 7 failures are in the window"
        );
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_fire() {
        let mut alerts = TenantAlerts::new(default_rules());
        for seq in 1..=50 {
            // One failure a minute: at most five in any five minutes.
            let fired = alerts.observe(&failed_login(seq, "bob", seq as i64 * 61), Mode::Live);
            assert!(fired.is_empty(), "seq {seq}");
        }
    }

    #[test]
    fn a_burst_spanning_a_restart_fires_once() {
        let events: Vec<StoredEvent> = (1..=12)
            .map(|seq| failed_login(seq, "eve", seq as i64))
            .collect();
        let mut before = TenantAlerts::new(default_rules());
        let mut raised = Vec::new();
        for event in &events[..8] {
            raised.extend(before.observe(event, Mode::Live));
        }
        assert_eq!(raised.len(), 1);
        let alert_event = alert_event(&raised[0], 9);
        // Restart after seq 9 (the alert) with the cursor at 9: seq 1-9 are replayed.
        let mut after = TenantAlerts::new(default_rules());
        for event in events[..8].iter().chain([&alert_event]) {
            assert!(after.observe(event, Mode::Replay).is_empty());
        }
        // Four more failures inside the cool-down: nothing; the same alert is never raised.
        for event in &events[8..] {
            assert!(after.observe(event, Mode::Live).is_empty());
        }
        // A restart in the middle of a burst (five before, three after) fires once.
        let mut split = TenantAlerts::new(default_rules());
        for event in &events[..5] {
            assert!(split.observe(event, Mode::Replay).is_empty());
        }
        let fired: Vec<Alert> = events[5..8]
            .iter()
            .flat_map(|event| split.observe(event, Mode::Live))
            .collect();
        assert_eq!(fired.len(), 1);
        assert_eq!(
            fired[0].event_id(),
            raised[0].event_id(),
            "the same alert, the same id"
        );
    }

    #[test]
    fn sums_and_metadata_groups() {
        let mut alerts = TenantAlerts::new(default_rules());
        let export = |seq: u64, bytes: u64| {
            let mut event = stored(seq, "export", "carol", Outcome::Success, seq as i64);
            event.event.metadata = Some(format!(r#"{{"bytes":{bytes}}}"#));
            event
        };
        assert!(alerts
            .observe(&export(1, 60_000_000), Mode::Live)
            .is_empty());
        assert!(
            alerts
                .observe(&export(2, 40_000_000), Mode::Live)
                .is_empty(),
            "exactly at"
        );
        let fired = alerts.observe(&export(3, 1), Mode::Live);
        assert_eq!(fired[0].value, 100_000_001.0);
        let mut keyed = TenantAlerts::new(default_rules());
        let mut fired = Vec::new();
        for seq in 1..=601 {
            let mut event = stored(seq, "read", "svc", Outcome::Success, 0);
            event.event.metadata = Some(r#"{"api_key_id":"k1"}"#.into());
            fired.extend(keyed.observe(&event, Mode::Live));
            assert_eq!(fired.len(), usize::from(seq == 601), "seq {seq}");
        }
        assert_eq!(fired[0].group, "k1");
        assert_eq!(fired[0].contributing.len(), ALERT_CONTRIBUTING_EVENTS_MAX);
    }

    #[test]
    fn a_baseline_fires_once_a_day_above_mean_plus_deviations() {
        let rule = AlertRule::from_json(&json!({
            "name": "unusual-exports", "kind": "baseline", "match": {"action": "export"},
            "deviations": 2, "baseline_days": 4, "min_count": 3
        }))
        .unwrap();
        let mut alerts = TenantAlerts::new(vec![rule]);
        let first = stored(1, "export", "dave", Outcome::Success, 0);
        let wanted = alerts.baseline_wanted(&first.event);
        assert_eq!(wanted.len(), 1);
        assert_eq!(wanted[0].days, 4);
        // History 2, 4, 2, 4: mean 3, deviation 1, limit 5.
        alerts.set_baseline("unusual-exports", "dave", wanted[0].day, &[2, 4, 2, 4]);
        assert!(alerts.baseline_wanted(&first.event).is_empty());
        let mut fired = Vec::new();
        for seq in 1..=8 {
            fired.extend(alerts.observe(
                &stored(seq, "export", "dave", Outcome::Success, seq as i64),
                Mode::Live,
            ));
            assert_eq!(fired.len(), usize::from(seq >= 6), "seq {seq}");
        }
        assert_eq!(fired[0].limit, 5.0);
        assert_eq!(fired[0].baseline, Some((3.0, 1.0)));
    }
}
