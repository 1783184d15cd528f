//! The audit log through the API: search and verify, for the console and
//! for scripts.
//!
//! Users with a role in `[audit] auditor_roles` search the whole log and
//! run verify. Everyone else searches only their own records (those about
//! them or done by them); asking for someone else's is refused, not
//! silently narrowed.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use crate::error::ApiError;
use crate::{ApiState, Caller};

/// The most records one search returns.
const MAX_LIMIT: usize = 10_000;

#[derive(Deserialize)]
pub(crate) struct SearchQuery {
    user: Option<String>,
    resource: Option<String>,
    session: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    /// Comma-separated record kinds.
    kind: Option<String>,
    grep: Option<String>,
    limit: Option<usize>,
}

pub(crate) fn is_auditor(s: &ApiState, user: &str) -> bool {
    let config = s.config.borrow();
    let auditors = &config.audit.auditor_roles;
    config
        .user(user)
        .is_some_and(|u| u.roles.iter().any(|r| auditors.contains(r)))
}

pub(crate) fn not_an_auditor(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "not_an_auditor",
        format!("{what} needs a role listed in [audit] auditor_roles"),
    )
    .hint("search your own records (leave out `user`, or give your own name); ask the platform team for an auditor role")
}

/// `GET /api/v1/audit`: records matching the query, the newest `limit`,
/// oldest first, as stored (with their chain fields).
pub(crate) async fn search(
    State(s): State<ApiState>,
    caller: Caller,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text())
            .hint("parameters: user, resource, session, since_ms, until_ms, kind (comma-separated), grep, limit")
    })?;
    let user = if is_auditor(&s, &caller.user) {
        q.user
    } else {
        match q.user {
            Some(u) if u != caller.user => {
                return Err(not_an_auditor(&format!("searching the records of {u:?}")))
            }
            _ => Some(caller.user.clone()),
        }
    };
    let kinds: Vec<String> = q
        .kind
        .iter()
        .flat_map(|k| k.split(','))
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect();
    if let Some(k) = kinds
        .iter()
        .find(|k| !airlock_audit::Event::KINDS.contains(&k.as_str()))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("unknown record kind {k:?}"),
        )
        .hint(format!("kinds: {}", airlock_audit::Event::KINDS.join(", "))));
    }
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("limit {limit} is out of range"),
        )
        .hint(format!(
            "give a limit from 1 to {MAX_LIMIT}; narrow with since_ms/until_ms for more"
        )));
    }
    let query = airlock_audit::index::RecordQuery {
        user,
        resource: q.resource,
        session: q.session,
        since_ms: q.since_ms,
        until_ms: q.until_ms,
        kinds,
        grep: q.grep.filter(|g| !g.is_empty()),
        limit,
    };
    let index = s.audit_index.clone();
    let records = tokio::task::spawn_blocking(move || {
        index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .records(&query)
    })
    .await
    .map_err(|e| ApiError::internal("searching the audit log", e))?
    .map_err(|e| ApiError::internal("searching the audit log", e))?;
    Ok(Json(serde_json::json!({ "records": records })))
}

/// `GET /api/v1/audit/verify`: the whole log checked against the gateway's
/// own key and its writer's count of what it wrote: counts, time span, the
/// last checkpoint, and the first problem.
pub(crate) async fn verify(
    State(s): State<ApiState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !is_auditor(&s, &caller.user) {
        return Err(not_an_auditor("verifying the audit log"));
    }
    let key = s.audit.public_key();
    let dir = s.audit.dir().to_path_buf();
    // Taken before the files are read: every record up to it is in them,
    // unless someone cut them while the gateway runs.
    let expect = airlock_audit::Expect {
        key: Some(key),
        written_seq: Some(s.audit.written_seq()),
        terms: Some(s.audit.terms()),
        ..Default::default()
    };
    // The log is being written: a line half-written at its end is not a
    // truncation, and its last records may not be sealed yet.
    let report = tokio::task::spawn_blocking(move || airlock_audit::verify_live_dir(&dir, &expect))
        .await
        .map_err(|e| ApiError::internal("verifying the audit log", e))?
        .map_err(|e| ApiError::internal("verifying the audit log", e))?;
    Ok(Json(report.to_json(&key)))
}
