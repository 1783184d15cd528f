//! The reading side of the SQLite telemetry store: the timeline, trace
//! lookup, version statistics and error messages.
//!
//! Every function runs inside one read transaction (see
//! `SqliteTelemetry::read`), so a query made of several statements sees one
//! snapshot. Queries name their index with `INDEXED BY`: the schema has no
//! `ANALYZE` statistics, and a plan that silently switched to another index
//! (or to a scan) would be a performance bug nobody notices until the table
//! is large; with `INDEXED BY` such a statement fails to prepare instead, in
//! the tests.
//!
//! The timeline works in two phases. First, per kind, it asks for the
//! (time, id) of the first `limit` matching rows; those queries walk an index
//! in time order and, without record filters, never touch the table. Then it
//! merges the keys, cuts them to `limit`, and only for the rows that made it
//! loads the rows and their resources and builds the events (JSON parsing is
//! the costly part, so it is done only for rows that are returned). Without a
//! service filter the first phase runs once per service: an index that starts
//! with the service serves both that and the common one-service query, where
//! an index on time alone would cost every insert.

use std::collections::HashMap;

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde_json::{json, Map, Value};

use crate::error::StoreError;
use crate::telemetry::{
    Deploy, DeploySource, ErrorMessage, EventKind, LogRecord, MetricKind, MetricPoint, Resource,
    Span, SpanEvent, SpanKind, StatusCode, StoredLog, StoredSpan, TimelineEvent, TimelineQuery,
    Trace, VersionQuery, VersionStats,
};

/// [`TimelineQuery::limit`] 0 means this many.
const DEFAULT_TIMELINE_LIMIT: usize = 1000;

/// A timeline log event shows at most this many characters of the body's
/// first line.
const SUMMARY_CHARS: usize = 300;

/// The upper bounds of [`VersionStats::histogram`]: 1, 2, 5 × 10^k ns from
/// 1 µs to 100 s, then `i64::MAX`.
fn histogram_bounds() -> Vec<i64> {
    let mut bounds = Vec::new();
    let mut decade: i64 = 1_000;
    while decade <= 100_000_000_000 {
        for m in [1, 2, 5] {
            let bound = decade * m;
            if bound <= 100_000_000_000 {
                bounds.push(bound);
            }
        }
        decade *= 10;
    }
    bounds.push(i64::MAX);
    bounds
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn corrupt(what: &'static str, id: impl ToString, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        what,
        id: id.to_string(),
        reason: reason.into(),
    }
}

fn blob<const N: usize>(
    bytes: Vec<u8>,
    what: &'static str,
    id: i64,
) -> Result<[u8; N], StoreError> {
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| corrupt(what, id, format!("id is {len} bytes, expected {N}")))
}

fn opt_blob<const N: usize>(
    bytes: Option<Vec<u8>>,
    what: &'static str,
    id: i64,
) -> Result<Option<[u8; N]>, StoreError> {
    bytes.map(|b| blob(b, what, id)).transpose()
}

fn attributes(text: &str, what: &'static str, id: i64) -> Result<Map<String, Value>, StoreError> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(corrupt(what, id, "attributes are not a JSON object")),
        Err(e) => Err(corrupt(what, id, format!("attributes: {e}"))),
    }
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

/// The first non-blank line of `text`, cut to [`SUMMARY_CHARS`] characters.
fn one_line(text: &str) -> String {
    let line = text.trim_start().lines().next().unwrap_or("").trim_end();
    match line.char_indices().nth(SUMMARY_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

fn service_id(conn: &Connection, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id FROM services WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
        .optional()?)
}

fn version_id(conn: &Connection, service: &str, version: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT v.id FROM versions v JOIN services s ON s.id = v.service_id
             WHERE s.name = ?1 AND v.version = ?2",
        )?
        .query_row([service, version], |row| row.get(0))
        .optional()?)
}

// --- timeline -----------------------------------------------------------------

/// Where a timeline row comes from; also the order of kinds at equal times
/// (a deploy first, since it explains what follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Deploy,
    Span,
    Log,
    Crossing,
}

/// A timeline row before it is loaded: enough to merge and cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    time_ns: i64,
    source: Source,
    /// The rowid in the source's table: insertion order breaks the last ties.
    id: i64,
}

/// A statement under construction with its positional arguments.
struct Sql {
    text: String,
    args: Vec<SqlValue>,
}

impl Sql {
    fn new(text: impl Into<String>) -> Self {
        Sql {
            text: text.into(),
            args: Vec::new(),
        }
    }

    /// Adds an argument and returns its placeholder.
    fn arg(&mut self, value: impl Into<SqlValue>) -> String {
        self.args.push(value.into());
        format!("?{}", self.args.len())
    }

    fn and(&mut self, condition: &str) {
        self.text.push_str(" AND ");
        self.text.push_str(condition);
    }
}

/// The resource column of a first-class attribute name.
fn first_class_column(key: &str) -> Option<&'static str> {
    Some(match key {
        "service.name" => "service",
        "service.version" => "version",
        "deployment.environment.name" | "deployment.environment" => "env",
        "deployment.id" => "deployment_id",
        "service.instance.id" => "instance_id",
        "host.name" => "host",
        _ => return None,
    })
}

