//! `airlock quickstart`: from nothing to a live gateway in one command.
//!
//! It starts a throwaway PostgreSQL cluster (serving TLS with a certificate
//! from its own CA, which the gateway verifies), seeds a sample `orders` database
//! with a read-only and a read-write role, writes a config, issues API tokens
//! for the sample users and runs the gateway in the foreground. Ctrl-C stops
//! the gateway and the cluster and leaves nothing running.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use airlock_pgcluster::{ClusterOptions, PgCluster};

pub struct Prepared {
    pub cluster: PgCluster,
    pub config_path: PathBuf,
    pub ro_password: String,
    pub rw_password: String,
    /// Where the stand-in deploy pipeline listens (the `rollback-service`
    /// runbook's target), and the token it expects (`DEPLOY_TOKEN`).
    pub pipeline_port: u16,
    pub deploy_token: String,
}

/// The example runbooks (`examples/runbooks/`), shipped in the binary.
const RUNBOOKS: &[(&str, &str)] = &[
    (
        "verify-replica-lag.toml",
        include_str!("../../../examples/runbooks/verify-replica-lag.toml"),
    ),
    (
        "rollback-service.toml",
        include_str!("../../../examples/runbooks/rollback-service.toml"),
    ),
    (
        "restart-instance.toml",
        include_str!("../../../examples/runbooks/restart-instance.toml"),
    ),
    (
        "kill-long-queries.toml",
        include_str!("../../../examples/runbooks/kill-long-queries.toml"),
    ),
];

/// The example's pipeline address, replaced by the stand-in's.
const EXAMPLE_PIPELINE: &str = "http://127.0.0.1:8088/";

/// Picks `preferred` if it is free, else any free port.
fn port(preferred: u16) -> anyhow::Result<u16> {
    if preferred != 0 && StdListener::bind(("127.0.0.1", preferred)).is_ok() {
        return Ok(preferred);
    }
    Ok(StdListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

fn secret() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>())
}

/// Everything before the gateway starts: cluster, seed, config file.
pub fn prepare(dir: &Path, pg_port: u16, http_port: u16) -> anyhow::Result<Prepared> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    // The cluster serves TLS with a certificate from its own throwaway CA,
    // and the gateway verifies it (tls = "verify-full" against that CA):
    // the quickstart runs the configuration we recommend, not a shortcut.
    let upstream_tls = dir.join("upstream-tls");
    airlock_proxy::tls::load_or_generate(&upstream_tls, None, None, &["127.0.0.1".to_owned()])
        .context("making a TLS certificate for the throwaway PostgreSQL cluster")?;
    crate::note("starting a throwaway PostgreSQL cluster...");
    let cluster = PgCluster::start(ClusterOptions {
        ssl_cert_and_key: Some((
            upstream_tls.join("tls/server.crt"),
            upstream_tls.join("tls/server.key"),
        )),
        ..ClusterOptions::default()
    })
    .context("starting PostgreSQL (quickstart needs PostgreSQL's server binaries)")?;
    let (ro_password, rw_password) = (secret(), secret());
    airlock_pgcluster::seed_orders(&cluster, &ro_password, &rw_password)
        .context("seeding the sample orders database")?;
    crate::note(&format!(
        "PostgreSQL {} on 127.0.0.1:{} with a sample `orders` database",
        cluster.version(),
        cluster.port()
    ));
    let pg_port = port(pg_port)?;
    let http_port = port(http_port)?;
    let grpc_port = port(4317)?;
    let pipeline_port = port(8088)?;
    let runbooks = dir.join("runbooks");
    std::fs::create_dir_all(&runbooks)
        .with_context(|| format!("creating {}", runbooks.display()))?;
    for (name, text) in RUNBOOKS {
        let text = text.replace(
            EXAMPLE_PIPELINE,
            &format!("http://127.0.0.1:{pipeline_port}/"),
        );
        let path = runbooks.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let config = format!(
        r#"# Written by `airlock quickstart`. Secrets are never in this file: the
# upstream passwords come from the environment variables named below.
[gateway]
listen_postgres = "127.0.0.1:{pg_port}"
listen_http = "127.0.0.1:{http_port}"
listen_otlp_grpc = "127.0.0.1:{grpc_port}"
data_dir = "./data"

[[resource]]
name = "orders"
kind = "postgres"
host = "127.0.0.1"
port = {upstream}
database = "orders"
# The throwaway cluster's certificate is checked against the CA that made it.
tls = "verify-full"
ca_file = "./upstream-tls/tls/ca.crt"
read  = {{ user = "orders_ro", password_env = "ORDERS_RO_PASSWORD" }}
write = {{ user = "orders_rw", password_env = "ORDERS_RW_PASSWORD" }}

[[role]]
name = "oncall"
standing    = [{{ resource = "orders", access = "read" }}]
requestable = [{{ resource = "orders", access = "write", max = "1h", approvals = 1, approvers = ["sre-lead"] }}]
break_glass = [{{ resource = "orders", access = "write", max = "30m" }}]

[[role]]
name = "sre-lead"
standing = [{{ resource = "orders", access = "read" }}, {{ resource = "orders", access = "write" }}]

[[user]]
name = "oncall1"
roles = ["oncall"]

[[user]]
name = "lead1"
roles = ["sre-lead"]

# The SRE lead is an admin: everyone's API tokens, /metrics, webhook status,
# deploy marks.
[access]
admin_roles = ["sre-lead"]

# Reviewed actions (`airlock runbooks`, `airlock run`); copies of
# examples/runbooks, the rollback pointed at a stand-in deploy pipeline.
[runbooks]
dir = "./runbooks"
"#,
        upstream = cluster.port()
    );
    let config_path = dir.join("airlock.toml");
    std::fs::write(&config_path, config)
        .with_context(|| format!("writing {}", config_path.display()))?;
    Ok(Prepared {
        cluster,
        config_path,
        ro_password,
        rw_password,
        pipeline_port,
        deploy_token: secret(),
    })
}

/// A stand-in for a deploy pipeline, so the tour can run `rollback-service`
/// for real: it checks the bearer token, prints what it was asked, and
/// answers 202 as a pipeline that queued the job would.
pub async fn serve_pipeline(port: u16, token: String) -> anyhow::Result<()> {
    use axum::http::{HeaderMap, StatusCode};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{port} for the stand-in pipeline"))?;
    let expected = format!("Bearer {token}");
    let app = axum::Router::new().route(
        "/deploy",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let ok = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == expected);
            async move {
                if !ok {
                    return (StatusCode::UNAUTHORIZED, "bad token\n".to_owned());
                }
                crate::note(&format!("[stand-in deploy pipeline] queued: {body}"));
                (StatusCode::ACCEPTED, format!("queued: {body}\n"))
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            crate::note(&format!("the stand-in deploy pipeline stopped: {e}"));
        }
    });
    Ok(())
}

/// Stops the throwaway cluster at once (a second Ctrl-C): `pg_ctl stop -m
/// immediate`, then SIGKILL to the postmaster if it is still there. Output
/// goes nowhere: stdout may be a closed pipe.
pub fn stop_cluster_now(bin_dir: &Path, data_dir: &Path, pid: Option<u32>) {
    use std::process::{Command, Stdio};
    let _ = Command::new(bin_dir.join("pg_ctl"))
        .arg("stop")
        .arg("-D")
        .arg(data_dir)
        .args(["-m", "immediate", "-w", "-t", "5"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Some(pid) = pid.filter(|p| airlock_pgcluster::pid_alive(*p)) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
