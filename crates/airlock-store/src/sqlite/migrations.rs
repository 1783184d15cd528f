//! Schema migrations for the SQLite store.
//!
//! Each migration is applied once, in its own `BEGIN IMMEDIATE` transaction
//! that also records it in `schema_migrations`. Taking the write lock before
//! reading the current version means two processes opening the same file at
//! once cannot both apply a migration. Migrations are append-only: never edit
//! one that has shipped, add a new version instead.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::error::StoreError;

/// Ordered `(version, SQL)` pairs. Versions start at 1 and increase by one.
pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (1, V1_INITIAL),
    (2, V2_ACCESS),
    (3, V3_SESSIONS_IN_AUDIT_LOG),
    (4, V4_RUNBOOK_REQUESTS),
    (5, V5_CREDENTIAL_TOKENS),
];

/// Tables are `STRICT` so a caller bug that binds the wrong type fails loudly
/// instead of being stored with SQLite's type affinity. Columns are named
/// `user_name` because `user` is reserved in PostgreSQL and the schemas of the
/// two backends should read alike.
const V1_INITIAL: &str = "
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL,
    hash        BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
    label       TEXT,
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER,
    revoked_ms  INTEGER
) STRICT;
CREATE INDEX api_tokens_user ON api_tokens (user_name, created_ms);

CREATE TABLE user_salts (
    user_name   TEXT PRIMARY KEY,
    salt        BLOB NOT NULL CHECK (length(salt) > 0)
) STRICT;

CREATE TABLE session_credentials (
    id          TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL,
    resource    TEXT NOT NULL,
    access      TEXT NOT NULL,
    grant_id    TEXT NOT NULL,
    verifier    TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER
) STRICT;
-- credentials_for: equality on (user, resource), range on expires_ms.
CREATE INDEX session_credentials_lookup ON session_credentials (user_name, resource, expires_ms);
-- purge_expired_credentials: range on expires_ms alone.
CREATE INDEX session_credentials_expires ON session_credentials (expires_ms);

-- credential_id is not a foreign key: credentials are purged after expiry,
-- while the record of the session that used one must stay.
CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    user_name       TEXT NOT NULL,
    resource        TEXT NOT NULL,
    access          TEXT NOT NULL,
    credential_id   TEXT NOT NULL,
    client_addr     TEXT NOT NULL,
    tls             INTEGER NOT NULL CHECK (tls IN (0, 1)),
    started_ms      INTEGER NOT NULL,
    ended_ms        INTEGER,
    statement_count INTEGER NOT NULL DEFAULT 0,
    end_reason      TEXT
) STRICT;
CREATE INDEX sessions_started ON sessions (started_ms);
-- close_orphan_sessions and active_only listings touch only open sessions.
CREATE INDEX sessions_open ON sessions (started_ms) WHERE ended_ms IS NULL;

CREATE TABLE statements (
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    text        TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
) STRICT;
";

/// Requests, approvals and time-boxed grants; sessions learn their grant and
/// whether it was break-glass.
const V2_ACCESS: &str = "
CREATE TABLE access_requests (
    id                  TEXT PRIMARY KEY,
    kind                TEXT NOT NULL CHECK (kind IN ('access', 'statement')),
    user_name           TEXT NOT NULL,
    resource            TEXT NOT NULL,
    access              TEXT NOT NULL,
    duration_ms         INTEGER NOT NULL,
    reason              TEXT NOT NULL,
    statement           TEXT,
    role                TEXT NOT NULL,
    approvals_required  INTEGER NOT NULL CHECK (approvals_required >= 1),
    approver_roles      TEXT NOT NULL, -- JSON array of role names
    created_ms          INTEGER NOT NULL,
    expires_ms          INTEGER NOT NULL,
    state               TEXT NOT NULL
        CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'executed')),
    decided_ms          INTEGER,
    decided_by          TEXT,
    decision_comment    TEXT,
    grant_id            TEXT,
    executed_ms         INTEGER
) STRICT;
CREATE INDEX access_requests_created ON access_requests (created_ms);
CREATE INDEX access_requests_pending ON access_requests (expires_ms) WHERE state = 'pending';

CREATE TABLE request_approvals (
    request_id  TEXT NOT NULL REFERENCES access_requests (id) ON DELETE CASCADE,
    approver    TEXT NOT NULL,
    comment     TEXT,
    at_ms       INTEGER NOT NULL,
    PRIMARY KEY (request_id, approver)
) STRICT;

CREATE TABLE grants (
    id              TEXT PRIMARY KEY,
    user_name       TEXT NOT NULL,
    resource        TEXT NOT NULL,
    access          TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('requested', 'break_glass')),
    role            TEXT NOT NULL,
    request_id      TEXT,
    reason          TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    expires_ms      INTEGER NOT NULL,
    revoked_ms      INTEGER,
    revoked_by      TEXT,
    revoke_reason   TEXT,
    -- set once the grant.expired event was sent, so it is sent once
    expiry_announced INTEGER NOT NULL DEFAULT 0 CHECK (expiry_announced IN (0, 1))
) STRICT;
CREATE INDEX grants_user ON grants (user_name, resource, expires_ms);
CREATE INDEX grants_unannounced ON grants (expires_ms) WHERE expiry_announced = 0;