/// Whether the JSON object in `column` has `path` (a JSON path argument) with
/// a value that, as text, equals the argument `value`: a string as is, any
/// other value as its JSON text (`200`, `true`, `0.5`).
fn attribute_equals(column: &str, path: &str, value: &str) -> String {
    format!(
        "(CASE json_type({column}, {path}) WHEN 'text' THEN json_extract({column}, {path}) \
         ELSE {column} -> {path} END = {value})"
    )
}

/// The JSON path of one object key. SQLite's path syntax takes a quoted
/// label with JSON escapes, so keys with dots (`http.route`), quotes or
/// backslashes all work.
fn json_path(key: &str) -> String {
    // A string always encodes; the fallback is unreachable but harmless.
    format!(
        "$.{}",
        serde_json::to_string(key).unwrap_or_else(|_| format!("\"{key}\""))
    )
}

/// Adds the filters every record kind (spans, logs, crossings) shares:
/// version, env, grep over `grep_columns`, and attributes. `t` is the
/// record's alias.
fn record_filters(sql: &mut Sql, q: &TimelineQuery, grep_columns: &[&str]) {
    if let Some(version) = &q.version {
        let v = sql.arg(version.clone());
        sql.and(&format!(
            "t.version_id IN (SELECT id FROM versions WHERE version = {v})"
        ));
    }
    if let Some(env) = &q.env {
        let e = sql.arg(env.clone());
        sql.and(&format!(
            "t.resource_id IN (SELECT id FROM resources WHERE env = {e})"
        ));
    }
    if let Some(needle) = grep_needle(q) {
        let g = sql.arg(needle);
        let any: Vec<String> = grep_columns
            .iter()
            .map(|c| format!("instr(lower(t.{c}), {g}) > 0"))
            .collect();
        sql.and(&format!("({})", any.join(" OR ")));
    }
    for (key, value) in &q.attributes {
        let path = sql.arg(json_path(key));
        let value_arg = sql.arg(value.clone());
        let on_record = attribute_equals("t.attributes", &path, &value_arg);
        let on_resource = match first_class_column(key) {
            Some(column) => {
                format!("t.resource_id IN (SELECT id FROM resources WHERE {column} = {value_arg})")
            }
            None => format!(
                "t.resource_id IN (SELECT r.id FROM resources r WHERE {})",
                attribute_equals("r.attributes", &path, &value_arg)
            ),
        };
        sql.and(&format!("({on_record} OR {on_resource})"));
    }
}

/// The grep needle, lowercased the way SQLite's `lower()` lowercases the
/// haystack: ASCII letters only (SQLite has no Unicode case folding without
/// ICU), so non-ASCII letters match case-sensitively. `instr` takes the
/// needle literally, so `%` and `_` need no escaping.
fn grep_needle(q: &TimelineQuery) -> Option<String> {
    q.grep
        .as_deref()
        .filter(|g| !g.is_empty())
        .map(str::to_ascii_lowercase)
}

fn order_limit(sql: &mut Sql, time: &str, newest_first: bool, limit: usize) {
    let dir = if newest_first { "DESC" } else { "ASC" };
    let l = sql.arg(sql_limit(limit));
    sql.text
        .push_str(&format!(" ORDER BY t.{time} {dir}, t.id {dir} LIMIT {l}"));
}

/// Runs a phase-one statement, once per service id when `per_service` (whose
/// value replaces argument 1 each time), and collects its (time, id) rows.
fn collect_keys(
    conn: &Connection,
    sql: &Sql,
    source: Source,
    per_service: Option<&[i64]>,
    keys: &mut Vec<Key>,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(&sql.text)?;
    let mut run = |args: &[SqlValue]| -> Result<(), StoreError> {
        let mut rows = stmt.query(params_from_iter(args))?;
        while let Some(row) = rows.next()? {
            keys.push(Key {
                time_ns: row.get(0)?,
                source,
                id: row.get(1)?,
            });
        }
        Ok(())
    };
    match per_service {
        None => run(&sql.args),
        Some(services) => {
            let mut args = sql.args.clone();
            for &service in services {
                args[0] = SqlValue::Integer(service);
                run(&args)?;
            }
            Ok(())
        }
    }
}

/// Which services the record kinds are queried for.
enum Services {
    /// The filter named a service with no telemetry: no records.
    Unknown,
    One(i64),
    All(Vec<i64>),
}

