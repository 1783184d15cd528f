//! The Ed25519 key that signs checkpoints.
//!
//! The private key lives in the data directory (`keys/audit-signing.pem`,
//! PKCS#8, mode 0600), never in the audit directory, so a copy of the log
//! carries no secret. The public key is written next to the log
//! (`audit/signing-key.pub.pem`, SubjectPublicKeyInfo) and can be exported
//! with `airlock audit public-key`; a verifier given only that file checks
//! every checkpoint.

use std::path::Path;

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use crate::record::Hash;
use crate::AuditError;

const PRIVATE_PEM: &str = "PRIVATE KEY";
const PUBLIC_PEM: &str = "PUBLIC KEY";
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32 key
/// bytes follow.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const DOMAIN: &[u8] = b"airlock-audit-checkpoint/v1\0";
/// Format 2 also signs the writer's sealing rules and its lateness.
const DOMAIN_V2: &[u8] = b"airlock-audit-checkpoint/v2\0";

/// What a format-2 checkpoint says about its writer, under its signature:
/// the rules it sealed by, and whether it sealed this stretch later than
/// they say (it reopened a log a crash left unsealed, or a write failed).
/// The verifier holds the log to these rules, and only to signed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// The writer's `checkpoint_every`: at most this many records between
    /// two checkpoints.
    pub every: u64,
    /// The writer's `checkpoint_interval`, in milliseconds.
    pub interval_ms: u64,
    /// The stretch this checkpoint seals was sealed late, on purpose.
    pub late: bool,
}

impl Terms {
    /// The verifier's slack over the writer's promise: twice the rule and a
    /// constant, for scheduling delays and small clock steps.
    const SLACK_RECORDS: u64 = 10;
    const SLACK_MS: i64 = 60_000;

    /// The most records allowed between two checkpoints (the checkpoint
    /// itself not counted), or in an unsealed tail.
    pub fn max_records(&self) -> u64 {
        self.every
            .saturating_mul(2)
            .saturating_add(Self::SLACK_RECORDS)
    }

    /// The longest time allowed from the first record after a checkpoint to
    /// the checkpoint that seals it, or across an unsealed tail.
    pub fn max_span_ms(&self) -> i64 {
        i64::try_from(self.interval_ms)
            .unwrap_or(i64::MAX / 4)
            .saturating_mul(2)
            .saturating_add(Self::SLACK_MS)
    }

    /// The looser of two sets of rules (a writer restarted with new ones).
    pub fn looser(&self, other: &Terms) -> Terms {
        Terms {
            every: self.every.max(other.every),
            interval_ms: self.interval_ms.max(other.interval_ms),
            late: self.late || other.late,
        }
    }
}

impl Default for Terms {
    /// The gateway's defaults (`[audit]` without `checkpoint_*`).
    fn default() -> Terms {
        Terms {
            every: 1000,
            interval_ms: 10_000,
            late: false,
        }
    }
}

pub struct SigningKey {
    pair: Ed25519KeyPair,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl SigningKey {
    /// Reads the key at `path`, or creates one there (mode 0600) when the
    /// file does not exist.
    pub fn load_or_create(path: &Path) -> Result<SigningKey, AuditError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let der = pem_decode(&text, PRIVATE_PEM).ok_or_else(|| {
                    AuditError::Key(format!(
                        "{} is not a PEM \"{PRIVATE_PEM}\" file",
                        path.display()
                    ))
                })?;
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|e| {
                    AuditError::Key(format!(
                        "{} does not hold an Ed25519 key: {e}",
                        path.display()
                    ))
                })?;
                Ok(SigningKey { pair })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let rng = ring::rand::SystemRandom::new();
                let doc = Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| AuditError::Key("the system random source failed".into()))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| AuditError::io("creating the key directory", dir, e))?;
                }
                write_private(path, &pem_encode(doc.as_ref(), PRIVATE_PEM))?;
                let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
                    .map_err(|e| AuditError::Key(format!("a generated key is invalid: {e}")))?;
                Ok(SigningKey { pair })
            }
            Err(e) => Err(AuditError::io("reading the audit signing key", path, e)),
        }
    }

    pub fn public(&self) -> PublicKey {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(k)
    }

    pub fn sign_checkpoint(&self, seq: u64, ts: i64, prev: &Hash) -> String {
        hex::encode(self.pair.sign(&checkpoint_message(seq, ts, prev)).as_ref())
    }

    /// A format-2 signature: [`checkpoint_message_v2`].
    pub fn sign_checkpoint_v2(&self, seq: u64, ts: i64, prev: &Hash, terms: &Terms) -> String {
        hex::encode(
            self.pair
                .sign(&checkpoint_message_v2(seq, ts, prev, terms))
                .as_ref(),
        )
    }
}

