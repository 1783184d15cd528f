//! Hostile and broken clients: each gets a clear error or a closed
//! connection, the gateway keeps serving everyone else, memory stays bounded.

mod common;

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::{Options, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use airlock_pgwire::messages::{Authentication, BackendMessage, StartupMessage};
use airlock_pgwire::{decode_frame, Frame};

/// Reads until the gateway closes the connection (or 5 s pass), returning
/// everything it sent.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    out
}

fn error_messages(bytes: &[u8]) -> Vec<(String, String)> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Ok(Some(f)) = decode_frame(&mut buf, 1 << 20) {
        if let Ok(BackendMessage::ErrorResponse(e)) = BackendMessage::decode(&f) {
            out.push((
                e.code().unwrap_or("").to_owned(),
                e.message().unwrap_or("").to_owned(),
            ));
        }
    }
    out
}

/// A raw protocol login over plaintext (the world allows it), so tests can
/// misbehave after authentication.
async fn raw_login(w: &World, user: &str, password: &str) -> (TcpStream, BytesMut) {
    let mut s = TcpStream::connect(w.pg_addr).await.unwrap();
    let mut out = BytesMut::new();
    StartupMessage::new(vec![
        ("user".into(), user.into()),
        ("database".into(), "orders".into()),
    ])
    .encode(&mut out);
    s.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let mut scram = None;
    loop {
        let frame = loop {
            if let Some(f) = decode_frame(&mut buf, 1 << 20).unwrap() {
                break f;
            }
            assert!(
                s.read_buf(&mut buf).await.unwrap() > 0,
                "closed during login"
            );
        };
        match BackendMessage::decode(&frame).unwrap() {
            BackendMessage::Authentication(Authentication::Sasl { .. }) => {
                let sc = postgres_protocol::authentication::sasl::ScramSha256::new(
                    password.as_bytes(),
                    postgres_protocol::authentication::sasl::ChannelBinding::unsupported(),
                );
                let mut body = BytesMut::new();
                body.put_slice(b"SCRAM-SHA-256\0");
                body.put_i32(sc.message().len() as i32);
                body.put_slice(sc.message());
                out.clear();
                Frame::new(b'p', body.freeze()).encode(&mut out);
                s.write_all(&out).await.unwrap();
                scram = Some(sc);
            }
            BackendMessage::Authentication(Authentication::SaslContinue { data }) => {
                let sc = scram.as_mut().unwrap();
                sc.update(&data).unwrap();
                out.clear();
                Frame::new(b'p', sc.message().to_vec()).encode(&mut out);
                s.write_all(&out).await.unwrap();
            }
            BackendMessage::ReadyForQuery(_) => return (s, buf),
            BackendMessage::ErrorResponse(e) => panic!("login failed: {e}"),
            _ => {}
        }
    }
}

