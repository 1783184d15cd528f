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
    /// The upstream ended or bypassed a SCRAM exchange before proving it
    /// knows the password: the one answer a server that does not (an
    /// impostor on the database's address) can give.
    #[error("the upstream broke off the SCRAM exchange: it sent {0} before its final SCRAM message, which proves it knows the password; this may be an impostor on the database's address")]
    ScramBroken(&'static str),
    /// The upstream let the gateway in without asking for anything, over a
    /// connection whose peer was not verified, although the resource's
    /// credential has a password: what an impostor does to be handed the
    /// session (and see its statements).
    #[error("the upstream let the gateway in without asking for the password of the resource's credential, over a connection whose TLS certificate was not verified (tls = \"{0}\"); this may be an impostor on the database's address")]
    UnprovenTrust(&'static str),
    /// The upstream asked for the password itself (cleartext) or a hash of
    /// it that can be replayed (MD5) over a connection whose peer was not
    /// verified.
    #[error("the upstream asked for the password {method}, but the connection's TLS certificate was not verified (tls = \"{mode}\"), so it may be an impostor on the database's address; the password was not sent")]
    UnverifiedPasswordRequest {
        method: &'static str,
        mode: &'static str,
    },
    #[error("reading from the upstream: {0}")]
    Read(#[from] ReadError),
    #[error("writing to the upstream: {0}")]
    Write(std::io::Error),
    #[error("unexpected message '{}' from the upstream during login", char::from(*.0))]
    Unexpected(u8),
}

impl UpstreamError {
    /// What the client is told: fixed sentences per case, never this
    /// error's `Display`, which can hold the resource's host and port, its
    /// TLS server name, or the database's own words about the gateway (its
    /// address in a pg_hba message, the upstream role): those are for the
    /// gateway's log and the audit record of the refused session, which
    /// the caller writes. Configuration problems are the platform team's to
    /// fix, so the hint says who to call rather than what to retry.
    pub fn to_user_facing(&self, resource: &str) -> UserFacingError {
        let base = UserFacingError::fatal(
            sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            format!("Airlock could not open a connection to resource \"{resource}\""),
        );
        let operator = "this is a gateway configuration problem; tell the platform team (the gateway's log and audit log say more)";
        let unreachable = "the database may be down or unreachable from the gateway; try again, then tell the platform team (the gateway's log says more)";
        match self {
            // Unknown setting, one that cannot be set at login, a bad value:
            // the client's own startup settings, passed on by the gateway,
            // so PostgreSQL's message is about what the client sent.
            UpstreamError::Rejected(e)
                if matches!(e.code(), Some("42704" | "55P02" | "22023" | "22P02")) =>
            {
                base.detail(format!(
                    "the database refused a startup setting: {}",
                    e.message().unwrap_or("(no message)")
                ))
                .hint("fix or remove that setting in the connection's parameters or options (PGOPTIONS)")
            }
            UpstreamError::Rejected(e) => base
                .detail(format!(
                    "the database refused the gateway's login (SQLSTATE {})",
                    e.code().unwrap_or("unknown")
                ))
                .hint("the resource's credential in airlock.toml is wrong or lacks rights; tell the platform team (the gateway's log says what the database answered)"),
            UpstreamError::Connect { source, .. } => base
                .detail(format!("the gateway could not reach the database: {}", source.kind()))
                .hint(unreachable),
            UpstreamError::Timeout(t) => base
                .detail(format!(
                    "the database did not complete the gateway's connection and login within {}",
                    airlock_config::format_duration(*t)
                ))
                .hint(unreachable),
            UpstreamError::Read(_) | UpstreamError::Write(_) => base
                .detail("the connection to the database broke during the gateway's login")
                .hint(unreachable),
            UpstreamError::Unexpected(_) => base
                .detail("the database answered the gateway's login with a message it did not expect")
                .hint(operator),
            UpstreamError::Tls(_) => base
                .detail("the TLS handshake between the gateway and the database failed")
                .hint("tell the platform team: the resource's tls mode, ca_file or the database's certificate do not fit (the gateway's log says how)"),
            UpstreamError::TlsRefused(_) => base
                .detail(self.to_string())
                .hint(operator),
            UpstreamError::Secret(_) => base
                .detail("the gateway could not read the password variable of the resource's credential")
                .hint(operator),
            UpstreamError::Scram(_) => base
                .detail("the SCRAM login between the gateway and the database failed")
                .hint(operator),
            UpstreamError::NoPassword(_) | UpstreamError::UnsupportedAuth(_) => base
                .detail(self.to_string())
                .hint(operator),
            UpstreamError::UnverifiedPasswordRequest { .. } => base
                .detail(self.to_string())
                .hint("the platform team should give the resource a ca_file with tls = \"verify-full\", or switch the database role to SCRAM (password_encryption = 'scram-sha-256', then reset its password)"),
            UpstreamError::ScramBroken(_) | UpstreamError::UnprovenTrust(_) => base
                .detail(self.to_string())
                .hint("tell the platform team: check that the resource's host and port lead to the real database, and use tls = \"verify-full\" with its CA"),
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
    // The caller decided these (`startup::client_settings` for a client's
    // own); the keys that name who logs in where are the gateway's alone.
    for (k, v) in client_params {
        let lower = k.to_ascii_lowercase();
        if !matches!(
            lower.as_str(),
            "user" | "database" | "options" | "replication"
        ) && !lower.starts_with("_pq_.")
        {
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
    // Set by AuthenticationOk, which `authenticate` accepts only outside an
    // open SCRAM exchange. What follows it in PostgreSQL's order
    // (ParameterStatus, BackendKeyData, ReadyForQuery) is refused before it:
    // a server may not skip the login by going straight to ReadyForQuery.
    let mut logged_in = false;
    // Some authentication request was answered (a SCRAM exchange whose
    // server signature verified, or a password sent to a verified peer).
    let mut asked = false;
    // An upstream that lets the gateway in without asking proves nothing:
    // accepted only when the credential has no password (trust on purpose)
    // or the peer's certificate was verified.
    let expects_password = password.is_some()
        || resource
            .credential(access)
            .is_some_and(|c| c.password_env.is_some());
    loop {
        let frame = read_frame(&mut stream, &mut buf, LOGIN_MAX_MESSAGE).await?;
        let msg = BackendMessage::decode(&frame).map_err(|e| UpstreamError::Read(e.into()))?;
        match msg {
            BackendMessage::Authentication(_) if logged_in => {
                return Err(UpstreamError::Unexpected(frame.tag))
            }
            BackendMessage::Authentication(auth) => {
                logged_in = matches!(auth, Authentication::Ok);
                let verified = resource.tls.verifies_peer() && stream.is_tls();
                if logged_in && !asked && expects_password && !verified {
                    return Err(UpstreamError::UnprovenTrust(resource.tls.as_str()));
                }
                asked |= !logged_in;
                let reply = authenticate(auth, resource, access, password, &stream, &mut scram)?;
                if let Some(reply) = reply {
                    out.clear();
                    reply.encode(&mut out);
                    stream.write_all(&out).await.map_err(UpstreamError::Write)?;
                }
            }
            BackendMessage::NoticeResponse(_) => notices.push(frame),
            BackendMessage::ErrorResponse(e) => return Err(UpstreamError::Rejected(e)),
            BackendMessage::NegotiateProtocolVersion(_) if !logged_in => {}
            _ if !logged_in => {
                return Err(if scram.is_some() {
                    UpstreamError::ScramBroken("the session's start")
                } else {
                    UpstreamError::Unexpected(frame.tag)
                })
            }
            BackendMessage::ParameterStatus(p) => parameters.push(p),
            BackendMessage::BackendKeyData(k) => key = Some(k),
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
    // Once SASL has begun, the only acceptable next messages are its own
    // continue and final (which checks the server's signature). Anything
    // else, AuthenticationOk above all, would hand the session to a server
    // that never proved it knows the password.
    if scram.is_some() {
        let what = match &auth {
            Authentication::SaslContinue { .. } | Authentication::SaslFinal { .. } => None,
            Authentication::Ok => Some("AuthenticationOk"),
            Authentication::Sasl { .. } => Some("a second SASL request"),
            Authentication::CleartextPassword => Some("a cleartext password request"),
            Authentication::Md5Password { .. } => Some("an MD5 password request"),
            Authentication::Unsupported { .. } => Some("another authentication request"),
        };
        if let Some(what) = what {
            return Err(UpstreamError::ScramBroken(what));
        }
    }
    // The password itself (cleartext) or a hash that can be replayed against
    // the real server (MD5) goes only to a peer whose certificate was
    // verified; SCRAM never reveals either, so it is fine on any transport.
    let unverified = |method: &'static str| {
        if resource.tls.verifies_peer() && stream.is_tls() {
            Ok(())
        } else {
            Err(UpstreamError::UnverifiedPasswordRequest {
                method,
                mode: resource.tls.as_str(),
            })
        }
    };
    Ok(match auth {
        Authentication::Ok => None,
        Authentication::CleartextPassword => {
            unverified("in cleartext")?;
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
            unverified("as an MD5 hash")?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_pgwire::messages::Severity;

    /// Regression: a refused upstream connection told the client
    /// "could not connect to HOST:PORT"; TLS errors named the server, and
    /// the database's own refusal could carry the gateway's address.
    #[test]
    fn no_upstream_address_reaches_the_client() {
        let host = "db7.internal.example";
        let io = || {
            std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                format!("refused by {host}:6543"),
            )
        };
        let cases = [
            UpstreamError::Connect { addr: format!("{host}:6543"), source: io() },
            UpstreamError::Timeout(Duration::from_secs(10)),
            UpstreamError::Tls(format!("invalid peer certificate: not valid for name {host:?} (10.9.8.7:6543)")),
            UpstreamError::TlsRefused("require"),
            UpstreamError::Rejected(ErrorResponse::new(
                Severity::Fatal,
                "28000",
                format!("no pg_hba.conf entry for host \"10.9.8.7\", user \"orders_ro\", database \"orders\" on {host}:6543"),
            )),
            UpstreamError::NoPassword(Access::Read),
            UpstreamError::Secret(format!("variable for {host}:6543 is not unicode")),
            UpstreamError::UnsupportedAuth(7),
            UpstreamError::Scram(format!("{host}:6543 sent a bad nonce")),
            UpstreamError::ScramBroken("AuthenticationOk"),
            UpstreamError::UnprovenTrust("require"),
            UpstreamError::UnverifiedPasswordRequest { method: "in cleartext", mode: "require" },
            UpstreamError::Read(ReadError::Io(io())),
            UpstreamError::Write(io()),
            UpstreamError::Unexpected(b'X'),
        ];
        for e in &cases {
            let u = e.to_user_facing("orders");
            let text = format!("{} {:?} {:?}", u.message, u.detail, u.hint);
            for secret in [host, "6543", "10.9.8.7", "orders_ro"] {
                assert!(!text.contains(secret), "{e:?} shows {secret}: {text}");
            }
            assert_eq!(
                u.code,
                sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
            );
            assert!(u.detail.is_some() && u.hint.is_some(), "{e:?}: {text}");
        }
        // The client's own refused setting is still named.
        let setting = UpstreamError::Rejected(ErrorResponse::new(
            Severity::Fatal,
            "42704",
            "unrecognized configuration parameter \"no_such\"",
        ));
        let u = setting.to_user_facing("orders");
        assert!(u.detail.unwrap().contains("no_such"));
    }
}
