//! The rules of requests, approvals, break-glass, reviewed statements and revocation.
//!
//! Each function checks one action against the policy in force and the state passed in, and
//! either says what to store (a plan) or refuses with a [`RequestRefusal`] that says what happened,
//! why, and what to do next. The caller stores the plan atomically (see `airlock-store`).

use std::fmt;
use std::time::Duration;

use airlock_config::{format_duration, Access, Config, RequestableRule, Role};

use crate::state::{AccessRequest, GrantKind, GrantRecord, RequestKind, RequestState};
use crate::{break_glass_rules, format_ms, not_entitled, precheck, requestable_rules, roles_of};
use crate::{standing_grant, Denial, DEFAULT_REQUEST_FOR};

/// Longest accepted reason or comment, in bytes.
pub const MAX_REASON_LEN: usize = 2000;
/// Longest accepted reviewed statement, in bytes.
pub const MAX_STATEMENT_LEN: usize = 1024 * 1024;

/// What kind of refusal, so callers can map it to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The input is wrong (missing reason, duration above max, ...).
    BadInput,
    /// The caller may not do this.
    Forbidden,
    /// No such thing (or not visible to the caller).
    NotFound,
    /// The thing is not in a state that allows this (already approved, expired, ...).
    Conflict,
}

/// A refused action: a stable machine code, a sentence, and what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRefusal {
    pub kind: RefusalKind,
    pub code: &'static str,
    pub message: String,
    pub hint: Option<String>,
}

impl RequestRefusal {
    fn new(kind: RefusalKind, code: &'static str, message: impl Into<String>) -> Self {
        RequestRefusal {
            kind,
            code,
            message: message.into(),
            hint: None,
        }
    }
    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    fn from_denial(d: Denial) -> Self {
        let kind = match d {
            Denial::UnknownResource { .. } => RefusalKind::NotFound,
            Denial::LevelNotConfigured { .. } => RefusalKind::BadInput,
            _ => RefusalKind::Forbidden,
        };
        RequestRefusal::new(kind, "access_denied", d.to_string())
    }
}

impl fmt::Display for RequestRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for RequestRefusal {}

/// What to store for a new request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPlan {
    pub role: String,
    pub duration_ms: i64,
    pub approvals_required: u32,
    pub approver_roles: Vec<String>,
    /// When the pending request expires.
    pub expires_ms: i64,
    /// The users who can approve it (never the requester).
    pub approvers: Vec<String>,
}

/// What to store for a break-glass grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassPlan {
    pub role: String,
    pub expires_ms: i64,
}

fn check_reason(reason: &str, what: &str) -> Result<(), RequestRefusal> {
    if reason.trim().is_empty() {
        return Err(RequestRefusal::new(
            RefusalKind::BadInput,
            "missing_reason",
            format!("{what} needs a reason"),
        )
        .hint("say why with --reason \"...\", e.g. the incident or ticket"));
    }
    if reason.len() > MAX_REASON_LEN {
        return Err(RequestRefusal::new(
            RefusalKind::BadInput,
            "reason_too_long",
            format!(
                "the reason is {} bytes; at most {MAX_REASON_LEN} are accepted",
                reason.len()
            ),
        )
        .hint("link the ticket instead of pasting it"));
    }
    check_text("reason", reason)
}

/// Refuses a reason, comment or reviewed statement holding a character that
/// would make what people see differ from what is filed (a carriage return,
/// an escape sequence, a bidi override: see `airlock_config::text`). Filed
/// text is shown to approvers and run exactly as it is, so it must read as
/// it is. `field` is what it is called: "reason", "comment", "statement".
pub fn check_text(field: &str, text: &str) -> Result<(), RequestRefusal> {
    let Err(bad) = airlock_config::text::check(text) else {
        return Ok(());
    };
    let hint = if field == "statement" {
        "remove it and file the statement again: Windows line endings (CRLF) are accepted and \
         filed as LF; inside an SQL string write the character as an escape, e.g. E'\\r' or chr(13)"
    } else {
        "remove it and send the text again: line breaks and tabs are fine, other control and \
         invisible formatting characters are not"
    };
    Err(RequestRefusal::new(
        RefusalKind::BadInput,
        "unsafe_character",
        format!(
            "the {field} contains {bad}; control and invisible formatting characters are refused \
             because they can make what people see differ from what is filed"
        ),
    )
    .hint(hint))
}

