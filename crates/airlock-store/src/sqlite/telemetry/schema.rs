//! Schema and migrations of the telemetry database.
//!
//! The telemetry database is a file of its own (`data_dir/telemetry/
//! telemetry.db`), so it has its own `schema_migrations` table and versions,
//! migrated the way the control-plane store is: each migration once, in a
//! `BEGIN IMMEDIATE` transaction that also records it, and a database that a
//! newer binary migrated is refused with [`StoreError::SchemaTooNew`].
//! Migrations are append-only.
//!
//! The indexes are the ones the queries need and no more, because every index
//! costs every insert (see the comments in [`V1_INITIAL`]).

use rusqlite::Connection;

use crate::error::StoreError;

/// Ordered `(version, SQL)` pairs. Versions start at 1 and increase by one.
const MIGRATIONS: &[(i64, &str)] = &[(1, V1_INITIAL)];

/// The newest telemetry schema version this binary knows.
pub const TELEMETRY_SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Rows carry `service_id` (and `version_id` where a query needs it) as small
/// integers rather than text, which keeps the indexes that start with them
/// small; `resource_id` points at the full resource. Tables are `STRICT`, like
/// the control-plane store's, and have no foreign keys: checking them would
/// cost every insert, and only this module writes.
const V1_INITIAL: &str = "
CREATE TABLE services (
    id    INTEGER PRIMARY KEY,
    name  TEXT NOT NULL UNIQUE
) STRICT;

-- (service, version) pairs seen in telemetry or in explicit deploys. The id
-- is the version_id that resources and rows carry.
CREATE TABLE versions (
    id          INTEGER PRIMARY KEY,
    service_id  INTEGER NOT NULL,
    version     TEXT NOT NULL,
    first_ns    INTEGER NOT NULL,
    UNIQUE (service_id, version)
) STRICT;

-- (service, deployment.id) pairs seen, for automatic deploy markers.
CREATE TABLE deployment_ids (
    service_id     INTEGER NOT NULL,
    deployment_id  TEXT NOT NULL,
    first_ns       INTEGER NOT NULL,
    PRIMARY KEY (service_id, deployment_id)
) STRICT, WITHOUT ROWID;

-- Each distinct resource once, keyed by a hash of all its fields. The
-- first-class fields are columns (the env filter and the detail of timeline
-- events read them); service and version also as ids, copied onto the rows.
CREATE TABLE resources (
    id             INTEGER PRIMARY KEY,
    hash           BLOB NOT NULL UNIQUE,
    service_id     INTEGER NOT NULL,
    version_id     INTEGER,
    service        TEXT NOT NULL,
    version        TEXT,
    env            TEXT,
    deployment_id  TEXT,
    instance_id    TEXT,
    host           TEXT,
    attributes     TEXT NOT NULL
) STRICT;

-- Trace runs: the writer stores the spans of one trace in one batch one after
-- the other, so they get consecutive ids, and only the first span of such a
-- run is in the trace index, with the run's length (trace_run); the other
-- spans have NULL in both columns. A trace id is random, so every entry of
-- the trace index lands on a random page of it, and under sustained ingest
-- that index is what costs most (each such page is written to the WAL once
-- per transaction); one entry per run instead of per span divides that by
-- the spans a trace has per batch. trace_key is the last 8 bytes of the
-- trace id as an integer: the bytes W3C requires to be random (and the only
-- non-zero ones of 64-bit ids), half the size of the id; a lookup compares
-- the full trace_id of every span of the run.
CREATE TABLE spans (
    id              INTEGER PRIMARY KEY,
    resource_id     INTEGER NOT NULL,
    service_id      INTEGER NOT NULL,
    version_id      INTEGER,
    trace_key       INTEGER,
    trace_run       INTEGER,
    start_ns        INTEGER NOT NULL,
    end_ns          INTEGER NOT NULL,
    kind            INTEGER NOT NULL,
    status          INTEGER NOT NULL,
    summary         INTEGER NOT NULL CHECK (summary IN (0, 1)),
    exception       INTEGER NOT NULL CHECK (exception IN (0, 1)),
    trace_id        BLOB NOT NULL,
    span_id         BLOB NOT NULL,
    parent_span_id  BLOB,
    name            TEXT NOT NULL,
    status_message  TEXT NOT NULL,
    scope           TEXT NOT NULL,
    attributes      TEXT NOT NULL,
    events          TEXT
) STRICT;
-- The timeline (summary = 1, one service, a time range) and retention (both
-- summary values, one service, start_ns below a bound). summary before
-- start_ns keeps the summary spans of a service contiguous in time order.
CREATE INDEX spans_service_time ON spans (service_id, summary, start_ns);
-- Trace lookup: the runs of a trace (covering).
CREATE INDEX spans_trace ON spans (trace_key, trace_run) WHERE trace_key IS NOT NULL;
-- version_stats reads only this index (covering): server spans of one
-- version in a time range, with their duration and status.
CREATE INDEX spans_server ON spans (version_id, start_ns, end_ns, status)
    WHERE kind = 2 AND version_id IS NOT NULL;
