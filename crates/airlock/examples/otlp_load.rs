//! The load generator of `bench/otlp-ingest.sh`: sends OTLP/HTTP protobuf
//! export requests of `--batch` spans or log records to a gateway from
//! `--concurrency` connections until `--records` are stored, and reports the
//! sustained rate next to the same machine's raw protobuf decode rate of the
//! very same request bodies, measured in the same run on one core.
//!
//! Every request body is built and encoded before the clock starts, so the
//! generator's own work during the run is sending bytes and reading answers.
//! Each request carries distinct trace and span ids (8 spans per trace, the
//! shape of a small HTTP request fanning out), current timestamps, and one of
//! four services with a version, an environment and an instance, the way an
//! SDK's resource looks.
//!
//! A 503 (the store is behind) is retried after a short pause and counted;
//! any other failure stops the run: the benchmark measures what was stored.
//!
//! cargo run --release -p airlock --example otlp_load -- \
//!     --endpoint https://127.0.0.1:8443 --ca-file data/tls/ca.crt --signal traces

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost_otlp::Message;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Signal {
    Traces,
    Logs,
}

#[derive(Parser, Debug)]
struct Args {
    /// The gateway's listen_http, e.g. https://127.0.0.1:8443
    #[arg(long)]
    endpoint: String,
    /// The CA that signed the gateway's certificate (https endpoints).
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// An ingest token, when the gateway requires them.
    #[arg(long, env = "OTLP_INGEST_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[arg(long, value_enum, default_value = "traces")]
    signal: Signal,
    /// Records to store in all.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Records per export request.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Print one machine-readable line (key=value) instead of the text.
    #[arg(long)]
    quiet: bool,
}

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

const SERVICES: [&str; 4] = ["checkout", "orders", "payments", "inventory"];

fn resource(request: usize) -> Resource {
    let service = SERVICES[request % SERVICES.len()];
    Resource {
        attributes: vec![
            kv("service.name", s(service)),
            kv("service.version", s("1.4.2")),
            kv("deployment.environment.name", s("prod")),
            kv("deployment.id", s("deploy-1042")),
            kv(
                "service.instance.id",
                s(format!("{service}-7d9f8-{}", request % 3)),
            ),
            kv("host.name", s(format!("ip-10-0-3-{}", request % 3))),
            kv("telemetry.sdk.language", s("rust")),
            kv("telemetry.sdk.name", s("opentelemetry")),
            kv("telemetry.sdk.version", s("0.33.0")),
        ],
        ..Default::default()
    }
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "opentelemetry-http".into(),
        version: "0.33.0".into(),
        ..Default::default()
    })
}

/// A well-mixed 64-bit value of `n` (splitmix64's finaliser): ids that are
/// distinct and look random, without a dependency.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn trace_id(trace: u64, run: u64) -> Vec<u8> {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&mix(trace ^ run.rotate_left(32)).to_be_bytes());
    id[8..].copy_from_slice(&mix(!trace ^ run).to_be_bytes());
    id.to_vec()
}

fn span_id(n: u64, run: u64) -> Vec<u8> {
    mix(n.wrapping_mul(31) ^ run).max(1).to_be_bytes().to_vec()
}

