//! What `serde_json` accepts in a request body but would silently change, found in the body's
//! own text (docs/FORMAT.md, "JSON input rules").
//!
//! `serde_json` keeps the last of an object's repeated keys, turns an integer outside the 64-bit
//! range into a double (dropping digits), and, for speed, may parse a number with a fraction or
//! exponent to a double one unit in the last place away from the nearest. None of that can be
//! seen in the parsed [`Value`], so [`check_events_json`] reads the text once more, beside the
//! parse: the first two are reported as field errors, the third is corrected in the parsed value,
//! so what is stored is exactly the double the document names.
//!
//! The scan is one pass over bytes already known to be valid JSON, allocates only for keys with
//! escapes and for objects of more than a few keys, and parses only number literals.

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::{Number, Value};

use crate::FieldError;

/// Objects with at most this many keys are checked for repeats by a linear search; larger ones
/// through a hash set, so a body of one huge object stays linear.
const KEYS_LINEAR_SEARCH_MAX: usize = 16;

/// Checks `text`, the JSON text `parsed` was parsed from (one event object, or an array of
/// them), for what parsing changed silently. Returns each violation with the index of its event
/// (0 for a single object; an array's element index otherwise) and the field path within it,
/// e.g. `metadata.count` or `metadata.items[2]`. Corrects in `parsed` every non-integer number
/// that `serde_json` parsed to another double than the nearest one.
///
/// `text` MUST be the valid JSON text `parsed` came from; anything else may be misreported.
pub fn check_events_json(text: &[u8], parsed: &mut Value) -> Vec<(usize, FieldError)> {
    let mut scan = Scan {
        text,
        position: 0,
        path: Vec::new(),
        errors: Vec::new(),
        corrections: Vec::new(),
        events_are_elements: false,
    };
    scan.skip_whitespace();
    scan.events_are_elements = scan.peek() == Some(b'[');
    scan.value();
    for (path, nearest) in scan.corrections {
        if let Some(number) = value_at(parsed, &path) {
            if let Some(nearest) = Number::from_f64(nearest) {
                *number = Value::Number(nearest);
            }
        }
    }
    scan.errors
}

/// Corrects in `parsed` every non-integer number of `text` that `serde_json` parsed to another
/// double than the nearest one, so the value re-serialises to the text a correct reader sees
/// (the canonical text of a stored event is a fixed point only under a correctly rounded parse).
/// For documents read back, such as proof bundles; `text` MUST be what `parsed` came from.
pub fn nearest_doubles(text: &[u8], parsed: &mut Value) {
    check_events_json(text, parsed);
}

/// One step of a path into a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step<'a> {
    Key(Cow<'a, str>),
    Index(usize),
}

