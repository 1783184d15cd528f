//! Requests, approvals and grants in SQLite. Called from the `Store` impl in
//! `mod.rs` with the connection already locked.

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use airlock_access::{AccessRequest, Approval, GrantRecord, RequestState};

use super::{conflict, sql_limit};
use crate::error::StoreError;
use crate::records::{ApproveOutcome, GrantFilter, RequestFilter, DEFAULT_LIMIT};

const REQUEST_COLUMNS: &str = "id, kind, user_name, resource, access, duration_ms, reason, \
    statement, role, approvals_required, approver_roles, created_ms, expires_ms, state, \
    decided_ms, decided_by, decision_comment, grant_id, executed_ms, runbook";

const GRANT_COLUMNS: &str = "id, user_name, resource, access, kind, role, request_id, reason, \
    created_ms, expires_ms, revoked_ms, revoked_by, revoke_reason";

fn corrupt(what: &'static str, id: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        what,
        id: id.to_owned(),
        reason: reason.into(),
    }
}

/// Row → request, without approvals. Enum columns are parsed after the row is read so that a
/// damaged value is reported as corruption with the record's id.
fn request_row(row: &Row<'_>) -> rusqlite::Result<(AccessRequest, [String; 5])> {
    let id: String = row.get(0)?;
    let raw = [
        row.get::<_, String>(1)?,
        row.get::<_, String>(4)?,
        row.get::<_, String>(10)?,
        row.get::<_, String>(13)?,
        row.get::<_, Option<String>>(19)?.unwrap_or_default(),
    ];
    Ok((
        AccessRequest {
            id,
            kind: airlock_access::RequestKind::Access,
            user: row.get(2)?,
            resource: row.get(3)?,
            access: airlock_config::Access::Read,
            duration_ms: row.get(5)?,
            reason: row.get(6)?,
            statement: row.get(7)?,
            role: row.get(8)?,
            approvals_required: row.get(9)?,
            approver_roles: Vec::new(),
            created_ms: row.get(11)?,
            expires_ms: row.get(12)?,
            state: RequestState::Pending,
            decided_ms: row.get(14)?,
            decided_by: row.get(15)?,
            decision_comment: row.get(16)?,
            grant_id: row.get(17)?,
            executed_ms: row.get(18)?,
            runbook: None,
            approvals: Vec::new(),
        },
        raw,
    ))
}

fn finish_request(
    (mut r, [kind, access, roles, state, runbook]): (AccessRequest, [String; 5]),
) -> Result<AccessRequest, StoreError> {
    if !runbook.is_empty() {
        r.runbook = Some(
            serde_json::from_str(&runbook)
                .map_err(|e| corrupt("request", &r.id, format!("runbook: {e}")))?,
        );
    }
    r.kind = kind
        .parse()
        .map_err(|e: String| corrupt("request", &r.id, e))?;
    r.access = access
        .parse()
        .map_err(|e: String| corrupt("request", &r.id, e))?;
    r.approver_roles = serde_json::from_str(&roles)
        .map_err(|e| corrupt("request", &r.id, format!("approver_roles: {e}")))?;
    r.state = state
        .parse()
        .map_err(|e: String| corrupt("request", &r.id, e))?;
    Ok(r)
}

