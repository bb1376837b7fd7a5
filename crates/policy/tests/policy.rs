//! The capture policy against its document (docs/FORMAT.md, "Sampling") and the rules.

use sealtrail_model::{ActorType, Event, Outcome};
use sealtrail_policy::{sampling_point, Durability, Policy, Sampling, RATE_SCALE};
use serde_json::{json, Value};

fn event(action: &str, request_id: Option<&str>, event_id: &str) -> Event {
    Event {
        event_id: event_id.into(),
        timestamp_ns: 1_790_000_000_000_000_000,
        tenant_id: "acme".into(),
        actor_id: "alice".into(),
        actor_type: ActorType::Human,
        action: action.into(),
        resource_type: "document".into(),
        resource_id: None,
        outcome: Outcome::Success,
        ip_address: None,
        user_agent: None,
        request_id: request_id.map(str::to_owned),
        changes: None,
        metadata: None,
    }
}

#[test]
fn decisions_match_the_documented_vectors() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/vectors/sampling-v1.json"
    );
    let vectors: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let policy = Policy::shipped(Sampling::Recommended);
    let class_actions = [("1", "update"), ("2", "read"), ("3", "heartbeat")];
    let cases = vectors["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let key = case["key"].as_str().unwrap();
        assert_eq!(
            u64::from(sampling_point(key)),
            case["point"],
            "point of {key:?}"
        );
        for (class, action) in class_actions {
            let decision = policy.decide(&event(action, Some(key), "any"));
            assert_eq!(decision.class.to_string(), class);
            assert_eq!(
                decision.kept, case["kept"][class],
                "class {class} decision for {key:?}"
            );
        }
    }
}

#[test]
fn class_zero_is_never_sampled_whatever_the_policy() {
    let policy = Policy::from_json(&json!({
        "default_class": 0,
        "rates": {"1": 0.0, "2": 0.0, "3": 0.0},
        "rules": [{"class": 3, "action": "heartbeat"}, {"class": 0, "action_prefix": "auth."}]
    }))
    .unwrap();
    for n in 0..2_000 {
        let request_id = format!("req-{n}");
        let login = policy.decide(&event("auth.login", Some(&request_id), "e"));
        assert!(login.kept && login.class == 0);
        let other = policy.decide(&event("something.else", Some(&request_id), "e"));
        assert!(other.kept && other.class == 0, "the default class is 0");
        assert!(
            !policy
                .decide(&event("heartbeat", Some(&request_id), "e"))
                .kept
        );
    }
    // No policy can sample class 0: the request is refused, naming the field.
    let refused = Policy::from_json(&json!({"rates": {"0": 0.5}})).unwrap_err();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].field, "rates.0");
    assert!(refused[0].reason.contains("always kept"), "{refused:?}");
    // A kept class-0 event makes the acknowledgement sync, whatever was asked.
    assert_eq!(
        policy.durability(Some(Durability::Async), [2, 0]),
        Durability::Sync
    );
    assert_eq!(
        policy.durability(Some(Durability::Async), [2, 3]),
        Durability::Async
    );
    assert_eq!(policy.durability(None, [3]), Durability::Sync);
}

#[test]
fn one_request_is_kept_or_dropped_whole() {
    let policy = Policy::shipped(Sampling::Recommended);
    let (mut kept, mut dropped) = (0, 0);
    for n in 0..500 {
        let request_id = format!("{n:08x}-request");
        let decisions: Vec<bool> = (0..5)
            .map(|e| {
                policy
                    .decide(&event("read", Some(&request_id), &format!("evt-{n}-{e}")))
                    .kept
            })
            .collect();
        assert!(
            decisions.iter().all(|kept| *kept == decisions[0]),
            "{request_id}"
        );
        if decisions[0] {
            kept += 1;
        } else {
            dropped += 1;
        }
        // Kept at 1% means kept at 10% and 50% too.
        if policy
            .decide(&event("heartbeat", Some(&request_id), "e"))
            .kept
        {
            assert!(decisions[0]);
        }
    }
    assert!(kept > 0 && dropped > 0);
    // Without a request_id the event_id is the key.
    let no_request = event("read", None, "evt-only");
    assert_eq!(
        policy.decide(&no_request).kept,
        sampling_point("evt-only") < RATE_SCALE / 10
    );
}

