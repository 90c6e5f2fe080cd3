//! The server side of the peer stream: one task per connection, one call at a time.

use std::time::{Duration, Instant};

use openraft::raft::{AppendEntriesRequest, VoteRequest};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, BufReader};

use super::frame::{self, FrameBuf};
use super::{Hello, Kind, ANSWERED, MAX_HELLO, MIN_VERSION, PREFACE, REFUSED, VERSION};
use crate::cluster_time::CallStamp;
use crate::error::with_sources;
use crate::peer::answer::{
    answer_append, answer_follower_read, answer_leader_read, answer_read_index, answer_vote,
};
use crate::peer::error::{wire_reason, HelloError, RequestError};
use crate::peer::host::PeerHost;
use crate::peer::wire::MAX_PEER_BODY;
use crate::types::TypeConfig;

/// Read buffer of a connection: an append of a full batch arrives in a few reads.
const READ_BUFFER: usize = 64 * 1024;

/// Logs a refused connection at most once a minute (a stranger cannot flood the log).
fn warn_refused(reason: &str) {
    static LAST: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
        *last = Some(Instant::now());
        tracing::warn!("refused a peer stream: {reason} (logged once a minute)");
    }
}

/// Decodes a hello frame and checks its version; `Err` says why the peer is refused.
pub fn read_hello(hello: &[u8]) -> Result<Hello, HelloError> {
    let hello: Hello = postcard::from_bytes(hello).map_err(HelloError::Undecodable)?;
    if !(MIN_VERSION..=VERSION).contains(&hello.version) {
        return Err(HelloError::Version {
            version: hello.version,
            min: MIN_VERSION,
            max: VERSION,
        });
    }
    Ok(hello)
}

/// Whether `hello` may use this node's peer stream (`Err` says why not); its version.
fn admit<H: PeerHost>(node: &H, hello: &[u8]) -> Result<u32, HelloError> {
    let hello = read_hello(hello)?;
    if let Some(secret) = node.peer_secret() {
        if !secret.admits(hello.authorization.as_deref()) {
            return Err(HelloError::NoSecret);
        }
    }
    Ok(hello.version)
}

/// Serves one connection whose first bytes are [`PREFACE`] until the peer closes it (or
/// breaks the protocol), or `stop` turns true: then the call being answered is finished and
/// the connection closed. Authentication is the HTTP routes': the listener has already
/// required a client certificate under `peer_tls`, and the hello must carry the cluster
/// secret when one is configured; every call carries the caller's cluster id.
pub async fn serve<H: PeerHost, S: AsyncRead + AsyncWrite + Unpin>(
    node: H,
    stream: S,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut conn = BufReader::with_capacity(READ_BUFFER, stream);
    let mut preface = [0u8; PREFACE.len()];
    if conn.read_exact(&mut preface).await.is_err() || &preface != PREFACE {
        return;
    }
    let Ok(hello) = frame::read(&mut conn, MAX_HELLO).await else {
        return;
    };
    // On the wire the reason is text (`Result<(), String>`).
    let verdict = admit(&node, &hello).map_err(|e| with_sources(&e));
    let mut answer = FrameBuf::with_capacity(64);
    if answer.encode(&verdict.as_ref().map(|_| ())).is_err() {
        return;
    }
    let Some(answer) = answer.finish() else {
        return;
    };
    if frame::write(&mut conn, &answer).await.is_err() {
        return;
    }
    let stamped = match verdict {
        Ok(version) => version >= 2,
        Err(reason) => {
            warn_refused(&reason);
            return;
        }
    };
    loop {
        // Between calls the node may stop; a call being answered is finished first.
        let next = tokio::select! {
            next = frame::read(&mut conn, MAX_PEER_BODY) => next,
            _ = stop.wait_for(|stopping| *stopping) => return,
        };
        let request = match next {
            Ok(request) => request,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::UnexpectedEof {
                    tracing::debug!(error = %e, "peer stream closed");
                }
                return;
            }
        };
        let received_at = node.time().wall();
        let Some(answer) = call(&node, &request, stamped, received_at).await.finish() else {
            return;
        };
        if frame::write(&mut conn, &answer).await.is_err() {
            return;
        }
    }
}

fn refused(reason: String) -> FrameBuf {
    let mut answer = FrameBuf::with_capacity(reason.len() + 8);
    answer.extend(&[REFUSED]);
    // A string always encodes.
    let _ = answer.encode(&reason);
    answer
}

/// An answer: `[ANSWERED]`, the clock stamp when the connection speaks version 2 (`stamp`:
/// this node's clock when the call arrived), then the value.
fn answered<H: PeerHost, T: serde::Serialize>(node: &H, stamp: Option<u64>, value: &T) -> FrameBuf {
    let mut answer = FrameBuf::with_capacity(256);
    answer.extend(&[ANSWERED]);
    let stamped = match stamp {
        Some(received_at) => answer.encode(&node.time().answer_stamp(received_at)),
        None => Ok(()),
    };
    match stamped.and_then(|_| answer.encode(value)) {
        Ok(()) => answer,
        Err(e) => refused(format!("cannot encode the answer: {e}")),
    }
}

