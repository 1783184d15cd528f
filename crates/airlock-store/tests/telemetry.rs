//! Behaviour of `SqliteTelemetry` through the `TelemetryStore` trait, on
//! temporary database files (and in memory where it makes no difference).

use std::path::Path;

use airlock_store::telemetry::{
    Attributes, Batch, Crossing, Deploy, DeploySource, ErrorMessage, EventKind, Kinds, LogRecord,
    MetricKind, MetricPoint, Resource, Span, SpanEvent, SpanKind, StatusCode, TelemetryStore,
    TimelineEvent, TimelineQuery, VersionQuery,
};
use airlock_store::{SqliteTelemetry, StoreError, TELEMETRY_SCHEMA_VERSION};
use serde_json::{json, Value};
use tempfile::TempDir;

/// A base time (2023-11-14) so that times look real; `t(n)` is n µs later.
const T0: i64 = 1_700_000_000_000_000_000;

fn t(n: i64) -> i64 {
    T0 + n * 1_000
}

fn open_file() -> (TempDir, SqliteTelemetry) {
    let dir = TempDir::new().unwrap();
    let store = SqliteTelemetry::open(&dir.path().join("telemetry/telemetry.db")).unwrap();
    (dir, store)
}

fn attrs(v: Value) -> Attributes {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn resource(service: &str, version: Option<&str>, env: Option<&str>) -> Resource {
    Resource {
        service: service.into(),
        version: version.map(Into::into),
        env: env.map(Into::into),
        ..Resource::default()
    }
}

fn trace_id(n: u8) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[0] = 0xab;
    id[15] = n;
    id
}

fn span_id(n: u8) -> [u8; 8] {
    [0xcd, 0, 0, 0, 0, 0, 0, n]
}

#[allow(clippy::too_many_arguments)]
fn span(
    resource: usize,
    trace: u8,
    id: u8,
    parent: Option<u8>,
    name: &str,
    kind: SpanKind,
    start_ns: i64,
    end_ns: i64,
    status: StatusCode,
) -> Span {
    Span {
        resource,
        trace_id: trace_id(trace),
        span_id: span_id(id),
        parent_span_id: parent.map(span_id),
        name: name.into(),
        kind,
        start_ns,
        end_ns,
        status,
        status_message: String::new(),
        scope: "test-scope".into(),
        attributes: Attributes::new(),
        events: Vec::new(),
    }
}

fn server(resource: usize, n: u8, start_ns: i64, duration_ns: i64) -> Span {
    span(
        resource,
        n,
        n,
        None,
        "GET /",
        SpanKind::Server,
        start_ns,
        start_ns + duration_ns,
        StatusCode::Unset,
    )
}

fn log(resource: usize, time_ns: i64, severity: i32, body: &str) -> LogRecord {
    LogRecord {
        resource,
        time_ns,
        severity_number: severity,
        severity_text: if severity >= 17 { "ERROR" } else { "INFO" }.into(),
        body: body.into(),
        trace_id: None,
        span_id: None,
        scope: "test-scope".into(),
        attributes: Attributes::new(),
    }
}

fn explicit_deploy(id: &str, time_ns: i64, service: &str, version: &str) -> Deploy {
    Deploy {
        id: id.into(),
        time_ns,
        service: service.into(),
        version: Some(version.into()),
        deployment_id: None,
        commit: None,
        env: None,
        source: DeploySource::Explicit,
        actor: "alice".into(),
    }
}

fn window() -> TimelineQuery {
    TimelineQuery {
        since_ns: t(0),
        until_ns: t(1_000),
        ..TimelineQuery::default()
    }
}

/// A short, comparable description of each event: kind and summary.
fn names(events: &[TimelineEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let kind = match e.kind {
                EventKind::Log => "log",
                EventKind::Span => "span",
                EventKind::Metric => "metric",
                EventKind::Deploy => "deploy",
                EventKind::Access => "access",
            };
            format!("{kind}: {}", e.summary)
        })
        .collect()
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

// --- the timeline fixture ------------------------------------------------------

/// checkout v1 (prod), checkout v2 (staging), payments v1 (prod), and
/// records of all kinds at known times; an explicit deploy of checkout v2
/// first, so that v2 gets no automatic marker.
fn timeline_fixture(store: &SqliteTelemetry) {
    let mut deploy = explicit_deploy("dep_explicit_v2", t(18), "checkout", "v2");
    deploy.env = Some("staging".into());
    deploy.commit = Some("abc123".into());
    store.insert_deploy(&deploy).unwrap();

    let mut checkout_v1 = resource("checkout", Some("v1"), Some("prod"));
    checkout_v1.instance_id = Some("i-1".into());
    checkout_v1.host = Some("h-1".into());
    checkout_v1.attributes = attrs(json!({"k8s.cluster": "east"}));
    let checkout_v2 = resource("checkout", Some("v2"), Some("staging"));
    let payments = resource("payments", Some("v1"), Some("prod"));

    let mut a = span(
        0,
        1,
        1,
        None,
        "GET /cart",
        SpanKind::Server,
        t(10),
        t(10) + 5_000_000,
        StatusCode::Ok,
    );
    a.attributes = attrs(json!({"http.route": "/cart", "http.status_code": 200}));
    let b = span(
        0,
        1,
        2,
        Some(1),
        "load cart",
        SpanKind::Internal,
        t(11),
        t(11) + 1_000,
        StatusCode::Unset,
    );
    let mut c = span(
        0,
        1,
        3,
        Some(1),
        "call payments",
        SpanKind::Client,
        t(12),
        t(12) + 2_000,
        StatusCode::Error,
    );
    c.status_message = "100% failed_ok".into();
    c.events = vec![SpanEvent {
        time_ns: t(12) + 1_000,
        name: "retry".into(),
        attributes: Attributes::new(),
    }];
    let d = span(
        2,
        1,
        4,
        Some(3),
        "charge",
        SpanKind::Server,
        t(13),
        t(13) + 1_500,
        StatusCode::Unset,
    );
    let mut l1 = log(0, t(11), 9, "cart loaded for user 42");
    l1.trace_id = Some(trace_id(1));
    l1.span_id = Some(span_id(2));
    let mut l2 = log(1, t(20), 17, "50% off_sale applied");
    l2.attributes = attrs(json!({"flag": true}));
    let l3 = log(2, t(21), 9, "charged\nsecond line");
    let x1 = Crossing {
        resource: 0,
        time_ns: t(15),
        threshold: "slow-checkout".into(),
        metric: "http.server.duration".into(),
        direction: "above".into(),
        value: 0.73,
        limit: 0.5,
        attributes: attrs(json!({"http.route": "/cart"})),
    };
    let batch = Batch {
        resources: vec![checkout_v1, checkout_v2, payments],
        spans: vec![a, b, c, d],
        logs: vec![l1, l2, l3],
        points: Vec::new(),
        crossings: vec![x1],
    };
    let markers = store.insert(&[&batch]).unwrap();
    assert_eq!(markers.len(), 2, "{markers:?}");
}

