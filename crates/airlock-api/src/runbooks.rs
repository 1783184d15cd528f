//! Runbooks through the API: what a caller may run, dry runs, runs streamed
//! as they happen, and runs that need approval filed as requests and started
//! once approved.
//!
//! A run happens in the gateway, not on the caller's machine: the gateway
//! holds the secrets the steps need (from its environment), and its SQL steps
//! log in to the gateway's own PostgreSQL listener as the caller, with a
//! credential minted for that one statement, so they pass the same gate,
//! guardrails, masking and audit as anyone's statements.
//!
//! Records, in the audit log (and so on the timeline): `runbook.started`
//! before the first step (a run whose start cannot be recorded does not
//! start), `runbook.step` as each step ends with its outcome and output cut to
//! `[runbooks] max_output`, and `runbook.finished`. A run goes on when the
//! caller disconnects: a half-done rollback is worse than a finished one, and
//! its records tell what happened.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use airlock_access::{AccessRequest, Grant, GrantKind, GrantRecord, RequestKind, RequestState};
use airlock_config::{Access, Config};
use airlock_runbook::{
    BoxFuture, Plan, PlannedAction, RunEvent, RunOutcome, Runbook, Runbooks, Runner, SqlExecutor,
    SqlOutput, SqlRequest, StepAction,
};

use crate::access::{blocking, live_grants, RequestView};
use crate::{ApiError, ApiState, Caller};

/// How long an approved run may wait to be started.
const APPROVAL_WINDOW: Duration = Duration::from_secs(3600);

/// What the API needs for runbooks; the gateway builds it.
#[derive(Clone)]
pub struct RunbookContext {
    /// The runbooks in force; replaced on reload.
    pub catalog: watch::Receiver<Arc<Runbooks>>,
    pub runner: Runner,
    /// The gateway's own PostgreSQL listener, as reachable from itself.
    pub postgres_local: SocketAddr,
}

/// One runbook as the list shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunbookView {
    pub name: String,
    pub description: String,
    pub approvals: u32,
    pub approvers: Vec<String>,
    pub timeout_ms: u64,
    pub digest: String,
    pub params: Vec<serde_json::Value>,
    pub steps: Vec<StepView>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StepView {
    pub name: String,
    pub kind: String,
    /// The resource and access of a sql step, the method and URL template of
    /// an http step, the program of a command step.
    pub target: String,
}

fn view(r: &Runbook) -> RunbookView {
    RunbookView {
        name: r.name.clone(),
        description: r.description.clone(),
        approvals: r.approvals,
        approvers: r.approvers.iter().map(|a| a.to_string()).collect(),
        timeout_ms: r.timeout.as_millis() as u64,
        digest: r.digest.clone(),
        params: r
            .params
            .iter()
            .map(|p| serde_json::to_value(p).unwrap_or(serde_json::Value::Null))
            .collect(),
        steps: r
            .steps
            .iter()
            .map(|s| StepView {
                name: s.name.clone(),
                kind: s.action.kind().as_str().to_owned(),
                target: match &s.action {
                    StepAction::Sql(q) => format!("{} ({})", q.resource, q.access),
                    StepAction::Http(h) => format!("{} {}", h.method, h.url.source()),
                    StepAction::Command(c) => c
                        .argv
                        .first()
                        .map(|a| a.source().to_owned())
                        .unwrap_or_default(),
                },
            })
            .collect(),
    }
}

/// The role of `user` that lets them run `r`, if any.
fn runner_role(config: &Config, r: &Runbook, user: &str) -> Option<String> {
    let u = config.user(user)?;
    u.roles
        .iter()
        .find(|role| r.roles.iter().any(|x| x == *role))
        .map(|role| role.to_string())
}

fn catalog(s: &ApiState) -> Arc<Runbooks> {
    s.runbooks.catalog.borrow().clone()
}

