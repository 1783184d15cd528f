//! The PostgreSQL listener: accepts connections and gives each its own task
//! until shutdown, then waits for sessions to say goodbye.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ProxyContext;

/// How often, at most, a full unauthenticated quota is logged.
const QUOTA_WARN_EVERY: Duration = Duration::from_secs(10);

/// A connection's places: one among the unauthenticated ones until it has
/// logged in, then one among `max_client_connections`.
pub struct Admission {
    pub(crate) unauthenticated: Unauthenticated,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) limit: usize,
}

/// The connections logging in, oldest first.
#[derive(Default)]
struct Pending {
    next: u64,
    queue: std::collections::VecDeque<(u64, CancellationToken)>,
}

/// A place among the connections logging in; given back when dropped.
pub struct Unauthenticated {
    id: u64,
    pending: Arc<Mutex<Pending>>,
    /// Cancelled when a newer connection took the place.
    pub(crate) evicted: CancellationToken,
}

impl Unauthenticated {
    /// Takes a place at once: when all `limit` are taken, the oldest holder
    /// is told to go and the new connection has its place (so, for a
    /// moment, the evicted one and its successor both run). Returns whether
    /// someone was evicted.
    fn admit(pending: &Arc<Mutex<Pending>>, limit: usize) -> (Unauthenticated, bool) {
        let evicted = CancellationToken::new();
        let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
        let mut full = false;
        while p.queue.len() >= limit {
            full = true;
            if let Some((_, oldest)) = p.queue.pop_front() {
                oldest.cancel();
            }
        }
        p.next += 1;
        let id = p.next;
        p.queue.push_back((id, evicted.clone()));
        (
            Unauthenticated {
                id,
                pending: pending.clone(),
                evicted,
            },
            full,
        )
    }
}

impl Drop for Unauthenticated {
    fn drop(&mut self) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.queue.retain(|(id, _)| *id != self.id);
    }
}

/// A connection that has not logged in holds one of `max_unauthenticated`
/// places and has `login_timeout` to log in; only then does it take one of
/// `max_client_connections` (over that it is refused with 53300). When the
/// places are all taken, a new connection takes the place of the one that
/// has waited longest, which is closed: idle or slow sockets cannot keep
/// people out.
pub async fn serve(listener: TcpListener, ctx: Arc<ProxyContext>) {
    let tracker = TaskTracker::new();
    let (limit, unauth_limit) = {
        let c = ctx.config.borrow();
        (
            c.gateway.max_client_connections,
            c.gateway.max_unauthenticated,
        )
    };
    let slots = Arc::new(Semaphore::new(limit));
    let sweeper = tokio::spawn(crate::refusals::sweep_until_shutdown(ctx.clone()));
    let pending = Arc::new(Mutex::new(Pending::default()));
    let mut warned: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let (place, full) = Unauthenticated::admit(&pending, unauth_limit);
                    if full {
                        ctx.metrics
                            .connections
                            .get_or_create(&crate::metrics::OutcomeLabels { outcome: "unauthenticated_evicted" })
                            .inc();
                        if warned.is_none_or(|t| t.elapsed() >= QUOTA_WARN_EVERY) {
                            warned = Some(std::time::Instant::now());
                            tracing::warn!(%peer, max_unauthenticated = unauth_limit, "max_unauthenticated connections are logging in: closing the longest-waiting one for each new one (raise [gateway] max_unauthenticated if this is real load)");
                        }
                    }
                    let admission = Admission {
                        unauthenticated: place,
                        slots: slots.clone(),
                        limit,
                    };
                    let ctx = ctx.clone();
                    tracker.spawn(async move {
                        crate::session::serve_connection(ctx, tcp, peer, admission).await;
                    });
                }
                Err(e) => {
                    // EMFILE and friends: the listener stays up and tries
                    // again once something was freed.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = ctx.shutdown.cancelled() => break,
        }
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tracker.len(),
            "sessions still open 5s after shutdown"
        );
    }
    // The refusals counted since their last record are written.
    let _ = sweeper.await;
    ctx.refusals.sweep(&ctx.audit, true);
}
