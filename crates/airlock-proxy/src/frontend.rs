//! The frontend: a client connection from accept to AuthenticationOk.
//!
//! It answers SSLRequest with TLS and GSSENCRequest with `N`, reads the
//! StartupMessage (`user` = Airlock user, `database` = resource name), and
//! runs SCRAM-SHA-256 against the user's live session credentials. Every
//! refusal is a FATAL ErrorResponse with the SQLSTATE a PostgreSQL server
//! would use and a hint that says what to do next.
//!
//! Before the client's proof is checked, nothing it is told depends on who
//! it claims to be or which resource it names: an unknown user or resource
//! goes through the same SCRAM exchange as a wrong password (a salt that is
//! stable per name, the same store reads, the same proof check against a
//! decoy verifier) and fails at the same point with the same 28P01
//! ([`login_failed`]), so the gateway cannot be used to list its users or
//! resources. The real reason goes to the audit log's `login_refused`
//! record. Only after a proof matched a credential are refusals specific
//! (expired, access removed): the client has shown it holds one.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use airlock_access::{decide, Decision};
use airlock_config::{Access, Config};
use airlock_pgwire::codec::StartupPacket;
use airlock_pgwire::messages::tag::frontend as ftag;
use airlock_pgwire::messages::{
    Authentication, BackendMessage, CancelRequest, NegotiateProtocolVersion, SaslInitialResponse,
    SaslResponse, StartupMessage,
};
use airlock_pgwire::scram::{self, ChannelBinding, ScramError, ScramServer, Verifier};
use airlock_pgwire::{sqlstate, ProtocolError};
use airlock_store::SessionCredential;

use crate::error::UserFacingError;
use crate::io::{read_frame, read_startup, ReadError};
use crate::stream::ClientStream;
use crate::ProxyContext;

/// How far back expired credentials are still considered, so that a client
/// holding one is told "expired" rather than "wrong password".
const EXPIRED_GRACE_MS: i64 = 24 * 3600 * 1000;
/// At most this many of a user's newest credentials for one resource are
/// tried for one login. Each costs one HMAC and one SHA-256 (microseconds);
/// the cap bounds the work a login can cause.
const MAX_CANDIDATES: usize = 256;
/// SASL messages are tiny; anything bigger during login is hostile.
const AUTH_MAX_MESSAGE: usize = 16 * 1024;
/// The `user_salts` row that holds the key from which unknown users' salts
/// are derived ([`scram::derived_salt`]). Upper case and spaces make it an
/// invalid user name, so no user's salt can be it; one row serves every
/// probed name (a flood of names stores nothing), and gateways sharing a
/// store share it, so a name's salt is the same whichever one answers.
const UNKNOWN_USER_SALT_KEY: &str = "Airlock key: salts of unknown users";
/// Longest client-chosen name echoed back or written into a reason.
const MAX_SHOWN_NAME: usize = 128;

/// What a new connection turned out to be.
pub enum Hello {
    Cancel(ClientCancel),
    Startup {
        stream: ClientStream,
        buf: BytesMut,
        startup: StartupMessage,
    },
}

/// A CancelRequest and the connection it came on. The connection stays open
/// until the cancel was delivered: libpq's `PQcancel` (and drivers built on
/// the same idea) returns when the server closes it, and the client's next
/// statement must not be sent before the cancel has reached PostgreSQL, or
/// the cancel can land on that statement instead.
pub struct ClientCancel {
    pub request: CancelRequest,
    /// Held, never read or written; dropping it closes the connection.
    _connection: ClientStream,
}

#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    /// Tell the client, then close.
    #[error("{0}")]
    Refused(UserFacingError),
    /// The login failed for a reason the client is not told because it
    /// depends on who the client claims to be (unknown user or resource,
    /// wrong password): the client gets `client` ([`login_failed`]), the
    /// audit log and the gateway's log `reason`.
    #[error("{reason}")]
    LoginFailed {
        client: UserFacingError,
        reason: String,
    },
    /// The client went away or sent bytes that cannot be answered.
    #[error("{0}")]
    Read(#[from] ReadError),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("writing to client: {0}")]
    Write(std::io::Error),
}

