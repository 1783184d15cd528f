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
use airlock_proxy::ProxyContext;
use airlock_proxy::{backend::UpstreamTlsConfigs, cancel::CancelMap, metrics::ProxyMetrics};
use airlock_store::{SqliteStore, Store};

pub struct Listeners {
    pub postgres: TcpListener,
    pub http: TcpListener,
    /// OTLP/gRPC; `None` when `listen_otlp_grpc = "off"`.
    pub otlp_grpc: Option<TcpListener>,
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
        let otlp_grpc = match &config.gateway.listen_otlp_grpc {
            Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
                format!("listening for OTLP/gRPC on {addr} (set [gateway] listen_otlp_grpc to another address, or \"off\")")
            })?),
            None => None,
        };
        Ok(Listeners {
            postgres,
            http,
            otlp_grpc,
        })
    }
}

/// The store file inside a data directory.
pub fn store_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("airlock.db")
}

/// The telemetry database inside a data directory.
pub fn telemetry_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("telemetry").join("telemetry.db")
}

/// Opens the telemetry store and starts its writer and the receivers'
/// shared state.
fn start_telemetry(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(
    Arc<dyn airlock_store::telemetry::TelemetryStore>,
    airlock_telemetry::receiver::Receiver,
)> {
    let settings = &config.telemetry;
    let tokens = match &settings.ingest_tokens_env {
        Some(name) => Some(Arc::new(
            airlock_telemetry::receiver::IngestTokens::from_env(name)
                .map_err(anyhow::Error::msg)?,
        )),
        None => {
            check_open_ingest(config)?;
            None
        }
    };
    let path = telemetry_path(&config.gateway.data_dir);
    let store: Arc<dyn airlock_store::telemetry::TelemetryStore> = Arc::new(
        airlock_store::SqliteTelemetry::open(&path)
            .with_context(|| format!("opening the telemetry store {}", path.display()))?,
    );
    let ingest = airlock_telemetry::ingest::Ingest::start(
        store.clone(),
        airlock_telemetry::ingest::Options {
            max_pending: settings.max_pending.as_usize(),
            retain: settings.retain,
            thresholds: settings.thresholds.clone(),
            now_ns: Arc::new(move || clock.now_ms().saturating_mul(1_000_000)),
            max_size: Some(settings.max_size.bytes()),
            disk: Some((
                config.gateway.data_dir.clone(),
                settings.min_free_space.bytes(),
            )),
        },
    )
    .context("starting the telemetry writer")?;
    let receiver = airlock_telemetry::receiver::Receiver {
        ingest,
        tokens,
        limits: airlock_telemetry::convert::Limits::default(),
        max_request: settings.max_request_size.as_usize(),
    };
    Ok((store, receiver))
}

/// Ingest without a token is for loopback only: on any other address
/// anyone who reaches the port could forge deploy markers and fill the disk
/// the audit log lives on. Refuses to start otherwise.
fn check_open_ingest(config: &Config) -> anyhow::Result<()> {
    let listeners = [
        ("listen_http", Some(&config.gateway.listen_http)),
        ("listen_otlp_grpc", config.gateway.listen_otlp_grpc.as_ref()),
    ];
    for (key, addr) in listeners {
        let Some(addr) = addr else { continue };
        if !is_loopback(addr) {
            anyhow::bail!(
                "OTLP ingest would accept telemetry without a token on {addr} ([gateway] {key}), which is not a loopback address: anyone who reaches it could forge deploy markers and fill the gateway's disk. Set [telemetry] ingest_tokens_env to an environment variable holding the ingest token(s), or listen on 127.0.0.1 (for the gRPC receiver, listen_otlp_grpc = \"off\" also works)"
            );
        }
    }
    Ok(())
}

/// Whether a `host:port` listen address is on loopback only.
fn is_loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub fn open_store(data_dir: &Path) -> anyhow::Result<Arc<dyn Store>> {
    let path = store_path(data_dir);
    let store = SqliteStore::open(&path)
        .with_context(|| format!("opening the store {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Runs the gateway on the system clock until SIGINT or SIGTERM.
/// A second signal runs `on_force` and exits at once
/// ([`crate::shutdown_on_signals`]).
pub async fn run_until_signal(
    config: Config,
    listeners: Listeners,
    on_force: crate::OnForce,
) -> anyhow::Result<()> {
    let shutdown = crate::shutdown_on_signals(on_force);
    run(
        config,
        listeners,
        shutdown,
        Arc::new(airlock_access::SystemClock),
    )
    .await
}

/// `tls = "prefer"` and `"disable"` are allowed, for databases that cannot
/// speak TLS, but the login then may cross the network in plaintext (SCRAM
/// still hides the password; an impostor still gets the session): said once
/// at start for each such resource.
fn warn_plaintext_upstreams(config: &Config) {
    for r in config.resources.iter().filter(|r| r.tls.allows_plaintext()) {
        tracing::warn!(
            resource = %r.name,
            tls = %r.tls,
            "the upstream may be reached without TLS, so anyone on the network path can see the session and pose as the database; set tls = \"verify-full\" with the database's CA in ca_file (or \"require\")"
        );
    }
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
    warn_plaintext_upstreams(&config);
    let data_dir = config.gateway.data_dir.clone();
    create_private_dir(&data_dir)?;
    let store = open_store(&data_dir)?;
    let audit = open_audit(&config)?;
    let (audit_index, recorded_tokens) = start_audit(&config, &audit, shutdown.clone()).await?;
    let token_ledger = Arc::new(airlock_api::tokens::TokenLedger::new(recorded_tokens));
    {
        // Tokens issued while the gateway was down.
        let (ledger, store, audit) = (token_ledger.clone(), store.clone(), audit.clone());
        let n = tokio::task::spawn_blocking(move || ledger.record_new(store.as_ref(), &audit))
            .await?
            .context("recording API token issuance in the audit log")?;
        if n > 0 {
            tracing::info!(
                tokens = n,
                "recorded API tokens issued while the gateway was down"
            );
        }
    }
    let (telemetry, receiver) = start_telemetry(&config, clock.clone())?;
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
    let runbooks = crate::runbooks::load_at_start(&config)?;
    let (runbooks_tx, runbooks_rx) = watch::channel(Arc::new(runbooks));
    // Runbook http steps trust the system's CAs; redirects are never followed.
    let runner = airlock_runbook::Runner::with_http_client(
        reqwest::Client::builder().tls_backend_preconfigured(crate::client::tls_config(None)?),
    )?;
    // Runbook SQL logs in to this listener; a wildcard address is reached
    // on loopback.
    let postgres_local = match pg_addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            std::net::SocketAddr::from(([127, 0, 0, 1], pg_addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, pg_addr.port()))
        }
        _ => pg_addr,
    };
    let http_addr = listeners.http.local_addr()?;
    let metrics = Arc::new(ProxyMetrics::default());
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    registry.register_collector(Box::new(receiver.ingest.collector()));
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
    // Each checkpoint goes off the host too ([audit] anchors).
    let anchors = crate::anchors::Anchors::new(&config.audit.anchors, webhooks.clone());
    tokio::spawn(anchors.clone().run(audit.clone(), shutdown.clone()));
    let sessions = Arc::new(airlock_proxy::enforcer::SessionRegistry::default());
    let upstream_tls = UpstreamTlsConfigs::default();
    check_read_credentials(&config, &upstream_tls).await?;

    let http_tls_config = tls.http_server_config.clone();
    let ctx = Arc::new(ProxyContext {
        config: config_rx.clone(),
        store: store.clone(),
        tls: Some(Arc::new(tls)),
        cancel: CancelMap::default(),
        upstream_tls: upstream_tls.clone(),
        audit: audit.clone(),
        metrics,
        clock: clock.clone(),
        shutdown: shutdown.clone(),
        sessions: sessions.clone(),
        classifier: airlock_sql::Classifier::new(airlock_sql::ClassifierOptions {
            max_statement_bytes: config.gateway.max_statement_size.as_usize(),
            ..airlock_sql::ClassifierOptions::default()
        }),
        catalogs: Arc::default(),
        refusals: Default::default(),
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
        upstream_tls: upstream_tls.clone(),
        audit: audit.clone(),
        audit_index,
        tokens: token_ledger.clone(),
        telemetry,
        runbooks: airlock_api::runbooks::RunbookContext {
            catalog: runbooks_rx,
            runner,
            postgres_local,
        },
    })
    .merge(airlock_telemetry::otlp_http::router(receiver.clone()));
    {
        // Thresholds follow policy reloads.
        let (mut config_rx, ingest, shutdown) =
            (config_rx.clone(), receiver.ingest.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = config_rx.changed() => if changed.is_err() { return },
                    _ = shutdown.cancelled() => return,
                }
                let thresholds = config_rx.borrow_and_update().telemetry.thresholds.clone();
                ingest.set_thresholds(thresholds);
            }
        });
    }
    let grpc = listeners.otlp_grpc.map(|listener| {
        serve_grpc(
            listener,
            receiver,
            config.gateway.http_tls.then(|| grpc_tls(&http_tls_config)),
            shutdown.clone(),
        )
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
        audit.clone(),
        token_ledger,
        shutdown.clone(),
    ));
    tokio::spawn(crate::runbooks::watch(
        config_rx.clone(),
        runbooks_tx,
        audit.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(crate::reload::watch(
        config_tx,
        upstream_tls.clone(),
        webhooks,
        audit.clone(),
        shutdown.clone(),
    ));

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
    if let Some(grpc) = grpc {
        match grpc.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the OTLP/gRPC server failed"),
            Err(e) => tracing::warn!(error = %e, "the OTLP/gRPC server task failed"),
        }
    }
    proxy.await.context("the PostgreSQL listener task failed")?;
    drop(ctx);
    // Every session has written its end: seal the chain.
    let closing = audit.clone();
    tokio::task::spawn_blocking(move || {
        closing.append(&[airlock_audit::Event::GatewayStopped {}])?;
        closing.close()
    })
    .await?
    .context("closing the audit log")?;
    // The closing checkpoint is the one a copy of the log at rest must end
    // with (webhooks have stopped by now; stdout and syslog still take it).
    // Bounded: stdout may be a pipe nobody reads any more.
    if tokio::time::timeout(std::time::Duration::from_secs(2), anchors.send_last(&audit))
        .await
        .is_err()
    {
        tracing::warn!("the closing audit anchor could not be sent within 2s (is stdout read?)");
    }
    http_result.context("the HTTP server failed")?;
    tracing::info!("airlock gateway stopped");
    Ok(())
}

