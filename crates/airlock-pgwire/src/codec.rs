//! Framing: splitting a byte stream into startup packets and tagged messages,
//! with size caps.
//!
//! A PostgreSQL message is a one-byte tag, a big-endian `i32` length that
//! counts itself but not the tag, and a body. The very first packet of a
//! connection has no tag. Decoders here return `Ok(None)` when the buffer does
//! not hold a whole frame yet (read more), and `Err` when the bytes can never
//! become a valid frame (close the connection). They never allocate more than
//! the caps allow: a length is checked before any byte of the body is awaited.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::messages::startup::{CancelRequest, StartupMessage};
use crate::ProtocolError;

/// The largest startup packet accepted, as PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`.
pub const MAX_STARTUP_PACKET: usize = 10_000;

/// PostgreSQL's own limit for a regular message (`PQ_LARGE_MESSAGE_LIMIT` is 1 GiB).
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 30;

/// Protocol codes carried in the length-prefixed startup packet in place of a version.
pub const SSL_REQUEST_CODE: i32 = 80877103;
pub const GSSENC_REQUEST_CODE: i32 = 80877104;
pub const CANCEL_REQUEST_CODE: i32 = 80877102;
/// Protocol 3.0.
pub const PROTOCOL_3_0: i32 = 196608;

/// The first packet a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    Cancel(CancelRequest),
    Startup(StartupMessage),
}

/// Decodes the untagged first packet of a connection.
pub fn decode_startup(buf: &mut BytesMut) -> Result<Option<StartupPacket>, ProtocolError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 8 || len as usize > MAX_STARTUP_PACKET {
        return Err(ProtocolError::BadStartupLength(len));
    }
    let len = len as usize;
    if buf.len() < len {
        return Ok(None);
    }
    let mut packet = buf.split_to(len).freeze();
    packet.advance(4);
    let code = packet.get_i32();
    let decoded = match code {
        SSL_REQUEST_CODE if packet.is_empty() => StartupPacket::SslRequest,
        GSSENC_REQUEST_CODE if packet.is_empty() => StartupPacket::GssEncRequest,
        CANCEL_REQUEST_CODE => StartupPacket::Cancel(CancelRequest::decode_body(packet)?),
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => {
            return Err(ProtocolError::Malformed {
                what: "SSLRequest/GSSENCRequest",
                why: "unexpected bytes after the request code",
            })
        }
        version if version >> 16 == 3 => {
            StartupPacket::Startup(StartupMessage::decode_body(version, packet)?)
        }
        version => return Err(ProtocolError::UnsupportedProtocol(version)),
    };
    Ok(Some(decoded))
}

/// A tagged message whose body has not been interpreted yet.
///
/// Cheap to produce: the body is a reference-counted slice of the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub tag: u8,
    pub body: Bytes,
}

impl Frame {
    pub fn new(tag: u8, body: impl Into<Bytes>) -> Frame {
        Frame {
            tag,
            body: body.into(),
        }
    }

    /// Length of the frame on the wire (tag + length word + body).
    pub fn wire_len(&self) -> usize {
        5 + self.body.len()
    }

    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.wire_len());
        dst.put_u8(self.tag);
        dst.put_i32((self.body.len() + 4) as i32);
        dst.put_slice(&self.body);
    }
}

/// Reads the header of the next tagged message, if five bytes are there:
/// `(tag, total length including tag)`. Checks the length against `max`
/// (the cap applies to the body plus the length word, as in PostgreSQL).
pub fn peek_header(buf: &[u8], max: usize) -> Result<Option<(u8, usize)>, ProtocolError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(ProtocolError::BadLength { tag, len });
    }
    if len as usize > max {
        return Err(ProtocolError::TooLarge {
            tag,
            len: len as usize,
            max,
        });
    }
    Ok(Some((tag, len as usize + 1)))
}

