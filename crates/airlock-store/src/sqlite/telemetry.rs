//! The embedded SQLite implementation of [`TelemetryStore`]: one database
//! file of its own (the gateway uses `data_dir/telemetry/telemetry.db`), apart
//! from the control-plane store, so heavy ingest never competes with the
//! control plane's writes and retention can be as aggressive as it likes.
//!
//! Concurrency: one writer connection behind a mutex (SQLite allows a single
//! writer anyway, and the trait has a single writing caller) and a small pool
//! of reader connections. The file is in WAL mode, so readers see the last
//! committed snapshot and never block the writer, nor it them. A
//! `:memory:` database cannot be shared between connections without
//! shared-cache mode (whose table locks would make readers block the writer),
//! so [`SqliteTelemetry::open_in_memory`] reads through the writer connection.
//!
//! Durability: `synchronous = NORMAL`. In WAL mode that survives a process
//! crash and loses at most the last transactions on power loss, which is the
//! right trade for telemetry (the exporters' data is a copy, and OTLP clients
//! retry); the audit log carries Airlock's fsync guarantees, not this file.
//!
//! Ingest speed comes from: one transaction per [`insert`] call (which carries
//! several OTLP batches, group-commit style), cached prepared statements,
//! resources stored once and referenced by id (the writer keeps a hash → id
//! cache, so a known resource costs one hash per batch and no SQL), few
//! indexes, one trace index entry per run of a trace's spans in a batch
//! rather than per span (see the schema module), and WAL checkpoints on a
//! thread of their own (see [`Checkpointer`]). Attributes and span events
//! are stored as JSON text.
//!
//! Malformed input never panics: a record pointing at a resource the batch
//! does not have fails the whole call with [`StoreError::Invalid`]; NaN
//! floats in metric points and crossings are stored as NULL; counts beyond
//! `i64::MAX` saturate.
//!
//! [`insert`]: TelemetryStore::insert

mod read;
mod schema;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, ToSql, Transaction, TransactionBehavior,
};
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::telemetry::{
    Batch, Deploy, DeploySource, ErrorMessage, MetricKind, MetricPoint, Removed, Resource,
    TelemetryStore, TimelineEvent, TimelineQuery, Trace, VersionQuery, VersionStats,
};

pub use schema::TELEMETRY_SCHEMA_VERSION;

/// How long a call waits for another process's lock before failing with
/// "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Reader connections in the pool. Queries are short (indexed, limited), so a
/// few connections serve many concurrent API requests; more would only hold
/// more page cache.
const READERS: usize = 4;

/// The writer's page cache. The trace index is written in random order and
/// is what misses the cache; 64 MiB holds its upper levels, much of its
/// leaves, and the leaves that the time-ordered indexes append to, at tens
/// of millions of rows.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// Each reader's page cache.
const READER_CACHE_KIB: i64 = 16 * 1024;

/// Pages the WAL may grow to before the committing writer copies it back
/// into the database (SQLite's default is 1000, 4 MB). Under sustained ingest
/// a larger WAL means fewer, larger checkpoints, each with its own fsync.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 16_384;

/// How often the checkpoint thread runs (see [`Checkpointer`]).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Rows deleted per statement by [`TelemetryStore::remove_before`]; each
/// chunk is its own short transaction, so inserts wait at most one chunk.
const REMOVE_CHUNK: i64 = 10_000;

/// Statements cached per connection: the timeline builds its SQL from the
/// filters given, so there are more distinct statements than in the
/// control-plane store.
const STATEMENT_CACHE: usize = 64;

/// Telemetry store in one SQLite file. See the module docs.
pub struct SqliteTelemetry {
    writer: Mutex<Writer>,
    /// Empty for an in-memory database: reads then use the writer.
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// None for an in-memory database.
    checkpointer: Option<Checkpointer>,
}

/// A thread that copies the WAL back into the database file every
/// [`CHECKPOINT_EVERY`], so that the copying and, above all, its fsyncs
/// happen beside the writer instead of inside its `insert` calls (in the
/// insert bench the writer made about 130k spans/s with SQLite's automatic
/// checkpoints alone, 200k with this thread). Its checkpoints are PASSIVE: they
/// never wait for or block the writer or readers. The writer keeps SQLite's
/// automatic checkpoint at [`WAL_AUTOCHECKPOINT_PAGES`] as well: only a
/// checkpoint run right after a commit, with no commit racing it, backfills
/// the whole WAL so that the next transaction can start it over; by then
/// this thread has done most of the work, so the writer's share is small.
struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("telemetry-checkpoint".into())
            .spawn(move || {
                // A message or a dropped sender both mean stop.
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    // A failed checkpoint (another checkpoint running, an IO
                    // error) is retried next time; the writer's automatic
                    // checkpoint is the backstop, and the store has no one
                    // to report to here.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .map_err(|source| StoreError::Io {
                action: "start the checkpoint thread for",
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // The thread only ever ends; a panic in it is nothing to
            // propagate from a destructor.
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for SqliteTelemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteTelemetry")
            .field("readers", &self.readers.len())
            .field("checkpointer", &self.checkpointer.is_some())
            .finish_non_exhaustive()
    }
}

