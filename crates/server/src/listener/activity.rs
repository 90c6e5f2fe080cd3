//! What a connection has been doing, and closing it once it has been idle too long.
//!
//! Every accepted stream is wrapped in [`Watched`], which notes whether bytes were read since
//! the last bytes written (a request has started and is unanswered) and since when the
//! connection has been quiet. [`close_when_idle`] uses that to free the `max_connections`
//! slot of a silent connection; the 408 (see [`super::connection`]) uses it to answer only a
//! request that had started.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What a connection has been doing: whether a request has started and not yet been
/// answered (bytes read since the last bytes written), and since when it has been quiet.
#[derive(Debug, Default)]
pub(super) struct Activity {
    request_started: AtomicBool,
    quiet_since_ms: AtomicU64,
}

/// Milliseconds on a process-wide monotonic clock.
fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl Activity {
    /// A connection just accepted: quiet since now, no request under way.
    pub(super) fn new() -> Self {
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

    /// Whether a request has started (bytes read) and has not been answered yet.
    pub(super) fn request_started(&self) -> bool {
        self.request_started.load(Ordering::Relaxed)
    }

    /// Quiet (no request under way) for at least `limit`.
    fn idle_for(&self, limit: Duration) -> bool {
        !self.request_started.load(Ordering::Relaxed)
            && now_ms().saturating_sub(self.quiet_since_ms.load(Ordering::Relaxed))
                >= limit.as_millis() as u64
    }
}

/// A stream that reports its reads and writes to an [`Activity`].
pub(super) struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl Watched {
    /// Wraps an accepted stream.
    pub(super) fn new(inner: TcpStream, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
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
pub(super) async fn close_when_idle<F: std::future::Future>(
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
