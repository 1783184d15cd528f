//! The ingest pipeline: receivers hand converted batches to one writer
//! thread, which stores them in groups and answers each receiver.
//!
//! Why one thread: the embedded store has one writer anyway, and grouping
//! many export requests into one transaction is what makes 100k spans a
//! second possible. Why a thread and not a task: a store commit blocks for
//! milliseconds, and the tokio workers also run the PostgreSQL proxy, whose
//! latency must not depend on telemetry.
//!
//! Backpressure: every queued batch is charged an estimate of its memory
//! (`cost`). When the queue holds more than `max_pending`, [`Ingest::submit`]
//! refuses at once with [`IngestError::Busy`], which receivers turn into
//! OTLP's retryable answers (HTTP 503 with `Retry-After`, gRPC
//! `UNAVAILABLE`). Memory therefore stays bounded however fast clients send,
//! and a client never waits on a queue that only grows.
//!
//! Each receiver waits for its own batch's commit before answering, so a
//! success means stored, and a failure means nothing of that request was
//! stored (each batch is one all-or-nothing unit; see
//! [`TelemetryStore::insert`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_config::{Threshold, ThresholdStat};
use airlock_store::telemetry::{Batch, Crossing, MetricKind, MetricPoint, TelemetryStore};
use std::sync::mpsc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use tokio::sync::oneshot;

/// At most this many records go into one store transaction.
const GROUP_RECORDS: usize = 32 * 1024;
/// How often, at most, the writer checks the store against `max_size`.
const SIZE_CHECK_EVERY: Duration = Duration::from_secs(2);
/// `max_size` never removes the last minute.
const MIN_KEEP_NS: i64 = 60_000_000_000;
/// How often the writer removes telemetry older than `retain`.
const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// Threshold series remembered at most; beyond, the memory is cleared (a
/// series then counts as "below" again, so at worst a crossing repeats).
const MAX_SERIES: usize = 100_000;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IngestError {
    /// The queue is full: the client should retry later.
    #[error("the telemetry store is behind ({pending} bytes waiting, limit {limit}); retry later")]
    Busy { pending: usize, limit: usize },
    /// The store failed; nothing of the batch was stored.
    #[error("the telemetry store failed: {0}")]
    Store(String),
    /// The gateway is stopping.
    #[error("the telemetry pipeline is stopped")]
    Stopped,
    /// The data directory's disk is nearly full: ingest waits, so the
    /// audit log keeps room.
    #[error("telemetry ingest is paused: the gateway's data directory has {free} bytes free, below [telemetry] min_free_space ({floor} bytes), and the audit log needs that room; free disk space on the gateway (or shorten [telemetry] retain), then retry")]
    DiskLow { free: u64, floor: u64 },
}

impl IngestError {
    /// Whether OTLP clients should retry the same request.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            IngestError::Busy { .. } | IngestError::Stopped | IngestError::DiskLow { .. }
        )
    }
}

/// Counters for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub refused_busy: AtomicU64,
    pub failed: AtomicU64,
}

struct Job {
    batch: Batch,
    cost: usize,
    done: oneshot::Sender<Result<(), IngestError>>,
}

/// What the writer needs besides the store.
pub struct Options {
    /// Bytes of queued telemetry at most (an estimate: see [`batch_cost`]).
    pub max_pending: usize,
    /// Telemetry older than this is removed.
    pub retain: Duration,
    pub thresholds: Vec<Threshold>,
    /// Unix nanoseconds now; injectable for tests.
    pub now_ns: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// The most the store may hold (bytes); above it the oldest telemetry
    /// is removed first. `None`: only `retain` applies.
    pub max_size: Option<u64>,
    /// Ingest is refused while the filesystem holding this directory has
    /// fewer than `min_free` bytes free (the audit log lives there).
    pub disk: Option<(std::path::PathBuf, u64)>,
}

