//! Sends each audit checkpoint's anchor off the host, as `[audit] anchors`
//! says: a JSON line on standard output, a syslog message, and the
//! `audit.checkpoint` webhook. Kept elsewhere, anchors make a log that was
//! cut back or re-signed with another key fail `airlock audit verify
//! --anchors` (see `airlock_audit::anchor`).
//!
//! Never on the hot path: the writer publishes its newest checkpoint on a
//! watch channel and this task sends it, at most once a second (when
//! checkpoints come faster, the newest is sent: its signature covers every
//! record before it). Writes to stdout and syslog run on the blocking pool,
//! so a reader that stopped reading stdout cannot stall the runtime. The
//! checkpoint written when the log closes is sent by [`send_last`] after
//! the close.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use airlock_audit::{Anchor, AuditLog};
use airlock_config::AnchorSink;
use tokio_util::sync::CancellationToken;

/// Where anchors go, and the last one sent.
#[derive(Clone)]
pub(crate) struct Anchors {
    sinks: Arc<[AnchorSink]>,
    webhooks: Option<airlock_webhook::Dispatcher>,
    sent: Arc<AtomicU64>,
    /// Each local sink's failure is logged once, not once per checkpoint.
    warned: Arc<[AtomicBool; 2]>,
}

impl Anchors {
    pub(crate) fn new(
        sinks: &[AnchorSink],
        webhooks: Option<airlock_webhook::Dispatcher>,
    ) -> Anchors {
        Anchors {
            sinks: sinks.into(),
            webhooks,
            sent: Arc::new(AtomicU64::new(0)),
            warned: Arc::new([AtomicBool::new(false), AtomicBool::new(false)]),
        }
    }

    /// Follows the log's checkpoints until `shutdown`.
    pub(crate) async fn run(self, audit: AuditLog, shutdown: CancellationToken) {
        if self.sinks.is_empty() {
            return;
        }
        let mut newest = audit.anchors();
        loop {
            tokio::select! {
                changed = newest.changed() => if changed.is_err() { return },
                _ = shutdown.cancelled() => return,
            }
            let Some(anchor) = newest.borrow_and_update().clone() else {
                continue;
            };
            self.send(anchor).await;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Sends the log's newest checkpoint if it was not sent yet: the one
    /// its close wrote.
    pub(crate) async fn send_last(&self, audit: &AuditLog) {
        let newest = audit.anchors().borrow().clone();
        if let Some(anchor) = newest {
            self.send(anchor).await;
        }
    }

    async fn send(&self, anchor: Anchor) {
        if self.sent.fetch_max(anchor.seq, Ordering::Relaxed) >= anchor.seq {
            return;
        }
        let line = anchor.to_line();
        for sink in self.sinks.iter() {
            match sink {
                AnchorSink::Webhook => {
                    if let Some(w) = &self.webhooks {
                        w.emit(airlock_webhook::Event::new(
                            airlock_audit::anchor::ANCHOR_EVENT,
                            format!(
                                "audit checkpoint: the log is sealed through record {} (key {})",
                                anchor.seq - 1,
                                anchor.key
                            ),
                            anchor.ts,
                            anchor.data(),
                        ));
                    }
                }
                AnchorSink::Stdout | AnchorSink::Syslog => {
                    let (sink, line) = (*sink, line.clone());
                    let written =
                        tokio::task::spawn_blocking(move || write_local(sink, &line)).await;
                    let error = match written {
                        Ok(Ok(())) => continue,
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => e.to_string(),
                    };
                    let i = usize::from(sink == AnchorSink::Syslog);
                    if !self.warned[i].swap(true, Ordering::Relaxed) {
                        tracing::warn!(sink = sink.as_str(), error = %error, "an audit anchor could not be sent; anchors keep a copy of the log's end off the host, so check [audit] anchors (this is logged once)");
                    }
                }
            }
        }
    }
}

fn write_local(sink: AnchorSink, line: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    match sink {
        AnchorSink::Stdout => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")?;
            out.flush()
        }
        AnchorSink::Syslog => {
            // RFC 3164 to the local socket: facility local0 (16), severity
            // informational (6).
            let message = format!("<{}>airlock[{}]: {line}", 16 * 8 + 6, std::process::id());
            let socket = std::os::unix::net::UnixDatagram::unbound()?;
            socket.send_to(message.as_bytes(), "/dev/log").map(drop)
        }
        AnchorSink::Webhook => Ok(()),
    }
}
