//! The backend: the gateway's own connection to the upstream database, logged
//! in with the resource's injected credential for the session's access level.
//!
//! The password is read from its environment variable at connect time, used
//! for the exchange and dropped; it is never logged, never put into an error
//! and never sent anywhere but the upstream's authentication exchange.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use airlock_config::{Access, Resource, UpstreamTls};
use airlock_pgwire::messages::tag::frontend as ftag;
use airlock_pgwire::messages::{
    startup::encode_ssl_request, Authentication, BackendKeyData, BackendMessage, ErrorResponse,
    ParameterStatus, PasswordMessage, SaslInitialResponse, SaslResponse, StartupMessage,
    TransactionStatus,
};
use airlock_pgwire::{sqlstate, Frame};

use crate::error::UserFacingError;
use crate::io::{read_frame, ReadError};
use crate::stream::UpstreamStream;
use crate::tls;

/// Messages during login are small; this cap only guards against a broken upstream.
const LOGIN_MAX_MESSAGE: usize = 1 << 20;

/// An upstream connection that finished login and sent ReadyForQuery.
pub struct Upstream {
    pub stream: UpstreamStream,
    /// Bytes already read past ReadyForQuery (normally none).
    pub read_buf: BytesMut,
    pub parameters: Vec<ParameterStatus>,
    /// Notices sent during login, relayed to the client as they were.
    pub notices: Vec<Frame>,
    pub key: BackendKeyData,
    pub status: TransactionStatus,
    pub tls: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out after {0:?} connecting and logging in")]
    Timeout(Duration),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the upstream refused TLS but the resource requires it (tls = \"{0}\")")]
    TlsRefused(&'static str),
    #[error("the upstream rejected the login: {0}")]
    Rejected(ErrorResponse),
    #[error("the upstream asked for a password but the resource has no password_env for its {0} credential")]
    NoPassword(Access),
    #[error("password variable: {0}")]
    Secret(String),
    #[error("the upstream asked for an authentication method Airlock does not speak (code {0})")]
    UnsupportedAuth(i32),
    #[error("SCRAM exchange with the upstream failed: {0}")]
    Scram(String),
    #[error("reading from the upstream: {0}")]
    Read(#[from] ReadError),
    #[error("writing to the upstream: {0}")]
    Write(std::io::Error),
    #[error("unexpected message '{}' from the upstream during login", char::from(*.0))]
    Unexpected(u8),
}

impl UpstreamError {
    /// What the client is told. Configuration problems are the platform
    /// team's to fix, so the hint says who to call rather than what to retry.
    pub fn to_user_facing(&self, resource: &str) -> UserFacingError {
        let base = UserFacingError::fatal(
            sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            format!("Airlock could not open a connection to resource \"{resource}\""),
        );
        match self {
            UpstreamError::Rejected(e) => base
                .detail(format!(
                    "the database refused the gateway's login: {}",
                    e.message().unwrap_or("(no message)")
                ))
                .hint("the resource's credential in airlock.toml is wrong or lacks rights; tell the platform team"),
            UpstreamError::NoPassword(_) | UpstreamError::Secret(_) | UpstreamError::UnsupportedAuth(_) => base
                .detail(self.to_string())
                .hint("this is a gateway configuration problem; tell the platform team"),
            _ => base
                .detail(self.to_string())
                .hint("the database may be down or unreachable from the gateway; try again, then check the resource's host and port"),
        }
    }
}

/// Caches rustls client configs: loading system roots costs milliseconds and
/// must not happen on every connection.
#[derive(Default, Clone)]
pub struct UpstreamTlsConfigs {
    cache: Arc<Mutex<HashMap<TlsKey, Arc<rustls::ClientConfig>>>>,
}

/// (verify the certificate?, CA file)
type TlsKey = (bool, Option<PathBuf>);

impl UpstreamTlsConfigs {
    fn get(
        &self,
        verify: bool,
        ca: Option<PathBuf>,
    ) -> Result<Arc<rustls::ClientConfig>, UpstreamError> {
        let key = (verify, ca);
        if let Some(c) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(c.clone());
        }
        let config = tls::upstream_client_config(key.0, key.1.as_deref())
            .map_err(|e| UpstreamError::Tls(e.to_string()))?;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, config.clone());
        Ok(config)
    }
}

/// Startup parameters a client may pass through to the upstream. Everything
/// else (notably `options`, which can set any GUC such as
/// `default_transaction_read_only`) is dropped and reported to the client.
pub const PASSTHROUGH_PARAMS: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "timezone",
    "extra_float_digits",
    "intervalstyle",
    "lc_messages",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "bytea_output",
    "geqo",
];

pub fn is_passthrough_param(name: &str) -> bool {
    PASSTHROUGH_PARAMS
        .iter()
        .any(|p| p.eq_ignore_ascii_case(name))
}