/// How long a free-space reading is trusted.
const DISK_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The free-space floor and the last reading.
struct DiskFloor {
    dir: std::path::PathBuf,
    min_free: u64,
    last: Mutex<Option<(Instant, u64)>>,
}

impl DiskFloor {
    fn check(&self) -> Result<(), IngestError> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let free = match *last {
            Some((at, free)) if at.elapsed() < DISK_CHECK_EVERY => free,
            _ => {
                // Unreadable: treated as full (fail closed).
                let free = free_space(&self.dir).unwrap_or(0);
                *last = Some((Instant::now(), free));
                free
            }
        };
        if free < self.min_free {
            return Err(IngestError::DiskLow {
                free,
                floor: self.min_free,
            });
        }
        Ok(())
    }
}

/// Bytes available to unprivileged writers on the filesystem of `dir`.
pub fn free_space(dir: &std::path::Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// A handle to the pipeline; clones share it.
#[derive(Clone)]
pub struct Ingest {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<Job>,
    pending: AtomicUsize,
    max_pending: usize,
    counters: Counters,
    thresholds: Mutex<Vec<Threshold>>,
    disk: Option<DiskFloor>,
}

impl Ingest {
    /// Starts the writer thread. It stops when every handle is dropped.
    pub fn start(store: Arc<dyn TelemetryStore>, opts: Options) -> std::io::Result<Ingest> {
        let (tx, rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            tx,
            pending: AtomicUsize::new(0),
            max_pending: opts.max_pending,
            counters: Counters::default(),
            thresholds: Mutex::new(opts.thresholds.clone()),
            disk: opts.disk.map(|(dir, min_free)| DiskFloor {
                dir,
                min_free,
                last: Mutex::new(None),
            }),
        });
        let writer = Writer {
            store,
            rx,
            inner: Arc::downgrade(&inner),
            retain_ns: i64::try_from(opts.retain.as_nanos()).unwrap_or(i64::MAX),
            max_size: opts.max_size,
            last_size_check: None,
            now_ns: opts.now_ns,
            series: HashMap::new(),
        };
        std::thread::Builder::new()
            .name("airlock-telemetry-writer".into())
            .spawn(move || writer.run())?;
        Ok(Ingest { inner })
    }

    /// Queues `batch` and waits until it is stored. `rejected` records were
    /// already dropped by the converter; they are only counted here.
    pub async fn submit(&self, batch: Batch, rejected: u64) -> Result<(), IngestError> {
        let inner = &self.inner;
        inner
            .counters
            .rejected
            .fetch_add(rejected, Ordering::Relaxed);
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(disk) = &inner.disk {
            if let Err(e) = disk.check() {
                inner.counters.refused_busy.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        }
        let cost = batch_cost(&batch);
        let records = batch.len() as u64;
        // Reserve first, then check: two receivers racing for the last room
        // cannot both get in.
        let before = inner.pending.fetch_add(cost, Ordering::AcqRel);
        if before > 0 && before + cost > inner.max_pending {
            inner.pending.fetch_sub(cost, Ordering::AcqRel);
            inner.counters.refused_busy.fetch_add(1, Ordering::Relaxed);
            return Err(IngestError::Busy {
                pending: before,
                limit: inner.max_pending,
            });
        }
        let (done, answer) = oneshot::channel();
        if inner.tx.send(Job { batch, cost, done }).is_err() {
            inner.pending.fetch_sub(cost, Ordering::AcqRel);
            return Err(IngestError::Stopped);
        }
        let result = answer.await.unwrap_or(Err(IngestError::Stopped));
        match &result {
            Ok(_) => inner
                .counters
                .accepted
                .fetch_add(records, Ordering::Relaxed),
            Err(_) => inner.counters.failed.fetch_add(records, Ordering::Relaxed),
        };
        result
    }

    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Bytes queued now (the estimate).
    pub fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::Acquire)
    }

    /// The pipeline's counters as Prometheus metrics, for the gateway's
    /// `/metrics`. The collector holds no handle, so registering it does not
    /// keep the writer alive.
    pub fn collector(&self) -> IngestCollector {
        IngestCollector {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Replaces the thresholds (config reload).
    pub fn set_thresholds(&self, thresholds: Vec<Threshold>) {
        *self.inner.thresholds.lock().expect("not poisoned") = thresholds;
    }
}

/// See [`Ingest::collector`].
#[derive(Debug)]
pub struct IngestCollector {
    inner: std::sync::Weak<Inner>,
}

impl Collector for IngestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(inner) = self.inner.upgrade() else {
            return Ok(());
        };
        let c = &inner.counters;
        let records = encoder.encode_descriptor(
            "airlock_telemetry_records",
            "Telemetry records (spans, log records, metric points) by outcome",
            None,
            MetricType::Counter,
        )?;
        encode_family(
            records,
            [
                ("accepted", &c.accepted),
                ("rejected", &c.rejected),
                ("failed", &c.failed),
            ],
        )?;
        let busy = ConstCounter::new(c.refused_busy.load(Ordering::Relaxed));
        busy.encode(encoder.encode_descriptor(
            "airlock_telemetry_refused_busy",
            "Export requests answered 503/UNAVAILABLE because the store was behind",
            None,
            busy.metric_type(),
        )?)?;
        let pending = ConstGauge::new(inner.pending.load(Ordering::Acquire) as i64);
        pending.encode(encoder.encode_descriptor(
            "airlock_telemetry_pending_bytes",
            "Estimated bytes of telemetry queued for the store",
            None,
            pending.metric_type(),
        )?)?;
        let limit = ConstGauge::new(inner.max_pending as i64);
        limit.encode(encoder.encode_descriptor(
            "airlock_telemetry_pending_limit_bytes",
            "The queue limit ([telemetry] max_pending); above it exports are refused",
            None,
            limit.metric_type(),
        )?)
    }
}

