//! The embedded SQLite implementation of [`Store`].
//!
//! One [`Connection`] behind a [`Mutex`] serves every call, so reads and writes
//! are serialized inside the process. That is deliberate for now: the control
//! plane sees a few writes per session plus statement batches, SQLite allows a
//! single writer anyway, and one connection keeps transactions simple. If
//! reads ever contend with the writer, add a small pool of read-only
//! connections; the file is already in WAL mode, so readers would not block
//! the writer.

mod access;
mod migrations;
mod telemetry;

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{ffi, params, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::error::StoreError;
use crate::records::{ApiToken, SessionCredential};
use crate::store::Store;

pub use migrations::SCHEMA_VERSION;
pub use telemetry::{SqliteTelemetry, TELEMETRY_SCHEMA_VERSION};

/// How long a call waits for another process's lock before failing with
/// "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Control-plane store in one SQLite file. See the module docs for the
/// concurrency model.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    ///
    /// A missing parent directory is created with mode 0700 and the file with
    /// mode 0600, because it holds token hashes and SCRAM verifiers; an
    /// existing file readable by others is tightened to 0600. SQLite gives
    /// the `-wal` and `-shm` files the database file's mode.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dir(parent)?;
        }
        create_private_file(path)?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // journal_mode answers with the mode in effect, which stays "delete"
        // when the file system cannot do WAL; check rather than assume.
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::JournalMode {
                path: path.to_path_buf(),
                mode,
            });
        }
        // NORMAL is durable across process crashes in WAL mode and loses at
        // most the last transactions on power loss; the audit log, not this
        // store, carries the fsync guarantees.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Self::finish_open(conn)
    }

    /// A private in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory()?;
        Self::finish_open(conn)
    }

    fn finish_open(mut conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "foreign_keys", true)?;
        migrations::migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        migrations::current_version(&self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held either happened outside a SQLite
        // call or inside a transaction that rolled back when it was dropped,
        // so the connection is still consistent and later calls may use it.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| io_error("create directory", dir, source))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| io_error("create directory", dir, source))
}

/// Creates the database file ourselves before SQLite does, so it never
/// exists with the umask's default (often world-readable) mode.
#[cfg(unix)]
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|source| io_error("create", path, source))?;
    let meta = file
        .metadata()
        .map_err(|source| io_error("stat", path, source))?;
    if meta.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|source| io_error("restrict permissions of", path, source))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn create_private_file(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Turns a primary-key or unique violation into [`StoreError::AlreadyExists`]
/// so callers do not see SQLite's error codes.
fn conflict(err: rusqlite::Error, what: &'static str, id: &str) -> StoreError {
    match &err {
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                || e.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            StoreError::AlreadyExists {
                what,
                id: id.to_owned(),
            }
        }
        _ => StoreError::Sqlite(err),
    }
}

/// SQLite's LIMIT takes an i64; a larger usize means "no limit" anyway.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

const TOKEN_COLUMNS: &str = "id, user_name, hash, label, created_ms, expires_ms, revoked_ms";

/// A token row before the hash is checked to be 32 bytes.
struct RawToken {
    token: ApiToken,
    hash: Vec<u8>,
}

fn raw_token(row: &Row<'_>) -> rusqlite::Result<RawToken> {
    Ok(RawToken {
        token: ApiToken {
            id: row.get(0)?,
            user: row.get(1)?,
            hash: [0; 32],
            label: row.get(3)?,
            created_ms: row.get(4)?,
            expires_ms: row.get(5)?,
            revoked_ms: row.get(6)?,
        },
        hash: row.get(2)?,
    })
}

fn token_from_raw(raw: RawToken) -> Result<ApiToken, StoreError> {
    let RawToken { mut token, hash } = raw;
    token.hash = hash.try_into().map_err(|h: Vec<u8>| StoreError::Corrupt {
        what: "api token",
        id: token.id.clone(),
        reason: format!("hash is {} bytes, expected 32", h.len()),
    })?;
    Ok(token)
}

const CREDENTIAL_COLUMNS: &str = "id, user_name, resource, access, grant_id, verifier, \
     created_ms, expires_ms, revoked_ms, token_id";

fn credential(row: &Row<'_>) -> rusqlite::Result<SessionCredential> {
    Ok(SessionCredential {
        id: row.get(0)?,
        user: row.get(1)?,
        resource: row.get(2)?,
        access: row.get(3)?,
        grant_id: row.get(4)?,
        verifier: row.get(5)?,
        created_ms: row.get(6)?,
        expires_ms: row.get(7)?,
        revoked_ms: row.get(8)?,
        token_id: row.get(9)?,
    })
}

