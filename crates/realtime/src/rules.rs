//! Alert rules: what a rule matches, how it groups and aggregates, when it fires; their wire
//! shape (`/v1/tenants/{t}/alert-rules`, read with every problem named by field) and the
//! practice's defaults every tenant starts with.
//!
//! Two kinds:
//! - **threshold**: per group, the `count` (or the `sum` of a numeric `metadata` path) of the
//!   matching events whose `timestamp` lies in the sliding window ending at the newest one;
//!   fires when the value exceeds `threshold`, then that group's window starts empty again
//!   and the group stays quiet for `cooldown_seconds`;
//! - **baseline**: per actor, today's (UTC) count of the matching events against the mean plus
//!   `deviations` standard deviations of the actor's daily counts over the previous
//!   `baseline_days` (from the per-actor daily summaries); fires at most once per actor and day,
//!   and never below `min_count`.

use sealtrail_model::limits::{
    ALERT_BASELINE_DAYS_MAX, ALERT_DEVIATIONS_MAX, ALERT_MIN_COUNT_MAX, ALERT_RULES_PER_TENANT_MAX,
    ALERT_RULE_MATCH_VALUES_MAX, ALERT_RULE_NAME_CHARS_MAX, ALERT_THRESHOLD_MAX,
    ALERT_WINDOW_SECONDS_MAX, POLICY_MATCH_CHARS_MAX,
};
use sealtrail_model::{ActorType, Event, FieldError, Outcome};
use serde_json::{json, Map, Value};

/// Which events a rule looks at: every member present must match; `action` and
/// `action_prefix` together match an event that either admits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleMatch {
    pub actions: Vec<String>,
    pub action_prefixes: Vec<String>,
    pub outcome: Option<Outcome>,
    pub resource_type: Option<String>,
    pub actor_type: Option<ActorType>,
}

impl RuleMatch {
    pub fn matches(&self, event: &Event) -> bool {
        self.matches_summary(&event.action, &event.resource_type)
            && self.outcome.is_none_or(|outcome| outcome == event.outcome)
            && self
                .actor_type
                .is_none_or(|actor_type| actor_type == event.actor_type)
    }

    /// Whether a summary row of this action and resource type counts events this matcher
    /// admits (exact for a baseline rule, which matches on nothing else).
    pub fn matches_summary(&self, action: &str, resource_type: &str) -> bool {
        let by_action = (self.actions.is_empty() && self.action_prefixes.is_empty())
            || self.actions.iter().any(|known| known == action)
            || self
                .action_prefixes
                .iter()
                .any(|prefix| action.starts_with(prefix.as_str()));
        by_action
            && self
                .resource_type
                .as_ref()
                .is_none_or(|known| known == resource_type)
    }
}

/// The field a threshold rule keeps one window per value of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    ActorId,
    IpAddress,
    ResourceId,
    /// A path inside `metadata` (`metadata.api_key_id` is `["api_key_id"]`).
    Metadata(Vec<String>),
}

impl GroupBy {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "actor_id" => Some(GroupBy::ActorId),
            "ip_address" => Some(GroupBy::IpAddress),
            "resource_id" => Some(GroupBy::ResourceId),
            _ => metadata_path(text).map(GroupBy::Metadata),
        }
    }

    fn to_text(&self) -> String {
        match self {
            GroupBy::ActorId => "actor_id".into(),
            GroupBy::IpAddress => "ip_address".into(),
            GroupBy::ResourceId => "resource_id".into(),
            GroupBy::Metadata(path) => format!("metadata.{}", path.join(".")),
        }
    }

    /// The event's group, or `None` when it has no value there (the event is not counted).
    /// A non-string metadata value groups by its JSON text.
    pub fn value_of(&self, event: &Event) -> Option<String> {
        match self {
            GroupBy::ActorId => Some(event.actor_id.clone()),
            GroupBy::IpAddress => event.ip_address.clone(),
            GroupBy::ResourceId => event.resource_id.clone(),
            GroupBy::Metadata(path) => match metadata_value(event, path)? {
                Value::String(text) => Some(text),
                Value::Null => None,
                other => Some(other.to_string()),
            },
        }
    }
}

/// What a threshold rule adds up per event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aggregate {
    Count,
    /// The sum of a numeric path inside `metadata`; an event without a number there is not
    /// counted.
    Sum(Vec<String>),
}