fn encode_family<const N: usize>(
    mut encoder: prometheus_client::encoding::MetricEncoder<'_>,
    values: [(&'static str, &AtomicU64); N],
) -> Result<(), std::fmt::Error> {
    for (outcome, value) in values {
        ConstCounter::new(value.load(Ordering::Relaxed))
            .encode(encoder.encode_family(&[("outcome", outcome)])?)?;
    }
    Ok(())
}

/// An estimate of a batch's memory: its strings and attribute text plus a
/// fixed cost per record. Estimates only need to be proportional: they bound
/// the queue, they are not an allocator's count.
pub fn batch_cost(b: &Batch) -> usize {
    fn attrs(a: &airlock_store::telemetry::Attributes) -> usize {
        a.iter().map(|(k, v)| k.len() + value_len(v) + 48).sum()
    }
    fn value_len(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::String(s) => s.len(),
            serde_json::Value::Array(a) => a.iter().map(value_len).sum::<usize>() + 24,
            serde_json::Value::Object(o) => attrs(o) + 24,
            _ => 8,
        }
    }
    let resources: usize = b.resources.iter().map(|r| attrs(&r.attributes) + 256).sum();
    let spans: usize = b
        .spans
        .iter()
        .map(|s| {
            200 + s.name.len()
                + s.status_message.len()
                + s.scope.len()
                + attrs(&s.attributes)
                + s.events
                    .iter()
                    .map(|e| 64 + e.name.len() + attrs(&e.attributes))
                    .sum::<usize>()
        })
        .sum();
    let logs: usize = b
        .logs
        .iter()
        .map(|l| 160 + l.body.len() + l.severity_text.len() + l.scope.len() + attrs(&l.attributes))
        .sum();
    let points: usize = b
        .points
        .iter()
        .map(|p| {
            200 + p.name.len()
                + p.unit.len()
                + 8 * (p.bounds.len() + p.bucket_counts.len() + 2 * p.quantiles.len())
                + attrs(&p.attributes)
        })
        .sum();
    resources + spans + logs + points + 128 * b.crossings.len()
}

struct Writer {
    store: Arc<dyn TelemetryStore>,
    rx: mpsc::Receiver<Job>,
    inner: std::sync::Weak<Inner>,
    retain_ns: i64,
    max_size: Option<u64>,
    last_size_check: Option<Instant>,
    now_ns: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// Threshold series → whether the last point was above the limit.
    series: HashMap<String, bool>,
}

impl Writer {
    fn run(mut self) {
        let mut last_retention = Instant::now() - RETENTION_EVERY;
        loop {
            if last_retention.elapsed() >= RETENTION_EVERY {
                last_retention = Instant::now();
                self.retention();
            }
            // Wait for work, but wake for retention now and then.
            let first = match self.rx.recv_timeout(RETENTION_EVERY) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
            };
            let mut jobs = vec![first];
            let mut records = jobs[0].batch.len();
            while records < GROUP_RECORDS {
                match self.rx.try_recv() {
                    Ok(job) => {
                        records += job.batch.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.write(jobs);
            if self
                .last_size_check
                .is_none_or(|t| t.elapsed() >= SIZE_CHECK_EVERY)
            {
                self.last_size_check = Some(Instant::now());
                self.bound_size();
            }
        }
    }

    fn write(&mut self, mut jobs: Vec<Job>) {
        let thresholds = match self.inner.upgrade() {
            Some(inner) => inner.thresholds.lock().expect("not poisoned").clone(),
            None => Vec::new(),
        };
        if !thresholds.is_empty() {
            for job in &mut jobs {
                let crossings = self.crossings(&thresholds, &job.batch);
                job.batch.crossings.extend(crossings);
            }
        }
        let batches: Vec<&Batch> = jobs.iter().map(|j| &j.batch).collect();
        let result = self.store.insert(&batches);
        drop(batches);
        match result {
            Ok(deploys) => {
                for d in &deploys {
                    tracing::info!(service = %d.service, version = ?d.version, deployment_id = ?d.deployment_id, "new deployment seen in telemetry");
                }
                for job in jobs {
                    self.finish(job, Ok(()));
                }
            }
            Err(e) if jobs.len() > 1 => {
                // One bad batch must not fail the others: store them one by
                // one to find which.
                tracing::warn!(error = %e, batches = jobs.len(), "storing a group of telemetry batches failed; storing them one by one");
                for job in jobs {
                    let r = self
                        .store
                        .insert(&[&job.batch])
                        .map(|_| ())
                        .map_err(|e| IngestError::Store(e.to_string()));
                    if let Err(e) = &r {
                        tracing::warn!(error = %e, "a telemetry batch could not be stored");
                    }
                    self.finish(job, r);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "a telemetry batch could not be stored");
                let job = jobs.pop().expect("one job");
                self.finish(job, Err(IngestError::Store(e.to_string())));
            }
        }
    }

    fn finish(&self, job: Job, result: Result<(), IngestError>) {
        if let Some(inner) = self.inner.upgrade() {
            inner.pending.fetch_sub(job.cost, Ordering::AcqRel);
        }
        let _ = job.done.send(result);
    }

    /// Over `max_size`: removes the oldest telemetry, keeping half of what
    /// is kept each step (retain/2, retain/4, ...), until the store is back
    /// under 90% of the bound or only the last minute is left.
    fn bound_size(&self) {
        let Some(max) = self.max_size else { return };
        let used = |s: &Self| s.store.used_bytes().ok().flatten();
        let Some(before) = used(self).filter(|u| *u > max) else {
            return;
        };
        let now = (self.now_ns)();
        let mut keep = self.retain_ns;
        while keep > MIN_KEEP_NS {
            keep /= 2;
            if let Err(e) = self.store.remove_before(now.saturating_sub(keep)) {
                tracing::warn!(error = %e, "removing old telemetry over max_size failed");
                return;
            }
            if let Some(after) = used(self).filter(|u| *u <= max / 10 * 9) {
                tracing::info!(
                    before,
                    after,
                    max_size = max,
                    kept_seconds = keep / 1_000_000_000,
                    "the telemetry store was over [telemetry] max_size: removed the oldest telemetry"
                );
                return;
            }
        }
        tracing::warn!(
            max_size = max,
            "the telemetry store is over [telemetry] max_size with only the last minute kept; raise max_size or send less"
        );
    }

    fn retention(&self) {
        let before = (self.now_ns)().saturating_sub(self.retain_ns);
        match self.store.remove_before(before) {
            Ok(r) if r.spans + r.logs + r.points + r.crossings > 0 => {
                tracing::info!(
                    spans = r.spans,
                    logs = r.logs,
                    points = r.points,
                    crossings = r.crossings,
                    "telemetry retention removed old records"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "telemetry retention failed"),
        }
    }

    /// The crossings `batch`'s points make, updating each series' state.
    fn crossings(&mut self, thresholds: &[Threshold], batch: &Batch) -> Vec<Crossing> {
        let mut out = Vec::new();
        for p in &batch.points {
            for t in thresholds.iter().filter(|t| t.metric == p.name) {
                let resource = &batch.resources[p.resource];
                if t.service.as_deref().is_some_and(|s| s != resource.service) {
                    continue;
                }
                let Some(value) = stat_of(p, t.stat) else {
                    continue;
                };
                let key = format!(
                    "{}\u{0}{}\u{0}{}\u{0}{}",
                    t.name,
                    resource.service,
                    resource.instance_id.as_deref().unwrap_or(""),
                    serde_json::Value::Object(p.attributes.clone())
                );
                let above = value > t.above;
                if self.series.len() >= MAX_SERIES && !self.series.contains_key(&key) {
                    self.series.clear();
                }
                let was = self.series.insert(key, above).unwrap_or(false);
                if above != was {
                    out.push(Crossing {
                        resource: p.resource,
                        time_ns: p.time_ns,
                        threshold: t.name.clone(),
                        metric: p.name.clone(),
                        direction: if above { "above" } else { "below" }.to_owned(),
                        value,
                        limit: t.above,
                        attributes: p.attributes.clone(),
                    });
                }
            }
        }
        out
    }
}

/// The number a threshold compares for one point, if the point has it.
pub fn stat_of(p: &MetricPoint, stat: ThresholdStat) -> Option<f64> {
    let mean = || match (p.sum, p.count) {
        (Some(sum), Some(count)) if count > 0 => Some(sum / count as f64),
        _ => None,
    };
    let v = match (p.kind, stat) {
        (MetricKind::Gauge | MetricKind::Sum { .. }, _) => p.value,
        (_, ThresholdStat::Value | ThresholdStat::Mean) => mean(),
        (MetricKind::Histogram { .. }, ThresholdStat::Max) => p.max.or_else(|| {
            let last = p.bucket_counts.iter().rposition(|&c| c > 0)?;
            p.bounds.get(last).copied().or(p.bounds.last().copied())
        }),
        (MetricKind::Histogram { .. }, q) => {
            let q = match q {
                ThresholdStat::P50 => 0.50,
                ThresholdStat::P95 => 0.95,
                _ => 0.99,
            };
            histogram_quantile(&p.bounds, &p.bucket_counts, q)
        }
        (MetricKind::Summary, ThresholdStat::Max) => p
            .quantiles
            .iter()
            .find(|(q, _)| *q >= 1.0)
            .map(|(_, v)| *v)
            .or(p.max),
        (MetricKind::Summary, q) => {
            let q = match q {
                ThresholdStat::P50 => 0.50,
                ThresholdStat::P95 => 0.95,
                _ => 0.99,
            };
            p.quantiles
                .iter()
                .find(|(pq, _)| (*pq - q).abs() < 1e-9)
                .map(|(_, v)| *v)
        }
    };
    v.filter(|v| v.is_finite())
}

/// The upper bound of the bucket holding quantile `q` (the last finite bound
/// when it falls in the +Inf bucket).
pub fn histogram_quantile(bounds: &[f64], counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 || bounds.is_empty() {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(*bounds.get(i).unwrap_or(bounds.last()?));
        }
    }
    bounds.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_store::telemetry::*;
    use airlock_store::StoreError;

    /// A store that holds each insert until the test lets it go, and fails
    /// any batch with a log whose body is "poison". The real store's own
    /// behaviour is tested in airlock-store; this one makes a slow or
    /// failing store happen on cue.
    struct Gate {
        release: Mutex<std::sync::mpsc::Receiver<()>>,
        stored: Mutex<Vec<String>>,
    }

    impl TelemetryStore for Gate {
        fn insert(&self, batches: &[&Batch]) -> Result<Vec<Deploy>, StoreError> {
            let _ = self.release.lock().unwrap().recv();
            let bodies: Vec<String> = batches
                .iter()
                .flat_map(|b| b.logs.iter().map(|l| l.body.clone()))
                .collect();
            if bodies.iter().any(|b| b == "poison") {
                return Err(StoreError::NotFound {
                    what: "test",
                    id: "poison".into(),
                });
            }
            self.stored.lock().unwrap().extend(bodies);
            Ok(Vec::new())
        }
        fn insert_deploy(&self, _: &Deploy) -> Result<(), StoreError> {
            Ok(())
        }
        fn deploys(
            &self,
            _: Option<&str>,
            _: i64,
            _: i64,
            _: usize,
        ) -> Result<Vec<Deploy>, StoreError> {
            Ok(Vec::new())
        }
        fn timeline(&self, _: &TimelineQuery) -> Result<Vec<TimelineEvent>, StoreError> {
            Ok(Vec::new())
        }
        fn trace(&self, _: &[u8; 16]) -> Result<Trace, StoreError> {
            Ok(Trace::default())
        }
        fn version_stats(&self, _: &VersionQuery) -> Result<VersionStats, StoreError> {
            Ok(VersionStats::default())
        }
        fn error_messages(
            &self,
            _: &VersionQuery,
            _: usize,
        ) -> Result<Vec<ErrorMessage>, StoreError> {
            Ok(Vec::new())
        }
        fn versions(&self, _: &str) -> Result<Vec<(String, i64)>, StoreError> {
            Ok(Vec::new())
        }
        fn remove_before(&self, _: i64) -> Result<Removed, StoreError> {
            Ok(Removed::default())
        }
        fn counts(&self) -> Result<(u64, u64, u64), StoreError> {
            Ok((0, 0, 0))
        }
    }

    fn logs(bodies: &[&str]) -> Batch {
        Batch {
            resources: vec![Resource {
                service: "s".into(),
                ..Default::default()
            }],
            logs: bodies
                .iter()
                .map(|b| LogRecord {
                    resource: 0,
                    time_ns: 1,
                    severity_number: 9,
                    severity_text: String::new(),
                    body: (*b).to_owned(),
                    trace_id: None,
                    span_id: None,
                    scope: String::new(),
                    attributes: Default::default(),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn start(max_pending: usize) -> (Ingest, std::sync::mpsc::Sender<()>, Arc<Gate>) {
        let (release, rx) = std::sync::mpsc::channel();
        let gate = Arc::new(Gate {
            release: Mutex::new(rx),
            stored: Mutex::new(Vec::new()),
        });
        let ingest = Ingest::start(
            gate.clone(),
            Options {
                max_pending,
                retain: Duration::from_secs(3600),
                thresholds: Vec::new(),
                now_ns: Arc::new(|| 0),
                disk: None,
                max_size: None,
            },
        )
        .unwrap();
        (ingest, release, gate)
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_with_a_retryable_error() {
        let one = batch_cost(&logs(&["a"]));
        let (ingest, release, gate) = start(one * 2);
        // The retention pass at start takes no release; the first insert
        // waits for one.
        let first = tokio::spawn({
            let ingest = ingest.clone();
            async move { ingest.submit(logs(&["a"]), 0).await }
        });
        let second = tokio::spawn({
            let ingest = ingest.clone();
            async move { ingest.submit(logs(&["b"]), 0).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(ingest.pending(), 2 * one);
        // Full: refused now, not queued.
        let err = ingest.submit(logs(&["c"]), 0).await.unwrap_err();
        assert!(
            matches!(err, IngestError::Busy { .. }) && err.retryable(),
            "{err}"
        );
        assert_eq!(ingest.counters().refused_busy.load(Ordering::Relaxed), 1);
        release.send(()).unwrap();
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();
        assert_eq!(ingest.pending(), 0);
        // Room again.
        let third = tokio::spawn({
            let ingest = ingest.clone();
            async move { ingest.submit(logs(&["c"]), 0).await }
        });
        release.send(()).unwrap();
        third.await.unwrap().unwrap();
        let mut stored = gate.stored.lock().unwrap().clone();
        stored.sort();
        assert_eq!(stored, vec!["a", "b", "c"]);
    }

    #[tokio::test]
    async fn one_failing_batch_does_not_fail_the_others_in_its_group() {
        let (ingest, release, gate) = start(1 << 20);
        // Hold the writer on a first batch so the next three queue up and
        // are stored as one group.
        let hold = tokio::spawn({
            let ingest = ingest.clone();
            async move { ingest.submit(logs(&["hold"]), 0).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut tasks = Vec::new();
        for body in ["ok1", "poison", "ok2"] {
            let ingest = ingest.clone();
            tasks.push(tokio::spawn(async move {
                ingest.submit(logs(&[body]), 0).await
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // hold, then the group (fails), then each of the three alone.
        for _ in 0..5 {
            release.send(()).unwrap();
        }
        hold.await.unwrap().unwrap();
        let results: Vec<_> = futures_join(tasks).await;
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(
            matches!(results[1], Err(IngestError::Store(_))),
            "{results:?}"
        );
        let mut stored = gate.stored.lock().unwrap().clone();
        stored.sort();
        assert_eq!(stored, vec!["hold", "ok1", "ok2"]);
    }

    async fn futures_join(
        tasks: Vec<tokio::task::JoinHandle<Result<(), IngestError>>>,
    ) -> Vec<Result<(), IngestError>> {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    fn hist(bounds: &[f64], counts: &[u64]) -> MetricPoint {
        MetricPoint {
            resource: 0,
            name: "d".into(),
            unit: "s".into(),
            kind: MetricKind::Histogram { cumulative: true },
            time_ns: 1,
            start_ns: 0,
            value: None,
            count: Some(counts.iter().sum()),
            sum: Some(10.0),
            min: None,
            max: None,
            bounds: bounds.to_vec(),
            bucket_counts: counts.to_vec(),
            quantiles: vec![],
            attributes: Default::default(),
        }
    }

    #[test]
    fn histogram_stats() {
        // 10 values: 5 ≤ 0.1, 4 in (0.1, 0.5], 1 in (0.5, 1].
        let p = hist(&[0.1, 0.5, 1.0], &[5, 4, 1, 0]);
        assert_eq!(stat_of(&p, ThresholdStat::P50), Some(0.1));
        assert_eq!(stat_of(&p, ThresholdStat::P95), Some(1.0));
        assert_eq!(stat_of(&p, ThresholdStat::Mean), Some(1.0));
        assert_eq!(stat_of(&p, ThresholdStat::Max), Some(1.0));
        // In the +Inf bucket: the last finite bound.
        let p = hist(&[0.1], &[0, 3]);
        assert_eq!(stat_of(&p, ThresholdStat::P99), Some(0.1));
        let empty = hist(&[0.1], &[0, 0]);
        assert_eq!(stat_of(&empty, ThresholdStat::P99), None);
    }
}
