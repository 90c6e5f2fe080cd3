//! The node: opens storage, starts openraft and the writer, reader and purge tasks, and offers
//! the API a small service handle (`store`, `fetch`, `readiness`, `status`, `shutdown`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};
use statemanager_core::{
    Batch, Clock, Item, ItemId, Key, Limits, Namespace, Op, StoreOp, Stored, Timestamp,
};
use statemanager_storage::{DataDir, LogEngine, StorageError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::backup::{BackupCapture, BackupHeader, BACKUP_FORMAT, BACKUP_KIND};
use crate::cluster_time::ClusterTime;
use crate::log_store::LogStore;
use crate::network::{cluster_id_of, ClusterId, PeerNetwork};

pub(crate) const META_CLUSTER_ID: &str = "cluster-id";

/// How long a node being added may take to catch up before the add is abandoned.
const LEARNER_CATCH_UP: Duration = Duration::from_secs(10);

/// Most log entries in one append RPC (see `peer_server::MAX_PEER_BODY`).
pub const MAX_PAYLOAD_ENTRIES: u64 = 16;

/// Time allowed to send one snapshot chunk, and to install the state after the last one.
pub const SNAPSHOT_CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

/// A cluster id from the members it was formed with (FNV-1a over `id=addr` pairs, sorted).
pub(crate) fn derive_cluster_id(members: &[(NodeId, String)]) -> String {
    let mut sorted = members.to_vec();
    sorted.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (id, addr) in sorted {
        for byte in format!("{id}={addr};").bytes() {
            hash ^= byte as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}
use crate::local_read;
use crate::reader::{self, ReadWaiter};
use crate::state_machine::{SharedState, StateMachine};
use crate::types::{NodeId, TypeConfig};
use crate::writer::{self, WriteRequest, WriterOptions};
use crate::NodeError;

/// Everything a node needs to start. The server builds it from the configuration.
#[derive(Clone)]
pub struct NodeOptions {
    /// This node's id.
    pub node_id: NodeId,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The client address this node advertises.
    pub api_addr: String,
    /// The address other nodes reach this one at (its `peer_listen`), if it has a peer port.
    pub peer_addr: Option<String>,
    /// The initial members (`peers`: node id → peer address). Used only to form a new
    /// cluster; after the first start the stored membership wins.
    pub peers: BTreeMap<NodeId, String>,
    /// Start empty and wait to be added to an existing cluster.
    pub join: bool,
    /// How this node authenticates to peers and checks them.
    pub peer_credentials: crate::network::PeerCredentials,
    /// Free bytes the data directory's file system must keep for writes to be proposed
    /// (0: no check).
    pub disk_reserve: u64,
    /// Item limits, stamped into every batch this node proposes as leader.
    pub limits: Limits,
    /// The clock the leader stamps batches with.
    pub clock: Arc<dyn Clock>,
    /// Raft heartbeat interval.
    pub heartbeat: Duration,
    /// Raft election timeout range.
    pub election_timeout: (Duration, Duration),
    /// Take a snapshot once this many log entries were applied since the last one.
    pub snapshot_logs: u64,
    /// Log entries kept after a snapshot (for followers that lag a little; one that lags more
    /// catches up by snapshot).
    pub snapshot_keep_logs: u64,
    /// Or once the log since the last snapshot holds this many bytes and more than the
    /// state itself (so a snapshot never writes more than the log it lets go, ×2 at worst).
    pub snapshot_log_bytes: u64,
    /// How long a proposed write may take to commit.
    pub commit_timeout: Duration,
    /// How long a read may wait for its read index.
    pub read_timeout: Duration,
    /// How often the leader checks for expired items to purge.
    pub purge_interval: Duration,
    /// Most operations per log entry.
    pub max_batch_ops: usize,
    /// Most data bytes per log entry.
    pub max_batch_bytes: usize,
    /// Most batches in flight (proposed, not yet answered).
    pub write_pipeline: usize,
    /// Largest clock offset from the majority this node may have and still lead and serve
    /// (see [`crate::cluster_time`]).
    pub max_clock_offset: Duration,
    /// This node's share of the shared ephemeral cache: forwarded `get_data`/`set_data`
    /// calls from peers are answered from it (`None`: refused).
    pub cache: Option<Arc<statemanager_cache::Cache>>,
}

impl NodeOptions {
    /// Defaults for a one-node store in `data_dir`.
    pub fn new(data_dir: PathBuf, clock: Arc<dyn Clock>) -> Self {
        NodeOptions {
            node_id: 1,
            data_dir,
            api_addr: String::new(),
            peer_addr: None,
            peers: BTreeMap::new(),
            join: false,
            peer_credentials: Default::default(),
            disk_reserve: 0,
            limits: Limits::default(),
            clock,
            heartbeat: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(250), Duration::from_millis(500)),
            snapshot_logs: 100_000,
            snapshot_log_bytes: 64 * 1024 * 1024,
            snapshot_keep_logs: 1000,
            commit_timeout: Duration::from_millis(1500),
            read_timeout: Duration::from_millis(1500),
            purge_interval: Duration::from_secs(1),
            max_batch_ops: 1024,
            max_batch_bytes: 4 * 1024 * 1024,
            write_pipeline: 1,
            max_clock_offset: Duration::from_millis(500),
            cache: None,
        }
    }
}

/// One member of the cluster, as the leader (or this node) sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Member {
    /// Node id.
    pub id: NodeId,
    /// Its peer address.
    pub peer_addr: String,
    /// `voter` or `learner`.
    pub state: &'static str,
    /// The last log index known to be replicated to it (leader only).
    pub matched_index: Option<u64>,
}

/// The live items of one namespace, for the console (`GET /admin/namespaces`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceStats {
    /// The namespace (a protected one starts with NUL, see `Namespace::protected`).
    pub namespace: Namespace,
    /// Live items.
    pub items: u64,
    /// Sum of their data sizes, in bytes.
    pub bytes: u64,
    /// The earliest expiry among them.
    pub next_expiry: Option<Timestamp>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory or its contents.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// openraft refused the configuration or failed to start.
    #[error("raft: {0}")]
    Raft(String),
}