fn timeline_store() -> (TempDir, SqliteTelemetry) {
    let (dir, store) = open_file();
    timeline_fixture(&store);
    (dir, store)
}

const ALL: &[&str] = &[
    "deploy: deploy checkout v1 (auto)",
    "span: GET /cart",
    "log: cart loaded for user 42",
    "span: call payments",
    "deploy: deploy payments v1 (auto)",
    "span: charge",
    "metric: http.server.duration above 0.5 (0.73)",
    "deploy: deploy checkout v2 (explicit, commit abc123)",
    "log: 50% off_sale applied",
    "log: charged",
];

#[test]
fn timeline_merges_kinds_by_time_with_deploys_first_at_equal_times() {
    let (_dir, store) = timeline_store();
    let events = store.timeline(&window()).unwrap();
    assert_eq!(names(&events), ALL);
    // Times never decrease.
    assert!(events.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
}

#[test]
fn timeline_newest_first_is_the_exact_reverse_and_limit_keeps_the_newest() {
    let (_dir, store) = timeline_store();
    let mut q = window();
    q.newest_first = true;
    let events = store.timeline(&q).unwrap();
    let mut reversed: Vec<&str> = ALL.to_vec();
    reversed.reverse();
    assert_eq!(names(&events), reversed);

    q.limit = 3;
    assert_eq!(names(&store.timeline(&q).unwrap()), &reversed[..3]);
    q.newest_first = false;
    assert_eq!(names(&store.timeline(&q).unwrap()), &ALL[..3]);
}

#[test]
fn timeline_window_is_inclusive_exclusive() {
    let (_dir, store) = timeline_store();
    let q = TimelineQuery {
        since_ns: t(12),
        until_ns: t(15),
        ..TimelineQuery::default()
    };
    assert_eq!(
        names(&store.timeline(&q).unwrap()),
        [
            "span: call payments",
            "deploy: deploy payments v1 (auto)",
            "span: charge"
        ]
    );
    let empty = TimelineQuery {
        since_ns: t(15),
        until_ns: t(15),
        ..TimelineQuery::default()
    };
    assert!(store.timeline(&empty).unwrap().is_empty());
}

#[test]
fn timeline_filters_by_service_version_and_env() {
    let (_dir, store) = timeline_store();
    let mut q = window();
    q.service = Some("payments".into());
    assert_eq!(
        names(&store.timeline(&q).unwrap()),
        [
            "deploy: deploy payments v1 (auto)",
            "span: charge",
            "log: charged"
        ]
    );
    q.service = Some("nobody".into());
    assert!(store.timeline(&q).unwrap().is_empty());

    let mut q = window();
    q.version = Some("v2".into());
    assert_eq!(
        names(&store.timeline(&q).unwrap()),
        [
            "deploy: deploy checkout v2 (explicit, commit abc123)",
            "log: 50% off_sale applied"
        ]
    );
    // version v1 of two services.
    q.version = Some("v1".into());
    q.kinds = Kinds {
        deploys: false,
        ..Kinds::default()
    };
    assert_eq!(
        names(&store.timeline(&q).unwrap()),
        [
            "span: GET /cart",
            "log: cart loaded for user 42",
            "span: call payments",
            "span: charge",
            "metric: http.server.duration above 0.5 (0.73)",
            "log: charged",
        ]
    );

    let mut q = window();
    q.env = Some("staging".into());
    assert_eq!(
        names(&store.timeline(&q).unwrap()),
        [
            "deploy: deploy checkout v2 (explicit, commit abc123)",
            "log: 50% off_sale applied"
        ]
    );
    q.service = Some("checkout".into());
    q.version = Some("v1".into());
    assert!(store.timeline(&q).unwrap().is_empty());
}

#[test]
fn timeline_with_a_trace_lists_every_span_of_it_and_only_its_logs() {
    let (_dir, store) = timeline_store();
    let mut q = window();
    q.trace_id = Some(trace_id(1));
    assert_eq!(
        names(&store.timeline(&q).unwrap()),
        [
            "span: GET /cart",
            "span: load cart",
            "log: cart loaded for user 42",
            "span: call payments",
            "span: charge",
        ]
    );
    q.service = Some("checkout".into());
    assert_eq!(store.timeline(&q).unwrap().len(), 4);
    q.trace_id = Some(trace_id(99));
    assert!(store.timeline(&q).unwrap().is_empty());
}

#[test]
fn timeline_grep_is_case_insensitive_and_literal() {
    let (_dir, store) = timeline_store();
    let grep = |needle: &str| {
        let mut q = window();
        q.grep = Some(needle.into());
        names(&store.timeline(&q).unwrap())
    };
    // Span names and log bodies; "load cart" is not a summary span.
    assert_eq!(
        grep("CART"),
        ["span: GET /cart", "log: cart loaded for user 42"]
    );
    // `%` and `_` are not wildcards.
    let percent_and_underscore = [
        "span: call payments", // its status message
        "log: 50% off_sale applied",
    ];
    assert_eq!(grep("%"), percent_and_underscore);
    assert_eq!(grep("_"), percent_and_underscore);
    assert_eq!(grep("0%"), percent_and_underscore);
    assert_eq!(grep("f_o"), Vec::<String>::new());
    // Deploys by version, commit or deployment id; crossings by metric.
    assert_eq!(
        grep("ABC1"),
        ["deploy: deploy checkout v2 (explicit, commit abc123)"]
    );
    assert_eq!(
        grep("server.dur"),
        ["metric: http.server.duration above 0.5 (0.73)"]
    );
    // Empty means any.
    assert_eq!(grep("").len(), ALL.len());
}

#[test]
fn timeline_attribute_filters_match_records_resources_and_first_class_names() {
    let (_dir, store) = timeline_store();
    let by = |pairs: &[(&str, &str)]| {
        let mut q = window();
        q.attributes = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        names(&store.timeline(&q).unwrap())
    };
    // A record attribute (the crossing carries it too).
    assert_eq!(
        by(&[("http.route", "/cart")]),
        [
            "span: GET /cart",
            "metric: http.server.duration above 0.5 (0.73)"
        ]
    );
    // Numbers and booleans compare as their text.
    assert_eq!(by(&[("http.status_code", "200")]), ["span: GET /cart"]);
    assert_eq!(by(&[("flag", "true")]), ["log: 50% off_sale applied"]);
    assert!(by(&[("http.status_code", "201")]).is_empty());
    // A resource attribute: every record of checkout v1; deploys carry no
    // attributes.
    let checkout_v1 = [
        "span: GET /cart",
        "log: cart loaded for user 42",
        "span: call payments",
        "metric: http.server.duration above 0.5 (0.73)",
    ];
    assert_eq!(by(&[("k8s.cluster", "east")]), checkout_v1);
    assert_eq!(by(&[("host.name", "h-1")]), checkout_v1);
    assert_eq!(by(&[("service.instance.id", "i-1")]), checkout_v1);
    // First-class names that deploys carry include them.
    assert_eq!(
        by(&[("service.name", "payments")]),
        [
            "deploy: deploy payments v1 (auto)",
            "span: charge",
            "log: charged"
        ]
    );
    assert_eq!(
        by(&[("deployment.environment.name", "staging")]),
        [
            "deploy: deploy checkout v2 (explicit, commit abc123)",
            "log: 50% off_sale applied"
        ]
    );
    // Several pairs all apply.
    assert_eq!(
        by(&[("k8s.cluster", "east"), ("http.route", "/cart")]),
        [
            "span: GET /cart",
            "metric: http.server.duration above 0.5 (0.73)"
        ]
    );
    assert!(by(&[("k8s.cluster", "west")]).is_empty());
}

#[test]
fn timeline_attribute_keys_with_quotes_and_backslashes() {
    let store = SqliteTelemetry::open_in_memory().unwrap();
    let mut l = log(0, t(1), 9, "odd keys");
    l.attributes = attrs(json!({"a\"b": "x", "c\\d": 1, "e.f": {"g": 2}}));
    let batch = Batch {
        resources: vec![resource("svc", None, None)],
        logs: vec![l],
        ..Batch::default()
    };
    store.insert(&[&batch]).unwrap();
    for (key, value) in [("a\"b", "x"), ("c\\d", "1"), ("e.f", r#"{"g":2}"#)] {
        let mut q = window();
        q.attributes = vec![(key.into(), value.into())];
        assert_eq!(store.timeline(&q).unwrap().len(), 1, "{key}");
    }
}

#[test]
fn timeline_kinds_select_sources() {
    let (_dir, store) = timeline_store();
    let only = |kinds: Kinds| {
        let mut q = window();
        q.kinds = kinds;
        names(&store.timeline(&q).unwrap())
    };
    let none = Kinds {
        logs: false,
        spans: false,
        metrics: false,
        deploys: false,
    };
    assert_eq!(
        only(Kinds { logs: true, ..none }),
        [
            "log: cart loaded for user 42",
            "log: 50% off_sale applied",
            "log: charged"
        ]
    );
    assert_eq!(
        only(Kinds {
            metrics: true,
            ..none
        }),
        ["metric: http.server.duration above 0.5 (0.73)"]
    );
    assert_eq!(
        only(Kinds {
            deploys: true,
            ..none
        })
        .len(),
        3
    );
    assert_eq!(
        only(Kinds {
            spans: true,
            ..none
        })
        .len(),
        3
    );
    assert!(only(none).is_empty());
}

#[test]
fn timeline_event_fields() {
    let (_dir, store) = timeline_store();
    let events = store.timeline(&window()).unwrap();
    let find = |summary: &str| events.iter().find(|e| e.summary == summary).unwrap();

    let c = find("call payments");
    assert_eq!(c.kind, EventKind::Span);
    assert!(c.error);
    assert_eq!(c.duration_ns, Some(2_000));
    assert_eq!(c.service.as_deref(), Some("checkout"));
    assert_eq!(c.version.as_deref(), Some("v1"));
    assert_eq!(c.env.as_deref(), Some("prod"));
    assert_eq!(
        c.trace_id.as_deref(),
        Some("ab000000000000000000000000000001")
    );
    assert_eq!(c.span_id.as_deref(), Some("cd00000000000003"));
    assert_eq!(c.detail["kind"], "client");
    assert_eq!(c.detail["status"], "error");
    assert_eq!(c.detail["status_message"], "100% failed_ok");
    assert_eq!(c.detail["parent_span_id"], "cd00000000000001");
    assert_eq!(c.detail["events"], 1);
    assert_eq!(c.detail["attributes"], json!({}));

    let a = find("GET /cart");
    assert!(!a.error);
    assert_eq!(a.detail["parent_span_id"], Value::Null);
    assert_eq!(a.detail["attributes"]["http.status_code"], 200);

    let x = find("http.server.duration above 0.5 (0.73)");
    assert_eq!(x.kind, EventKind::Metric);
    assert!(x.error);
    assert_eq!(x.detail["threshold"], "slow-checkout");
    assert_eq!(x.detail["value"], 0.73);
    assert_eq!(x.detail["limit"], 0.5);
    assert_eq!(x.detail["direction"], "above");

    let l2 = find("50% off_sale applied");
    assert_eq!(l2.kind, EventKind::Log);
    assert!(l2.error);
    assert_eq!(l2.trace_id, None);
    assert_eq!(l2.detail["severity_number"], 17);
    assert_eq!(l2.detail["severity_text"], "ERROR");
    assert_eq!(l2.detail["attributes"], json!({"flag": true}));

    // The summary is the first line; the detail keeps the whole body.
    let l3 = find("charged");
    assert!(!l3.error);
    assert_eq!(l3.detail["body"], "charged\nsecond line");

    let l1 = find("cart loaded for user 42");
    assert_eq!(l1.span_id.as_deref(), Some("cd00000000000002"));
    assert_eq!(l1.detail["instance_id"], "i-1");
    assert_eq!(l1.detail["host"], "h-1");

    let d = find("deploy checkout v2 (explicit, commit abc123)");
    assert_eq!(d.kind, EventKind::Deploy);
    assert!(!d.error);
    assert_eq!(d.env.as_deref(), Some("staging"));
    assert_eq!(d.detail["id"], "dep_explicit_v2");
    assert_eq!(d.detail["source"], "explicit");
    assert_eq!(d.detail["actor"], "alice");
    assert_eq!(d.detail["commit"], "abc123");
}

#[test]
fn timeline_limit_applies_across_services() {
    let store = SqliteTelemetry::open_in_memory().unwrap();
    let batch = Batch {
        resources: vec![
            resource("a", None, None),
            resource("b", None, None),
            resource("c", None, None),
        ],
        logs: (0..30)
            .map(|i| log(i % 3, t(i as i64), 9, &format!("log {i}")))
            .collect(),
        ..Batch::default()
    };
    store.insert(&[&batch]).unwrap();
    let mut q = window();
    q.limit = 7;
    let got: Vec<String> = store
        .timeline(&q)
        .unwrap()
        .into_iter()
        .map(|e| e.summary)
        .collect();
    let want: Vec<String> = (0..7).map(|i| format!("log {i}")).collect();
    assert_eq!(got, want);
    q.newest_first = true;
    let got: Vec<String> = store
        .timeline(&q)
        .unwrap()
        .into_iter()
        .map(|e| e.summary)
        .collect();
    let want: Vec<String> = (23..30).rev().map(|i| format!("log {i}")).collect();
    assert_eq!(got, want);
    // 0 means the default of 1000.
    q.limit = 0;
    assert_eq!(store.timeline(&q).unwrap().len(), 30);
}

#[test]
fn long_log_bodies_are_cut_in_the_summary() {
    let store = SqliteTelemetry::open_in_memory().unwrap();
    let body = "x".repeat(1_000);
    let batch = Batch {
        resources: vec![resource("a", None, None)],
        logs: vec![log(0, t(1), 9, &body)],
        ..Batch::default()
    };
    store.insert(&[&batch]).unwrap();
    let events = store.timeline(&window()).unwrap();
    let summary = &events[0].summary;
    assert!(summary.chars().count() <= 301, "{}", summary.len());
    assert!(summary.starts_with("xxx"));
}

// --- round trips --------------------------------------------------------------

#[test]
fn spans_and_logs_read_back_through_trace() {
    let (_dir, store) = open_file();
    let mut r = resource("checkout", Some("v1"), Some("prod"));
    r.deployment_id = Some("d-1".into());
    r.instance_id = Some("i-1".into());
    r.host = Some("h-1".into());
    r.attributes = attrs(json!({"k8s.pod.name": "checkout-7f", "cpu": 2}));
    let other = resource("payments", None, None);

    let mut root = span(
        0,
        7,
        1,
        None,
        "GET /cart",
        SpanKind::Server,
        t(5),
        t(9),
        StatusCode::Ok,
    );
    root.attributes = attrs(json!({"http.route": "/cart", "nested": {"a": [1, 2.5, null]}}));
    root.events = vec![SpanEvent {
        time_ns: t(6),
        name: "exception".into(),
        attributes: attrs(json!({"exception.message": "boom"})),
    }];
    let child = span(
        1,
        7,
        2,
        Some(1),
        "charge",
        SpanKind::Client,
        t(6),
        t(8),
        StatusCode::Error,
    );
    let unrelated = span(
        0,
        8,
        3,
        None,
        "other",
        SpanKind::Server,
        t(1),
        t(2),
        StatusCode::Unset,
    );
    let mut l = log(1, t(7), 13, "warn\nmore");
    l.trace_id = Some(trace_id(7));
    l.span_id = Some(span_id(2));
    l.attributes = attrs(json!({"k": "v"}));
    let batch = Batch {
        resources: vec![r.clone(), other.clone()],
        // Out of time order on purpose: the trace comes back by start time.
        spans: vec![child.clone(), root.clone(), unrelated],
        logs: vec![l.clone(), log(0, t(7), 9, "no trace")],
        ..Batch::default()
    };
    store.insert(&[&batch]).unwrap();

    let trace = store.trace(&trace_id(7)).unwrap();
    assert_eq!(trace.spans.len(), 2);
    let mut want_root = root;
    want_root.resource = 0;
    let mut want_child = child;
    want_child.resource = 0;
    assert_eq!(trace.spans[0].span, want_root);
    assert_eq!(trace.spans[0].resource, r);
    assert_eq!(trace.spans[1].span, want_child);
    assert_eq!(trace.spans[1].resource, other);
    assert_eq!(trace.logs.len(), 1);
    let mut want_log = l;
    want_log.resource = 0;
    assert_eq!(trace.logs[0].log, want_log);
    assert_eq!(trace.logs[0].resource, other);

    let unknown = store.trace(&trace_id(200)).unwrap();
    assert!(unknown.spans.is_empty() && unknown.logs.is_empty());
    assert_eq!(store.counts().unwrap(), (3, 2, 0));
}

fn point(resource: usize, name: &str, kind: MetricKind, time_ns: i64) -> MetricPoint {
    MetricPoint {
        resource,
        name: name.into(),
        unit: "s".into(),
        kind,
        time_ns,
        start_ns: 0,
        value: None,
        count: None,
        sum: None,
        min: None,
        max: None,
        bounds: Vec::new(),
        bucket_counts: Vec::new(),
        quantiles: Vec::new(),
        attributes: Attributes::new(),
    }
}

#[test]
fn points_read_back_and_nan_is_stored_as_null() {
    let (_dir, store) = open_file();
    let mut gauge = point(0, "cpu", MetricKind::Gauge, t(1));
    gauge.value = Some(0.25);
    gauge.attributes = attrs(json!({"core": 1}));
    let mut nan = point(0, "cpu", MetricKind::Gauge, t(2));
    nan.value = Some(f64::NAN);
    let mut inf = point(0, "cpu", MetricKind::Gauge, t(3));
    inf.value = Some(f64::INFINITY);
    let mut sum = point(
        0,
        "requests",
        MetricKind::Sum {
            monotonic: true,
            cumulative: false,
        },
        t(1),
    );
    sum.value = Some(42.0);
    sum.start_ns = t(0);
    let mut hist = point(
        0,
        "latency",
        MetricKind::Histogram { cumulative: true },
        t(1),
    );
    hist.count = Some(10);
    hist.sum = Some(2.5);
    hist.min = Some(0.01);
    hist.max = Some(f64::NAN);
    hist.bounds = vec![0.1, 0.5, 1.0];
    hist.bucket_counts = vec![3, 4, 2, 1];
    let mut summary = point(0, "gc", MetricKind::Summary, t(1));
    summary.count = Some(u64::MAX);
    summary.quantiles = vec![(0.5, 1.0), (0.99, f64::NAN)];

    let batch = Batch {
        resources: vec![resource("svc", Some("1"), None)],
        points: vec![gauge.clone(), nan, inf, sum.clone(), hist.clone(), summary],
        ..Batch::default()
    };
    store.insert(&[&batch]).unwrap();
    assert_eq!(store.counts().unwrap(), (0, 0, 6));

    let cpu = store.points("svc", "cpu", t(0), t(100), 100).unwrap();
    assert_eq!(cpu.len(), 3);
    assert_eq!(cpu[0].0, gauge);
    assert_eq!(cpu[0].1.service, "svc");
    assert_eq!(cpu[1].0.value, None, "NaN is stored as NULL");
    assert_eq!(cpu[2].0.value, Some(f64::INFINITY));
    assert_eq!(
        store.points("svc", "cpu", t(2), t(3), 100).unwrap().len(),
        1
    );
    assert_eq!(
        store.points("svc", "cpu", t(0), t(100), 2).unwrap().len(),
        2
    );

    assert_eq!(
        store.points("svc", "requests", t(0), t(100), 10).unwrap()[0].0,
        sum
    );
    let h = &store.points("svc", "latency", t(0), t(100), 10).unwrap()[0].0;
    assert_eq!(h.max, None);
    let mut want = hist;
    want.max = None;
    assert_eq!(*h, want);
    let s = &store.points("svc", "gc", t(0), t(100), 10).unwrap()[0].0;
    // Counts beyond i64 saturate.
    assert_eq!(s.count, Some(i64::MAX as u64));
    assert_eq!(s.quantiles[0], (0.5, 1.0));
    assert!(s.quantiles[1].1.is_nan());
    assert!(store
        .points("nobody", "cpu", t(0), t(100), 10)
        .unwrap()
        .is_empty());
}

// --- deploy markers -------------------------------------------------------------

fn batch_of(resources: Vec<Resource>, starts: &[(usize, i64)]) -> Batch {
    Batch {
        resources,
        spans: starts
            .iter()
            .enumerate()
            .map(|(i, &(r, start))| {
                // Trace ids from 100 up, clear of the fixtures' traces.
                let mut s = server(r, i as u8 + 1, start, 1_000);
                s.trace_id = trace_id(100 + i as u8);
                s
            })
            .collect(),
        ..Batch::default()
    }
}

#[test]
fn automatic_deploy_markers() {
    let (_dir, store) = open_file();
    let mut v1 = resource("checkout", Some("v1"), Some("prod"));
    v1.instance_id = Some("i-1".into());

    // A new version: one marker at the resource's earliest record.
    let markers = store
        .insert(&[&batch_of(vec![v1.clone()], &[(0, t(100)), (0, t(50))])])
        .unwrap();
    assert_eq!(markers.len(), 1, "{markers:?}");
    let m = &markers[0];
    assert_eq!(m.time_ns, t(50));
    assert_eq!(m.service, "checkout");
    assert_eq!(m.version.as_deref(), Some("v1"));
    assert_eq!(m.env.as_deref(), Some("prod"));
    assert_eq!(m.deployment_id, None);
    assert_eq!(m.source, DeploySource::Auto);
    assert_eq!(m.actor, "telemetry");
    assert!(m.id.starts_with("dep_"), "{}", m.id);

    // The same again, and another instance of the same version: none.
    assert!(store
        .insert(&[&batch_of(vec![v1.clone()], &[(0, t(200))])])
        .unwrap()
        .is_empty());
    let mut v1_other = v1.clone();
    v1_other.instance_id = Some("i-2".into());
    assert!(store
        .insert(&[&batch_of(vec![v1_other], &[(0, t(210))])])
        .unwrap()
        .is_empty());

    // A new deployment.id of a known version: a marker.
    let mut v1_d2 = v1.clone();
    v1_d2.deployment_id = Some("d-2".into());
    let markers = store
        .insert(&[&batch_of(vec![v1_d2], &[(0, t(300))])])
        .unwrap();
    assert_eq!(markers.len(), 1);
    assert_eq!(markers[0].deployment_id.as_deref(), Some("d-2"));
    assert_eq!(markers[0].version.as_deref(), Some("v1"));

    // New version and new deployment id together: one marker.
    let mut v2 = resource("checkout", Some("v2"), Some("prod"));
    v2.deployment_id = Some("d-3".into());
    let markers = store
        .insert(&[&batch_of(vec![v2], &[(0, t(400))])])
        .unwrap();
    assert_eq!(markers.len(), 1);

    // An explicit deploy first: telemetry of it adds none.
    let mut explicit = explicit_deploy("dep_x", t(490), "checkout", "v3");
    explicit.deployment_id = Some("d-4".into());
    store.insert_deploy(&explicit).unwrap();
    let mut v3 = resource("checkout", Some("v3"), Some("prod"));
    v3.deployment_id = Some("d-4".into());
    assert!(store
        .insert(&[&batch_of(vec![v3], &[(0, t(500))])])
        .unwrap()
        .is_empty());
    // The same id twice is refused.
    assert!(matches!(
        store.insert_deploy(&explicit),
        Err(StoreError::AlreadyExists { .. })
    ));

    // Two new instances of a new version across two batches of one call:
    // one marker, at the earlier of the two.
    let mut v5a = resource("checkout", Some("v5"), Some("prod"));
    v5a.instance_id = Some("a".into());
    let mut v5b = v5a.clone();
    v5b.instance_id = Some("b".into());
    let markers = store
        .insert(&[
            &batch_of(vec![v5a], &[(0, t(620))]),
            &batch_of(vec![v5b], &[(0, t(600))]),
        ])
        .unwrap();
    assert_eq!(markers.len(), 1);
    assert_eq!(markers[0].time_ns, t(600));

    // Unversioned telemetry makes no marker.
    assert!(store
        .insert(&[&batch_of(
            vec![resource("checkout", None, None)],
            &[(0, t(700))]
        )])
        .unwrap()
        .is_empty());

    assert_eq!(
        store.versions("checkout").unwrap(),
        vec![
            ("v1".to_string(), t(50)),
            ("v2".to_string(), t(400)),
            ("v3".to_string(), t(490)),
            ("v5".to_string(), t(600)),
        ]
    );
    assert!(store.versions("nobody").unwrap().is_empty());

    let all = store
        .deploys(Some("checkout"), t(0), t(1_000), 100)
        .unwrap();
    let summary: Vec<(i64, DeploySource)> = all.iter().map(|d| (d.time_ns, d.source)).collect();
    assert_eq!(
        summary,
        vec![
            (t(50), DeploySource::Auto),
            (t(300), DeploySource::Auto),
            (t(400), DeploySource::Auto),
            (t(490), DeploySource::Explicit),
            (t(600), DeploySource::Auto),
        ]
    );
    assert_eq!(all[3], explicit);
    assert_eq!(store.deploys(None, t(0), t(1_000), 2).unwrap().len(), 2);
    assert_eq!(store.deploys(None, t(300), t(490), 100).unwrap().len(), 2);
    assert!(store
        .deploys(Some("nobody"), t(0), t(1_000), 100)
        .unwrap()
        .is_empty());

    // On the timeline, grep finds a deploy by its deployment id.
    let mut q = window();
    q.grep = Some("D-3".into());
    assert_eq!(
        names(&store.timeline(&q).unwrap()),
        ["deploy: deploy checkout v2 (auto, deployment d-3)"]
    );
}

#[test]
fn an_explicit_deploy_dated_earlier_moves_first_seen_back() {
    let store = SqliteTelemetry::open_in_memory().unwrap();
    store
        .insert(&[&batch_of(
            vec![resource("svc", Some("v1"), None)],
            &[(0, t(100))],
        )])
        .unwrap();
    store
        .insert_deploy(&explicit_deploy("dep_1", t(90), "svc", "v1"))
        .unwrap();
    assert_eq!(
        store.versions("svc").unwrap(),
        vec![("v1".to_string(), t(90))]
    );
}

// --- version comparison ------------------------------------------------------------

/// 20 durations whose nearest-rank percentiles and histogram are worked out
/// by hand below.
const DURATIONS: [i64; 20] = [
    900,
    1_000,
    1_001,
    2_000,
    2_500,
    5_000,
    7_000,
    10_000,
    15_000,
    20_000,
    50_000,
    60_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    3_000_000,
    10_000_000,
    40_000_000,
    250_000_000,
];

fn version_fixture(store: &SqliteTelemetry) {
    let mut a = resource("checkout", Some("v2"), Some("prod"));
    a.instance_id = Some("a".into());
    let mut b = a.clone();
    b.instance_id = Some("b".into());
    let v1 = resource("checkout", Some("v1"), Some("prod"));
    let other_service = resource("payments", Some("v2"), Some("prod"));
    let mut spans = Vec::new();
    // Counted: the 20 server spans, in a shuffled order, over two instances;
    // three with status error.
    for (i, &d) in DURATIONS.iter().enumerate().rev() {
        let n = i as u8 + 1;
        let mut s = server(i % 2, n, t(100 + (i as i64 * 7) % 20), d);
        if [2, 9, 17].contains(&i) {
            s.status = StatusCode::Error;
        }
        spans.push(s);
    }
    // Not counted: a client span of v2, server spans of v1, of payments v2,
    // and of v2 outside the window.
    spans.push(span(
        0,
        50,
        50,
        Some(1),
        "call",
        SpanKind::Client,
        t(110),
        t(110) + 999_999_999,
        StatusCode::Error,
    ));
    spans.push(server(2, 51, t(110), 7));
    spans.push(server(3, 52, t(110), 7));
    spans.push(server(0, 53, t(99), 7));
    spans.push(server(0, 54, t(200), 7));
    let batch = Batch {
        resources: vec![a, b, v1, other_service],
        spans,
        ..Batch::default()
    };
    store.insert(&[&batch]).unwrap();
}

fn v2_query() -> VersionQuery {
    VersionQuery {
        service: "checkout".into(),
        version: "v2".into(),
        since_ns: t(100),
        until_ns: t(200),
    }
}

#[test]
fn version_stats_are_exact() {
    let (_dir, store) = open_file();
    version_fixture(&store);
    let stats = store.version_stats(&v2_query()).unwrap();
    assert_eq!(stats.requests, 20);
    assert_eq!(stats.errors, 3);
    // Nearest rank: ceil(q × 20) − 1 → indexes 9, 18, 19.
    assert_eq!(stats.p50_ns, Some(20_000));
    assert_eq!(stats.p95_ns, Some(40_000_000));
    assert_eq!(stats.p99_ns, Some(250_000_000));
    assert_eq!(
        stats.histogram,
        vec![
            (1_000, 2),      // 900, 1 000
            (2_000, 2),      // 1 001, 2 000
            (5_000, 2),      // 2 500, 5 000
            (10_000, 2),     // 7 000, 10 000
            (20_000, 2),     // 15 000, 20 000
            (50_000, 1),     // 50 000
            (100_000, 2),    // 60 000, 100 000
            (200_000, 1),    // 200 000
            (500_000, 1),    // 500 000
            (1_000_000, 1),  // 1 000 000
            (2_000_000, 0),  //
            (5_000_000, 1),  // 3 000 000
            (10_000_000, 1), // 10 000 000
            (20_000_000, 0),
            (50_000_000, 1), // 40 000 000
            (100_000_000, 0),
            (200_000_000, 0),
            (500_000_000, 1), // 250 000 000, and nothing after it
        ]
    );

    // One span past 100 s lands in the last bucket.
    let huge = Batch {
        resources: vec![resource("slow", Some("1"), None)],
        spans: vec![server(0, 1, t(100), 200_000_000_000)],
        ..Batch::default()
    };
    store.insert(&[&huge]).unwrap();
    let slow = store
        .version_stats(&VersionQuery {
            service: "slow".into(),
            version: "1".into(),
            since_ns: t(0),
            until_ns: t(1_000),
        })
        .unwrap();
    assert_eq!(slow.histogram.len(), 26);
    assert_eq!(slow.histogram[25], (i64::MAX, 1));
    assert_eq!(slow.p50_ns, Some(200_000_000_000));

    // Unknown version or empty window: nothing.
    let mut q = v2_query();
    q.version = "v9".into();
    assert_eq!(
        store.version_stats(&q).unwrap(),
        airlock_store::telemetry::VersionStats::default()
    );
    let mut q = v2_query();
    q.since_ns = t(500);
    q.until_ns = t(600);
    let empty = store.version_stats(&q).unwrap();
    assert_eq!(empty.requests, 0);
    assert_eq!(empty.p50_ns, None);
    assert!(empty.histogram.is_empty());
}

#[test]
fn error_messages_group_count_and_order() {
    let (_dir, store) = open_file();
    let v2 = resource("checkout", Some("v2"), None);
    let v1 = resource("checkout", Some("v1"), None);
    let exception = |time_ns: i64, message: &str| SpanEvent {
        time_ns,
        name: "exception".into(),
        attributes: attrs(json!({"exception.message": message, "exception.type": "E"})),
    };
    let error_span = |n: u8, start: i64, message: &str| {
        let mut s = server(0, n, start, 10);
        s.status = StatusCode::Error;
        s.status_message = message.into();
        s
    };
    let mut spans = vec![
        error_span(1, t(101), "timeout talking to db"),
        error_span(2, t(102), "timeout talking to db"),
        error_span(3, t(103), "timeout talking to db"),
        // No message: skipped.
        error_span(4, t(104), ""),
        // Outside the window, and another version: not counted.
        error_span(5, t(99), "timeout talking to db"),
    ];
    let mut other = error_span(6, t(105), "v1 problem");
    other.resource = 1;
    spans.push(other);
    // The same message as status and exception counts once for the span.
    spans[2].events = vec![exception(t(103) + 5, "timeout talking to db")];
    // Exception events on spans that are not errors count.
    let mut e1 = server(0, 7, t(110), 10);
    e1.events = vec![
        exception(t(110) + 1, "NullPointerException"),
        SpanEvent {
            time_ns: t(110) + 2,
            name: "log".into(),
            attributes: attrs(json!({"exception.message": "not an exception event"})),
        },
    ];
    let mut e2 = server(0, 8, t(111), 10);
    e2.events = vec![exception(t(111) + 1, "NullPointerException")];
    spans.push(e1);
    spans.push(e2);

    let logs = vec![
        log(0, t(120), 17, "payment declined"),
        log(0, t(121), 21, "payment declined"),
        log(0, t(122), 17, "payment declined"),
        log(0, t(123), 9, "payment declined"), // info: not counted
        log(1, t(124), 17, "v1 problem"),
    ];
    let batch = Batch {
        resources: vec![v2, v1],
        spans,
        logs,
        ..Batch::default()
    };
    store.insert(&[&batch]).unwrap();

    let q = VersionQuery {
        service: "checkout".into(),
        version: "v2".into(),
        since_ns: t(100),
        until_ns: t(200),
    };
    let got = store.error_messages(&q, 10).unwrap();
    assert_eq!(
        got,
        vec![
            // 3 and 3: the more recent first.
            ErrorMessage {
                message: "payment declined".into(),
                count: 3,
                last_ns: t(122),
            },
            ErrorMessage {
                message: "timeout talking to db".into(),
                count: 3,
                last_ns: t(103) + 5,
            },
            ErrorMessage {
                message: "NullPointerException".into(),
                count: 2,
                last_ns: t(111) + 1,
            },
        ]
    );
    assert_eq!(store.error_messages(&q, 1).unwrap(), got[..1]);
    let mut unknown = q.clone();
    unknown.version = "v7".into();
    assert!(store.error_messages(&unknown, 10).unwrap().is_empty());
}

// --- retention -------------------------------------------------------------------

#[test]
fn remove_before_deletes_old_rows_in_chunks_and_keeps_deploys() {
    let (_dir, store) = open_file();
    let resources = vec![resource("a", Some("1"), None), resource("b", None, None)];
    // More old spans than one chunk, in batches of 512.
    let mut batches = Vec::new();
    for chunk in 0..50 {
        let spans = (0..512)
            .map(|i| {
                let n = chunk * 512 + i;
                let mut s = server(n % 2, 1, t(n as i64 % 100), 10);
                s.trace_id = trace_id((n % 250) as u8);
                if n % 3 == 0 {
                    // Non-summary spans are removed too.
                    s.kind = SpanKind::Internal;
                    s.parent_span_id = Some(span_id(9));
                }
                s
            })
            .collect();
        batches.push(Batch {
            resources: resources.clone(),
            spans,
            ..Batch::default()
        });
    }
    let refs: Vec<&Batch> = batches.iter().collect();
    store.insert(&refs).unwrap();
    let mut gauge = point(1, "m", MetricKind::Gauge, t(10));
    gauge.value = Some(1.0);
    let mut new_gauge = gauge.clone();
    new_gauge.time_ns = t(500);
    let batch = Batch {
        resources: resources.clone(),
        spans: vec![server(0, 1, t(500), 10)],
        logs: vec![log(0, t(10), 9, "old"), log(1, t(500), 9, "new")],
        points: vec![gauge, new_gauge],
        crossings: vec![Crossing {
            resource: 0,
            time_ns: t(10),
            threshold: "x".into(),
            metric: "m".into(),
            direction: "above".into(),
            value: 2.0,
            limit: 1.0,
            attributes: Attributes::new(),
        }],
    };
    store.insert(&[&batch]).unwrap();
    store
        .insert_deploy(&explicit_deploy("dep_old", t(1), "a", "0"))
        .unwrap();
    assert_eq!(store.counts().unwrap(), (25_601, 2, 2));

    let removed = store.remove_before(t(400)).unwrap();
    assert_eq!(removed.spans, 25_600);
    assert_eq!(removed.logs, 1);
    assert_eq!(removed.points, 1);
    assert_eq!(removed.crossings, 1);
    assert_eq!(store.counts().unwrap(), (1, 1, 1));
    assert!(store.trace(&trace_id(3)).unwrap().spans.is_empty());

    let events = store.timeline(&window()).unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    // Deploy markers stay (the explicit one and the automatic one of a/1).
    assert_eq!(
        kinds,
        [
            EventKind::Deploy,
            EventKind::Deploy,
            EventKind::Span,
            EventKind::Log
        ]
    );
    assert_eq!(store.remove_before(t(400)).unwrap(), Default::default());
}

#[test]
fn retention_removes_a_trace_run_whole_when_its_first_span_goes() {
    let (dir, store) = open_file();
    let resources = vec![resource("a", Some("1"), None)];
    // One trace in one batch: a run of three spans whose first is old and
    // whose other two are new, and a second trace that is new throughout.
    let batch = Batch {
        resources,
        spans: vec![
            span(
                0,
                1,
                1,
                None,
                "root",
                SpanKind::Server,
                t(10),
                t(900),
                StatusCode::Unset,
            ),
            span(
                0,
                1,
                2,
                Some(1),
                "child",
                SpanKind::Internal,
                t(500),
                t(600),
                StatusCode::Unset,
            ),
            span(
                0,
                1,
                3,
                Some(1),
                "child",
                SpanKind::Internal,
                t(700),
                t(800),
                StatusCode::Unset,
            ),
            server(0, 2, t(500), 10),
        ],
        ..Batch::default()
    };
    store.insert(&[&batch]).unwrap();
    assert_eq!(store.trace(&trace_id(1)).unwrap().spans.len(), 3);

    let removed = store.remove_before(t(400)).unwrap();
    // The new children went with their run: kept, nothing could find them.
    assert_eq!(removed.spans, 3);
    assert_eq!(store.counts().unwrap(), (1, 0, 0));
    assert!(store.trace(&trace_id(1)).unwrap().spans.is_empty());
    assert_eq!(store.trace(&trace_id(2)).unwrap().spans.len(), 1);
    let conn = raw(&dir.path().join("telemetry/telemetry.db"));
    let left: i64 = conn
        .query_row("SELECT count(*) FROM spans", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 1, "no orphaned spans are left behind");
}

// --- atomicity, reopen, schema ------------------------------------------------------

#[test]
fn a_failing_batch_stores_nothing_of_the_call() {
    let (dir, store) = open_file();
    let good = batch_of(vec![resource("checkout", Some("v1"), None)], &[(0, t(10))]);
    let mut bad = batch_of(vec![resource("checkout", Some("v2"), None)], &[(0, t(20))]);
    bad.logs.push(log(3, t(21), 9, "resource 3 does not exist"));

    let err = store.insert(&[&good, &bad]).unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("resource 3"), "{err}");
    assert_eq!(store.counts().unwrap(), (0, 0, 0));
    assert!(store.versions("checkout").unwrap().is_empty());
    assert!(store.deploys(None, t(0), t(1_000), 10).unwrap().is_empty());
    assert!(store.timeline(&window()).unwrap().is_empty());
    let resources: i64 = raw(&dir.path().join("telemetry/telemetry.db"))
        .query_row("SELECT count(*) FROM resources", [], |r| r.get(0))
        .unwrap();
    assert_eq!(resources, 0);

    // The writer kept no id of the rolled-back resource: storing the good
    // batch again stores the resource and makes its marker.
    let markers = store.insert(&[&good]).unwrap();
    assert_eq!(markers.len(), 1);
    let events = store.timeline(&window()).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].service.as_deref(), Some("checkout"));
    assert_eq!(store.counts().unwrap(), (1, 0, 0));
}

