//! Unknown paths and wrong methods, answered in the same JSON error format.

use axum::http::{Method, Uri};

use crate::error::ApiError;

/// Any path we do not serve: 404 `unknown_endpoint`.
pub async fn unknown_endpoint(uri: Uri) -> ApiError {
    ApiError::UnknownEndpoint(uri.path().to_string())
}

/// A known path with the wrong method: 405 `method_not_allowed`.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}
