//! The CLI's side of the API: `login`, `connect`, `whoami`, `resources`.
//!
//! The token lives in `$AIRLOCK_HOME/credentials.json` (default
//! `~/.airlock`), mode 0600; CA certificates the gateway generated are kept
//! next to it so `sslmode=verify-full` works.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use airlock_config::text::escape_lines;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Login {
    pub server: String,
    pub token: String,
    pub user: String,
    /// A CA (PEM) to trust for the gateway's HTTPS, besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

pub fn home() -> anyhow::Result<PathBuf> {
    if let Some(h) = std::env::var_os("AIRLOCK_HOME") {
        return Ok(PathBuf::from(h));
    }
    let home = std::env::var_os("HOME").context("neither AIRLOCK_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".airlock"))
}

fn login_path() -> anyhow::Result<PathBuf> {
    Ok(home()?.join("credentials.json"))
}

pub fn load_login() -> anyhow::Result<Login> {
    let path = login_path()?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "not logged in ({}: {e})\nrun: airlock login --server https://GATEWAY:7480 --ca-file <gateway data_dir>/tls/ca.crt  (the token on stdin)",
            path.display()
        )
    })?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid; log in again", path.display()))
}

fn write_private(path: &std::path::Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub struct Api {
    http: reqwest::Client,
    server: String,
    token: String,
    ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    message: String,
    hint: Option<String>,
}

/// TLS for talking to the gateway: the system's roots plus, when given, the
/// gateway's own CA (the one it generated, saved by `airlock login --ca-file`).
pub(crate) fn tls_config(
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("reading the CA file {}", path.display()))?;
        let mut added = 0;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert =
                cert.with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("{} holds an unusable CA certificate", path.display()))?;
            added += 1;
        }
        if added == 0 {
            bail!("{} holds no certificate", path.display());
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An HTTP client for the gateway's API (see [`tls_config`]).
pub fn http_client(ca_file: Option<&std::path::Path>) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .tls_backend_preconfigured(tls_config(ca_file)?)
        .build()?)
}

impl Api {
    pub fn new(
        server: &str,
        token: &str,
        ca_file: Option<&std::path::Path>,
    ) -> anyhow::Result<Api> {
        let http = http_client(ca_file)?;
        Ok(Api {
            http,
            server: server.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            ca_file: ca_file.map(std::path::Path::to_path_buf),
        })
    }

    pub fn from_login() -> anyhow::Result<Api> {
        let l = load_login()?;
        Api::new(&l.server, &l.token, l.ca_file.as_deref())
    }

    async fn check(resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        // Messages quote what people sent (a parameter, a statement's
        // error): shown escaped, like every untrusted text.
        let shown = |t: &str| escape_lines(t).into_owned();
        match serde_json::from_str::<ApiErrorBody>(&text) {
            Ok(e) => match e.hint {
                Some(h) => bail!("{} ({status})\n{}", shown(&e.message), shown(&h)),
                None => bail!("{} ({status})", shown(&e.message)),
            },
            Err(_) => bail!("the gateway answered {status}: {}", shown(&text)),
        }
    }

    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let resp = self
            .http
            .get(format!("{}{path}", self.server))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| reach_error(&self.server, e))?;
        Ok(Self::check(resp).await?.json().await?)
    }

    pub async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<T> {
        let resp = self
            .http
            .post(format!("{}{path}", self.server))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| reach_error(&self.server, e))?;
        Ok(Self::check(resp).await?.json().await?)
    }

    pub async fn delete<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let resp = self
            .http
            .delete(format!("{}{path}", self.server))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| reach_error(&self.server, e))?;
        Ok(Self::check(resp).await?.json().await?)
    }

    /// POSTs `body` and hands back the successful response unread, for
    /// answers streamed as they happen (runbook runs). No overall timeout:
    /// a run lasts as long as its runbook allows.
    pub async fn post_streaming(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<reqwest::Response> {
        let resp = self
            .http_streaming()?
            .post(format!("{}{path}", self.server))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| reach_error(&self.server, e))?;
        Self::check(resp).await
    }

    fn http_streaming(&self) -> anyhow::Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(30))
            .tls_backend_preconfigured(tls_config(self.ca_file.as_deref())?)
            .build()?)
    }
}

