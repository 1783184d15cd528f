//! The access state the decision functions read: time-boxed grants and requests with their
//! approvals. Plain data, loaded by the caller from the store and passed in; nothing here does IO.
//! None of these records holds a secret, so they serialize straight into API responses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use airlock_config::Access;

/// What backs a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    /// A role's standing rule: lasts as long as the policy says so; never stored.
    Standing,
    /// An approved request: time-boxed.
    Requested,
    /// A break-glass rule used in an emergency: time-boxed, short, loud.
    BreakGlass,
    /// The SQL steps of one approved runbook run, for that run only: the
    /// runner mints the run's credentials from it, `decide` never picks it for
    /// anything else, and the runner revokes it when the run ends.
    Runbook,
}

impl GrantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::Standing => "standing",
            GrantKind::Requested => "requested",
            GrantKind::BreakGlass => "break_glass",
            GrantKind::Runbook => "runbook",
        }
    }
}

impl fmt::Display for GrantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // pad, not write_str: table columns use width specifiers.
        f.pad(self.as_str())
    }
}

impl FromStr for GrantKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "standing" => Ok(GrantKind::Standing),
            "requested" => Ok(GrantKind::Requested),
            "break_glass" => Ok(GrantKind::BreakGlass),
            "runbook" => Ok(GrantKind::Runbook),
            _ => Err(format!("unknown grant kind {s:?}")),
        }
    }
}

/// A time-boxed grant (from an approved request or break-glass), as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub id: String,
    pub user: String,
    pub resource: String,
    pub access: Access,
    pub kind: GrantKind,
    /// The role whose rule allowed it; the grant lives only while the user holds that role and
    /// the role keeps the rule.
    pub role: String,
    /// The approved request, for requested grants.
    pub request_id: Option<String>,
    pub reason: String,
    pub created_ms: i64,
    /// When it ends, on the gateway's clock; absolute.
    pub expires_ms: i64,
    pub revoked_ms: Option<i64>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
}

impl GrantRecord {
    /// Whether the grant is neither revoked nor past `expires_ms` at `now_ms` (the policy is not
    /// consulted; see [`crate::check_grant`]).
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.revoked_ms.is_none() && now_ms < self.expires_ms
    }
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Time-boxed access to a resource at a level.
    Access,
    /// One reviewed statement, run once with the write credential.
    Statement,
    /// One runbook run with fixed parameters, run once by the requester.
    Runbook,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Access => "access",
            RequestKind::Statement => "statement",
            RequestKind::Runbook => "runbook",
        }
    }
}

impl FromStr for RequestKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "access" => Ok(RequestKind::Access),
            "statement" => Ok(RequestKind::Statement),
            "runbook" => Ok(RequestKind::Runbook),
            _ => Err(format!("unknown request kind {s:?}")),
        }
    }
}

/// Where a request stands. `Expired` is also derived: a `Pending` request past `expires_ms` is
/// expired whether or not the sweeper has written that down yet (see [`AccessRequest::state_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    Approved,
    Denied,
    Expired,
    /// A statement request that has been run (it runs once).
    Executed,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Denied => "denied",
            RequestState::Expired => "expired",
            RequestState::Executed => "executed",
        }
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(RequestState::Pending),
            "approved" => Ok(RequestState::Approved),
            "denied" => Ok(RequestState::Denied),
            "expired" => Ok(RequestState::Expired),
            "executed" => Ok(RequestState::Executed),
            _ => Err(format!("unknown request state {s:?}")),
        }
    }
}

/// One approver's yes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub approver: String,
    pub comment: Option<String>,
    pub at_ms: i64,
}

/// A request for access or for one reviewed statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    pub id: String,
    pub kind: RequestKind,
    pub user: String,
    pub resource: String,
    pub access: Access,
    /// How long the grant lasts once approved. For a statement request: how long after approval
    /// it may be run.
    pub duration_ms: i64,
    pub reason: String,
    /// The exact statement text of a statement request, byte for byte.
    pub statement: Option<String>,
    /// A runbook request's run as filed (runbook name, file digest,
    /// parameters), JSON; the run that follows approval is exactly this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<serde_json::Value>,
    /// The role whose `requestable` rule the request was filed under.
    pub role: String,
    pub approvals_required: u32,
    /// The roles whose users may approve, as the rule said when the request was filed.
    pub approver_roles: Vec<String>,
    pub created_ms: i64,
    /// A pending request expires at this time.
    pub expires_ms: i64,
    pub state: RequestState,
    /// When it was approved, denied, expired or executed.
    pub decided_ms: Option<i64>,
    /// Who denied it (or gave the last approval).
    pub decided_by: Option<String>,
    /// The denial's reason.
    pub decision_comment: Option<String>,
    /// The grant an approved access request became.
    pub grant_id: Option<String>,
    pub executed_ms: Option<i64>,
    pub approvals: Vec<Approval>,
}

impl AccessRequest {
    /// The state at `now_ms`: a pending request past its expiry is expired.
    pub fn state_at(&self, now_ms: i64) -> RequestState {
        if self.state == RequestState::Pending && now_ms >= self.expires_ms {
            RequestState::Expired
        } else {
            self.state
        }
    }
}
