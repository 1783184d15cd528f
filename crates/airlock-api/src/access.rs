//! Requests, approvals, grants, break-glass, reviewed statements and policy
//! explanations over HTTP. Every rule is asked of `airlock-access`; this
//! module loads state, stores outcomes atomically, announces events (webhooks,
//! never awaited) and tells the enforcer when a grant was revoked.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use airlock_access::{
    AccessRequest, Approval, Explanation, GrantKind, GrantRecord, RefusalKind, RequestKind,
    RequestRefusal, RequestState,
};
use airlock_config::{format_duration, parse_duration, Access, Config};
use airlock_store::{ApproveOutcome, GrantFilter, RequestFilter, Store};

use crate::{ApiError, ApiState, Caller};

impl From<RequestRefusal> for ApiError {
    fn from(r: RequestRefusal) -> ApiError {
        let status = match r.kind {
            RefusalKind::BadInput => StatusCode::BAD_REQUEST,
            RefusalKind::Forbidden => StatusCode::FORBIDDEN,
            RefusalKind::NotFound => StatusCode::NOT_FOUND,
            RefusalKind::Conflict => StatusCode::CONFLICT,
        };
        let e = ApiError::new(status, r.code, r.message);
        match r.hint {
            Some(h) => e.hint(h),
            None => e,
        }
    }
}

/// Runs a blocking store call off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, airlock_store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(what, e))?
        .map_err(|e| ApiError::internal(what, e))
}

fn bad_json(e: axum::extract::rejection::JsonRejection, example: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text())
        .hint(format!("send JSON like {example}"))
}

fn duration_arg(value: Option<&str>) -> Result<Option<Duration>, ApiError> {
    value
        .map(|t| {
            parse_duration(t).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_duration",
                    format!("{t:?}: {e}"),
                )
                .hint("use a duration like 30m or 1h")
            })
        })
        .transpose()
}

/// Text as it is filed: Windows line endings (CRLF) become LF, so a
/// statement written in a Windows editor can be filed; what is stored is what
/// approvers see and what runs. Every other control or invisible formatting
/// character (a lone CR included) is refused by `airlock_access`'s checks.
pub(crate) fn as_filed(text: String) -> String {
    match airlock_config::text::normalize_newlines(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(normalized) => normalized,
    }
}

/// A request as shown to clients: its state at the time of the answer.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct RequestView {
    #[serde(flatten)]
    pub request: AccessRequest,
    /// Users who may approve (never the requester).
    pub approvers: Vec<String>,
}

fn view(config: &Config, mut r: AccessRequest, now: i64) -> RequestView {
    r.state = r.state_at(now);
    let roles = r.approver_roles.clone();
    let approvers = airlock_access::approvers_for(config, &roles, &r.user);
    RequestView {
        request: r,
        approvers,
    }
}

/// The live time-boxed grants of `user` (on `resource` when given).
pub(crate) async fn live_grants(
    store: &std::sync::Arc<dyn Store>,
    user: &str,
    resource: Option<&str>,
    now: i64,
) -> Result<Vec<GrantRecord>, ApiError> {
    let store = store.clone();
    let filter = GrantFilter {
        user: Some(user.to_owned()),
        resource: resource.map(str::to_owned),
        live_at: Some(now),
        limit: 1000,
    };
    blocking("reading grants", move || store.grants(&filter)).await
}

impl ApiState {
    /// Sends an event to the webhooks; never waits for delivery.
    /// Records an access event in the audit log and sends it to the
    /// webhooks (never waiting for delivery).
    pub fn announce(&self, actor: &str, kind: &str, text: String, data: serde_json::Value) {
        tracing::info!(event = kind, "{text}");
        self.record(actor, kind, &text, &data);
        if let Some(w) = &self.webhooks {
            w.emit(airlock_webhook::Event::new(
                kind,
                text,
                self.clock.now_ms(),
                data,
            ));
        }
    }

