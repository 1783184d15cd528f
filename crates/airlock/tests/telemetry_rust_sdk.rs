//! The Rust OpenTelemetry SDK (`opentelemetry-otlp`) exports to the gateway
//! over OTLP/HTTP (protobuf) and OTLP/gRPC, with an ingest token; spans and
//! logs arrive with their service versions. (Metrics from a real SDK over
//! both transports are covered by the Python test: the Rust SDK's periodic
//! metric reader runs on a thread of its own without a tokio reactor, which
//! its async HTTP and gRPC clients need.)

mod common;

use std::collections::HashMap;

use common::{now_ms, World};
use opentelemetry::logs::{
    AnyValue as LogValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity,
};
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use reqwest::StatusCode;
use serde_json::Value;

/// Exports one version's telemetry and returns the trace id. Runs on a plain
/// thread with its own runtime: the SDK's simple processors block on their
/// exports.
fn export(grpc: bool, endpoint: String, version: &'static str) -> String {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let _entered = rt.enter();
        let resource = Resource::builder()
            .with_service_name("orders-api")
            .with_attributes([
                KeyValue::new("service.version", version),
                KeyValue::new("deployment.id", format!("deploy-{version}")),
            ])
            .build();
        let token = "Bearer rust-token".to_owned();
        let (spans, logs) = if grpc {
            let mut meta = tonic::metadata::MetadataMap::new();
            meta.insert("authorization", token.parse().unwrap());
            (
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(&endpoint)
                    .with_metadata(meta.clone())
                    .build()
                    .unwrap(),
                opentelemetry_otlp::LogExporter::builder()
                    .with_tonic()
                    .with_endpoint(&endpoint)
                    .with_metadata(meta)
                    .build()
                    .unwrap(),
            )
        } else {
            let headers = HashMap::from([("authorization".to_owned(), token)]);
            (
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_endpoint(format!("{endpoint}/v1/traces"))
                    .with_headers(headers.clone())
                    .build()
                    .unwrap(),
                opentelemetry_otlp::LogExporter::builder()
                    .with_http()
                    .with_endpoint(format!("{endpoint}/v1/logs"))
                    .with_headers(headers)
                    .build()
                    .unwrap(),
            )
        };
        let tp = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(spans)
            .with_resource(resource.clone())
            .build();
        let lp = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
            .with_simple_exporter(logs)
            .with_resource(resource)
            .build();

        let tracer = tp.tracer("rust-test");
        let mut span = tracer
            .span_builder("GET /orders/{id}")
            .with_kind(SpanKind::Server)
            .with_attributes([KeyValue::new("http.route", "/orders/{id}")])
            .start(&tracer);
        let trace_id = span.span_context().trace_id().to_string();
        span.set_status(Status::error(format!("order store timeout ({version})")));
        let cx = opentelemetry::Context::current_with_span(span);
        let logger = lp.logger("rust-test");
        let mut record = logger.create_log_record();
        record.set_body(LogValue::from(format!("lookup failed in {version}")));
        record.set_severity_number(Severity::Error);
        record.set_severity_text("ERROR");
        record.set_trace_context(
            cx.span().span_context().trace_id(),
            cx.span().span_context().span_id(),
            None,
        );
        logger.emit(record);
        cx.span().end();
        tp.shutdown().unwrap();
        lp.shutdown().unwrap();
        trace_id
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_over_http_and_grpc() {
    std::env::set_var("AIRLOCK_TEST_RUST_INGEST", "rust-token");
    let w = World::start_with(common::Options {
        // Plain HTTP and gRPC: the TLS path is covered by the Python test.
        http_tls: false,
        policy: Some(format!(
            "{}\n[telemetry]\ningest_tokens_env = \"AIRLOCK_TEST_RUST_INGEST\"\n",
            common::DEFAULT_POLICY
        )),
        ..Default::default()
    })
    .await;
    let start = now_ms();
    let r1 = export(false, w.http(), "r1");
    let r2 = export(true, format!("http://{}", w.grpc_addr), "r2");
    let http = reqwest::Client::new();
    let token = w.token("oncall1");
    let page: Value = http
        .get(format!(
            "{}/api/v1/timeline?since_ms={start}&service=orders-api&kinds=spans,logs,deploys",
            w.http()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = page["events"].as_array().unwrap();
    for (version, trace_id) in [("r1", &r1), ("r2", &r2)] {
        let span = events
            .iter()
            .find(|e| e["kind"] == "span" && e["version"] == version)
            .unwrap_or_else(|| panic!("no {version} span in {page}"));
        assert_eq!(span["trace_id"], trace_id.as_str());
        assert_eq!(span["error"], true);
        assert_eq!(span["summary"], "GET /orders/{id}");
        let log = events
            .iter()
            .find(|e| e["kind"] == "log" && e["version"] == version)
            .unwrap_or_else(|| panic!("no {version} log in {page}"));
        assert_eq!(log["summary"], format!("lookup failed in {version}"));
        assert_eq!(log["trace_id"], trace_id.as_str());
        let deploy = events
            .iter()
            .find(|e| e["kind"] == "deploy" && e["version"] == version)
            .unwrap_or_else(|| panic!("no {version} deploy marker in {page}"));
        assert_eq!(
            deploy["detail"]["deployment_id"],
            format!("deploy-{version}")
        );
    }
    // Both versions' server spans are counted by compare.
    let compare: Value = http
        .get(format!(
            "{}/api/v1/compare?service=orders-api&from=r1&to=r2&since_ms={start}",
            w.http()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(compare["to"]["requests"], 1, "{compare}");
    let new: Vec<&str> = compare["new_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert!(new.contains(&"order store timeout (r2)"), "{compare}");
    assert!(new.contains(&"lookup failed in r2"), "{compare}");
    assert!(!new.iter().any(|m| m.contains("r1")), "{compare}");
    // Without the token, the SDK's export is refused.
    let r = http
        .post(format!("{}/v1/traces", w.http()))
        .header("content-type", "application/x-protobuf")
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    w.stop().await;
}
