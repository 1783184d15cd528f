//! The `X-Airlock-Signature` header: `sha256=<lowercase hex HMAC-SHA256>` of
//! the exact body bytes, keyed with the target's secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of every signature header value.
pub const SIGNATURE_PREFIX: &str = "sha256=";

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length (long keys are hashed first, the empty
    // key is padded), so this cannot fail.
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length")
}

/// The `X-Airlock-Signature` header value for `body`:
/// `sha256=` followed by the lowercase hex HMAC-SHA256 of the exact bytes.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(body);
    format!(
        "{SIGNATURE_PREFIX}{}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Checks a received `X-Airlock-Signature` header against `body`.
///
/// The comparison of the MAC is constant-time (`hmac`'s `verify_slice`), so a
/// receiver using this does not leak how many leading bytes of a forged
/// signature were right. Surrounding whitespace is ignored; the hex may be in
/// either case. Anything malformed is simply `false`.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_mac) = header.trim().strip_prefix(SIGNATURE_PREFIX) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_mac) else {
        return false;
    };
    let mut mac = mac(secret);
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_test_case_2() {
        // RFC 4231, 4.3: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_table() {
        let good = sign(b"s3cret", b"{\"a\":1}");
        let upper = format!("sha256={}", good["sha256=".len()..].to_uppercase());
        let cases: &[(&[u8], &[u8], &str, bool)] = &[
            (b"s3cret", b"{\"a\":1}", &good, true),
            (b"s3cret", b"{\"a\":1}", &upper, true),
            (b"s3cret", b"{\"a\":1}", &format!(" {good}\n"), true),
            (b"wrong", b"{\"a\":1}", &good, false),
            (b"s3cret", b"{\"a\":2}", &good, false),
            (b"s3cret", b"{\"a\":1}", &good["sha256=".len()..], false),
            (b"s3cret", b"{\"a\":1}", "sha256=zz", false),
            (b"s3cret", b"{\"a\":1}", "sha256=", false),
            (b"s3cret", b"{\"a\":1}", &good[..good.len() - 2], false),
            (b"", b"", &sign(b"", b""), true),
        ];
        for (i, (secret, body, header, want)) in cases.iter().enumerate() {
            assert_eq!(verify(secret, body, header), *want, "case {i}: {header}");
        }
    }
}