struct Writer {
    conn: Connection,
    /// What committed transactions created; see [`Cache`].
    cache: Cache,
}

/// The database ids of a stored resource.
#[derive(Debug, Clone, Copy)]
struct ResourceIds {
    id: i64,
    service_id: i64,
    version_id: Option<i64>,
}

/// A hash of every field of a resource; the dedup key of `resources`.
type ResourceHash = [u8; 16];

/// Ids the writer has looked up or created, so a batch of a known resource
/// needs no SQL to resolve it. Only committed rows may be in the writer's
/// cache: [`Writer::insert`] collects what a transaction creates in a second
/// `Cache` and merges it only after the commit, so a rolled-back insert leaves
/// no ids behind that point at rows that do not exist.
#[derive(Default)]
struct Cache {
    resources: HashMap<ResourceHash, ResourceIds>,
    services: HashMap<String, i64>,
    /// Metric names per service id already in `metric_names`.
    metric_names: HashMap<i64, HashSet<String>>,
}

impl Cache {
    fn absorb(&mut self, other: Cache) {
        self.resources.extend(other.resources);
        self.services.extend(other.services);
        for (service, names) in other.metric_names {
            self.metric_names.entry(service).or_default().extend(names);
        }
    }
}

/// The committed cache and the current transaction's additions, looked up
/// together.
struct Caches<'a> {
    committed: &'a Cache,
    pending: Cache,
}

impl Caches<'_> {
    fn resource(&self, hash: &ResourceHash) -> Option<ResourceIds> {
        self.committed
            .resources
            .get(hash)
            .or_else(|| self.pending.resources.get(hash))
            .copied()
    }

    fn service(&self, name: &str) -> Option<i64> {
        self.committed
            .services
            .get(name)
            .or_else(|| self.pending.services.get(name))
            .copied()
    }

    fn has_metric_name(&self, service_id: i64, name: &str) -> bool {
        let has = |c: &Cache| {
            c.metric_names
                .get(&service_id)
                .is_some_and(|names| names.contains(name))
        };
        has(self.committed) || has(&self.pending)
    }
}

/// Automatic deploy markers found so far in one `insert` call.
#[derive(Default)]
struct Markers {
    deploys: Vec<Deploy>,
    /// (service id, is a version (else a deployment id), value) → index in
    /// `deploys`, for pairs first seen in this call.
    by_pair: HashMap<(i64, bool, String), usize>,
}

impl Markers {
    /// Notes a resource new to the store whose records start at `first_ns`.
    fn note(
        &mut self,
        r: &Resource,
        service_id: i64,
        first_ns: i64,
        version_new: bool,
        deployment_new: bool,
    ) {
        let version_key = r.version.clone().map(|v| (service_id, true, v));
        let deployment_key = r.deployment_id.clone().map(|d| (service_id, false, d));
        if version_new || deployment_new {
            // One marker, even when both the version and the deployment id
            // are new: it is one deploy.
            let index = self.deploys.len();
            self.deploys.push(Deploy {
                id: crate::new_id("dep"),
                time_ns: first_ns,
                service: r.service.clone(),
                version: r.version.clone(),
                deployment_id: r.deployment_id.clone(),
                commit: None,
                env: r.env.clone(),
                source: DeploySource::Auto,
                actor: "telemetry".into(),
            });
            if let (true, Some(key)) = (version_new, version_key) {
                self.by_pair.insert(key, index);
            }
            if let (true, Some(key)) = (deployment_new, deployment_key) {
                self.by_pair.insert(key, index);
            }
        } else {
            // Another new resource of a pair first seen earlier in this call
            // (a second instance of the new version): its records may start
            // earlier, and the marker should be at the earliest.
            for key in [version_key, deployment_key].into_iter().flatten() {
                if let Some(&index) = self.by_pair.get(&key) {
                    let d = &mut self.deploys[index];
                    d.time_ns = d.time_ns.min(first_ns);
                }
            }
        }
    }
}

