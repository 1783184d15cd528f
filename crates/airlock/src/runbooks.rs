//! The gateway's runbook catalog: loaded from `[runbooks] dir` at start
//! (a broken runbook stops the start, as a broken policy does), then kept in
//! step with the directory and the policy: every second the directory's
//! files are hashed, and a change there or in the policy loads and checks the
//! runbooks again. A valid set replaces the one in force and is recorded in
//! the audit log; an invalid one is refused with its diagnostics in the log,
//! and the runbooks in force stay.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use airlock_config::Config;
use airlock_runbook::Runbooks;

/// How often the directory is checked for changes.
const POLL: Duration = Duration::from_secs(1);

/// Loads and checks the runbooks `config` names; none without `[runbooks]`.
pub fn load(config: &Config) -> Result<Runbooks, String> {
    let Some(dir) = &config.runbooks.dir else {
        return Ok(Runbooks::default());
    };
    let runbooks = airlock_runbook::load_dir(dir).map_err(|e| e.to_string())?;
    runbooks.check_config(config).map_err(|problems| {
        problems
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    Ok(runbooks)
}

/// [`load`] for the gateway's start.
pub fn load_at_start(config: &Config) -> anyhow::Result<Runbooks> {
    load(config)
        .map_err(anyhow::Error::msg)
        .with_context(|| match &config.runbooks.dir {
            Some(dir) => format!("loading the runbooks in {}", dir.display()),
            None => "loading the runbooks".to_owned(),
        })
}

/// A hash of the directory's runbook files (names and contents), so that an
/// edit, an added or a removed file is seen.
fn dir_hash(dir: &Path) -> Option<String> {
    use sha2::Digest;
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    names.sort();
    let mut h = sha2::Sha256::new();
    for p in names {
        h.update(p.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(std::fs::read(&p).unwrap_or_default());
        h.update([0]);
    }
    Some(hex::encode(h.finalize()))
}

/// Keeps `tx` in step with the directory and the policy until `shutdown`.
pub async fn watch(
    mut config: watch::Receiver<Arc<Config>>,
    tx: watch::Sender<Arc<Runbooks>>,
    audit: airlock_audit::AuditLog,
    shutdown: CancellationToken,
) {
    let dir_of = |c: &Config| c.runbooks.dir.clone();
    let mut seen = dir_of(&config.borrow()).and_then(|d| dir_hash(&d));
    let mut every = tokio::time::interval(POLL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let policy_changed = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => false,
            changed = config.changed() => {
                if changed.is_err() {
                    return;
                }
                true
            }
        };
        let current = config.borrow_and_update().clone();
        let now = dir_of(&current).and_then(|d| dir_hash(&d));
        if !policy_changed && now == seen {
            continue;
        }
        seen = now;
        match load(&current) {
            Ok(runbooks) => {
                let names: Vec<(String, String)> = runbooks
                    .iter()
                    .map(|r| (r.name.clone(), r.digest.clone()))
                    .collect();
                let before: Vec<(String, String)> = tx
                    .borrow()
                    .iter()
                    .map(|r| (r.name.clone(), r.digest.clone()))
                    .collect();
                if names == before {
                    continue;
                }
                let text = format!(
                    "runbooks reloaded: {}",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                );
                tracing::info!("{text}");
                let event = airlock_audit::Event::Access {
                    event: "runbooks.reloaded".into(),
                    actor: "gateway".into(),
                    text,
                    data: serde_json::json!({
                        "runbooks": names
                            .iter()
                            .map(|(n, d)| serde_json::json!({ "name": n, "digest": d }))
                            .collect::<Vec<_>>(),
                    }),
                };
                if let Err(e) = audit.append(&[event]) {
                    tracing::error!(error = %e, "the runbook reload could not be written to the audit log");
                }
                tx.send_replace(Arc::new(runbooks));
            }
            Err(why) => {
                tracing::error!("runbook reload refused; the runbooks in force stay:\n{why}");
            }
        }
    }
}
