//! Reading request bodies: bounded, Content-Type agnostic, with errors a plugin author can act
//! on.
//!
//! plugnpy always sends `Content-Type: application/json`, but curl users often do not, so the
//! header is not required. A body whose declared length is over the limit is refused before a
//! byte of it is read; one without a declared length is read only up to the limit.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use statemanager_core::{ItemId, Key};

use crate::error::ApiError;
use crate::namespaces::Namespaces;
use crate::SharedApiState;

/// The request body, read under the server's limits (see [`read`]): the extractor every
/// handler that takes a JSON body starts with.
pub struct RequestBody(pub axum::body::Bytes);

impl axum::extract::FromRequest<SharedApiState> for RequestBody {
    type Rejection = ApiError;

    async fn from_request(
        request: axum::extract::Request,
        state: &SharedApiState,
    ) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        read(
            &parts.headers,
            body,
            state.body_limit,
            state.limits.body_timeout,
        )
        .await
        .map(RequestBody)
    }
}

/// Reads `body`, at most `limit` bytes, all of it within `timeout` (slow senders get 408).
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<axum::body::Bytes, ApiError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(ApiError::BodyTooLarge(limit));
        }
    }
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await;
    let Ok(read) = read else {
        return Err(ApiError::RequestTimeout(format!(
            "the request body did not arrive within {} ms",
            timeout.as_millis()
        )));
    };
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return Err(if too_large {
                ApiError::BodyTooLarge(limit)
            } else {
                ApiError::InvalidRequest(format!("could not read the request body: {e}"))
            });
        }
    };
    Ok(bytes)
}

/// Parses bytes as a JSON object, with a message saying what is wrong.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::InvalidRequest(
            "the request body is empty; send a JSON object".into(),
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::InvalidRequest(format!(
            "the request body must be a JSON object, not {}",
            kind(&other)
        ))),
        Err(e) => Err(ApiError::InvalidRequest(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

/// A JSON value's kind, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A required string field.
pub fn string<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, ApiError> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s),
        None => Err(ApiError::InvalidRequest(format!("missing field '{field}'"))),
        Some(other) => Err(ApiError::InvalidRequest(format!(
            "field '{field}' must be a string, not {}",
            kind(other)
        ))),
    }
}

/// A required number field.
pub fn number(obj: &Map<String, Value>, field: &str) -> Result<f64, ApiError> {
    match obj.get(field) {
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| {
            ApiError::InvalidRequest(format!("field '{field}' is not a representable number"))
        }),
        None => Err(ApiError::InvalidRequest(format!("missing field '{field}'"))),
        Some(other) => Err(ApiError::InvalidRequest(format!(
            "field '{field}' must be a number, not {}",
            kind(other)
        ))),
    }
}

/// An optional number field (`null` counts as absent).
pub fn optional_number(obj: &Map<String, Value>, field: &str) -> Result<Option<f64>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => number(obj, field).map(Some),
    }
}

/// A well-formed `{"namespace", "key"}` body, parsed without building a JSON tree. Unknown
/// fields send the body to the slow path (serde would skip them without fully validating
/// them: an out-of-range number, say, that the slow path refuses).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemBody<'a> {
    #[serde(borrow)]
    namespace: Cow<'a, str>,
    #[serde(borrow)]
    key: Cow<'a, str>,
}

/// The item a `{"namespace", "key"}` body addresses (namespace resolved: plain or token). The
/// fast path parses borrowed strings; anything it refuses is parsed again field by field so
/// the error names the field and the rule.
pub fn item_id(bytes: &[u8], namespaces: &Namespaces) -> Result<ItemId, ApiError> {
    match item_id_fast(bytes, namespaces) {
        Some(id) => id,
        None => item_id_slow(bytes, namespaces),
    }
}

/// The text a fast path may parse straight into a struct: a valid UTF-8 body whose JSON value
/// is an object. Anything else goes to the slow path, which refuses it with a message.
///
/// Both conditions matter: serde skips an ignored field's string without checking that it is
/// UTF-8, and a derived struct also accepts a JSON array of its fields in order; the slow
/// path refuses both, and the fast path must not accept what it refuses. (The fast-path
/// structs also deny unknown fields, for the same reason.)
pub fn fast_path_text(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
        .then_some(text)
}

/// The fast path of [`item_id`]: `None` when the body is not a well-formed [`ItemBody`].
pub fn item_id_fast(bytes: &[u8], namespaces: &Namespaces) -> Option<Result<ItemId, ApiError>> {
    let b = serde_json::from_str::<ItemBody>(fast_path_text(bytes)?).ok()?;
    Some((|| -> Result<ItemId, ApiError> {
        Ok(ItemId {
            namespace: namespaces.resolve(&b.namespace)?,
            key: Key::new(&b.key)?,
        })
    })())
}

/// The slow path of [`item_id`]: a JSON tree, read field by field.
pub fn item_id_slow(bytes: &[u8], namespaces: &Namespaces) -> Result<ItemId, ApiError> {
    let obj = parse_object(bytes)?;
    Ok(ItemId {
        namespace: namespaces.resolve(string(&obj, "namespace")?)?,
        key: Key::new(string(&obj, "key")?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::fuzz_namespaces;

    /// Found by the request_decode fuzz target: the fast path accepted bodies the slow path
    /// (and the API's contract) refuses.
    #[test]
    fn fast_path_accepts_nothing_the_slow_path_refuses() {
        let namespaces = fuzz_namespaces();
        let limits = statemanager_core::Limits::default();
        // Invalid UTF-8 inside a field the struct ignores.
        let mut bad_utf8 = br#"{"namespace":"n","key":"k","data":"v","ttl":60,"x":"a"#.to_vec();
        bad_utf8.extend_from_slice(&[0x96, b'"', b'}']);
        // A JSON array of the fields, in order.
        let arrays: [&[u8]; 2] = [br#"["n","k"]"#, br#" ["n","k","v",60]"#];
        // A number out of range in a field the struct ignores.
        let big: &[u8] = br#"{"namespace":"n","key":"k","data":"v","ttl":60,"x":1e400}"#;
        for body in [&bad_utf8[..], arrays[0], arrays[1], big] {
            assert!(item_id(body, &namespaces).is_err());
            assert!(crate::handlers::store::decode(body, &limits, &namespaces).is_err());
        }
        assert!(item_id(br#" {"namespace":"n","key":"k"}"#, &namespaces).is_ok());
    }
}