/// What a checkpoint's signature covers: its own seq and time, and the hash
/// of the record before it (which covers every record before that).
pub fn checkpoint_message(seq: u64, ts: i64, prev: &Hash) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 48);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&ts.to_be_bytes());
    m.extend_from_slice(prev);
    m
}

/// What a format-2 checkpoint's signature covers: what format 1 covers, and
/// the writer's [`Terms`], so nobody without the key can loosen the rules
/// the log is checked against (or strip them: format 1's message differs).
pub fn checkpoint_message_v2(seq: u64, ts: i64, prev: &Hash, terms: &Terms) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN_V2.len() + 65);
    m.extend_from_slice(DOMAIN_V2);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&ts.to_be_bytes());
    m.extend_from_slice(prev);
    m.extend_from_slice(&terms.every.to_be_bytes());
    m.extend_from_slice(&terms.interval_ms.to_be_bytes());
    m.push(u8::from(terms.late));
    m
}

impl PublicKey {
    /// A short, stable id: the first 16 hex digits of the key's SHA-256.
    pub fn id(&self) -> String {
        let h = crate::record::hash(&self.0);
        hex::encode(&h[..8])
    }

    pub fn verify_checkpoint(&self, seq: u64, ts: i64, prev: &Hash, sig_hex: &str) -> bool {
        self.verify_message(&checkpoint_message(seq, ts, prev), sig_hex)
    }

    pub fn verify_checkpoint_v2(
        &self,
        seq: u64,
        ts: i64,
        prev: &Hash,
        terms: &Terms,
        sig_hex: &str,
    ) -> bool {
        self.verify_message(&checkpoint_message_v2(seq, ts, prev, terms), sig_hex)
    }

    fn verify_message(&self, message: &[u8], sig_hex: &str) -> bool {
        let Ok(sig) = hex::decode(sig_hex) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, &sig)
            .is_ok()
    }

    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        pem_encode(&der, PUBLIC_PEM)
    }

    /// Reads a PEM SubjectPublicKeyInfo (as written by `to_pem` or
    /// `openssl pkey -pubout`) or 64 hex digits.
    pub fn parse(text: &str) -> Option<PublicKey> {
        let trimmed = text.trim();
        if trimmed.len() == 64 {
            let raw = hex::decode(trimmed).ok()?;
            return Some(PublicKey(raw.try_into().ok()?));
        }
        let der = pem_decode(text, PUBLIC_PEM)?;
        let key = der.strip_prefix(&SPKI_PREFIX[..])?;
        Some(PublicKey(key.try_into().ok()?))
    }

    pub fn read(path: &Path) -> Result<PublicKey, AuditError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuditError::io("reading the public key", path, e))?;
        PublicKey::parse(&text).ok_or_else(|| {
            AuditError::Key(format!(
                "{} is neither a PEM Ed25519 public key nor 64 hex digits",
                path.display()
            ))
        })
    }
}

fn pem_encode(der: &[u8], label: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_decode(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let b64: String = text[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

fn write_private(path: &Path, text: &str) -> Result<(), AuditError> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| AuditError::io("creating the audit signing key", path, e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| AuditError::io("writing the audit signing key", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_load_sign_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/k.pem");
        let k = SigningKey::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = SigningKey::load_or_create(&path).unwrap();
        assert_eq!(k.public(), again.public());
        let sig = k.sign_checkpoint(5, 1000, &[7; 32]);
        let pk = PublicKey::parse(&k.public().to_pem()).unwrap();
        assert_eq!(pk, k.public());
        assert!(pk.verify_checkpoint(5, 1000, &[7; 32], &sig));
        assert!(!pk.verify_checkpoint(6, 1000, &[7; 32], &sig));
        assert!(!pk.verify_checkpoint(5, 1001, &[7; 32], &sig));
        assert!(!pk.verify_checkpoint(5, 1000, &[8; 32], &sig));
        assert!(!pk.verify_checkpoint(5, 1000, &[7; 32], "zz"));
        assert_eq!(PublicKey::parse(&hex::encode(pk.0)), Some(pk));
        // Format 2 signs the terms too: none of them can be changed, and a
        // format-2 signature is no format-1 one.
        let terms = Terms {
            every: 1000,
            interval_ms: 10_000,
            late: false,
        };
        let sig2 = k.sign_checkpoint_v2(5, 1000, &[7; 32], &terms);
        assert!(pk.verify_checkpoint_v2(5, 1000, &[7; 32], &terms, &sig2));
        assert!(!pk.verify_checkpoint(5, 1000, &[7; 32], &sig2));
        for other in [
            Terms {
                every: 1001,
                ..terms
            },
            Terms {
                interval_ms: 10_001,
                ..terms
            },
            Terms {
                late: true,
                ..terms
            },
        ] {
            assert!(!pk.verify_checkpoint_v2(5, 1000, &[7; 32], &other, &sig2));
        }
        assert_eq!(pk.id().len(), 16);
    }
}
