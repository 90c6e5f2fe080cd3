//! The JSON shapes of the State Manager HTTP API, shared by the server and clients.
//!
//! Times are Unix seconds as `f64` (what plugnpy sends and expects); errors are always
//! `{"error":{"code","message",...}}` with a stable snake_case `code`.
//!
//! Answers are declared with their fields in alphabetical order wherever the server sent
//! them as `serde_json::json!` objects before they were typed (serde_json sorts an object's
//! keys without its `preserve_order` feature): a struct serializes its fields in declaration
//! order, so the order keeps the bytes on the wire as they were.
#![warn(missing_docs)]

mod admin;
mod cache;
mod console;
mod status;

pub use admin::{
    AdminFetchResponse, ListResponse, ListedKey, NamespaceSummary, NamespacesResponse,
};
pub use cache::GetDataResponse;
pub use console::{ClusterStatus, NodeCacheSummary, NodeSummary, TrafficPoint, TrafficSeries};
pub use status::{
    ClockStatus, HealthResponse, LeaderRef, PeerStatus, ReadyResponse, StatusResponse,
};

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

/// `POST /fetch_data` answer. The server writes it with `D = &str` (the data borrowed from
/// the item, not copied); clients read it with the default, `String`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchDataResponse<D = String> {
    /// The stored data.
    pub data: D,
    /// The item's timestamp.
    pub timestamp: f64,
    /// When it expires.
    pub expires_at: f64,
}

/// `POST /delete_data` and `POST /admin/delete` answer: `{"deleted":true}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteResponse {
    /// Always `true` (a delete of nothing is 404 `not_found`).
    pub deleted: bool,
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn delete_response_is_sent_as_before() {
        let answer = DeleteResponse { deleted: true };
        let expected = r#"{"deleted":true}"#;
        assert_eq!(
            serde_json::to_string(&answer).expect("serializes"),
            expected
        );
        assert_eq!(json!({"deleted": true}).to_string(), expected);
    }
}