fn load_approvals(conn: &Connection, r: &mut AccessRequest) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT approver, comment, at_ms FROM request_approvals WHERE request_id = ?1 ORDER BY at_ms, approver",
    )?;
    r.approvals = stmt
        .query_map([&r.id], |row| {
            Ok(Approval {
                approver: row.get(0)?,
                comment: row.get(1)?,
                at_ms: row.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(())
}

fn grant_row(row: &Row<'_>) -> rusqlite::Result<(GrantRecord, [String; 2])> {
    let raw = [row.get::<_, String>(3)?, row.get::<_, String>(4)?];
    Ok((
        GrantRecord {
            id: row.get(0)?,
            user: row.get(1)?,
            resource: row.get(2)?,
            access: airlock_config::Access::Read,
            kind: airlock_access::GrantKind::Requested,
            role: row.get(5)?,
            request_id: row.get(6)?,
            reason: row.get(7)?,
            created_ms: row.get(8)?,
            expires_ms: row.get(9)?,
            revoked_ms: row.get(10)?,
            revoked_by: row.get(11)?,
            revoke_reason: row.get(12)?,
        },
        raw,
    ))
}

fn finish_grant(
    (mut g, [access, kind]): (GrantRecord, [String; 2]),
) -> Result<GrantRecord, StoreError> {
    g.access = access
        .parse()
        .map_err(|e: String| corrupt("grant", &g.id, e))?;
    g.kind = kind
        .parse()
        .map_err(|e: String| corrupt("grant", &g.id, e))?;
    Ok(g)
}

pub(super) fn insert_request(conn: &Connection, r: &AccessRequest) -> Result<(), StoreError> {
    let roles = serde_json::to_string(&r.approver_roles).expect("a list of strings serializes");
    conn.execute(
        &format!(
            "INSERT INTO access_requests ({REQUEST_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
        ),
        params![
            r.id,
            r.kind.as_str(),
            r.user,
            r.resource,
            r.access.as_str(),
            r.duration_ms,
            r.reason,
            r.statement,
            r.role,
            r.approvals_required,
            roles,
            r.created_ms,
            r.expires_ms,
            r.state.as_str(),
            r.decided_ms,
            r.decided_by,
            r.decision_comment,
            r.grant_id,
            r.executed_ms,
            r.runbook.as_ref().map(|v| v.to_string())
        ],
    )
    .map_err(|e| conflict(e, "request", &r.id))?;
    Ok(())
}

pub(super) fn request(conn: &Connection, id: &str) -> Result<Option<AccessRequest>, StoreError> {
    let row = conn
        .query_row(
            &format!("SELECT {REQUEST_COLUMNS} FROM access_requests WHERE id = ?1"),
            [id],
            request_row,
        )
        .optional()?;
    let Some(row) = row else { return Ok(None) };
    let mut r = finish_request(row)?;
    load_approvals(conn, &mut r)?;
    Ok(Some(r))
}

pub(super) fn requests(
    conn: &Connection,
    filter: &RequestFilter,
) -> Result<Vec<AccessRequest>, StoreError> {
    let limit = if filter.limit == 0 {
        DEFAULT_LIMIT
    } else {
        filter.limit
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {REQUEST_COLUMNS} FROM access_requests
         WHERE (?1 IS NULL OR user_name = ?1)
           AND (?2 IS NULL OR (state = 'pending' AND expires_ms > ?2))
         ORDER BY created_ms DESC, id DESC LIMIT ?3"
    ))?;
    let rows = stmt
        .query_map(
            params![filter.user, filter.pending_at, sql_limit(limit)],
            request_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut r = finish_request(row)?;
        load_approvals(conn, &mut r)?;
        out.push(r);
    }
    Ok(out)
}

fn state_of(conn: &Connection, id: &str, now_ms: i64) -> Result<Option<RequestState>, StoreError> {
    let row: Option<(String, i64)> = conn
        .query_row(
            "SELECT state, expires_ms FROM access_requests WHERE id = ?1",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let Some((state, expires)) = row else {
        return Ok(None);
    };
    let state: RequestState = state
        .parse()
        .map_err(|e: String| corrupt("request", id, e))?;
    Ok(Some(
        if state == RequestState::Pending && now_ms >= expires {
            RequestState::Expired
        } else {
            state
        },
    ))
}

pub(super) fn approve_request(
    conn: &mut Connection,
    id: &str,
    approval: &Approval,
    required: u32,
    grant: Option<&GrantRecord>,
) -> Result<ApproveOutcome, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(state) = state_of(&tx, id, approval.at_ms)? else {
        return Err(StoreError::NotFound {
            what: "request",
            id: id.to_owned(),
        });
    };
    if state != RequestState::Pending {
        return Ok(ApproveOutcome::NotPending(state));
    }
    let inserted = tx.execute(
        "INSERT INTO request_approvals (request_id, approver, comment, at_ms)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        params![id, approval.approver, approval.comment, approval.at_ms],
    )?;
    if inserted == 0 {
        return Ok(ApproveOutcome::AlreadyApproved);
    }
    let count: u32 = tx.query_row(
        "SELECT COUNT(*) FROM request_approvals WHERE request_id = ?1",
        [id],
        |row| row.get(0),
    )?;
    if count < required {
        tx.commit()?;
        return Ok(ApproveOutcome::Recorded { count, required });
    }
    if let Some(g) = grant {
        insert_grant(&tx, g)?;
    }
    tx.execute(
        "UPDATE access_requests
         SET state = 'approved', decided_ms = ?2, decided_by = ?3, grant_id = ?4
         WHERE id = ?1",
        params![id, approval.at_ms, approval.approver, grant.map(|g| &g.id)],
    )?;
    tx.commit()?;
    Ok(ApproveOutcome::Approved {
        grant: grant.cloned().map(Box::new),
    })
}

pub(super) fn deny_request(
    conn: &mut Connection,
    id: &str,
    by: &str,
    reason: &str,
    now_ms: i64,
) -> Result<Result<(), RequestState>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(state) = state_of(&tx, id, now_ms)? else {
        return Err(StoreError::NotFound {
            what: "request",
            id: id.to_owned(),
        });
    };
    if state != RequestState::Pending {
        return Ok(Err(state));
    }
    tx.execute(
        "UPDATE access_requests
         SET state = 'denied', decided_ms = ?2, decided_by = ?3, decision_comment = ?4
         WHERE id = ?1",
        params![id, now_ms, by, reason],
    )?;
    tx.commit()?;
    Ok(Ok(()))
}

pub(super) fn expire_requests(
    conn: &mut Connection,
    now_ms: i64,
) -> Result<Vec<AccessRequest>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let ids: Vec<String> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id FROM access_requests WHERE state = 'pending' AND expires_ms <= ?1",
        )?;
        let ids = stmt
            .query_map([now_ms], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        ids
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in &ids {
        tx.execute(
            "UPDATE access_requests SET state = 'expired', decided_ms = expires_ms WHERE id = ?1",
            [id],
        )?;
        if let Some(r) = request(&tx, id)? {
            out.push(r);
        }
    }
    tx.commit()?;
    Ok(out)
}

