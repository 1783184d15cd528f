//! Telemetry store throughput and query latency.
//!
//! 1. Insert: spans only, batches of 512 spans (8 attributes, names of about
//!    20 characters, one resource per batch), four batches per `insert`
//!    call as the ingest writer groups them; prints spans/s on one core.
//! 2. Load: EVENTS timeline events (spans and logs, 4:1) spread over 24 hours
//!    and 20 services, each service switching version at 12 h; prints the
//!    ingest rate as the database grows.
//! 3. Queries on the loaded database: the timeline (1-hour window, one
//!    service; also newest first, all services, with a grep), trace lookup by
//!    id, version_stats and error_messages; prints p50/p95/max.
//! 4. version_stats over one version with 1,000,000 server spans.
//! 5. remove_before of the first hour.
//! 6. Insert as in 1, into the loaded database.
//!
//! cargo bench -p airlock-store --bench telemetry [-- EVENTS] [--db PATH]
//!     [--insert-only] [--no-empty] [--no-queries]
//!
//! With `--db PATH` the database is kept, and a second run with the same path
//! skips the load (step 6 still adds its spans). `--insert-only` runs step 1
//! alone, `--no-empty` skips it, `--no-queries` skips steps 3 to 5. Only the
//! `insert` calls are timed, not building the batches. The bytes written per
//! span are what the process passed to write(2) (WAL frames and checkpoint
//! copies). Step 1's database is in the temporary directory (TMPDIR).
//!
//! Measured on the 2-core development VM (shared, load 2), 10,000,000 events,
//! database in tmpfs: insert 209k spans/s into an empty database and 215k
//! into the loaded one (about 1.3 and 2.0 kB written per span); loading
//! 183k events/s; timeline 1 h of one service p95 11 ms (all services 18 ms);
//! trace by id p95 76 µs; version_stats over 1M spans 141 ms; retention
//! 283k rows/s. On the VM's disk the empty-database insert made 190k to 220k
//! spans/s, but at 10M rows the insert was bound by the disk (about 2 kB per
//! span in WAL frames and checkpoint copies) at about 100k spans/s.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use airlock_store::telemetry::{
    Attributes, Batch, LogRecord, Resource, Span, SpanEvent, SpanKind, StatusCode, TelemetryStore,
    TimelineQuery, VersionQuery,
};
use airlock_store::SqliteTelemetry;
use serde_json::{json, Value};

const SERVICES: usize = 20;
const INSTANCES: usize = 3;
const SPANS_PER_BATCH: usize = 512;
const SPANS_PER_TRACE: usize = 8;
const LOGS_PER_BATCH: usize = 128;
const BATCHES_PER_CALL: usize = 4;
const DAY_NS: i64 = 24 * 3_600 * 1_000_000_000;
const HOUR_NS: i64 = 3_600 * 1_000_000_000;
/// 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200_000_000_000;

/// SplitMix64: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        out
    }
}

