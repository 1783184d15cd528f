//! PasswordMessage, SASLInitialResponse and SASLResponse (F): the three
//! meanings of message type `p`, told apart by the authentication request
//! the server sent last.

use bytes::{BufMut, Bytes, BytesMut};

use crate::reader::{put_cstr, Reader};
use crate::ProtocolError;

/// A cleartext or MD5-hashed password. Its Debug output never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordMessage {
    pub password: Bytes,
}

impl std::fmt::Debug for PasswordMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordMessage { password: *** }")
    }
}

impl PasswordMessage {
    pub fn decode(body: Bytes) -> Result<PasswordMessage, ProtocolError> {
        let mut r = Reader::new("PasswordMessage", body);
        let password = r.cstr_bytes()?;
        r.finish()?;
        Ok(PasswordMessage { password })
    }

    pub fn encode_body(&self) -> Bytes {
        let mut b = BytesMut::new();
        put_cstr(&mut b, &self.password);
        b.freeze()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslInitialResponse {
    pub mechanism: String,
    /// The client-first-message; `None` when the client sent length -1.
    pub data: Option<Bytes>,
}

impl SaslInitialResponse {
    pub fn decode(body: Bytes) -> Result<SaslInitialResponse, ProtocolError> {
        let mut r = Reader::new("SASLInitialResponse", body);
        let mechanism = r.cstr()?;
        let len = r.i32()?;
        let data = match len {
            -1 => None,
            l if l >= 0 => Some(r.bytes(l as usize)?),
            _ => {
                return Err(ProtocolError::Malformed {
                    what: "SASLInitialResponse",
                    why: "negative data length",
                })
            }
        };
        r.finish()?;
        Ok(SaslInitialResponse { mechanism, data })
    }

    pub fn encode_body(&self) -> Bytes {
        let mut b = BytesMut::new();
        put_cstr(&mut b, self.mechanism.as_bytes());
        match &self.data {
            None => b.put_i32(-1),
            Some(d) => {
                b.put_i32(d.len() as i32);
                b.put_slice(d);
            }
        }
        b.freeze()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslResponse {
    pub data: Bytes,
}

impl SaslResponse {
    pub fn decode(body: Bytes) -> Result<SaslResponse, ProtocolError> {
        Ok(SaslResponse { data: body })
    }

    pub fn encode_body(&self) -> Bytes {
        self.data.clone()
    }
}
