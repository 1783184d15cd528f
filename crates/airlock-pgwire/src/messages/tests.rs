//! Round trips for every message type, and decoders fed garbage.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::codec::decode_frame;

fn frontend_round_trip(m: FrontendMessage) {
    let mut buf = BytesMut::new();
    m.encode(&mut buf);
    let frame = decode_frame(&mut buf, 1 << 20).unwrap().unwrap();
    assert!(buf.is_empty());
    assert_eq!(FrontendMessage::decode(&frame).unwrap(), m);
}

fn backend_round_trip(m: BackendMessage) {
    let mut buf = BytesMut::new();
    m.encode(&mut buf);
    let frame = decode_frame(&mut buf, 1 << 20).unwrap().unwrap();
    assert_eq!(BackendMessage::decode(&frame).unwrap(), m);
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn frontend_messages_round_trip() {
    let cases = vec![
        FrontendMessage::Query(Query::new("select 1; select 2")),
        FrontendMessage::Parse(Parse {
            name: b("s1"),
            query: b("select $1::int"),
            param_types: vec![23, 0],
        }),
        FrontendMessage::Bind(Bind {
            portal: b(""),
            statement: b("s1"),
            param_formats: vec![1],
            params: vec![Some(b("\0\0\0\x05")), None, Some(Bytes::new())],
            result_formats: vec![0, 1],
        }),
        FrontendMessage::Describe(Describe {
            kind: b'S',
            name: b("s1"),
        }),
        FrontendMessage::Execute(Execute {
            portal: b("p"),
            max_rows: 10,
        }),
        FrontendMessage::Close(Close {
            kind: b'P',
            name: b("p"),
        }),
        FrontendMessage::Sync,
        FrontendMessage::Flush,
        FrontendMessage::Terminate,
        FrontendMessage::CopyData(CopyData { data: b("1\t2\n") }),
        FrontendMessage::CopyDone,
        FrontendMessage::CopyFail(CopyFail {
            message: "aborted".into(),
        }),
        FrontendMessage::FunctionCall(FunctionCall {
            function_oid: 1234,
            arg_formats: vec![],
            args: vec![None, Some(b("x"))],
            result_format: 1,
        }),
    ];
    for m in cases {
        frontend_round_trip(m);
    }
}

#[test]
fn backend_messages_round_trip() {
    let cases = vec![
        BackendMessage::Authentication(Authentication::Ok),
        BackendMessage::Authentication(Authentication::CleartextPassword),
        BackendMessage::Authentication(Authentication::Md5Password { salt: [1, 2, 3, 4] }),
        BackendMessage::Authentication(Authentication::Sasl {
            mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()],
        }),
        BackendMessage::Authentication(Authentication::SaslContinue { data: b("r=abc") }),
        BackendMessage::Authentication(Authentication::SaslFinal { data: b("v=xyz") }),
        BackendMessage::BackendKeyData(BackendKeyData {
            process_id: 7,
            secret_key: -9,
        }),
        BackendMessage::ParameterStatus(ParameterStatus::new("server_version", "15.18")),
        BackendMessage::ReadyForQuery(ReadyForQuery {
            status: TransactionStatus::Failed,
        }),
        BackendMessage::ErrorResponse(
            ErrorResponse::error("28P01", "password authentication failed").with_hint("run x"),
        ),
        BackendMessage::NoticeResponse(ErrorResponse::new(Severity::Notice, "00000", "hello")),
        BackendMessage::CommandComplete(CommandComplete {
            tag: "INSERT 0 5".into(),
        }),
        BackendMessage::NegotiateProtocolVersion(NegotiateProtocolVersion {
            newest_minor: 0,
            unrecognized: vec!["_pq_.foo".into()],
        }),
        BackendMessage::Other(crate::Frame::new(b'D', b("\0\x01\0\0\0\x01x"))),
    ];
    for m in cases {
        backend_round_trip(m);
    }
}

#[test]
fn command_complete_rows() {
    for (tag, rows) in [
        ("SELECT 5", Some(5)),
        ("INSERT 0 1", Some(1)),
        ("BEGIN", None),
        ("COPY 300", Some(300)),
    ] {
        assert_eq!(CommandComplete { tag: tag.into() }.rows(), rows, "{tag}");
    }
}

#[test]
fn malformed_bodies_are_errors_not_panics() {
    let tags = b"QPBDECSHXdcfFpz";
    // A deterministic xorshift so the test is reproducible without a rand dependency.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 24) as usize;
        let body: Vec<u8> = (0..len)
            .map(|i| (x.rotate_left(i as u32 * 5) & 0xff) as u8)
            .collect();
        let tag = tags[(x % tags.len() as u64) as usize];
        let frame = crate::Frame::new(tag, body.clone());
        let _ = FrontendMessage::decode(&frame);
        let _ = BackendMessage::decode(&crate::Frame::new(b"RKSZECv"[(x % 7) as usize], body));
    }
}

#[test]
fn forged_counts_do_not_allocate() {
    // A Bind claiming 32767 parameters in a 12-byte body is refused up front.
    let mut body = BytesMut::new();
    body.extend_from_slice(b"\0\0\0\0\x7f\xff");
    body.extend_from_slice(&[0; 6]);
    assert!(Bind::decode(body.freeze()).is_err());
}
