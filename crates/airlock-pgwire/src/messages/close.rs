//! Close (F) message: closes a prepared statement (`S`) or a portal (`P`).

use bytes::{BufMut, Bytes, BytesMut};

use crate::reader::{put_cstr, Reader};
use crate::ProtocolError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub kind: u8,
    pub name: Bytes,
}

impl Close {
    pub fn decode(body: Bytes) -> Result<Close, ProtocolError> {
        let mut r = Reader::new("Close", body);
        let kind = r.u8()?;
        if kind != b'S' && kind != b'P' {
            return Err(ProtocolError::Malformed {
                what: "Close",
                why: "kind must be 'S' or 'P'",
            });
        }
        let name = r.cstr_bytes()?;
        r.finish()?;
        Ok(Close { kind, name })
    }

    pub fn encode_body(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.name.len() + 2);
        b.put_u8(self.kind);
        put_cstr(&mut b, &self.name);
        b.freeze()
    }
}