impl From<UserFacingError> for FrontendError {
    fn from(e: UserFacingError) -> Self {
        FrontendError::Refused(e)
    }
}

pub async fn send(
    stream: &mut (impl AsyncWrite + Unpin),
    msgs: &[BackendMessage],
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    for m in msgs {
        m.encode(&mut out);
    }
    stream.write_all(&out).await?;
    stream.flush().await
}

/// Negotiates encryption and reads the first real packet.
pub async fn hello(mut tcp: TcpStream, ctx: &ProxyContext) -> Result<Hello, FrontendError> {
    let _ = tcp.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        match read_startup(&mut tcp, &mut buf).await? {
            StartupPacket::GssEncRequest => {
                tcp.write_all(b"N").await.map_err(FrontendError::Write)?;
            }
            StartupPacket::SslRequest => {
                let Some(tls) = ctx.tls.as_ref() else {
                    tcp.write_all(b"N").await.map_err(FrontendError::Write)?;
                    continue;
                };
                // Anything the client sent after SSLRequest but before the
                // handshake was sent in plaintext and could have been injected
                // by a man in the middle: it is discarded, never interpreted.
                buf.clear();
                tcp.write_all(b"S").await.map_err(FrontendError::Write)?;
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
                let stream = acceptor.accept(tcp).await.map_err(FrontendError::Tls)?;
                let mut stream = ClientStream::Tls(Box::new(stream));
                let mut buf = BytesMut::with_capacity(1024);
                return match read_startup(&mut stream, &mut buf).await? {
                    StartupPacket::Startup(startup) => Ok(Hello::Startup {
                        stream,
                        buf,
                        startup,
                    }),
                    StartupPacket::Cancel(request) => Ok(Hello::Cancel(ClientCancel {
                        request,
                        _connection: stream,
                    })),
                    StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                        let e = UserFacingError::protocol("SSLRequest received inside TLS");
                        let _ = send(
                            &mut stream,
                            &[BackendMessage::ErrorResponse(e.to_response())],
                        )
                        .await;
                        Err(FrontendError::Refused(e))
                    }
                };
            }
            StartupPacket::Cancel(request) => {
                return Ok(Hello::Cancel(ClientCancel {
                    request,
                    _connection: ClientStream::Plain(tcp),
                }))
            }
            StartupPacket::Startup(startup) => {
                return Ok(Hello::Startup {
                    stream: ClientStream::Plain(tcp),
                    buf,
                    startup,
                })
            }
        }
    }
}

/// A client that proved a live session credential.
pub struct Authenticated {
    pub user: String,
    pub resource: String,
    pub access: Access,
    pub credential: SessionCredential,
    pub grant: airlock_access::Grant,
    pub channel_bound: bool,
}

/// Checks the startup parameters and runs SCRAM. On refusal the FATAL has
/// already been sent to the client and the refusal is in the audit log.
pub async fn authenticate(
    stream: &mut ClientStream,
    buf: &mut BytesMut,
    startup: &StartupMessage,
    config: &Config,
    ctx: &ProxyContext,
    peer: std::net::SocketAddr,
) -> Result<Authenticated, FrontendError> {
    let result = authenticate_inner(stream, buf, startup, config, ctx).await;
    let refused = match &result {
        Err(FrontendError::Refused(e)) => Some((e, e.message.as_str())),
        Err(FrontendError::LoginFailed { client, reason }) => Some((client, reason.as_str())),
        _ => None,
    };
    if let Some((e, reason)) = refused {
        record_refusal(ctx, startup, peer, e, reason);
        let _ = send(stream, &[BackendMessage::ErrorResponse(e.to_response())]).await;
    }
    result
}