ALTER TABLE sessions ADD COLUMN grant_id TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN break_glass INTEGER NOT NULL DEFAULT 0 CHECK (break_glass IN (0, 1));
";

/// The newest schema version this binary knows.
/// Sessions and statements moved to the audit log (and its index): the old
/// tables are dropped; what they held was written to the log as well.
const V3_SESSIONS_IN_AUDIT_LOG: &str = "
DROP TABLE IF EXISTS statements;
DROP TABLE IF EXISTS sessions;
";

/// Runbook runs that need approval are requests of kind `runbook`; the run as
/// approved (runbook, file digest, parameters) is the `runbook` JSON. Grants
/// of kind `runbook` back the SQL steps of an approved run for its duration.
/// SQLite cannot change a CHECK constraint in place, so both tables are
/// rebuilt (the documented 12-step procedure; [`run`] turns foreign keys off
/// around migrations and checks them before each commit).
const V4_RUNBOOK_REQUESTS: &str = "
CREATE TABLE access_requests_v4 (
    id                  TEXT PRIMARY KEY,
    kind                TEXT NOT NULL CHECK (kind IN ('access', 'statement', 'runbook')),
    user_name           TEXT NOT NULL,
    resource            TEXT NOT NULL,
    access              TEXT NOT NULL,
    duration_ms         INTEGER NOT NULL,
    reason              TEXT NOT NULL,
    statement           TEXT,
    role                TEXT NOT NULL,
    approvals_required  INTEGER NOT NULL CHECK (approvals_required >= 1),
    approver_roles      TEXT NOT NULL, -- JSON array of role names
    created_ms          INTEGER NOT NULL,
    expires_ms          INTEGER NOT NULL,
    state               TEXT NOT NULL
        CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'executed')),
    decided_ms          INTEGER,
    decided_by          TEXT,
    decision_comment    TEXT,
    grant_id            TEXT,
    executed_ms         INTEGER,
    runbook             TEXT -- JSON: the run as requested, for kind 'runbook'
) STRICT;
INSERT INTO access_requests_v4 (id, kind, user_name, resource, access, duration_ms, reason,
    statement, role, approvals_required, approver_roles, created_ms, expires_ms, state,
    decided_ms, decided_by, decision_comment, grant_id, executed_ms)
SELECT id, kind, user_name, resource, access, duration_ms, reason,
    statement, role, approvals_required, approver_roles, created_ms, expires_ms, state,
    decided_ms, decided_by, decision_comment, grant_id, executed_ms
FROM access_requests;
DROP TABLE access_requests;
ALTER TABLE access_requests_v4 RENAME TO access_requests;
CREATE INDEX access_requests_created ON access_requests (created_ms);
CREATE INDEX access_requests_pending ON access_requests (expires_ms) WHERE state = 'pending';

CREATE TABLE grants_v4 (
    id              TEXT PRIMARY KEY,
    user_name       TEXT NOT NULL,
    resource        TEXT NOT NULL,
    access          TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('requested', 'break_glass', 'runbook')),
    role            TEXT NOT NULL,
    request_id      TEXT,
    reason          TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    expires_ms      INTEGER NOT NULL,
    revoked_ms      INTEGER,
    revoked_by      TEXT,
    revoke_reason   TEXT,
    expiry_announced INTEGER NOT NULL DEFAULT 0 CHECK (expiry_announced IN (0, 1))
) STRICT;
INSERT INTO grants_v4 SELECT * FROM grants;
DROP TABLE grants;
ALTER TABLE grants_v4 RENAME TO grants;
CREATE INDEX grants_user ON grants (user_name, resource, expires_ms);
CREATE INDEX grants_unannounced ON grants (expires_ms) WHERE expiry_announced = 0;
";

/// A session credential remembers the API token that minted it, so revoking
/// the token revokes its credentials. Older credentials have none and live
/// out their (at most 8h) lifetime.
const V5_CREDENTIAL_TOKENS: &str = "
ALTER TABLE session_credentials ADD COLUMN token_id TEXT;
CREATE INDEX session_credentials_token ON session_credentials (token_id) WHERE token_id IS NOT NULL;
";

pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Brings the database up to [`SCHEMA_VERSION`], or refuses a database that a
/// newer binary has already migrated past it.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    run(conn, MIGRATIONS)
}