/// The HTTP side's TLS settings, speaking HTTP/2 (gRPC needs it).
fn grpc_tls(http: &Arc<rustls::ServerConfig>) -> Arc<rustls::ServerConfig> {
    let mut config = (**http).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Serves OTLP/gRPC on `listener` until shutdown, over TLS when given.
fn serve_grpc(
    listener: TcpListener,
    receiver: airlock_telemetry::receiver::Receiver,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let router = airlock_telemetry::otlp_grpc::router(receiver);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(otlp_grpc = %addr, tls = tls.is_some(), "OTLP/gRPC listening");
    }
    tokio::spawn(async move {
        let stopped = {
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        };
        match tls {
            Some(tls) => {
                let listener =
                    airlock_api::tls_listener::TlsListener::new(listener, tls, shutdown)?;
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .await
            }
            None => {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .await
            }
        }
    })
}

/// Opens the audit log in `data_dir/audit` with the checkpoint key from
/// `data_dir/keys` (created on first start).
pub fn open_audit(config: &Config) -> anyhow::Result<airlock_audit::AuditLog> {
    let data_dir = &config.gateway.data_dir;
    let key_path = airlock_audit::signing_key_path(data_dir);
    if let Some(dir) = key_path.parent() {
        create_private_dir(dir)?;
    }
    let key = airlock_audit::SigningKey::load_or_create(&key_path)?;
    let a = &config.audit;
    let options = airlock_audit::Options {
        fsync: match a.fsync {
            airlock_config::AuditFsync::Always => airlock_audit::FsyncMode::Always,
            airlock_config::AuditFsync::Batched => {
                airlock_audit::FsyncMode::Batched(airlock_config::AuditSettings::FSYNC_WINDOW)
            }
            airlock_config::AuditFsync::Off => airlock_audit::FsyncMode::Off,
        },
        checkpoint_every: a.checkpoint_every,
        checkpoint_interval: a.checkpoint_interval,
        segment_bytes: a.segment_size.0,
        ..airlock_audit::Options::default()
    };
    let dir = airlock_audit::audit_dir(data_dir);
    let log = airlock_audit::AuditLog::open(&dir, key, options)
        .with_context(|| format!("opening the audit log in {}", dir.display()))?;
    Ok(log)
}

