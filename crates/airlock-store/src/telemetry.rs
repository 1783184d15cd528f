//! Telemetry persistence: what `airlock-telemetry` stores from OTLP and reads
//! back for the timeline, traces and version comparison.
//!
//! The records here are already normalised: OTLP's nesting (resource → scope
//! → record) is flattened, every record points at its [`Resource`] by index
//! into its [`Batch`], ids are fixed-size byte arrays, and attributes are JSON
//! objects (OTLP's `AnyValue` mapped to JSON: strings, numbers, booleans,
//! arrays, objects; bytes as base64 strings).
//!
//! Times are unix nanoseconds (`*_ns`), as in OTLP. Deploys, which people and
//! pipelines create, are in nanoseconds too, so the timeline merges one unit.
//!
//! A [`TelemetryStore`] is written by one writer (the ingest pipeline's
//! thread) and read by many; implementations must be `Send + Sync`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::StoreError;

/// Attributes: OTLP key-values as a JSON object.
pub type Attributes = Map<String, Value>;

/// Where telemetry came from. The first-class columns are lifted out of the
/// OTLP resource attributes; every other resource attribute stays in
/// `attributes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// `service.name`; `unknown_service` when the resource has none (the
    /// SDKs' own default).
    pub service: String,
    /// `service.version`.
    pub version: Option<String>,
    /// `deployment.environment.name`, or the older `deployment.environment`.
    pub env: Option<String>,
    /// `deployment.id`.
    pub deployment_id: Option<String>,
    /// `service.instance.id`.
    pub instance_id: Option<String>,
    /// `host.name`.
    pub host: Option<String>,
    /// Every other resource attribute.
    pub attributes: Attributes,
}

/// OTLP's `Span.SpanKind`, by its protobuf number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    Unspecified = 0,
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl SpanKind {
    pub fn from_i32(n: i32) -> Option<SpanKind> {
        Some(match n {
            0 => SpanKind::Unspecified,
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }
}

/// OTLP's `Status.StatusCode`, by its protobuf number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusCode {
    Unset = 0,
    Ok = 1,
    Error = 2,
}

impl StatusCode {
    pub fn from_i32(n: i32) -> Option<StatusCode> {
        Some(match n {
            0 => StatusCode::Unset,
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
        }
    }
}

/// A span event (an exception, a log-like annotation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanEvent {
    pub time_ns: i64,
    pub name: String,
    pub attributes: Attributes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// Index into [`Batch::resources`].
    pub resource: usize,
    /// Never all zeros (the converter rejects those).
    pub trace_id: [u8; 16],
    /// Never all zeros.
    pub span_id: [u8; 8],
    /// `None` for a root span.
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start_ns: i64,
    /// At or after `start_ns` (the converter rejects spans that end first).
    pub end_ns: i64,
    pub status: StatusCode,
    pub status_message: String,
    /// The instrumentation scope's name.
    pub scope: String,
    pub attributes: Attributes,
    pub events: Vec<SpanEvent>,
}

impl Span {
    pub fn duration_ns(&self) -> i64 {
        self.end_ns - self.start_ns
    }

    /// Whether the timeline shows this span on its own (it always shows every
    /// span of a trace asked for by id): roots, server spans, and errors.
    pub fn is_summary(&self) -> bool {
        self.parent_span_id.is_none()
            || self.kind == SpanKind::Server
            || self.status == StatusCode::Error
    }
}

/// OTLP severity numbers at and above this are errors (ERROR..FATAL4).
pub const SEVERITY_ERROR: i32 = 17;

#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub resource: usize,
    /// `time_unix_nano`, or `observed_time_unix_nano` when that is 0.
    pub time_ns: i64,
    /// 0 (unspecified) to 24.
    pub severity_number: i32,
    pub severity_text: String,
    /// The body: a string body as is, any other value as its JSON text.
    pub body: String,
    pub trace_id: Option<[u8; 16]>,
    pub span_id: Option<[u8; 8]>,
    pub scope: String,
    pub attributes: Attributes,
}

impl LogRecord {
    pub fn is_error(&self) -> bool {
        self.severity_number >= SEVERITY_ERROR
    }
}

/// Which OTLP metric type a point came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Gauge,
    /// A sum; `monotonic` and `cumulative` (else delta) as OTLP says.
    Sum {
        monotonic: bool,
        cumulative: bool,
    },
    /// An explicit-bucket histogram, or an exponential one converted to
    /// explicit bounds (see `airlock-telemetry`'s docs).
    Histogram {
        cumulative: bool,
    },
    /// A legacy summary: count, sum and quantiles.
    Summary,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Sum { .. } => "sum",
            MetricKind::Histogram { .. } => "histogram",
            MetricKind::Summary => "summary",
        }
    }
}

