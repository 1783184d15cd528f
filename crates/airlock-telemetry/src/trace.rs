//! One trace as the API returns it, and as `airlock trace` draws it: a
//! waterfall of spans (tree, offsets, durations, status, service.version)
//! with the trace's logs interleaved under the spans that wrote them.
//!
//! Everything in a trace came from the services that sent it: names, log
//! bodies, status messages and resource attributes are drawn escaped
//! (`airlock_config::text`), so a terminal shows what the bytes say.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use airlock_config::text::escape;
use airlock_store::telemetry::{Attributes, Trace};
use serde::{Deserialize, Serialize};

/// `GET /api/v1/traces/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceView {
    pub trace_id: String,
    /// By start time.
    pub spans: Vec<SpanView>,
    /// By time.
    pub logs: Vec<LogView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanView {
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub kind: String,
    pub service: String,
    pub version: Option<String>,
    pub env: Option<String>,
    pub instance_id: Option<String>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub duration_ns: i64,
    pub status: String,
    pub status_message: String,
    pub attributes: Attributes,
    pub events: Vec<SpanEventView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanEventView {
    pub time_ns: i64,
    pub name: String,
    pub attributes: Attributes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogView {
    pub time_ns: i64,
    pub span_id: Option<String>,
    pub service: String,
    pub version: Option<String>,
    pub severity_number: i32,
    pub severity_text: String,
    pub body: String,
    pub attributes: Attributes,
}

impl TraceView {
    pub fn new(trace_id: &[u8; 16], t: Trace) -> TraceView {
        let mut spans: Vec<SpanView> = t
            .spans
            .into_iter()
            .map(|s| {
                let (span, r) = (s.span, s.resource);
                SpanView {
                    span_id: hex::encode(span.span_id),
                    parent_span_id: span.parent_span_id.map(hex::encode),
                    duration_ns: span.duration_ns(),
                    name: span.name,
                    kind: span.kind.as_str().to_owned(),
                    service: r.service,
                    version: r.version,
                    env: r.env,
                    instance_id: r.instance_id,
                    start_ns: span.start_ns,
                    end_ns: span.end_ns,
                    status: span.status.as_str().to_owned(),
                    status_message: span.status_message,
                    attributes: span.attributes,
                    events: span
                        .events
                        .into_iter()
                        .map(|e| SpanEventView {
                            time_ns: e.time_ns,
                            name: e.name,
                            attributes: e.attributes,
                        })
                        .collect(),
                }
            })
            .collect();
        spans.sort_by(|a, b| a.start_ns.cmp(&b.start_ns).then(a.span_id.cmp(&b.span_id)));
        let mut logs: Vec<LogView> = t
            .logs
            .into_iter()
            .map(|l| {
                let (log, r) = (l.log, l.resource);
                LogView {
                    time_ns: log.time_ns,
                    span_id: log.span_id.map(hex::encode),
                    service: r.service,
                    version: r.version,
                    severity_number: log.severity_number,
                    severity_text: log.severity_text,
                    body: log.body,
                    attributes: log.attributes,
                }
            })
            .collect();
        logs.sort_by_key(|l| l.time_ns);
        TraceView {
            trace_id: hex::encode(trace_id),
            spans,
            logs,
        }
    }

    /// The spans in tree order, each with its depth: roots (and spans whose
    /// parent is not stored) first by start time, each followed by its
    /// children by start time.
    pub fn tree(&self) -> Vec<(usize, &SpanView)> {
        let ids: HashSet<&str> = self.spans.iter().map(|s| s.span_id.as_str()).collect();
        let mut children: HashMap<&str, Vec<&SpanView>> = HashMap::new();
        let mut roots = Vec::new();
        for s in &self.spans {
            match s.parent_span_id.as_deref() {
                Some(p) if ids.contains(p) && p != s.span_id => {
                    children.entry(p).or_default().push(s)
                }
                _ => roots.push(s),
            }
        }
        let mut out = Vec::with_capacity(self.spans.len());
        let mut seen = HashSet::new();
        // Spans only reachable through a cycle of parent ids (bad data) are
        // walked from the earliest of them after the real roots.
        let later_roots = self.spans.iter();
        for root in roots.into_iter().chain(later_roots) {
            let mut stack = vec![(0, root)];
            while let Some((depth, s)) = stack.pop() {
                if !seen.insert(s.span_id.as_str()) {
                    continue;
                }
                out.push((depth, s));
                if let Some(kids) = children.get(s.span_id.as_str()) {
                    stack.extend(kids.iter().rev().map(|k| (depth + 1, *k)));
                }
            }
        }
        out
    }

    /// The waterfall as text, `width` columns for the bars.
    pub fn render(&self, width: usize) -> String {
        let mut out = String::new();
        if self.spans.is_empty() && self.logs.is_empty() {
            let _ = writeln!(out, "trace {}: nothing stored", self.trace_id);
            return out;
        }
        let start = self
            .spans
            .iter()
            .map(|s| s.start_ns)
            .chain(self.logs.iter().map(|l| l.time_ns))
            .min()
            .unwrap_or(0);
        let end = self
            .spans
            .iter()
            .map(|s| s.end_ns)
            .chain(self.logs.iter().map(|l| l.time_ns))
            .max()
            .unwrap_or(start);
        let total = (end - start).max(1);
        let services: HashSet<&str> = self.spans.iter().map(|s| s.service.as_str()).collect();
        let errors = self.spans.iter().filter(|s| s.status == "error").count();
        let _ = writeln!(
            out,
            "trace {}  {} spans  {} services  {}  {} errors",
            self.trace_id,
            self.spans.len(),
            services.len(),
            format_ns(total),
            errors
        );
        let mut logs_by_span: HashMap<&str, Vec<&LogView>> = HashMap::new();
        let mut loose = Vec::new();
        let ids: HashSet<&str> = self.spans.iter().map(|s| s.span_id.as_str()).collect();
        for l in &self.logs {
            match l.span_id.as_deref() {
                Some(id) if ids.contains(id) => logs_by_span.entry(id).or_default().push(l),
                _ => loose.push(l),
            }
        }
        let label_width = self
            .tree()
            .iter()
            .map(|(d, s)| 2 * d + escape(&s.name).chars().count())
            .max()
            .unwrap_or(0)
            .clamp(12, 48);
        for (depth, s) in self.tree() {
            let mut label = format!("{}{}", "  ".repeat(depth), escape(&s.name));
            if label.chars().count() > label_width {
                label = label.chars().take(label_width - 1).collect::<String>() + "…";
            }
            let from = ((s.start_ns - start) as f64 / total as f64 * width as f64) as usize;
            let len = ((s.duration_ns as f64 / total as f64 * width as f64).ceil() as usize)
                .max(1)
                .min(width.saturating_sub(from).max(1));
            let bar = format!(
                "{}{}{}",
                " ".repeat(from.min(width)),
                if s.status == "error" { "!" } else { "█" }.repeat(len),
                " ".repeat(width.saturating_sub(from + len))
            );
            let status = match s.status.as_str() {
                "error" if s.status_message.is_empty() => " ERROR".to_owned(),
                "error" => format!(" ERROR: {}", one_line(&s.status_message, 80)),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "{label:<label_width$} |{bar}| {:>9} +{:<9} {}@{}{status}",
                format_ns(s.duration_ns),
                format_ns(s.start_ns - start),
                escape(&s.service),
                escape(s.version.as_deref().unwrap_or("?")),
            );
            for l in logs_by_span.get(s.span_id.as_str()).into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "{}  ↳ +{} {} {}",
                    "  ".repeat(depth),
                    format_ns(l.time_ns - start),
                    severity(l),
                    one_line(&l.body, 120)
                );
            }
        }
        if !loose.is_empty() {
            let _ = writeln!(out, "logs of this trace without a stored span:");
            for l in loose {
                let _ = writeln!(
                    out,
                    "  +{} {} {} {}",
                    format_ns(l.time_ns - start),
                    escape(&l.service),
                    severity(l),
                    one_line(&l.body, 120)
                );
            }
        }
        out
    }
}