/// Connects and logs in, bounded by `timeout` as a whole.
pub async fn connect(
    resource: &Resource,
    access: Access,
    client_params: &[(String, String)],
    settings: &[(String, String)],
    tls_configs: &UpstreamTlsConfigs,
    timeout: Duration,
) -> Result<Upstream, UpstreamError> {
    tokio::time::timeout(
        timeout,
        connect_inner(resource, access, None, client_params, settings, tls_configs),
    )
    .await
    .map_err(|_| UpstreamError::Timeout(timeout))?
}

/// Like [`connect`], with `password` instead of the one the resource's
/// `password_env` names: the runbook runner logs in to the gateway's own
/// listener with a session credential it has just minted, which lives in no
/// environment variable.
pub async fn connect_with_password(
    resource: &Resource,
    access: Access,
    password: &airlock_config::Secret,
    client_params: &[(String, String)],
    tls_configs: &UpstreamTlsConfigs,
    timeout: Duration,
) -> Result<Upstream, UpstreamError> {
    tokio::time::timeout(
        timeout,
        connect_inner(
            resource,
            access,
            Some(password),
            client_params,
            &[],
            tls_configs,
        ),
    )
    .await
    .map_err(|_| UpstreamError::Timeout(timeout))?
}

/// Opens the TCP connection and negotiates TLS per the resource's mode.
pub async fn open_stream(
    resource: &Resource,
    tls_configs: &UpstreamTlsConfigs,
) -> Result<UpstreamStream, UpstreamError> {
    let addr = format!("{}:{}", resource.host, resource.port);
    let tcp = TcpStream::connect(&addr)
        .await
        .map_err(|source| UpstreamError::Connect {
            addr: addr.clone(),
            source,
        })?;
    // Every request/response pair is a few small writes: Nagle would add
    // tens of milliseconds to each.
    let _ = tcp.set_nodelay(true);
    let mode = resource.tls;
    if mode == UpstreamTls::Disable {
        return Ok(UpstreamStream::Plain(tcp));
    }
    let mut tcp = tcp;
    let mut req = BytesMut::new();
    encode_ssl_request(&mut req);
    tcp.write_all(&req).await.map_err(UpstreamError::Write)?;
    let mut answer = [0u8; 1];
    tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut answer)
        .await
        .map_err(|e| UpstreamError::Read(ReadError::Io(e)))?;
    match answer[0] {
        b'S' => {
            let verify = mode == UpstreamTls::VerifyFull;
            let config = tls_configs.get(verify, resource.ca_file.clone())?;
            let name = ServerName::try_from(resource.host.clone()).map_err(|e| {
                UpstreamError::Tls(format!("invalid server name {:?}: {e}", resource.host))
            })?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| UpstreamError::Tls(e.to_string()))?;
            Ok(UpstreamStream::Tls(Box::new(tls)))
        }
        b'N' if mode == UpstreamTls::Prefer => Ok(UpstreamStream::Plain(tcp)),
        b'N' => Err(UpstreamError::TlsRefused(mode.as_str())),
        other => Err(UpstreamError::Unexpected(other)),
    }
}

async fn connect_inner(
    resource: &Resource,
    access: Access,
    password: Option<&airlock_config::Secret>,
    client_params: &[(String, String)],
    settings: &[(String, String)],
    tls_configs: &UpstreamTlsConfigs,
) -> Result<Upstream, UpstreamError> {
    let credential = resource
        .credential(access)
        .ok_or(UpstreamError::NoPassword(access))?;
    let mut stream = open_stream(resource, tls_configs).await?;

    let mut params = vec![
        ("user".to_owned(), credential.user.clone()),
        ("database".to_owned(), resource.database.clone()),
    ];
    for (k, v) in client_params {
        if is_passthrough_param(k) {
            params.push((k.clone(), v.clone()));
        }
    }
    // The gateway's own settings (guardrails) come after the client's and
    // override them.
    params.extend(settings.iter().cloned());
    // The gateway parses statements as PostgreSQL does with
    // standard_conforming_strings on; the upstream must read them the same
    // way whatever its configuration says (changing it later is refused).
    params.push(("standard_conforming_strings".to_owned(), "on".to_owned()));
    if access == Access::Read {
        // Defense in depth: the database itself refuses writes in a read
        // session even if a statement slipped past the gateway.
        params.push(("default_transaction_read_only".to_owned(), "on".to_owned()));
    }
    let mut out = BytesMut::new();
    StartupMessage::new(params).encode(&mut out);
    stream.write_all(&out).await.map_err(UpstreamError::Write)?;

    let mut buf = BytesMut::with_capacity(4096);
    let mut parameters = Vec::new();
    let mut notices = Vec::new();
    let mut key = None;
    let mut scram: Option<ScramSha256> = None;
    loop {
        let frame = read_frame(&mut stream, &mut buf, LOGIN_MAX_MESSAGE).await?;
        let msg = BackendMessage::decode(&frame).map_err(|e| UpstreamError::Read(e.into()))?;
        match msg {
            BackendMessage::Authentication(auth) => {
                let reply = authenticate(auth, resource, access, password, &stream, &mut scram)?;
                if let Some(reply) = reply {
                    out.clear();
                    reply.encode(&mut out);
                    stream.write_all(&out).await.map_err(UpstreamError::Write)?;
                }
            }
            BackendMessage::ParameterStatus(p) => parameters.push(p),
            BackendMessage::BackendKeyData(k) => key = Some(k),
            BackendMessage::NoticeResponse(_) => notices.push(frame),
            BackendMessage::ErrorResponse(e) => return Err(UpstreamError::Rejected(e)),
            BackendMessage::NegotiateProtocolVersion(_) => {}
            BackendMessage::ReadyForQuery(r) => {
                let tls = stream.is_tls();
                return Ok(Upstream {
                    stream,
                    read_buf: buf,
                    parameters,
                    notices,
                    // PostgreSQL always sends a key; a server that does not
                    // simply cannot be cancelled through us.
                    key: key.unwrap_or(BackendKeyData {
                        process_id: 0,
                        secret_key: 0,
                    }),
                    status: r.status,
                    tls,
                });
            }
            _ => return Err(UpstreamError::Unexpected(frame.tag)),
        }
    }
}

