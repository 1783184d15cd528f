//! Conversion of decoded OTLP export requests into Airlock's normalised
//! telemetry records ([`Batch`]), with OTLP's partial-success model: a record
//! that breaks a rule is rejected (counted, its reason kept) and the rest of
//! the request is kept.
//!
//! # Records
//!
//! - **Resource.** `service.name`, `service.version`,
//!   `deployment.environment.name` (or the older `deployment.environment`
//!   when the new key is absent), `deployment.id`, `service.instance.id` and
//!   `host.name` are lifted into [`Resource`]'s columns; a value that is not
//!   a string is stored as its JSON text (`3`, `true`). An absent or empty
//!   `service.name` is `unknown_service`, the SDKs' own default; an empty
//!   value of another lifted key counts as absent. Every other attribute,
//!   including `deployment.environment` when `deployment.environment.name`
//!   is also present, stays in `attributes`. Equal resources within one
//!   request share one index, and only resources with at least one kept
//!   record are in the batch.
//! - **Values.** `AnyValue` becomes JSON: strings, booleans, integers (JSON
//!   numbers, exact as i64), doubles (NaN and the infinities, which JSON
//!   lacks, as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`), bytes as
//!   base64 strings, arrays and key-value lists as arrays and objects, an
//!   empty value as `null`. Of duplicate keys the last wins.
//! - **Spans.** Links, trace state, flags and dropped counts are not kept
//!   (the store has no place for them); the scope keeps only its name.
//! - **Logs.** The time is `time_unix_nano`, or `observed_time_unix_nano`
//!   when that is 0. A string body is kept as is, any other body as its JSON
//!   text, no body as "". A non-empty `event_name` is kept as the attribute
//!   `event.name` unless the record already has one.
//! - **Metrics.** One [`MetricPoint`] per data point; exemplars, metadata,
//!   the description and the scope are not kept. A gauge's or sum's integer
//!   value becomes f64 (exact up to 2^53). Sums are cumulative when their
//!   aggregation temporality is 2 (CUMULATIVE), else delta (1, and also the
//!   invalid 0); histograms likewise. A point flagged "no recorded value"
//!   (a staleness marker) is skipped: neither stored nor rejected.
//!
//! # Validation
//!
//! A record is rejected when:
//!
//! - a span's trace id is not 16 bytes or is all zeros, its span id is not 8
//!   bytes or is all zeros, or its parent span id is neither empty nor 8
//!   bytes (an all-zero parent id means a root, as an empty one does);
//! - a log's trace id is neither empty nor 16 bytes, or its span id neither
//!   empty nor 8 bytes (ids are optional in logs; all zeros means none);
//! - a time does not fit in i64 nanoseconds (after the year 2262), a span
//!   has no start time or ends before it starts, a log has neither time nor
//!   observed time, or a data point has no time;
//! - a name (span, span event, metric, unit, log severity text) is over
//!   [`Limits::max_name`] bytes, or a metric's name is empty;
//! - a record (or span event) has more than [`Limits::max_attributes`]
//!   attributes, or one attribute value is over
//!   [`Limits::max_attribute_value`] bytes or nested more than
//!   [`MAX_DEPTH`] arrays or lists deep (a value's size: its strings' and
//!   keys' bytes, bytes as their base64 length, 8 per number or boolean);
//! - a span's status message is over `max_attribute_value` bytes, or it has
//!   more than [`Limits::max_events`] events;
//! - a log's body is over [`Limits::max_body`] bytes (as stored: JSON text
//!   for non-string bodies);
//! - a metric has no data (no gauge, sum, histogram, exponential histogram
//!   or summary); a gauge or sum point has no value or a non-finite one
//!   (NaN is no value to show on a timeline or compare with a threshold);
//! - a histogram has bucket counts whose number is not bounds + 1, bounds
//!   that are not finite and strictly increasing, or more than
//!   [`MAX_BUCKETS`] buckets; an exponential histogram has a scale outside
//!   OTLP's -10..=20, a negative or non-finite zero threshold, or more than
//!   [`MAX_BUCKETS`] buckets.
//!
//! A resource that breaks the attribute rules rejects every record under it.
//!
//! Lenient on purpose, as OTLP asks receivers to be: an unknown span kind is
//! `Unspecified`, an unknown status code `Unset`, a severity number outside
//! 0..=24 is 0 (unspecified); an empty span name is kept; a histogram's or
//! summary's non-finite sum, min or max is dropped (`None`), as is a summary
//! quantile with a non-finite value; a histogram's count is not checked
//! against its buckets.
//!
//! `rejected` counts what OTLP's partial success counts: spans, log records,
//! and data points. A metric without data has no points, but it is counted
//! as one, so that the client hears of it through `rejected_data_points`.
//!
//! # Exponential histograms
//!
//! They are stored as explicit-bound histograms whose bounds are exactly the
//! exponential buckets' boundaries. With `base = 2^(2^-scale)`, positive
//! bucket `i` (`offset + k` for the k-th count) holds the values in
//! `(base^i, base^(i+1)]`, negative bucket `i` those in
//! `[-base^(i+1), -base^i)`, and the zero bucket those within
//! `zero_threshold` of 0. The explicit buckets are, ascending (each is
//! `(previous bound, bound]`, the first from -inf, the last to +inf):
//!
//! 1. with negative buckets, offset `o` and `n` counts: an empty bucket up to
//!    `-base^(o+n)`, then for `i` from `o+n-1` down to `o` the bucket up to
//!    `-base^i` with negative bucket `i`'s count;
//! 2. the bucket up to `zero_threshold` with the zero count;
//! 3. with positive buckets, offset `o` and `n` counts: an empty bucket up to
//!    `base^o`, then for `i` from `o` to `o+n-1` the bucket up to
//!    `base^(i+1)` with positive bucket `i`'s count;
//! 4. the last bucket, to +inf, empty.
//!
//! So scale 1, zero count 5, positive offset 0 counts [2, 3] and negative
//! offset 1 counts [4] become bounds `[-2, -√2, 0, 1, √2, 2]` and counts
//! `[0, 4, 5, 0, 2, 3, 0]`. Nothing is lost but which side of a negative
//! boundary a value exactly on it was (the exponential negative buckets
//! include their upper bound's magnitude, explicit buckets their upper
//! bound), and the empty buckets keep quantile estimates from spreading a
//! bucket's count over a range nothing fell in. A bound that is not above the
//! previous one (a zero threshold reaching into the buckets, or boundaries
//! so close to 0 they round together) adds its count to the bucket before;
//! a boundary beyond f64's range adds its count to the +inf bucket.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use airlock_store::telemetry::{
    Attributes, Batch, LogRecord, MetricKind, MetricPoint, Resource, Span, SpanEvent, SpanKind,
    StatusCode,
};
use base64::Engine as _;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1 as otlp_logs;
use opentelemetry_proto::tonic::metrics::v1 as otlp_metrics;
use opentelemetry_proto::tonic::resource::v1 as otlp_resource;
use opentelemetry_proto::tonic::trace::v1 as otlp_trace;
use otlp_metrics::exponential_histogram_data_point::Buckets;
use otlp_metrics::metric::Data;
use serde_json::{Map, Number, Value};