impl SqliteTelemetry {
    /// Opens (creating if needed) the telemetry database at `path` and
    /// migrates it. A missing parent directory is created with mode 0700 and
    /// the file with mode 0600 (telemetry carries request attributes that may
    /// be sensitive); SQLite gives the `-wal` and `-shm` files the same mode.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            super::create_private_dir(parent)?;
        }
        super::create_private_file(path)?;
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
        // See the module docs for why NORMAL is enough here.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        let writer = Self::writer(conn)?;
        // Readers are opened after the writer has migrated, so they never see
        // a half-created schema.
        let readers = (0..READERS)
            .map(|_| Self::reader(path).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            checkpointer: Some(Checkpointer::start(path)?),
        })
    }

    /// A private in-memory database, for tests. Reads go through the writer
    /// connection (see the module docs).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory()?;
        Ok(Self {
            writer: Mutex::new(Self::writer(conn)?),
            readers: Vec::new(),
            next_reader: AtomicUsize::new(0),
            checkpointer: None,
        })
    }

    fn writer(mut conn: Connection) -> Result<Writer, StoreError> {
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        schema::migrate(&mut conn)?;
        let cache = load_cache(&conn)?;
        Ok(Writer { conn, cache })
    }

    fn reader(path: &Path) -> Result<Connection, StoreError> {
        // Opened read-write but made query-only: a read-only open of a WAL
        // database needs the -shm file to exist already and cannot recover a
        // WAL, which makes it fragile for no gain.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        schema::current_version(&self.lock_writer().conn)
    }

    /// Stored points of one metric of one service in `[since_ns, until_ns)`,
    /// oldest first, at most `limit`, each with its resource (the record's
    /// `resource` index is 0 and meaningless). NaN values were stored as NULL
    /// and come back as `None` (`value`, `sum`, `min`, `max`) or NaN (inside
    /// `bounds` and `quantiles`).
    pub fn points(
        &self,
        service: &str,
        name: &str,
        since_ns: i64,
        until_ns: i64,
        limit: usize,
    ) -> Result<Vec<(MetricPoint, Resource)>, StoreError> {
        self.read(|conn| read::points(conn, service, name, since_ns, until_ns, limit))
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        // A panic while the lock was held happened outside a SQLite call or
        // inside a transaction that rolled back when dropped; the cache only
        // ever holds committed ids. Later calls may go on.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on a reader connection inside a read transaction, so a query
    /// of several statements sees one snapshot.
    fn read<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let run = |conn: &mut Connection| {
            let tx = conn.transaction()?;
            // Dropping the transaction rolls it back, which for reads only
            // ends it.
            f(&tx)
        };
        if self.readers.is_empty() {
            return run(&mut self.lock_writer().conn);
        }
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            match self.readers[(start + i) % n].try_lock() {
                Ok(mut conn) => return run(&mut conn),
                Err(TryLockError::Poisoned(p)) => return run(&mut p.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let mut conn = self.readers[start]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        run(&mut conn)
    }
}

/// The writer's cache of resources and services, rebuilt when the database is
/// opened. Metric names fill in lazily (a miss costs one INSERT OR IGNORE).
fn load_cache(conn: &Connection) -> Result<Cache, StoreError> {
    let mut cache = Cache::default();
    let mut stmt = conn.prepare("SELECT hash, id, service_id, version_id FROM resources")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let hash: Vec<u8> = row.get(0)?;
        let id: i64 = row.get(1)?;
        let hash = hash.try_into().map_err(|_| StoreError::Corrupt {
            what: "resource",
            id: id.to_string(),
            reason: "hash is not 16 bytes".into(),
        })?;
        cache.resources.insert(
            hash,
            ResourceIds {
                id,
                service_id: row.get(2)?,
                version_id: row.get(3)?,
            },
        );
    }
    let mut stmt = conn.prepare("SELECT name, id FROM services")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        cache.services.insert(row.get(0)?, row.get(1)?);
    }
    Ok(cache)
}

/// The dedup key of a resource: SHA-256 (truncated to 128 bits, still far
/// from any collision) over every field, length-prefixed so that fields
/// cannot run into each other, with the attributes in key order whatever
/// order the map iterates in.
fn resource_hash(r: &Resource) -> ResourceHash {
    fn field(h: &mut Sha256, value: Option<&str>) {
        match value {
            None => h.update([0]),
            Some(s) => {
                h.update([1]);
                h.update((s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    let mut h = Sha256::new();
    field(&mut h, Some(&r.service));
    field(&mut h, r.version.as_deref());
    field(&mut h, r.env.as_deref());
    field(&mut h, r.deployment_id.as_deref());
    field(&mut h, r.instance_id.as_deref());
    field(&mut h, r.host.as_deref());
    let mut keys: Vec<&String> = r.attributes.keys().collect();
    keys.sort();
    for key in keys {
        field(&mut h, Some(key));
        field(&mut h, Some(&r.attributes[key].to_string()));
    }
    let digest = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// The trace index key: the trace id's last 8 bytes (see the schema).
fn trace_key(trace_id: &[u8; 16]) -> i64 {
    let mut last = [0u8; 8];
    last.copy_from_slice(&trace_id[8..]);
    i64::from_be_bytes(last)
}

/// SQLite stores a bound NaN as NULL anyway; saying so keeps `STRICT` columns
/// and the reading side honest about it.
fn finite_or_null(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

/// Counts beyond `i64::MAX` do not occur in practice; saturate rather than
/// fail the batch.
fn count_to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid {
        what: "telemetry record",
        reason: format!("cannot encode as JSON: {e}"),
    })
}

/// A reusable buffer of JSON text, bound as SQL text without a copy: the
/// hot insert loops encode two JSON values per row, and a fresh `String` for
/// each was a measurable share of the insert cost.
#[derive(Default)]
struct JsonText(Vec<u8>);

impl JsonText {
    fn encode<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<&Self, StoreError> {
        self.0.clear();
        serde_json::to_writer(&mut self.0, value).map_err(|e| StoreError::Invalid {
            what: "telemetry record",
            reason: format!("cannot encode as JSON: {e}"),
        })?;
        Ok(self)
    }
}

impl ToSql for JsonText {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        // serde_json writes UTF-8 only.
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(&self.0)))
    }
}

const INSERT_SPAN: &str = "INSERT INTO spans (resource_id, service_id, version_id, trace_key,
    trace_run, start_ns, end_ns, kind, status, summary, exception, trace_id, span_id,
    parent_span_id, name, status_message, scope, attributes, events)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)";

