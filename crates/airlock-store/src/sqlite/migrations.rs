//! Schema migrations for the SQLite store.
//!
//! Each migration is applied once, in its own `BEGIN IMMEDIATE` transaction
//! that also records it in `schema_migrations`. Taking the write lock before
//! reading the current version means two processes opening the same file at
//! once cannot both apply a migration. Migrations are append-only: never edit
//! one that has shipped, add a new version instead.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::StoreError;

/// Ordered `(version, SQL)` pairs. Versions start at 1 and increase by one.
pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (1, V1_INITIAL),
    (2, V2_ACCESS),
    (3, V3_SESSIONS_IN_AUDIT_LOG),
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
    for &(version, sql) in migrations {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Re-read under the write lock: another process may have migrated
        // between our check and now.
        if current_version(&tx)? >= version {
            continue;
        }
        tx.execute_batch(sql)?;
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
    // A newer binary may have migrated while we were applying ours.
    check_not_too_new(conn, supported)
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

    #[test]
    fn versions_start_at_one_and_increase_by_one() {
        for (i, (version, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i as i64 + 1);
        }
    }
}
