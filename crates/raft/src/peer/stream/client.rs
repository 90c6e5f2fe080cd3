//! The client side of the peer stream: a pool of idle connections per peer.
//!
//! A call takes an idle connection (or opens one: TCP, TLS under `peer_tls`, preface, hello),
//! writes its request frame, reads the answer frame and puts the connection back. An idle
//! connection is not reused once it has been idle for [`PEER_POOL_IDLE`] (peer ports close
//! idle connections after twice that) or once anything arrived on it while idle (the peer
//! closed it, or broke the protocol): the check costs one poll, no system call when nothing
//! is there.

use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Serialize;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, BufReader};
use tokio::net::TcpStream;

use super::frame::{self, FrameBuf};
use super::{Hello, Kind, ANSWERED, MAX_HELLO, PREFACE, REFUSED, VERSION};
use crate::cluster_id::{cluster_id_of, ClusterId};
use crate::cluster_time::{AnswerStamp, ClusterTime};
use crate::peer::credentials::{PeerCredentials, PeerTls, PeerTlsError};
/// Why a call has no answer (defined with the peer transport's other errors).
pub use crate::peer::error::CallError;
use crate::peer::error::HelloAnswerError;
use crate::peer::marks::PeerMarks;
use crate::peer::wire::{MAX_PEER_BODY, PEER_POOL_IDLE};
use crate::types::NodeId;
use crate::Reason;

/// Time allowed to open a TCP connection to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Read buffer of a connection.
const READ_BUFFER: usize = 64 * 1024;
/// Most idle connections kept per peer.
const MAX_IDLE_PER_PEER: usize = 8;

/// A byte stream to a peer (TCP, or TLS over TCP).
trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

type Conn = BufReader<Box<dyn Io>>;

struct Idle {
    conn: Conn,
    since: Instant,
    /// The TLS generation it was opened with (see [`StreamPool::reload_tls`]).
    generation: u64,
}

/// Idle connections to every peer, and how to open new ones.
pub struct StreamPool {
    idle: Mutex<HashMap<String, Vec<Idle>>>,
    /// Peers that answered the preface with HTTP: spoken to over HTTP only for a while
    /// ([`PeerMarks`]), then the stream is tried again (they may have been upgraded).
    http_only: PeerMarks,
    tls: RwLock<Option<Arc<rustls::ClientConfig>>>,
    tls_files: Option<PeerTls>,
    generation: AtomicU64,
    authorization: Option<String>,
    cluster_id: ClusterId,
    time: Arc<ClusterTime>,
    /// The runtime the pool was made on (the node's): its sockets are opened there, so a
    /// connection a request opened on one of the server's connection threads is still
    /// driven by the node's event loop when Raft reuses it.
    home: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for StreamPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamPool").finish_non_exhaustive()
    }
}

fn read_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, PeerTlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| PeerTlsError::invalid(what, path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| PeerTlsError::invalid(what, path, e))?;
    if certs.is_empty() {
        return Err(PeerTlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The TLS client configuration of a node: the cluster's CA as the only root, and the
/// node's own certificate as its client certificate.
fn client_config(tls: &PeerTls) -> Result<Arc<rustls::ClientConfig>, PeerTlsError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(&tls.ca_cert, "ca_cert")? {
        roots
            .add(cert)
            .map_err(|e| PeerTlsError::invalid("ca_cert", &tls.ca_cert, e))?;
    }
    let chain = read_certs(&tls.cert_file, "cert_file")?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| PeerTlsError::invalid("key_file", &tls.key_file, e))?;
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| PeerTlsError::Identity {
            source: Box::new(e),
        })?;
    Ok(Arc::new(config))
}

/// Whether anything arrived on an idle connection (EOF, bytes, an error): then it cannot be
/// reused. One poll with a waker that does nothing: a pending read is the healthy case.
fn disturbed(conn: &mut Conn) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    !matches!(Pin::new(conn).poll_fill_buf(&mut cx), Poll::Pending)
}

impl StreamPool {
    /// A pool presenting `credentials` (the secret in each hello, the node's certificate
    /// under `peer_tls`) and this node's cluster id and cluster time (`time`) with each call.
    /// Its sockets are opened on the runtime it is made on, if any.
    pub fn new(
        cluster_id: ClusterId,
        credentials: &PeerCredentials,
        time: Arc<ClusterTime>,
    ) -> Result<Self, PeerTlsError> {
        let tls = credentials.tls.as_ref().map(client_config).transpose()?;
        Ok(StreamPool {
            idle: Mutex::new(HashMap::new()),
            http_only: PeerMarks::default(),
            tls: RwLock::new(tls),
            tls_files: credentials.tls.clone(),
            generation: AtomicU64::new(0),
            authorization: credentials
                .secret
                .as_ref()
                .map(|s| s.header_value().to_string()),
            cluster_id,
            time,
            home: tokio::runtime::Handle::try_current().ok(),
        })
    }

