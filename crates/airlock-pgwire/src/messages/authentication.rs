//! Authentication* (B) messages: the `R` family that drives the login
//! exchange.

use bytes::{BufMut, Bytes, BytesMut};

use crate::reader::{put_cstr, Reader};
use crate::ProtocolError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    Ok,
    CleartextPassword,
    Md5Password {
        salt: [u8; 4],
    },
    Sasl {
        mechanisms: Vec<String>,
    },
    SaslContinue {
        data: Bytes,
    },
    SaslFinal {
        data: Bytes,
    },
    /// Kerberos, GSS, SSPI and other methods the gateway does not speak.
    Unsupported {
        code: i32,
    },
}

impl Authentication {
    pub fn decode(body: Bytes) -> Result<Authentication, ProtocolError> {
        let mut r = Reader::new("Authentication", body);
        let code = r.i32()?;
        let m = match code {
            0 => Authentication::Ok,
            3 => Authentication::CleartextPassword,
            5 => {
                let s = r.bytes(4)?;
                Authentication::Md5Password {
                    salt: [s[0], s[1], s[2], s[3]],
                }
            }
            10 => {
                let mut mechanisms = Vec::new();
                loop {
                    let m = r.cstr()?;
                    if m.is_empty() {
                        break;
                    }
                    mechanisms.push(m);
                }
                Authentication::Sasl { mechanisms }
            }
            11 => Authentication::SaslContinue { data: r.rest() },
            12 => Authentication::SaslFinal { data: r.rest() },
            code => {
                r.rest();
                Authentication::Unsupported { code }
            }
        };
        r.finish()?;
        Ok(m)
    }

    pub fn encode_body(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            Authentication::Ok => b.put_i32(0),
            Authentication::CleartextPassword => b.put_i32(3),
            Authentication::Md5Password { salt } => {
                b.put_i32(5);
                b.put_slice(salt);
            }
            Authentication::Sasl { mechanisms } => {
                b.put_i32(10);
                for m in mechanisms {
                    put_cstr(&mut b, m.as_bytes());
                }
                b.put_u8(0);
            }
            Authentication::SaslContinue { data } => {
                b.put_i32(11);
                b.put_slice(data);
            }
            Authentication::SaslFinal { data } => {
                b.put_i32(12);
                b.put_slice(data);
            }
            Authentication::Unsupported { code } => b.put_i32(*code),
        }
        b.freeze()
    }
}
