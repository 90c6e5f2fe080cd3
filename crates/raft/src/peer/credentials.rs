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