/// The rule a request for (resource, access) by `user` is filed under: the one needing the fewest
/// approvals, then the longest `max`.
fn pick_rule<'c>(
    config: &'c Config,
    user: &str,
    resource: &str,
    access: Access,
) -> Option<(&'c Role, &'c RequestableRule)> {
    requestable_rules(config, user, resource, access)
        .into_iter()
        .min_by_key(|(_, r)| (r.approvals, std::cmp::Reverse(r.max)))
}

/// Users other than `requester` who hold one of `roles`.
pub fn approvers_for(config: &Config, roles: &[String], requester: &str) -> Vec<String> {
    config
        .users
        .iter()
        .filter(|u| u.name.as_str() != requester)
        .filter(|u| {
            u.roles
                .iter()
                .any(|r| roles.iter().any(|x| x == r.as_str()))
        })
        .map(|u| u.name.to_string())
        .collect()
}

fn plan(
    config: &Config,
    user: &str,
    role: &Role,
    rule: &RequestableRule,
    duration: Duration,
    now_ms: i64,
) -> RequestPlan {
    let approver_roles: Vec<String> = rule.approvers.iter().map(|r| r.to_string()).collect();
    RequestPlan {
        role: role.name.to_string(),
        duration_ms: duration.as_millis() as i64,
        approvals_required: rule.approvals,
        approvers: approvers_for(config, &approver_roles, user),
        approver_roles,
        expires_ms: now_ms + config.access.request_ttl.as_millis() as i64,
    }
}

/// Checks a request for time-boxed access. `duration` defaults to the smaller of 1h and the
/// rule's `max`.
#[allow(clippy::too_many_arguments)] // one call site per argument is clearer than a struct here
pub fn request_access(
    config: &Config,
    user: &str,
    resource: &str,
    access: Access,
    duration: Option<Duration>,
    reason: &str,
    now_ms: i64,
    grants: &[GrantRecord],
) -> Result<RequestPlan, RequestRefusal> {
    precheck(config, user, resource, access).map_err(RequestRefusal::from_denial)?;
    check_reason(reason, "a request")?;
    if let Some(g) = standing_grant(config, user, resource, access) {
        return Err(RequestRefusal::new(
            RefusalKind::Conflict,
            "already_allowed",
            format!(
                "you already have standing {access} access to \"{resource}\" through role \"{}\"",
                g.role
            ),
        )
        .hint(format!(
            "connect with: airlock connect {resource} --access {access}"
        )));
    }
    if let Some(g) = grants
        .iter()
        .filter(|g| g.user == user && g.resource == resource && g.access == access)
        .find_map(|g| crate::check_grant(config, g, now_ms).ok())
    {
        return Err(RequestRefusal::new(
            RefusalKind::Conflict,
            "already_granted",
            format!(
                "you already hold grant {} for {access} on \"{resource}\" until {}",
                g.id,
                format_ms(g.expires_ms.unwrap_or(now_ms))
            ),
        )
        .hint(format!(
            "connect with: airlock connect {resource} --access {access}"
        )));
    }
    let Some((role, rule)) = pick_rule(config, user, resource, access) else {
        return Err(RequestRefusal::from_denial(not_entitled(
            config, user, resource, access,
        ))
        .hint("no role of yours has a `requestable` rule for this; the platform team can add one to airlock.toml"));
    };
    let duration = duration.unwrap_or(DEFAULT_REQUEST_FOR.min(rule.max));
    if duration.is_zero() {
        return Err(RequestRefusal::new(
            RefusalKind::BadInput,
            "bad_duration",
            "the duration must be longer than 0s",
        ));
    }
    if duration > rule.max {
        return Err(RequestRefusal::new(
            RefusalKind::BadInput,
            "duration_too_long",
            format!(
                "{} is above the {} that role \"{}\" may request for {access} on \"{resource}\"",
                format_duration(duration),
                format_duration(rule.max),
                role.name
            ),
        )
        .hint(format!(
            "ask for --for {} or less",
            format_duration(rule.max)
        )));
    }
    Ok(plan(config, user, role, rule, duration, now_ms))
}

