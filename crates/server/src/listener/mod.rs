//! The client listeners (HTTP and HTTPS): an accept loop with the hostile-input limits that
//! `axum::serve` does not offer.
//!
//! - **Connections**: at most `max_connections` at once; one more is answered
//!   429 `too_many_connections` and closed, so the process never runs out of descriptors.
//! - **Slow senders**: an HTTP/1 request head must arrive whole within `header_timeout` of
//!   its first bytes (our own deadline, [`activity`], not hyper's per-request timer). A
//!   connection that had started a request then gets 408 `request_timeout` with a JSON body
//!   and is closed; an idle keep-alive connection is closed silently (an answer nobody asked
//!   for could be read as the answer to the client's next request).
//! - **Head size**: hyper's read buffer is bounded (`head_buffer`), beyond which it answers
//!   431 itself; the router's `gate` middleware refuses heads over `max_header_bytes`
//!   with a JSON 431 first.
//!
//! The same loop serves HTTPS (`tls`): the TLS handshake must finish within the header
//! timeout, and refusals over TLS close the connection without an HTTP answer.
//!
//! Each connection also gets its client address as `ConnectInfo`, for per-client limits.
//!
//! The rooms: this module accepts and counts connections; [`connection`] serves one (plain
//! or TLS, HTTP or the peer stream, the 408); [`activity`] watches a connection's reads and
//! writes, closes it when idle and ends it when a request head is late; [`refuse`] writes the canned 429 and 408; [`sniff`] tells
//! the peer stream from HTTP; [`prefixed`] hands sniffed bytes back; [`threads`] runs the
//! client connections' own threads and says where each connection goes; [`routers`] gives
//! each serving thread a router of its own.

mod activity;
mod connection;
mod prefixed;
mod refuse;
pub mod routers;
mod sniff;
pub mod threads;

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use activity::{Activity, Watched};
use connection::Connection;
use routers::Routers;
use threads::{Place, Spread};

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

/// Serves `routers` on `listener` (HTTPS when `tls` is given; its certificates can be reloaded
/// while serving) until `stop` turns true, then lets open connections finish their requests
/// (the caller bounds how long it waits). With `stream_to` (the peer port), connections that
/// open with the peer stream's preface are served by [`statemanager_raft::peer_stream`]
/// for that node instead of HTTP, under the same connection limit, TLS and idle rule.
/// Connections go to the runtime's workers and the connection threads of `spread` in turn
/// (or all to the workers while the spread's condition holds, see [`Spread`]), each served by
/// its place's router.
///
/// It cannot fail: a failed accept (EMFILE and the like) is logged and retried.
pub async fn serve(
    listener: TcpListener,
    routers: Routers,
    limits: ListenerLimits,
    tls: Option<RustlsConfig>,
    stream_to: Option<statemanager_raft::Node>,
    mut spread: Spread,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // The head deadline is `activity::supervise`'s; hyper would arm a timer per request.
        .header_read_timeout(None)
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
                    refuse::too_many_connections(socket);
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
        let acceptor = tls
            .as_ref()
            .map(|config| tokio_rustls::TlsAcceptor::from(config.get_inner()));
        let activity = Arc::new(Activity::new());
        let place = spread.next_place();
        let connection = Connection {
            peer,
            activity: activity.clone(),
            spare,
            header_timeout: limits.header_timeout,
            app: routers.for_place(&place),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            stream_to: stream_to.clone(),
            stop: stop.clone(),
        };
        match place {
            Place::Workers => {
                metrics::counter!("statemanager_connections_total", "thread" => "workers")
                    .increment(1);
                let watched = Watched::new(stream, activity);
                tokio::spawn(async move {
                    let _permit = permit;
                    connection.serve(watched, acceptor).await;
                });
            }
            Place::Thread { number, handle } => {
                metrics::counter!("statemanager_connections_total", "thread" => number.to_string())
                    .increment(1);
                // The socket leaves this runtime's event loop and joins the thread's.
                let socket = match stream.into_std() {
                    Ok(socket) => socket,
                    Err(e) => {
                        tracing::warn!("cannot hand a connection to its thread: {e}");
                        continue;
                    }
                };
                handle.spawn(async move {
                    let _permit = permit;
                    match tokio::net::TcpStream::from_std(socket) {
                        Ok(stream) => {
                            let watched = Watched::new(stream, activity);
                            connection.serve(watched, acceptor).await;
                        }
                        Err(e) => {
                            tracing::warn!("a connection thread cannot take a connection: {e}")
                        }
                    }
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}
