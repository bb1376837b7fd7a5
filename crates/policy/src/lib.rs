//! Capture policy: which class each event belongs to, whether it is kept, and how durable its
//! acknowledgement must be. Pure: no IO, no clock, so every decision is recomputed from the
//! documents alone (docs/FORMAT.md, "Sampling").
//!
//! A [`Policy`] holds rules matched in order (the first match gives the class, else
//! `default_class`), a keep rate per class, and the default durability of classes 1-3. Class 0
//! is always kept and always acknowledged after a durable commit: no policy can say otherwise.
//!
//! Sampling is deterministic on the event's `request_id` (its `event_id` when it has none): one
//! request's events of one class are kept or dropped together, and a request kept at a lower
//! rate is kept at every higher one, because the decision compares one point per request
//! ([`sampling_point`]) with each class's rate.

use sealtrail_model::limits::{POLICY_MATCH_CHARS_MAX, POLICY_RULES_MAX};
use sealtrail_model::{ActorType, Event, FieldError, Outcome};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Event classes: 0 (always kept) to 3.
pub const CLASSES: usize = 4;
/// Rates are decided in parts per million: a rate `r` keeps a point `p` when
/// `p < round(r * RATE_SCALE)`.
pub const RATE_SCALE: u32 = 1_000_000;
/// The domain separator hashed before the sampling key.
pub const SAMPLING_DOMAIN: &[u8] = b"sealtrail-sampling-v1\n";
/// The keep rates of `sampling = "recommended"`: the practice's 100% / 50% / 10% / 1%.
pub const RECOMMENDED_RATES: [f64; CLASSES] = [1.0, 0.5, 0.1, 0.01];

/// How durable an acknowledgement must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After a durable commit (201).
    Sync,
    /// After the event is spooled (202).
    Async,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Sync => "sync",
            Durability::Async => "async",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "sync" => Some(Durability::Sync),
            "async" => Some(Durability::Async),
            _ => None,
        }
    }
}

/// One rule: every member present must match; the class it gives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub class: u8,
    pub action: Option<String>,
    pub action_prefix: Option<String>,
    pub resource_type: Option<String>,
    pub actor_type: Option<ActorType>,
    pub outcome: Option<Outcome>,
}

impl Rule {
    fn matches(&self, event: &Event) -> bool {
        self.action
            .as_ref()
            .is_none_or(|action| *action == event.action)
            && self
                .action_prefix
                .as_ref()
                .is_none_or(|prefix| event.action.starts_with(prefix.as_str()))
            && self
                .resource_type
                .as_ref()
                .is_none_or(|resource_type| *resource_type == event.resource_type)
            && self
                .actor_type
                .is_none_or(|actor_type| actor_type == event.actor_type)
            && self.outcome.is_none_or(|outcome| outcome == event.outcome)
    }

    fn action(class: u8, action: &str) -> Self {
        Rule {
            class,
            action: Some(action.to_owned()),
            ..Rule::default()
        }
    }

    fn action_prefix(class: u8, prefix: &str) -> Self {
        Rule {
            class,
            action_prefix: Some(prefix.to_owned()),
            ..Rule::default()
        }
    }
}

/// Which of the shipped keep rates a deployment starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// Every class kept at 1.0: an audit product drops nothing out of the box.
    Off,
    /// [`RECOMMENDED_RATES`].
    Recommended,
}

/// What the policy decided for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub class: u8,
    pub kept: bool,
}

/// A tenant's capture policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub default_class: u8,
    /// Keep rate per class, in parts per [`RATE_SCALE`]; class 0's is always `RATE_SCALE`.
    rates_ppm: [u32; CLASSES],
    pub rules: Vec<Rule>,
    /// How classes 1-3 are acknowledged when a request does not say.
    pub default_durability: Durability,
}

impl Policy {
    /// The shipped policy: the practice's classification with the seed's verbs, anything else
    /// class 0, at the given rates, acknowledged after a durable commit.
    pub fn shipped(sampling: Sampling) -> Self {
        let mut rules = Vec::new();
        for action in [
            "login",
            "logout",
            "password_change",
            "role_assign",
            "permission_grant",
            "api_key_create",
            "api_key_rotate",
            "config_change",
            "delete",
            "export",
        ] {
            rules.push(Rule::action(0, action));
        }
        for prefix in ["auth.", "admin.", "security."] {
            rules.push(Rule::action_prefix(0, prefix));
        }
        for (class, actions) in [
            (1, &["create", "update"][..]),
            (2, &["read", "view", "list", "search", "navigate"][..]),
            (
                3,
                &["heartbeat", "health_check", "poll", "asset_request"][..],
            ),
        ] {
            rules.extend(actions.iter().map(|action| Rule::action(class, action)));
        }
        let rates = match sampling {
            Sampling::Off => [1.0; CLASSES],
            Sampling::Recommended => RECOMMENDED_RATES,
        };
        Policy {
            default_class: 0,
            rates_ppm: rates.map(rate_to_ppm),
            rules,
            default_durability: Durability::Sync,
        }
    }

