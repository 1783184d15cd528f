//! Delivering a client's CancelRequest to the upstream.
//!
//! The protocol gives the sender no answer either way, so neither do we; the
//! outcome is counted and logged for operators. The one signal a client has
//! is the close of its cancel connection, which PostgreSQL sends after it
//! has signalled the backend; the gateway closes the client's only after
//! the upstream has closed the gateway's, so the same holds through it.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use airlock_pgwire::messages::CancelRequest;

use crate::frontend::ClientCancel;
use crate::metrics::OutcomeLabels;
use crate::ProxyContext;

/// Forwards `cancel` and then closes the client's cancel connection (when
/// `cancel` is dropped at the end).
pub async fn forward(ctx: &ProxyContext, cancel: ClientCancel) {
    let request = &cancel.request;
    let key = airlock_pgwire::messages::BackendKeyData {
        process_id: request.process_id,
        secret_key: request.secret_key,
    };
    let count = |outcome: &'static str| {
        ctx.metrics
            .cancel_requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    };
    let Some(target) = ctx.cancel.lookup(key) else {
        count("unknown_key");
        tracing::info!(
            pid = request.process_id,
            "CancelRequest with an unknown key ignored"
        );
        return;
    };
    let config = ctx.config.borrow().clone();
    let Some(resource) = config.resource(&target.resource) else {
        count("unknown_resource");
        return;
    };
    match send(resource, &ctx.upstream_tls, target.key).await {
        Ok(()) => count("forwarded"),
        Err(e) => {
            count("upstream_error");
            tracing::warn!(resource = %target.resource, error = %e, "forwarding a CancelRequest failed");
        }
    }
    drop(cancel);
}

/// Sends a CancelRequest with the upstream's `key` to where `resource`'s
/// upstream is, over the same kind of transport (PostgreSQL accepts a
/// CancelRequest after SSLRequest).
pub async fn send(
    resource: &airlock_config::Resource,
    tls: &crate::backend::UpstreamTlsConfigs,
    key: airlock_pgwire::messages::BackendKeyData,
) -> Result<(), String> {
    let mut stream = crate::backend::open_stream(resource, tls)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = BytesMut::new();
    CancelRequest {
        process_id: key.process_id,
        secret_key: key.secret_key,
    }
    .encode(&mut out);
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    // PostgreSQL closes the connection once it has acted on the request.
    let mut sink = [0u8; 64];
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut stream, &mut sink),
    )
    .await;
    Ok(())
}
