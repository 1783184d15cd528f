//! One target: its bounded queue, its counters, and the worker task that
//! delivers the queue in order with retries.
//!
//! The queue and the counters sit behind one `std::sync::Mutex` that is only
//! ever held for a push, a pop or a copy of the counters, never across an
//! `.await`; that is what lets [`crate::Dispatcher::emit`] promise it never
//! blocks. The delivery at the head of the queue stays there until it is
//! delivered or given up, so `pending` counts it and a full queue includes it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::redact::{redact_parsed, scrub};
use crate::{payload, sign, Clock, Event, Target, TargetStatus};

/// The parts of [`crate::Options`] the workers need.
pub(crate) struct Settings {
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) request_timeout: Duration,
    pub(crate) max_pending: usize,
    pub(crate) clock: Clock,
}

pub(crate) struct TargetState {
    pub(crate) target: Target,
    /// `Err` holds why the URL is unusable; every delivery then fails
    /// permanently with that reason, so the problem shows in the status.
    url: Result<Url, String>,
    pub(crate) redacted: String,
    /// A child of the dispatcher's shutdown token, cancelled on its own when
    /// a policy reload removes the target.
    cancel: CancellationToken,
    /// Set before `cancel` when a reload removes the target, so the worker
    /// can say why it stopped.
    removed: AtomicBool,
    wake: Notify,
    shared: Mutex<Shared>,
}

#[derive(Default)]
struct Shared {
    queue: VecDeque<Arc<Event>>,
    delivered: u64,
    failed: u64,
    dropped: u64,
    /// Deliveries dropped since the queue last accepted one, so an overflow
    /// logs once when it starts and once when it ends rather than per event.
    dropping: u64,
    retrying: bool,
    last_success_ms: Option<i64>,
    last_error: Option<String>,
    last_error_ms: Option<i64>,
}

impl TargetState {
    pub(crate) fn new(target: Target, cancel: CancellationToken) -> TargetState {
        let url = crate::parse_target_url(&target.url);
        let redacted = match &url {
            Ok(url) => redact_parsed(url),
            Err(_) => crate::redact_url(&target.url),
        };
        TargetState {
            target,
            url,
            redacted,
            cancel,
            removed: AtomicBool::new(false),
            wake: Notify::new(),
            shared: Mutex::new(Shared::default()),
        }
    }

    /// Stops the worker of a target a reload removed; what it still had
    /// pending is dropped (and logged by the worker).
    pub(crate) fn remove(&self) {
        self.removed.store(true, Ordering::Relaxed);
        self.cancel.cancel();
    }

    pub(crate) fn url_error(&self) -> Option<&str> {
        self.url.as_ref().err().map(String::as_str)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic elsewhere while holding the lock leaves consistent enough
        // counters; `emit` must not start panicking because of it.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn wants(&self, kind: &str) -> bool {
        let wildcard = !crate::EXPLICIT_ONLY.contains(&kind);
        self.target
            .events
            .iter()
            .any(|e| (wildcard && e == "*") || e == kind)
    }

    /// Same (url, events, secret): a reload keeps this target's queue and
    /// counters. The order and repetition of `events` do not matter.
    pub(crate) fn same_config(&self, other: &Target) -> bool {
        fn normalized(events: &[String]) -> Vec<&str> {
            let mut v: Vec<&str> = events.iter().map(String::as_str).collect();
            v.sort_unstable();
            v.dedup();
            v
        }
        self.target.url == other.url
            && self.target.secret == other.secret
            && normalized(&self.target.events) == normalized(&other.events)
    }

    /// Appends a delivery, or drops and counts it when `max_pending` are
    /// already waiting. Never waits.
    pub(crate) fn enqueue(&self, event: Arc<Event>, max_pending: usize) {
        let mut shared = self.lock();
        if shared.queue.len() >= max_pending {
            shared.dropped += 1;
            shared.dropping += 1;
            let first = shared.dropping == 1;
            drop(shared);
            if first {
                tracing::warn!(
                    target_url = %self.redacted,
                    event = %event.kind,
                    max_pending,
                    "webhook queue is full; dropping new deliveries for this target until it drains"
                );
            }
            return;
        }
        let ended_overflow = std::mem::take(&mut shared.dropping);
        shared.queue.push_back(event);
        drop(shared);
        if ended_overflow > 0 {
            tracing::warn!(
                target_url = %self.redacted,
                dropped = ended_overflow,
                "webhook queue accepts deliveries again after dropping {ended_overflow}"
            );
        }
        // `notify_one` stores a permit when the worker is not waiting yet, so
        // a push between its empty check and its wait is not lost.
        self.wake.notify_one();
    }

