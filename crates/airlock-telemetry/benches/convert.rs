//! OTLP trace conversion throughput on one core: a 512-span export request
//! (8 attributes a span, like an HTTP server span) decoded with prost alone
//! (the floor: no receiver can do less), then decoded and converted into the
//! store's records, then the same from OTLP/JSON for comparison, and the
//! conversion alone (of requests decoded beforehand, untimed).
//!
//! cargo bench -p airlock-telemetry --bench convert [-- SECONDS]

use std::hint::black_box;
use std::time::{Duration, Instant};

use airlock_telemetry::body::{self, Encoding};
use airlock_telemetry::convert::{self, Limits};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost_otlp::Message;

const SPANS: usize = 512;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

fn s(v: impl Into<String>) -> Value {
    Value::StringValue(v.into())
}

fn request() -> ExportTraceServiceRequest {
    let t0: u64 = 1_700_000_000_000_000_000;
    let spans = (0..SPANS as u64)
        .map(|i| {
            // Distinct, non-zero ids: a trace of 8 spans, like a small request.
            let trace = i / 8 + 1;
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&trace.to_be_bytes());
            trace_id[8..]
                .copy_from_slice(&(trace.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes());
            let span_id = (i + 1)
                .wrapping_mul(0x2545_f491_4f6c_dd1d)
                .to_be_bytes()
                .to_vec();
            let parent = if i % 8 == 0 {
                Vec::new()
            } else {
                (i - i % 8 + 1)
                    .wrapping_mul(0x2545_f491_4f6c_dd1d)
                    .to_be_bytes()
                    .to_vec()
            };
            Span {
                trace_id: trace_id.to_vec(),
                span_id,
                parent_span_id: parent,
                name: format!("GET /api/v1/orders/{{id}} {}", i % 8),
                kind: if i % 8 == 0 { 2 } else { 3 },
                start_time_unix_nano: t0 + i * 1_000_000,
                end_time_unix_nano: t0 + i * 1_000_000 + 250_000 + i * 37,
                attributes: vec![
                    kv("http.request.method", s("GET")),
                    kv("http.route", s("/api/v1/orders/{id}")),
                    kv(
                        "http.response.status_code",
                        Value::IntValue(200 + (i % 3) as i64 * 100),
                    ),
                    kv("url.path", s(format!("/api/v1/orders/{}", 10_000 + i))),
                    kv("server.address", s("orders.internal")),
                    kv("server.port", Value::IntValue(8080)),
                    kv(
                        "user_agent.original",
                        s("Mozilla/5.0 (X11; Linux x86_64) checkout-client/2.3"),
                    ),
                    kv("network.protocol.version", s("1.1")),
                ],
                status: Some(Status {
                    message: String::new(),
                    code: if i % 50 == 0 { 2 } else { 0 },
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("orders")),
                    kv("service.version", s("1.4.2")),
                    kv("deployment.environment.name", s("prod")),
                    kv("service.instance.id", s("orders-7d9f8-abcde")),
                    kv("host.name", s("ip-10-0-3-17")),
                    kv("telemetry.sdk.language", s("rust")),
                    kv("telemetry.sdk.name", s("opentelemetry")),
                    kv("telemetry.sdk.version", s("0.31.0")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "opentelemetry-http".into(),
                    version: "0.31.0".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Runs `f` (one request's work) for about `time`, in rounds of 0.25 s,
/// and returns the best round's time per request.
fn measure(time: Duration, mut f: impl FnMut()) -> Duration {
    // Warm up caches and the allocator.
    for _ in 0..20 {
        f();
    }
    let mut best = Duration::MAX;
    let deadline = Instant::now() + time;
    while Instant::now() < deadline {
        let started = Instant::now();
        let mut n = 0u32;
        while started.elapsed() < Duration::from_millis(250) {
            f();
            n += 1;
        }
        best = best.min(started.elapsed() / n);
    }
    best
}

/// Like [`measure`] for work that consumes a decoded request: decodes
/// `BATCH` requests untimed, then times converting them (and dropping the
/// result, as the pipeline does after storing it).
fn measure_convert(time: Duration, pb: &[u8], limits: &Limits) -> Duration {
    const BATCH: usize = 32;
    let decoded = || -> Vec<ExportTraceServiceRequest> {
        (0..BATCH)
            .map(|_| ExportTraceServiceRequest::decode(pb).unwrap())
            .collect()
    };
    let mut best = Duration::MAX;
    let deadline = Instant::now() + time;
    let mut rounds = 0;
    while Instant::now() < deadline || rounds < 3 {
        let requests = decoded();
        let started = Instant::now();
        for req in requests {
            black_box(convert::traces(req, limits));
        }
        best = best.min(started.elapsed() / BATCH as u32);
        rounds += 1;
    }
    best
}

fn report(what: &str, per_request: Duration, bytes: usize) -> f64 {
    let spans_per_s = SPANS as f64 / per_request.as_secs_f64();
    println!(
        "{what:<28} {:>8.1} µs/request  {:>6.0} ns/span  {:>10.0} spans/s  {:>6.0} MB/s",
        per_request.as_secs_f64() * 1e6,
        per_request.as_secs_f64() * 1e9 / SPANS as f64,
        spans_per_s,
        bytes as f64 / per_request.as_secs_f64() / 1e6,
    );
    spans_per_s
}

fn main() {
    let seconds: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3.0);
    let time = Duration::from_secs_f64(seconds);
    let req = request();
    let pb = req.encode_to_vec();
    let json = serde_json::to_vec(&req).unwrap();
    let limits = Limits::default();

    // Sanity: everything converts, nothing is rejected.
    let out = convert::traces(
        body::decode_traces(Encoding::Protobuf, &pb).unwrap(),
        &limits,
    );
    assert_eq!(
        (out.batch.spans.len(), out.rejected),
        (SPANS, 0),
        "{:?}",
        out.errors
    );
    let out = convert::traces(body::decode_traces(Encoding::Json, &json).unwrap(), &limits);
    assert_eq!(
        (out.batch.spans.len(), out.rejected),
        (SPANS, 0),
        "{:?}",
        out.errors
    );

    println!(
        "{SPANS} spans a request, 8 attributes a span: {} bytes protobuf, {} bytes JSON",
        pb.len(),
        json.len()
    );
    let decode = measure(time, || {
        black_box(ExportTraceServiceRequest::decode(black_box(&pb[..])).unwrap());
    });
    let both = measure(time, || {
        let req = body::decode_traces(Encoding::Protobuf, black_box(&pb)).unwrap();
        black_box(convert::traces(req, &limits));
    });
    let json_both = measure(time, || {
        let req = body::decode_traces(Encoding::Json, black_box(&json)).unwrap();
        black_box(convert::traces(req, &limits));
    });
    let alone = measure_convert(time, &pb, &limits);
    let a = report("(a) prost decode", decode, pb.len());
    let b = report("(b) decode + convert", both, pb.len());
    report("(c) JSON decode + convert", json_both, json.len());
    report("(d) convert alone", alone, pb.len());
    println!("(b) runs at {:.2}× the speed of (a)", b / a);
}
