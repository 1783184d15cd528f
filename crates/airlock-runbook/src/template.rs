//! `{{name}}` templates: parsed once when a runbook is loaded, rendered per context.
//!
//! A template is literal text with references to parameters and nothing else: no expressions, no
//! filters, no escapes. What a rendered value may do depends on where it lands, and each context
//! renders it so that it stays *data*: SQL text is never rendered at all (values are bound as query
//! parameters), URL values are percent-encoded as one component, JSON values are built by
//! `serde_json`, and argv elements stay one element each. Nothing here ever splices a value into
//! text that something else will parse again.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::params::Params;

/// Parsed template text such as `"/deploy/{{service}}"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Param(String),
}

/// Why a template did not parse; the caller adds the file, line and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{` without a matching `}}`.
    #[error("`{{{{` is not closed: write {{{{name}}}} to insert a parameter")]
    Unclosed,
    /// `{{ ... }}` whose content is not a parameter name.
    #[error("`{{{{{0}}}}}` is not a parameter reference: write {{{{name}}}}, where name is a declared parameter (no expressions or filters)")]
    NotAName(String),
}

impl Template {
    /// Parses `text`. `{{ name }}` with spaces is accepted; anything else between the braces is not.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or(TemplateError::Unclosed)?;
            let name = after[..close].trim_matches(' ');
            if !is_param_name(name) {
                return Err(TemplateError::NotAName(after[..close].to_owned()));
            }
            parts.push(Part::Param(name.to_owned()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template {
            source: text.to_owned(),
            parts,
        })
    }

    /// The text as written in the runbook.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The parameters referred to, in order of appearance (repeats included).
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Param(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Whether any parameter is referred to.
    pub fn has_params(&self) -> bool {
        self.params().next().is_some()
    }

    /// The parameter when the template is exactly one reference and nothing else (`"{{version}}"`):
    /// such a JSON body value keeps the parameter's type.
    pub fn sole_param(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Param(name)] => Some(name),
            _ => None,
        }
    }

    /// Renders with each value's text inserted as is (argv elements, environment values, SQL
    /// arguments, header values, JSON strings): the caller puts the result somewhere it stays one
    /// value.
    pub fn render_text(&self, params: &Params) -> Result<String, MissingParam> {
        self.render_with(params, |value, out| out.push_str(value))
    }

    /// Renders with each value percent-encoded as a URL component.
    pub fn render_url_component(&self, params: &Params) -> Result<String, MissingParam> {
        self.render_with(params, encode_component)
    }

    fn render_with(
        &self,
        params: &Params,
        insert: impl Fn(&str, &mut String),
    ) -> Result<String, MissingParam> {
        let mut out = String::with_capacity(self.source.len());
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Param(name) => {
                    let value = params.get(name).ok_or_else(|| MissingParam(name.clone()))?;
                    insert(&value.text(), &mut out);
                }
            }
        }
        Ok(out)
    }
}

/// A template referred to a parameter that the [`Params`] do not hold: they were not made by this
/// runbook's [`crate::Runbook::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no value for parameter `{0}`: validate the parameters with the same runbook")]
pub struct MissingParam(pub String);

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

/// `[a-z_][a-z0-9_]*`, at most 63 bytes: parameter names.
pub(crate) fn is_param_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && name.len() <= 63
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// Percent-encodes every byte except ALPHA, DIGIT, `-`, `_` and `~`. That is stricter than RFC
/// 3986's unreserved set on purpose: `.` is encoded too, so a value can never be read as part of a
/// host, an extension or (before the plan's own check) a dot segment.
pub(crate) fn encode_component(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

/// Decodes `%XX` sequences (either case); anything else is kept as is.
pub(crate) fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamValue;

    fn params(pairs: &[(&str, ParamValue)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn parses_references() {
        let cases: &[(&str, &[&str], Option<&str>)] = &[
            ("plain", &[], None),
            ("{{a}}", &["a"], Some("a")),
            ("{{ a }}", &["a"], Some("a")),
            ("x{{a}}y{{b_2}}{{a}}", &["a", "b_2", "a"], None),
            ("}} alone is text", &[], None),
            ("", &[], None),
        ];
        for &(text, names, sole) in cases {
            let t = Template::parse(text).unwrap();
            assert_eq!(t.params().collect::<Vec<_>>(), names, "{text}");
            assert_eq!(t.sole_param(), sole, "{text}");
            assert_eq!(t.source(), text);
        }
    }

    #[test]
    fn refuses_non_references() {
        let cases: &[(&str, TemplateError)] = &[
            ("{{a", TemplateError::Unclosed),
            ("x {{ a }} {{", TemplateError::Unclosed),
            ("{{}}", TemplateError::NotAName(String::new())),
            ("{{A}}", TemplateError::NotAName("A".into())),
            ("{{a|upper}}", TemplateError::NotAName("a|upper".into())),
            ("{{a.b}}", TemplateError::NotAName("a.b".into())),
            ("{{1a}}", TemplateError::NotAName("1a".into())),
            ("{{a b}}", TemplateError::NotAName("a b".into())),
        ];
        for (text, expected) in cases {
            assert_eq!(Template::parse(text).unwrap_err(), *expected, "{text}");
        }
    }

    #[test]
    fn renders_per_context() {
        let p = params(&[
            ("s", ParamValue::String("a b/../?#&=%.é".into())),
            ("n", ParamValue::Int(-42)),
            ("b", ParamValue::Bool(true)),
        ]);
        let t = Template::parse("[{{s}}|{{n}}|{{ b }}]").unwrap();
        assert_eq!(t.render_text(&p).unwrap(), "[a b/../?#&=%.é|-42|true]");
        assert_eq!(
            t.render_url_component(&p).unwrap(),
            "[a%20b%2F%2E%2E%2F%3F%23%26%3D%25%2E%C3%A9|-42|true]"
        );
        let missing = Template::parse("{{zz}}").unwrap().render_text(&p);
        assert_eq!(missing, Err(MissingParam("zz".into())));
    }

    #[test]
    fn percent_round_trip() {
        for value in ["", "a", "..", "%2e%2e", "ünï 😀\u{202e}", "\n\r\t'\";$(x)`"] {
            let mut encoded = String::new();
            encode_component(value, &mut encoded);
            assert!(encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_~%".contains(&b)));
            assert_eq!(percent_decode(&encoded), value.as_bytes(), "{value:?}");
        }
        assert_eq!(percent_decode("%2e%2E%zz%4"), b"..%zz%4");
    }
}