fn attrs(v: Value) -> Attributes {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn service_name(s: usize) -> String {
    format!("service-{s:02}")
}

fn resource(service: usize, instance: usize, version: &str) -> Resource {
    Resource {
        service: service_name(service),
        version: Some(version.into()),
        env: Some("prod".into()),
        deployment_id: None,
        instance_id: Some(format!("{}-{instance}-7f9c", service_name(service))),
        host: Some(format!("node-{}", (service * 3 + instance) % 17)),
        attributes: attrs(json!({
            "telemetry.sdk.name": "opentelemetry",
            "telemetry.sdk.language": "rust",
            "k8s.namespace.name": "shop",
        })),
    }
}

const TIERS: [&str; 3] = ["free", "pro", "enterprise"];

const NAMES: [&str; 8] = [
    "GET /api/v1/cart/{id}",
    "SELECT cart_items ord",
    "redis GET session:id",
    "POST /api/v1/checkout",
    "grpc payments.Charge",
    "render template cart",
    "kafka publish orders",
    "validate basket rules",
];

/// One batch of one resource: 64 traces of 8 spans (a server root, a
/// second server span, six internal and client spans; 1% errors) starting at
/// `start_ns`, and `logs` log records of those traces.
fn batch(
    rng: &mut Rng,
    resource: Resource,
    start_ns: i64,
    spread_ns: i64,
    logs: usize,
    traces_out: &mut Vec<[u8; 16]>,
) -> Batch {
    let mut spans = Vec::with_capacity(SPANS_PER_BATCH);
    let mut trace_ids = Vec::new();
    for t in 0..SPANS_PER_BATCH / SPANS_PER_TRACE {
        let trace_id: [u8; 16] = rng.bytes();
        trace_ids.push(trace_id);
        let trace_start = start_ns + (spread_ns * t as i64) / 64;
        let root_id: [u8; 8] = rng.bytes();
        let mut parent = None;
        for i in 0..SPANS_PER_TRACE {
            let span_id = if i == 0 { root_id } else { rng.bytes() };
            let kind = match i {
                0 | 4 => SpanKind::Server,
                1 | 2 | 5 => SpanKind::Client,
                _ => SpanKind::Internal,
            };
            let start = trace_start + i as i64 * 150_000;
            let duration = 20_000 + rng.below(50_000_000) as i64;
            let error = rng.below(100) == 0;
            let events = if error {
                vec![SpanEvent {
                    time_ns: start + duration / 2,
                    name: "exception".into(),
                    attributes: attrs(json!({
                        "exception.type": "TimeoutError",
                        "exception.message": format!("upstream timed out after {}ms", rng.below(5) * 100),
                    })),
                }]
            } else {
                Vec::new()
            };
            spans.push(Span {
                resource: 0,
                trace_id,
                span_id,
                parent_span_id: parent,
                name: NAMES[(i + t) % NAMES.len()].into(),
                kind,
                start_ns: start,
                end_ns: start + duration,
                status: if error {
                    StatusCode::Error
                } else {
                    StatusCode::Unset
                },
                status_message: if error {
                    "deadline exceeded".into()
                } else {
                    String::new()
                },
                scope: "opentelemetry-http".into(),
                attributes: attrs(json!({
                    "http.request.method": "GET",
                    "http.route": "/api/v1/cart/{id}",
                    "http.response.status_code": if error { 500 } else { 200 },
                    "server.address": "cart.shop.svc",
                    "network.peer.port": 8080 + (i as i64),
                    "user.tier": TIERS[t % 3],
                    "thread.id": rng.below(64),
                    "retry": false,
                })),
                events,
            });
            if i == 0 {
                parent = Some(root_id);
            }
        }
    }
    traces_out.extend_from_slice(&trace_ids[..4]);
    let logs = (0..logs)
        .map(|i| {
            let error = rng.below(50) == 0;
            let trace = trace_ids[i % trace_ids.len()];
            LogRecord {
                resource: 0,
                time_ns: start_ns + (spread_ns * i as i64) / logs as i64,
                severity_number: if error { 17 } else { 9 },
                severity_text: if error { "ERROR" } else { "INFO" }.into(),
                body: if error {
                    format!("payment provider returned {}", 500 + rng.below(4))
                } else {
                    format!("cart {} updated with {} items", rng.below(1_000_000), i % 7)
                },
                trace_id: (i % 2 == 0).then_some(trace),
                span_id: None,
                scope: "app".into(),
                attributes: attrs(
                    json!({"code.function": "update_cart", "user.id": rng.below(100_000)}),
                ),
            }
        })
        .collect();
    Batch {
        resources: vec![resource],
        spans,
        logs,
        points: Vec::new(),
        crossings: Vec::new(),
    }
}

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).max(1);
        samples[rank - 1]
    };
    format!(
        "p50 {:>8.2?}  p95 {:>8.2?}  max {:>8.2?}  (n={})",
        at(0.5),
        at(0.95),
        samples[samples.len() - 1],
        samples.len()
    )
}

