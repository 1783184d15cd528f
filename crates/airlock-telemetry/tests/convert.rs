//! End to end through the decoding layer: OTLP requests built here, encoded
//! as protobuf and as JSON, decoded by `body` and converted by `convert`,
//! compared with what the store should receive.

use airlock_store::telemetry::{MetricKind, Resource, SpanKind, StatusCode};
use airlock_telemetry::body::{self, Encoding};
use airlock_telemetry::convert::{self, Converted, Limits, MAX_ERRORS};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value as V, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile, ExponentialHistogram, ExponentialHistogramDataPoint,
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1::{
    span::Event, ResourceSpans, ScopeSpans, Span as OtlpSpan, Status,
};
use prost_otlp::Message;
use serde_json::json;

const T0: u64 = 1_700_000_000_000_000_000;

fn kv(key: &str, value: V) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

fn s(v: &str) -> V {
    V::StringValue(v.into())
}

fn resource(attrs: Vec<KeyValue>) -> Option<OtlpResource> {
    Some(OtlpResource {
        attributes: attrs,
        ..Default::default()
    })
}

fn scope(name: &str) -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: name.into(),
        version: "1.0".into(),
        ..Default::default()
    })
}

fn span(n: u8) -> OtlpSpan {
    OtlpSpan {
        trace_id: vec![0xab; 16],
        span_id: vec![n.max(1); 8],
        name: format!("span {n}"),
        kind: 2,
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + 1_000_000,
        ..Default::default()
    }
}

