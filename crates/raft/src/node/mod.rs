//! The node: the service handle the API talks to (`store`, `fetch`, `list`, `delete`, and
//! the hand-over of a follower's batch), and the rooms it is built from:
//! - [`options`]: [`NodeOptions`], what a node needs to start, and its defaults;
//! - [`start`]: start-up in named steps (storage, openraft's configuration, the cluster id,
//!   formation, the background tasks);
//! - [`membership`]: members, the leader, adding and removing members, hand-over;
//! - [`status`]: readiness, `/status`, namespace statistics, a fatal stop;
//! - [`tasks`]: the background loops (snapshots, purges, leader changes, the clock watch);
//! - [`election_timer`]: when this node campaigns (a pre-vote before each campaign; the pure
//!   rules are in [`crate::election`]).
//!
//! Backup capture is `crate::backup`; the cluster id is [`crate::cluster_id`].

use openraft::async_runtime::WatchReceiver;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use statemanager_core::{
    Batch, Clock, Item, ItemId, Key, Limits, Namespace, Op, StoreOp, Stored, Timestamp,
};
use statemanager_storage::{DataDir, LogEngine};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::cluster_id::{cluster_id_of, ClusterId};
use crate::cluster_time::ClusterTime;
use crate::peer::network::PeerNetwork;
use crate::reader::ReadWaiter;
use crate::state_machine::{Applied, SharedState};
use crate::types::NodeId;
use crate::writer::{self, WriteRequest};
use crate::NodeError;

pub(crate) mod election_timer;
pub mod membership;
#[cfg(test)]
mod metrics_fixture;
pub mod options;
mod peer_host;
pub mod start;
mod start_error;
pub mod status;
mod tasks;

pub use membership::Member;
pub use options::NodeOptions;
pub use start::StartError;
pub use status::{NamespaceStats, NodeStatus, NotReady};

/// Most log entries in one append RPC (see `peer::wire::MAX_PEER_BODY`).
pub const MAX_PAYLOAD_ENTRIES: u64 = 16;

/// Time allowed to send a whole snapshot to a follower in one request and have it installed
/// there (openraft's `install_snapshot_timeout`).
pub const SNAPSHOT_CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

/// What a [`Node`] handle shares: set once at start-up (see `start`).
struct Inner {
    node_id: NodeId,
    cluster_id: ClusterId,
    peer_secret: Option<crate::peer::auth::ClusterSecret>,
    disk: crate::disk::DiskSpace,
    engine: LogEngine,
    api_addr: String,
    network: PeerNetwork,
    raft: crate::types::Raft,
    /// openraft's server metrics, kept: each fetch reads them, and a receiver cloned per
    /// fetch would cost two atomic updates on a line every thread shares.
    server_metrics: openraft::type_config::alias::WatchReceiverOf<
        crate::types::TypeConfig,
        openraft::metrics::RaftServerMetrics<crate::types::TypeConfig>,
    >,
    shared: Arc<SharedState>,
    writes: mpsc::Sender<WriteRequest>,
    reads: mpsc::Sender<ReadWaiter>,
    /// Cluster time (also the clock batches are stamped with, as `clock`).
    time: Arc<ClusterTime>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    election_max: Duration,
    commit_timeout: Duration,
    takeover: Arc<crate::takeover::Takeover>,
    cache: Option<Arc<statemanager_cache::Cache>>,
    /// The shared cache built on this node (it holds the node: a weak reference, no cycle).
    shared_cache: std::sync::OnceLock<std::sync::Weak<statemanager_cache::SharedCache>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    data_dir: DataDir,
    /// Requests in flight, and the rule for writing a batch's log entry in place.
    inline: Arc<crate::log_store::inline::InlineWrites>,
    /// The vote the log store is saving or saved last (see `log_store::saved_vote`).
    saved_vote: Arc<crate::log_store::saved_vote::SavedVote>,
}

/// The term in which node `me` leads as the only voter of the effective membership (the
/// latest appended, committed or not), per openraft's server metrics `m`; `None` otherwise.
/// See [`Node::confirm_as_sole_voter`].
pub(crate) fn sole_leader_term(
    m: &openraft::metrics::RaftServerMetrics<crate::types::TypeConfig>,
    me: NodeId,
) -> Option<u64> {
    // The membership is looked at only on a leader: every fetch on a follower asks this.
    (m.state == openraft::ServerState::Leader
        && m.current_leader == Some(me)
        && crate::types::is_sole_voter(m.membership_config.membership(), me))
    .then_some(m.vote.leader_id.term)
}

/// A reference to a running node that does not keep it alive (for its own background tasks).
pub(crate) struct WeakNode(std::sync::Weak<Inner>);