    pub(crate) async fn load_request(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<AccessRequest, ApiError> {
        let store = self.store.clone();
        let key = id.to_owned();
        let found = blocking("reading a request", move || store.request(&key)).await?;
        let config = self.config.borrow().clone();
        match found {
            Some(r) if airlock_access::may_view_request(&config, &r, &caller.user) => Ok(r),
            // Someone else's request is answered exactly like a missing one.
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no request {id} that you can see"),
            )
            .hint("list requests with `airlock requests`")),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    pub resource: String,
    #[serde(default = "write")]
    pub access: Access,
    /// How long the grant should last, e.g. "30m"; default the smaller of 1h and the rule's max.
    #[serde(rename = "for")]
    pub duration: Option<String>,
    pub reason: String,
    /// For a reviewed statement: its exact text.
    pub statement: Option<String>,
}

fn write() -> Access {
    Access::Write
}

pub async fn create_request(
    State(s): State<ApiState>,
    caller: Caller,
    body: Result<Json<NewRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    s.require_audit()?;
    let Json(mut req) = body.map_err(|e| {
        bad_json(
            e,
            r#"{"resource": "orders", "access": "write", "for": "30m", "reason": "INC-42"}"#,
        )
    })?;
    req.reason = as_filed(req.reason);
    req.statement = req.statement.map(as_filed);
    let config = s.config.borrow().clone();
    let now = s.clock.now_ms();
    let (plan, kind) = match &req.statement {
        Some(sql) => {
            if req.access != Access::Write || req.duration.is_some() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "a reviewed statement runs with write access once; `access` and `for` do not apply",
                ));
            }
            let plan = airlock_access::request_statement(
                &config,
                &caller.user,
                &req.resource,
                sql,
                &req.reason,
                now,
            )?;
            // What the gateway refuses at every access level is refused
            // here too: no review can make it safe to send.
            crate::exec::refuse_refused_class(sql, &req.resource).await?;
            (plan, RequestKind::Statement)
        }
        None => {
            let grants = live_grants(&s.store, &caller.user, Some(&req.resource), now).await?;
            let plan = airlock_access::request_access(
                &config,
                &caller.user,
                &req.resource,
                req.access,
                duration_arg(req.duration.as_deref())?,
                &req.reason,
                now,
                &grants,
            )?;
            (plan, RequestKind::Access)
        }
    };
    let r = AccessRequest {
        id: airlock_store::new_id("req"),
        kind,
        user: caller.user.clone(),
        resource: req.resource.clone(),
        access: req.access,
        duration_ms: plan.duration_ms,
        reason: req.reason.clone(),
        statement: req.statement.clone(),
        role: plan.role.clone(),
        approvals_required: plan.approvals_required,
        approver_roles: plan.approver_roles.clone(),
        created_ms: now,
        expires_ms: plan.expires_ms,
        state: RequestState::Pending,
        decided_ms: None,
        decided_by: None,
        decision_comment: None,
        grant_id: None,
        executed_ms: None,
        runbook: None,
        approvals: Vec::new(),
    };
    store_new_request(&s, &caller, r, &plan.approvers).await
}

/// Stores a new request, announces it (audit log and webhooks) and answers
/// with its view. Shared by access, statement and runbook requests.
pub(crate) async fn store_new_request(
    s: &ApiState,
    caller: &Caller,
    r: AccessRequest,
    approvers: &[String],
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    let store = s.store.clone();
    let stored = r.clone();
    blocking("storing a request", move || store.insert_request(&stored)).await?;
    let what = match r.kind {
        RequestKind::Access => format!(
            "{} access to {} for {}",
            r.access,
            r.resource,
            format_duration(Duration::from_millis(r.duration_ms as u64))
        ),
        RequestKind::Statement => format!("to run one reviewed statement on {}", r.resource),
        RequestKind::Runbook => format!("to run runbook {}", r.resource),
    };
    s.announce(
        &caller.user,
        "request.created",
        format!(
            "{} requests {what}: \"{}\" (request {}; approvers: {})",
            r.user,
            r.reason,
            r.id,
            approvers.join(", ")
        ),
        json!({ "request": &r, "approvers": approvers }),
    );
    let config = s.config.borrow().clone();
    let now = s.clock.now_ms();
    Ok((StatusCode::CREATED, Json(view(&config, r, now))))
}

#[derive(Deserialize)]
pub struct ListRequests {
    #[serde(default)]
    pub pending: bool,
    #[serde(default)]
    pub mine: bool,
    pub limit: Option<usize>,
}