/// `GET /api/v1/runbooks`: the runbooks the caller may run.
pub async fn list(State(s): State<ApiState>, caller: Caller) -> Json<serde_json::Value> {
    let config = s.config.borrow().clone();
    let runbooks: Vec<RunbookView> = catalog(&s)
        .iter()
        .filter(|r| runner_role(&config, r, &caller.user).is_some())
        .map(view)
        .collect();
    Json(json!({ "runbooks": runbooks }))
}

fn lookup(s: &ApiState, config: &Config, name: &str, user: &str) -> Result<Runbook, ApiError> {
    let all = catalog(s);
    let Some(r) = all.get(name) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_runbook",
            format!("there is no runbook {name:?}"),
        )
        .hint("list the ones you may run: airlock runbooks"));
    };
    if runner_role(config, r, user).is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_allowed",
            format!(
                "user \"{user}\" may not run runbook {name}: it is for role {}",
                r.roles
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        )
        .hint("ask the policy's owners, or someone holding that role"));
    }
    Ok(r.clone())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
}

/// Parameters are shown to approvers and in the run's records: a value
/// with a control or invisible formatting character (see
/// `airlock_config::text`) could read differently from what runs, so it is
/// refused before anything else looks at it.
fn refuse_unsafe_params(r: &Runbook, given: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (name, value) in given {
        if let Err(bad) = airlock_config::text::check(value) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_params",
                format!(
                    "runbook {}: parameter {} contains {bad}; control and invisible formatting characters are refused because they can make what people see differ from what runs",
                    r.name,
                    airlock_config::text::escape(name)
                ),
            )
            .hint("remove it and run again"));
        }
    }
    Ok(())
}

/// Typed parameters and the plan, or a 400 naming every problem.
fn plan_for(r: &Runbook, given: &BTreeMap<String, String>) -> Result<Plan, ApiError> {
    let params = r.validate(given).map_err(|problems| {
        let texts: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_params",
            format!("runbook {}: {}", r.name, texts.join("; ")),
        )
        .hint(format!(
            "see its parameters with: airlock runbooks {}",
            r.name
        ))
    })?;
    r.plan(&params).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_params",
            format!("runbook {}: {e}", r.name),
        )
        .hint("change that parameter's value; --dry-run shows what a run would send")
    })
}

/// `POST /api/v1/runbooks/{name}/runs`: a dry run (the plan), a request
/// (the runbook needs approvals), or the run itself, streamed as JSON lines.
pub async fn start(
    State(s): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<RunBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()).hint(
            r#"send JSON like {"params": {"service": "checkout"}, "reason": "INC-42", "dry_run": false}"#,
        )
    })?;
    let config = s.config.borrow().clone();
    let runbook = lookup(&s, &config, &name, &caller.user)?;
    refuse_unsafe_params(&runbook, &body.params)?;
    let plan = plan_for(&runbook, &body.params)?;
    if body.dry_run {
        return Ok(Json(json!({
            "dry_run": true,
            "needs_approval": runbook.approvals > 0,
            "plan": plan,
        }))
        .into_response());
    }
    s.require_audit()?;
    let reason = crate::access::as_filed(body.reason.unwrap_or_default());
    if !reason.is_empty() {
        airlock_access::requests::check_text("reason", &reason)?;
    }
    if runbook.approvals > 0 {
        let (status, Json(view)) =
            file_request(&s, &config, &caller, &runbook, &plan, &reason).await?;
        return Ok((status, Json(view)).into_response());
    }
    run(s, caller.user, runbook, plan, reason, None, HashMap::new()).await
}

