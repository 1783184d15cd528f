//! The PostgreSQL listener: accepts connections and gives each its own task
//! until shutdown, then waits for sessions to say goodbye.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use airlock_pgwire::sqlstate;

use crate::error::UserFacingError;

use crate::ProxyContext;

/// How long a connection refused for being over the limit may take to send
/// its startup packet before it is dropped without a message.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts until `ctx.shutdown` is cancelled, then waits (bounded) for open
/// sessions, which have been sent a FATAL by then.
pub async fn serve(listener: TcpListener, ctx: Arc<ProxyContext>) {
    let tracker = TaskTracker::new();
    let limit = ctx.config.borrow().gateway.max_client_connections;
    let slots = Arc::new(Semaphore::new(limit));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        // Refused before reading anything: the client sees a
                        // FATAL as PostgreSQL sends when it is full.
                        let e = UserFacingError::fatal(
                            sqlstate::TOO_MANY_CONNECTIONS,
                            format!("the Airlock gateway is at its limit of {limit} client connections"),
                        )
                        .hint("try again shortly; the platform team can raise [gateway] max_client_connections");
                        tracing::warn!(%peer, limit, "refusing a connection: at max_client_connections");
                        let ctx = ctx.clone();
                        tracker.spawn(async move {
                            // Answered inside the protocol, after TLS and the
                            // startup packet, so clients show the message.
                            let refuse = crate::session::refuse_connection(&ctx, tcp, &e);
                            if tokio::time::timeout(REFUSAL_TIMEOUT, refuse).await.is_err() {
                                tracing::debug!(%peer, "refused client did not finish its startup in time");
                            }
                        });
                        continue;
                    };
                    let ctx = ctx.clone();
                    tracker.spawn(async move {
                        crate::session::serve_connection(ctx, tcp, peer).await;
                        drop(slot);
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
}
