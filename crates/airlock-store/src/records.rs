//! The records the store keeps, as plain data.
//!
//! Identifiers are `String`s at this boundary; callers wrap them in their own
//! newtypes. Times are unix milliseconds chosen by the caller.
//!
//! [`ApiToken`] and [`SessionCredential`] carry client secrets in derived form
//! (a SHA-256 hash, a SCRAM verifier). Their `Debug` output redacts those
//! fields and they deliberately do not implement `Serialize`, so they cannot
//! reach a log line or an API response by accident; callers build their own
//! views.

use std::fmt;

/// The `limit` of a filter whose `limit` is 0.
pub const DEFAULT_LIMIT: usize = 100;

/// An API token. Only the SHA-256 hash of the token is ever stored; the token
/// itself is shown to its owner once.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: String,
    pub user: String,
    pub hash: [u8; 32],
    pub label: Option<String>,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("hash", &"<redacted>")
            .field("label", &self.label)
            .field("created_ms", &self.created_ms)
            .field("expires_ms", &self.expires_ms)
            .field("revoked_ms", &self.revoked_ms)
            .finish()
    }
}

/// A short-lived session credential minted by `airlock connect`, stored as a
/// SCRAM-SHA-256 verifier in PostgreSQL's text form
/// (`SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionCredential {
    pub id: String,
    pub user: String,
    pub resource: String,
    pub access: String,
    pub grant_id: String,
    /// The API token whose holder minted it, so revoking the token revokes
    /// it too; `None` for credentials the gateway minted itself (runbooks).
    pub token_id: Option<String>,
    pub verifier: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub revoked_ms: Option<i64>,
}

impl fmt::Debug for SessionCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCredential")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("resource", &self.resource)
            .field("access", &self.access)
            .field("grant_id", &self.grant_id)
            .field("token_id", &self.token_id)
            .field("verifier", &"<redacted>")
            .field("created_ms", &self.created_ms)
            .field("expires_ms", &self.expires_ms)
            .field("revoked_ms", &self.revoked_ms)
            .finish()
    }
}

/// Which requests [`Store::requests`](crate::Store::requests) returns; newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestFilter {
    /// Only this requester's.
    pub user: Option<String>,
    /// Only requests still pending at this time (state pending, not yet expired).
    pub pending_at: Option<i64>,
    /// At most this many; 0 means [`DEFAULT_LIMIT`].
    pub limit: usize,
}

/// Which grants [`Store::grants`](crate::Store::grants) returns; newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrantFilter {
    pub user: Option<String>,
    pub resource: Option<String>,
    /// Only grants unrevoked and unexpired at this time.
    pub live_at: Option<i64>,
    /// At most this many; 0 means [`DEFAULT_LIMIT`].
    pub limit: usize,
}

/// What [`Store::approve_request`](crate::Store::approve_request) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApproveOutcome {
    /// The approval was recorded; `count` of `required` so far.
    Recorded { count: u32, required: u32 },
    /// The approval completed the request: it is approved, and for an access
    /// request this grant was created.
    Approved {
        grant: Option<Box<airlock_access::GrantRecord>>,
    },
    /// The request is not pending any more (state at the time of the call).
    NotPending(airlock_access::RequestState),
    /// This approver already approved it.
    AlreadyApproved,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let token = ApiToken {
            id: "tok_1".into(),
            user: "alice".into(),
            hash: [0xab; 32],
            label: None,
            created_ms: 1,
            expires_ms: None,
            revoked_ms: None,
        };
        let out = format!("{token:?}");
        assert!(!out.contains("171"), "{out}");
        assert!(!out.contains("ab, ab") && !out.contains("abab"), "{out}");
        assert!(out.contains("<redacted>"));

        let cred = SessionCredential {
            id: "cred_1".into(),
            user: "alice".into(),
            resource: "orders".into(),
            access: "read".into(),
            grant_id: "grant_1".into(),
            token_id: Some("tok_1".into()),
            verifier: "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy".into(),
            created_ms: 1,
            expires_ms: 2,
            revoked_ms: None,
        };
        let out = format!("{cred:?}");
        assert!(!out.contains("SCRAM"), "{out}");
        assert!(out.contains("<redacted>"));
    }
}
