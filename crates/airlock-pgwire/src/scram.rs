//! Server side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677)
//! in PostgreSQL's SASL flavour.
//!
//! Clients prove a short-lived session credential without ever sending it:
//! the gateway stores only [`Verifier`]s (salt, iteration count, StoredKey,
//! ServerKey) and checks the client proof against them. A user may hold
//! several live credentials at once (two terminals), so all of one user's
//! verifiers share a salt and an iteration count: the server sends
//! server-first before it knows which credential the client holds, then
//! [`ScramServer::finish`] tests the proof against every candidate.
//!
//! PostgreSQL's flavour differs from plain RFC 5802 in one way that matters
//! here: the username in client-first is ignored (libpq sends it empty; the
//! user is named in the StartupMessage instead).
//!
//! Everything here parses bytes that come straight from the network, so no
//! input may panic; errors carry only static text or a short, escaped
//! excerpt, never secrets.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// SASL mechanism name of SCRAM-SHA-256 without channel binding.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// SASL mechanism name of SCRAM-SHA-256 with channel binding.
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// PostgreSQL's default iteration count (`scram_iterations`).
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Salt length PostgreSQL uses for new verifiers.
pub const SALT_LEN: usize = 16;

/// The only channel-binding type PostgreSQL (and so every client) supports.
const TLS_SERVER_END_POINT: &[u8] = b"tls-server-end-point";
/// Random bytes in the server nonce; PostgreSQL uses 18, which base64-encodes
/// to 24 characters without padding.
const SERVER_NONCE_RAW_LEN: usize = 18;
/// Longest client-supplied name quoted back in an error, so a hostile client
/// cannot make us log or echo kilobytes.
const MAX_QUOTED: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// Errors of the SCRAM exchange and of verifier parsing.
///
/// The messages are safe to log and to show to the client: they never
/// contain keys, proofs or passwords.
#[derive(Debug, thiserror::Error)]
pub enum ScramError {
    /// A SCRAM message does not follow the grammar.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client chose a mechanism the server did not offer.
    #[error("unsupported SASL mechanism {0:?}")]
    UnsupportedMechanism(String),
    /// The client asked for a channel-binding type other than `tls-server-end-point`.
    #[error("unsupported SCRAM channel-binding type {0:?}")]
    UnsupportedChannelBinding(String),
    /// The chosen mechanism and the gs2 channel-binding flag contradict each other.
    #[error("SCRAM channel binding negotiation error: {0}")]
    MechanismMismatch(&'static str),
    /// The client supports channel binding but believes the server does not,
    /// while the server offered SCRAM-SHA-256-PLUS: a man in the middle may
    /// have stripped PLUS from the mechanism list (RFC 5802 section 6).
    #[error(
        "SCRAM channel binding negotiation error: the client supports channel binding \
         but thinks the server does not; this server does support channel binding"
    )]
    ChannelBindingDowngrade,
    /// The `c=` attribute of client-final does not match the header and data of client-first.
    #[error("SCRAM channel binding check failed")]
    ChannelBindingMismatch,
    /// Authorization identities (`a=`) are not supported, as in PostgreSQL.
    #[error("SCRAM authorization identity (a=) is not supported")]
    AuthzidNotSupported,
    /// The nonce of client-final is not the combined nonce of server-first.
    #[error("SCRAM nonce mismatch")]
    NonceMismatch,
    /// The proof matches none of the candidate verifiers.
    #[error("SCRAM proof does not match any credential")]
    InvalidProof,
    /// The server side passed parameters SCRAM cannot use (a bug, not the client's fault).
    #[error("invalid SCRAM parameters: {0}")]
    InvalidParameters(&'static str),
    /// A stored verifier string is not in PostgreSQL's `SCRAM-SHA-256$...` form.
    #[error("invalid SCRAM verifier: {0}")]
    InvalidVerifier(&'static str),
}

/// What the server keeps instead of a password.
///
/// `Debug` shows only the iteration count: StoredKey and ServerKey are not
/// passwords, but whoever holds ServerKey can impersonate the server, and
/// together with one recorded exchange StoredKey yields ClientKey.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier {{ iterations: {}, … }}", self.iterations)
    }
}

