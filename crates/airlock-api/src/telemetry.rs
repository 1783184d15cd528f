//! Telemetry through the API: the merged timeline, traces, version
//! comparison and deploy markers, for the CLI and the console.
//!
//! The timeline merges the telemetry store's events with the audit log's
//! access events (sessions, statements, approvals, break-glass, runbook
//! runs). Access events follow the audit search's visibility rule: auditors
//! see everyone's, other users only their own.

use std::sync::Arc;

use airlock_store::telemetry::{
    Deploy, DeploySource, EventKind, Kinds, TelemetryStore, TimelineEvent, TimelineQuery,
};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use airlock_telemetry::convert::hex_trace_id;

use crate::error::ApiError;
use crate::{audit::is_auditor, ApiState, Caller};

/// Events one timeline call returns at most.
const MAX_LIMIT: usize = 10_000;
const DEFAULT_LIMIT: usize = 1000;
/// The default window: the last hour.
const DEFAULT_WINDOW_MS: i64 = 3_600_000;
/// New error messages `compare` lists at most.
const NEW_ERRORS: usize = 50;
/// The audit kinds the timeline shows as access events.
const ACCESS_KINDS: &[&str] = &[
    "session_start",
    "session_end",
    "login_refused",
    "statement",
    "access",
];
/// Longest service, version, id, commit or env of a deploy marker.
const MAX_DEPLOY_FIELD: usize = 256;

fn bad_query(message: impl Into<String>, hint: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_query", message).hint(hint.to_owned())
}

#[derive(Deserialize, Default)]
pub(crate) struct TimelineParams {
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    /// Precise bounds (the CLI's `--follow` cursor); win over the `_ms` ones.
    since_ns: Option<i64>,
    until_ns: Option<i64>,
    service: Option<String>,
    version: Option<String>,
    env: Option<String>,
    trace: Option<String>,
    grep: Option<String>,
    /// Comma-separated: logs, spans, metrics, deploys, access.
    kinds: Option<String>,
    /// `key=value`, comma-separated for several.
    attr: Option<String>,
    limit: Option<usize>,
    /// "oldest" (default) or "newest": which end of the window a limited
    /// answer keeps.
    order: Option<String>,
}

const TIMELINE_HINT: &str = "parameters: since_ms, until_ms (or since_ns, until_ns), service, version, env, trace (32 hex digits), grep, kinds (logs,spans,metrics,deploys,access), attr (key=value,...), limit (1 to 10000), order (oldest or newest)";

fn now_ns(s: &ApiState) -> i64 {
    s.clock.now_ms().saturating_mul(1_000_000)
}

