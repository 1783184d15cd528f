//! One client connection's life: hello, login, upstream connection, relay,
//! and its record.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU8;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::time::Instant;

use airlock_pgwire::messages::{BackendKeyData, BackendMessage, ReadyForQuery};
use airlock_pgwire::sqlstate;

use crate::audit::SessionLog;
use crate::backend;
use crate::cancel::UpstreamCancel;
use crate::error::UserFacingError;
use crate::frontend::{self, FrontendError, Hello};
use crate::gate::Gate;
use crate::metrics::{OutcomeLabels, SessionLabels};
use crate::relay::{self, RelayLimits};
use crate::results::{Expectations, MaskCatalog, MaskContext, ResultFilter};
use crate::ProxyContext;

fn outcome(ctx: &ProxyContext, outcome: &'static str) {
    ctx.metrics
        .connections
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
}

/// Serves one accepted connection to the end. Never panics the listener:
/// every failure is answered, logged and counted here.
pub async fn serve_connection(
    ctx: Arc<ProxyContext>,
    tcp: TcpStream,
    peer: SocketAddr,
    admission: crate::server::Admission,
) {
    // Like PostgreSQL's `authentication_timeout`: a connection that has
    // not logged in by then is closed.
    let login_timeout = ctx.config.borrow().gateway.login_timeout;
    let login = async {
        let hello = frontend::hello(tcp, &ctx).await?;
        match hello {
            Hello::Cancel(c) => {
                crate::cancel_request::forward(&ctx, c).await;
                Ok(None)
            }
            Hello::Startup {
                mut stream,
                mut buf,
                startup,
            } => {
                let config = ctx.config.borrow().clone();
                let auth =
                    frontend::authenticate(&mut stream, &mut buf, &startup, &config, &ctx, peer)
                        .await?;
                Ok::<_, FrontendError>(Some((stream, buf, startup, config, auth)))
            }
        }
    };
    // Under a full unauthenticated quota the longest-waiting connection
    // gives its place to a new one.
    let evicted = admission.unauthenticated.evicted.clone();
    let login = async {
        tokio::select! {
            r = login => Some(r),
            _ = evicted.cancelled() => None,
        }
    };
    let (mut stream, buf, startup, config, auth) = match tokio::time::timeout(login_timeout, login)
        .await
    {
        Ok(None) => {
            outcome(&ctx, "login_evicted");
            tracing::info!(%peer, "closed a connection that was still logging in: the max_unauthenticated quota was full and a newer connection took its place");
            return;
        }
        Err(_) => {
            outcome(&ctx, "login_timeout");
            tracing::info!(%peer, "closed a connection that did not log in within {login_timeout:?}");
            return;
        }
        Ok(Some(Ok(None))) => {
            outcome(&ctx, "cancel");
            return;
        }
        Ok(Some(Ok(Some(v)))) => v,
        Ok(Some(Err(e))) => {
            let label = match &e {
                FrontendError::LoginFailed { .. } => "bad_password",
                FrontendError::Refused(u) if u.code == sqlstate::INVALID_PASSWORD => "bad_password",
                FrontendError::Refused(_) => "refused",
                FrontendError::Read(_) => "client_error",
                FrontendError::Tls(_) => "tls_error",
                FrontendError::Write(_) => "client_error",
            };
            outcome(&ctx, label);
            tracing::info!(%peer, error = %e, "connection refused before login");
            return;
        }
    };

    // Logged in: from here on the connection holds a client slot instead
    // of an unauthenticated place.
    drop(admission.unauthenticated);
    let Ok(_slot) = admission.slots.try_acquire_owned() else {
        outcome(&ctx, "over_limit");
        let limit = admission.limit;
        tracing::warn!(%peer, limit, "refusing a login: at max_client_connections");
        let u = UserFacingError::fatal(
            sqlstate::TOO_MANY_CONNECTIONS,
            format!("the Airlock gateway is at its limit of {limit} client connections"),
        )
        .hint("try again shortly; the platform team can raise [gateway] max_client_connections");
        let _ = frontend::send(
            &mut stream,
            &[BackendMessage::ErrorResponse(u.to_response())],
        )
        .await;
        return;
    };
    let Some(resource) = config.resource(&auth.resource).cloned() else {
        return; // authenticate checked it; a reload cannot race within one config snapshot
    };
    if let Some((_, enc)) = startup.params.iter().find(|(k, v)| {
        k.eq_ignore_ascii_case("client_encoding") && airlock_sql::settings::is_unsafe_encoding(v)
    }) {
        outcome(&ctx, "refused");
        let u = UserFacingError::fatal(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!("Airlock does not accept client_encoding {enc}"),
        )
        .detail("in this encoding a multi-byte character can contain a quote or backslash byte, so Airlock could read a statement differently from PostgreSQL")
        .hint("connect with client_encoding UTF8 (PGCLIENTENCODING=UTF8)");
        refuse(&ctx, &mut stream, &startup, peer, &u).await;
        return;
    }
    // Guardrails and masking for this user's roles, fixed for the session.
    let roles = config
        .user(&auth.user)
        .map(|u| u.roles.clone())
        .unwrap_or_default();
    let rails = resource.guardrails_for(&roles);
    let mask_rules = resource.masking_for(&roles);
    let mut settings = Vec::new();
    if let Some(t) = rails.statement_timeout {
        // A startup parameter is the session default: RESET returns to it.
        settings.push((
            "statement_timeout".to_owned(),
            format!("{}ms", t.as_millis()),
        ));
    }
    let limits = crate::gate::ReadLimits::of(&config.gateway);
    let client_settings =
        match crate::startup::client_settings(&startup.params, auth.access, &rails, &limits) {
            Ok(s) => s,
            Err(u) => {
                outcome(&ctx, "refused");
                refuse(&ctx, &mut stream, &startup, peer, &u).await;
                return;
            }
        };
    // A read session's default idle-transaction timeout, which RESET returns
    // to and SET may only lower; a lower one asked for at startup (checked
    // above) stands instead.
    let asked = client_settings
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("idle_in_transaction_session_timeout"));
    if auth.access == airlock_config::Access::Read && !asked {
        settings.push((
            "idle_in_transaction_session_timeout".to_owned(),
            format!("{}ms", limits.idle_in_transaction.as_millis()),
        ));
    }
    let upstream = match backend::connect(
        &resource,
        auth.access,
        &client_settings,
        &settings,
        &ctx.upstream_tls,
        config.gateway.connect_timeout,
    )
    .await
    {
        Ok(u) => u,
        Err(e) => {
            outcome(&ctx, "upstream_error");
            tracing::warn!(%peer, user = %auth.user, resource = %auth.resource, error = %e, "upstream login failed");
            // The client's text never holds the upstream's address; the
            // audit record keeps the whole error for the operator.
            let u = e.to_user_facing(&auth.resource);
            refuse_with(
                &ctx,
                &mut stream,
                &startup,
                peer,
                &u,
                &format!("upstream login failed: {e}"),
            )
            .await;
            return;
        }
    };
    let mut upstream = upstream;
    // What the upstream reported at login must already hold (a read
    // credential that is a superuser, a read-only default that did not
    // take), and every later report is checked in the relay.
    let watch = match crate::parameters::ParameterWatch::new(auth.access, &upstream.parameters) {
        Ok(w) => w,
        Err(why) => {
            outcome(&ctx, "refused");
            tracing::warn!(%peer, user = %auth.user, resource = %auth.resource, why = %why, "session refused: the upstream session is not protected");
            let u = UserFacingError::fatal(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!("Airlock refused the session on \"{}\": {why}", auth.resource),
            )
            .hint("tell the gateway's operator: the resource's credential or server settings do not give the protection its access level needs");
            refuse(&ctx, &mut stream, &startup, peer, &u).await;
            return;
        }
    };
    // Read sessions decide function calls against the upstream's catalog.
    let functions = if auth.access == airlock_config::Access::Read {
        match ctx.catalogs.read_session(&resource, &mut upstream).await {
            Ok(f) => Some(f),
            Err(e) => {
                // Fail closed: a read credential that can write, or no
                // catalog to decide function calls with.
                let u = match &e {
                    crate::catalog::ReadSetupError::CanWrite(_) => {
                        outcome(&ctx, "refused");
                        tracing::error!(resource = %auth.resource, error = %e, "read sessions refused: the resource's read credential can write");
                        UserFacingError::fatal(
                            sqlstate::INSUFFICIENT_PRIVILEGE,
                            format!("Airlock refuses read sessions on \"{}\": its read credential can write", auth.resource),
                        )
                        .hint("tell the gateway's operator: give the read credential SELECT only (the gateway's log says what it can do)")
                    }
                    crate::catalog::ReadSetupError::Query(_) => {
                        outcome(&ctx, "upstream_error");
                        tracing::warn!(%peer, user = %auth.user, resource = %auth.resource, error = %e, "reading the catalog for a read session failed");
                        UserFacingError::fatal(
                            sqlstate::CONNECTION_FAILURE,
                            format!("Airlock could not read the catalog of \"{}\" for a read session", auth.resource),
                        )
                        .hint("read sessions need to read pg_catalog with the resource's read credential; tell the gateway's operator")
                    }
                };
                let reason = format!("{}: {e}", u.message);
                refuse_with(&ctx, &mut stream, &startup, peer, &u, &reason).await;
                return;
            }
        }
    } else {
        None
    };
    let mask = match mask_rules {
        None => None,
        Some(rules) => match load_mask_catalog(&mut upstream, &rules).await {
            Ok(catalog) => Some(MaskContext {
                rules,
                catalog: catalog.columns,
                relations: Arc::new(catalog.relations),
            }),
            Err(e) => {
                // Fail closed: without the catalog an aliased column would leak.
                outcome(&ctx, "upstream_error");
                tracing::warn!(%peer, user = %auth.user, resource = %auth.resource, error = %e, "reading the masking catalog failed");
                // The error can be the upstream's own words or a broken
                // connection: the operator's, in the log and audit record.
                let u = UserFacingError::fatal(
                    sqlstate::CONNECTION_FAILURE,
                    format!("Airlock could not prepare masking for \"{}\"", auth.resource),
                )
                .hint("masking needs to read pg_catalog.pg_attribute with the resource's credential; tell the gateway's operator (the gateway's log says why)");
                refuse_with(
                    &ctx,
                    &mut stream,
                    &startup,
                    peer,
                    &u,
                    &format!("reading the masking catalog failed: {e}"),
                )
                .await;
                return;
            }
        },
    };
    // The session's first record, before the client can send anything.
    let session_id = airlock_store::new_id("sess");
    let break_glass = auth.grant.kind == airlock_access::GrantKind::BreakGlass;
    let end_ms = auth
        .grant
        .expires_ms
        .map_or(auth.credential.expires_ms, |g| {
            g.min(auth.credential.expires_ms)
        });
    let start = airlock_audit::Event::SessionStart(airlock_audit::SessionStart {
        session: session_id.clone(),
        user: auth.user.clone(),
        resource: auth.resource.clone(),
        access: auth.access.as_str().to_owned(),
        grant: auth.grant.id.clone(),
        break_glass,
        credential: auth.credential.id.clone(),
        client_addr: peer.to_string(),
        tls: stream.is_tls(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        until_ms: Some(end_ms),
    });
    if let Err(e) = ctx.audit.append(&[start]) {
        outcome(&ctx, "audit_failed");
        tracing::error!(%peer, user = %auth.user, resource = %auth.resource, error = %e, "session refused: its audit record could not be written");
        let mut u = crate::audit::refusal(&e, &auth.resource);
        u.severity = airlock_pgwire::messages::Severity::Fatal;
        u.message = format!(
            "Airlock refused the session on \"{}\": its audit record could not be written",
            auth.resource
        );
        let _ = frontend::send(
            &mut stream,
            &[BackendMessage::ErrorResponse(u.to_response())],
        )
        .await;
        return;
    }
    outcome(&ctx, "session");

    let (key, _cancel_guard) = ctx.cancel.register(UpstreamCancel {
        resource: auth.resource.clone(),
        host: resource.host.clone(),
        port: resource.port,
        key: upstream.key,
    });

    // The client sees what the upstream reported about itself, and our key.
    let mut out = BytesMut::new();
    for p in &upstream.parameters {
        BackendMessage::ParameterStatus(p.clone()).encode(&mut out);
    }
    for n in &upstream.notices {
        n.encode(&mut out);
    }
    BackendMessage::BackendKeyData(BackendKeyData {
        process_id: key.process_id,
        secret_key: key.secret_key,
    })
    .encode(&mut out);
    BackendMessage::ReadyForQuery(ReadyForQuery {
        status: upstream.status,
    })
    .encode(&mut out);
    if let Err(e) = write_all_flush(&mut stream, &out).await {
        tracing::info!(%peer, error = %e, "client left during session start");
        let end = airlock_audit::Event::session_end_uncounted(
            &session_id,
            format!("client left during session start: {e}"),
        );
        if let Err(e) = ctx.audit.append(&[end]) {
            tracing::error!(session = %session_id, error = %e, "the session's end could not be written to the audit log");
        }
        return;
    }

    let labels = SessionLabels {
        resource: auth.resource.clone(),
        access: auth.access.as_str(),
    };
    ctx.metrics.sessions.get_or_create(&labels).inc();
    let active = ctx.metrics.sessions_active.get_or_create(&labels).clone();
    active.inc();
    let started = Instant::now();
    tracing::info!(
        session = %session_id, user = %auth.user, resource = %auth.resource,
        access = %auth.access, grant = %auth.grant.id, grant_kind = %auth.grant.kind,
        break_glass, %peer, tls = stream.is_tls(),
        upstream_tls = upstream.tls, "session started"
    );

    // The session ends when its credential does (the credential never
    // outlives the grant behind it), or when the enforcer finds its grant
    // ended: expired, revoked, or no longer allowed by a reloaded policy.
    let (_registration, stop) =
        ctx.sessions
            .register(&session_id, auth.grant.clone(), &auth.credential.id);
    let remaining_ms = (end_ms - ctx.clock.now_ms()).max(0) as u64;
    // When the grant is what ends the session, the goodbye names the grant.
    let deadline_message = match auth.grant.expires_ms {
        Some(g) if g <= auth.credential.expires_ms => Some(
            airlock_access::Denial::GrantEnded {
                grant_id: auth.grant.id.clone(),
                resource: auth.grant.resource.clone(),
                access: auth.grant.access,
                end: airlock_access::GrantEnd::Expired { at_ms: g },
            }
            .to_string(),
        ),
        _ => None,
    };
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(0u64);
    let limits = RelayLimits {
        max_message: config.gateway.max_message_size.as_usize(),
        deadline: Some(Instant::now() + Duration::from_millis(remaining_ms)),
        deadline_message,
        stop: Some(stop),
        watch,
        ready: functions.is_some().then_some(ready_tx),
    };
    let mut log = SessionLog::new(ctx.audit.clone(), session_id.clone());
    let txn_status = AtomicU8::new(upstream.status.byte());
    let mut gate = Gate::new(
        ctx.classifier.clone(),
        auth.access,
        auth.resource.clone(),
        ctx.metrics.clone(),
    )
    .with_guardrails(rails.clone());
    if let Some(functions) = functions {
        gate = gate.with_read_checks(
            functions,
            ready_rx,
            crate::gate::ReadLimits::of(&config.gateway),
        );
    }
    let mut filter = if mask.is_some() || rails.max_rows.is_some() {
        let expect = Arc::new(Expectations::default());
        let (paused_tx, paused_rx) = tokio::sync::watch::channel(false);
        gate = gate.with_results(expect.clone(), mask.is_some(), paused_rx);
        if let Some(m) = mask
            .as_ref()
            .filter(|m| m.rules.strict && auth.access == airlock_config::Access::Read)
        {
            gate = gate.with_strict_masking(m.rules.columns.clone(), m.relations.clone());
        }
        // Cancels a statement whose result was cut. The client's next
        // messages wait until PostgreSQL has taken the cancel (it closes the
        // cancel connection after signalling the backend): a backend that
        // already finished is then idle and ignores it, and no later
        // statement can be hit.
        let cancel: Arc<dyn Fn() + Send + Sync> = {
            let tls = ctx.upstream_tls.clone();
            let resource = resource.clone();
            let key = upstream.key;
            let paused = Arc::new(paused_tx);
            Arc::new(move || {
                let (tls, resource, paused) = (tls.clone(), resource.clone(), paused.clone());
                paused.send_replace(true);
                tokio::spawn(async move {
                    if let Err(e) = crate::cancel_request::send(&resource, &tls, key).await {
                        tracing::warn!(resource = %resource.name, error = %e, "cancelling a statement past max_rows failed");
                    }
                    paused.send_replace(false);
                });
            })
        };
        Some(ResultFilter::new(
            expect,
            auth.resource.clone(),
            rails.max_rows,
            mask,
            Some(cancel),
        ))
    } else {
        None
    };
    let mut tracker = crate::completion::Tracker::new(
        gate.completions(),
        log.deferred(),
        ctx.audit.clone(),
        session_id.clone(),
        config.audit.replay_rows,
    );
    let (reason, stats) = relay::relay(
        stream,
        buf,
        upstream.stream,
        upstream.read_buf,
        limits,
        ctx.shutdown.clone(),
        &mut log,
        &mut gate,
        filter.as_mut(),
        &mut tracker,
        &txn_status,
    )
    .await;
    tracker.abandon(&reason.as_text());
    active.dec();
    ctx.metrics
        .statements
        .get_or_create(&labels)
        .inc_by(log.count() as u64);
    ctx.metrics.bytes_from_clients.inc_by(stats.from_client);
    ctx.metrics.bytes_to_clients.inc_by(stats.to_client);
    let end = airlock_audit::Event::SessionEnd {
        session: session_id.clone(),
        reason: reason.as_text(),
        statements: log.count(),
        bytes_in: stats.from_client,
        bytes_out: stats.to_client,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    if let Err(e) = ctx.audit.append(&[end]) {
        tracing::error!(session = %session_id, error = %e, "the session's end could not be written to the audit log");
    }
    tracing::info!(session = %session_id, reason = %reason.as_text(), statements = log.count(), "session ended");
}

/// Table columns whose names match the masking patterns, read on the
/// session's own upstream connection before the client gets it: a column
/// selected under an alias keeps its table OID and attribute number in the
/// RowDescription, so it is still masked. The names of the relations they
/// belong to are what strict masking checks statements against.
async fn load_mask_catalog(
    upstream: &mut backend::Upstream,
    rules: &airlock_config::MaskRules,
) -> Result<MaskCatalog, String> {
    /// A bound on what one session keeps.
    const MAX_COLUMNS: usize = 1_000_000;
    let mut catalog = MaskCatalog::default();
    if rules.columns.is_empty() {
        return Ok(catalog);
    }
    let likes: Vec<String> = rules
        .columns
        .iter()
        .map(|p| format!("a.attname ILIKE '{}'", p.to_like().replace('\'', "''")))
        .collect();
    let sql = format!(
        "SELECT a.attrelid, a.attnum, c.relname FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
         WHERE a.attnum > 0 AND NOT a.attisdropped AND ({})",
        likes.join(" OR ")
    );
    crate::catalog::query_each(upstream, &sql, |[rel, num, name]| {
        let parse = |v: Option<&[u8]>| v.and_then(|v| std::str::from_utf8(v).ok()).map(str::to_owned);
        let (Some(Ok(rel)), Some(Ok(num)), Some(name)) = (
            parse(rel).map(|r| r.parse::<u32>()),
            parse(num).map(|n| n.parse::<i16>()),
            parse(name),
        ) else {
            return Err("unexpected row from pg_attribute".into());
        };
        if catalog.columns.len() >= MAX_COLUMNS {
            // Fail closed: a column left out would leak under an alias.
            return Err(format!(
                "more than {MAX_COLUMNS} table columns match the masking patterns; narrow the patterns"
            ));
        }
        catalog.columns.insert((rel, num));
        catalog.relations.insert(name.to_lowercase());
        Ok(())
    })
    .await?;
    Ok(catalog)
}

async fn write_all_flush(
    w: &mut (impl tokio::io::AsyncWrite + Unpin),
    bytes: &[u8],
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    w.write_all(bytes).await?;
    w.flush().await
}

/// Refuses a client whose login went through but whose session cannot
/// start: the refusal goes to the audit log (bounded, as every refused
/// login) and the client gets the FATAL. The caller counts the outcome and
/// returns.
async fn refuse(
    ctx: &ProxyContext,
    stream: &mut (impl tokio::io::AsyncWrite + Unpin),
    startup: &airlock_pgwire::messages::StartupMessage,
    peer: SocketAddr,
    u: &UserFacingError,
) {
    refuse_with(ctx, stream, startup, peer, u, &u.message).await;
}

/// [`refuse`] with a `reason` for the audit log that says more than the
/// client is told (an upstream error with the database's address).
async fn refuse_with(
    ctx: &ProxyContext,
    stream: &mut (impl tokio::io::AsyncWrite + Unpin),
    startup: &airlock_pgwire::messages::StartupMessage,
    peer: SocketAddr,
    u: &UserFacingError,
    reason: &str,
) {
    frontend::record_refusal(ctx, startup, peer, u, reason);
    let _ = frontend::send(stream, &[BackendMessage::ErrorResponse(u.to_response())]).await;
}
