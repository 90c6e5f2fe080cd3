//! `POST /fetch_data`.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use statemanager_core::{ItemId, Key, Namespace};
use statemanager_proto::FetchDataResponse;

use crate::body;
use crate::error::ApiError;
use crate::ApiState;

/// Reads an item linearizably; 404 when missing or expired.
pub async fn fetch_data(
    State(state): State<ApiState>,
    headers: HeaderMap,
    request: Body,
) -> Result<Json<FetchDataResponse>, ApiError> {
    let obj = body::json_object(&headers, request, state.body_limit).await?;
    let id = ItemId {
        namespace: Namespace::new(body::string(&obj, "namespace")?)?,
        key: Key::new(body::string(&obj, "key")?)?,
    };
    let item = state.node.fetch(&id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(FetchDataResponse {
        data: item.data.to_string(),
        timestamp: item.timestamp.as_secs_f64(),
        expires_at: item.expires_at.as_secs_f64(),
    }))
}