/// `GET /api/v1/timeline`.
pub(crate) async fn timeline(
    State(s): State<ApiState>,
    caller: Caller,
    q: Result<Query<TimelineParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.require(&caller, crate::Duty::ReadTelemetry)?;
    let Query(p) = q.map_err(|e| bad_query(e.body_text(), TIMELINE_HINT))?;
    let until_ns = p
        .until_ns
        .or(p.until_ms.map(|ms| ms.saturating_mul(1_000_000)))
        .unwrap_or_else(|| now_ns(&s).saturating_add(1));
    let since_ns = p
        .since_ns
        .or(p.since_ms.map(|ms| ms.saturating_mul(1_000_000)))
        .unwrap_or(until_ns.saturating_sub(DEFAULT_WINDOW_MS * 1_000_000));
    if since_ns >= until_ns {
        return Err(bad_query(
            "the window is empty: since is not before until",
            TIMELINE_HINT,
        ));
    }
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(bad_query(
            format!("limit {limit} is out of range"),
            "give a limit from 1 to 10000; narrow the window for more",
        ));
    }
    let newest_first = match p.order.as_deref() {
        None | Some("oldest") => false,
        Some("newest") => true,
        Some(other) => {
            return Err(bad_query(
                format!("order {other:?} is not oldest or newest"),
                TIMELINE_HINT,
            ))
        }
    };
    let (kinds, access) = match &p.kinds {
        None => (Kinds::default(), true),
        Some(list) => {
            let mut k = Kinds {
                logs: false,
                spans: false,
                metrics: false,
                deploys: false,
            };
            let mut access = false;
            for kind in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                match kind {
                    "logs" | "log" => k.logs = true,
                    "spans" | "span" => k.spans = true,
                    "metrics" | "metric" => k.metrics = true,
                    "deploys" | "deploy" => k.deploys = true,
                    "access" => access = true,
                    other => {
                        return Err(bad_query(
                            format!("unknown kind {other:?}"),
                            "kinds: logs, spans, metrics, deploys, access",
                        ))
                    }
                }
            }
            (k, access)
        }
    };
    let trace_id = match &p.trace {
        None => None,
        Some(t) => Some(hex_trace_id(t.trim()).ok_or_else(|| {
            bad_query(
                format!("trace {t:?} is not a trace id"),
                "a trace id is 32 hexadecimal digits, not all zeros",
            )
        })?),
    };
    let mut attributes = Vec::new();
    for pair in p
        .attr
        .iter()
        .flat_map(|a| a.split(','))
        .filter(|a| !a.is_empty())
    {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            bad_query(
                format!("attr {pair:?} is not key=value"),
                "for example attr=http.route=/cart",
            )
        })?;
        attributes.push((k.trim().to_owned(), v.to_owned()));
    }
    let grep = p.grep.filter(|g| !g.is_empty());
    let query = TimelineQuery {
        since_ns,
        until_ns,
        service: p.service.filter(|v| !v.is_empty()),
        version: p.version.filter(|v| !v.is_empty()),
        env: p.env.filter(|v| !v.is_empty()),
        trace_id,
        grep: grep.clone(),
        attributes,
        kinds,
        limit,
        newest_first,
    };
    // Access events are about people and databases, not a trace or a
    // record attribute: a query narrowed to those leaves them out.
    let access = access && trace_id.is_none() && query.attributes.is_empty();
    let store = s.telemetry.clone();
    let mut events = tokio::task::spawn_blocking(move || store.timeline(&query))
        .await
        .map_err(|e| ApiError::internal("reading the timeline", e))?
        .map_err(|e| ApiError::internal("reading the timeline", e))?;
    if access {
        let user = (!is_auditor(&s, &caller.user)).then(|| caller.user.clone());
        let records = access_events(&s, user, since_ns, until_ns, grep, limit).await?;
        events.extend(records);
        // Stable: within one instant, telemetry before access events.
        if newest_first {
            events.sort_by_key(|e| std::cmp::Reverse(e.time_ns));
        } else {
            events.sort_by_key(|e| e.time_ns);
        }
        events.truncate(limit);
    }
    Ok(Json(serde_json::json!({
        "since_ns": since_ns,
        "until_ns": until_ns,
        "events": events,
        "truncated": events.len() >= limit,
    })))
}

/// The audit log's access events in the window, as timeline events.
async fn access_events(
    s: &ApiState,
    user: Option<String>,
    since_ns: i64,
    until_ns: i64,
    grep: Option<String>,
    limit: usize,
) -> Result<Vec<TimelineEvent>, ApiError> {
    // The index keeps milliseconds; widen to whole milliseconds, then cut.
    let query = airlock_audit::index::RecordQuery {
        user,
        since_ms: Some(since_ns.div_euclid(1_000_000)),
        until_ms: Some(until_ns.div_euclid(1_000_000) + 1),
        kinds: ACCESS_KINDS.iter().map(|k| (*k).to_owned()).collect(),
        grep,
        limit,
        ..Default::default()
    };
    let index = s.audit_index.clone();
    let entries = tokio::task::spawn_blocking(move || {
        index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .records(&query)
    })
    .await
    .map_err(|e| ApiError::internal("reading the audit log for the timeline", e))?
    .map_err(|e| ApiError::internal("reading the audit log for the timeline", e))?;
    Ok(entries
        .into_iter()
        .filter_map(|e| {
            let time_ns = e.ts.saturating_mul(1_000_000);
            if time_ns < since_ns || time_ns >= until_ns {
                return None;
            }
            let error = match &e.event {
                airlock_audit::Event::LoginRefused { .. } => true,
                airlock_audit::Event::Statement(st) => st.decision != "allowed",
                _ => false,
            };
            Some(TimelineEvent {
                time_ns,
                kind: EventKind::Access,
                service: None,
                version: None,
                env: None,
                trace_id: None,
                span_id: None,
                summary: format!("{}: {}", e.event.kind(), e.event.summary()),
                error,
                duration_ns: None,
                detail: serde_json::json!({
                    "session": e.event.session(),
                    "record": e,
                }),
            })
        })
        .collect())
}

