//! The JSON shapes of the State Manager HTTP API, shared by the server and clients.
//!
//! Times are Unix seconds as `f64` (what plugnpy sends and expects); errors are always
//! `{"error":{"code","message",...}}` with a stable snake_case `code`.
#![warn(missing_docs)]

use serde::{Deserialize, Serialize};

/// `POST /store_data` body, as plugnpy sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreDataRequest {
    /// Namespace (plugins: `PLUGIN#<name>`, or a protected-namespace token).
    pub namespace: String,
    /// Key inside the namespace.
    pub key: String,
    /// The data (callers serialise structured data themselves).
    pub data: String,
    /// Time to live in seconds, 1 … 315360000.
    pub ttl: u64,
    /// Unix seconds; absent, `null` or `0` means now; a future value is replaced by now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<f64>,
}

/// `POST /store_data` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreDataResponse {
    /// Always `true`.
    pub stored: bool,
    /// The timestamp the item is stored with.
    pub timestamp: f64,
    /// When it expires (Unix seconds).
    pub expires_at: f64,
}

/// `POST /fetch_data` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchDataRequest {
    /// Namespace.
    pub namespace: String,
    /// Key.
    pub key: String,
}

/// `POST /fetch_data` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchDataResponse {
    /// The stored data.
    pub data: String,
    /// The item's timestamp.
    pub timestamp: f64,
    /// When it expires.
    pub expires_at: f64,
}

/// `POST /admin/list` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListResponse {
    /// The namespace as it was asked for.
    pub namespace: String,
    /// Its live keys, sorted.
    pub keys: Vec<ListedKey>,
    /// Whether more keys exist than were returned (raise `limit`).
    pub truncated: bool,
}

/// One key in a [`ListResponse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedKey {
    /// The key.
    pub key: String,
    /// The item's timestamp.
    pub timestamp: f64,
    /// When it expires.
    pub expires_at: f64,
    /// Size of its data in bytes.
    pub bytes: u64,
}

/// `GET /ready` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyResponse {
    /// Whether this node can serve linearizable reads and writes now.
    pub ready: bool,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Every error answer: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The detail of an error answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_request`, `conflict`, `not_found`.
    pub code: String,
    /// A sentence for the person reading the plugin's output.
    pub message: String,
    /// For `conflict`: the timestamp of the item that is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_timestamp: Option<f64>,
    /// For errors a leader could answer: the leader's node id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<u64>,
}
