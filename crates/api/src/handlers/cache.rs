//! `POST /get_data` and `POST /set_data`: the Cache Manager's ephemeral cache.
//!
//! Input is read the way the original reads it (Python's `int()` on `max_wait_time` and
//! `ttl`: `2.9` → 2, `"5"` → 5; `"abc"`, `null`, lists → 400), and checked in its order:
//! fields → namespace → `|` in namespace or key → `ttl ≥ 1` → size.
//!
//! On a cluster both go to the key's owner through [`statemanager_cache::SharedCache`]; a
//! single node answers from its own cache, as before.

use std::num::IntErrorKind;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{Map, Value};
use statemanager_core::{Key, Namespace, MAX_TTL_SECS};
use statemanager_proto::GetDataResponse;

use crate::body::{self, RequestBody};
use crate::error::ApiError;
use crate::{Namespaces, SharedApiState};

/// Longest `max_wait_time` honoured, in seconds; longer waits are shortened to it.
pub const MAX_WAIT_SECS: i64 = 3600;

/// Python's `int()` of a JSON value: numbers truncate toward zero, strings must hold an
/// integer.
fn python_int(obj: &Map<String, Value>, field: &str) -> Result<Option<i64>, ApiError> {
    let bad = |what: &str| {
        ApiError::InvalidRequest(format!(
            "field '{field}' must be a whole number of seconds, not {what}"
        ))
    };
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                let f = n
                    .as_f64()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| bad("that number"))?;
                Ok(Some(
                    f.trunc().clamp(i64::MIN as f64, i64::MAX as f64) as i64
                ))
            }
        }
        Some(Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(i) => Ok(Some(i)),
            // Python's int() has no bound: a longer run of digits is just a large number.
            Err(e) if *e.kind() == IntErrorKind::PosOverflow => Ok(Some(i64::MAX)),
            Err(e) if *e.kind() == IntErrorKind::NegOverflow => Ok(Some(i64::MIN)),
            Err(_) => Err(bad(&format!("'{s}'"))),
        },
        Some(other) => Err(bad(body::kind(other))),
    }
}

/// The namespace (resolved: plain, or decoded from a verified token) and the key.
fn names<'a>(
    namespaces: &Namespaces,
    obj: &'a Map<String, Value>,
) -> Result<(Namespace, &'a str), ApiError> {
    let namespace = body::string(obj, "namespace")?;
    let key = body::string(obj, "key")?;
    Key::new(key)?;
    Ok((namespaces.resolve(namespace)?, key))
}

/// A validated `/get_data` request.
#[derive(Debug)]
pub(crate) struct GetRequest {
    /// The namespace (resolved).
    pub namespace: Namespace,
    /// The key.
    pub key: String,
    /// How long to wait for another caller's lock, in seconds (at most [`MAX_WAIT_SECS`]).
    pub wait_secs: i64,
}

/// A `/get_data` body, validated. Every refusal is a client error.
pub(crate) fn decode_get(bytes: &[u8], namespaces: &Namespaces) -> Result<GetRequest, ApiError> {
    let obj = body::parse_object(bytes)?;
    let (namespace, key) = names(namespaces, &obj)?;
    let wait = match obj.get("max_wait_time") {
        None => 0,
        Some(_) => python_int(&obj, "max_wait_time")?.unwrap_or(0),
    };
    Ok(GetRequest {
        namespace,
        key: key.to_string(),
        wait_secs: wait.min(MAX_WAIT_SECS),
    })
}

/// A validated `/set_data` request.
#[derive(Debug)]
pub(crate) struct SetRequest {
    /// The namespace (resolved).
    pub namespace: Namespace,
    /// The key.
    pub key: String,
    /// The value.
    pub data: String,
    /// Time to live, 1 … [`MAX_TTL_SECS`] seconds.
    pub ttl_secs: u64,
}

/// A `/set_data` body, validated in the original's order (fields → namespace → `|` → ttl).
/// Every refusal is a client error; the size check is the cache's.
pub(crate) fn decode_set(bytes: &[u8], namespaces: &Namespaces) -> Result<SetRequest, ApiError> {
    let obj = body::parse_object(bytes)?;
    for field in ["namespace", "key", "data", "ttl"] {
        if !obj.contains_key(field) {
            return Err(ApiError::InvalidRequest(format!("missing field '{field}'")));
        }
    }
    let (namespace, key) = names(namespaces, &obj)?;
    let data = body::string(&obj, "data")?;
    if namespace.as_str().contains('|') || key.contains('|') {
        return Err(ApiError::InvalidRequest(
            "the cache does not accept '|' in a namespace or key".into(),
        ));
    }
    let ttl = python_int(&obj, "ttl")?.unwrap_or(0);
    if ttl < 1 || ttl as u64 > MAX_TTL_SECS {
        return Err(ApiError::InvalidRequest(format!(
            "'ttl' must be between 1 and {MAX_TTL_SECS} seconds"
        )));
    }
    Ok(SetRequest {
        namespace,
        key: key.to_string(),
        data: data.to_string(),
        ttl_secs: ttl as u64,
    })
}

/// Looks up a cached value, taking or waiting for the compute lock (see the crate docs).
pub async fn get_data(
    State(state): State<SharedApiState>,
    RequestBody(bytes): RequestBody,
) -> Result<Json<GetDataResponse>, ApiError> {
    let req = decode_get(&bytes, &state.namespaces)?;
    let got = match &state.shared_cache {
        Some(shared) => {
            shared
                .get(req.namespace.as_str(), &req.key, req.wait_secs)
                .await
        }
        None => {
            state
                .cache
                .get(req.namespace.as_str(), &req.key, req.wait_secs)
                .await
        }
    };
    Ok(Json(GetDataResponse {
        data: got.data.as_deref().map(str::to_string),
        expiry: got.expiry,
        lock: got.lock,
    }))
}

/// Stores a value for `ttl` seconds, releasing the key's lock and waking every waiter.
pub async fn set_data(
    State(state): State<SharedApiState>,
    headers: HeaderMap,
    request: Body,
) -> Result<Json<&'static str>, ApiError> {
    let bytes = body::read(
        &headers,
        request,
        state.cache_body_limit,
        state.limits.body_timeout,
    )
    .await?;
    let req = decode_set(&bytes, &state.namespaces)?;
    let stored = match &state.shared_cache {
        Some(shared) => {
            shared
                .set(req.namespace.as_str(), &req.key, &req.data, req.ttl_secs)
                .await
        }
        None => state
            .cache
            .set(req.namespace.as_str(), &req.key, &req.data, req.ttl_secs),
    };
    stored.map_err(|e| ApiError::CacheItemTooLarge(e.to_string()))?;
    Ok(Json("ok"))
}