/// Phase one for spans or logs (`spans` chooses), with or without a trace.
fn record_keys(
    conn: &Connection,
    q: &TimelineQuery,
    services: &Services,
    limit: usize,
    source: Source,
    keys: &mut Vec<Key>,
) -> Result<(), StoreError> {
    let (table, time, grep_columns, service_index): (_, _, &[&str], _) = match source {
        Source::Span => (
            "spans",
            "start_ns",
            &["name", "status_message"],
            "spans_service_time",
        ),
        Source::Log => ("logs", "time_ns", &["body"], "logs_service_time"),
        Source::Crossing => (
            "crossings",
            "time_ns",
            &["metric", "threshold"],
            "crossings_service_time",
        ),
        Source::Deploy => return Ok(()),
    };
    let service_list: &[i64] = match services {
        Services::Unknown => return Ok(()),
        Services::One(id) => std::slice::from_ref(id),
        Services::All(ids) => ids,
    };
    let mut sql;
    let per_service;
    if let Some(trace_id) = &q.trace_id {
        // Every span of the trace, summary or not, and the trace's logs.
        sql = Sql::new(match source {
            // The trace's runs, then each run's id range (CROSS JOIN keeps
            // that loop order).
            Source::Span => {
                "SELECT t.start_ns, t.id FROM
                    (SELECT h.id AS lo, h.id + h.trace_run AS hi
                     FROM spans h INDEXED BY spans_trace WHERE h.trace_key = ?1) AS r
                 CROSS JOIN spans t ON t.id >= r.lo AND t.id < r.hi
                 WHERE t.trace_id = ?2"
            }
            Source::Log => {
                "SELECT t.time_ns, t.id FROM logs t INDEXED BY logs_trace
                 WHERE t.trace_key = ?1 AND t.trace_id = ?2"
            }
            _ => return Ok(()),
        });
        sql.args.push(SqlValue::Integer(super::trace_key(trace_id)));
        sql.args.push(SqlValue::Blob(trace_id.to_vec()));
        if let Services::One(id) = services {
            let s = sql.arg(*id);
            sql.and(&format!("t.service_id = {s}"));
        }
        per_service = None;
    } else {
        sql = Sql::new(format!(
            "SELECT t.{time}, t.id FROM {table} t INDEXED BY {service_index} WHERE t.service_id = ?1"
        ));
        sql.args.push(SqlValue::Integer(0)); // the service, set per run
        if source == Source::Span {
            sql.and("t.summary = 1");
        }
        per_service = Some(service_list);
    }
    let since = sql.arg(q.since_ns);
    let until = sql.arg(q.until_ns);
    sql.and(&format!("t.{time} >= {since} AND t.{time} < {until}"));
    record_filters(&mut sql, q, grep_columns);
    order_limit(&mut sql, time, q.newest_first, limit);
    collect_keys(conn, &sql, source, per_service, keys)
}

/// Phase one for deploy markers. Deploys have no attributes: of an
/// attributes filter they can satisfy only the first-class names they carry
/// (service, version, env, deployment id); any other key excludes them.
fn deploy_keys(
    conn: &Connection,
    q: &TimelineQuery,
    limit: usize,
    keys: &mut Vec<Key>,
) -> Result<(), StoreError> {
    let mut sql = Sql::new("SELECT t.time_ns, t.rowid AS id FROM deploys t WHERE 1");
    let since = sql.arg(q.since_ns);
    let until = sql.arg(q.until_ns);
    sql.and(&format!("t.time_ns >= {since} AND t.time_ns < {until}"));
    for (column, value) in [
        ("service", &q.service),
        ("version", &q.version),
        ("env", &q.env),
    ] {
        if let Some(value) = value {
            let v = sql.arg(value.clone());
            sql.and(&format!("t.{column} = {v}"));
        }
    }
    if let Some(needle) = grep_needle(q) {
        let g = sql.arg(needle);
        sql.and(&format!(
            "(instr(lower(t.version), {g}) > 0 OR instr(lower(t.commit_id), {g}) > 0 \
             OR instr(lower(t.deployment_id), {g}) > 0)"
        ));
    }
    for (key, value) in &q.attributes {
        let column = match first_class_column(key) {
            Some(c @ ("service" | "version" | "env" | "deployment_id")) => c,
            _ => return Ok(()),
        };
        let v = sql.arg(value.clone());
        sql.and(&format!("t.{column} = {v}"));
    }
    let dir = if q.newest_first { "DESC" } else { "ASC" };
    let l = sql.arg(sql_limit(limit));
    sql.text.push_str(&format!(
        " ORDER BY t.time_ns {dir}, t.rowid {dir} LIMIT {l}"
    ));
    collect_keys(conn, &sql, Source::Deploy, None, keys)
}