/// Checks a request for one reviewed statement, run once with the write credential. Once
/// approved it may be run within the rule's `max`.
pub fn request_statement(
    config: &Config,
    user: &str,
    resource: &str,
    statement: &str,
    reason: &str,
    now_ms: i64,
) -> Result<RequestPlan, RequestRefusal> {
    let access = Access::Write;
    precheck(config, user, resource, access).map_err(RequestRefusal::from_denial)?;
    check_reason(reason, "a reviewed statement")?;
    if statement.trim().is_empty() {
        return Err(RequestRefusal::new(
            RefusalKind::BadInput,
            "missing_statement",
            "no statement given",
        )
        .hint("give the statement with -c \"UPDATE ...\""));
    }
    if statement.len() > MAX_STATEMENT_LEN {
        return Err(RequestRefusal::new(
            RefusalKind::BadInput,
            "statement_too_long",
            format!(
                "the statement is {} bytes; at most {MAX_STATEMENT_LEN} are accepted for review",
                statement.len()
            ),
        ));
    }
    // Reviewers read the statement; it runs exactly as they read it.
    check_text("statement", statement)?;
    let Some((role, rule)) = pick_rule(config, user, resource, access) else {
        return Err(RequestRefusal::from_denial(not_entitled(
            config, user, resource, access,
        ))
        .hint("reviewed statements use a `requestable` write rule; no role of yours has one for this resource"));
    };
    Ok(plan(config, user, role, rule, rule.max, now_ms))
}

/// The rule in force for a stored request, if the policy still has it.
fn current_rule<'c>(config: &'c Config, r: &AccessRequest) -> Option<&'c RequestableRule> {
    config
        .role(&r.role)?
        .requestable
        .iter()
        .find(|x| x.resource.as_str() == r.resource && x.access == r.access)
}

fn not_pending(r: &AccessRequest, now_ms: i64) -> Option<RequestRefusal> {
    let state = r.state_at(now_ms);
    let (code, message) = match state {
        RequestState::Pending => return None,
        RequestState::Expired => (
            "request_expired",
            format!(
                "request {} expired at {} without enough approvals",
                r.id,
                format_ms(r.expires_ms)
            ),
        ),
        RequestState::Approved | RequestState::Executed => (
            "already_approved",
            format!("request {} is already approved", r.id),
        ),
        RequestState::Denied => (
            "already_denied",
            format!(
                "request {} was denied by {}",
                r.id,
                r.decided_by.as_deref().unwrap_or("someone")
            ),
        ),
    };
    let hint = match state {
        RequestState::Expired | RequestState::Denied => "the requester can file a new request",
        _ => "nothing more to do",
    };
    Some(RequestRefusal::new(RefusalKind::Conflict, code, message).hint(hint))
}

/// Whether `approver` may approve `r` now. `Ok(required)` gives the number of distinct
/// approvals the policy in force requires: the request becomes a grant when the stored count
/// reaches it.
pub fn can_approve(
    config: &Config,
    r: &AccessRequest,
    approver: &str,
    now_ms: i64,
) -> Result<u32, RequestRefusal> {
    if let Some(refusal) = not_pending(r, now_ms) {
        return Err(refusal);
    }
    if approver == r.user {
        return Err(RequestRefusal::new(
            RefusalKind::Forbidden,
            "self_approval",
            "nobody approves their own request",
        )
        .hint(format!(
            "ask one of: {}",
            approvers_for(config, &r.approver_roles, &r.user).join(", ")
        )));
    }
    let Some((roles, approvals)) = approval_rule(config, r) else {
        return Err(RequestRefusal::new(
            RefusalKind::Conflict,
            "rule_removed",
            format!(
                "role \"{}\" no longer has a requestable rule for {} on \"{}\", so request {} cannot be approved",
                r.role, r.access, r.resource, r.id
            ),
        )
        .hint("the policy changed since the request was filed; deny it"));
    };
    let holds = roles_of(config, approver)
        .iter()
        .any(|role| roles.iter().any(|a| a == role.name.as_str()));
    if !holds {
        return Err(RequestRefusal::new(
            RefusalKind::Forbidden,
            "not_an_approver",
            format!(
                "user \"{approver}\" may not approve request {}: approvers hold role {}",
                r.id,
                roles.join(" or ")
            ),
        ));
    }
    if r.approvals.iter().any(|a| a.approver == approver) {
        return Err(RequestRefusal::new(
            RefusalKind::Conflict,
            "already_approved_by_you",
            format!(
                "you already approved request {}; it needs {approvals} approval(s) from different people",
                r.id
            ),
        ));
    }
    if config.user(&r.user).is_none() {
        return Err(RequestRefusal::new(
            RefusalKind::Conflict,
            "requester_removed",
            format!("the requester \"{}\" is no longer in the policy", r.user),
        )
        .hint("deny the request"));
    }
    Ok(approvals)
}

