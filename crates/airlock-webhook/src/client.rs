//! The one HTTP client all targets share: rustls with the `ring` provider,
//! the platform's roots plus an optional extra CA, no redirects.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::{Error, Options};

/// `User-Agent` of every delivery.
pub const USER_AGENT: &str = concat!("airlock-webhook/", env!("CARGO_PKG_VERSION"));

/// The TLS configuration for receivers, built the way `airlock`'s client
/// builds its own: native roots (unreadable ones are skipped, as the
/// platform may hold a few), plus every certificate of `extra_ca`.
pub(crate) fn tls_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path).map_err(|source| Error::ReadCa {
            path: path.to_owned(),
            source,
        })?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| Error::BadCa {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            roots.add(cert).map_err(|e| Error::BadCa {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(Error::NoCa {
                path: path.to_owned(),
            });
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

pub(crate) fn http_client(options: &Options) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        // One deadline for the whole exchange (connect, TLS, request, response
        // head), so a receiver that accepts and then says nothing costs one
        // `request_timeout`, not a stuck worker.
        .timeout(options.request_timeout)
        .connect_timeout(options.request_timeout)
        // A 3xx is a permanent failure: following it would send the signed
        // body (and the event) to a URL nobody configured.
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(tls_config(options.extra_ca_pem.as_deref())?)
        .build()
        .map_err(Error::Client)
}