/// A snapshot of the node's state for `/status` and `/metrics`.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// This node.
    pub node_id: NodeId,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: &'static str,
    /// The current leader, if known.
    pub leader: Option<NodeId>,
    /// The current term.
    pub term: u64,
    /// Index of the last log entry.
    pub last_log_index: u64,
    /// Index of the last applied entry.
    pub applied_index: u64,
    /// Items held.
    pub items: u64,
    /// Bytes of item data held.
    pub data_bytes: u64,
    /// Earliest expiry of a held item.
    pub next_expiry: Option<Timestamp>,
    /// Items purged by expiry since start.
    pub expired_total: u64,
}

struct Inner {
    node_id: NodeId,
    cluster_id: ClusterId,
    peer_secret: Option<crate::auth::ClusterSecret>,
    disk: crate::disk::DiskSpace,
    engine: LogEngine,
    api_addr: String,
    network: PeerNetwork,
    raft: Raft<TypeConfig>,
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
    _data_dir: DataDir,
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
    /// Opens the data directory (taking its lock), recovers the log and the last snapshot,
    /// starts Raft, and initialises a one-member cluster on first start.
    pub async fn start(options: NodeOptions) -> Result<Node, StartError> {
        let data_dir = DataDir::open(&options.data_dir)?;
        let engine = {
            let dir = data_dir.log_dir();
            tokio::task::spawn_blocking(move || LogEngine::open(&dir))
                .await
                .map_err(|e| StartError::Raft(e.to_string()))??
        };
        let log_store = LogStore::new(engine.clone());
        let engine_for_inner = engine.clone();
        let snapshot_dir = data_dir.snapshot_dir();
        let state_machine = tokio::task::spawn_blocking(move || StateMachine::open(&snapshot_dir))
            .await
            .map_err(|e| StartError::Raft(e.to_string()))??;
        let shared = state_machine.shared();

        let config = openraft::Config {
            cluster_name: "statemanager".into(),
            heartbeat_interval: options.heartbeat.as_millis() as u64,
            election_timeout_min: options.election_timeout.0.as_millis() as u64,
            election_timeout_max: options.election_timeout.1.as_millis() as u64,
            // Our own policy (snapshot_loop) decides, by entries and by bytes.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: options.snapshot_keep_logs,
            // Entries per append RPC: each entry is a whole batch of stores (up to ~4 MiB),
            // so openraft's default of 300 could make one request of a gigabyte.
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            // Each snapshot chunk (3 MiB) must be sent, and the last one installed (the whole
            // state loaded), within this. openraft's 200 ms default is far too short on a busy
            // machine for a state of a few hundred megabytes: the transfer timed out and
            // started again, and the lagging node meanwhile ran elections that deposed the
            // leader (cluster benchmark, a 200 MB state).
            install_snapshot_timeout: SNAPSHOT_CHUNK_TIMEOUT.as_millis() as u64,
            // `election` runs the election timer, with a pre-vote before every campaign.
            enable_elect: false,
            ..Default::default()
        };
        let config = Arc::new(
            config
                .validate()
                .map_err(|e| StartError::Raft(e.to_string()))?,
        );
        // The cluster id: stored at formation; derived from the members the cluster was formed
        // with, so every node that forms it from the same `peers` agrees; a joining node
        // takes it from the first leader that contacts it. It is settled before Raft runs
        // (a stored one) or before the cluster is initialised (a new one): RPCs sent without
        // it are refused by peers that have one.
        let stored_cluster_id = engine
            .get_meta(META_CLUSTER_ID)?
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let cluster_id: ClusterId =
            std::sync::Arc::new(std::sync::RwLock::new(stored_cluster_id.clone()));
        let time = Arc::new(ClusterTime::new(
            options.node_id,
            options.clock.clone(),
            options.max_clock_offset,
        ));
        let stamp_clock: Arc<dyn Clock> = time.clone();
        let network = PeerNetwork::new(
            cluster_id.clone(),
            options.peer_credentials.clone(),
            time.clone(),
        )
        .map_err(StartError::Raft)?;
        let raft = Raft::new(
            options.node_id,
            config,
            network.clone(),
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        // The founding members, when this node forms a new cluster (checked before anything
        // is stored: a misconfigured first start leaves the data dir as it was).
        let founders: Option<BTreeMap<NodeId, BasicNode>> = if !initialized && !options.join {
            if options.peers.is_empty() {
                let addr = options
                    .peer_addr
                    .clone()
                    .unwrap_or_else(|| options.api_addr.clone());
                Some(BTreeMap::from([(options.node_id, BasicNode::new(addr))]))
            } else {
                if !options.peers.contains_key(&options.node_id) {
                    return Err(StartError::Raft(format!(
                        "node_id {} is not in peers ({:?}); use join: true to be added later",
                        options.node_id,
                        options.peers.keys().collect::<Vec<_>>()
                    )));
                }
                Some(
                    options
                        .peers
                        .iter()
                        .map(|(id, addr)| (*id, BasicNode::new(addr)))
                        .collect(),
                )
            }
        } else {
            None
        };

        let members: Option<Vec<(NodeId, String)>> = match (&stored_cluster_id, &founders) {
            (Some(_), _) => None,
            (None, Some(founders)) => Some(
                founders
                    .iter()
                    .map(|(id, n)| (*id, n.addr.clone()))
                    .collect(),
            ),
            // A data dir from before cluster ids were stored: the stored membership.
            (None, None) if initialized => {
                let m = raft.metrics().borrow().clone();
                Some(
                    m.membership_config
                        .membership()
                        .nodes()
                        .map(|(id, n)| (*id, n.addr.clone()))
                        .collect(),
                )
            }
            // Joining: the id comes with the first leader's RPC.
            (None, None) => None,
        };
        let id = match members {
            Some(members) => {
                let id = derive_cluster_id(&members);
                engine.put_meta(META_CLUSTER_ID, id.as_bytes())?;
                *cluster_id.write().unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
                Some(id)
            }
            None => stored_cluster_id,
        };
        if let Some(id) = &id {
            tracing::info!(cluster_id = %id, "cluster");
        }

        if let Some(members) = founders {
            // Every listed node may initialise with the same member set: openraft treats
            // identical initialisation as safe, so the cluster forms in any start order.
            let count = members.len();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(
                    node_id = options.node_id,
                    members = count,
                    "initialised a new cluster"
                ),
                // Another member's identical initialisation reached us first.
                Err(openraft::error::RaftError::APIError(
                    openraft::error::InitializeError::NotAllowed(_),
                )) => {}
                Err(e) => return Err(StartError::Raft(format!("initialising the cluster: {e}"))),
            }
        } else if !initialized {
            tracing::info!(
                node_id = options.node_id,
                "waiting to be added to a cluster (join)"
            );
        }

        let takeover = Arc::new(crate::takeover::Takeover::new(
            options.node_id,
            options.election_timeout.1,
        ));
        let (writes, write_rx) = mpsc::channel(16 * 1024);
        let (reads, read_rx) = mpsc::channel(16 * 1024);
        let tasks = vec![
            tokio::spawn(writer::run(
                raft.clone(),
                network.clone(),
                stamp_clock.clone(),
                options.limits,
                WriterOptions {
                    max_ops: options.max_batch_ops,
                    max_bytes: options.max_batch_bytes,
                    commit_timeout: options.commit_timeout,
                    pipeline: options.write_pipeline,
                    quorum_timeout: options.election_timeout.1,
                },
                write_rx,
            )),
            tokio::spawn(reader::run(
                raft.clone(),
                network.clone(),
                time.clone(),
                shared.clone(),
                options.read_timeout,
                read_rx,
            )),
            tokio::spawn(count_leader_changes(raft.clone())),
            tokio::spawn(snapshot_loop(
                raft.clone(),
                engine,
                shared.clone(),
                options.snapshot_logs,
                options.snapshot_log_bytes,
            )),
            tokio::spawn(purge_loop(
                raft.clone(),
                shared.clone(),
                stamp_clock.clone(),
                options.limits,
                options.purge_interval,
                options.commit_timeout,
            )),
        ];

        let node = Node {
            inner: Arc::new(Inner {
                node_id: options.node_id,
                cluster_id,
                peer_secret: options.peer_credentials.secret.clone(),
                disk: crate::disk::DiskSpace::new(&options.data_dir, options.disk_reserve),
                engine: engine_for_inner,
                api_addr: options.api_addr.clone(),
                network,
                raft,
                shared,
                writes,
                reads,
                time,
                clock: stamp_clock,
                limits: options.limits,
                election_max: options.election_timeout.1,
                commit_timeout: options.commit_timeout,
                takeover,
                cache: options.cache.clone(),
                shared_cache: std::sync::OnceLock::new(),
                tasks: Mutex::new(tasks),
                _data_dir: data_dir,
            }),
        };
        let watch = tokio::spawn(clock_watch(Arc::downgrade(&node.inner)));
        let timer = tokio::spawn(crate::election::run(
            WeakNode(Arc::downgrade(&node.inner)),
            crate::election::Timing {
                min: options.election_timeout.0,
                max: options.election_timeout.1,
            },
        ));
        node.inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend([watch, timer]);
        Ok(node)
    }

