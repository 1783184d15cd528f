//! How each forwarded statement ended, for the audit log: its duration, row
//! count, command tags, error, and the first rows of its result as the client
//! saw them (masked).
//!
//! The gate (client→upstream) queues a [`Track`] for every message whose
//! answer matters, in the order it forwards them; the upstream→client side
//! ([`Tracker`]) matches PostgreSQL's answers against that queue. PostgreSQL
//! answers in order: a simple Query ends at its ReadyForQuery; an Execute at
//! its CommandComplete, EmptyQueryResponse, PortalSuspended or ErrorResponse;
//! after an error in the extended protocol it skips everything up to Sync.
//! A statement the gate refused queues its provoked message with `n = 0`:
//! its answer (the refusal) is not a completion, the statement record already
//! holds the refusal.
//!
//! The `statement_done` records are written after the result has gone to
//! the client, one append per batch read from the upstream: they describe
//! what happened and are not on the statement's critical path. Which
//! statement an Execute runs comes from the gate's own map of prepared
//! statements and portals (Parse → Bind → Execute).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use airlock_audit::{AuditLog, Event, StatementDone};

use crate::audit::RECORDS;
use airlock_pgwire::messages::tag::backend as btag;
use airlock_pgwire::messages::{data_row_values, ErrorResponse, RowDescription};
use bytes::Bytes;

/// A forwarded message whose answer ends, or describes, a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// A simple Query: everything up to its ReadyForQuery.
    Query { n: u64, at: Instant },
    /// A Parse: ParseComplete, or the error that fails the statement.
    Parse { n: u64, at: Instant },
    /// A Describe (the client's or the gate's): the result's columns.
    Describe { n: u64 },
    /// An Execute of a portal bound from statement `n`, its results in
    /// `formats`.
    Execute {
        n: u64,
        at: Instant,
        formats: Formats,
    },
    /// A Sync: its ReadyForQuery.
    Sync,
}

/// A bound on the queue: a conforming server answers everything, a confused
/// one must not grow it forever.
const MAX_QUEUED: usize = 1 << 16;
/// A bound on the names remembered (prepared statements, portals, column
/// lists): a client with more loses attribution, not correctness.
const MAX_NAMES: usize = 1 << 14;
/// Longest value kept in a recorded row, in characters.
const MAX_VALUE_CHARS: usize = 256;

/// Which result columns come in binary: the result format codes of a Bind,
/// or the format fields of a RowDescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Formats {
    #[default]
    Text,
    Binary,
    /// Bit `i` set: column `i` is binary (columns past 63 count as binary,
    /// which only means they are recorded as hex).
    Mixed(u64),
}

impl Formats {
    fn from_codes(codes: impl Iterator<Item = i16>) -> Formats {
        let mut mask = 0u64;
        let mut count = 0;
        let mut first = 0;
        for (i, c) in codes.enumerate() {
            if i == 0 {
                first = c;
            }
            if c != 0 && i < 64 {
                mask |= 1 << i;
            }
            count = i + 1;
        }
        match (count, first) {
            (0, _) | (1, 0) => Formats::Text,
            (1, _) => Formats::Binary,
            _ => Formats::Mixed(mask),
        }
    }

    fn binary(self, column: usize) -> bool {
        match self {
            Formats::Text => false,
            Formats::Binary => true,
            Formats::Mixed(m) => column >= 64 || m & (1 << column) != 0,
        }
    }
}

/// The queue both directions share.
#[derive(Default)]
pub struct Completions {
    queue: Mutex<VecDeque<Track>>,
}

impl Completions {
    pub fn push(&self, t: Track) {
        let mut q = self.lock();
        if q.len() >= MAX_QUEUED {
            q.pop_front();
        }
        q.push_back(t);
    }