/// Splits the next whole tagged message off `buf`.
pub fn decode_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, ProtocolError> {
    let Some((tag, total)) = peek_header(buf, max)? else {
        return Ok(None);
    };
    if buf.len() < total {
        // Reserve what the rest of the frame needs (bounded by `max` above) so
        // the next read can fill it without repeated reallocations.
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(total);
    frame.advance(5);
    Ok(Some(Frame {
        tag,
        body: frame.freeze(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup_bytes(params: &[(&str, &str)]) -> BytesMut {
        let mut body = BytesMut::new();
        body.put_i32(PROTOCOL_3_0);
        for (k, v) in params {
            body.put_slice(k.as_bytes());
            body.put_u8(0);
            body.put_slice(v.as_bytes());
            body.put_u8(0);
        }
        body.put_u8(0);
        let mut out = BytesMut::new();
        out.put_i32(body.len() as i32 + 4);
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn startup_round_trip() {
        let mut buf = startup_bytes(&[("user", "oncall1"), ("database", "orders")]);
        let Some(StartupPacket::Startup(msg)) = decode_startup(&mut buf).unwrap() else {
            panic!("not a startup message")
        };
        assert_eq!(msg.param("user"), Some("oncall1"));
        assert_eq!(msg.param("database"), Some("orders"));
        let mut again = BytesMut::new();
        msg.encode(&mut again);
        assert_eq!(
            again,
            startup_bytes(&[("user", "oncall1"), ("database", "orders")])
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn startup_incomplete_and_caps() {
        let full = startup_bytes(&[("user", "u")]);
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            assert_eq!(decode_startup(&mut part).unwrap(), None, "cut at {cut}");
        }
        let mut huge = BytesMut::new();
        huge.put_i32(10_001);
        assert!(matches!(
            decode_startup(&mut huge),
            Err(ProtocolError::BadStartupLength(10_001))
        ));
        let mut tiny = BytesMut::new();
        tiny.put_i32(3);
        assert!(decode_startup(&mut tiny).is_err());
    }

    #[test]
    fn special_requests() {
        for (code, want) in [
            (SSL_REQUEST_CODE, StartupPacket::SslRequest),
            (GSSENC_REQUEST_CODE, StartupPacket::GssEncRequest),
        ] {
            let mut buf = BytesMut::new();
            buf.put_i32(8);
            buf.put_i32(code);
            assert_eq!(decode_startup(&mut buf).unwrap(), Some(want));
        }
        let mut buf = BytesMut::new();
        buf.put_i32(16);
        buf.put_i32(CANCEL_REQUEST_CODE);
        buf.put_i32(42);
        buf.put_i32(-7);
        assert_eq!(
            decode_startup(&mut buf).unwrap(),
            Some(StartupPacket::Cancel(CancelRequest {
                process_id: 42,
                secret_key: -7
            }))
        );
        let mut v2 = BytesMut::new();
        v2.put_i32(8);
        v2.put_i32(2 << 16);
        assert!(matches!(
            decode_startup(&mut v2),
            Err(ProtocolError::UnsupportedProtocol(_))
        ));
    }

    #[test]
    fn frames_split_and_cap() {
        let mut buf = BytesMut::new();
        Frame::new(b'Q', &b"select 1\0"[..]).encode(&mut buf);
        Frame::new(b'S', Bytes::new()).encode(&mut buf);
        let whole = buf.clone();
        for cut in 0..5 {
            let mut part = BytesMut::from(&whole[..cut]);
            assert_eq!(decode_frame(&mut part, 1024).unwrap(), None);
        }
        let f = decode_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!((f.tag, &f.body[..]), (b'Q', &b"select 1\0"[..]));
        let f = decode_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!((f.tag, f.body.len()), (b'S', 0));
        assert!(buf.is_empty());

        let mut big = BytesMut::new();
        big.put_u8(b'd');
        big.put_i32(1025);
        assert!(matches!(
            decode_frame(&mut big, 1024),
            Err(ProtocolError::TooLarge { tag: b'd', .. })
        ));
        let mut neg = BytesMut::new();
        neg.put_u8(b'd');
        neg.put_i32(-1);
        assert!(matches!(
            decode_frame(&mut neg, 1024),
            Err(ProtocolError::BadLength { .. })
        ));
    }
}