struct Scan<'a> {
    text: &'a [u8],
    position: usize,
    path: Vec<Step<'a>>,
    errors: Vec<(usize, FieldError)>,
    /// Paths of numbers `serde_json` rounded off the nearest double, and that double.
    corrections: Vec<(Vec<Step<'a>>, f64)>,
    /// Whether the document is an array of events (else it is one event).
    events_are_elements: bool,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.position).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.position += 1;
        }
    }

    fn value(&mut self) {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => {
                self.string();
            }
            Some(b't' | b'n') => self.position += 4,
            Some(b'f') => self.position += 5,
            Some(_) => self.number(),
            None => {}
        }
    }

    fn object(&mut self) {
        self.position += 1;
        let mut keys: Vec<Cow<'a, str>> = Vec::new();
        let mut many_keys: Option<HashSet<Cow<'a, str>>> = None;
        let mut reported: Vec<Cow<'a, str>> = Vec::new();
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b'}') | None => {
                    self.position += 1;
                    return;
                }
                Some(b',') => {
                    self.position += 1;
                    continue;
                }
                _ => {}
            }
            let key = self.string();
            let repeated = match &mut many_keys {
                Some(set) => !set.insert(key.clone()),
                None if keys.contains(&key) => true,
                None => {
                    keys.push(key.clone());
                    if keys.len() > KEYS_LINEAR_SEARCH_MAX {
                        many_keys = Some(keys.drain(..).collect());
                    }
                    false
                }
            };
            self.path.push(Step::Key(key));
            if repeated {
                let Some(Step::Key(key)) = self.path.last() else {
                    unreachable!("pushed above")
                };
                if !reported.contains(key) {
                    reported.push(key.clone());
                    self.report(
                        "is given more than once in the same object; a key may appear only once",
                    );
                }
            }
            self.skip_whitespace();
            self.position += 1; // The ':' after the key.
            self.value();
            self.path.pop();
        }
    }

    fn array(&mut self) {
        self.position += 1;
        let mut index = 0;
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b']') | None => {
                    self.position += 1;
                    return;
                }
                Some(b',') => {
                    self.position += 1;
                    continue;
                }
                _ => {}
            }
            self.path.push(Step::Index(index));
            self.value();
            self.path.pop();
            index += 1;
        }
    }

    /// Reads a string starting at its opening quote; returns its text, borrowed unless it holds
    /// escapes.
    fn string(&mut self) -> Cow<'a, str> {
        let start = self.position;
        self.position += 1;
        let mut escaped = false;
        while let Some(offset) = self
            .text
            .get(self.position..)
            .and_then(|rest| rest.iter().position(|b| matches!(b, b'"' | b'\\')))
        {
            self.position += offset + 1;
            if self.text[self.position - 1] == b'"' {
                break;
            }
            escaped = true;
            self.position += 1; // The escaped character.
        }
        let quoted = &self.text[start..self.position.min(self.text.len())];
        if escaped {
            Cow::Owned(serde_json::from_slice::<String>(quoted).unwrap_or_default())
        } else {
            let inner = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or(&[]);
            std::str::from_utf8(inner).map_or(Cow::Borrowed(""), Cow::Borrowed)
        }
    }

    fn number(&mut self) {
        let start = self.position;
        while matches!(
            self.peek(),
            Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
        ) {
            self.position += 1;
        }
        let literal = std::str::from_utf8(&self.text[start..self.position]).unwrap_or("");
        if !literal.contains(['.', 'e', 'E']) {
            let in_range = if literal.starts_with('-') {
                literal.parse::<i64>().is_ok()
            } else {
                literal.parse::<u64>().is_ok()
            };
            if !in_range {
                self.report(
                    "is an integer outside the 64-bit range (-9223372036854775808 to \
                     18446744073709551615), which would lose digits as a double; send it as a \
                     string",
                );
            }
            return;
        }
        // A double: the nearest one to the literal (the standard library's parse is correctly
        // rounded), which serde_json's fast path may miss by one unit in the last place.
        if fast_parse_is_exact(literal) {
            return;
        }
        let (Ok(nearest), Ok(parsed)) =
            (literal.parse::<f64>(), serde_json::from_str::<f64>(literal))
        else {
            return;
        };
        if nearest.to_bits() != parsed.to_bits() {
            self.corrections.push((self.path.clone(), nearest));
        }
    }

    fn report(&mut self, reason: &str) {
        let (index, steps) = match (self.events_are_elements, self.path.split_first()) {
            (true, Some((Step::Index(index), rest))) => (*index, rest),
            _ => (0, &self.path[..]),
        };
        self.errors
            .push((index, FieldError::new(&field_path(steps), reason)));
    }
}

/// Whether `serde_json`'s default parse of a number literal with a fraction or exponent is
/// surely the nearest double: a significand of at most 15 digits is exact as a double, and so is
/// a power of ten up to 10^22, so multiplying or dividing one by the other rounds once,
/// correctly (Clinger's fast path). Most literals qualify, and skip the second parse.
fn fast_parse_is_exact(literal: &str) -> bool {
    let unsigned = literal.strip_prefix('-').unwrap_or(literal);
    let (mantissa, exponent) = unsigned.split_once(['e', 'E']).unwrap_or((unsigned, "0"));
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let (Ok(exponent), Ok(fraction_digits)) =
        (exponent.parse::<i32>(), i32::try_from(fraction.len()))
    else {
        return false;
    };
    integer.len() + fraction.len() <= 15
        && exponent
            .checked_sub(fraction_digits)
            .is_some_and(|scale| (-22..=22).contains(&scale))
}