pub async fn list_requests(
    State(s): State<ApiState>,
    caller: Caller,
    Query(q): Query<ListRequests>,
) -> Result<Json<Vec<RequestView>>, ApiError> {
    let now = s.clock.now_ms();
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let filter = RequestFilter {
        user: q.mine.then(|| caller.user.clone()),
        pending_at: q.pending.then_some(now),
        // Visibility is filtered below; read more so the page stays full.
        limit: if q.mine { limit } else { limit * 10 },
    };
    let store = s.store.clone();
    let list = blocking("listing requests", move || store.requests(&filter)).await?;
    let config = s.config.borrow().clone();
    Ok(Json(
        list.into_iter()
            .filter(|r| airlock_access::may_view_request(&config, r, &caller.user))
            .take(limit)
            .map(|r| view(&config, r, now))
            .collect(),
    ))
}

pub async fn get_request(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    let r = s.load_request(&caller, &id).await?;
    let config = s.config.borrow().clone();
    Ok(Json(view(&config, r, s.clock.now_ms())))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub comment: Option<String>,
    pub reason: Option<String>,
}

pub async fn approve(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Decision>>,
) -> Result<Json<RequestView>, ApiError> {
    s.require_audit()?;
    let comment = body.and_then(|Json(d)| d.comment.or(d.reason).map(as_filed));
    if comment
        .as_ref()
        .is_some_and(|c| c.len() > airlock_access::requests::MAX_REASON_LEN)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "comment_too_long",
            "the comment is too long",
        ));
    }
    if let Some(c) = &comment {
        airlock_access::requests::check_text("comment", c)?;
    }
    let r = s.load_request(&caller, &id).await?;
    let config = s.config.borrow().clone();
    let now = s.clock.now_ms();
    let required = airlock_access::can_approve(&config, &r, &caller.user, now)?;
    let grant = (r.kind == RequestKind::Access).then(|| GrantRecord {
        id: airlock_store::new_id("grt"),
        user: r.user.clone(),
        resource: r.resource.clone(),
        access: r.access,
        kind: GrantKind::Requested,
        role: r.role.clone(),
        request_id: Some(r.id.clone()),
        reason: r.reason.clone(),
        created_ms: now,
        expires_ms: now + r.duration_ms,
        revoked_ms: None,
        revoked_by: None,
        revoke_reason: None,
    });
    let approval = Approval {
        approver: caller.user.clone(),
        comment: comment.clone(),
        at_ms: now,
    };
    let store = s.store.clone();
    let key = id.clone();
    let outcome = blocking("approving a request", move || {
        store.approve_request(&key, &approval, required, grant.as_ref())
    })
    .await?;
    match outcome {
        ApproveOutcome::NotPending(state) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                if state == RequestState::Expired {
                    "request_expired"
                } else {
                    "not_pending"
                },
                format!("request {id} is {state}"),
            ))
        }
        ApproveOutcome::AlreadyApproved => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_approved_by_you",
                format!("you already approved request {id}"),
            ))
        }
        ApproveOutcome::Recorded { count, required } => s.announce(
            &caller.user,
            "request.approved",
            format!(
                "{} approved request {id} of {} ({count} of {required} approvals)",
                caller.user, r.user
            ),
            // `user` and `resource` make it the requester's record too.
            json!({ "request_id": id, "approver": caller.user, "comment": comment,
                    "approvals": count, "required": required, "complete": false,
                    "user": r.user, "resource": r.resource }),
        ),
        ApproveOutcome::Approved { grant } => {
            let what = match &grant {
                Some(g) => format!(
                    "{} now has {} access to {} until {} (grant {})",
                    r.user,
                    g.access,
                    g.resource,
                    airlock_access::format_ms(g.expires_ms),
                    g.id
                ),
                None if r.kind == RequestKind::Runbook => format!(
                    "{} may start the run of runbook {} once",
                    r.user, r.resource
                ),
                None => format!("{} may run the reviewed statement once", r.user),
            };
            s.announce(
                &caller.user,
                "request.approved",
                format!("{} approved request {id}: {what}", caller.user),
                json!({ "request_id": id, "approver": caller.user, "comment": comment,
                        "complete": true, "grant": grant, "user": r.user,
                        "resource": r.resource }),
            );
        }
    }
    let r = s.load_request(&caller, &id).await?;
    Ok(Json(view(&config, r, now)))
}

