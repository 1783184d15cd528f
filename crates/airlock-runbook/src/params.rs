//! Typed parameter values and their validation.
//!
//! Callers (the CLI, the API) hand over parameters as text; [`Runbook::validate`] checks every one
//! against its declaration and reports every problem at once. Validation is about *meaning* (an
//! int, one of the enum values, the declared pattern), not about safety: quotes, `;`, `$(...)`,
//! newlines and `../` are valid strings when the declaration allows them, because every context a
//! value is rendered into keeps it data (see `template.rs`). The one exception is NUL, which no
//! argv element, environment value or PostgreSQL text can hold.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{Param, ParamKind, Runbook};

/// One validated value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// `bool`.
    Bool(bool),
    /// `int`.
    Int(i64),
    /// `string` and `enum`.
    String(String),
}

impl ParamValue {
    /// The value as text: what SQL arguments, argv elements and URL components receive.
    pub fn text(&self) -> String {
        match self {
            ParamValue::Bool(b) => b.to_string(),
            ParamValue::Int(n) => n.to_string(),
            ParamValue::String(s) => s.clone(),
        }
    }

    /// The value as JSON, keeping its type (for a body value that is exactly `"{{name}}"`).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ParamValue::Bool(b) => (*b).into(),
            ParamValue::Int(n) => (*n).into(),
            ParamValue::String(s) => s.clone().into(),
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// Validated parameters by name, defaults filled in: what a plan is rendered from and what the
/// audit log records ("run exactly as approved").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Params(BTreeMap<String, ParamValue>);

impl Params {
    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.0.get(name)
    }

    /// All values, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParamValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The values as text, the form [`Runbook::validate`] takes: re-validating a stored request
    /// against the runbook gives the same `Params` back.
    pub fn to_strings(&self) -> BTreeMap<String, String> {
        self.0.iter().map(|(k, v)| (k.clone(), v.text())).collect()
    }
}

impl FromIterator<(String, ParamValue)> for Params {
    fn from_iter<I: IntoIterator<Item = (String, ParamValue)>>(iter: I) -> Self {
        Params(iter.into_iter().collect())
    }
}

/// One parameter problem. Values are quoted in messages, shortened when long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// The runbook declares no such parameter.
    #[error("unknown parameter {name}: this runbook takes {known}")]
    Unknown {
        /// The name given, quoted.
        name: String,
        /// The declared names, in words.
        known: String,
    },
    /// A required parameter was not given.
    #[error("missing parameter `{name}`: it is required")]
    Missing {
        /// The parameter.
        name: String,
    },
    /// An `int` that is not a whole number.
    #[error("`{name}` must be a whole number, got {value}")]
    NotAnInt {
        /// The parameter.
        name: String,
        /// The value given, quoted.
        value: String,
    },
    /// An `int` outside `min..=max`.
    #[error("`{name}` must be {range}, got {value}")]
    OutOfRange {
        /// The parameter.
        name: String,
        /// The value given.
        value: i64,
        /// The allowed range in words: `at least 30`, `between 1 and 10`.
        range: String,
    },
    /// A `bool` that is not `true` or `false`.
    #[error("`{name}` must be true or false, got {value}")]
    NotABool {
        /// The parameter.
        name: String,
        /// The value given, quoted.
        value: String,
    },
    /// An `enum` value that is not one of the declared values.
    #[error("`{name}` must be one of {values}, got {value}")]
    NotOneOf {
        /// The parameter.
        name: String,
        /// The value given, quoted.
        value: String,
        /// The allowed values, quoted.
        values: String,
    },
    /// A `string` that does not match the declared pattern (as a whole).
    #[error("`{name}` must match the pattern {pattern} (the whole value), got {value}")]
    NoMatch {
        /// The parameter.
        name: String,
        /// The value given, quoted.
        value: String,
        /// The pattern as declared.
        pattern: String,
    },
    /// A `string` longer than `max_len` characters.
    #[error("`{name}` is {len} characters long; the most allowed is {max_len}")]
    TooLong {
        /// The parameter.
        name: String,
        /// Its length in characters.
        len: usize,
        /// The limit.
        max_len: usize,
    },
    /// A string with a NUL byte.
    #[error("`{name}` contains a NUL byte, which no command argument or PostgreSQL text can hold")]
    Nul {
        /// The parameter.
        name: String,
    },
}

