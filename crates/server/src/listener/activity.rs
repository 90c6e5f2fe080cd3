//! What a connection has been doing, and ending it when it has been idle too long or a
//! request head is late.
//!
//! Every accepted stream is wrapped in [`Watched`], which notes whether bytes were read since
//! the last bytes written (a request has started and is unanswered), when that request's
//! first bytes came, and since when the connection has been quiet; the routes note when a
//! head has been read whole ([`Activity::head_read`]) and hold a [`Serving`] until its answer
//! is ready (an HTTP/2 connection may serve several requests at once). [`supervise`] uses that to free the
//! `max_connections` slot of a silent connection, and to end an HTTP/1 connection whose
//! request head is still incomplete `header_timeout` after its first bytes (the caller then
//! answers 408 or closes, see [`super::connection`]).
//!
//! The head deadline is ours rather than hyper's `header_read_timeout`: hyper arms a timer in
//! Tokio's timer wheel for every request head and disarms it when the head is parsed, which
//! cost about 2 % of a fetch's CPU; here a request costs one clock read, and the connection's
//! watcher wakes only every half `header_timeout` (see `docs/design.md`).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What a connection has been doing: whether a request has started and not yet been
/// answered (bytes read since the last bytes written), when its first bytes came, whether its
/// head has been read whole, and since when the connection has been quiet.
#[derive(Debug, Default)]
pub(super) struct Activity {
    request_started: AtomicBool,
    quiet_since_ms: AtomicU64,
    /// When the request under way sent its first bytes, on [`now_ms`]'s clock.
    started_ms: AtomicU64,
    /// Whether the head of the request under way has reached the routes.
    head_read: AtomicBool,
    /// An HTTP/2 connection: no head deadline (its frames are not a head; hyper had none
    /// for HTTP/2 either).
    http2: AtomicBool,
    /// Requests handed to the routes and not yet answered ([`Serving`]). An HTTP/2
    /// connection may have several, and writes for one stream say nothing of the others.
    serving: AtomicUsize,
}

/// Milliseconds on a process-wide monotonic clock.
fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// How the client's first bytes begin on a plain HTTP/2 connection (the preface, RFC 9113
/// section 3.4); no HTTP/1 method is spelt so.
const HTTP2_PREFACE_START: &[u8] = b"PRI ";

impl Activity {
    /// A connection just accepted: quiet since now, no request under way.
    pub(super) fn new() -> Self {
        let a = Activity::default();
        a.quiet_since_ms.store(now_ms(), Ordering::Relaxed);
        a
    }

    /// Bytes were read. Only the connection's own task reads and writes, so the flag needs
    /// no read-modify-write.
    fn read(&self) {
        if !self.request_started.load(Ordering::Relaxed) {
            self.started_ms.store(now_ms(), Ordering::Relaxed);
            self.head_read.store(false, Ordering::Relaxed);
            self.request_started.store(true, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.request_started.store(false, Ordering::Relaxed);
        self.quiet_since_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The head of the request under way has been read whole (hyper hands it to the routes).
    pub(super) fn head_read(&self) {
        self.head_read.store(true, Ordering::Relaxed);
    }

    /// The connection speaks HTTP/2 (its preface was read, or TLS negotiated `h2`).
    pub(super) fn set_http2(&self) {
        self.http2.store(true, Ordering::Relaxed);
    }

    /// Quiet (no request under way, none being served) for at least `limit`.
    fn idle_for(&self, limit: Duration) -> bool {
        !self.request_started.load(Ordering::Relaxed)
            && self.serving.load(Ordering::Relaxed) == 0
            && now_ms().saturating_sub(self.quiet_since_ms.load(Ordering::Relaxed))
                >= limit.as_millis() as u64
    }

    /// How long until the HTTP/1 head under way is `limit` late: `None` when no head is
    /// under way, zero once it is late.
    fn head_due_in(&self, limit: Duration) -> Option<Duration> {
        if self.http2.load(Ordering::Relaxed)
            || !self.request_started.load(Ordering::Relaxed)
            || self.head_read.load(Ordering::Relaxed)
        {
            return None;
        }
        let due = self
            .started_ms
            .load(Ordering::Relaxed)
            .saturating_add(limit.as_millis() as u64);
        Some(Duration::from_millis(due.saturating_sub(now_ms())))
    }
}

/// A request being served on a connection: while one is alive, the connection is not idle,
/// whatever it reads or writes meanwhile (an HTTP/2 connection answers one stream while
/// another waits in its handler). Made when the routes get the request, dropped when its
/// answer is ready or the request is abandoned.
pub(super) struct Serving(Arc<Activity>);

impl Serving {
    /// Counts a request of `activity`'s connection as being served.
    pub(super) fn new(activity: Arc<Activity>) -> Self {
        activity.serving.fetch_add(1, Ordering::Relaxed);
        Serving(activity)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.serving.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that reports its reads and writes to an [`Activity`].
pub(super) struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// Whether any bytes have been read yet (the first ones tell a plain HTTP/2 client).
    read_any: bool,
}

impl Watched {
    /// Wraps an accepted stream.
    pub(super) fn new(inner: TcpStream, activity: Arc<Activity>) -> Self {
        Watched {
            inner,
            activity,
            read_any: false,
        }
    }

    /// The socket itself (for peeking, which reads nothing).
    pub(super) fn tcp(&self) -> &TcpStream {
        &self.inner
    }
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
            if !self.read_any {
                self.read_any = true;
                if buf.filled()[before..].starts_with(HTTP2_PREFACE_START) {
                    self.activity.set_http2();
                }
            }
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

/// How [`supervise`] ended.
pub(super) enum Supervised<T> {
    /// The connection ended by itself, with this outcome.
    Ended(T),
    /// An HTTP/1 request head was still incomplete `header_timeout` after its first bytes;
    /// the connection has been dropped, and the caller answers 408 or closes.
    LateHead,
}

/// Drives `connection` to its end, closing the socket (through `spare`) once the connection
/// has been quiet, with no request under way, for `idle`: nothing else bounds the wait for a
/// request's first bytes, nor an idle HTTP/2 connection, and such silent connections would
/// otherwise hold a `max_connections` slot for ever. A request being served (a `get_data`
/// wait included) is never idle.
///
/// With `heads`, an HTTP/1 request head still incomplete `idle` after its first bytes ends
/// the watch with [`Supervised::LateHead`] (the connection is dropped). The watcher wakes every
/// half `idle` (at least 50 ms), and sleeps to the exact deadline once it sees a head under
/// way, so a late head is answered at its deadline.
pub(super) async fn supervise<F: std::future::Future>(
    connection: F,
    activity: &Activity,
    spare: &Option<std::net::TcpStream>,
    idle: Duration,
    heads: bool,
) -> Supervised<F::Output> {
    tokio::pin!(connection);
    let tick = (idle / 2).max(Duration::from_millis(50));
    let mut closed = false;
    loop {
        let head_due = heads.then(|| activity.head_due_in(idle)).flatten();
        if head_due == Some(Duration::ZERO) {
            return Supervised::LateHead;
        }
        let wake = head_due.map_or(tick, |due| due.min(tick));
        tokio::select! {
            outcome = &mut connection => return Supervised::Ended(outcome),
            _ = tokio::time::sleep(wake), if !closed => {
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
