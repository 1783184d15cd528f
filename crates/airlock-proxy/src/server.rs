//! The PostgreSQL listener: accepts connections and gives each its own task
//! until shutdown, then waits for sessions to say goodbye.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::ProxyContext;

/// Accepts until `ctx.shutdown` is cancelled, then waits (bounded) for open
/// sessions, which have been sent a FATAL by then.
pub async fn serve(listener: TcpListener, ctx: Arc<ProxyContext>) {
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    tracker.spawn(crate::session::serve_connection(ctx.clone(), tcp, peer));
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