fn measure<T>(n: usize, mut f: impl FnMut(usize) -> T) -> (Vec<Duration>, T) {
    let mut samples = Vec::with_capacity(n);
    let mut last = None;
    for i in 0..n {
        let start = Instant::now();
        last = Some(f(i));
        samples.push(start.elapsed());
    }
    (samples, last.expect("n > 0"))
}

/// Inserts `calls` × 4 batches of 512 spans of version `version` from
/// `start_ns` on and prints the rate of the insert calls.
fn insert_spans(store: &SqliteTelemetry, label: &str, calls: usize, start_ns: i64, version: &str) {
    let mut rng = Rng(1);
    let mut traces = Vec::new();
    let mut elapsed = Duration::ZERO;
    let mut spans = 0usize;
    let written = bytes_written();
    for c in 0..calls {
        let batches: Vec<Batch> = (0..BATCHES_PER_CALL)
            .map(|b| {
                let k = c * BATCHES_PER_CALL + b;
                batch(
                    &mut rng,
                    resource(k % SERVICES, k % INSTANCES, version),
                    start_ns + k as i64 * 5_000_000,
                    5_000_000,
                    0,
                    &mut traces,
                )
            })
            .collect();
        let refs: Vec<&Batch> = batches.iter().collect();
        let start = Instant::now();
        store.insert(&refs).unwrap();
        elapsed += start.elapsed();
        spans += batches.iter().map(|b| b.spans.len()).sum::<usize>();
    }
    let written = bytes_written().saturating_sub(written);
    println!(
        "{label}: {spans} spans in {:.2?}: {:.0} spans/s ({} batches of {SPANS_PER_BATCH} per call), {} bytes written per span (WAL and checkpoints)",
        elapsed,
        spans as f64 / elapsed.as_secs_f64(),
        BATCHES_PER_CALL,
        written / spans as u64,
    );
}

/// Bytes this process has passed to write(2) and friends so far (Linux;
/// 0 elsewhere).
fn bytes_written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("wchar: "))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn insert_throughput() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SqliteTelemetry::open(&tmp.path().join("t.db")).unwrap();
    insert_spans(&store, "insert, empty database", 500, T0, "v1");
}

fn load(store: &SqliteTelemetry, events: u64) -> Vec<[u8; 16]> {
    let per_batch = (SPANS_PER_BATCH + LOGS_PER_BATCH) as u64;
    let batches = events.div_ceil(per_batch);
    let step = DAY_NS / batches as i64;
    let mut rng = Rng(7);
    let mut traces = Vec::new();
    let mut elapsed = Duration::ZERO;
    let mut window = (Duration::ZERO, 0u64);
    let mut stored = 0u64;
    let mut k = 0u64;
    let report_every = 1_000_000u64;
    let mut next_report = report_every;
    while k < batches {
        let n = BATCHES_PER_CALL.min((batches - k) as usize);
        let list: Vec<Batch> = (0..n)
            .map(|i| {
                let b = k + i as u64;
                let service = (b % SERVICES as u64) as usize;
                let instance = ((b / SERVICES as u64) % INSTANCES as u64) as usize;
                let start = b as i64 * step;
                let version = if start < DAY_NS / 2 { "v1" } else { "v2" };
                batch(
                    &mut rng,
                    resource(service, instance, version),
                    T0 + start,
                    step.max(1) * SERVICES as i64,
                    LOGS_PER_BATCH,
                    &mut traces,
                )
            })
            .collect();
        let refs: Vec<&Batch> = list.iter().collect();
        let start = Instant::now();
        store.insert(&refs).unwrap();
        let took = start.elapsed();
        elapsed += took;
        window.0 += took;
        let added: u64 = list.iter().map(|b| b.len() as u64).sum();
        window.1 += added;
        stored += added;
        k += n as u64;
        if stored >= next_report {
            println!(
                "load: {stored:>10} events, last {} at {:.0} events/s",
                window.1,
                window.1 as f64 / window.0.as_secs_f64()
            );
            window = (Duration::ZERO, 0);
            next_report += report_every;
        }
    }
    println!(
        "load: {stored} events in {:.2?} of insert calls: {:.0} events/s",
        elapsed,
        stored as f64 / elapsed.as_secs_f64()
    );
    traces
}

