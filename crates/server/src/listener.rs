//! The client listeners (HTTP and HTTPS): an accept loop with the hostile-input limits that
//! `axum::serve` does not offer.
//!
//! - **Connections**: at most `max_connections` at once; one more is answered
//!   429 `too_many_connections` and closed, so the process never runs out of descriptors.
//! - **Slow senders**: a request head must arrive within `header_timeout` (hyper's
//!   `header_read_timeout`). A connection that had started a request then gets
//!   408 `request_timeout` with a JSON body and is closed; an idle keep-alive connection is
//!   closed silently (an answer nobody asked for could be read as the answer to the client's
//!   next request).
//! - **Head size**: hyper's read buffer is bounded (`head_buffer`), beyond which it answers
//!   431 itself; the router's `gate` middleware refuses heads over `max_header_bytes`
//!   with a JSON 431 first.
//!
//! The same loop serves HTTPS (`tls`): the TLS handshake must finish within the header
//! timeout, and refusals over TLS close the connection without an HTTP answer.
//!
//! Each connection also gets its client address as `ConnectInfo`, for per-client limits.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::Service;

/// The listener's limits.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time allowed for a request head to arrive.
    pub header_timeout: Duration,
    /// Largest head the router accepts (hyper's own buffer is twice that, at least 8 KiB).
    pub max_header_bytes: usize,
}

impl ListenerLimits {
    /// hyper's read-buffer bound: room for a head of `max_header_bytes` plus the start of a
    /// body, so our JSON 431 answers first; hyper's bodiless 431 only beyond it.
    pub fn head_buffer(&self) -> usize {
        (self.max_header_bytes * 2).max(8192)
    }
}

/// A canned answer written straight to a socket (no request was parsed, or none completed).
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
fn answer_and_close(socket: std::net::TcpStream, bytes: &[u8]) {
    use std::io::Write;
    let mut socket = socket;
    let _ = socket.write(bytes);
    let _ = socket.shutdown(std::net::Shutdown::Both);
}

/// What a connection has been doing: whether a request has started and not yet been
/// answered (bytes read since the last bytes written), and since when it has been quiet.
#[derive(Debug, Default)]
struct Activity {
    request_started: AtomicBool,
    quiet_since_ms: AtomicU64,
}

