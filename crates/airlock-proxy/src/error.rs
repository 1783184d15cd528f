//! The one error type whose text reaches a PostgreSQL client.
//!
//! Everything the gateway refuses ends up here, and only here is it turned
//! into an ErrorResponse. It carries no upstream secret by construction: it is
//! built from fixed sentences, names and upstream error *messages* (which
//! PostgreSQL never fills with passwords), never from a connection string.

use airlock_pgwire::messages::{ErrorResponse, Severity};
use airlock_pgwire::sqlstate;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFacingError {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl UserFacingError {
    pub fn fatal(code: &'static str, message: impl Into<String>) -> UserFacingError {
        UserFacingError {
            severity: Severity::Fatal,
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn error(code: &'static str, message: impl Into<String>) -> UserFacingError {
        UserFacingError {
            severity: Severity::Error,
            ..UserFacingError::fatal(code, message)
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> UserFacingError {
        self.detail = Some(detail.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> UserFacingError {
        self.hint = Some(hint.into());
        self
    }

    pub fn protocol(message: impl Into<String>) -> UserFacingError {
        UserFacingError::fatal(sqlstate::PROTOCOL_VIOLATION, message)
    }

    pub fn to_response(&self) -> ErrorResponse {
        let mut e = ErrorResponse::new(self.severity, self.code, self.message.clone());
        if let Some(d) = &self.detail {
            e = e.with_detail(d.clone());
        }
        if let Some(h) = &self.hint {
            e = e.with_hint(h.clone());
        }
        e
    }
}

impl std::fmt::Display for UserFacingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for UserFacingError {}