    /// Queues several, in order, under one lock.
    pub fn push_all(&self, ts: impl IntoIterator<Item = Track>) {
        let mut q = self.lock();
        for t in ts {
            if q.len() >= MAX_QUEUED {
                q.pop_front();
            }
            q.push_back(t);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Track>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The gate's map from prepared statement and portal names to the statement
/// number of the Parse behind them.
#[derive(Default)]
pub struct Names {
    statements: HashMap<Vec<u8>, u64>,
    portals: HashMap<Vec<u8>, (u64, Formats)>,
}

impl Names {
    pub fn parsed(&mut self, name: &[u8], n: u64) {
        insert_bounded(&mut self.statements, name, n);
    }

    /// A Bind body: the portal, the statement it is bound from, and (after
    /// the parameters) the result formats.
    /// Returns the statement's number (0 when unknown).
    pub fn bound(&mut self, body: &[u8]) -> u64 {
        let mut parts = body.splitn(3, |&b| b == 0);
        let (Some(portal), Some(stmt), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return 0;
        };
        let n = self.statements.get(stmt).copied().unwrap_or(0);
        // A malformed Bind is PostgreSQL's to refuse; binary is the safe guess.
        let formats = result_formats(rest).unwrap_or(Formats::Binary);
        insert_bounded(&mut self.portals, portal, (n, formats));
        n
    }

    /// A Close body: `S` or `P`, then the name.
    pub fn closed(&mut self, body: &[u8]) {
        let Some((&kind, rest)) = body.split_first() else {
            return;
        };
        let name = rest.strip_suffix(&[0]).unwrap_or(rest);
        match kind {
            b'S' => self.statements.remove(name),
            b'P' => self.portals.remove(name).map(|(n, _)| n),
            _ => None,
        };
    }

    /// The statement behind a Describe body (`S` or `P`, then the name).
    pub fn described(&self, body: &[u8]) -> u64 {
        let Some((&kind, rest)) = body.split_first() else {
            return 0;
        };
        let name = rest.strip_suffix(&[0]).unwrap_or(rest);
        if kind == b'S' {
            self.statements.get(name).copied().unwrap_or(0)
        } else {
            self.portals.get(name).map_or(0, |p| p.0)
        }
    }

    /// The statement an Execute body's portal was bound from, and the
    /// formats of its results.
    pub fn executed(&self, body: &[u8]) -> (u64, Formats) {
        let portal = body.split(|&b| b == 0).next().unwrap_or(b"");
        self.portals.get(portal).copied().unwrap_or_default()
    }
}

/// The result formats at the end of a Bind body, after its name fields.
fn result_formats(rest: &[u8]) -> Option<Formats> {
    fn i16_at(b: &[u8], at: usize) -> Option<i16> {
        Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
    }
    let mut at = 0;
    let n = usize::try_from(i16_at(rest, at)?).ok()?;
    at += 2 + 2 * n;
    let params = usize::try_from(i16_at(rest, at)?).ok()?;
    at += 2;
    for _ in 0..params {
        let len = i32::from_be_bytes(rest.get(at..at + 4)?.try_into().ok()?);
        at += 4 + usize::try_from(len).unwrap_or(0);
    }
    let n = usize::try_from(i16_at(rest, at)?).ok()?;
    at += 2;
    let codes = rest.get(at..at + 2 * n)?;
    Some(Formats::from_codes(
        codes
            .chunks_exact(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]])),
    ))
}

fn insert_bounded<V: Copy>(map: &mut HashMap<Vec<u8>, V>, name: &[u8], v: V) {
    if map.len() >= MAX_NAMES && !map.contains_key(name) {
        map.clear();
    }
    match map.get_mut(name) {
        Some(old) => *old = v,
        None => {
            map.insert(name.to_vec(), v);
        }
    }
}

/// The statement being answered.
struct Current {
    n: u64,
    started: Instant,
    /// Rows counted from DataRows (for a suspended portal, the only count).
    data_rows: u64,
    /// Rows from the command tags.
    tag_rows: u64,
    tags: Vec<String>,
    sqlstate: Option<String>,
    error: Option<String>,
    columns: Vec<String>,
    types: Vec<u32>,
    formats: Formats,
    first_rows: Vec<Vec<Option<String>>>,
    /// The first result is over: later results' rows are not kept.
    first_result_done: bool,
}