    /// This node's cluster time and clock offsets (see [`crate::cluster_time`]).
    pub fn time(&self) -> &ClusterTime {
        &self.inner.time
    }

    /// Where this node's clock stands against its peers' now (for `/status`).
    pub fn clock_verdict(&self) -> crate::cluster_time::Verdict {
        let (voters, leader) = {
            let metrics = self.inner.raft.server_metrics();
            let m = metrics.borrow();
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
            Some(reason) => Err(NodeError::Unavailable(reason)),
            None => Ok(()),
        }
    }

    /// This node's cluster id (`None` while waiting to join).
    pub fn cluster_id(&self) -> Option<String> {
        cluster_id_of(&self.inner.cluster_id)
    }

    /// Checks a peer's cluster id. A node waiting to join adopts the first one it is sent
    /// (and stores it); otherwise a different or missing id is refused.
    pub fn admit_peer(&self, theirs: Option<&str>) -> Result<(), String> {
        let mut cell = self
            .inner
            .cluster_id
            .write()
            .unwrap_or_else(|p| p.into_inner());
        match (cell.as_deref(), theirs) {
            (Some(ours), Some(theirs)) if ours == theirs => Ok(()),
            (Some(ours), Some(theirs)) => Err(format!(
                "peer belongs to cluster {theirs}, this node to cluster {ours}"
            )),
            (Some(ours), None) => Err(format!(
                "peer sent no cluster id; this node belongs to cluster {ours}"
            )),
            (None, Some(theirs)) => {
                self.inner
                    .engine
                    .put_meta(META_CLUSTER_ID, theirs.as_bytes())
                    .map_err(|e| format!("storing the cluster id: {e}"))?;
                tracing::info!(cluster_id = %theirs, "joined cluster");
                *cell = Some(theirs.to_string());
                Ok(())
            }
            (None, None) => Ok(()),
        }
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

    /// The ids of the members (voters and learners), this node included; just this node
    /// before it belongs to a cluster.
    pub fn member_ids(&self) -> Vec<NodeId> {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        let ids: Vec<NodeId> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            vec![self.inner.node_id]
        } else {
            ids
        }
    }

