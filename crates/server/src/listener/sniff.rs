//! Telling the peer stream from HTTP on the peer port, by the first bytes of a connection
//! (the peer stream opens with [`PREFACE`]).

use std::time::Duration;

use statemanager_raft::peer_stream::PREFACE;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

/// What a peer-port connection opens with, seen without consuming it (plain TCP): `Some(true)`
/// for the peer stream's preface, `Some(false)` for anything else, `None` when nothing
/// arrived within `limit` (or the peer closed).
pub(super) async fn sniff_plain(stream: &TcpStream, limit: Duration) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 8];
    for _ in 0..10_000 {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        if !PREFACE.starts_with(&buf[..n]) {
            return Some(false);
        }
        if n == PREFACE.len() {
            return Some(true);
        }
        // Part of the preface: the rest is on its way (peek does not wait for more).
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// The first bytes of a TLS connection (consumed: they must be handed on with the stream):
/// up to the preface's length, or fewer once they cannot be the preface. `None` when nothing
/// arrived within `limit`.
pub(super) async fn sniff_tls<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; PREFACE.len()];
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + limit;
    while got < buf.len() && PREFACE.starts_with(&buf[..got]) {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf[got..]))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    (!buf.is_empty()).then_some(buf)
}
