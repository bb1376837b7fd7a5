//! A tenant's retention policy: how long its archived events are kept, and whether a legal hold
//! suspends deletion. The admin API, the CLI and the lifecycle share this one definition, its
//! JSON form (stored as the hot store setting [`RetentionPolicy::setting_name`]) and its
//! validation, which names the offending field.

use serde_json::{Map, Value};

use crate::limits::{RETENTION_DAYS_MAX, RETENTION_YEARS_MAX, RETENTION_YEAR_DAYS};
use crate::FieldError;

/// How long events are kept, in the unit the operator chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionPeriod {
    Days(u32),
    /// Counted as [`RETENTION_YEAR_DAYS`] days each, so never shorter than N calendar years.
    Years(u32),
}

/// A tenant's policy. Without one, a tenant's events are kept indefinitely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub period: RetentionPeriod,
    /// While set, nothing of the tenant is deleted, however old.
    pub legal_hold: bool,
}

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

impl RetentionPolicy {
    /// The hot-store setting that holds a tenant's policy.
    pub fn setting_name(tenant_id: &str) -> String {
        format!("retention/{tenant_id}")
    }

    /// The retention in days.
    pub fn days(&self) -> u32 {
        match self.period {
            RetentionPeriod::Days(days) => days,
            RetentionPeriod::Years(years) => years * RETENTION_YEAR_DAYS,
        }
    }

    /// Events whose timestamp is before this instant have expired (legal hold aside).
    pub fn cutoff_ns(&self, now_ns: i64) -> i64 {
        now_ns.saturating_sub(i64::from(self.days()).saturating_mul(NANOS_PER_DAY))
    }

    /// The policy in words, for deletion records: `retention_days=400 legal_hold=false`.
    pub fn describe(&self) -> String {
        let period = match self.period {
            RetentionPeriod::Days(days) => format!("retention_days={days}"),
            RetentionPeriod::Years(years) => format!("retention_years={years}"),
        };
        format!("{period} legal_hold={}", self.legal_hold)
    }

    /// The JSON form: `{"retention_days": N, "legal_hold": bool}` (or `retention_years`).
    pub fn to_json(&self) -> Value {
        let mut fields = Map::new();
        match self.period {
            RetentionPeriod::Days(days) => fields.insert("retention_days".into(), days.into()),
            RetentionPeriod::Years(years) => fields.insert("retention_years".into(), years.into()),
        };
        fields.insert("legal_hold".into(), self.legal_hold.into());
        Value::Object(fields)
    }

    /// Parses and validates the JSON form: exactly one of `retention_days` (1 to
    /// [`RETENTION_DAYS_MAX`]) or `retention_years` (1 to [`RETENTION_YEARS_MAX`]), and
    /// `legal_hold`, which is required so a hold is never lifted by omission. Every violation
    /// is reported with its field.
    pub fn from_json(value: &Value) -> Result<Self, Vec<FieldError>> {
        let error = |field: &str, reason: String| FieldError {
            field: field.to_owned(),
            reason,
        };
        let Value::Object(fields) = value else {
            return Err(vec![error(
                "body",
                "must be a JSON object {\"retention_days\" or \"retention_years\", \"legal_hold\"}"
                    .into(),
            )]);
        };
        let mut errors = Vec::new();
        let count = |field: &str, max: u32, errors: &mut Vec<FieldError>| -> Option<u32> {
            let value = fields.get(field)?;
            match value.as_u64() {
                Some(number) if (1..=u64::from(max)).contains(&number) => Some(number as u32),
                _ => {
                    errors.push(error(field, format!("must be an integer from 1 to {max}")));
                    None
                }
            }
        };
        let days = count("retention_days", RETENTION_DAYS_MAX, &mut errors);
        let years = count("retention_years", RETENTION_YEARS_MAX, &mut errors);
        let both = fields.contains_key("retention_days") && fields.contains_key("retention_years");
        let neither =
            !fields.contains_key("retention_days") && !fields.contains_key("retention_years");
        if both {
            errors.push(error(
                "retention_years",
                "give either retention_days or retention_years, not both".into(),
            ));
        }
        if neither {
            errors.push(error(
                "retention_days",
                "is required (or retention_years)".into(),
            ));
        }
        let legal_hold = match fields.get("legal_hold") {
            Some(Value::Bool(hold)) => Some(*hold),
            Some(_) => {
                errors.push(error("legal_hold", "must be true or false".into()));
                None
            }
            None => {
                errors.push(error("legal_hold", "is required".into()));
                None
            }
        };
        for field in fields.keys() {
            if !["retention_days", "retention_years", "legal_hold"].contains(&field.as_str()) {
                errors.push(error(field, "unknown field".into()));
            }
        }
        let period = match (days, years) {
            (Some(days), None) => Some(RetentionPeriod::Days(days)),
            (None, Some(years)) => Some(RetentionPeriod::Years(years)),
            _ => None,
        };
        match (period, legal_hold) {
            (Some(period), Some(legal_hold)) if errors.is_empty() => {
                Ok(RetentionPolicy { period, legal_hold })
            }
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|error| error.field).collect()
    }

    #[test]
    fn valid_policies_round_trip() {
        for body in [
            json!({"retention_days": 400, "legal_hold": false}),
            json!({"retention_years": 7, "legal_hold": true}),
        ] {
            let policy = RetentionPolicy::from_json(&body).unwrap();
            assert_eq!(policy.to_json(), body);
        }
        let seven = RetentionPolicy::from_json(&json!({"retention_years": 7, "legal_hold": false}))
            .unwrap();
        assert_eq!(seven.days(), 7 * 366);
        assert_eq!(seven.describe(), "retention_years=7 legal_hold=false");
    }

    #[test]
    fn every_violation_names_its_field() {
        let reject = |body: Value| fields(RetentionPolicy::from_json(&body).unwrap_err());
        assert_eq!(reject(json!({"legal_hold": false})), ["retention_days"]);
        assert_eq!(
            reject(json!({"retention_days": 0, "legal_hold": false})),
            ["retention_days"]
        );
        assert_eq!(
            reject(json!({"retention_days": 36_601, "legal_hold": false})),
            ["retention_days"]
        );
        assert_eq!(
            reject(json!({"retention_years": "7", "legal_hold": false})),
            ["retention_years"]
        );
        assert_eq!(
            reject(json!({"retention_days": 1, "retention_years": 1, "legal_hold": false})),
            ["retention_years"]
        );
        assert_eq!(reject(json!({"retention_days": 30})), ["legal_hold"]);
        assert_eq!(
            reject(json!({"retention_days": 30, "legal_hold": "no"})),
            ["legal_hold"]
        );
        assert_eq!(
            reject(json!({"retention_days": 30, "legal_hold": true, "hold": 1})),
            ["hold"]
        );
        assert_eq!(reject(json!([1])), ["body"]);
    }
}