/// Announces the start in the log, brings the index up to date, ends in the
/// log the sessions an earlier run left open, and starts the indexer and
/// retention. Returns the index for the API's readers and the ids of the
/// API tokens whose issuance the log holds.
async fn start_audit(
    config: &Config,
    audit: &airlock_audit::AuditLog,
    shutdown: CancellationToken,
) -> anyhow::Result<(
    Arc<std::sync::Mutex<airlock_audit::index::Index>>,
    std::collections::HashSet<String>,
)> {
    let data_dir = config.gateway.data_dir.clone();
    let mut version = env!("CARGO_PKG_VERSION").to_owned();
    if !airlock_proxy::audit::RECORDS {
        // A benchmark baseline build (bench/audit.sh): say so everywhere.
        version.push_str("+bench-no-audit");
        tracing::error!("THIS BUILD DOES NOT RECORD STATEMENTS IN THE AUDIT LOG (feature bench-no-audit): for benchmarks only, never deploy it");
    }
    audit
        .append(&[airlock_audit::Event::GatewayStarted {
            version,
            key: audit.key_id().to_owned(),
        }])
        .context("writing to the audit log")?;
    let index_path = airlock_audit::index_path(&data_dir);
    let dir = audit.dir().to_path_buf();
    let (mut index, mut tailer) = {
        let (index_path, dir) = (index_path.clone(), dir.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut index = airlock_audit::index::Index::open(&index_path, &dir)?;
            let mut tailer = index.tailer()?;
            let n = index.catch_up(&mut tailer)?;
            if n > 0 {
                tracing::info!(records = n, "audit index brought up to date");
            }
            Ok((index, tailer))
        })
        .await??
    };
    let orphans = index.open_sessions()?;
    if !orphans.is_empty() {
        let ends: Vec<_> = orphans
            .iter()
            .map(|id| airlock_audit::Event::session_end_uncounted(id, "gateway restarted"))
            .collect();
        audit.append(&ends).context("writing to the audit log")?;
        tracing::warn!(
            sessions = orphans.len(),
            "ended sessions left open by an earlier run"
        );
    }
    index.catch_up(&mut tailer)?;
    let recorded_tokens = airlock_api::tokens::TokenLedger::recorded_in(&index.records(
        &airlock_audit::index::RecordQuery {
            kinds: vec!["access".into()],
            grep: Some("was issued for".into()),
            limit: 1_000_000,
            ..Default::default()
        },
    )?);
    // The indexer: its own connection, following the log.
    let mut written = audit.written();
    let stop = shutdown.clone();
    std::thread::Builder::new()
        .name("airlock-audit-index".into())
        .spawn(move || loop {
            if let Err(e) = index.catch_up(&mut tailer) {
                tracing::warn!(error = %e, "indexing the audit log failed; retrying");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            if stop.is_cancelled() {
                return;
            }
            // At most ten catch-ups a second (each is one SQLite commit),
            // and none while nothing is written (but a check twice a second).
            std::thread::sleep(std::time::Duration::from_millis(100));
            let deadline = std::time::Instant::now() + std::time::Duration::from_millis(400);
            while !written.has_changed().unwrap_or(true)
                && std::time::Instant::now() < deadline
                && !stop.is_cancelled()
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            written.mark_unchanged();
        })
        .context("starting the audit indexer")?;
    if let Some(retain) = config.audit.retain {
        let audit = audit.clone();
        let text = airlock_config::format_duration(retain);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                let (audit, text) = (audit.clone(), text.clone());
                match tokio::task::spawn_blocking(move || audit.apply_retention(retain, &text))
                    .await
                {
                    Ok(Ok(removed)) if !removed.is_empty() => {
                        tracing::info!(
                            segments = removed.len(),
                            through = removed.last().map_or(0, |r| r.last_seq),
                            "audit retention removed old segments"
                        )
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "audit retention failed"),
                    Err(e) => tracing::warn!(error = %e, "audit retention failed"),
                }
            }
        });
    }
    let reader = airlock_audit::index::Index::open(&index_path, &dir)?;
    Ok((Arc::new(std::sync::Mutex::new(reader)), recorded_tokens))
}

