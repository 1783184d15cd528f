//! TLS material for both sides of the gateway.
//!
//! Client side: the certificate the gateway serves to psql and drivers, either
//! the operator's PEM files or a local CA plus server certificate generated
//! into `<data_dir>/tls/` on first start and kept across restarts, so clients
//! that trust `ca.crt` once keep working. Upstream side: rustls client
//! configurations with libpq's `sslmode` semantics. Also the RFC 5929
//! `tls-server-end-point` hash that SCRAM-SHA-256-PLUS channel binding needs.
//!
//! Every configuration uses the ring provider explicitly rather than the
//! process-wide default, so nothing here depends on what another crate
//! installed first.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::Digest as _;

/// The ALPN protocol id of PostgreSQL (PG 17 direct SSL negotiation).
const ALPN_POSTGRESQL: &[u8] = b"postgresql";
/// Names every generated server certificate carries, whatever the operator adds.
const DEFAULT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const SERVER_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A server certificate that expires sooner than this is re-issued at start.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Backdating absorbs clock skew between the gateway and its clients.
const BACKDATE: Duration = Duration::from_secs(3600);

/// What went wrong while loading, generating or configuring TLS. Messages name
/// the file involved and what to do about it.
#[derive(thiserror::Error, Debug)]
pub enum TlsError {
    #[error("could not read {}: {source}; check the path and its permissions", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not write {}: {source}; check that the data directory is writable", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} holds no usable PEM {what} ({detail}); expected a PEM file with a -----BEGIN {label}----- block", path.display())]
    Pem {
        path: PathBuf,
        what: &'static str,
        label: &'static str,
        detail: String,
    },
    #[error("a TLS {given} was configured without a TLS {missing}: set both, or neither to let Airlock generate them")]
    HalfPair {
        given: &'static str,
        missing: &'static str,
    },
    #[error("the private key in {} does not fit the certificate in {} ({source}); configure the matching pair", key.display(), cert.display())]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("invalid TLS host name {name:?}: expected a DNS name or an IP address")]
    BadHostname { name: String },
    #[error(
        "found {} but not {missing} next to it: restore {missing} from a backup, or delete both \
         to create a new CA (clients must then trust the new ca.crt)", present.display()
    )]
    PartialCa {
        present: PathBuf,
        missing: &'static str,
    },
    #[error(
        "the CA in {} cannot issue server certificates ({reason}); delete ca.crt, ca.key, \
         server.crt and server.key in {} to create a new CA and have clients trust the new ca.crt, \
         or configure your own TLS cert and key", path.display(), dir.display()
    )]
    CaUnusable {
        path: PathBuf,
        dir: PathBuf,
        reason: String,
    },
    #[error("could not generate {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("could not build the TLS {what}: {source}")]
    Config {
        what: &'static str,
        #[source]
        source: rustls::Error,
    },
    #[error("{} holds no certificate usable as a trust anchor ({detail}); give a PEM file of CA certificates", path.display())]
    NoTrustAnchors { path: PathBuf, detail: String },
    #[error(
        "no system CA certificates could be loaded ({detail}): install the ca-certificates \
         package, or set the resource's CA file"
    )]
    NoSystemRoots { detail: String },
}

/// What the gateway serves to its clients.
pub struct GatewayTls {
    pub server_config: Arc<rustls::ServerConfig>,
    /// The same certificate for the HTTP API (ALPN `http/1.1`).
    pub http_server_config: Arc<rustls::ServerConfig>,
    /// The generated CA certificate clients should trust (`sslrootcert`);
    /// `None` when the operator supplied the certificate.
    pub ca_file: Option<PathBuf>,
    /// The leaf certificate (DER), for SCRAM `tls-server-end-point`.
    pub cert_der: Vec<u8>,
}

impl fmt::Debug for GatewayTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayTls")
            .field("ca_file", &self.ca_file)
            .field("cert_der_len", &self.cert_der.len())
            .finish_non_exhaustive()
    }
}

