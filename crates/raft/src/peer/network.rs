//! The peer network: Raft RPCs between nodes over HTTP on the peer port.
//!
//! Appends, votes, hand-overs (`propose`) and read-index requests go over the peer stream
//! ([`crate::peer::stream`]); snapshots and everything else, and every RPC to a peer that
//! does not speak the stream, are `POST /raft/{append,vote,snapshot,...}` with a postcard
//! body, answered with a postcard `Result` of openraft's response or error. Every request carries
//! `x-statemanager-rpc: 1` (the format version), so a node refuses a peer speaking another
//! version instead of misreading it. Connections are kept alive and reused (one pool per
//! node); openraft batches entries into each append. A one-member cluster never sends one.
//!
//! Every request is built by [`PeerNetwork::request`]: HTTPS with this node's client
//! certificate when `peer_tls` is configured, and `Authorization: Bearer <cluster_secret>`
//! when a secret is; the peer server checks both (see `peer_server`).

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::credentials::{PeerCredentials, PeerTlsError};
use super::error::ReadIndexError;
use super::marks::PeerMarks;
use super::stream::client::{CallError, StreamPool};
use super::stream::Kind;
use super::wire::{CLUSTER_HEADER, PEER_POOL_IDLE, RPC_VERSION, RPC_VERSION_HEADER};
use crate::cluster_id::{cluster_id_of, ClusterId};
use crate::cluster_time::ClusterTime;
use crate::follower_read::{FollowerReadAnswer, FollowerReadRequest};
use crate::leader_read::LeaderReadRequest;
use crate::peer::snapshot_transfer;
use crate::types::{decode, encode, NodeId, TypeConfig, Vote};