impl Store for SqliteStore {
    fn insert_token(&self, t: &ApiToken) -> Result<(), StoreError> {
        self.lock()
            .execute(
                &format!(
                    "INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ),
                params![
                    t.id,
                    t.user,
                    &t.hash[..],
                    t.label,
                    t.created_ms,
                    t.expires_ms,
                    t.revoked_ms
                ],
            )
            .map_err(|e| conflict(e, "api token", &t.id))?;
        Ok(())
    }

    fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiToken>, StoreError> {
        let conn = self.lock();
        let raw = conn
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE hash = ?1"
            ))?
            .query_row([&hash[..]], raw_token)
            .optional()?;
        raw.map(token_from_raw).transpose()
    }

    fn revoke_token(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE api_tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
            params![id, now_ms],
        )?;
        if changed > 0 {
            tx.execute(
                "UPDATE session_credentials SET revoked_ms = ?2
                 WHERE token_id = ?1 AND revoked_ms IS NULL",
                params![id, now_ms],
            )?;
        }
        tx.commit()?;
        Ok(changed > 0)
    }

    fn credentials_of_token(&self, token_id: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached("SELECT id FROM session_credentials WHERE token_id = ?1")?;
        let ids = stmt
            .query_map([token_id], |row| row.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    fn list_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens
             WHERE ?1 IS NULL OR user_name = ?1
             ORDER BY created_ms DESC, rowid DESC"
        ))?;
        let raws = stmt
            .query_map([user], raw_token)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(token_from_raw).collect()
    }

    fn user_salt(&self, user: &str, new_salt: &[u8]) -> Result<Vec<u8>, StoreError> {
        if new_salt.is_empty() {
            return Err(StoreError::Invalid {
                what: "salt",
                reason: "empty".into(),
            });
        }
        let mut conn = self.lock();
        // INSERT-or-ignore then SELECT is race-free even across processes:
        // whoever inserts first wins and everyone reads the winner's salt.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO user_salts (user_name, salt) VALUES (?1, ?2)
             ON CONFLICT (user_name) DO NOTHING",
            params![user, new_salt],
        )?;
        let salt: Vec<u8> = tx.query_row(
            "SELECT salt FROM user_salts WHERE user_name = ?1",
            [user],
            |row| row.get(0),
        )?;
        tx.commit()?;
        Ok(salt)
    }

    fn insert_credential(&self, c: &SessionCredential) -> Result<(), StoreError> {
        self.lock()
            .execute(
                &format!(
                    "INSERT INTO session_credentials ({CREDENTIAL_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ),
                params![
                    c.id,
                    c.user,
                    c.resource,
                    c.access,
                    c.grant_id,
                    c.verifier,
                    c.created_ms,
                    c.expires_ms,
                    c.revoked_ms,
                    c.token_id
                ],
            )
            .map_err(|e| conflict(e, "session credential", &c.id))?;
        Ok(())
    }

    fn credentials_for(
        &self,
        user: &str,
        resource: &str,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<SessionCredential>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM session_credentials
             WHERE user_name = ?1 AND resource = ?2 AND expires_ms > ?3 AND revoked_ms IS NULL
             ORDER BY created_ms DESC, rowid DESC
             LIMIT ?4"
        ))?;
        let creds = stmt
            .query_map(
                params![user, resource, since_ms, sql_limit(limit)],
                credential,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(creds)
    }

    fn revoke_credential(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let changed = self.lock().execute(
            "UPDATE session_credentials SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
            params![id, now_ms],
        )?;
        Ok(changed > 0)
    }

    fn purge_expired_credentials(&self, before_ms: i64) -> Result<usize, StoreError> {
        Ok(self.lock().execute(
            "DELETE FROM session_credentials WHERE expires_ms < ?1",
            [before_ms],
        )?)
    }

    fn insert_request(&self, r: &airlock_access::AccessRequest) -> Result<(), StoreError> {
        access::insert_request(&self.lock(), r)
    }

    fn request(&self, id: &str) -> Result<Option<airlock_access::AccessRequest>, StoreError> {
        access::request(&self.lock(), id)
    }

    fn requests(
        &self,
        filter: &crate::RequestFilter,
    ) -> Result<Vec<airlock_access::AccessRequest>, StoreError> {
        access::requests(&self.lock(), filter)
    }

    fn approve_request(
        &self,
        id: &str,
        approval: &airlock_access::Approval,
        required: u32,
        grant: Option<&airlock_access::GrantRecord>,
    ) -> Result<crate::ApproveOutcome, StoreError> {
        access::approve_request(&mut self.lock(), id, approval, required, grant)
    }

    fn deny_request(
        &self,
        id: &str,
        by: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<Result<(), airlock_access::RequestState>, StoreError> {
        access::deny_request(&mut self.lock(), id, by, reason, now_ms)
    }

    fn expire_requests(
        &self,
        now_ms: i64,
    ) -> Result<Vec<airlock_access::AccessRequest>, StoreError> {
        access::expire_requests(&mut self.lock(), now_ms)
    }

    fn mark_executed(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        access::mark_executed(&self.lock(), id, now_ms)
    }

    fn insert_grant(&self, g: &airlock_access::GrantRecord) -> Result<(), StoreError> {
        access::insert_grant(&self.lock(), g)
    }

    fn grant(&self, id: &str) -> Result<Option<airlock_access::GrantRecord>, StoreError> {
        access::grant(&self.lock(), id)
    }

    fn grants(
        &self,
        filter: &crate::GrantFilter,
    ) -> Result<Vec<airlock_access::GrantRecord>, StoreError> {
        access::grants(&self.lock(), filter)
    }

    fn revoke_grant(
        &self,
        id: &str,
        by: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        access::revoke_grant(&mut self.lock(), id, by, reason, now_ms)
    }

    fn take_expired_grants(
        &self,
        now_ms: i64,
    ) -> Result<Vec<airlock_access::GrantRecord>, StoreError> {
        access::take_expired_grants(&mut self.lock(), now_ms)
    }
}