/// One data point of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    pub resource: usize,
    pub name: String,
    pub unit: String,
    pub kind: MetricKind,
    pub time_ns: i64,
    /// 0 when OTLP gave none.
    pub start_ns: i64,
    /// Gauges and sums: the value (integers as f64).
    pub value: Option<f64>,
    /// Histograms and summaries.
    pub count: Option<u64>,
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Histograms: the upper bounds of all buckets but the last (+Inf), so
    /// `bucket_counts.len() == bounds.len() + 1`.
    pub bounds: Vec<f64>,
    pub bucket_counts: Vec<u64>,
    /// Summaries: (quantile, value) pairs.
    pub quantiles: Vec<(f64, f64)>,
    pub attributes: Attributes,
}

/// A configured threshold crossed by a metric series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Crossing {
    pub resource: usize,
    pub time_ns: i64,
    /// The threshold's name from the config.
    pub threshold: String,
    pub metric: String,
    /// "above" when the series went over the limit, "below" when it came back.
    pub direction: String,
    pub value: f64,
    pub limit: f64,
    /// The series' point attributes.
    pub attributes: Attributes,
}

/// One export request's worth of telemetry, stored all or nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub resources: Vec<Resource>,
    pub spans: Vec<Span>,
    pub logs: Vec<LogRecord>,
    pub points: Vec<MetricPoint>,
    pub crossings: Vec<Crossing>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
            && self.logs.is_empty()
            && self.points.is_empty()
            && self.crossings.is_empty()
    }

    pub fn len(&self) -> usize {
        self.spans.len() + self.logs.len() + self.points.len() + self.crossings.len()
    }
}

/// Whether a deploy marker was made by a person or pipeline, or inferred
/// from telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploySource {
    /// `airlock deploy mark` or `POST /api/v1/deploys`.
    Explicit,
    /// A (service, version) or (service, deployment.id) pair first seen in
    /// telemetry.
    Auto,
}

impl DeploySource {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploySource::Explicit => "explicit",
            DeploySource::Auto => "auto",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deploy {
    pub id: String,
    pub time_ns: i64,
    pub service: String,
    pub version: Option<String>,
    pub deployment_id: Option<String>,
    pub commit: Option<String>,
    pub env: Option<String>,
    pub source: DeploySource,
    /// Who marked it (an Airlock user), or "telemetry" for automatic markers.
    pub actor: String,
}

/// Which telemetry kinds a timeline query wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds {
    pub logs: bool,
    pub spans: bool,
    pub metrics: bool,
    pub deploys: bool,
}

impl Default for Kinds {
    fn default() -> Self {
        Kinds {
            logs: true,
            spans: true,
            metrics: true,
            deploys: true,
        }
    }
}

/// A timeline query over stored telemetry. Every filter narrows; `None` or
/// empty means "any".
#[derive(Debug, Clone, Default)]
pub struct TimelineQuery {
    /// Inclusive.
    pub since_ns: i64,
    /// Exclusive.
    pub until_ns: i64,
    pub service: Option<String>,
    pub version: Option<String>,
    pub env: Option<String>,
    /// With a trace id, every span of the trace is listed, not only
    /// summaries, and only logs of that trace.
    pub trace_id: Option<[u8; 16]>,
    /// Case-insensitive substring of a log body, span name or status message,
    /// or deploy version.
    pub grep: Option<String>,
    /// (key, value): a record attribute or resource attribute whose value, as
    /// text, equals `value`.
    pub attributes: Vec<(String, String)>,
    pub kinds: Kinds,
    /// At most this many events, the earliest first; 0 means the default 1000.
    pub limit: usize,
    /// Newest first instead (the last `limit` events of the window).
    pub newest_first: bool,
}

/// What kind a timeline event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Log,
    Span,
    Metric,
    Deploy,
    /// From the audit log; produced by `airlock-telemetry`, never by the store.
    Access,
}

/// One row of the timeline, whatever its source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub time_ns: i64,
    pub kind: EventKind,
    pub service: Option<String>,
    pub version: Option<String>,
    pub env: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    /// One line: the log body, the span's name, "metric m above 0.5: 0.73",
    /// "deploy checkout v1.2.4", the access event's summary.
    pub summary: String,
    /// An error log, a span with status error, a crossing above a limit.
    pub error: bool,
    pub duration_ns: Option<i64>,
    /// Kind-specific fields: severity, span kind and status, attributes,
    /// deploy fields, the audit record.
    pub detail: Value,
}