/// Arrays and key-value lists nest at most this deep inside one attribute
/// value or log body (a top-level array is depth 1).
pub const MAX_DEPTH: usize = 16;

/// Histograms (explicit, or exponential counting both sides) have at most
/// this many buckets. The SDKs' defaults are 16 explicit and 160 per side.
pub const MAX_BUCKETS: usize = 4096;

/// [`Converted::errors`] keeps at most this many distinct reasons.
pub const MAX_ERRORS: usize = 5;

/// How much of a key or name goes into a rejection reason.
const MAX_ECHO: usize = 64;

/// Size limits per record; a record over one is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One attribute value's size in bytes (see the module docs), and a
    /// span's status message.
    pub max_attribute_value: usize,
    /// Attributes per record, per span event and per resource.
    pub max_attributes: usize,
    /// Events per span.
    pub max_events: usize,
    /// Span, event and metric names, metric units, log severity texts.
    pub max_name: usize,
    /// A log record's body.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_attribute_value: 16 * 1024,
            max_attributes: 128,
            max_events: 128,
            max_name: 1024,
            max_body: 64 * 1024,
        }
    }
}

/// One request converted: what is kept, and how much was rejected and why.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Converted {
    pub batch: Batch,
    /// Rejected spans, log records or data points (OTLP's
    /// `rejected_spans`, `rejected_log_records`, `rejected_data_points`).
    pub rejected: u64,
    /// Distinct reasons, at most [`MAX_ERRORS`], each one short line.
    pub errors: Vec<String>,
}

impl Converted {
    /// The reasons as one message for OTLP's partial success
    /// `error_message`; empty when nothing was rejected.
    pub fn error_message(&self) -> String {
        self.errors.join("; ")
    }
}

/// Parses a trace id written as 32 hex digits (either case), as the CLI and
/// API take it. `None` for anything else, and for all zeros, which is not a
/// trace id.
pub fn hex_trace_id(s: &str) -> Option<[u8; 16]> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(s, &mut id).ok()?;
    (id != [0; 16]).then_some(id)
}

/// Parses a span id written as 16 hex digits; `None` for anything else and
/// for all zeros.
pub fn hex_span_id(s: &str) -> Option<[u8; 8]> {
    let mut id = [0u8; 8];
    hex::decode_to_slice(s, &mut id).ok()?;
    (id != [0; 8]).then_some(id)
}

/// Converts a trace export request; `rejected` counts spans.
pub fn traces(req: ExportTraceServiceRequest, limits: &Limits) -> Converted {
    let mut out = Out::default();
    let total: usize = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    out.batch.spans.reserve(total);
    for rs in req.resource_spans {
        let n: usize = rs.scope_spans.iter().map(|s| s.spans.len()).sum();
        if n == 0 {
            continue;
        }
        let mut resource = match LazyResource::new(rs.resource, limits) {
            Ok(r) => r,
            Err(reason) => {
                out.reject(n as u64, reason);
                continue;
            }
        };
        for ss in rs.scope_spans {
            let scope = ss.scope.map(|s| s.name).unwrap_or_default();
            for span in ss.spans {
                match convert_span(span, &scope, limits) {
                    Ok(mut span) => {
                        span.resource = resource.index(&mut out);
                        out.batch.spans.push(span);
                    }
                    Err(reason) => out.reject(1, reason),
                }
            }
        }
    }
    out.finish()
}

/// Converts a logs export request; `rejected` counts log records.
pub fn logs(req: ExportLogsServiceRequest, limits: &Limits) -> Converted {
    let mut out = Out::default();
    let total: usize = req
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    out.batch.logs.reserve(total);
    for rl in req.resource_logs {
        let n: usize = rl.scope_logs.iter().map(|s| s.log_records.len()).sum();
        if n == 0 {
            continue;
        }
        let mut resource = match LazyResource::new(rl.resource, limits) {
            Ok(r) => r,
            Err(reason) => {
                out.reject(n as u64, reason);
                continue;
            }
        };
        for sl in rl.scope_logs {
            let scope = sl.scope.map(|s| s.name).unwrap_or_default();
            for record in sl.log_records {
                match convert_log(record, &scope, limits) {
                    Ok(mut log) => {
                        log.resource = resource.index(&mut out);
                        out.batch.logs.push(log);
                    }
                    Err(reason) => out.reject(1, reason),
                }
            }
        }
    }
    out.finish()
}

/// Converts a metrics export request; `rejected` counts data points.
pub fn metrics(req: ExportMetricsServiceRequest, limits: &Limits) -> Converted {
    let mut out = Out::default();
    let total: usize = req
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| points_in(&m.data))
        .sum();
    out.batch.points.reserve(total);
    for rm in req.resource_metrics {
        let n: usize = rm
            .scope_metrics
            .iter()
            .flat_map(|s| &s.metrics)
            .map(|m| points_in(&m.data).max(usize::from(m.data.is_none())))
            .sum();
        if n == 0 {
            continue;
        }
        let mut resource = match LazyResource::new(rm.resource, limits) {
            Ok(r) => r,
            Err(reason) => {
                out.reject(n as u64, reason);
                continue;
            }
        };
        for sm in rm.scope_metrics {
            for metric in sm.metrics {
                convert_metric(metric, &mut resource, &mut out, limits);
            }
        }
    }
    out.finish()
}

