//! Airlock's wiring: the gateway (`serve`, `quickstart`) and the CLI client
//! (`login`, `connect`, ...). Business logic lives in the other crates; this
//! one connects them.

pub mod access_cli;
mod anchors;
pub mod audit_cli;
pub mod client;
pub mod connect;
pub mod gateway;
pub mod policy;
pub mod quickstart;
pub mod reload;
pub mod runbook_cli;
pub mod runbooks;
pub mod telemetry_cli;

use tokio_util::sync::CancellationToken;

/// A token cancelled on SIGINT or SIGTERM, for a graceful stop.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping: sessions get a FATAL and end");
        t.cancel();
    });
    token
}

/// A gateway timestamp (Unix milliseconds) as UTC RFC 3339, to the second.
pub fn format_time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}
