//! The gateway's own login to the upstream: SCRAM, md5 and trust, over every
//! TLS mode, with the injected credential for the session's access level.

mod common;

use airlock_pgcluster::HbaMode;
use common::{stderr, stdout, Options, World};

/// (hba, upstream ssl, resource tls, expect upstream TLS in use)
const CASES: &[(HbaMode, bool, &str, bool)] = &[
    (HbaMode::Scram, false, "disable", false),
    (HbaMode::Scram, false, "prefer", false),
    (HbaMode::Scram, true, "prefer", true),
    // MD5 only where the certificate is verified (issue 18).
    (HbaMode::Md5, true, "verify-full", true),
    (HbaMode::Trust, false, "disable", false),
    (HbaMode::Trust, true, "verify-full", true),
    (HbaMode::Scram, true, "verify-full", true),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_auth_methods_and_tls_modes() {
    for &(hba, ssl, tls, expect_tls) in CASES {
        let w = World::start_with(Options {
            hba,
            upstream_ssl: ssl,
            upstream_tls: tls,
            // Trust without a verified peer: only for a credential that
            // names no password (see the impostor test below).
            no_upstream_passwords: hba == HbaMode::Trust && tls != "verify-full",
            resource_extra: if tls == "verify-full" {
                "ca_file = \"upstream-tls/tls/ca.crt\"".into()
            } else {
                String::new()
            },
            ..Options::default()
        })
        .await;
        for (user, access, db_user) in [
            ("oncall1", "read", "orders_ro"),
            ("lead1", "write", "orders_rw"),
        ] {
            let conn = w.connect(user, access).await;
            let o = w.psql(
                &conn,
                &["-c", "select current_user, coalesce((select ssl from pg_stat_ssl where pid = pg_backend_pid()), false)"],
            );
            assert!(o.status.success(), "{hba:?}/{tls}/{access}: {}", stderr(&o));
            assert_eq!(
                stdout(&o),
                format!("{db_user}|{}\n", if expect_tls { "t" } else { "f" }),
                "{hba:?}/{tls}"
            );
        }
        w.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_explained() {
    // require against a server without TLS.
    let w = World::start_with(Options {
        upstream_tls: "require",
        ..Options::default()
    })
    .await;
    let conn = w.connect("oncall1", "read").await;
    let o = w.psql(&conn, &["-c", "select 1"]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("Airlock could not open a connection to resource \"orders\""),
        "{err}"
    );
    assert!(err.contains("refused TLS"), "{err}");
    w.stop().await;

    // verify-full against a certificate from a CA the gateway does not trust
    // (the system roots).
    let w = World::start_with(Options {
        upstream_ssl: true,
        upstream_tls: "verify-full",
        ..Options::default()
    })
    .await;
    let conn = w.connect("oncall1", "read").await;
    let o = w.psql(&conn, &["-c", "select 1"]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("Airlock could not open a connection to resource \"orders\""),
        "{err}"
    );
    // What rustls said can name the server (issue 18, section 6): the client
    // is told what failed, the audit record keeps rustls's words.
    assert!(
        err.contains("the TLS handshake between the gateway and the database failed"),
        "{err}"
    );
    assert!(!err.contains("invalid peer certificate"), "{err}");
    let reason = common::audit_entries(&w.data_dir())
        .into_iter()
        .find_map(|e| match e.event {
            airlock_audit::Event::LoginRefused { reason, .. } => Some(reason),
            _ => None,
        })
        .expect("the refused session is in the audit log");
    assert!(reason.contains("invalid peer certificate"), "{reason}");
    w.stop().await;

    // A wrong injected password: the database's refusal is reported, the
    // password is not.
    let w = World::start().await;
    w.cluster
        .psql(
            "postgres",
            "alter role orders_ro password 'rotated-elsewhere'",
        )
        .unwrap();
    let conn = w.connect("oncall1", "read").await;
    let o = w.psql(&conn, &["-c", "select 1"]);
    let err = stderr(&o);
    assert!(
        err.contains("the database refused the gateway's login"),
        "{err}"
    );
    assert!(err.contains("tell the platform team"), "{err}");
    assert!(
        !err.contains(&std::env::var(common::RO_ENV).unwrap()),
        "{err}"
    );
    w.stop().await;
}

/// A stand-in for the database: a real TCP server that speaks just enough
/// of the protocol to play an impostor on the database's address.
mod impostor {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    #[derive(Clone, Copy)]
    pub enum Play {
        /// Asks for the password in cleartext.
        Cleartext,
        /// Starts SCRAM, then answers the client's first message with
        /// AuthenticationOk and a ready session.
        OkInTheMiddleOfScram,
        /// Lets the gateway in at once (AuthenticationOk and a ready
        /// session), asking for nothing.
        Trust,
    }

    /// Everything the gateway sent on any connection, in order.
    pub type Received = Arc<Mutex<Vec<u8>>>;

    pub async fn start(play: Play) -> (u16, Received) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Received::default();
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = serve(tcp, play, log).await;
                });
            }
        });
        (port, received)
    }

    async fn packet(tcp: &mut TcpStream, log: &Received) -> std::io::Result<Vec<u8>> {
        let len = tcp.read_i32().await? as usize;
        let mut body = vec![0u8; len - 4];
        tcp.read_exact(&mut body).await?;
        let mut all = (len as i32).to_be_bytes().to_vec();
        all.extend_from_slice(&body);
        log.lock().unwrap().extend_from_slice(&all);
        Ok(body)
    }

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn auth(code: i32, rest: &[u8]) -> Vec<u8> {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(rest);
        message(b'R', &body)
    }

    async fn serve(mut tcp: TcpStream, play: Play, log: Received) -> std::io::Result<()> {
        let mut first = packet(&mut tcp, &log).await?;
        if first.len() == 4 && first == 80877103i32.to_be_bytes() {
            // SSLRequest: this impostor has no certificate.
            tcp.write_all(b"N").await?;
            first = packet(&mut tcp, &log).await?;
        }
        let _startup = first;
        match play {
            Play::Cleartext => tcp.write_all(&auth(3, &[])).await?,
            Play::Trust => {
                let mut ready = auth(0, &[]);
                ready.extend(message(b'S', b"server_version\x0016.0\0"));
                ready.extend(message(b'K', &[0, 0, 0x10, 0, 0, 0, 0, 7]));
                ready.extend(message(b'Z', b"I"));
                tcp.write_all(&ready).await?;
            }
            Play::OkInTheMiddleOfScram => {
                tcp.write_all(&auth(10, b"SCRAM-SHA-256\0\0")).await?;
                let tag = tcp.read_u8().await?;
                log.lock().unwrap().push(tag);
                let _initial = packet(&mut tcp, &log).await?;
                let mut ready = auth(0, &[]);
                ready.extend(message(b'S', b"server_version\x0016.0\0"));
                ready.extend(message(b'K', &[0, 0, 0x10, 0, 0, 0, 0, 7]));
                ready.extend(message(b'Z', b"I"));
                tcp.write_all(&ready).await?;
            }
        }
        // Keep whatever the gateway sends next.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tcp.read_to_end(&mut rest),
        )
        .await;
        log.lock().unwrap().extend_from_slice(&rest);
        Ok(())
    }
}