const INSERT_LOG: &str = "INSERT INTO logs (resource_id, service_id, version_id, time_ns,
    severity_number, trace_key, trace_id, span_id, severity_text, scope, body, attributes)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

const INSERT_POINT: &str = "INSERT INTO points (resource_id, service_id, time_ns, start_ns, kind,
    monotonic, cumulative, value, count, sum, min, max, name, unit, bounds, bucket_counts,
    quantiles, attributes)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";

const INSERT_CROSSING: &str = "INSERT INTO crossings (resource_id, service_id, version_id,
    time_ns, value, limit_value, threshold, metric, direction, attributes)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

const INSERT_DEPLOY: &str = "INSERT INTO deploys (id, time_ns, service, version, deployment_id,
    commit_id, env, source, actor) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// Rows added per table in one transaction, for `totals`.
#[derive(Default)]
struct Added {
    spans: i64,
    logs: i64,
    points: i64,
    crossings: i64,
}

impl Writer {
    fn insert(&mut self, batches: &[&Batch]) -> Result<Vec<Deploy>, StoreError> {
        let Writer { conn, cache } = self;
        let mut caches = Caches {
            committed: cache,
            pending: Cache::default(),
        };
        let result = insert_all(conn, &mut caches, batches);
        let pending = caches.pending;
        // Only a committed transaction's ids may enter the cache.
        if result.is_ok() {
            cache.absorb(pending);
        }
        result
    }

    fn insert_deploy(&mut self, d: &Deploy) -> Result<(), StoreError> {
        let Writer { conn, cache } = self;
        let mut caches = Caches {
            committed: cache,
            pending: Cache::default(),
        };
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            insert_deploy_row(&tx, d)?;
            let service_id = service_id(&tx, &mut caches, &d.service)?;
            if let Some(version) = &d.version {
                version_pair(&tx, service_id, version, d.time_ns)?;
            }
            if let Some(deployment_id) = &d.deployment_id {
                deployment_pair(&tx, service_id, deployment_id, d.time_ns)?;
            }
            tx.commit()?;
            Ok(())
        })();
        let pending = caches.pending;
        if result.is_ok() {
            cache.absorb(pending);
        }
        result
    }
}

fn insert_all(
    conn: &mut Connection,
    caches: &mut Caches<'_>,
    batches: &[&Batch],
) -> Result<Vec<Deploy>, StoreError> {
    // IMMEDIATE takes the write lock up front, so a busy database fails (or
    // waits) here rather than halfway through the batches.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut markers = Markers::default();
    let mut added = Added::default();
    for batch in batches {
        insert_batch(&tx, caches, &mut markers, &mut added, batch)?;
    }
    for d in &markers.deploys {
        insert_deploy_row(&tx, d)?;
    }
    {
        let mut stmt = tx.prepare_cached("UPDATE totals SET n = n + ?2 WHERE kind = ?1")?;
        for (kind, n) in [
            ("spans", added.spans),
            ("logs", added.logs),
            ("points", added.points),
            ("crossings", added.crossings),
        ] {
            if n != 0 {
                stmt.execute(params![kind, n])?;
            }
        }
    }
    tx.commit()?;
    Ok(markers.deploys)
}

fn invalid_index(what: &str, index: usize, resource: usize, resources: usize) -> StoreError {
    StoreError::Invalid {
        what: "telemetry batch",
        reason: format!(
            "{what} {index} refers to resource {resource}, but the batch has {resources} resources"
        ),
    }
}