/// The most plaintext one TLS record to a PostgreSQL client carries, as
/// PostgreSQL's own 8 KiB send buffer makes it.
pub const MAX_RECORD_PLAINTEXT: usize = 8192;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads the operator's certificate chain and key when both are given;
/// otherwise generates (once) a CA and (when missing, expiring within 30 days,
/// or lacking one of the wanted names) a server certificate under
/// `<data_dir>/tls/`. The server certificate names `localhost`, `127.0.0.1`,
/// `::1` and every entry of `hostnames` (DNS names or IP addresses).
pub fn load_or_generate(
    data_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
    hostnames: &[String],
) -> Result<GatewayTls, TlsError> {
    let (chain, key_der, ca_file) = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = read_cert_chain(cert)?;
            let key_der = read_private_key(key)?;
            (chain, key_der, None)
        }
        (None, None) => {
            let dir = data_dir.join("tls");
            let (leaf, key_der) = generated_material(&dir, hostnames)?;
            (vec![leaf], key_der, Some(dir.join("ca.crt")))
        }
        (Some(_), None) => {
            return Err(TlsError::HalfPair {
                given: "certificate",
                missing: "key",
            })
        }
        (None, Some(_)) => {
            return Err(TlsError::HalfPair {
                given: "key",
                missing: "certificate",
            })
        }
    };
    let cert_der = chain[0].to_vec();
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config {
            what: "server configuration",
            source,
        })?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|source| match (cert, key) {
            (Some(cert), Some(key)) => TlsError::KeyMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                source,
            },
            _ => TlsError::Config {
                what: "server configuration",
                source,
            },
        })?;
    // Offered, not required: rustls only refuses a client that offers ALPN
    // without "postgresql"; clients that send no ALPN at all (libpq before
    // 17, most drivers) are served as before.
    let mut http = config.clone();
    http.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    // PostgreSQL clients see TLS records of at most 8 KiB from PostgreSQL
    // (its send buffer), and some drivers rely on it: they read 8 KiB at a
    // time and then wait on the socket, so the tail of a 16 KiB record
    // would sit decrypted in their TLS library while the socket stays
    // quiet, and they hang. rustls counts the 5-byte record header in.
    config.max_fragment_size = Some(MAX_RECORD_PLAINTEXT + 5);
    Ok(GatewayTls {
        server_config: Arc::new(config),
        http_server_config: Arc::new(http),
        ca_file,
        cert_der,
    })
}

/// The CA and the key that signs with it.
struct LocalCa {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// Returns the leaf and its key, generating or re-issuing what is needed.
fn generated_material(
    dir: &Path,
    hostnames: &[String],
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let names = wanted_names(hostnames)?;
    fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca = load_or_create_ca(dir)?;

    let crt_path = dir.join("server.crt");
    let key_path = dir.join("server.key");
    match existing_server_cert(&ca, &crt_path, &key_path, &names, now()) {
        Ok(found) => return Ok(found),
        Err(reason) => {
            tracing::info!(%reason, dir = %dir.display(), "issuing a new gateway TLS certificate")
        }
    }

    let (cert, key) = issue_server_cert(&ca, &names, now(), SERVER_VALIDITY)?;
    let leaf = cert.der().clone();
    // Verify before writing: if the CA's subject could not be reproduced
    // exactly, or the CA has expired, clients could never verify this leaf.
    check_chain(&ca, &leaf, now(), &names).map_err(|e| TlsError::CaUnusable {
        path: dir.join("ca.crt"),
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    // Key first: a crash between the two writes leaves a pair that does not
    // match, which the next start detects and re-issues.
    write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&crt_path, cert.pem().as_bytes(), 0o644)?;
    let key_der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    Ok((leaf, key_der))
}

/// `localhost`, `127.0.0.1`, `::1`, then the operator's names, validated and
/// without duplicates (case-insensitive, as DNS is).
fn wanted_names(hostnames: &[String]) -> Result<Vec<String>, TlsError> {
    let mut names: Vec<String> = Vec::new();
    for name in DEFAULT_NAMES
        .iter()
        .map(|s| s.to_string())
        .chain(hostnames.iter().map(|s| s.trim().to_string()))
    {
        if ServerName::try_from(name.as_str()).is_err() {
            return Err(TlsError::BadHostname { name });
        }
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            names.push(name);
        }
    }
    Ok(names)
}

fn load_or_create_ca(dir: &Path) -> Result<LocalCa, TlsError> {
    let crt_path = dir.join("ca.crt");
    let key_path = dir.join("ca.key");
    match (crt_path.exists(), key_path.exists()) {
        (true, true) => load_ca(dir, &crt_path, &key_path),
        (true, false) => Err(TlsError::PartialCa {
            present: crt_path,
            missing: "ca.key",
        }),
        (false, true) => Err(TlsError::PartialCa {
            present: key_path,
            missing: "ca.crt",
        }),
        (false, false) => {
            let id: String = rand::rng()
                .sample_iter(&rand::distr::Alphanumeric)
                .take(8)
                .map(char::from)
                .collect();
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| {
                TlsError::Generate {
                    what: "the CA key",
                    source,
                }
            })?;
            let params = ca_params(DnValue::Utf8String(format!("Airlock local CA {id}")), now());
            let cert = params
                .self_signed(&key)
                .map_err(|source| TlsError::Generate {
                    what: "the CA certificate",
                    source,
                })?;
            write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
            write_atomic(&crt_path, cert.pem().as_bytes(), 0o644)?;
            tracing::info!(ca = %crt_path.display(), "created a local CA for the gateway's TLS certificate");
            Ok(LocalCa {
                cert: cert.der().clone(),
                issuer: Issuer::new(params, key),
            })
        }
    }
}

