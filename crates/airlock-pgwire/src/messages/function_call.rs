//! FunctionCall (F) message: the legacy fast-path interface that calls a
//! function by OID without SQL.

use bytes::{BufMut, Bytes, BytesMut};

use crate::reader::Reader;
use crate::ProtocolError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCall {
    pub function_oid: u32,
    pub arg_formats: Vec<i16>,
    pub args: Vec<Option<Bytes>>,
    pub result_format: i16,
}

impl FunctionCall {
    pub fn decode(body: Bytes) -> Result<FunctionCall, ProtocolError> {
        let mut r = Reader::new("FunctionCall", body);
        let function_oid = r.i32()? as u32;
        let n = r.count(2)?;
        let mut arg_formats = Vec::with_capacity(n);
        for _ in 0..n {
            arg_formats.push(r.i16()?);
        }
        let n = r.count(4)?;
        let mut args = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.i32()?;
            args.push(match len {
                -1 => None,
                l if l >= 0 => Some(r.bytes(l as usize)?),
                _ => {
                    return Err(ProtocolError::Malformed {
                        what: "FunctionCall",
                        why: "negative argument length other than -1",
                    })
                }
            });
        }
        let result_format = r.i16()?;
        r.finish()?;
        Ok(FunctionCall {
            function_oid,
            arg_formats,
            args,
            result_format,
        })
    }

    pub fn encode_body(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u32(self.function_oid);
        b.put_i16(self.arg_formats.len() as i16);
        for f in &self.arg_formats {
            b.put_i16(*f);
        }
        b.put_i16(self.args.len() as i16);
        for a in &self.args {
            match a {
                None => b.put_i32(-1),
                Some(v) => {
                    b.put_i32(v.len() as i32);
                    b.put_slice(v);
                }
            }
        }
        b.put_i16(self.result_format);
        b.freeze()
    }
}