fn traces_request(
    resource_spans: Vec<(Option<OtlpResource>, Vec<OtlpSpan>)>,
) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: resource_spans
            .into_iter()
            .map(|(resource, spans)| ResourceSpans {
                resource,
                scope_spans: vec![ScopeSpans {
                    scope: scope("lib"),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// Converts `req` after a protobuf round trip and after a JSON round trip,
/// checks both agree, and returns the result.
fn via_both_encodings_traces(req: &ExportTraceServiceRequest, limits: &Limits) -> Converted {
    let pb = body::decode_traces(Encoding::Protobuf, &req.encode_to_vec()).unwrap();
    let js = body::decode_traces(Encoding::Json, &serde_json::to_vec(req).unwrap()).unwrap();
    assert_eq!(&pb, req);
    assert_eq!(&js, req);
    let a = convert::traces(pb, limits);
    let b = convert::traces(js, limits);
    assert_eq!(a, b);
    a
}

fn via_both_encodings_logs(req: &ExportLogsServiceRequest, limits: &Limits) -> Converted {
    let pb = body::decode_logs(Encoding::Protobuf, &req.encode_to_vec()).unwrap();
    let js = body::decode_logs(Encoding::Json, &serde_json::to_vec(req).unwrap()).unwrap();
    assert_eq!(&pb, req);
    assert_eq!(&js, req);
    let a = convert::logs(pb, limits);
    assert_eq!(a, convert::logs(js, limits));
    a
}

/// As above; the requests are compared by their protobuf encoding, since
/// NaN is not equal to itself, and JSON writes non-finite doubles as `null`
/// (read back as absent), which the conversion treats as it treats the
/// non-finite value (dropped sum, min or max).
fn via_both_encodings_metrics(req: &ExportMetricsServiceRequest, limits: &Limits) -> Converted {
    let pb = body::decode_metrics(Encoding::Protobuf, &req.encode_to_vec()).unwrap();
    let js = body::decode_metrics(Encoding::Json, &serde_json::to_vec(req).unwrap()).unwrap();
    assert_eq!(pb.encode_to_vec(), req.encode_to_vec());
    let a = convert::metrics(pb, limits);
    assert_eq!(a, convert::metrics(js, limits));
    a
}

#[test]
fn traces_round_trip() {
    let mut root = span(1);
    root.attributes = vec![
        kv("http.route", s("/checkout")),
        kv("http.status_code", V::IntValue(500)),
        kv("ratio", V::DoubleValue(0.25)),
        kv("ok", V::BoolValue(false)),
        kv("raw", V::BytesValue(vec![0, 1, 2])),
        kv(
            "list",
            V::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(s("a")),
                    },
                    AnyValue {
                        value: Some(V::IntValue(2)),
                    },
                ],
            }),
        ),
        kv(
            "map",
            V::KvlistValue(KeyValueList {
                values: vec![kv("inner", V::BoolValue(true))],
            }),
        ),
    ];
    root.status = Some(Status {
        message: "boom".into(),
        code: 2,
    });
    root.events = vec![Event {
        time_unix_nano: T0 + 500,
        name: "exception".into(),
        attributes: vec![kv("exception.message", s("boom"))],
        dropped_attributes_count: 0,
    }];
    let mut child = span(2);
    child.parent_span_id = vec![1; 8];
    child.kind = 3;
    let res = resource(vec![
        kv("service.name", s("checkout")),
        kv("service.version", s("1.2.4")),
        kv("deployment.environment.name", s("prod")),
        kv("host.name", s("web-1")),
        kv("cloud.region", s("eu-west-1")),
    ]);
    let req = traces_request(vec![(res, vec![root, child])]);
    let out = via_both_encodings_traces(&req, &Limits::default());
    assert_eq!(out.rejected, 0, "{:?}", out.errors);
    assert!(out.errors.is_empty());
    assert_eq!(
        out.batch.resources,
        [Resource {
            service: "checkout".into(),
            version: Some("1.2.4".into()),
            env: Some("prod".into()),
            deployment_id: None,
            instance_id: None,
            host: Some("web-1".into()),
            attributes: json!({"cloud.region": "eu-west-1"})
                .as_object()
                .unwrap()
                .clone(),
        }]
    );
    let [root, child] = &out.batch.spans[..] else {
        panic!("{:?}", out.batch.spans)
    };
    assert_eq!(root.trace_id, [0xab; 16]);
    assert_eq!(root.span_id, [1; 8]);
    assert_eq!(root.parent_span_id, None);
    assert_eq!(root.name, "span 1");
    assert_eq!(root.kind, SpanKind::Server);
    assert_eq!(root.start_ns, T0 as i64);
    assert_eq!(root.duration_ns(), 1_000_000);
    assert_eq!(root.status, StatusCode::Error);
    assert_eq!(root.status_message, "boom");
    assert_eq!(root.scope, "lib");
    assert_eq!(
        serde_json::Value::Object(root.attributes.clone()),
        json!({
            "http.route": "/checkout", "http.status_code": 500, "ratio": 0.25, "ok": false,
            "raw": "AAEC", "list": ["a", 2], "map": {"inner": true}
        })
    );
    assert_eq!(root.events.len(), 1);
    assert_eq!(root.events[0].name, "exception");
    assert_eq!(root.events[0].time_ns, (T0 + 500) as i64);
    assert_eq!(root.events[0].attributes["exception.message"], "boom");
    assert_eq!(child.parent_span_id, Some([1; 8]));
    assert_eq!(child.kind, SpanKind::Client);
    assert_eq!(child.status, StatusCode::Unset);
    assert_eq!((root.resource, child.resource), (0, 0));
}

/// The OTLP spec's trace example, straight from JSON to records.
#[test]
fn spec_json_example_to_records() {
    let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},
      "scopeSpans":[{"scope":{"name":"my.library","version":"1.0.0","attributes":[{"key":"my.scope.attribute","value":{"stringValue":"some scope attribute"}}]},
      "spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","parentSpanId":"EEE19B7EC3C1B173",
        "name":"I'm a server span","startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000","kind":2,
        "attributes":[{"key":"my.span.attr","value":{"stringValue":"some value"}}]}]}]}]}"#;
    let req = body::decode_traces(Encoding::Json, body).unwrap();
    let out = convert::traces(req, &Limits::default());
    assert_eq!(out.rejected, 0);
    assert_eq!(out.batch.resources[0].service, "my.service");
    let span = &out.batch.spans[0];
    assert_eq!(
        span.trace_id,
        convert::hex_trace_id("5b8efff798038103d269b633813fc60c").unwrap()
    );
    assert_eq!(
        span.parent_span_id,
        convert::hex_span_id("eee19b7ec3c1b173")
    );
    assert_eq!(span.kind, SpanKind::Server);
    assert_eq!(span.duration_ns(), 1_000_000_000);
    assert_eq!(span.scope, "my.library");
    assert_eq!(span.attributes["my.span.attr"], "some value");
    assert!(span.is_summary());
}

