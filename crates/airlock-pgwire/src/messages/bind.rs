//! Bind (F) message: binds parameter values to a prepared statement, creating
//! a portal.

use bytes::{BufMut, Bytes, BytesMut};

use crate::reader::{put_cstr, Reader};
use crate::ProtocolError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub portal: Bytes,
    pub statement: Bytes,
    /// 0 = text, 1 = binary; empty means all text, one entry applies to all.
    pub param_formats: Vec<i16>,
    /// `None` is SQL NULL.
    pub params: Vec<Option<Bytes>>,
    pub result_formats: Vec<i16>,
}

impl Bind {
    pub fn decode(body: Bytes) -> Result<Bind, ProtocolError> {
        let mut r = Reader::new("Bind", body);
        let portal = r.cstr_bytes()?;
        let statement = r.cstr_bytes()?;
        let n = r.count(2)?;
        let mut param_formats = Vec::with_capacity(n);
        for _ in 0..n {
            param_formats.push(r.i16()?);
        }
        let n = r.count(4)?;
        let mut params = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.i32()?;
            params.push(match len {
                -1 => None,
                l if l >= 0 => Some(r.bytes(l as usize)?),
                _ => {
                    return Err(ProtocolError::Malformed {
                        what: "Bind",
                        why: "negative parameter length other than -1",
                    })
                }
            });
        }
        let n = r.count(2)?;
        let mut result_formats = Vec::with_capacity(n);
        for _ in 0..n {
            result_formats.push(r.i16()?);
        }
        r.finish()?;
        Ok(Bind {
            portal,
            statement,
            param_formats,
            params,
            result_formats,
        })
    }

    pub fn encode_body(&self) -> Bytes {
        let mut b = BytesMut::new();
        put_cstr(&mut b, &self.portal);
        put_cstr(&mut b, &self.statement);
        b.put_i16(self.param_formats.len() as i16);
        for f in &self.param_formats {
            b.put_i16(*f);
        }
        b.put_i16(self.params.len() as i16);
        for p in &self.params {
            match p {
                None => b.put_i32(-1),
                Some(v) => {
                    b.put_i32(v.len() as i32);
                    b.put_slice(v);
                }
            }
        }
        b.put_i16(self.result_formats.len() as i16);
        for f in &self.result_formats {
            b.put_i16(*f);
        }
        b.freeze()
    }
}