pub(super) fn timeline(
    conn: &Connection,
    q: &TimelineQuery,
) -> Result<Vec<TimelineEvent>, StoreError> {
    if q.until_ns <= q.since_ns {
        return Ok(Vec::new());
    }
    let limit = if q.limit == 0 {
        DEFAULT_TIMELINE_LIMIT
    } else {
        q.limit
    };
    let services = match &q.service {
        Some(name) => match service_id(conn, name)? {
            Some(id) => Services::One(id),
            None => Services::Unknown,
        },
        None => Services::All(
            conn.prepare_cached("SELECT id FROM services ORDER BY id")?
                .query_map([], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<i64>>>()?,
        ),
    };

    // Each kind's first `limit` rows in the requested order hold the
    // merged first `limit`.
    let mut keys = Vec::new();
    if q.kinds.spans {
        record_keys(conn, q, &services, limit, Source::Span, &mut keys)?;
    }
    if q.kinds.logs {
        record_keys(conn, q, &services, limit, Source::Log, &mut keys)?;
    }
    // Crossings and deploys belong to no trace.
    if q.trace_id.is_none() {
        if q.kinds.metrics {
            record_keys(conn, q, &services, limit, Source::Crossing, &mut keys)?;
        }
        if q.kinds.deploys {
            deploy_keys(conn, q, limit, &mut keys)?;
        }
    }
    keys.sort_unstable();
    if q.newest_first {
        keys.reverse();
    }
    keys.truncate(limit);

    let mut events = Vec::with_capacity(keys.len());
    for key in keys {
        let event = match key.source {
            Source::Span => span_event(conn, key.id)?,
            Source::Log => log_event(conn, key.id)?,
            Source::Crossing => crossing_event(conn, key.id)?,
            Source::Deploy => deploy_event(conn, key.id)?,
        };
        // Within one snapshot a row found in phase one is there in phase two.
        events.extend(event);
    }
    Ok(events)
}

fn span_event(conn: &Connection, id: i64) -> Result<Option<TimelineEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.start_ns, t.end_ns, t.kind, t.status, t.trace_id, t.span_id,
                t.parent_span_id, t.name, t.status_message, t.scope, t.attributes,
                CASE WHEN t.events IS NULL THEN 0 ELSE json_array_length(t.events) END,
                r.service, r.version, r.env, r.deployment_id, r.instance_id, r.host
         FROM spans t JOIN resources r ON r.id = t.resource_id WHERE t.id = ?1",
    )?;
    let mut rows = stmt.query([id])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let start_ns: i64 = row.get(0)?;
    let end_ns: i64 = row.get(1)?;
    let kind = span_kind(row.get(2)?, id)?;
    let status = status_code(row.get(3)?, id)?;
    let trace_id: [u8; 16] = blob(row.get(4)?, "span", id)?;
    let span_id: [u8; 8] = blob(row.get(5)?, "span", id)?;
    let parent: Option<[u8; 8]> = opt_blob(row.get(6)?, "span", id)?;
    let name: String = row.get(7)?;
    let attrs = attributes(&row.get::<_, String>(10)?, "span", id)?;
    Ok(Some(TimelineEvent {
        time_ns: start_ns,
        kind: EventKind::Span,
        service: Some(row.get(12)?),
        version: row.get(13)?,
        env: row.get(14)?,
        trace_id: Some(hex(&trace_id)),
        span_id: Some(hex(&span_id)),
        summary: one_line(&name),
        error: status == StatusCode::Error,
        duration_ns: Some(end_ns.saturating_sub(start_ns)),
        detail: json!({
            "name": name,
            "kind": kind.as_str(),
            "status": status.as_str(),
            "status_message": row.get::<_, String>(8)?,
            "scope": row.get::<_, String>(9)?,
            "attributes": attrs,
            "parent_span_id": parent.map(|p| hex(&p)),
            "events": row.get::<_, i64>(11)?,
            "deployment_id": row.get::<_, Option<String>>(15)?,
            "instance_id": row.get::<_, Option<String>>(16)?,
            "host": row.get::<_, Option<String>>(17)?,
        }),
    }))
}

fn log_event(conn: &Connection, id: i64) -> Result<Option<TimelineEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.time_ns, t.severity_number, t.severity_text, t.trace_id, t.span_id,
                t.scope, t.body, t.attributes,
                r.service, r.version, r.env, r.instance_id, r.host
         FROM logs t JOIN resources r ON r.id = t.resource_id WHERE t.id = ?1",
    )?;
    let mut rows = stmt.query([id])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let severity: i64 = row.get(1)?;
    let trace_id: Option<[u8; 16]> = opt_blob(row.get(3)?, "log record", id)?;
    let span_id: Option<[u8; 8]> = opt_blob(row.get(4)?, "log record", id)?;
    let body: String = row.get(6)?;
    let attrs = attributes(&row.get::<_, String>(7)?, "log record", id)?;
    Ok(Some(TimelineEvent {
        time_ns: row.get(0)?,
        kind: EventKind::Log,
        service: Some(row.get(8)?),
        version: row.get(9)?,
        env: row.get(10)?,
        trace_id: trace_id.map(|t| hex(&t)),
        span_id: span_id.map(|s| hex(&s)),
        summary: one_line(&body),
        error: severity >= i64::from(crate::telemetry::SEVERITY_ERROR),
        duration_ns: None,
        detail: json!({
            "severity_number": severity,
            "severity_text": row.get::<_, String>(2)?,
            "body": body,
            "attributes": attrs,
            "scope": row.get::<_, String>(5)?,
            "instance_id": row.get::<_, Option<String>>(11)?,
            "host": row.get::<_, Option<String>>(12)?,
        }),
    }))
}