impl Verifier {
    /// Derives the verifier of `password`:
    /// SaltedPassword = PBKDF2-HMAC-SHA256(SASLprep(password), salt, i);
    /// ClientKey = HMAC(SaltedPassword, "Client Key"); StoredKey = SHA256(ClientKey);
    /// ServerKey = HMAC(SaltedPassword, "Server Key").
    ///
    /// SASLprep (RFC 4013) is the identity on every ASCII string: printable
    /// ASCII is neither mapped nor prohibited, NFKC leaves ASCII alone, and
    /// ASCII control characters are prohibited, in which case PostgreSQL and
    /// libpq fall back to the raw password. Airlock mints ASCII secrets, so the
    /// password bytes are used as they are. A non-ASCII password is also used
    /// raw, which matches clients only when SASLprep would leave it unchanged.
    ///
    /// `iterations` should be at least 1; 0 computes the same keys as 1 (as
    /// PostgreSQL's own loop would), and [`ScramServer::start`] refuses it.
    pub fn generate(password: &str, salt: &[u8], iterations: u32) -> Verifier {
        let salted_password =
            pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), salt, iterations.max(1));
        let client_key = hmac_sha256(&salted_password, &[b"Client Key"]);
        Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac_sha256(&salted_password, &[b"Server Key"]),
        }
    }

    /// PostgreSQL's text form, as stored in `pg_authid.rolpassword`:
    /// `SCRAM-SHA-256$<iter>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>`.
    pub fn to_pg_string(&self) -> String {
        format!(
            "{SCRAM_SHA_256}${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key),
        )
    }

    /// Parses the form written by [`Verifier::to_pg_string`] (and by PostgreSQL).
    pub fn parse_pg_string(s: &str) -> Result<Verifier, ScramError> {
        let rest = s
            .strip_prefix(SCRAM_SHA_256)
            .and_then(|r| r.strip_prefix('$'))
            .ok_or(ScramError::InvalidVerifier(
                "does not start with SCRAM-SHA-256$",
            ))?;
        let (params, keys) = rest
            .split_once('$')
            .ok_or(ScramError::InvalidVerifier("missing '$' before the keys"))?;
        let (iterations, salt) = params.split_once(':').ok_or(ScramError::InvalidVerifier(
            "missing ':' after the iteration count",
        ))?;
        let (stored_key, server_key) = keys
            .split_once(':')
            .ok_or(ScramError::InvalidVerifier("missing ':' between the keys"))?;

        // `u32::from_str` would also accept a leading '+'.
        if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ScramError::InvalidVerifier(
                "iteration count is not a number",
            ));
        }
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| ScramError::InvalidVerifier("iteration count out of range"))?;
        if iterations == 0 {
            return Err(ScramError::InvalidVerifier("iteration count is zero"));
        }
        let salt = STANDARD
            .decode(salt)
            .map_err(|_| ScramError::InvalidVerifier("salt is not base64"))?;
        if salt.is_empty() {
            return Err(ScramError::InvalidVerifier("salt is empty"));
        }
        Ok(Verifier {
            iterations,
            salt,
            stored_key: decode_key(stored_key).ok_or(ScramError::InvalidVerifier(
                "StoredKey is not 32 bytes of base64",
            ))?,
            server_key: decode_key(server_key).ok_or(ScramError::InvalidVerifier(
                "ServerKey is not 32 bytes of base64",
            ))?,
        })
    }
}

/// A fresh random salt of PostgreSQL's length, for a user's verifiers.
pub fn random_salt() -> [u8; SALT_LEN] {
    let mut salt = [0u8; SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    salt
}

/// A salt derived from `name` with a keyed hash: HMAC-SHA256(`key`, a fixed
/// label and `name`), cut to [`SALT_LEN`]. For names that have no stored
/// salt (a user the gateway does not know): the same name always gets the
/// same salt, different names get unrelated ones, and without `key` nobody
/// can tell it from a [`random_salt`], so the SCRAM challenge does not say
/// whether the name exists. Nothing is stored per name.
pub fn derived_salt(key: &[u8], name: &str) -> [u8; SALT_LEN] {
    let mac = hmac_sha256(key, &[b"airlock scram salt\0", name.as_bytes()]);
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&mac[..SALT_LEN]);
    salt
}

impl Verifier {
    /// A verifier no password matches (random keys), with the given salt and
    /// iteration count. [`ScramServer::finish`] tests it with every
    /// login, next to the real candidates, so a login with no candidates (an
    /// unknown user or resource) costs what a wrong password costs.
    pub fn decoy(salt: &[u8], iterations: u32) -> Verifier {
        let mut stored_key = [0u8; 32];
        let mut server_key = [0u8; 32];
        rand::rng().fill_bytes(&mut stored_key);
        rand::rng().fill_bytes(&mut server_key);
        Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key,
            server_key,
        }
    }
}

/// Channel binding the server can offer on this connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelBinding {
    /// Plain connection (no TLS): only SCRAM-SHA-256 is offered.
    None,
    /// `tls-server-end-point` data (RFC 5929): the hash of the server
    /// certificate's DER, SHA-256 for SHA-256/SHA-1/MD5-signed certificates.
    /// The caller computes the bytes.
    TlsServerEndPoint(Vec<u8>),
}

/// One server-side SCRAM exchange, between server-first and server-final.
///
/// Holds no secret: everything in it has been or will be sent in clear
/// inside the (possibly TLS-protected) exchange.
#[derive(Debug)]
pub struct ScramServer {
    salt: Vec<u8>,
    iterations: u32,
    /// The gs2 header exactly as the client sent it (`n,,`, `y,,` or
    /// `p=tls-server-end-point,,`), which `c=` must repeat.
    gs2_header: Vec<u8>,
    /// Channel-binding data `c=` must carry after the header: empty unless the
    /// client chose `p=`.
    cbind_data: Vec<u8>,
    /// client-nonce followed by server-nonce.
    nonce: Vec<u8>,
    client_first_bare: Vec<u8>,
    server_first: Vec<u8>,
}

