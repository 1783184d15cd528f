//! One record's bytes: a line of JSON whose head is fixed.
//!
//! ```text
//! {"seq":42,"prev":"<64 hex>","ts":1763800000123,"kind":"statement",...}\n
//! ```
//!
//! The head (`seq`, `prev`, `ts`, `kind`, in this order, no spaces) is written
//! by hand so the verifier can read it without a JSON parser; the rest is the
//! event as `serde_json` writes it (field order fixed by the types, map keys
//! sorted), so one event always encodes to the same bytes. A record's hash is
//! the SHA-256 of its line without the newline, and `prev` is the previous
//! record's hash: changing, removing or moving any byte breaks the chain at
//! that point.

use sha2::{Digest as _, Sha256};

use crate::event::Event;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// `prev` of the very first record of a log.
pub const GENESIS: Hash = [0; 32];

/// The parsed fixed head of a record line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head<'a> {
    pub seq: u64,
    pub prev: Hash,
    pub ts: i64,
    pub kind: &'a str,
}

pub fn hash(line: &[u8]) -> Hash {
    Sha256::digest(line).into()
}

/// Appends one record line (with its newline) to `out` and returns its hash.
pub fn encode(out: &mut Vec<u8>, seq: u64, prev: &Hash, ts: i64, event: &Event) -> Hash {
    use std::io::Write as _;
    let start = out.len();
    out.extend_from_slice(b"{\"seq\":");
    write!(out, "{seq}").expect("writing to a Vec cannot fail");
    out.extend_from_slice(b",\"prev\":\"");
    let mut hex = [0u8; 64];
    hex_encode(prev, &mut hex);
    out.extend_from_slice(&hex);
    out.extend_from_slice(b"\",\"ts\":");
    write!(out, "{ts}").expect("writing to a Vec cannot fail");
    // The event is an object starting `{"kind":`, serialized in place (no
    // buffer of its own): its opening brace becomes the comma after `ts`.
    let brace = out.len();
    serde_json::to_writer(&mut *out, event).expect("events always serialize");
    debug_assert!(out[brace..].starts_with(b"{\"kind\":"));
    out[brace] = b',';
    let h = hash(&out[start..]);
    out.push(b'\n');
    h
}

pub fn hex_encode(bytes: &[u8; 32], out: &mut [u8; 64]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 15) as usize];
    }
}

pub fn hex(bytes: &Hash) -> String {
    let mut out = [0u8; 64];
    hex_encode(bytes, &mut out);
    String::from_utf8(out.to_vec()).expect("hex digits are ASCII")
}

pub fn parse_hash(text: &[u8]) -> Option<Hash> {
    if text.len() != 64 {
        return None;
    }
    let mut h = [0u8; 32];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        h[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(h)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Reads the fixed head of a line, or `None` when the line does not start
/// with one (the line was changed or is not a record).
pub fn parse_head(line: &[u8]) -> Option<Head<'_>> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let (seq, rest) = digits(rest)?;
    let rest = rest.strip_prefix(b",\"prev\":\"")?;
    let prev = parse_hash(rest.get(..64)?)?;
    let rest = rest[64..].strip_prefix(b"\",\"ts\":")?;
    let (ts, rest) = match rest.strip_prefix(b"-") {
        Some(r) => {
            let (n, r) = digits(r)?;
            (-(i64::try_from(n).ok()?), r)
        }
        None => {
            let (n, r) = digits(rest)?;
            (i64::try_from(n).ok()?, r)
        }
    };
    let rest = rest.strip_prefix(b",\"kind\":\"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    let kind = std::str::from_utf8(&rest[..end]).ok()?;
    if !line.ends_with(b"}") {
        return None;
    }
    Some(Head {
        seq,
        prev,
        ts,
        kind,
    })
}

/// A decimal without sign or leading zeros (but `0` itself), at most u64.
fn digits(s: &[u8]) -> Option<(u64, &[u8])> {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 20 || (n > 1 && s[0] == b'0') {
        return None;
    }
    let mut v: u64 = 0;
    for &b in &s[..n] {
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((v, &s[n..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_parse_head() {
        let mut out = Vec::new();
        let e = Event::GatewayStopped {};
        let h = encode(&mut out, 7, &[0xab; 32], -5, &e);
        assert!(out.ends_with(b"}\n"));
        let line = &out[..out.len() - 1];
        assert_eq!(h, hash(line));
        let head = parse_head(line).unwrap();
        assert_eq!(head.seq, 7);
        assert_eq!(head.prev, [0xab; 32]);
        assert_eq!(head.ts, -5);
        assert_eq!(head.kind, "gateway_stopped");
        let text = std::str::from_utf8(line).unwrap();
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["seq"], 7);
    }

    #[test]
    fn heads_that_are_not() {
        for bad in [
            &b""[..],
            b"{\"seq\":01,\"prev\":\"",
            b"{\"seq\":1,\"prev\":\"00\",\"ts\":1,\"kind\":\"x\"}",
            b"{\"seq\":99999999999999999999999,\"prev\":\"",
        ] {
            assert!(
                parse_head(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut ok = Vec::new();
        encode(&mut ok, 1, &GENESIS, 1, &Event::GatewayStopped {});
        ok.pop();
        // An uppercase hex digit is not what the writer writes.
        let upper =
            String::from_utf8(ok.clone())
                .unwrap()
                .replacen("\"prev\":\"0", "\"prev\":\"A", 1);
        assert!(parse_head(upper.as_bytes()).is_none());
        ok.pop();
        assert!(parse_head(&ok).is_none(), "a line cut short");
    }
}
