//! OCSF (Open Cybersecurity Schema Framework, <https://schema.ocsf.io>): an event as one OCSF
//! event of schema [`OCSF_VERSION`], for SIEMs and lakes (Security Lake, Splunk, Sentinel) that
//! normalise on it.
//!
//! Each action maps to a class and an activity by its verb; docs/OCSF.md holds the table and
//! the reasons behind it, and MUST change with [`classify`]. Everything a class has no attribute
//! for goes to `unmapped`, so nothing of the event is lost: in particular `event_hash` and
//! `prev_hash`, which let a SIEM user check the copy against Sealtrail's chain.

use sealtrail_model::{format_timestamp, ActorType, Outcome, Sealed, StoredEvent};
use serde_json::{json, Map, Value};

/// The OCSF schema version the events claim (`metadata.version`) and follow.
pub const OCSF_VERSION: &str = "1.3.0";

/// The product and vendor name in `metadata.product`.
const PRODUCT_NAME: &str = "Sealtrail";
const NANOS_PER_MILLI: i64 = 1_000_000;

/// OCSF's `activity_id` for an activity the class does not enumerate.
const ACTIVITY_OTHER: u32 = 99;
/// Account Change's activities that attach a policy (a role, a permission) to an account or
/// detach one, whose resource is then the policy.
const ACTIVITY_ATTACH_POLICY: u32 = 7;
const ACTIVITY_DETACH_POLICY: u32 = 8;
const ACTIVITY_OTHER_NAME: &str = "Other";

/// Resource types that name an account, so the resource is the account an IAM event acted on.
const ACCOUNT_RESOURCE_TYPES: [&str; 4] = ["user", "account", "service_account", "member"];
/// The resource type that names a login session.
const SESSION_RESOURCE_TYPE: &str = "session";

/// The OCSF classes Sealtrail's events map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// 3001: a change to an account: its password, its policies, its credentials.
    AccountChange,
    /// 3002: a logon or logoff, or another step of authentication.
    Authentication,
    /// 6003: a create, read, update or delete through an application; the default.
    ApiActivity,
}

impl Class {
    fn uid(self) -> u32 {
        match self {
            Class::AccountChange => 3001,
            Class::Authentication => 3002,
            Class::ApiActivity => 6003,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Class::AccountChange => "Account Change",
            Class::Authentication => "Authentication",
            Class::ApiActivity => "API Activity",
        }
    }

    /// `(category_uid, category_name)`.
    fn category(self) -> (u32, &'static str) {
        match self {
            Class::AccountChange | Class::Authentication => (3, "Identity & Access Management"),
            Class::ApiActivity => (6, "Application Activity"),
        }
    }
}

/// What an action means in OCSF: its class and the class's activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Activity {
    class: Class,
    id: u32,
    name: &'static str,
}

impl Activity {
    const fn new(class: Class, id: u32, name: &'static str) -> Self {
        Self { class, id, name }
    }

    const fn other(class: Class) -> Self {
        Self::new(class, ACTIVITY_OTHER, ACTIVITY_OTHER_NAME)
    }

    /// OCSF defines `type_uid` as `class_uid * 100 + activity_id`.
    fn type_uid(self) -> u32 {
        self.class.uid() * 100 + self.id
    }

    /// `type_name` in the schema's own spelling, `<class name>: <activity name>`.
    fn type_name(self) -> String {
        format!("{}: {}", self.class.name(), self.name)
    }
}