/// `metadata.items[2].name` style: keys joined by dots, indices in brackets.
fn field_path(steps: &[Step<'_>]) -> String {
    let mut path = String::new();
    for step in steps {
        match step {
            Step::Key(key) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Step::Index(index) => {
                path.push('[');
                path.push_str(&index.to_string());
                path.push(']');
            }
        }
    }
    path
}

fn value_at<'v>(value: &'v mut Value, path: &[Step<'_>]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |node, step| match step {
        Step::Key(key) => node.get_mut(key.as_ref()),
        Step::Index(index) => node.get_mut(*index),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (Vec<(usize, String)>, Value) {
        let mut parsed: Value = serde_json::from_str(text).unwrap();
        let errors = check_events_json(text.as_bytes(), &mut parsed)
            .into_iter()
            .map(|(index, error)| (index, error.field))
            .collect();
        (errors, parsed)
    }

    #[test]
    fn a_repeated_key_is_named_by_its_path_and_event() {
        let (errors, _) = check(r#"{"tenant_id":"a","tenant_id":"b"}"#);
        assert_eq!(errors, [(0, "tenant_id".to_owned())]);
        let (errors, _) = check(
            r#"[{"metadata":{"n":1}}, {"metadata":{"a":{"x":1, "x":2, "x":3}, "list":[{"k":1,"k":1}]}}]"#,
        );
        assert_eq!(
            errors,
            [
                (1, "metadata.a.x".to_owned()),
                (1, "metadata.list[0].k".to_owned())
            ]
        );
    }

    #[test]
    fn keys_spelled_with_escapes_are_the_same_key() {
        let (errors, _) = check(r#"{"metadata":{"a":1,"\u0061":2}}"#);
        assert_eq!(errors, [(0, "metadata.a".to_owned())]);
        let (errors, _) = check(r#"{"metadata":{"a\"b":1,"a\\b":2,"\"":3}}"#);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn repeats_are_found_in_objects_of_many_keys() {
        let mut text = String::from("{\"metadata\":{");
        for key in 0..1000 {
            text.push_str(&format!("\"k{key}\":{key},"));
        }
        text.push_str("\"k999\":0,\"k0\":1}}");
        let (errors, _) = check(&text);
        assert_eq!(
            errors,
            [
                (0, "metadata.k999".to_owned()),
                (0, "metadata.k0".to_owned())
            ]
        );
    }

    #[test]
    fn integers_beyond_64_bits_are_refused_at_the_limits() {
        let accepted = r#"{"metadata":{"max":18446744073709551615,"min":-9223372036854775808,"zero":-0,"f":1e300,"g":100000000000000000000.0}}"#;
        let (errors, parsed) = check(accepted);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(parsed["metadata"]["max"].as_u64(), Some(u64::MAX));
        assert_eq!(parsed["metadata"]["min"].as_i64(), Some(i64::MIN));
        let (errors, _) = check(
            r#"[{"metadata":{"ok":1}},{"metadata":{"count":18446744073709551616,"low":-9223372036854775809,"list":[1,100000000000000000000]}}]"#,
        );
        assert_eq!(
            errors,
            [
                (1, "metadata.count".to_owned()),
                (1, "metadata.low".to_owned()),
                (1, "metadata.list[1]".to_owned())
            ]
        );
    }

    #[test]
    fn doubles_are_the_nearest_to_their_literal() {
        // serde_json's fast parser reads this literal one unit in the last place low.
        let literal = "1.5e-300";
        assert_ne!(
            serde_json::from_str::<f64>(literal).unwrap().to_bits(),
            1.5e-300_f64.to_bits(),
            "this test needs a literal the fast parser misses"
        );
        let (errors, parsed) = check(&format!(r#"[{{"metadata":{{"x":[{literal}]}}}}]"#));
        assert!(errors.is_empty());
        assert_eq!(
            parsed[0]["metadata"]["x"][0].as_f64().map(f64::to_bits),
            Some(1.5e-300_f64.to_bits())
        );
        assert_eq!(
            serde_json::to_string(&parsed[0]["metadata"]).unwrap(),
            r#"{"x":[1.5e-300]}"#
        );
    }

    #[test]
    fn the_fast_path_is_taken_only_where_it_is_exact() {
        for exact in [
            "0.5",
            "-1.25",
            "1e22",
            "12345678901234.5",
            "1.5e-7",
            "0.0",
            "-0.0",
        ] {
            assert!(fast_parse_is_exact(exact), "{exact}");
            assert_eq!(
                serde_json::from_str::<f64>(exact).unwrap().to_bits(),
                exact.parse::<f64>().unwrap().to_bits(),
                "{exact}"
            );
        }
        for slow in [
            "1.5e-300",
            "1e23",
            "1234567890123456.0",
            "0.1e-22",
            "1e99999999999",
        ] {
            assert!(!fast_parse_is_exact(slow), "{slow}");
        }
    }

    #[test]
    fn strings_that_look_like_structure_are_skipped() {
        let (errors, _) = check(
            r#"{"metadata":{"s":"{\"a\":1,\"a\":2} 99999999999999999999999","t":true,"n":null,"f":false}}"#,
        );
        assert!(errors.is_empty(), "{errors:?}");
    }
}