/// Answers one authentication request; `None` when nothing is to be sent.
fn authenticate(
    auth: Authentication,
    resource: &Resource,
    access: Access,
    given: Option<&airlock_config::Secret>,
    stream: &UpstreamStream,
    scram: &mut Option<ScramSha256>,
) -> Result<Option<Frame>, UpstreamError> {
    let password = || -> Result<airlock_config::Secret, UpstreamError> {
        if let Some(p) = given {
            return Ok(p.clone());
        }
        resource
            .password(access)
            .map_err(|e| UpstreamError::Secret(e.to_string()))?
            .ok_or(UpstreamError::NoPassword(access))
    };
    let credential_user = resource
        .credential(access)
        .map(|c| c.user.as_str())
        .unwrap_or_default();
    Ok(match auth {
        Authentication::Ok => None,
        Authentication::CleartextPassword => {
            let pw = password()?;
            Some(Frame::new(
                ftag::PASSWORD,
                PasswordMessage {
                    password: bytes::Bytes::copy_from_slice(pw.expose().as_bytes()),
                }
                .encode_body(),
            ))
        }
        Authentication::Md5Password { salt } => {
            let pw = password()?;
            let hashed = postgres_protocol::authentication::md5_hash(
                credential_user.as_bytes(),
                pw.expose().as_bytes(),
                salt,
            );
            Some(Frame::new(
                ftag::PASSWORD,
                PasswordMessage {
                    password: bytes::Bytes::from(hashed.into_bytes()),
                }
                .encode_body(),
            ))
        }
        Authentication::Sasl { mechanisms } => {
            let pw = password()?;
            let plus = mechanisms.iter().any(|m| m == "SCRAM-SHA-256-PLUS");
            let plain = mechanisms.iter().any(|m| m == "SCRAM-SHA-256");
            let binding_data = match stream {
                UpstreamStream::Tls(tls) => tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(|leaf| tls::tls_server_end_point(leaf.as_ref())),
                UpstreamStream::Plain(_) => None,
            };
            let (mechanism, binding) = match (plus, binding_data) {
                (true, Some(data)) => (
                    "SCRAM-SHA-256-PLUS",
                    ChannelBinding::tls_server_end_point(data),
                ),
                _ if plain => (
                    "SCRAM-SHA-256",
                    if stream.is_tls() {
                        ChannelBinding::unrequested()
                    } else {
                        ChannelBinding::unsupported()
                    },
                ),
                _ => {
                    return Err(UpstreamError::Scram(format!(
                        "no supported SASL mechanism among {mechanisms:?}"
                    )))
                }
            };
            let s = ScramSha256::new(pw.expose().as_bytes(), binding);
            let first = s.message().to_vec();
            *scram = Some(s);
            Some(Frame::new(
                ftag::PASSWORD,
                SaslInitialResponse {
                    mechanism: mechanism.to_owned(),
                    data: Some(first.into()),
                }
                .encode_body(),
            ))
        }
        Authentication::SaslContinue { data } => {
            let s = scram
                .as_mut()
                .ok_or_else(|| UpstreamError::Scram("SASLContinue before SASL".into()))?;
            s.update(&data)
                .map_err(|e| UpstreamError::Scram(e.to_string()))?;
            Some(Frame::new(
                ftag::PASSWORD,
                SaslResponse {
                    data: s.message().to_vec().into(),
                }
                .encode_body(),
            ))
        }
        Authentication::SaslFinal { data } => {
            let mut s = scram
                .take()
                .ok_or_else(|| UpstreamError::Scram("SASLFinal before SASL".into()))?;
            // Verifies the server's signature: a server that does not know
            // the password (an impostor) is caught here.
            s.finish(&data)
                .map_err(|e| UpstreamError::Scram(e.to_string()))?;
            None
        }
        Authentication::Unsupported { code } => return Err(UpstreamError::UnsupportedAuth(code)),
    })
}