impl WeakNode {
    /// The node, while it runs.
    pub(crate) fn upgrade(&self) -> Option<Node> {
        self.0.upgrade().map(|inner| Node { inner })
    }
}

/// A running node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl Node {
    /// This node's cluster time and clock offsets (see [`crate::cluster_time`]).
    pub fn time(&self) -> &ClusterTime {
        &self.inner.time
    }

    /// Where this node's clock stands against its peers' now (for `/status`).
    pub fn clock_verdict(&self) -> crate::cluster_time::Verdict {
        let (voters, leader) = {
            let metrics = self.inner.raft.server_metrics();
            let m = metrics.borrow_watched();
            let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
            (voters, m.current_leader)
        };
        self.inner.time.verdict(&voters, leader)
    }

    /// On the leader, before a read-index round for a follower: the cluster time the round
    /// confirms (see `reader`).
    pub(crate) fn begin_leader_read(&self) -> u64 {
        let high_water = self.inner.shared.read().state.high_water();
        self.inner.time.begin_read(high_water, true)
    }

    /// `Err(Unavailable)` while this node's clock is out of bounds.
    fn check_clock(&self) -> Result<(), NodeError> {
        match self.inner.time.refusal() {
            Some(reason) => Err(NodeError::Unavailable(reason.into())),
            None => Ok(()),
        }
    }

    /// This node's cluster id (`None` while waiting to join).
    pub fn cluster_id(&self) -> Option<String> {
        cluster_id_of(&self.inner.cluster_id)
    }

    /// This node's share of the shared cache, if it has one.
    pub fn local_cache(&self) -> Option<&Arc<statemanager_cache::Cache>> {
        self.inner.cache.as_ref()
    }

    /// Registers the shared cache built on this node: calls forwarded by peers go through
    /// it (it notes the peers they found down). Only the first registration counts.
    pub fn set_shared_cache(&self, shared: &Arc<statemanager_cache::SharedCache>) {
        let _ = self.inner.shared_cache.set(Arc::downgrade(shared));
    }

    /// The shared cache registered with [`Node::set_shared_cache`], while it lives.
    pub fn shared_cache(&self) -> Option<Arc<statemanager_cache::SharedCache>> {
        self.inner.shared_cache.get()?.upgrade()
    }

    /// The peer network (the shared cache forwards over it).
    pub fn network(&self) -> &PeerNetwork {
        &self.inner.network
    }

    /// The Raft handle (for the peer server's RPC routes).
    pub fn raft(&self) -> &crate::types::Raft {
        &self.inner.raft
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.node_id
    }

    /// Leader-contact tracking for prompt failover (see [`crate::takeover`]).
    pub fn takeover(&self) -> &crate::takeover::Takeover {
        &self.inner.takeover
    }

    /// This node's client address.
    pub fn api_addr(&self) -> &str {
        &self.inner.api_addr
    }

    /// Reads the peer TLS files again (SIGHUP) for the connections this node opens to peers.
    pub fn reload_peer_tls(&self) -> Result<(), crate::peer::credentials::PeerTlsError> {
        self.inner.network.reload_tls()
    }

    /// The cluster secret peers and administrators must present, if one is configured.
    pub fn peer_secret(&self) -> Option<&crate::peer::auth::ClusterSecret> {
        self.inner.peer_secret.as_ref()
    }

    /// A request to `path` on the peer at `addr` with this node's credentials, made on
    /// behalf of a client's request (keep-alive connections of their own, apart from the
    /// Raft network's; see `PeerNetwork::client_request`).
    pub fn peer_request(
        &self,
        method: reqwest::Method,
        addr: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.inner.network.client_request(method, addr, path)
    }

    /// Counts a client request as in flight (and as begun) until the guard is dropped: a
    /// batch's log entry is written in place on the Raft core's task only when every request
    /// in flight waits for that batch ([`crate::log_store::inline`]).
    pub fn serving(&self) -> crate::log_store::inline::Serving<'_> {
        self.inner.inline.serving()
    }

    /// How long a write may take to commit (`commit_timeout_ms`; the server also makes it the
    /// read timeout, `NodeOptions::read_timeout`).
    pub fn commit_timeout(&self) -> Duration {
        self.inner.commit_timeout
    }

    /// The limits this node stamps into its batches.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Stores an item; returns once the entry holding it is fsync'd, committed and applied.
    pub async fn store(&self, op: StoreOp) -> Result<Stored, NodeError> {
        self.write(Op::Store(op)).await
    }

    /// Deletes an item through the log; `Err(Domain(NotFound))` when it was not there.
    pub async fn delete(&self, id: ItemId) -> Result<Stored, NodeError> {
        self.write(Op::Delete(id)).await
    }

    async fn write(&self, op: Op) -> Result<Stored, NodeError> {
        self.check_clock()?;
        // Deletions are accepted on a full disk: they are what lets space be reclaimed.
        if matches!(op, Op::Store(_)) {
            self.check_disk(writer::op_bytes(&op))?;
        }
        let (reply, answer) = oneshot::channel();
        self.inner
            .writes
            .send(WriteRequest { op, reply })
            .await
            .map_err(|_| NodeError::Unavailable("the node is stopping".into()))?;
        answer
            .await
            .map_err(|_| NodeError::OutcomeUnknown("the node stopped before answering".into()))?
    }

    /// Proposes a batch handed over by a follower, as one entry (see `writer`).
    pub async fn propose_forwarded(
        &self,
        ops: Vec<Op>,
    ) -> Result<Vec<Result<Stored, NodeError>>, NodeError> {
        if let Some(reason) = writer::quorum_lost(&self.inner.raft, self.inner.election_max) {
            return Err(NodeError::NoQuorum(reason.into()));
        }
        self.check_clock()?;
        if ops.iter().any(|op| matches!(op, Op::Store(_))) {
            self.check_disk(ops.iter().map(writer::op_bytes).sum::<usize>())?;
        }
        let batch = Batch {
            now: self.inner.clock.now(),
            limits: self.inner.limits,
            ops,
        };
        let outcomes = writer::propose(&self.inner.raft, batch, self.inner.commit_timeout).await?;
        Ok(outcomes
            .into_iter()
            .map(|o| o.map_err(NodeError::from))
            .collect())
    }

    /// Admits a write of `bytes` (its data and names), or `Err(DiskFull)` while this node's
    /// data directory is short of its reserve.
    fn check_disk(&self, bytes: usize) -> Result<(), NodeError> {
        self.inner.disk.admit(bytes as u64).map_err(|free| {
            static LAST_WARNING: Mutex<Option<std::time::Instant>> = Mutex::new(None);
            let mut last = LAST_WARNING.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                *last = Some(std::time::Instant::now());
                tracing::error!(
                    free,
                    reserve = self.inner.disk.reserve(),
                    dir = %self.inner.disk.dir().display(),
                    "disk full: refusing writes until space is freed (logged once a minute)"
                );
            }
            NodeError::DiskFull {
                free,
                reserve: self.inner.disk.reserve(),
            }
        })
    }

    /// Reads an item linearizably: the answer reflects every store acknowledged before the
    /// call. Expired items are absent.
    /// The time the read uses is cluster time (see [`crate::cluster_time`]): once a fetch on
    /// any node has found an item expired, no later fetch on any node finds it.
    pub async fn fetch(&self, id: &ItemId) -> Result<Option<Item>, NodeError> {
        self.fetch_with(id, Item::clone).await
    }

    /// A fetch that hands the item to `read` under the state's read lock instead of cloning
    /// it: an answer written from there never touches the reference count of the item's
    /// data, whose block a clone would have to bring into the cache.
    pub async fn fetch_with<R>(
        &self,
        id: &ItemId,
        read: impl FnOnce(&Item) -> R,
    ) -> Result<Option<R>, NodeError> {
        self.read_linearized(|applied, now| applied.state.get(id, now).map(read))
            .await
    }

    /// Hands `read` the applied state, read-locked, and the time the read is taken at, once
    /// this node may answer linearizably: the state then holds every store acknowledged
    /// before the call. A sole voter confirms that under the same lock `read` gets (see
    /// [`Node::confirm_as_sole_voter`]): one lock taken, not two. Any other node first takes
    /// part in one shared read-index round (see `reader`).
    pub(crate) async fn read_linearized<R>(
        &self,
        read: impl FnOnce(&Applied, Timestamp) -> R,
    ) -> Result<R, NodeError> {
        self.check_clock()?;
        if let Some(term) = self.sole_leader_term() {
            let applied = self.inner.shared.read();
            if self.confirm_as_sole_voter(term, &applied) {
                let now = self.inner.time.read_time(applied.state.high_water());
                return Ok(read(&applied, now));
            }
        }
        self.read_round().await?;
        let applied = self.inner.shared.read();
        let now = self.inner.time.read_time(applied.state.high_water());
        Ok(read(&applied, now))
    }

    /// One shared read-index round (see `reader`).
    async fn read_round(&self) -> Result<(), NodeError> {
        let (waiter, ready) = oneshot::channel();
        self.inner
            .reads
            .send(waiter)
            .await
            .map_err(|_| NodeError::Unavailable("the node is stopping".into()))?;
        ready
            .await
            .map_err(|_| NodeError::Unavailable("the node is stopping".into()))?
    }

    /// This node's term when openraft's server metrics say it leads with the effective
    /// membership's only voter being itself (see [`Node::confirm_as_sole_voter`]).
    fn sole_leader_term(&self) -> Option<u64> {
        sole_leader_term(
            &self.inner.server_metrics.borrow_watched(),
            self.inner.node_id,
        )
    }

    /// Whether this node may read its applied state linearizably without a read-index round,
    /// and if so, settles the time the read uses (as a round would).
    ///
    /// True when openraft's server metrics say this node leads, the effective membership (the
    /// latest appended, committed or not) has this node as its only voter, and the state
    /// machine has applied an entry of this node's term. Then no other node can commit
    /// anything: a second voter enters the effective membership when its change is appended
    /// here, and from then on this check fails. Every write acknowledged so far was applied
    /// before its answer went out (answers come from `apply`), and entries of earlier terms
    /// are applied because one of this term is. A round would confirm exactly this through
    /// the Raft core (a quorum of one needs no message) at the cost of two task hand-offs
    /// per round.
    ///
    /// The metrics are published by the core before it waits for its next message, so a
    /// leader that stepped down (a vote for another node) shows it before any other node can
    /// commit: with this node among the voters, the other node needs this node to accept its
    /// entries first.
    ///
    /// `term` is what [`Node::sole_leader_term`] said; `applied` is the state machine's state,
    /// read-locked by the caller (who reads from it next, when this says yes).
    fn confirm_as_sole_voter(&self, term: u64, applied: &Applied) -> bool {
        if applied.last_applied.map(|l| l.leader_id.term) != Some(term) {
            return false;
        }
        let t = self.inner.time.begin_read(applied.state.high_water(), true);
        self.inner.time.confirm(t);
        true
    }

    /// The live items of `namespace`, sorted by key, at most `limit` of them (linearizable,
    /// like a fetch); the flag says whether more were left out. For debugging: it scans
    /// every item.
    pub async fn list(
        &self,
        namespace: &Namespace,
        limit: usize,
    ) -> Result<(Vec<(Key, Item)>, bool), NodeError> {
        let mut items: Vec<(Key, Item)> = self
            .read_linearized(|applied, now| {
                applied
                    .state
                    .iter()
                    .filter(|(id, item)| &id.namespace == namespace && item.expires_at > now)
                    .map(|(id, item)| (id.key.clone(), item.clone()))
                    .collect()
            })
            .await?;
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let truncated = items.len() > limit;
        items.truncate(limit);
        Ok((items, truncated))
    }

    /// The clock's time now (the time reads are taken at).
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Stops Raft (flushing what it has) and the background tasks, and returns once the
    /// tasks are gone: the clock watch and the election timer hold the node while a tick
    /// runs, so until they are, the data directory's lock may outlive the last handle (a
    /// restart in the same process then found it locked, once, in CI).
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not stop cleanly");
        }
        let tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            // Cancelled (or already finished): either way its future has been dropped.
            let _ = task.await;
        }
    }

    /// The data directory's root (backups are written there, unlinked).
    pub(crate) fn data_root(&self) -> &Path {
        self.inner.data_dir.root()
    }
}