fn insert_batch(
    tx: &Transaction<'_>,
    caches: &mut Caches<'_>,
    markers: &mut Markers,
    added: &mut Added,
    batch: &Batch,
) -> Result<(), StoreError> {
    let n = batch.resources.len();
    // The earliest record time of each resource, and a check of every index
    // before the first row of this batch is written.
    let mut first: Vec<Option<i64>> = vec![None; n];
    let mut see = |what: &str, index: usize, resource: usize, time_ns: i64| {
        let slot = first
            .get_mut(resource)
            .ok_or_else(|| invalid_index(what, index, resource, n))?;
        *slot = Some(slot.map_or(time_ns, |t| t.min(time_ns)));
        Ok::<_, StoreError>(())
    };
    for (i, s) in batch.spans.iter().enumerate() {
        see("span", i, s.resource, s.start_ns)?;
    }
    for (i, l) in batch.logs.iter().enumerate() {
        see("log record", i, l.resource, l.time_ns)?;
    }
    for (i, p) in batch.points.iter().enumerate() {
        see("metric point", i, p.resource, p.time_ns)?;
    }
    for (i, c) in batch.crossings.iter().enumerate() {
        see("crossing", i, c.resource, c.time_ns)?;
    }

    // Resources no record refers to are not stored: they would add deploy
    // markers without any telemetry to show for them.
    let mut ids: Vec<Option<ResourceIds>> = vec![None; n];
    for (i, r) in batch.resources.iter().enumerate() {
        if let Some(first_ns) = first[i] {
            ids[i] = Some(resolve_resource(tx, caches, markers, r, first_ns)?);
        }
    }
    let ids_of = |what: &str, index: usize, resource: usize| {
        ids.get(resource)
            .copied()
            .flatten()
            .ok_or_else(|| invalid_index(what, index, resource, n))
    };

    if !batch.spans.is_empty() {
        let mut stmt = tx.prepare_cached(INSERT_SPAN)?;
        // The spans of one trace one after the other (a stable sort keeps
        // their order otherwise), so that each trace run gets consecutive
        // ids and one trace index entry (see the schema).
        let mut attributes = JsonText::default();
        let mut events_text = JsonText::default();
        let mut order: Vec<usize> = (0..batch.spans.len()).collect();
        order.sort_by_key(|&i| batch.spans[i].trace_id);
        let mut run_start = 0;
        let mut head_id = 0;
        for (k, &i) in order.iter().enumerate() {
            let s = &batch.spans[i];
            let r = ids_of("span", i, s.resource)?;
            let is_head = k == 0 || batch.spans[order[k - 1]].trace_id != s.trace_id;
            let (key, run) = if is_head {
                run_start = k;
                let len = order[k..]
                    .iter()
                    .take_while(|&&j| batch.spans[j].trace_id == s.trace_id)
                    .count();
                (Some(trace_key(&s.trace_id)), Some(len as i64))
            } else {
                (None, None)
            };
            attributes.encode(&s.attributes)?;
            let events = if s.events.is_empty() {
                None
            } else {
                Some(events_text.encode(&s.events)?)
            };
            let exception = s.events.iter().any(|e| e.name == "exception");
            stmt.execute(params![
                r.id,
                r.service_id,
                r.version_id,
                key,
                run,
                s.start_ns,
                s.end_ns,
                s.kind as i64,
                s.status as i64,
                s.is_summary(),
                exception,
                &s.trace_id[..],
                &s.span_id[..],
                s.parent_span_id.as_ref().map(|p| &p[..]),
                s.name,
                s.status_message,
                s.scope,
                &attributes,
                events,
            ])?;
            // SQLite gives a new row the largest id plus one (until ids
            // reach i64::MAX), so a run's ids are consecutive; a trace lookup
            // relies on it, so check rather than assume.
            let id = tx.last_insert_rowid();
            if is_head {
                head_id = id;
            } else if id != head_id + (k - run_start) as i64 {
                return Err(StoreError::Corrupt {
                    what: "spans table",
                    id: id.to_string(),
                    reason: format!("span ids are no longer consecutive (after {head_id})"),
                });
            }
        }
        added.spans += batch.spans.len() as i64;
    }

    if !batch.logs.is_empty() {
        let mut stmt = tx.prepare_cached(INSERT_LOG)?;
        let mut attributes = JsonText::default();
        for (i, l) in batch.logs.iter().enumerate() {
            let r = ids_of("log record", i, l.resource)?;
            attributes.encode(&l.attributes)?;
            stmt.execute(params![
                r.id,
                r.service_id,
                r.version_id,
                l.time_ns,
                l.severity_number,
                l.trace_id.as_ref().map(trace_key),
                l.trace_id.as_ref().map(|t| &t[..]),
                l.span_id.as_ref().map(|s| &s[..]),
                l.severity_text,
                l.scope,
                l.body,
                &attributes,
            ])?;
        }
        added.logs += batch.logs.len() as i64;
    }

    if !batch.points.is_empty() {
        let mut insert = tx.prepare_cached(INSERT_POINT)?;
        for (i, p) in batch.points.iter().enumerate() {
            let r = ids_of("metric point", i, p.resource)?;
            if !caches.has_metric_name(r.service_id, &p.name) {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO metric_names (service_id, name) VALUES (?1, ?2)",
                )?
                .execute(params![r.service_id, p.name])?;
                caches
                    .pending
                    .metric_names
                    .entry(r.service_id)
                    .or_default()
                    .insert(p.name.clone());
            }
            let (monotonic, cumulative) = match p.kind {
                MetricKind::Sum {
                    monotonic,
                    cumulative,
                } => (Some(monotonic), Some(cumulative)),
                MetricKind::Histogram { cumulative } => (None, Some(cumulative)),
                MetricKind::Gauge | MetricKind::Summary => (None, None),
            };
            let json_unless_empty = |empty: bool, text: Result<String, StoreError>| {
                if empty {
                    Ok(None)
                } else {
                    text.map(Some)
                }
            };
            let bounds = json_unless_empty(p.bounds.is_empty(), json(&p.bounds))?;
            let bucket_counts =
                json_unless_empty(p.bucket_counts.is_empty(), json(&p.bucket_counts))?;
            let quantiles = json_unless_empty(p.quantiles.is_empty(), json(&p.quantiles))?;
            insert.execute(params![
                r.id,
                r.service_id,
                p.time_ns,
                p.start_ns,
                p.kind.as_str(),
                monotonic,
                cumulative,
                p.value.and_then(finite_or_null),
                p.count.map(count_to_i64),
                p.sum.and_then(finite_or_null),
                p.min.and_then(finite_or_null),
                p.max.and_then(finite_or_null),
                p.name,
                p.unit,
                bounds,
                bucket_counts,
                quantiles,
                json(&p.attributes)?,
            ])?;
        }
        added.points += batch.points.len() as i64;
    }

    if !batch.crossings.is_empty() {
        let mut stmt = tx.prepare_cached(INSERT_CROSSING)?;
        for (i, c) in batch.crossings.iter().enumerate() {
            let r = ids_of("crossing", i, c.resource)?;
            stmt.execute(params![
                r.id,
                r.service_id,
                r.version_id,
                c.time_ns,
                finite_or_null(c.value),
                finite_or_null(c.limit),
                c.threshold,
                c.metric,
                c.direction,
                json(&c.attributes)?,
            ])?;
        }
        added.crossings += batch.crossings.len() as i64;
    }
    Ok(())
}

