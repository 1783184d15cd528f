//! Webhook delivery for Airlock: one signed JSON POST per access event
//! (`request.created`, `grant.revoked`, `break_glass.used`, ...) to every
//! configured receiver that subscribed to the event's kind.
//!
//! # Design
//!
//! [`Dispatcher::emit`] is what the rest of the gateway calls when something
//! happens. It never waits and never fails: it appends the event to a bounded
//! in-memory queue per target (a mutex held for one push) and returns. One
//! worker task per target takes deliveries from its queue in order, signs the
//! body ([`sign`]), POSTs it, and retries with exponential backoff and jitter
//! on errors that may go away (connect errors, timeouts, 408, 429, 5xx,
//! honouring `Retry-After`). Other 4xx, redirects, and deliveries that used
//! up `max_attempts` are given up. Every failure is logged with
//! `tracing::warn!` and counted in [`Dispatcher::status`], which is what
//! `airlock webhooks status` shows. So a slow, failing or hanging receiver
//! never blocks a request, an approval or the proxy: the worst it can do is
//! fill its own queue, after which new deliveries to it are dropped and
//! counted (`dropped`). Targets are independent; within a target, a delivery
//! waiting for its retry holds back the ones behind it, so receivers see
//! events in the order they happened.
//!
//! Why in-memory queues rather than the store: webhooks notify people (a
//! chat message saying someone asked for access); the store and the audit
//! log are the record of what happened. Keeping deliveries out of SQLite
//! means a dead receiver adds no writes, no growth and no latency to the
//! store that every login and approval goes through, and the crate needs no
//! schema or migrations.
//!
//! **What is not durable:** pending deliveries (queued, in flight, or waiting
//! for a retry) exist only in this process's memory. If the gateway restarts,
//! crashes or is shut down, they are lost and never sent, and so are the
//! counters in the status. Within one process delivery is at least once: a
//! receiver that is slower than `request_timeout` may get the same delivery
//! again, with the same `X-Airlock-Delivery` id to deduplicate on. Anything
//! that must not be missed belongs in the audit log, not in a webhook.
//!
//! # Wire format
//!
//! `POST <url>` with a compact JSON body
//! `{"id":"whd_<32 hex>","event":"<kind>","at":"<RFC 3339 UTC>","at_ms":<unix ms>,"text":"<one sentence>","data":{...}}`
//! and the headers `Content-Type: application/json`,
//! `User-Agent: airlock-webhook/<version>`, `X-Airlock-Event: <kind>`,
//! `X-Airlock-Delivery: <id>` and
//! `X-Airlock-Signature: sha256=<lowercase hex HMAC-SHA256(secret, body)>`.
//! Receivers check the signature with [`verify`] (or any HMAC library) over
//! the exact bytes received, before parsing them. The signature does not
//! cover a separate timestamp header: a receiver that cares about replays
//! rejects bodies whose signed `at_ms` is too old and remembers recent `id`s.
//!
//! # Secrets
//!
//! Chat webhook URLs embed a credential in their path or query, so a URL is
//! only ever shown as `scheme://host[:port]/…` ([`redact_url`]): in `Debug`,
//! in logs and in [`TargetStatus`]. The signing secret is never shown.
//! Redirects are not followed, so the signed body only goes where configured.

mod client;
mod payload;
mod redact;
mod signature;
mod worker;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use client::USER_AGENT;
pub use redact::redact_url;
pub use signature::{sign, verify, SIGNATURE_PREFIX};

use worker::{Settings, TargetState};

/// Event kinds a target gets only when its `events` names them: `"*"`
/// means every access event, and `audit.checkpoint` (one per audit
/// checkpoint, for keeping anchors off the host) is machine traffic no chat
/// channel subscribed to everything wants.
pub const EXPLICIT_ONLY: &[&str] = &["audit.checkpoint"];

/// One configured receiver.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// `http://` or `https://` URL the events are POSTed to. Treated as a
    /// secret apart from its scheme, host and port.
    pub url: String,
    /// Event kinds this receiver gets; `"*"` means all of them but those
    /// in [`EXPLICIT_ONLY`].
    pub events: Vec<String>,
    /// The HMAC-SHA256 key of `X-Airlock-Signature`.
    pub secret: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &redact_url(&self.url))
            .field("events", &self.events)
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl Target {
    /// Checks that the URL can be used: it parses, and is `http` or `https`
    /// with a host. Config validation can call this to report a bad target
    /// before the gateway starts; the error shows the URL redacted.
    pub fn validate(&self) -> Result<(), Error> {
        parse_target_url(&self.url)
            .map(drop)
            .map_err(|reason| Error::InvalidUrl {
                url: redact_url(&self.url),
                reason,
            })
    }
}