/// Applies `migrations` (versions 1, 2, ... in order) that the database lacks,
/// each in its own IMMEDIATE transaction, and refuses a database migrated past
/// the last of them. Shared by the control-plane store and the telemetry store,
/// each with its own file and list.
pub(super) fn run(conn: &mut Connection, migrations: &[(i64, &str)]) -> Result<(), StoreError> {
    let supported = migrations.last().map_or(0, |m| m.0);
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            applied_at INTEGER NOT NULL
        ) STRICT;",
    )?;
    check_not_too_new(conn, supported)?;
    // A migration that rebuilds a table drops the old one, and with foreign
    // keys on, DROP TABLE deletes its rows first, cascading into the tables
    // that reference it. SQLite's procedure: keys off outside the
    // transaction (the pragma is a no-op inside one), check them before
    // commit, and on again after.
    let keys_on: bool = conn.pragma_query_value(None, "foreign_keys", |row| row.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let applied = apply(conn, migrations);
    if keys_on {
        conn.pragma_update(None, "foreign_keys", true)?;
    }
    applied?;
    // A newer binary may have migrated while we were applying ours.
    check_not_too_new(conn, supported)
}

fn apply(conn: &mut Connection, migrations: &[(i64, &str)]) -> Result<(), StoreError> {
    for &(version, sql) in migrations {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Re-read under the write lock: another process may have migrated
        // between our check and now.
        if current_version(&tx)? >= version {
            continue;
        }
        tx.execute_batch(sql)?;
        let broken: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |row| row.get(0))
            .optional()?;
        if let Some(table) = broken {
            return Err(StoreError::Corrupt {
                what: "table",
                id: table,
                reason: format!("migration {version} left rows whose foreign keys do not match"),
            });
        }
        // applied_at is bookkeeping for operators, not a domain time, so it is
        // the one place the store reads a clock (SQLite's) instead of taking
        // `now_ms` from the caller.
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at)
             VALUES (?1, CAST(strftime('%s', 'now') AS INTEGER) * 1000)",
            [version],
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// The highest applied version, 0 for a fresh database.
pub(super) fn current_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |row| row.get(0),
    )?)
}

fn check_not_too_new(conn: &Connection, supported: i64) -> Result<(), StoreError> {
    let found = current_version(conn)?;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rebuilding access_requests drops the old table; with foreign keys on
    /// that would have deleted every approval through ON DELETE CASCADE.
    #[test]
    fn v4_keeps_requests_approvals_and_grants() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        run(&mut conn, &MIGRATIONS[..3]).unwrap();
        conn.execute_batch(
            "INSERT INTO access_requests (id, kind, user_name, resource, access, duration_ms,
                reason, role, approvals_required, approver_roles, created_ms, expires_ms, state)
             VALUES ('req_1', 'access', 'oncall1', 'orders', 'write', 60000, 'INC-1', 'oncall',
                1, '[\"sre-lead\"]', 1, 2, 'approved');
             INSERT INTO request_approvals (request_id, approver, comment, at_ms)
             VALUES ('req_1', 'lead1', 'ok', 1);
             INSERT INTO grants (id, user_name, resource, access, kind, role, request_id, reason,
                created_ms, expires_ms)
             VALUES ('gr_1', 'oncall1', 'orders', 'write', 'requested', 'oncall', 'req_1',
                'INC-1', 1, 60001);",
        )
        .unwrap();
        run(&mut conn, MIGRATIONS).unwrap();
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(count("SELECT count(*) FROM access_requests"), 1);
        assert_eq!(count("SELECT count(*) FROM request_approvals"), 1);
        assert_eq!(
            count("SELECT count(*) FROM grants WHERE request_id = 'req_1'"),
            1
        );
        // Foreign keys are on again and still enforced against the new table.
        let on: bool = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert!(on);
        assert!(conn
            .execute(
                "INSERT INTO request_approvals (request_id, approver, at_ms) VALUES ('nope', 'x', 1)",
                [],
            )
            .is_err());
        conn.execute("DELETE FROM access_requests WHERE id = 'req_1'", [])
            .unwrap();
        assert_eq!(count("SELECT count(*) FROM request_approvals"), 0);
        // The new kinds are accepted.
        conn.execute_batch(
            "INSERT INTO access_requests (id, kind, user_name, resource, access, duration_ms,
                reason, role, approvals_required, approver_roles, created_ms, expires_ms, state,
                runbook)
             VALUES ('req_2', 'runbook', 'oncall1', 'kill-long-queries', 'write', 60000, 'x',
                'oncall', 1, '[]', 1, 2, 'pending', '{}');
             INSERT INTO grants (id, user_name, resource, access, kind, role, request_id, reason,
                created_ms, expires_ms)
             VALUES ('gr_2', 'oncall1', 'orders', 'write', 'runbook', 'oncall', 'req_2', 'x', 1, 2);",
        )
        .unwrap();
    }

    #[test]
    fn versions_start_at_one_and_increase_by_one() {
        for (i, (version, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i as i64 + 1);
        }
    }
}
