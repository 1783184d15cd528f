//! Telemetry end to end: the real OpenTelemetry Python SDK exports spans,
//! logs and metrics over OTLP/HTTP (protobuf, gzip, TLS) and OTLP/gRPC
//! (TLS); they appear in the timeline with their versions, beside the
//! access events of a real PostgreSQL session, in time order; deploy
//! markers (automatic and explicit), the trace view, compare, and the
//! receivers' answers to bad input.

mod common;

use std::process::Command;

use common::{now_ms, World};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost_otlp::Message;
use reqwest::StatusCode;
use serde_json::Value;

/// Exports one service version's telemetry with the Python SDK and prints
/// the trace ids as JSON. Arguments: http|grpc, endpoint, CA file, version,
/// ingest token ("" for none).
const EXPORTER: &str = r#"
import json, logging, sys, time
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.trace import SpanKind, Status, StatusCode

mode, endpoint, ca, version, token = sys.argv[1:6]
headers = {"authorization": "Bearer " + token} if token else None
if mode == "http":
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    kw = dict(certificate_file=ca, headers=headers, compression=Compression.Gzip)
    spans = OTLPSpanExporter(endpoint=endpoint + "/v1/traces", **kw)
    logs = OTLPLogExporter(endpoint=endpoint + "/v1/logs", **kw)
    metrics = OTLPMetricExporter(endpoint=endpoint + "/v1/metrics", **kw)
else:
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    creds = grpc.ssl_channel_credentials(root_certificates=open(ca, "rb").read())
    kw = dict(endpoint=endpoint, credentials=creds, headers=headers)
    spans = OTLPSpanExporter(**kw)
    logs = OTLPLogExporter(**kw)
    metrics = OTLPMetricExporter(**kw)

resource = Resource.create({
    "service.name": "checkout",
    "service.version": version,
    "deployment.environment.name": "prod",
    "service.instance.id": "checkout-" + version + "-1",
    "team": "payments",
})
tp = TracerProvider(resource=resource)
tp.add_span_processor(SimpleSpanProcessor(spans))
lp = LoggerProvider(resource=resource)
lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
log = logging.getLogger("checkout")
log.propagate = False
log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=lp))
log.setLevel(logging.INFO)
mp = MeterProvider(resource=resource, metric_readers=[
    PeriodicExportingMetricReader(metrics, export_interval_millis=3600000)])
meter = mp.get_meter("checkout")
requests = meter.create_counter("checkout.requests")
latency = meter.create_histogram("checkout.latency", unit="s")

tracer = tp.get_tracer("shop")
ids = []
with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER,
                                  attributes={"http.route": "/cart"}) as root:
    with tracer.start_as_current_span("SELECT cart", kind=SpanKind.CLIENT):
        time.sleep(0.005)
    log.warning("cart of %s is empty", "alice")
ids.append(format(root.get_span_context().trace_id, "032x"))
with tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER) as pay:
    pay.set_status(Status(StatusCode.ERROR, "card declined (" + version + ")"))
    log.error("payment failed for order %d", 42)
ids.append(format(pay.get_span_context().trace_id, "032x"))
requests.add(2, {"route": "/cart"})
latency.record(0.9 if version == "v2" else 0.1, {"route": "/cart"})
mp.force_flush()
tp.shutdown(); lp.shutdown(); mp.shutdown()
print(json.dumps({"trace_ids": ids}))
"#;

