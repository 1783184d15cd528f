//! Query (F) message: a simple-protocol query string, possibly several
//! statements separated by semicolons.

use bytes::{Bytes, BytesMut};

use crate::reader::{put_cstr, Reader};
use crate::ProtocolError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The query text as sent, in the session's client_encoding.
    pub sql: Bytes,
}

impl Query {
    pub fn new(sql: &str) -> Query {
        Query {
            sql: Bytes::copy_from_slice(sql.as_bytes()),
        }
    }

    pub fn decode(body: Bytes) -> Result<Query, ProtocolError> {
        let mut r = Reader::new("Query", body);
        let sql = r.cstr_bytes()?;
        r.finish()?;
        Ok(Query { sql })
    }

    pub fn encode_body(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.sql.len() + 1);
        put_cstr(&mut b, &self.sql);
        b.freeze()
    }

    /// The text for logs and records; invalid UTF-8 is replaced, not refused.
    pub fn text_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.sql)
    }
}
