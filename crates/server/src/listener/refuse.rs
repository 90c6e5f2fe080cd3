//! Refusals written straight to a socket, bypassing hyper: the 429 for one connection more
//! than `max_connections` (no request was parsed) and the 408 for a request head that came
//! too slowly (hyper gave the stream up; see [`super::connection`]).

use std::io::Write;
use std::net::{Shutdown, TcpStream};

/// A canned answer (no request was parsed, or none completed): a JSON error body with
/// `connection: close`.
fn canned(status: &str, code: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Writes `bytes` without waiting (the socket's buffer is empty on a connection we refuse or
/// that went quiet, so a small answer fits), then closes.
fn answer_and_close(mut socket: TcpStream, bytes: &[u8]) {
    let _ = socket.write(bytes);
    let _ = socket.shutdown(Shutdown::Both);
}

/// Answers 429 `too_many_connections` on a connection over `max_connections`, and closes it.
pub(super) fn too_many_connections(socket: TcpStream) {
    answer_and_close(
        socket,
        &canned(
            "429 Too Many Requests",
            "too_many_connections",
            "the server has reached max_connections; retry shortly",
        ),
    );
}

/// Answers 408 `request_timeout` on a connection whose request head did not arrive within
/// the header timeout, and closes it.
pub(super) fn request_timeout(socket: TcpStream) {
    answer_and_close(
        socket,
        &canned(
            "408 Request Timeout",
            "request_timeout",
            "the request head did not arrive within header_timeout_ms",
        ),
    );
}