    pub(crate) fn status(&self) -> TargetStatus {
        let shared = self.lock();
        TargetStatus {
            url: self.redacted.clone(),
            events: self.target.events.clone(),
            delivered: shared.delivered,
            failed: shared.failed,
            dropped: shared.dropped,
            pending: shared.queue.len(),
            retrying: shared.retrying,
            last_success_ms: shared.last_success_ms,
            last_error: shared.last_error.clone(),
            last_error_ms: shared.last_error_ms,
        }
    }

    fn front(&self) -> Option<Arc<Event>> {
        self.lock().queue.front().cloned()
    }

    fn finish_head(&self, outcome: Result<i64, (String, i64)>) {
        let mut shared = self.lock();
        shared.queue.pop_front();
        shared.retrying = false;
        match outcome {
            Ok(now) => {
                shared.delivered += 1;
                shared.last_success_ms = Some(now);
            }
            Err((error, now)) => {
                shared.failed += 1;
                shared.last_error = Some(error);
                shared.last_error_ms = Some(now);
            }
        }
    }

    fn record_retry(&self, error: String, now: i64) {
        let mut shared = self.lock();
        shared.retrying = true;
        shared.last_error = Some(error);
        shared.last_error_ms = Some(now);
    }

    fn clear_retrying(&self) {
        self.lock().retrying = false;
    }

    /// Empties the queue when the worker stops; returns how many were lost.
    fn drain(&self) -> usize {
        let mut shared = self.lock();
        shared.retrying = false;
        let lost = shared.queue.len();
        shared.queue.clear();
        lost
    }

    fn scrub(&self, message: &str) -> String {
        scrub(message, &self.target.url, &self.target.secret)
    }
}

/// What one attempt's result means for the delivery.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    Delivered,
    /// May succeed later: connect errors, timeouts, 408, 429, 5xx.
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    /// Will not succeed by repeating it: other 4xx, 3xx, unusable request.
    Permanent(String),
}

pub(crate) fn classify_status(status: StatusCode, headers: &HeaderMap) -> Verdict {
    if status.is_success() {
        return Verdict::Delivered;
    }
    let error = format!("HTTP {status}");
    if status.is_redirection() {
        // The Location header is not shown: it may carry a credential too.
        return Verdict::Permanent(format!("{error} (redirects are not followed)"));
    }
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        let retry_after = if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::SERVICE_UNAVAILABLE
        {
            retry_after_seconds(headers)
        } else {
            None
        };
        return Verdict::Retry { error, retry_after };
    }
    Verdict::Permanent(error)
}

/// `Retry-After: <seconds>`. The HTTP-date form is not used by the chat tools
/// we target and is ignored (the normal backoff applies).
fn retry_after_seconds(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

pub(crate) fn classify_error(error: reqwest::Error, request_timeout: Duration) -> Verdict {
    if error.is_timeout() {
        return Verdict::Retry {
            error: format!("no answer within {request_timeout:?} (timed out)"),
            retry_after: None,
        };
    }
    let permanent = error.is_builder();
    // The URL would carry the credential; describe the error by its chain.
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !message.ends_with(&cause_text) {
            message.push_str(": ");
            message.push_str(&cause_text);
        }
        source = cause.source();
    }
    if permanent {
        Verdict::Permanent(message)
    } else {
        // Connect errors, resets and anything else on the way: the network
        // or the receiver may be back soon.
        Verdict::Retry {
            error: message,
            retry_after: None,
        }
    }
}

/// The wait after failed attempt number `attempt` (1-based): `initial`
/// doubled per attempt, capped at `max`, minus up to a quarter of it at
/// random (`jitter` in `[0, 1)`) so receivers that come back are not hit by
/// every gateway at the same instant.
pub(crate) fn backoff(initial: Duration, max: Duration, attempt: u32, jitter: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    let base = initial
        .checked_mul(1u32 << doublings)
        .unwrap_or(max)
        .min(max);
    base.mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0))
}

