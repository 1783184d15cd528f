//! What the dispatcher logs: failures, overflow, removal and shutdown are
//! visible, and never with the secret or the URL's path, query or password.
//!
//! A binary of its own with one test, because it installs a global `tracing`
//! subscriber: a thread-scoped one misses events while other tests in the
//! same process register the same callsites.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_webhook::{Dispatcher, Event, Options, Target};
use axum::http::StatusCode;
use tokio_util::sync::CancellationToken;

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn target(url: String, secret: &str) -> Target {
    Target {
        url,
        events: vec!["*".to_owned()],
        secret: secret.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_say_what_failed_without_secrets() -> anyhow::Result<()> {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    // A receiver that refuses everything with 403, and a port nobody listens on.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = axum::Router::new().fallback(|| async { StatusCode::FORBIDDEN });
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let down = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;

    let secret_path = "/services/T000/B000/PATHSECRET?token=QUERYSECRET";
    let forbidden = target(format!("http://{addr}{secret_path}"), "SIGNINGSECRET");
    let refused = target(format!("http://{down}{secret_path}"), "SIGNINGSECRET");
    let with_password = target(
        format!("http://user:PASSWORDSECRET@{addr}{secret_path}"),
        "SIGNINGSECRET",
    );
    let shutdown = CancellationToken::new();
    let dispatcher = Dispatcher::start(
        vec![forbidden.clone(), refused, with_password],
        Options {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(50),
            max_attempts: 2,
            // Small, so the overflow below is quick to provoke.
            max_pending: 1,
            ..Options::default()
        },
        shutdown.clone(),
    )?;
    let event = |n: i64| {
        Event::new(
            "request.created",
            "alice asked for access",
            n,
            serde_json::Value::Null,
        )
    };
    dispatcher.emit(event(1));
    // Queues hold one delivery each, the one in flight: while the refused
    // target waits for its retry, the next four are dropped; the first drop
    // is logged.
    for n in 2..6 {
        dispatcher.emit(event(n));
    }
    wait_for("the deliveries to be given up", || {
        dispatcher
            .status()
            .iter()
            .all(|s| s.failed >= 1 && s.pending == 0)
    })
    .await;
    // The end of the overflow logs when a delivery is accepted again;
    // removal and shutdown log too.
    dispatcher.emit(event(7));
    dispatcher.set_targets(vec![forbidden]);
    dispatcher.emit(event(8));
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let logs = logs.text();
    for secret in [
        "PATHSECRET",
        "QUERYSECRET",
        "SIGNINGSECRET",
        "PASSWORDSECRET",
        "/services",
    ] {
        assert!(!logs.contains(secret), "{secret} logged:\n{logs}");
    }
    for expected in [
        format!("target_url=http://{addr}/…"),
        format!("target_url=http://{down}/…"),
        "webhook delivery failed permanently".to_owned(),
        "error=HTTP 403 Forbidden".to_owned(),
        "webhook delivery failed; retrying in".to_owned(),
        "giving up after 2 attempts".to_owned(),
        "webhook queue is full".to_owned(),
        "webhook queue accepts deliveries again after dropping".to_owned(),
        "webhook target removed".to_owned(),
        "removed by a policy reload".to_owned(),
        "the gateway is shutting down".to_owned(),
    ] {
        assert!(logs.contains(&expected), "no {expected:?} in:\n{logs}");
    }
    Ok(())
}
