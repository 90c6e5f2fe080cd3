//! How a node proves itself to its peers and checks them: [`PeerCredentials`] (the cluster
//! secret, see [`super::auth`], and mutual TLS, [`PeerTls`]).

use std::path::PathBuf;

use super::auth::ClusterSecret;

/// Mutual TLS on the peer port: this node's certificate and key, and the cluster's CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTls {
    /// This node's certificate chain (PEM), signed by `ca_cert`; presented as server and as
    /// client.
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// The cluster's CA (PEM): peers must present certificates it signed.
    pub ca_cert: PathBuf,
}

/// How a node proves itself to its peers (and checks them): a shared secret, mutual TLS,
/// both, or neither (a trusted network only; see `docs/security.md`).
#[derive(Debug, Clone, Default)]
pub struct PeerCredentials {
    /// Sent as `Authorization: Bearer` with every peer request, required on every one.
    pub secret: Option<ClusterSecret>,
    /// HTTPS with client certificates on the peer port.
    pub tls: Option<PeerTls>,
}

impl PeerCredentials {
    /// `https` with peer TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// Why the peer TLS files could not be used (at start-up, or on a reload: then the current
/// configuration stays).
#[derive(Debug, thiserror::Error)]
pub enum PeerTlsError {
    /// A file could not be read.
    #[error("cannot read peer_tls.{what} {}: {source}", path.display())]
    Read {
        /// Which setting names the file (`ca_cert`, `cert_file`, `key_file`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file's content is unusable (not PEM, a bad certificate or key).
    #[error("peer_tls.{what} {}: {source}", path.display())]
    Invalid {
        /// Which setting names the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A certificate file holds no certificate.
    #[error("peer_tls.{what} {} holds no certificate", path.display())]
    NoCertificate {
        /// Which setting names the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The certificate and the key do not make an identity.
    #[error("peer_tls.cert_file/key_file: {source}")]
    Identity {
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the peer HTTP client: {source}")]
    Client {
        /// Why.
        source: reqwest::Error,
    },
}

impl PeerTlsError {
    /// An unusable file's error.
    pub(crate) fn invalid(
        what: &'static str,
        path: &std::path::Path,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        PeerTlsError::Invalid {
            what,
            path: path.to_path_buf(),
            source: Box::new(source),
        }
    }
}
