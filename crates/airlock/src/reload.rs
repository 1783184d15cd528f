//! Policy reload: on SIGHUP and when the config file changes, the file is
//! loaded and validated again (a new read credential is also checked
//! against the database: one that can write refuses the reload, as it
//! refuses the start); a valid policy replaces the one in force
//! without touching live sessions (the enforcer then ends those whose grant the
//! new policy no longer allows), an invalid one is refused with its
//! diagnostics in the log and the old policy stays.
//!
//! The file is polled once a second by content hash rather than watched with
//! inotify: editors replace files by rename, Kubernetes swaps ConfigMap
//! symlinks, and a hash of a small file is cheap; a poll sees all of them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use airlock_config::Config;

/// How often the file is checked for changes.
const POLL: Duration = Duration::from_secs(1);

/// What a reload attempt did.
#[derive(Debug)]
pub enum Reloaded {
    /// The new policy is in force.
    Applied(Box<Config>),
    /// The file's settings are the same as those in force.
    Unchanged,
}

/// Loads `current.path` again and checks it. `[gateway]` settings cannot
/// change without a restart: the ones in force are kept and a warning says so.
pub fn load_again(current: &Config) -> Result<Reloaded, String> {
    let mut next = Config::load(&current.path).map_err(|e| e.to_string())?;
    next.check_secrets().map_err(|e| e.to_string())?;
    next.check_webhook_secrets()
        .map_err(|problems| problems.join("\n"))?;
    if next.gateway != current.gateway {
        tracing::warn!(
            file = %current.path.display(),
            "[gateway] settings changed; they take effect after a restart, the running ones are kept"
        );
        next.gateway = current.gateway.clone();
    }
    if next == *current {
        return Ok(Reloaded::Unchanged);
    }
    Ok(Reloaded::Applied(Box::new(next)))
}

/// The database layer of read-only, at reload as at start: a resource whose
/// read credential is new (another host, database or user) is checked
/// before the policy is applied, and one that can write refuses the reload
/// (unless the resource allows it). An upstream that cannot be reached now
/// is checked again before its first read session, as at start.
async fn read_credential_can_write(
    current: &Config,
    next: &Config,
    tls: &airlock_proxy::backend::UpstreamTlsConfigs,
) -> Option<String> {
    use airlock_proxy::catalog::{check_read_credential, source};
    for r in next
        .resources
        .iter()
        .filter(|r| r.read.is_some() && !r.read_credential_can_write)
    {
        let before = current.resource(r.name.as_str()).map(source);
        if before.as_deref() == Some(source(r).as_str()) {
            continue;
        }
        match check_read_credential(r, tls, next.gateway.connect_timeout).await {
            Ok(problems) if problems.is_empty() => {}
            Ok(problems) => {
                return Some(format!(
                    "resource \"{}\": its new read credential can write: {}; give it SELECT only (or, to accept the risk, set read_credential_can_write = \"allow\" on the resource)",
                    r.name,
                    problems.join("; ")
                ))
            }
            Err(e) => {
                tracing::warn!(resource = %r.name, error = %e, "could not check the new read credential now; it is checked again before the first read session");
            }
        }
    }
    None
}

fn file_hash(path: &std::path::Path) -> Option<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).ok()?;
    Some(hex::encode(sha2::Sha256::digest(&bytes)))
}