/// Writes a refused login to the audit log: who it claimed to be, for which
/// resource, from where, the SQLSTATE the client got, and why (`reason`: the
/// real one, which the client may not have been told; never a secret).
/// Refusals from one address are aggregated ([`crate::refusals`]). A failed
/// write is logged; the login is refused anyway.
pub fn record_refusal(
    ctx: &ProxyContext,
    startup: &StartupMessage,
    peer: std::net::SocketAddr,
    e: &UserFacingError,
    reason: &str,
) {
    // Client-chosen strings are bounded ([`shown`]), so a login flood
    // cannot write huge records.
    let user = startup.param("user").unwrap_or("");
    let resource = startup
        .param("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(user);
    ctx.refusals.refused(
        &ctx.audit,
        peer,
        crate::refusals::Refusal {
            user: shown(user),
            resource: shown(resource),
            reason: reason.chars().take(1024).collect(),
            sqlstate: e.code.to_owned(),
        },
    );
}

async fn authenticate_inner(
    stream: &mut ClientStream,
    buf: &mut BytesMut,
    startup: &StartupMessage,
    config: &Config,
    ctx: &ProxyContext,
) -> Result<Authenticated, FrontendError> {
    if !stream.is_tls() && !config.gateway.allow_plaintext {
        return Err(UserFacingError::fatal(
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            "Airlock accepts only TLS connections",
        )
        .hint("connect with sslmode=verify-full (see `airlock connect`), or sslmode=require")
        .into());
    }
    let minor = startup.protocol & 0xffff;
    let pq_options: Vec<String> = startup
        .params
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| k.clone())
        .collect();
    if minor > 0 || !pq_options.is_empty() {
        // Newer clients may ask for 3.x or protocol options; we speak 3.0 and
        // say so, as PostgreSQL does, and the client adapts.
        send(
            stream,
            &[BackendMessage::NegotiateProtocolVersion(
                NegotiateProtocolVersion {
                    newest_minor: 0,
                    unrecognized: pq_options,
                },
            )],
        )
        .await
        .map_err(FrontendError::Write)?;
    }
    let Some(user) = startup.param("user").filter(|u| !u.is_empty()) else {
        return Err(UserFacingError::fatal(
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            "no user name in the startup packet",
        )
        .hint("connect as your Airlock user name, e.g. with the URI `airlock connect` prints")
        .into());
    };
    let resource = startup
        .param("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(user);
    if let Some(repl) = startup.param("replication") {
        if !matches!(
            repl.to_ascii_lowercase().as_str(),
            "false" | "off" | "no" | "0"
        ) {
            return Err(UserFacingError::fatal(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "replication connections are not supported through Airlock",
            )
            .into());
        }
    }
    // Whether the user and the resource exist changes nothing the client
    // sees: both paths read the store the same way (a salt row, then the
    // credentials), an unknown user gets a salt derived from its name that
    // is as stable as a real one, and the exchange fails at the proof with
    // no candidates.
    let known_user = config.user(user).is_some();
    let known_resource = config.resource(resource).is_some();
    let now = ctx.clock.now_ms();
    let store = ctx.store.clone();
    let (u, r) = (user.to_owned(), resource.to_owned());
    let (salt, candidates) = tokio::task::spawn_blocking(move || {
        let salt = if known_user {
            store.user_salt(&u, &scram::random_salt())?
        } else {
            let key = store.user_salt(UNKNOWN_USER_SALT_KEY, &rand::random::<[u8; 32]>())?;
            scram::derived_salt(&key, &u).to_vec()
        };
        let creds = store.credentials_for(&u, &r, now - EXPIRED_GRACE_MS, MAX_CANDIDATES)?;
        Ok::<_, airlock_store::StoreError>((salt, creds))
    })
    .await
    .map_err(|e| internal(format!("credential lookup task failed: {e}")))?
    .map_err(|e| internal(format!("credential lookup failed: {e}")))?;
    // Credentials of a user or resource removed from the configuration
    // since they were minted log in to nothing.
    let candidates = if known_user && known_resource {
        candidates
    } else {
        Vec::new()
    };
    let failed = |why: String| FrontendError::LoginFailed {
        client: login_failed(user, resource),
        reason: why,
    };
    let why_unproven = || {
        match (known_user, known_resource) {
        (false, false) => format!(
            "unknown user \"{}\" and unknown resource \"{}\"",
            shown(user),
            shown(resource)
        ),
        (false, true) => format!("unknown user \"{}\"", shown(user)),
        (true, false) => format!("unknown resource \"{}\"", shown(resource)),
        (true, true) if candidates.is_empty() => {
            "wrong password: the user has no live session credential for this resource"
                .to_owned()
        }
        (true, true) => format!(
            "wrong password: it matches none of the user's {} session credentials for this resource",
            candidates.len()
        ),
    }
    };

    let binding = match stream {
        ClientStream::Tls(_) => ctx
            .tls
            .as_ref()
            .and_then(|t| crate::tls::tls_server_end_point(&t.cert_der))
            .map(ChannelBinding::TlsServerEndPoint)
            .unwrap_or(ChannelBinding::None),
        ClientStream::Plain(_) => ChannelBinding::None,
    };
    send(
        stream,
        &[BackendMessage::Authentication(Authentication::Sasl {
            mechanisms: ScramServer::mechanisms(&binding)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        })],
    )
    .await
    .map_err(FrontendError::Write)?;

    let initial = read_password_message(stream, buf).await?;
    let initial = SaslInitialResponse::decode(initial).map_err(protocol)?;
    let client_first = initial
        .data
        .ok_or_else(|| UserFacingError::protocol("SASLInitialResponse without data"))?;
    let (server, server_first) = ScramServer::start(
        &initial.mechanism,
        &client_first,
        &binding,
        &salt,
        scram::DEFAULT_ITERATIONS,
    )
    .map_err(scram_refusal)?;
    send(
        stream,
        &[BackendMessage::Authentication(
            Authentication::SaslContinue {
                data: server_first.into(),
            },
        )],
    )
    .await
    .map_err(FrontendError::Write)?;

    let response = read_password_message(stream, buf).await?;
    let response = SaslResponse::decode(response).map_err(protocol)?;
    let verifiers: Vec<(usize, Verifier)> = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Verifier::parse_pg_string(&c.verifier).ok().map(|v| (i, v)))
        .collect();
    // The decoy is checked with every login, so one with no candidates does
    // the work of one with a single wrong candidate.
    let decoy = Verifier::decoy(&salt, scram::DEFAULT_ITERATIONS);
    let mut refs: Vec<&Verifier> = verifiers.iter().map(|(_, v)| v).collect();
    refs.push(&decoy);
    let (matched, server_final) = match server.finish(&response.data, &refs) {
        Ok(m) => m,
        Err(ScramError::InvalidProof) => return Err(failed(why_unproven())),
        Err(e) => return Err(scram_refusal(e)),
    };
    // No proof matches the decoy's random keys; were it to, it is no credential.
    let Some((index, _)) = verifiers.get(matched) else {
        return Err(failed(why_unproven()));
    };
    let credential = candidates[*index].clone();
    if credential.expires_ms <= now {
        return Err(UserFacingError::fatal(
            sqlstate::INVALID_PASSWORD,
            format!(
                "session credential for user \"{user}\" on resource \"{resource}\" expired {} ago",
                airlock_config::format_duration(std::time::Duration::from_millis(
                    (now - credential.expires_ms) as u64
                ))
            ),
        )
        .hint(format!("get a new one: airlock connect {resource}"))
        .into());
    }
    let access: Access = credential.access.parse().map_err(|_| {
        internal(format!(
            "stored credential has unknown access {:?}",
            credential.access
        ))
    })?;
    // The policy is asked again at login: access removed since the credential
    // was minted, or the end of the grant behind it, ends here whatever the
    // credential says.
    let grant =
        match grant_of_credential(config, ctx, &credential, user, resource, access, now).await? {
            Ok(g) => g,
            Err(d) => {
                return Err(UserFacingError::fatal(
                    sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                    format!("access denied: {d}"),
                )
                .into())
            }
        };
    send(
        stream,
        &[
            BackendMessage::Authentication(Authentication::SaslFinal {
                data: server_final.into(),
            }),
            BackendMessage::Authentication(Authentication::Ok),
        ],
    )
    .await
    .map_err(FrontendError::Write)?;
    Ok(Authenticated {
        user: user.to_owned(),
        resource: resource.to_owned(),
        access,
        credential,
        grant,
        channel_bound: server.channel_bound(),
    })
}

