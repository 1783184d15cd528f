//! RowDescription (B) and DataRow (B): a result's columns and its rows.
//!
//! The gateway reads these only where it must (masking, row limits), so
//! DataRow is not decoded into an owned struct: [`DataRowValues`] walks the
//! values of a body in place, and [`encode_data_row`] writes one back.

use bytes::{BufMut, Bytes, BytesMut};

use crate::reader::{put_cstr, Reader};
use crate::ProtocolError;

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The column's name as the query labels it (an alias if it has one).
    /// Raw bytes in the client encoding.
    pub name: Bytes,
    /// The table the column comes from, or 0 when it is computed.
    pub table_oid: u32,
    /// The column's attribute number in that table, or 0.
    pub column: i16,
    pub type_oid: u32,
    pub type_size: i16,
    pub type_modifier: i32,
    /// 0 text, 1 binary.
    pub format: i16,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RowDescription {
    pub fields: Vec<Field>,
}

impl RowDescription {
    pub fn decode(body: Bytes) -> Result<RowDescription, ProtocolError> {
        let mut r = Reader::new("RowDescription", body);
        // Each field is at least a NUL and 18 bytes.
        let n = r.count(19)?;
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            fields.push(Field {
                name: r.cstr_bytes()?,
                table_oid: r.i32()? as u32,
                column: r.i16()?,
                type_oid: r.i32()? as u32,
                type_size: r.i16()?,
                type_modifier: r.i32()?,
                format: r.i16()?,
            });
        }
        r.finish()?;
        Ok(RowDescription { fields })
    }

    pub fn encode_body(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(self.fields.len() as i16);
        for f in &self.fields {
            put_cstr(&mut b, &f.name);
            b.put_u32(f.table_oid);
            b.put_i16(f.column);
            b.put_u32(f.type_oid);
            b.put_i16(f.type_size);
            b.put_i32(f.type_modifier);
            b.put_i16(f.format);
        }
        b.freeze()
    }
}

/// The values of a DataRow body, in order: `None` is NULL. Yields an error
/// (once, then ends) when the body is malformed.
pub struct DataRowValues<'a> {
    rest: &'a [u8],
    left: usize,
    failed: bool,
}

/// Walks the values of a DataRow body; the count comes first.
pub fn data_row_values(body: &[u8]) -> Result<(usize, DataRowValues<'_>), ProtocolError> {
    let malformed = ProtocolError::Malformed {
        what: "DataRow",
        why: "message body is shorter than its fields",
    };
    let Some(head) = body.get(..2) else {
        return Err(malformed);
    };
    let n = i16::from_be_bytes([head[0], head[1]]);
    if n < 0 || n as usize * 4 > body.len() - 2 {
        return Err(ProtocolError::Malformed {
            what: "DataRow",
            why: "array count does not fit the message",
        });
    }
    Ok((
        n as usize,
        DataRowValues {
            rest: &body[2..],
            left: n as usize,
            failed: false,
        },
    ))
}

impl<'a> Iterator for DataRowValues<'a> {
    type Item = Result<Option<&'a [u8]>, ProtocolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.left == 0 {
            if !self.rest.is_empty() {
                self.failed = true;
                return Some(Err(ProtocolError::Malformed {
                    what: "DataRow",
                    why: "unexpected bytes after the last field",
                }));
            }
            return None;
        }
        self.left -= 1;
        let fail = |s: &mut Self| {
            s.failed = true;
            Some(Err(ProtocolError::Malformed {
                what: "DataRow",
                why: "message body is shorter than its fields",
            }))
        };
        let Some(len) = self.rest.get(..4) else {
            return fail(self);
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        self.rest = &self.rest[4..];
        if len == -1 {
            return Some(Ok(None));
        }
        if len < 0 {
            self.failed = true;
            return Some(Err(ProtocolError::Malformed {
                what: "DataRow",
                why: "value length is negative but not -1 (NULL)",
            }));
        }
        let len = len as usize;
        if self.rest.len() < len {
            return fail(self);
        }
        let (v, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(Ok(Some(v)))
    }
}

/// Appends a whole DataRow message (tag and length included).
pub fn encode_data_row<'a>(dst: &mut BytesMut, values: impl IntoIterator<Item = Option<&'a [u8]>>) {
    let start = dst.len();
    dst.put_u8(b'D');
    dst.put_i32(0);
    dst.put_i16(0);
    let mut n: i16 = 0;
    for v in values {
        n = n.wrapping_add(1);
        match v {
            None => dst.put_i32(-1),
            Some(v) => {
                dst.put_i32(v.len() as i32);
                dst.put_slice(v);
            }
        }
    }
    let len = (dst.len() - start - 1) as i32;
    dst[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    dst[start + 5..start + 7].copy_from_slice(&n.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_description_round_trips() {
        let rd = RowDescription {
            fields: vec![
                Field {
                    name: Bytes::from_static(b"email"),
                    table_oid: 16384,
                    column: 2,
                    type_oid: 25,
                    type_size: -1,
                    type_modifier: -1,
                    format: 0,
                },
                Field {
                    name: Bytes::from_static(b"n"),
                    table_oid: 0,
                    column: 0,
                    type_oid: 23,
                    type_size: 4,
                    type_modifier: -1,
                    format: 1,
                },
            ],
        };
        assert_eq!(RowDescription::decode(rd.encode_body()).unwrap(), rd);
        assert!(RowDescription::decode(Bytes::from_static(b"\x00\x01email\x00")).is_err());
        assert!(RowDescription::decode(Bytes::from_static(b"\xff\xff")).is_err());
    }

    #[test]
    fn data_rows_round_trip_and_refuse_lies() {
        let mut out = BytesMut::new();
        encode_data_row(&mut out, [Some(&b"a@b.co"[..]), None, Some(&b""[..])]);
        let body = &out[5..];
        let (n, values) = data_row_values(body).unwrap();
        assert_eq!(n, 3);
        let v: Vec<_> = values.collect::<Result<_, _>>().unwrap();
        assert_eq!(v, vec![Some(&b"a@b.co"[..]), None, Some(&b""[..])]);
        assert_eq!(
            i32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize,
            out.len() - 1
        );
        // A value longer than the body, a count larger than the body, trailing bytes.
        for bad in [
            &b"\x00\x01\x00\x00\x00\x09abc"[..],
            &b"\x00\x09\x00\x00"[..],
            &b"\x00\x01\xff\xff\xff\xffX"[..],
            &b"\x00\x01\xff\xff\xff\xfe"[..],
            &b"\x00"[..],
        ] {
            let ok = data_row_values(bad)
                .map(|(_, vs)| vs.collect::<Result<Vec<_>, _>>().is_ok())
                .unwrap_or(false);
            assert!(!ok, "{bad:?}");
        }
    }
}
