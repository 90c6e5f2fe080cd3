//! Binding: the listeners and their certificates, before the data directory is touched, so a
//! port in use or a bad certificate is reported first.

use std::net::SocketAddr;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::tls;

/// The bound listeners (each `None` when off).
pub(super) struct Bound {
    /// Plain HTTP, with its address.
    pub http: Option<(TcpListener, SocketAddr)>,
    /// HTTPS, with its address and certificates.
    pub https: Option<(std::net::TcpListener, SocketAddr, RustlsConfig)>,
    /// The peer port, with its address and, under `peer_tls`, its certificates.
    pub peer: Option<(std::net::TcpListener, SocketAddr, Option<RustlsConfig>)>,
    /// The peer port's TLS files (for reloads).
    pub peer_tls_settings: Option<tls::TlsSettings>,
}

impl Bound {
    /// The HTTP address, if on.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(_, a)| *a)
    }

    /// The HTTPS address, if on.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https.as_ref().map(|(_, a, _)| *a)
    }

    /// The peer address, if on.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer.as_ref().map(|(_, a, _)| *a)
    }

    /// One line naming every listener, for the service manager and the log.
    pub fn describe(&self) -> String {
        let show = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_else(|| "off".into());
        format!(
            "serving: http {}, https {}, peer {}",
            show(self.http_addr()),
            show(self.https_addr()),
            show(self.peer_addr()),
        )
    }
}

/// Binds every listener the configuration turns on.
pub(super) async fn bind(config: &Config) -> anyhow::Result<Bound> {
    // Listeners and certificates first: a port in use or a bad certificate is reported
    // before the data directory is touched.
    let http = match config.http_enabled {
        true => {
            let listener = TcpListener::bind((config.host.as_str(), config.port))
                .await
                .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
            let addr = listener.local_addr().context("reading the bound address")?;
            Some((listener, addr))
        }
        false => None,
    };
    let https = match config.tls_enabled {
        true => {
            let server_config = tls::server_config(&config.tls)?;
            let listener = std::net::TcpListener::bind((config.host.as_str(), config.tls_port))
                .with_context(|| format!("cannot listen on {}:{}", config.host, config.tls_port))?;
            listener
                .set_nonblocking(true)
                .context("configuring the HTTPS listener")?;
            let addr = listener.local_addr().context("reading the bound address")?;
            Some((listener, addr, RustlsConfig::from_config(server_config)))
        }
        false => None,
    };
    let peer_tls_settings = config.peer_tls.as_ref().map(|t| tls::TlsSettings {
        cert_file: Some(t.cert_file.clone()),
        key_file: Some(t.key_file.clone()),
        ca_cert: Some(t.ca_cert.clone()),
        check_client_cert: true,
    });
    let peer = match &config.peer_listen {
        Some(addr) => {
            let listener = std::net::TcpListener::bind(addr.as_str())
                .with_context(|| format!("cannot listen on peer_listen {addr}"))?;
            listener
                .set_nonblocking(true)
                .context("configuring the peer listener")?;
            let bound = listener
                .local_addr()
                .context("reading the bound peer address")?;
            let tls = match &peer_tls_settings {
                Some(settings) => Some(RustlsConfig::from_config(
                    tls::server_config(settings).context("peer_tls")?,
                )),
                None => None,
            };
            Some((listener, bound, tls))
        }
        None => None,
    };

    Ok(Bound {
        http,
        https,
        peer,
        peer_tls_settings,
    })
}