#[test]
fn invalid_spans_are_rejected_and_the_rest_kept() {
    let limits = Limits {
        max_attribute_value: 100,
        max_attributes: 4,
        max_events: 2,
        max_name: 20,
        max_body: 100,
    };
    let good = span(1);
    let mut short_trace = span(2);
    short_trace.trace_id = vec![1; 15];
    let mut zero_trace = span(3);
    zero_trace.trace_id = vec![0; 16];
    let mut zero_span = span(4);
    zero_span.span_id = vec![0; 8];
    let mut bad_parent = span(5);
    bad_parent.parent_span_id = vec![1; 4];
    let mut backwards = span(6);
    backwards.end_time_unix_nano = backwards.start_time_unix_nano - 1;
    let mut huge_attr = span(7);
    huge_attr.attributes = vec![kv("big", s(&"x".repeat(101)))];
    let mut many_attrs = span(8);
    many_attrs.attributes = (0..5)
        .map(|i| kv(&format!("k{i}"), V::IntValue(i)))
        .collect();
    let mut long_name = span(9);
    long_name.name = "n".repeat(21);
    let mut late = span(10);
    late.start_time_unix_nano = u64::MAX - 1;
    late.end_time_unix_nano = u64::MAX;
    let mut events = span(11);
    events.events = vec![Event::default(); 3];
    let mut zero_parent = span(12);
    zero_parent.parent_span_id = vec![0; 8];
    let mut unknown_kind = span(13);
    unknown_kind.kind = 42;
    unknown_kind.status = Some(Status {
        message: String::new(),
        code: 9,
    });
    let mut at_limits = span(14);
    at_limits.name = "n".repeat(20);
    at_limits.attributes = (0..4)
        .map(|i| kv(&format!("k{i}"), s(&"y".repeat(100))))
        .collect();
    at_limits.events = vec![Event::default(); 2];

    let req = traces_request(vec![(
        None,
        vec![
            good,
            short_trace,
            zero_trace,
            zero_span,
            bad_parent,
            backwards,
            huge_attr,
            many_attrs,
            long_name,
            late,
            events,
            zero_parent,
            unknown_kind,
            at_limits,
        ],
    )]);
    let out = via_both_encodings_traces(&req, &limits);
    let kept: Vec<&str> = out.batch.spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(kept, ["span 1", "span 12", "span 13", &"n".repeat(20)]);
    assert_eq!(out.rejected, 10);
    assert_eq!(out.errors.len(), MAX_ERRORS, "{:?}", out.errors);
    assert_eq!(out.errors[0], "span: the trace id is 15 bytes, not 16");
    assert_eq!(out.errors[1], "span: the trace id is all zeros");
    assert!(out.errors.iter().all(|e| e.len() < 120), "{:?}", out.errors);
    // All-zero parent: a root. Unknown kind and status: lenient.
    assert_eq!(out.batch.spans[1].parent_span_id, None);
    assert_eq!(out.batch.spans[2].kind, SpanKind::Unspecified);
    assert_eq!(out.batch.spans[2].status, StatusCode::Unset);
    assert_eq!(out.error_message().matches("; ").count(), MAX_ERRORS - 1);

    // Each failure on its own gives its own reason.
    let reasons = |span: OtlpSpan| {
        let out = convert::traces(traces_request(vec![(None, vec![span])]), &limits);
        assert_eq!(out.rejected, 1);
        assert!(out.batch.spans.is_empty() && out.batch.resources.is_empty());
        out.errors.join("")
    };
    let mut s7 = span(7);
    s7.attributes = vec![kv("big", s(&"x".repeat(101)))];
    assert_eq!(
        reasons(s7),
        "span: attribute \"big\" is over the limit of 100 bytes"
    );
    let mut s8 = span(8);
    s8.attributes = (0..5)
        .map(|i| kv(&format!("k{i}"), V::IntValue(i)))
        .collect();
    assert_eq!(reasons(s8), "span: 5 attributes, over the limit of 4");
    let mut s6 = span(6);
    s6.end_time_unix_nano = s6.start_time_unix_nano - 1;
    assert_eq!(reasons(s6), "span: it ends before it starts");
    let mut s10 = span(10);
    s10.start_time_unix_nano = i64::MAX as u64 + 1;
    assert!(reasons(s10).contains("after 2262"));
    let mut s15 = span(15);
    s15.start_time_unix_nano = 0;
    assert_eq!(reasons(s15), "span: no start time");
    let mut s16 = span(16);
    s16.events = vec![Event {
        attributes: vec![kv("big", s(&"x".repeat(101)))],
        name: "ev".into(),
        ..Default::default()
    }];
    assert_eq!(
        reasons(s16),
        "span: event \"ev\": attribute \"big\" is over the limit of 100 bytes"
    );
}