impl Aggregate {
    /// The event's contribution, or `None` when it has none.
    pub fn value_of(&self, event: &Event) -> Option<f64> {
        match self {
            Aggregate::Count => Some(1.0),
            Aggregate::Sum(path) => metadata_value(event, path)?.as_f64(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    Threshold {
        group_by: GroupBy,
        window_seconds: u64,
        aggregate: Aggregate,
        threshold: f64,
        cooldown_seconds: u64,
    },
    Baseline {
        deviations: f64,
        baseline_days: u32,
        min_count: u64,
    },
}

/// One alert rule of a tenant. Names are unique within a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub name: String,
    pub matcher: RuleMatch,
    pub kind: RuleKind,
}

/// The practice's defaults: brute force, bulk export, a burst of administrative changes, and
/// API key abuse. Every tenant starts with them until it sets rules of its own.
pub fn default_rules() -> Vec<AlertRule> {
    let actions = |list: &[&str]| list.iter().map(|action| (*action).to_owned()).collect();
    let threshold =
        |name: &str, matcher, group_by, window_seconds, aggregate, threshold| AlertRule {
            name: name.to_owned(),
            matcher,
            kind: RuleKind::Threshold {
                group_by,
                window_seconds,
                aggregate,
                threshold,
                cooldown_seconds: window_seconds,
            },
        };
    vec![
        threshold(
            "brute-force",
            RuleMatch {
                actions: actions(&["login"]),
                outcome: Some(Outcome::Failure),
                ..RuleMatch::default()
            },
            GroupBy::ActorId,
            300,
            Aggregate::Count,
            5.0,
        ),
        threshold(
            "bulk-export",
            RuleMatch {
                actions: actions(&["export"]),
                ..RuleMatch::default()
            },
            GroupBy::ActorId,
            3_600,
            Aggregate::Sum(vec!["bytes".into()]),
            100_000_000.0,
        ),
        threshold(
            "admin-burst",
            RuleMatch {
                actions: actions(&[
                    "role_assign",
                    "permission_grant",
                    "api_key_create",
                    "api_key_rotate",
                    "config_change",
                ]),
                action_prefixes: actions(&["admin."]),
                ..RuleMatch::default()
            },
            GroupBy::ActorId,
            600,
            Aggregate::Count,
            10.0,
        ),
        threshold(
            "api-key-rate",
            RuleMatch::default(),
            GroupBy::Metadata(vec!["api_key_id".into()]),
            60,
            Aggregate::Count,
            600.0,
        ),
    ]
}

impl AlertRule {
    /// The longest time back this rule's state reaches: its window, or a whole day for a
    /// baseline (today's count).
    pub fn reach_seconds(&self) -> u64 {
        match &self.kind {
            RuleKind::Threshold {
                window_seconds,
                cooldown_seconds,
                ..
            } => (*window_seconds).max(*cooldown_seconds),
            RuleKind::Baseline { .. } => 86_400,
        }
    }

    /// Reads one rule in the wire shape; every problem names its field (`rule.match.action`).
    pub fn from_json(value: &Value) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let Some(object) = value.as_object() else {
            return Err(vec![FieldError::new("rule", "must be a JSON object")]);
        };
        for name in object.keys() {
            if !KNOWN_MEMBERS.contains(&name.as_str()) {
                errors.push(FieldError::new(name, "unknown member"));
            }
        }
        let name = match object.get("name").and_then(Value::as_str) {
            Some(name) if valid_name(name) => name.to_owned(),
            _ => {
                errors.push(FieldError::new(
                    "name",
                    format!(
                        "required: 1 to {ALERT_RULE_NAME_CHARS_MAX} of a-z, A-Z, 0-9, '.', '_', '-'"
                    ),
                ));
                String::new()
            }
        };
        let matcher = match object.get("match") {
            None => RuleMatch::default(),
            Some(member) => read_match(member, &mut errors),
        };
        let kind = match object.get("kind").map(Value::as_str) {
            None | Some(Some("threshold")) => read_threshold(object, &mut errors),
            Some(Some("baseline")) => read_baseline(object, &matcher, &mut errors),
            Some(_) => {
                errors.push(FieldError::new(
                    "kind",
                    "must be \"threshold\" or \"baseline\"",
                ));
                None
            }
        };
        match kind {
            Some(kind) if errors.is_empty() => Ok(AlertRule {
                name,
                matcher,
                kind,
            }),
            _ => Err(errors),
        }
    }

    /// The wire shape, every member present.
    pub fn to_json(&self) -> Value {
        let mut matcher = Map::new();
        if !self.matcher.actions.is_empty() {
            matcher.insert("action".into(), json!(self.matcher.actions));
        }
        if !self.matcher.action_prefixes.is_empty() {
            matcher.insert("action_prefix".into(), json!(self.matcher.action_prefixes));
        }
        if let Some(outcome) = self.matcher.outcome {
            matcher.insert("outcome".into(), json!(outcome.as_str()));
        }
        if let Some(resource_type) = &self.matcher.resource_type {
            matcher.insert("resource_type".into(), json!(resource_type));
        }
        if let Some(actor_type) = self.matcher.actor_type {
            matcher.insert("actor_type".into(), json!(actor_type.as_str()));
        }
        match &self.kind {
            RuleKind::Threshold {
                group_by,
                window_seconds,
                aggregate,
                threshold,
                cooldown_seconds,
            } => json!({
                "name": self.name,
                "kind": "threshold",
                "match": matcher,
                "group_by": group_by.to_text(),
                "window_seconds": window_seconds,
                "aggregate": match aggregate {
                    Aggregate::Count => json!("count"),
                    Aggregate::Sum(path) => json!({"sum": format!("metadata.{}", path.join("."))}),
                },
                "threshold": threshold,
                "cooldown_seconds": cooldown_seconds,
            }),
            RuleKind::Baseline {
                deviations,
                baseline_days,
                min_count,
            } => json!({
                "name": self.name,
                "kind": "baseline",
                "match": matcher,
                "group_by": "actor_id",
                "deviations": deviations,
                "baseline_days": baseline_days,
                "min_count": min_count,
            }),
        }
    }
}

/// Reads a tenant's whole rule list (as stored), refusing duplicate names and more than
/// [`ALERT_RULES_PER_TENANT_MAX`] rules.
pub fn rules_from_json(value: &Value) -> Result<Vec<AlertRule>, Vec<FieldError>> {
    let Some(list) = value.as_array() else {
        return Err(vec![FieldError::new("rules", "must be an array")]);
    };
    check_rule_count(list.len())?;
    let mut rules: Vec<AlertRule> = Vec::with_capacity(list.len());
    let mut errors = Vec::new();
    for (index, member) in list.iter().enumerate() {
        match AlertRule::from_json(member) {
            Ok(rule) if rules.iter().any(|other| other.name == rule.name) => errors.push(
                FieldError::new(&format!("rules[{index}].name"), "repeats another rule's"),
            ),
            Ok(rule) => rules.push(rule),
            Err(found) => errors.extend(found.into_iter().map(|error| {
                FieldError::new(&format!("rules[{index}].{}", error.field), error.reason)
            })),
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// Refuses a rule list longer than [`ALERT_RULES_PER_TENANT_MAX`].
pub fn check_rule_count(count: usize) -> Result<(), Vec<FieldError>> {
    if count > ALERT_RULES_PER_TENANT_MAX {
        return Err(vec![FieldError::new(
            "rules",
            format!("a tenant has at most {ALERT_RULES_PER_TENANT_MAX} alert rules"),
        )]);
    }
    Ok(())
}

const KNOWN_MEMBERS: &[&str] = &[
    "name",
    "kind",
    "match",
    "group_by",
    "window_seconds",
    "aggregate",
    "threshold",
    "cooldown_seconds",
    "deviations",
    "baseline_days",
    "min_count",
];

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= ALERT_RULE_NAME_CHARS_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `metadata.a.b` → `["a", "b"]`: at most [`POLICY_MATCH_CHARS_MAX`] characters in all, each
/// part of `A-Z a-z 0-9 _ -` (`/openapi.json` publishes the same pattern).
fn metadata_path(text: &str) -> Option<Vec<String>> {
    let path = text.strip_prefix("metadata.")?;
    let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
    let valid = |part: &String| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    };
    (text.len() <= POLICY_MATCH_CHARS_MAX && parts.iter().all(valid)).then_some(parts)
}

/// A name an event's `action` or `resource_type` can hold: 1 to [`POLICY_MATCH_CHARS_MAX`] of
/// `A-Z a-z 0-9 _ . : -`.
fn valid_verb(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= POLICY_MATCH_CHARS_MAX
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

fn metadata_value(event: &Event, path: &[String]) -> Option<Value> {
    let text = event.metadata.as_deref()?;
    let mut value: Value = serde_json::from_str(text).ok()?;
    for part in path {
        value = value.as_object_mut()?.remove(part)?;
    }
    Some(value)
}

fn read_text_list(member: &Value, field: &str, errors: &mut Vec<FieldError>) -> Vec<String> {
    let items: Vec<&Value> = match member {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    if items.is_empty() || items.len() > ALERT_RULE_MATCH_VALUES_MAX {
        errors.push(FieldError::new(
            field,
            format!("a string or 1 to {ALERT_RULE_MATCH_VALUES_MAX} strings"),
        ));
        return Vec::new();
    }
    let mut values = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        match item.as_str() {
            Some(text) if valid_verb(text) => values.push(text.to_owned()),
            _ => errors.push(FieldError::new(
                &format!("{field}[{index}]"),
                format!("must be 1 to {POLICY_MATCH_CHARS_MAX} of A-Z a-z 0-9 _ . : -"),
            )),
        }
    }
    values
}

fn read_match(member: &Value, errors: &mut Vec<FieldError>) -> RuleMatch {
    let mut matcher = RuleMatch::default();
    let Some(object) = member.as_object() else {
        errors.push(FieldError::new("match", "must be a JSON object"));
        return matcher;
    };
    for (name, value) in object {
        let field = format!("match.{name}");
        match name.as_str() {
            "action" => matcher.actions = read_text_list(value, &field, errors),
            "action_prefix" => matcher.action_prefixes = read_text_list(value, &field, errors),
            "outcome" => match value.as_str().and_then(Outcome::parse) {
                Some(outcome) => matcher.outcome = Some(outcome),
                None => errors.push(FieldError::new(
                    &field,
                    "must be \"success\" or \"failure\"",
                )),
            },
            "actor_type" => match value.as_str().and_then(ActorType::parse) {
                Some(actor_type) => matcher.actor_type = Some(actor_type),
                None => errors.push(FieldError::new(
                    &field,
                    "must be \"human\", \"service\" or \"system\"",
                )),
            },
            "resource_type" => match value.as_str() {
                Some(text) if valid_verb(text) => matcher.resource_type = Some(text.to_owned()),
                _ => errors.push(FieldError::new(
                    &field,
                    format!("must be 1 to {POLICY_MATCH_CHARS_MAX} of A-Z a-z 0-9 _ . : -"),
                )),
            },
            _ => errors.push(FieldError::new(&field, "unknown member")),
        }
    }
    matcher
}

/// A JSON number with no fraction (`12` or `12.0`: JSON Schema's integer), up to `max`.
fn whole_number(value: &Value, max: u64) -> Option<u64> {
    let number = match value.as_u64() {
        Some(number) => number,
        None => {
            let float = value.as_f64()?;
            if float.fract() != 0.0 || !(0.0..=max as f64).contains(&float) {
                return None;
            }
            float as u64
        }
    };
    (number <= max).then_some(number)
}

fn read_seconds(
    object: &Map<String, Value>,
    name: &str,
    default: Option<u64>,
    errors: &mut Vec<FieldError>,
) -> u64 {
    match object.get(name) {
        None if default.is_some() => default.unwrap_or_default(),
        Some(value) => match whole_number(value, ALERT_WINDOW_SECONDS_MAX) {
            Some(seconds) if seconds >= 1 => seconds,
            Some(0) if default.is_some() => 0,
            _ => {
                errors.push(FieldError::new(
                    name,
                    format!("must be a whole number of seconds up to {ALERT_WINDOW_SECONDS_MAX}"),
                ));
                0
            }
        },
        None => {
            errors.push(FieldError::new(name, "required"));
            0
        }
    }
}

fn read_threshold(object: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<RuleKind> {
    for name in ["deviations", "baseline_days", "min_count"] {
        if object.contains_key(name) {
            errors.push(FieldError::new(name, "only for \"kind\": \"baseline\""));
        }
    }
    let group_by = match object.get("group_by").and_then(Value::as_str) {
        Some(text) => GroupBy::parse(text),
        None => None,
    };
    if group_by.is_none() {
        errors.push(FieldError::new(
            "group_by",
            "required: actor_id, ip_address, resource_id or metadata.<path>",
        ));
    }
    let window_seconds = read_seconds(object, "window_seconds", None, errors);
    let cooldown_seconds = read_seconds(object, "cooldown_seconds", Some(window_seconds), errors);
    let aggregate = match object.get("aggregate") {
        None => Some(Aggregate::Count),
        Some(Value::String(text)) if text == "count" => Some(Aggregate::Count),
        Some(Value::Object(sum)) if sum.len() == 1 => sum
            .get("sum")
            .and_then(Value::as_str)
            .and_then(metadata_path)
            .map(Aggregate::Sum),
        Some(_) => None,
    };
    if aggregate.is_none() {
        errors.push(FieldError::new(
            "aggregate",
            "must be \"count\" or {\"sum\": \"metadata.<path>\"}",
        ));
    }
    let threshold = match object.get("threshold").and_then(Value::as_f64) {
        Some(threshold) if (0.0..=ALERT_THRESHOLD_MAX).contains(&threshold) => Some(threshold),
        _ => {
            errors.push(FieldError::new(
                "threshold",
                format!(
                    "required: a number from 0 to {ALERT_THRESHOLD_MAX} (the rule fires above it)"
                ),
            ));
            None
        }
    };
    Some(RuleKind::Threshold {
        group_by: group_by?,
        window_seconds,
        aggregate: aggregate?,
        threshold: threshold?,
        cooldown_seconds,
    })
}

fn read_baseline(
    object: &Map<String, Value>,
    matcher: &RuleMatch,
    errors: &mut Vec<FieldError>,
) -> Option<RuleKind> {
    for name in [
        "window_seconds",
        "aggregate",
        "threshold",
        "cooldown_seconds",
    ] {
        if object.contains_key(name) {
            errors.push(FieldError::new(name, "only for \"kind\": \"threshold\""));
        }
    }
    // The baseline comes from the per-actor daily summaries, which count by action and
    // resource type only.
    if matcher.outcome.is_some() || matcher.actor_type.is_some() {
        errors.push(FieldError::new(
            "match",
            "a baseline rule matches on action, action_prefix and resource_type only (what the daily summaries count by)",
        ));
    }
    if object
        .get("group_by")
        .is_some_and(|group_by| group_by.as_str() != Some("actor_id"))
    {
        errors.push(FieldError::new(
            "group_by",
            "a baseline rule groups by actor_id",
        ));
    }
    let deviations = match object.get("deviations").map(Value::as_f64) {
        None => 3.0,
        Some(Some(k)) if (0.0..=ALERT_DEVIATIONS_MAX).contains(&k) => k,
        Some(_) => {
            errors.push(FieldError::new(
                "deviations",
                format!("must be a number from 0 to {ALERT_DEVIATIONS_MAX}"),
            ));
            0.0
        }
    };
    let baseline_days = match object
        .get("baseline_days")
        .map(|value| whole_number(value, u64::from(ALERT_BASELINE_DAYS_MAX)))
    {
        None => 30,
        Some(Some(days)) if days >= 1 => days as u32,
        Some(_) => {
            errors.push(FieldError::new(
                "baseline_days",
                format!("must be 1 to {ALERT_BASELINE_DAYS_MAX}"),
            ));
            0
        }
    };
    let min_count = match object
        .get("min_count")
        .map(|value| whole_number(value, ALERT_MIN_COUNT_MAX))
    {
        None => 10,
        Some(Some(count)) => count,
        Some(_) => {
            errors.push(FieldError::new(
                "min_count",
                format!("must be a whole number up to {ALERT_MIN_COUNT_MAX}"),
            ));
            0
        }
    };
    Some(RuleKind::Baseline {
        deviations,
        baseline_days,
        min_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str, metadata: Option<&str>) -> Event {
        Event {
            event_id: "e".into(),
            timestamp_ns: 0,
            tenant_id: "t".into(),
            actor_id: "alice".into(),
            actor_type: ActorType::Human,
            action: action.into(),
            resource_type: "document".into(),
            resource_id: None,
            outcome: Outcome::Failure,
            ip_address: None,
            user_agent: None,
            request_id: None,
            changes: None,
            metadata: metadata.map(str::to_owned),
        }
    }

    #[test]
    fn the_issue_wire_shapes_read_and_write_back() {
        let brute = json!({"name": "brute-force", "match": {"action": ["login"], "outcome": "failure"}, "group_by": "actor_id", "window_seconds": 300, "aggregate": "count", "threshold": 5, "cooldown_seconds": 300});
        let rule = AlertRule::from_json(&brute).unwrap();
        assert_eq!(rule, default_rules()[0]);
        assert_eq!(AlertRule::from_json(&rule.to_json()).unwrap(), rule);
        let sum = json!({"name": "x", "group_by": "metadata.api_key_id", "window_seconds": 60, "aggregate": {"sum": "metadata.bytes"}, "threshold": 1e8});
        let rule = AlertRule::from_json(&sum).unwrap();
        assert!(
            matches!(&rule.kind, RuleKind::Threshold { aggregate: Aggregate::Sum(path), cooldown_seconds: 60, .. } if path == &["bytes"])
        );
        for rule in default_rules() {
            assert_eq!(AlertRule::from_json(&rule.to_json()).unwrap(), rule);
        }
    }

    #[test]
    fn every_problem_names_its_field() {
        let bad = json!({"name": "", "match": {"outcome": "meh", "colour": 1}, "group_by": "email", "window_seconds": 0, "aggregate": {"avg": "x"}, "threshold": -1, "extra": true});
        let fields: Vec<String> = AlertRule::from_json(&bad)
            .unwrap_err()
            .into_iter()
            .map(|error| error.field)
            .collect();
        for field in [
            "extra",
            "name",
            "match.outcome",
            "match.colour",
            "group_by",
            "window_seconds",
            "aggregate",
            "threshold",
        ] {
            assert!(
                fields.iter().any(|found| found == field),
                "{field} in {fields:?}"
            );
        }
        let baseline = json!({"name": "b", "kind": "baseline", "match": {"outcome": "failure"}, "threshold": 3});
        let fields: Vec<String> = AlertRule::from_json(&baseline)
            .unwrap_err()
            .into_iter()
            .map(|error| error.field)
            .collect();
        assert_eq!(fields, ["threshold", "match"]);
        let twice = json!([default_rules()[0].to_json(), default_rules()[0].to_json()]);
        assert_eq!(
            rules_from_json(&twice).unwrap_err()[0].field,
            "rules[1].name"
        );
    }

    #[test]
    fn whole_numbers_may_be_written_with_a_zero_fraction() {
        let rule =
            json!({"name": "b", "kind": "baseline", "min_count": 12.0, "baseline_days": 7.0});
        let RuleKind::Baseline {
            min_count,
            baseline_days,
            ..
        } = AlertRule::from_json(&rule).unwrap().kind
        else {
            panic!()
        };
        assert_eq!((min_count, baseline_days), (12, 7));
        let fraction = json!({"name": "b", "kind": "baseline", "min_count": 12.5});
        assert_eq!(
            AlertRule::from_json(&fraction).unwrap_err()[0].field,
            "min_count"
        );
    }

    #[test]
    fn matching_grouping_and_sums() {
        let rules = default_rules();
        assert!(rules[0].matcher.matches(&event("login", None)));
        assert!(!rules[0].matcher.matches(&event("logout", None)));
        assert!(rules[2].matcher.matches(&event("admin.user_disable", None)));
        assert!(rules[2].matcher.matches(&event("role_assign", None)));
        assert!(!rules[2].matcher.matches(&event("update", None)));
        let with_key = event("read", Some(r#"{"api_key_id":"k1","bytes":250}"#));
        let RuleKind::Threshold { group_by, .. } = &rules[3].kind else {
            panic!()
        };
        assert_eq!(group_by.value_of(&with_key).as_deref(), Some("k1"));
        assert_eq!(group_by.value_of(&event("read", None)), None);
        let RuleKind::Threshold { aggregate, .. } = &rules[1].kind else {
            panic!()
        };
        assert_eq!(aggregate.value_of(&with_key), Some(250.0));
        assert_eq!(
            aggregate.value_of(&event("export", Some(r#"{"bytes":"x"}"#))),
            None
        );
    }
}