/// The grant behind `credential`, re-checked now: a standing grant against the
/// policy, a time-boxed one against its stored record and the policy.
async fn grant_of_credential(
    config: &Config,
    ctx: &ProxyContext,
    credential: &airlock_store::SessionCredential,
    user: &str,
    resource: &str,
    access: Access,
    now: i64,
) -> Result<Result<airlock_access::Grant, airlock_access::Denial>, FrontendError> {
    if credential.grant_id.starts_with("standing:") {
        return Ok(match decide(config, user, resource, access, now, &[]) {
            // No time-boxed grants are passed, so an allow is the standing grant.
            Decision::Allow(g) => Ok(g),
            Decision::Deny(d) => Err(d),
        });
    }
    let store = ctx.store.clone();
    let id = credential.grant_id.clone();
    let record = tokio::task::spawn_blocking(move || store.grant(&id))
        .await
        .map_err(|e| internal(format!("grant lookup task failed: {e}")))?
        .map_err(|e| internal(format!("grant lookup failed: {e}")))?;
    let Some(record) = record else {
        return Ok(Err(airlock_access::Denial::GrantEnded {
            grant_id: credential.grant_id.clone(),
            resource: resource.to_owned(),
            access,
            end: airlock_access::GrantEnd::NoLongerAllowed {
                why: "the grant is no longer on record".into(),
            },
        }));
    };
    if record.user != user || record.resource != resource || record.access != access {
        return Err(internal(format!(
            "credential {} names grant {} of another user, resource or level",
            credential.id, record.id
        )));
    }
    Ok(airlock_access::check_grant(config, &record, now))
}