/// The upstream→client side: see the module docs.
pub struct Tracker {
    shared: std::sync::Arc<Completions>,
    audit: AuditLog,
    session: String,
    replay_rows: usize,
    /// Column names and types per statement, from the answers to Describe.
    columns: HashMap<u64, (Vec<String>, Vec<u32>)>,
    current: Option<Current>,
    /// When the previous statement finished: a pipelined statement's time
    /// starts then, not when it was sent.
    last_done: Instant,
    /// Finished records wait here for the session's next statement record.
    done: std::sync::Arc<crate::audit::Deferred>,
}

impl Tracker {
    pub fn new(
        shared: std::sync::Arc<Completions>,
        done: std::sync::Arc<crate::audit::Deferred>,
        audit: AuditLog,
        session: String,
        replay_rows: usize,
    ) -> Tracker {
        Tracker {
            shared,
            audit,
            session,
            replay_rows,
            columns: HashMap::new(),
            current: None,
            last_done: Instant::now(),
            done,
        }
    }

    /// Upstream message types this side must see whole.
    pub fn tags() -> u128 {
        if !RECORDS {
            return 0;
        }
        [
            btag::PARSE_COMPLETE,
            btag::ROW_DESCRIPTION,
            btag::NO_DATA,
            btag::COMMAND_COMPLETE,
            btag::EMPTY_QUERY_RESPONSE,
            btag::PORTAL_SUSPENDED,
            btag::ERROR_RESPONSE,
            btag::READY_FOR_QUERY,
        ]
        .iter()
        .fold(0u128, |acc, t| acc | 1 << t)
    }

    /// Whether the next DataRow is wanted whole (to keep it for replay).
    pub fn wants_rows(&self) -> bool {
        RECORDS
            && self.replay_rows > 0
            && self
                .current
                .as_ref()
                .is_none_or(|c| !c.first_result_done && c.first_rows.len() < self.replay_rows)
    }

    /// DataRows that went by without being looked at.
    pub fn count_rows(&mut self, rows: u64) {
        if !RECORDS || rows == 0 {
            return;
        }
        if let Some(c) = self.begin() {
            c.data_rows += rows;
        }
    }