fn parse_target_url(url: &str) -> Result<reqwest::Url, String> {
    // The parser's messages ("invalid port number", ...) never quote the input.
    let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme must be http or https, not {}",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_owned());
    }
    Ok(parsed)
}

/// One event to announce.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The event kind, e.g. `request.created`.
    pub kind: String,
    /// One human sentence for chat tools.
    pub text: String,
    /// Unix milliseconds on the gateway clock.
    pub at_ms: i64,
    /// An object of event fields (ids, user, resource, ...); `Null` is sent
    /// as `{}`.
    pub data: serde_json::Value,
}

impl Event {
    pub fn new(
        kind: impl Into<String>,
        text: impl Into<String>,
        at_ms: i64,
        data: serde_json::Value,
    ) -> Event {
        Event {
            kind: kind.into(),
            text: text.into(),
            at_ms,
            data,
        }
    }
}

/// Reads the gateway clock in unix milliseconds; used for the timestamps in
/// [`TargetStatus`], so tests with a manual clock get predictable values.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock as a [`Clock`].
pub fn system_clock() -> Clock {
    Arc::new(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
    })
}

/// Delivery settings shared by all targets.
#[derive(Clone)]
pub struct Options {
    /// Wait after the first failed attempt; doubles per attempt. Default 1s.
    pub initial_backoff: Duration,
    /// Cap on the wait between attempts (and on `Retry-After`). Default 60s.
    pub max_backoff: Duration,
    /// Attempts per delivery, the first included, before it counts as
    /// `failed` (0 is treated as 1). Default 8.
    pub max_attempts: u32,
    /// Deadline for one attempt: connect, TLS, request and response head.
    /// Default 10s.
    pub request_timeout: Duration,
    /// Deliveries a target may hold (the one being sent included) before
    /// new ones are dropped. Default 10 000.
    pub max_pending: usize,
    /// A PEM file of extra CA certificates to trust, in addition to the
    /// platform's roots (receivers behind a private CA).
    pub extra_ca_pem: Option<PathBuf>,
    /// The clock of the status timestamps. Default: the system clock.
    pub clock: Clock,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_attempts: 8,
            request_timeout: Duration::from_secs(10),
            max_pending: 10_000,
            extra_ca_pem: None,
            clock: system_clock(),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("max_attempts", &self.max_attempts)
            .field("request_timeout", &self.request_timeout)
            .field("max_pending", &self.max_pending)
            .field("extra_ca_pem", &self.extra_ca_pem)
            .finish_non_exhaustive()
    }
}

/// What `airlock webhooks status` shows for one target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TargetStatus {
    /// The URL redacted to `scheme://host[:port]/…`.
    pub url: String,
    pub events: Vec<String>,
    pub delivered: u64,
    /// Given up: attempts exhausted, or a permanent failure (4xx other than
    /// 408/429, 3xx, unusable URL).
    pub failed: u64,
    /// Dropped because the queue was full.
    pub dropped: u64,
    /// Queued deliveries, the one being sent included.
    pub pending: usize,
    /// The head delivery failed and is waiting for its next attempt.
    pub retrying: bool,
    pub last_success_ms: Option<i64>,
    /// The most recent error, kept after later successes (compare
    /// `last_error_ms` with `last_success_ms`). Never contains the secret or
    /// the URL's path or query.
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
}

/// Errors starting a [`Dispatcher`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("reading the CA file {}: {source}", .path.display())]
    ReadCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a usable PEM certificate file: {reason}", .path.display())]
    BadCa { path: PathBuf, reason: String },
    #[error("{} holds no certificate", .path.display())]
    NoCa { path: PathBuf },
    #[error("setting up TLS for webhooks: {0}")]
    Tls(#[from] rustls::Error),
    #[error("building the webhook HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// `url` is already redacted.
    #[error("webhook URL {url} is not usable: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("the webhook dispatcher must be started inside a tokio runtime")]
    NoRuntime,
}

/// Sends events to the configured targets in the background. Cheap to clone;
/// all clones share the targets and their queues.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    settings: Arc<Settings>,
    /// Kept so `set_targets` can start workers from any thread (a reload
    /// may run outside the runtime).
    runtime: tokio::runtime::Handle,
    shutdown: CancellationToken,
    targets: Mutex<Vec<Arc<TargetState>>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("targets", &self.inner.lock_targets().len())
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn lock_targets(&self) -> MutexGuard<'_, Vec<Arc<TargetState>>> {
        self.targets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn start_target(&self, target: Target) -> Arc<TargetState> {
        let state = Arc::new(TargetState::new(target, self.shutdown.child_token()));
        if let Some(reason) = state.url_error() {
            tracing::warn!(
                target_url = %state.redacted,
                error = %reason,
                "webhook target has an unusable URL; its deliveries will fail"
            );
        }
        self.runtime.spawn(worker::run(
            state.clone(),
            self.client.clone(),
            self.settings.clone(),
        ));
        state
    }
}