    /// Reads the TLS files again (SIGHUP): connections opened from now on present the new
    /// certificate, and idle ones opened with the old one are closed. On error the current
    /// configuration stays.
    pub fn reload_tls(&self) -> Result<(), PeerTlsError> {
        let Some(files) = &self.tls_files else {
            return Ok(());
        };
        let config = client_config(files)?;
        *self.tls.write().unwrap_or_else(|p| p.into_inner()) = Some(config);
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }

    fn take_idle(&self, addr: &str) -> Option<Conn> {
        let generation = self.generation.load(Ordering::SeqCst);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(addr)?;
        while let Some(mut candidate) = list.pop() {
            if candidate.generation == generation
                && candidate.since.elapsed() < PEER_POOL_IDLE
                && !disturbed(&mut candidate.conn)
            {
                return Some(candidate.conn);
            }
        }
        None
    }

    fn put_idle(&self, addr: &str, conn: Conn, generation: u64) {
        if generation != self.generation.load(Ordering::SeqCst) {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(addr.to_string()).or_default();
        if list.len() < MAX_IDLE_PER_PEER {
            list.push(Idle {
                conn,
                since: Instant::now(),
                generation,
            });
        }
    }

    /// Opens a connection to `addr` and says hello.
    async fn connect(&self, addr: &str) -> Result<Conn, CallError> {
        if self.http_only.is_marked(addr) {
            return Err(CallError::HttpOnly);
        }
        metrics::counter!("statemanager_peer_stream_connects_total").increment(1);
        let target = addr.to_string();
        let connecting = async move { TcpStream::connect(target).await };
        let connected = match &self.home {
            Some(home) => {
                let opened = home.spawn(connecting);
                tokio::time::timeout(CONNECT_TIMEOUT, async {
                    opened
                        .await
                        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                })
                .await
            }
            None => tokio::time::timeout(CONNECT_TIMEOUT, connecting).await,
        };
        let tcp = match connected {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(not_sent("cannot connect to", addr, e)),
            Err(_) => return Err(timed_out("cannot connect to", addr)),
        };
        let _ = tcp.set_nodelay(true);
        let tls = self.tls.read().unwrap_or_else(|p| p.into_inner()).clone();
        let io: Box<dyn Io> = match tls {
            None => Box::new(tcp),
            Some(config) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(host.to_string())
                    .map_err(|e| not_sent("no TLS server name for", addr, e))?;
                let connector = tokio_rustls::TlsConnector::from(config);
                match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp)).await {
                    Ok(Ok(stream)) => Box::new(stream),
                    Ok(Err(e)) => return Err(not_sent("TLS handshake with", addr, e)),
                    Err(_) => return Err(timed_out("TLS handshake with", addr)),
                }
            }
        };
        let mut conn = BufReader::with_capacity(READ_BUFFER, io);
        let mut hello = FrameBuf::with_capacity(128);
        hello
            .encode(&Hello {
                version: VERSION,
                authorization: self.authorization.clone(),
            })
            .map_err(|e| not_sent("cannot encode the hello to", addr, e))?;
        let hello = hello
            .finish()
            .ok_or_else(|| CallError::NotSent(format!("hello too large for {addr}: ?").into()))?;
        let mut opening = PREFACE.to_vec();
        opening.extend_from_slice(&hello);
        let answer = tokio::time::timeout(CONNECT_TIMEOUT, async {
            frame::write(&mut conn, &opening).await?;
            // A peer that speaks HTTP only answers the preface with an HTTP error.
            let start = tokio::io::AsyncBufReadExt::fill_buf(&mut conn).await?;
            if start.starts_with(b"HTTP/") {
                return Ok(None);
            }
            frame::read(&mut conn, MAX_HELLO).await.map(Some)
        })
        .await;
        let answer = match answer {
            Ok(Ok(Some(answer))) => answer,
            Ok(Ok(None)) => {
                tracing::info!(
                    peer = addr,
                    "peer speaks HTTP only; using HTTP for its RPCs"
                );
                self.http_only.mark(addr);
                return Err(CallError::HttpOnly);
            }
            Ok(Err(e)) => return Err(not_sent("no hello from", addr, e)),
            Err(_) => return Err(timed_out("no hello from", addr)),
        };
        match read_hello_answer(&answer) {
            Ok(()) => Ok(conn),
            Err(HelloAnswerError::Refused(reason)) => Err(CallError::Refused(reason)),
            Err(HelloAnswerError::Undecodable(e)) => {
                Err(not_sent("undecodable hello answer from", addr, e))
            }
        }
    }

    /// Calls `kind` with `request` on the peer at `addr` (node `peer`, when known: the clock
    /// sample of the call is filed under it); the answer's postcard bytes, or why there are
    /// none. The whole call (connecting included) is bounded by `timeout`.
    ///
    /// The request carries this node's [`crate::cluster_time::CallStamp`] after the cluster
    /// id; the answer carries the peer's [`AnswerStamp`] before the answer, which is taken in
    /// here (cluster time, and one NTP sample of the peer's clock).
    pub async fn call<R: Serialize>(
        &self,
        addr: &str,
        peer: Option<NodeId>,
        kind: Kind,
        request: &R,
        timeout: Duration,
    ) -> Result<Vec<u8>, CallError> {
        let mut frame = FrameBuf::with_capacity(1024);
        frame.extend(&[kind as u8]);
        frame
            .encode(&cluster_id_of(&self.cluster_id))
            .and_then(|_| frame.encode(&self.time.call_stamp()))
            .and_then(|_| frame.encode(request))
            .map_err(|e| CallError::NotSent(Reason::caused("cannot encode the request", e)))?;
        let frame = frame
            .finish()
            .ok_or_else(|| CallError::NotSent("request too large".into()))?;
        let deadline = tokio::time::Instant::now() + timeout;
        let (body, t0) = self.send(addr, &frame, deadline).await?;
        let t3 = self.time.wall();
        let (stamp, answer) = split_answer(&body).map_err(|e| {
            CallError::Lost(Reason::caused(format!("malformed answer from {addr}"), e))
        })?;
        self.time.on_answer(peer, t0, &stamp, t3);
        Ok(answer.to_vec())
    }

    /// Sends a finished request frame and reads its answer (see [`StreamPool::call`]), with
    /// this node's clock when the frame was written.
    async fn send(
        &self,
        addr: &str,
        frame: &[u8],
        deadline: tokio::time::Instant,
    ) -> Result<(Vec<u8>, u64), CallError> {
        // A pooled connection the peer has just closed fails on write, before the peer could
        // read the request: one more try on a new connection is safe.
        for reused in [true, false] {
            let generation = self.generation.load(Ordering::SeqCst);
            let pooled = if reused { self.take_idle(addr) } else { None };
            let was_pooled = pooled.is_some();
            if reused && !was_pooled {
                continue;
            }
            let mut conn = match pooled {
                Some(conn) => conn,
                None => match tokio::time::timeout_at(deadline, self.connect(addr)).await {
                    Ok(conn) => conn?,
                    Err(_) => return Err(timed_out("connecting to", addr)),
                },
            };
            let t0 = self.time.wall();
            match tokio::time::timeout_at(deadline, frame::write(&mut conn, frame)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) if was_pooled => continue,
                Ok(Err(e)) => return Err(not_sent("writing to", addr, e)),
                // write_all had not handed the whole frame to the kernel.
                Err(_) => return Err(timed_out("writing to", addr)),
            }
            let answer = match tokio::time::timeout_at(
                deadline,
                frame::read(&mut conn, MAX_PEER_BODY),
            )
            .await
            {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    return Err(CallError::Lost(Reason::caused(
                        format!("reading from {addr}"),
                        e,
                    )))
                }
                Err(_) => {
                    return Err(CallError::Lost(
                        format!("no answer from {addr} in time").into(),
                    ))
                }
            };
            self.put_idle(addr, conn, generation);
            return open_answer(&answer, addr).map(|body| (body, t0));
        }
        Err(CallError::NotSent(
            format!("no connection to {addr}").into(),
        ))
    }
}

