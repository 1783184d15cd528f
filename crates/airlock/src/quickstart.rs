//! `airlock quickstart`: from nothing to a live gateway in one command.
//!
//! It starts a throwaway PostgreSQL cluster, seeds a sample `orders` database
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
}

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
    eprintln!("starting a throwaway PostgreSQL cluster...");
    let cluster = PgCluster::start(ClusterOptions::default())
        .context("starting PostgreSQL (quickstart needs PostgreSQL's server binaries)")?;
    let (ro_password, rw_password) = (secret(), secret());
    airlock_pgcluster::seed_orders(&cluster, &ro_password, &rw_password)
        .context("seeding the sample orders database")?;
    eprintln!(
        "PostgreSQL {} on 127.0.0.1:{} with a sample `orders` database",
        cluster.version(),
        cluster.port()
    );
    let pg_port = port(pg_port)?;
    let http_port = port(http_port)?;
    let grpc_port = port(4317)?;
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
tls = "prefer"
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
    })
}
