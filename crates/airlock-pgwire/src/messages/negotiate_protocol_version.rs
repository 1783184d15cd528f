//! NegotiateProtocolVersion (B) message: the server supports an older minor
//! version than requested, or does not recognise some `_pq_.` options.

use bytes::{BufMut, Bytes, BytesMut};

use crate::reader::{put_cstr, Reader};
use crate::ProtocolError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiateProtocolVersion {
    pub newest_minor: i32,
    pub unrecognized: Vec<String>,
}

impl NegotiateProtocolVersion {
    pub fn decode(body: Bytes) -> Result<NegotiateProtocolVersion, ProtocolError> {
        let mut r = Reader::new("NegotiateProtocolVersion", body);
        let newest_minor = r.i32()?;
        let n = r.i32()?;
        if n < 0 || n as usize > r.remaining() {
            return Err(ProtocolError::Malformed {
                what: "NegotiateProtocolVersion",
                why: "option count does not fit the message",
            });
        }
        let mut unrecognized = Vec::with_capacity(n as usize);
        for _ in 0..n {
            unrecognized.push(r.cstr()?);
        }
        r.finish()?;
        Ok(NegotiateProtocolVersion {
            newest_minor,
            unrecognized,
        })
    }

    pub fn encode_body(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i32(self.newest_minor);
        b.put_i32(self.unrecognized.len() as i32);
        for o in &self.unrecognized {
            put_cstr(&mut b, o.as_bytes());
        }
        b.freeze()
    }
}
