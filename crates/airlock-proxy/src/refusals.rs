//! Refused logins, aggregated per source address for the audit log.
//!
//! A burst of wrong passwords (a script, a brute force) must not write one
//! record per attempt: the log lives on the gateway's disk and its readers
//! want to see *that* an address kept failing, not each try. The first
//! refusal from an address is recorded alone, at once. Further refusals
//! from it within [`WINDOW`] are counted, and one `login_refused` record
//! with `count` (and the fields of the last of them) is written when the
//! window ends — by the next refusal, by the minute's sweep, or at
//! shutdown. After that, the next refusal is again recorded alone.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_audit::{AuditLog, Event};

use crate::ProxyContext;

/// How long refusals from one address are counted into one record.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once; past this every pending count is written and
/// the table starts over (many addresses cannot grow memory).
const MAX_SOURCES: usize = 10_000;
/// How often windows that ended are written out.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// What one refusal says (client-chosen strings already bounded).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub user: String,
    pub resource: String,
    pub reason: String,
    pub sqlstate: String,
}

struct Window {
    started: Instant,
    /// Refusals since the one recorded alone, not written yet.
    count: u64,
    last: Option<Refusal>,
}

/// Shared by every connection of a gateway.
#[derive(Default)]
pub struct Refusals {
    sources: Mutex<HashMap<IpAddr, Window>>,
}

impl Refusals {
    /// Records (or counts) a refused login from `peer`.
    pub fn refused(&self, audit: &AuditLog, peer: SocketAddr, r: Refusal) {
        let now = Instant::now();
        let mut due = Vec::new();
        let record_alone = {
            let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            if sources.len() >= MAX_SOURCES && !sources.contains_key(&peer.ip()) {
                due.extend(sources.drain().filter_map(|(ip, w)| aggregate(ip, w)));
            }
            match sources.get_mut(&peer.ip()) {
                Some(w) if now.duration_since(w.started) < WINDOW => {
                    w.count += 1;
                    w.last = Some(r.clone());
                    false
                }
                _ => {
                    let old = sources.insert(
                        peer.ip(),
                        Window {
                            started: now,
                            count: 0,
                            last: None,
                        },
                    );
                    due.extend(old.and_then(|w| aggregate(peer.ip(), w)));
                    true
                }
            }
        };
        if record_alone {
            due.push(event(peer.to_string(), r, None));
        }
        write(audit, &due);
    }

    /// Writes the counts of windows that ended (all of them with `all`).
    pub fn sweep(&self, audit: &AuditLog, all: bool) {
        let now = Instant::now();
        let due: Vec<Event> = {
            let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            let ended: Vec<IpAddr> = sources
                .iter()
                .filter(|(_, w)| all || now.duration_since(w.started) >= WINDOW)
                .map(|(ip, _)| *ip)
                .collect();
            ended
                .into_iter()
                .filter_map(|ip| sources.remove(&ip).and_then(|w| aggregate(ip, w)))
                .collect()
        };
        write(audit, &due);
    }
}

fn aggregate(ip: IpAddr, w: Window) -> Option<Event> {
    let last = w.last?;
    (w.count > 0).then(|| event(ip.to_string(), last, Some(w.count)))
}

fn event(client_addr: String, r: Refusal, count: Option<u64>) -> Event {
    Event::LoginRefused {
        user: r.user,
        resource: r.resource,
        access: String::new(),
        client_addr,
        reason: r.reason,
        sqlstate: r.sqlstate,
        count,
    }
}

fn write(audit: &AuditLog, events: &[Event]) {
    if events.is_empty() {
        return;
    }
    if let Err(e) = audit.append(events) {
        tracing::error!(error = %e, "refused logins could not be written to the audit log");
    }
}

/// Writes ended windows every few seconds until shutdown (the listener
/// writes the rest once its sessions are gone).
pub async fn sweep_until_shutdown(ctx: Arc<ProxyContext>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => ctx.refusals.sweep(&ctx.audit, false),
            _ = ctx.shutdown.cancelled() => return,
        }
    }
}