/// The delay before the next attempt: the receiver's `Retry-After` when it
/// asks for one within `max_backoff`, `max_backoff` when it asks for more
/// (we keep our own cap, but waiting less than asked would only earn
/// another 429), and the exponential backoff otherwise.
pub(crate) fn retry_delay(
    settings: &Settings,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    match retry_after {
        Some(asked) => asked.min(settings.max_backoff),
        None => backoff(
            settings.initial_backoff,
            settings.max_backoff,
            attempt,
            rand::random::<f64>(),
        ),
    }
}

/// The worker: delivers `state`'s queue in order until cancelled.
pub(crate) async fn run(state: Arc<TargetState>, client: reqwest::Client, settings: Arc<Settings>) {
    loop {
        let Some(event) = next(&state).await else {
            break;
        };
        let Some(outcome) = deliver(&state, &client, &settings, &event).await else {
            break;
        };
        state.finish_head(outcome);
    }
    let lost = state.drain();
    let reason = if state.removed.load(Ordering::Relaxed) {
        "the target was removed by a policy reload"
    } else {
        "the gateway is shutting down"
    };
    if lost > 0 {
        tracing::warn!(
            target_url = %state.redacted,
            dropped = lost,
            "webhook worker stopped because {reason}; {lost} pending deliveries are dropped (they are not persisted)"
        );
    } else {
        tracing::debug!(target_url = %state.redacted, "webhook worker stopped because {reason}");
    }
}

/// The head of the queue, waiting for one; `None` once cancelled.
async fn next(state: &TargetState) -> Option<Arc<Event>> {
    loop {
        if state.cancel.is_cancelled() {
            return None;
        }
        if let Some(event) = state.front() {
            return Some(event);
        }
        tokio::select! {
            biased;
            () = state.cancel.cancelled() => return None,
            () = state.wake.notified() => {}
        }
    }
}

