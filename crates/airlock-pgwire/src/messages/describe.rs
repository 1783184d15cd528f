//! Describe (F) message: asks for the description of a prepared statement
//! (`S`) or a portal (`P`).

use bytes::{BufMut, Bytes, BytesMut};

use crate::reader::{put_cstr, Reader};
use crate::ProtocolError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Describe {
    /// `b'S'` for a statement, `b'P'` for a portal.
    pub kind: u8,
    pub name: Bytes,
}

impl Describe {
    pub fn decode(body: Bytes) -> Result<Describe, ProtocolError> {
        let mut r = Reader::new("Describe", body);
        let kind = r.u8()?;
        if kind != b'S' && kind != b'P' {
            return Err(ProtocolError::Malformed {
                what: "Describe",
                why: "kind must be 'S' or 'P'",
            });
        }
        let name = r.cstr_bytes()?;
        r.finish()?;
        Ok(Describe { kind, name })
    }

    pub fn encode_body(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.name.len() + 2);
        b.put_u8(self.kind);
        put_cstr(&mut b, &self.name);
        b.freeze()
    }
}
