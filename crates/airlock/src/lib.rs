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

/// What a second SIGINT or SIGTERM runs before the process exits at once
/// (e.g. stopping a throwaway PostgreSQL); it must not block for long.
pub type OnForce = Box<dyn FnOnce() + Send>;

/// A token cancelled on SIGINT or SIGTERM, for a graceful stop. A second
/// signal while the stop is under way forces it: `on_force` runs, then the
/// process exits with status 130 (a stop stuck on something, a write to a
/// stdout nobody reads for one, must not make the process unkillable
/// short of SIGKILL).
pub fn shutdown_on_signals(on_force: OnForce) -> CancellationToken {
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
        let mut int = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGINT");
                return;
            }
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!(
            "stopping: sessions get a FATAL and end (a second Ctrl-C or SIGTERM stops at once)"
        );
        t.cancel();
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        // The graceful stop may be stuck; nothing here may wait on it.
        on_force();
        note("stopped at once by a second signal");
        std::process::exit(130);
    });
    token
}

/// Writes a line to stderr, ignoring errors: a closed or broken stderr
/// must not panic (or stop) a shutdown.
pub fn note(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Writes `text` to stdout, ignoring errors (a reader that went away, as
/// `| tee log` after Ctrl-C, must not panic the gateway).
pub fn say(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
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