/// `{value}` of a stored float that may have been NaN (stored as NULL).
fn float(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

fn crossing_event(conn: &Connection, id: i64) -> Result<Option<TimelineEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.time_ns, t.threshold, t.metric, t.direction, t.value, t.limit_value,
                t.attributes, r.service, r.version, r.env
         FROM crossings t JOIN resources r ON r.id = t.resource_id WHERE t.id = ?1",
    )?;
    let mut rows = stmt.query([id])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let threshold: String = row.get(1)?;
    let metric: String = row.get(2)?;
    let direction: String = row.get(3)?;
    let value = float(row.get(4)?);
    let limit = float(row.get(5)?);
    let attrs = attributes(&row.get::<_, String>(6)?, "crossing", id)?;
    Ok(Some(TimelineEvent {
        time_ns: row.get(0)?,
        kind: EventKind::Metric,
        service: Some(row.get(7)?),
        version: row.get(8)?,
        env: row.get(9)?,
        trace_id: None,
        span_id: None,
        summary: one_line(&format!("{metric} {direction} {limit} ({value})")),
        error: direction == "above",
        duration_ns: None,
        // json! turns a NaN into null.
        detail: json!({
            "threshold": threshold,
            "metric": metric,
            "direction": direction,
            "value": value,
            "limit": limit,
            "attributes": attrs,
        }),
    }))
}

const DEPLOY_COLUMNS: &str =
    "id, time_ns, service, version, deployment_id, commit_id, env, source, actor";

fn deploy_row(row: &Row<'_>) -> rusqlite::Result<(Deploy, String)> {
    Ok((
        Deploy {
            id: row.get(0)?,
            time_ns: row.get(1)?,
            service: row.get(2)?,
            version: row.get(3)?,
            deployment_id: row.get(4)?,
            commit: row.get(5)?,
            env: row.get(6)?,
            source: DeploySource::Explicit,
            actor: row.get(8)?,
        },
        row.get(7)?,
    ))
}

fn deploy_from_row((mut d, source): (Deploy, String)) -> Result<Deploy, StoreError> {
    d.source = match source.as_str() {
        "explicit" => DeploySource::Explicit,
        "auto" => DeploySource::Auto,
        other => return Err(corrupt("deploy", &d.id, format!("source {other:?}"))),
    };
    Ok(d)
}

/// "deploy checkout v1.2.4 (explicit, commit abc123)".
fn deploy_summary(d: &Deploy) -> String {
    let mut s = format!("deploy {}", d.service);
    if let Some(v) = &d.version {
        s.push(' ');
        s.push_str(v);
    }
    s.push_str(" (");
    s.push_str(d.source.as_str());
    if let Some(c) = &d.commit {
        s.push_str(", commit ");
        s.push_str(c);
    }
    if let Some(id) = &d.deployment_id {
        s.push_str(", deployment ");
        s.push_str(id);
    }
    s.push(')');
    one_line(&s)
}

fn deploy_event(conn: &Connection, rowid: i64) -> Result<Option<TimelineEvent>, StoreError> {
    let raw = conn
        .prepare_cached(&format!(
            "SELECT {DEPLOY_COLUMNS} FROM deploys WHERE rowid = ?1"
        ))?
        .query_row([rowid], deploy_row)
        .optional()?;
    let Some(raw) = raw else {
        return Ok(None);
    };
    let d = deploy_from_row(raw)?;
    let detail = serde_json::to_value(&d).map_err(|e| corrupt("deploy", &d.id, e.to_string()))?;
    Ok(Some(TimelineEvent {
        time_ns: d.time_ns,
        kind: EventKind::Deploy,
        service: Some(d.service.clone()),
        version: d.version.clone(),
        env: d.env.clone(),
        trace_id: None,
        span_id: None,
        summary: deploy_summary(&d),
        error: false,
        duration_ns: None,
        detail,
    }))
}

pub(super) fn deploys(
    conn: &Connection,
    service: Option<&str>,
    since_ns: i64,
    until_ns: i64,
    limit: usize,
) -> Result<Vec<Deploy>, StoreError> {
    let raws = conn
        .prepare_cached(&format!(
            "SELECT {DEPLOY_COLUMNS} FROM deploys
             WHERE (?1 IS NULL OR service = ?1) AND time_ns >= ?2 AND time_ns < ?3
             ORDER BY time_ns, rowid LIMIT ?4"
        ))?
        .query_map(
            params![service, since_ns, until_ns, sql_limit(limit)],
            deploy_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    raws.into_iter().map(deploy_from_row).collect()
}

// --- records ------------------------------------------------------------------

fn span_kind(n: i64, id: i64) -> Result<SpanKind, StoreError> {
    i32::try_from(n)
        .ok()
        .and_then(SpanKind::from_i32)
        .ok_or_else(|| corrupt("span", id, format!("kind {n}")))
}

fn status_code(n: i64, id: i64) -> Result<StatusCode, StoreError> {
    i32::try_from(n)
        .ok()
        .and_then(StatusCode::from_i32)
        .ok_or_else(|| corrupt("span", id, format!("status {n}")))
}

/// Resources by id, loaded once per call.
struct Resources<'c> {
    conn: &'c Connection,
    loaded: HashMap<i64, Resource>,
}

impl<'c> Resources<'c> {
    fn new(conn: &'c Connection) -> Self {
        Resources {
            conn,
            loaded: HashMap::new(),
        }
    }