    /// The class of `event`: the first matching rule's, else `default_class`.
    pub fn classify(&self, event: &Event) -> u8 {
        self.rules
            .iter()
            .find(|rule| rule.matches(event))
            .map_or(self.default_class, |rule| rule.class)
    }

    /// The keep rate of `class`, in parts per [`RATE_SCALE`].
    pub fn rate_ppm(&self, class: u8) -> u32 {
        self.rates_ppm[usize::from(class)]
    }

    /// Classifies `event` and decides whether it is kept.
    pub fn decide(&self, event: &Event) -> Decision {
        let class = self.classify(event);
        let kept = class == 0 || sampling_point(sampling_key(event)) < self.rate_ppm(class);
        Decision { class, kept }
    }

    /// The durability a request's acknowledgement needs: the strictest of what it asked (or
    /// the default) and its kept events' classes (class 0 is always sync).
    pub fn durability(
        &self,
        asked: Option<Durability>,
        classes: impl IntoIterator<Item = u8>,
    ) -> Durability {
        let mut classes = classes.into_iter();
        if classes.any(|class| class == 0) {
            return Durability::Sync;
        }
        asked.unwrap_or(self.default_durability)
    }

    /// Reads the wire shape of `PUT /v1/tenants/{t}/policy` (`/openapi.json`). Every member is
    /// optional: missing rates are 1.0, a missing `default_class` is 0, missing rules are none.
    /// Every problem is reported with the field it concerns. Rates are kept to parts per million.
    pub fn from_json(value: &Value) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let Some(object) = value.as_object() else {
            return Err(vec![FieldError::new("policy", "must be a JSON object")]);
        };
        let mut policy = Policy {
            default_class: 0,
            rates_ppm: [RATE_SCALE; CLASSES],
            rules: Vec::new(),
            default_durability: Durability::Sync,
        };
        for (name, member) in object {
            match name.as_str() {
                "default_class" => match class_of(member) {
                    Ok(class) => policy.default_class = class,
                    Err(reason) => errors.push(FieldError::new("default_class", reason)),
                },
                "rates" => read_rates(member, &mut policy.rates_ppm, &mut errors),
                "rules" => policy.rules = read_rules(member, &mut errors),
                "default_durability" => match member.as_str().and_then(Durability::parse) {
                    Some(durability) => policy.default_durability = durability,
                    None => errors.push(FieldError::new(
                        "default_durability",
                        "must be \"sync\" or \"async\"",
                    )),
                },
                other => errors.push(FieldError::new(other, "unknown member")),
            }
        }
        if errors.is_empty() {
            Ok(policy)
        } else {
            Err(errors)
        }
    }

    /// The wire shape: every member, every class's rate.
    pub fn to_json(&self) -> Value {
        let rates: Map<String, Value> = (0..CLASSES)
            .map(|class| {
                let rate = f64::from(self.rates_ppm[class]) / f64::from(RATE_SCALE);
                (class.to_string(), json!(rate))
            })
            .collect();
        let rules: Vec<Value> = self
            .rules
            .iter()
            .map(|rule| {
                let mut object = Map::new();
                object.insert("class".into(), json!(rule.class));
                let members = [
                    ("action", rule.action.as_deref()),
                    ("action_prefix", rule.action_prefix.as_deref()),
                    ("resource_type", rule.resource_type.as_deref()),
                    ("actor_type", rule.actor_type.map(ActorType::as_str)),
                    ("outcome", rule.outcome.map(Outcome::as_str)),
                ];
                for (name, member) in members {
                    if let Some(member) = member {
                        object.insert(name.into(), json!(member));
                    }
                }
                Value::Object(object)
            })
            .collect();
        json!({
            "default_class": self.default_class,
            "rates": rates,
            "rules": rules,
            "default_durability": self.default_durability.as_str(),
        })
    }
}

/// What sampling hashes: `request_id`, else `event_id`.
pub fn sampling_key(event: &Event) -> &str {
    event.request_id.as_deref().unwrap_or(&event.event_id)
}

/// The point in `[0, RATE_SCALE)` a sampling key falls on: the first 8 bytes of
/// `SHA-256(SAMPLING_DOMAIN || key)` as a big-endian integer, modulo [`RATE_SCALE`].
pub fn sampling_point(key: &str) -> u32 {
    let digest = Sha256::new()
        .chain_update(SAMPLING_DOMAIN)
        .chain_update(key.as_bytes())
        .finalize();
    let head = u64::from_be_bytes(
        digest[..8]
            .try_into()
            .expect("a SHA-256 digest has 8 bytes"),
    );
    (head % u64::from(RATE_SCALE)) as u32
}