#[test]
fn resources_are_lifted_and_deduplicated() {
    let a = vec![
        kv("service.name", s("api")),
        kv("deployment.environment", s("staging")),
        kv("service.instance.id", s("i-1")),
        kv("deployment.id", V::IntValue(42)),
    ];
    let both_envs = vec![
        kv("service.name", s("api")),
        kv("deployment.environment", s("old")),
        kv("deployment.environment.name", s("new")),
    ];
    let req = traces_request(vec![
        (resource(a.clone()), vec![span(1)]),
        (resource(both_envs), vec![span(2)]),
        // Equal to the first, attributes in another order: same resource.
        (resource(a.into_iter().rev().collect()), vec![span(3)]),
        // No resource at all, and an empty service.name.
        (None, vec![span(4)]),
        (resource(vec![kv("service.name", s(""))]), vec![span(5)]),
        // A resource whose only span is rejected is not in the batch.
        (
            resource(vec![kv("service.name", s("ghost"))]),
            vec![OtlpSpan::default()],
        ),
        // Nor is one without spans.
        (resource(vec![kv("service.name", s("empty"))]), vec![]),
    ]);
    let out = via_both_encodings_traces(&req, &Limits::default());
    assert_eq!(out.rejected, 1);
    let rs = &out.batch.resources;
    assert_eq!(rs.len(), 3, "{rs:#?}");
    assert_eq!(rs[0].service, "api");
    assert_eq!(rs[0].env.as_deref(), Some("staging"));
    assert_eq!(rs[0].instance_id.as_deref(), Some("i-1"));
    // A non-string value is lifted as its JSON text.
    assert_eq!(rs[0].deployment_id.as_deref(), Some("42"));
    assert!(rs[0].attributes.is_empty(), "{:?}", rs[0].attributes);
    // deployment.environment.name wins; the old key stays an attribute.
    assert_eq!(rs[1].env.as_deref(), Some("new"));
    assert_eq!(rs[1].attributes["deployment.environment"], "old");
    assert_eq!(rs[2].service, "unknown_service");
    assert_eq!(rs[2].version, None);
    let indexes: Vec<usize> = out.batch.spans.iter().map(|s| s.resource).collect();
    assert_eq!(indexes, [0, 1, 0, 2, 2]);
}

#[test]
fn a_resource_over_the_limits_rejects_its_records() {
    let limits = Limits {
        max_attributes: 2,
        ..Limits::default()
    };
    let req = traces_request(vec![
        (
            resource(vec![kv("a", s("1")), kv("b", s("2")), kv("c", s("3"))]),
            vec![span(1), span(2)],
        ),
        (resource(vec![kv("service.name", s("fine"))]), vec![span(3)]),
    ]);
    let out = convert::traces(req, &limits);
    assert_eq!(out.rejected, 2);
    assert_eq!(out.errors, ["resource: 3 attributes, over the limit of 2"]);
    assert_eq!(out.batch.spans.len(), 1);
    assert_eq!(out.batch.resources[0].service, "fine");
}