pub(super) fn mark_executed(conn: &Connection, id: &str, now_ms: i64) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE access_requests SET state = 'executed', executed_ms = ?2
         WHERE id = ?1 AND state = 'approved'",
        params![id, now_ms],
    )?;
    Ok(n == 1)
}

pub(super) fn insert_grant(conn: &Connection, g: &GrantRecord) -> Result<(), StoreError> {
    if g.kind == airlock_access::GrantKind::Standing {
        return Err(StoreError::Invalid {
            what: "grant",
            reason: "standing grants come from the policy and are not stored".into(),
        });
    }
    conn.execute(
        &format!(
            "INSERT INTO grants ({GRANT_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        params![
            g.id,
            g.user,
            g.resource,
            g.access.as_str(),
            g.kind.as_str(),
            g.role,
            g.request_id,
            g.reason,
            g.created_ms,
            g.expires_ms,
            g.revoked_ms,
            g.revoked_by,
            g.revoke_reason
        ],
    )
    .map_err(|e| conflict(e, "grant", &g.id))?;
    Ok(())
}

pub(super) fn grant(conn: &Connection, id: &str) -> Result<Option<GrantRecord>, StoreError> {
    conn.query_row(
        &format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?1"),
        [id],
        grant_row,
    )
    .optional()?
    .map(finish_grant)
    .transpose()
}

pub(super) fn grants(
    conn: &Connection,
    filter: &GrantFilter,
) -> Result<Vec<GrantRecord>, StoreError> {
    let limit = if filter.limit == 0 {
        DEFAULT_LIMIT
    } else {
        filter.limit
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {GRANT_COLUMNS} FROM grants
         WHERE (?1 IS NULL OR user_name = ?1)
           AND (?2 IS NULL OR resource = ?2)
           AND (?3 IS NULL OR (revoked_ms IS NULL AND expires_ms > ?3))
         ORDER BY created_ms DESC, id DESC LIMIT ?4"
    ))?;
    let rows = stmt
        .query_map(
            params![
                filter.user,
                filter.resource,
                filter.live_at,
                sql_limit(limit)
            ],
            grant_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(finish_grant).collect()
}

pub(super) fn revoke_grant(
    conn: &mut Connection,
    id: &str,
    by: &str,
    reason: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = tx.execute(
        "UPDATE grants SET revoked_ms = ?2, revoked_by = ?3, revoke_reason = ?4
         WHERE id = ?1 AND revoked_ms IS NULL",
        params![id, now_ms, by, reason],
    )?;
    if n == 1 {
        tx.execute(
            "UPDATE session_credentials SET revoked_ms = ?2 WHERE grant_id = ?1 AND revoked_ms IS NULL",
            params![id, now_ms],
        )?;
    }
    tx.commit()?;
    Ok(n == 1)
}

pub(super) fn take_expired_grants(
    conn: &mut Connection,
    now_ms: i64,
) -> Result<Vec<GrantRecord>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let rows = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants
             WHERE expiry_announced = 0 AND revoked_ms IS NULL AND expires_ms <= ?1"
        ))?;
        let rows = stmt
            .query_map([now_ms], grant_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows
    };
    let out: Vec<GrantRecord> = rows
        .into_iter()
        .map(finish_grant)
        .collect::<Result<_, _>>()?;
    for g in &out {
        tx.execute(
            "UPDATE grants SET expiry_announced = 1 WHERE id = ?1",
            [&g.id],
        )?;
    }
    tx.commit()?;
    Ok(out)
}
