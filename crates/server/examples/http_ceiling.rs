//! The HTTP ceiling for `bench/`: the least an axum server on this machine can do per request.
//!
//! It answers `POST /store_data` and `POST /fetch_data` the way a store or a fetch would look
//! on the wire (it reads the whole JSON body the client sends and answers a small JSON body),
//! on the same stack as `statemanager serve` (tokio's multi-threaded runtime with one worker
//! per core, hyper through axum) but with no parsing, no Raft, no disk and no state. The
//! benchmarks divide our figures by its figures: a ratio of 1 would mean the store costs
//! nothing beyond HTTP itself.
//!
//! ```text
//! cargo build --release --example http_ceiling
//! target/release/examples/http_ceiling 127.0.0.1:0 ADDR_FILE
//! ```
//!
//! It prints (and writes to ADDR_FILE, when given) the address it is bound to and serves
//! until it is killed.

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::routing::post;
use axum::Router;

mod common;

/// The answer of a store: the same size as `statemanager`'s (`stored`, `timestamp`, `expires_at`).
const STORE_ANSWER: &str =
    r#"{"stored":true,"timestamp":1764000000.123456,"expires_at":1764003600.123456}"#;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".to_string());
    let addr_file = args.next();
    let app = Router::new()
        .route("/store_data", post(store))
        .route("/fetch_data", post(fetch));
    common::serve(&addr, addr_file, app).await
}

/// Reads the whole body, answers a small JSON object.
async fn store(body: Bytes) -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    std::hint::black_box(body.len());
    ([(CONTENT_TYPE, "application/json")], STORE_ANSWER)
}

/// Reads the whole (small) body, answers a JSON object carrying a 1 KiB value, as a fetch
/// of the benchmark's items would.
async fn fetch(body: Bytes) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    std::hint::black_box(body.len());
    let value = "x".repeat(1024);
    (
        [(CONTENT_TYPE, "application/json")],
        format!(r#"{{"data":"{value}","ttl":3600,"timestamp":1764000000}}"#),
    )
}