fn ca_params(common_name: DnValue, now: SystemTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    // Path length 0: this CA signs server certificates, never other CAs.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, now - BACKDATE, now + CA_VALIDITY);
    params
}

/// Rebuilds the issuer from the stored CA. rcgen can only sign with an issuer
/// described by parameters, and the leaf's issuer name must equal the CA's
/// subject byte for byte; the CA is ours, so its subject is a single common
/// name, which is read back from the certificate and re-encoded the same way.
fn load_ca(dir: &Path, crt_path: &Path, key_path: &Path) -> Result<LocalCa, TlsError> {
    let cert = CertificateDer::from_pem_file(crt_path)
        .map_err(|e| pem_error(crt_path, "certificate", "CERTIFICATE", e))?;
    let key_pem = fs::read_to_string(key_path).map_err(|source| TlsError::Read {
        path: key_path.to_path_buf(),
        source,
    })?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Pem {
        path: key_path.to_path_buf(),
        what: "private key",
        label: "PRIVATE KEY",
        detail: e.to_string(),
    })?;
    let unusable = |reason: &str| TlsError::CaUnusable {
        path: crt_path.to_path_buf(),
        dir: dir.to_path_buf(),
        reason: reason.to_string(),
    };
    let parsed = ParsedCertificate::try_from(&cert).map_err(|e| unusable(&e.to_string()))?;
    if parsed.subject_public_key_info().as_ref() != key.subject_public_key_info().as_slice() {
        return Err(unusable("ca.key is not the key of ca.crt"));
    }
    let common_name = der::subject_common_name(&cert).ok_or_else(|| {
        unusable("its subject is not a single common name, so it was not created by Airlock")
    })?;
    // Validity does not matter here: only the name, key usages and key
    // identifier method go into an issuer.
    let params = ca_params(common_name, now());
    Ok(LocalCa {
        cert,
        issuer: Issuer::new(params, key),
    })
}

/// The stored server certificate and key when they are still good: issued by
/// this CA, valid for 30 more days, naming every wanted name, and matching.
/// The error says why not, for the log.
fn existing_server_cert(
    ca: &LocalCa,
    crt_path: &Path,
    key_path: &Path,
    names: &[String],
    now: SystemTime,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), String> {
    if !crt_path.exists() || !key_path.exists() {
        return Err("no server certificate yet".into());
    }
    let leaf = CertificateDer::from_pem_file(crt_path)
        .map_err(|e| format!("{}: {e}", crt_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("{}: {e}", key_path.display()))?;
    check_chain(ca, &leaf, now + RENEW_BEFORE, names)
        .map_err(|e| format!("the server certificate is not good for 30 more days: {e}"))?;
    rustls::sign::CertifiedKey::from_der(vec![leaf.clone()], key.clone_key(), &provider())
        .map_err(|e| format!("server.key does not fit server.crt: {e}"))?;
    Ok((leaf, key))
}

/// Verifies `leaf` as a client trusting only the CA would, at time `at`, for
/// every name.
fn check_chain(
    ca: &LocalCa,
    leaf: &CertificateDer<'_>,
    at: SystemTime,
    names: &[String],
) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert.clone())?;
    let parsed = ParsedCertificate::try_from(leaf)?;
    let at = UnixTime::since_unix_epoch(at.duration_since(UNIX_EPOCH).unwrap_or_default());
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &roots,
        &[],
        at,
        provider().signature_verification_algorithms.all,
    )?;
    for name in names {
        let server_name = ServerName::try_from(name.as_str())
            .map_err(|_| rustls::Error::General(format!("bad name {name}")))?;
        rustls::client::verify_server_name(&parsed, &server_name)?;
    }
    Ok(())
}

