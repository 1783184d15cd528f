//! The test world: a real PostgreSQL in a temp dir on a free port, seeded
//! with the sample `orders` database, and the real gateway started
//! in-process in front of it. `World::start().await` builds it in one line.
#![allow(dead_code)]

pub mod cli;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Once};

use airlock::client::{Api, Connection};
use airlock_config::Config;
use airlock_pgcluster::{ClusterOptions, HbaMode, PgCluster};
use tokio_util::sync::CancellationToken;

pub const RO_ENV: &str = "AIRLOCK_TEST_ORDERS_RO_PASSWORD";
/// The default world's Prometheus scrape token (`[access] metrics_token_env`).
pub const METRICS_TOKEN_ENV: &str = "AIRLOCK_TEST_METRICS_TOKEN";
pub const METRICS_TOKEN: &str = "test-scrape-token-5d1e";
pub const RW_ENV: &str = "AIRLOCK_TEST_ORDERS_RW_PASSWORD";
const RO_PASSWORD: &str = "test-ro-secret-3f9a";
const RW_PASSWORD: &str = "test-rw-secret-b71c";

static ENV: Once = Once::new();

fn set_env() {
    // Every world uses the same upstream passwords, set once per test
    // process before any gateway reads them.
    ENV.call_once(|| {
        std::env::set_var(RO_ENV, RO_PASSWORD);
        std::env::set_var(RW_ENV, RW_PASSWORD);
        std::env::set_var(METRICS_TOKEN_ENV, METRICS_TOKEN);
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Roles and users of the default world: oncall1 reads, lead1 reads and
/// writes and is an admin (`[access] admin_roles`), oncall1 may mark
/// deploys, visitor has no roles (so reads no telemetry).
pub const DEFAULT_POLICY: &str = r#"
[access]
admin_roles = ["sre-lead"]
deploy_roles = ["oncall"]
metrics_token_env = "AIRLOCK_TEST_METRICS_TOKEN"

[[role]]
name = "oncall"
standing = [{ resource = "orders", access = "read" }]

[[role]]
name = "sre-lead"
standing = [{ resource = "orders", access = "read" }, { resource = "orders", access = "write" }]

[[user]]
name = "oncall1"
roles = ["oncall"]

[[user]]
name = "lead1"
roles = ["sre-lead"]

[[user]]
name = "visitor"
roles = []
"#;

/// The just-in-time policy of `tests/jit.rs` and `tests/jit_cli.rs`:
/// oncall1 reads orders and may request write (approved by one sre-lead, at
/// most 1h) or take it by break-glass (at most 30m); lead1 and lead2 read
/// and are admins.
/// `extra` is appended (webhooks, access settings).
pub fn jit_policy(extra: &str) -> String {
    format!(
        r#"
[[role]]
name = "oncall"
standing    = [{{ resource = "orders", access = "read" }}]
requestable = [{{ resource = "orders", access = "write", max = "1h", approvals = 1, approvers = ["sre-lead"] }}]
break_glass = [{{ resource = "orders", access = "write", max = "30m" }}]

[[role]]
name = "sre-lead"
standing = [{{ resource = "orders", access = "read" }}]

[[user]]
name = "oncall1"
roles = ["oncall"]

[[user]]
name = "lead1"
roles = ["sre-lead"]

[[user]]
name = "lead2"
roles = ["sre-lead"]

[access]
request_ttl = "1h"
admin_roles = ["sre-lead"]
{extra}
"#
    )
}

/// A world running [`jit_policy`].
pub async fn jit_world(extra: &str) -> World {
    World::start_with(Options {
        policy: Some(jit_policy(extra)),
        ..Options::default()
    })
    .await
}

pub struct Options {
    pub allow_plaintext: bool,
    pub extra_gateway: String,
    pub upstream_tls: &'static str,
    /// Run the real `airlock serve` binary as a child process instead of
    /// in-process (for measuring the gateway's own memory).
    pub subprocess: bool,
    /// How the upstream PostgreSQL authenticates the gateway.
    pub hba: HbaMode,
    /// Serve TLS on the upstream with a certificate from its own test CA
    /// (`upstream-tls/tls/ca.crt` in the world's dir).
    pub upstream_ssl: bool,
    /// Extra lines for the `[[resource]]` table (e.g. `ca_file = ...`).
    pub resource_extra: String,
    /// Serve the HTTP API over TLS (the default) or plain HTTP.
    pub http_tls: bool,
    /// Replaces the default roles and users (and may add [access] and
    /// [[webhook]] tables).
    pub policy: Option<String>,
    /// Put the data directory on a tmpfs of this many bytes (needs root).
    pub data_dir_tmpfs: Option<u64>,
    /// Point the resource at this port on 127.0.0.1 instead of the world's
    /// PostgreSQL (a test's own stand-in server).
    pub upstream_port: Option<u16>,
    /// The resource's credentials name no password variable (an upstream
    /// that trusts the gateway without one).
    pub no_upstream_passwords: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            allow_plaintext: false,
            extra_gateway: String::new(),
            upstream_tls: "prefer",
            subprocess: false,
            hba: HbaMode::Scram,
            upstream_ssl: false,
            resource_extra: String::new(),
            http_tls: true,
            policy: None,
            data_dir_tmpfs: None,
            upstream_port: None,
            no_upstream_passwords: false,
        }
    }
}

pub struct World {
    pub cluster: PgCluster,
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub pg_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub gateway: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub child: Option<std::process::Child>,
    /// A tmpfs mounted at the data directory, unmounted on drop.
    pub tmpfs: Option<PathBuf>,
}

impl World {
    pub async fn start() -> World {
        World::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> World {
        set_env();
        let dir = tempfile::tempdir().unwrap();
        let ssl = if opts.upstream_ssl {
            let tls_dir = dir.path().join("upstream-tls");
            airlock_proxy::tls::load_or_generate(&tls_dir, None, None, &["127.0.0.1".to_owned()])
                .expect("upstream test certificate");
            Some((
                tls_dir.join("tls/server.crt"),
                tls_dir.join("tls/server.key"),
            ))
        } else {
            None
        };
        let hba = opts.hba;
        let cluster = tokio::task::spawn_blocking(move || {
            let cluster = PgCluster::start(ClusterOptions {
                hba,
                ssl_cert_and_key: ssl,
                ..ClusterOptions::default()
            })
            .expect("PostgreSQL starts");
            airlock_pgcluster::seed_orders(&cluster, RO_PASSWORD, RW_PASSWORD).expect("seed");
            cluster
        })
        .await
        .unwrap();
        let text = format!(
            r#"
[gateway]
listen_postgres = "127.0.0.1:0"
listen_http = "127.0.0.1:1"
listen_otlp_grpc = "127.0.0.1:2"
data_dir = "./data"
allow_plaintext = {plain}
http_tls = {http_tls}
{extra}

[[resource]]
name = "orders"
kind = "postgres"
host = "127.0.0.1"
port = {port}
database = "orders"
tls = "{tls}"
{resource_extra}
read  = {{ user = "orders_ro", password_env = "{RO_ENV}" }}
write = {{ user = "orders_rw", password_env = "{RW_ENV}" }}

{policy}
"#,
            plain = opts.allow_plaintext,
            http_tls = opts.http_tls,
            extra = opts.extra_gateway,
            port = opts.upstream_port.unwrap_or(cluster.port()),
            tls = opts.upstream_tls,
            resource_extra = opts.resource_extra,
            policy = opts.policy.unwrap_or_else(|| DEFAULT_POLICY.to_owned()),
        );
        let text = if opts.no_upstream_passwords {
            text.replace(&format!(", password_env = \"{RO_ENV}\""), "")
                .replace(&format!(", password_env = \"{RW_ENV}\""), "")
        } else {
            text
        };
        let path = dir.path().join("airlock.toml");
        let tmpfs = opts.data_dir_tmpfs.map(|size| {
            let at = dir.path().join("data");
            std::fs::create_dir_all(&at).unwrap();
            let status = Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size},mode=0700"))
                .arg("tmpfs")
                .arg(&at)
                .status()
                .expect("mount runs");
            assert!(
                status.success(),
                "mounting a tmpfs for the data directory (the test needs root)"
            );
            at
        });
        let pg = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (pg_addr, http_addr) = (pg.local_addr().unwrap(), http.local_addr().unwrap());
        let grpc_addr = grpc.local_addr().unwrap();
        let text = text
            .replace("127.0.0.1:0\"", &format!("{pg_addr}\""))
            .replace("127.0.0.1:1\"", &format!("{http_addr}\""))
            .replace("127.0.0.1:2\"", &format!("{grpc_addr}\""));
        std::fs::write(&path, &text).unwrap();
        let config = Config::load(&path).expect("test config loads");
        let shutdown = CancellationToken::new();
        let (gateway, child) = if opts.subprocess {
            drop((pg, http, grpc));
            let child = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
                .args(["serve", "--config"])
                .arg(&path)
                .env("AIRLOCK_LOG", "debug")
                // Standard output carries the audit anchors ([audit] anchors).
                .stdout(std::fs::File::create(dir.path().join("gateway.out")).unwrap())
                .stderr(std::fs::File::create(dir.path().join("gateway.log")).unwrap())
                .spawn()
                .expect("airlock serve starts");
            (None, Some(child))
        } else {
            let gateway = tokio::spawn(airlock::gateway::run(
                config.clone(),
                airlock::gateway::Listeners {
                    postgres: pg,
                    http,
                    otlp_grpc: Some(grpc),
                },
                shutdown.clone(),
                Arc::new(airlock_access::SystemClock),
            ));
            (Some(gateway), None)
        };
        let world = World {
            cluster,
            dir,
            config,
            pg_addr,
            http_addr,
            grpc_addr,
            shutdown,
            gateway,
            child,
            tmpfs,
        };
        // Ready when the API answers (over HTTPS, trusting the gateway's
        // generated CA once it exists).
        let mut world = world;
        for _ in 0..400 {
            // A gateway that stopped at start says why.
            if world.gateway.as_ref().is_some_and(|g| g.is_finished()) {
                let ended = world.gateway.take().unwrap().await;
                panic!("the gateway did not start: {ended:?}");
            }
            if world.ca_file().exists() {
                if let Ok(r) = world
                    .http_client()
                    .get(format!("{}/healthz", world.http()))
                    .send()
                    .await
                {
                    assert!(r.status().is_success());
                    return world;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("gateway did not come up");
    }

    pub fn http(&self) -> String {
        let scheme = if self.config.gateway.http_tls {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.http_addr)
    }

    /// The gateway's generated CA (for HTTPS and verify-full).
    pub fn ca_file(&self) -> PathBuf {
        self.data_dir().join("tls").join("ca.crt")
    }

    /// An HTTPS client that trusts the gateway's CA.
    pub fn http_client(&self) -> reqwest::Client {
        airlock::client::http_client(Some(&self.ca_file())).unwrap()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.gateway.data_dir.clone()
    }

    /// Issues an API token for `user` the way `airlock token issue` does.
    pub fn token(&self, user: &str) -> String {
        let store = airlock::gateway::open_store(&self.data_dir()).unwrap();
        airlock_api::tokens::issue(store.as_ref(), user, Some("test"), now_ms(), None)
            .unwrap()
            .secret
    }

    pub fn api(&self, user: &str) -> Api {
        Api::new(&self.http(), &self.token(user), Some(&self.ca_file())).unwrap()
    }

    /// Mints a session credential through the API, like `airlock connect`.
    /// Uses a private AIRLOCK_HOME-free path: the CA is written into the world's dir.
    pub async fn connect(&self, user: &str, access: &str) -> Connection {
        self.connect_ttl(user, access, None).await
    }

    pub async fn connect_ttl(&self, user: &str, access: &str, ttl: Option<&str>) -> Connection {
        let api = self.api(user);
        let mut body = serde_json::json!({ "resource": "orders", "access": access });
        if let Some(t) = ttl {
            body["ttl"] = t.into();
        }
        let credential: airlock::client::Credential = api
            .post("/api/v1/credentials", &body)
            .await
            .expect("credential minted");
        let ca = self.dir.path().join("ca.crt");
        std::fs::write(&ca, credential.ca_pem.as_deref().expect("generated CA")).unwrap();
        Connection {
            credential,
            ca_file: Some(ca),
        }
    }

    /// Runs psql through the gateway with the credential's environment.
    pub fn psql(&self, conn: &Connection, args: &[&str]) -> Output {
        Command::new("psql")
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-At"])
            .args(args)
            .envs(conn.env())
            .output()
            .expect("psql runs")
    }

    /// A tokio-postgres client through the gateway, TLS verified against the
    /// gateway's CA.
    pub async fn tokio_pg(&self, conn: &Connection) -> tokio_postgres::Client {
        let (client, connection) = self
            .tokio_pg_config(conn)
            .connect(self.tls(conn))
            .await
            .expect("connects");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    pub fn tokio_pg_config(&self, conn: &Connection) -> tokio_postgres::Config {
        let c = &conn.credential;
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&c.host)
            .port(c.port)
            .user(&c.user)
            .password(&c.password)
            .dbname(&c.database)
            .ssl_mode(tokio_postgres::config::SslMode::Require);
        cfg
    }

    pub fn tls(&self, conn: &Connection) -> tokio_postgres_rustls::MakeRustlsConnect {
        let mut roots = rustls::RootCertStore::empty();
        let pem = conn.credential.ca_pem.clone().unwrap();
        use rustls_pki_types::pem::PemObject;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        tokio_postgres_rustls::MakeRustlsConnect::new(config)
    }

    pub fn gateway_pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(mut c) = self.child.take() {
            // SIGTERM: the same graceful path as in production.
            let _ = std::process::Command::new("kill")
                .arg(c.id().to_string())
                .status();
            let status = tokio::task::spawn_blocking(move || c.wait())
                .await
                .unwrap()
                .unwrap();
            assert!(status.success(), "airlock serve exited with {status}");
        }
        if let Some(g) = self.gateway.take() {
            g.await.unwrap().unwrap();
        }
    }
}

impl World {
    /// Stops the gateway gracefully and copies its audit directory to
    /// `to/audit`, for checks after the world (and its tmpfs) is gone.
    pub async fn stop_keeping_files(mut self, to: &Path) {
        self.shutdown.cancel();
        if let Some(g) = self.gateway.take() {
            g.await.unwrap().unwrap();
        }
        let from = airlock_audit::audit_dir(&self.data_dir());
        let dest = to.join("audit");
        std::fs::create_dir_all(&dest).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dest.join(entry.file_name())).unwrap();
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(at) = self.tmpfs.take() {
            let _ = Command::new("umount").arg("-l").arg(&at).status();
        }
    }
}

pub fn now_ms() -> i64 {
    airlock_access::Clock::now_ms(&airlock_access::SystemClock)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The SQLSTATE of a database error, or what else the error was.
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_owned())
        .unwrap_or_else(|| format!("not a db error: {e}"))
}

/// Every record in the gateway's audit log under `data_dir`, in order.
pub fn audit_entries(data_dir: &Path) -> Vec<airlock_audit::read::Entry> {
    let mut out = Vec::new();
    airlock_audit::read::scan(&airlock_audit::audit_dir(data_dir), 0, |raw| {
        out.push(airlock_audit::read::Entry::parse(raw.line).expect("every record decodes"));
        Ok(true)
    })
    .unwrap();
    out
}