/// The call never reached `addr` whole: `what addr: error`, the error kept as the source.
fn not_sent(
    what: &str,
    addr: &str,
    error: impl std::error::Error + Send + Sync + 'static,
) -> CallError {
    CallError::NotSent(Reason::caused(format!("{what} {addr}"), error))
}

/// The call never reached `addr` whole: `what addr` did not finish in time.
fn timed_out(what: &str, addr: &str) -> CallError {
    CallError::NotSent(format!("{what} {addr}: timed out").into())
}

/// The body of an answer frame from `addr` (`[ANSWERED][body]`), or the peer's refusal.
pub fn open_answer(answer: &[u8], addr: &str) -> Result<Vec<u8>, CallError> {
    match answer.split_first() {
        Some((&ANSWERED, body)) => Ok(body.to_vec()),
        Some((&REFUSED, reason)) => Err(CallError::Refused(
            postcard::from_bytes::<String>(reason)
                .unwrap_or_else(|_| "(undecodable reason)".into()),
        )),
        _ => Err(CallError::Lost(
            format!("malformed answer from {addr}").into(),
        )),
    }
}

/// Splits an answered body (protocol version 2) into the peer's clock stamp and the answer.
pub fn split_answer(body: &[u8]) -> Result<(AnswerStamp, &[u8]), postcard::Error> {
    postcard::take_from_bytes::<AnswerStamp>(body)
}

/// Decodes the answer to a hello: `Ok` when the peer admitted this node, else the peer's
/// reason or why the answer could not be read.
pub fn read_hello_answer(answer: &[u8]) -> Result<(), HelloAnswerError> {
    // On the wire the peer's reason is text (`Result<(), String>`).
    postcard::from_bytes::<Result<(), String>>(answer)
        .map_err(HelloAnswerError::Undecodable)?
        .map_err(HelloAnswerError::Refused)
}

#[cfg(test)]
mod tests;
