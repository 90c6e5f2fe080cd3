//! `POST /get_data` and `POST /set_data`: the Cache Manager's ephemeral cache.
//!
//! Input is read the way the original reads it (Python's `int()` on `max_wait_time` and
//! `ttl`: `2.9` → 2, `"5"` → 5; `"abc"`, `null`, lists → 400), and checked in its order:
//! fields → namespace → `|` in namespace or key → `ttl ≥ 1` → size.

use std::num::IntErrorKind;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Map, Value};
use statemanager_core::{Key, Namespace, MAX_TTL_SECS};

use crate::body;
use crate::error::ApiError;
use crate::ApiState;

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
    state: &ApiState,
    obj: &'a Map<String, Value>,
) -> Result<(Namespace, &'a str), ApiError> {
    let namespace = body::string(obj, "namespace")?;
    let key = body::string(obj, "key")?;
    Key::new(key)?;
    Ok((state.namespaces.resolve(namespace)?, key))
}

/// Looks up a cached value, taking or waiting for the compute lock (see the crate docs).
pub async fn get_data(
    State(state): State<ApiState>,
    headers: HeaderMap,
    request: Body,
) -> Result<Json<Value>, ApiError> {
    let obj = body::json_object(
        &headers,
        request,
        state.body_limit,
        state.limits.body_timeout,
    )
    .await?;
    let (namespace, key) = names(&state, &obj)?;
    let wait = match obj.get("max_wait_time") {
        None => 0,
        Some(_) => python_int(&obj, "max_wait_time")?.unwrap_or(0),
    };
    let got = state
        .cache
        .get(namespace.as_str(), key, wait.min(MAX_WAIT_SECS))
        .await;
    Ok(Json(json!({
        "data": got.data.as_deref(),
        "lock": got.lock,
        "expiry": got.expiry,
    })))
}

/// Stores a value for `ttl` seconds, releasing the key's lock and waking every waiter.
pub async fn set_data(
    State(state): State<ApiState>,
    headers: HeaderMap,
    request: Body,
) -> Result<Json<&'static str>, ApiError> {
    let obj = body::json_object(
        &headers,
        request,
        state.cache_body_limit,
        state.limits.body_timeout,
    )
    .await?;
    for field in ["namespace", "key", "data", "ttl"] {
        if !obj.contains_key(field) {
            return Err(ApiError::InvalidRequest(format!("missing field '{field}'")));
        }
    }
    let (namespace, key) = names(&state, &obj)?;
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
    state
        .cache
        .set(namespace.as_str(), key, data, ttl as u64)
        .map_err(|e| ApiError::CacheItemTooLarge(e.to_string()))?;
    Ok(Json("ok"))
}
