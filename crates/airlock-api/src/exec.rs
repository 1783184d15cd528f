//! `POST /api/v1/requests/{id}/execute`: runs an approved reviewed statement
//! once, exactly as approved, with the write credential, in a transaction, and
//! records it as a one-statement session.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use airlock_proxy::exec::{run_statement, StatementError, StatementResult};

use crate::access::blocking;
use crate::{ApiError, ApiState, Caller};

/// The longest a reviewed statement may run.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ExecOutcome {
    pub request_id: String,
    pub session_id: String,
    pub statement: String,
    #[serde(flatten)]
    pub result: Option<StatementResult>,
    pub error: Option<StatementError>,
}

/// Refuses a statement of a class the gateway refuses at every access level
/// (unparsable, too long or deep, turning off standard_conforming_strings,
/// changing the client encoding), with the proxy's own message. Reviewed
/// statements may pass guardrails (that is what the review is for), never
/// these. Classified on a thread with a large stack, as the proxy does:
/// PostgreSQL's parser recurses.
pub(crate) async fn refuse_refused_class(sql: &str, resource: &str) -> Result<(), ApiError> {
    let text = sql.to_owned();
    let verdict = tokio::task::spawn_blocking(move || {
        std::thread::Builder::new()
            .name("airlock-exec-classify".into())
            .stack_size(64 * 1024 * 1024)
            .spawn(move || airlock_sql::classify(&text))
            .map(|t| t.join())
    })
    .await
    .map_err(|e| ApiError::internal("classifying a reviewed statement", e))?
    .map_err(|e| ApiError::internal("classifying a reviewed statement", e))?
    .map_err(|_| {
        ApiError::internal("classifying a reviewed statement", "the classifier stopped")
    })?;
    if verdict.class() != airlock_sql::Class::Refused {
        return Ok(());
    }
    let u = airlock_proxy::gate::refusal(&verdict, airlock_config::Access::Write, resource);
    Err(
        ApiError::new(StatusCode::BAD_REQUEST, "statement_refused", u.message)
            .hint(u.hint.unwrap_or_else(|| "change the statement".to_owned())),
    )
}

