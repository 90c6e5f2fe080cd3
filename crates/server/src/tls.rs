//! HTTPS: building the rustls server configuration from the Cache Manager's `tls` settings.
//!
//! Certificates are PEM files. With `check_client_cert: true`, clients must present a
//! certificate signed by `ca_cert`. The configuration is built again on SIGHUP; new
//! connections use the new certificates, open ones keep theirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// The `tls:` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// Server certificate chain (PEM).
    pub cert_file: Option<PathBuf>,
    /// Server private key (PEM).
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM) that sign client certificates.
    pub ca_cert: Option<PathBuf>,
    /// Require a client certificate signed by `ca_cert`.
    pub check_client_cert: bool,
}

fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// Installs ring as rustls's process-wide crypto provider (once; later calls are no-ops).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the server configuration, or says precisely which file is wrong.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, String> {
    install_crypto_provider();
    let cert_file = settings
        .cert_file
        .as_deref()
        .ok_or("tls_enabled needs tls.cert_file")?;
    let key_file = settings
        .key_file
        .as_deref()
        .ok_or("tls_enabled needs tls.key_file")?;
    let chain = certs(cert_file, "tls.cert_file")?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        format!(
            "tls.key_file {} holds no usable private key: {e}",
            key_file.display()
        )
    })?;
    let builder = ServerConfig::builder();
    let builder = if settings.check_client_cert {
        let ca = settings
            .ca_cert
            .as_deref()
            .ok_or("tls.check_client_cert needs tls.ca_cert")?;
        let mut roots = RootCertStore::empty();
        for cert in certs(ca, "tls.ca_cert")? {
            roots
                .add(cert)
                .map_err(|e| format!("tls.ca_cert {}: {e}", ca.display()))?;
        }
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .map_err(|e| format!("tls.ca_cert {}: {e}", ca.display()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "tls.cert_file {} and tls.key_file {} do not form a usable pair: {e}",
            cert_file.display(),
            key_file.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