    /// One whole upstream message. `client_view` is what the client got in
    /// its place when something else was sent (whole messages; empty when it
    /// was dropped), `None` when it was forwarded as it is.
    pub fn observe(&mut self, tag: u8, body: &[u8], client_view: Option<&[u8]>) {
        if !RECORDS {
            return;
        }
        match tag {
            btag::PARSE_COMPLETE => {
                let mut q = self.shared.lock();
                if matches!(q.front(), Some(Track::Parse { .. })) {
                    q.pop_front();
                }
            }
            btag::ROW_DESCRIPTION | btag::NO_DATA => {
                // Columns matter only when rows are kept for replay.
                let (names, types, formats) =
                    if tag == btag::ROW_DESCRIPTION && self.replay_rows > 0 {
                        describe(body)
                    } else {
                        (Vec::new(), Vec::new(), Formats::Text)
                    };
                let front = self.shared.lock().front().copied();
                match front {
                    Some(Track::Describe { n }) => {
                        self.shared.lock().pop_front();
                        if n > 0 {
                            if self.columns.len() >= MAX_NAMES {
                                self.columns.clear();
                            }
                            self.columns.insert(n, (names, types));
                        }
                    }
                    Some(Track::Query { n, .. }) if n > 0 => {
                        if let Some(c) = self.begin() {
                            if !c.first_result_done && c.columns.is_empty() {
                                c.columns = names;
                                c.types = types;
                                c.formats = formats;
                            }
                        }
                    }
                    _ => {}
                }
            }
            btag::DATA_ROW => {
                let keep = self.replay_rows;
                let Some(c) = self.begin() else { return };
                c.data_rows += 1;
                if c.first_result_done || c.first_rows.len() >= keep {
                    return;
                }
                let shown = match client_view {
                    None => Some(body),
                    Some(v) if v.len() > 5 && v[0] == btag::DATA_ROW => Some(&v[5..]),
                    // Dropped (past max_rows): the client never saw it.
                    Some(_) => None,
                };
                let (formats, types) = (c.formats, &c.types);
                if let Some(row) = shown.and_then(|r| row_values(r, formats, types)) {
                    c.first_rows.push(row);
                }
            }
            btag::COMMAND_COMPLETE => {
                let tag_text = body.strip_suffix(&[0]).unwrap_or(body);
                let tag_text = String::from_utf8_lossy(tag_text).into_owned();
                let rows = tag_text
                    .rsplit(' ')
                    .next()
                    .and_then(|r| r.parse::<u64>().ok());
                let replaced = client_view.and_then(error_of);
                let front = self.shared.lock().front().copied();
                if let Some(c) = self.begin() {
                    c.first_result_done = true;
                    c.tag_rows += rows.unwrap_or(0);
                    c.tags.push(tag_text);
                    if let Some((code, msg)) = replaced {
                        // Cut at max_rows: the client got an error instead.
                        c.sqlstate.get_or_insert(code);
                        c.error.get_or_insert(msg);
                    }
                }
                if matches!(front, Some(Track::Execute { .. })) {
                    self.shared.lock().pop_front();
                    self.finish(false);
                }
            }
            btag::EMPTY_QUERY_RESPONSE | btag::PORTAL_SUSPENDED => {
                let front = self.shared.lock().front().copied();
                if let Some(c) = self.begin() {
                    c.first_result_done = true;
                }
                if matches!(front, Some(Track::Execute { .. })) {
                    self.shared.lock().pop_front();
                    self.finish(tag == btag::PORTAL_SUSPENDED);
                }
            }
            btag::ERROR_RESPONSE => {
                let (code, msg) = client_view
                    .and_then(error_of)
                    .or_else(|| error_body(body))
                    .unwrap_or_else(|| ("XX000".into(), "an error".into()));
                let front = self.shared.lock().front().copied();
                match front {
                    Some(Track::Query { .. }) => {
                        // Ends the query's current statement only.
                        if let Some(c) = self.begin() {
                            c.first_result_done = true;
                            c.sqlstate.get_or_insert(code);
                            c.error.get_or_insert(msg);
                        }
                    }
                    Some(Track::Sync) | None => {}
                    Some(_) => {
                        // The extended protocol skips to Sync; the first
                        // statement skipped is the one that failed (an error
                        // on Bind or Describe fails the Execute after it).
                        let skipped: Vec<Track> = {
                            let mut q = self.shared.lock();
                            let mut v = Vec::new();
                            while q.front().is_some_and(|t| *t != Track::Sync) {
                                v.extend(q.pop_front());
                            }
                            v
                        };
                        if self.current.is_none() {
                            if let Some(t) = skipped.into_iter().find(|t| {
                                matches!(t, Track::Parse { n, .. } | Track::Execute { n, .. } if *n > 0)
                            }) {
                                self.start(t);
                            }
                        }
                        if let Some(c) = self.current.as_mut() {
                            c.sqlstate.get_or_insert(code);
                            c.error.get_or_insert(msg);
                        }
                        self.finish(false);
                    }
                }
            }
            btag::READY_FOR_QUERY => {
                let mut ended_query = false;
                {
                    let mut q = self.shared.lock();
                    while let Some(t) = q.pop_front() {
                        match t {
                            Track::Sync => break,
                            Track::Query { .. } => {
                                ended_query = true;
                                break;
                            }
                            _ => {}
                        }
                    }
                }
                if ended_query {
                    self.finish(false);
                } else {
                    // Nothing can still be running: forget a half-seen one.
                    self.current = None;
                }
                self.last_done = Instant::now();
            }
            _ => {}
        }
    }

    /// The statement the front of the queue says is being answered (created
    /// on its first message); `None` for a refusal's answer.
    fn begin(&mut self) -> Option<&mut Current> {
        if self.current.is_none() {
            let front = self.shared.lock().front().copied()?;
            self.start(front);
        }
        self.current.as_mut()
    }

