//! From byte offsets to `file:line:` diagnostics.
//!
//! toml reports where an error is as a byte span. For semantic checks we hold the spans ourselves
//! (`Spanned<T>`); for errors raised by toml and serde (unknown key, missing key, wrong type) we
//! re-read the document as a spanned tree and find the innermost key or value at the error's span,
//! so the message can say *which* table it is in, e.g. `in [[resource]] "orders"`, rather than only
//! a position.

use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use crate::error::Diagnostic;

/// 1-based line number of a byte offset (clamped to the text).
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    1 + text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// `gateway.listen_http`, `resource[0].read.user`.
pub(crate) fn path_string(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Converts an error from `toml` (syntax, or serde's shape checks) into a diagnostic.
pub(crate) fn toml_error(text: &str, file: &Path, err: &toml::de::Error) -> Diagnostic {
    let span = err.span();
    let line = span.as_ref().map_or(1, |s| line_of(text, s.start));
    let diagnostic = |key: String, message: String| Diagnostic {
        file: file.to_path_buf(),
        line,
        key,
        message,
    };
    let message = err.message().trim();
    let tree = match DeTable::parse(text) {
        Ok(tree) => tree,
        // A syntax error: toml's message says what it expected; add the offending text when short.
        Err(_) => {
            let at = span
                .as_ref()
                .and_then(|s| text.get(s.clone()))
                .filter(|t| !t.is_empty() && t.len() <= 40 && !t.contains('\n'));
            let message = match at {
                Some(at) => format!("invalid TOML: {message} (at `{at}`)"),
                None => format!("invalid TOML: {message}"),
            };
            return diagnostic(String::new(), message);
        }
    };
    let path = match &span {
        // An empty span at the start is how serde reports a problem with the document as a whole
        // (e.g. a missing [gateway]); attributing it to whatever starts at offset 0 would mislead.
        Some(s) if !s.is_empty() => innermost(tree.get_ref(), s),
        _ => Vec::new(),
    };
    let root = tree.get_ref();

    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let table = parent(&path, field);
        let place = describe(root, table);
        let mut key = table.to_vec();
        key.push(Seg::Key(field.to_owned()));
        let message = if field == "password" {
            format!(
                "inline `password` {place}: secrets are never inline: use password_env = \"VAR\" and set VAR in the gateway's environment"
            )
        } else {
            let expected = expected.trim_start_matches(',').trim();
            if expected.is_empty() {
                format!("unknown key `{field}` {place}")
            } else {
                format!("unknown key `{field}` {place}: {expected}")
            }
        };
        return diagnostic(path_string(&key), message);
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        let mut key = path.clone();
        key.push(Seg::Key(field.to_owned()));
        let message = if path.is_empty() {
            format!("missing the [{field}] table")
        } else {
            format!("missing key `{field}` {}", describe(root, &path))
        };
        return diagnostic(path_string(&key), message);
    }

    // A value of the wrong type or out of range: the path ends at the key.
    let (table, field) = match path.split_last() {
        Some((Seg::Key(field), table)) => (table, field.as_str()),
        _ => (&path[..], ""),
    };
    let mut message = if field.is_empty() {
        format!("{} {message}", describe(root, table))
    } else {
        format!("`{field}` {}: {message}", describe(root, table))
    };
    if table.is_empty()
        && ["resource", "role", "user"].contains(&field)
        && message.contains("expected a sequence")
    {
        message.push_str(&format!(
            "; write [[{field}]] (double brackets): each {field} is one entry of an array of tables"
        ));
    }
    diagnostic(path_string(&path), message)
}

/// The path of the table an unknown key was found in: the key's own path minus the key, when the
/// span pointed at the key (it does), else the path itself.
fn parent<'p>(path: &'p [Seg], field: &str) -> &'p [Seg] {
    match path.split_last() {
        Some((Seg::Key(last), table)) if last == field => table,
        _ => path,
    }
}

/// Where in the document a table is, in words: `in [gateway]`, `in [[resource]] "orders"`,
/// `in `read` of [[resource]] "orders"`, `at the top level`.
pub(crate) fn describe(root: &DeTable<'_>, path: &[Seg]) -> String {
    let Some(Seg::Key(section)) = path.first() else {
        return "at the top level".to_owned();
    };
    let (label, rest) = match path.get(1) {
        Some(Seg::Index(i)) => {
            let name = value_at(root, &path[..2])
                .and_then(|v| v.as_table())
                .and_then(|t| t.get("name"))
                .and_then(|v| v.get_ref().as_str());
            let label = match name {
                Some(name) => format!("[[{section}]] {name:?}"),
                None => format!("[[{section}]] #{}", i + 1),
            };
            (label, &path[2..])
        }
        _ => (format!("[{section}]"), &path[1..]),
    };
    if rest.is_empty() {
        format!("in {label}")
    } else {
        format!("in `{}` of {label}", path_string(rest))
    }
}

fn value_at<'a, 'i>(root: &'a DeTable<'i>, path: &[Seg]) -> Option<&'a DeValue<'i>> {
    let (Seg::Key(first), rest) = path.split_first()? else {
        return None;
    };
    let mut value = root.get(first.as_str())?.get_ref();
    for seg in rest {
        value = match seg {
            Seg::Key(key) => value.as_table()?.get(key.as_str())?.get_ref(),
            Seg::Index(i) => value.as_array()?.get(*i)?.get_ref(),
        };
    }
    Some(value)
}

/// The path of the smallest key or value whose span contains `target`; the deeper path on ties
/// (an `[[array]]` header is the span of both the array and its entry).
fn innermost(root: &DeTable<'_>, target: &Range<usize>) -> Vec<Seg> {
    let mut nodes = Vec::new();
    collect_table(root, &mut Vec::new(), &mut nodes);
    nodes
        .into_iter()
        .filter(|(span, _)| span.start <= target.start && target.end <= span.end)
        .min_by_key(|(span, path)| (span.len(), std::cmp::Reverse(path.len())))
        .map(|(_, path)| path)
        .unwrap_or_default()
}

type Node = (Range<usize>, Vec<Seg>);

fn collect_table(table: &DeTable<'_>, path: &mut Vec<Seg>, out: &mut Vec<Node>) {
    for (key, value) in table.iter() {
        path.push(Seg::Key(key.get_ref().to_string()));
        out.push((key.span(), path.clone()));
        out.push((value.span(), path.clone()));
        collect_value(value.get_ref(), path, out);
        path.pop();
    }
}

fn collect_value(value: &DeValue<'_>, path: &mut Vec<Seg>, out: &mut Vec<Node>) {
    match value {
        DeValue::Table(table) => collect_table(table, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                out.push((item.span(), path.clone()));
                collect_value(item.get_ref(), path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based() {
        let text = "a\nbb\n\nc";
        let cases = [(0, 1), (1, 1), (2, 2), (5, 3), (6, 4), (99, 4)];
        for (offset, line) in cases {
            assert_eq!(line_of(text, offset), line, "offset {offset}");
        }
    }

    #[test]
    fn paths_render_like_toml_keys() {
        let path = [
            Seg::Key("role".into()),
            Seg::Index(0),
            Seg::Key("standing".into()),
            Seg::Index(2),
            Seg::Key("access".into()),
        ];
        assert_eq!(path_string(&path), "role[0].standing[2].access");
    }
}
