//! The cache shared by a cluster: each key lives on one owner node; the others forward to it.
//!
//! `get_data`/`set_data` on any node go to the key's owner, the first node in its
//! rendezvous order ([`crate::owner`]) that is not marked down ([`crate::health`]): this
//! node's own [`Cache`] when it is the owner, else one call over the peer connection
//! ([`CachePeers`]). The owner's cache holds the value, its expiry, its lock and its waiters,
//! so a value set through one node is read through every node with the same expiry, and a
//! lock taken through one node holds back callers on all of them and wakes them when the
//! value is set, whichever node it was set through.
//!
//! Faults degrade to misses, never to errors or hangs:
//! - an owner that does not answer within `peer_connection_timeout` (beyond the caller's own
//!   wait) is marked down for `peer_refresh_time`, and the key's next node is used (possibly
//!   this one);
//! - no answer takes longer than the caller's `max_wait_time` plus `peer_connection_timeout`:
//!   past that the caller gets a miss (`get_data`) or the value is kept here (`set_data`);
//! - a node left alone serves its own cache (the cache needs no quorum);
//! - when a peer comes back, this node drops the items it held for that peer's keys while it
//!   was down, so a later outage cannot resurrect a value older than the owner's; forwarded
//!   calls name the nodes the sender skipped, so the node answering for them knows too;
//! - peers marked down are rechecked every `peer_refresh_time` ([`SharedCache::recheck`]),
//!   with or without traffic.
//!
//! A set is not copied to the key's second node: see `docs/design.md` for the numbers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use statemanager_core::Clock;
use tokio::time::Instant;

use crate::health::{PeerHealth, PeerState};
use crate::owner::rank;
use crate::{Cache, CacheError, GetOutcome};

/// Longest wait one forwarded `get_data` asks the owner for. A longer `max_wait_time` is
/// waited in slices, each a new call on the connection: a peer port closes a connection on
/// which nothing has moved for its idle limit (30 s at least), and a single call waiting
/// longer (plugnpy waits 30 s by default) would be cut and its owner wrongly marked down.
pub const WAIT_SLICE: Duration = Duration::from_secs(10);

/// A boxed future, as the transport returns them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A `get_data` forwarded to the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedGet {
    /// Namespace (resolved).
    pub namespace: String,
    /// Key.
    pub key: String,
    /// The caller's `max_wait_time` (its mode, and a granted lock's lifetime).
    pub wait_secs: i64,
    /// What is left of the caller's wait, in milliseconds (the owner waits no longer).
    pub wait_left_ms: u64,
    /// The nodes before the receiver in the key's order, which the sender found down: the
    /// receiver answers for them, and marks them down too (see [`SharedCache::answer_get`]).
    pub skipped: Vec<u64>,
}

/// A `set_data` forwarded to the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedSet {
    /// Namespace (resolved).
    pub namespace: String,
    /// Key.
    pub key: String,
    /// The value.
    pub data: String,
    /// Time to live, seconds.
    pub ttl_secs: u64,
    /// As [`ForwardedGet::skipped`].
    pub skipped: Vec<u64>,
}

