//! `airlock compare`: two versions of a service side by side — request count,
//! error rate and p50/p95/p99 duration of their server spans — and the error
//! messages that appear only in the newer one, most frequent first.

use std::collections::HashSet;
use std::fmt::Write as _;

use airlock_store::telemetry::{ErrorMessage, TelemetryStore, VersionQuery, VersionStats};
use airlock_store::StoreError;
use serde::{Deserialize, Serialize};

use airlock_config::text::escape;

use crate::trace::{format_ns, one_line};

/// How many of the older version's messages are read to tell what is new.
const KNOWN_MESSAGES: usize = 100_000;

/// `GET /api/v1/compare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub service: String,
    pub since_ns: i64,
    pub until_ns: i64,
    pub from: VersionSide,
    pub to: VersionSide,
    /// Error messages of `to` that `from` never had in the window.
    pub new_errors: Vec<ErrorMessage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionSide {
    pub version: String,
    /// Errors ÷ requests; `None` without requests.
    pub error_rate: Option<f64>,
    #[serde(flatten)]
    pub stats: VersionStats,
}

pub fn compare(
    store: &dyn TelemetryStore,
    service: &str,
    from: &str,
    to: &str,
    since_ns: i64,
    until_ns: i64,
    new_errors_limit: usize,
) -> Result<Comparison, StoreError> {
    let query = |version: &str| VersionQuery {
        service: service.to_owned(),
        version: version.to_owned(),
        since_ns,
        until_ns,
    };
    let side = |version: &str| -> Result<VersionSide, StoreError> {
        let stats = store.version_stats(&query(version))?;
        Ok(VersionSide {
            version: version.to_owned(),
            error_rate: (stats.requests > 0).then(|| stats.errors as f64 / stats.requests as f64),
            stats,
        })
    };
    let known: HashSet<String> = store
        .error_messages(&query(from), KNOWN_MESSAGES)?
        .into_iter()
        .map(|m| m.message)
        .collect();
    let new_errors = store
        .error_messages(&query(to), KNOWN_MESSAGES)?
        .into_iter()
        .filter(|m| !known.contains(&m.message))
        .take(new_errors_limit)
        .collect();
    Ok(Comparison {
        service: service.to_owned(),
        since_ns,
        until_ns,
        from: side(from)?,
        to: side(to)?,
        new_errors,
    })
}

impl Comparison {
    /// The comparison as a table for the terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let (a, b) = (&self.from, &self.to);
        // Service and versions are names services sent: shown escaped.
        let (av, bv) = (escape(&a.version), escape(&b.version));
        let w = av.chars().count().max(bv.chars().count()).max(8);
        let _ = writeln!(out, "service {}", escape(&self.service));
        let _ = writeln!(out, "{:<10} {:>w$} {:>w$}  change", "", av, bv);
        let count = |s: &VersionSide| s.stats.requests.to_string();
        let _ = writeln!(out, "{:<10} {:>w$} {:>w$}", "requests", count(a), count(b));
        let rate = |s: &VersionSide| {
            s.error_rate
                .map_or("-".to_owned(), |r| format!("{:.2}%", r * 100.0))
        };
        let rate_change = match (a.error_rate, b.error_rate) {
            (Some(x), Some(y)) => format!("{:+.2} pp", (y - x) * 100.0),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<10} {:>w$} {:>w$}  {rate_change}",
            "errors",
            rate(a),
            rate(b)
        );
        for (label, pick) in [
            (
                "p50",
                (|s: &VersionStats| s.p50_ns) as fn(&VersionStats) -> Option<i64>,
            ),
            ("p95", |s| s.p95_ns),
            ("p99", |s| s.p99_ns),
        ] {
            let (x, y) = (pick(&a.stats), pick(&b.stats));
            let show = |v: Option<i64>| v.map_or("-".to_owned(), format_ns);
            let change = match (x, y) {
                (Some(x), Some(y)) if x > 0 => {
                    format!("{:+.1}%", (y as f64 - x as f64) / x as f64 * 100.0)
                }
                _ => String::new(),
            };
            let _ = writeln!(out, "{label:<10} {:>w$} {:>w$}  {change}", show(x), show(y));
        }
        if self.new_errors.is_empty() {
            let _ = writeln!(out, "no error messages only in {bv}");
        } else {
            let _ = writeln!(out, "errors only in {bv}:");
            for m in &self.new_errors {
                let _ = writeln!(out, "  {:>6}×  {}", m.count, one_line(&m.message, 160));
            }
        }
        out
    }
}
