//! The third read-only layer: what PostgreSQL reports about the session.
//!
//! PostgreSQL sends a ParameterStatus whenever a reported setting changes
//! (at login, and before the ReadyForQuery that follows the change), however
//! it changed: a SET, `set_config` inside a function the gateway cannot see
//! into, a user function, a view. The gateway checks each one. A session
//! whose protection moved ends before anything more of the client's is
//! forwarded (read sessions are sequenced at every ReadyForQuery, see
//! [`crate::gate`]), and the end's audit record names what changed.
//!
//! Every session: `standard_conforming_strings` must stay `on` and the
//! client encoding must stay one in which no multi-byte character hides a
//! quote or backslash (otherwise the classifier would read statements
//! differently from PostgreSQL). Read sessions also: the read-only default
//! must stay `on`, the session must not become superuser, and its session
//! authorization must not change.

use airlock_config::Access;
use airlock_pgwire::messages::ParameterStatus;

/// One session's watch.
#[derive(Debug, Clone)]
pub struct ParameterWatch {
    read: bool,
    session_authorization: Option<String>,
}

impl ParameterWatch {
    /// The watch for a session with `access`, after checking what the
    /// upstream reported at login. `Err` says what is wrong.
    pub fn new(access: Access, at_login: &[ParameterStatus]) -> Result<ParameterWatch, String> {
        let mut w = ParameterWatch {
            read: access == Access::Read,
            session_authorization: None,
        };
        for p in at_login {
            w.observe(&p.name, &p.value)?;
        }
        Ok(w)
    }

    /// Checks one reported setting; `Err` says what changed and why the
    /// session cannot go on.
    pub fn observe(&mut self, name: &str, value: &str) -> Result<(), String> {
        let on = matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "on" | "true" | "1"
        );
        match name {
            "standard_conforming_strings" if !on => Err(format!(
                "standard_conforming_strings became {value:?}: Airlock would read string literals differently from PostgreSQL"
            )),
            "client_encoding" if airlock_sql::settings::is_unsafe_encoding(value) => Err(format!(
                "client_encoding became {value:?}, an encoding in which a character can hide a quote or backslash"
            )),
            "default_transaction_read_only" if self.read && !on => Err(format!(
                "default_transaction_read_only became {value:?} in a read session"
            )),
            "is_superuser" if self.read && on => {
                Err("the read session's role became a superuser".to_owned())
            }
            "session_authorization" if self.read => match &self.session_authorization {
                None => {
                    self.session_authorization = Some(value.to_owned());
                    Ok(())
                }
                Some(was) if was == value => Ok(()),
                Some(was) => Err(format!(
                    "the read session's session_authorization changed from {was:?} to {value:?}"
                )),
            },
            _ => Ok(()),
        }
    }

    /// [`ParameterWatch::observe`] on a ParameterStatus body.
    pub fn observe_body(&mut self, body: &[u8]) -> Result<(), String> {
        match ParameterStatus::decode(bytes::Bytes::copy_from_slice(body)) {
            Ok(p) => self.observe(&p.name, &p.value),
            Err(e) => Err(format!(
                "a malformed ParameterStatus from the upstream: {e}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, value: &str) -> ParameterStatus {
        ParameterStatus::new(name, value)
    }

    #[test]
    fn read_sessions_end_when_their_protection_moves() {
        let login = [
            p("default_transaction_read_only", "on"),
            p("standard_conforming_strings", "on"),
            p("client_encoding", "UTF8"),
            p("is_superuser", "off"),
            p("session_authorization", "reader"),
        ];
        let mut w = ParameterWatch::new(Access::Read, &login).unwrap();
        assert!(w.observe("application_name", "psql").is_ok());
        assert!(w.observe("client_encoding", "LATIN1").is_ok());
        assert!(w.observe("session_authorization", "reader").is_ok());
        for (name, value) in [
            ("default_transaction_read_only", "off"),
            ("standard_conforming_strings", "off"),
            ("client_encoding", "SJIS"),
            ("is_superuser", "on"),
            ("session_authorization", "postgres"),
        ] {
            let e = w.clone().observe(name, value).unwrap_err();
            assert!(e.contains(name) || e.contains("superuser"), "{e}");
        }
        // At login too: a read credential that is a superuser.
        assert!(ParameterWatch::new(Access::Read, &[p("is_superuser", "on")]).is_err());
    }

    #[test]
    fn write_sessions_keep_only_what_the_classifier_needs() {
        let mut w = ParameterWatch::new(Access::Write, &[p("is_superuser", "on")]).unwrap();
        assert!(w.observe("default_transaction_read_only", "off").is_ok());
        assert!(w.observe("session_authorization", "x").is_ok());
        assert!(w.observe("standard_conforming_strings", "off").is_err());
        assert!(w.observe("client_encoding", "BIG5").is_err());
    }
}