/// Regression (issue 18, section 4): with `tls = "prefer"` an impostor on the
/// database's address that refused TLS and asked for the password in
/// cleartext was sent the injected password. The gateway now refuses, and
/// the impostor receives nothing but the startup packet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_asking_for_a_cleartext_password_is_never_sent_it() {
    let (port, received) = impostor::start(impostor::Play::Cleartext).await;
    let w = World::start_with(Options {
        upstream_tls: "prefer",
        upstream_port: Some(port),
        ..Options::default()
    })
    .await;
    for (user, access) in [("oncall1", "read"), ("lead1", "write")] {
        let conn = w.connect(user, access).await;
        let o = w.psql(&conn, &["-c", "select 1"]);
        let err = stderr(&o);
        assert!(!o.status.success(), "{access}: {}", stdout(&o));
        assert!(
            err.contains("asked for the password in cleartext")
                && err.contains("the password was not sent"),
            "{err}"
        );
        assert!(
            err.contains("verify-full"),
            "the hint says what to do: {err}"
        );
    }
    let got = received.lock().unwrap().clone();
    assert!(!got.is_empty(), "the impostor was reached");
    for var in [common::RO_ENV, common::RW_ENV] {
        let password = std::env::var(var).unwrap();
        assert!(
            !got.windows(password.len())
                .any(|w| w == password.as_bytes()),
            "the impostor received the password of {var}"
        );
    }
    // Nothing but SSLRequests and startup packets: no password message at all.
    let mut rest = &got[..];
    while !rest.is_empty() {
        let len = i32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let code = i32::from_be_bytes(rest[4..8].try_into().unwrap());
        assert!(
            code == 80877103 || code == 196608,
            "the impostor received a message after the startup packet: {rest:?}"
        );
        rest = &rest[len..];
    }
    w.stop().await;
}

