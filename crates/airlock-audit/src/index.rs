//! The query index: a SQLite file built only from the log.
//!
//! It answers `airlock audit` searches, `sessions` and `replay` without
//! reading every segment. It holds nothing the log does not (each row keeps
//! its record's line), can be deleted at any time, and is rebuilt with
//! `airlock audit reindex` or by the gateway at start. Records removed by
//! retention are removed from it when the `retention` record is indexed.
//!
//! Indexing a record twice changes nothing (rows are keyed by seq, counts
//! are computed when asked), so the gateway's indexer and a CLI catching up
//! or rebuilding the same file never corrupt each other.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::read::{Entry, Raw, Tailer};
use crate::AuditError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq      INTEGER PRIMARY KEY,
    ts       INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    user     TEXT,
    actor    TEXT,
    resource TEXT,
    session  TEXT,
    text     TEXT,
    refused  INTEGER NOT NULL DEFAULT 0,
    line     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_ts ON records (ts);
CREATE INDEX IF NOT EXISTS records_session ON records (session, seq) WHERE session IS NOT NULL;
CREATE TABLE IF NOT EXISTS sessions (
    id            TEXT PRIMARY KEY,
    start_seq     INTEGER NOT NULL,
    user          TEXT NOT NULL,
    resource      TEXT NOT NULL,
    access        TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    client_addr   TEXT NOT NULL,
    tls           INTEGER NOT NULL,
    grant_id      TEXT NOT NULL,
    break_glass   INTEGER NOT NULL,
    started_ms    INTEGER NOT NULL,
    ended_ms      INTEGER,
    end_reason    TEXT
);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started_ms);
";