impl Dispatcher {
    /// Starts one worker task per target on the current tokio runtime. The
    /// workers stop when `shutdown` is cancelled, dropping what is pending.
    ///
    /// Fails on an unusable target URL or CA file, or outside a runtime.
    pub fn start(
        targets: Vec<Target>,
        options: Options,
        shutdown: CancellationToken,
    ) -> Result<Dispatcher, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        for target in &targets {
            target.validate()?;
        }
        let client = client::http_client(&options)?;
        let settings = Arc::new(Settings {
            initial_backoff: options.initial_backoff,
            max_backoff: options.max_backoff,
            max_attempts: options.max_attempts,
            request_timeout: options.request_timeout,
            max_pending: options.max_pending,
            clock: options.clock,
        });
        let dispatcher = Dispatcher {
            inner: Arc::new(Inner {
                client,
                settings,
                runtime,
                shutdown,
                targets: Mutex::new(Vec::new()),
            }),
        };
        dispatcher.set_targets(targets);
        Ok(dispatcher)
    }

    /// Never blocks, never fails: enqueues a delivery for every target whose
    /// `events` contains `event.kind` (or `"*"`, unless the kind is in
    /// [`EXPLICIT_ONLY`]). A full queue drops the
    /// delivery, counts it in `dropped` and logs a warning. After shutdown
    /// it does nothing.
    pub fn emit(&self, event: Event) {
        if self.inner.shutdown.is_cancelled() {
            tracing::debug!(event = %event.kind, "webhook dispatcher is shut down; event not sent");
            return;
        }
        let event = Arc::new(event);
        // The list lock is held while enqueueing so a concurrent
        // `set_targets` cannot hand this event to a target it has already
        // stopped (whose queue nobody would drain).
        let targets = self.inner.lock_targets();
        for target in targets.iter().filter(|t| t.wants(&event.kind)) {
            target.enqueue(event.clone(), self.inner.settings.max_pending);
        }
    }

    /// Replaces the targets (policy reload). Targets whose (url, events,
    /// secret) did not change keep their queue, worker and counters; new
    /// ones start empty; removed ones stop, and their pending deliveries are
    /// dropped and counted in the log. An unusable URL does not stop the
    /// reload: that target is listed, and its deliveries fail with the reason
    /// (use [`Target::validate`] to reject it earlier).
    pub fn set_targets(&self, targets: Vec<Target>) {
        let removed = {
            let mut current = self.inner.lock_targets();
            let mut old: Vec<Option<Arc<TargetState>>> = current.drain(..).map(Some).collect();
            let mut next = Vec::with_capacity(targets.len());
            for target in targets {
                let kept = old
                    .iter_mut()
                    .find(|slot| slot.as_ref().is_some_and(|s| s.same_config(&target)))
                    .and_then(Option::take);
                next.push(match kept {
                    Some(state) => state,
                    None => self.inner.start_target(target),
                });
            }
            *current = next;
            old
        };
        // The worker logs how many pending deliveries it dropped when it
        // sees the cancellation.
        for state in removed.into_iter().flatten() {
            tracing::info!(target_url = %state.redacted, "webhook target removed");
            state.remove();
        }
    }

    /// The status of every target, in configuration order.
    pub fn status(&self) -> Vec<TargetStatus> {
        self.inner
            .lock_targets()
            .iter()
            .map(|t| t.status())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_debug_is_redacted() {
        let target = Target {
            url: "https://hooks.example.com/services/T0/B0/XXXX?token=abc".into(),
            events: vec!["*".into()],
            secret: "hunter2".into(),
        };
        let shown = format!("{target:?} {target:#?}");
        for hidden in ["services", "XXXX", "token", "abc", "hunter2"] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
        assert!(shown.contains("https://hooks.example.com/…"), "{shown}");
    }

    #[test]
    fn validate_table() {
        let cases = [
            ("https://hooks.example.com/x", true),
            ("http://127.0.0.1:9/x", true),
            ("ftp://example.com/x", false),
            ("file:///etc/passwd", false),
            ("hooks.example.com/x", false),
            ("https://", false),
            ("", false),
        ];
        for (url, ok) in cases {
            let target = Target {
                url: url.into(),
                events: vec![],
                secret: "s".into(),
            };
            assert_eq!(target.validate().is_ok(), ok, "{url}");
        }
        let err = Target {
            url: "ftp://example.com/secret-path".into(),
            events: vec![],
            secret: "s".into(),
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(!err.contains("secret-path"), "{err}");
    }

    #[test]
    fn start_outside_a_runtime_is_an_error() {
        let result = Dispatcher::start(vec![], Options::default(), CancellationToken::new());
        assert!(matches!(result, Err(Error::NoRuntime)));
    }
}