/// A span with its resource, as a trace lookup returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSpan {
    pub span: Span,
    pub resource: Resource,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredLog {
    pub log: LogRecord,
    pub resource: Resource,
}

/// Everything stored of one trace, spans by start time, logs by time. The
/// `resource` index inside each record is meaningless here; use the
/// resource beside it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    pub spans: Vec<StoredSpan>,
    pub logs: Vec<StoredLog>,
}

/// Which spans [`TelemetryStore::version_stats`] measures.
#[derive(Debug, Clone)]
pub struct VersionQuery {
    pub service: String,
    pub version: String,
    pub since_ns: i64,
    pub until_ns: i64,
}

/// Server spans of one service version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionStats {
    /// Server spans (kind SERVER) in the window.
    pub requests: u64,
    /// Of which with status error.
    pub errors: u64,
    /// Nearest-rank percentiles of span duration; `None` without requests.
    pub p50_ns: Option<i64>,
    pub p95_ns: Option<i64>,
    pub p99_ns: Option<i64>,
    /// The duration distribution: (upper bound in ns, count) for buckets
    /// at 1, 2, 5 × 10^k ns from 1 µs to 100 s, then a last bucket with
    /// bound `i64::MAX`. Only buckets up to the last non-empty one.
    pub histogram: Vec<(i64, u64)>,
}

/// How often an error message appeared, and when last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorMessage {
    pub message: String,
    pub count: u64,
    pub last_ns: i64,
}

/// How much a retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub spans: u64,
    pub logs: u64,
    pub points: u64,
    pub crossings: u64,
}

/// Telemetry persistence. One writer calls [`insert`](Self::insert) and
/// [`remove_before`](Self::remove_before); readers may call the rest from any
/// thread at the same time.
pub trait TelemetryStore: Send + Sync + 'static {
    /// Stores each batch in `batches`, all in one transaction: either every
    /// batch is stored or none is. Returns the deploy markers that the
    /// batches caused (a (service, version) or (service, deployment.id) pair
    /// seen for the first time; the marker's time is the earliest record of
    /// that resource in the batch).
    fn insert(&self, batches: &[&Batch]) -> Result<Vec<Deploy>, StoreError>;

    /// Stores an explicit deploy marker. Also counts its (service, version)
    /// and (service, deployment.id) as seen, so telemetry that follows does
    /// not add an automatic marker for the same deploy.
    fn insert_deploy(&self, deploy: &Deploy) -> Result<(), StoreError>;

    /// Deploy markers in `[since_ns, until_ns)`, oldest first, at most
    /// `limit`, optionally of one service.
    fn deploys(
        &self,
        service: Option<&str>,
        since_ns: i64,
        until_ns: i64,
        limit: usize,
    ) -> Result<Vec<Deploy>, StoreError>;

    /// Telemetry events of the window, ordered by time (see
    /// [`TimelineQuery::newest_first`]); never access events.
    fn timeline(&self, q: &TimelineQuery) -> Result<Vec<TimelineEvent>, StoreError>;

    /// Everything stored of one trace; empty when unknown.
    fn trace(&self, trace_id: &[u8; 16]) -> Result<Trace, StoreError>;

    /// Request count, error count and duration distribution of one version's
    /// server spans.
    fn version_stats(&self, q: &VersionQuery) -> Result<VersionStats, StoreError>;

    /// Error messages of one version in the window, most frequent first, at
    /// most `limit`: status messages of spans with status error, the
    /// `exception.message` of span events named "exception", and the bodies
    /// of error logs (severity ≥ ERROR).
    fn error_messages(
        &self,
        q: &VersionQuery,
        limit: usize,
    ) -> Result<Vec<ErrorMessage>, StoreError>;

    /// The versions seen of a service, with when each was first seen
    /// (nanoseconds), oldest first.
    fn versions(&self, service: &str) -> Result<Vec<(String, i64)>, StoreError>;

    /// Removes telemetry older than `before_ns` (deploy markers are kept:
    /// they are small and a postmortem needs them).
    fn remove_before(&self, before_ns: i64) -> Result<Removed, StoreError>;

    /// Stored counts, for health and benchmarks: (spans, logs, points).
    fn counts(&self) -> Result<(u64, u64, u64), StoreError>;

    /// Bytes the stored telemetry takes (space freed by removal and
    /// reusable is not counted); `None` when the store cannot tell.
    fn used_bytes(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
}
