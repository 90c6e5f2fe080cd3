//! `POST /store_data`.

use std::borrow::Cow;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use statemanager_core::{Limits, StoreOp};
use statemanager_proto::StoreDataResponse;

use crate::body::{self, RequestBody};
use crate::error::ApiError;
use crate::forward;
use crate::{Namespaces, SharedApiState};

/// The well-formed request, parsed without building a JSON tree (the fast path). Anything it
/// refuses is parsed again field by field, so the error names the field and the rule.
/// Unknown fields go to the slow path too (see `body::ItemBody`); plugnpy sends none.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreBody<'a> {
    #[serde(borrow)]
    namespace: Cow<'a, str>,
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(borrow)]
    data: Cow<'a, str>,
    ttl: f64,
    #[serde(default)]
    timestamp: Option<f64>,
}

/// The fast path: `Some` when the body is a well-formed JSON object for [`StoreBody`] (the
/// validated op or the domain's refusal), `None` when it must be read field by field (see
/// [`body::fast_path_text`]).
pub(crate) fn decode_fast(bytes: &[u8], limits: &Limits) -> Option<Result<StoreOp, ApiError>> {
    let b = serde_json::from_str::<StoreBody>(body::fast_path_text(bytes)?).ok()?;
    Some(
        StoreOp::new(&b.namespace, &b.key, &b.data, b.ttl, b.timestamp, limits)
            .map_err(ApiError::from),
    )
}

/// The slow path: the body parsed into a JSON tree and read field by field, so that an
/// error names the field and the rule.
pub(crate) fn decode_slow(bytes: &[u8], limits: &Limits) -> Result<StoreOp, ApiError> {
    let obj = body::parse_object(bytes)?;
    let namespace = body::string(&obj, "namespace")?;
    let key = body::string(&obj, "key")?;
    let data = body::string(&obj, "data")?;
    let ttl = body::number(&obj, "ttl")?;
    let timestamp = body::optional_number(&obj, "timestamp")?;
    Ok(StoreOp::new(namespace, key, data, ttl, timestamp, limits)?)
}

/// A `/store_data` body, validated into the op that is proposed (namespace resolved: plain,
/// or decoded from a verified token). Every refusal is a client error.
pub(crate) fn decode(
    bytes: &[u8],
    limits: &Limits,
    namespaces: &Namespaces,
) -> Result<StoreOp, ApiError> {
    let mut op = match decode_fast(bytes, limits) {
        Some(op) => op?,
        None => decode_slow(bytes, limits)?,
    };
    op.id.namespace = namespaces.resolve_given(op.id.namespace)?;
    Ok(op)
}

/// Stores an item; answers once it is durable.
pub async fn store_data(
    State(state): State<SharedApiState>,
    RequestBody(bytes): RequestBody,
) -> Result<Response, ApiError> {
    let request = forward::Forwardable::write("/store_data");
    let op = decode(&bytes, &state.node.limits(), &state.namespaces)?;
    let result = state.node.store(op).await;
    // Refused before proposing (nothing happened here): the leader decides.
    forward::answer_or_forward(&state, request, bytes, result, |stored| {
        Ok(Json(StoreDataResponse {
            stored: true,
            timestamp: stored.timestamp.as_secs_f64(),
            expires_at: stored.expires_at.as_secs_f64(),
        })
        .into_response())
    })
    .await
}