/// The class and activity of an action. The verb is the action's last `.`- or `:`-separated
/// segment, compared without case, so `login`, `auth.login` and `user.Login` all mean a logon.
/// docs/OCSF.md MUST list the same rules.
fn classify(action: &str) -> Activity {
    use Class::{AccountChange, ApiActivity, Authentication};
    match verb(action).as_str() {
        "login" | "logon" => Activity::new(Authentication, 1, "Logon"),
        "logout" | "logoff" => Activity::new(Authentication, 2, "Logoff"),
        "password_change" => Activity::new(AccountChange, 3, "Password Change"),
        "password_reset" => Activity::new(AccountChange, 4, "Password Reset"),
        "role_assign" | "permission_grant" => {
            Activity::new(AccountChange, ACTIVITY_ATTACH_POLICY, "Attach Policy")
        }
        "role_revoke" | "permission_revoke" => {
            Activity::new(AccountChange, ACTIVITY_DETACH_POLICY, "Detach Policy")
        }
        "mfa_enable" => Activity::new(AccountChange, 10, "MFA Factor Enable"),
        "mfa_disable" => Activity::new(AccountChange, 11, "MFA Factor Disable"),
        // Account Change is where OCSF puts an account's credentials (password, MFA factors), and
        // an API key is one; the class enumerates no activity for keys.
        "api_key_create" | "api_key_rotate" => Activity::other(AccountChange),
        _ if action.starts_with("auth.") => Activity::other(Authentication),
        "create" => Activity::new(ApiActivity, 1, "Create"),
        "read" | "view" | "list" | "search" | "navigate" | "export" => {
            Activity::new(ApiActivity, 2, "Read")
        }
        "update" | "config_change" => Activity::new(ApiActivity, 3, "Update"),
        "delete" => Activity::new(ApiActivity, 4, "Delete"),
        _ => Activity::other(ApiActivity),
    }
}

/// An action's verb: its last `.`- or `:`-separated segment, in lower case.
fn verb(action: &str) -> String {
    action
        .rsplit(['.', ':'])
        .next()
        .unwrap_or(action)
        .to_ascii_lowercase()
}

/// The event as an OCSF event of schema [`OCSF_VERSION`]; see docs/OCSF.md for every field.
pub fn ocsf_event(stored: &StoredEvent) -> Value {
    let event = &stored.event;
    let activity = classify(&event.action);
    let (category_uid, category_name) = activity.class.category();
    let (status_id, status, severity_id, severity) = match event.outcome {
        Outcome::Success => (1, "Success", 1, "Informational"),
        // Low ("the user decides if action is needed"): one failed action is routine in an
        // audit log; a pattern of failures is what Sealtrail's alert rules raise.
        Outcome::Failure => (2, "Failure", 2, "Low"),
    };

    let mut ocsf = Map::new();
    let mut put = |name: &str, value: Value| {
        ocsf.insert(name.to_owned(), value);
    };
    put("class_uid", json!(activity.class.uid()));
    put("class_name", json!(activity.class.name()));
    put("category_uid", json!(category_uid));
    put("category_name", json!(category_name));
    put("activity_id", json!(activity.id));
    put("activity_name", json!(activity.name));
    put("type_uid", json!(activity.type_uid()));
    put("type_name", json!(activity.type_name()));
    put("time", json!(epoch_millis(event.timestamp_ns)));
    put("severity_id", json!(severity_id));
    put("severity", json!(severity));
    put("status_id", json!(status_id));
    put("status", json!(status));
    put("message", json!(message(stored)));
    put("metadata", metadata(stored));
    put(
        "actor",
        json!({ "user": actor_user(event.actor_type, &event.actor_id) }),
    );
    // An encrypted field (docs/FORMAT.md, "Protected fields") is no IP address or user agent
    // to a SIEM: its envelope goes to `unmapped.sealed`, never into a typed attribute. One
    // opened for a reader allowed to see it (a plaintext export) is its plaintext, and its
    // envelope in `unmapped.sealed` carries the salt that checks it against the hash.
    let plain =
        |text: &Option<String>| match text.as_deref().map(|text| (text, Sealed::parse(text))) {
            Some((text, None)) => Some(text.to_owned()),
            Some((_, Some(Sealed::Open { plaintext, .. }))) => Some(plaintext.to_owned()),
            _ => None,
        };
    if let Some(ip) = plain(&event.ip_address) {
        put("src_endpoint", json!({ "ip": ip }));
    }
    if let Some(user_agent) = plain(&event.user_agent) {
        put("http_request", json!({ "user_agent": user_agent }));
    }

    let mut unmapped = Map::new();
    match activity.class {
        Class::ApiActivity => {
            let mut api = json!({ "operation": event.action });
            if let Some(request_id) = &event.request_id {
                api["request"] = json!({ "uid": request_id });
            }
            put("api", api);
            put("resources", json!([resource(stored)]));
        }
        Class::Authentication => {
            // The user authenticating is the actor; what they signed in to is the tenant's
            // application, which Sealtrail knows only by the tenant.
            put("user", actor_user(event.actor_type, &event.actor_id));
            put("service", json!({ "uid": event.tenant_id }));
            if event.resource_type == SESSION_RESOURCE_TYPE {
                if let Some(session_id) = &event.resource_id {
                    put("session", json!({ "uid": session_id }));
                }
            }
            keep_action_and_resource(stored, &mut unmapped);
        }
        Class::AccountChange => {
            let (mut user, other_resource_id) = account_changed(stored);
            if let Some(resource_id) = other_resource_id {
                if matches!(activity.id, ACTIVITY_ATTACH_POLICY | ACTIVITY_DETACH_POLICY) {
                    // The role or permission attached or detached.
                    put("policy", json!({ "uid": resource_id }));
                } else if verb(&event.action).starts_with("api_key_") {
                    // The key is a credential of the account.
                    user["credential_uid"] = json!(resource_id);
                }
            }
            put("user", user);
            keep_action_and_resource(stored, &mut unmapped);
        }
    }
    for (name, text) in [("changes", &event.changes), ("metadata", &event.metadata)] {
        if let Some(text) = plain(text) {
            unmapped.insert(name.to_owned(), parse_json_text(&text));
        }
    }
    let sealed: Map<String, Value> = event
        .protected_fields()
        .into_iter()
        .filter_map(|(name, text)| {
            let text = text.filter(|text| Sealed::parse(text).is_some())?;
            Some((name.to_owned(), json!(text)))
        })
        .collect();
    if !sealed.is_empty() {
        unmapped.insert("sealed".into(), Value::Object(sealed));
    }
    unmapped.insert("event_hash".into(), json!(hex::encode(stored.event_hash)));
    unmapped.insert("prev_hash".into(), json!(hex::encode(stored.prev_hash)));
    put("unmapped", Value::Object(unmapped));
    Value::Object(ocsf)
}

