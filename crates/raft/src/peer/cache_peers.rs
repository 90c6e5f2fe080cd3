//! The shared cache's transport: `get_data`/`set_data` forwarded to a key's owner over the
//! peer stream ([`crate::peer::stream`], kinds `CacheGet` and `CacheSet`), on the same
//! persistent, authenticated connections as Raft traffic (cluster secret, peer TLS, cluster
//! id). One hop: the owner answers from its own cache and never forwards again.
//!
//! The routing itself (who owns a key, which peers are down) is the cache crate's
//! ([`statemanager_cache::SharedCache`]); this module only carries its calls. A peer that
//! does not speak the stream (an older node answering the preface with HTTP) is treated as
//! not answering: the key goes to its next node.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use statemanager_cache::shared::BoxFuture;
use statemanager_cache::{
    CacheError, CachePeers, ForwardedGet, ForwardedSet, GetOutcome, NoAnswer,
};

use crate::peer::error::{CacheAnswerError, CacheCallError};
use crate::peer::host::PeerHost;
use crate::peer::stream::Kind;
use crate::types::decode;

/// A forwarded `get_data`, as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheGetRequest {
    /// Namespace (resolved by the node the plugin called).
    pub namespace: String,
    /// Key.
    pub key: String,
    /// The caller's `max_wait_time`, seconds.
    pub wait_secs: i64,
    /// What is left of it, milliseconds.
    pub wait_left_ms: u64,
    /// Nodes before the receiver in the key's order that the sender found down.
    pub skipped: Vec<u64>,
}

/// The owner's answer to a [`CacheGetRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheGetAnswer {
    /// The data, if any.
    pub data: Option<String>,
    /// Whether the caller now holds the lock.
    pub lock: bool,
    /// Unix seconds when the data expires (0: no data).
    pub expiry: i64,
}

/// A forwarded `set_data`, as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheSetRequest {
    /// Namespace (resolved).
    pub namespace: String,
    /// Key.
    pub key: String,
    /// Value.
    pub data: String,
    /// Time to live, seconds.
    pub ttl_secs: u64,
    /// Nodes before the receiver in the key's order that the sender found down.
    pub skipped: Vec<u64>,
}

/// The owner's answer to a [`CacheSetRequest`]: stored, or too large (size, limit).
pub type CacheSetAnswer = Result<(), (u64, u64)>;

/// Answers a forwarded `get_data` from this node's own cache share (through its
/// `SharedCache` when one is registered, which also notes the peers the sender found down).
pub(crate) async fn answer_get<H: PeerHost>(
    node: &H,
    r: CacheGetRequest,
) -> Result<CacheGetAnswer, CacheAnswerError> {
    let got = if let Some(shared) = node.shared_cache() {
        shared
            .answer_get(ForwardedGet {
                namespace: r.namespace,
                key: r.key,
                wait_secs: r.wait_secs,
                wait_left_ms: r.wait_left_ms,
                skipped: r.skipped,
            })
            .await
    } else {
        let cache = node.local_cache().ok_or(CacheAnswerError::NoCache)?;
        let until = tokio::time::Instant::now() + Duration::from_millis(r.wait_left_ms);
        cache
            .get_until(&r.namespace, &r.key, r.wait_secs, until)
            .await
    };
    Ok(CacheGetAnswer {
        data: got.data.as_deref().map(str::to_string),
        lock: got.lock,
        expiry: got.expiry,
    })
}

/// Stores a forwarded `set_data` in this node's own cache share.
pub(crate) fn answer_set<H: PeerHost>(
    node: &H,
    r: CacheSetRequest,
) -> Result<CacheSetAnswer, CacheAnswerError> {
    let stored = if let Some(shared) = node.shared_cache() {
        shared.answer_set(ForwardedSet {
            namespace: r.namespace,
            key: r.key,
            data: r.data,
            ttl_secs: r.ttl_secs,
            skipped: r.skipped,
        })
    } else {
        let cache = node.local_cache().ok_or(CacheAnswerError::NoCache)?;
        cache.set(&r.namespace, &r.key, &r.data, r.ttl_secs)
    };
    Ok(match stored {
        Ok(()) => Ok(()),
        Err(CacheError::TooLarge { size, limit }) => Err((size, limit)),
    })
}

/// The members of `node`'s cluster, reached over its peer stream (`H`: the node,
/// [`crate::Node`]).
#[derive(Clone)]
pub struct NodeCachePeers<H> {
    node: H,
}

impl<H: PeerHost> NodeCachePeers<H> {
    /// The transport of `node`'s shared cache.
    pub fn new(node: H) -> Self {
        NodeCachePeers { node }
    }

    async fn call(
        &self,
        id: u64,
        kind: Kind,
        request: &(impl Serialize + Sync),
        timeout: Duration,
    ) -> Result<Vec<u8>, CacheCallError> {
        let addr = self
            .node
            .member_addr(id)
            .ok_or(CacheCallError::NotAMember { id })?;
        Ok(self
            .node
            .network()
            .stream_call(&addr, Some(id), kind, request, timeout)
            .await?)
    }

    /// A forwarded `get_data` to `node`.
    async fn get_from(
        &self,
        node: u64,
        r: ForwardedGet,
        timeout: Duration,
    ) -> Result<GetOutcome, CacheCallError> {
        let request = CacheGetRequest {
            namespace: r.namespace,
            key: r.key,
            wait_secs: r.wait_secs,
            wait_left_ms: r.wait_left_ms,
            skipped: r.skipped,
        };
        let bytes = self.call(node, Kind::CacheGet, &request, timeout).await?;
        // On the wire the owner's reason is text.
        let answer = decode::<Result<CacheGetAnswer, String>>(&bytes)
            .map_err(CacheCallError::Undecodable)?
            .map_err(CacheCallError::Refused)?;
        Ok(GetOutcome {
            data: answer.data.map(Into::into),
            lock: answer.lock,
            expiry: answer.expiry,
        })
    }

    /// A forwarded `set_data` to `node`.
    async fn set_on(
        &self,
        node: u64,
        r: ForwardedSet,
        timeout: Duration,
    ) -> Result<Result<(), CacheError>, CacheCallError> {
        let request = CacheSetRequest {
            namespace: r.namespace,
            key: r.key,
            data: r.data,
            ttl_secs: r.ttl_secs,
            skipped: r.skipped,
        };
        let bytes = self.call(node, Kind::CacheSet, &request, timeout).await?;
        // On the wire the owner's reason is text.
        let answer = decode::<Result<CacheSetAnswer, String>>(&bytes)
            .map_err(CacheCallError::Undecodable)?
            .map_err(CacheCallError::Refused)?;
        Ok(answer.map_err(|(size, limit)| CacheError::TooLarge { size, limit }))
    }
}

impl<H: PeerHost> CachePeers for NodeCachePeers<H> {
    fn members(&self) -> Vec<u64> {
        self.node.member_ids()
    }

    // The cache crate's `NoAnswer` keeps the typed error as its source.
    fn get(
        &self,
        node: u64,
        r: ForwardedGet,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<GetOutcome, NoAnswer>> {
        Box::pin(async move {
            self.get_from(node, r, timeout)
                .await
                .map_err(|e| NoAnswer(Box::new(e)))
        })
    }

    fn set(
        &self,
        node: u64,
        r: ForwardedSet,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Result<(), CacheError>, NoAnswer>> {
        Box::pin(async move {
            self.set_on(node, r, timeout)
                .await
                .map_err(|e| NoAnswer(Box::new(e)))
        })
    }
}