    /// The peer address of member `id`.
    pub fn member_addr(&self, id: NodeId) -> Option<String> {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    }

    /// The Raft handle (for the peer server's RPC routes).
    pub fn raft(&self) -> &Raft<TypeConfig> {
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
    pub fn reload_peer_tls(&self) -> Result<(), String> {
        self.inner.network.reload_tls()
    }

    /// The cluster secret peers and administrators must present, if one is configured.
    pub fn peer_secret(&self) -> Option<&crate::auth::ClusterSecret> {
        self.inner.peer_secret.as_ref()
    }

    /// A request to `path` on the peer at `addr` with this node's credentials (keep-alive
    /// connections shared with the Raft network; see `PeerNetwork::request`).
    pub fn peer_request(
        &self,
        method: reqwest::Method,
        addr: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.inner.network.request(method, addr, path)
    }

    /// The current leader's id and peer address, if a leader is known and it is not us.
    pub fn remote_leader(&self) -> Option<(NodeId, String)> {
        let m = self.inner.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        if leader == self.inner.node_id {
            return None;
        }
        let addr = m
            .membership_config
            .membership()
            .get_node(&leader)?
            .addr
            .clone();
        Some((leader, addr))
    }

    /// The index of the last committed log entry, as this node knows it.
    pub async fn commit_index(&self) -> Option<u64> {
        self.inner
            .raft
            .with_raft_state(|st| st.committed.map(|l| l.index))
            .await
            .ok()
            .flatten()
    }

    /// Whether this node leads and heard from a quorum within an election timeout.
    pub fn leads_with_quorum(&self) -> bool {
        self.status().role == "leader"
            && writer::quorum_lost(&self.inner.raft, self.inner.election_max).is_none()
    }

    /// The members of the cluster, with replication progress when this node leads.
    pub fn members(&self) -> Vec<Member> {
        let m = self.inner.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                peer_addr: node.addr.clone(),
                state: if voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                },
                matched_index: m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).copied().flatten())
                    .map(|l| l.index)
                    .or_else(|| (*id == self.inner.node_id).then(|| m.last_log_index.unwrap_or(0))),
            })
            .collect()
    }

    /// Adds node `id` at `peer_addr`: first as a learner (waiting until it has caught up),
    /// then as a voter. Only the leader can do this.
    pub async fn add_member(&self, id: NodeId, peer_addr: &str) -> Result<(), String> {
        let raft = &self.inner.raft;
        raft.add_learner(id, BasicNode::new(peer_addr), true)
            .await
            .map_err(|e| format!("adding node {id} as a learner: {e}"))?;
        // openraft's blocking add returns even when the learner never answered (unreachable,
        // or refusing our credentials). Promoting such a node would only cost availability:
        // check that it holds the log, else take it out again.
        let target = raft.metrics().borrow().last_log_index;
        let caught_up = raft
            .wait(Some(LEARNER_CATCH_UP))
            .metrics(
                |m| {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&id).copied().flatten())
                        .map(|l| l.index)
                        >= target
                },
                "learner caught up",
            )
            .await
            .is_ok();
        if !caught_up {
            let _ = raft
                .change_membership(
                    openraft::ChangeMembers::RemoveNodes(std::collections::BTreeSet::from([id])),
                    false,
                )
                .await;
            return Err(format!(
                "node {id} at {peer_addr} did not catch up within {} s (unreachable, or it \
                 refuses this cluster's credentials); it was not added",
                LEARNER_CATCH_UP.as_secs()
            ));
        }
        let mut voters: std::collections::BTreeSet<NodeId> = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        voters.insert(id);
        raft.change_membership(voters, false)
            .await
            .map_err(|e| format!("promoting node {id} to voter: {e}"))?;
        Ok(())
    }

    /// Removes node `id` from the cluster. Only the leader can do this.
    pub async fn remove_member(&self, id: NodeId) -> Result<(), String> {
        let raft = &self.inner.raft;
        let mut voters: std::collections::BTreeSet<NodeId> = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        if !voters.remove(&id) && !self.members().iter().any(|m| m.id == id) {
            return Err(format!("node {id} is not a member"));
        }
        if voters.is_empty() {
            return Err("cannot remove the last voter".into());
        }
        raft.change_membership(voters, false)
            .await
            .map_err(|e| format!("removing node {id}: {e}"))?;
        Ok(())
    }

    /// When this node leads a multi-voter cluster, asks the most up-to-date other voter to
    /// start an election now, so that stopping this node does not leave the cluster
    /// leaderless for an election timeout. Returns the node asked, if any.
    pub async fn hand_over_leadership(&self) -> Option<NodeId> {
        let m = self.inner.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return None;
        }
        let membership = m.membership_config.membership().clone();
        let replication = m.replication.clone().unwrap_or_default();
        let (target, _) = membership
            .voter_ids()
            .filter(|id| *id != self.inner.node_id)
            .map(|id| (id, replication.get(&id).copied().flatten().map(|l| l.index)))
            .max_by_key(|(_, matched)| *matched)?;
        let addr = membership.get_node(&target)?.addr.clone();
        let asked = self
            .peer_request(reqwest::Method::POST, &addr, "/raft/elect")
            .timeout(Duration::from_millis(500))
            .send()
            .await;
        match asked {
            Ok(r) if r.status().is_success() => Some(target),
            _ => None,
        }
    }

    /// Waits (at most `limit`) until some leader is known; `true` if one is.
    pub async fn wait_for_leader(&self, limit: Duration) -> bool {
        let mut watch = self.inner.raft.metrics();
        tokio::time::timeout(limit, async {
            loop {
                if watch.borrow().current_leader.is_some() {
                    return;
                }
                if watch.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
            && self.inner.raft.metrics().borrow().current_leader.is_some()
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
            self.check_disk()?;
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
            return Err(NodeError::NoQuorum(reason));
        }
        self.check_clock()?;
        if ops.iter().any(|op| matches!(op, Op::Store(_))) {
            self.check_disk()?;
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

    /// `Err(DiskFull)` while this node's data directory is short of its reserve.
    fn check_disk(&self) -> Result<(), NodeError> {
        self.inner.disk.check().map_err(|free| {
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
        self.linearize().await?;
        let applied = self.inner.shared.read();
        let now = self.inner.time.read_time(applied.state.high_water());
        Ok(applied.state.get(id, now).cloned())
    }

    /// Waits until this node may answer linearizably (one shared read-index round, see
    /// `reader`).
    async fn linearize(&self) -> Result<(), NodeError> {
        self.check_clock()?;
        if local_read::SoleVoterView::of(&self.inner.raft).may_read_locally() {
            local_read::sole_voter_read(&self.inner.time, &self.inner.shared);
            return Ok(());
        }
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

    /// The live items of `namespace`, sorted by key, at most `limit` of them (linearizable,
    /// like a fetch); the flag says whether more were left out. For debugging: it scans
    /// every item.
    pub async fn list(
        &self,
        namespace: &Namespace,
        limit: usize,
    ) -> Result<(Vec<(Key, Item)>, bool), NodeError> {
        self.linearize().await?;
        let applied = self.inner.shared.read();
        let now = self.inner.time.read_time(applied.state.high_water());
        let mut items: Vec<(Key, Item)> = applied
            .state
            .iter()
            .filter(|(id, item)| &id.namespace == namespace && item.expires_at > now)
            .map(|(id, item)| (id.key.clone(), item.clone()))
            .collect();
        drop(applied);
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let truncated = items.len() > limit;
        items.truncate(limit);
        Ok((items, truncated))
    }

    /// A consistent copy of every item for a backup: it holds every store acknowledged before
    /// the call (a linearizable read), and is taken under one read lock, so it is the state at
    /// one applied index. Items share their strings with the live state: this copies pointers.
    pub async fn backup_capture(&self) -> Result<BackupCapture, NodeError> {
        self.linearize().await?;
        let applied = self.inner.shared.read();
        let items: Vec<(ItemId, Item)> = applied
            .state
            .iter()
            .map(|(id, item)| (id.clone(), item.clone()))
            .collect();
        let header = BackupHeader {
            kind: BACKUP_KIND.into(),
            format: BACKUP_FORMAT,
            created_at: self.inner.clock.now(),
            source_node: self.inner.node_id,
            cluster_id: self.cluster_id(),
            applied_index: applied.last_applied.map_or(0, |l| l.index),
            high_water: applied.state.high_water(),
            items: items.len() as u64,
        };
        Ok(BackupCapture { header, items })
    }

    /// Writes a backup (see [`Node::backup_capture`]) to an unlinked file in the data
    /// directory (so it needs no cleanup and inherits the directory's permissions) and
    /// returns it, rewound, with its header.
    pub async fn backup_file(&self) -> Result<(std::fs::File, BackupHeader), NodeError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let capture = self.backup_capture().await?;
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self
            .inner
            ._data_dir
            .root()
            .join(format!("backup-{}-{n}.smbackup", std::process::id()));
        let written = tokio::task::spawn_blocking(move || {
            crate::backup::write_backup(&path, &capture)?;
            let file = std::fs::File::open(&path)
                .map_err(|e| StorageError::io(format!("opening {}", path.display()), e))?;
            let _ = std::fs::remove_file(&path);
            Ok::<_, StorageError>((file, capture.header))
        })
        .await
        .map_err(|e| NodeError::Unavailable(format!("backup task failed: {e}")))?;
        written.map_err(|e| NodeError::Unavailable(format!("writing the backup failed: {e}")))
    }

    /// Every namespace with live items, sorted, with its counts, as this node has applied
    /// them (a local read, not linearizable: a status page). It scans every item, under the
    /// state's read lock: cheap next to `/admin/list`, but not for tight loops.
    pub fn namespace_stats(&self) -> (Timestamp, Vec<NamespaceStats>) {
        let applied = self.inner.shared.read();
        let now = self.inner.clock.now().max(applied.state.high_water());
        let mut by_namespace: std::collections::HashMap<&Namespace, NamespaceStats> =
            std::collections::HashMap::new();
        for (id, item) in applied.state.iter() {
            if item.expires_at <= now {
                continue;
            }
            let stats = by_namespace
                .entry(&id.namespace)
                .or_insert_with(|| NamespaceStats {
                    namespace: id.namespace.clone(),
                    items: 0,
                    bytes: 0,
                    next_expiry: None,
                });
            stats.items += 1;
            stats.bytes += item.data.len() as u64;
            stats.next_expiry = Some(match stats.next_expiry {
                Some(t) => t.min(item.expires_at),
                None => item.expires_at,
            });
        }
        let mut list: Vec<NamespaceStats> = by_namespace.into_values().collect();
        drop(applied);
        list.sort_by(|a, b| a.namespace.cmp(&b.namespace));
        (now, list)
    }

    /// The clock's time now (the time reads are taken at).
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Free bytes on the data directory's file system (`None` if unreadable) and the
    /// configured `disk_reserve`.
    pub fn disk_space(&self) -> (Option<u64>, u64) {
        (self.inner.disk.free(), self.inner.disk.reserve())
    }

    /// `Ok` when this node can serve linearizable reads and writes now, else the reason.
    pub fn readiness(&self) -> Result<(), String> {
        let m = self.inner.raft.metrics().borrow().clone();
        if let Err(e) = &m.running_state {
            return Err(format!("raft has stopped: {e}"));
        }
        if let Some(reason) = self.inner.time.refusal() {
            return Err(reason);
        }
        match m.state {
            ServerState::Leader => {
                if m.last_applied.map(|l| l.leader_id.term) != Some(m.current_term) {
                    return Err("the leader has not yet committed an entry of its term".into());
                }
                let voters = m.membership_config.membership().voter_ids().count();
                if voters > 1 {
                    let fresh = m
                        .millis_since_quorum_ack
                        .is_some_and(|ms| ms <= self.inner.election_max.as_millis() as u64);
                    if !fresh {
                        return Err("the leader has not heard from a quorum recently".into());
                    }
                }
                Ok(())
            }
            // A follower's readiness depends on its leader: see `follower_readiness`.
            ServerState::Follower => match m.current_leader {
                Some(_) => Ok(()),
                None => Err("no leader is known (election in progress or no quorum)".into()),
            },
            ServerState::Candidate => Err("an election is in progress".into()),
            ServerState::Learner => Err("this node is a learner (not yet a voting member)".into()),
            ServerState::Shutdown => Err("the node is stopping".into()),
        }
    }

    /// The node's current state.
    pub fn status(&self) -> NodeStatus {
        let m = self.inner.raft.metrics().borrow().clone();
        let stats = self.inner.shared.read().state.stats();
        NodeStatus {
            node_id: self.inner.node_id,
            role: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            },
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            items: stats.items,
            data_bytes: stats.data_bytes,
            next_expiry: stats.next_expiry,
            expired_total: stats.expired_total,
        }
    }

    /// Resolves when Raft has stopped on its own (a storage failure), with the reason.
    ///
    /// It waits for the core's server-metrics channel to close (the core task has ended)
    /// rather than watching every metrics change: the full metrics change many times per
    /// batch, and each change would wake this task.
    pub async fn fatal(&self) -> String {
        let mut server = self.inner.raft.server_metrics();
        loop {
            if let Err(e) = &self.inner.raft.metrics().borrow().running_state {
                return e.to_string();
            }
            if server.changed().await.is_err() {
                break;
            }
        }
        match &self.inner.raft.metrics().borrow().running_state {
            Err(e) => e.to_string(),
            Ok(()) => "raft stopped".into(),
        }
    }

    /// Stops Raft (flushing what it has) and the background tasks.
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not stop cleanly");
        }
        let tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            task.abort();
        }
    }
}

/// Counts changes of the known leader (`statemanager_raft_leader_changes_total`).
async fn count_leader_changes(raft: Raft<TypeConfig>) {
    let changes = metrics::counter!("statemanager_raft_leader_changes_total");
    changes.increment(0); // present from the start, even before any change
                          // Server metrics (vote, role, leader, membership) change only when those do, not with
                          // every log append as the full metrics do.
    let mut watch = raft.server_metrics();
    let (mut leader, mut state) = {
        let m = watch.borrow();
        (m.current_leader, m.state)
    };
    while watch.changed().await.is_ok() {
        let (now, now_state, term) = {
            let m = watch.borrow();
            (m.current_leader, m.state, m.vote.leader_id().term)
        };
        if now != leader {
            changes.increment(1);
            match now {
                Some(id) => tracing::info!(leader = id, term, "leader known"),
                None => tracing::info!(term, "no leader known"),
            }
            leader = now;
        }
        if now_state != state {
            if now_state == ServerState::Candidate {
                tracing::info!(term, "election: this node is a candidate");
            }
            state = now_state;
        }
    }
}

/// Triggers a snapshot once `max_entries` entries were applied since the last one, or once
/// the log since the last one holds more than `max(min_bytes, state bytes)`: snapshot cost
/// then stays proportional to the log it lets go (write amplification ≤ 2), instead of
/// rewriting a large state every few thousand small entries.
async fn snapshot_loop(
    raft: Raft<TypeConfig>,
    engine: LogEngine,
    shared: Arc<SharedState>,
    max_entries: u64,
    min_bytes: u64,
) {
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let m = raft.metrics().borrow().clone();
        let applied = m.last_applied.map_or(0, |l| l.index);
        let snapshot = m.snapshot.map_or(0, |l| l.index);
        if applied <= snapshot {
            continue;
        }
        let state_bytes = shared.read().state.stats().data_bytes;
        let due = applied - snapshot >= max_entries
            || engine.bytes_after(snapshot) >= min_bytes.max(state_bytes);
        if !due {
            continue;
        }
        if raft.trigger().snapshot().await.is_err() {
            return; // Raft has stopped.
        }
        // Wait (bounded) for it to land, so it is not asked for twice.
        let mut metrics = raft.metrics();
        let _ = tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                if metrics.borrow().snapshot.map_or(0, |l| l.index) >= applied {
                    return;
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }
}

/// While leader, proposes an empty batch whenever an item has expired: applying it purges
/// everything expired by the batch's time (cost proportional to what expired), on every
/// replica alike.
async fn purge_loop(
    raft: Raft<TypeConfig>,
    shared: Arc<SharedState>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    interval: Duration,
    commit_timeout: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let is_leader = raft.metrics().borrow().state == ServerState::Leader;
        let now = clock.now();
        let due = shared
            .read()
            .state
            .next_expiry()
            .is_some_and(|at| at <= now);
        if !(is_leader && due) {
            continue;
        }
        let batch = Batch {
            now,
            limits,
            ops: vec![],
        };
        if let Err(e) = writer::propose(&raft, batch, commit_timeout).await {
            tracing::debug!(error = %e, "purge proposal failed; will retry");
        }
    }
}