#[test]
fn deep_attributes_are_rejected() {
    let mut v = AnyValue {
        value: Some(s("leaf")),
    };
    // 20 levels: past MAX_DEPTH, within prost's decoding limit of 100
    // nested messages (each level is an AnyValue and an ArrayValue).
    for _ in 0..20 {
        v = AnyValue {
            value: Some(V::ArrayValue(ArrayValue { values: vec![v] })),
        };
    }
    let mut deep = span(1);
    deep.attributes = vec![KeyValue {
        key: "deep".into(),
        value: Some(v),
        key_strindex: 0,
    }];
    let out = via_both_encodings_traces(
        &traces_request(vec![(None, vec![deep, span(2)])]),
        &Limits::default(),
    );
    assert_eq!(out.rejected, 1);
    assert_eq!(out.batch.spans.len(), 1);
    assert!(
        out.errors[0].contains("nests more than 16 levels"),
        "{:?}",
        out.errors
    );
}

fn log_request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(vec![kv("service.name", s("worker"))]),
            scope_logs: vec![ScopeLogs {
                scope: scope("logger"),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn logs_round_trip_and_rules() {
    let limits = Limits {
        max_body: 40,
        ..Limits::default()
    };
    let text = LogRecord {
        time_unix_nano: T0,
        observed_time_unix_nano: T0 + 5,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: Some(AnyValue {
            value: Some(s("payment failed")),
        }),
        attributes: vec![kv("order", V::IntValue(7))],
        trace_id: vec![0xab; 16],
        span_id: vec![1; 8],
        event_name: "payment.failed".into(),
        ..Default::default()
    };
    let structured = LogRecord {
        observed_time_unix_nano: T0 + 9,
        severity_number: 99,
        body: Some(AnyValue {
            value: Some(V::KvlistValue(KeyValueList {
                values: vec![kv("msg", s("hi")), kv("n", V::IntValue(1))],
            })),
        }),
        trace_id: vec![0; 16],
        ..Default::default()
    };
    let no_body = LogRecord {
        time_unix_nano: T0,
        ..Default::default()
    };
    let no_time = LogRecord {
        body: Some(AnyValue {
            value: Some(s("when?")),
        }),
        ..Default::default()
    };
    let bad_trace = LogRecord {
        time_unix_nano: T0,
        trace_id: vec![1; 8],
        ..Default::default()
    };
    let bad_span = LogRecord {
        time_unix_nano: T0,
        span_id: vec![1; 16],
        ..Default::default()
    };
    let long_body = LogRecord {
        time_unix_nano: T0,
        body: Some(AnyValue {
            value: Some(s(&"z".repeat(41))),
        }),
        ..Default::default()
    };
    // 34 bytes of content, but 45 as the JSON text stored.
    let long_json_body = LogRecord {
        time_unix_nano: T0,
        body: Some(AnyValue {
            value: Some(V::ArrayValue(ArrayValue {
                values: (0..10)
                    .map(|_| AnyValue {
                        value: Some(s("a")),
                    })
                    .collect(),
            })),
        }),
        ..Default::default()
    };
    let late = LogRecord {
        time_unix_nano: u64::MAX,
        ..Default::default()
    };
    let req = log_request(vec![
        text,
        structured,
        no_body,
        no_time,
        bad_trace,
        bad_span,
        long_body,
        long_json_body,
        late,
    ]);
    let out = via_both_encodings_logs(&req, &limits);
    assert_eq!(out.rejected, 6, "{:?}", out.errors);
    assert!(out
        .errors
        .contains(&"log record: a log record needs a time (time or observed time)".to_owned()));
    assert!(out
        .errors
        .contains(&"log record: the trace id is 8 bytes, not 16 (or empty)".to_owned()));
    let [text, structured, no_body] = &out.batch.logs[..] else {
        panic!("{:?}", out.batch.logs)
    };
    assert_eq!(text.time_ns, T0 as i64);
    assert_eq!(text.body, "payment failed");
    assert!(text.is_error());
    assert_eq!(text.severity_text, "ERROR");
    assert_eq!(text.trace_id, Some([0xab; 16]));
    assert_eq!(text.span_id, Some([1; 8]));
    assert_eq!(text.scope, "logger");
    assert_eq!(
        serde_json::Value::Object(text.attributes.clone()),
        json!({"order": 7, "event.name": "payment.failed"})
    );
    // The observed time stands in; the body as JSON text; all-zero trace id
    // means none; an out-of-range severity is unspecified.
    assert_eq!(structured.time_ns, (T0 + 9) as i64);
    assert_eq!(structured.body, r#"{"msg":"hi","n":1}"#);
    assert_eq!(structured.trace_id, None);
    assert_eq!(structured.severity_number, 0);
    assert_eq!(no_body.body, "");
    assert_eq!(out.batch.resources.len(), 1);
    assert_eq!(out.batch.resources[0].service, "worker");
}

fn number(time: u64, value: number_data_point::Value, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: T0 - 1_000,
        time_unix_nano: time,
        value: Some(value),
        ..Default::default()
    }
}

fn metric(name: &str, data: Option<Data>) -> Metric {
    Metric {
        name: name.into(),
        unit: "ms".into(),
        description: "ignored".into(),
        data,
        ..Default::default()
    }
}

fn metrics_request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(vec![kv("service.name", s("api"))]),
            scope_metrics: vec![ScopeMetrics {
                scope: scope("meter"),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn metrics_round_trip() {
    use number_data_point::Value as N;
    let req = metrics_request(vec![
        metric(
            "queue.depth",
            Some(Data::Gauge(Gauge {
                data_points: vec![
                    number(T0, N::AsInt(12), vec![kv("queue", s("emails"))]),
                    number(T0 + 1, N::AsDouble(0.5), vec![]),
                ],
            })),
        ),
        metric(
            "requests",
            Some(Data::Sum(Sum {
                data_points: vec![number(T0, N::AsInt(1_000), vec![])],
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
        ),
        metric(
            "inflight",
            Some(Data::Sum(Sum {
                data_points: vec![number(T0, N::AsDouble(3.0), vec![])],
                aggregation_temporality: 1,
                is_monotonic: false,
            })),
        ),
        metric(
            "latency",
            Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    time_unix_nano: T0,
                    count: 6,
                    sum: Some(42.0),
                    bucket_counts: vec![1, 2, 3],
                    explicit_bounds: vec![5.0, 10.0],
                    min: Some(1.0),
                    max: Some(f64::INFINITY),
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            })),
        ),
        metric(
            "latency.exp",
            Some(Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    time_unix_nano: T0,
                    count: 14,
                    sum: Some(9.0),
                    scale: 1,
                    zero_count: 5,
                    positive: Some(Buckets {
                        offset: 0,
                        bucket_counts: vec![2, 3],
                    }),
                    negative: Some(Buckets {
                        offset: 1,
                        bucket_counts: vec![4],
                    }),
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            })),
        ),
        metric(
            "legacy",
            Some(Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: T0,
                    count: 10,
                    sum: 55.0,
                    quantile_values: vec![
                        ValueAtQuantile {
                            quantile: 0.5,
                            value: 5.0,
                        },
                        ValueAtQuantile {
                            quantile: 0.99,
                            value: 9.9,
                        },
                    ],
                    ..Default::default()
                }],
            })),
        ),
    ]);
    let out = via_both_encodings_metrics(&req, &Limits::default());
    assert_eq!(out.rejected, 0, "{:?}", out.errors);
    let p = &out.batch.points;
    assert_eq!(p.len(), 7);
    assert_eq!(
        (p[0].name.as_str(), p[0].kind, p[0].value),
        ("queue.depth", MetricKind::Gauge, Some(12.0))
    );
    assert_eq!(p[0].unit, "ms");
    assert_eq!(p[0].time_ns, T0 as i64);
    assert_eq!(p[0].start_ns, (T0 - 1_000) as i64);
    assert_eq!(p[0].attributes["queue"], "emails");
    assert_eq!(p[1].value, Some(0.5));
    assert_eq!(
        p[2].kind,
        MetricKind::Sum {
            monotonic: true,
            cumulative: true
        }
    );
    assert_eq!(
        p[3].kind,
        MetricKind::Sum {
            monotonic: false,
            cumulative: false
        }
    );
    assert_eq!(p[4].kind, MetricKind::Histogram { cumulative: false });
    assert_eq!(
        (p[4].count, p[4].sum, p[4].min, p[4].max),
        (Some(6), Some(42.0), Some(1.0), None)
    );
    assert_eq!(p[4].bounds, [5.0, 10.0]);
    assert_eq!(p[4].bucket_counts, [1, 2, 3]);
    assert_eq!(p[4].value, None);
    assert_eq!(p[5].kind, MetricKind::Histogram { cumulative: true });
    assert_eq!(p[5].count, Some(14));
    assert_eq!(p[5].bucket_counts, [0, 4, 5, 0, 2, 3, 0]);
    assert_eq!(p[5].bounds.len(), 6);
    assert_eq!(p[6].kind, MetricKind::Summary);
    assert_eq!((p[6].count, p[6].sum), (Some(10), Some(55.0)));
    assert_eq!(p[6].quantiles, [(0.5, 5.0), (0.99, 9.9)]);
    assert!(p.iter().all(|p| p.resource == 0));
}

