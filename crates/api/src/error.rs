//! The one place where outcomes become HTTP statuses and JSON error bodies.
//!
//! | code | status | meaning |
//! |---|---|---|
//! | `invalid_request` | 400 | malformed JSON, wrong type, missing field, value out of range |
//! | `unauthorized` | 401 | an admin endpoint without the cluster secret |
//! | `forbidden` | 403 | a namespace token failed (wrong, expired, foreign key), or one is required |
//! | `not_found` | 404 | item missing or expired |
//! | `unknown_endpoint` | 404 | no such path |
//! | `method_not_allowed` | 405 | path exists, method does not |
//! | `request_timeout` | 408 | the request head or body arrived too slowly |
//! | `conflict` | 409 | a newer (or equally old, different) item is stored |
//! | `item_too_large` | 413 | data over `max_persistent_data_item_size` |
//! | `item_too_large` | 400 | `/set_data`: data over the cache's `max_item_size` (400, as the original) |
//! | `body_too_large` | 413 | request body over the body limit |
//! | `header_too_large` | 431 | request line and headers over `max_header_bytes` |
//! | `rate_limited` | 429 | over `client_rate_limit` requests per second from this address |
//! | `too_many_connections` | 429 | `max_connections` reached (written by the listener) |
//! | `disk_full` | 507 | the data directory's free space is below `disk_reserve` |
//! | `store_full` | 507 | item limit (store or namespace) reached for a new key |
//! | `no_quorum` | 503 | refused before proposing: nothing happened |
//! | `commit_timeout` | 503 | proposed, not committed in time: outcome unknown |
//! | `unavailable` | 503 | stopping, or not the leader of a one-node store |
//! | `internal` | 500 | a bug (logged; the body says nothing more) |

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use statemanager_core::DomainError;
use statemanager_proto::{ErrorBody, ErrorDetail};
use statemanager_raft::NodeError;

/// Every way a request can fail.
#[derive(Debug)]
pub enum ApiError {
    /// 400 `invalid_request`.
    InvalidRequest(String),
    /// 401 `unauthorized`: an admin endpoint without the required credential.
    Unauthorized(String),
    /// 403 `forbidden`: a namespace token failed, or one is required.
    Forbidden(String),
    /// 404 `not_found`.
    NotFound,
    /// 404 `unknown_endpoint`.
    UnknownEndpoint(String),
    /// 405 `method_not_allowed`.
    MethodNotAllowed(String),
    /// 408 `request_timeout`.
    RequestTimeout(String),
    /// 429 `rate_limited`.
    RateLimited(String),
    /// 431 `header_too_large`.
    HeaderTooLarge(String),
    /// 413 `body_too_large`.
    BodyTooLarge(usize),
    /// 400 `item_too_large` from the ephemeral cache (the original answers 400).
    CacheItemTooLarge(String),
    /// Anything the node answered.
    Node(NodeError),
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        ApiError::Node(e)
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        ApiError::Node(NodeError::Domain(e))
    }
}

impl ApiError {
    pub(crate) fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::InvalidRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request", m.clone()),
            ApiError::RequestTimeout(m) => {
                (StatusCode::REQUEST_TIMEOUT, "request_timeout", m.clone())
            }
            ApiError::RateLimited(m) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", m.clone()),
            ApiError::HeaderTooLarge(m) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header_too_large",
                m.clone(),
            ),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m.clone()),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no item with this namespace and key (never stored, or expired)".into(),
            ),
            ApiError::UnknownEndpoint(path) => (
                StatusCode::NOT_FOUND,
                "unknown_endpoint",
                format!("no endpoint {path}; see /openapi.json or docs/api.md"),
            ),
            ApiError::MethodNotAllowed(m) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                m.clone(),
            ),
            ApiError::BodyTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body is larger than {limit} bytes"),
            ),
            ApiError::CacheItemTooLarge(m) => {
                (StatusCode::BAD_REQUEST, "item_too_large", m.clone())
            }
            ApiError::Node(e) => match e {
                NodeError::Domain(d) => match d {
                    DomainError::InvalidRequest(m) => {
                        (StatusCode::BAD_REQUEST, "invalid_request", m.clone())
                    }
                    DomainError::NotFound => (StatusCode::NOT_FOUND, "not_found", d.to_string()),
                    DomainError::Conflict { .. } => {
                        (StatusCode::CONFLICT, "conflict", d.to_string())
                    }
                    DomainError::ItemTooLarge { .. } => (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "item_too_large",
                        d.to_string(),
                    ),
                    DomainError::StoreFull { .. } => (
                        StatusCode::INSUFFICIENT_STORAGE,
                        "store_full",
                        d.to_string(),
                    ),
                },
                NodeError::NotLeader { .. } => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    e.to_string(),
                ),
                NodeError::NoQuorum(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "no_quorum", e.to_string())
                }
                NodeError::CommitTimeout(_) | NodeError::OutcomeUnknown(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "commit_timeout",
                    e.to_string(),
                ),
                NodeError::DiskFull { .. } => {
                    (StatusCode::INSUFFICIENT_STORAGE, "disk_full", e.to_string())
                }
                NodeError::Unavailable(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    e.to_string(),
                ),
                // A bug: the details are logged (in `into_response`), not sent.
                NodeError::Internal(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".into(),
                ),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Node(NodeError::Internal(broken)) = &self {
            tracing::error!(error = %broken, "internal error (a bug): answered 500");
        }
        let (status, code, message) = self.parts();
        let stored_timestamp = match &self {
            ApiError::Node(NodeError::Domain(DomainError::Conflict { stored })) => {
                Some(stored.as_secs_f64())
            }
            _ => None,
        };
        let leader = match &self {
            ApiError::Node(NodeError::NotLeader { leader }) => *leader,
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
                stored_timestamp,
                leader,
            },
        };
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use statemanager_raft::Invariant;

    use super::*;

    #[test]
    fn a_broken_invariant_is_500_internal_without_details() {
        let e = ApiError::Node(NodeError::Internal(Invariant::BatchResultSize {
            expected: 2,
            got: 1,
        }));
        let (status, code, message) = e.parts();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(code, "internal");
        assert_eq!(message, "internal error");
    }
}