#[test]
fn class_three_keeps_one_percent_of_100_000() {
    let policy = Policy::shipped(Sampling::Recommended);
    let kept = (0..100_000u64)
        .filter(|n| {
            // Request ids as a client would make them: UUID-shaped, distinct.
            let request_id = format!(
                "{:08x}-{:04x}-7{:03x}-8{:03x}-{:012x}",
                n.wrapping_mul(2_654_435_761) >> 8,
                n % 65_536,
                n % 4_096,
                (n * 7) % 4_096,
                n
            );
            policy
                .decide(&event("heartbeat", Some(&request_id), "e"))
                .kept
        })
        .count();
    assert!((800..=1_200).contains(&kept), "kept {kept} of 100,000");
}

#[test]
fn the_shipped_policy_classifies_the_practice_and_drops_nothing() {
    let off = Policy::shipped(Sampling::Off);
    let expected = [
        ("login", 0),
        ("password_change", 0),
        ("delete", 0),
        ("export", 0),
        ("auth.mfa", 0),
        ("admin.user_ban", 0),
        ("security.sso_change", 0),
        ("create", 1),
        ("update", 1),
        ("read", 2),
        ("navigate", 2),
        ("heartbeat", 3),
        ("asset_request", 3),
        ("anything.else", 0),
    ];
    for (action, class) in expected {
        for n in 0..50 {
            let decision = off.decide(&event(action, Some(&format!("r{n}")), "e"));
            assert_eq!(decision.class, class, "{action}");
            assert!(
                decision.kept,
                "an audit product drops nothing out of the box"
            );
        }
    }
    let rates = &Policy::shipped(Sampling::Recommended).to_json()["rates"];
    assert_eq!(rates, &json!({"0": 1.0, "1": 0.5, "2": 0.1, "3": 0.01}));
}

#[test]
fn a_change_of_the_largest_policy_fits_the_event_that_records_it() {
    let text = "a".repeat(sealtrail_model::limits::POLICY_MATCH_CHARS_MAX);
    let rules: Vec<Value> = (0..sealtrail_model::limits::POLICY_RULES_MAX)
        .map(|_| {
            json!({"class": 3, "action": text, "action_prefix": text, "resource_type": text,
                "actor_type": "service", "outcome": "failure"})
        })
        .collect();
    let largest = Policy::from_json(
        &json!({"rates": {"1": 0.123457, "2": 0.123457, "3": 0.123457},
        "rules": rules, "default_durability": "async"}),
    )
    .unwrap();
    let changes = json!({"before": largest.to_json(), "after": largest.to_json()});
    assert!(
        changes.to_string().len() <= sealtrail_model::limits::CHANGES_BYTES_MAX,
        "{} bytes",
        changes.to_string().len()
    );
    // A rule one past the limit, or text an action could never hold, is refused by name.
    let too_many: Vec<Value> = (0..=sealtrail_model::limits::POLICY_RULES_MAX)
        .map(|_| json!({"class": 1}))
        .collect();
    assert_eq!(
        Policy::from_json(&json!({"rules": too_many})).unwrap_err()[0].field,
        "rules"
    );
    let odd =
        Policy::from_json(&json!({"rules": [{"class": 1, "action": "löschen"}]})).unwrap_err();
    assert_eq!(odd[0].field, "rules[0].action");
}

#[test]
fn the_wire_shape_round_trips_and_every_problem_names_its_field() {
    let wire = json!({
        "default_class": 2,
        "rates": {"1": 0.5, "2": 0.1, "3": 0.01},
        "rules": [
            {"class": 3, "action": "heartbeat"},
            {"class": 0, "action_prefix": "auth.", "outcome": "failure", "actor_type": "human",
             "resource_type": "session"}
        ],
        "default_durability": "async"
    });
    let policy = Policy::from_json(&wire).unwrap();
    assert_eq!(Policy::from_json(&policy.to_json()).unwrap(), policy);
    assert_eq!(policy.default_durability, Durability::Async);

    let errors = Policy::from_json(&json!({
        "default_class": 4,
        "rates": {"1": 1.5, "4": 0.1, "2": "half"},
        "rules": [{"action": "x"}, {"class": 1, "colour": "red", "outcome": "maybe"}, 7],
        "sampling": true
    }))
    .unwrap_err();
    let mut fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "default_class",
            "rates.1",
            "rates.2",
            "rates.4",
            "rules[0].class",
            "rules[1].colour",
            "rules[1].outcome",
            "rules[2]",
            "sampling"
        ]
    );
}
