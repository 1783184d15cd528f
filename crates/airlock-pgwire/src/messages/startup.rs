//! StartupMessage (F) and CancelRequest (F): the untagged first packets.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{CANCEL_REQUEST_CODE, PROTOCOL_3_0};
use crate::reader::{put_cstr, Reader};
use crate::ProtocolError;

/// The startup packet: protocol version and `name=value` parameters
/// (`user`, `database`, `application_name`, `options`, GUCs, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    pub protocol: i32,
    pub params: Vec<(String, String)>,
}

impl StartupMessage {
    pub fn new(params: Vec<(String, String)>) -> StartupMessage {
        StartupMessage {
            protocol: PROTOCOL_3_0,
            params,
        }
    }

    /// Decodes what follows the protocol version.
    pub fn decode_body(protocol: i32, body: Bytes) -> Result<StartupMessage, ProtocolError> {
        let mut r = Reader::new("StartupMessage", body);
        let mut params = Vec::new();
        loop {
            let name = r.cstr()?;
            if name.is_empty() {
                break;
            }
            let value = r.cstr()?;
            if params.iter().any(|(n, _)| *n == name) {
                return Err(ProtocolError::Malformed {
                    what: "StartupMessage",
                    why: "a parameter is given twice",
                });
            }
            params.push((name, value));
        }
        r.finish()?;
        Ok(StartupMessage { protocol, params })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Encodes the whole packet, length word included.
    pub fn encode(&self, dst: &mut BytesMut) {
        let mut body = BytesMut::new();
        body.put_i32(self.protocol);
        for (k, v) in &self.params {
            put_cstr(&mut body, k.as_bytes());
            put_cstr(&mut body, v.as_bytes());
        }
        body.put_u8(0);
        dst.put_i32(body.len() as i32 + 4);
        dst.extend_from_slice(&body);
    }
}

/// A request, on a new connection, to cancel the query running on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelRequest {
    pub process_id: i32,
    pub secret_key: i32,
}

impl CancelRequest {
    pub fn decode_body(body: Bytes) -> Result<CancelRequest, ProtocolError> {
        let mut r = Reader::new("CancelRequest", body);
        let m = CancelRequest {
            process_id: r.i32()?,
            secret_key: r.i32()?,
        };
        r.finish()?;
        Ok(m)
    }

    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_i32(16);
        dst.put_i32(CANCEL_REQUEST_CODE);
        dst.put_i32(self.process_id);
        dst.put_i32(self.secret_key);
    }
}

/// SSLRequest: the client asks for TLS before the startup message.
pub fn encode_ssl_request(dst: &mut BytesMut) {
    dst.put_i32(8);
    dst.put_i32(crate::codec::SSL_REQUEST_CODE);
}