/// `GET /api/v1/traces/{id}`.
pub(crate) async fn trace(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<airlock_telemetry::trace::TraceView>, ApiError> {
    s.require(&caller, crate::Duty::ReadTelemetry)?;
    let trace_id = hex_trace_id(id.trim()).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_trace_id",
            format!(
                "{:?} is not a trace id",
                id.chars().take(64).collect::<String>()
            ),
        )
        .hint("a trace id is 32 hexadecimal digits, not all zeros")
    })?;
    let store = s.telemetry.clone();
    let trace = tokio::task::spawn_blocking(move || store.trace(&trace_id))
        .await
        .map_err(|e| ApiError::internal("reading the trace", e))?
        .map_err(|e| ApiError::internal("reading the trace", e))?;
    if trace.spans.is_empty() && trace.logs.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_trace",
            format!("nothing is stored of trace {id}"),
        )
        .hint("check the id; telemetry older than [telemetry] retain is removed, and a trace whose spans are still being exported appears once they arrive"));
    }
    Ok(Json(airlock_telemetry::trace::TraceView::new(
        &trace_id, trace,
    )))
}

#[derive(Deserialize)]
pub(crate) struct CompareParams {
    service: Option<String>,
    from: Option<String>,
    to: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
}

/// `GET /api/v1/compare`.
pub(crate) async fn compare(
    State(s): State<ApiState>,
    caller: Caller,
    q: Result<Query<CompareParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<airlock_telemetry::compare::Comparison>, ApiError> {
    s.require(&caller, crate::Duty::ReadTelemetry)?;
    const HINT: &str = "parameters: service, from (the older version), to (the newer), since_ms, until_ms (default: the last 24 hours)";
    let Query(p) = q.map_err(|e| bad_query(e.body_text(), HINT))?;
    let need = |v: Option<String>, name: &str| {
        v.filter(|v| !v.is_empty())
            .ok_or_else(|| bad_query(format!("{name} is required"), HINT))
    };
    let service = need(p.service, "service")?;
    let from = need(p.from, "from")?;
    let to = need(p.to, "to")?;
    let until_ns = p.until_ms.map_or_else(
        || now_ns(&s).saturating_add(1),
        |ms| ms.saturating_mul(1_000_000),
    );
    let since_ns = p
        .since_ms
        .map_or(until_ns.saturating_sub(86_400_000_000_000), |ms| {
            ms.saturating_mul(1_000_000)
        });
    if since_ns >= until_ns {
        return Err(bad_query(
            "the window is empty: since is not before until",
            HINT,
        ));
    }
    let store = s.telemetry.clone();
    let comparison = tokio::task::spawn_blocking(move || {
        airlock_telemetry::compare::compare(
            store.as_ref(),
            &service,
            &from,
            &to,
            since_ns,
            until_ns,
            NEW_ERRORS,
        )
    })
    .await
    .map_err(|e| ApiError::internal("comparing versions", e))?
    .map_err(|e| ApiError::internal("comparing versions", e))?;
    Ok(Json(comparison))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeployBody {
    service: String,
    version: Option<String>,
    /// `deployment.id`.
    id: Option<String>,
    commit: Option<String>,
    env: Option<String>,
    /// When the deploy happened; now when left out.
    time_ms: Option<i64>,
}

/// `POST /api/v1/deploys`: an explicit deploy marker, for pipelines.
pub(crate) async fn mark_deploy(
    State(s): State<ApiState>,
    caller: Caller,
    body: Result<Json<DeployBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Deploy>), ApiError> {
    s.require(&caller, crate::Duty::MarkDeploys)?;
    const HINT: &str = "send {\"service\": \"checkout\", \"version\": \"v1.2.4\"} with optional id (deployment.id), commit, env and time_ms";
    let Json(b) = body.map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.body_text()).hint(HINT)
    })?;
    let field = |v: Option<String>, name: &str| -> Result<Option<String>, ApiError> {
        match v {
            Some(v) if v.is_empty() => Ok(None),
            // One line, without control or invisible formatting characters
            // (`airlock_config::text`): it is shown on every timeline.
            Some(v)
                if v.len() > MAX_DEPLOY_FIELD
                    || v.contains(['\n', '\t'])
                    || v.chars().any(airlock_config::text::is_unsafe) =>
            {
                Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    format!("{name} must be at most {MAX_DEPLOY_FIELD} bytes of printable text"),
                )
                .hint(HINT))
            }
            other => Ok(other),
        }
    };
    let service = field(Some(b.service), "service")?.ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_body", "service is required").hint(HINT)
    })?;
    let version = field(b.version, "version")?;
    let deployment_id = field(b.id, "id")?;
    if version.is_none() && deployment_id.is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "a deploy marker needs a version or an id (deployment.id)",
        )
        .hint(HINT));
    }
    s.require_audit()?;
    let deploy = Deploy {
        id: airlock_store::new_id("dep"),
        time_ns: b
            .time_ms
            .map_or_else(|| now_ns(&s), |ms| ms.saturating_mul(1_000_000)),
        service,
        version,
        deployment_id,
        commit: field(b.commit, "commit")?,
        env: field(b.env, "env")?,
        source: DeploySource::Explicit,
        actor: caller.user.clone(),
    };
    let store: Arc<dyn TelemetryStore> = s.telemetry.clone();
    let stored = deploy.clone();
    tokio::task::spawn_blocking(move || store.insert_deploy(&stored))
        .await
        .map_err(|e| ApiError::internal("storing the deploy marker", e))?
        .map_err(|e| ApiError::internal("storing the deploy marker", e))?;
    s.record(
        &caller.user,
        "deploy.marked",
        &format!(
            "{} marked a deploy of {} {}",
            caller.user,
            deploy.service,
            deploy
                .version
                .as_deref()
                .or(deploy.deployment_id.as_deref())
                .unwrap_or("")
        ),
        &serde_json::json!({ "deploy": &deploy }),
    );
    Ok((StatusCode::CREATED, Json(deploy)))
}

