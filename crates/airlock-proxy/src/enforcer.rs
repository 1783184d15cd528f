//! Grants end live sessions: the registry of live sessions and the task that
//! ends each one whose grant no longer holds.
//!
//! A session registers its grant when it starts. The enforcer re-checks every
//! live session's grant against the policy in force and the grant's stored
//! record (revocation) when it is poked (a revocation in this process), when
//! the policy is reloaded, at the earliest grant expiry, and at least once a
//! second (revocations made through another gateway sharing the store). A
//! session whose grant fails the check is told why in a FATAL and closed by
//! its relay within [`END_GRACE`](crate::relay) of being stopped; the check
//! itself is `airlock_access::recheck`, so the proxy never decides.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use airlock_access::{recheck, Clock, Grant};
use airlock_config::Config;
use airlock_store::Store;

/// The longest the enforcer sleeps between checks.
const POLL: Duration = Duration::from_secs(1);

struct Entry {
    grant: Grant,
    /// The session credential it logged in with (revoking the API token that
    /// minted it ends the session).
    credential: String,
    stop: watch::Sender<Option<String>>,
}

/// Live sessions by id, with their grants.
#[derive(Default)]
pub struct SessionRegistry {
    sessions: Mutex<HashMap<String, Entry>>,
    poke: Notify,
}

/// Removes the session from the registry when dropped.
pub struct Registration {
    registry: Arc<SessionRegistry>,
    id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

impl SessionRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a live session; the receiver is set when it must end.
    pub fn register(
        self: &Arc<Self>,
        id: &str,
        grant: Grant,
        credential: &str,
    ) -> (Registration, watch::Receiver<Option<String>>) {
        let (tx, rx) = watch::channel(None);
        self.lock().insert(
            id.to_owned(),
            Entry {
                grant,
                credential: credential.to_owned(),
                stop: tx,
            },
        );
        // A new session may expire before the enforcer's next wake-up.
        self.poke.notify_one();
        (
            Registration {
                registry: self.clone(),
                id: id.to_owned(),
            },
            rx,
        )
    }

    /// Asks the enforcer to re-check now (a grant was revoked).
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live sessions using `grant_id`.
    pub fn sessions_of(&self, grant_id: &str) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.grant.id == grant_id)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Ends now every live session that logged in with one of `credentials`
    /// (their API token was revoked), telling each `why`; returns how many.
    pub fn stop_credentials(&self, credentials: &[String], why: &str) -> usize {
        let sessions = self.lock();
        let mut n = 0;
        for e in sessions.values() {
            if credentials.contains(&e.credential) && e.stop.borrow().is_none() {
                e.stop.send_replace(Some(why.to_owned()));
                n += 1;
            }
        }
        n
    }

    fn snapshot(&self) -> Vec<(String, Grant)> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.stop.borrow().is_none())
            .map(|(id, e)| (id.clone(), e.grant.clone()))
            .collect()
    }

    fn stop(&self, id: &str, why: String) {
        if let Some(e) = self.lock().get(id) {
            e.stop.send_replace(Some(why));
        }
    }
}

/// Runs until `shutdown`: ends sessions whose grant no longer holds.
pub async fn run(
    registry: Arc<SessionRegistry>,
    mut config: watch::Receiver<Arc<Config>>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let mut next_expiry: Option<i64> = None;
    loop {
        let now = clock.now_ms();
        let sleep = match next_expiry {
            Some(at) if at > now => Duration::from_millis((at - now) as u64).min(POLL),
            Some(_) => Duration::ZERO,
            None => POLL,
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = registry.poke.notified() => {}
            changed = config.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(sleep) => {}
        }
        let policy = config.borrow_and_update().clone();
        let live = registry.snapshot();
        if live.is_empty() {
            next_expiry = None;
            continue;
        }
        let ids: Vec<String> = live
            .iter()
            .filter(|(_, g)| !g.is_standing())
            .map(|(_, g)| g.id.clone())
            .collect();
        let store = store.clone();
        let records = tokio::task::spawn_blocking(move || {
            let mut out = HashMap::new();
            for id in ids {
                if out.contains_key(&id) {
                    continue;
                }
                let record = store.grant(&id)?;
                out.insert(id, record);
            }
            Ok::<_, airlock_store::StoreError>(out)
        })
        .await;
        let records = match records {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                // Fail closed would end every write session on a store hiccup;
                // expiry still applies from the grants' known ends, below.
                tracing::error!(error = %e, "cannot read grants to enforce revocations");
                HashMap::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "grant lookup task failed");
                HashMap::new()
            }
        };
        let now = clock.now_ms();
        next_expiry = None;
        for (id, grant) in live {
            let verdict = if grant.is_standing() {
                recheck(&policy, &grant, None, now)
            } else {
                match records.get(&grant.id) {
                    Some(record) => recheck(&policy, &grant, record.as_ref(), now),
                    // Store unreadable: still end the session at the grant's known end
                    // (and if the policy no longer allows it).
                    None => match grant.expires_ms {
                        Some(end) if now >= end => Err(airlock_access::Denial::GrantEnded {
                            grant_id: grant.id.clone(),
                            resource: grant.resource.clone(),
                            access: grant.access,
                            end: airlock_access::GrantEnd::Expired { at_ms: end },
                        }),
                        _ => Ok(grant.clone()),
                    },
                }
            };
            match verdict {
                Ok(g) => {
                    if let Some(end) = g.expires_ms {
                        next_expiry = Some(next_expiry.map_or(end, |n: i64| n.min(end)));
                    }
                }
                Err(denial) => {
                    let why = denial.to_string();
                    tracing::info!(session = %id, grant = %grant.id, reason = %why, "ending session: its grant no longer holds");
                    registry.stop(&id, why);
                }
            }
        }
    }
}
