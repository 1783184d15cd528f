//! `airlock serve`: wires the config, store, TLS material, the PostgreSQL
//! listener and the HTTP API together and runs them until shutdown.
//!
//! Listeners are bound by the caller and passed in, so tests start exactly
//! this server in-process on port 0.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use airlock_access::Clock;
use airlock_config::Config;
use airlock_proxy::{backend::UpstreamTlsConfigs, cancel::CancelMap, metrics::ProxyMetrics};
use airlock_proxy::{recorder::Recorder, ProxyContext};
use airlock_store::{SqliteStore, Store};

pub struct Listeners {
    pub postgres: TcpListener,
    pub http: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let postgres = TcpListener::bind(&config.gateway.listen_postgres)
            .await
            .with_context(|| {
                format!(
                    "listening for PostgreSQL clients on {}",
                    config.gateway.listen_postgres
                )
            })?;
        let http = TcpListener::bind(&config.gateway.listen_http)
            .await
            .with_context(|| format!("listening for HTTP on {}", config.gateway.listen_http))?;
        Ok(Listeners { postgres, http })
    }
}

/// The store file inside a data directory.
pub fn store_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("airlock.db")
}

pub fn open_store(data_dir: &Path) -> anyhow::Result<Arc<dyn Store>> {
    let path = store_path(data_dir);
    let store = SqliteStore::open(&path)
        .with_context(|| format!("opening the store {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Runs the gateway on the system clock until SIGINT or SIGTERM.
pub async fn run_until_signal(config: Config, listeners: Listeners) -> anyhow::Result<()> {
    let shutdown = crate::shutdown_on_signals();
    run(
        config,
        listeners,
        shutdown,
        Arc::new(airlock_access::SystemClock),
    )
    .await
}

/// Runs the gateway until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    config
        .check_secrets()
        .context("the gateway cannot start without its upstream secrets")?;
    if let Err(problems) = config.check_webhook_secrets() {
        anyhow::bail!(
            "the gateway cannot start without its webhook secrets:\n  {}",
            problems.join("\n  ")
        );
    }
    let data_dir = config.gateway.data_dir.clone();
    create_private_dir(&data_dir)?;
    let store = open_store(&data_dir)?;
    let orphans = store.close_orphan_sessions(clock.now_ms())?;
    if orphans > 0 {
        tracing::warn!(orphans, "closed sessions left open by an earlier run");
    }
    let tls = airlock_proxy::tls::load_or_generate(
        &data_dir,
        config.gateway.tls_cert.as_deref(),
        config.gateway.tls_key.as_deref(),
        std::slice::from_ref(&config.gateway.public_host),
    )
    .context("setting up the gateway's TLS certificate")?;
    let ca_pem: Option<Arc<str>> = match &tls.ca_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .into(),
        ),
        None => None,
    };

    let pg_addr = listeners.postgres.local_addr()?;
    let http_addr = listeners.http.local_addr()?;
    let (recorder, recorder_thread) = Recorder::start(store.clone());
    let metrics = Arc::new(ProxyMetrics::default());
    let mut registry = prometheus_client::registry::Registry::with_prefix("");
    metrics.register(&mut registry);
    let (config_tx, config_rx) = watch::channel(Arc::new(config.clone()));
    // Always running, so a reload can add webhooks.
    let webhooks = {
        Some(
            airlock_webhook::Dispatcher::start(
                webhook_targets(&config),
                airlock_webhook::Options {
                    clock: {
                        let clock = clock.clone();
                        Arc::new(move || clock.now_ms())
                    },
                    ..airlock_webhook::Options::default()
                },
                shutdown.clone(),
            )
            .context("starting webhook delivery")?,
        )
    };
    let sessions = Arc::new(airlock_proxy::enforcer::SessionRegistry::default());
    let upstream_tls = UpstreamTlsConfigs::default();

    let http_tls_config = tls.http_server_config.clone();
    let ctx = Arc::new(ProxyContext {
        config: config_rx.clone(),
        store: store.clone(),
        tls: Some(Arc::new(tls)),
        cancel: CancelMap::default(),
        upstream_tls: upstream_tls.clone(),
        recorder,
        metrics,
        clock: clock.clone(),
        shutdown: shutdown.clone(),
        sessions: sessions.clone(),
        classifier: airlock_sql::Classifier::new(airlock_sql::ClassifierOptions {
            max_statement_bytes: config.gateway.max_statement_size.as_usize(),
            ..airlock_sql::ClassifierOptions::default()
        }),
    });
    let api = airlock_api::router(airlock_api::ApiState {
        config: config_rx.clone(),
        store: store.clone(),
        clock: clock.clone(),
        registry: Arc::new(registry),
        ca_pem,
        postgres_endpoint: (config.gateway.public_host.clone(), pg_addr.port()),
        webhooks: webhooks.clone(),
        sessions: sessions.clone(),
        upstream_tls,
    });

    tokio::spawn(airlock_proxy::enforcer::run(
        sessions,
        config_rx.clone(),
        store.clone(),
        clock.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(sweep_expiries(
        store.clone(),
        clock.clone(),
        webhooks.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(crate::reload::watch(config_tx, webhooks, shutdown.clone()));

    tokio::spawn(purge_expired_credentials(
        store.clone(),
        clock.clone(),
        shutdown.clone(),
    ));
    tracing::info!(postgres = %pg_addr, http = %http_addr, https = config.gateway.http_tls, data_dir = %data_dir.display(), "airlock gateway listening");
    let proxy = tokio::spawn(airlock_proxy::server::serve(
        listeners.postgres,
        ctx.clone(),
    ));
    let http_shutdown = shutdown.clone();
    let stopped = async move { http_shutdown.cancelled().await };
    let http_result = if config.gateway.http_tls {
        let tls = airlock_api::tls_listener::TlsListener::new(
            listeners.http,
            http_tls_config,
            shutdown.clone(),
        )?;
        axum::serve(tls, api).with_graceful_shutdown(stopped).await
    } else {
        axum::serve(listeners.http, api)
            .with_graceful_shutdown(stopped)
            .await
    };
    // Whatever ended the HTTP side ends the gateway.
    shutdown.cancel();
    proxy.await.context("the PostgreSQL listener task failed")?;
    // The recorder thread drains once every session has dropped its sender.
    drop(ctx);
    tokio::task::spawn_blocking(move || recorder_thread.join()).await?;
    http_result.context("the HTTP server failed")?;
    tracing::info!("airlock gateway stopped");
    Ok(())
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    }
    Ok(())
}

/// Expired session credentials are kept for a day (so a client holding one
/// is told "expired", not "wrong"), then deleted.
async fn purge_expired_credentials(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    const KEEP_EXPIRED_MS: i64 = 24 * 3600 * 1000;
    let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let before = clock.now_ms() - KEEP_EXPIRED_MS;
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.purge_expired_credentials(before)).await {
            Ok(Ok(n)) if n > 0 => {
                tracing::info!(purged = n, "deleted long-expired session credentials")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "purging expired credentials failed"),
            Err(e) => tracing::warn!(error = %e, "purging expired credentials failed"),
        }
    }
}

/// Webhook targets from the policy; secrets were checked at start or reload.
pub(crate) fn webhook_targets(config: &Config) -> Vec<airlock_webhook::Target> {
    config
        .webhooks
        .iter()
        .filter_map(|w| {
            let secret = w.secret().ok()?;
            Some(airlock_webhook::Target {
                url: w.url.clone(),
                events: w.events.clone(),
                secret: secret.expose().to_owned(),
            })
        })
        .collect()
}

/// Once a second: pending requests past their expiry become expired, and
/// grants that ran out are announced (each once). Live sessions are ended by
/// the enforcer, not here.
async fn sweep_expiries(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    webhooks: Option<airlock_webhook::Dispatcher>,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let now = clock.now_ms();
        let s = store.clone();
        let swept = tokio::task::spawn_blocking(move || {
            Ok::<_, airlock_store::StoreError>((
                s.expire_requests(now)?,
                s.take_expired_grants(now)?,
            ))
        })
        .await;
        let (requests, grants) = match swept {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "sweeping expired requests and grants failed");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "sweeping expired requests and grants failed");
                continue;
            }
        };
        let announce = |kind: &str, text: String, data: serde_json::Value| {
            tracing::info!(event = kind, "{text}");
            if let Some(w) = &webhooks {
                w.emit(airlock_webhook::Event::new(kind, text, now, data));
            }
        };
        for r in requests {
            announce(
                "request.expired",
                format!(
                    "request {} of {} ({} on {}) expired without enough approvals ({} of {})",
                    r.id,
                    r.user,
                    r.access,
                    r.resource,
                    r.approvals.len(),
                    r.approvals_required
                ),
                serde_json::json!({ "request": r }),
            );
        }
        for g in grants {
            announce(
                "grant.expired",
                format!(
                    "grant {} ({} on {} for {}) expired at {}",
                    g.id,
                    g.access,
                    g.resource,
                    g.user,
                    airlock_access::format_ms(g.expires_ms)
                ),
                serde_json::json!({ "grant": g }),
            );
        }
    }
}