/// Who approves `r` and how many approvals it needs: the requestable rule in force for access
/// and statement requests; for a runbook run, what the runbook said when the request was filed
/// (runbooks are files beside the policy; the runner refuses a run whose runbook changed since).
fn approval_rule(config: &Config, r: &AccessRequest) -> Option<(Vec<String>, u32)> {
    if r.kind == RequestKind::Runbook {
        return Some((r.approver_roles.clone(), r.approvals_required));
    }
    current_rule(config, r).map(|rule| {
        (
            rule.approvers.iter().map(|a| a.to_string()).collect(),
            rule.approvals,
        )
    })
}

/// Whether `by` may deny `r` now: approvers may deny requests they could approve.
pub fn can_deny(
    config: &Config,
    r: &AccessRequest,
    by: &str,
    reason: &str,
    now_ms: i64,
) -> Result<(), RequestRefusal> {
    check_reason(reason, "a denial")?;
    if let Some(refusal) = not_pending(r, now_ms) {
        return Err(refusal);
    }
    if by == r.user {
        return Err(RequestRefusal::new(
            RefusalKind::Forbidden,
            "self_denial",
            "you cannot deny your own request",
        )
        .hint(format!(
            "it expires by itself at {}",
            format_ms(r.expires_ms)
        )));
    }
    if !is_approver_of(config, r, by) {
        return Err(RequestRefusal::new(
            RefusalKind::Forbidden,
            "not_an_approver",
            format!(
                "user \"{by}\" may not deny request {}: approvers hold role {}",
                r.id,
                r.approver_roles.join(" or ")
            ),
        ));
    }
    Ok(())
}

/// Whether `user` holds a role that approves `r`, by the rule in force or, if it was removed,
/// by the roles recorded on the request.
fn is_approver_of(config: &Config, r: &AccessRequest, user: &str) -> bool {
    let roles: Vec<String> = match approval_rule(config, r) {
        Some((roles, _)) => roles,
        None => r.approver_roles.clone(),
    };
    roles_of(config, user)
        .iter()
        .any(|role| roles.iter().any(|a| a == role.name.as_str()))
}

/// Requests are visible to their requester and to the users who may approve them.
pub fn may_view_request(config: &Config, r: &AccessRequest, viewer: &str) -> bool {
    r.user == viewer || is_approver_of(config, r, viewer)
}

/// Checks a break-glass grant. `duration` defaults to the rule's `max`.
pub fn break_glass(
    config: &Config,
    user: &str,
    resource: &str,
    access: Access,
    duration: Option<Duration>,
    reason: &str,
    now_ms: i64,
) -> Result<BreakGlassPlan, RequestRefusal> {
    precheck(config, user, resource, access).map_err(RequestRefusal::from_denial)?;
    check_reason(reason, "break-glass")?;
    let Some((role, rule)) = break_glass_rules(config, user, resource, access)
        .into_iter()
        .max_by_key(|(_, r)| r.max)
    else {
        return Err(RequestRefusal::new(
            RefusalKind::Forbidden,
            "no_break_glass",
            format!(
                "no role of user \"{user}\" allows break-glass {access} access to \"{resource}\""
            ),
        )
        .hint(format!(
            "request it instead: airlock request {resource} --access {access} --reason \"...\""
        )));
    };
    let duration = duration.unwrap_or(rule.max);
    if duration.is_zero() || duration > rule.max {
        return Err(RequestRefusal::new(
            RefusalKind::BadInput,
            "duration_too_long",
            format!(
                "break-glass {access} access to \"{resource}\" lasts at most {} for role \"{}\"; {} was asked",
                format_duration(rule.max),
                role.name,
                format_duration(duration)
            ),
        )
        .hint(format!("ask for --for {} or less", format_duration(rule.max))));
    }
    Ok(BreakGlassPlan {
        role: role.name.to_string(),
        expires_ms: now_ms + duration.as_millis() as i64,
    })
}

