//! Guardrails on what a session may run even when its access allows it:
//! commands denied outright (for a reviewed `airlock exec` instead),
//! UPDATE/DELETE without WHERE, and a statement timeout the session cannot
//! lift. Result-size limits (`max_rows`) are enforced by the proxy on the
//! way back; they are carried here so one value describes a session's rails.
//!
//! **What a `deny` word matches.** A rule name (`truncate`, `ddl`, `grant`,
//! `delete`, ...: see [`Rule`]) matches every statement classified under that
//! rule, wherever in the text the rule fired (a DELETE inside a CTE, behind
//! `EXPLAIN ANALYZE` or `PREPARE`). A command kind (`drop_table`,
//! `alter_table`, `create_index`, ...) matches the statement's top-level
//! command, and a kind's leading words match all kinds that start with them
//! at an `_` boundary: `drop` matches `drop_table` and `drop_index`, not
//! `dropped`. Words are checked against the vocabulary when the policy is
//! loaded ([`deny_word_problem`]), so a typo is an error, never a rail that
//! silently matches nothing.
//!
//! Guardrails keep people from mistakes; they do not contain a writer bent on
//! harm (a write session can create a function that changes settings from
//! inside). Reads are contained by classification and the read credential.

use std::sync::OnceLock;
use std::time::Duration;

use crate::classify::{Statement, Verdict};
use crate::rule::Rule;

/// A session's guardrails: the union of every `[[resource.guardrails]]`
/// entry that applies to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Guardrails {
    /// Rule names and command kinds (or their leading words) refused.
    pub deny: Vec<String>,
    /// UPDATE and DELETE must have a WHERE clause.
    pub require_where: bool,
    /// A result larger than this is cut with an error.
    pub max_rows: Option<u64>,
    /// Set upstream for the session; statements that change it are refused.
    pub statement_timeout: Option<Duration>,
}

/// Why a guardrail refused a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A `deny` word matched.
    Denied {
        /// The word of the policy that matched.
        word: String,
        /// What in the statement it matched, as a phrase for messages:
        /// `DROP TABLE`, `a nested DELETE`, `TRUNCATE (rule truncate)`.
        what: String,
    },
    /// An UPDATE or DELETE without WHERE.
    NoWhere { kind: &'static str },
    /// The statement changes `statement_timeout` while a guardrail sets it.
    Timeout { timeout: Duration },
}

impl Guardrails {
    /// The union of several entries: every deny word, `require_where` if any
    /// asks for it, and the smallest `max_rows` and `statement_timeout`.
    pub fn merge<'a>(entries: impl IntoIterator<Item = &'a Guardrails>) -> Guardrails {
        let mut out = Guardrails::default();
        for g in entries {
            for w in &g.deny {
                if !out.deny.contains(w) {
                    out.deny.push(w.clone());
                }
            }
            out.require_where |= g.require_where;
            out.max_rows = min_some(out.max_rows, g.max_rows);
            out.statement_timeout = min_some(out.statement_timeout, g.statement_timeout);
        }
        out
    }

    /// Whether nothing is restricted.
    pub fn is_empty(&self) -> bool {
        self == &Guardrails::default()
    }

    /// Whether any guardrail looks at statements (as opposed to results).
    pub fn checks_statements(&self) -> bool {
        !self.deny.is_empty() || self.require_where || self.statement_timeout.is_some()
    }

    /// The first violation in `verdict`, statement by statement.
    pub fn check(&self, verdict: &Verdict) -> Result<(), Violation> {
        verdict
            .statements
            .iter()
            .try_for_each(|s| self.check_one(s))
    }

    fn check_one(&self, s: &Statement) -> Result<(), Violation> {
        if let Some((word, what)) = self
            .deny
            .iter()
            .find_map(|w| deny_match(w, s).map(|what| (w, what)))
        {
            return Err(Violation::Denied {
                word: word.clone(),
                what,
            });
        }
        if self.require_where {
            if let Some(kind) = s.unqualified {
                return Err(Violation::NoWhere { kind });
            }
        }
        if let Some(timeout) = self.statement_timeout {
            // RESET (and RESET ALL, DISCARD ALL) return to the session
            // default, which is the guardrail's value from the startup packet.
            let changes = s
                .settings
                .iter()
                .any(|n| n == "statement_timeout" || n == crate::classify::ANY_SETTING);
            if changes && s.kind != "reset" {
                return Err(Violation::Timeout { timeout });
            }
        }
        Ok(())
    }
}

fn min_some<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What `word` matches in the statement: its kind or leading words of it, a
/// data-modifying command nested in it, or a rule that fired in it.
fn deny_match(word: &str, s: &Statement) -> Option<String> {
    if word_prefixes(word, &s.kind) {
        return Some(s.kind.replace('_', " ").to_uppercase());
    }
    if s.nested.contains(&word) {
        return Some(format!("a nested {}", word.to_uppercase()));
    }
    std::iter::once(s.rule)
        .chain(s.also.iter().copied())
        .find(|r| r.as_str() == word)
        .map(|r| format!("{} (rule {})", r.describe(), r.as_str()))
}

fn word_prefixes(word: &str, kind: &str) -> bool {
    kind == word
        || (kind.len() > word.len()
            && kind.starts_with(word)
            && kind.as_bytes()[word.len()] == b'_')
}

/// Every command kind the classifier can give a statement.
pub fn known_kinds() -> &'static [String] {
    static KINDS: OnceLock<Vec<String>> = OnceLock::new();
    KINDS.get_or_init(|| {
        let mut kinds: Vec<String> = crate::classify::NODE_KINDS
            .iter()
            .map(|k| (*k).to_owned())
            .collect();
        for object in crate::classify::object_kinds() {
            for verb in ["drop", "alter", "create"] {
                kinds.push(format!("{verb}_{object}"));
            }
        }
        kinds.sort();
        kinds.dedup();
        kinds
    })
}