/// Regression (issue 18, section 4): an impostor that answered the gateway's
/// first SCRAM message with AuthenticationOk was handed the session. The
/// exchange must end with the server's verified signature first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_ok_in_the_middle_of_scram_hands_over_no_session() {
    let (port, received) = impostor::start(impostor::Play::OkInTheMiddleOfScram).await;
    let w = World::start_with(Options {
        upstream_tls: "prefer",
        upstream_port: Some(port),
        ..Options::default()
    })
    .await;
    let conn = w.connect("lead1", "write").await;
    let o = w.psql(&conn, &["-c", "select 'handed over'"]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(!stdout(&o).contains("handed over"));
    assert!(
        err.contains("broke off the SCRAM exchange") && err.contains("impostor"),
        "{err}"
    );
    let got = received.lock().unwrap().clone();
    assert!(
        !got.windows(6).any(|w| w == b"handed"),
        "the impostor received the client's statement"
    );
    w.stop().await;
}

/// An impostor that lets the gateway in without asking for anything (as a
/// `trust` server would) is not handed the session when the credential has
/// a password and the peer's certificate was not verified: a real server
/// would have asked for it. Regression: under `require` or `prefer` such an
/// impostor received every statement of the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_that_asks_for_nothing_is_handed_no_session() {
    let (port, received) = impostor::start(impostor::Play::Trust).await;
    let w = World::start_with(Options {
        upstream_tls: "prefer",
        upstream_port: Some(port),
        ..Options::default()
    })
    .await;
    let conn = w.connect("lead1", "write").await;
    let o = w.psql(&conn, &["-c", "select 'handed over'"]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        err.contains("without asking for the password") && err.contains("impostor"),
        "{err}"
    );
    let got = received.lock().unwrap().clone();
    assert!(
        !got.windows(6).any(|w| w == b"handed"),
        "the impostor received the client's statement"
    );
    w.stop().await;
}

/// Regression (issue 18, section 4): MD5 answers can be replayed, so they go
/// only to a database whose certificate was verified; under `require` the
/// real PostgreSQL asking for MD5 is refused with what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_is_refused_over_tls_that_was_not_verified() {
    let w = World::start_with(Options {
        hba: HbaMode::Md5,
        upstream_ssl: true,
        upstream_tls: "require",
        ..Options::default()
    })
    .await;
    let conn = w.connect("oncall1", "read").await;
    let o = w.psql(&conn, &["-c", "select 1"]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("asked for the password as an MD5 hash") && err.contains("tls = \"require\""),
        "{err}"
    );
    assert!(err.contains("ca_file"), "{err}");
    w.stop().await;
}