/// A new ECDSA P-256 server certificate for `names`, signed by the CA.
fn issue_server_cert(
    ca: &LocalCa,
    names: &[String],
    now: SystemTime,
    validity: Duration,
) -> Result<(rcgen::Certificate, KeyPair), TlsError> {
    let generate = |what| move |source| TlsError::Generate { what, source };
    // `new` turns IP literals into IP address SANs and the rest into DNS names.
    let mut params =
        CertificateParams::new(names.to_vec()).map_err(generate("the server certificate"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Airlock gateway");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, now - BACKDATE, now + validity);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(generate("the server key"))?;
    let cert = params
        .signed_by(&key, &ca.issuer)
        .map_err(generate("the server certificate"))?;
    Ok((cert, key))
}

/// RFC 5929 `tls-server-end-point` channel binding data: the hash of the
/// leaf certificate's DER, with SHA-256 when the certificate's signature uses
/// MD5, SHA-1 or SHA-256, and with the signature's own hash for SHA-384 and
/// SHA-512. `None` when the hash is not determined that way (RSASSA-PSS,
/// Ed25519, unparsable DER): PostgreSQL refuses channel binding for such
/// certificates too, so the gateway should then not offer SCRAM-SHA-256-PLUS.
pub fn tls_server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    let oid = der::signature_algorithm_oid(cert_der)?;
    let hash = SIGNATURE_HASHES.iter().find(|(known, _)| *known == oid)?.1;
    Some(match hash {
        EndPointHash::Sha256 => sha2::Sha256::digest(cert_der).to_vec(),
        EndPointHash::Sha384 => sha2::Sha384::digest(cert_der).to_vec(),
        EndPointHash::Sha512 => sha2::Sha512::digest(cert_der).to_vec(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndPointHash {
    Sha256,
    Sha384,
    Sha512,
}

/// Signature algorithm OIDs (DER content bytes) and the channel binding hash
/// RFC 5929 section 4.1 prescribes for them.
const SIGNATURE_HASHES: &[(&[u8], EndPointHash)] = &[
    // md5WithRSAEncryption 1.2.840.113549.1.1.4
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04],
        EndPointHash::Sha256,
    ),
    // sha1WithRSAEncryption 1.2.840.113549.1.1.5
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05],
        EndPointHash::Sha256,
    ),
    // sha256WithRSAEncryption 1.2.840.113549.1.1.11
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
        EndPointHash::Sha256,
    ),
    // sha384WithRSAEncryption 1.2.840.113549.1.1.12
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
        EndPointHash::Sha384,
    ),
    // sha512WithRSAEncryption 1.2.840.113549.1.1.13
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
        EndPointHash::Sha512,
    ),
    // ecdsa-with-SHA1 1.2.840.10045.4.1
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01],
        EndPointHash::Sha256,
    ),
    // ecdsa-with-SHA256 1.2.840.10045.4.3.2
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],
        EndPointHash::Sha256,
    ),
    // ecdsa-with-SHA384 1.2.840.10045.4.3.3
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
        EndPointHash::Sha384,
    ),
    // ecdsa-with-SHA512 1.2.840.10045.4.3.4
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
        EndPointHash::Sha512,
    ),
];

/// The gateway's client configuration towards an upstream database, with
/// libpq's `sslmode` semantics:
/// - `verify = true` (`verify-full`): the chain must lead to a certificate in
///   `ca_file` (PEM, one or more) or, without it, to a system root; and the
///   certificate must name the host.
/// - `verify = false` (`require`, `prefer`): encrypted, certificate not
///   checked, except that with a `ca_file` the chain is checked and the host
///   name is not (`verify-ca`), as libpq does for `require` when a root
///   certificate file exists.
pub fn upstream_client_config(
    verify: bool,
    ca_file: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config {
            what: "upstream client configuration",
            source,
        })?;
    let mut config = match (verify, ca_file) {
        (true, _) => builder
            .with_root_certificates(root_store(ca_file)?)
            .with_no_client_auth(),
        (false, Some(_)) => {
            let inner = WebPkiServerVerifier::builder_with_provider(
                Arc::new(root_store(ca_file)?),
                provider.clone(),
            )
            .build()
            .map_err(|e| TlsError::Config {
                what: "upstream certificate verifier",
                source: rustls::Error::General(e.to_string()),
            })?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
                .with_no_client_auth()
        }
        (false, None) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
    };
    // libpq 17 offers it too; servers that do not know ALPN ignore it.
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(Arc::new(config))
}

fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = read_cert_chain(path)?;
            let (added, ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TlsError::NoTrustAnchors {
                    path: path.to_path_buf(),
                    detail: format!("{ignored} certificate(s) could not be parsed"),
                });
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                let detail = if native.errors.is_empty() {
                    "none found".to_string()
                } else {
                    native
                        .errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                return Err(TlsError::NoSystemRoots { detail });
            }
        }
    }
    Ok(roots)
}

/// `sslmode=require`: any certificate is accepted, because libpq accepts any
/// and operators rely on that for databases with self-signed certificates.
/// The handshake signatures are still verified: they prove the server holds
/// the key of the certificate it sent, so the certificate hash used for
/// channel binding really belongs to this connection, and rustls' handshake
/// is never run with a verifier that approves forged transcripts.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the full WebPKI check except the host name. rustls
/// checks the name last, so a name error means the chain was already good.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn read_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, "certificate", "CERTIFICATE", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, "certificate", "CERTIFICATE", e))?;
    if certs.is_empty() {
        return Err(pem_error(
            path,
            "certificate",
            "CERTIFICATE",
            rustls_pki_types::pem::Error::NoItemsFound,
        ));
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, "private key", "PRIVATE KEY", e))
}

