//! BackendKeyData (B) message: the process id and secret a client needs to
//! send a CancelRequest.

use bytes::{BufMut, Bytes, BytesMut};

use crate::reader::Reader;
use crate::ProtocolError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendKeyData {
    pub process_id: i32,
    pub secret_key: i32,
}

impl BackendKeyData {
    pub fn decode(body: Bytes) -> Result<BackendKeyData, ProtocolError> {
        let mut r = Reader::new("BackendKeyData", body);
        let m = BackendKeyData {
            process_id: r.i32()?,
            secret_key: r.i32()?,
        };
        r.finish()?;
        Ok(m)
    }

    pub fn encode_body(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(8);
        b.put_i32(self.process_id);
        b.put_i32(self.secret_key);
        b.freeze()
    }
}