impl Runbook {
    /// Checks `given` against the declared parameters and fills in defaults. Reports every problem
    /// at once, in parameter order, unknown names last.
    pub fn validate(&self, given: &BTreeMap<String, String>) -> Result<Params, Vec<ParamError>> {
        let mut values = BTreeMap::new();
        let mut errors = Vec::new();
        for param in &self.params {
            match (given.get(&param.name), &param.default) {
                (Some(text), _) => match check(param, text) {
                    Ok(value) => {
                        values.insert(param.name.clone(), value);
                    }
                    Err(e) => errors.push(e),
                },
                (None, Some(default)) => {
                    values.insert(param.name.clone(), default.clone());
                }
                (None, None) => errors.push(ParamError::Missing {
                    name: param.name.clone(),
                }),
            }
        }
        for name in given.keys() {
            if !self.params.iter().any(|p| &p.name == name) {
                let known = if self.params.is_empty() {
                    "no parameters".to_owned()
                } else {
                    self.params
                        .iter()
                        .map(|p| format!("`{}`", p.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                errors.push(ParamError::Unknown {
                    name: shorten(name),
                    known,
                });
            }
        }
        if errors.is_empty() {
            Ok(Params(values))
        } else {
            Err(errors)
        }
    }
}

/// Checks one value given as text (also used for defaults when a runbook is loaded).
pub(crate) fn check(param: &Param, text: &str) -> Result<ParamValue, ParamError> {
    let name = || param.name.clone();
    match &param.kind {
        ParamKind::Int { min, max } => {
            let value: i64 = text.parse().map_err(|_| ParamError::NotAnInt {
                name: name(),
                value: shorten(text),
            })?;
            if min.is_some_and(|m| value < m) || max.is_some_and(|m| value > m) {
                let range = match (min, max) {
                    (Some(lo), Some(hi)) => format!("between {lo} and {hi}"),
                    (Some(lo), None) => format!("at least {lo}"),
                    (None, Some(hi)) => format!("at most {hi}"),
                    (None, None) => unreachable!("out of range needs a bound"),
                };
                return Err(ParamError::OutOfRange {
                    name: name(),
                    value,
                    range,
                });
            }
            Ok(ParamValue::Int(value))
        }
        ParamKind::Bool => match text {
            "true" => Ok(ParamValue::Bool(true)),
            "false" => Ok(ParamValue::Bool(false)),
            _ => Err(ParamError::NotABool {
                name: name(),
                value: shorten(text),
            }),
        },
        ParamKind::Enum { values } => {
            if values.iter().any(|v| v == text) {
                Ok(ParamValue::String(text.to_owned()))
            } else {
                Err(ParamError::NotOneOf {
                    name: name(),
                    value: shorten(text),
                    values: values
                        .iter()
                        .map(|v| format!("{v:?}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        }
        ParamKind::String { pattern, max_len } => {
            // NUL first: the other messages would quote a value that cannot be used at all.
            if text.contains('\0') {
                return Err(ParamError::Nul { name: name() });
            }
            let len = text.chars().count();
            if len > *max_len {
                return Err(ParamError::TooLong {
                    name: name(),
                    len,
                    max_len: *max_len,
                });
            }
            if let Some(pattern) = pattern {
                if !pattern.is_match(text) {
                    return Err(ParamError::NoMatch {
                        name: name(),
                        value: shorten(text),
                        pattern: format!("{:?}", pattern.source()),
                    });
                }
            }
            Ok(ParamValue::String(text.to_owned()))
        }
    }
}

/// `text` quoted for a message, cut to 60 characters: an error must not echo a megabyte back.
fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head:?}...")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const RUNBOOK: &str = r#"
name = "p"
roles = ["oncall"]

[[param]]
name = "version"
type = "string"
pattern = "v[0-9]+"
max_len = 5

[[param]]
name = "free"
type = "string"
default = ""

[[param]]
name = "n"
type = "int"
min = 30
max = 100
default = 60

[[param]]
name = "neg"
type = "int"
max = -1
default = -5

[[param]]
name = "dry_run"
type = "bool"
default = true

[[param]]
name = "service"
type = "enum"
values = ["checkout", "orders"]
default = "orders"

[[step]]
kind = "command"
argv = ["/bin/echo", "{{version}}", "{{free}}", "{{n}}", "{{neg}}", "{{dry_run}}", "{{service}}"]
"#;

    fn runbook() -> Runbook {
        crate::parse(Path::new("p.toml"), RUNBOOK).unwrap()
    }

    #[test]
    fn good_values_by_type() {
        let rb = runbook();
        let cases: &[(&str, &str, ParamValue)] = &[
            ("version", "v1", ParamValue::String("v1".into())),
            ("version", "v1234", ParamValue::String("v1234".into())),
            ("n", "30", ParamValue::Int(30)),
            ("n", "100", ParamValue::Int(100)),
            ("n", "+45", ParamValue::Int(45)),
            ("neg", "-9223372036854775808", ParamValue::Int(i64::MIN)),
            ("dry_run", "false", ParamValue::Bool(false)),
            ("service", "checkout", ParamValue::String("checkout".into())),
            // Valid strings, whatever they look like: safety is in the rendering.
            (
                "free",
                "it's \"x\"; $(touch /tmp/p) `id` ../../etc",
                ParamValue::String("it's \"x\"; $(touch /tmp/p) `id` ../../etc".into()),
            ),
            (
                "free",
                "line\nbreak\r\n",
                ParamValue::String("line\nbreak\r\n".into()),
            ),
            (
                "free",
                "ünï 😀 \u{202e}",
                ParamValue::String("ünï 😀 \u{202e}".into()),
            ),
        ];
        for (name, text, expected) in cases {
            let mut given = BTreeMap::from([("version".to_owned(), "v1".to_owned())]);
            given.insert(name.to_string(), text.to_string());
            let params = rb
                .validate(&given)
                .unwrap_or_else(|e| panic!("{name}={text:?}: {e:?}"));
            assert_eq!(params.get(name), Some(expected), "{name}={text:?}");
        }
    }

    #[test]
    fn defaults_fill_in_and_round_trip() {
        let rb = runbook();
        let given = BTreeMap::from([("version".to_owned(), "v2".to_owned())]);
        let params = rb.validate(&given).unwrap();
        assert_eq!(
            serde_json::to_value(&params).unwrap(),
            serde_json::json!({"version": "v2", "free": "", "n": 60, "neg": -5, "dry_run": true, "service": "orders"})
        );
        // What an approval stores can be validated again to the same parameters.
        assert_eq!(rb.validate(&params.to_strings()), Ok(params));
    }

    #[test]
    fn bad_values_by_type() {
        let rb = runbook();
        let cases: &[(&str, &str, &str)] = &[
            ("version", "1.0", "`version` must match the pattern \"v[0-9]+\" (the whole value), got \"1.0\""),
            // Anchored although the author did not write ^...$.
            ("version", "xv1", "must match the pattern"),
            ("version", "v1\n", "must match the pattern"),
            ("version", "v12345", "`version` is 6 characters long; the most allowed is 5"),
            ("version", "v1\0", "`version` contains a NUL byte"),
            ("free", "a\0b", "`free` contains a NUL byte"),
            ("n", "abc", "`n` must be a whole number, got \"abc\""),
            ("n", "1.5", "must be a whole number"),
            ("n", " 40", "must be a whole number"),
            ("n", "", "must be a whole number"),
            ("n", "99999999999999999999", "must be a whole number"),
            ("n", "29", "`n` must be between 30 and 100, got 29"),
            ("n", "101", "`n` must be between 30 and 100, got 101"),
            ("neg", "0", "`neg` must be at most -1, got 0"),
            ("dry_run", "yes", "`dry_run` must be true or false, got \"yes\""),
            ("dry_run", "True", "must be true or false"),
            ("service", "Orders", "`service` must be one of \"checkout\", \"orders\", got \"Orders\""),
            ("service", "orders ", "must be one of"),
            ("nope", "1", "unknown parameter \"nope\": this runbook takes `version`, `free`, `n`, `neg`, `dry_run`, `service`"),
        ];
        for &(name, text, expected) in cases {
            let mut given = BTreeMap::from([("version".to_owned(), "v1".to_owned())]);
            given.insert(name.to_owned(), text.to_owned());
            let errors = rb.validate(&given).unwrap_err();
            assert_eq!(errors.len(), 1, "{name}={text:?}: {errors:?}");
            let message = errors[0].to_string();
            assert!(message.contains(expected), "{name}={text:?}: {message}");
        }
    }

    #[test]
    fn every_problem_at_once() {
        let rb = runbook();
        let given = BTreeMap::from([
            ("n".to_owned(), "5".to_owned()),
            ("dry_run".to_owned(), "maybe".to_owned()),
            ("extra".to_owned(), "1".to_owned()),
        ]);
        let errors = rb.validate(&given).unwrap_err();
        let names: Vec<&str> = errors
            .iter()
            .map(|e| match e {
                ParamError::Missing { name }
                | ParamError::OutOfRange { name, .. }
                | ParamError::NotABool { name, .. }
                | ParamError::Unknown { name, .. } => name.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["version", "n", "dry_run", "\"extra\""]);
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let rb = runbook();
        let given = BTreeMap::from([("n".to_owned(), "x".repeat(10_000))]);
        let errors = rb.validate(&given).unwrap_err();
        assert!(
            errors.iter().all(|e| e.to_string().len() < 200),
            "{errors:?}"
        );
    }
}
