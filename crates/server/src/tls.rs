//! HTTPS: building the rustls server configuration from the Cache Manager's `tls` settings.
//!
//! Certificates are PEM files. With `check_client_cert: true`, clients must present a
//! certificate signed by `ca_cert`. The configuration is built again on SIGHUP; new
//! connections use the new certificates, open ones keep theirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
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

/// Why the TLS configuration cannot be built: each names the setting and the file. The
/// message does not repeat the source; print it with its source chain
/// ([`statemanager_core::error_chain::Chain`], or `{:#}` through `anyhow`).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A setting another one needs is missing.
    #[error("{by} needs {setting}")]
    Missing {
        /// The setting that needs it (`tls_enabled`, `tls.check_client_cert`).
        by: &'static str,
        /// The missing setting.
        setting: &'static str,
    },
    /// A certificate file cannot be read.
    #[error("cannot read {what} {}", path.display())]
    ReadCertificates {
        /// The setting naming the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: pem::Error,
    },
    /// A certificate file is not PEM.
    #[error("{what} {} is not valid PEM", path.display())]
    NotPem {
        /// The setting naming the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: pem::Error,
    },
    /// A certificate file without a certificate.
    #[error("{what} {} holds no certificate", path.display())]
    NoCertificate {
        /// The setting naming the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no usable private key.
    #[error("tls.key_file {} holds no usable private key", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: pem::Error,
    },
    /// A CA certificate rustls does not accept as a root.
    #[error("tls.ca_cert {}", path.display())]
    CaCertificate {
        /// The file.
        path: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
    /// No client-certificate verifier can be built from the CA certificates.
    #[error("tls.ca_cert {}", path.display())]
    ClientVerifier {
        /// The file.
        path: PathBuf,
        /// rustls's reason.
        #[source]
        source: VerifierBuilderError,
    },
    /// The certificate chain and the key do not match (or are unusable together).
    #[error(
        "tls.cert_file {} and tls.key_file {} do not form a usable pair",
        cert_file.display(),
        key_file.display()
    )]
    Pair {
        /// The certificate chain.
        cert_file: PathBuf,
        /// The key.
        key_file: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
}

fn certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|source| TlsError::ReadCertificates {
            what,
            path: path.into(),
            source,
        })?
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::NotPem {
            what,
            path: path.into(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.into(),
        });
    }
    Ok(certs)
}

/// Installs ring as rustls's process-wide crypto provider (once; later calls are no-ops).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the server configuration, or says precisely which file is wrong.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    install_crypto_provider();
    let cert_file = settings.cert_file.as_deref().ok_or(TlsError::Missing {
        by: "tls_enabled",
        setting: "tls.cert_file",
    })?;
    let key_file = settings.key_file.as_deref().ok_or(TlsError::Missing {
        by: "tls_enabled",
        setting: "tls.key_file",
    })?;
    let chain = certs(cert_file, "tls.cert_file")?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|source| TlsError::Key {
        path: key_file.into(),
        source,
    })?;
    let builder = ServerConfig::builder();
    let builder = if settings.check_client_cert {
        let ca = settings.ca_cert.as_deref().ok_or(TlsError::Missing {
            by: "tls.check_client_cert",
            setting: "tls.ca_cert",
        })?;
        let mut roots = RootCertStore::empty();
        for cert in certs(ca, "tls.ca_cert")? {
            roots.add(cert).map_err(|source| TlsError::CaCertificate {
                path: ca.into(),
                source,
            })?;
        }
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .map_err(|source| TlsError::ClientVerifier {
                path: ca.into(),
                source,
            })?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Pair {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
