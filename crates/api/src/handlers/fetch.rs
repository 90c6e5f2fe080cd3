//! `POST /fetch_data`.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use statemanager_core::Item;
use statemanager_proto::FetchDataResponse;

use crate::body::{self, RequestBody};
use crate::error::ApiError;
use crate::forward;
use crate::SharedApiState;

/// Bytes of a fetch answer besides its data: the field names, two timestamps, quotes.
const FETCH_ANSWER_OVERHEAD: usize = 96;

/// Data up to this size is written into the answer under the state's read lock (no clone of
/// the item, see `Node::fetch_with`); larger data is cloned (one counter increment) and
/// written after the lock is released, so that an apply waiting for the lock never waits for
/// a copy of up to `max_persistent_data_item_size` (16 MB at most).
const ANSWER_UNDER_LOCK_MAX: usize = 64 * 1024;

/// What a fetch takes from under the read lock.
enum Found {
    /// The answer, written there.
    Answer(Response),
    /// An item too large to write there.
    Large(Item),
}

impl Found {
    fn of(item: &Item) -> Found {
        if item.data.len() <= ANSWER_UNDER_LOCK_MAX {
            Found::Answer(answer_of(item))
        } else {
            Found::Large(item.clone())
        }
    }

    fn into_answer(self) -> Response {
        match self {
            Found::Answer(answer) => answer,
            Found::Large(item) => answer_of(&item),
        }
    }
}

/// Reads an item linearizably; 404 when missing or expired.
pub async fn fetch_data(
    State(state): State<SharedApiState>,
    RequestBody(bytes): RequestBody,
) -> Result<Response, ApiError> {
    let request = forward::Forwardable::read("/fetch_data");
    let id = body::item_id(&bytes, &state.namespaces)?;
    let result = state.node.fetch_with(&id, Found::of).await;
    // Linearizable reads are served by the leader.
    forward::answer_or_forward(&state, request, bytes, result, |found| {
        found.map(Found::into_answer).ok_or(ApiError::NotFound)
    })
    .await
}

/// The answer to a fetch of `item`: [`FetchDataResponse`]'s JSON, written by hand so that
/// data needing no escapes (the common case) is copied as it is rather than examined byte by
/// byte (that was 12 % of a fetch's CPU in user space). A unit test holds it to what serde
/// writes for the same answer.
fn answer_of(item: &Item) -> Response {
    let answer = FetchDataResponse {
        data: &*item.data,
        timestamp: item.timestamp.as_secs_f64(),
        expires_at: item.expires_at.as_secs_f64(),
    };
    match write_answer(&answer) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        // Writing strings and numbers into memory does not fail; if it ever did, `Json`'s
        // own answer (a 500 naming the error) is given.
        Err(_) => Json(answer).into_response(),
    }
}

/// `answer` as JSON, in [`FetchDataResponse`]'s field order, in one allocation.
fn write_answer(answer: &FetchDataResponse<&str>) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(answer.data.len() + FETCH_ANSWER_OVERHEAD);
    out.extend_from_slice(br#"{"data":"#);
    write_json_string(&mut out, answer.data)?;
    out.extend_from_slice(br#","timestamp":"#);
    serde_json::to_writer(&mut out, &answer.timestamp)?;
    out.extend_from_slice(br#","expires_at":"#);
    serde_json::to_writer(&mut out, &answer.expires_at)?;
    out.push(b'}');
    Ok(out)
}

/// Appends `s` as a JSON string: copied between quotes when nothing in it needs escaping,
/// otherwise escaped by serde_json.
fn write_json_string(out: &mut Vec<u8>, s: &str) -> Result<(), serde_json::Error> {
    if needs_escape(s.as_bytes()) {
        return serde_json::to_writer(out, s);
    }
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
    Ok(())
}

/// Whether `bytes` holds a byte JSON must escape: `"`, `\` or a control character. It
/// looks at 32 bytes at a time without stopping early inside a block, which the compiler
/// turns into vector instructions.
fn needs_escape(bytes: &[u8]) -> bool {
    fn special(b: u8) -> bool {
        b < 0x20 || b == b'"' || b == b'\\'
    }
    let mut blocks = bytes.chunks_exact(32);
    let in_blocks = blocks
        .by_ref()
        .any(|block| block.iter().fold(false, |found, &b| found | special(b)));
    in_blocks || blocks.remainder().iter().any(|&b| special(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_data_up_to_the_bound_is_written_under_the_lock() {
        let item = |len: usize| Item {
            data: statemanager_core::Data::from("x".repeat(len)),
            timestamp: statemanager_core::Timestamp::from_micros(1),
            expires_at: statemanager_core::Timestamp::from_micros(2),
        };
        assert!(matches!(
            Found::of(&item(ANSWER_UNDER_LOCK_MAX)),
            Found::Answer(_)
        ));
        let large = item(ANSWER_UNDER_LOCK_MAX + 1);
        let Found::Large(taken) = Found::of(&large) else {
            panic!("a large item is taken out, not written under the lock");
        };
        assert!(std::ptr::eq(taken.data.as_str(), large.data.as_str()));
    }

    fn serde_form(answer: &FetchDataResponse<&str>) -> Vec<u8> {
        serde_json::to_vec(answer).unwrap()
    }

    #[test]
    fn the_answer_is_what_serde_writes() {
        let long_plain = "x".repeat(1024);
        let mut samples: Vec<String> = vec![
            String::new(),
            "v".into(),
            long_plain.clone(),
            format!("{long_plain}\""),
            "quote \" inside".into(),
            "back\\slash".into(),
            "tab\tnewline\n".into(),
            "nul \u{0} and \u{1f}".into(),
            "del \u{7f} é ✓ 😀".into(),
            "</script>".into(),
        ];
        // Every byte value below 0x80 at every position of a block and its remainder.
        for len in [1, 31, 32, 33, 64, 65] {
            for pos in [0, len / 2, len - 1] {
                for b in 0u8..0x80 {
                    let mut bytes = vec![b'a'; len];
                    bytes[pos] = b;
                    samples.push(String::from_utf8(bytes).unwrap());
                }
            }
        }
        for (i, data) in samples.iter().enumerate() {
            for (timestamp, expires_at) in
                [(0.0, 1.5), (1764000000.123456, 1764003600.0), (1e21, -0.0)]
            {
                let answer = FetchDataResponse {
                    data: data.as_str(),
                    timestamp,
                    expires_at,
                };
                assert_eq!(
                    write_answer(&answer).unwrap(),
                    serde_form(&answer),
                    "sample {i}: {data:?}"
                );
            }
        }
    }
}