async fn file_request(
    s: &ApiState,
    config: &Config,
    caller: &Caller,
    runbook: &Runbook,
    plan: &Plan,
    reason: &str,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    let now = s.clock.now_ms();
    let role = runner_role(config, runbook, &caller.user).unwrap_or_default();
    let approver_roles: Vec<String> = runbook.approvers.iter().map(|a| a.to_string()).collect();
    let p = airlock_access::request_runbook(
        config,
        &caller.user,
        &role,
        runbook.approvals,
        &approver_roles,
        APPROVAL_WINDOW,
        reason,
        now,
    )?;
    let writes = plan
        .steps
        .iter()
        .any(|st| matches!(&st.action, PlannedAction::Sql(q) if q.access == Access::Write));
    let r = AccessRequest {
        id: airlock_store::new_id("req"),
        kind: RequestKind::Runbook,
        user: caller.user.clone(),
        resource: runbook.name.clone(),
        access: if writes { Access::Write } else { Access::Read },
        duration_ms: p.duration_ms,
        reason: reason.to_owned(),
        statement: None,
        role: p.role.clone(),
        approvals_required: p.approvals_required,
        approver_roles: p.approver_roles.clone(),
        created_ms: now,
        expires_ms: p.expires_ms,
        state: RequestState::Pending,
        decided_ms: None,
        decided_by: None,
        decision_comment: None,
        grant_id: None,
        executed_ms: None,
        runbook: Some(json!({
            "name": runbook.name,
            "digest": runbook.digest,
            "params": plan.params.to_strings(),
            "plan": plan,
        })),
        approvals: Vec::new(),
    };
    crate::access::store_new_request(s, caller, r, &p.approvers).await
}

/// `POST /api/v1/requests/{id}/run`: starts an approved runbook run, exactly
/// as it was filed: same runbook file (by digest), same parameters.
pub async fn run_request(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    s.require_audit()?;
    let r = s.load_request(&caller, &id).await?;
    let config = s.config.borrow().clone();
    let now = s.clock.now_ms();
    airlock_access::can_run_runbook(&config, &r, &caller.user, now)?;
    let filed = r.runbook.clone().unwrap_or_default();
    let runbook = lookup(&s, &config, &r.resource, &caller.user)?;
    if filed["digest"].as_str() != Some(runbook.digest.as_str()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "runbook_changed",
            format!(
                "runbook {} changed since request {id} was approved, so the approved run cannot be started",
                runbook.name
            ),
        )
        .hint("file the run again so that approvers review the runbook as it is now"));
    }
    let params: BTreeMap<String, String> =
        serde_json::from_value(filed["params"].clone()).unwrap_or_default();
    let plan = plan_for(&runbook, &params)?;
    // Claim the run before running: two concurrent calls cannot both start it.
    let store = s.store.clone();
    let key = id.clone();
    let claimed = blocking("claiming a runbook run", move || {
        store.mark_executed(&key, now)
    })
    .await?;
    if !claimed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_executed",
            format!("the run of request {id} already started"),
        )
        .hint("an approved run runs once; file a new request to run it again"));
    }
    // The approval stands in for access the requester may not hold: one
    // grant per (resource, access) of the run's SQL steps, for the run only.
    let deadline = now + runbook.timeout.as_millis() as i64 + 5_000;
    let mut grants = HashMap::new();
    for step in &plan.steps {
        if let PlannedAction::Sql(q) = &step.action {
            let key = (q.resource.to_string(), q.access);
            if grants.contains_key(&key) {
                continue;
            }
            let record = GrantRecord {
                id: airlock_store::new_id("grant"),
                user: caller.user.clone(),
                resource: key.0.clone(),
                access: q.access,
                kind: GrantKind::Runbook,
                role: r.role.clone(),
                request_id: Some(id.clone()),
                reason: format!("runbook {} (request {id}): {}", runbook.name, r.reason),
                created_ms: now,
                expires_ms: deadline,
                revoked_ms: None,
                revoked_by: None,
                revoke_reason: None,
            };
            let store = s.store.clone();
            let stored = record.clone();
            blocking("storing a runbook grant", move || {
                store.insert_grant(&stored)
            })
            .await?;
            grants.insert(key, record);
        }
    }
    run(
        s,
        caller.user,
        runbook,
        plan,
        r.reason.clone(),
        Some(id),
        grants,
    )
    .await
}

