//! A Rust client for the statemanager HTTP API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), statemanager_client::Error> {
//! use statemanager_client::{Client, ClientOptions};
//! let client = Client::new(ClientOptions::new("http://127.0.0.1:8184"))?;
//! client.store("PLUGIN#check_x", "last", "42", 3600, None).await?;
//! let item = client.fetch("PLUGIN#check_x", "last").await?;
//! assert_eq!(item.map(|i| i.data).as_deref(), Some("42"));
//! # Ok(()) }
//! ```
//!
//! Every server error arrives as [`Error::Server`] with the HTTP status and the API's stable
//! error `code` (see `docs/api.md`); [`Error::Transport`] means the request may not have
//! reached the server (or its answer was lost: a store's outcome is then unknown).
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
pub use statemanager_proto::{
    FetchDataResponse, ListResponse, ListedKey, ReadyResponse, StoreDataRequest, StoreDataResponse,
};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error.
    #[error("{message} ({status} {code})")]
    Server {
        /// HTTP status.
        status: u16,
        /// The API's error code, e.g. `conflict`, `not_found`, `no_quorum`.
        code: String,
        /// The server's explanation.
        message: String,
        /// For `conflict`: the timestamp of the item that is kept.
        stored_timestamp: Option<f64>,
    },
    /// The server could not be reached, or the connection failed mid-request.
    #[error("cannot reach {server}: {detail}")]
    Transport {
        /// The server address.
        server: String,
        /// What failed.
        detail: String,
    },
    /// The server's answer was not what the API promises.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// Bad client settings (certificate files, URL).
    #[error("{0}")]
    Config(String),
    /// A local file could not be written.
    #[error("{0}")]
    Io(String),
}

impl Error {
    /// The API error code, for server errors.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// How to reach a server.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `http://host:port` or `https://host:port`.
    pub server: String,
    /// Whole-request timeout (default 30 s; backups get no overall timeout).
    pub timeout: Duration,
    /// PEM CA certificate(s) to trust for HTTPS instead of the system's roots.
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate, for servers that require one (with `client_key`).
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// The cluster secret, sent as `Authorization: Bearer` (admin endpoints).
    pub secret: Option<String>,
}

impl ClientOptions {
    /// Options for `server` with the defaults.
    pub fn new(server: &str) -> Self {
        ClientOptions {
            server: server.trim_end_matches('/').to_string(),
            timeout: Duration::from_secs(30),
            ca_cert: None,
            client_cert: None,
            client_key: None,
            secret: None,
        }
    }
}

/// A client for one server. Cheap to clone; connections are kept alive.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    server: String,
    timeout: Duration,
    secret: Option<String>,
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| Error::Config(format!("cannot read {what} {}: {e}", path.display())))
}