/// Watches this node's clock against its peers' (every 250 ms): exports the offsets, warns
/// above half of `max_clock_offset`, and while the node is off from the majority by more than
/// that, keeps it from leading (no elections, leadership handed over) and from serving (see
/// `Node::check_clock`), saying so in the log once until it is back within bounds.
async fn clock_watch(node: std::sync::Weak<Inner>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let out_gauge = metrics::gauge!("statemanager_clock_out_of_bounds");
    out_gauge.set(0.0);
    let mut warned = false;
    let mut out = false;
    let mut last_hand_over: Option<std::time::Instant> = None;
    loop {
        ticker.tick().await;
        let Some(inner) = node.upgrade() else { return };
        let node = Node { inner };
        let time = &node.inner.time;
        let bound = time.bound();
        metrics::gauge!("statemanager_clock_max_offset_seconds").set(bound as f64 / 1e6);
        let (voters, leader, leading) = {
            let metrics = node.inner.raft.server_metrics();
            let m = metrics.borrow();
            let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
            (voters, m.current_leader, m.state == ServerState::Leader)
        };
        let verdict = time.verdict(&voters, leader);
        for (peer, offset) in &verdict.offsets {
            metrics::gauge!("statemanager_clock_offset_seconds", "peer" => peer.to_string())
                .set(*offset as f64 / 1e6);
        }
        let worst = verdict.worst();
        if worst > bound / 2 && !warned {
            warned = true;
            tracing::warn!(
                offsets_ms = ?verdict.offsets.iter().map(|(p, o)| (*p, o / 1000)).collect::<Vec<_>>(),
                max_clock_offset_ms = bound / 1000,
                "clock offset to a peer is over half of max_clock_offset; check NTP on these nodes (logged once until back under)"
            );
        } else if worst <= bound / 2 && warned {
            warned = false;
            tracing::info!(
                worst_ms = worst / 1000,
                "clock offsets to every peer are back under half of max_clock_offset"
            );
        }
        if verdict.out_of_bounds != out {
            out = verdict.out_of_bounds;
            if out {
                let reason = out_of_bounds_reason(bound, &verdict);
                tracing::error!("{reason}");
                time.set_out_of_bounds(Some(reason));
            } else {
                tracing::info!(
                    "this node's clock is back within max_clock_offset of the majority: it serves and may lead again"
                );
                time.set_out_of_bounds(None);
            }
            out_gauge.set(if out { 1.0 } else { 0.0 });
            node.inner.takeover.suppress(out);
        } else if out {
            // Keep the reason's figures current.
            time.set_out_of_bounds(Some(out_of_bounds_reason(bound, &verdict)));
        }
        if out && leading && last_hand_over.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            last_hand_over = Some(std::time::Instant::now());
            match node.hand_over_leadership().await {
                Some(to) => tracing::warn!(to, "clock out of bounds: handed leadership over"),
                None => tracing::warn!("clock out of bounds: no peer took over leadership yet"),
            }
        }
    }
}

/// What a node whose clock is out of bounds says in its log, `/ready` and refusals.
fn out_of_bounds_reason(bound: u64, verdict: &crate::cluster_time::Verdict) -> String {
    format!(
        "this node's clock is off by more than max_clock_offset ({} ms) from the majority of \
         the cluster (beyond it from nodes {:?}; peer offsets in ms: {:?}); it does not lead \
         or serve reads and writes until its clock is corrected",
        bound / 1000,
        verdict.beyond,
        verdict
            .offsets
            .iter()
            .map(|(p, o)| (*p, o / 1000))
            .collect::<Vec<_>>(),
    )
}