/// The batch being built, with resource deduplication and the rejections.
#[derive(Default)]
struct Out {
    batch: Batch,
    /// Resource hash → index in `batch.resources`.
    resources: HashMap<u64, usize>,
    rejected: u64,
    errors: Vec<String>,
}

impl Out {
    fn reject(&mut self, n: u64, reason: String) {
        self.rejected += n;
        if self.errors.len() < MAX_ERRORS && !self.errors.contains(&reason) {
            self.errors.push(reason);
        }
    }

    /// The index of `resource` in the batch, adding it unless an equal one
    /// is there. On a hash collision between unequal resources the second
    /// one is simply added again: harmless, and no worse than no dedupe.
    fn intern(&mut self, resource: Resource) -> usize {
        let hash = hash_resource(&resource);
        if let Some(&i) = self.resources.get(&hash) {
            if self.batch.resources[i] == resource {
                return i;
            }
        }
        let i = self.batch.resources.len();
        self.batch.resources.push(resource);
        self.resources.entry(hash).or_insert(i);
        i
    }

    fn finish(self) -> Converted {
        Converted {
            batch: self.batch,
            rejected: self.rejected,
            errors: self.errors,
        }
    }
}

/// A converted resource, added to the batch only when its first record is
/// kept: the store derives deploy markers from resources and their earliest
/// record, and a resource without records has none.
struct LazyResource {
    resource: Option<Resource>,
    index: usize,
}

impl LazyResource {
    fn new(resource: Option<otlp_resource::Resource>, limits: &Limits) -> Result<Self, String> {
        Ok(LazyResource {
            resource: Some(convert_resource(resource, limits)?),
            index: usize::MAX,
        })
    }

    fn index(&mut self, out: &mut Out) -> usize {
        if let Some(resource) = self.resource.take() {
            self.index = out.intern(resource);
        }
        self.index
    }
}

fn convert_resource(
    resource: Option<otlp_resource::Resource>,
    limits: &Limits,
) -> Result<Resource, String> {
    let kvs = resource.map(|r| r.attributes).unwrap_or_default();
    let mut attributes =
        convert_attributes(kvs, limits).map_err(|fault| format!("resource: {fault}"))?;
    let service = lift(&mut attributes, "service.name").unwrap_or_else(|| "unknown_service".into());
    let version = lift(&mut attributes, "service.version");
    let env = match lift(&mut attributes, "deployment.environment.name") {
        Some(env) => Some(env),
        None => lift(&mut attributes, "deployment.environment"),
    };
    Ok(Resource {
        service,
        version,
        env,
        deployment_id: lift(&mut attributes, "deployment.id"),
        instance_id: lift(&mut attributes, "service.instance.id"),
        host: lift(&mut attributes, "host.name"),
        attributes,
    })
}

/// Removes `key` from the attributes and returns it as a string: a string as
/// is, another value as its JSON text. Absent, null or "" is `None` (and an
/// empty value is removed all the same: it says nothing).
fn lift(attributes: &mut Attributes, key: &str) -> Option<String> {
    let text = match attributes.remove(key)? {
        Value::String(s) => s,
        Value::Null => return None,
        other => other.to_string(),
    };
    (!text.is_empty()).then_some(text)
}

fn hash_resource(r: &Resource) -> u64 {
    let mut h = DefaultHasher::new();
    r.service.hash(&mut h);
    r.version.hash(&mut h);
    r.env.hash(&mut h);
    r.deployment_id.hash(&mut h);
    r.instance_id.hash(&mut h);
    r.host.hash(&mut h);
    hash_map(&r.attributes, &mut h);
    h.finish()
}

fn hash_map(map: &Map<String, Value>, h: &mut DefaultHasher) {
    map.len().hash(h);
    for (k, v) in map {
        k.hash(h);
        hash_value(v, h);
    }
}

fn hash_value(v: &Value, h: &mut DefaultHasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => {
            2u8.hash(h);
            // Integers and floats never compare equal in serde_json, so
            // hashing each representation is consistent with `==` (but for
            // 0.0 and -0.0, where a miss only costs a duplicate resource).
            if let Some(i) = n.as_i64() {
                (0u8, i).hash(h);
            } else if let Some(u) = n.as_u64() {
                (1u8, u).hash(h);
            } else {
                (2u8, n.as_f64().unwrap_or(0.0).to_bits()).hash(h);
            }
        }
        Value::String(s) => (3u8, s).hash(h),
        Value::Array(a) => {
            (4u8, a.len()).hash(h);
            for v in a {
                hash_value(v, h);
            }
        }
        Value::Object(m) => {
            5u8.hash(h);
            hash_map(m, h);
        }
    }
}

/// Why an attribute set or value was refused; the caller says whose.
enum Fault {
    Count { n: usize, max: usize },
    Size { key: String, max: usize },
    Depth { key: String },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Count { n, max } => write!(f, "{n} attributes, over the limit of {max}"),
            Fault::Size { key, max } => {
                write!(f, "attribute \"{key}\" is over the limit of {max} bytes")
            }
            Fault::Depth { key } => {
                write!(
                    f,
                    "attribute \"{key}\" nests more than {MAX_DEPTH} levels deep"
                )
            }
        }
    }
}

/// What stopped a value's conversion.
enum ValueFault {
    Size,
    Depth,
}

fn convert_attributes(kvs: Vec<KeyValue>, limits: &Limits) -> Result<Attributes, Fault> {
    if kvs.len() > limits.max_attributes {
        return Err(Fault::Count {
            n: kvs.len(),
            max: limits.max_attributes,
        });
    }
    let mut map = Map::new();
    for kv in kvs {
        let mut left = limits.max_attribute_value;
        let value = match kv.value {
            Some(v) => match convert_value(v, 0, &mut left) {
                Ok(v) => v,
                Err(ValueFault::Size) => {
                    return Err(Fault::Size {
                        key: cut(&kv.key),
                        max: limits.max_attribute_value,
                    })
                }
                Err(ValueFault::Depth) => return Err(Fault::Depth { key: cut(&kv.key) }),
            },
            None => Value::Null,
        };
        map.insert(kv.key, value);
    }
    Ok(map)
}