    fn get(&mut self, id: i64) -> Result<Resource, StoreError> {
        if let Some(r) = self.loaded.get(&id) {
            return Ok(r.clone());
        }
        let (resource, attrs): (Resource, String) = self
            .conn
            .prepare_cached(
                "SELECT service, version, env, deployment_id, instance_id, host, attributes
                 FROM resources WHERE id = ?1",
            )?
            .query_row([id], |row| {
                Ok((
                    Resource {
                        service: row.get(0)?,
                        version: row.get(1)?,
                        env: row.get(2)?,
                        deployment_id: row.get(3)?,
                        instance_id: row.get(4)?,
                        host: row.get(5)?,
                        attributes: Map::new(),
                    },
                    row.get(6)?,
                ))
            })
            .optional()?
            .ok_or_else(|| corrupt("resource", id, "referenced but missing"))?;
        let resource = Resource {
            attributes: attributes(&attrs, "resource", id)?,
            ..resource
        };
        self.loaded.insert(id, resource.clone());
        Ok(resource)
    }
}

pub(super) fn trace(conn: &Connection, trace_id: &[u8; 16]) -> Result<Trace, StoreError> {
    let key = super::trace_key(trace_id);
    let mut resources = Resources::new(conn);
    let mut trace = Trace::default();

    // The trace's runs (see the schema), then the spans of each.
    let runs = conn
        .prepare_cached(
            "SELECT id, trace_run FROM spans INDEXED BY spans_trace WHERE trace_key = ?1",
        )?
        .query_map([key], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT id, resource_id, span_id, parent_span_id, name, kind, start_ns, end_ns,
                status, status_message, scope, attributes, events
         FROM spans WHERE id >= ?1 AND id < ?2 AND trace_id = ?3",
    )?;
    let mut spans: Vec<(i64, i64, StoredSpan)> = Vec::new();
    for (head, len) in runs {
        let mut rows = stmt.query(params![head, head.saturating_add(len), &trace_id[..]])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let events: Option<String> = row.get(12)?;
            let events: Vec<SpanEvent> = match events {
                None => Vec::new(),
                Some(text) => serde_json::from_str(&text)
                    .map_err(|e| corrupt("span", id, format!("events: {e}")))?,
            };
            let span = Span {
                resource: 0,
                trace_id: *trace_id,
                span_id: blob(row.get(2)?, "span", id)?,
                parent_span_id: opt_blob(row.get(3)?, "span", id)?,
                name: row.get(4)?,
                kind: span_kind(row.get(5)?, id)?,
                start_ns: row.get(6)?,
                end_ns: row.get(7)?,
                status: status_code(row.get(8)?, id)?,
                status_message: row.get(9)?,
                scope: row.get(10)?,
                attributes: attributes(&row.get::<_, String>(11)?, "span", id)?,
                events,
            };
            let start_ns = span.start_ns;
            spans.push((
                start_ns,
                id,
                StoredSpan {
                    span,
                    resource: resources.get(row.get(1)?)?,
                },
            ));
        }
    }
    spans.sort_by_key(|&(start_ns, id, _)| (start_ns, id));
    trace.spans = spans.into_iter().map(|(_, _, s)| s).collect();

    let mut stmt = conn.prepare_cached(
        "SELECT id, resource_id, time_ns, severity_number, severity_text, body, span_id,
                scope, attributes
         FROM logs INDEXED BY logs_trace
         WHERE trace_key = ?1 AND trace_id = ?2 ORDER BY time_ns, id",
    )?;
    let mut rows = stmt.query(params![key, &trace_id[..]])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let severity: i64 = row.get(3)?;
        let log = LogRecord {
            resource: 0,
            time_ns: row.get(2)?,
            severity_number: i32::try_from(severity)
                .map_err(|_| corrupt("log record", id, format!("severity {severity}")))?,
            severity_text: row.get(4)?,
            body: row.get(5)?,
            trace_id: Some(*trace_id),
            span_id: opt_blob(row.get(6)?, "log record", id)?,
            scope: row.get(7)?,
            attributes: attributes(&row.get::<_, String>(8)?, "log record", id)?,
        };
        trace.logs.push(StoredLog {
            log,
            resource: resources.get(row.get(1)?)?,
        });
    }
    Ok(trace)
}