fn queries(store: &SqliteTelemetry, traces: &[[u8; 16]]) {
    let mut rng = Rng(99);
    let hour_query = |rng: &mut Rng, service: bool| {
        let hour = rng.below(23) as i64;
        TimelineQuery {
            since_ns: T0 + hour * HOUR_NS + rng.below(HOUR_NS as u64) as i64,
            until_ns: 0,
            service: service.then(|| service_name(rng.below(SERVICES as u64) as usize)),
            ..TimelineQuery::default()
        }
    };
    let finish = |mut q: TimelineQuery| {
        q.until_ns = q.since_ns + HOUR_NS;
        q
    };
    let runs = 200;

    let (s, n) = measure(runs, |_| {
        store
            .timeline(&finish(hour_query(&mut rng, true)))
            .unwrap()
            .len()
    });
    println!(
        "timeline 1 h, one service:               {} → {n} events",
        percentiles(s)
    );

    let (s, n) = measure(runs, |_| {
        let mut q = finish(hour_query(&mut rng, true));
        q.newest_first = true;
        store.timeline(&q).unwrap().len()
    });
    println!(
        "timeline 1 h, one service, newest first: {} → {n} events",
        percentiles(s)
    );

    let (s, n) = measure(runs, |_| {
        let mut q = finish(hour_query(&mut rng, true));
        q.limit = 100;
        store.timeline(&q).unwrap().len()
    });
    println!(
        "timeline 1 h, one service, limit 100:    {} → {n} events",
        percentiles(s)
    );

    let (s, n) = measure(runs, |_| {
        store
            .timeline(&finish(hour_query(&mut rng, false)))
            .unwrap()
            .len()
    });
    println!(
        "timeline 1 h, all services:              {} → {n} events",
        percentiles(s)
    );

    let (s, n) = measure(runs / 4, |_| {
        let mut q = finish(hour_query(&mut rng, true));
        q.grep = Some("provider returned 503".into());
        store.timeline(&q).unwrap().len()
    });
    println!(
        "timeline 1 h, one service, rare grep:    {} → {n} events",
        percentiles(s)
    );

    let (s, n) = measure(runs / 4, |_| {
        let mut q = finish(hour_query(&mut rng, true));
        q.attributes = vec![("http.response.status_code".into(), "500".into())];
        store.timeline(&q).unwrap().len()
    });
    println!(
        "timeline 1 h, one service, attribute:    {} → {n} events",
        percentiles(s)
    );

    let (s, n) = measure(1_000, |_| {
        let id = traces[rng.below(traces.len() as u64) as usize];
        store.trace(&id).unwrap().spans.len()
    });
    println!(
        "trace by id:                             {} → {n} spans",
        percentiles(s)
    );

    let (s, n) = measure(200, |_| {
        let id: [u8; 16] = rng.bytes();
        store.trace(&id).unwrap().spans.len()
    });
    println!(
        "trace by unknown id:                     {} → {n} spans",
        percentiles(s)
    );

    let version_query = |rng: &mut Rng| VersionQuery {
        service: service_name(rng.below(SERVICES as u64) as usize),
        version: "v2".into(),
        since_ns: T0 + DAY_NS / 2,
        until_ns: T0 + DAY_NS,
    };
    let (s, stats) = measure(20, |_| {
        store.version_stats(&version_query(&mut rng)).unwrap()
    });
    println!(
        "version_stats 12 h:                      {} → {} requests",
        percentiles(s),
        stats.requests
    );
    let (s, n) = measure(20, |_| {
        store
            .error_messages(&version_query(&mut rng), 20)
            .unwrap()
            .len()
    });
    println!(
        "error_messages 12 h:                     {} → {n} messages",
        percentiles(s)
    );
    println!("counts: {:?}", store.counts().unwrap());
}