/// One decoded call of the peer stream.
#[derive(Debug)]
pub enum Call {
    /// openraft's AppendEntries.
    Append(AppendEntriesRequest<TypeConfig>),
    /// openraft's RequestVote.
    Vote(VoteRequest<TypeConfig>),
    /// A batch of operations handed over by a follower.
    Propose(Vec<statemanager_core::Op>),
    /// A read-index request (it has no body).
    ReadIndex,
    /// A follower's read-index request that counts as its acknowledgment.
    FollowerRead(crate::follower_read::FollowerReadRequest),
    /// A leader asks whether this node's vote still names it (see `leader_read`).
    LeaderRead(crate::leader_read::LeaderReadRequest),
    /// A `get_data` forwarded to this node as the key's owner.
    CacheGet(crate::peer::cache_peers::CacheGetRequest),
    /// A `set_data` forwarded to this node as the key's owner.
    CacheSet(crate::peer::cache_peers::CacheSetRequest),
    /// A pre-vote (see `election`).
    PreVote(crate::election::PreVoteRequest),
}

/// Splits a request frame, `[kind][cluster id][postcard request]`, into its kind, the
/// caller's cluster id and the undecoded request (decoded only once the caller is admitted).
pub fn split_request(request: &[u8]) -> Result<(Kind, Option<String>, &[u8]), RequestError> {
    let Some((&kind, rest)) = request.split_first() else {
        return Err(RequestError::Empty);
    };
    let Some(kind) = Kind::from_byte(kind) else {
        return Err(RequestError::UnknownCall(kind));
    };
    let (cluster_id, body) =
        postcard::take_from_bytes::<Option<String>>(rest).map_err(RequestError::Undecodable)?;
    Ok((kind, cluster_id, body))
}

/// Splits the clock stamp (protocol version 2) off the body of a request.
pub fn split_stamp(body: &[u8]) -> Result<(CallStamp, &[u8]), RequestError> {
    postcard::take_from_bytes::<CallStamp>(body).map_err(RequestError::UndecodableStamp)
}

/// Decodes the request of a call of `kind`.
pub fn decode_call(kind: Kind, body: &[u8]) -> Result<Call, RequestError> {
    let undecodable = |source| RequestError::UndecodableCall { kind, source };
    match kind {
        Kind::Append => postcard::from_bytes(body).map(Call::Append),
        Kind::Vote => crate::peer::wire::decode_vote_request(body).map(Call::Vote),
        Kind::Propose => postcard::from_bytes(body).map(Call::Propose),
        Kind::ReadIndex => Ok(Call::ReadIndex),
        Kind::FollowerRead => postcard::from_bytes(body).map(Call::FollowerRead),
        Kind::LeaderRead => postcard::from_bytes(body).map(Call::LeaderRead),
        Kind::PreVote => postcard::from_bytes(body).map(Call::PreVote),
        Kind::CacheGet => postcard::from_bytes(body).map(Call::CacheGet),
        Kind::CacheSet => postcard::from_bytes(body).map(Call::CacheSet),
    }
    .map_err(undecodable)
}

/// Answers one request frame: `[kind][cluster id][stamp, when `stamped`][postcard
/// request]`; `received_at`: this node's clock when it arrived.
async fn call<H: PeerHost>(node: &H, request: &[u8], stamped: bool, received_at: u64) -> FrameBuf {
    let (kind, cluster_id, body) = match split_request(request) {
        Ok(parts) => parts,
        Err(e) => return refused(with_sources(&e)),
    };
    if let Err(reason) = node.admit_peer(cluster_id.as_deref()) {
        tracing::warn!("refused a peer RPC: {reason}");
        return refused(reason.to_string());
    }
    let body = if stamped {
        match split_stamp(body) {
            Ok((stamp, body)) => {
                // Taken before the call is answered: an acknowledged heartbeat means this
                // node holds the leader's cluster time (see `cluster_time`).
                node.time().on_call(&stamp, kind == Kind::Append);
                body
            }
            Err(e) => return refused(with_sources(&e)),
        }
    } else {
        body
    };
    let stamp = stamped.then_some(received_at);
    match decode_call(kind, body) {
        Ok(Call::Append(rpc)) => answered(node, stamp, &answer_append(node, rpc).await),
        Ok(Call::Vote(rpc)) => answered(node, stamp, &answer_vote(node, rpc).await),
        Ok(Call::Propose(ops)) => answered(node, stamp, &node.propose_forwarded(ops).await),
        Ok(Call::ReadIndex) => answered(node, stamp, &wire_reason(answer_read_index(node).await)),
        Ok(Call::FollowerRead(r)) => answered(
            node,
            stamp,
            &wire_reason(answer_follower_read(node, r).await),
        ),
        // Only a stamped call has put the leader's time in this node's `seen` before the
        // check (see `leader_read`): an unstamped one is never vouched for.
        Ok(Call::LeaderRead(r)) => {
            answered(node, stamp, &(stamped && answer_leader_read(node, &r)))
        }
        Ok(Call::PreVote(r)) => {
            answered(node, stamp, &crate::peer::answer::answer_pre_vote(node, &r))
        }
        Ok(Call::CacheGet(r)) => answered(
            node,
            stamp,
            &wire_reason(crate::peer::cache_peers::answer_get(node, r).await),
        ),
        Ok(Call::CacheSet(r)) => answered(
            node,
            stamp,
            &wire_reason(crate::peer::cache_peers::answer_set(node, r)),
        ),
        Err(e) => refused(with_sources(&e)),
    }
}