#[cfg(test)]
mod tests {
    use openraft::metrics::RaftServerMetrics;
    use openraft::ServerState;

    use super::sole_leader_term;
    use crate::node::metrics_fixture::metrics;
    use crate::types::{TypeConfig, Vote};

    /// Node 1's server metrics in `state`, with `leader` known, `voters` as the membership
    /// and a committed vote of term 5.
    fn server(
        state: ServerState,
        leader: Option<u64>,
        voters: &[u64],
    ) -> RaftServerMetrics<TypeConfig> {
        let membership = metrics(state, voters).membership_config;
        RaftServerMetrics {
            id: 1,
            vote: Vote::new_committed(5, 1),
            state,
            current_leader: leader,
            membership_config: membership.clone(),
            committed_membership_config: membership,
        }
    }

    #[test]
    fn only_a_leader_that_is_the_only_voter_reads_without_a_round() {
        assert_eq!(
            sole_leader_term(&server(ServerState::Leader, Some(1), &[1]), 1),
            Some(5)
        );
        // A second voter (appended, committed or not): rounds again.
        assert_eq!(
            sole_leader_term(&server(ServerState::Leader, Some(1), &[1, 2]), 1),
            None
        );
        // Not leading, or another node named leader, or not a voter at all.
        for state in [
            ServerState::Follower,
            ServerState::Candidate,
            ServerState::Learner,
            ServerState::Shutdown,
        ] {
            assert_eq!(sole_leader_term(&server(state, Some(1), &[1]), 1), None);
        }
        assert_eq!(
            sole_leader_term(&server(ServerState::Leader, Some(2), &[1]), 1),
            None
        );
        assert_eq!(
            sole_leader_term(&server(ServerState::Leader, Some(1), &[2]), 1),
            None
        );
    }
}