fn pem_error(
    path: &Path,
    what: &'static str,
    label: &'static str,
    e: rustls_pki_types::pem::Error,
) -> TlsError {
    match e {
        rustls_pki_types::pem::Error::Io(source) => TlsError::Read {
            path: path.to_path_buf(),
            source,
        },
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Pem {
            path: path.to_path_buf(),
            what,
            label,
            detail: "none found".into(),
        },
        other => TlsError::Pem {
            path: path.to_path_buf(),
            what,
            label,
            detail: other.to_string(),
        },
    }
}

/// Writes through a temporary file and a rename, so a crash never leaves a
/// truncated key or certificate; the mode is set at creation, so a key is
/// never readable by others, not even for a moment.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let write_err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(write_err)?;
    file.write_all(contents).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    // The umask may have removed bits from `mode` (0644 under umask 077).
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(write_err)?;
    fs::rename(&tmp, path).map_err(write_err)
}

fn now() -> SystemTime {
    SystemTime::now()
}

/// Sets a certificate's validity. rcgen takes `time::OffsetDateTime`; it is
/// built from rcgen's own constructor plus a `std` duration, so this crate
/// does not need the `time` crate itself.
fn set_validity(params: &mut CertificateParams, from: SystemTime, until: SystemTime) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + from.duration_since(UNIX_EPOCH).unwrap_or_default();
    params.not_after = epoch + until.duration_since(UNIX_EPOCH).unwrap_or_default();
}

/// Just enough DER to read the two fields this module needs from a
/// certificate. Every function returns `None` on anything unexpected.
mod der {
    use rcgen::DnValue;

    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID: u8 = 0x06;
    const INTEGER: u8 = 0x02;
    const VERSION: u8 = 0xa0;
    const UTF8_STRING: u8 = 0x0c;
    const PRINTABLE_STRING: u8 = 0x13;
    /// id-at-commonName 2.5.4.3
    const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