/// Delivers one event with retries. `Some(Ok(now))` delivered,
/// `Some(Err((error, now)))` given up, `None` cancelled mid-way.
async fn deliver(
    state: &TargetState,
    client: &reqwest::Client,
    settings: &Settings,
    event: &Event,
) -> Option<Result<i64, (String, i64)>> {
    let id = payload::delivery_id();
    // Built once: every attempt sends (and signs) the very same bytes.
    let body = payload::body(&id, event);
    let signature = sign(state.target.secret.as_bytes(), body.as_bytes());
    let max_attempts = settings.max_attempts.max(1);

    for attempt in 1..=max_attempts {
        let verdict = match &state.url {
            Err(reason) => Verdict::Permanent(format!("unusable webhook URL: {reason}")),
            Ok(url) => {
                let request = client
                    .post(url.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .header("X-Airlock-Event", event.kind.as_str())
                    .header("X-Airlock-Delivery", id.as_str())
                    .header("X-Airlock-Signature", signature.as_str())
                    .body(body.clone())
                    .send();
                // Shutdown or removal abandons an attempt in flight rather
                // than waiting up to `request_timeout` for it.
                let result = tokio::select! {
                    biased;
                    () = state.cancel.cancelled() => return None,
                    result = request => result,
                };
                match result {
                    // The response body is not read: nothing in it matters,
                    // and a receiver could make it arbitrarily large.
                    Ok(response) => classify_status(response.status(), response.headers()),
                    Err(error) => classify_error(error, settings.request_timeout),
                }
            }
        };
        let now = (settings.clock)();
        match verdict {
            Verdict::Delivered => {
                tracing::debug!(
                    target_url = %state.redacted,
                    event = %event.kind,
                    delivery = %id,
                    attempt,
                    "webhook delivered"
                );
                return Some(Ok(now));
            }
            Verdict::Permanent(error) => {
                let error = state.scrub(&error);
                tracing::warn!(
                    target_url = %state.redacted,
                    event = %event.kind,
                    delivery = %id,
                    attempt,
                    error = %error,
                    "webhook delivery failed permanently; not retrying"
                );
                return Some(Err((error, now)));
            }
            Verdict::Retry { error, retry_after } => {
                let error = state.scrub(&error);
                if attempt == max_attempts {
                    tracing::warn!(
                        target_url = %state.redacted,
                        event = %event.kind,
                        delivery = %id,
                        attempt,
                        error = %error,
                        "webhook delivery failed; giving up after {attempt} attempts"
                    );
                    return Some(Err((error, now)));
                }
                let delay = retry_delay(settings, attempt, retry_after);
                tracing::warn!(
                    target_url = %state.redacted,
                    event = %event.kind,
                    delivery = %id,
                    attempt,
                    error = %error,
                    "webhook delivery failed; retrying in {delay:?}"
                );
                state.record_retry(error, now);
                tokio::select! {
                    biased;
                    () = state.cancel.cancelled() => return None,
                    () = tokio::time::sleep(delay) => {}
                }
                state.clear_retrying();
            }
        }
    }
    unreachable!("the last attempt always returns")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn status_table() {
        let retry = |error: &str, after: Option<u64>| Verdict::Retry {
            error: error.to_owned(),
            retry_after: after.map(Duration::from_secs),
        };
        let permanent = |error: &str| Verdict::Permanent(error.to_owned());
        let cases = [
            (200, None, Verdict::Delivered),
            (202, None, Verdict::Delivered),
            (204, Some("5"), Verdict::Delivered),
            (
                301,
                None,
                permanent("HTTP 301 Moved Permanently (redirects are not followed)"),
            ),
            (
                302,
                None,
                permanent("HTTP 302 Found (redirects are not followed)"),
            ),
            (400, None, permanent("HTTP 400 Bad Request")),
            (401, None, permanent("HTTP 401 Unauthorized")),
            (404, Some("5"), permanent("HTTP 404 Not Found")),
            (408, None, retry("HTTP 408 Request Timeout", None)),
            (408, Some("5"), retry("HTTP 408 Request Timeout", None)),
            (429, None, retry("HTTP 429 Too Many Requests", None)),
            (429, Some("7"), retry("HTTP 429 Too Many Requests", Some(7))),
            (
                429,
                Some(" 0 "),
                retry("HTTP 429 Too Many Requests", Some(0)),
            ),
            (
                429,
                Some("Wed, 21 Oct 2015 07:28:00 GMT"),
                retry("HTTP 429 Too Many Requests", None),
            ),
            (429, Some("-1"), retry("HTTP 429 Too Many Requests", None)),
            (
                500,
                Some("3"),
                retry("HTTP 500 Internal Server Error", None),
            ),
            (502, None, retry("HTTP 502 Bad Gateway", None)),
            (
                503,
                Some("3"),
                retry("HTTP 503 Service Unavailable", Some(3)),
            ),
        ];
        for (code, retry_after, want) in cases {
            let mut headers = HeaderMap::new();
            if let Some(v) = retry_after {
                headers.insert(RETRY_AFTER, HeaderValue::from_static(v));
            }
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(
                classify_status(status, &headers),
                want,
                "{code} {retry_after:?}"
            );
        }
    }

    #[test]
    fn backoff_table() {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let cases = [
            // (initial, max, attempt, jitter, want)
            (s(1), s(60), 1, 0.0, s(1)),
            (s(1), s(60), 2, 0.0, s(2)),
            (s(1), s(60), 3, 0.0, s(4)),
            (s(1), s(60), 6, 0.0, s(32)),
            (s(1), s(60), 7, 0.0, s(60)),
            (s(1), s(60), 40, 0.0, s(60)),
            (s(1), s(60), u32::MAX, 0.0, s(60)),
            (s(1), s(60), 1, 1.0, ms(750)),
            (s(1), s(60), 1, 0.5, Duration::from_micros(875_000)),
            (s(1), s(60), 9, 1.0, s(45)),
            (ms(50), ms(200), 1, 0.0, ms(50)),
            (ms(50), ms(200), 4, 0.0, ms(200)),
            (s(0), s(60), 5, 0.0, s(0)),
            (s(10), s(1), 1, 0.0, s(1)),
        ];
        for (initial, max, attempt, jitter, want) in cases {
            assert_eq!(
                backoff(initial, max, attempt, jitter),
                want,
                "{initial:?} {max:?} {attempt} {jitter}"
            );
        }
    }

    #[test]
    fn retry_after_is_capped_by_max_backoff() {
        let settings = Settings {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_attempts: 8,
            request_timeout: Duration::from_secs(10),
            max_pending: 10,
            clock: crate::system_clock(),
        };
        let s = Duration::from_secs;
        assert_eq!(retry_delay(&settings, 1, Some(s(30))), s(30));
        assert_eq!(retry_delay(&settings, 1, Some(s(0))), s(0));
        assert_eq!(retry_delay(&settings, 1, Some(s(3600))), s(60));
        let d = retry_delay(&settings, 3, None);
        assert!(d <= s(4) && d >= s(3), "{d:?}");
    }
}