#[test]
fn an_empty_call_is_fine() {
    let store = SqliteTelemetry::open_in_memory().unwrap();
    assert!(store.insert(&[]).unwrap().is_empty());
    assert!(store.insert(&[&Batch::default()]).unwrap().is_empty());
    assert_eq!(store.counts().unwrap(), (0, 0, 0));
}

#[test]
fn reopening_keeps_data_and_rebuilds_the_resource_cache() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("telemetry.db");
    let r = resource("checkout", Some("v1"), Some("prod"));
    {
        let store = SqliteTelemetry::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), TELEMETRY_SCHEMA_VERSION);
        assert_eq!(
            store
                .insert(&[&batch_of(vec![r.clone()], &[(0, t(10))])])
                .unwrap()
                .len(),
            1
        );
    }
    let store = SqliteTelemetry::open(&path).unwrap();
    assert_eq!(store.counts().unwrap(), (1, 0, 0));
    // A known resource: no new row, no marker.
    assert!(store
        .insert(&[&batch_of(vec![r], &[(0, t(20))])])
        .unwrap()
        .is_empty());
    let conn = raw(&path);
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |row| row.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM resources"), 1);
    assert_eq!(count("SELECT count(*) FROM services"), 1);
    assert_eq!(count("SELECT count(*) FROM deploys"), 1);
    assert_eq!(store.timeline(&window()).unwrap().len(), 3);
}