fn charge(left: &mut usize, n: usize) -> Result<(), ValueFault> {
    *left = left.checked_sub(n).ok_or(ValueFault::Size)?;
    Ok(())
}

/// AnyValue → JSON, moving strings out; `left` is the size budget of the
/// whole (top-level) value, `depth` how many arrays or lists enclose it.
fn convert_value(v: AnyValue, depth: usize, left: &mut usize) -> Result<Value, ValueFault> {
    use any_value::Value as V;
    Ok(match v.value {
        None => Value::Null,
        Some(V::StringValue(s)) => {
            charge(left, s.len())?;
            Value::String(s)
        }
        Some(V::BoolValue(b)) => {
            charge(left, 8)?;
            Value::Bool(b)
        }
        Some(V::IntValue(i)) => {
            charge(left, 8)?;
            Value::Number(i.into())
        }
        Some(V::DoubleValue(d)) => {
            charge(left, 8)?;
            double(d)
        }
        Some(V::BytesValue(b)) => {
            charge(left, b.len().div_ceil(3) * 4)?;
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(V::ArrayValue(a)) => {
            if depth >= MAX_DEPTH {
                return Err(ValueFault::Depth);
            }
            let mut out = Vec::with_capacity(a.values.len());
            for v in a.values {
                out.push(convert_value(v, depth + 1, left)?);
            }
            Value::Array(out)
        }
        Some(V::KvlistValue(l)) => {
            if depth >= MAX_DEPTH {
                return Err(ValueFault::Depth);
            }
            let mut out = Map::new();
            for kv in l.values {
                charge(left, kv.key.len())?;
                let v = match kv.value {
                    Some(v) => convert_value(v, depth + 1, left)?,
                    None => Value::Null,
                };
                out.insert(kv.key, v);
            }
            Value::Object(out)
        }
        // An index into a profile's string table: meaningless outside
        // profiles, which Airlock does not ingest.
        Some(V::StringValueStrindex(_)) => Value::Null,
    })
}

/// A double as JSON: a number when finite, else the string the protobuf
/// JSON mapping writes for it.
fn double(d: f64) -> Value {
    match Number::from_f64(d) {
        Some(n) => Value::Number(n),
        None if d.is_nan() => Value::String("NaN".into()),
        None if d > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

/// At most [`MAX_ECHO`] characters of client text, for a reason.
fn cut(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO) {
        None => s.to_owned(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

fn time(ns: u64) -> Option<i64> {
    i64::try_from(ns).ok()
}

const LATE: &str = "does not fit in signed 64-bit nanoseconds (after 2262)";

fn id16(bytes: &[u8]) -> Option<[u8; 16]> {
    <[u8; 16]>::try_from(bytes).ok()
}

fn id8(bytes: &[u8]) -> Option<[u8; 8]> {
    <[u8; 8]>::try_from(bytes).ok()
}

fn convert_span(s: otlp_trace::Span, scope: &str, limits: &Limits) -> Result<Span, String> {
    let trace_id = match id16(&s.trace_id) {
        Some(id) if id != [0; 16] => id,
        Some(_) => return Err("span: the trace id is all zeros".into()),
        None => {
            return Err(format!(
                "span: the trace id is {} bytes, not 16",
                s.trace_id.len()
            ))
        }
    };
    let span_id = match id8(&s.span_id) {
        Some(id) if id != [0; 8] => id,
        Some(_) => return Err("span: the span id is all zeros".into()),
        None => {
            return Err(format!(
                "span: the span id is {} bytes, not 8",
                s.span_id.len()
            ))
        }
    };
    let parent_span_id = match id8(&s.parent_span_id) {
        Some(id) => (id != [0; 8]).then_some(id),
        None if s.parent_span_id.is_empty() => None,
        None => {
            return Err(format!(
                "span: the parent span id is {} bytes, not 8 (or empty)",
                s.parent_span_id.len()
            ))
        }
    };
    if s.start_time_unix_nano == 0 {
        return Err("span: no start time".into());
    }
    let start_ns =
        time(s.start_time_unix_nano).ok_or_else(|| format!("span: the start time {LATE}"))?;
    let end_ns = time(s.end_time_unix_nano).ok_or_else(|| format!("span: the end time {LATE}"))?;
    if end_ns < start_ns {
        return Err("span: it ends before it starts".into());
    }
    if s.name.len() > limits.max_name {
        return Err(format!(
            "span: the name is over the limit of {} bytes",
            limits.max_name
        ));
    }
    let (status, status_message) = match s.status {
        Some(st) => (
            StatusCode::from_i32(st.code).unwrap_or(StatusCode::Unset),
            st.message,
        ),
        None => (StatusCode::Unset, String::new()),
    };
    if status_message.len() > limits.max_attribute_value {
        return Err(format!(
            "span: the status message is over the limit of {} bytes",
            limits.max_attribute_value
        ));
    }
    if s.events.len() > limits.max_events {
        return Err(format!(
            "span: {} events, over the limit of {}",
            s.events.len(),
            limits.max_events
        ));
    }
    let attributes = convert_attributes(s.attributes, limits).map_err(|f| format!("span: {f}"))?;
    let mut events = Vec::with_capacity(s.events.len());
    for e in s.events {
        if e.name.len() > limits.max_name {
            return Err(format!(
                "span: an event name is over the limit of {} bytes",
                limits.max_name
            ));
        }
        let time_ns =
            time(e.time_unix_nano).ok_or_else(|| format!("span: an event time {LATE}"))?;
        let attributes = convert_attributes(e.attributes, limits)
            .map_err(|f| format!("span: event \"{}\": {f}", cut(&e.name)))?;
        events.push(SpanEvent {
            time_ns,
            name: e.name,
            attributes,
        });
    }
    Ok(Span {
        resource: 0,
        trace_id,
        span_id,
        parent_span_id,
        name: s.name,
        kind: SpanKind::from_i32(s.kind).unwrap_or(SpanKind::Unspecified),
        start_ns,
        end_ns,
        status,
        status_message,
        scope: scope.to_owned(),
        attributes,
        events,
    })
}

fn convert_log(r: otlp_logs::LogRecord, scope: &str, limits: &Limits) -> Result<LogRecord, String> {
    let ns = if r.time_unix_nano != 0 {
        r.time_unix_nano
    } else {
        r.observed_time_unix_nano
    };
    if ns == 0 {
        return Err("log record: a log record needs a time (time or observed time)".into());
    }
    let time_ns = time(ns).ok_or_else(|| format!("log record: the time {LATE}"))?;
    let trace_id = match id16(&r.trace_id) {
        Some(id) => (id != [0; 16]).then_some(id),
        None if r.trace_id.is_empty() => None,
        None => {
            return Err(format!(
                "log record: the trace id is {} bytes, not 16 (or empty)",
                r.trace_id.len()
            ))
        }
    };
    let span_id = match id8(&r.span_id) {
        Some(id) => (id != [0; 8]).then_some(id),
        None if r.span_id.is_empty() => None,
        None => {
            return Err(format!(
                "log record: the span id is {} bytes, not 8 (or empty)",
                r.span_id.len()
            ))
        }
    };
    if r.severity_text.len() > limits.max_name {
        return Err(format!(
            "log record: the severity text is over the limit of {} bytes",
            limits.max_name
        ));
    }
    let too_long = || {
        format!(
            "log record: the body is over the limit of {} bytes",
            limits.max_body
        )
    };
    let body = match r.body {
        None => String::new(),
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s)),
        }) => s,
        Some(value) => {
            let mut left = limits.max_body;
            match convert_value(value, 0, &mut left) {
                Ok(Value::Null) => String::new(),
                Ok(v) => v.to_string(),
                Err(ValueFault::Size) => return Err(too_long()),
                Err(ValueFault::Depth) => {
                    return Err(format!(
                        "log record: the body nests more than {MAX_DEPTH} levels deep"
                    ))
                }
            }
        }
    };
    // The budget above counts content, not JSON's quotes and commas; the
    // limit is on the text as stored.
    if body.len() > limits.max_body {
        return Err(too_long());
    }
    let mut attributes =
        convert_attributes(r.attributes, limits).map_err(|f| format!("log record: {f}"))?;
    if !r.event_name.is_empty() {
        if r.event_name.len() > limits.max_name {
            return Err(format!(
                "log record: the event name is over the limit of {} bytes",
                limits.max_name
            ));
        }
        attributes
            .entry("event.name")
            .or_insert(Value::String(r.event_name));
    }
    Ok(LogRecord {
        resource: 0,
        time_ns,
        severity_number: if (0..=24).contains(&r.severity_number) {
            r.severity_number
        } else {
            0
        },
        severity_text: r.severity_text,
        body,
        trace_id,
        span_id,
        scope: scope.to_owned(),
        attributes,
    })
}

/// How many data points a metric's data has.
fn points_in(data: &Option<Data>) -> usize {
    match data {
        None => 0,
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
    }
}

/// OTLP's `DataPointFlags.FLAG_NO_RECORDED_VALUE`.
const NO_RECORDED_VALUE: u32 = 1;

/// AggregationTemporality CUMULATIVE.
const CUMULATIVE: i32 = 2;

/// What every point of one metric shares.
struct MetricHead<'a> {
    name: &'a str,
    unit: &'a str,
    kind: MetricKind,
}

