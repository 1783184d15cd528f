//! ParameterStatus (B) message: the server reports a run-time parameter's
//! value (at startup and whenever a reported GUC changes).

use bytes::{Bytes, BytesMut};

use crate::reader::{put_cstr, Reader};
use crate::ProtocolError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterStatus {
    pub name: String,
    pub value: String,
}

impl ParameterStatus {
    pub fn new(name: &str, value: &str) -> ParameterStatus {
        ParameterStatus {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }

    pub fn decode(body: Bytes) -> Result<ParameterStatus, ProtocolError> {
        let mut r = Reader::new("ParameterStatus", body);
        let name = String::from_utf8_lossy(&r.cstr_bytes()?).into_owned();
        let value = String::from_utf8_lossy(&r.cstr_bytes()?).into_owned();
        r.finish()?;
        Ok(ParameterStatus { name, value })
    }

    pub fn encode_body(&self) -> Bytes {
        let mut b = BytesMut::new();
        put_cstr(&mut b, self.name.as_bytes());
        put_cstr(&mut b, self.value.as_bytes());
        b.freeze()
    }
}
