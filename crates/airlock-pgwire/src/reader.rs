//! A bounds-checked cursor for decoding message bodies.
//!
//! Every read returns a `ProtocolError` instead of panicking when the body is
//! shorter than the message claims, so decoders can be written as straight-line
//! code and still be safe on hostile input.

use bytes::{Buf, Bytes};

use crate::ProtocolError;

pub struct Reader {
    what: &'static str,
    buf: Bytes,
}

impl Reader {
    pub fn new(what: &'static str, buf: Bytes) -> Reader {
        Reader { what, buf }
    }

    fn short(&self) -> ProtocolError {
        ProtocolError::Malformed {
            what: self.what,
            why: "message body is shorter than its fields",
        }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn u8(&mut self) -> Result<u8, ProtocolError> {
        if self.buf.is_empty() {
            return Err(self.short());
        }
        Ok(self.buf.get_u8())
    }

    pub fn i16(&mut self) -> Result<i16, ProtocolError> {
        if self.buf.len() < 2 {
            return Err(self.short());
        }
        Ok(self.buf.get_i16())
    }

    pub fn i32(&mut self) -> Result<i32, ProtocolError> {
        if self.buf.len() < 4 {
            return Err(self.short());
        }
        Ok(self.buf.get_i32())
    }

    /// A count read from the wire that sizes a following array: refuses
    /// negative counts and counts the remaining bytes cannot hold, so a forged
    /// count cannot make us allocate.
    pub fn count(&mut self, min_item_len: usize) -> Result<usize, ProtocolError> {
        let n = self.i16()?;
        if n < 0 || (n as usize) * min_item_len > self.buf.len() {
            return Err(ProtocolError::Malformed {
                what: self.what,
                why: "array count does not fit the message",
            });
        }
        Ok(n as usize)
    }

    pub fn bytes(&mut self, n: usize) -> Result<Bytes, ProtocolError> {
        if self.buf.len() < n {
            return Err(self.short());
        }
        Ok(self.buf.split_to(n))
    }

    /// A NUL-terminated string, without its terminator, as raw bytes (its
    /// encoding is the session's client_encoding, not necessarily UTF-8).
    pub fn cstr_bytes(&mut self) -> Result<Bytes, ProtocolError> {
        let Some(nul) = self.buf.iter().position(|&b| b == 0) else {
            return Err(ProtocolError::Malformed {
                what: self.what,
                why: "string is not NUL-terminated",
            });
        };
        let s = self.buf.split_to(nul);
        self.buf.advance(1);
        Ok(s)
    }

    /// A NUL-terminated string that must be UTF-8 (names, parameters).
    pub fn cstr(&mut self) -> Result<String, ProtocolError> {
        let raw = self.cstr_bytes()?;
        String::from_utf8(raw.to_vec()).map_err(|_| ProtocolError::Malformed {
            what: self.what,
            why: "string is not valid UTF-8",
        })
    }

    pub fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Fails when bytes are left over after the last field.
    pub fn finish(self) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Malformed {
                what: self.what,
                why: "unexpected bytes after the last field",
            })
        }
    }
}

/// Appends a NUL-terminated string.
pub fn put_cstr(dst: &mut bytes::BytesMut, s: &[u8]) {
    use bytes::BufMut;
    dst.put_slice(s);
    dst.put_u8(0);
}