/// One session as the index knows it (the shape `/api/v1/sessions` returns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    pub id: String,
    pub user: String,
    pub resource: String,
    pub access: String,
    pub credential_id: String,
    pub client_addr: String,
    pub tls: bool,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub statement_count: i64,
    pub refused_count: i64,
    pub end_reason: Option<String>,
    pub grant_id: String,
    pub break_glass: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionQuery {
    pub user: Option<String>,
    pub resource: Option<String>,
    pub since_ms: Option<i64>,
    pub active_only: bool,
    pub limit: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordQuery {
    /// Records about this user (the subject) or by them (the actor).
    pub user: Option<String>,
    pub resource: Option<String>,
    pub session: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub kinds: Vec<String>,
    /// Case-insensitive substring of the record's text (statement text,
    /// access event text, end reason, error).
    pub grep: Option<String>,
    /// At most this many, the newest; returned oldest first.
    pub limit: usize,
}

pub struct Index {
    conn: Connection,
}

impl Index {
    pub fn open(path: &Path) -> Result<Index, AuditError> {
        let conn = Connection::open(path).map_err(idx)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
        )
        .map_err(idx)?;
        conn.execute_batch(SCHEMA).map_err(idx)?;
        Ok(Index { conn })
    }

    /// The last record indexed.
    pub fn indexed_seq(&self) -> Result<u64, AuditError> {
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'indexed_seq'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(idx)?;
        Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// Empties the index; the next `catch_up` rebuilds it from the log.
    pub fn clear(&mut self) -> Result<(), AuditError> {
        self.conn
            .execute_batch("DELETE FROM records; DELETE FROM sessions; DELETE FROM meta;")
            .map_err(idx)
    }

    /// A tailer positioned after what is indexed.
    pub fn tailer(&self, dir: &Path) -> Result<Tailer, AuditError> {
        Ok(Tailer::new(dir, self.indexed_seq()?))
    }

    /// Indexes every record the tailer has not handed over yet, in
    /// transactions of at most 10,000 records. Returns how many.
    pub fn catch_up(&mut self, tailer: &mut Tailer) -> Result<u64, AuditError> {
        const BATCH: u64 = 10_000;
        let mut total = 0;
        loop {
            let tx = self.conn.transaction().map_err(idx)?;
            let n = match tailer.poll(BATCH, |raw| insert(&tx, raw)) {
                Ok(n) => n,
                Err(e) => {
                    // The batch rolls back: hand its records over again.
                    drop(tx);
                    tailer.reset(self.indexed_seq()?);
                    return Err(e);
                }
            };
            if n > 0 {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('indexed_seq', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![tailer.after_seq().to_string()],
                )
                .map_err(idx)?;
            }
            tx.commit().map_err(idx)?;
            total += n;
            if n < BATCH {
                return Ok(total);
            }
        }
    }

    pub fn sessions(&self, q: &SessionQuery) -> Result<Vec<SessionRow>, AuditError> {
        let mut sql = String::from(
            "SELECT id, user, resource, access, credential_id, client_addr, tls, started_ms, ended_ms,
                    (SELECT COUNT(*) FROM records r WHERE r.session = s.id AND r.kind = 'statement'),
                    (SELECT COUNT(*) FROM records r WHERE r.session = s.id AND r.kind = 'statement'
                        AND r.refused = 1),
                    end_reason, grant_id, break_glass
             FROM sessions s WHERE 1 = 1",
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(u) = &q.user {
            args.push(u.clone().into());
            sql.push_str(&format!(" AND user = ?{}", args.len()));
        }
        if let Some(r) = &q.resource {
            args.push(r.clone().into());
            sql.push_str(&format!(" AND resource = ?{}", args.len()));
        }
        if let Some(s) = q.since_ms {
            args.push(s.into());
            sql.push_str(&format!(
                " AND (ended_ms IS NULL OR ended_ms >= ?{})",
                args.len()
            ));
        }
        if q.active_only {
            sql.push_str(" AND ended_ms IS NULL");
        }
        args.push((q.limit.max(1) as i64).into());
        sql.push_str(&format!(
            " ORDER BY started_ms DESC, start_seq DESC LIMIT ?{}",
            args.len()
        ));
        let mut stmt = self.conn.prepare(&sql).map_err(idx)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), session_row)
            .map_err(idx)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(idx)?;
        Ok(rows)
    }

    pub fn session(&self, id: &str) -> Result<Option<SessionRow>, AuditError> {
        self.conn
            .query_row(
                "SELECT id, user, resource, access, credential_id, client_addr, tls, started_ms, ended_ms,
                        (SELECT COUNT(*) FROM records r WHERE r.session = s.id AND r.kind = 'statement'),
                    (SELECT COUNT(*) FROM records r WHERE r.session = s.id AND r.kind = 'statement'
                        AND r.refused = 1),
                    end_reason, grant_id, break_glass
                 FROM sessions s WHERE id = ?1",
                params![id],
                session_row,
            )
            .optional()
            .map_err(idx)
    }

    /// Records matching `q`: the newest `limit`, oldest first.
    pub fn records(&self, q: &RecordQuery) -> Result<Vec<Entry>, AuditError> {
        let mut sql = String::from("SELECT line FROM records WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let arg = |v: rusqlite::types::Value, args: &mut Vec<_>| {
            args.push(v);
            args.len()
        };
        if let Some(u) = &q.user {
            let n = arg(u.clone().into(), &mut args);
            sql.push_str(&format!(" AND (user = ?{n} OR actor = ?{n})"));
        }
        if let Some(r) = &q.resource {
            let n = arg(r.clone().into(), &mut args);
            sql.push_str(&format!(" AND resource = ?{n}"));
        }
        if let Some(s) = &q.session {
            let n = arg(s.clone().into(), &mut args);
            sql.push_str(&format!(" AND session = ?{n}"));
        }
        if let Some(t) = q.since_ms {
            let n = arg(t.into(), &mut args);
            sql.push_str(&format!(" AND ts >= ?{n}"));
        }
        if let Some(t) = q.until_ms {
            let n = arg(t.into(), &mut args);
            sql.push_str(&format!(" AND ts < ?{n}"));
        }
        if !q.kinds.is_empty() {
            let list: Vec<String> = q
                .kinds
                .iter()
                .map(|k| format!("?{}", arg(k.clone().into(), &mut args)))
                .collect();
            sql.push_str(&format!(" AND kind IN ({})", list.join(", ")));
        }
        if let Some(g) = &q.grep {
            let pattern = format!(
                "%{}%",
                g.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            let n = arg(pattern.into(), &mut args);
            sql.push_str(&format!(" AND text LIKE ?{n} ESCAPE '\\'"));
        }
        let n = arg((q.limit.max(1) as i64).into(), &mut args);
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT ?{n}"));
        let mut stmt = self.conn.prepare(&sql).map_err(idx)?;
        let lines = stmt
            .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(0))
            .map_err(idx)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(idx)?;
        let mut out: Vec<Entry> = lines
            .iter()
            .filter_map(|l| Entry::parse(l.as_bytes()))
            .collect();
        out.reverse();
        Ok(out)
    }

    /// Sessions the index still shows as open (their end was never logged).
    pub fn open_sessions(&self) -> Result<Vec<String>, AuditError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM sessions WHERE ended_ms IS NULL ORDER BY start_seq")
            .map_err(idx)?;
        let ids = stmt
            .query_map([], |r| r.get(0))
            .map_err(idx)?
            .collect::<Result<Vec<String>, _>>()
            .map_err(idx)?;
        Ok(ids)
    }
}

fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        user: r.get(1)?,
        resource: r.get(2)?,
        access: r.get(3)?,
        credential_id: r.get(4)?,
        client_addr: r.get(5)?,
        tls: r.get(6)?,
        started_ms: r.get(7)?,
        ended_ms: r.get(8)?,
        statement_count: r.get(9)?,
        refused_count: r.get(10)?,
        end_reason: r.get(11)?,
        grant_id: r.get(12)?,
        break_glass: r.get(13)?,
    })
}

fn idx(e: rusqlite::Error) -> AuditError {
    AuditError::Index(e.to_string())
}

/// Indexes one record.
fn insert(tx: &rusqlite::Transaction<'_>, raw: &Raw<'_>) -> Result<(), AuditError> {
    let line = std::str::from_utf8(raw.line)
        .map_err(|_| AuditError::Index(format!("record {} is not UTF-8", raw.seq)))?;
    // A kind this version does not know is kept by its head alone.
    let entry = Entry::parse(raw.line);
    let mut user: Option<String> = None;
    let mut actor: Option<String> = None;
    let mut resource: Option<String> = None;
    let mut text: Option<String> = None;
    let mut refused = false;
    let session = entry
        .as_ref()
        .and_then(|e| e.event.session().map(str::to_owned));
    if let Some(sid) = &session {
        let found: Option<(String, String)> = tx
            .query_row(
                "SELECT user, resource FROM sessions s WHERE id = ?1",
                params![sid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(idx)?;
        if let Some((u, r)) = found {
            user = Some(u);
            resource = Some(r);
        }
    }
    match entry.map(|e| e.event) {
        Some(Event::SessionStart(s)) => {
            tx.execute(
                "INSERT OR IGNORE INTO sessions (id, start_seq, user, resource, access, credential_id,
                    client_addr, tls, grant_id, break_glass, started_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    s.session,
                    raw.seq as i64,
                    s.user,
                    s.resource,
                    s.access,
                    s.credential,
                    s.client_addr,
                    s.tls,
                    s.grant,
                    s.break_glass,
                    raw.ts
                ],
            )
            .map_err(idx)?;
            user = Some(s.user);
            resource = Some(s.resource);
        }
        Some(Event::SessionEnd {
            session, reason, ..
        }) => {
            tx.execute(
                "UPDATE sessions SET ended_ms = ?2, end_reason = ?3 WHERE id = ?1 AND ended_ms IS NULL",
                params![session, raw.ts, reason],
            )
            .map_err(idx)?;
            text = Some(reason);
        }
        Some(Event::Statement(s)) => {
            refused = s.decision != "allowed";
            text = Some(s.display_text());
        }
        Some(Event::StatementDone(d)) => text = d.error,
        Some(Event::LoginRefused {
            user: u,
            resource: r,
            reason,
            ..
        }) => {
            user = Some(u);
            resource = Some(r);
            text = Some(reason);
        }
        Some(Event::Access {
            actor: a,
            text: t,
            data,
            ..
        }) => {
            // The subject: whose request or grant it is.
            let subject = ["request", "grant", "token"]
                .iter()
                .find_map(|k| data.get(*k).filter(|v| v.is_object()))
                .unwrap_or(&data);
            user = subject
                .get("user")
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            resource = subject
                .get("resource")
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            actor = Some(a);
            text = Some(t);
        }
        Some(Event::Retention { through_seq, .. }) => {
            tx.execute(
                "DELETE FROM records WHERE seq <= ?1",
                params![through_seq as i64],
            )
            .map_err(idx)?;
            tx.execute(
                "DELETE FROM sessions WHERE start_seq <= ?1 AND ended_ms IS NOT NULL",
                params![through_seq as i64],
            )
            .map_err(idx)?;
        }
        _ => {}
    }
    tx.execute(
        "INSERT OR REPLACE INTO records (seq, ts, kind, user, actor, resource, session, text, refused, line)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            raw.seq as i64,
            raw.ts,
            raw.kind,
            user,
            actor,
            resource,
            session,
            text,
            refused,
            line
        ],
    )
    .map_err(idx)?;
    Ok(())
}