pub(super) fn points(
    conn: &Connection,
    service: &str,
    name: &str,
    since_ns: i64,
    until_ns: i64,
    limit: usize,
) -> Result<Vec<(MetricPoint, Resource)>, StoreError> {
    let Some(service_id) = service_id(conn, service)? else {
        return Ok(Vec::new());
    };
    let mut resources = Resources::new(conn);
    let mut stmt = conn.prepare_cached(
        "SELECT id, resource_id, time_ns, start_ns, kind, monotonic, cumulative, value, count,
                sum, min, max, unit, bounds, bucket_counts, quantiles, attributes
         FROM points INDEXED BY points_series
         WHERE service_id = ?1 AND name = ?2 AND time_ns >= ?3 AND time_ns < ?4
         ORDER BY time_ns, id LIMIT ?5",
    )?;
    let mut rows = stmt.query(params![
        service_id,
        name,
        since_ns,
        until_ns,
        sql_limit(limit)
    ])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let kind: String = row.get(4)?;
        let monotonic: Option<bool> = row.get(5)?;
        let cumulative: Option<bool> = row.get(6)?;
        let kind = match (kind.as_str(), monotonic, cumulative) {
            ("gauge", _, _) => MetricKind::Gauge,
            ("summary", _, _) => MetricKind::Summary,
            ("sum", Some(monotonic), Some(cumulative)) => MetricKind::Sum {
                monotonic,
                cumulative,
            },
            ("histogram", _, Some(cumulative)) => MetricKind::Histogram { cumulative },
            _ => return Err(corrupt("metric point", id, format!("kind {kind:?}"))),
        };
        let list = |column: usize| -> Result<Option<String>, StoreError> { Ok(row.get(column)?) };
        let parse_json = |text: Option<String>, field: &str| -> Result<Value, StoreError> {
            match text {
                None => Ok(Value::Array(Vec::new())),
                Some(t) => serde_json::from_str(&t)
                    .map_err(|e| corrupt("metric point", id, format!("{field}: {e}"))),
            }
        };
        // JSON null (a NaN when stored) reads back as NaN.
        let as_f64 = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
        let bounds = match parse_json(list(13)?, "bounds")? {
            Value::Array(items) => items.iter().map(as_f64).collect(),
            _ => return Err(corrupt("metric point", id, "bounds are not an array")),
        };
        let bucket_counts = match parse_json(list(14)?, "bucket_counts")? {
            Value::Array(items) => items
                .iter()
                .map(|v| {
                    v.as_u64()
                        .ok_or_else(|| corrupt("metric point", id, "bucket count"))
                })
                .collect::<Result<Vec<u64>, _>>()?,
            _ => {
                return Err(corrupt(
                    "metric point",
                    id,
                    "bucket counts are not an array",
                ))
            }
        };
        let quantiles = match parse_json(list(15)?, "quantiles")? {
            Value::Array(items) => items
                .iter()
                .map(|pair| match pair.as_array().map(Vec::as_slice) {
                    Some([q, v]) => Ok((as_f64(q), as_f64(v))),
                    _ => Err(corrupt("metric point", id, "quantile is not a pair")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(corrupt("metric point", id, "quantiles are not an array")),
        };
        let count: Option<i64> = row.get(8)?;
        let point = MetricPoint {
            resource: 0,
            name: name.to_owned(),
            unit: row.get(12)?,
            kind,
            time_ns: row.get(2)?,
            start_ns: row.get(3)?,
            value: row.get(7)?,
            count: count.map(|c| u64::try_from(c).unwrap_or(0)),
            sum: row.get(9)?,
            min: row.get(10)?,
            max: row.get(11)?,
            bounds,
            bucket_counts,
            quantiles,
            attributes: attributes(&row.get::<_, String>(16)?, "metric point", id)?,
        };
        out.push((point, resources.get(row.get(1)?)?));
    }
    Ok(out)
}

// --- versions -----------------------------------------------------------------

/// The nearest-rank percentile `pct` (of 100) of sorted values:
/// `sorted[ceil(pct/100 × n) − 1]`, in integers so that no float rounding can
/// move the rank.
fn nearest_rank(sorted: &[i64], pct: usize) -> Option<i64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (n * pct).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

/// Loads the window's server-span durations from the covering `spans_server`
/// index and computes everything in Rust. Exact percentiles need the whole
/// sorted list (or one `ORDER BY duration OFFSET k` per percentile, which
/// could only use an index if it were ordered by duration, and then not
/// restricted to the window); reading a million index entries and sorting
/// them takes a few hundred milliseconds, and one pass yields the counts
/// and the histogram too.
pub(super) fn version_stats(
    conn: &Connection,
    q: &VersionQuery,
) -> Result<VersionStats, StoreError> {
    let Some(version_id) = version_id(conn, &q.service, &q.version)? else {
        return Ok(VersionStats::default());
    };
    let mut stmt = conn.prepare_cached(
        "SELECT start_ns, end_ns, status FROM spans INDEXED BY spans_server
         WHERE version_id = ?1 AND kind = 2 AND start_ns >= ?2 AND start_ns < ?3",
    )?;
    let mut rows = stmt.query(params![version_id, q.since_ns, q.until_ns])?;
    let mut durations = Vec::new();
    let mut errors = 0u64;
    while let Some(row) = rows.next()? {
        let start: i64 = row.get(0)?;
        let end: i64 = row.get(1)?;
        let status: i64 = row.get(2)?;
        durations.push(end.saturating_sub(start));
        if status == StatusCode::Error as i64 {
            errors += 1;
        }
    }
    durations.sort_unstable();

    let bounds = histogram_bounds();
    let mut histogram: Vec<(i64, u64)> = bounds.iter().map(|&b| (b, 0)).collect();
    // Durations are sorted, so one cursor walks the buckets.
    let mut bucket = 0;
    for &d in &durations {
        while d > bounds[bucket] {
            bucket += 1;
        }
        histogram[bucket].1 += 1;
    }
    let used = histogram
        .iter()
        .rposition(|&(_, n)| n > 0)
        .map_or(0, |i| i + 1);
    histogram.truncate(used);

    Ok(VersionStats {
        requests: durations.len() as u64,
        errors,
        p50_ns: nearest_rank(&durations, 50),
        p95_ns: nearest_rank(&durations, 95),
        p99_ns: nearest_rank(&durations, 99),
        histogram,
    })
}

/// Error messages of one version: status messages of error spans (an empty
/// one is no message and is skipped), `exception.message` of "exception"
/// span events (a non-string value as its JSON text), and bodies of error
/// logs. A span that carries the same message both as its status message and
/// in an exception event (instrumentations commonly set both) counts once.
/// A message's time is its span's start, its event's time, or its log's
/// time.
pub(super) fn error_messages(
    conn: &Connection,
    q: &VersionQuery,
    limit: usize,
) -> Result<Vec<ErrorMessage>, StoreError> {
    let Some(version_id) = version_id(conn, &q.service, &q.version)? else {
        return Ok(Vec::new());
    };
    let mut seen: HashMap<String, (u64, i64)> = HashMap::new();
    let mut note = |message: String, time_ns: i64| {
        let entry = seen.entry(message).or_insert((0, time_ns));
        entry.0 += 1;
        entry.1 = entry.1.max(time_ns);
    };

    let mut stmt = conn.prepare_cached(
        "SELECT id, start_ns, status, status_message, events FROM spans INDEXED BY spans_errors
         WHERE version_id = ?1 AND (status = 2 OR exception = 1)
           AND start_ns >= ?2 AND start_ns < ?3",
    )?;
    let mut rows = stmt.query(params![version_id, q.since_ns, q.until_ns])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let start_ns: i64 = row.get(1)?;
        let mut messages: Vec<(String, i64)> = Vec::new();
        let status: i64 = row.get(2)?;
        let status_message: String = row.get(3)?;
        if status == StatusCode::Error as i64 && !status_message.is_empty() {
            messages.push((status_message, start_ns));
        }
        if let Some(text) = row.get::<_, Option<String>>(4)? {
            let events: Vec<SpanEvent> = serde_json::from_str(&text)
                .map_err(|e| corrupt("span", id, format!("events: {e}")))?;
            for event in events.iter().filter(|e| e.name == "exception") {
                let message = match event.attributes.get("exception.message") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => continue,
                };
                if message.is_empty() {
                    continue;
                }
                match messages.iter_mut().find(|(m, _)| *m == message) {
                    Some((_, t)) => *t = (*t).max(event.time_ns),
                    None => messages.push((message, event.time_ns)),
                }
            }
        }
        for (message, time_ns) in messages {
            note(message, time_ns);
        }
    }

    let mut stmt = conn.prepare_cached(
        "SELECT time_ns, body FROM logs INDEXED BY logs_errors
         WHERE version_id = ?1 AND severity_number >= 17 AND time_ns >= ?2 AND time_ns < ?3",
    )?;
    let mut rows = stmt.query(params![version_id, q.since_ns, q.until_ns])?;
    while let Some(row) = rows.next()? {
        note(row.get(1)?, row.get(0)?);
    }

    let mut messages: Vec<ErrorMessage> = seen
        .into_iter()
        .map(|(message, (count, last_ns))| ErrorMessage {
            message,
            count,
            last_ns,
        })
        .collect();
    messages.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(b.last_ns.cmp(&a.last_ns))
            .then_with(|| a.message.cmp(&b.message))
    });
    messages.truncate(limit);
    Ok(messages)
}