#[derive(Deserialize)]
pub(crate) struct DeploysParams {
    service: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    limit: Option<usize>,
}

/// `GET /api/v1/deploys`: markers of the window (default the last 7 days).
pub(crate) async fn list_deploys(
    State(s): State<ApiState>,
    caller: Caller,
    q: Result<Query<DeploysParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.require(&caller, crate::Duty::ReadTelemetry)?;
    const HINT: &str = "parameters: service, since_ms, until_ms, limit (1 to 10000)";
    let Query(p) = q.map_err(|e| bad_query(e.body_text(), HINT))?;
    let until_ns = p.until_ms.map_or_else(
        || now_ns(&s).saturating_add(1),
        |ms| ms.saturating_mul(1_000_000),
    );
    let since_ns = p
        .since_ms
        .map_or(until_ns.saturating_sub(7 * 86_400_000_000_000), |ms| {
            ms.saturating_mul(1_000_000)
        });
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(bad_query(format!("limit {limit} is out of range"), HINT));
    }
    let store = s.telemetry.clone();
    let service = p.service.filter(|v| !v.is_empty());
    let deploys = tokio::task::spawn_blocking(move || {
        store.deploys(service.as_deref(), since_ns, until_ns, limit)
    })
    .await
    .map_err(|e| ApiError::internal("reading deploy markers", e))?
    .map_err(|e| ApiError::internal("reading deploy markers", e))?;
    Ok(Json(serde_json::json!({ "deploys": deploys })))
}