/// The token `airlock login` stores: `--token` (discouraged: argv is visible
/// to other users in `ps` and lands in shell history), else `AIRLOCK_TOKEN`,
/// else the first line of standard input (a prompt when it is a terminal).
pub fn login_token(flag: Option<String>) -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    if let Some(t) = flag.or_else(|| std::env::var("AIRLOCK_TOKEN").ok()) {
        return Ok(t.trim().to_owned());
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("API token (from `airlock token issue`): ");
        std::io::stderr().flush()?;
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the API token from standard input")?;
    let token = line.trim();
    if token.is_empty() {
        bail!(
            "no API token was given\n\
             pipe it in (airlock login --server URL < token-file), or set AIRLOCK_TOKEN; \
             get one with `airlock token issue USER` on the gateway host"
        );
    }
    Ok(token.to_owned())
}

/// `airlock login`: checks the token against the gateway, then stores it.
pub async fn login(
    server: &str,
    token: &str,
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<String> {
    let ca_file = ca_file
        .map(|p| {
            p.canonicalize()
                .with_context(|| format!("the CA file {}", p.display()))
        })
        .transpose()?;
    let api = Api::new(server, token, ca_file.as_deref())?;
    let me: serde_json::Value = api.get("/api/v1/whoami").await?;
    let user = me["user"].as_str().unwrap_or_default().to_owned();
    let login = Login {
        server: server.trim_end_matches('/').to_owned(),
        token: token.to_owned(),
        user: user.clone(),
        ca_file,
    };
    write_private(
        &login_path()?,
        serde_json::to_string_pretty(&login)?.as_bytes(),
        0o600,
    )?;
    Ok(user)
}

pub use airlock_api::credentials::MintedCredential as Credential;

/// What `airlock connect` hands a client: a URI and the PG* environment.
pub struct Connection {
    pub credential: Credential,
    pub ca_file: Option<PathBuf>,
}

impl Connection {
    fn host_for_uri(&self) -> String {
        if self.credential.host.contains(':') {
            format!("[{}]", self.credential.host)
        } else {
            self.credential.host.clone()
        }
    }

    pub fn uri(&self) -> String {
        let c = &self.credential;
        let mut s = format!(
            "postgresql://{}:{}@{}:{}/{}?sslmode={}",
            pct(&c.user),
            pct(&c.password),
            self.host_for_uri(),
            c.port,
            pct(&c.database),
            c.sslmode
        );
        if let Some(ca) = &self.ca_file {
            s.push_str("&sslrootcert=");
            s.push_str(&pct(&ca.to_string_lossy()));
        }
        s
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        let c = &self.credential;
        let mut env = vec![
            ("PGHOST", c.host.clone()),
            ("PGPORT", c.port.to_string()),
            ("PGUSER", c.user.clone()),
            ("PGDATABASE", c.database.clone()),
            ("PGPASSWORD", c.password.clone()),
            ("PGSSLMODE", c.sslmode.clone()),
        ];
        if let Some(ca) = &self.ca_file {
            env.push(("PGSSLROOTCERT", ca.to_string_lossy().into_owned()));
        }
        env
    }
}

pub async fn mint(
    api: &Api,
    resource: &str,
    access: &str,
    ttl: Option<&str>,
) -> anyhow::Result<Connection> {
    let mut body = serde_json::json!({ "resource": resource, "access": access });
    if let Some(t) = ttl {
        body["ttl"] = serde_json::Value::String(t.to_owned());
    }
    let credential: Credential = api.post("/api/v1/credentials", &body).await?;
    let ca_file = match &credential.ca_pem {
        Some(pem) => {
            let name = format!(
                "{}-{}.crt",
                credential.host.replace([':', '/'], "_"),
                credential.port
            );
            let path = home()?.join("ca").join(name);
            write_private(&path, pem.as_bytes(), 0o644)?;
            Some(path)
        }
        None => None,
    };
    Ok(Connection {
        credential,
        ca_file,
    })
}

/// Percent-encodes everything but RFC 3986 unreserved characters (and `/`,
/// harmless in a query value and common in paths).
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The error for a request that did not reach the gateway, with what to do
/// when the cause is the gateway's certificate.
fn reach_error(server: &str, e: reqwest::Error) -> anyhow::Error {
    let mut chain = format!("{e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        chain.push_str(&format!(": {s}"));
        source = s.source();
    }
    let hint = if chain.contains("UnknownIssuer") || chain.contains("certificate") {
        "\nthe gateway's certificate is not trusted: pass the CA it generated, \
         e.g. airlock login --server URL --ca-file <gateway data_dir>/tls/ca.crt  (the token on stdin)"
    } else {
        ""
    };
    anyhow::anyhow!("reaching the gateway at {server}: {chain}{hint}")
}

/// `text` percent-encoded for a URL query value (everything but unreserved
/// characters).
pub fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
