//! One accepted connection, from the socket to its end: plain or over TLS, the peer stream
//! or HTTP (hyper), the idle rule, and the 408 for a request head that came too slowly.
//!
//! Plain and TLS connections share [`Connection::http`] and [`Connection::peer_stream`],
//! generic over the stream: each path is compiled for its own stream type, so sharing them
//! costs the plain path nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use statemanager_raft::peer_stream::PREFACE;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use super::activity::{supervise, Activity, Serving, Supervised, Watched};
use super::prefixed::Prefixed;
use super::refuse;
use super::sniff::{sniff_plain, sniff_tls};

/// What to do when a request head is late (`header_timeout` after its first bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlowHead {
    /// Answer 408 `request_timeout` on the duplicated descriptor (plain HTTP).
    Answer408,
    /// Close without an answer (over TLS the answer would have to be written through the
    /// TLS session that was dropped).
    Close,
}

/// An accepted connection and what serving it needs.
pub(super) struct Connection {
    /// The client's address (`ConnectInfo`, for per-client limits and refusal logs).
    pub(super) peer: SocketAddr,
    /// What the connection has been doing (shared with its [`Watched`] stream).
    pub(super) activity: Arc<Activity>,
    /// A second handle on the socket, to answer 408 or close an idle connection after hyper
    /// gave the stream up.
    pub(super) spare: Option<std::net::TcpStream>,
    /// The bound on a request head, a TLS handshake and a connection's silence.
    pub(super) header_timeout: Duration,
    /// The routes.
    pub(super) app: Router,
    /// hyper's connection builder (HTTP/1.1 and h2c, with the head limits).
    pub(super) builder: Arc<auto::Builder<TokioExecutor>>,
    /// Holds the graceful shutdown until the connection ends.
    pub(super) watcher: Watcher,
    /// On the peer port: the node whose peer stream a connection opening with the preface
    /// is handed to.
    pub(super) stream_to: Option<statemanager_raft::Node>,
    /// Tells a peer stream to stop.
    pub(super) stop: watch::Receiver<bool>,
}

impl Connection {
    /// Serves the connection to its end: over TLS when `tls` is given.
    pub(super) async fn serve(self, stream: Watched, tls: Option<TlsAcceptor>) {
        match tls {
            None => self.plain(stream).await,
            Some(acceptor) => self.tls(acceptor, stream).await,
        }
    }

    async fn plain(mut self, stream: Watched) {
        if let Some(node) = self.stream_to.take() {
            match sniff_plain(stream.tcp(), self.header_timeout).await {
                Some(true) => return self.peer_stream(node, stream).await,
                Some(false) => {}
                // Silent for a whole header timeout: closed, as hyper would.
                None => return,
            }
        }
        self.http(stream, SlowHead::Answer408).await
    }

    async fn tls(mut self, acceptor: TlsAcceptor, stream: Watched) {
        // A handshake is held to the same bound as a request head.
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(self.header_timeout, acceptor.accept(stream)).await
        else {
            return;
        };
        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
            self.activity.set_http2();
        }
        let mut prefix = Vec::new();
        if let Some(node) = self.stream_to.take() {
            let Some(first) = sniff_tls(&mut stream, self.header_timeout).await else {
                return;
            };
            if first == PREFACE {
                return self.peer_stream(node, Prefixed::new(first, stream)).await;
            }
            prefix = first;
        }
        self.http(Prefixed::new(prefix, stream), SlowHead::Close)
            .await
    }

    /// Hands the connection to `node`'s peer stream.
    async fn peer_stream<S: AsyncRead + AsyncWrite + Unpin>(
        self,
        node: statemanager_raft::Node,
        stream: S,
    ) {
        let served = statemanager_raft::peer_stream::server::serve(node, stream, self.stop);
        supervise(
            served,
            &self.activity,
            &self.spare,
            self.header_timeout,
            false,
        )
        .await;
        // The graceful-shutdown watcher is held until the stream ends.
        drop(self.watcher);
    }

    /// Serves HTTP on the connection with hyper.
    async fn http<S>(self, stream: S, slow: SlowHead)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            peer,
            activity,
            spare,
            header_timeout,
            app,
            builder,
            watcher,
            ..
        } = self;
        let heads = activity.clone();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                heads.head_read();
                let serving = Serving::new(heads.clone());
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                let mut app = app.clone();
                async move {
                    let answer = app.call(request.map(axum::body::Body::new)).await;
                    drop(serving);
                    answer
                }
            },
        );
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let outcome = supervise(
            watcher.watch(connection),
            &activity,
            &spare,
            header_timeout,
            true,
        )
        .await;
        if !matches!(outcome, Supervised::LateHead) {
            return;
        }
        if slow == SlowHead::Answer408 {
            statemanager_api::limits::log_refusal(
                peer.ip(),
                408,
                "the request head arrived too slowly (header_timeout_ms)",
            );
        }
        let Some(socket) = spare else { return };
        match slow {
            SlowHead::Answer408 => refuse::request_timeout(socket),
            SlowHead::Close => {
                let _ = socket.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}
