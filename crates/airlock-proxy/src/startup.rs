//! The settings a client asks for in its StartupMessage: top-level
//! parameters (`statement_timeout=3s`) and `-c name=value` / `--name=value`
//! inside `options` (libpq's `PGOPTIONS`).
//!
//! Each one faces the rule a `SET` of the same value faces
//! (`airlock_sql::settings::setting_rule`): read sessions get the read
//! allowlist, write sessions everything but what the gateway itself enforces
//! (`standard_conforming_strings` on, a safe client encoding, the session's
//! identity, a `statement_timeout` fixed by a guardrail). What is allowed is
//! passed to PostgreSQL as a top-level startup parameter, which PostgreSQL
//! treats exactly as the same `-c` in `options`; anything else refuses the
//! login with a FATAL that names the setting. Nothing is dropped silently.

use airlock_config::Access;
use airlock_pgwire::sqlstate;
use airlock_sql::settings::{setting_rule, SettingValue};
use airlock_sql::{Class, Guardrails};

use crate::error::UserFacingError;
use crate::gate::ReadLimits;

/// Startup keys that are not settings: the gateway reads them itself and
/// never forwards them (`user` and `database` are replaced by the
/// resource's, `replication` is refused at login).
const NOT_SETTINGS: &[&str] = &["user", "database", "replication", "options"];

/// The settings to forward, in the client's order (`options` first, as
/// PostgreSQL applies them), or the refusal to send.
pub fn client_settings(
    params: &[(String, String)],
    access: Access,
    rails: &Guardrails,
    limits: &ReadLimits,
) -> Result<Vec<(String, String)>, UserFacingError> {
    let mut settings = Vec::new();
    for (key, value) in params {
        if key.eq_ignore_ascii_case("options") {
            settings.extend(parse_options(value)?);
        }
    }
    for (key, value) in params {
        let lower = key.to_ascii_lowercase();
        if NOT_SETTINGS.contains(&lower.as_str()) || lower.starts_with("_pq_.") {
            continue;
        }
        settings.push((key.clone(), value.clone()));
    }
    for (name, value) in &settings {
        check(name, value, access, rails, limits)?;
    }
    Ok(settings)
}

/// Whether a session at `access` under `rails` (and, for reads, `limits`)
/// may start with `name` set to `value`.
fn check(
    name: &str,
    value: &str,
    access: Access,
    rails: &Guardrails,
    limits: &ReadLimits,
) -> Result<(), UserFacingError> {
    let lower = name.to_ascii_lowercase();
    let refused = |code: &'static str, why: String| {
        UserFacingError::fatal(
            code,
            format!("Airlock refused the startup setting {name}={value}: {why}"),
        )
    };
    // A GUC name is letters, digits, '_', '$' and dots for extension
    // settings; anything else is no setting PostgreSQL knows and would only
    // be an attempt to confuse the checks below.
    if lower.is_empty()
        || !lower
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$'))
    {
        return Err(refused(
            sqlstate::PROTOCOL_VIOLATION,
            "that is not a setting name".into(),
        )
        .hint("remove it from the connection's options"));
    }
    if matches!(lower.as_str(), "role" | "session_authorization") {
        // The upstream login is the gateway's credential for the session's
        // access level; a role switch at login would start the session as
        // someone else before the gate sees a statement.
        return Err(refused(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            "the session's identity is the one Airlock logs in with".into(),
        )
        .hint("connect without it; where your access allows it, run SET ROLE after connecting"));
    }
    if lower == "statement_timeout" {
        if let Some(fixed) = rails.statement_timeout {
            return Err(refused(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!(
                    "a guardrail fixes statement_timeout at {} for your sessions",
                    airlock_config::format_duration(fixed)
                ),
            )
            .hint("connect without it; a longer statement can be reviewed and run once with airlock exec"));
        }
    }
    if access == Access::Read {
        // The read ceilings hold at login as for SET.
        if let Err(allowed) = limits.check(&lower, &SettingValue::Const(value.to_owned())) {
            return Err(refused(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!("read sessions may set {allowed}"),
            )
            .hint("remove the setting from the connection's options, or choose a smaller value"));
        }
    }
    let Some(rule) = setting_rule(&lower, &SettingValue::Const(value.to_owned())) else {
        return Ok(());
    };
    match (rule.class(), access) {
        (Class::Write, Access::Write) | (Class::Read, _) => Ok(()),
        (Class::Write, Access::Read) => Err(refused(
            sqlstate::READ_ONLY_SQL_TRANSACTION,
            format!(
                "{} needs write access and this is a read session",
                rule.describe()
            ),
        )
        .hint(format!(
            "connect without it, or with write access (rule {})",
            rule.as_str()
        ))),
        (Class::Refused, _) => Err(refused(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            format!(
                "{} is refused at every access level (rule {})",
                rule.describe(),
                rule.as_str()
            ),
        )
        .hint("connect without it")),
    }
}

/// Splits `options` as PostgreSQL does (`pg_split_opts`: words separated by
/// white space, a backslash takes the next character literally) and reads
/// the words as the server's switches. Only the two that set a setting are
/// accepted: `-c name=value` (also `-cname=value`) and `--name=value`, with
/// `-` in the name read as `_`.
pub fn parse_options(options: &str) -> Result<Vec<(String, String)>, UserFacingError> {
    let words = split_options(options);
    let mut out = Vec::new();
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let assignment = if let Some(rest) = word.strip_prefix("--") {
            rest.to_owned()
        } else if word == "-c" {
            match words.next() {
                Some(next) => next.clone(),
                None => return Err(bad_option(word, "-c needs name=value after it")),
            }
        } else if let Some(rest) = word.strip_prefix("-c") {
            rest.to_owned()
        } else {
            return Err(bad_option(
                word,
                "Airlock passes only settings (-c name=value or --name=value) in options",
            ));
        };
        let Some((name, value)) = assignment.split_once('=') else {
            return Err(bad_option(word, "a setting needs a value (name=value)"));
        };
        out.push((name.replace('-', "_"), value.to_owned()));
    }
    Ok(out)
}