#[test]
fn metric_rules() {
    use number_data_point::Value as N;
    let limits = Limits {
        max_attributes: 1,
        ..Limits::default()
    };
    let req = metrics_request(vec![
        // No data: one rejection although it has no points.
        metric("nodata", None),
        // An empty name rejects all its points.
        metric(
            "",
            Some(Data::Gauge(Gauge {
                data_points: vec![
                    number(T0, N::AsInt(1), vec![]),
                    number(T0, N::AsInt(2), vec![]),
                ],
            })),
        ),
        metric(
            "mixed",
            Some(Data::Gauge(Gauge {
                data_points: vec![
                    number(T0, N::AsInt(1), vec![]),
                    // No time.
                    number(0, N::AsInt(1), vec![]),
                    // No value.
                    NumberDataPoint {
                        time_unix_nano: T0,
                        ..Default::default()
                    },
                    // Too many attributes.
                    number(T0, N::AsInt(1), vec![kv("a", s("1")), kv("b", s("2"))]),
                    // A staleness marker: skipped, neither kept nor rejected.
                    NumberDataPoint {
                        time_unix_nano: T0,
                        flags: 1,
                        ..Default::default()
                    },
                ],
            })),
        ),
        metric(
            "badhist",
            Some(Data::Histogram(Histogram {
                data_points: vec![
                    HistogramDataPoint {
                        time_unix_nano: T0,
                        bucket_counts: vec![1, 2],
                        explicit_bounds: vec![1.0, 2.0],
                        ..Default::default()
                    },
                    HistogramDataPoint {
                        time_unix_nano: T0,
                        bucket_counts: vec![1, 2, 3],
                        explicit_bounds: vec![2.0, 1.0],
                        ..Default::default()
                    },
                    // No buckets at all is fine: count and sum only.
                    HistogramDataPoint {
                        time_unix_nano: T0,
                        count: 3,
                        sum: Some(1.5),
                        explicit_bounds: vec![1.0],
                        ..Default::default()
                    },
                ],
                aggregation_temporality: 2,
            })),
        ),
    ]);
    let out = via_both_encodings_metrics(&req, &limits);
    assert_eq!(out.rejected, 1 + 2 + 3 + 2, "{:?}", out.errors);
    assert_eq!(out.errors.len(), MAX_ERRORS);
    assert!(
        out.errors[0].starts_with("metric \"nodata\": no data"),
        "{:?}",
        out.errors
    );
    assert_eq!(out.errors[1], "metric: the name is empty");
    assert_eq!(out.errors[2], "metric \"mixed\": a data point has no time");
    let kept: Vec<(&str, Option<u64>)> = out
        .batch
        .points
        .iter()
        .map(|p| (p.name.as_str(), p.count))
        .collect();
    assert_eq!(kept, [("mixed", None), ("badhist", Some(3))]);
    assert!(out.batch.points[1].bounds.is_empty() && out.batch.points[1].bucket_counts.is_empty());
}