/// Why a forwarded `get_data`/`set_data` got no answer: the transport's own error (a
/// timeout, a refused or broken peer stream, an undecodable answer), kept as the source.
#[derive(Debug, thiserror::Error)]
#[error("no answer from the cache peer")]
pub struct NoAnswer(#[source] pub Box<dyn std::error::Error + Send + Sync>);

impl NoAnswer {
    /// The reason with each of its causes, for the log.
    pub fn reason(&self) -> String {
        statemanager_core::error_chain::Chain(self.0.as_ref()).to_string()
    }
}

/// How a node reaches the other members' caches. The server implements it over the peer
/// stream; tests implement it in memory.
pub trait CachePeers: Send + Sync {
    /// The ids of the cluster's members, this node included.
    fn members(&self) -> Vec<u64>;
    /// Forwards a `get_data` to `node`; `Err` (why) when no answer came within `timeout`.
    fn get(
        &self,
        node: u64,
        request: ForwardedGet,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<GetOutcome, NoAnswer>>;
    /// Forwards a `set_data` to `node`; `Err` (why) when no answer came within `timeout`.
    fn set(
        &self,
        node: u64,
        request: ForwardedSet,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Result<(), CacheError>, NoAnswer>>;
}

/// One cache peer as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePeer {
    /// Node id.
    pub id: u64,
    /// Up, or down since when.
    pub state: PeerState,
}

/// Routes `get_data`/`set_data` to each key's owner. Share it with `Arc`.
pub struct SharedCache {
    local: Arc<Cache>,
    me: u64,
    peers: Arc<dyn CachePeers>,
    health: PeerHealth,
    timeout: Duration,
}

impl std::fmt::Debug for SharedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCache")
            .field("me", &self.me)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SharedCache {
    /// The shared cache of node `me`: `local` is its share (`max_cache_size` bounds it),
    /// `peers` reaches the others; a peer that does not answer within `timeout`
    /// (`peer_connection_timeout`) is skipped for `refresh` (`peer_refresh_time`).
    pub fn new(
        local: Arc<Cache>,
        me: u64,
        peers: Arc<dyn CachePeers>,
        clock: Arc<dyn Clock>,
        timeout: Duration,
        refresh: Duration,
    ) -> Self {
        SharedCache {
            local,
            me,
            peers,
            health: PeerHealth::new(refresh, clock),
            timeout,
        }
    }

    /// This node's share.
    pub fn local(&self) -> &Arc<Cache> {
        &self.local
    }

    /// The other members, with what this node knows of them.
    pub fn peers(&self) -> Vec<CachePeer> {
        self.peers
            .members()
            .into_iter()
            .filter(|&id| id != self.me)
            .map(|id| CachePeer {
                id,
                state: self.health.state(id),
            })
            .collect()
    }

    /// What this node knows of member `id` (itself: always up).
    pub fn peer_state(&self, id: u64) -> PeerState {
        self.health.state(id)
    }

    /// A peer answered: when it was down, it takes its keys back, so the items this node
    /// held for it meanwhile are dropped (they would be older than the owner's next value).
    fn answered(&self, node: u64, members: &[u64]) {
        if self.health.mark_up(node) {
            tracing::info!(
                peer = node,
                "cache peer answers again; it owns its keys again"
            );
            let dropped = self.local.retain(|namespace, key| {
                rank(namespace, key, members)
                    .into_iter()
                    .find(|&m| m == self.me || self.health.is_up(m))
                    == Some(self.me)
            });
            metrics::counter!("statemanager_cache_handed_back_total").increment(dropped);
        }
    }

    fn failed(&self, node: u64, why: &str) {
        if self.health.mark_down(node) {
            metrics::counter!("statemanager_cache_peer_down_total").increment(1);
            tracing::warn!(peer = node, "cache peer marked down: {why}");
        }
    }

    /// Another node's peers it found down: mark them down here too (when this node has
    /// not heard from them since), so that this node, which now holds their keys, rechecks
    /// them and hands their keys back when they answer again.
    fn hearsay(&self, skipped: &[u64]) {
        for &node in skipped {
            if node != self.me && self.health.is_up(node) {
                self.failed(node, "another node found it down");
            }
        }
    }

    /// Answers a `get_data` another node forwarded here (this node is the first of the
    /// key's order that the sender could reach): from this node's own share, never
    /// forwarded again.
    pub async fn answer_get(&self, r: ForwardedGet) -> GetOutcome {
        self.hearsay(&r.skipped);
        let until = Instant::now() + Duration::from_millis(r.wait_left_ms);
        self.local
            .get_until(&r.namespace, &r.key, r.wait_secs, until)
            .await
    }

    /// Stores a `set_data` another node forwarded here, in this node's own share.
    pub fn answer_set(&self, r: ForwardedSet) -> Result<(), CacheError> {
        self.hearsay(&r.skipped);
        self.local.set(&r.namespace, &r.key, &r.data, r.ttl_secs)
    }

    /// Rechecks the peers marked down whose `peer_refresh_time` has passed, with a plain
    /// lookup each (bounded by `peer_connection_timeout`): one that answers is up again and
    /// takes its keys back. Run it every `peer_refresh_time`, so that a recovered peer is
    /// seen (and `/status` says so) even when no plugin asks for one of its keys.
    pub async fn recheck(&self) {
        let members = self.peers.members();
        for node in members.iter().copied() {
            if node == self.me || self.health.is_up(node) || !self.health.usable(node) {
                continue;
            }
            let probe = ForwardedGet {
                namespace: String::new(),
                key: String::new(),
                wait_secs: 0,
                wait_left_ms: 0,
                skipped: Vec::new(),
            };
            match self.peers.get(node, probe, self.timeout).await {
                Ok(_) => self.answered(node, &members),
                Err(why) => self.failed(node, &why.reason()),
            }
        }
    }

    /// `POST /get_data`, answered by the key's owner.
    pub async fn get(&self, namespace: &str, key: &str, wait_secs: i64) -> GetOutcome {
        if wait_secs < 0 {
            // The original's quirk: nothing, even when data is cached; no need to ask.
            return self.local.get(namespace, key, wait_secs).await;
        }
        let members = self.peers.members();
        if members.len() <= 1 {
            return self.local.get(namespace, key, wait_secs).await;
        }
        let start = Instant::now();
        let wait_end = start + Duration::from_secs(wait_secs as u64);
        let hard_end = wait_end + self.timeout;
        let mut skipped = Vec::new();
        for node in rank(namespace, key, &members) {
            if node == self.me {
                return self
                    .local
                    .get_until(namespace, key, wait_secs, wait_end)
                    .await;
            }
            if !self.health.usable(node) {
                skipped.push(node);
                continue;
            }
            // The owner waits for the caller, one slice per call (see WAIT_SLICE).
            loop {
                let now = Instant::now();
                if now >= hard_end {
                    break;
                }
                let left = wait_end.saturating_duration_since(now);
                let slice = left.min(WAIT_SLICE);
                let request = ForwardedGet {
                    namespace: namespace.to_string(),
                    key: key.to_string(),
                    wait_secs,
                    wait_left_ms: slice.as_millis() as u64,
                    skipped: skipped.clone(),
                };
                let limit = (slice + self.timeout).min(hard_end - now);
                match self.peers.get(node, request, limit).await {
                    Ok(outcome) => {
                        self.answered(node, &members);
                        // Nothing and no lock after a slice that was not the last: the lock
                        // is still held; wait on.
                        let slice_ended = outcome.data.is_none() && !outcome.lock;
                        if slice_ended && slice < left && Instant::now() < wait_end {
                            continue;
                        }
                        return outcome;
                    }
                    Err(why) => {
                        self.failed(node, &why.reason());
                        skipped.push(node);
                        break;
                    }
                }
            }
        }
        // Out of time (every node before this one failed slowly): a miss, never a hang.
        metrics::counter!("statemanager_cache_peer_misses_total").increment(1);
        GetOutcome::nothing()
    }

    /// `POST /set_data`, stored by the key's owner (or, when no node before this one in the
    /// key's order answers within `peer_connection_timeout`, here).
    pub async fn set(
        &self,
        namespace: &str,
        key: &str,
        data: &str,
        ttl_secs: u64,
    ) -> Result<(), CacheError> {
        // Refused here, before any hop to the owner.
        self.local.check_item_size(data)?;
        let members = self.peers.members();
        if members.len() <= 1 {
            return self.local.set(namespace, key, data, ttl_secs);
        }
        let hard_end = Instant::now() + self.timeout;
        let mut skipped = Vec::new();
        for node in rank(namespace, key, &members) {
            if node == self.me {
                break;
            }
            if !self.health.usable(node) {
                skipped.push(node);
                continue;
            }
            let now = Instant::now();
            if now >= hard_end {
                break;
            }
            let request = ForwardedSet {
                namespace: namespace.to_string(),
                key: key.to_string(),
                data: data.to_string(),
                ttl_secs,
                skipped: skipped.clone(),
            };
            match self.peers.set(node, request, hard_end - now).await {
                Ok(stored) => {
                    self.answered(node, &members);
                    return stored;
                }
                Err(why) => {
                    self.failed(node, &why.reason());
                    skipped.push(node);
                }
            }
        }
        self.local.set(namespace, key, data, ttl_secs)
    }
}

#[cfg(test)]
mod tests;