pub async fn execute(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ExecOutcome>, ApiError> {
    s.require_audit()?;
    let r = s.load_request(&caller, &id).await?;
    let config = s.config.borrow().clone();
    let now = s.clock.now_ms();
    airlock_access::can_run_statement(&config, &r, &caller.user, now)?;
    let statement = r.statement.clone().unwrap_or_default();
    // Filed before such statements were refused at filing: its approvers may
    // have read something other than what it says, so it never runs.
    if let Err(bad) = airlock_config::text::check(&statement) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "unsafe_character",
            format!(
                "the statement of request {id} contains {bad}, so what its approvers saw may not be what it says; it was not run"
            ),
        )
        .hint("file it again without that character (airlock exec); the new request is reviewed as it reads"));
    }
    // Filed before this check existed, or the rules changed since.
    refuse_refused_class(&statement, &r.resource).await?;
    let resource = config.resource(&r.resource).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "resource_removed",
            format!("resource \"{}\" is no longer configured", r.resource),
        )
    })?;
    // Claim the run before running: two concurrent calls cannot both run it.
    let store = s.store.clone();
    let key = id.clone();
    let claimed = blocking("claiming a statement run", move || {
        store.mark_executed(&key, now)
    })
    .await?;
    if !claimed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_executed",
            format!("the statement of request {id} already ran"),
        )
        .hint("a reviewed statement runs once; file a new request to run it again"));
    }
    let session_id = airlock_store::new_id("sess");
    let mut recorded = airlock_audit::Statement {
        session: session_id.clone(),
        n: 1,
        protocol: "exec".into(),
        text: None,
        text_base64: None,
        text_len: None,
        text_sha256: None,
        classified: Vec::new(),
        decision: "allowed".into(),
        rule: "reviewed".into(),
        sqlstate: None,
        param_types: Vec::new(),
    };
    recorded.set_text(statement.as_bytes());
    let start = [
        airlock_audit::Event::SessionStart(airlock_audit::SessionStart {
            session: session_id.clone(),
            user: caller.user.clone(),
            resource: r.resource.clone(),
            access: "write".into(),
            grant: format!("request:{id}"),
            break_glass: false,
            credential: format!("exec:{id}"),
            client_addr: "airlock exec".into(),
            tls: true,
            roles: Vec::new(),
            until_ms: None,
        }),
        airlock_audit::Event::Statement(recorded),
    ];
    // Recorded before it is forwarded, and with `fsync = "always"` on disk
    // before it is forwarded, as the proxy's relay waits for its records.
    let started = std::time::Instant::now();
    let recorded = match s.audit.append(&start) {
        Ok(seq) => s.audit.durable(seq).await,
        Err(e) => Err(e),
    };
    if let Err(e) = recorded {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            format!("the statement of request {id} was not run: its audit record could not be written ({e})"),
        )
        .hint("tell the gateway's operator (see /healthz); the request stays approved, retry once the audit log is healthy"));
    }
    tracing::info!(user = %caller.user, request = %id, resource = %r.resource, session = %session_id, "running a reviewed statement");
    let outcome = run_statement(
        &resource,
        &statement,
        &s.upstream_tls,
        config.gateway.connect_timeout,
        STATEMENT_TIMEOUT,
    )
    .await;
    // The requester sees the result through their own masking, like any
    // session; the recorded end reason and the webhook too.
    let roles = config
        .user(&caller.user)
        .map(|u| u.roles.clone())
        .unwrap_or_default();
    let outcome = match resource.masking_for(&roles) {
        None => outcome,
        Some(rules) => outcome
            .map(|mut r| {
                mask_result(&mut r, &rules);
                r
            })
            .map_err(|mut e| {
                e.message = redact(&e.message, &rules);
                e
            }),
    };
    let end_reason = match &outcome {
        Ok(r) => format!("reviewed statement committed: {}", r.command_tag),
        Err(e) => format!("reviewed statement failed ({}): {}", e.sqlstate, e.message),
    };
    // As the requester saw it (masked), the first rows as configured.
    let keep = config.audit.replay_rows;
    let done = airlock_audit::StatementDone {
        session: session_id.clone(),
        n: 1,
        duration_us: started.elapsed().as_micros() as u64,
        rows: outcome.as_ref().map_or(0, |r| r.row_count),
        tags: outcome.iter().map(|r| r.command_tag.clone()).collect(),
        sqlstate: outcome.as_ref().err().map(|e| e.sqlstate.clone()),
        error: outcome.as_ref().err().map(|e| e.message.clone()),
        columns: match &outcome {
            Ok(r) if keep > 0 => r.columns.clone(),
            _ => Vec::new(),
        },
        first_rows: match &outcome {
            Ok(r) => r.rows.iter().take(keep).cloned().collect(),
            Err(_) => Vec::new(),
        },
        suspended: false,
    };
    let end = airlock_audit::Event::SessionEnd {
        session: session_id.clone(),
        reason: end_reason.clone(),
        statements: 1,
        bytes_in: 0,
        bytes_out: 0,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    if let Err(e) = s
        .audit
        .append(&[airlock_audit::Event::StatementDone(done), end])
    {
        tracing::error!(session = %session_id, error = %e, "the reviewed statement's end could not be written to the audit log");
    }
    s.announce(
        &caller.user,
        "statement.executed",
        format!(
            "{} ran the reviewed statement of request {id} on {}: {end_reason}",
            caller.user, r.resource
        ),
        json!({ "request_id": id, "user": caller.user, "resource": r.resource,
                "session_id": session_id, "outcome": end_reason }),
    );
    let (result, error) = match outcome {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e)),
    };
    Ok(Json(ExecOutcome {
        request_id: id,
        session_id,
        statement,
        result,
        error,
    }))
}

/// Masks a reviewed statement's result for a requester: columns by name
/// (the result keeps no table origin) and every value through the
/// detectors, as the proxy does for sessions.
fn mask_result(r: &mut StatementResult, rules: &airlock_config::MaskRules) {
    let whole: Vec<bool> = r
        .columns
        .iter()
        .map(|c| rules.columns.iter().any(|p| p.matches(c)))
        .collect();
    for row in &mut r.rows {
        for (i, value) in row.iter_mut().enumerate() {
            if let Some(v) = value {
                if whole.get(i).copied().unwrap_or(true) {
                    *v = String::from_utf8_lossy(airlock_sql::mask::MASK).into_owned();
                } else {
                    *v = redact(v, rules);
                }
            }
        }
    }
}

fn redact(text: &str, rules: &airlock_config::MaskRules) -> String {
    match rules.detectors.redact(text.as_bytes()) {
        Some(r) => String::from_utf8_lossy(&r).into_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_sql::mask::{ColumnPattern, Detector, Detectors};

    #[test]
    fn results_of_reviewed_statements_are_masked() {
        let rules = airlock_config::MaskRules {
            columns: vec![ColumnPattern::new("*_ssn").unwrap()],
            detectors: Detectors::new(&[Detector::Email]),
            strict: true,
        };
        let mut r = StatementResult {
            columns: vec!["id".into(), "user_ssn".into(), "note".into()],
            rows: vec![vec![
                Some("1".into()),
                Some("123-45-6789".into()),
                Some("mail ann@example.org".into()),
            ]],
            row_count: 1,
            command_tag: "UPDATE 1".into(),
            committed: true,
            duration_ms: 1,
        };
        mask_result(&mut r, &rules);
        assert_eq!(
            r.rows[0],
            vec![
                Some("1".to_owned()),
                Some("[masked]".to_owned()),
                Some("mail [masked]".to_owned())
            ]
        );
        assert_eq!(redact("x ann@example.org", &rules), "x [masked]");
    }
}