#[test]
fn non_finite_point_values_are_rejected() {
    use number_data_point::Value as N;
    let req = metrics_request(vec![metric(
        "g",
        Some(Data::Gauge(Gauge {
            data_points: vec![
                number(T0, N::AsDouble(f64::NAN), vec![]),
                number(T0, N::AsDouble(f64::NEG_INFINITY), vec![]),
                number(T0, N::AsDouble(-0.5), vec![]),
            ],
        })),
    )]);
    let req = body::decode_metrics(Encoding::Protobuf, &req.encode_to_vec()).unwrap();
    let out = convert::metrics(req, &Limits::default());
    assert_eq!(out.rejected, 2);
    assert_eq!(
        out.errors,
        ["metric \"g\": a data point's value is not finite"]
    );
    assert_eq!(out.batch.points.len(), 1);
    assert_eq!(out.batch.points[0].value, Some(-0.5));
}

#[test]
fn metrics_json_recovers_what_the_derives_would_swallow() {
    // An enum name and an empty arrayValue inside a metric's data: the
    // derives would silently lose the whole metric.
    let body = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"c","unit":"1",
        "sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","isMonotonic":true,
        "dataPoints":[{"asInt":"3","timeUnixNano":"1700000000000000000",
          "attributes":[{"key":"tags","value":{"arrayValue":{}}}]}]}},
        {"name":"h","histogram":{"aggregationTemporality":1,"dataPoints":[{"timeUnixNano":"1700000000000000000",
          "count":"2","sum":"NaN","min":"0.5","bucketCounts":["1","1"],"explicitBounds":["1.5"]}]}},
        {"name":"g","gauge":{"dataPoints":[{"timeUnixNano":"1700000000000000000","asDouble":"NaN"},
          {"timeUnixNano":"1700000000000000000","asDouble":"-1.25"}]}}]}]}]}"#;
    let req = body::decode_metrics(Encoding::Json, body).unwrap();
    let out = convert::metrics(req, &Limits::default());
    // The NaN gauge point, as documented: JSON cannot carry NaN as a number,
    // and the point without its value is rejected.
    assert_eq!(out.rejected, 1, "{:?}", out.errors);
    assert_eq!(out.errors, ["metric \"g\": a data point has no value"]);
    assert_eq!(out.batch.points[2].value, Some(-1.25));
    let c = &out.batch.points[0];
    assert_eq!(
        c.kind,
        MetricKind::Sum {
            monotonic: true,
            cumulative: true
        }
    );
    assert_eq!(c.value, Some(3.0));
    assert_eq!(c.attributes["tags"], json!([]));
    let h = &out.batch.points[1];
    assert_eq!((h.count, h.sum, h.min), (Some(2), None, Some(0.5)));
    assert_eq!(h.bounds, [1.5]);
}

#[test]
fn empty_requests() {
    let out = convert::traces(ExportTraceServiceRequest::default(), &Limits::default());
    assert_eq!(out, Converted::default());
    assert!(out.batch.is_empty());
    let out = convert::logs(
        body::decode_logs(Encoding::Json, b"{}").unwrap(),
        &Limits::default(),
    );
    assert_eq!(out, Converted::default());
    let out = convert::metrics(
        body::decode_metrics(Encoding::Protobuf, b"").unwrap(),
        &Limits::default(),
    );
    assert_eq!(out, Converted::default());
}