impl MetricHead<'_> {
    fn reason(&self, what: impl std::fmt::Display) -> String {
        format!("metric \"{}\": {what}", cut(self.name))
    }

    /// A point with this metric's name, unit and kind, its times and
    /// attributes checked, and no values yet.
    fn point(
        &self,
        time_ns: u64,
        start_ns: u64,
        attributes: Vec<KeyValue>,
        limits: &Limits,
    ) -> Result<MetricPoint, String> {
        if time_ns == 0 {
            return Err(self.reason("a data point has no time"));
        }
        let time_ns = time(time_ns).ok_or_else(|| self.reason(format!("a point's time {LATE}")))?;
        let start_ns =
            time(start_ns).ok_or_else(|| self.reason(format!("a point's start time {LATE}")))?;
        let attributes = convert_attributes(attributes, limits).map_err(|f| self.reason(f))?;
        Ok(MetricPoint {
            resource: 0,
            name: self.name.to_owned(),
            unit: self.unit.to_owned(),
            kind: self.kind,
            time_ns,
            start_ns,
            value: None,
            count: None,
            sum: None,
            min: None,
            max: None,
            bounds: Vec::new(),
            bucket_counts: Vec::new(),
            quantiles: Vec::new(),
            attributes,
        })
    }
}

fn finite(x: Option<f64>) -> Option<f64> {
    x.filter(|x| x.is_finite())
}

fn convert_metric(
    metric: otlp_metrics::Metric,
    resource: &mut LazyResource,
    out: &mut Out,
    limits: &Limits,
) {
    let n = points_in(&metric.data) as u64;
    let head = MetricHead {
        name: &metric.name,
        unit: &metric.unit,
        kind: MetricKind::Gauge,
    };
    let refuse =
        if metric.name.is_empty() {
            Some("metric: the name is empty".to_owned())
        } else if metric.name.len() > limits.max_name {
            Some(format!(
                "metric: the name is over the limit of {} bytes",
                limits.max_name
            ))
        } else if metric.unit.len() > limits.max_name {
            Some(head.reason(format!(
                "the unit is over the limit of {} bytes",
                limits.max_name
            )))
        } else if metric.data.is_none() {
            Some(head.reason(
                "no data (neither gauge, sum, histogram, exponential histogram nor summary)",
            ))
        } else {
            None
        };
    if let Some(reason) = refuse {
        // A metric without data counts as one point (see the module docs).
        out.reject(if metric.data.is_none() { 1 } else { n }, reason);
        return;
    }
    let mut keep = |point: Result<Option<MetricPoint>, String>| match point {
        Ok(Some(mut point)) => {
            point.resource = resource.index(out);
            out.batch.points.push(point);
        }
        Ok(None) => {}
        Err(reason) => out.reject(1, reason),
    };
    match metric.data {
        None => {}
        Some(Data::Gauge(g)) => {
            for p in g.data_points {
                keep(number_point(&head, p, limits));
            }
        }
        Some(Data::Sum(s)) => {
            let head = MetricHead {
                kind: MetricKind::Sum {
                    monotonic: s.is_monotonic,
                    cumulative: s.aggregation_temporality == CUMULATIVE,
                },
                ..head
            };
            for p in s.data_points {
                keep(number_point(&head, p, limits));
            }
        }
        Some(Data::Histogram(h)) => {
            let head = MetricHead {
                kind: MetricKind::Histogram {
                    cumulative: h.aggregation_temporality == CUMULATIVE,
                },
                ..head
            };
            for p in h.data_points {
                keep(histogram_point(&head, p, limits));
            }
        }
        Some(Data::ExponentialHistogram(h)) => {
            let head = MetricHead {
                kind: MetricKind::Histogram {
                    cumulative: h.aggregation_temporality == CUMULATIVE,
                },
                ..head
            };
            for p in h.data_points {
                keep(exponential_point(&head, p, limits));
            }
        }
        Some(Data::Summary(s)) => {
            let head = MetricHead {
                kind: MetricKind::Summary,
                ..head
            };
            for p in s.data_points {
                keep(summary_point(&head, p, limits));
            }
        }
    }
}