/// Epoch milliseconds, OCSF's `timestamp_t`; finer digits are floored.
fn epoch_millis(timestamp_ns: i64) -> i64 {
    timestamp_ns.div_euclid(NANOS_PER_MILLI)
}

/// `metadata`: the schema version, the product, and where the event sits in Sealtrail.
fn metadata(stored: &StoredEvent) -> Value {
    let event = &stored.event;
    let mut metadata = json!({
        "version": OCSF_VERSION,
        "uid": event.event_id,
        "product": {
            "name": PRODUCT_NAME,
            "vendor_name": PRODUCT_NAME,
            "version": env!("CARGO_PKG_VERSION"),
        },
        "tenant_uid": event.tenant_id,
        "sequence": stored.seq,
        // `time` keeps milliseconds; the exact instant as sent is kept here.
        "original_time": format_timestamp(event.timestamp_ns),
        "logged_time": epoch_millis(stored.received_at_ns),
    });
    if let Some(request_id) = &event.request_id {
        metadata["correlation_uid"] = json!(request_id);
    }
    metadata
}

/// A one-line summary for SIEM lists: who did what to which resource, and how it ended.
fn message(stored: &StoredEvent) -> String {
    let event = &stored.event;
    let resource = match &event.resource_id {
        Some(resource_id) => format!("{} {resource_id}", event.resource_type),
        None => event.resource_type.clone(),
    };
    format!(
        "{} {} {resource}: {}",
        event.actor_id,
        event.action,
        event.outcome.as_str()
    )
}

/// An OCSF `user` for the acting principal. OCSF's user types are User, Admin, System and
/// Other; a service account is Other, named in `type`.
fn actor_user(actor_type: ActorType, actor_id: &str) -> Value {
    let (type_id, type_name) = match actor_type {
        ActorType::Human => (1, "User"),
        ActorType::Service => (99, "Service"),
        ActorType::System => (3, "System"),
    };
    json!({ "uid": actor_id, "type_id": type_id, "type": type_name })
}

/// The account an Account Change event changed, and the id of the resource when it is not that
/// account (a role, a key). An event names one resource: when it is an account, that account was
/// changed; otherwise the actor changed their own (a password change names no other account).
fn account_changed(stored: &StoredEvent) -> (Value, Option<&str>) {
    let event = &stored.event;
    let resource_is_account = ACCOUNT_RESOURCE_TYPES
        .iter()
        .any(|kind| kind.eq_ignore_ascii_case(&event.resource_type));
    match (&event.resource_id, resource_is_account) {
        (Some(account_id), true) => (json!({ "uid": account_id }), None),
        (resource_id, _) => (
            actor_user(event.actor_type, &event.actor_id),
            resource_id.as_deref(),
        ),
    }
}