pub async fn deny(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Decision>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<RequestView>, ApiError> {
    s.require_audit()?;
    let Json(d) = body.map_err(|e| bad_json(e, r#"{"reason": "not during the freeze"}"#))?;
    let reason = as_filed(d.reason.or(d.comment).unwrap_or_default());
    let r = s.load_request(&caller, &id).await?;
    let config = s.config.borrow().clone();
    let now = s.clock.now_ms();
    airlock_access::can_deny(&config, &r, &caller.user, &reason, now)?;
    let store = s.store.clone();
    let (key, by, why) = (id.clone(), caller.user.clone(), reason.clone());
    let result = blocking("denying a request", move || {
        store.deny_request(&key, &by, &why, now)
    })
    .await?;
    if let Err(state) = result {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_pending",
            format!("request {id} is {state}"),
        ));
    }
    s.announce(
        &caller.user,
        "request.denied",
        format!(
            "{} denied request {id} of {}: \"{reason}\"",
            caller.user, r.user
        ),
        json!({ "request_id": id, "by": caller.user, "reason": reason, "user": r.user }),
    );
    let r = s.load_request(&caller, &id).await?;
    Ok(Json(view(&config, r, now)))
}

#[derive(Deserialize)]
pub struct ListGrants {
    #[serde(default)]
    pub all: bool,
}

/// A grant as shown to clients, with its effective state.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct GrantView {
    #[serde(flatten)]
    pub grant: GrantRecord,
    /// `live`, `expired`, `revoked` or `ended` (no longer allowed by the policy).
    pub state: String,
    /// The effective end (capped by the policy in force), when live.
    pub ends_ms: Option<i64>,
}

fn grant_view(config: &Config, g: GrantRecord, now: i64) -> GrantView {
    let (state, ends_ms) = match airlock_access::check_grant(config, &g, now) {
        Ok(live) => ("live", live.expires_ms),
        Err(_) if g.revoked_ms.is_some() => ("revoked", None),
        Err(_) if now >= g.expires_ms => ("expired", None),
        Err(airlock_access::Denial::GrantEnded {
            end: airlock_access::GrantEnd::Expired { .. },
            ..
        }) => ("expired", None),
        Err(_) => ("ended", None),
    };
    GrantView {
        grant: g,
        state: state.into(),
        ends_ms,
    }
}

pub async fn list_grants(
    State(s): State<ApiState>,
    caller: Caller,
    Query(q): Query<ListGrants>,
) -> Result<Json<Vec<GrantView>>, ApiError> {
    let now = s.clock.now_ms();
    let config = s.config.borrow().clone();
    let filter = GrantFilter {
        user: (!q.all).then(|| caller.user.clone()),
        resource: None,
        live_at: (!q.all).then_some(now),
        limit: 1000,
    };
    let store = s.store.clone();
    let list = blocking("listing grants", move || store.grants(&filter)).await?;
    Ok(Json(
        list.into_iter()
            .filter(|g| {
                g.user == caller.user || airlock_access::is_grant_approver(&config, g, &caller.user)
            })
            .map(|g| grant_view(&config, g, now))
            .filter(|v| q.all || v.state == "live")
            .take(200)
            .collect(),
    ))
}