fn number_point(
    head: &MetricHead<'_>,
    p: otlp_metrics::NumberDataPoint,
    limits: &Limits,
) -> Result<Option<MetricPoint>, String> {
    use otlp_metrics::number_data_point::Value as N;
    if p.flags & NO_RECORDED_VALUE != 0 {
        return Ok(None);
    }
    let value = match p.value {
        None => return Err(head.reason("a data point has no value")),
        Some(N::AsInt(i)) => i as f64,
        Some(N::AsDouble(d)) if d.is_finite() => d,
        Some(N::AsDouble(_)) => return Err(head.reason("a data point's value is not finite")),
    };
    let mut point = head.point(
        p.time_unix_nano,
        p.start_time_unix_nano,
        p.attributes,
        limits,
    )?;
    point.value = Some(value);
    Ok(Some(point))
}

fn histogram_point(
    head: &MetricHead<'_>,
    p: otlp_metrics::HistogramDataPoint,
    limits: &Limits,
) -> Result<Option<MetricPoint>, String> {
    if p.flags & NO_RECORDED_VALUE != 0 {
        return Ok(None);
    }
    let mut bounds = p.explicit_bounds;
    let counts = p.bucket_counts;
    if counts.is_empty() {
        // No buckets: only count and sum mean anything.
        bounds.clear();
    } else if counts.len() != bounds.len() + 1 {
        return Err(head.reason(format!(
            "a histogram has {} bucket counts for {} bounds (needs bounds + 1)",
            counts.len(),
            bounds.len()
        )));
    }
    if counts.len() > MAX_BUCKETS {
        return Err(head.reason(format!(
            "a histogram has {} buckets, over the limit of {MAX_BUCKETS}",
            counts.len()
        )));
    }
    let ascending = bounds.iter().all(|b| b.is_finite()) && bounds.windows(2).all(|w| w[0] < w[1]);
    if !ascending {
        return Err(head.reason("a histogram's bounds are not finite and strictly increasing"));
    }
    let mut point = head.point(
        p.time_unix_nano,
        p.start_time_unix_nano,
        p.attributes,
        limits,
    )?;
    point.count = Some(p.count);
    point.sum = finite(p.sum);
    point.min = finite(p.min);
    point.max = finite(p.max);
    point.bounds = bounds;
    point.bucket_counts = counts;
    Ok(Some(point))
}

fn exponential_point(
    head: &MetricHead<'_>,
    p: otlp_metrics::ExponentialHistogramDataPoint,
    limits: &Limits,
) -> Result<Option<MetricPoint>, String> {
    if p.flags & NO_RECORDED_VALUE != 0 {
        return Ok(None);
    }
    let (bounds, counts) = exponential_to_explicit(
        p.scale,
        p.zero_count,
        p.zero_threshold,
        p.positive.as_ref(),
        p.negative.as_ref(),
    )
    .map_err(|reason| head.reason(reason))?;
    let mut point = head.point(
        p.time_unix_nano,
        p.start_time_unix_nano,
        p.attributes,
        limits,
    )?;
    point.count = Some(p.count);
    point.sum = finite(p.sum);
    point.min = finite(p.min);
    point.max = finite(p.max);
    point.bounds = bounds;
    point.bucket_counts = counts;
    Ok(Some(point))
}

fn summary_point(
    head: &MetricHead<'_>,
    p: otlp_metrics::SummaryDataPoint,
    limits: &Limits,
) -> Result<Option<MetricPoint>, String> {
    if p.flags & NO_RECORDED_VALUE != 0 {
        return Ok(None);
    }
    let mut point = head.point(
        p.time_unix_nano,
        p.start_time_unix_nano,
        p.attributes,
        limits,
    )?;
    point.count = Some(p.count);
    point.sum = finite(Some(p.sum));
    point.quantiles = p
        .quantile_values
        .iter()
        .filter(|q| q.quantile.is_finite() && q.value.is_finite())
        .map(|q| (q.quantile, q.value))
        .collect();
    Ok(Some(point))
}

/// The lower boundary of exponential bucket `index` at `scale`:
/// `base^index` with `base = 2^(2^-scale)`, i.e. `2^(index × 2^-scale)`.
/// The exponent is exact in f64 (a multiple of a power of two well within
/// range), so at scale ≤ 0 the boundary is an exact power of two.
fn boundary(index: i64, scale: i32) -> f64 {
    (index as f64 * (-f64::from(scale)).exp2()).exp2()
}

/// Explicit buckets under construction; see the module docs for the rules
/// on bounds that do not ascend or do not fit in f64.
#[derive(Default)]
struct ExplicitBuckets {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    /// Counts of buckets whose upper bound underflowed to -inf: they belong
    /// to the first finite bucket.
    carry: u64,
    /// Counts of buckets whose upper bound overflowed to +inf.
    overflow: u64,
}

impl ExplicitBuckets {
    fn push(&mut self, bound: f64, count: u64) {
        if bound.is_nan() || bound == f64::INFINITY {
            self.overflow = self.overflow.saturating_add(count);
        } else if bound == f64::NEG_INFINITY {
            self.carry = self.carry.saturating_add(count);
        } else if let (Some(&last), Some(c)) = (self.bounds.last(), self.counts.last_mut()) {
            if bound <= last {
                *c = c.saturating_add(count);
            } else {
                self.bounds.push(bound);
                self.counts
                    .push(count.saturating_add(std::mem::take(&mut self.carry)));
            }
        } else {
            self.bounds.push(bound);
            self.counts
                .push(count.saturating_add(std::mem::take(&mut self.carry)));
        }
    }