async fn read_password_message(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> Result<bytes::Bytes, FrontendError> {
    let frame = read_frame(stream, buf, AUTH_MAX_MESSAGE).await?;
    if frame.tag != ftag::PASSWORD {
        return Err(UserFacingError::protocol(format!(
            "expected a SASL response, got message type '{}'",
            char::from(frame.tag)
        ))
        .into());
    }
    Ok(frame.body)
}

fn protocol(e: ProtocolError) -> FrontendError {
    UserFacingError::protocol(e.to_string()).into()
}

fn internal(message: String) -> FrontendError {
    tracing::error!(%message, "login failed inside the gateway");
    UserFacingError::fatal(
        sqlstate::INTERNAL_ERROR,
        "Airlock could not complete the login",
    )
    .hint("try again; if it persists, the gateway's log says why")
    .into()
}

/// A client-chosen name as it is echoed back or written into a reason: bounded.
fn shown(name: &str) -> String {
    name.chars().take(MAX_SHOWN_NAME).collect()
}

/// The one answer to a login whose proof matched no credential, whatever the
/// reason (unknown user, unknown resource, no credential, wrong password):
/// it names only what the client sent, like PostgreSQL's own message.
pub fn login_failed(user: &str, resource: &str) -> UserFacingError {
    UserFacingError::fatal(
        sqlstate::INVALID_PASSWORD,
        format!("password authentication failed for user \"{}\"", shown(user)),
    )
    .detail("the user name (your Airlock user), the database name (the Airlock resource) and the password (a live session password for both) must match")
    .hint(format!(
        "check the user name and the database name (`airlock resources` lists yours), and get a new session password with: airlock connect {}; the gateway's operator can see the reason in the audit log",
        shown(resource)
    ))
}

/// SCRAM failures other than a proof that matches nothing: the same for
/// every user, so they can be specific.
fn scram_refusal(e: ScramError) -> FrontendError {
    match e {
        ScramError::UnsupportedMechanism(_) | ScramError::ChannelBindingDowngrade => {
            UserFacingError::fatal(
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                format!("SCRAM negotiation failed: {e}"),
            )
            .hint("use a client that supports SCRAM-SHA-256 (libpq 10 or later)")
        }
        other => UserFacingError::protocol(format!("malformed SCRAM exchange: {other}")),
    }
    .into()
}

/// The gateway shares one `Arc<ProxyContext>` among connections.
pub type Shared = Arc<ProxyContext>;