impl Client {
    /// A client with `options`.
    pub fn new(options: ClientOptions) -> Result<Self, Error> {
        // reqwest is built without a default crypto provider; the workspace uses ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        if !options.server.starts_with("http://") && !options.server.starts_with("https://") {
            return Err(Error::Config(format!(
                "server '{}' must start with http:// or https://",
                options.server
            )));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(ca) = &options.ca_cert {
            let pem = read_file(ca, "CA certificate")?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::Config(format!("bad CA certificate {}: {e}", ca.display())))?;
            builder = builder.tls_certs_only(certs);
        }
        match (&options.client_cert, &options.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = read_file(cert, "client certificate")?;
                pem.push(b'\n');
                pem.extend(read_file(key, "client key")?);
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| Error::Config(format!("bad client certificate or key: {e}")))?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => {
                return Err(Error::Config(
                    "a client certificate needs both the certificate and its key".into(),
                ))
            }
        }
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            http,
            server: options.server,
            timeout: options.timeout,
            secret: options.secret,
        })
    }

    /// The server this client talks to.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.server));
        match &self.secret {
            Some(secret) => builder.bearer_auth(secret),
            None => builder,
        }
    }

    fn transport(&self, e: reqwest::Error) -> Error {
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail = format!("{detail}: {s}");
            source = s.source();
        }
        Error::Transport {
            server: self.server.clone(),
            detail,
        }
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
        let response = builder.send().await.map_err(|e| self.transport(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| self.transport(e))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let error = &body["error"];
        Err(Error::Server {
            status,
            code: error["code"].as_str().unwrap_or("unknown").to_string(),
            message: error["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {status}: {}", text.trim())),
            stored_timestamp: error["stored_timestamp"].as_f64(),
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> Result<T, Error> {
        let response = self.send(builder.timeout(self.timeout)).await?;
        let text = response.text().await.map_err(|e| self.transport(e))?;
        serde_json::from_str(&text).map_err(|e| Error::Protocol(format!("{e}: {text}")))
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, Error> {
        self.call(self.request(reqwest::Method::POST, path).json(body))
            .await
    }

    /// Stores `data` under `namespace`/`key` for `ttl` seconds; `timestamp` (Unix seconds)
    /// defaults to the server's clock. Returns once the item is durable.
    pub async fn store(
        &self,
        namespace: &str,
        key: &str,
        data: &str,
        ttl: u64,
        timestamp: Option<f64>,
    ) -> Result<StoreDataResponse, Error> {
        let request = StoreDataRequest {
            namespace: namespace.into(),
            key: key.into(),
            data: data.into(),
            ttl,
            timestamp,
        };
        let body = serde_json::to_value(&request).map_err(|e| Error::Protocol(e.to_string()))?;
        self.post("/store_data", &body).await
    }

    /// The item, or `None` when it was never stored or has expired.
    pub async fn fetch(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<FetchDataResponse>, Error> {
        let body = json!({"namespace": namespace, "key": key});
        match self.post("/fetch_data", &body).await {
            Ok(item) => Ok(Some(item)),
            Err(Error::Server { code, .. }) if code == "not_found" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes the item; `false` when there was nothing to delete.
    pub async fn delete(&self, namespace: &str, key: &str) -> Result<bool, Error> {
        let body = json!({"namespace": namespace, "key": key});
        match self.post::<Value>("/delete_data", &body).await {
            Ok(_) => Ok(true),
            Err(Error::Server { code, .. }) if code == "not_found" => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The live keys of `namespace` (admin endpoint), at most `limit` (server default 1000).
    pub async fn list(&self, namespace: &str, limit: Option<usize>) -> Result<ListResponse, Error> {
        let mut body = json!({"namespace": namespace});
        if let Some(limit) = limit {
            body["limit"] = json!(limit);
        }
        self.post("/admin/list", &body).await
    }

    /// Any request: the status and the JSON answer (`Null` when the body is not JSON),
    /// whatever the status. For admin tools that interpret statuses themselves.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Error> {
        let mut builder = self.request(method, path).timeout(self.timeout);
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let response = builder.send().await.map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| self.transport(e))?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// `GET /status`.
    pub async fn status(&self) -> Result<Value, Error> {
        self.call(self.request(reqwest::Method::GET, "/status"))
            .await
    }

    /// `GET /ready` (a 503 answer is `ready: false`, not an error).
    pub async fn ready(&self) -> Result<ReadyResponse, Error> {
        let response = self
            .request(reqwest::Method::GET, "/ready")
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let text = response.text().await.map_err(|e| self.transport(e))?;
        serde_json::from_str(&text).map_err(|e| Error::Protocol(format!("{e}: {text}")))
    }

    /// Downloads a backup (admin endpoint) into `path`, created anew and fsync'd; returns the
    /// bytes written. The caller verifies the file before trusting it.
    pub async fn download_backup(&self, path: &Path) -> Result<u64, Error> {
        use tokio::io::AsyncWriteExt;
        let mut response = self
            .send(self.request(reqwest::Method::GET, "/admin/backup"))
            .await?;
        let io = |e: std::io::Error| Error::Io(format!("writing {}: {e}", path.display()));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .await
            .map_err(io)?;
        let mut written = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(e))? {
            file.write_all(&chunk).await.map_err(io)?;
            written += chunk.len() as u64;
        }
        file.sync_all().await.map_err(io)?;
        Ok(written)
    }
}
