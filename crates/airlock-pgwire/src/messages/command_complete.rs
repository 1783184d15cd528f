//! CommandComplete (B) message: a statement finished; its tag names the
//! command and, for most, the row count (`SELECT 5`, `INSERT 0 1`).

use bytes::{Bytes, BytesMut};

use crate::reader::{put_cstr, Reader};
use crate::ProtocolError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandComplete {
    pub tag: String,
}

impl CommandComplete {
    pub fn decode(body: Bytes) -> Result<CommandComplete, ProtocolError> {
        let mut r = Reader::new("CommandComplete", body);
        let tag = String::from_utf8_lossy(&r.cstr_bytes()?).into_owned();
        r.finish()?;
        Ok(CommandComplete { tag })
    }

    pub fn encode_body(&self) -> Bytes {
        let mut b = BytesMut::new();
        put_cstr(&mut b, self.tag.as_bytes());
        b.freeze()
    }

    /// The row count at the end of the tag, where the command has one.
    pub fn rows(&self) -> Option<u64> {
        self.tag.rsplit(' ').next()?.parse().ok()
    }
}
