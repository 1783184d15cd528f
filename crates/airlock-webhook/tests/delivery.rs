//! Webhook delivery over real HTTP: every test runs an axum receiver on
//! 127.0.0.1 (port 0) that records what it gets and answers from a script,
//! and a real `Dispatcher` sending to it. No mocks; backoffs are tens of
//! milliseconds so the whole file runs in a few seconds.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_webhook::{
    verify, Dispatcher, Error, Event, Options, Target, TargetStatus, USER_AGENT,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

/// How the receiver answers one request.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Status(u16),
    /// A status with `Retry-After: <seconds>`.
    RetryAfter(u16, &'static str),
    /// `302 Found` to another path on the same receiver.
    Redirect,
    /// Never answers.
    Hang,
}

#[derive(Clone, Debug)]
struct Hit {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Hit {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

struct ReceiverState {
    script: Mutex<VecDeque<Reply>>,
    /// The answer once the script is used up.
    otherwise: Reply,
    hits: Mutex<Vec<Hit>>,
}

#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
}

impl Receiver {
    /// A receiver on a fresh port that answers `script` in order, then
    /// `otherwise` forever.
    async fn start(script: &[Reply], otherwise: Reply) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Receiver::serve(listener, script, otherwise)
    }

    fn serve(listener: tokio::net::TcpListener, script: &[Reply], otherwise: Reply) -> Receiver {
        let (receiver, router) =
            Receiver::router(listener.local_addr().unwrap(), script, otherwise);
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        receiver
    }

    fn router(addr: SocketAddr, script: &[Reply], otherwise: Reply) -> (Receiver, axum::Router) {
        let state = Arc::new(ReceiverState {
            script: Mutex::new(script.iter().copied().collect()),
            otherwise,
            hits: Mutex::new(Vec::new()),
        });
        let router = axum::Router::new()
            .fallback(record_and_answer)
            .with_state(state.clone());
        (Receiver { addr, state }, router)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    fn hits_on(&self, path: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.path == path).collect()
    }
}

async fn record_and_answer(
    State(state): State<Arc<ReceiverState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.hits.lock().unwrap().push(Hit {
        method,
        path: uri.path().to_owned(),
        headers,
        body,
    });
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(state.otherwise);
    let status = |code| StatusCode::from_u16(code).unwrap();
    match reply {
        Reply::Status(code) => status(code).into_response(),
        Reply::RetryAfter(code, seconds) => {
            (status(code), [("retry-after", seconds)]).into_response()
        }
        Reply::Redirect => (StatusCode::FOUND, [("location", "/elsewhere")]).into_response(),
        Reply::Hang => std::future::pending().await,
    }
}

/// Polls `condition` every 10ms for up to 5s.
async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn fast_options() -> Options {
    Options {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        max_attempts: 5,
        request_timeout: Duration::from_secs(2),
        ..Options::default()
    }
}

fn target(url: &str, events: &[&str], secret: &str) -> Target {
    Target {
        url: url.to_owned(),
        events: events.iter().map(|e| e.to_string()).collect(),
        secret: secret.to_owned(),
    }
}

fn event(kind: &str) -> Event {
    Event::new(
        kind,
        format!("something happened: {kind}"),
        1_700_000_000_123,
        serde_json::json!({ "request_id": "req_1", "user": "alice", "resource": "orders" }),
    )
}