/// Whether `user` may run the approved statement request `r` now (once, by the requester, within
/// the window after approval, while the policy still has the rule).
pub fn can_run_statement(
    config: &Config,
    r: &AccessRequest,
    user: &str,
    now_ms: i64,
) -> Result<(), RequestRefusal> {
    if r.kind != RequestKind::Statement {
        return Err(RequestRefusal::new(
            RefusalKind::BadInput,
            "not_a_statement",
            format!(
                "request {} is an access request, not a reviewed statement",
                r.id
            ),
        )
        .hint(format!(
            "connect instead: airlock connect {} --access {}",
            r.resource, r.access
        )));
    }
    approved_once(
        config,
        r,
        user,
        now_ms,
        Once {
            action: "run the statement",
            done: "ran",
            again: "a reviewed statement runs once; file a new request to run it again",
            lapsed: "file the statement again for a new review",
        },
    )?;
    if current_rule(config, r).is_none() || !holds_role(config, user, &r.role) {
        return Err(RequestRefusal::new(
            RefusalKind::Forbidden,
            "rule_removed",
            format!(
                "the policy no longer lets user \"{user}\" request {} on \"{}\" through role \"{}\"",
                r.access, r.resource, r.role
            ),
        ));
    }
    Ok(())
}

/// The words of [`approved_once`]'s refusals for one kind of request.
struct Once {
    /// "run the statement", "start the run".
    action: &'static str,
    /// "ran", "started".
    done: &'static str,
    /// The hint when it already happened.
    again: &'static str,
    /// The hint when the approval lapsed.
    lapsed: &'static str,
}

/// What statement and runbook requests share: only the requester, only once, only when
/// approved, only within `duration_ms` of the approval.
fn approved_once(
    config: &Config,
    r: &AccessRequest,
    user: &str,
    now_ms: i64,
    words: Once,
) -> Result<(), RequestRefusal> {
    if r.user != user {
        return Err(RequestRefusal::new(
            RefusalKind::Forbidden,
            "not_requester",
            format!("only {} can {} of request {}", r.user, words.action, r.id),
        ));
    }
    match r.state_at(now_ms) {
        RequestState::Approved => {}
        RequestState::Executed => {
            let what = words.action.split_once(' ').map_or("", |(_, w)| w);
            return Err(RequestRefusal::new(
                RefusalKind::Conflict,
                "already_executed",
                format!(
                    "{what} of request {} already {} at {}",
                    r.id,
                    words.done,
                    format_ms(r.executed_ms.unwrap_or(0))
                ),
            )
            .hint(words.again));
        }
        RequestState::Pending => {
            return Err(RequestRefusal::new(
                RefusalKind::Conflict,
                "not_approved",
                format!(
                    "request {} has {} of {} approval(s)",
                    r.id,
                    r.approvals.len(),
                    r.approvals_required
                ),
            )
            .hint(format!(
                "wait for an approver: {}",
                approvers_for(config, &r.approver_roles, &r.user).join(", ")
            )))
        }
        other => {
            return Err(not_pending(r, now_ms).unwrap_or_else(|| {
                RequestRefusal::new(
                    RefusalKind::Conflict,
                    "not_runnable",
                    format!("request {} is {other}", r.id),
                )
            }))
        }
    }
    let approved = r.decided_ms.unwrap_or(r.created_ms);
    if now_ms >= approved + r.duration_ms {
        return Err(RequestRefusal::new(
            RefusalKind::Conflict,
            "approval_expired",
            format!(
                "the approval of request {} lapsed at {}",
                r.id,
                format_ms(approved + r.duration_ms)
            ),
        )
        .hint(words.lapsed));
    }
    Ok(())
}

fn holds_role(config: &Config, user: &str, role: &str) -> bool {
    config
        .user(user)
        .is_some_and(|u| u.roles.iter().any(|x| x.as_str() == role))
}

