//! Execute (F) message: runs a portal, returning at most `max_rows` rows
//! (0 = all) before PortalSuspended.

use bytes::{BufMut, Bytes, BytesMut};

use crate::reader::{put_cstr, Reader};
use crate::ProtocolError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execute {
    pub portal: Bytes,
    pub max_rows: i32,
}

impl Execute {
    pub fn decode(body: Bytes) -> Result<Execute, ProtocolError> {
        let mut r = Reader::new("Execute", body);
        let portal = r.cstr_bytes()?;
        let max_rows = r.i32()?;
        r.finish()?;
        Ok(Execute { portal, max_rows })
    }

    pub fn encode_body(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.portal.len() + 5);
        put_cstr(&mut b, &self.portal);
        b.put_i32(self.max_rows);
        b.freeze()
    }
}
