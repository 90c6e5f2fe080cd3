//! The durable HTTP ceiling: the least an axum server on this machine can do per store when
//! every answer waits for an `fdatasync`, for `docs/design.md`'s analysis.
//!
//! `POST /store_data` queues the request's body and waits; one thread takes everything
//! queued, writes the bodies as one block into a preallocated, zero-filled file (in place,
//! as a recycled log segment is written), calls `fdatasync`, and answers every request of
//! the block. No parsing, no Raft, no state: group commit alone, on the same stack as the
//! HTTP ceiling (`http_ceiling.rs`: tokio's multi-threaded runtime, hyper through axum).
//!
//! ```text
//! cargo build --release --example durable_ceiling
//! target/release/examples/durable_ceiling 127.0.0.1:0 ADDR_FILE DIR [GATHER]
//! ```
//!
//! With `GATHER` (a number of requests), the thread, once a block's first request is queued,
//! waits until that many are, or 3 ms have passed, before it writes the block: every caller
//! in one block, as `statemanager`'s writer gathers them (`write_gather_ms`). Without it, the
//! callers split into groups that take turns, one group's requests arriving while the other's
//! block is made durable.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::routing::post;
use axum::Router;
use tokio::sync::oneshot;

mod common;

const STORE_ANSWER: &str =
    r#"{"stored":true,"timestamp":1764000000.123456,"expires_at":1764003600.123456}"#;

/// The longest a gather waits.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_millis(3);

/// The file's size; writes wrap around to its start.
const FILE_BYTES: u64 = 256 << 20;

type Queue = std::sync::mpsc::Sender<(Bytes, oneshot::Sender<()>)>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".to_string());
    let addr_file = args.next();
    let dir = args.next().unwrap_or_else(|| ".".to_string());
    let gather: usize = match args.next() {
        Some(n) => n.parse().map_err(std::io::Error::other)?,
        None => 0,
    };
    let path = std::path::Path::new(&dir).join("durable-ceiling.log");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let zeros = vec![0u8; 1 << 20];
    for n in 0..(FILE_BYTES >> 20) {
        file.write_all_at(&zeros, n << 20)?;
    }
    file.sync_all()?;
    let (queue, queued) = std::sync::mpsc::channel::<(Bytes, oneshot::Sender<()>)>();
    std::thread::Builder::new()
        .name("durable-writer".into())
        .spawn(move || {
            let mut at = 0u64;
            let mut block = Vec::with_capacity(1 << 20);
            let mut waiting = Vec::new();
            while let Ok(first) = queued.recv() {
                waiting.push(first);
                let deadline = std::time::Instant::now() + GATHER_WAIT;
                loop {
                    while let Ok(next) = queued.try_recv() {
                        waiting.push(next);
                    }
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if waiting.len() >= gather || left.is_zero() {
                        break;
                    }
                    match queued.recv_timeout(left) {
                        Ok(next) => waiting.push(next),
                        Err(_) => break,
                    }
                }
                block.clear();
                for (body, _) in &waiting {
                    block.extend_from_slice(&(body.len() as u32).to_le_bytes());
                    block.extend_from_slice(body);
                }
                if at + block.len() as u64 > FILE_BYTES {
                    at = 0;
                }
                let written = file.write_all_at(&block, at).and_then(|_| file.sync_data());
                if let Err(e) = written {
                    eprintln!("write failed: {e}");
                    std::process::exit(1);
                }
                at += block.len() as u64;
                for (_, answer) in waiting.drain(..) {
                    let _ = answer.send(());
                }
            }
        })?;
    let app = Router::new()
        .route("/store_data", post(store))
        .with_state(queue);
    common::serve(&addr, addr_file, app).await
}

async fn store(
    State(queue): State<Queue>,
    body: Bytes,
) -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    let (done, wait) = oneshot::channel();
    if queue.send((body, done)).is_ok() {
        let _ = wait.await;
    }
    ([(CONTENT_TYPE, "application/json")], STORE_ANSWER)
}
