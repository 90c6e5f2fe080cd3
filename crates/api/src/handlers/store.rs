//! `POST /store_data`.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use statemanager_core::StoreOp;
use statemanager_proto::StoreDataResponse;

use crate::body;
use crate::error::ApiError;
use crate::ApiState;

/// Stores an item; answers once it is durable.
pub async fn store_data(
    State(state): State<ApiState>,
    headers: HeaderMap,
    request: Body,
) -> Result<Json<StoreDataResponse>, ApiError> {
    let obj = body::json_object(&headers, request, state.body_limit).await?;
    let namespace = body::string(&obj, "namespace")?;
    let key = body::string(&obj, "key")?;
    let data = body::string(&obj, "data")?;
    let ttl = body::number(&obj, "ttl")?;
    let timestamp = body::optional_number(&obj, "timestamp")?;
    let op = StoreOp::new(namespace, key, data, ttl, timestamp, &state.node.limits())?;
    let stored = state.node.store(op).await?;
    Ok(Json(StoreDataResponse {
        stored: true,
        timestamp: stored.timestamp.as_secs_f64(),
        expires_at: stored.expires_at.as_secs_f64(),
    }))
}