/// The status of the only target.
fn only(dispatcher: &Dispatcher) -> TargetStatus {
    let mut status = dispatcher.status();
    assert_eq!(status.len(), 1, "{status:?}");
    status.remove(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn delivers_a_signed_event_with_its_headers_and_body() -> anyhow::Result<()> {
    let receiver = Receiver::start(&[], Reply::Status(204)).await;
    let shutdown = CancellationToken::new();
    let dispatcher = Dispatcher::start(
        vec![target(
            &receiver.url("/hook"),
            &["request.created"],
            "s3cret-value",
        )],
        fast_options(),
        shutdown.clone(),
    )?;
    let event = Event::new(
        "request.created",
        "alice asked for write access to orders for 30m: \"fix the refund\"",
        1_700_000_000_123,
        serde_json::json!({ "request_id": "req_7", "user": "alice", "resource": "orders", "access": "write" }),
    );
    dispatcher.emit(event.clone());
    wait_for("the delivery", || only(&dispatcher).delivered == 1).await;

    let hits = receiver.hits();
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    assert_eq!(hit.method, Method::POST);
    assert_eq!(hit.path, "/hook");

    // The signature covers the exact bytes received.
    let signature = hit.header("x-airlock-signature");
    assert!(signature.starts_with("sha256="), "{signature}");
    assert_eq!(signature.len(), "sha256=".len() + 64);
    assert!(verify(b"s3cret-value", &hit.body, signature));
    assert!(!verify(b"another-secret", &hit.body, signature));
    let mut tampered = hit.body.to_vec();
    tampered.push(b' ');
    assert!(!verify(b"s3cret-value", &tampered, signature));

    assert_eq!(hit.header("content-type"), "application/json");
    assert_eq!(hit.header("user-agent"), USER_AGENT);
    assert!(USER_AGENT.starts_with("airlock-webhook/"));
    assert_eq!(hit.header("x-airlock-event"), "request.created");

    let body = hit.json();
    let id = body["id"].as_str().unwrap();
    assert!(id.starts_with("whd_") && id.len() > 20, "{id}");
    assert_eq!(hit.header("x-airlock-delivery"), id);
    assert_eq!(body["event"], "request.created");
    assert_eq!(body["at"], "2023-11-14T22:13:20.123Z");
    assert_eq!(body["at_ms"], 1_700_000_000_123i64);
    assert_eq!(body["text"], event.text.as_str());
    assert_eq!(body["data"], event.data);
    assert_eq!(
        body.as_object().unwrap().len(),
        6,
        "exactly id, event, at, at_ms, text, data: {body}"
    );

    let status = only(&dispatcher);
    assert_eq!((status.failed, status.dropped, status.pending), (0, 0, 0));
    assert!(!status.retrying);
    assert!(status.last_success_ms.is_some());
    assert_eq!(status.last_error, None);
    shutdown.cancel();
    Ok(())
}

/// Audit checkpoints (anchors kept off the host) are frequent machine
/// traffic: a chat target subscribed to `*` must not get them.
#[tokio::test(flavor = "multi_thread")]
async fn audit_checkpoints_go_only_to_targets_that_name_them() -> anyhow::Result<()> {
    let receiver = Receiver::start(&[], Reply::Status(200)).await;
    let shutdown = CancellationToken::new();
    let dispatcher = Dispatcher::start(
        vec![
            target(&receiver.url("/all"), &["*"], "a"),
            target(&receiver.url("/anchors"), &["audit.checkpoint"], "b"),
        ],
        fast_options(),
        shutdown.clone(),
    )?;
    dispatcher.emit(event("audit.checkpoint"));
    dispatcher.emit(event("grant.revoked"));
    wait_for("both deliveries", || {
        dispatcher.status().iter().map(|s| s.delivered).sum::<u64>() == 2
    })
    .await;
    let kinds_on = |path: &str| -> Vec<String> {
        receiver
            .hits_on(path)
            .iter()
            .map(|h| h.header("x-airlock-event").to_owned())
            .collect()
    };
    assert_eq!(kinds_on("/all"), ["grant.revoked"]);
    assert_eq!(kinds_on("/anchors"), ["audit.checkpoint"]);
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn each_target_gets_only_its_event_kinds_in_order() -> anyhow::Result<()> {
    let receiver = Receiver::start(&[], Reply::Status(200)).await;
    let shutdown = CancellationToken::new();
    let dispatcher = Dispatcher::start(
        vec![
            target(&receiver.url("/created"), &["request.created"], "a"),
            target(&receiver.url("/all"), &["*"], "b"),
            target(
                &receiver.url("/decisions"),
                &["request.denied", "grant.expired"],
                "c",
            ),
            target(&receiver.url("/nothing"), &[], "d"),
        ],
        fast_options(),
        shutdown.clone(),
    )?;
    let kinds = [
        "request.created",
        "grant.revoked",
        "request.denied",
        "break_glass.used",
        "request.created",
    ];
    for kind in kinds {
        dispatcher.emit(event(kind));
    }
    wait_for("all deliveries", || {
        dispatcher.status().iter().map(|s| s.delivered).sum::<u64>() == 2 + 5 + 1
    })
    .await;

    let kinds_on = |path: &str| -> Vec<String> {
        receiver
            .hits_on(path)
            .iter()
            .map(|h| h.header("x-airlock-event").to_owned())
            .collect()
    };
    assert_eq!(kinds_on("/created"), ["request.created", "request.created"]);
    assert_eq!(kinds_on("/all"), kinds);
    assert_eq!(kinds_on("/decisions"), ["request.denied"]);
    assert!(kinds_on("/nothing").is_empty());

    // One delivery id per (event, target).
    let mut ids: Vec<String> = receiver
        .hits()
        .iter()
        .map(|h| h.header("x-airlock-delivery").to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8);

    let delivered: Vec<u64> = dispatcher.status().iter().map(|s| s.delivered).collect();
    assert_eq!(delivered, [2, 5, 1, 0]);
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_is_down_at_first_gets_the_delivery_when_it_comes_up() -> anyhow::Result<()>
{
    // Reserve a port with nothing listening on it: connections are refused.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let shutdown = CancellationToken::new();
    let dispatcher = Dispatcher::start(
        vec![target(&format!("http://{addr}/hook"), &["*"], "s")],
        Options {
            max_attempts: 100,
            ..fast_options()
        },
        shutdown.clone(),
    )?;
    dispatcher.emit(event("grant.expired"));
    wait_for("a failed attempt", || {
        let s = only(&dispatcher);
        s.last_error.is_some() && s.retrying
    })
    .await;
    let down = only(&dispatcher);
    assert_eq!((down.delivered, down.failed, down.pending), (0, 0, 1));
    let error = down.last_error.clone().unwrap();
    assert!(error.to_lowercase().contains("connect"), "{error}");

    let receiver = Receiver::serve(
        tokio::net::TcpListener::bind(addr).await?,
        &[],
        Reply::Status(200),
    );
    wait_for("the retried delivery", || only(&dispatcher).delivered == 1).await;
    let up = only(&dispatcher);
    assert_eq!((up.failed, up.pending, up.retrying), (0, 0, false));
    // The earlier error stays visible, older than the success.
    assert!(up.last_error.is_some());
    assert!(up.last_error_ms.unwrap() <= up.last_success_ms.unwrap());
    assert_eq!(receiver.hits().len(), 1);
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_400_is_a_permanent_failure_after_one_attempt() -> anyhow::Result<()> {
    let receiver = Receiver::start(&[Reply::Status(400)], Reply::Status(200)).await;
    let shutdown = CancellationToken::new();
    let dispatcher = Dispatcher::start(
        vec![target(&receiver.url("/hook"), &["*"], "s")],
        fast_options(),
        shutdown.clone(),
    )?;
    dispatcher.emit(event("request.denied"));
    wait_for("the failure", || only(&dispatcher).failed == 1).await;
    // Several backoffs' worth: nothing is retried.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.hits().len(), 1);
    let status = only(&dispatcher);
    assert_eq!((status.delivered, status.failed, status.pending), (0, 1, 0));
    assert!(!status.retrying);
    assert_eq!(status.last_error.as_deref(), Some("HTTP 400 Bad Request"));
    assert!(status.last_error_ms.is_some());

    // The next event is delivered normally: a failure does not stop the queue.
    dispatcher.emit(event("request.approved"));
    wait_for("the next delivery", || only(&dispatcher).delivered == 1).await;
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_500_then_200_is_retried_with_the_same_delivery() -> anyhow::Result<()> {
    let receiver = Receiver::start(&[Reply::Status(500)], Reply::Status(200)).await;
    let shutdown = CancellationToken::new();
    let dispatcher = Dispatcher::start(
        vec![target(&receiver.url("/hook"), &["*"], "s")],
        // The status timestamps come from the injected gateway clock.
        Options {
            clock: Arc::new(|| 1_234),
            ..fast_options()
        },
        shutdown.clone(),
    )?;
    dispatcher.emit(event("grant.revoked"));
    wait_for("the retried delivery", || only(&dispatcher).delivered == 1).await;
    let hits = receiver.hits();
    assert_eq!(hits.len(), 2);
    // A retry is the same delivery: same id, same bytes, same signature.
    assert_eq!(
        hits[0].header("x-airlock-delivery"),
        hits[1].header("x-airlock-delivery")
    );
    assert_eq!(hits[0].body, hits[1].body);
    assert_eq!(
        hits[0].header("x-airlock-signature"),
        hits[1].header("x-airlock-signature")
    );
    let status = only(&dispatcher);
    assert_eq!(status.failed, 0);
    assert_eq!(
        status.last_error.as_deref(),
        Some("HTTP 500 Internal Server Error")
    );
    assert_eq!(status.last_error_ms, Some(1_234));
    assert_eq!(status.last_success_ms, Some(1_234));
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_on_429_is_honoured() -> anyhow::Result<()> {
    let receiver = Receiver::start(&[Reply::RetryAfter(429, "0")], Reply::Status(200)).await;
    let shutdown = CancellationToken::new();
    let dispatcher = Dispatcher::start(
        vec![target(&receiver.url("/hook"), &["*"], "s")],
        // Without Retry-After the retry would wait 30s.
        Options {
            initial_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(60),
            ..fast_options()
        },
        shutdown.clone(),
    )?;
    dispatcher.emit(event("request.created"));
    wait_for("the retried delivery", || only(&dispatcher).delivered == 1).await;
    assert_eq!(receiver.hits().len(), 2);
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_not_followed_and_fail_permanently() -> anyhow::Result<()> {
    let receiver = Receiver::start(&[Reply::Redirect], Reply::Status(200)).await;
    let shutdown = CancellationToken::new();
    let dispatcher = Dispatcher::start(
        vec![target(&receiver.url("/hook"), &["*"], "s")],
        fast_options(),
        shutdown.clone(),
    )?;
    dispatcher.emit(event("request.created"));
    wait_for("the failure", || only(&dispatcher).failed == 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.hits().len(), 1);
    assert!(receiver.hits_on("/elsewhere").is_empty());
    let error = only(&dispatcher).last_error.unwrap();
    assert!(error.contains("302"), "{error}");
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_receiver_never_blocks_emit_and_times_out() -> anyhow::Result<()> {
    let receiver = Receiver::start(&[], Reply::Hang).await;
    let shutdown = CancellationToken::new();
    let dispatcher = Dispatcher::start(
        vec![target(&receiver.url("/hook"), &["*"], "s")],
        Options {
            request_timeout: Duration::from_millis(300),
            max_attempts: 1,
            ..fast_options()
        },
        shutdown.clone(),
    )?;
    let started = Instant::now();
    dispatcher.emit(event("break_glass.used"));
    wait_for("the request to hang", || receiver.hits().len() == 1).await;

    // The worker is stuck in a request; emitting is still immediate.
    let emitting = Instant::now();
    for _ in 0..100 {
        dispatcher.emit(event("request.created"));
    }
    let took = emitting.elapsed();
    assert!(took < Duration::from_millis(100), "100 emits took {took:?}");

    wait_for("the timeout", || only(&dispatcher).failed >= 1).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_secs(3),
        "gave up after {waited:?}"
    );
    let error = only(&dispatcher).last_error.unwrap();
    assert!(error.contains("timed out"), "{error}");
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_drops_and_counts_and_shutdown_is_prompt() -> anyhow::Result<()> {
    let receiver = Receiver::start(&[], Reply::Hang).await;
    let shutdown = CancellationToken::new();
    let dispatcher = Dispatcher::start(
        vec![target(&receiver.url("/hook"), &["*"], "s")],
        Options {
            max_pending: 3,
            request_timeout: Duration::from_secs(30),
            ..fast_options()
        },
        shutdown.clone(),
    )?;
    dispatcher.emit(event("request.created"));
    wait_for("the request to hang", || receiver.hits().len() == 1).await;
    for _ in 0..5 {
        dispatcher.emit(event("request.created"));
    }
    // The one in flight counts: 1 + 2 queued, 3 dropped.
    let status = only(&dispatcher);
    assert_eq!((status.pending, status.dropped), (3, 3), "{status:?}");

    // Shutdown abandons the hanging request without waiting for its 30s timeout.
    let stopping = Instant::now();
    shutdown.cancel();
    wait_for("the worker to stop", || only(&dispatcher).pending == 0).await;
    assert!(stopping.elapsed() < Duration::from_secs(1));
    // After shutdown, emit is a no-op.
    dispatcher.emit(event("request.created"));
    let status = only(&dispatcher);
    assert_eq!((status.pending, status.dropped, status.failed), (0, 3, 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_cancels_a_retry_wait_promptly() -> anyhow::Result<()> {
    let receiver = Receiver::start(&[], Reply::Status(503)).await;
    let shutdown = CancellationToken::new();
    let dispatcher = Dispatcher::start(
        vec![target(&receiver.url("/hook"), &["*"], "s")],
        Options {
            initial_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(60),
            ..fast_options()
        },
        shutdown.clone(),
    )?;
    dispatcher.emit(event("request.created"));
    wait_for("the retry wait", || only(&dispatcher).retrying).await;
    let stopping = Instant::now();
    shutdown.cancel();
    wait_for("the worker to stop", || {
        let s = only(&dispatcher);
        s.pending == 0 && !s.retrying
    })
    .await;
    assert!(stopping.elapsed() < Duration::from_secs(1));
    assert_eq!(receiver.hits().len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_show_in_debug_or_status() -> anyhow::Result<()> {
    // Logs are checked in `tests/logs.rs`, which needs a process of its own
    // for its global subscriber.
    let receiver = Receiver::start(&[], Reply::Status(403)).await;
    let down = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let secret_path = "/services/T000/B000/PATHSECRET?token=QUERYSECRET";
    let targets = vec![
        target(&receiver.url(secret_path), &["*"], "SIGNINGSECRET"),
        target(
            &format!("http://{down}{secret_path}"),
            &["*"],
            "SIGNINGSECRET",
        ),
        target(
            &format!("http://user:PASSWORDSECRET@{}{secret_path}", receiver.addr),
            &["*"],
            "SIGNINGSECRET",
        ),
    ];
    let shutdown = CancellationToken::new();
    let dispatcher = Dispatcher::start(
        targets.clone(),
        Options {
            max_attempts: 2,
            ..fast_options()
        },
        shutdown.clone(),
    )?;
    dispatcher.emit(event("request.created"));
    wait_for("every target to give up", || {
        dispatcher.status().iter().all(|s| s.failed == 1)
    })
    .await;

    let status = dispatcher.status();
    let shown = [
        format!("{targets:?}"),
        format!("{targets:#?}"),
        format!("{status:?}"),
        serde_json::to_string(&status)?,
    ];
    for text in &shown {
        for secret in [
            "PATHSECRET",
            "QUERYSECRET",
            "SIGNINGSECRET",
            "PASSWORDSECRET",
            "/services",
        ] {
            assert!(!text.contains(secret), "{secret} shown in:\n{text}");
        }
    }
    // What is shown instead, so the checks above looked at something real.
    let host = format!("http://{}/…", receiver.addr);
    assert!(format!("{:?}", targets[0]).contains(&host));
    assert_eq!(status[0].url, host);
    assert_eq!(status[1].url, format!("http://{down}/…"));
    assert_eq!(status[2].url, host);
    assert_eq!(status[0].last_error.as_deref(), Some("HTTP 403 Forbidden"));
    let refused = status[1].last_error.clone().unwrap();
    assert!(refused.to_lowercase().contains("connect"), "{refused}");
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn set_targets_keeps_the_counters_of_unchanged_targets() -> anyhow::Result<()> {
    let receiver = Receiver::start(&[], Reply::Status(200)).await;
    let shutdown = CancellationToken::new();
    let a = target(
        &receiver.url("/a"),
        &["request.created", "grant.revoked"],
        "secret-a",
    );
    let b = target(&receiver.url("/b"), &["*"], "secret-b");
    let dispatcher =
        Dispatcher::start(vec![a.clone(), b.clone()], fast_options(), shutdown.clone())?;
    dispatcher.emit(event("request.created"));
    wait_for("both deliveries", || {
        dispatcher.status().iter().all(|s| s.delivered == 1)
    })
    .await;

    // `a` unchanged (its events merely reordered), `b` with a new secret, `c` new.
    let a_reordered = target(
        &receiver.url("/a"),
        &["grant.revoked", "request.created"],
        "secret-a",
    );
    let b_rotated = target(&receiver.url("/b"), &["*"], "secret-b2");
    let c = target(&receiver.url("/c"), &["*"], "secret-c");
    dispatcher.set_targets(vec![a_reordered, b_rotated, c]);
    let delivered =
        |d: &Dispatcher| -> Vec<u64> { d.status().iter().map(|s| s.delivered).collect() };
    assert_eq!(delivered(&dispatcher), [1, 0, 0]);

    dispatcher.emit(event("request.created"));
    wait_for("the deliveries after the reload", || {
        delivered(&dispatcher) == [2, 1, 1]
    })
    .await;
    // The replaced target signs with its new secret.
    let last_b = receiver.hits_on("/b").pop().unwrap();
    assert!(verify(
        b"secret-b2",
        &last_b.body,
        last_b.header("x-airlock-signature")
    ));

    // Removing a target removes it from the status; the rest keep counting.
    dispatcher.set_targets(vec![a.clone()]);
    let status = dispatcher.status();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].delivered, 2);
    dispatcher.set_targets(vec![]);
    assert!(dispatcher.status().is_empty());
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_configuration_is_reported() {
    let shutdown = CancellationToken::new();
    let start = |targets, options| Dispatcher::start(targets, options, shutdown.clone());

    let bad_url = start(
        vec![target("ftp://example.com/secret-path", &["*"], "s")],
        Options::default(),
    )
    .unwrap_err();
    assert!(matches!(bad_url, Error::InvalidUrl { .. }), "{bad_url}");
    assert!(!bad_url.to_string().contains("secret-path"), "{bad_url}");

    let dir = tempfile::tempdir().unwrap();
    let missing = start(
        vec![],
        Options {
            extra_ca_pem: Some(dir.path().join("missing.pem")),
            ..Options::default()
        },
    )
    .unwrap_err();
    assert!(matches!(missing, Error::ReadCa { .. }), "{missing}");

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let empty = start(
        vec![],
        Options {
            extra_ca_pem: Some(empty),
            ..Options::default()
        },
    )
    .unwrap_err();
    assert!(matches!(empty, Error::NoCa { .. }), "{empty}");

    // A reload cannot fail: an unusable URL is listed, and fails visibly.
    let dispatcher = start(vec![], fast_options()).unwrap();
    dispatcher.set_targets(vec![target("ftp://example.com/secret-path", &["*"], "s")]);
    dispatcher.emit(event("request.created"));
    wait_for("the failure", || only(&dispatcher).failed == 1).await;
    let status = only(&dispatcher);
    assert_eq!(status.url, "ftp://example.com/…");
    assert_eq!(
        status.last_error.as_deref(),
        Some("unusable webhook URL: the scheme must be http or https, not ftp")
    );
    shutdown.cancel();
}

/// A TLS listener for axum: the handshake happens in `accept`, which is
/// fine for a test receiver with one client.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A client that rejects the certificate fails here; keep serving.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A private CA (its PEM) and an HTTPS receiver on 127.0.0.1 whose
/// certificate it signed.
async fn https_receiver() -> anyhow::Result<(String, Receiver)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate()?;
    let server_cert =
        CertificateParams::new(vec!["127.0.0.1".to_owned()])?.signed_by(&server_key, &issuer)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        )?;
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (receiver, router) = Receiver::router(tcp.local_addr()?, &[], Reply::Status(200));
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Ok((ca_cert.pem(), receiver))
}

#[tokio::test(flavor = "multi_thread")]
async fn https_receivers_behind_a_private_ca_need_extra_ca_pem() -> anyhow::Result<()> {
    let (ca_pem, receiver) = https_receiver().await?;
    let url = format!("https://{}/hook", receiver.addr);
    let dir = tempfile::tempdir()?;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem)?;
    let shutdown = CancellationToken::new();

    let trusting = Dispatcher::start(
        vec![target(&url, &["*"], "s")],
        Options {
            extra_ca_pem: Some(ca_file),
            ..fast_options()
        },
        shutdown.clone(),
    )?;
    let untrusting = Dispatcher::start(
        vec![target(&url, &["*"], "s")],
        Options {
            max_attempts: 1,
            ..fast_options()
        },
        shutdown.clone(),
    )?;
    trusting.emit(event("request.created"));
    untrusting.emit(event("request.created"));
    wait_for("the HTTPS delivery", || only(&trusting).delivered == 1).await;
    wait_for("the untrusted failure", || only(&untrusting).failed == 1).await;
    let error = only(&untrusting).last_error.unwrap();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert_eq!(receiver.hits().len(), 1);
    assert!(verify(
        b"s",
        &receiver.hits()[0].body,
        receiver.hits()[0].header("x-airlock-signature")
    ));
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn status_round_trips_through_json() -> anyhow::Result<()> {
    // `airlock webhooks status` reads it from the API as JSON.
    let receiver = Receiver::start(&[], Reply::Status(200)).await;
    let shutdown = CancellationToken::new();
    let dispatcher = Dispatcher::start(
        vec![target(&receiver.url("/hook"), &["grant.expired"], "s")],
        fast_options(),
        shutdown.clone(),
    )?;
    dispatcher.emit(event("grant.expired"));
    wait_for("the delivery", || only(&dispatcher).delivered == 1).await;
    let status = dispatcher.status();
    let json = serde_json::to_value(&status)?;
    let fields: HashMap<String, serde_json::Value> = serde_json::from_value(json[0].clone())?;
    for field in [
        "url",
        "events",
        "delivered",
        "failed",
        "dropped",
        "pending",
        "retrying",
        "last_success_ms",
        "last_error",
        "last_error_ms",
    ] {
        assert!(fields.contains_key(field), "{field} missing: {json}");
    }
    let back: Vec<TargetStatus> = serde_json::from_value(json)?;
    assert_eq!(back, status);
    shutdown.cancel();
    Ok(())
}