/// Milliseconds on a process-wide monotonic clock.
fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl Activity {
    fn new() -> Self {
        let a = Activity::default();
        a.quiet_since_ms.store(now_ms(), Ordering::Relaxed);
        a
    }

    fn read(&self) {
        self.request_started.store(true, Ordering::Relaxed);
    }

    fn wrote(&self) {
        self.request_started.store(false, Ordering::Relaxed);
        self.quiet_since_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Quiet (no request under way) for at least `limit`.
    fn idle_for(&self, limit: Duration) -> bool {
        !self.request_started.load(Ordering::Relaxed)
            && now_ms().saturating_sub(self.quiet_since_ms.load(Ordering::Relaxed))
                >= limit.as_millis() as u64
    }
}

/// A stream that reports its reads and writes to an [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Drives `connection` to its end, closing the socket (through `spare`) once the connection
/// has been quiet, with no request under way, for `idle`: hyper bounds a request head once
/// it has started, but not the wait for the first bytes (while it tells HTTP/1 from HTTP/2)
/// nor, over HTTP/2, an idle connection; such silent connections would otherwise hold a
/// `max_connections` slot for ever. A request being served (a `get_data` wait included) is
/// never idle.
async fn close_when_idle<F: std::future::Future>(
    connection: F,
    activity: &Activity,
    spare: &Option<std::net::TcpStream>,
    idle: Duration,
) -> F::Output {
    tokio::pin!(connection);
    let tick = (idle / 2).max(Duration::from_millis(50));
    let mut closed = false;
    loop {
        tokio::select! {
            outcome = &mut connection => return outcome,
            _ = tokio::time::sleep(tick), if !closed => {
                if activity.idle_for(idle) {
                    if let Some(socket) = spare {
                        let _ = socket.shutdown(std::net::Shutdown::Both);
                    }
                    closed = true;
                }
            }
        }
    }
}

/// Whether a connection error is hyper's header-read timeout.
fn is_header_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_timeout())
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// A stream that first yields bytes already read from `inner`, then `inner` itself.
struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What a peer-port connection opens with, seen without consuming it (plain TCP): `Some(true)`
/// for the peer stream's preface, `Some(false)` for anything else, `None` when nothing
/// arrived within `limit` (or the peer closed).
async fn sniff_plain(stream: &TcpStream, limit: Duration) -> Option<bool> {
    let preface = statemanager_raft::peer_stream::PREFACE;
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
        if !preface.starts_with(&buf[..n]) {
            return Some(false);
        }
        if n == preface.len() {
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
async fn sniff_tls<S: AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let preface = statemanager_raft::peer_stream::PREFACE;
    let mut buf = vec![0u8; preface.len()];
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + limit;
    while got < buf.len() && preface.starts_with(&buf[..got]) {
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

/// Serves `app` on `listener` (HTTPS when `tls` is given; its certificates can be reloaded
/// while serving) until `stop` turns true, then lets open connections finish their requests
/// (the caller bounds how long it waits). With `stream_to` (the peer port), connections that
/// open with the peer stream's preface are served by [`statemanager_raft::peer_stream`]
/// for that node instead of HTTP, under the same connection limit, TLS and idle rule.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenerLimits,
    tls: Option<RustlsConfig>,
    stream_to: Option<statemanager_raft::Node>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.head_buffer());
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            statemanager_api::limits::log_refusal(
                peer.ip(),
                429,
                "too many connections (max_connections)",
            );
            // Over TLS no answer can be written before a handshake: the connection is closed.
            if tls.is_none() {
                if let Ok(socket) = stream.into_std() {
                    answer_and_close(
                        socket,
                        &canned(
                            "429 Too Many Requests",
                            "too_many_connections",
                            "the server has reached max_connections; retry shortly",
                        ),
                    );
                }
            }
            continue;
        };
        // A second handle on the socket, to answer 408 after hyper gave the stream up.
        let spare = stream
            .as_fd()
            .try_clone_to_owned()
            .map(std::net::TcpStream::from)
            .ok();
        let activity = Arc::new(Activity::new());
        let watched = Watched {
            inner: stream,
            activity: activity.clone(),
        };
        let app = app.clone();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                let mut app = app.clone();
                async move { app.call(request.map(axum::body::Body::new)).await }
            },
        );
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = tls
            .as_ref()
            .map(|config| tokio_rustls::TlsAcceptor::from(config.get_inner()));
        let header_timeout = limits.header_timeout;
        let stream_node = stream_to.clone();
        let stream_stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let outcome = match acceptor {
                None => {
                    if let Some(node) = stream_node {
                        match sniff_plain(&watched.inner, header_timeout).await {
                            Some(true) => {
                                let served = statemanager_raft::peer_stream::server::serve(
                                    node,
                                    watched,
                                    stream_stop,
                                );
                                // The graceful-shutdown watcher is held until it ends.
                                close_when_idle(served, &activity, &spare, header_timeout).await;
                                drop(watcher);
                                return;
                            }
                            Some(false) => {}
                            // Silent for a whole header timeout: closed, as hyper would.
                            None => return,
                        }
                    }
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(watched), service)
                        .into_owned();
                    close_when_idle(watcher.watch(connection), &activity, &spare, header_timeout)
                        .await
                }
                Some(acceptor) => {
                    // A handshake is held to the same bound as a request head.
                    let Ok(Ok(mut stream)) =
                        tokio::time::timeout(header_timeout, acceptor.accept(watched)).await
                    else {
                        return;
                    };
                    let mut prefix = Vec::new();
                    if let Some(node) = stream_node {
                        let Some(first) = sniff_tls(&mut stream, header_timeout).await else {
                            return;
                        };
                        if first == statemanager_raft::peer_stream::PREFACE {
                            let served = statemanager_raft::peer_stream::server::serve(
                                node,
                                Prefixed {
                                    prefix: first,
                                    pos: 0,
                                    inner: stream,
                                },
                                stream_stop,
                            );
                            close_when_idle(served, &activity, &spare, header_timeout).await;
                            drop(watcher);
                            return;
                        }
                        prefix = first;
                    }
                    let stream = Prefixed {
                        prefix,
                        pos: 0,
                        inner: stream,
                    };
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    // Over TLS a slow request is closed without a 408 (the answer would
                    // have to be written through the TLS session hyper gave up).
                    let _ = close_when_idle(
                        watcher.watch(connection),
                        &activity,
                        &spare,
                        header_timeout,
                    )
                    .await;
                    return;
                }
            };
            if let Err(e) = outcome {
                let started = activity.request_started.load(Ordering::Relaxed);
                if is_header_timeout(&*e) && started {
                    statemanager_api::limits::log_refusal(
                        peer.ip(),
                        408,
                        "the request head arrived too slowly (header_timeout_ms)",
                    );
                    if let Some(socket) = spare {
                        answer_and_close(
                            socket,
                            &canned(
                                "408 Request Timeout",
                                "request_timeout",
                                "the request head did not arrive within header_timeout_ms",
                            ),
                        );
                    }
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
