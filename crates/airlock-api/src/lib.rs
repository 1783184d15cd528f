//! The HTTP API: bearer-token auth, health, Prometheus metrics, the OpenAPI
//! document, and the endpoints the CLI uses (who am I, resources, session
//! credentials, sessions).
//!
//! The API holds no state of its own: everything comes from the config, the
//! store and the clock it is handed, so several gateways can serve it.

// The OpenAPI document is one `json!` literal, deeper than the default limit.
#![recursion_limit = "256"]

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use airlock_access::{decide, Clock, Decision};
use airlock_config::{Access, Config};
use airlock_store::Store;

pub mod access;
pub mod audit;
pub mod console;
pub mod credentials;
pub mod error;
pub mod exec;
pub mod openapi;
pub mod runbooks;
pub mod telemetry;
pub mod tls_listener;
pub mod tokens;

pub use error::ApiError;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub config: watch::Receiver<Arc<Config>>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub registry: Arc<prometheus_client::registry::Registry>,
    /// The CA clients must trust, when the gateway generated its own.
    pub ca_pem: Option<Arc<str>>,
    /// Where Postgres clients connect: (public host, port).
    pub postgres_endpoint: (String, u16),
    /// Webhook delivery, when any webhook is configured.
    pub webhooks: Option<airlock_webhook::Dispatcher>,
    /// Live proxied sessions; poked when a grant is revoked so its sessions end now.
    pub sessions: Arc<airlock_proxy::enforcer::SessionRegistry>,
    /// Upstream TLS settings, for running reviewed statements.
    pub upstream_tls: airlock_proxy::backend::UpstreamTlsConfigs,
    /// The audit log: access events and reviewed statements are written to it.
    pub audit: airlock_audit::AuditLog,
    /// The query index derived from the audit log (sessions, replay).
    pub audit_index: Arc<std::sync::Mutex<airlock_audit::index::Index>>,
    /// Which API tokens' issuance the audit log holds.
    pub tokens: Arc<tokens::TokenLedger>,
    /// Stored telemetry: the timeline, traces, compare, deploy markers.
    pub telemetry: Arc<dyn airlock_store::telemetry::TelemetryStore>,
    /// Runbooks: the catalog in force, the runner, the gateway's own listener.
    pub runbooks: runbooks::RunbookContext,
}

impl ApiState {
    /// Tells the enforcer that a grant changed.
    pub(crate) fn grant_changed(&self) {
        self.sessions.poke();
    }

    /// Refuses an action up front when the audit log cannot record it.
    pub(crate) fn require_audit(&self) -> Result<(), ApiError> {
        match self.audit.health() {
            None => Ok(()),
            Some(f) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                format!("the audit log cannot be written ({}), so Airlock takes no action it could not record", f.reason),
            )
            .hint("tell the gateway's operator (see /healthz); retry once the audit log is healthy")),
        }
    }

    /// Whether `user` has a role in `[access] admin_roles`.
    pub(crate) fn is_admin(&self, user: &str) -> bool {
        let config = self.config.borrow();
        let admins = &config.access.admin_roles;
        config
            .user(user)
            .is_some_and(|u| u.roles.iter().any(|r| admins.contains(r)))
    }

    /// Refuses `caller` unless their roles allow `duty`. Admins may do all;
    /// see [`Duty`] for who else may.
    pub(crate) fn require(&self, caller: &Caller, duty: Duty) -> Result<(), ApiError> {
        if self.is_admin(&caller.user) {
            return Ok(());
        }
        let config = self.config.borrow();
        let roles: &[airlock_config::RoleName] =
            config.user(&caller.user).map_or(&[], |u| &u.roles);
        let allowed = match duty {
            Duty::Admin => false,
            Duty::ReadTelemetry => match &config.access.telemetry_roles {
                None => !roles.is_empty(),
                Some(list) => roles.iter().any(|r| list.contains(r)),
            },
            Duty::MarkDeploys => roles.iter().any(|r| config.access.deploy_roles.contains(r)),
        };
        if allowed {
            return Ok(());
        }
        let (what, key) = match duty {
            Duty::Admin => ("this endpoint is for admins", "admin_roles"),
            Duty::ReadTelemetry => ("reading telemetry", "telemetry_roles"),
            Duty::MarkDeploys => ("marking deploys", "deploy_roles"),
        };
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "role_required",
            format!(
                "{what}: user {:?} has no role listed in [access] {key}{}",
                caller.user,
                if matches!(duty, Duty::Admin) {
                    ""
                } else {
                    " or admin_roles"
                }
            ),
        )
        .hint("ask the platform team for such a role in airlock.toml"))
    }

    /// Writes an access event to the audit log (nothing else).
    pub fn record(&self, actor: &str, kind: &str, text: &str, data: &serde_json::Value) {
        let event = airlock_audit::Event::Access {
            event: kind.to_owned(),
            actor: actor.to_owned(),
            text: text.to_owned(),
            data: data.clone(),
        };
        if let Err(e) = self.audit.append(&[event]) {
            tracing::error!(event = kind, error = %e, "an access event could not be written to the audit log");
        }
    }
}