/// Creates the data directory 0700, or, when it existed, takes group and
/// other permissions off it and everything in it (directories 0700 at most,
/// files 0600): it holds token hashes, keys and the audit log.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    }
    make_private(dir).with_context(|| format!("restricting the permissions of {}", dir.display()))
}

/// Clears the group and other bits of `path` and, for a directory, of what
/// it holds. Symbolic links are left alone (and not followed).
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777;
    let private = mode & if meta.is_dir() { 0o700 } else { 0o600 };
    if private != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(private))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            make_private(&entry?.path())?;
        }
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
    audit: airlock_audit::AuditLog,
    tokens: Arc<airlock_api::tokens::TokenLedger>,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        {
            // Tokens issued (offline) since the last tick.
            let (tokens, s, a) = (tokens.clone(), store.clone(), audit.clone());
            match tokio::task::spawn_blocking(move || tokens.record_new(s.as_ref(), &a)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "recording API token issuance failed"),
                Err(e) => tracing::warn!(error = %e, "recording API token issuance failed"),
            }
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
            let event = airlock_audit::Event::Access {
                event: kind.to_owned(),
                actor: "airlock".to_owned(),
                text: text.clone(),
                data: data.clone(),
            };
            if let Err(e) = audit.append(&[event]) {
                tracing::error!(event = kind, error = %e, "an expiry could not be written to the audit log");
            }
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

