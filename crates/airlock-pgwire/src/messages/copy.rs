//! CopyData (F & B) and CopyFail (F) messages of the COPY sub-protocol.
//! CopyDone has an empty body and is a bare variant of the message enums.

use bytes::{Bytes, BytesMut};

use crate::reader::{put_cstr, Reader};
use crate::ProtocolError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyData {
    pub data: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFail {
    pub message: String,
}

impl CopyFail {
    pub fn decode(body: Bytes) -> Result<CopyFail, ProtocolError> {
        let mut r = Reader::new("CopyFail", body);
        let message = String::from_utf8_lossy(&r.cstr_bytes()?).into_owned();
        r.finish()?;
        Ok(CopyFail { message })
    }

    pub fn encode_body(&self) -> Bytes {
        let mut b = BytesMut::new();
        put_cstr(&mut b, self.message.as_bytes());
        b.freeze()
    }
}
