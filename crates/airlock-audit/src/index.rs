//! The query index: a SQLite file built only from the log.
//!
//! It answers `airlock audit` searches, `sessions` and `replay` without
//! reading every segment. It holds nothing the log does not (each row keeps
//! its record's line), can be deleted at any time, and is rebuilt with
//! `airlock audit reindex` or by the gateway at start. Records removed by
//! retention are removed from it when the `retention` record is indexed.
//!
//! **Statements are not rows.** `statement` and `statement_done` records
//! are most of the log (two per statement) and indexing each as a row would
//! cost the gateway more CPU than proxying the statement. For them the index
//! keeps *spans*: per session and segment, the first and last seq and time
//! and the statement counts, updated once per batch. Replay and search read
//! those records from the segments the spans name, skipping lines of other
//! sessions before decoding them. Everything else (sessions, access events,
//! refused logins) is a row.
//!
//! Indexing a record twice changes nothing: each batch starts after the
//! last seq committed (read inside its write transaction), rows are keyed by
//! seq, so the gateway's indexer and a CLI catching up or rebuilding the
//! same file never corrupt each other.

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
CREATE TABLE IF NOT EXISTS spans (
    session    TEXT NOT NULL,
    segment    INTEGER NOT NULL,
    first_seq  INTEGER NOT NULL,
    last_seq   INTEGER NOT NULL,
    first_ts   INTEGER NOT NULL,
    last_ts    INTEGER NOT NULL,
    statements INTEGER NOT NULL,
    refused    INTEGER NOT NULL,
    PRIMARY KEY (session, segment)
);
CREATE INDEX IF NOT EXISTS spans_segment ON spans (segment);
";

/// Bumped when the layout changes: an index of another version is dropped
/// and rebuilt from the log.
const SCHEMA_VERSION: &str = "2";

/// The record kinds kept as spans, not rows.
fn is_bulk(kind: &str) -> bool {
    kind == "statement" || kind == "statement_done" || kind == "bind"
}

/// A session's statement records in one segment.
#[derive(Debug, Clone, Copy)]
struct Span {
    first_seq: u64,
    last_seq: u64,
    first_ts: i64,
    last_ts: i64,
    statements: u64,
    refused: u64,
}

/// The session id of a statement record, read without decoding the line:
/// the encoding is the log's own (`"session":"<id>"`, ids without escapes).
fn session_of(line: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"session\":\"";
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(KEY));
    let at = FINDER.find(line)? + KEY.len();
    let len = memchr::memchr(b'"', &line[at..])?;
    let id = std::str::from_utf8(&line[at..at + len]).ok()?;
    (!id.contains('\\')).then_some(id)
}

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
    /// The log's segments, where statement records are read from.
    log_dir: std::path::PathBuf,
    /// Session → (user, resource), for the records of live sessions: looked
    /// up once per session rather than once per record.
    owners: std::collections::HashMap<String, (String, String)>,
}

/// A bound on the sessions remembered; past it the cache starts over.
const MAX_OWNERS: usize = 100_000;