/// Records the start, spawns the run, and answers with its events as JSON
/// lines while it goes.
async fn run(
    s: ApiState,
    user: String,
    runbook: Runbook,
    plan: Plan,
    reason: String,
    request: Option<String>,
    grants: HashMap<(String, Access), GrantRecord>,
) -> Result<Response, ApiError> {
    let run_id = airlock_store::new_id("run");
    let steps: Vec<String> = plan.steps.iter().map(|st| st.summary()).collect();
    let started = airlock_audit::Event::Access {
        event: "runbook.started".into(),
        actor: user.clone(),
        text: format!(
            "{user} started runbook {} (run {run_id}{}){} with {}",
            runbook.name,
            request
                .as_deref()
                .map(|r| format!(", approved request {r}"))
                .unwrap_or_default(),
            if reason.is_empty() {
                String::new()
            } else {
                format!(" for \"{reason}\"")
            },
            describe_params(&plan),
        ),
        data: json!({
            "run": run_id, "runbook": runbook.name, "digest": runbook.digest,
            "params": plan.params, "reason": reason, "request": request, "steps": steps,
        }),
    };
    // Fail closed: a run whose start is not on record does not start; with
    // `fsync = "always"`, not before the record is on disk (its http and
    // command steps pass no gate that would wait; its SQL goes through the
    // proxy, whose relay waits for each statement's record).
    let recorded = match s.audit.append(&[started]) {
        Ok(seq) => s.audit.durable(seq).await,
        Err(e) => Err(e),
    };
    if let Err(e) = recorded {
        revoke_all(&s, &grants, "the run did not start").await;
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            format!(
                "runbook {} was not run: its audit record could not be written ({e})",
                runbook.name
            ),
        )
        .hint("tell the gateway's operator (see /healthz); retry once the audit log is healthy"));
    }
    tracing::info!(user = %user, runbook = %runbook.name, run = %run_id, "runbook run started");
    let executor = Arc::new(GatewaySql {
        s: s.clone(),
        user: user.clone(),
        runbook: runbook.name.clone(),
        grants: grants
            .iter()
            .map(|(k, g)| (k.clone(), grant_of(g)))
            .collect(),
    });
    let runner = s.runbooks.runner.clone().with_sql(executor);
    let (events_tx, mut events_rx) = mpsc::channel::<RunEvent>(256);
    // A slow caller must not slow the run, so nothing here waits for them:
    // output lines are dropped when the queue is short of room, which keeps
    // room for every step's start and end, the end of the run and the
    // outcome (at most 2 per step, and steps are few), so those always
    // arrive. The full output is in the outcome and the audit log.
    let lifecycle_room = 2 * airlock_runbook::MAX_STEPS + 8;
    let (lines_tx, lines_rx) = mpsc::channel::<Bytes>(lifecycle_room + 512);
    let head = json!({
        "event": "run_started", "run": run_id, "runbook": runbook.name,
        "digest": runbook.digest, "request": request, "steps": plan.steps.len(),
    });
    let _ = lines_tx.try_send(line(&head));
    // The run itself: on its own task, so it ends even if nobody listens.
    let max_output = s.config.borrow().runbooks.max_output.as_usize();
    let run_task = {
        let plan = plan.clone();
        tokio::spawn(async move { runner.run(&plan, &events_tx).await })
    };
    // Events: recorded as steps end, and passed on to the caller.
    let recorder = {
        let (s, user, name, run_id) = (
            s.clone(),
            user.clone(),
            runbook.name.clone(),
            run_id.clone(),
        );
        tokio::spawn(async move {
            while let Some(event) = events_rx.recv().await {
                if let RunEvent::StepFinished(o) = &event {
                    let mut output = o.output.clone();
                    let cut = output.len() > max_output;
                    if cut {
                        let mut at = max_output;
                        while !output.is_char_boundary(at) {
                            at -= 1;
                        }
                        output.truncate(at);
                    }
                    s.record(
                        &user,
                        "runbook.step",
                        &format!(
                            "runbook {name} (run {run_id}) step {} \"{}\": {}{}",
                            o.index + 1,
                            o.name,
                            o.status.as_str(),
                            o.error
                                .as_deref()
                                .map(|e| format!(": {e}"))
                                .unwrap_or_default()
                        ),
                        &json!({
                            "run": run_id, "runbook": name, "step": o.index, "name": o.name,
                            "kind": o.kind, "status": o.status, "duration_ms": o.duration_ms,
                            "exit_code": o.exit_code, "http_status": o.http_status,
                            "rows": o.rows, "output": output,
                            "output_truncated": o.output_truncated || cut, "error": o.error,
                        }),
                    );
                }
                // A caller gone or slow loses output lines, never the run.
                let is_output = matches!(event, RunEvent::Output { .. });
                if !is_output || lines_tx.capacity() > lifecycle_room {
                    let _ = lines_tx.try_send(line(&event));
                }
            }
            lines_tx
        })
    };
    {
        let (s, user, name, run_id) = (
            s.clone(),
            user.clone(),
            runbook.name.clone(),
            run_id.clone(),
        );
        tokio::spawn(async move {
            let outcome: Option<RunOutcome> = run_task.await.ok();
            let lines_tx = recorder.await.ok();
            revoke_all(&s, &grants, "the run ended").await;
            let (status, error, duration) = match &outcome {
                Some(o) => (o.status.as_str(), o.error.clone(), o.duration_ms),
                None => ("failed", Some("the run stopped unexpectedly".to_owned()), 0),
            };
            s.record(
                &user,
                "runbook.finished",
                &format!(
                    "runbook {name} (run {run_id}) {status} in {}{}",
                    airlock_config::format_duration(Duration::from_millis(duration)),
                    error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                ),
                &json!({ "run": run_id, "runbook": name, "status": status, "error": error, "duration_ms": duration }),
            );
            tracing::info!(user = %user, runbook = %name, run = %run_id, status = %status, "runbook run finished");
            if let (Some(tx), Some(o)) = (lines_tx, outcome) {
                let _ = tx.try_send(line(
                    &json!({ "event": "outcome", "run": run_id, "outcome": o }),
                ));
            }
        });
    }
    let stream = futures_util::stream::unfold(lines_rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

fn line(v: &impl Serialize) -> Bytes {
    let mut text = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    text.push(b'\n');
    Bytes::from(text)
}

fn describe_params(plan: &Plan) -> String {
    let all: Vec<String> = plan
        .params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if all.is_empty() {
        "no parameters".to_owned()
    } else {
        all.join(" ")
    }
}

fn grant_of(g: &GrantRecord) -> Grant {
    Grant {
        id: g.id.clone(),
        user: g.user.clone(),
        resource: g.resource.clone(),
        access: g.access,
        kind: g.kind,
        role: g.role.clone(),
        expires_ms: Some(g.expires_ms),
    }
}

async fn revoke_all(s: &ApiState, grants: &HashMap<(String, Access), GrantRecord>, why: &str) {
    for g in grants.values() {
        let store = s.store.clone();
        let (id, why, now) = (g.id.clone(), why.to_owned(), s.clock.now_ms());
        let done =
            tokio::task::spawn_blocking(move || store.revoke_grant(&id, "airlock", &why, now))
                .await;
        if !matches!(done, Ok(Ok(_))) {
            tracing::warn!(grant = %g.id, "a runbook grant could not be revoked; it expires by itself");
        }
    }
    if !grants.is_empty() {
        s.grant_changed();
    }
}

/// Runs a sql step through the gateway's own listener, as the caller.
struct GatewaySql {
    s: ApiState,
    user: String,
    runbook: String,
    /// Grants of an approved run, by (resource, access).
    grants: HashMap<(String, Access), Grant>,
}

impl SqlExecutor for GatewaySql {
    fn execute(&self, q: SqlRequest) -> BoxFuture<Result<SqlOutput, String>> {
        let s = self.s.clone();
        let user = self.user.clone();
        let runbook = self.runbook.clone();
        let approved = self
            .grants
            .get(&(q.resource.to_string(), q.access))
            .cloned();
        Box::pin(async move {
            let config = s.config.borrow().clone();
            let now = s.clock.now_ms();
            let resource = q.resource.to_string();
            let grant = match approved {
                Some(g) => g,
                None => {
                    let grants = live_grants(&s.store, &user, Some(&resource), now)
                        .await
                        .map_err(|e| e.message)?;
                    match airlock_access::decide(&config, &user, &resource, q.access, now, &grants)
                    {
                        airlock_access::Decision::Allow(g) => g,
                        airlock_access::Decision::Deny(d) => return Err(d.to_string()),
                    }
                }
            };
            let ttl = q.timeout + Duration::from_secs(5);
            let (credential, password) =
                crate::credentials::issue(&s, &user, &resource, q.access, &grant, ttl, None)
                    .await
                    .map_err(|e| e.message)?;
            let target = self_resource(&resource, &user, s.runbooks.postgres_local);
            let app = format!("airlock runbook {runbook}");
            let mut up = airlock_proxy::backend::connect_with_password(
                &target,
                q.access,
                &airlock_config::Secret::new(password),
                &[("application_name".to_owned(), app)],
                &s.upstream_tls,
                config.gateway.connect_timeout,
            )
            .await
            .map_err(|e| e.to_user_facing(&resource).message)?;
            let result =
                airlock_proxy::exec::run_query(&mut up, &q.sql, &q.args, q.max_rows, q.timeout)
                    .await;
            let mut bye = bytes::BytesMut::new();
            airlock_pgwire::messages::FrontendMessage::Terminate.encode(&mut bye);
            let _ = tokio::io::AsyncWriteExt::write_all(&mut up.stream, &bye).await;
            let store = s.store.clone();
            let _ = tokio::task::spawn_blocking(move || {
                store.revoke_credential(&credential.id, s.clock.now_ms())
            })
            .await;
            let r = result.map_err(|e| format!("{} (SQLSTATE {})", e.message, e.sqlstate))?;
            // Rows returned, or for INSERT/UPDATE/DELETE/MERGE the rows
            // affected, which the command tag ends with.
            let row_count = if r.columns.is_empty() {
                r.command_tag
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            } else {
                r.row_count
            };
            Ok(SqlOutput {
                columns: r.columns,
                rows: r.rows,
                row_count,
                command_tag: r.command_tag,
            })
        })
    }
}

/// The gateway's own listener as if it were an upstream: the caller's name,
/// the resource as the database, TLS without verification (it is this
/// process, on a loopback or local address).
fn self_resource(resource: &str, user: &str, addr: SocketAddr) -> airlock_config::Resource {
    let credential = airlock_config::UpstreamCredential {
        user: user.to_owned(),
        password_env: None,
    };
    airlock_config::Resource {
        name: airlock_config::ResourceName::new(resource).unwrap_or_else(|_| {
            airlock_config::ResourceName::new("runbook").expect("a valid name")
        }),
        kind: airlock_config::ResourceKind::Postgres,
        host: addr.ip().to_string(),
        port: addr.port(),
        database: resource.to_owned(),
        tls: airlock_config::UpstreamTls::Require,
        ca_file: None,
        read: Some(credential.clone()),
        write: Some(credential),
        guardrails: Vec::new(),
        masking: Vec::new(),
        read_credential_can_write: false,
    }
}