/// What a caller may do beyond their own access, by role (`[access]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duty {
    /// `admin_roles`: everyone's API tokens, `/metrics`, the webhook status.
    Admin,
    /// `telemetry_roles` (default: any user with a role): the timeline,
    /// traces, compare and the deploy list.
    ReadTelemetry,
    /// `deploy_roles`: `POST /api/v1/deploys`.
    MarkDeploys,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi_doc))
        .route("/api/v1/ca.crt", get(ca_cert))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/tokens", get(tokens::list))
        .route("/api/v1/tokens/{id}", delete(tokens::revoke))
        .route("/api/v1/resources", get(resources))
        .route("/api/v1/credentials", post(credentials::mint))
        .route("/api/v1/audit", get(audit::search))
        .route("/api/v1/audit/verify", get(audit::verify))
        .route("/api/v1/sessions", get(sessions))
        .route("/api/v1/sessions/{id}/statements", get(session_statements))
        .route(
            "/api/v1/requests",
            post(access::create_request).get(access::list_requests),
        )
        .route("/api/v1/requests/{id}", get(access::get_request))
        .route("/api/v1/requests/{id}/approve", post(access::approve))
        .route("/api/v1/requests/{id}/deny", post(access::deny))
        .route("/api/v1/requests/{id}/execute", post(exec::execute))
        .route("/api/v1/requests/{id}/run", post(runbooks::run_request))
        .route("/api/v1/runbooks", get(runbooks::list))
        .route("/api/v1/runbooks/{name}/runs", post(runbooks::start))
        .route("/api/v1/grants", get(access::list_grants))
        .route("/api/v1/grants/{id}/revoke", post(access::revoke))
        .route("/api/v1/break-glass", post(access::break_glass))
        .route("/api/v1/policy/explain", get(access::explain))
        .route("/api/v1/webhooks", get(access::webhooks_status))
        .route("/api/v1/timeline", get(telemetry::timeline))
        .route("/api/v1/traces/{id}", get(telemetry::trace))
        .route("/api/v1/compare", get(telemetry::compare))
        .route(
            "/api/v1/deploys",
            get(telemetry::list_deploys).post(telemetry::mark_deploy),
        )
        .merge(console::router())
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        .hint("the endpoints are listed in /api/openapi.json")
}

/// 200 when the gateway can do its work; 503 when the audit log cannot be
/// written (statements are being refused).
async fn healthz(State(s): State<ApiState>) -> Response {
    match s.audit.health() {
        None => Json(serde_json::json!({ "status": "ok", "audit": { "status": "ok" } })).into_response(),
        Some(f) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "status": "failing",
                "audit": {
                    "status": "failing",
                    "reason": f.reason,
                    "since_ms": f.since_ms,
                    "effect": "statements and sessions are refused until the audit log can be written",
                },
            })),
        )
            .into_response(),
    }
}

/// Whether the request's bearer token is the scrape token named by
/// `[access] metrics_token_env` (compared as SHA-256 digests). An unset or
/// empty variable matches nothing.
fn is_scrape_token(s: &ApiState, headers: &axum::http::HeaderMap) -> bool {
    let Some(name) = s.config.borrow().access.metrics_token_env.clone() else {
        return false;
    };
    let Ok(expected) = std::env::var(&name) else {
        tracing::warn!(variable = %name, "[access] metrics_token_env names a variable that is not set; /metrics answers admins only");
        return false;
    };
    let expected = expected.trim();
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if !expected.is_empty() => tokens::hash_token(t) == tokens::hash_token(expected),
        _ => false,
    }
}