async fn still_serving(w: &World) {
    let conn = w.connect("oncall1", "read").await;
    let client = w.tokio_pg(&conn).await;
    let n: i64 = client
        .query_one("select count(*) from orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_startups_are_refused_and_others_keep_working() {
    let w = World::start_with(Options {
        allow_plaintext: true,
        ..Options::default()
    })
    .await;

    // (name, bytes to send, whether the client half-closes afterwards)
    let mut oversized = BytesMut::new();
    oversized.put_i32(10_001);
    oversized.put_i32(196608);
    oversized.put_slice(&vec![b'a'; 10_001 - 8]);
    let mut truncated = BytesMut::new();
    StartupMessage::new(vec![("user".into(), "oncall1".into())]).encode(&mut truncated);
    truncated.truncate(truncated.len() - 3);
    let mut v2 = BytesMut::new();
    v2.put_i32(8);
    v2.put_i32(2 << 16);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("oversized startup", oversized.to_vec()),
        ("truncated startup", truncated.to_vec()),
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("zero length", vec![0, 0, 0, 0]),
        ("protocol 2", v2.to_vec()),
        (
            "random bytes",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
        ),
    ];
    for (name, bytes) in cases {
        let mut s = TcpStream::connect(w.pg_addr).await.unwrap();
        let _ = s.write_all(&bytes).await;
        let _ = s.shutdown().await;
        let reply = read_to_close(&mut s).await;
        // Either nothing (the packet never became a message) or a FATAL; never a hang.
        for (code, message) in error_messages(&reply) {
            assert!(!code.is_empty(), "{name}: {message}");
        }
    }

    // Wrong passwords, many times: each refused with 28P01, nothing locks up.
    let conn = w.connect("oncall1", "read").await;
    for _ in 0..5 {
        let mut cfg = w.tokio_pg_config(&conn);
        cfg.password("definitely-wrong");
        let err = cfg.connect(w.tls(&conn)).await.err().expect("refused");
        assert_eq!(err.code().map(|c| c.code()), Some("28P01"));
    }
    still_serving(&w).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gssenc_is_declined_and_plaintext_after_ssl_request_is_discarded() {
    let w = World::start().await;
    let conn = w.connect("oncall1", "read").await;
    let mut s = TcpStream::connect(w.pg_addr).await.unwrap();
    // GSSENCRequest → 'N', and the connection goes on.
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30])
        .await
        .unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"N");
    // SSLRequest immediately followed by an injected plaintext Query: the
    // gateway answers 'S' and must never interpret the injected bytes.
    let mut out = BytesMut::new();
    out.put_slice(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    Frame::new(b'Q', &b"select 'injected'\0"[..]).encode(&mut out);
    s.write_all(&out).await.unwrap();
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"S");
    // The TLS handshake and login then proceed normally on this connection.
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(
        conn.credential.ca_pem.as_deref().unwrap().as_bytes(),
    ) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            s,
        )
        .await
        .expect("TLS handshake after S");
    let mut cfg = w.tokio_pg_config(&conn);
    cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
    let (client, connection) = cfg
        .connect_raw(tls, tokio_postgres::NoTls)
        .await
        .expect("login inside TLS");
    tokio::spawn(connection);
    let row = client.query_one("select 'fine'", &[]).await.unwrap();
    assert_eq!(row.get::<_, &str>(0), "fine");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_grow_memory() {
    // The gateway runs as its own process here, so its memory is measured
    // alone, not with the test's clients and other tests.
    let w = World::start_with(Options {
        allow_plaintext: true,
        subprocess: true,
        ..Options::default()
    })
    .await;
    let conn = w.connect("oncall1", "read").await;
    let (mut stalled, _) = raw_login(&w, "oncall1", &conn.credential.password).await;
    let pid = w.gateway_pid().expect("gateway process");
    let rss = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    // About 400 MB of rows, never read by this client.
    let mut out = BytesMut::new();
    Frame::new(
        b'Q',
        &b"select repeat('x', 4000) from generate_series(1, 100000)\0"[..],
    )
    .encode(&mut out);
    stalled.write_all(&out).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss();
    // Kernel socket buffers hold a few MB; the gateway must not buffer the result.
    assert!(
        after < before + 32 * 1024 * 1024,
        "gateway memory grew from {before} to {after} bytes while a client stalled"
    );
    // Everyone else is served meanwhile.
    still_serving(&w).await;
    // The stalled client can still drain its result.
    let mut total = 0usize;
    let mut chunk = vec![0u8; 1 << 16];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while total < 400_000_000 && tokio::time::Instant::now() < deadline {
        let n = stalled.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        total += n;
    }
    assert!(total >= 400_000_000, "read {total} bytes");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_size_cap_end_only_their_session() {
    let w = World::start_with(Options {
        extra_gateway: "max_message_size = \"64KiB\"".into(),
        ..Options::default()
    })
    .await;
    let conn = w.connect("oncall1", "read").await;
    let big = w.tokio_pg(&conn).await;
    let sql = format!("select '{}'", "x".repeat(100 * 1024));
    let err = big.simple_query(&sql).await.unwrap_err();
    let db = err.as_db_error().expect("a FATAL from the gateway");
    assert_eq!(db.code().code(), "08P01");
    assert!(
        db.message().contains("exceeds the limit of 65536 bytes"),
        "{}",
        db.message()
    );
    // Everyone else keeps being served.
    still_serving(&w).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_refused_with_53300() {
    let w = World::start_with(Options {
        extra_gateway: "max_client_connections = 2".into(),
        ..Options::default()
    })
    .await;
    let conn = w.connect("oncall1", "read").await;
    let first = w.tokio_pg(&conn).await;
    let second = w.tokio_pg(&conn).await;
    let err = w
        .tokio_pg_config(&conn)
        .connect(w.tls(&conn))
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code().map(|c| c.code()), Some("53300"), "{err}");
    let message = err
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    assert!(
        message.contains("limit of 2 client connections"),
        "{message}"
    );
    // A slot frees when a session ends.
    drop(second);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = w.tokio_pg(&conn).await;
    assert_eq!(
        third
            .query_one("select 3", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        3
    );
    assert_eq!(
        first
            .query_one("select 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    w.stop().await;
}

/// Reads backend messages until a ReadyForQuery; returns each (tag, body).
async fn until_ready(s: &mut TcpStream, buf: &mut BytesMut) -> Vec<(u8, Vec<u8>)> {
    let mut got = Vec::new();
    loop {
        while let Some(f) = decode_frame(buf, 1 << 20).unwrap() {
            let done = f.tag == b'Z';
            got.push((f.tag, f.body.to_vec()));
            if done {
                return got;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(60), s.read_buf(buf))
            .await
            .expect("an answer within 60 s")
            .unwrap();
        assert!(n > 0, "closed; got {got:?}");
    }
}

fn sqlstates(msgs: &[(u8, Vec<u8>)]) -> Vec<String> {
    let mut out = BytesMut::new();
    for (t, body) in msgs {
        Frame::new(*t, body.clone()).encode(&mut out);
    }
    error_messages(&out).into_iter().map(|(c, _)| c).collect()
}

/// Sends one message of `len` body bytes: `head`, then `fill` up to
/// `len - tail.len()`, then `tail`, in 1 MiB writes.
async fn send_long(s: &mut TcpStream, tag: u8, head: &[u8], len: usize, tail: &[u8]) {
    let mut header = vec![tag];
    header.extend_from_slice(&((len + 4) as u32).to_be_bytes());
    header.extend_from_slice(head);
    s.write_all(&header).await.unwrap();
    let chunk = vec![b'x'; 1 << 20];
    let mut left = len - head.len() - tail.len();
    while left > 0 {
        let n = left.min(chunk.len());
        s.write_all(&chunk[..n]).await.unwrap();
        left -= n;
    }
    s.write_all(tail).await.unwrap();
}

/// Regression: a 100 MiB Query from a read session was buffered whole,
/// refused as too long, then written whole into the audit log (the
/// gateway's memory went from 25 MB to 445 MB). Now it is refused from its
/// header, read through in small pieces, and recorded by its start, length
/// and SHA-256.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_statement_is_refused_without_being_buffered_or_logged_whole() {
    use sha2::Digest as _;
    let w = World::start_with(Options {
        allow_plaintext: true,
        subprocess: true,
        ..Options::default()
    })
    .await;
    let conn = w.connect("oncall1", "read").await;
    let (mut s, mut buf) = raw_login(&w, "oncall1", &conn.credential.password).await;
    let pid = w.gateway_pid().expect("gateway process");
    let peak = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    let before = peak();

    // select 'xxxx…' of 100 MiB, over the default 1 MiB max_statement_size.
    let len = 100 << 20;
    send_long(&mut s, b'Q', b"select '", len, b"'\0").await;
    let answer = until_ready(&mut s, &mut buf).await;
    assert_eq!(sqlstates(&answer), vec!["54000"], "{answer:?}");
    let text = String::from_utf8_lossy(&answer[0].1).into_owned();
    assert!(text.contains("max_statement_size"), "{text}");

    // The same through the extended protocol, pipelined with a Bind,
    // Execute and Sync: refused in order, and the session goes on.
    let mut head = b"big\0".to_vec();
    head.extend_from_slice(b"select '");
    send_long(&mut s, b'P', &head, 8 << 20, b"'\0\0\0").await;
    let mut out = BytesMut::new();
    Frame::new(b'B', &b"\0big\0\0\0\0\0\0\0"[..]).encode(&mut out);
    Frame::new(b'E', &b"\0\0\0\0\0"[..]).encode(&mut out);
    Frame::new(b'S', &b""[..]).encode(&mut out);
    Frame::new(b'Q', &b"select 'still here'\0"[..]).encode(&mut out);
    s.write_all(&out).await.unwrap();
    let answer = until_ready(&mut s, &mut buf).await;
    assert_eq!(sqlstates(&answer), vec!["54000"], "{answer:?}");
    let answer = until_ready(&mut s, &mut buf).await;
    assert!(
        answer
            .iter()
            .any(|(t, b)| *t == b'D' && b.ends_with(b"still here")),
        "{answer:?}"
    );

    let after = peak();
    assert!(
        after < before + 32 * 1024 * 1024,
        "gateway peak memory grew from {before} to {after} bytes for an oversized statement"
    );

    // The audit records keep the start, the length and the digest.
    let mut whole = b"select '".to_vec();
    whole.resize(len - 2, b'x');
    whole.extend_from_slice(b"'");
    let digest = hex::encode(sha2::Sha256::digest(&whole));
    let mut found = None;
    for _ in 0..100 {
        airlock_audit::read::scan(&airlock_audit::audit_dir(&w.data_dir()), 0, |raw| {
            if let Some(e) = airlock_audit::read::Entry::parse(raw.line) {
                if let airlock_audit::Event::Statement(st) = e.event {
                    if st.text_len == Some((len - 1) as u64) {
                        found = Some(st);
                    }
                }
            }
            Ok(true)
        })
        .unwrap();
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let st = found.expect("an audit record of the oversized statement");
    assert_eq!(st.text_sha256.as_deref(), Some(digest.as_str()));
    assert_eq!(st.rule, "too_long");
    assert_eq!(st.sqlstate.as_deref(), Some("54000"));
    let kept = st.text.expect("the start of the text");
    assert!(
        kept.starts_with("select 'xxx") && kept.len() <= 4096,
        "{}",
        kept.len()
    );
    w.stop().await;
}

/// Regression: 20 idle unauthenticated sockets kept a legitimate engineer
/// out (each held one of `max_client_connections` for the whole 60 s login
/// timeout). Connections logging in have their own quota, where a new one
/// takes the place of the longest-waiting, and take a client slot only
/// once logged in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_unauthenticated_sockets_do_not_keep_people_out() {
    let w = World::start_with(Options {
        extra_gateway: "max_client_connections = 20".into(),
        ..Options::default()
    })
    .await;
    let conn = w.connect("oncall1", "read").await;
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(w.pg_addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let out = tokio::task::block_in_place(|| w.psql(&conn, &["-c", "select 'in'"]));
        assert!(out.status.success(), "{}", common::stderr(&out));
        assert_eq!(common::stdout(&out).trim(), "in");
    }
    // Sockets that never logged in were closed to make room.
    let mut closed = 0;
    for s in &mut idle {
        let mut b = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(50), s.read(&mut b)).await {
            closed += 1;
        }
    }
    assert!(closed >= 8, "only {closed} of 40 idle sockets were closed");
    w.stop().await;
}

/// Unauthenticated connections get a short deadline (`login_timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_does_not_log_in_is_closed_after_login_timeout() {
    let w = World::start_with(Options {
        extra_gateway: "login_timeout = \"1s\"".into(),
        ..Options::default()
    })
    .await;
    let mut s = TcpStream::connect(w.pg_addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
        .await
        .expect("closed within 10 s")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    w.stop().await;
}

/// Regression: every refused login wrote its own audit record, so a
/// password-guessing burst filled the log. Refusals from one address are
/// aggregated: the first alone, then one record with a count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_refused_logins_is_aggregated_per_source() {
    let w = World::start().await;
    let conn = w.connect("oncall1", "read").await;
    for _ in 0..20 {
        let mut bad = w.tokio_pg_config(&conn);
        bad.password("not-the-password");
        let e = bad.connect(w.tls(&conn)).await.err().expect("refused");
        assert_eq!(e.code().map(|c| c.code()), Some("28P01"), "{e}");
    }
    let kept = tempfile::tempdir().unwrap();
    w.stop_keeping_files(kept.path()).await;
    let mut refused = Vec::new();
    airlock_audit::read::scan(&kept.path().join("audit"), 0, |raw| {
        if let Some(e) = airlock_audit::read::Entry::parse(raw.line) {
            if let airlock_audit::Event::LoginRefused {
                count, client_addr, ..
            } = e.event
            {
                refused.push((count, client_addr));
            }
        }
        Ok(true)
    })
    .unwrap();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0].0, None, "the first is recorded alone");
    assert_eq!(refused[1], (Some(19), "127.0.0.1".to_owned()));
}