    /// Starts the record of the statement `t` runs, unless it runs none.
    fn start(&mut self, t: Track) {
        let (n, at, formats) = match t {
            Track::Query { n, at } | Track::Parse { n, at } => (n, at, None),
            Track::Execute { n, at, formats } => (n, at, Some(formats)),
            Track::Describe { .. } | Track::Sync => return,
        };
        if n == 0 {
            return;
        }
        let (columns, types) = match formats {
            Some(_) => self.columns.get(&n).cloned().unwrap_or_default(),
            None => Default::default(),
        };
        self.current = Some(Current {
            n,
            started: at.max(self.last_done),
            data_rows: 0,
            tag_rows: 0,
            tags: Vec::new(),
            sqlstate: None,
            error: None,
            columns,
            types,
            formats: formats.unwrap_or_default(),
            first_rows: Vec::new(),
            first_result_done: false,
        });
    }

    fn finish(&mut self, suspended: bool) {
        let now = Instant::now();
        if let Some(c) = self.current.take() {
            self.done.push(Event::StatementDone(StatementDone {
                session: self.session.clone(),
                n: c.n,
                duration_us: now.saturating_duration_since(c.started).as_micros() as u64,
                rows: if c.tags.is_empty() || suspended {
                    c.data_rows
                } else {
                    c.tag_rows.max(c.data_rows)
                },
                tags: c.tags,
                sqlstate: c.sqlstate,
                error: c.error,
                columns: c.columns,
                first_rows: c.first_rows,
                suspended,
            }));
        }
        self.last_done = now;
    }

    /// When the completions waiting for a statement record must be written
    /// on their own.
    pub fn due(&self) -> Option<Instant> {
        self.done.due()
    }

    /// Writes the completions waiting, if they have waited long enough. A
    /// failure is logged: the statements' own records were written before
    /// they ran, and the log's health reports the failure.
    pub fn flush_if_due(&mut self) {
        if self.due().is_some_and(|d| d <= Instant::now()) {
            self.flush();
        }
    }

    /// Writes the completions waiting now.
    pub fn flush(&mut self) {
        let done = self.done.take();
        if done.is_empty() {
            return;
        }
        if let Err(e) = self.audit.append(&done) {
            tracing::error!(session = %self.session, error = %e, records = done.len(), "statement completions could not be written to the audit log");
        }
    }

    /// The session ended: statements forwarded but not answered are
    /// recorded as such, then everything is written.
    pub fn abandon(&mut self, why: &str) {
        let pending: Vec<Track> = self.shared.lock().drain(..).collect();
        let error = format!("no result: the session ended first ({why})");
        let mut seen = std::collections::HashSet::new();
        if let Some(c) = self.current.as_mut() {
            c.error.get_or_insert_with(|| error.clone());
            seen.insert(c.n);
            self.finish(false);
        }
        for t in pending {
            let (Track::Query { n, at } | Track::Parse { n, at } | Track::Execute { n, at, .. }) =
                t
            else {
                continue;
            };
            if n == 0 || !seen.insert(n) {
                continue;
            }
            self.done.push(Event::StatementDone(StatementDone {
                session: self.session.clone(),
                n,
                duration_us: at.elapsed().as_micros() as u64,
                error: Some(error.clone()),
                ..StatementDone::default()
            }));
        }
        self.flush();
    }
}

/// A RowDescription's column names, types and formats.
fn describe(body: &[u8]) -> (Vec<String>, Vec<u32>, Formats) {
    match RowDescription::decode(Bytes::copy_from_slice(body)) {
        Ok(rd) => (
            rd.fields
                .iter()
                .map(|f| String::from_utf8_lossy(&f.name).into_owned())
                .collect(),
            rd.fields.iter().map(|f| f.type_oid).collect(),
            Formats::from_codes(rd.fields.iter().map(|f| f.format)),
        ),
        Err(_) => (Vec::new(), Vec::new(), Formats::Binary),
    }
}