/// What to store for a runbook run that needs approval: `approvals` approvals from users
/// (other than `user`) holding one of `approver_roles`, filed under `role`, the runbook role
/// `user` holds. The approval is good for `window` (the time to start the run once approved).
#[allow(clippy::too_many_arguments)]
pub fn request_runbook(
    config: &Config,
    user: &str,
    role: &str,
    approvals: u32,
    approver_roles: &[String],
    window: Duration,
    reason: &str,
    now_ms: i64,
) -> Result<RequestPlan, RequestRefusal> {
    check_reason(reason, "a runbook run that needs approval")?;
    let approvers = approvers_for(config, approver_roles, user);
    if approvers.len() < approvals as usize {
        return Err(RequestRefusal::new(
            RefusalKind::Conflict,
            "not_enough_approvers",
            format!(
                "the run needs {approvals} approval(s) from role {}, and only {} other user(s) hold it",
                approver_roles.join(" or "),
                approvers.len()
            ),
        )
        .hint("ask the policy's owners to add approvers"));
    }
    Ok(RequestPlan {
        role: role.to_owned(),
        duration_ms: window.as_millis() as i64,
        approvals_required: approvals,
        approver_roles: approver_roles.to_vec(),
        expires_ms: now_ms + config.access.request_ttl.as_millis() as i64,
        approvers,
    })
}

/// Whether `user` may start the approved runbook request `r` now: once, by the requester, within
/// the window after approval, while they still hold the role it was filed under. That the
/// runbook is unchanged is the runner's check.
pub fn can_run_runbook(
    config: &Config,
    r: &AccessRequest,
    user: &str,
    now_ms: i64,
) -> Result<(), RequestRefusal> {
    if r.kind != RequestKind::Runbook {
        return Err(RequestRefusal::new(
            RefusalKind::BadInput,
            "not_a_runbook_run",
            format!("request {} is not a runbook run", r.id),
        ));
    }
    approved_once(
        config,
        r,
        user,
        now_ms,
        Once {
            action: "start the run",
            done: "started",
            again: "an approved run runs once; file a new request to run it again",
            lapsed: "file the run again for a new review",
        },
    )?;
    if !holds_role(config, user, &r.role) {
        return Err(RequestRefusal::new(
            RefusalKind::Forbidden,
            "rule_removed",
            format!(
                "user \"{user}\" no longer holds role \"{}\", under which the run was requested",
                r.role
            ),
        ));
    }
    Ok(())
}

/// Whether `by` may revoke grant `g`: its holder, or a user who may approve requests for that
/// resource and level under any rule.
pub fn can_revoke(
    config: &Config,
    g: &GrantRecord,
    by: &str,
    reason: &str,
    now_ms: i64,
) -> Result<(), RequestRefusal> {
    check_reason(reason, "a revocation")?;
    if g.kind == GrantKind::Standing {
        return Err(RequestRefusal::new(
            RefusalKind::BadInput,
            "standing_grant",
            "standing access is revoked by changing the policy (airlock.toml), not by revoke",
        ));
    }
    if let Some(at) = g.revoked_ms {
        return Err(RequestRefusal::new(
            RefusalKind::Conflict,
            "already_revoked",
            format!(
                "grant {} was already revoked at {} by {}",
                g.id,
                format_ms(at),
                g.revoked_by.as_deref().unwrap_or("someone")
            ),
        ));
    }
    if now_ms >= g.expires_ms {
        return Err(RequestRefusal::new(
            RefusalKind::Conflict,
            "already_expired",
            format!(
                "grant {} already expired at {}",
                g.id,
                format_ms(g.expires_ms)
            ),
        ));
    }
    if g.user == by || is_grant_approver(config, g, by) {
        return Ok(());
    }
    Err(RequestRefusal::new(
        RefusalKind::Forbidden,
        "not_allowed",
        format!(
            "user \"{by}\" may not revoke grant {}: only its holder and approvers of {} on \"{}\" may",
            g.id, g.access, g.resource
        ),
    ))
}

/// Whether `user` may approve requests for the grant's resource and level under some rule.
pub fn is_grant_approver(config: &Config, g: &GrantRecord, user: &str) -> bool {
    let mine = roles_of(config, user);
    config.roles.iter().any(|role| {
        role.requestable.iter().any(|r| {
            r.resource.as_str() == g.resource
                && r.access == g.access
                && r.approvers
                    .iter()
                    .any(|a| mine.iter().any(|m| m.name == *a))
        })
    })
}