fn split_options(options: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = options.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return words;
        }
        let mut word = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_ascii_whitespace()) {
            match c {
                '\\' => match chars.next() {
                    Some(escaped) => word.push(escaped),
                    None => word.push('\\'),
                },
                c => word.push(c),
            }
        }
        words.push(word);
    }
}

fn bad_option(word: &str, why: &str) -> UserFacingError {
    UserFacingError::fatal(
        sqlstate::PROTOCOL_VIOLATION,
        format!("Airlock refused the startup option {word:?}: {why}"),
    )
    .hint("fix the connection's options (PGOPTIONS), e.g. options='-c statement_timeout=3s'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ReadLimits {
        ReadLimits {
            work_mem: airlock_config::Gateway::DEFAULT_READ_WORK_MEM,
            idle_in_transaction: std::time::Duration::from_secs(300),
        }
    }
    use std::time::Duration;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_are_split_like_postgresql() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("  -c statement_timeout=3s ", &[("statement_timeout", "3s")]),
            ("-cwork_mem=64MB", &[("work_mem", "64MB")]),
            ("--lock-timeout=1s", &[("lock_timeout", "1s")]),
            (
                r"-c application_name=two\ words -c search_path=a\\b",
                &[("application_name", "two words"), ("search_path", r"a\b")],
            ),
            ("-c x.y=1=2", &[("x.y", "1=2")]),
        ];
        for (options, want) in cases {
            assert_eq!(parse_options(options).unwrap(), pairs(want), "{options:?}");
        }
        for bad in ["-c", "-c statement_timeout", "-e", "foo", "--x", "-B 100"] {
            let e = parse_options(bad).unwrap_err();
            assert!(e.message.contains("startup option"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn settings_face_the_set_rules_of_the_access_level() {
        let none = Guardrails::default();
        let timeout = Guardrails {
            statement_timeout: Some(Duration::from_secs(30)),
            ..Guardrails::default()
        };
        /// (params, access, rails, refused with this SQLSTATE)
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            Access,
            &'a Guardrails,
            Option<&'a str>,
        );
        let cases: &[Case<'_>] = &[
            (
                &[("options", "-c statement_timeout=3s")],
                Access::Read,
                &none,
                None,
            ),
            (&[("statement_timeout", "3s")], Access::Read, &none, None),
            (
                &[("idle_in_transaction_session_timeout", "5s")],
                Access::Read,
                &none,
                None,
            ),
            (
                &[("application_name", "x"), ("DateStyle", "ISO")],
                Access::Read,
                &none,
                None,
            ),
            (
                &[("statement_timeout", "3s")],
                Access::Write,
                &timeout,
                Some("42501"),
            ),
            (
                &[("options", "-c statement_timeout=0")],
                Access::Read,
                &timeout,
                Some("42501"),
            ),
            (
                &[("default_transaction_read_only", "off")],
                Access::Read,
                &none,
                Some("25006"),
            ),
            (
                &[("options", "-c default_transaction_read_only=off")],
                Access::Read,
                &none,
                Some("25006"),
            ),
            (
                &[("default_transaction_read_only", "off")],
                Access::Write,
                &none,
                None,
            ),
            (
                &[("search_path", "evil")],
                Access::Read,
                &none,
                Some("25006"),
            ),
            (&[("search_path", "app")], Access::Write, &none, None),
            (
                &[("session_replication_role", "replica")],
                Access::Write,
                &none,
                None,
            ),
            (
                &[("session_replication_role", "replica")],
                Access::Read,
                &none,
                Some("25006"),
            ),
            (&[("role", "postgres")], Access::Write, &none, Some("42501")),
            (
                &[("options", "--session-authorization=postgres")],
                Access::Write,
                &none,
                Some("42501"),
            ),
            (
                &[("standard_conforming_strings", "off")],
                Access::Write,
                &none,
                Some("42501"),
            ),
            (
                &[("client_encoding", "SJIS")],
                Access::Write,
                &none,
                Some("42501"),
            ),
            (&[("client_encoding", "UTF8")], Access::Read, &none, None),
            (&[("bad name", "1")], Access::Write, &none, Some("08P01")),
        ];
        for (params, access, rails, want) in cases {
            let got = client_settings(&pairs(params), *access, rails, &limits());
            match (want, got) {
                (None, Ok(_)) => {}
                (Some(code), Err(e)) => {
                    assert_eq!(e.code, *code, "{params:?} {access}: {}", e.message);
                    assert!(e.message.contains("Airlock refused"), "{}", e.message);
                }
                (want, got) => panic!("{params:?} {access}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn reserved_keys_are_never_forwarded_and_options_come_first() {
        let params = pairs(&[
            ("user", "oncall1"),
            ("database", "orders"),
            ("application_name", "psql"),
            ("options", "-c work_mem=8MB"),
            ("_pq_.x", "1"),
        ]);
        let got =
            client_settings(&params, Access::Read, &Guardrails::default(), &limits()).unwrap();
        assert_eq!(
            got,
            pairs(&[("work_mem", "8MB"), ("application_name", "psql")])
        );
    }
}