/// A DataRow's values as recorded, each cut at [`MAX_VALUE_CHARS`]: text
/// as text; in binary, text-like types as text, integers and numerics in
/// digits, booleans as `t`/`f`, anything else as `\x` hex.
fn row_values(body: &[u8], formats: Formats, types: &[u32]) -> Option<Vec<Option<String>>> {
    let (_, values) = data_row_values(body).ok()?;
    values
        .enumerate()
        .map(|(i, v)| {
            v.ok().map(|v| {
                v.map(|v| {
                    let binary = formats.binary(i);
                    render_value(v, binary, types.get(i).copied().unwrap_or(0))
                })
            })
        })
        .collect()
}

/// Types whose binary form is their text (text, varchar, bpchar, name,
/// json, xml, unknown).
fn text_in_binary(oid: u32) -> bool {
    matches!(oid, 25 | 1043 | 1042 | 19 | 114 | 142 | 705)
}

fn render_value(v: &[u8], binary: bool, type_oid: u32) -> String {
    if !binary || text_in_binary(type_oid) {
        return cut(String::from_utf8_lossy(v).into_owned());
    }
    if type_oid == 16 && v.len() == 1 {
        return if v[0] != 0 { "t" } else { "f" }.to_owned();
    }
    if let Some(digits) = airlock_sql::mask::binary_number_text(type_oid, v) {
        return cut(digits);
    }
    let keep = v.len().min(MAX_VALUE_CHARS / 2);
    let mut t = String::with_capacity(2 + keep * 2 + 3);
    t.push_str("\\x");
    for b in &v[..keep] {
        t.push_str(&format!("{b:02x}"));
    }
    if keep < v.len() {
        t.push('…');
    }
    t
}

fn cut(s: String) -> String {
    if s.chars().count() <= MAX_VALUE_CHARS {
        return s;
    }
    let mut t: String = s.chars().take(MAX_VALUE_CHARS).collect();
    t.push('…');
    t
}

/// The SQLSTATE and message of the first ErrorResponse in whole messages.
fn error_of(messages: &[u8]) -> Option<(String, String)> {
    if messages.len() < 5 || messages[0] != btag::ERROR_RESPONSE {
        return None;
    }
    let len = u32::from_be_bytes([messages[1], messages[2], messages[3], messages[4]]) as usize;
    error_body(messages.get(5..1 + len)?)
}