/// The ids of a resource, storing it first if it is new; a new resource whose
/// (service, version) or (service, deployment.id) is new adds a deploy
/// marker at `first_ns`, its earliest record in the batch.
fn resolve_resource(
    tx: &Transaction<'_>,
    caches: &mut Caches<'_>,
    markers: &mut Markers,
    r: &Resource,
    first_ns: i64,
) -> Result<ResourceIds, StoreError> {
    let hash = resource_hash(r);
    if let Some(ids) = caches.resource(&hash) {
        return Ok(ids);
    }
    // Not cached, but another process (or a binary whose cache was lost) may
    // have stored it: then its pairs were seen then, and it is no deploy.
    let existing = tx
        .prepare_cached("SELECT id, service_id, version_id FROM resources WHERE hash = ?1")?
        .query_row([&hash[..]], |row| {
            Ok(ResourceIds {
                id: row.get(0)?,
                service_id: row.get(1)?,
                version_id: row.get(2)?,
            })
        })
        .optional()?;
    if let Some(ids) = existing {
        caches.pending.resources.insert(hash, ids);
        return Ok(ids);
    }
    let service_id = service_id(tx, caches, &r.service)?;
    let (version_id, version_new) = match &r.version {
        Some(v) => {
            let (id, new) = version_pair(tx, service_id, v, first_ns)?;
            (Some(id), new)
        }
        None => (None, false),
    };
    let deployment_new = match &r.deployment_id {
        Some(d) => deployment_pair(tx, service_id, d, first_ns)?,
        None => false,
    };
    tx.prepare_cached(
        "INSERT INTO resources (hash, service_id, version_id, service, version, env,
            deployment_id, instance_id, host, attributes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        &hash[..],
        service_id,
        version_id,
        r.service,
        r.version,
        r.env,
        r.deployment_id,
        r.instance_id,
        r.host,
        json(&r.attributes)?,
    ])?;
    let ids = ResourceIds {
        id: tx.last_insert_rowid(),
        service_id,
        version_id,
    };
    caches.pending.resources.insert(hash, ids);
    markers.note(r, service_id, first_ns, version_new, deployment_new);
    Ok(ids)
}

fn service_id(
    tx: &Transaction<'_>,
    caches: &mut Caches<'_>,
    name: &str,
) -> Result<i64, StoreError> {
    if let Some(id) = caches.service(name) {
        return Ok(id);
    }
    tx.prepare_cached("INSERT OR IGNORE INTO services (name) VALUES (?1)")?
        .execute([name])?;
    let id: i64 = tx
        .prepare_cached("SELECT id FROM services WHERE name = ?1")?
        .query_row([name], |row| row.get(0))?;
    caches.pending.services.insert(name.to_owned(), id);
    Ok(id)
}