    /// Splits one TLV off `input`: (tag, value, rest).
    fn next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // multi-byte tags never occur in these fields
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let (len_bytes, rest) = rest.split_at(n);
            (
                len_bytes
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
                rest,
            )
        };
        if rest.len() < len {
            return None;
        }
        let (value, rest) = rest.split_at(len);
        Some((tag, value, rest))
    }

    fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (found, value, rest) = next(input)?;
        (found == tag).then_some((value, rest))
    }

    /// Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
    /// → the algorithm's OID content bytes.
    pub fn signature_algorithm_oid(cert: &[u8]) -> Option<&[u8]> {
        let (cert, _) = expect(cert, SEQUENCE)?;
        let (_tbs, rest) = expect(cert, SEQUENCE)?;
        let (algorithm, _) = expect(rest, SEQUENCE)?;
        let (oid, _) = expect(algorithm, OID)?;
        Some(oid)
    }

    /// The subject's common name when the subject is exactly one CN (UTF8String
    /// or PrintableString), as in the CAs this module creates.
    pub fn subject_common_name(cert: &[u8]) -> Option<DnValue> {
        let (cert, _) = expect(cert, SEQUENCE)?;
        let (tbs, _) = expect(cert, SEQUENCE)?;
        let mut rest = tbs;
        if rest.first() == Some(&VERSION) {
            rest = next(rest)?.2;
        }
        let (_serial, rest) = expect(rest, INTEGER)?;
        let (_signature, rest) = expect(rest, SEQUENCE)?;
        let (_issuer, rest) = expect(rest, SEQUENCE)?;
        let (_validity, rest) = expect(rest, SEQUENCE)?;
        let (subject, _) = expect(rest, SEQUENCE)?;
        let (rdn, after) = expect(subject, SET)?;
        let (attribute, after_attribute) = expect(rdn, SEQUENCE)?;
        if !after.is_empty() || !after_attribute.is_empty() {
            return None;
        }
        let (oid, value) = expect(attribute, OID)?;
        if oid != COMMON_NAME {
            return None;
        }
        let (tag, value, trailing) = next(value)?;
        if !trailing.is_empty() {
            return None;
        }
        let text = String::from_utf8(value.to_vec()).ok()?;
        match tag {
            UTF8_STRING => Some(DnValue::Utf8String(text)),
            PRINTABLE_STRING => Some(DnValue::PrintableString(text.try_into().ok()?)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn read(dir: &Path, name: &str) -> Vec<u8> {
        fs::read(dir.join("tls").join(name)).unwrap()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// Verifies `leaf` against the CA stored in `dir` for `name`, now.
    fn verifies_for(dir: &Path, leaf: &[u8], name: &str) -> bool {
        let crt_path = dir.join("tls/ca.crt");
        let ca = load_ca(&dir.join("tls"), &crt_path, &dir.join("tls/ca.key")).unwrap();
        check_chain(
            &ca,
            &CertificateDer::from(leaf.to_vec()),
            now(),
            &names(&[name]),
        )
        .is_ok()
    }

    /// One TLS session over an in-memory pipe; returns the negotiated ALPN.
    async fn handshake(
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> Result<Option<Vec<u8>>, io::Error> {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let server_task = tokio::spawn(async move {
            let mut tls = acceptor.accept(server_io).await?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await?;
            tls.write_all(&buf).await?;
            tls.flush().await?;
            Ok::<_, io::Error>(())
        });
        let connector = tokio_rustls::TlsConnector::from(client);
        let name = ServerName::try_from(server_name.to_string()).unwrap();
        let mut tls = connector.connect(name, client_io).await?;
        tls.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        server_task.await.unwrap()?;
        Ok(alpn)
    }

    #[test]
    fn generation_creates_files_with_the_right_modes() {
        let dir = tempfile::tempdir().unwrap();
        let tls = load_or_generate(dir.path(), None, None, &[]).unwrap();
        let tls_dir = dir.path().join("tls");
        for (file, want) in [
            ("ca.crt", 0o644),
            ("ca.key", 0o600),
            ("server.crt", 0o644),
            ("server.key", 0o600),
        ] {
            assert_eq!(mode(&tls_dir.join(file)), want, "{file}");
        }
        assert_eq!(
            tls.ca_file.as_deref(),
            Some(tls_dir.join("ca.crt").as_path())
        );
        let server_crt = CertificateDer::from_pem_file(tls_dir.join("server.crt")).unwrap();
        assert_eq!(tls.cert_der, server_crt.as_ref());
        assert!(!tls_dir.join("server.crt.tmp").exists());
        let ca = CertificateDer::from_pem_file(tls_dir.join("ca.crt")).unwrap();
        match der::subject_common_name(&ca) {
            Some(DnValue::Utf8String(cn)) => assert!(cn.starts_with("Airlock local CA "), "{cn}"),
            other => panic!("unexpected CA subject {other:?}"),
        }
        for name in DEFAULT_NAMES {
            assert!(verifies_for(dir.path(), &tls.cert_der, name), "{name}");
        }
        assert!(!verifies_for(dir.path(), &tls.cert_der, "example.com"));
    }

    #[test]
    fn a_second_start_reuses_the_ca_and_the_server_cert() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_generate(dir.path(), None, None, &names(&["db.example.com"])).unwrap();
        let files = ["ca.crt", "ca.key", "server.crt", "server.key"].map(|f| read(dir.path(), f));
        let second = load_or_generate(dir.path(), None, None, &names(&["DB.example.com"])).unwrap();
        assert_eq!(first.cert_der, second.cert_der);
        assert_eq!(
            files,
            ["ca.crt", "ca.key", "server.crt", "server.key"].map(|f| read(dir.path(), f))
        );
        // Fewer names than the certificate holds is no reason to re-issue.
        let third = load_or_generate(dir.path(), None, None, &[]).unwrap();
        assert_eq!(first.cert_der, third.cert_der);
    }

    #[test]
    fn a_new_hostname_reissues_the_server_cert_from_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_generate(dir.path(), None, None, &[]).unwrap();
        let ca_before = (read(dir.path(), "ca.crt"), read(dir.path(), "ca.key"));
        let wanted = names(&["airlock.internal", "10.1.2.3", "fd00::7"]);
        let second = load_or_generate(dir.path(), None, None, &wanted).unwrap();
        assert_ne!(first.cert_der, second.cert_der);
        assert_eq!(
            ca_before,
            (read(dir.path(), "ca.crt"), read(dir.path(), "ca.key"))
        );
        for name in wanted.iter().map(String::as_str).chain(DEFAULT_NAMES) {
            assert!(verifies_for(dir.path(), &second.cert_der, name), "{name}");
        }
        assert_eq!(mode(&dir.path().join("tls/server.key")), 0o600);
    }

    #[test]
    fn an_expiring_or_mismatched_server_cert_is_reissued() {
        let dir = tempfile::tempdir().unwrap();
        let tls_dir = dir.path().join("tls");
        load_or_generate(dir.path(), None, None, &[]).unwrap();
        let ca = load_ca(&tls_dir, &tls_dir.join("ca.crt"), &tls_dir.join("ca.key")).unwrap();

        // Valid for ten more days only.
        let all = wanted_names(&[]).unwrap();
        let (cert, key) =
            issue_server_cert(&ca, &all, now(), Duration::from_secs(10 * 24 * 3600)).unwrap();
        write_atomic(&tls_dir.join("server.crt"), cert.pem().as_bytes(), 0o644).unwrap();
        write_atomic(
            &tls_dir.join("server.key"),
            key.serialize_pem().as_bytes(),
            0o600,
        )
        .unwrap();
        let renewed = load_or_generate(dir.path(), None, None, &[]).unwrap();
        assert_ne!(renewed.cert_der, cert.der().as_ref());

        // A key that does not belong to the certificate (e.g. a crash between writes).
        let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        write_atomic(
            &tls_dir.join("server.key"),
            other.serialize_pem().as_bytes(),
            0o600,
        )
        .unwrap();
        let fixed = load_or_generate(dir.path(), None, None, &[]).unwrap();
        assert_ne!(fixed.cert_der, renewed.cert_der);
        assert!(verifies_for(dir.path(), &fixed.cert_der, "localhost"));
    }

    #[tokio::test]
    async fn a_client_trusting_ca_crt_completes_a_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let tls = load_or_generate(dir.path(), None, None, &[]).unwrap();
        let ca_file = tls.ca_file.clone().unwrap();

        // verify-full with the generated CA, with ALPN (libpq 17) ...
        let client = upstream_client_config(true, Some(&ca_file)).unwrap();
        let alpn = handshake(tls.server_config.clone(), client.clone(), "localhost")
            .await
            .unwrap();
        assert_eq!(alpn.as_deref(), Some(ALPN_POSTGRESQL));
        let ip = handshake(tls.server_config.clone(), client.clone(), "127.0.0.1").await;
        assert!(ip.is_ok(), "{ip:?}");

        // ... and without ALPN (older clients): not required.
        let mut no_alpn = (*client).clone();
        no_alpn.alpn_protocols.clear();
        let alpn = handshake(tls.server_config.clone(), Arc::new(no_alpn), "localhost")
            .await
            .unwrap();
        assert_eq!(alpn, None);

        // verify-full refuses a name the certificate does not carry.
        let err = handshake(tls.server_config.clone(), client, "db.example.com")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not valid for name"), "{err}");
    }

    #[tokio::test]
    async fn upstream_modes_follow_libpq() {
        let dir = tempfile::tempdir().unwrap();
        let tls = load_or_generate(dir.path(), None, None, &[]).unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let other_ca = load_or_generate(other_dir.path(), None, None, &[])
            .unwrap()
            .ca_file
            .unwrap();
        let own_ca = tls.ca_file.clone().unwrap();
        let server = || tls.server_config.clone();

        // (verify, ca_file, server name, handshake succeeds)
        let cases: &[(bool, Option<&Path>, &str, bool)] = &[
            (false, None, "db.example.com", true), // require: anything goes
            (false, Some(&own_ca), "db.example.com", true), // verify-ca: chain only
            (false, Some(&other_ca), "localhost", false), // verify-ca: wrong CA
            (true, Some(&other_ca), "localhost", false), // verify-full: wrong CA
            (true, Some(&own_ca), "localhost", true),
        ];
        for (verify, ca_file, name, ok) in cases {
            let client = upstream_client_config(*verify, *ca_file).unwrap();
            let result = handshake(server(), client, name).await;
            assert_eq!(
                result.is_ok(),
                *ok,
                "verify={verify} ca={ca_file:?} name={name}: {result:?}"
            );
        }
    }

    #[test]
    fn system_roots_load_for_verify_full_without_a_ca_file() {
        // The machine has ca-certificates; if it did not, the error must say so.
        match upstream_client_config(true, None) {
            Ok(_) => {}
            Err(e) => assert!(e.to_string().contains("ca-certificates"), "{e}"),
        }
    }

    #[test]
    fn operator_files_are_served_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let generated = load_or_generate(dir.path(), None, None, &[]).unwrap();
        let tls_dir = dir.path().join("tls");
        let elsewhere = tempfile::tempdir().unwrap();
        let tls = load_or_generate(
            elsewhere.path(),
            Some(&tls_dir.join("server.crt")),
            Some(&tls_dir.join("server.key")),
            &[],
        )
        .unwrap();
        assert_eq!(tls.ca_file, None);
        assert_eq!(tls.cert_der, generated.cert_der);
        assert!(!elsewhere.path().join("tls").exists());

        // A key from another pair is refused with both file names.
        let err = load_or_generate(
            elsewhere.path(),
            Some(&tls_dir.join("server.crt")),
            Some(&tls_dir.join("ca.key")),
            &[],
        )
        .unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        assert!(
            err.to_string().contains("ca.key") && err.to_string().contains("server.crt"),
            "{err}"
        );
    }

    #[test]
    fn bad_inputs_give_errors_that_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let garbage = dir.path().join("garbage.pem");
        fs::write(&garbage, "this is not PEM\n").unwrap();
        let key_only = dir.path().join("key.pem");
        fs::write(&key_only, KeyPair::generate().unwrap().serialize_pem()).unwrap();

        let cases: &[(Option<&Path>, Option<&Path>, &str)] = &[
            (Some(&missing), Some(&key_only), "missing.pem"),
            (Some(&garbage), Some(&key_only), "garbage.pem"),
            (Some(&key_only), Some(&key_only), "CERTIFICATE"),
            (Some(&garbage), None, "without a TLS key"),
            (None, Some(&key_only), "without a TLS certificate"),
        ];
        for (cert, key, want) in cases {
            let err = load_or_generate(dir.path(), *cert, *key, &[]).unwrap_err();
            assert!(err.to_string().contains(want), "{cert:?} {key:?}: {err}");
        }
        let err = upstream_client_config(true, Some(&garbage)).unwrap_err();
        assert!(err.to_string().contains("garbage.pem"), "{err}");
        let err = load_or_generate(dir.path(), None, None, &names(&["bad name!"])).unwrap_err();
        assert!(matches!(err, TlsError::BadHostname { .. }), "{err}");
    }

    #[test]
    fn a_lost_ca_key_is_an_error_not_a_new_ca() {
        let dir = tempfile::tempdir().unwrap();
        load_or_generate(dir.path(), None, None, &[]).unwrap();
        let ca_crt = read(dir.path(), "ca.crt");
        fs::remove_file(dir.path().join("tls/ca.key")).unwrap();
        let err = load_or_generate(dir.path(), None, None, &[]).unwrap_err();
        assert!(matches!(err, TlsError::PartialCa { .. }), "{err}");
        assert!(err.to_string().contains("ca.key"), "{err}");
        assert_eq!(read(dir.path(), "ca.crt"), ca_crt);
    }

    #[test]
    fn tls_server_end_point_of_the_generated_cert_is_its_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let tls = load_or_generate(dir.path(), None, None, &[]).unwrap();
        let hash = tls_server_end_point(&tls.cert_der).unwrap();
        assert_eq!(hash.len(), 32);
        assert_eq!(hash, sha2::Sha256::digest(&tls.cert_der).to_vec());
    }

    /// A skeleton certificate: SEQUENCE { SEQUENCE {}, SEQUENCE { OID }, BIT STRING }.
    fn skeleton_cert(oid: &[u8]) -> Vec<u8> {
        let mut algorithm = vec![0x30, (oid.len() + 2) as u8, 0x06, oid.len() as u8];
        algorithm.extend_from_slice(oid);
        let mut body = vec![0x30, 0x00];
        body.extend_from_slice(&algorithm);
        body.extend_from_slice(&[0x03, 0x01, 0x00]);
        let mut cert = vec![0x30, body.len() as u8];
        cert.extend_from_slice(&body);
        cert
    }

    #[test]
    fn tls_server_end_point_hash_follows_the_signature_algorithm() {
        let rsa_pss: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
        let ed25519: &[u8] = &[0x2b, 0x65, 0x70];
        let cases: &[(&[u8], Option<usize>)] = &[
            (SIGNATURE_HASHES[0].0, Some(32)), // md5WithRSA
            (SIGNATURE_HASHES[1].0, Some(32)), // sha1WithRSA
            (SIGNATURE_HASHES[2].0, Some(32)), // sha256WithRSA
            (SIGNATURE_HASHES[3].0, Some(48)), // sha384WithRSA
            (SIGNATURE_HASHES[4].0, Some(64)), // sha512WithRSA
            (SIGNATURE_HASHES[5].0, Some(32)), // ecdsa-with-SHA1
            (SIGNATURE_HASHES[6].0, Some(32)), // ecdsa-with-SHA256
            (SIGNATURE_HASHES[7].0, Some(48)), // ecdsa-with-SHA384
            (SIGNATURE_HASHES[8].0, Some(64)), // ecdsa-with-SHA512
            (rsa_pss, None),
            (ed25519, None),
        ];
        for (oid, want) in cases {
            let got = tls_server_end_point(&skeleton_cert(oid)).map(|h| h.len());
            assert_eq!(got, *want, "{oid:02x?}");
        }
        for garbage in [
            &b""[..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x04, 0x00],
        ] {
            assert_eq!(tls_server_end_point(garbage), None, "{garbage:02x?}");
        }
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let dir = tempfile::tempdir().unwrap();
        let tls = load_or_generate(dir.path(), None, None, &[]).unwrap();
        let debug = format!("{tls:?}");
        assert!(debug.contains("ca_file"), "{debug}");
        assert!(!debug.contains("PRIVATE"), "{debug}");
    }
}