/// The database layer of read-only: each resource's read credential must
/// not be able to write (`airlock_proxy::catalog`). One that can stops the
/// start, unless the resource allows it (then a warning). An upstream that
/// cannot be reached now is checked again before its first read session.
async fn check_read_credentials(config: &Config, tls: &UpstreamTlsConfigs) -> anyhow::Result<()> {
    let mut checks = tokio::task::JoinSet::new();
    for r in config.resources.iter().filter(|r| r.read.is_some()) {
        if r.read_credential_can_write {
            tracing::warn!(resource = %r.name, "read_credential_can_write = \"allow\": read sessions on this resource rely on the classifier and the watch alone; the database would not stop a write");
            continue;
        }
        let (r, tls, timeout) = (r.clone(), tls.clone(), config.gateway.connect_timeout);
        checks.spawn(async move {
            let found = airlock_proxy::catalog::check_read_credential(&r, &tls, timeout).await;
            (r.name, found)
        });
    }
    while let Some(done) = checks.join_next().await {
        let (name, found) = done.context("checking a read credential")?;
        match found {
            Ok(problems) if problems.is_empty() => {}
            Ok(problems) => anyhow::bail!(
                "resource \"{name}\": its read credential can write: {}; give it SELECT only (or, to accept the risk, set read_credential_can_write = \"allow\" on the resource)",
                problems.join("; ")
            ),
            Err(e) => {
                tracing::warn!(resource = %name, error = %e, "could not check the read credential now; it is checked again before the first read session");
            }
        }
    }
    Ok(())
}