fn traces_request(request: usize, batch: usize, t0: u64, run: u64) -> ExportTraceServiceRequest {
    let first = (request * batch) as u64;
    let spans = (first..first + batch as u64)
        .map(|i| {
            let root = i - i % 8;
            let start = t0 + i * 10_000;
            Span {
                trace_id: trace_id(root / 8, run),
                span_id: span_id(i, run),
                parent_span_id: if i == root {
                    Vec::new()
                } else {
                    span_id(root, run)
                },
                name: if i == root {
                    "GET /api/v1/orders/{id}".into()
                } else {
                    format!("SELECT orders {}", i % 8)
                },
                kind: if i == root { 2 } else { 3 },
                start_time_unix_nano: start,
                end_time_unix_nano: start + 250_000 + (mix(i) % 2_000_000),
                attributes: vec![
                    kv("http.request.method", s("GET")),
                    kv("http.route", s("/api/v1/orders/{id}")),
                    kv(
                        "http.response.status_code",
                        Value::IntValue(if i % 100 == 0 { 500 } else { 200 }),
                    ),
                    kv("url.path", s(format!("/api/v1/orders/{}", 10_000 + i))),
                    kv("server.address", s("orders.internal")),
                    kv("server.port", Value::IntValue(8080)),
                    kv("user_agent.original", s("checkout-client/2.3")),
                    kv("network.protocol.version", s("1.1")),
                ],
                status: Some(Status {
                    message: if i % 100 == 0 {
                        "upstream timed out".into()
                    } else {
                        String::new()
                    },
                    code: if i % 100 == 0 { 2 } else { 0 },
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(request)),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs_request(request: usize, batch: usize, t0: u64, run: u64) -> ExportLogsServiceRequest {
    let first = (request * batch) as u64;
    let log_records = (first..first + batch as u64)
        .map(|i| {
            let error = i % 50 == 0;
            LogRecord {
                time_unix_nano: t0 + i * 10_000,
                observed_time_unix_nano: t0 + i * 10_000 + 1_000,
                severity_number: if error { 17 } else { 9 },
                severity_text: if error { "ERROR" } else { "INFO" }.into(),
                body: Some(AnyValue {
                    value: Some(s(format!(
                        "order {} {} in {} ms for customer c-{}",
                        10_000 + i,
                        if error { "failed" } else { "served" },
                        mix(i) % 900 + 3,
                        mix(i ^ 7) % 100_000
                    ))),
                }),
                attributes: vec![
                    kv("code.function", s("orders::handler::get")),
                    kv("http.route", s("/api/v1/orders/{id}")),
                ],
                // Half the records come from inside a trace.
                trace_id: if i % 2 == 0 {
                    trace_id(i / 8, run)
                } else {
                    Vec::new()
                },
                span_id: if i % 2 == 0 {
                    span_id(i, run)
                } else {
                    Vec::new()
                },
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(request)),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The same machine's floor: prost decoding the very same bodies on one
/// core, best of three passes (records per second).
fn raw_decode_rate(signal: Signal, bodies: &[Vec<u8>], batch: usize) -> anyhow::Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        for body in bodies {
            match signal {
                Signal::Traces => {
                    std::hint::black_box(ExportTraceServiceRequest::decode(&body[..])?);
                }
                Signal::Logs => {
                    std::hint::black_box(ExportLogsServiceRequest::decode(&body[..])?);
                }
            }
        }
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok((bodies.len() * batch) as f64 / best)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.batch == 0 || args.concurrency == 0 {
        bail!("--batch and --concurrency must be at least 1");
    }
    let requests = args.records.div_ceil(args.batch);
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    // Timestamps end about now, so the run's records sit inside any retention.
    let t0 = now_ns.saturating_sub((requests * args.batch) as u64 * 10_000);
    let run = now_ns; // distinct ids per run: repeated runs do not merge traces
    let build = Instant::now();
    let bodies: Vec<Vec<u8>> = (0..requests)
        .map(|r| match args.signal {
            Signal::Traces => traces_request(r, args.batch, t0, run).encode_to_vec(),
            Signal::Logs => logs_request(r, args.batch, t0, run).encode_to_vec(),
        })
        .collect();
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    if !args.quiet {
        eprintln!(
            "built {requests} requests ({:.0} MB) in {:.1} s",
            bytes as f64 / 1e6,
            build.elapsed().as_secs_f64()
        );
    }
    let decode_rate = raw_decode_rate(args.signal, &bodies, args.batch)?;

    let client = airlock::client::http_client(args.ca_file.as_deref())?;
    let path = match args.signal {
        Signal::Traces => "/v1/traces",
        Signal::Logs => "/v1/logs",
    };
    let url = format!("{}{path}", args.endpoint.trim_end_matches('/'));
    let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(bodies.into_iter().map(Into::into).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let busy = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(requests)));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (client, url, bodies, next, busy, latencies, token) = (
            client.clone(),
            url.clone(),
            bodies.clone(),
            next.clone(),
            busy.clone(),
            latencies.clone(),
            args.token.clone(),
        );
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return anyhow::Ok(());
                };
                let sent = Instant::now();
                loop {
                    let mut req = client
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .body(body.clone());
                    if let Some(t) = &token {
                        req = req.bearer_auth(t);
                    }
                    let answer = req.send().await.context("sending an export request")?;
                    let status = answer.status();
                    let text = answer.bytes().await?;
                    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                        busy.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    if !status.is_success() {
                        bail!(
                            "the gateway answered {status}: {}",
                            String::from_utf8_lossy(&text)
                        );
                    }
                    break;
                }
                latencies
                    .lock()
                    .expect("not poisoned")
                    .push(sent.elapsed().as_secs_f64());
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stored = requests * args.batch;
    let rate = stored as f64 / elapsed;
    let mut lat = std::mem::take(&mut *latencies.lock().expect("not poisoned"));
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1] * 1e3;
    let signal = match args.signal {
        Signal::Traces => "spans",
        Signal::Logs => "logs",
    };
    let busy = busy.load(Ordering::Relaxed);
    if args.quiet {
        println!(
            "signal={signal} records={stored} seconds={elapsed:.3} rate={rate:.0} \
             decode_rate={decode_rate:.0} ratio={:.4} p50_ms={:.1} p99_ms={:.1} busy={busy}",
            rate / decode_rate,
            pct(0.50),
            pct(0.99),
        );
    } else {
        println!(
            "{stored} {signal} in {elapsed:.2} s over {} connections: {rate:.0} {signal}/s \
             sustained; raw decode {decode_rate:.0} {signal}/s on one core; ratio {:.3}; \
             request p50 {:.1} ms, p99 {:.1} ms; {busy} answers 503 (retried)",
            args.concurrency,
            rate / decode_rate,
            pct(0.50),
            pct(0.99),
        );
    }
    Ok(())
}