pub async fn revoke(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Decision>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<GrantView>, ApiError> {
    s.require_audit()?;
    let Json(d) = body.map_err(|e| bad_json(e, r#"{"reason": "incident closed"}"#))?;
    let reason = as_filed(d.reason.or(d.comment).unwrap_or_default());
    let store = s.store.clone();
    let key = id.clone();
    let found = blocking("reading a grant", move || store.grant(&key)).await?;
    let config = s.config.borrow().clone();
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no grant {id} that you can see"),
        )
        .hint("list grants with `airlock grants --all`")
    };
    let g = match found {
        Some(g)
            if g.user == caller.user
                || airlock_access::is_grant_approver(&config, &g, &caller.user) =>
        {
            g
        }
        _ => return Err(not_found()),
    };
    let now = s.clock.now_ms();
    airlock_access::can_revoke(&config, &g, &caller.user, &reason, now)?;
    let store = s.store.clone();
    let (key, by, why) = (id.clone(), caller.user.clone(), reason.clone());
    let revoked = blocking("revoking a grant", move || {
        store.revoke_grant(&key, &by, &why, now)
    })
    .await?;
    if !revoked {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_revoked",
            format!("grant {id} was already revoked"),
        ));
    }
    s.grant_changed();
    s.announce(
        &caller.user,
        "grant.revoked",
        format!(
            "{} revoked grant {id} ({} on {} held by {}): \"{reason}\"",
            caller.user, g.access, g.resource, g.user
        ),
        json!({ "grant_id": id, "by": caller.user, "reason": reason, "user": g.user,
                "resource": g.resource, "access": g.access }),
    );
    let store = s.store.clone();
    let key = id.clone();
    let g = blocking("reading a grant", move || store.grant(&key))
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(grant_view(&config, g, now)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlass {
    pub resource: String,
    #[serde(default = "write")]
    pub access: Access,
    #[serde(rename = "for")]
    pub duration: Option<String>,
    pub reason: String,
}

pub async fn break_glass(
    State(s): State<ApiState>,
    caller: Caller,
    body: Result<Json<BreakGlass>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<GrantView>), ApiError> {
    s.require_audit()?;
    let Json(mut b) = body.map_err(|e| {
        bad_json(
            e,
            r#"{"resource": "orders", "reason": "INC-42: orders stuck"}"#,
        )
    })?;
    b.reason = as_filed(b.reason);
    let config = s.config.borrow().clone();
    let now = s.clock.now_ms();
    let plan = airlock_access::break_glass(
        &config,
        &caller.user,
        &b.resource,
        b.access,
        duration_arg(b.duration.as_deref())?,
        &b.reason,
        now,
    )?;
    let g = GrantRecord {
        id: airlock_store::new_id("grt"),
        user: caller.user.clone(),
        resource: b.resource.clone(),
        access: b.access,
        kind: GrantKind::BreakGlass,
        role: plan.role.clone(),
        request_id: None,
        reason: b.reason.clone(),
        created_ms: now,
        expires_ms: plan.expires_ms,
        revoked_ms: None,
        revoked_by: None,
        revoke_reason: None,
    };
    let store = s.store.clone();
    let stored = g.clone();
    blocking("storing a break-glass grant", move || {
        store.insert_grant(&stored)
    })
    .await?;
    tracing::warn!(user = %caller.user, resource = %g.resource, access = %g.access, grant = %g.id, reason = %g.reason, "BREAK-GLASS access taken");
    s.announce(
        &caller.user,
        "break_glass.used",
        format!(
            "BREAK-GLASS: {} took {} access to {} until {}: \"{}\" (grant {})",
            g.user,
            g.access,
            g.resource,
            airlock_access::format_ms(g.expires_ms),
            g.reason,
            g.id
        ),
        json!({ "grant": &g }),
    );
    Ok((StatusCode::CREATED, Json(grant_view(&config, g, now))))
}

#[derive(Deserialize)]
pub struct ExplainQuery {
    pub user: Option<String>,
    pub resource: String,
    pub access: Access,
}

pub async fn explain(
    State(s): State<ApiState>,
    caller: Caller,
    q: Result<Query<ExplainQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Explanation>, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text())
            .hint("ask like /api/v1/policy/explain?resource=orders&access=write[&user=oncall1]")
    })?;
    let config = s.config.borrow().clone();
    let user = q.user.unwrap_or_else(|| caller.user.clone());
    // Explaining someone else's access is for the people who approve it.
    let approver = config.roles.iter().any(|role| {
        role.requestable.iter().any(|r| {
            r.approvers.iter().any(|a| {
                config
                    .user(&caller.user)
                    .is_some_and(|u| u.roles.contains(a))
            })
        })
    });
    if user != caller.user && !approver {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only approvers may explain another user's access",
        )
        .hint("explain your own: leave out `user`, or run `airlock policy explain` on the policy file"));
    }
    let now = s.clock.now_ms();
    let grants = live_grants(&s.store, &user, Some(&q.resource), now).await?;
    Ok(Json(airlock_access::explain(
        &config,
        &user,
        &q.resource,
        q.access,
        now,
        &grants,
    )))
}

pub async fn webhooks_status(
    State(s): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<airlock_webhook::TargetStatus>>, ApiError> {
    s.require(&caller, crate::Duty::Admin)?;
    Ok(Json(
        s.webhooks.as_ref().map(|w| w.status()).unwrap_or_default(),
    ))
}