#[test]
fn schema_newer_than_binary_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("telemetry.db");
    drop(SqliteTelemetry::open(&path).unwrap());
    let newer = TELEMETRY_SCHEMA_VERSION + 1;
    raw(&path)
        .execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)",
            [newer],
        )
        .unwrap();
    let err = SqliteTelemetry::open(&path).expect_err("newer schema must be refused");
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported } if found == newer && supported == TELEMETRY_SCHEMA_VERSION),
        "{err:?}"
    );
}

#[test]
fn the_database_uses_wal() {
    let (dir, store) = open_file();
    store
        .insert(&[&batch_of(vec![resource("a", None, None)], &[(0, t(1))])])
        .unwrap();
    let mode: String = raw(&dir.path().join("telemetry/telemetry.db"))
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[cfg(unix)]
#[test]
fn file_and_missing_parent_dirs_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let (dir, store) = open_file();
    store
        .insert(&[&batch_of(vec![resource("a", None, None)], &[(0, t(1))])])
        .unwrap();
    let data = dir.path().join("telemetry");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("telemetry.db")), 0o600);
    assert_eq!(mode(&data.join("telemetry.db-wal")), 0o600);
}

#[test]
fn readers_run_while_the_writer_writes() {
    let (_dir, store) = open_file();
    let store = std::sync::Arc::new(store);
    timeline_fixture(&store);
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..50 {
                let batch = batch_of(
                    vec![resource("load", Some("1"), None)],
                    &[(0, t(500 + i)), (0, t(500 + i))],
                );
                store.insert(&[&batch]).unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let mut q = window();
                    q.service = Some("checkout".into());
                    assert_eq!(store.timeline(&q).unwrap().len(), 7);
                    assert_eq!(store.trace(&trace_id(1)).unwrap().spans.len(), 4);
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(store.counts().unwrap().0, 4 + 100);
}

#[test]
fn a_trace_spread_over_batches_and_calls_is_found_whole() {
    let (_dir, store) = open_file();
    let a = resource("a", Some("1"), None);
    let b = resource("b", Some("1"), None);
    // Trace 1 interleaved with traces 2 and 3 inside a batch, in two
    // batches of one call, and in a later call.
    let s = |r: usize, trace: u8, id: u8, start: i64| {
        let mut s = server(r, id, t(start), 10);
        s.trace_id = trace_id(trace);
        s.parent_span_id = (id != 1).then(|| span_id(1));
        s.kind = SpanKind::Internal;
        s
    };
    let first = Batch {
        resources: vec![a.clone()],
        spans: vec![
            s(0, 1, 1, 10),
            s(0, 2, 20, 10),
            s(0, 1, 2, 12),
            s(0, 3, 30, 11),
            s(0, 1, 3, 11),
        ],
        ..Batch::default()
    };
    let second = Batch {
        resources: vec![b.clone()],
        spans: vec![s(0, 3, 31, 13), s(0, 1, 4, 14)],
        ..Batch::default()
    };
    store.insert(&[&first, &second]).unwrap();
    let third = Batch {
        resources: vec![a],
        spans: vec![s(0, 1, 5, 9), s(0, 2, 21, 9)],
        ..Batch::default()
    };
    store.insert(&[&third]).unwrap();

    let ids = |spans: &[airlock_store::telemetry::StoredSpan]| -> Vec<u8> {
        spans.iter().map(|s| s.span.span_id[7]).collect()
    };
    let trace = store.trace(&trace_id(1)).unwrap();
    assert_eq!(ids(&trace.spans), [5, 1, 3, 2, 4]);
    assert_eq!(trace.spans[4].resource, b);
    assert_eq!(ids(&store.trace(&trace_id(3)).unwrap().spans), [30, 31]);
    assert_eq!(ids(&store.trace(&trace_id(2)).unwrap().spans), [21, 20]);

    // The timeline of a trace lists the same spans (none is a summary span
    // but the root), in the same order, and its limit applies.
    let mut q = window();
    q.trace_id = Some(trace_id(1));
    let spans: Vec<String> = store
        .timeline(&q)
        .unwrap()
        .iter()
        .map(|e| e.span_id.clone().unwrap())
        .collect();
    assert_eq!(
        spans,
        [5, 1, 3, 2, 4].map(|n| format!("cd000000000000{n:02x}"))
    );
    q.limit = 2;
    q.newest_first = true;
    assert_eq!(store.timeline(&q).unwrap().len(), 2);
    assert_eq!(
        store.timeline(&q).unwrap()[0].span_id.as_deref(),
        Some("cd00000000000004")
    );
    // Without the trace id only the root is a summary span.
    let mut q = window();
    q.kinds = Kinds {
        spans: true,
        logs: false,
        metrics: false,
        deploys: false,
    };
    assert_eq!(store.timeline(&q).unwrap().len(), 1);
}