fn severity(l: &LogView) -> String {
    if l.severity_text.is_empty() {
        format!("sev{}", l.severity_number)
    } else {
        escape(&l.severity_text).into_owned()
    }
}

/// The first line of untrusted `s` for a terminal: control and invisible
/// formatting characters escaped, at most `max` characters (escapes count).
pub fn one_line(s: &str, max: usize) -> String {
    let first = s.lines().next().unwrap_or("");
    let more = first.len() < s.trim_end().len();
    let line = escape(first);
    if line.chars().count() > max {
        line.chars().take(max - 1).collect::<String>() + "…"
    } else if more {
        format!("{line} …")
    } else {
        line.into_owned()
    }
}

/// A duration for people: 850ns, 12.3µs, 4.56ms, 1.23s, 2m03s.
pub fn format_ns(ns: i64) -> String {
    let ns = ns.max(0) as f64;
    if ns < 1e3 {
        format!("{ns:.0}ns")
    } else if ns < 1e6 {
        format!("{:.1}µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2}ms", ns / 1e6)
    } else if ns < 60e9 {
        format!("{:.2}s", ns / 1e9)
    } else {
        let s = (ns / 1e9) as u64;
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: Option<&str>, name: &str, start: i64, end: i64) -> SpanView {
        SpanView {
            span_id: id.into(),
            parent_span_id: parent.map(Into::into),
            name: name.into(),
            kind: "server".into(),
            service: "checkout".into(),
            version: Some("v2".into()),
            env: None,
            instance_id: None,
            start_ns: start,
            end_ns: end,
            duration_ns: end - start,
            status: "unset".into(),
            status_message: String::new(),
            attributes: Default::default(),
            events: vec![],
        }
    }

    #[test]
    fn tree_orders_children_under_parents_and_survives_cycles() {
        let view = TraceView {
            trace_id: "t".into(),
            spans: vec![
                span("a", None, "GET /cart", 0, 100),
                span("c", Some("a"), "SELECT", 50, 60),
                span("b", Some("a"), "auth", 10, 20),
                span("x", Some("y"), "loop1", 5, 6),
                span("y", Some("x"), "loop2", 6, 7),
                span("o", Some("missing"), "orphan", 70, 80),
            ],
            logs: vec![],
        };
        let mut sorted = view.clone();
        sorted.spans.sort_by_key(|s| s.start_ns);
        let names: Vec<(usize, &str)> = sorted
            .tree()
            .iter()
            .map(|(d, s)| (*d, s.name.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                (0, "GET /cart"),
                (1, "auth"),
                (1, "SELECT"),
                (0, "orphan"),
                (0, "loop1"),
                (1, "loop2"),
            ]
        );
    }

    #[test]
    fn render_shows_durations_versions_errors_and_logs() {
        let mut failing = span("c", Some("a"), "charge card", 500_000, 1_000_000);
        failing.status = "error".into();
        failing.status_message = "card declined".into();
        let view = TraceView {
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            spans: vec![span("a", None, "POST /pay", 0, 1_000_000), failing],
            logs: vec![LogView {
                time_ns: 900_000,
                span_id: Some("c".into()),
                service: "checkout".into(),
                version: Some("v2".into()),
                severity_number: 17,
                severity_text: "ERROR".into(),
                body: "declined by issuer\nstack...".into(),
                attributes: Default::default(),
            }],
        };
        let text = view.render(20);
        assert!(
            text.starts_with(
                "trace 0af7651916cd43dd8448eb211c80319c  2 spans  1 services  1.00ms  1 errors"
            ),
            "{text}"
        );
        assert!(text.contains("POST /pay"), "{text}");
        assert!(text.contains("|████████████████████|"), "{text}");
        assert!(text.contains("  charge card"), "{text}");
        assert!(text.contains("!!!!!!!!!!"), "{text}");
        assert!(text.contains("checkout@v2 ERROR: card declined"), "{text}");
        assert!(
            text.contains("↳ +900.0µs ERROR declined by issuer …"),
            "{text}"
        );
    }

    /// Regression: span names, log bodies, status messages and resource
    /// attributes from OTLP reached the terminal raw; an ESC or CR in them
    /// could redraw what `airlock trace` showed.
    #[test]
    fn render_escapes_what_services_sent() {
        let mut failing = span("c", Some("a"), "charge\x1b[2J card", 0, 10);
        failing.status = "error".into();
        failing.status_message = "declined\rOK".into();
        failing.service = "pay\u{202e}ment".into();
        let view = TraceView {
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            spans: vec![span("a", None, "POST /pay", 0, 10), failing],
            logs: vec![LogView {
                time_ns: 5,
                span_id: None,
                service: "checkout\x07".into(),
                version: None,
                severity_number: 17,
                severity_text: "ERR\x1b[0m".into(),
                body: "all good\r\x1b[31mfailed\ntrace".into(),
                attributes: Default::default(),
            }],
        };
        let text = view.render(20);
        assert!(
            !text.contains(|c: char| airlock_config::text::is_unsafe(c)),
            "{text:?}"
        );
        assert!(text.contains("  charge\\x1b[2J card"), "{text}");
        assert!(
            text.contains("pay\\u{202e}ment@v2 ERROR: declined\\rOK"),
            "{text}"
        );
        assert!(
            text.contains("checkout\\x07 ERR\\x1b[0m all good\\r\\x1b[31mfailed …"),
            "{text}"
        );
        assert_eq!(one_line("a\u{200b}b\nc", 10), "a\\u{200b}b …");
        assert_eq!(one_line("\x1b\x1b\x1b", 5), "\\x1b…");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(format_ns(850), "850ns");
        assert_eq!(format_ns(12_345), "12.3µs");
        assert_eq!(format_ns(4_560_000), "4.56ms");
        assert_eq!(format_ns(1_234_000_000), "1.23s");
        assert_eq!(format_ns(123_000_000_000), "2m03s");
    }
}