impl ScramServer {
    /// Mechanisms to advertise in AuthenticationSASL: with TLS binding data,
    /// PLUS first (clients take the first one they support), then plain.
    pub fn mechanisms(binding: &ChannelBinding) -> Vec<&'static str> {
        match binding {
            ChannelBinding::None => vec![SCRAM_SHA_256],
            ChannelBinding::TlsServerEndPoint(_) => vec![SCRAM_SHA_256_PLUS, SCRAM_SHA_256],
        }
    }

    /// Starts from the SASLInitialResponse: the chosen mechanism and the
    /// client-first-message. Returns the exchange and the server-first-message
    /// to send in AuthenticationSASLContinue.
    ///
    /// `salt` and `iterations` are the ones shared by all of the user's
    /// verifiers. For an unknown user, pass a salt derived deterministically
    /// from the user name and a server secret, and later let `finish` fail
    /// with no candidates, so the exchange does not reveal which users exist.
    pub fn start(
        mechanism: &str,
        client_first: &[u8],
        binding: &ChannelBinding,
        salt: &[u8],
        iterations: u32,
    ) -> Result<(ScramServer, Vec<u8>), ScramError> {
        let mut raw = [0u8; SERVER_NONCE_RAW_LEN];
        rand::rng().fill_bytes(&mut raw);
        let server_nonce = STANDARD.encode(raw);
        Self::start_with_server_nonce(
            mechanism,
            client_first,
            binding,
            salt,
            iterations,
            server_nonce.as_bytes(),
        )
    }

    /// [`ScramServer::start`] with a chosen server nonce, so tests can replay
    /// the RFC 7677 exchange byte for byte.
    fn start_with_server_nonce(
        mechanism: &str,
        client_first: &[u8],
        binding: &ChannelBinding,
        salt: &[u8],
        iterations: u32,
        server_nonce: &[u8],
    ) -> Result<(ScramServer, Vec<u8>), ScramError> {
        if iterations == 0 {
            return Err(ScramError::InvalidParameters("iteration count is zero"));
        }
        if salt.is_empty() {
            return Err(ScramError::InvalidParameters("salt is empty"));
        }

        let plus = match mechanism {
            SCRAM_SHA_256 => false,
            // PLUS is only offered when there is binding data to bind to.
            SCRAM_SHA_256_PLUS if matches!(binding, ChannelBinding::TlsServerEndPoint(_)) => true,
            other => return Err(ScramError::UnsupportedMechanism(quote(other.as_bytes()))),
        };

        // gs2-header = gs2-cbind-flag "," [ authzid ] ","
        let (flag, rest) = split_at_comma(client_first).ok_or(ScramError::Malformed(
            "client-first-message has no gs2 header",
        ))?;
        let cbind_data = match flag {
            b"n" => {
                if plus {
                    return Err(ScramError::MechanismMismatch(
                        "client selected SCRAM-SHA-256-PLUS but sent no channel binding data",
                    ));
                }
                Vec::new()
            }
            b"y" => {
                if plus {
                    return Err(ScramError::MechanismMismatch(
                        "client selected SCRAM-SHA-256-PLUS but sent no channel binding data",
                    ));
                }
                // The client could have bound but saw no PLUS: if we offered it,
                // someone in between removed it from the list.
                if matches!(binding, ChannelBinding::TlsServerEndPoint(_)) {
                    return Err(ScramError::ChannelBindingDowngrade);
                }
                Vec::new()
            }
            [b'p', b'=', cb_type @ ..] => {
                if !plus {
                    return Err(ScramError::MechanismMismatch(
                        "client selected SCRAM-SHA-256 but sent channel binding data",
                    ));
                }
                if cb_type != TLS_SERVER_END_POINT {
                    return Err(ScramError::UnsupportedChannelBinding(quote(cb_type)));
                }
                match binding {
                    ChannelBinding::TlsServerEndPoint(data) => data.clone(),
                    // Unreachable in practice: `plus` implies binding data.
                    ChannelBinding::None => {
                        return Err(ScramError::UnsupportedMechanism(SCRAM_SHA_256_PLUS.into()))
                    }
                }
            }
            _ => return Err(ScramError::Malformed("invalid gs2 channel-binding flag")),
        };

        let (authzid, bare) = split_at_comma(rest).ok_or(ScramError::Malformed(
            "client-first-message has no gs2 header",
        ))?;
        if authzid.starts_with(b"a=") {
            return Err(ScramError::AuthzidNotSupported);
        }
        if !authzid.is_empty() {
            return Err(ScramError::Malformed("unexpected attribute in gs2 header"));
        }
        let gs2_header = client_first[..client_first.len() - bare.len()].to_vec();

        // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
        let mut attrs = bare.split(|&b| b == b',');
        let first = attrs.next().unwrap_or_default();
        if first.starts_with(b"m=") {
            return Err(ScramError::Malformed(
                "client requires an unsupported SCRAM extension",
            ));
        }
        // PostgreSQL ignores the SCRAM username: the StartupMessage names the user.
        expect_attr(
            first,
            b'n',
            "client-first-message has no username attribute",
        )?;
        let client_nonce = expect_attr(
            attrs.next().unwrap_or_default(),
            b'r',
            "client-first-message has no nonce attribute",
        )?;
        if client_nonce.is_empty() || !client_nonce.iter().all(|&b| is_nonce_char(b)) {
            return Err(ScramError::Malformed(
                "client nonce is empty or not printable",
            ));
        }
        for extension in attrs {
            parse_attr(extension).ok_or(ScramError::Malformed("invalid attribute"))?;
        }

        let mut nonce = client_nonce.to_vec();
        nonce.extend_from_slice(server_nonce);
        let mut server_first = b"r=".to_vec();
        server_first.extend_from_slice(&nonce);
        server_first.extend_from_slice(b",s=");
        server_first.extend_from_slice(STANDARD.encode(salt).as_bytes());
        server_first.extend_from_slice(format!(",i={iterations}").as_bytes());

        let server = ScramServer {
            salt: salt.to_vec(),
            iterations,
            gs2_header,
            cbind_data,
            nonce,
            client_first_bare: bare.to_vec(),
            server_first: server_first.clone(),
        };
        Ok((server, server_first))
    }

    /// Whether the client bound the exchange to the TLS channel (`p=`), worth
    /// recording in the audit log.
    pub fn channel_bound(&self) -> bool {
        self.gs2_header.starts_with(b"p=")
    }

    /// Checks the client-final-message: `c=` must be base64(gs2 header +
    /// binding data), `r=` the combined nonce, and `p=` a valid proof for one
    /// of `candidates`. Candidates whose salt or iteration count differ from
    /// those given to `start` are skipped. Every eligible candidate is tested,
    /// with a constant-time comparison, so the time taken does not tell which
    /// one matched.
    ///
    /// Returns the index of the first matching candidate and the
    /// server-final-message (`v=<b64 ServerSignature>`) for AuthenticationSASLFinal.
    pub fn finish(
        &self,
        client_final: &[u8],
        candidates: &[&Verifier],
    ) -> Result<(usize, Vec<u8>), ScramError> {
        // client-final-message = channel-binding "," nonce ["," extensions] "," proof
        // The proof is the last attribute; everything before its comma is signed.
        let proof_at = find_subslice(client_final, b",p=")
            .ok_or(ScramError::Malformed("client-final-message has no proof"))?;
        let without_proof = &client_final[..proof_at];
        let proof_b64 = &client_final[proof_at + 3..];

        let mut attrs = without_proof.split(|&b| b == b',');
        let cbind = expect_attr(
            attrs.next().unwrap_or_default(),
            b'c',
            "client-final-message has no channel-binding attribute",
        )?;
        let nonce = expect_attr(
            attrs.next().unwrap_or_default(),
            b'r',
            "client-final-message has no nonce attribute",
        )?;
        for extension in attrs {
            parse_attr(extension).ok_or(ScramError::Malformed("invalid attribute"))?;
        }

        let mut expected_cbind = self.gs2_header.clone();
        expected_cbind.extend_from_slice(&self.cbind_data);
        let expected_cbind = STANDARD.encode(expected_cbind);
        if !bool::from(cbind.ct_eq(expected_cbind.as_bytes())) {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if nonce != self.nonce.as_slice() {
            return Err(ScramError::NonceMismatch);
        }

        // A comma here would mean another attribute after the proof.
        let proof: [u8; 32] = STANDARD
            .decode(proof_b64)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramError::Malformed(
                "client proof is not 32 bytes of base64",
            ))?;

        let auth_message: [&[u8]; 5] = [
            &self.client_first_bare,
            b",",
            &self.server_first,
            b",",
            without_proof,
        ];

        let mut matched: Option<usize> = None;
        for (index, candidate) in candidates.iter().enumerate() {
            if candidate.iterations != self.iterations || candidate.salt != self.salt {
                continue;
            }
            // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage);
            // the proof is right when SHA256(ClientKey) == StoredKey.
            let client_signature = hmac_sha256(&candidate.stored_key, &auth_message);
            let mut client_key = proof;
            for (k, s) in client_key.iter_mut().zip(client_signature) {
                *k ^= s;
            }
            let stored_key: [u8; 32] = Sha256::digest(client_key).into();
            let ok: Choice = stored_key.ct_eq(&candidate.stored_key);
            if bool::from(ok) && matched.is_none() {
                matched = Some(index);
            }
        }
        let index = matched.ok_or(ScramError::InvalidProof)?;

        let server_signature = hmac_sha256(&candidates[index].server_key, &auth_message);
        let mut server_final = b"v=".to_vec();
        server_final.extend_from_slice(STANDARD.encode(server_signature).as_bytes());
        Ok((index, server_final))
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn decode_key(b64: &str) -> Option<[u8; 32]> {
    STANDARD.decode(b64).ok()?.try_into().ok()
}

/// Splits at the first comma: the part before it and the part after it.
fn split_at_comma(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = input.iter().position(|&b| b == b',')?;
    Some((&input[..at], &input[at + 1..]))
}

fn find_subslice(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `attr-val = ALPHA "=" value`: the attribute letter and its value.
fn parse_attr(part: &[u8]) -> Option<(u8, &[u8])> {
    match part {
        [name, b'=', value @ ..] if name.is_ascii_alphabetic() => Some((*name, value)),
        _ => None,
    }
}

fn expect_attr<'a>(part: &'a [u8], name: u8, what: &'static str) -> Result<&'a [u8], ScramError> {
    match parse_attr(part) {
        Some((n, value)) if n == name => Ok(value),
        _ => Err(ScramError::Malformed(what)),
    }
}

/// `printable = %x21-2B / %x2D-7E` (RFC 5802): visible ASCII except ','.
fn is_nonce_char(b: u8) -> bool {
    matches!(b, 0x21..=0x2b | 0x2d..=0x7e)
}

/// A short, lossily decoded excerpt of client input for an error message.
fn quote(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(MAX_QUOTED)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl as pg;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    // RFC 7677 section 3.
    const RFC_CLIENT_FIRST: &[u8] = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_NONCE: &[u8] = b"%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_SALT_B64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const RFC_SERVER_FIRST: &[u8] =
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_CLIENT_FINAL: &[u8] = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
        p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_FINAL: &[u8] = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    /// Few iterations keep the interop tests fast in debug builds; the RFC
    /// test covers the default count.
    const TEST_ITERATIONS: u32 = 64;
    const SALT: &[u8] = b"0123456789abcdef";
    const CB_DATA: &[u8] = b"sha-256 of the server certificate";

    fn rfc_salt() -> Vec<u8> {
        STANDARD.decode(RFC_SALT_B64).unwrap()
    }

    fn rfc_server() -> ScramServer {
        let (server, first) = ScramServer::start_with_server_nonce(
            SCRAM_SHA_256,
            RFC_CLIENT_FIRST,
            &ChannelBinding::None,
            &rfc_salt(),
            DEFAULT_ITERATIONS,
            RFC_SERVER_NONCE,
        )
        .unwrap();
        assert_eq!(first, RFC_SERVER_FIRST);
        server
    }

    #[test]
    fn rfc7677_exchange_byte_for_byte() {
        let verifier = Verifier::generate("pencil", &rfc_salt(), DEFAULT_ITERATIONS);
        let server = rfc_server();
        let (index, server_final) = server.finish(RFC_CLIENT_FINAL, &[&verifier]).unwrap();
        assert_eq!(index, 0);
        assert_eq!(server_final, RFC_SERVER_FINAL);
        assert!(!server.channel_bound());
    }

    #[test]
    fn rfc7677_wrong_password_is_invalid_proof() {
        let verifier = Verifier::generate("pencils", &rfc_salt(), DEFAULT_ITERATIONS);
        let err = rfc_server()
            .finish(RFC_CLIENT_FINAL, &[&verifier])
            .unwrap_err();
        assert!(matches!(err, ScramError::InvalidProof), "{err:?}");
    }

    #[test]
    fn verifier_matches_postgres_protocol_password_hash() {
        // postgres-protocol's `scram_sha_256` builds the string PostgreSQL stores
        // for `ALTER ROLE ... PASSWORD`, with a random salt: rebuild it from
        // that salt and iteration count with our code.
        for password in ["pencil", "", "correct horse battery staple", "p@ss:$w0rd=,"] {
            let theirs = postgres_protocol::password::scram_sha_256(password.as_bytes());
            let parsed = Verifier::parse_pg_string(&theirs).unwrap();
            let ours = Verifier::generate(password, &parsed.salt, parsed.iterations);
            assert_eq!(ours.to_pg_string(), theirs, "password {password:?}");
        }
    }

    #[test]
    fn verifier_matches_real_postgresql() {
        // Copied from pg_authid.rolpassword of PostgreSQL 15 after
        // `SET password_encryption = 'scram-sha-256'; CREATE ROLE .. PASSWORD '<password>'`.
        let cases = [
            ("pencil", "SCRAM-SHA-256$4096:dt66bh1IkYZj+SZ/XtgJTA==$\
                9v7cEXiA3mULKh1BoGmDKvz8F5dNJmlDj4Ua5gIa/6E=:wAi+OjnzHxshmE+U2MriTPUBM1roS5xcech51twRODs="),
            ("p@ss:$w0rd=,", "SCRAM-SHA-256$4096:/SDerv7Vro5iaNr5EzzGNw==$\
                IlWGaMkMAZoEGMurnDzV84+i0BlASvFP1QPQHWeXC5U=:CjZnAXzVJWj8YrxCoQ1297pz9Rczfv4kii1sqZP5Oo0="),
        ];
        for (password, stored) in cases {
            let parsed = Verifier::parse_pg_string(stored).unwrap();
            let ours = Verifier::generate(password, &parsed.salt, parsed.iterations);
            assert_eq!(ours, parsed, "password {password:?}");
            assert_eq!(ours.to_pg_string(), stored, "password {password:?}");
        }
    }

    #[test]
    fn verifier_pg_string_round_trip() {
        let verifier = Verifier::generate("pencil", &rfc_salt(), DEFAULT_ITERATIONS);
        let text = verifier.to_pg_string();
        assert!(
            text.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"),
            "{text}"
        );
        assert_eq!(Verifier::parse_pg_string(&text).unwrap(), verifier);
    }

    #[test]
    fn verifier_pg_string_rejects_garbage() {
        let good = Verifier::generate("pencil", SALT, 16).to_pg_string();
        let (_, keys) = good.rsplit_once('$').unwrap();
        let cases = [
            String::new(),
            "md5abcdef".to_string(),
            "SCRAM-SHA-256".to_string(),
            "SCRAM-SHA-256$4096:c2FsdA==".to_string(),
            format!("SCRAM-SHA-256$0:c2FsdA==${keys}"),
            format!("SCRAM-SHA-256$+16:c2FsdA==${keys}"),
            format!("SCRAM-SHA-256$99999999999:c2FsdA==${keys}"),
            format!("SCRAM-SHA-256$16:${keys}"),
            format!("SCRAM-SHA-256$16:not base64!${keys}"),
            "SCRAM-SHA-256$16:c2FsdA==$c2FsdA==:c2FsdA==".to_string(),
            format!("SCRAM-SHA-256$16c2FsdA==${keys}"),
            format!("SCRAM-SHA-256$16:c2FsdA==${}", keys.replace(':', "")),
        ];
        for case in cases {
            let err = Verifier::parse_pg_string(&case).unwrap_err();
            assert!(
                matches!(err, ScramError::InvalidVerifier(_)),
                "{case:?}: {err:?}"
            );
        }
    }

    #[test]
    fn verifier_debug_hides_keys() {
        let verifier = Verifier::generate("pencil", SALT, 16);
        let debug = format!("{verifier:?}");
        assert_eq!(debug, "Verifier { iterations: 16, … }");
        assert!(!debug.contains(&STANDARD.encode(verifier.stored_key)));
    }

    #[test]
    fn mechanisms_put_plus_first() {
        assert_eq!(
            ScramServer::mechanisms(&ChannelBinding::None),
            [SCRAM_SHA_256]
        );
        assert_eq!(
            ScramServer::mechanisms(&ChannelBinding::TlsServerEndPoint(CB_DATA.to_vec())),
            [SCRAM_SHA_256_PLUS, SCRAM_SHA_256]
        );
    }

    #[test]
    fn server_nonce_is_random_base64_appended_to_client_nonce() {
        let (_, a) = ScramServer::start(
            SCRAM_SHA_256,
            b"n,,n=,r=abc",
            &ChannelBinding::None,
            SALT,
            16,
        )
        .unwrap();
        let (_, b) = ScramServer::start(
            SCRAM_SHA_256,
            b"n,,n=,r=abc",
            &ChannelBinding::None,
            SALT,
            16,
        )
        .unwrap();
        assert_ne!(a, b);
        let text = String::from_utf8(a).unwrap();
        let nonce = text
            .strip_prefix("r=abc")
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        assert_eq!(STANDARD.decode(nonce).unwrap().len(), SERVER_NONCE_RAW_LEN);
    }

    const PASSWORD: &str = "s3cret-session-token";

    /// What the postgres-protocol client sends in its gs2 header.
    #[derive(Clone, Copy, Debug)]
    enum Client {
        /// `n,,`: the client cannot bind.
        NoBinding,
        /// `y,,`: the client could bind but saw no PLUS.
        Unrequested,
        /// `p=tls-server-end-point,,` with the server's certificate hash.
        Plus,
        /// `p=tls-server-end-point,,` with another certificate's hash (a man in the middle).
        PlusOtherCert,
    }

    impl Client {
        fn binding(self) -> pg::ChannelBinding {
            match self {
                Client::NoBinding => pg::ChannelBinding::unsupported(),
                Client::Unrequested => pg::ChannelBinding::unrequested(),
                Client::Plus => pg::ChannelBinding::tls_server_end_point(CB_DATA.to_vec()),
                Client::PlusOtherCert => {
                    pg::ChannelBinding::tls_server_end_point(b"another certificate".to_vec())
                }
            }
        }
    }

    /// Runs a full exchange between postgres-protocol's client, holding
    /// [`PASSWORD`], and our server.
    fn exchange(
        client: Client,
        mechanism: &str,
        server_binding: &ChannelBinding,
        candidates: &[&Verifier],
    ) -> Result<usize, ScramError> {
        let mut client = pg::ScramSha256::new(PASSWORD.as_bytes(), client.binding());
        let (server, server_first) = ScramServer::start(
            mechanism,
            client.message(),
            server_binding,
            SALT,
            TEST_ITERATIONS,
        )?;
        client
            .update(&server_first)
            .expect("client accepts server-first");
        let (index, server_final) = server.finish(client.message(), candidates)?;
        client
            .finish(&server_final)
            .expect("client verifies the server signature");
        Ok(index)
    }

    fn verifier(password: &str) -> Verifier {
        Verifier::generate(password, SALT, TEST_ITERATIONS)
    }

    #[test]
    fn interop_with_postgres_protocol_client() {
        use Client::*;
        let right = verifier(PASSWORD);
        let wrong = verifier("wrong password");
        let other_salt = Verifier::generate(PASSWORD, b"different salt!!", TEST_ITERATIONS);
        let other_iter = Verifier::generate(PASSWORD, SALT, TEST_ITERATIONS + 1);
        let none = ChannelBinding::None;
        let tls = ChannelBinding::TlsServerEndPoint(CB_DATA.to_vec());
        let (plain, plus) = (SCRAM_SHA_256, SCRAM_SHA_256_PLUS);

        /// (case, client, mechanism, server binding, candidates, expected index or error)
        type Case<'a> = (
            &'a str,
            Client,
            &'a str,
            &'a ChannelBinding,
            &'a [&'a Verifier],
            Result<usize, &'a str>,
        );
        #[rustfmt::skip]
        let cases: &[Case<'_>] = &[
            ("plain", NoBinding, plain, &none, &[&right], Ok(0)),
            ("y,, against a server without binding", Unrequested, plain, &none, &[&right], Ok(0)),
            ("TLS server, client cannot bind", NoBinding, plain, &tls, &[&right], Ok(0)),
            ("PLUS over TLS", Plus, plus, &tls, &[&right], Ok(0)),
            ("wrong password", NoBinding, plain, &none, &[&wrong], Err("InvalidProof")),
            ("wrong password, PLUS", Plus, plus, &tls, &[&wrong], Err("InvalidProof")),
            ("no candidates", NoBinding, plain, &none, &[], Err("InvalidProof")),
            ("right candidate second", NoBinding, plain, &none, &[&wrong, &right], Ok(1)),
            ("right candidate second, PLUS", Plus, plus, &tls, &[&wrong, &right], Ok(1)),
            ("other salt/iterations skipped", NoBinding, plain, &none,
                &[&other_salt, &other_iter, &right], Ok(2)),
            ("only another salt", NoBinding, plain, &none, &[&other_salt], Err("InvalidProof")),
            ("y,, against a server offering PLUS", Unrequested, plain, &tls, &[&right],
                Err("ChannelBindingDowngrade")),
            ("p= against a server without binding", Plus, plus, &none, &[&right],
                Err("UnsupportedMechanism")),
            ("p= with the plain mechanism", Plus, plain, &tls, &[&right], Err("MechanismMismatch")),
            ("p= with plain, no binding", Plus, plain, &none, &[&right], Err("MechanismMismatch")),
            ("PLUS without p=", NoBinding, plus, &tls, &[&right], Err("MechanismMismatch")),
            ("PLUS with y,,", Unrequested, plus, &tls, &[&right], Err("MechanismMismatch")),
            ("unknown mechanism", NoBinding, "SCRAM-SHA-1", &tls, &[&right],
                Err("UnsupportedMechanism")),
            ("certificate hash differs", PlusOtherCert, plus, &tls, &[&right],
                Err("ChannelBindingMismatch")),
        ];

        for (name, client, mechanism, server_binding, candidates, expected) in cases {
            let got = exchange(*client, mechanism, server_binding, candidates);
            match (got, expected) {
                (Ok(index), Ok(want)) => assert_eq!(index, *want, "{name}"),
                (Err(err), Err(want)) => assert!(
                    format!("{err:?}").starts_with(want),
                    "{name}: got {err:?}, want {want}"
                ),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn plus_exchange_reports_channel_bound() {
        let tls = ChannelBinding::TlsServerEndPoint(CB_DATA.to_vec());
        let client = pg::ScramSha256::new(b"pw", Client::Plus.binding());
        let (server, _) = ScramServer::start(
            SCRAM_SHA_256_PLUS,
            client.message(),
            &tls,
            SALT,
            TEST_ITERATIONS,
        )
        .unwrap();
        assert!(server.channel_bound());
    }

    #[test]
    fn modified_nonce_is_nonce_mismatch() {
        let right = verifier("pw");
        let mut client = pg::ScramSha256::new(b"pw", pg::ChannelBinding::unsupported());
        let (server, server_first) = ScramServer::start(
            SCRAM_SHA_256,
            client.message(),
            &ChannelBinding::None,
            SALT,
            TEST_ITERATIONS,
        )
        .unwrap();
        client.update(&server_first).unwrap();
        let client_final = String::from_utf8(client.message().to_vec()).unwrap();
        // Drop the last nonce character: still well formed, no longer ours.
        let proof_at = client_final.find(",p=").unwrap();
        let tampered = format!(
            "{}{}",
            &client_final[..proof_at - 1],
            &client_final[proof_at..]
        );
        let err = server.finish(tampered.as_bytes(), &[&right]).unwrap_err();
        assert!(matches!(err, ScramError::NonceMismatch), "{err:?}");
        // The untouched message still succeeds, so the tampering is what failed.
        assert!(server.finish(client_final.as_bytes(), &[&right]).is_ok());
    }

    #[test]
    fn client_first_validation() {
        let none = ChannelBinding::None;
        let tls = ChannelBinding::TlsServerEndPoint(CB_DATA.to_vec());
        let cases: &[(&str, &[u8], &ChannelBinding, &str)] = &[
            (
                "authzid",
                b"n,a=admin,n=,r=abc",
                &none,
                "AuthzidNotSupported",
            ),
            (
                "other cb type",
                b"p=tls-unique,,n=,r=abc",
                &tls,
                "UnsupportedChannelBinding",
            ),
            (
                "mandatory extension",
                b"n,,m=ext,n=,r=abc",
                &none,
                "Malformed",
            ),
            ("unknown flag", b"x,,n=,r=abc", &none, "Malformed"),
            ("no gs2 header", b"n=,r=abc", &none, "Malformed"),
            ("empty", b"", &none, "Malformed"),
            ("no nonce", b"n,,n=", &none, "Malformed"),
            ("empty nonce", b"n,,n=,r=", &none, "Malformed"),
            ("nonce with a space", b"n,,n=,r=a b", &none, "Malformed"),
            ("nonce before user", b"n,,r=abc,n=", &none, "Malformed"),
            ("bad extension", b"n,,n=,r=abc,??", &none, "Malformed"),
        ];
        for (name, client_first, binding, want) in cases {
            let mechanism = if client_first.starts_with(b"p=") {
                SCRAM_SHA_256_PLUS
            } else {
                SCRAM_SHA_256
            };
            let err = ScramServer::start(mechanism, client_first, binding, SALT, 16).unwrap_err();
            assert!(
                format!("{err:?}").starts_with(want),
                "{name}: got {err:?}, want {want}"
            );
        }
        // Extensions after the nonce and a non-empty (ignored) username are accepted.
        ScramServer::start(SCRAM_SHA_256, b"n,,n=*,r=abc,x=ext", &none, SALT, 16).unwrap();
        ScramServer::start(SCRAM_SHA_256, b"n,,n=us=2Cer,r=abc", &none, SALT, 16).unwrap();
    }

    #[test]
    fn start_refuses_unusable_parameters() {
        let first = b"n,,n=,r=abc";
        for (salt, iterations) in [(SALT, 0), (&b""[..], 16)] {
            let err = ScramServer::start(
                SCRAM_SHA_256,
                first,
                &ChannelBinding::None,
                salt,
                iterations,
            )
            .unwrap_err();
            assert!(matches!(err, ScramError::InvalidParameters(_)), "{err:?}");
        }
    }

    #[test]
    fn client_final_validation() {
        let verifier = Verifier::generate("pencil", &rfc_salt(), DEFAULT_ITERATIONS);
        let server = rfc_server();
        let nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let cases: Vec<(&str, String, &str)> = vec![
            ("no proof", format!("c=biws,r={nonce}"), "Malformed"),
            (
                "short proof",
                format!("c=biws,r={nonce},p=AAAA"),
                "Malformed",
            ),
            (
                "attribute after proof",
                format!("c=biws,r={nonce},p={proof},x=1"),
                "Malformed",
            ),
            ("missing c", format!("r={nonce},p={proof}"), "Malformed"),
            (
                "wrong gs2 echo",
                format!("c=eSws,r={nonce},p={proof}"),
                "ChannelBindingMismatch",
            ),
            (
                "c with cb data",
                format!("c=Yml3cw==,r={nonce},p={proof}"),
                "ChannelBindingMismatch",
            ),
            (
                "client nonce only",
                format!("c=biws,r=rOprNGfwEbeRWgbNEkqO,p={proof}"),
                "NonceMismatch",
            ),
            // An extension is signed too, so adding one breaks the proof.
            (
                "extension",
                format!("c=biws,r={nonce},x=1,p={proof}"),
                "InvalidProof",
            ),
        ];
        for (name, client_final, want) in cases {
            let err = server
                .finish(client_final.as_bytes(), &[&verifier])
                .unwrap_err();
            assert!(
                format!("{err:?}").starts_with(want),
                "{name}: got {err:?}, want {want}"
            );
        }
    }

    /// Parsing reads bytes from the network: no input may panic.
    #[test]
    fn garbled_input_never_panics() {
        let mut rng = StdRng::seed_from_u64(0x5c7a_4d00);
        let alphabet = b",=nypacrmisv0AZ+/ \x00\xff";
        let tls = ChannelBinding::TlsServerEndPoint(CB_DATA.to_vec());
        let seeds_first: [&[u8]; 3] = [
            RFC_CLIENT_FIRST,
            b"p=tls-server-end-point,,n=,r=abc",
            b"y,,n=,r=abc",
        ];
        let verifier = Verifier::generate("pencil", &rfc_salt(), DEFAULT_ITERATIONS);
        let server = rfc_server();

        let garble = |seed: &[u8], rng: &mut StdRng| -> Vec<u8> {
            let mut bytes = seed.to_vec();
            if rng.random_bool(0.2) {
                let len = rng.random_range(0..48);
                return (0..len)
                    .map(|_| {
                        if rng.random_bool(0.7) {
                            alphabet[rng.random_range(0..alphabet.len())]
                        } else {
                            rng.random()
                        }
                    })
                    .collect();
            }
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..=bytes.len());
                match rng.random_range(0..3) {
                    0 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    1 if at < bytes.len() => {
                        bytes[at] = alphabet[rng.random_range(0..alphabet.len())]
                    }
                    _ => bytes.insert(at, rng.random()),
                }
            }
            bytes
        };

        for i in 0..4000 {
            let seed = seeds_first[i % seeds_first.len()];
            let input = garble(seed, &mut rng);
            for mechanism in [SCRAM_SHA_256, SCRAM_SHA_256_PLUS] {
                let _ = ScramServer::start(mechanism, &input, &tls, SALT, 16);
                let _ = ScramServer::start(mechanism, &input, &ChannelBinding::None, SALT, 16);
            }
            let input = garble(RFC_CLIENT_FINAL, &mut rng);
            let _ = server.finish(&input, &[&verifier]);
            let _ = Verifier::parse_pg_string(&String::from_utf8_lossy(&input));
        }
    }

    #[test]
    fn derived_salts_are_stable_per_name_and_key() {
        let a = derived_salt(b"key one", "ghost");
        assert_eq!(a, derived_salt(b"key one", "ghost"));
        assert_ne!(a, derived_salt(b"key one", "ghost2"));
        assert_ne!(a, derived_salt(b"key two", "ghost"));
        assert_eq!(a.len(), SALT_LEN);
    }

    #[test]
    fn no_proof_matches_a_decoy() {
        // Next to the real verifier the decoy changes nothing; alone it
        // refuses the right password's proof.
        let decoy = Verifier::decoy(&rfc_salt(), DEFAULT_ITERATIONS);
        let real = Verifier::generate("pencil", &rfc_salt(), DEFAULT_ITERATIONS);
        let (index, _) = rfc_server()
            .finish(RFC_CLIENT_FINAL, &[&decoy, &real])
            .unwrap();
        assert_eq!(index, 1);
        let err = rfc_server()
            .finish(RFC_CLIENT_FINAL, &[&decoy])
            .unwrap_err();
        assert!(matches!(err, ScramError::InvalidProof), "{err:?}");
    }
}