-- error_messages: the few spans with status error or an exception event.
CREATE INDEX spans_errors ON spans (version_id, start_ns)
    WHERE (status = 2 OR exception = 1) AND version_id IS NOT NULL;

CREATE TABLE logs (
    id               INTEGER PRIMARY KEY,
    resource_id      INTEGER NOT NULL,
    service_id       INTEGER NOT NULL,
    version_id       INTEGER,
    time_ns          INTEGER NOT NULL,
    severity_number  INTEGER NOT NULL,
    trace_key        INTEGER,
    trace_id         BLOB,
    span_id          BLOB,
    severity_text    TEXT NOT NULL,
    scope            TEXT NOT NULL,
    body             TEXT NOT NULL,
    attributes       TEXT NOT NULL
) STRICT;
CREATE INDEX logs_service_time ON logs (service_id, time_ns);
CREATE INDEX logs_trace ON logs (trace_key) WHERE trace_key IS NOT NULL;
CREATE INDEX logs_errors ON logs (version_id, time_ns)
    WHERE severity_number >= 17 AND version_id IS NOT NULL;

-- The metric names of each service, so retention can walk points_series one
-- (service, name) range at a time.
CREATE TABLE metric_names (
    service_id  INTEGER NOT NULL,
    name        TEXT NOT NULL,
    PRIMARY KEY (service_id, name)
) STRICT, WITHOUT ROWID;

-- Non-finite floats: NaN is stored as NULL (and read back as NaN where the
-- record has no Option), infinities as they are.
CREATE TABLE points (
    id             INTEGER PRIMARY KEY,
    resource_id    INTEGER NOT NULL,
    service_id     INTEGER NOT NULL,
    time_ns        INTEGER NOT NULL,
    start_ns       INTEGER NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('gauge', 'sum', 'histogram', 'summary')),
    monotonic      INTEGER,
    cumulative     INTEGER,
    value          REAL,
    count          INTEGER,
    sum            REAL,
    min            REAL,
    max            REAL,
    name           TEXT NOT NULL,
    unit           TEXT NOT NULL,
    bounds         TEXT,
    bucket_counts  TEXT,
    quantiles      TEXT,
    attributes     TEXT NOT NULL
) STRICT;
CREATE INDEX points_series ON points (service_id, name, time_ns);

CREATE TABLE crossings (
    id           INTEGER PRIMARY KEY,
    resource_id  INTEGER NOT NULL,
    service_id   INTEGER NOT NULL,
    version_id   INTEGER,
    time_ns      INTEGER NOT NULL,
    value        REAL,
    limit_value  REAL,
    threshold    TEXT NOT NULL,
    metric       TEXT NOT NULL,
    direction    TEXT NOT NULL,
    attributes   TEXT NOT NULL
) STRICT;
CREATE INDEX crossings_service_time ON crossings (service_id, time_ns);

-- Deploy markers carry their fields as text: they are few, and explicit ones
-- may name a service that never sent telemetry.
CREATE TABLE deploys (
    id             TEXT PRIMARY KEY,
    time_ns        INTEGER NOT NULL,
    service        TEXT NOT NULL,
    version        TEXT,
    deployment_id  TEXT,
    commit_id      TEXT,
    env            TEXT,
    source         TEXT NOT NULL CHECK (source IN ('explicit', 'auto')),
    actor          TEXT NOT NULL
) STRICT;
CREATE INDEX deploys_time ON deploys (time_ns);
CREATE INDEX deploys_service_time ON deploys (service, time_ns);

-- Row counts kept by insert and remove_before, because count(*) over ten
-- million rows takes a second.
CREATE TABLE totals (
    kind  TEXT PRIMARY KEY,
    n     INTEGER NOT NULL
) STRICT;
INSERT INTO totals (kind, n) VALUES ('spans', 0), ('logs', 0), ('points', 0), ('crossings', 0);
";

/// Brings the database up to [`TELEMETRY_SCHEMA_VERSION`], or refuses one
/// that a newer binary has already migrated past it.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    crate::sqlite::migrations::run(conn, MIGRATIONS)
}

/// The highest applied version, 0 for a fresh database.
pub(super) fn current_version(conn: &Connection) -> Result<i64, StoreError> {
    crate::sqlite::migrations::current_version(conn)
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