/// The event's resource as a `resource_details`. OCSF requires a `uid` or a `name`; a resource
/// without an id is named by its type.
fn resource(stored: &StoredEvent) -> Value {
    let event = &stored.event;
    match &event.resource_id {
        Some(resource_id) => json!({ "uid": resource_id, "type": event.resource_type }),
        None => json!({ "name": event.resource_type, "type": event.resource_type }),
    }
}

/// IAM classes read the action and resource into their own attributes (`activity_id`, `user`,
/// `session`, `policy`); the text as sent is kept beside them so nothing is lost in the reading.
fn keep_action_and_resource(stored: &StoredEvent, unmapped: &mut Map<String, Value>) {
    let event = &stored.event;
    unmapped.insert("action".into(), json!(event.action));
    unmapped.insert("resource_type".into(), json!(event.resource_type));
    if let Some(resource_id) = &event.resource_id {
        unmapped.insert("resource_id".into(), json!(resource_id));
    }
}

/// `changes` and `metadata` as JSON; a stored text that does not parse (a broken invariant) is
/// kept as a string rather than dropped.
fn parse_json_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hec::tests::sample_event;

    fn with_action(action: &str, resource_type: &str, resource_id: Option<&str>) -> StoredEvent {
        let mut stored = sample_event();
        stored.event.action = action.into();
        stored.event.resource_type = resource_type.into();
        stored.event.resource_id = resource_id.map(str::to_owned);
        stored
    }

    fn class_and_activity(action: &str) -> (u64, u64) {
        let ocsf = ocsf_event(&with_action(action, "thing", Some("t-1")));
        (
            ocsf["class_uid"].as_u64().unwrap(),
            ocsf["activity_id"].as_u64().unwrap(),
        )
    }

    /// Every action family of event format v1 and the shipped capture rules.
    const TABLE: [(&str, u64, u64); 24] = [
        ("login", 3002, 1),
        ("auth.login", 3002, 1),
        ("user.Login", 3002, 1),
        ("logout", 3002, 2),
        ("auth.logoff", 3002, 2),
        ("auth.mfa_challenge", 3002, 99),
        ("auth.token_refresh", 3002, 99),
        ("password_change", 3001, 3),
        ("password_reset", 3001, 4),
        ("role_assign", 3001, 7),
        ("permission_grant", 3001, 7),
        ("role_revoke", 3001, 8),
        ("mfa_enable", 3001, 10),
        ("api_key_create", 3001, 99),
        ("api_key_rotate", 3001, 99),
        ("create", 6003, 1),
        ("document.read", 6003, 2),
        ("export", 6003, 2),
        ("search", 6003, 2),
        ("update", 6003, 3),
        ("config_change", 6003, 3),
        ("admin:delete", 6003, 4),
        ("heartbeat", 6003, 99),
        ("security.alert", 6003, 99),
    ];

    #[test]
    fn actions_map_to_the_documented_classes_and_activities() {
        for (action, class_uid, activity_id) in TABLE {
            assert_eq!(
                class_and_activity(action),
                (class_uid, activity_id),
                "{action}"
            );
        }
    }

    #[test]
    fn docs_table_lists_every_mapping() {
        // docs/OCSF.md is the contract a SIEM engineer reads; it must not drift from the code.
        let doc = include_str!("../../../docs/OCSF.md");
        for (action, class_uid, activity_id) in TABLE {
            let verb = verb(action);
            let found = doc.lines().any(|line| {
                line.starts_with('|')
                    && line.contains(&format!("`{verb}`"))
                    && line.contains(&format!("| {class_uid} "))
                    && line.contains(&format!("| {activity_id} "))
            });
            // The two fallbacks (`auth.*`, anything else) have rows of their own.
            let fallback = activity_id == 99 && (action.starts_with("auth.") || class_uid == 6003);
            assert!(found || fallback, "docs/OCSF.md lacks a row for {action}");
        }
        assert!(doc.contains(OCSF_VERSION));
    }

    #[test]
    fn type_uid_is_class_times_100_plus_activity() {
        for (action, class_uid, activity_id) in TABLE {
            let ocsf = ocsf_event(&with_action(action, "thing", None));
            assert_eq!(
                ocsf["type_uid"].as_u64().unwrap(),
                class_uid * 100 + activity_id,
                "{action}"
            );
            let class_name = ocsf["class_name"].as_str().unwrap();
            let activity_name = ocsf["activity_name"].as_str().unwrap();
            let type_name = format!("{class_name}: {activity_name}");
            assert_eq!(ocsf["type_name"], type_name);
            let category = ocsf["category_uid"].as_u64().unwrap();
            assert_eq!(category, class_uid / 1000, "{action}");
        }
        assert_eq!(classify("login").type_uid(), 300_201);
        assert_eq!(classify("auth.step_up").type_uid(), 300_299);
        assert_eq!(classify("role_assign").type_uid(), 300_107);
        assert_eq!(classify("delete").type_uid(), 600_304);
        assert_eq!(classify("ping").type_uid(), 600_399);
    }

    #[test]
    fn api_activity_carries_operation_request_and_resources() {
        let stored = sample_event();
        let ocsf = ocsf_event(&stored);
        assert_eq!(ocsf["class_name"], "API Activity");
        assert_eq!(ocsf["category_uid"], 6);
        assert_eq!(ocsf["category_name"], "Application Activity");
        assert_eq!(ocsf["activity_name"], "Read");
        assert_eq!(ocsf["type_name"], "API Activity: Read");
        assert_eq!(
            ocsf["api"],
            json!({"operation": "document.read", "request": {"uid": "req-9"}})
        );
        assert_eq!(
            ocsf["resources"],
            json!([{"uid": "doc-42", "type": "document"}])
        );
        assert!(ocsf.get("user").is_none());
        // The action and resource are mapped, so they are not repeated in `unmapped`.
        assert!(ocsf["unmapped"].get("action").is_none());

        let mut bare = with_action("config_change", "settings", None);
        bare.event.request_id = None;
        let ocsf = ocsf_event(&bare);
        assert_eq!(ocsf["api"], json!({"operation": "config_change"}));
        assert_eq!(
            ocsf["resources"],
            json!([{"name": "settings", "type": "settings"}])
        );
        assert!(ocsf["metadata"].get("correlation_uid").is_none());
    }

    #[test]
    fn common_attributes_are_filled() {
        let ocsf = ocsf_event(&sample_event());
        assert_eq!(ocsf["time"], 1_767_225_600_123_i64);
        assert_eq!(
            (ocsf["status_id"].clone(), ocsf["status"].clone()),
            (json!(1), json!("Success"))
        );
        assert_eq!(ocsf["severity_id"], 1);
        assert_eq!(ocsf["severity"], "Informational");
        assert_eq!(
            ocsf["metadata"],
            json!({
                "version": "1.3.0",
                "uid": "evt-1",
                "product": {"name": "Sealtrail", "vendor_name": "Sealtrail",
                            "version": env!("CARGO_PKG_VERSION")},
                "tenant_uid": "acme",
                "correlation_uid": "req-9",
                "sequence": 17,
                "original_time": "2026-01-01T00:00:00.123456789Z",
                "logged_time": 1_767_225_600_200_i64,
            })
        );
        assert_eq!(
            ocsf["actor"],
            json!({"user": {"uid": "alice@acme.test", "type_id": 1, "type": "User"}})
        );
        assert_eq!(ocsf["src_endpoint"], json!({"ip": "203.0.113.7"}));
        assert_eq!(ocsf["http_request"], json!({"user_agent": "Mozilla/5.0"}));
        assert_eq!(
            ocsf["message"],
            "alice@acme.test document.read document doc-42: success"
        );
        assert_eq!(
            ocsf["unmapped"],
            json!({
                "changes": {"title": {"after": "b", "before": "a"}},
                "metadata": {"department": "finance"},
                "event_hash": "ab".repeat(32),
                "prev_hash": "11".repeat(32),
            })
        );
    }

    #[test]
    fn optional_fields_are_omitted_and_failure_is_low_severity() {
        let mut stored = sample_event();
        stored.event.outcome = Outcome::Failure;
        stored.event.ip_address = None;
        stored.event.user_agent = None;
        stored.event.changes = None;
        stored.event.metadata = None;
        stored.event.actor_type = ActorType::Service;
        let ocsf = ocsf_event(&stored);
        assert_eq!(
            (ocsf["status_id"].clone(), ocsf["status"].clone()),
            (json!(2), json!("Failure"))
        );
        assert_eq!(
            (ocsf["severity_id"].clone(), ocsf["severity"].clone()),
            (json!(2), json!("Low"))
        );
        for absent in ["src_endpoint", "http_request"] {
            assert!(ocsf.get(absent).is_none(), "{absent}");
        }
        let unmapped = ocsf["unmapped"].as_object().unwrap();
        assert!(!unmapped.contains_key("changes") && !unmapped.contains_key("metadata"));
        assert_eq!(ocsf["actor"]["user"]["type_id"], 99);
        assert_eq!(ocsf["actor"]["user"]["type"], "Service");
        stored.event.actor_type = ActorType::System;
        assert_eq!(ocsf_event(&stored)["actor"]["user"]["type_id"], 3);
    }

    #[test]
    fn authentication_names_the_user_service_and_session() {
        let ocsf = ocsf_event(&with_action("login", "session", Some("sess-1")));
        assert_eq!(ocsf["class_uid"], 3002);
        assert_eq!(ocsf["category_uid"], 3);
        assert_eq!(ocsf["category_name"], "Identity & Access Management");
        assert_eq!(ocsf["type_name"], "Authentication: Logon");
        assert_eq!(ocsf["user"], ocsf["actor"]["user"]);
        assert_eq!(ocsf["service"], json!({"uid": "acme"}));
        assert_eq!(ocsf["session"], json!({"uid": "sess-1"}));
        assert!(ocsf.get("api").is_none() && ocsf.get("resources").is_none());
        assert_eq!(ocsf["unmapped"]["action"], "login");
        assert_eq!(ocsf["unmapped"]["resource_type"], "session");
        assert_eq!(ocsf["unmapped"]["resource_id"], "sess-1");

        let other = ocsf_event(&with_action("auth.mfa_challenge", "factor", None));
        assert_eq!(other["activity_name"], "Other");
        assert!(other.get("session").is_none());
        assert!(other["unmapped"].get("resource_id").is_none());
    }

    #[test]
    fn account_change_targets_the_named_account_or_the_actor() {
        // A resource that is an account: that account was changed.
        let ocsf = ocsf_event(&with_action("password_change", "user", Some("bob")));
        assert_eq!(ocsf["class_uid"], 3001);
        assert_eq!(ocsf["type_name"], "Account Change: Password Change");
        assert_eq!(ocsf["user"], json!({"uid": "bob"}));
        assert_eq!(ocsf["actor"]["user"]["uid"], "alice@acme.test");

        // No resource id: the actor changed their own account.
        let own = ocsf_event(&with_action("password_change", "user", None));
        assert_eq!(own["user"], own["actor"]["user"]);

        // A role granted: the role is the policy attached.
        let role = ocsf_event(&with_action("role_assign", "role", Some("admin")));
        assert_eq!(role["type_name"], "Account Change: Attach Policy");
        assert_eq!(role["policy"], json!({"uid": "admin"}));
        let to_bob = ocsf_event(&with_action("role_assign", "User", Some("bob")));
        assert_eq!(to_bob["user"], json!({"uid": "bob"}));
        assert!(to_bob.get("policy").is_none());

        // An API key: the key is a credential of the account.
        let key = ocsf_event(&with_action("api_key_create", "api_key", Some("key_1")));
        assert_eq!(key["type_name"], "Account Change: Other");
        assert_eq!(key["type_uid"], 300_199);
        assert_eq!(key["user"]["credential_uid"], "key_1");
        assert_eq!(key["user"]["uid"], "alice@acme.test");
        assert_eq!(key["unmapped"]["resource_type"], "api_key");
        assert!(key.get("policy").is_none());
    }

    #[test]
    fn a_corrupted_json_text_is_kept_as_a_string() {
        let mut stored = sample_event();
        stored.event.metadata = Some("{oops".into());
        assert_eq!(ocsf_event(&stored)["unmapped"]["metadata"], "{oops");
    }
}