pub(super) fn versions(conn: &Connection, service: &str) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT v.version, v.first_ns FROM versions v JOIN services s ON s.id = v.service_id
             WHERE s.name = ?1 ORDER BY v.first_ns, v.version",
        )?
        .query_map([service], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_bounds_are_1_2_5_from_1us_to_100s() {
        let b = histogram_bounds();
        assert_eq!(&b[..4], &[1_000, 2_000, 5_000, 10_000]);
        assert_eq!(b[b.len() - 2], 100_000_000_000);
        assert_eq!(b[b.len() - 1], i64::MAX);
        // 8 decades (1e3..1e10) of three, then 1e11, then MAX.
        assert_eq!(b.len(), 8 * 3 + 2);
    }

    #[test]
    fn nearest_rank_is_exact() {
        let v: Vec<i64> = (1..=20).collect();
        assert_eq!(nearest_rank(&v, 50), Some(10));
        assert_eq!(nearest_rank(&v, 95), Some(19));
        assert_eq!(nearest_rank(&v, 99), Some(20));
        assert_eq!(nearest_rank(&[7], 50), Some(7));
        assert_eq!(nearest_rank(&[], 50), None);
    }

    #[test]
    fn one_line_takes_the_first_line_and_cuts_on_a_char_boundary() {
        assert_eq!(one_line("\n  first\nsecond"), "  first".trim_start());
        let long = "é".repeat(400);
        let cut = one_line(&long);
        assert_eq!(cut.chars().count(), SUMMARY_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn json_paths_quote_keys() {
        assert_eq!(json_path("http.route"), r#"$."http.route""#);
        assert_eq!(json_path(r#"a"b"#), r#"$."a\"b""#);
    }
}