impl Index {
    /// Opens (or creates) the index of the log in `log_dir`.
    pub fn open(path: &Path, log_dir: &Path) -> Result<Index, AuditError> {
        let conn = Connection::open(path).map_err(idx)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
        )
        .map_err(idx)?;
        conn.execute_batch(SCHEMA).map_err(idx)?;
        let version: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(idx)?;
        if version.as_deref() != Some(SCHEMA_VERSION) {
            // Derived data of another layout: start over from the log.
            conn.execute_batch(
                "DROP TABLE IF EXISTS records; DROP TABLE IF EXISTS sessions;
                 DROP TABLE IF EXISTS spans; DROP TABLE IF EXISTS meta;",
            )
            .map_err(idx)?;
            conn.execute_batch(SCHEMA).map_err(idx)?;
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema', ?1)",
                params![SCHEMA_VERSION],
            )
            .map_err(idx)?;
        }
        Ok(Index {
            conn,
            log_dir: log_dir.to_path_buf(),
            owners: std::collections::HashMap::new(),
        })
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
        self.owners.clear();
        self.conn
            .execute_batch(
                "DELETE FROM records; DELETE FROM sessions; DELETE FROM spans;
                 DELETE FROM meta WHERE key <> 'schema';",
            )
            .map_err(idx)
    }

    /// A tailer positioned after what is indexed.
    pub fn tailer(&self) -> Result<Tailer, AuditError> {
        Ok(Tailer::new(&self.log_dir, self.indexed_seq()?))
    }

    /// Indexes every record the tailer has not handed over yet, in
    /// transactions of at most 10,000 records. Returns how many.
    pub fn catch_up(&mut self, tailer: &mut Tailer) -> Result<u64, AuditError> {
        const BATCH: u64 = 10_000;
        let mut total = 0;
        loop {
            let owners = &mut self.owners;
            // A write transaction from the start: what another indexer
            // committed meanwhile is read here and not counted again.
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(idx)?;
            let committed: u64 = tx
                .query_row(
                    "SELECT value FROM meta WHERE key = 'indexed_seq'",
                    [],
                    |r| r.get::<_, String>(0),
                )
                .optional()
                .map_err(idx)?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            // Segment → session → span.
            let mut spans: Spans = std::collections::HashMap::new();
            let polled = tailer.poll(BATCH, |raw| {
                if raw.seq <= committed {
                    return Ok(());
                }
                match session_of(raw.line).filter(|_| is_bulk(raw.kind)) {
                    Some(session) => {
                        let statement = u64::from(raw.kind == "statement");
                        static REFUSED: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
                            std::sync::LazyLock::new(|| {
                                memchr::memmem::Finder::new(b"\"decision\":\"refused\"")
                            });
                        let refused = statement * u64::from(REFUSED.find(raw.line).is_some());
                        let of_segment = spans.entry(raw.segment).or_default();
                        match of_segment.get_mut(session) {
                            Some(s) => {
                                s.last_seq = raw.seq;
                                s.last_ts = s.last_ts.max(raw.ts);
                                s.statements += statement;
                                s.refused += refused;
                            }
                            None => {
                                of_segment.insert(
                                    session.to_owned(),
                                    Span {
                                        first_seq: raw.seq,
                                        last_seq: raw.seq,
                                        first_ts: raw.ts,
                                        last_ts: raw.ts,
                                        statements: statement,
                                        refused,
                                    },
                                );
                            }
                        }
                        Ok(())
                    }
                    None => insert(&tx, raw, owners),
                }
            });
            let n = match polled.and_then(|n| save_spans(&tx, &spans).map(|()| n)) {
                Ok(n) => n,
                Err(e) => {
                    // The batch rolls back: hand its records over again.
                    drop(tx);
                    self.owners.clear();
                    tailer.reset(self.indexed_seq()?);
                    return Err(e);
                }
            };
            if n > 0 {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('indexed_seq', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![tailer.after_seq().max(committed).to_string()],
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
                    (SELECT COALESCE(SUM(statements), 0) FROM spans p WHERE p.session = s.id),
                    (SELECT COALESCE(SUM(refused), 0) FROM spans p WHERE p.session = s.id),
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
                        (SELECT COALESCE(SUM(statements), 0) FROM spans p WHERE p.session = s.id),
                    (SELECT COALESCE(SUM(refused), 0) FROM spans p WHERE p.session = s.id),
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
        let limit = q.limit.max(1);
        let mut out = self.rows(q)?;
        if q.kinds.is_empty() || q.kinds.iter().any(|k| is_bulk(k)) {
            out.extend(self.scan_spans(q)?);
            out.sort_by_key(|e| e.seq);
            out.dedup_by_key(|e| e.seq);
            if out.len() > limit {
                out.drain(..out.len() - limit);
            }
        }
        Ok(out)
    }

    /// Statement records matching `q`, read from the segments their spans
    /// name, newest segments first until `limit` are found.
    fn scan_spans(&self, q: &RecordQuery) -> Result<Vec<Entry>, AuditError> {
        let limit = q.limit.max(1);
        let mut sql =
            String::from("SELECT session, segment, first_seq, last_seq FROM spans WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut arg = |v: rusqlite::types::Value| {
            args.push(v);
            args.len()
        };
        if let Some(s) = &q.session {
            sql.push_str(&format!(" AND session = ?{}", arg(s.clone().into())));
        }
        if let Some(u) = &q.user {
            sql.push_str(&format!(
                " AND session IN (SELECT id FROM sessions WHERE user = ?{})",
                arg(u.clone().into())
            ));
        }
        if let Some(r) = &q.resource {
            sql.push_str(&format!(
                " AND session IN (SELECT id FROM sessions WHERE resource = ?{})",
                arg(r.clone().into())
            ));
        }
        if let Some(t) = q.since_ms {
            sql.push_str(&format!(" AND last_ts >= ?{}", arg(t.into())));
        }
        if let Some(t) = q.until_ms {
            sql.push_str(&format!(" AND first_ts < ?{}", arg(t.into())));
        }
        let filtered = q.session.is_some() || q.user.is_some() || q.resource.is_some();
        // Segment → (its sessions, the seq range to read).
        type Wanted = (std::collections::HashSet<String>, u64, u64);
        let mut segments: std::collections::BTreeMap<u64, Wanted> =
            std::collections::BTreeMap::new();
        {
            let mut stmt = self.conn.prepare(&sql).map_err(idx)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(args)).map_err(idx)?;
            while let Some(r) = rows.next().map_err(idx)? {
                let session: String = r.get(0).map_err(idx)?;
                let segment = r.get::<_, i64>(1).map_err(idx)? as u64;
                let first = r.get::<_, i64>(2).map_err(idx)? as u64;
                let last = r.get::<_, i64>(3).map_err(idx)? as u64;
                let e = segments
                    .entry(segment)
                    .or_insert_with(|| (std::collections::HashSet::new(), first, last));
                e.0.insert(session);
                e.1 = e.1.min(first);
                e.2 = e.2.max(last);
            }
        }
        let grep = q.grep.as_ref().map(|g| g.to_lowercase());
        let mut found: Vec<Entry> = Vec::new();
        for (segment, (sessions, first, last)) in segments.iter().rev() {
            let path = self.log_dir.join(crate::segment::name_for(*segment));
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                // Removed by retention since it was indexed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(AuditError::io("reading", &path, e)),
            };
            let mut here: std::collections::VecDeque<Entry> = std::collections::VecDeque::new();
            crate::segment::for_each_line(&bytes, |_, line| {
                let Some(head) = crate::record::parse_head(line) else {
                    return;
                };
                if head.seq < *first
                    || head.seq > *last
                    || !is_bulk(head.kind)
                    || (!q.kinds.is_empty() && !q.kinds.iter().any(|k| k == head.kind))
                    || q.since_ms.is_some_and(|t| head.ts < t)
                    || q.until_ms.is_some_and(|t| head.ts >= t)
                {
                    return;
                }
                if filtered && !session_of(line).is_some_and(|s| sessions.contains(s)) {
                    return;
                }
                let Some(entry) = Entry::parse(line) else {
                    return;
                };
                if let Some(g) = &grep {
                    let text = match &entry.event {
                        Event::Statement(s) => s.display_text(),
                        Event::StatementDone(d) => d.error.clone().unwrap_or_default(),
                        _ => String::new(),
                    };
                    if !text.to_lowercase().contains(g.as_str()) {
                        return;
                    }
                }
                here.push_back(entry);
                if here.len() > limit {
                    here.pop_front();
                }
            });
            found.extend(here);
            if found.len() >= limit {
                break;
            }
        }
        Ok(found)
    }

    /// Records kept as rows matching `q`: the newest `limit`, oldest first.
    fn rows(&self, q: &RecordQuery) -> Result<Vec<Entry>, AuditError> {
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

type Spans = std::collections::HashMap<u64, std::collections::HashMap<String, Span>>;

fn save_spans(tx: &rusqlite::Transaction<'_>, spans: &Spans) -> Result<(), AuditError> {
    let mut st = tx
        .prepare_cached(
            "INSERT INTO spans (session, segment, first_seq, last_seq, first_ts, last_ts, statements, refused)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (session, segment) DO UPDATE SET
                first_seq = min(first_seq, excluded.first_seq),
                last_seq = max(last_seq, excluded.last_seq),
                first_ts = min(first_ts, excluded.first_ts),
                last_ts = max(last_ts, excluded.last_ts),
                statements = statements + excluded.statements,
                refused = refused + excluded.refused",
        )
        .map_err(idx)?;
    for (segment, session, s) in spans
        .iter()
        .flat_map(|(seg, m)| m.iter().map(move |(session, s)| (seg, session, s)))
    {
        st.execute(params![
            session,
            *segment as i64,
            s.first_seq as i64,
            s.last_seq as i64,
            s.first_ts,
            s.last_ts,
            s.statements as i64,
            s.refused as i64
        ])
        .map_err(idx)?;
    }
    Ok(())
}

fn idx(e: rusqlite::Error) -> AuditError {
    AuditError::Index(e.to_string())
}

/// Indexes one record.
fn insert(
    tx: &rusqlite::Transaction<'_>,
    raw: &Raw<'_>,
    owners: &mut std::collections::HashMap<String, (String, String)>,
) -> Result<(), AuditError> {
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
        let found = match owners.get(sid) {
            Some(o) => Some(o.clone()),
            None => {
                let found: Option<(String, String)> = tx
                    .prepare_cached("SELECT user, resource FROM sessions s WHERE id = ?1")
                    .and_then(|mut st| {
                        st.query_row(params![sid], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()
                    })
                    .map_err(idx)?;
                if let Some(o) = &found {
                    if owners.len() >= MAX_OWNERS {
                        owners.clear();
                    }
                    owners.insert(sid.clone(), o.clone());
                }
                found
            }
        };
        if let Some((u, r)) = found {
            user = Some(u);
            resource = Some(r);
        }
    }
    match entry.map(|e| e.event) {
        Some(Event::SessionStart(s)) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO sessions (id, start_seq, user, resource, access, credential_id,
                    client_addr, tls, grant_id, break_glass, started_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .and_then(|mut st| {
                st.execute(params![
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
                ])
            })
            .map_err(idx)?;
            user = Some(s.user);
            resource = Some(s.resource);
        }
        Some(Event::SessionEnd {
            session, reason, ..
        }) => {
            tx.prepare_cached(
                "UPDATE sessions SET ended_ms = ?2, end_reason = ?3 WHERE id = ?1 AND ended_ms IS NULL",
            )
            .and_then(|mut st| st.execute(params![session, raw.ts, reason]))
            .map_err(idx)?;
            owners.remove(&session);
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
            tx.execute(
                "DELETE FROM spans WHERE last_seq <= ?1",
                params![through_seq as i64],
            )
            .map_err(idx)?;
        }
        _ => {}
    }
    tx.prepare_cached(
        "INSERT OR REPLACE INTO records (seq, ts, kind, user, actor, resource, session, text, refused, line)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .and_then(|mut st| {
        st.execute(params![
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
        ])
    })
    .map_err(idx)?;
    Ok(())
}