fn read_pem(path: &Path, what: &'static str) -> Result<Vec<u8>, PeerTlsError> {
    std::fs::read(path).map_err(|source| PeerTlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Creates one client per peer, all sharing the connection pools: the peer stream's for the
/// hot RPCs (see [`crate::peer::stream`]), a keep-alive HTTP one for everything else.
#[derive(Debug, Clone)]
pub struct PeerNetwork {
    http: Arc<RwLock<reqwest::Client>>,
    /// The pool of the requests made for clients' requests (forwarding, the console, the
    /// probes), which may run on the server's connection threads: a client's pooled
    /// connection is driven where it was opened, so Raft keeps a pool of its own.
    client_http: Arc<RwLock<reqwest::Client>>,
    streams: Arc<StreamPool>,
    /// Leaders whose stream refused `FollowerRead` lately (an older version during a rolling
    /// upgrade): asked with `ReadIndex` at once while marked.
    follower_read_refused: Arc<PeerMarks>,
    /// Followers whose stream refused `LeaderRead` lately: not asked to vouch while marked
    /// (a heartbeat round instead).
    leader_read_refused: Arc<PeerMarks>,
    cluster_id: ClusterId,
    credentials: PeerCredentials,
    time: Arc<ClusterTime>,
}

fn build_client(credentials: &PeerCredentials) -> Result<reqwest::Client, PeerTlsError> {
    // reqwest is built without a default TLS provider; ours is ring (as for the API).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(500))
        .pool_idle_timeout(PEER_POOL_IDLE)
        .tcp_nodelay(true);
    if let Some(tls) = &credentials.tls {
        let ca = reqwest::Certificate::from_pem_bundle(&read_pem(&tls.ca_cert, "ca_cert")?)
            .map_err(|e| PeerTlsError::invalid("ca_cert", &tls.ca_cert, e))?;
        let mut pem = read_pem(&tls.cert_file, "cert_file")?;
        pem.push(b'\n');
        pem.extend(read_pem(&tls.key_file, "key_file")?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| PeerTlsError::Identity {
            source: Box::new(e),
        })?;
        builder = builder.tls_certs_only(ca).identity(identity);
    }
    builder
        .build()
        .map_err(|source| PeerTlsError::Client { source })
}

impl PeerNetwork {
    /// A network of keep-alive HTTP(S) clients (500 ms connect timeout) presenting
    /// `credentials`, exchanging cluster time (`time`) on the peer stream; fails when the TLS
    /// files are unusable.
    pub fn new(
        cluster_id: ClusterId,
        credentials: PeerCredentials,
        time: Arc<ClusterTime>,
    ) -> Result<Self, PeerTlsError> {
        Ok(PeerNetwork {
            http: Arc::new(RwLock::new(build_client(&credentials)?)),
            client_http: Arc::new(RwLock::new(build_client(&credentials)?)),
            streams: Arc::new(StreamPool::new(
                cluster_id.clone(),
                &credentials,
                time.clone(),
            )?),
            follower_read_refused: Arc::default(),
            leader_read_refused: Arc::default(),
            cluster_id,
            credentials,
            time,
        })
    }

    /// Reads the peer TLS files again (SIGHUP): new connections to peers present the new
    /// certificate; on error the current one stays.
    pub fn reload_tls(&self) -> Result<(), PeerTlsError> {
        if self.credentials.tls.is_none() {
            return Ok(());
        }
        let client = build_client(&self.credentials)?;
        let for_clients = build_client(&self.credentials)?;
        self.streams.reload_tls()?;
        *self.http.write().unwrap_or_else(|p| p.into_inner()) = client;
        *self.client_http.write().unwrap_or_else(|p| p.into_inner()) = for_clients;
        Ok(())
    }

    /// A request to `path` on the peer at `addr`, carrying the RPC version, this node's
    /// cluster id and its credentials. Every node-to-node request is built here.
    pub fn request(
        &self,
        method: reqwest::Method,
        addr: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.request_on(&self.http, method, addr, path)
    }

    /// As [`PeerNetwork::request`], for a request made on behalf of a client's request
    /// (its own pool of connections; see `client_http`).
    pub fn client_request(
        &self,
        method: reqwest::Method,
        addr: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.request_on(&self.client_http, method, addr, path)
    }

    fn request_on(
        &self,
        pool: &RwLock<reqwest::Client>,
        method: reqwest::Method,
        addr: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let http = pool.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut request = http
            .request(
                method,
                format!("{}://{addr}{path}", self.credentials.scheme()),
            )
            .header(RPC_VERSION_HEADER, RPC_VERSION);
        if let Some(id) = cluster_id_of(&self.cluster_id) {
            request = request.header(CLUSTER_HEADER, id);
        }
        if let Some(secret) = &self.credentials.secret {
            request = request.header(reqwest::header::AUTHORIZATION, secret.header_value());
        }
        request
    }

    /// One call of `kind` over the peer stream only (no HTTP fall-back), bounded by
    /// `timeout`: the shared cache's forwarded calls (to node `peer`, whose clock the call
    /// also samples).
    pub async fn stream_call<R: Serialize>(
        &self,
        addr: &str,
        peer: Option<NodeId>,
        kind: Kind,
        request: &R,
        timeout: Duration,
    ) -> Result<Vec<u8>, CallError> {
        self.streams.call(addr, peer, kind, request, timeout).await
    }

    /// Asks the leader at `addr` for a read index: the leader confirms its leadership with a
    /// quorum and answers the log index a linearizable read must have applied. Over the
    /// stream its answer also brings the leader's confirmed cluster time (taken in by the
    /// pool), which the read then uses.
    pub async fn read_index(
        &self,
        addr: &str,
        leader: Option<NodeId>,
        timeout: Duration,
    ) -> Result<u64, ReadIndexError> {
        // On the wire the leader's answer is `Result<u64, String>`: its reason is text.
        match self
            .streams
            .call(addr, leader, Kind::ReadIndex, &(), timeout)
            .await
        {
            Ok(bytes) => {
                return decode::<Result<u64, String>>(&bytes)
                    .map_err(ReadIndexError::Undecodable)?
                    .map_err(ReadIndexError::Refused)
            }
            Err(CallError::HttpOnly) => {}
            Err(e) => return Err(e.into()),
        }
        let request = self
            .request(reqwest::Method::POST, addr, "/raft/read_index")
            .timeout(timeout);
        let response = request.send().await.map_err(ReadIndexError::Http)?;
        if !response.status().is_success() {
            return Err(ReadIndexError::Status(response.status()));
        }
        let bytes = response.bytes().await.map_err(ReadIndexError::Http)?;
        decode::<Result<u64, String>>(&bytes)
            .map_err(ReadIndexError::Undecodable)?
            .map_err(ReadIndexError::Refused)
    }

    /// Asks the leader at `addr` for a read index with a request that counts as this
    /// follower's acknowledgment (see [`crate::follower_read`]). A leader that does not know
    /// the call (an older version, or a peer speaking HTTP only) is asked with
    /// [`PeerNetwork::read_index`] instead; that answer is one after a round, with no time of
    /// its own (the leader's confirmed time came with its stamp): `time` 0, `round` true. A
    /// leader that refused the call is asked the older way at once for a minute
    /// ([`crate::peer::marks`]), then with the call again (it may have been upgraded).
    pub async fn follower_read(
        &self,
        addr: &str,
        leader: NodeId,
        request: &FollowerReadRequest,
        timeout: Duration,
    ) -> Result<FollowerReadAnswer, ReadIndexError> {
        if !self.follower_read_refused.is_marked(addr) {
            match self
                .streams
                .call(addr, Some(leader), Kind::FollowerRead, request, timeout)
                .await
            {
                Ok(bytes) => {
                    return decode::<Result<FollowerReadAnswer, String>>(&bytes)
                        .map_err(ReadIndexError::Undecodable)?
                        .map_err(ReadIndexError::Refused)
                }
                Err(CallError::Refused(_)) => self.follower_read_refused.mark(addr),
                Err(CallError::HttpOnly) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.read_index(addr, Some(leader), timeout)
            .await
            .map(|index| FollowerReadAnswer {
                index,
                time: 0,
                round: true,
            })
    }

    /// Asks the follower `follower` at `addr` whether it vouches for this leader's reads (see
    /// [`crate::leader_read`]), over the peer stream only: a follower that cannot be asked
    /// that way (an older version, HTTP only, down or slow) is an error, and the leader runs
    /// a heartbeat round instead. A follower that refused the call (an older version) is
    /// marked for a minute: see [`PeerNetwork::leader_read_refusals`].
    pub async fn leader_read(
        &self,
        addr: &str,
        follower: NodeId,
        request: &LeaderReadRequest,
        timeout: Duration,
    ) -> Result<bool, ReadIndexError> {
        let answer = self
            .streams
            .call(addr, Some(follower), Kind::LeaderRead, request, timeout)
            .await;
        if let Err(CallError::Refused(_)) = &answer {
            self.leader_read_refused.mark(addr);
        }
        decode::<bool>(&answer?).map_err(ReadIndexError::Undecodable)
    }

    /// The followers that refused [`PeerNetwork::leader_read`] lately (older versions): a
    /// leader does not ask them to vouch until their marks have passed.
    pub fn leader_read_refusals(&self) -> Arc<PeerMarks> {
        self.leader_read_refused.clone()
    }

    /// Hands a batch of operations to the leader at `addr` and returns one outcome per op.
    /// `Err(NoQuorum)` when it was not sent (nothing happened); `Err(CommitTimeout)` when it
    /// was sent but no answer came in time (the outcome is unknown).
    pub async fn propose(
        &self,
        addr: &str,
        leader: Option<NodeId>,
        ops: &[statemanager_core::Op],
        timeout: Duration,
    ) -> Result<Vec<Result<statemanager_core::Stored, crate::NodeError>>, crate::NodeError> {
        use crate::{NodeError, Reason};
        type Answer = Result<Vec<Result<statemanager_core::Stored, NodeError>>, NodeError>;
        match self
            .streams
            .call(addr, leader, Kind::Propose, &ops, timeout)
            .await
        {
            Ok(bytes) => {
                // The leader handled the batch: an answer that cannot be read leaves the
                // outcome open.
                return decode::<Answer>(&bytes).map_err(|e| {
                    NodeError::OutcomeUnknown(Reason::caused(
                        "the leader's answer is unreadable",
                        e,
                    ))
                })?;
            }
            Err(CallError::HttpOnly) => {}
            Err(CallError::NotSent(m)) => {
                return Err(NodeError::NoQuorum(Reason::caused(
                    "cannot reach the leader",
                    m,
                )))
            }
            Err(CallError::Refused(m)) => {
                return Err(NodeError::Unavailable(
                    format!("the leader refused the batch: {m}").into(),
                ))
            }
            Err(CallError::Lost(_)) => {
                return Err(NodeError::CommitTimeout(timeout.as_millis() as u64))
            }
        }
        let body = encode(&ops).map_err(|e| NodeError::Unavailable(Reason::of(e)))?;
        let request = self
            .request(reqwest::Method::POST, addr, "/raft/propose")
            .timeout(timeout)
            .body(body);
        let response = request.send().await.map_err(|e| {
            if e.is_connect() {
                NodeError::NoQuorum(Reason::caused("cannot reach the leader", e))
            } else {
                NodeError::CommitTimeout(timeout.as_millis() as u64)
            }
        })?;
        if !response.status().is_success() {
            return Err(NodeError::Unavailable(
                format!("the leader refused the batch: {}", response.status()).into(),
            ));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|_| NodeError::CommitTimeout(timeout.as_millis() as u64))?;
        // The leader handled the batch: an answer that cannot be read leaves the outcome open.
        let answer: Result<Vec<Result<statemanager_core::Stored, NodeError>>, NodeError> =
            decode(&bytes).map_err(|e| {
                NodeError::OutcomeUnknown(Reason::caused("the leader's answer is unreadable", e))
            })?;
        answer
    }
}

/// The client for one peer.
#[derive(Debug, Clone)]
pub struct PeerClient {
    network: PeerNetwork,
    target: NodeId,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerClient {
            network: self.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

impl PeerClient {
    async fn call<Req, Resp>(
        &self,
        path: &str,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let body = encode(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.post(path, body, option).await
    }

    /// Posts `body` to `path` on the peer and opens its answer.
    async fn post<Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let response = self
            .network
            .request(reqwest::Method::POST, &self.addr, path)
            .timeout(option.hard_ttl())
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let err = std::io::Error::other(format!("peer answered {status}: {text}"));
            return Err(RPCError::Network(NetworkError::new(&err)));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.open(&bytes)
    }

    /// Decodes a peer's answer (`Result<Resp, String>`, postcard), from either transport; a
    /// refusal becomes a network error carrying the peer's words.
    #[allow(
        clippy::result_large_err,
        reason = "openraft's RPCError, which the RaftNetwork methods return as it is"
    )]
    fn open<Resp: DeserializeOwned>(&self, answer: &[u8]) -> Result<Resp, RPCError<TypeConfig>> {
        let result: Result<Resp, String> =
            decode(answer).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|refusal| {
            RPCError::Network(NetworkError::from_string(format!(
                "node {} refused: {refusal}",
                self.target
            )))
        })
    }

    /// Calls `kind` over the peer stream, or over HTTP (`path`) when the peer speaks only
    /// HTTP.
    async fn call_stream<Req, Resp>(
        &self,
        kind: Kind,
        path: &str,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let answer = match self
            .network
            .streams
            .call(
                &self.addr,
                Some(self.target),
                kind,
                request,
                option.hard_ttl(),
            )
            .await
        {
            Ok(answer) => answer,
            Err(CallError::HttpOnly) => return self.call(path, request, option).await,
            Err(CallError::NotSent(m)) => {
                return Err(RPCError::Unreachable(Unreachable::new(
                    &std::io::Error::other(m),
                )))
            }
            Err(e) => {
                return Err(RPCError::Network(NetworkError::new(
                    &std::io::Error::other(e.to_string()),
                )))
            }
        };
        self.open(&answer)
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = tokio::fs::File;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call_stream(Kind::Append, "/raft/append", &rpc, &option)
            .await
    }

    /// The whole snapshot in one request: `[u32 LE length][postcard (vote, meta)][file]`,
    /// the file sent as it is read (see [`crate::peer::snapshot_transfer`]).
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: crate::state_machine::Snapshot,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        use tokio::io::AsyncSeekExt;
        let network = |e: &dyn std::error::Error| {
            StreamingError::Network(NetworkError::from_string(e.to_string()))
        };
        let head = snapshot_transfer::head(&vote, &snapshot.meta).map_err(|e| network(&e))?;
        let mut file = snapshot.snapshot;
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(|e| network(&e))?;
        let body = snapshot_transfer::body(head, file);
        self.post("/raft/snapshot", body, &option)
            .await
            .map_err(|e| match e {
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                RPCError::Timeout(t) => StreamingError::Timeout(t),
                other => StreamingError::Network(NetworkError::from_string(other.to_string())),
            })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let answer: VoteResponse<TypeConfig> = self
            .call_stream(Kind::Vote, "/raft/vote", &rpc, &option)
            .await?;
        // A vote from a node whose clock is off from ours by more than `max_clock_offset` is
        // not counted: a candidate wins only with voters that agree with its clock, so a node
        // with a bad clock cannot lead even before any offset was measured.
        if answer.vote_granted {
            let bound = self.network.time.bound();
            if let Some(s) = self.network.time.last_sample(self.target) {
                if self.network.time.certainly_beyond(s) {
                    tracing::info!(
                        voter = self.target,
                        offset_ms = s.offset / 1000,
                        max_clock_offset_ms = bound / 1000,
                        "not counting a granted vote: the voter's clock is off from this node's by more than max_clock_offset"
                    );
                    let e = std::io::Error::other(format!(
                        "vote not counted: clock offset {} ms to node {} is over max_clock_offset ({} ms)",
                        s.offset / 1000,
                        self.target,
                        bound / 1000
                    ));
                    return Err(RPCError::Network(NetworkError::new(&e)));
                }
            }
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A keep-alive HTTP peer on a free port answering every request 200; counts the
    /// connections it accepted.
    async fn http_peer() -> (String, Arc<AtomicUsize>) {
        crate::peer::test_peer::counting_listener(|mut conn| async move {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while conn.read(&mut byte).await.is_ok_and(|n| n == 1) {
                head.push(byte[0]);
                if head.ends_with(b"\r\n\r\n") {
                    head.clear();
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if conn.write_all(answer).await.is_err() {
                        return;
                    }
                }
            }
        })
        .await
    }

    /// The requests made for clients (which may run on a connection thread, where their
    /// pooled connections would be driven) never lend a connection to Raft's requests, and
    /// each kind reuses its own.
    #[tokio::test]
    async fn raft_requests_never_reuse_a_connection_opened_for_a_client() {
        let (addr, accepted) = http_peer().await;
        let clock = Arc::new(statemanager_core::ManualClock::default());
        let time = Arc::new(ClusterTime::new(1, clock, Duration::from_millis(500)));
        let network = PeerNetwork::new(
            Arc::new(RwLock::new(None)),
            PeerCredentials::default(),
            time,
        )
        .unwrap();
        let get = reqwest::Method::GET;
        for _ in 0..2 {
            let client = network.client_request(get.clone(), &addr, "/peer/info");
            assert_eq!(client.send().await.unwrap().status(), 200);
            let raft = network.request(get.clone(), &addr, "/peer/info");
            assert_eq!(raft.send().await.unwrap().status(), 200);
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "one connection per pool"
        );
    }
}
