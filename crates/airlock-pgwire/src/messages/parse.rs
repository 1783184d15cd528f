//! Parse (F) message: creates a prepared statement (named or unnamed) in the
//! extended query protocol.

use bytes::{BufMut, Bytes, BytesMut};

use crate::reader::{put_cstr, Reader};
use crate::ProtocolError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse {
    /// Prepared statement name; empty is the unnamed statement.
    pub name: Bytes,
    pub query: Bytes,
    /// Parameter type OIDs; 0 leaves the type unspecified.
    pub param_types: Vec<u32>,
}

impl Parse {
    pub fn decode(body: Bytes) -> Result<Parse, ProtocolError> {
        let mut r = Reader::new("Parse", body);
        let name = r.cstr_bytes()?;
        let query = r.cstr_bytes()?;
        let n = r.count(4)?;
        let mut param_types = Vec::with_capacity(n);
        for _ in 0..n {
            param_types.push(r.i32()? as u32);
        }
        r.finish()?;
        Ok(Parse {
            name,
            query,
            param_types,
        })
    }

    pub fn encode_body(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.name.len() + self.query.len() + 4);
        put_cstr(&mut b, &self.name);
        put_cstr(&mut b, &self.query);
        b.put_i16(self.param_types.len() as i16);
        for t in &self.param_types {
            b.put_u32(*t);
        }
        b.freeze()
    }
}