/// Prometheus text: for the scrape token (`[access] metrics_token_env`) or
/// an admin's API token.
async fn metrics(
    State(s): State<ApiState>,
    headers: axum::http::HeaderMap,
    caller: Result<Caller, ApiError>,
) -> Response {
    if !is_scrape_token(&s, &headers) {
        if let Err(e) = caller.and_then(|c| s.require(&c, Duty::Admin)) {
            return e.into_response();
        }
    }
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &s.registry) {
        return ApiError::internal("encoding metrics", e).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn openapi_doc() -> Json<serde_json::Value> {
    Json(openapi::document())
}

async fn ca_cert(State(s): State<ApiState>) -> Response {
    match &s.ca_pem {
        Some(pem) => (
            [(header::CONTENT_TYPE, "application/x-pem-file")],
            pem.to_string(),
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "no_generated_ca",
            "this gateway serves an operator-provided certificate, not a generated CA",
        )
        .hint("verify the gateway with your organisation's CA bundle")
        .into_response(),
    }
}

/// The caller, proven by a bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub token_id: String,
}

impl<S> FromRequestParts<S> for Caller
where
    ApiState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Caller, ApiError> {
        let state = ApiState::from_ref(state);
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("no Authorization header"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header is not `Bearer <token>`")
            })?;
        let hash = tokens::hash_token(token);
        let store = state.store.clone();
        let found = tokio::task::spawn_blocking(move || store.token_by_hash(&hash))
            .await
            .map_err(|e| ApiError::internal("token lookup", e))?
            .map_err(|e| ApiError::internal("token lookup", e))?;
        let now = state.clock.now_ms();
        let Some(t) = found else {
            return Err(ApiError::unauthorized("unknown token"));
        };
        if t.revoked_ms.is_some() {
            return Err(ApiError::unauthorized("this token was revoked"));
        }
        if t.expires_ms.is_some_and(|e| e <= now) {
            return Err(ApiError::unauthorized("this token has expired"));
        }
        // Issued offline: recorded before its first use, or not accepted.
        if let Err(e) = state.tokens.ensure(&t, &state.audit) {
            tracing::error!(token = %t.id, error = %e, "a token's issuance could not be written to the audit log");
            state.require_audit()?;
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit log cannot be written, so Airlock accepts no token it has not recorded",
            )
            .hint(
                "tell the gateway's operator (see /healthz); retry once the audit log is healthy",
            ));
        }
        if state.config.borrow().user(&t.user).is_none() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "unknown_user",
                format!("user \"{}\" is no longer in the gateway's policy", t.user),
            )
            .hint("ask the platform team to add the user to airlock.toml"));
        }
        Ok(Caller {
            user: t.user,
            token_id: t.id,
        })
    }
}

#[derive(Serialize)]
struct WhoAmI {
    user: String,
    roles: Vec<String>,
}

async fn whoami(State(s): State<ApiState>, caller: Caller) -> Json<WhoAmI> {
    let config = s.config.borrow().clone();
    let roles = config
        .user(&caller.user)
        .map(|u| u.roles.iter().map(|r| r.to_string()).collect())
        .unwrap_or_default();
    Json(WhoAmI {
        user: caller.user,
        roles,
    })
}

/// One way the caller may reach a resource.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ResourceAccess {
    pub resource: String,
    pub access: Access,
    /// `standing`, `requestable`, `break_glass`, or `grant` (a live time-boxed grant).
    pub kind: String,
    pub role: String,
    /// Longest grant for requestable and break-glass rules, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvals: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// For a live grant: its id and end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<i64>,
}

