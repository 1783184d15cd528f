//! The `airlock` command: gateway (`serve`, `quickstart`) and client
//! (`login`, `connect`, `token`, ...). Thin: parse, load, call into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use airlock::{access_cli, client, gateway, quickstart};

#[derive(Parser)]
#[command(
    name = "airlock",
    version,
    about = "The one door into immutable production"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: the PostgreSQL listener and the HTTP API.
    Serve {
        #[arg(long, default_value = "airlock.toml")]
        config: PathBuf,
    },
    /// Start a throwaway PostgreSQL with sample data and a gateway in front of it.
    Quickstart {
        /// Where to write the config and the gateway's data.
        #[arg(long, default_value = "airlock-quickstart")]
        dir: PathBuf,
        #[arg(long, default_value_t = 7432)]
        pg_port: u16,
        #[arg(long, default_value_t = 7480)]
        http_port: u16,
    },
    /// Store an API token for this CLI (checks it against the gateway first).
    /// The token is read from standard input, or from AIRLOCK_TOKEN.
    Login {
        #[arg(long)]
        server: String,
        /// Discouraged: other users see a command line in `ps`, and shells
        /// keep it in their history. Pipe the token in, or set AIRLOCK_TOKEN.
        #[arg(long)]
        token: Option<String>,
        /// A CA certificate (PEM) to trust for the gateway's HTTPS, e.g. the
        /// gateway's generated `<data_dir>/tls/ca.crt`. The system's CAs are always trusted.
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Get a short-lived credential for a resource and print how to connect, or run a client with it.
    Connect {
        resource: String,
        #[arg(long, default_value = "read", value_parser = ["read", "write"])]
        access: String,
        /// Lifetime of the credential (at most the gateway's credential_ttl, 8h by default).
        #[arg(long)]
        ttl: Option<String>,
        /// Print the credential, URI and environment as JSON.
        #[arg(long)]
        json: bool,
        /// Run this program with the PG* environment set (e.g. --exec psql).
        #[arg(long)]
        exec: Option<String>,
        /// A command to run with the PG* environment set, after `--`.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Who the stored token belongs to.
    Whoami {
        #[arg(long)]
        json: bool,
    },
    /// Resources you can reach and at which access level.
    Resources {
        #[arg(long)]
        json: bool,
    },
    /// Your proxied sessions, newest first (an auditor's: anyone's, with --user).
    Sessions {
        /// Only sessions still open.
        #[arg(long)]
        active: bool,
        /// Someone else's sessions (needs a role in [audit] auditor_roles).
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        resource: Option<String>,
        /// Sessions open at or after this time: a duration ago (1h, 2d) or RFC 3339.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Request time-boxed access; approvers are told and must approve.
    Request {
        resource: String,
        #[arg(long, default_value = "write", value_parser = ["read", "write"])]
        access: String,
        /// How long the grant should last (at most the rule's max; default the smaller of 1h and max).
        #[arg(long = "for")]
        duration: Option<String>,
        /// Why: the incident or ticket. Required.
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Requests you filed or may approve, newest first.
    Requests {
        /// Only those still pending.
        #[arg(long)]
        pending: bool,
        /// Only your own.
        #[arg(long)]
        mine: bool,
        #[arg(long)]
        json: bool,
    },
    /// Approve a request (never your own).
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Deny a request.
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Your live time-boxed grants; --all: also ended ones and those you approve.
    Grants {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// End a grant now; its live sessions are ended and its credentials stop working.
    Revoke {
        grant_id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Emergency access where your role allows it: immediate, short, announced, marked.
    #[command(name = "break-glass")]
    BreakGlass {
        resource: String,
        #[arg(long, default_value = "write", value_parser = ["read", "write"])]
        access: String,
        #[arg(long = "for")]
        duration: Option<String>,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// One reviewed statement: `exec RESOURCE --reason TEXT -c SQL` files it for approval;
    /// `exec --run ID` runs the approved statement once, in a transaction.
    Exec {
        #[arg(required_unless_present = "run", conflicts_with = "run")]
        resource: Option<String>,
        #[arg(short = 'c', long = "command", requires = "resource")]
        sql: Option<String>,
        #[arg(long, requires = "resource")]
        reason: Option<String>,
        /// Run the approved statement of this request.
        #[arg(long)]
        run: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The runbooks you may run, with their parameters and steps.
    Runbooks {
        /// Only this one.
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run a runbook: `run NAME --param k=v --reason TEXT` (or `--dry-run`); a runbook that
    /// needs approval files a request, and `run --request ID` starts the approved run.
    Run(Box<airlock::runbook_cli::RunArgs>),
    /// Webhook delivery status.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Check, explain and test the access policy (airlock.toml), offline.
    Policy {
        #[command(subcommand)]
        command: airlock::policy::PolicyCommand,
    },
    /// Search the audit log; `audit verify | export | reindex | public-key | sessions` (run on
    /// the gateway host, or on a copy of the log).
    Audit(Box<airlock::audit_cli::AuditArgs>),
    /// Logs, spans, metric crossings, deploys and access events in one time-ordered view.
    Timeline(Box<airlock::telemetry_cli::TimelineArgs>),
    /// One trace as a waterfall: span tree, durations, status, versions, with its logs.
    Trace {
        trace_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Two versions of a service side by side: requests, error rate, p50/p95/p99, new errors.
    Compare {
        #[arg(long)]
        service: String,
        /// The older version.
        #[arg(long)]
        from: String,
        /// The newer version.
        #[arg(long)]
        to: String,
        /// A duration ago (24h) or RFC 3339.
        #[arg(long, default_value = "24h")]
        since: String,
        #[arg(long)]
        json: bool,
    },
    /// Deploy markers: `deploy mark` for pipelines, `deploy list`.
    Deploy {
        #[command(subcommand)]
        command: airlock::telemetry_cli::DeployCommand,
    },
    /// A recorded session, statement by statement, with timings, results' first rows and errors.
    Replay {
        session_id: String,
        #[arg(long, env = "AIRLOCK_CONFIG", default_value = "airlock.toml")]
        config: PathBuf,
        /// The session's records as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// API tokens: `issue` runs on the gateway host; `list` and `revoke` use the API.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Deliveries, failures and the last error per webhook.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue an API token for USER and print it once; only its hash is stored.
    Issue {
        user: String,
        #[arg(long, default_value = "airlock.toml")]
        config: PathBuf,
        #[arg(long)]
        label: Option<String>,
        /// Expire the token after this long (e.g. 90d), or `never`;
        /// default: `[access] token_ttl` (30d).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Your API tokens (never their secrets); admins: `--all` or `--user`.
    List {
        /// Everyone's tokens (admins only).
        #[arg(long)]
        all: bool,
        /// Another user's tokens (admins only).
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API token, with the session credentials it minted (their
    /// sessions end now). Your own, or anyone's for an admin.
    Revoke { id: String },
}

/// For `serve` and `quickstart`: no core dumps (a dump of the gateway holds
/// upstream passwords and session secrets), and files the process creates
/// are its owner's alone (umask 077). Best effort: a failure is logged.
fn harden_process() {
    #[cfg(unix)]
    {
        use rustix::process::{setrlimit, umask, Resource, Rlimit};
        let none = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        if let Err(e) = setrlimit(Resource::Core, none) {
            tracing::warn!(error = %e, "could not turn core dumps off (RLIMIT_CORE)");
        }
        umask(rustix::fs::Mode::from_bits_truncate(0o077));
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // Errors can quote untrusted text: shown escaped.
            airlock::note(&format!(
                "error: {}",
                airlock_config::text::escape_lines(&format!("{e:#}"))
            ));
            ExitCode::FAILURE
        }
    }
}

/// How long the runtime's leftover tasks (a write to a stdout nobody reads)
/// may hold the exit after the gateway stopped.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => {
            harden_process();
            let config = airlock_config::Config::load(&config)?;
            let rt = runtime()?;
            let result = rt.block_on(async {
                let listeners = gateway::Listeners::bind(&config).await?;
                gateway::run_until_signal(config, listeners, Box::new(|| {})).await
            });
            // A write stuck on the blocking pool must not hold the exit.
            rt.shutdown_timeout(SHUTDOWN_GRACE);
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Quickstart {
            dir,
            pg_port,
            http_port,
        } => {
            harden_process();
            let prepared = quickstart::prepare(&dir, pg_port, http_port)?;
            // Set before the runtime's threads exist: the gateway reads its
            // upstream passwords from the environment, as in production.
            std::env::set_var("ORDERS_RO_PASSWORD", &prepared.ro_password);
            std::env::set_var("ORDERS_RW_PASSWORD", &prepared.rw_password);
            // The rollback-service runbook's token, as a deployment would
            // give it to the gateway.
            std::env::set_var("DEPLOY_TOKEN", &prepared.deploy_token);
            let config = airlock_config::Config::load(&prepared.config_path)?;
            let force = {
                let (bin, data, pid) = (
                    prepared.cluster.bin_dir().to_owned(),
                    prepared.cluster.data_dir().to_owned(),
                    prepared.cluster.postmaster_pid(),
                );
                Box::new(move || quickstart::stop_cluster_now(&bin, &data, pid))
            };
            let rt = runtime()?;
            let result = rt.block_on(async {
                // Signals first: Ctrl-C at any point from here stops the
                // gateway and the cluster.
                let shutdown = airlock::shutdown_on_signals(force);
                let listeners = gateway::Listeners::bind(&config).await?;
                quickstart::serve_pipeline(prepared.pipeline_port, prepared.deploy_token.clone())
                    .await?;
                std::fs::create_dir_all(&config.gateway.data_dir)?;
                let store = gateway::open_store(&config.gateway.data_dir)?;
                let now = airlock_access::Clock::now_ms(&airlock_access::SystemClock);
                let expires = Some(now + config.access.token_ttl.as_millis() as i64);
                let oncall = airlock_api::tokens::issue(
                    store.as_ref(),
                    "oncall1",
                    Some("quickstart"),
                    now,
                    expires,
                )?;
                let lead = airlock_api::tokens::issue(
                    store.as_ref(),
                    "lead1",
                    Some("quickstart"),
                    now,
                    expires,
                )?;
                drop(store);
                let scheme = if config.gateway.http_tls {
                    "https"
                } else {
                    "http"
                };
                let http = format!("{scheme}://{}", listeners.http.local_addr()?);
                // Create the gateway's CA now (`run` reuses it) so the
                // commands printed below work the moment they are shown.
                let tls = airlock_proxy::tls::load_or_generate(
                    &config.gateway.data_dir,
                    None,
                    None,
                    std::slice::from_ref(&config.gateway.public_host),
                )?;
                let ca = tls.ca_file.clone().unwrap_or_default();
                // The token goes in on standard input, not on the command line.
                let login = |token: &str| {
                    if config.gateway.http_tls {
                        format!(
                            "echo {token} | airlock login --server {http} --ca-file {}",
                            ca.display()
                        )
                    } else {
                        format!("echo {token} | airlock login --server {http}")
                    }
                };
                let banner = [
                    "\n".to_owned(),
                    "Airlock is ready.\n".to_owned(),
                    format!("  PostgreSQL clients: {}\n", listeners.postgres.local_addr()?),
                    format!("  HTTP API:           {http}/api/openapi.json\n"),
                    format!("  web console:        {http}/  (sign in with a token below)\n"),
                    format!("  config:             {}\n", prepared.config_path.display()),
                    "\n".to_owned(),
                    "Next, in another terminal, as the on-call user:\n".to_owned(),
                    format!("  {}\n", login(&oncall.secret)),
                    "  airlock connect orders --exec psql\n".to_owned(),
                    "  airlock runbooks\n".to_owned(),
                    "  airlock run verify-replica-lag\n".to_owned(),
                    "  airlock run rollback-service -p service=checkout -p version=v1.4.1 --reason \"INC-1 tour\"\n".to_owned(),
                    "  airlock run kill-long-queries -p min_seconds=60 --reason \"INC-1 tour\"   # needs lead1's approval\n".to_owned(),
                    "\n".to_owned(),
                    "The SRE lead (read and write) logs in with:\n".to_owned(),
                    format!("  {}\n", login(&lead.secret)),
                    "\n".to_owned(),
                    "Press Ctrl-C to stop the gateway and PostgreSQL.\n".to_owned(),
                ]
                .concat();
                // Off the runtime and ignoring errors: stdout may be a pipe
                // whose reader is gone, or one nobody reads.
                drop(tokio::task::spawn_blocking(move || airlock::say(&banner)));
                gateway::run(
                    config,
                    listeners,
                    shutdown,
                    std::sync::Arc::new(airlock_access::SystemClock),
                )
                .await
            });
            rt.shutdown_timeout(SHUTDOWN_GRACE);
            drop(prepared.cluster);
            result?;
            airlock::note("stopped; PostgreSQL is stopped too");
            Ok(ExitCode::SUCCESS)
        }
        Command::Login {
            server,
            token,
            ca_file,
        } => {
            let on_argv = token.is_some();
            let token = zeroize::Zeroizing::new(client::login_token(token)?);
            let user = runtime()?.block_on(client::login(&server, &token, ca_file.as_deref()))?;
            println!("logged in to {server} as {user}");
            if on_argv {
                eprintln!("warning: --token put the token on the command line, where `ps` shows it and the shell's history keeps it; next time pipe it in or set AIRLOCK_TOKEN");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Connect {
            resource,
            access,
            ttl,
            json,
            exec,
            command,
        } => airlock::connect::run(&resource, &access, ttl.as_deref(), json, exec, command),
        Command::Whoami { json } => {
            let me: serde_json::Value = runtime()?
                .block_on(async { client::Api::from_login()?.get("/api/v1/whoami").await })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&me)?);
            } else {
                println!(
                    "{} (roles: {})",
                    me["user"].as_str().unwrap_or("?"),
                    me["roles"]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Resources { json } => {
            let list: Vec<serde_json::Value> = runtime()?
                .block_on(async { client::Api::from_login()?.get("/api/v1/resources").await })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no resources are open to you; ask the platform team for a role");
            } else {
                println!("{:<20} {:<6} {:<10} ROLE", "RESOURCE", "ACCESS", "KIND");
                for r in list {
                    println!(
                        "{:<20} {:<6} {:<10} {}",
                        r["resource"].as_str().unwrap_or(""),
                        r["access"].as_str().unwrap_or(""),
                        r["kind"].as_str().unwrap_or(""),
                        r["role"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sessions {
            active,
            user,
            resource,
            since,
            limit,
            json,
        } => {
            let mut path = format!("/api/v1/sessions?active={active}&limit={limit}");
            if let Some(u) = &user {
                path.push_str(&format!("&user={}", airlock::client::query_value(u)));
            }
            if let Some(r) = &resource {
                path.push_str(&format!("&resource={}", airlock::client::query_value(r)));
            }
            if let Some(t) = &since {
                let now = airlock_access::Clock::now_ms(&airlock_access::SystemClock);
                let ms = airlock::audit_cli::parse_time(t, now)
                    .map_err(|e| anyhow::anyhow!("--since {t}: {e}"))?;
                path.push_str(&format!("&since_ms={ms}"));
            }
            let list: Vec<airlock_audit::index::SessionRow> =
                runtime()?.block_on(async { client::Api::from_login()?.get(&path).await })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no sessions");
            } else {
                println!(
                    "{:<26} {:<12} {:<12} {:<6} {:<20} {:>10} {:<4} END",
                    "SESSION", "USER", "RESOURCE", "ACCESS", "STARTED", "STATEMENTS", "TLS"
                );
                for s in list {
                    let end = match (s.ended_ms, &s.end_reason) {
                        (Some(e), Some(r)) => format!(
                            "{} ({})",
                            airlock::format_time(e),
                            airlock_config::text::escape(r)
                        ),
                        (Some(e), None) => airlock::format_time(e),
                        _ => "open".to_owned(),
                    };
                    println!(
                        "{:<26} {:<12} {:<12} {:<6} {:<20} {:>10} {:<4} {end}",
                        s.id,
                        s.user,
                        s.resource,
                        s.access,
                        airlock::format_time(s.started_ms),
                        s.statement_count,
                        if s.tls { "yes" } else { "no" },
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Request {
            resource,
            access,
            duration,
            reason,
            json,
        } => access_cli::request(&resource, &access, duration.as_deref(), &reason, json),
        Command::Requests {
            pending,
            mine,
            json,
        } => access_cli::requests(pending, mine, json),
        Command::Approve { id, comment, json } => {
            access_cli::approve(&id, comment.as_deref(), json)
        }
        Command::Deny { id, reason, json } => access_cli::deny(&id, &reason, json),
        Command::Grants { all, json } => access_cli::grants(all, json),
        Command::Revoke {
            grant_id,
            reason,
            json,
        } => access_cli::revoke(&grant_id, &reason, json),
        Command::BreakGlass {
            resource,
            access,
            duration,
            reason,
            json,
        } => access_cli::break_glass(&resource, &access, duration.as_deref(), &reason, json),
        Command::Exec {
            resource,
            sql,
            reason,
            run,
            json,
        } => match (run, resource) {
            (Some(id), _) => access_cli::exec_run(&id, json),
            (None, Some(resource)) => {
                let sql = sql.ok_or_else(|| {
                    anyhow::anyhow!("give the statement to review with -c \"UPDATE ...\"")
                })?;
                let reason = reason.ok_or_else(|| {
                    anyhow::anyhow!("say why with --reason \"...\" (the incident or ticket)")
                })?;
                access_cli::exec_request(&resource, &sql, &reason, json)
            }
            (None, None) => anyhow::bail!("give a RESOURCE to file a statement, or --run ID"),
        },
        Command::Policy { command } => airlock::policy::run(command),
        Command::Audit(args) => airlock::audit_cli::run(*args),
        Command::Timeline(args) => airlock::telemetry_cli::timeline(*args),
        Command::Trace { trace_id, json } => airlock::telemetry_cli::trace(&trace_id, json),
        Command::Compare {
            service,
            from,
            to,
            since,
            json,
        } => airlock::telemetry_cli::compare(&service, &from, &to, &since, json),
        Command::Deploy { command } => airlock::telemetry_cli::deploy(command),
        Command::Runbooks { name, json } => airlock::runbook_cli::list(name.as_deref(), json),
        Command::Run(args) => airlock::runbook_cli::run(*args),
        Command::Replay {
            session_id,
            config,
            json,
        } => airlock::audit_cli::replay(&config, &session_id, json),
        Command::Webhooks {
            command: WebhooksCommand::Status { json },
        } => access_cli::webhooks_status(json),
        Command::Token {
            command:
                TokenCommand::Issue {
                    user,
                    config,
                    label,
                    ttl,
                },
        } => {
            let config = airlock_config::Config::load(&config)?;
            if config.user(&user).is_none() {
                anyhow::bail!(
                    "user \"{user}\" is not in {}; add a [[user]] entry first",
                    config.path.display()
                );
            }
            let now = airlock_access::Clock::now_ms(&airlock_access::SystemClock);
            let expires = match ttl.as_deref() {
                Some("never") => None,
                Some(t) => Some(
                    now + airlock_config::parse_duration(t)
                        .map_err(|e| {
                            anyhow::anyhow!("--ttl {t}: {e}; use a duration like 90d, or `never`")
                        })?
                        .as_millis() as i64,
                ),
                None => Some(now + config.access.token_ttl.as_millis() as i64),
            };
            std::fs::create_dir_all(&config.gateway.data_dir)
                .with_context(|| format!("creating {}", config.gateway.data_dir.display()))?;
            let store = gateway::open_store(&config.gateway.data_dir)?;
            let token =
                airlock_api::tokens::issue(store.as_ref(), &user, label.as_deref(), now, expires)?;
            eprintln!(
                "token {} for {user} (shown once; only its hash is stored):",
                token.id
            );
            println!("{}", token.secret);
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            command: TokenCommand::List { all, user, json },
        } => access_cli::token_list(all, user.as_deref(), json),
        Command::Token {
            command: TokenCommand::Revoke { id },
        } => access_cli::token_revoke(&id),
    }
}