/// One version with a million server spans (the requirement: about a second
/// for version_stats).
fn big_version(store: &SqliteTelemetry) {
    let start_ns = T0 + DAY_NS + HOUR_NS;
    let mut rng = Rng(5);
    // Loaded by an earlier run with the same --db.
    let loaded = !store.versions("big").unwrap().is_empty();
    let r = Resource {
        service: "big".into(),
        version: Some("v1".into()),
        ..Resource::default()
    };
    let mut done = if loaded { 1_000_000 } else { 0 };
    while done < 1_000_000 {
        let batches: Vec<Batch> = (0..BATCHES_PER_CALL)
            .map(|b| Batch {
                resources: vec![r.clone()],
                spans: (0..SPANS_PER_BATCH)
                    .map(|i| {
                        let start = start_ns + (done + b * SPANS_PER_BATCH + i) as i64 * 1_000_000;
                        Span {
                            resource: 0,
                            trace_id: rng.bytes(),
                            span_id: rng.bytes(),
                            parent_span_id: None,
                            name: "GET /".into(),
                            kind: SpanKind::Server,
                            start_ns: start,
                            end_ns: start + 1_000 + rng.below(1_000_000_000) as i64,
                            status: StatusCode::Unset,
                            status_message: String::new(),
                            scope: String::new(),
                            attributes: Attributes::new(),
                            events: Vec::new(),
                        }
                    })
                    .collect(),
                ..Batch::default()
            })
            .collect();
        done += BATCHES_PER_CALL * SPANS_PER_BATCH;
        let refs: Vec<&Batch> = batches.iter().collect();
        store.insert(&refs).unwrap();
    }
    let q = VersionQuery {
        service: "big".into(),
        version: "v1".into(),
        since_ns: start_ns,
        until_ns: start_ns + DAY_NS,
    };
    let (s, stats) = measure(5, |_| store.version_stats(&q).unwrap());
    println!(
        "version_stats, 1 version × {} server spans: {}",
        stats.requests,
        percentiles(s)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let events: u64 = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let db: Option<PathBuf> = args
        .iter()
        .position(|a| a == "--db")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);

    if !args.iter().any(|a| a == "--no-empty") {
        insert_throughput();
    }
    if args.iter().any(|a| a == "--insert-only") {
        return;
    }

    let tmp = tempfile::tempdir().unwrap();
    let path = db.unwrap_or_else(|| tmp.path().join("telemetry.db"));
    let store = SqliteTelemetry::open(&path).unwrap();
    let traces = if store.counts().unwrap().0 == 0 {
        let traces = load(&store, events);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!("database: {:.0} MiB", size as f64 / (1 << 20) as f64);
        traces
    } else {
        println!(
            "reusing {} with {:?}",
            path.display(),
            store.counts().unwrap()
        );
        // Known trace ids: regenerate the same sequence is not needed; pick
        // ids from the timeline.
        let q = TimelineQuery {
            since_ns: T0,
            until_ns: T0 + DAY_NS,
            limit: 5_000,
            ..TimelineQuery::default()
        };
        store
            .timeline(&q)
            .unwrap()
            .iter()
            .filter_map(|e| e.trace_id.as_deref())
            .map(|hex| {
                let mut id = [0u8; 16];
                for (i, b) in id.iter_mut().enumerate() {
                    *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
                }
                id
            })
            .collect()
    };
    if !args.iter().any(|a| a == "--no-queries") {
        queries(&store, &traces);
        big_version(&store);
        // Retention of the first hour (a no-op when rerun on a kept database).
        let start = Instant::now();
        let removed = store.remove_before(T0 + HOUR_NS).unwrap();
        let took = start.elapsed();
        let rows = removed.spans + removed.logs + removed.points + removed.crossings;
        println!(
            "remove_before, first hour: {removed:?} in {took:.2?} ({:.0} rows/s, in chunks of 10,000)",
            rows as f64 / took.as_secs_f64()
        );
    }
    // Sustained: the same spans as the first step, into the loaded database
    // (three days later, so that the query windows above stay as they were).
    insert_spans(
        &store,
        "insert, loaded database",
        500,
        T0 + 3 * DAY_NS,
        "v3",
    );
}