/// The id of a (service, version) pair and whether it is new. An existing
/// pair's first-seen time moves earlier if `time_ns` is (late telemetry, or a
/// deploy marked after the fact).
fn version_pair(
    tx: &Transaction<'_>,
    service_id: i64,
    version: &str,
    time_ns: i64,
) -> Result<(i64, bool), StoreError> {
    let found: Option<(i64, i64)> = tx
        .prepare_cached("SELECT id, first_ns FROM versions WHERE service_id = ?1 AND version = ?2")?
        .query_row(params![service_id, version], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    match found {
        Some((id, first_ns)) => {
            if time_ns < first_ns {
                tx.prepare_cached("UPDATE versions SET first_ns = ?2 WHERE id = ?1")?
                    .execute(params![id, time_ns])?;
            }
            Ok((id, false))
        }
        None => {
            tx.prepare_cached(
                "INSERT INTO versions (service_id, version, first_ns) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![service_id, version, time_ns])?;
            Ok((tx.last_insert_rowid(), true))
        }
    }
}

/// Whether a (service, deployment.id) pair is new; like [`version_pair`].
fn deployment_pair(
    tx: &Transaction<'_>,
    service_id: i64,
    deployment_id: &str,
    time_ns: i64,
) -> Result<bool, StoreError> {
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO deployment_ids (service_id, deployment_id, first_ns)
             VALUES (?1, ?2, ?3)",
        )?
        .execute(params![service_id, deployment_id, time_ns])?;
    if inserted == 0 {
        tx.prepare_cached(
            "UPDATE deployment_ids SET first_ns = ?3
             WHERE service_id = ?1 AND deployment_id = ?2 AND first_ns > ?3",
        )?
        .execute(params![service_id, deployment_id, time_ns])?;
    }
    Ok(inserted == 1)
}

fn insert_deploy_row(tx: &Transaction<'_>, d: &Deploy) -> Result<(), StoreError> {
    tx.prepare_cached(INSERT_DEPLOY)?
        .execute(params![
            d.id,
            d.time_ns,
            d.service,
            d.version,
            d.deployment_id,
            d.commit,
            d.env,
            d.source.as_str(),
            d.actor,
        ])
        .map_err(|e| super::conflict(e, "deploy", &d.id))?;
    Ok(())
}

/// Deletes one chunk and books it in `totals`, in one short transaction.
fn delete_chunk(
    conn: &mut Connection,
    kind: &str,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<u64, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = tx.prepare_cached(sql)?.execute(args)?;
    tx.prepare_cached("UPDATE totals SET n = n - ?2 WHERE kind = ?1")?
        .execute(params![kind, n as i64])?;
    tx.commit()?;
    Ok(n as u64)
}

/// One chunk of span retention: up to [`REMOVE_CHUNK`] spans of `service`
/// that started before `before_ns`, and with each trace-run head among them
/// the rest of its run. Only a run's head is in the trace index (see the
/// schema), so a run whose head is gone could no longer be found by trace id:
/// retention removes runs whole instead of leaving such orphans. Returns the
/// spans selected (to know whether more are left) and the spans removed.
fn delete_spans_chunk(
    conn: &mut Connection,
    service: i64,
    summary: i64,
    before_ns: i64,
) -> Result<(u64, u64), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let chunk = tx
        .prepare_cached(
            "SELECT id, trace_run FROM spans INDEXED BY spans_service_time
             WHERE service_id = ?1 AND summary = ?2 AND start_ns < ?3 LIMIT ?4",
        )?
        .query_map(params![service, summary, before_ns, REMOVE_CHUNK], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Option<i64>>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut removed = 0;
    {
        let mut one = tx.prepare_cached("DELETE FROM spans WHERE id = ?1")?;
        // A run's other spans carry NULL trace_run; the condition keeps a
        // head of a later run (never inside the range, but cheap to be sure)
        // out.
        let mut tail =
            tx.prepare_cached("DELETE FROM spans WHERE id > ?1 AND id < ?2 AND trace_run IS NULL")?;
        for &(id, run) in &chunk {
            removed += one.execute([id])?;
            if let Some(len) = run.filter(|&len| len > 1) {
                removed += tail.execute([id, id.saturating_add(len)])?;
            }
        }
    }
    tx.prepare_cached("UPDATE totals SET n = n - ?2 WHERE kind = ?1")?
        .execute(params!["spans", removed as i64])?;
    tx.commit()?;
    Ok((chunk.len() as u64, removed as u64))
}

impl SqliteTelemetry {
    /// Deletes chunk after chunk until one comes back short, taking the
    /// writer lock per chunk only.
    fn delete_chunks(
        &self,
        kind: &str,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = delete_chunk(&mut self.lock_writer().conn, kind, sql, args)?;
            total += n;
            if n < REMOVE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }
}

impl TelemetryStore for SqliteTelemetry {
    fn insert(&self, batches: &[&Batch]) -> Result<Vec<Deploy>, StoreError> {
        if batches.iter().all(|b| b.is_empty()) {
            return Ok(Vec::new());
        }
        self.lock_writer().insert(batches)
    }

    fn insert_deploy(&self, deploy: &Deploy) -> Result<(), StoreError> {
        self.lock_writer().insert_deploy(deploy)
    }

    fn deploys(
        &self,
        service: Option<&str>,
        since_ns: i64,
        until_ns: i64,
        limit: usize,
    ) -> Result<Vec<Deploy>, StoreError> {
        self.read(|conn| read::deploys(conn, service, since_ns, until_ns, limit))
    }

    fn timeline(&self, q: &TimelineQuery) -> Result<Vec<TimelineEvent>, StoreError> {
        self.read(|conn| read::timeline(conn, q))
    }

    fn trace(&self, trace_id: &[u8; 16]) -> Result<Trace, StoreError> {
        self.read(|conn| read::trace(conn, trace_id))
    }

    fn version_stats(&self, q: &VersionQuery) -> Result<VersionStats, StoreError> {
        self.read(|conn| read::version_stats(conn, q))
    }

    fn error_messages(
        &self,
        q: &VersionQuery,
        limit: usize,
    ) -> Result<Vec<ErrorMessage>, StoreError> {
        self.read(|conn| read::error_messages(conn, q, limit))
    }

    fn versions(&self, service: &str) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(|conn| read::versions(conn, service))
    }

    fn remove_before(&self, before_ns: i64) -> Result<Removed, StoreError> {
        let (services, metric_names) = {
            let writer = self.lock_writer();
            let services = writer
                .conn
                .prepare_cached("SELECT id FROM services")?
                .query_map([], |row| row.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let names = writer
                .conn
                .prepare_cached("SELECT service_id, name FROM metric_names")?
                .query_map([], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            (services, names)
        };
        // Every delete walks one range of an index that starts with the
        // service (and, for points, the metric name), because rows have no
        // index on time alone: it would cost every insert to serve this
        // hourly pass.
        let mut removed = Removed::default();
        for &service in &services {
            for summary in [0i64, 1] {
                loop {
                    let (selected, n) = delete_spans_chunk(
                        &mut self.lock_writer().conn,
                        service,
                        summary,
                        before_ns,
                    )?;
                    removed.spans += n;
                    if selected < REMOVE_CHUNK as u64 {
                        break;
                    }
                }
            }
            removed.logs += self.delete_chunks(
                "logs",
                "DELETE FROM logs WHERE id IN (
                    SELECT id FROM logs INDEXED BY logs_service_time
                    WHERE service_id = ?1 AND time_ns < ?2 LIMIT ?3)",
                &[&service, &before_ns, &REMOVE_CHUNK],
            )?;
            removed.crossings += self.delete_chunks(
                "crossings",
                "DELETE FROM crossings WHERE id IN (
                    SELECT id FROM crossings INDEXED BY crossings_service_time
                    WHERE service_id = ?1 AND time_ns < ?2 LIMIT ?3)",
                &[&service, &before_ns, &REMOVE_CHUNK],
            )?;
        }
        for (service, name) in &metric_names {
            removed.points += self.delete_chunks(
                "points",
                "DELETE FROM points WHERE id IN (
                    SELECT id FROM points INDEXED BY points_series
                    WHERE service_id = ?1 AND name = ?2 AND time_ns < ?3 LIMIT ?4)",
                &[service, name, &before_ns, &REMOVE_CHUNK],
            )?;
        }
        Ok(removed)
    }

    fn used_bytes(&self) -> Result<Option<u64>, StoreError> {
        self.read(|conn| {
            let pragma = |name: &str| -> Result<u64, StoreError> {
                let n: i64 = conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?;
                Ok(u64::try_from(n).unwrap_or(0))
            };
            let pages = pragma("page_count")?.saturating_sub(pragma("freelist_count")?);
            Ok(Some(pages.saturating_mul(pragma("page_size")?)))
        })
    }

    fn counts(&self) -> Result<(u64, u64, u64), StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT kind, n FROM totals")?;
            let mut rows = stmt.query([])?;
            let (mut spans, mut logs, mut points) = (0, 0, 0);
            while let Some(row) = rows.next()? {
                let kind: String = row.get(0)?;
                // Never negative unless the file was edited; clamp rather
                // than wrap.
                let n = u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0);
                match kind.as_str() {
                    "spans" => spans = n,
                    "logs" => logs = n,
                    "points" => points = n,
                    _ => {}
                }
            }
            Ok((spans, logs, points))
        })
    }
}