/// A rate in [0, 1] as parts per [`RATE_SCALE`], rounded to the nearest.
pub fn rate_to_ppm(rate: f64) -> u32 {
    (rate * f64::from(RATE_SCALE)).round() as u32
}

/// A class: an integer from 0 to 3 (JSON's `1.0` is the integer 1, as JSON Schema counts it).
fn class_of(value: &Value) -> Result<u8, &'static str> {
    match value.as_f64() {
        Some(class) if class.fract() == 0.0 && (0.0..CLASSES as f64).contains(&class) => {
            Ok(class as u8)
        }
        _ => Err("must be an integer from 0 to 3"),
    }
}

/// Whether `text` can be matched against an `action` or a `resource_type`.
fn is_match_text(text: &str) -> bool {
    (1..=POLICY_MATCH_CHARS_MAX).contains(&text.len())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"_.:-".contains(&byte))
}

fn read_rates(value: &Value, rates: &mut [u32; CLASSES], errors: &mut Vec<FieldError>) {
    let Some(object) = value.as_object() else {
        errors.push(FieldError::new(
            "rates",
            "must be an object of class (\"0\" to \"3\") to rate",
        ));
        return;
    };
    for (name, rate) in object {
        let field = format!("rates.{name}");
        let class = match name.as_str() {
            "0" => 0,
            "1" => 1,
            "2" => 2,
            "3" => 3,
            _ => {
                errors.push(FieldError::new(
                    &field,
                    "is not a class; classes are \"0\" to \"3\"",
                ));
                continue;
            }
        };
        match rate.as_f64() {
            Some(rate) if (0.0..=1.0).contains(&rate) => {
                if class == 0 && rate != 1.0 {
                    errors.push(FieldError::new(
                        &field,
                        "class 0 is always kept: its rate must be 1.0",
                    ));
                } else {
                    rates[class] = rate_to_ppm(rate);
                }
            }
            _ => errors.push(FieldError::new(&field, "must be a number from 0 to 1")),
        }
    }
}

fn read_rules(value: &Value, errors: &mut Vec<FieldError>) -> Vec<Rule> {
    let Some(items) = value.as_array() else {
        errors.push(FieldError::new("rules", "must be an array of rules"));
        return Vec::new();
    };
    if items.len() > POLICY_RULES_MAX {
        errors.push(FieldError::new(
            "rules",
            format!(
                "holds {} rules; at most {POLICY_RULES_MAX} are allowed",
                items.len()
            ),
        ));
        return Vec::new();
    }
    let mut rules = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let field = |name: &str| format!("rules[{index}].{name}");
        let Some(object) = item.as_object() else {
            errors.push(FieldError::new(
                &format!("rules[{index}]"),
                "must be an object",
            ));
            continue;
        };
        let mut rule = Rule::default();
        let mut has_class = false;
        let text = |name: &str, member: &Value, errors: &mut Vec<FieldError>| match member.as_str()
        {
            // `action` and `resource_type` are made of these characters (event format v1), so
            // a rule with any other could never match.
            Some(text) if is_match_text(text) => Some(text.to_owned()),
            _ => {
                errors.push(FieldError::new(
                    &field(name),
                    format!(
                        "must be 1 to {POLICY_MATCH_CHARS_MAX} of A-Z a-z 0-9 _ . : - (the characters of action and resource_type)"
                    ),
                ));
                None
            }
        };
        for (name, member) in object {
            match name.as_str() {
                "class" => match class_of(member) {
                    Ok(class) => {
                        rule.class = class;
                        has_class = true;
                    }
                    Err(reason) => errors.push(FieldError::new(&field("class"), reason)),
                },
                "action" => rule.action = text(name, member, errors),
                "action_prefix" => rule.action_prefix = text(name, member, errors),
                "resource_type" => rule.resource_type = text(name, member, errors),
                "actor_type" => match member.as_str().and_then(ActorType::parse) {
                    Some(actor_type) => rule.actor_type = Some(actor_type),
                    None => errors.push(FieldError::new(
                        &field(name),
                        "must be \"human\", \"service\" or \"system\"",
                    )),
                },
                "outcome" => match member.as_str().and_then(Outcome::parse) {
                    Some(outcome) => rule.outcome = Some(outcome),
                    None => errors.push(FieldError::new(
                        &field(name),
                        "must be \"success\" or \"failure\"",
                    )),
                },
                other => errors.push(FieldError::new(&field(other), "unknown member")),
            }
        }
        if !has_class && !object.contains_key("class") {
            errors.push(FieldError::new(&field("class"), "is required"));
        }
        rules.push(rule);
    }
    rules
}