fn error_body(body: &[u8]) -> Option<(String, String)> {
    let e = ErrorResponse::decode(Bytes::copy_from_slice(body)).ok()?;
    Some((
        e.code().unwrap_or("XX000").to_owned(),
        e.message().unwrap_or_default().to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use airlock_pgwire::messages::{encode_data_row, Field};
    use bytes::BytesMut;

    fn rd(cols: &[&str]) -> Vec<u8> {
        RowDescription {
            fields: cols
                .iter()
                .map(|name| Field {
                    name: Bytes::copy_from_slice(name.as_bytes()),
                    table_oid: 0,
                    column: 0,
                    type_oid: 25,
                    type_size: -1,
                    type_modifier: -1,
                    format: 0,
                })
                .collect(),
        }
        .encode_body()
        .to_vec()
    }

    fn row(values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_data_row(&mut out, values.iter().copied());
        out[5..].to_vec()
    }

    fn tracker(dir: &std::path::Path, rows: usize) -> (Arc<Completions>, Tracker, AuditLog) {
        let key = airlock_audit::SigningKey::load_or_create(&dir.join("key.pem")).unwrap();
        let log = AuditLog::open(&dir.join("log"), key, airlock_audit::Options::default()).unwrap();
        let shared = Arc::new(Completions::default());
        let t = Tracker::new(
            shared.clone(),
            Arc::default(),
            log.clone(),
            "s1".into(),
            rows,
        );
        (shared, t, log)
    }

    fn done(log: &AuditLog, dir: &std::path::Path) -> Vec<StatementDone> {
        log.close().unwrap();
        let mut out = Vec::new();
        airlock_audit::read::scan(&dir.join("log"), 0, |raw| {
            if let Some(Event::StatementDone(d)) =
                airlock_audit::read::Entry::parse(raw.line).map(|e| e.event)
            {
                out.push(d);
            }
            Ok(true)
        })
        .unwrap();
        out
    }

    #[test]
    fn simple_queries_record_tags_rows_errors_and_first_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (q, mut t, log) = tracker(dir.path(), 2);
        let at = Instant::now();
        q.push(Track::Query { n: 1, at });
        t.observe(btag::ROW_DESCRIPTION, &rd(&["a", "b"]), None);
        for i in 0..3u8 {
            let v = [b'0' + i];
            t.observe(btag::DATA_ROW, &row(&[Some(&v), None]), None);
        }
        t.observe(btag::COMMAND_COMPLETE, b"SELECT 3\0", None);
        t.observe(btag::COMMAND_COMPLETE, b"UPDATE 4\0", None);
        t.observe(btag::READY_FOR_QUERY, b"I", None);
        // A refused statement's provoked query: not a completion.
        q.push(Track::Query { n: 0, at });
        let err = ErrorResponse::error("25006", "refused").encode_body();
        t.observe(btag::ERROR_RESPONSE, &err, None);
        t.observe(btag::READY_FOR_QUERY, b"I", None);
        // A failing query keeps its first error.
        q.push(Track::Query { n: 3, at });
        let err = ErrorResponse::error("42P01", "relation \"x\" does not exist").encode_body();
        t.observe(btag::ERROR_RESPONSE, &err, None);
        t.observe(btag::READY_FOR_QUERY, b"E", None);
        t.flush();
        let d = done(&log, dir.path());
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].n, 1);
        assert_eq!(d[0].tags, vec!["SELECT 3", "UPDATE 4"]);
        assert_eq!(d[0].rows, 7);
        assert_eq!(d[0].columns, vec!["a", "b"]);
        assert_eq!(
            d[0].first_rows,
            vec![vec![Some("0".into()), None], vec![Some("1".into()), None]]
        );
        assert_eq!(d[1].n, 3);
        assert_eq!(d[1].sqlstate.as_deref(), Some("42P01"));
        assert!(d[1].error.as_deref().unwrap().contains("does not exist"));
    }

    #[test]
    fn extended_protocol_attributes_executes_and_skips_to_sync_after_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (q, mut t, log) = tracker(dir.path(), 20);
        let at = Instant::now();
        // Parse 1, Describe S, Sync; then Bind/Execute x2, Sync.
        q.push(Track::Parse { n: 1, at });
        q.push(Track::Describe { n: 1 });
        q.push(Track::Sync);
        t.observe(btag::PARSE_COMPLETE, b"", None);
        t.observe(btag::ROW_DESCRIPTION, &rd(&["x"]), None);
        t.observe(btag::READY_FOR_QUERY, b"I", None);
        q.push(Track::Execute {
            n: 1,
            at,
            formats: Formats::Binary,
        });
        q.push(Track::Execute {
            n: 1,
            at,
            formats: Formats::Mixed(0),
        });
        q.push(Track::Sync);
        t.observe(btag::DATA_ROW, &row(&[Some(b"hi")]), None);
        t.observe(btag::PORTAL_SUSPENDED, b"", None);
        t.observe(btag::DATA_ROW, &row(&[Some(b"ok")]), None);
        t.observe(btag::COMMAND_COMPLETE, b"SELECT 1\0", None);
        t.observe(btag::READY_FOR_QUERY, b"I", None);
        // Parse 2 fails: its Execute and Describe are skipped up to Sync.
        q.push(Track::Parse { n: 2, at });
        q.push(Track::Describe { n: 2 });
        q.push(Track::Execute {
            n: 2,
            at,
            formats: Formats::Text,
        });
        q.push(Track::Sync);
        let err = ErrorResponse::error("42P01", "no such table").encode_body();
        t.observe(btag::ERROR_RESPONSE, &err, None);
        t.observe(btag::READY_FOR_QUERY, b"I", None);
        assert!(q.lock().is_empty());
        t.flush();
        let d = done(&log, dir.path());
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].suspended);
        assert_eq!(d[0].rows, 1);
        assert_eq!(d[0].columns, vec!["x"]);
        // Binary text is text (the column's type came from the Describe).
        assert_eq!(d[0].first_rows, vec![vec![Some("hi".into())]]);
        assert_eq!(d[1].tags, vec!["SELECT 1"]);
        assert_eq!(d[2].n, 2);
        assert_eq!(d[2].sqlstate.as_deref(), Some("42P01"));
    }

    #[test]
    fn what_the_client_saw_is_recorded_and_unanswered_statements_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let (q, mut t, log) = tracker(dir.path(), 5);
        let at = Instant::now();
        q.push(Track::Query { n: 1, at });
        t.observe(btag::ROW_DESCRIPTION, &rd(&["email"]), None);
        let mut masked = BytesMut::new();
        encode_data_row(&mut masked, [Some(&b"[masked]"[..])]);
        t.observe(
            btag::DATA_ROW,
            &row(&[Some(b"a@b.co")]),
            Some(&masked.clone()),
        );
        // Past max_rows: dropped, not kept; the end became an error.
        t.observe(btag::DATA_ROW, &row(&[Some(b"c@d.co")]), Some(b""));
        let mut cut = BytesMut::new();
        airlock_pgwire::BackendMessage::ErrorResponse(ErrorResponse::error("54000", "cut"))
            .encode(&mut cut);
        t.observe(btag::COMMAND_COMPLETE, b"SELECT 2\0", Some(&cut));
        t.observe(btag::READY_FOR_QUERY, b"I", None);
        q.push(Track::Query { n: 2, at });
        t.abandon("client disconnected");
        let d = done(&log, dir.path());
        assert_eq!(d[0].first_rows, vec![vec![Some("[masked]".into())]]);
        assert_eq!(d[0].rows, 2);
        assert_eq!(d[0].sqlstate.as_deref(), Some("54000"));
        assert_eq!(d[1].n, 2);
        assert!(d[1]
            .error
            .as_deref()
            .unwrap()
            .contains("client disconnected"));
    }

    #[test]
    fn names_follow_parse_bind_close() {
        let mut names = Names::default();
        names.parsed(b"s1", 4);
        names.parsed(b"", 5);
        let bind = |portal: &str, stmt: &str, results: Vec<i16>| {
            airlock_pgwire::messages::Bind {
                portal: Bytes::copy_from_slice(portal.as_bytes()),
                statement: Bytes::copy_from_slice(stmt.as_bytes()),
                param_formats: vec![1],
                params: vec![Some(Bytes::from_static(b"\0\0\0\x07")), None],
                result_formats: results,
            }
            .encode_body()
        };
        names.bound(&bind("p1", "s1", vec![1]));
        names.bound(&bind("", "", vec![0, 1]));
        assert_eq!(names.executed(b"p1\0\0\0\0\0"), (4, Formats::Binary));
        assert_eq!(names.executed(b"\0\0\0\0\0"), (5, Formats::Mixed(2)));
        assert_eq!(names.described(b"Ss1\0"), 4);
        assert_eq!(names.described(b"Pp1\0"), 4);
        names.closed(b"Pp1\0");
        assert_eq!(names.executed(b"p1\0\0\0\0\0"), (0, Formats::Text));
        names.bound(b"p2\0s1\0\0");
        assert_eq!(
            names.executed(b"p2\0"),
            (4, Formats::Binary),
            "malformed: hex"
        );
        assert_eq!(
            render_value(&[b'x'; 300], false, 25).chars().count(),
            MAX_VALUE_CHARS + 1
        );
        assert_eq!(render_value(b"AB", true, 17), "\\x4142", "bytea");
        assert_eq!(render_value(b"AB", true, 25), "AB", "binary text");
        assert_eq!(render_value(&7i32.to_be_bytes(), true, 23), "7");
        assert_eq!(render_value(&[1], true, 16), "t");
    }
}
