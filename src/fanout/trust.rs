//! Which servers an HTTPS upstream believes: the platform's root certificates (or those of
//! `SSL_CERT_FILE` / `SSL_CERT_DIR`, the OpenSSL convention curl, Python and Go follow), plus,
//! per upstream, an extra CA bundle for a private service. Loaded once: the platform roots on
//! the first HTTPS upstream, a CA file when the upstream is made.
//!
//! The crypto provider is rustls' `ring` (see Cargo.toml and docs/fanout.md#https).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, ClientConfig, RootCertStore};

use crate::{Error, Result};

/// The platform's roots, loaded once per process; certificates that do not parse are skipped
/// (and logged), as OpenSSL does with a bundle.
fn platform_roots() -> &'static Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for err in &found.errors {
            crate::log::warn(&format!("root certificates: {err}"));
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        if ignored > 0 {
            crate::log::warn(&format!(
                "root certificates: {ignored} of {} could not be used",
                added + ignored
            ));
        }
        Arc::new(roots)
    })
}

fn config_with(roots: Arc<RootCertStore>) -> Arc<ClientConfig> {
    // Deprecated only as a nudge towards aws-lc-rs (post-quantum key exchange), which needs
    // cmake and does not check for macOS here; ring's classic suites are what curl offers.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // Fails only for a provider without the default versions' cipher suites; ring has them.
        .expect("rustls' ring provider supports the default protocol versions");
    Arc::new(builder.with_root_certificates(roots).with_no_client_auth())
}

/// The TLS client configuration trusting the platform's roots, made once per process.
pub(crate) fn platform() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| config_with(Arc::clone(platform_roots()))))
}

/// The platform's roots plus every certificate of the PEM bundle at `path`. An unreadable or
/// empty bundle is an error naming the file, for a start-up that stops in one line.
pub(crate) fn with_ca_file(path: &Path) -> Result<Arc<ClientConfig>> {
    let shown = path.display();
    let bad = |why: String| Error::bad_request(format!("CA file {shown}: {why}"));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| bad(pem_error(err)))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|err| bad(pem_error(err)))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    let mut roots = (**platform_roots()).clone();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|err| bad(format!("not a usable CA certificate ({err})")))?;
    }
    Ok(config_with(Arc::new(roots)))
}

fn pem_error(err: rustls::pki_types::pem::Error) -> String {
    match err {
        rustls::pki_types::pem::Error::Io(io) => io.to_string().to_lowercase(),
        other => format!("not a PEM file ({other:?})"),
    }
}

/// A failed handshake in words a user acts on; `None` when `err` is not a TLS error.
pub(crate) fn describe(err: &std::io::Error, host: &str) -> Option<String> {
    let tls = err.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => {
                format!("certificate for {host} is signed by an unknown issuer")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("certificate for {host} has expired")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!("certificate for {host} is not valid yet")
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("hostname mismatch: certificate is not valid for {host}")
            }
            CertificateError::Revoked => format!("certificate for {host} is revoked"),
            other => format!("certificate for {host} is not valid ({other:?})"),
        },
        rustls::Error::AlertReceived(alert) => {
            format!("TLS handshake with {host} failed: the server sent {alert:?}")
        }
        other => format!("TLS handshake with {host} failed: {other}"),
    })
}