    fn finish(mut self) -> (Vec<f64>, Vec<u64>) {
        self.counts.push(self.overflow.saturating_add(self.carry));
        (self.bounds, self.counts)
    }
}

/// Converts an exponential histogram's buckets to explicit bounds and
/// bucket counts (`counts.len() == bounds.len() + 1`) as the module docs
/// describe.
fn exponential_to_explicit(
    scale: i32,
    zero_count: u64,
    zero_threshold: f64,
    positive: Option<&Buckets>,
    negative: Option<&Buckets>,
) -> Result<(Vec<f64>, Vec<u64>), String> {
    if !(-10..=20).contains(&scale) {
        return Err(format!(
            "an exponential histogram's scale {scale} is outside -10..=20"
        ));
    }
    if !zero_threshold.is_finite() || zero_threshold < 0.0 {
        return Err("an exponential histogram's zero threshold is negative or not finite".into());
    }
    let positive = positive.filter(|b| !b.bucket_counts.is_empty());
    let negative = negative.filter(|b| !b.bucket_counts.is_empty());
    let n = positive.map_or(0, |b| b.bucket_counts.len())
        + negative.map_or(0, |b| b.bucket_counts.len());
    if n > MAX_BUCKETS {
        return Err(format!(
            "an exponential histogram has {n} buckets, over the limit of {MAX_BUCKETS}"
        ));
    }
    let mut out = ExplicitBuckets {
        bounds: Vec::with_capacity(n + 3),
        counts: Vec::with_capacity(n + 4),
        ..Default::default()
    };
    if let Some(neg) = negative {
        let offset = i64::from(neg.offset);
        let top = offset + neg.bucket_counts.len() as i64;
        out.push(-boundary(top, scale), 0);
        for (k, &count) in neg.bucket_counts.iter().enumerate().rev() {
            out.push(-boundary(offset + k as i64, scale), count);
        }
    }
    out.push(zero_threshold, zero_count);
    if let Some(pos) = positive {
        let offset = i64::from(pos.offset);
        out.push(boundary(offset, scale), 0);
        for (k, &count) in pos.bucket_counts.iter().enumerate() {
            out.push(boundary(offset + k as i64 + 1, scale), count);
        }
    }
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1 as otlp_common;

    fn buckets(offset: i32, counts: &[u64]) -> Buckets {
        Buckets {
            offset,
            bucket_counts: counts.to_vec(),
        }
    }

    #[test]
    fn exponential_by_hand_scale_1() {
        // base √2. Positive bucket 0 is (1, √2], 1 is (√2, 2]; negative
        // bucket 1 is [-2, -√2); the zero bucket is exactly 0.
        let (bounds, counts) = exponential_to_explicit(
            1,
            5,
            0.0,
            Some(&buckets(0, &[2, 3])),
            Some(&buckets(1, &[4])),
        )
        .unwrap();
        let r2 = std::f64::consts::SQRT_2;
        let want = [-2.0, -r2, 0.0, 1.0, r2, 2.0];
        assert_eq!(bounds.len(), want.len(), "{bounds:?}");
        for (got, want) in bounds.iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{bounds:?}");
        }
        assert_eq!(counts, [0, 4, 5, 0, 2, 3, 0]);
    }

    #[test]
    fn exponential_by_hand_coarse_scales_are_exact() {
        // Scale 0: base 2. Positive offset -2: buckets (1/4, 1/2], (1/2, 1],
        // (1, 2]. Zero threshold 0.1 with 7 values.
        let (bounds, counts) =
            exponential_to_explicit(0, 7, 0.1, Some(&buckets(-2, &[1, 0, 6])), None).unwrap();
        assert_eq!(bounds, [0.1, 0.25, 0.5, 1.0, 2.0]);
        assert_eq!(counts, [7, 0, 1, 0, 6, 0]);

        // Scale -1: base 4. Positive bucket 1 is (4, 16]; negative bucket 0
        // is [-4, -1).
        let (bounds, counts) =
            exponential_to_explicit(-1, 0, 0.0, Some(&buckets(1, &[5])), Some(&buckets(0, &[9])))
                .unwrap();
        assert_eq!(bounds, [-4.0, -1.0, 0.0, 4.0, 16.0]);
        assert_eq!(counts, [0, 9, 0, 0, 5, 0]);
    }

    #[test]
    fn exponential_only_zeros_and_empty() {
        let (bounds, counts) = exponential_to_explicit(3, 4, 0.0, None, None).unwrap();
        assert_eq!(bounds, [0.0]);
        assert_eq!(counts, [4, 0]);
        let (bounds, counts) =
            exponential_to_explicit(3, 0, 0.0, Some(&buckets(5, &[])), None).unwrap();
        assert_eq!(bounds, [0.0]);
        assert_eq!(counts, [0, 0]);
    }

    #[test]
    fn exponential_edge_bounds_merge_and_overflow() {
        // A zero threshold of 1.5 reaches into positive bucket 0 (1, 2] at
        // scale 0: bound 1 is not above 1.5, so its (empty) gap bucket adds
        // to the zero bucket; bucket 0's own bound 2 still ascends.
        let (bounds, counts) =
            exponential_to_explicit(0, 3, 1.5, Some(&buckets(0, &[2])), None).unwrap();
        assert_eq!(bounds, [1.5, 2.0]);
        assert_eq!(counts, [3, 2, 0]);

        // Scale -10: base 2^1024 is already +inf in f64. Bucket 0 is
        // (1, 2^1024]: its bound overflows, so its count goes to +inf.
        let (bounds, counts) =
            exponential_to_explicit(-10, 0, 0.0, Some(&buckets(0, &[8])), None).unwrap();
        assert_eq!(bounds, [0.0, 1.0]);
        assert_eq!(counts, [0, 0, 8]);

        // Mirrored: negative bucket 0 at scale -10 is [-2^1024, -1); its
        // lower bound underflows to -inf, so the count lands in the first
        // finite bucket (-inf, -1].
        let (bounds, counts) =
            exponential_to_explicit(-10, 0, 0.0, None, Some(&buckets(0, &[8]))).unwrap();
        assert_eq!(bounds, [-1.0, 0.0]);
        assert_eq!(counts, [8, 0, 0]);
    }

    #[test]
    fn exponential_counts_are_preserved() {
        let pos: Vec<u64> = (1..=160).collect();
        let neg: Vec<u64> = (1..=40).map(|i| i * 3).collect();
        for scale in [-3, 0, 2, 8, 20] {
            let (bounds, counts) = exponential_to_explicit(
                scale,
                11,
                0.0,
                Some(&buckets(-80, &pos)),
                Some(&buckets(-20, &neg)),
            )
            .unwrap();
            assert_eq!(counts.len(), bounds.len() + 1, "scale {scale}");
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "scale {scale}");
            let total: u64 = counts.iter().sum();
            assert_eq!(
                total,
                pos.iter().sum::<u64>() + neg.iter().sum::<u64>() + 11,
                "scale {scale}"
            );
        }
    }

    #[test]
    fn exponential_refusals() {
        assert!(exponential_to_explicit(21, 0, 0.0, None, None).is_err());
        assert!(exponential_to_explicit(-11, 0, 0.0, None, None).is_err());
        assert!(exponential_to_explicit(0, 0, -1.0, None, None).is_err());
        assert!(exponential_to_explicit(0, 0, f64::NAN, None, None).is_err());
        let many = vec![1; MAX_BUCKETS + 1];
        assert!(exponential_to_explicit(0, 0, 0.0, Some(&buckets(0, &many)), None).is_err());
    }

    #[test]
    fn boundary_is_exact_at_integer_exponents() {
        assert_eq!(boundary(0, 5), 1.0);
        assert_eq!(boundary(3, 0), 8.0);
        assert_eq!(boundary(-3, 0), 0.125);
        assert_eq!(boundary(2, -2), 256.0);
        assert_eq!(boundary(8, 3), 2.0);
        assert!((boundary(1, 1) - std::f64::consts::SQRT_2).abs() < 1e-15);
    }

    #[test]
    fn values_to_json() {
        use any_value::Value as V;
        let av = |v| AnyValue { value: Some(v) };
        let conv = |v| {
            let mut left = 1 << 20;
            convert_value(v, 0, &mut left).ok().unwrap()
        };
        assert_eq!(conv(av(V::StringValue("s".into()))), Value::from("s"));
        assert_eq!(conv(av(V::BoolValue(true))), Value::from(true));
        assert_eq!(conv(av(V::IntValue(i64::MIN))), Value::from(i64::MIN));
        assert_eq!(conv(av(V::DoubleValue(0.5))), Value::from(0.5));
        assert_eq!(conv(av(V::DoubleValue(f64::NAN))), Value::from("NaN"));
        assert_eq!(
            conv(av(V::DoubleValue(f64::INFINITY))),
            Value::from("Infinity")
        );
        assert_eq!(
            conv(av(V::DoubleValue(f64::NEG_INFINITY))),
            Value::from("-Infinity")
        );
        assert_eq!(
            conv(av(V::BytesValue(b"hello".to_vec()))),
            Value::from("aGVsbG8=")
        );
        assert_eq!(conv(AnyValue { value: None }), Value::Null);
        let nested = av(V::KvlistValue(otlp_common::KeyValueList {
            values: vec![KeyValue {
                key: "k".into(),
                value: Some(av(V::ArrayValue(otlp_common::ArrayValue {
                    values: vec![av(V::IntValue(1)), av(V::StringValue("x".into()))],
                }))),
                key_strindex: 0,
            }],
        }));
        assert_eq!(conv(nested), serde_json::json!({"k": [1, "x"]}));
    }

    fn nested_arrays(depth: usize) -> AnyValue {
        use any_value::Value as V;
        let mut v = AnyValue {
            value: Some(V::StringValue("leaf".into())),
        };
        for _ in 0..depth {
            v = AnyValue {
                value: Some(V::ArrayValue(otlp_common::ArrayValue { values: vec![v] })),
            };
        }
        v
    }

    #[test]
    fn depth_limit() {
        let mut left = 1 << 20;
        assert!(convert_value(nested_arrays(MAX_DEPTH), 0, &mut left).is_ok());
        let mut left = 1 << 20;
        assert!(matches!(
            convert_value(nested_arrays(MAX_DEPTH + 1), 0, &mut left),
            Err(ValueFault::Depth)
        ));
    }

    #[test]
    fn value_size_counts_nested_content() {
        use any_value::Value as V;
        let av = |v| AnyValue { value: Some(v) };
        let list = av(V::ArrayValue(otlp_common::ArrayValue {
            values: (0..10)
                .map(|_| av(V::StringValue("x".repeat(100))))
                .collect(),
        }));
        let mut left = 999;
        assert!(matches!(
            convert_value(list.clone(), 0, &mut left),
            Err(ValueFault::Size)
        ));
        let mut left = 1000;
        assert!(convert_value(list, 0, &mut left).is_ok());
        assert_eq!(left, 0);
    }

    #[test]
    fn hex_ids() {
        let id = hex_trace_id("5B8EFFF798038103d269b633813fc60c").unwrap();
        assert_eq!(hex::encode(id), "5b8efff798038103d269b633813fc60c");
        assert_eq!(hex_trace_id(&"0".repeat(32)), None);
        assert_eq!(hex_trace_id("5b8efff798038103d269b633813fc60"), None);
        assert_eq!(hex_trace_id("5b8efff798038103d269b633813fc60c0"), None);
        assert_eq!(hex_trace_id("zb8efff798038103d269b633813fc60c"), None);
        assert_eq!(hex_trace_id(" 5b8efff798038103d269b633813fc60"), None);
        assert_eq!(hex_trace_id(""), None);
        assert_eq!(
            hex_span_id("eee19b7ec3c1b174"),
            Some([0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74])
        );
        assert_eq!(hex_span_id("0000000000000000"), None);
    }

    #[test]
    fn cut_is_char_safe() {
        let s = "é".repeat(100);
        let c = cut(&s);
        assert_eq!(c.chars().count(), MAX_ECHO + 1);
        assert!(c.ends_with('…'));
        assert_eq!(cut("short"), "short");
    }
}