/// Runs until `shutdown`: reloads on SIGHUP and on file change.
pub async fn watch(
    tx: watch::Sender<Arc<Config>>,
    tls: airlock_proxy::backend::UpstreamTlsConfigs,
    webhooks: Option<airlock_webhook::Dispatcher>,
    audit: airlock_audit::AuditLog,
    shutdown: CancellationToken,
) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the policy reloads on file change only");
            None
        }
    };
    // The hash last seen, applied or refused, so a broken file is reported
    // once rather than every second.
    let mut seen = Some(tx.borrow().source_sha256());
    let mut every = tokio::time::interval(POLL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let signal = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => false,
            _ = async {
                match hup.as_mut() {
                    Some(s) => { s.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => true,
        };
        let current = tx.borrow().clone();
        if !signal {
            let now = file_hash(&current.path);
            if now.is_none() || now == seen {
                continue;
            }
            seen = now;
        } else {
            seen = file_hash(&current.path);
        }
        let trigger = if signal { "SIGHUP" } else { "file change" };
        match load_again(&current) {
            Ok(Reloaded::Unchanged) => {
                tracing::info!(trigger, file = %current.path.display(), "policy reloaded: no change in settings");
            }
            Ok(Reloaded::Applied(next)) => {
                if let Some(why) = read_credential_can_write(&current, &next, &tls).await {
                    tracing::error!(
                        trigger,
                        file = %current.path.display(),
                        "policy reload refused; the policy in force stays:\n{why}"
                    );
                    continue;
                }
                let hash = next.source_sha256();
                if let Some(w) = &webhooks {
                    w.set_targets(crate::gateway::webhook_targets(&next));
                }
                let text = format!(
                    "policy reloaded from {} (sha256 {hash}): {} resources, {} roles, {} users",
                    next.path.display(),
                    next.resources.len(),
                    next.roles.len(),
                    next.users.len()
                );
                tracing::info!(trigger, policy_sha256 = %hash, "{text}");
                let event = airlock_audit::Event::Access {
                    event: "policy.reloaded".into(),
                    actor: trigger.to_owned(),
                    text: text.clone(),
                    data: serde_json::json!({ "sha256": hash, "file": next.path }),
                };
                if let Err(e) = audit.append(&[event]) {
                    tracing::error!(error = %e, "the policy reload could not be written to the audit log");
                }
                if let Some(w) = &webhooks {
                    w.emit(airlock_webhook::Event::new(
                        "policy.reloaded",
                        text,
                        airlock_access::Clock::now_ms(&airlock_access::SystemClock),
                        serde_json::json!({ "sha256": hash, "file": next.path }),
                    ));
                }
                tx.send_replace(Arc::new(*next));
            }
            Err(why) => {
                tracing::error!(
                    trigger,
                    file = %current.path.display(),
                    "policy reload refused; the policy in force stays:\n{why}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[gateway]
listen_postgres = "127.0.0.1:7432"
listen_http = "127.0.0.1:7480"
data_dir = "./data"

[[resource]]
name = "orders"
kind = "postgres"
host = "127.0.0.1"
database = "orders"
read = { user = "ro" }

[[role]]
name = "oncall"
standing = [{ resource = "orders", access = "read" }]

[[user]]
name = "oncall1"
roles = ["oncall"]
"#;

    #[test]
    fn reload_applies_refuses_and_keeps_gateway_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("airlock.toml");
        std::fs::write(&path, BASE).unwrap();
        let current = Config::load(&path).unwrap();
        assert!(matches!(load_again(&current), Ok(Reloaded::Unchanged)));
        // A comment is not a change.
        std::fs::write(&path, format!("# hello\n{BASE}")).unwrap();
        assert!(matches!(load_again(&current), Ok(Reloaded::Unchanged)));
        // A new user is.
        std::fs::write(
            &path,
            format!("{BASE}\n[[user]]\nname = \"b\"\nroles = []\n"),
        )
        .unwrap();
        match load_again(&current) {
            Ok(Reloaded::Applied(c)) => assert_eq!(c.users.len(), 2),
            other => panic!("{other:?}"),
        }
        // A broken file is refused with its line.
        std::fs::write(
            &path,
            BASE.replace("roles = [\"oncall\"]", "roles = [\"oncal\"]"),
        )
        .unwrap();
        let err = load_again(&current).unwrap_err();
        assert!(
            err.contains("airlock.toml:20:") && err.contains("unknown role"),
            "{err}"
        );
        // [gateway] changes are not applied live.
        std::fs::write(
            &path,
            format!(
                "{}\n[[user]]\nname = \"b\"\nroles = []\n",
                BASE.replace("7432", "7433")
            ),
        )
        .unwrap();
        match load_again(&current) {
            Ok(Reloaded::Applied(c)) => assert_eq!(c.gateway, current.gateway),
            other => panic!("{other:?}"),
        }
    }
}