fn export(
    mode: &str,
    endpoint: &str,
    ca: &std::path::Path,
    version: &str,
    token: &str,
) -> Vec<String> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(EXPORTER)
        .args([mode, endpoint, ca.to_str().unwrap(), version, token])
        // requests lets REQUESTS_CA_BUNDLE override a session's own CA file
        // (psf/requests#3829), which would hide the exporter's
        // certificate_file behind the machine's bundle.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exporter failed: {stderr}");
    // The SDK logs failed exports instead of raising: any such line fails.
    assert!(
        !stderr.contains("Failed to export") && !stderr.contains("Transient error"),
        "the SDK reported an export failure: {stderr}"
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("{stdout}"));
    v["trace_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

const TELEMETRY_POLICY: &str = r#"
[telemetry]
ingest_tokens_env = "AIRLOCK_TEST_INGEST_TOKENS"

[[telemetry.threshold]]
name = "checkout-slow"
metric = "checkout.latency"
service = "checkout"
above = 0.5
stat = "mean"
"#;

async fn get(w: &World, token: &str, path: &str) -> (StatusCode, Value) {
    let r = w
        .http_client()
        .get(format!("{}{path}", w.http()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn telemetry_world() -> World {
    std::env::set_var("AIRLOCK_TEST_INGEST_TOKENS", "ingest-one, ingest-two");
    World::start_with(common::Options {
        policy: Some(format!("{}{TELEMETRY_POLICY}", common::DEFAULT_POLICY)),
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_http_and_grpc_lands_in_the_timeline_beside_access_events() {
    let w = telemetry_world().await;
    let start = now_ms();
    let ca = w.ca_file();
    let http_endpoint = w.http();
    let grpc_endpoint = format!("https://{}", w.grpc_addr);

    // v1 over OTLP/HTTP (protobuf, gzip), then a database session, then v2
    // over OTLP/gRPC.
    let v1 = {
        let ca = ca.clone();
        tokio::task::spawn_blocking(move || export("http", &http_endpoint, &ca, "v1", "ingest-one"))
            .await
            .unwrap()
    };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let conn = w.connect("oncall1", "read").await;
    let out = w.psql(&conn, &["-c", "SELECT count(*) FROM orders"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let v2 = {
        let ca = ca.clone();
        tokio::task::spawn_blocking(move || export("grpc", &grpc_endpoint, &ca, "v2", "ingest-two"))
            .await
            .unwrap()
    };
    let token = w.token("oncall1");

    // The timeline, oldest first: v1's telemetry, then the session, then v2's.
    let (status, page) = get(&w, &token, &format!("/api/v1/timeline?since_ms={start}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let events = page["events"].as_array().unwrap();
    let times: Vec<i64> = events
        .iter()
        .map(|e| e["time_ns"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|p| p[0] <= p[1]),
        "time order: {times:?}"
    );
    let find = |pred: &dyn Fn(&Value) -> bool, what: &str| -> Value {
        events.iter().find(|e| pred(e)).cloned().unwrap_or_else(|| {
            panic!(
                "no {what} in {}",
                serde_json::to_string_pretty(events).unwrap()
            )
        })
    };
    let cart_v1 = find(
        &|e| e["kind"] == "span" && e["summary"] == "GET /cart" && e["version"] == "v1",
        "v1 GET /cart span",
    );
    let pay_v2 = find(
        &|e| e["kind"] == "span" && e["summary"] == "POST /pay" && e["version"] == "v2",
        "v2 POST /pay span",
    );
    assert_eq!(pay_v2["error"], true);
    assert_eq!(cart_v1["service"], "checkout");
    assert_eq!(cart_v1["env"], "prod");
    // Child client spans are not summaries.
    assert!(!events.iter().any(|e| e["summary"] == "SELECT cart"));
    let session = find(
        &|e| e["kind"] == "access" && e["detail"]["record"]["kind"] == "session_start",
        "session_start access event",
    );
    let statement = find(
        &|e| {
            e["kind"] == "access"
                && e["detail"]["record"]["kind"] == "statement"
                && e["summary"]
                    .as_str()
                    .unwrap()
                    .contains("SELECT count(*) FROM orders")
        },
        "statement access event",
    );
    let t = |e: &Value| e["time_ns"].as_i64().unwrap();
    assert!(t(&cart_v1) < t(&session), "v1 before the session");
    assert!(t(&session) <= t(&statement));
    assert!(t(&statement) < t(&pay_v2), "the session before v2");
    // Logs, with severity and trace correlation.
    let warn = find(
        &|e| e["kind"] == "log" && e["summary"] == "cart of alice is empty" && e["version"] == "v1",
        "the warning log",
    );
    assert_eq!(warn["trace_id"], v1[0].as_str());
    let failed = find(
        &|e| {
            e["kind"] == "log"
                && e["summary"] == "payment failed for order 42"
                && e["version"] == "v2"
        },
        "the error log",
    );
    assert_eq!(failed["error"], true);
    // Automatic deploy markers for both versions, before their telemetry.
    let dep_v1 = find(
        &|e| e["kind"] == "deploy" && e["version"] == "v1",
        "v1 deploy marker",
    );
    let dep_v2 = find(
        &|e| e["kind"] == "deploy" && e["version"] == "v2",
        "v2 deploy marker",
    );
    assert_eq!(dep_v1["detail"]["source"], "auto");
    // A marker's time is the earliest record of the first batch that showed
    // the version (the SDK exports the child span before its parent).
    assert!(t(&dep_v1) < t(&session) && t(&session) < t(&dep_v2));
    assert!(t(&dep_v2) <= t(&pay_v2));
    // The threshold: v2's mean latency 0.9 crossed 0.5; v1's 0.1 did not.
    let crossing = find(&|e| e["kind"] == "metric", "threshold crossing");
    assert_eq!(crossing["version"], "v2");
    assert_eq!(crossing["detail"]["direction"], "above");
    assert_eq!(crossing["error"], true);
    assert_eq!(
        events.iter().filter(|e| e["kind"] == "metric").count(),
        1,
        "one crossing"
    );

    // Filters: service and version, kinds, grep, attributes.
    let (_, page) = get(
        &w,
        &token,
        &format!("/api/v1/timeline?since_ms={start}&version=v2&kinds=spans"),
    )
    .await;
    let only: Vec<&Value> = page["events"].as_array().unwrap().iter().collect();
    assert!(
        !only.is_empty()
            && only
                .iter()
                .all(|e| e["kind"] == "span" && e["version"] == "v2"),
        "{page}"
    );
    let (_, page) = get(
        &w,
        &token,
        &format!("/api/v1/timeline?since_ms={start}&grep=CARD%20DECLINED&kinds=spans"),
    )
    .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2, "{page}");
    let (_, page) = get(
        &w,
        &token,
        &format!("/api/v1/timeline?since_ms={start}&attr=team=payments&kinds=logs"),
    )
    .await;
    assert_eq!(
        page["events"].as_array().unwrap().len(),
        4,
        "resource attribute filter: {page}"
    );
    let (_, page) = get(
        &w,
        &token,
        &format!("/api/v1/timeline?since_ms={start}&attr=http.route=/cart&kinds=spans"),
    )
    .await;
    assert_eq!(
        page["events"].as_array().unwrap().len(),
        2,
        "span attribute filter: {page}"
    );
    // One trace: all its spans, even non-summaries, and its logs; no access events.
    let (_, page) = get(
        &w,
        &token,
        &format!("/api/v1/timeline?since_ms={start}&trace={}", v1[0]),
    )
    .await;
    let kinds: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "span").count(), 2, "{page}");
    assert_eq!(kinds.iter().filter(|k| **k == "log").count(), 1, "{page}");
    assert!(!kinds.contains(&"access"), "{page}");

    // The trace view: tree, versions, the log under its span.
    let (status, trace) = get(&w, &token, &format!("/api/v1/traces/{}", v1[0])).await;
    assert_eq!(status, StatusCode::OK, "{trace}");
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    let root = spans.iter().find(|s| s["name"] == "GET /cart").unwrap();
    let child = spans.iter().find(|s| s["name"] == "SELECT cart").unwrap();
    assert_eq!(child["parent_span_id"], root["span_id"]);
    assert_eq!(root["version"], "v1");
    assert_eq!(root["kind"], "server");
    assert!(child["duration_ns"].as_i64().unwrap() >= 5_000_000);
    assert_eq!(trace["logs"][0]["body"], "cart of alice is empty");
    assert_eq!(trace["logs"][0]["span_id"], root["span_id"]);
    let (status, _) = get(
        &w,
        &token,
        "/api/v1/traces/0af7651916cd43dd8448eb211c80319c",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = get(&w, &token, "/api/v1/traces/not-a-trace").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "bad_trace_id");

    // Compare: one request of each route per version, the pay one an error;
    // only v2's own error message is new.
    let (status, c) = get(
        &w,
        &token,
        &format!("/api/v1/compare?service=checkout&from=v1&to=v2&since_ms={start}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["from"]["requests"], 2);
    assert_eq!(c["to"]["requests"], 2);
    assert_eq!(c["to"]["errors"], 1);
    assert_eq!(c["to"]["error_rate"], 0.5);
    let new: Vec<&str> = c["new_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert!(new.contains(&"card declined (v2)"), "{c}");
    assert!(!new.iter().any(|m| m.contains("(v1)")), "{c}");

    // An explicit deploy marker, recorded in the audit log too.
    let r = w
        .http_client()
        .post(format!("{}/api/v1/deploys", w.http()))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "service": "checkout", "version": "v3", "commit": "abc123", "env": "prod" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, page) = get(
        &w,
        &token,
        &format!("/api/v1/timeline?since_ms={start}&kinds=deploys"),
    )
    .await;
    let deploys = page["events"].as_array().unwrap();
    assert_eq!(deploys.len(), 3, "{page}");
    let v3 = deploys.iter().find(|d| d["version"] == "v3").unwrap();
    assert_eq!(v3["detail"]["source"], "explicit");
    assert_eq!(v3["detail"]["actor"], "oncall1");
    let (_, audit) = get(
        &w,
        &token,
        "/api/v1/audit?kind=access&grep=marked%20a%20deploy",
    )
    .await;
    assert_eq!(audit["records"].as_array().unwrap().len(), 1, "{audit}");
    let _ = v2;
    w.stop().await;
}

fn span_request(trace_id: Vec<u8>, attr_len: usize) -> ExportTraceServiceRequest {
    let now = (now_ms() as u64) * 1_000_000;
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("raw".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    Span {
                        trace_id: trace_id.clone(),
                        span_id: vec![1; 8],
                        name: "good".into(),
                        start_time_unix_nano: now,
                        end_time_unix_nano: now + 1000,
                        ..Default::default()
                    },
                    Span {
                        trace_id,
                        span_id: vec![2; 8],
                        name: "big".into(),
                        start_time_unix_nano: now,
                        end_time_unix_nano: now + 1000,
                        attributes: vec![KeyValue {
                            key: "blob".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::StringValue("x".repeat(attr_len))),
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_refuse_bad_input_clearly_and_keep_serving() {
    let w = telemetry_world().await;
    let http = w.http_client();
    let url = format!("{}/v1/traces", w.http());
    let token = w.token("oncall1");
    let post = |body: Vec<u8>, content_type: &str, encoding: Option<&str>, auth: Option<&str>| {
        let mut r = http
            .post(&url)
            .header("content-type", content_type)
            .body(body);
        if let Some(e) = encoding {
            r = r.header("content-encoding", e);
        }
        if let Some(a) = auth {
            r = r.header("authorization", format!("Bearer {a}"));
        }
        r.send()
    };
    let good = span_request(vec![7; 16], 10).encode_to_vec();
    let count = |w: &World, token: String| {
        let w_http = w.http_client();
        let base = w.http();
        async move {
            let page: Value = w_http
                .get(format!("{base}/api/v1/timeline?service=raw&kinds=spans&trace=07070707070707070707070707070707&since_ms=0"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            page["events"].as_array().unwrap().len()
        }
    };

    // No token, a wrong token: 401 with a google.rpc.Status body.
    let r = post(good.clone(), "application/x-protobuf", None, None)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = post(good.clone(), "application/json", None, Some("nope"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("ingest token"),
        "{body}"
    );
    // Truncated protobuf: 400, nothing stored.
    let r = post(
        good[..good.len() - 7].to_vec(),
        "application/x-protobuf",
        None,
        Some("ingest-one"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Wrong content type: 415.
    let r = post(good.clone(), "text/plain", None, Some("ingest-one"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Unknown content encoding: 415.
    let r = post(
        good.clone(),
        "application/x-protobuf",
        Some("br"),
        Some("ingest-one"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // A gzip bomb: 64 MiB of zeros in about 64 KiB; the limit is 16 MiB.
    let bomb = {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            enc.write_all(&zeros).unwrap();
        }
        enc.finish().unwrap()
    };
    let r = post(
        bomb,
        "application/x-protobuf",
        Some("gzip"),
        Some("ingest-one"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A body over the limit as sent: 413 as soon as its Content-Length is
    // read, before the body is.
    let r = post(
        vec![0u8; 17 << 20],
        "application/x-protobuf",
        None,
        Some("ingest-one"),
    )
    .await;
    match r {
        Ok(r) => assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE),
        // The server may close the connection while the client still sends.
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    // An all-zero trace id: the spans are rejected, reported as partial success.
    let zero = span_request(vec![0; 16], 10).encode_to_vec();
    let r = post(zero, "application/x-protobuf", None, Some("ingest-one"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let answer =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
            r.bytes().await.unwrap(),
        )
        .unwrap();
    assert_eq!(answer.partial_success.unwrap().rejected_spans, 2);
    assert_eq!(count(&w, token.clone()).await, 0, "nothing partial stored");

    // A huge attribute value: that span is rejected, the other stored.
    let huge = span_request(vec![7; 16], 1 << 20).encode_to_vec();
    let r = post(huge, "application/x-protobuf", None, Some("ingest-one"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let answer =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
            r.bytes().await.unwrap(),
        )
        .unwrap();
    let partial = answer.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert!(!partial.error_message.is_empty());
    assert_eq!(count(&w, token.clone()).await, 1);

    // And the receiver still serves: a good request in JSON.
    let json = serde_json::to_vec(&span_request(vec![7; 16], 10)).unwrap();
    let r = post(json, "application/json", None, Some("ingest-two"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);

    // What happened is counted on /metrics (for admins): 3 spans stored, 3 rejected.
    let metrics = http
        .get(format!("{}/metrics", w.http()))
        .bearer_auth(w.token("lead1"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "airlock_telemetry_records_total{outcome=\"accepted\"} 3",
        "airlock_telemetry_records_total{outcome=\"rejected\"} 3",
        "airlock_telemetry_records_total{outcome=\"failed\"} 0",
        "airlock_telemetry_refused_busy_total 0",
        "airlock_telemetry_pending_bytes 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    w.stop().await;
}

// --- the CLI --------------------------------------------------------------------

/// An OTLP/JSON span of service `shop` at `version`: hex ids, times in
/// nanoseconds as strings, as the spec's JSON mapping has them.
#[allow(clippy::too_many_arguments)]
fn json_span(
    trace: &str,
    span: &str,
    parent: &str,
    name: &str,
    kind: i32,
    start_ns: i64,
    ms: i64,
    error: Option<&str>,
) -> Value {
    serde_json::json!({
        "traceId": trace, "spanId": span, "parentSpanId": parent, "name": name, "kind": kind,
        "startTimeUnixNano": start_ns.to_string(),
        "endTimeUnixNano": (start_ns + ms * 1_000_000).to_string(),
        "status": match error {
            Some(m) => serde_json::json!({ "code": 2, "message": m }),
            None => serde_json::json!({}),
        },
    })
}

fn shop_resource(version: &str) -> Value {
    serde_json::json!({ "attributes": [
        { "key": "service.name", "value": { "stringValue": "shop" } },
        { "key": "service.version", "value": { "stringValue": version } },
        { "key": "deployment.environment.name", "value": { "stringValue": "prod" } },
    ]})
}

async fn post_json(w: &World, path: &str, body: &Value) {
    let r = w
        .http_client()
        .post(format!("{}{path}", w.http()))
        .header("authorization", "Bearer ingest-one")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(!text.contains("rejected"), "nothing rejected: {text}");
}

async fn post_log(w: &World, version: &str, time_ns: i64, body: &str, trace: &str, span: &str) {
    post_json(
        w,
        "/v1/logs",
        &serde_json::json!({ "resourceLogs": [{
            "resource": shop_resource(version),
            "scopeLogs": [{ "logRecords": [{
                "timeUnixNano": time_ns.to_string(), "severityNumber": 13,
                "severityText": "WARN", "body": { "stringValue": body },
                "traceId": trace, "spanId": span,
            }]}],
        }]}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_timeline_follow_trace_compare_and_deploys() {
    use common::cli::{has, User};

    let w = telemetry_world().await;
    let oncall = User::logged_in(&w, "oncall1").await;
    let t0 = (now_ms() - 60_000) * 1_000_000;
    let trace = "5b8efff798038103d269b633813fc60c";
    // v1: four server spans of 10, 20, 30 and 40 ms, one failing, and a
    // child span and a log in the first one's trace.
    let mut v1 = vec![json_span(
        trace,
        "eee19b7ec3c1b174",
        "",
        "GET /cart",
        2,
        t0,
        10,
        None,
    )];
    v1.push(json_span(
        trace,
        "eee19b7ec3c1b175",
        "eee19b7ec3c1b174",
        "SELECT cart",
        3,
        t0 + 1_000_000,
        5,
        None,
    ));
    for (i, ms) in [20, 30, 40].into_iter().enumerate() {
        let id = format!("{:032x}", 0x1000 + i);
        v1.push(json_span(
            &id,
            "00000000000000a1",
            "",
            "GET /cart",
            2,
            t0 + (i as i64 + 1) * 1_000_000_000,
            ms,
            (ms == 40).then_some("db timeout"),
        ));
    }
    post_json(
        &w,
        "/v1/traces",
        &serde_json::json!({ "resourceSpans": [{
            "resource": shop_resource("v1"), "scopeSpans": [{ "spans": v1 }] }]}),
    )
    .await;
    post_log(
        &w,
        "v1",
        t0 + 2_000_000,
        "cart is empty",
        trace,
        "eee19b7ec3c1b175",
    )
    .await;
    // v2 ten seconds later: two server spans of 100 and 200 ms, both failing
    // with a message v1 never had.
    let v2: Vec<Value> = [100, 200]
        .into_iter()
        .enumerate()
        .map(|(i, ms)| {
            json_span(
                &format!("{:032x}", 0x2000 + i),
                "00000000000000b1",
                "",
                "GET /cart",
                2,
                t0 + (10 + i as i64) * 1_000_000_000,
                ms,
                Some("card declined"),
            )
        })
        .collect();
    post_json(
        &w,
        "/v1/traces",
        &serde_json::json!({ "resourceSpans": [{
            "resource": shop_resource("v2"), "scopeSpans": [{ "spans": v2 }] }]}),
    )
    .await;

    // The timeline: automatic deploy markers for both versions first, the
    // spans in time order, the log with its severity and trace.
    let out = oncall
        .run(&["timeline", "--since", "10m", "--service", "shop"])
        .await;
    let text = out.ok();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("DEPLOY") && lines[0].contains("shop@v1"),
        "{text}"
    );
    has(
        text,
        &[
            "span   ",
            " shop@v1 ",
            "GET /cart 10.00ms",
            "log    ",
            "WARN cart is empty",
            &format!("trace={trace}"),
            "error: db timeout",
            "error: card declined",
        ],
    );
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} in {text}"))
    };
    assert!(at("10.00ms") < at("cart is empty"));
    assert!(at("cart is empty") < at("db timeout"));
    assert!(at("db timeout") < at("card declined"));
    // Filters: a version, kinds, text; JSON lines.
    let out = oncall
        .run(&[
            "timeline",
            "--since",
            "10m",
            "--service",
            "shop",
            "--version",
            "v2",
            "--kinds",
            "spans",
            "--json",
        ])
        .await;
    let events: Vec<Value> = out
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{}", out.show());
    assert!(events
        .iter()
        .all(|e| e["kind"] == "span" && e["version"] == "v2" && e["error"] == true));
    let out = oncall
        .run(&[
            "timeline", "--since", "10m", "--grep", "EMPTY", "--kinds", "logs",
        ])
        .await;
    assert_eq!(out.ok().lines().count(), 1, "{}", out.show());
    let out = oncall
        .run(&["timeline", "--since", "10m", "--trace", trace])
        .await;
    // The trace's root span, its child (not a summary span, shown only with
    // --trace) and its log.
    assert_eq!(out.ok().lines().count(), 3, "{}", out.show());
    has(out.ok(), &["SELECT cart"]);
    let out = oncall
        .run(&[
            "timeline",
            "--since",
            "10m",
            "--service",
            "nobody",
            "--kinds",
            "logs,spans",
        ])
        .await;
    assert_eq!(out.ok(), "no events in the window\n");
    // Bad input: exit 1 and what to do.
    let e = oncall
        .run(&["timeline", "--since", "yesterday-ish"])
        .await
        .fails()
        .to_owned();
    has(&e, &["--since yesterday-ish"]);
    let e = oncall
        .run(&["timeline", "--attr", "novalue"])
        .await
        .fails()
        .to_owned();
    has(&e, &["KEY=VALUE"]);
    let e = oncall
        .run(&["timeline", "--follow", "--until", "1m"])
        .await
        .fails()
        .to_owned();
    has(&e, &["leave out --until"]);

    // The waterfall: the tree, durations, versions, the log under its span.
    let out = oncall.run(&["trace", trace]).await;
    let text = out.ok();
    has(
        text,
        &[
            &format!("trace {trace}  2 spans  1 services"),
            "GET /cart",
            "  SELECT cart",
            "10.00ms",
            "5.00ms",
            "shop@v1",
            "↳ +2.00ms WARN cart is empty",
        ],
    );
    let view = oncall.run(&["trace", trace, "--json"]).await.json();
    assert_eq!(view["spans"].as_array().unwrap().len(), 2);
    let e = oncall.run(&["trace", "xyz"]).await.fails().to_owned();
    has(&e, &["not a trace id", "32 hexadecimal digits"]);
    let e = oncall
        .run(&["trace", "0123456789abcdef0123456789abcdef"])
        .await
        .fails()
        .to_owned();
    has(&e, &["nothing is stored of trace", "404", "check the id"]);

    // compare: the hand-computed numbers. v1: 4 requests (the child is not a
    // server span), 1 error, nearest-rank p50 20 ms, p95 and p99 40 ms. v2: 2
    // requests, both errors, p50 100 ms, p95 and p99 200 ms.
    let out = oncall
        .run(&["compare", "--service", "shop", "--from", "v1", "--to", "v2"])
        .await;
    let text = out.ok();
    let row = |label: &str| -> Vec<&str> {
        text.lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("{label} in {text}"))
            .split_whitespace()
            .collect()
    };
    assert_eq!(row("requests"), ["requests", "4", "2"]);
    assert_eq!(row("errors")[1..], ["25.00%", "100.00%", "+75.00", "pp"]);
    assert_eq!(row("p50")[1..], ["20.00ms", "100.00ms", "+400.0%"]);
    assert_eq!(row("p99")[1..], ["40.00ms", "200.00ms", "+400.0%"]);
    has(text, &["errors only in v2:", "2×  card declined"]);
    assert!(!text.contains("db timeout"), "{text}");
    let c = oncall
        .run(&[
            "compare",
            "--service",
            "shop",
            "--from",
            "v1",
            "--to",
            "v2",
            "--json",
        ])
        .await
        .json();
    assert_eq!(
        (&c["from"]["requests"], &c["to"]["errors"]),
        (&4.into(), &2.into())
    );
    oncall
        .run(&["compare", "--service", "shop", "--from", "v1"])
        .await
        .usage_error();

    // deploy mark and list: the explicit marker beside the automatic ones,
    // and an audit record of who marked it.
    let out = oncall
        .run(&[
            "deploy",
            "mark",
            "--service",
            "shop",
            "--version",
            "v2",
            "--id",
            "d-77",
            "--commit",
            "9fceb02",
            "--env",
            "prod",
        ])
        .await;
    has(out.ok(), &["marked: shop v2 at "]);
    let out = oncall.run(&["deploy", "list", "--service", "shop"]).await;
    let text = out.ok();
    let listed: Vec<&str> = text.lines().collect();
    assert_eq!(listed.len(), 3, "{text}");
    assert!(
        listed[0].contains(" v1 ") && listed[0].contains(" auto "),
        "{text}"
    );
    assert!(
        listed[1].contains(" v2 ") && listed[1].contains(" auto "),
        "{text}"
    );
    has(
        listed[2],
        &[" v2 ", " prod ", " explicit ", "oncall1", "commit 9fceb02"],
    );
    let json = oncall
        .run(&["deploy", "list", "--service", "shop", "--json"])
        .await
        .json();
    assert_eq!(json[2]["deployment_id"], "d-77");
    let e = oncall
        .run(&["deploy", "mark", "--service", "shop"])
        .await
        .fails()
        .to_owned();
    has(&e, &["--version", "--id"]);
    let out = oncall
        .run(&[
            "timeline", "--since", "10m", "--kinds", "access", "--grep", "deploy",
        ])
        .await;
    has(out.ok(), &["access", "deploy"]);

    // --follow: prints what is there, then what arrives, until stopped.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args([
            "timeline",
            "--follow",
            "--since",
            "10m",
            "--service",
            "shop",
            "--kinds",
            "logs",
        ])
        .env("AIRLOCK_HOME", oncall.home.path())
        .env("AIRLOCK_LOG", "off")
        .env_remove("AIRLOCK_TOKEN")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    type Lines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;
    async fn next_line(lines: &mut Lines) -> String {
        tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("--follow printed within 30 s")
            .unwrap()
            .expect("--follow is still running")
    }
    assert!(next_line(&mut lines).await.contains("cart is empty"));
    let now = now_ms() * 1_000_000;
    post_log(&w, "v2", now, "first new line", trace, "eee19b7ec3c1b175").await;
    post_log(
        &w,
        "v2",
        now,
        "second, same instant",
        trace,
        "eee19b7ec3c1b175",
    )
    .await;
    let mut got = vec![next_line(&mut lines).await, next_line(&mut lines).await];
    got.sort();
    assert!(got[0].contains("first new line"), "{got:?}");
    assert!(got[1].contains("second, same instant"), "{got:?}");
    // Nothing is printed twice while it follows.
    post_log(
        &w,
        "v2",
        now + 1_000_000,
        "third",
        trace,
        "eee19b7ec3c1b175",
    )
    .await;
    assert!(next_line(&mut lines).await.contains("third"));
    child.kill().await.unwrap();
    w.stop().await;
}

/// Regression: OTLP ingest accepted anything when no ingest token was
/// configured, even on a listener anyone could reach. Without a token the
/// gateway now starts only when every OTLP listener is on loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_ingest_on_a_reachable_listener_refuses_to_start() {
    let w = World::start().await;
    for (key, http, grpc) in [
        ("listen_http", "0.0.0.0:7443", Some("127.0.0.1:4317")),
        ("listen_otlp_grpc", "127.0.0.1:7443", Some("[::]:4317")),
    ] {
        let mut config = w.config.clone();
        config.gateway.listen_http = http.to_owned();
        config.gateway.listen_otlp_grpc = grpc.map(str::to_owned);
        let data = tempfile::tempdir().unwrap();
        config.gateway.data_dir = data.path().join("data");
        let listeners = airlock::gateway::Listeners {
            postgres: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            http: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            otlp_grpc: None,
        };
        let run = airlock::gateway::run(
            config,
            listeners,
            tokio_util::sync::CancellationToken::new(),
            std::sync::Arc::new(airlock_access::SystemClock),
        );
        let err = tokio::time::timeout(std::time::Duration::from_secs(30), run)
            .await
            .expect("refused at once")
            .expect_err("must not start");
        let text = format!("{err:#}");
        assert!(
            text.contains("ingest_tokens_env") && text.contains(key),
            "{text}"
        );
    }
    w.stop().await;
}

/// Ingest stops while the data directory's disk is below
/// `[telemetry] min_free_space`, so the audit log beside it keeps room, and
/// resumes once space is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_stops_while_the_data_disk_is_low() {
    let w = World::start_with(common::Options {
        data_dir_tmpfs: Some(64 << 20),
        policy: Some(format!(
            "{}\n[telemetry]\nmin_free_space = \"40MiB\"\n",
            common::DEFAULT_POLICY
        )),
        ..Default::default()
    })
    .await;
    let log = serde_json::json!({ "resourceLogs": [{
        "resource": { "attributes": [{ "key": "service.name", "value": { "stringValue": "disk" } }] },
        "scopeLogs": [{ "logRecords": [{ "timeUnixNano": (now_ms() * 1_000_000).to_string(), "body": { "stringValue": "hello" } }] }],
    }]});
    let post = || async {
        let r = w
            .http_client()
            .post(format!("{}/v1/logs", w.http()))
            .json(&log)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    };
    let (status, text) = post().await;
    assert_eq!(status, StatusCode::OK, "{text}");
    // Fill the disk past the floor.
    let filler = w.data_dir().join("filler");
    std::fs::write(&filler, vec![0u8; 32 << 20]).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, text) = post().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(text.contains("min_free_space"), "{text}");
    std::fs::remove_file(&filler).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, text) = post().await;
    assert_eq!(status, StatusCode::OK, "{text}");
    w.stop().await;
}

/// The telemetry store is bounded by `[telemetry] max_size`: past it the
/// oldest telemetry is removed first, so ingest cannot grow it without end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_stays_under_max_size_removing_the_oldest_first() {
    let w = World::start_with(common::Options {
        policy: Some(format!(
            "{}\n[telemetry]\nmax_size = \"2MiB\"\nretain = \"1d\"\n",
            common::DEFAULT_POLICY
        )),
        ..Default::default()
    })
    .await;
    // 40 batches of 20 logs of 8 KiB (6+ MiB in all), ten minutes apart,
    // oldest first.
    let now_ns = now_ms() * 1_000_000;
    let body = "x".repeat(8 * 1024);
    for i in 0..40i64 {
        let t = now_ns - (40 - i) * 600 * 1_000_000_000;
        let records: Vec<Value> = (0..20)
            .map(|j| {
                serde_json::json!({
                    "timeUnixNano": (t + j).to_string(), "severityNumber": 9,
                    "body": { "stringValue": format!("{i} {body}") },
                })
            })
            .collect();
        let r = w
            .http_client()
            .post(format!("{}/v1/logs", w.http()))
            .json(&serde_json::json!({ "resourceLogs": [{
                "resource": shop_resource("v1"),
                "scopeLogs": [{ "logRecords": records }],
            }]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        // Let the writer's size check (every 2 s at most) keep up.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    // One more batch triggers the check after the pause.
    post_log(&w, "v1", now_ns, "last", "", "").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // Read beside the running gateway (the world's directory goes with it).
    let path = airlock::gateway::telemetry_path(&w.data_dir());
    use airlock_store::telemetry::TelemetryStore as _;
    let store = airlock_store::SqliteTelemetry::open(&path).unwrap();
    let used = store.used_bytes().unwrap().unwrap();
    assert!(used <= 2 * 1024 * 1024, "the store holds {used} bytes");
    let (_, logs, _) = store.counts().unwrap();
    assert!(logs > 0 && logs < 801, "{logs} logs kept");
    // The newest were kept: the last log is among them.
    let kept = store
        .timeline(&airlock_store::telemetry::TimelineQuery {
            service: Some("shop".into()),
            since_ns: now_ns - 1,
            until_ns: i64::MAX,
            ..Default::default()
        })
        .unwrap();
    assert!(!kept.is_empty(), "the newest telemetry was removed");
    drop(store);
    w.stop().await;
}