/// Why `word` cannot be a `deny` entry, or `None` when it names a rule, a
/// command kind, or leading words of one.
pub fn deny_word_problem(word: &str) -> Option<String> {
    if Rule::parse(word).is_some() || known_kinds().iter().any(|k| word_prefixes(word, k)) {
        return None;
    }
    let mut close: Vec<&str> = Vec::new();
    for c in Rule::ALL
        .iter()
        .map(|r| r.as_str())
        .chain(known_kinds().iter().map(String::as_str))
    {
        if close.len() < 3 && !close.contains(&c) && edit_distance(word, c) <= 2 {
            close.push(c);
        }
    }
    let suggestion = if close.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", close.join(" or "))
    };
    Some(format!(
        "{word:?} is neither a statement rule nor a command kind{suggestion}: use a rule such as \"ddl\", \"truncate\", \"delete\" or \"grant\", or a command kind or its leading words such as \"drop\", \"alter_table\" or \"create_index\""
    ))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify;

    fn rails(deny: &[&str]) -> Guardrails {
        Guardrails {
            deny: deny.iter().map(|s| (*s).to_owned()).collect(),
            ..Guardrails::default()
        }
    }

    #[test]
    fn deny_matches_rules_kinds_and_leading_words() {
        let g = rails(&["drop", "truncate", "alter_table", "grant"]);
        for sql in [
            "drop table t",
            "DROP INDEX i",
            "drop schema s cascade",
            "truncate t",
            "alter table t add c int",
            "grant select on t to public",
            "revoke select on t from public",
            "select 1; drop view v",
        ] {
            assert!(
                matches!(g.check(&classify(sql)), Err(Violation::Denied { .. })),
                "{sql}"
            );
        }
        for sql in [
            "alter index i rename to j",
            "delete from t where id = 1",
            "create table x (a int)",
            "select 1",
        ] {
            assert_eq!(g.check(&classify(sql)), Ok(()), "{sql}");
        }
        let g = rails(&["delete"]);
        for sql in [
            "with d as (delete from t returning *) select * from d",
            "explain analyze delete from t",
            "prepare p as delete from t",
        ] {
            assert!(g.check(&classify(sql)).is_err(), "{sql}");
        }
        let what = |g: &Guardrails, sql: &str| match g.check(&classify(sql)) {
            Err(Violation::Denied { what, .. }) => what,
            other => panic!("{sql}: {other:?}"),
        };
        assert_eq!(
            what(&g, "with d as (delete from t) select 1"),
            "a nested DELETE"
        );
        assert_eq!(what(&g, "delete from t"), "DELETE");
        assert_eq!(what(&rails(&["drop"]), "drop table t"), "DROP TABLE");
        assert_eq!(
            what(&rails(&["ddl"]), "create index on t (a)"),
            format!("{} (rule ddl)", Rule::Ddl.describe())
        );
        let g = rails(&["ddl"]);
        assert!(g.check(&classify("create index on t (a)")).is_err());
        assert!(g.check(&classify("update t set a = 1 where b")).is_ok());
    }

    #[test]
    fn require_where_and_timeout() {
        let g = Guardrails {
            require_where: true,
            statement_timeout: Some(Duration::from_secs(30)),
            ..Guardrails::default()
        };
        assert_eq!(
            g.check(&classify("update t set a = 1")),
            Err(Violation::NoWhere { kind: "update" })
        );
        assert!(g
            .check(&classify("with x as (delete from t) select 1"))
            .is_err());
        assert!(g.check(&classify("delete from t where true")).is_ok());
        for sql in [
            "set statement_timeout = 0",
            "set local statement_timeout to '1h'",
            "select set_config('statement_timeout', '0', false)",
            "select set_config(current_user, '0', false)",
        ] {
            assert!(
                matches!(g.check(&classify(sql)), Err(Violation::Timeout { .. })),
                "{sql}"
            );
        }
        for sql in [
            "reset statement_timeout",
            "reset all",
            "set lock_timeout = 0",
        ] {
            assert_eq!(g.check(&classify(sql)), Ok(()), "{sql}");
        }
    }

    #[test]
    fn merge_takes_the_strictest() {
        let a = Guardrails {
            deny: vec!["drop".into()],
            max_rows: Some(100),
            ..Guardrails::default()
        };
        let b = Guardrails {
            deny: vec!["drop".into(), "truncate".into()],
            require_where: true,
            max_rows: Some(10),
            statement_timeout: Some(Duration::from_secs(5)),
        };
        let m = Guardrails::merge([&a, &b]);
        assert_eq!(m.deny, vec!["drop".to_owned(), "truncate".to_owned()]);
        assert!(m.require_where);
        assert_eq!(m.max_rows, Some(10));
        assert_eq!(m.statement_timeout, Some(Duration::from_secs(5)));
        assert!(Guardrails::merge([]).is_empty());
    }

    #[test]
    fn vocabulary() {
        for w in [
            "drop",
            "drop_table",
            "alter_table",
            "create_index",
            "grant",
            "revoke",
            "truncate",
            "ddl",
            "delete",
            "create_extension",
            "drop_materialized_view",
            "vacuum",
            "alter",
        ] {
            assert_eq!(deny_word_problem(w), None, "{w}");
        }
        let p = deny_word_problem("dorp").unwrap();
        assert!(p.contains("did you mean"), "{p}");
        assert!(deny_word_problem("drop_").is_some());
        assert!(deny_word_problem("dro").is_some());
        assert!(deny_word_problem("").is_some());
    }
}