async fn resources(
    State(s): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<ResourceAccess>>, ApiError> {
    let config = s.config.borrow().clone();
    let now = s.clock.now_ms();
    let mut list: Vec<ResourceAccess> = airlock_access::entitlements(&config, &caller.user)
        .into_iter()
        // Standing access only where the decision function allows it right now.
        .filter(|e| {
            e.how != "standing"
                || matches!(
                    decide(&config, &caller.user, &e.resource, e.access, now, &[]),
                    Decision::Allow(_)
                )
        })
        .map(|e| ResourceAccess {
            resource: e.resource,
            access: e.access,
            kind: e.how.to_owned(),
            role: e.role,
            max_ms: e.max_ms,
            approvals: e.approvals,
            approvers: e.approvers,
            grant_id: None,
            expires_ms: None,
        })
        .collect();
    for g in access::live_grants(&s.store, &caller.user, None, now).await? {
        // A runbook grant serves its run only; it is not the user's access.
        if g.kind == airlock_access::GrantKind::Runbook {
            continue;
        }
        if let Ok(live) = airlock_access::check_grant(&config, &g, now) {
            list.push(ResourceAccess {
                resource: g.resource,
                access: g.access,
                kind: "grant".into(),
                role: g.role,
                max_ms: None,
                approvals: None,
                approvers: vec![],
                grant_id: Some(g.id),
                expires_ms: live.expires_ms,
            });
        }
    }
    Ok(Json(list))
}

#[derive(Deserialize)]
struct SessionsQuery {
    #[serde(default)]
    active: bool,
    /// Someone else's sessions: auditors only.
    user: Option<String>,
    resource: Option<String>,
    /// Sessions open at or after this time.
    since_ms: Option<i64>,
    limit: Option<usize>,
}

async fn sessions(
    State(s): State<ApiState>,
    caller: Caller,
    Query(q): Query<SessionsQuery>,
) -> Result<Json<Vec<airlock_audit::index::SessionRow>>, ApiError> {
    let user = match q.user {
        Some(u) if u != caller.user && !audit::is_auditor(&s, &caller.user) => {
            return Err(audit::not_an_auditor(&format!(
                "listing the sessions of {u:?}"
            )))
        }
        Some(u) => u,
        None => caller.user,
    };
    let query = airlock_audit::index::SessionQuery {
        user: Some(user),
        resource: q.resource,
        since_ms: q.since_ms,
        active_only: q.active,
        limit: q.limit.unwrap_or(100).min(1000),
    };
    let index = s.audit_index.clone();
    let list = tokio::task::spawn_blocking(move || {
        index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sessions(&query)
    })
    .await
    .map_err(|e| ApiError::internal("listing sessions", e))?
    .map_err(|e| ApiError::internal("listing sessions", e))?;
    Ok(Json(list))
}

/// One statement of a session, as recorded.
#[derive(serde::Serialize)]
struct StatementView {
    seq: u64,
    at_ms: i64,
    text: String,
    decision: String,
    rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sqlstate: Option<String>,
    /// How each run ended: one for a simple Query, one per Execute of a
    /// prepared statement; none for a refused statement.
    runs: Vec<airlock_audit::StatementDone>,
}

async fn session_statements(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<StatementView>>, ApiError> {
    let index = s.audit_index.clone();
    let user = caller.user.clone();
    let result = tokio::task::spawn_blocking(move || {
        let index = index.lock().unwrap_or_else(|e| e.into_inner());
        // Someone else's session is answered exactly like a missing one.
        match index.session(&id)? {
            Some(s) if s.user == user => index
                .records(&airlock_audit::index::RecordQuery {
                    session: Some(id),
                    kinds: vec!["statement".into(), "statement_done".into()],
                    limit: 100_000,
                    ..Default::default()
                })
                .map(Some),
            _ => Ok(None),
        }
    })
    .await
    .map_err(|e| ApiError::internal("reading statements", e))?
    .map_err(|e| ApiError::internal("reading statements", e))?;
    let entries = result.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such session of yours",
        )
        .hint("list your sessions with GET /api/v1/sessions")
    })?;
    let mut list: Vec<StatementView> = Vec::new();
    let mut at: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    for e in entries {
        match e.event {
            airlock_audit::Event::Statement(st) => {
                at.insert(st.n, list.len());
                list.push(StatementView {
                    seq: st.n,
                    at_ms: e.ts,
                    text: st.display_text(),
                    decision: st.decision,
                    rule: st.rule,
                    sqlstate: st.sqlstate,
                    runs: Vec::new(),
                });
            }
            airlock_audit::Event::StatementDone(d) => {
                if let Some(&i) = at.get(&d.n) {
                    list[i].runs.push(d);
                }
            }
            _ => {}
        }
    }
    Ok(Json(list))
}
