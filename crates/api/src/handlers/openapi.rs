//! `GET /openapi.json`: the OpenAPI description of the client API.

use axum::http::header;
use axum::response::IntoResponse;

/// The OpenAPI 3 document of the client HTTP API (`crates/api/openapi.json`, embedded at build
/// time and served byte for byte).
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// `GET /openapi.json`: [`OPENAPI_JSON`], as `application/json`.
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}
