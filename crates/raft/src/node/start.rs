//! Start-up of a node, in named steps: open storage ([`open_storage`]), openraft's
//! configuration ([`raft_config`]), the cluster id ([`settle_cluster_id`]) and the founding
//! members ([`founders`], [`form_cluster`]), then the background tasks ([`spawn_tasks`]).

use openraft::async_runtime::WatchReceiver;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use openraft::{BasicNode, Raft, SnapshotPolicy};
use statemanager_core::Clock;
use statemanager_storage::{DataDir, LogEngine};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use super::start_error::{InitializeFailure, StartError};
use super::{election_timer, tasks, Inner, Node, NodeOptions, WeakNode};
use super::{MAX_PAYLOAD_ENTRIES, SNAPSHOT_CHUNK_TIMEOUT};
use crate::cluster_id::{derive_cluster_id, ClusterId, META_CLUSTER_ID};
use crate::cluster_time::ClusterTime;
use crate::log_store::inline::InlineWrites;
use crate::log_store::saved_vote::SavedVote;
use crate::log_store::LogStore;
use crate::peer::network::PeerNetwork;
use crate::reader::{self, ReadWaiter, Reader};
use crate::state_machine::{SharedState, StateMachine};
use crate::types::NodeId;
use crate::writer::{self, WriteRequest, WriterOptions};

/// What [`open_storage`] opened: the data directory (locked), the log and the state machine.
struct Storage {
    data_dir: DataDir,
    engine: LogEngine,
    state_machine: StateMachine,
}

/// Opens the data directory (taking its lock), the log engine and the last snapshot.
async fn open_storage(options: &NodeOptions) -> Result<Storage, StartError> {
    let data_dir = DataDir::open(&options.data_dir)?;
    let engine = {
        let dir = data_dir.log_dir();
        tokio::task::spawn_blocking(move || LogEngine::open(&dir)).await??
    };
    let snapshot_dir = data_dir.snapshot_dir();
    let state_machine =
        tokio::task::spawn_blocking(move || StateMachine::open(&snapshot_dir)).await??;
    Ok(Storage {
        data_dir,
        engine,
        state_machine,
    })
}

/// openraft's configuration for this node.
fn raft_config(options: &NodeOptions) -> Result<Arc<openraft::Config>, StartError> {
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
        // A node that led before it stopped must win an election again, in a new term, as
        // in standard Raft. openraft's default restores its leadership at once, in the old
        // term and with the entry that began it as its "no-op": its read index is then the
        // commit index it finds on disk, which we save without fsync (`save_committed`), so
        // after a power cut it can be far behind what was acknowledged, and reads were
        // answered from a state missing acknowledged stores (found by
        // `power_loss::cuts::a_whole_cluster_cut_at_once_reforms_and_loses_nothing`; see
        // docs/design.md, "A restarted leader is elected again").
        enable_leader_restore: Some(false),
        ..Default::default()
    };
    Ok(Arc::new(config.validate()?))
}

/// The founding members, when this node forms a new cluster (checked before anything is
/// stored: a misconfigured first start leaves the data dir as it was); `None` when the node
/// is initialised already or joins.
pub(crate) fn founders(
    options: &NodeOptions,
    initialized: bool,
) -> Result<Option<BTreeMap<NodeId, BasicNode>>, StartError> {
    if initialized || options.join {
        return Ok(None);
    }
    if options.peers.is_empty() {
        let addr = options
            .peer_addr
            .clone()
            .unwrap_or_else(|| options.api_addr.clone());
        return Ok(Some(BTreeMap::from([(
            options.node_id,
            BasicNode::new(addr),
        )])));
    }
    if !options.peers.contains_key(&options.node_id) {
        return Err(StartError::NotInPeers {
            node_id: options.node_id,
            peers: options.peers.keys().copied().collect(),
        });
    }
    Ok(Some(
        options
            .peers
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect(),
    ))
}

/// Settles the cluster id before the cluster is initialised: the stored one; else one derived
/// from the founders (or, for a data dir from before cluster ids were stored, from the stored
/// membership), stored now; a joining node takes it from the first leader's RPC. RPCs sent
/// without it are refused by peers that have one.
fn settle_cluster_id(
    engine: &LogEngine,
    cluster_id: &ClusterId,
    stored: Option<String>,
    founders: Option<&BTreeMap<NodeId, BasicNode>>,
    raft: &crate::types::Raft,
    initialized: bool,
) -> Result<(), StartError> {
    let members: Option<Vec<(NodeId, String)>> = match (&stored, founders) {
        (Some(_), _) => None,
        (None, Some(founders)) => Some(
            founders
                .iter()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect(),
        ),
        // A data dir from before cluster ids were stored: the stored membership.
        (None, None) if initialized => {
            let m = raft.metrics().borrow_watched().clone();
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
        None => stored,
    };
    if let Some(id) = &id {
        tracing::info!(cluster_id = %id, "cluster");
    }
    Ok(())
}

/// Initialises the cluster with `founders`, if this node forms one.
///
/// Every founder may initialise with the same member set (openraft treats identical
/// initialisation as safe, so the cluster forms in any start order), and openraft starts an
/// election as soon as a node initialises. Founders started together would then all campaign
/// in term 1 at once, and the later candidates (whose leader id, term and node id, is higher)
/// depose the first winner: formation took up to 1.4 s and three terms. So the founders take
/// turns: the one with the lowest id initialises at once, the `k`-th after `k` times the
/// shortest election timeout, and only if no other founder's leader has reached it by then
/// (an uninitialised node votes, and learns the membership from the leader's first append).
async fn form_cluster(
    raft: &crate::types::Raft,
    options: &NodeOptions,
    founders: Option<BTreeMap<NodeId, BasicNode>>,
    initialized: bool,
) -> Result<(), StartError> {
    if let Some(members) = founders {
        let turn = members
            .keys()
            .position(|id| *id == options.node_id)
            .unwrap_or(0);
        if turn == 0 {
            return initialize(raft, options.node_id, members).await;
        }
        let wait = options.election_timeout.0 * turn as u32;
        let raft = raft.clone();
        let node_id = options.node_id;
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            match raft.is_initialized().await {
                Ok(false) => {
                    if let Err(e) = initialize(&raft, node_id, members).await {
                        tracing::error!(error = %e, "could not initialise the cluster");
                    }
                }
                Ok(true) => tracing::info!(
                    node_id,
                    "joined the cluster a founder with a lower id initialised"
                ),
                Err(_) => {} // Raft has shut down meanwhile.
            }
        });
    } else if !initialized {
        tracing::info!(
            node_id = options.node_id,
            "waiting to be added to a cluster (join)"
        );
    }
    Ok(())
}

/// Initialises the cluster with `members` (identical on every founder).
async fn initialize(
    raft: &crate::types::Raft,
    node_id: NodeId,
    members: BTreeMap<NodeId, BasicNode>,
) -> Result<(), StartError> {
    let count = members.len();
    match raft.initialize(members).await {
        Ok(()) => tracing::info!(node_id, members = count, "initialised a new cluster"),
        // Another member's identical initialisation reached us first.
        Err(openraft::error::RaftError::APIError(
            openraft::error::InitializeError::NotAllowed(_),
        )) => {}
        Err(e) => return Err(StartError::Initialize(Box::new(e))),
    }
    Ok(())
}

/// What the background tasks share with the node.
struct Parts<'a> {
    raft: &'a crate::types::Raft,
    network: &'a PeerNetwork,
    time: &'a Arc<ClusterTime>,
    stamp_clock: &'a Arc<dyn Clock>,
    shared: &'a Arc<SharedState>,
    inline: &'a Arc<InlineWrites>,
    saved_vote: &'a Arc<SavedVote>,
}

/// Starts the writer, the reader and the background loops; returns their handles and the
/// channels to the writer and the reader.
#[allow(clippy::type_complexity)]
fn spawn_tasks(
    options: &NodeOptions,
    parts: Parts<'_>,
    engine: LogEngine,
) -> (
    Vec<JoinHandle<()>>,
    mpsc::Sender<WriteRequest>,
    mpsc::Sender<ReadWaiter>,
) {
    let Parts {
        raft,
        network,
        time,
        stamp_clock,
        shared,
        inline,
        saved_vote,
    } = parts;
    let (writes, write_rx) = mpsc::channel(16 * 1024);
    let (reads, read_rx) = mpsc::channel(16 * 1024);
    let writer_options = WriterOptions {
        max_ops: options.max_batch_ops,
        max_bytes: options.max_batch_bytes,
        commit_timeout: options.commit_timeout,
        pipeline: options.write_pipeline,
        gather: options.write_gather,
        quorum_timeout: options.election_timeout.1,
    };
    let tasks = vec![
        tokio::spawn(writer::run(
            raft.clone(),
            network.clone(),
            stamp_clock.clone(),
            options.limits,
            writer_options,
            inline.clone(),
            write_rx,
        )),
        tokio::spawn(reader::run(
            Reader::new(
                raft.clone(),
                network.clone(),
                time.clone(),
                shared.clone(),
                saved_vote.clone(),
                options.read_timeout,
            ),
            read_rx,
        )),
        tokio::spawn(tasks::count_leader_changes(raft.clone())),
        tokio::spawn(tasks::snapshot_loop(
            raft.clone(),
            engine,
            shared.clone(),
            options.snapshot_logs,
            options.snapshot_log_bytes,
        )),
        tokio::spawn(tasks::purge_loop(
            raft.clone(),
            shared.clone(),
            stamp_clock.clone(),
            options.limits,
            options.purge_interval,
            options.commit_timeout,
        )),
    ];
    (tasks, writes, reads)
}

impl Node {
    /// Opens the data directory (taking its lock), recovers the log and the last snapshot,
    /// starts Raft, and initialises a one-member cluster on first start.
    pub async fn start(options: NodeOptions) -> Result<Node, StartError> {
        let Storage {
            data_dir,
            engine,
            state_machine,
        } = open_storage(&options).await?;
        let shared = state_machine.shared();
        let config = raft_config(&options)?;
        let stored_cluster_id = engine
            .get_meta(META_CLUSTER_ID)?
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let cluster_id: ClusterId = Arc::new(RwLock::new(stored_cluster_id.clone()));
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
        )?;
        let inline = InlineWrites::new(options.inline_write_fsync_bound);
        let log_store = LogStore::with_options(
            engine.clone(),
            crate::log_tail::TailLimits::default(),
            options.thread_slice,
            Some(inline.clone()),
        )
        .map_err(StartError::LogWriter)?;
        let saved_vote = log_store.saved_vote();
        let raft = Raft::new(
            options.node_id,
            config,
            network.clone(),
            log_store,
            state_machine,
        )
        .await?;
        // `Raft::new` has replayed the committed log into the state, growing its table at
        // once; from now on callers wait on each apply.
        shared.grow_gradually();

        let initialized = raft.is_initialized().await?;
        let founders = founders(&options, initialized)?;
        settle_cluster_id(
            &engine,
            &cluster_id,
            stored_cluster_id,
            founders.as_ref(),
            &raft,
            initialized,
        )?;
        form_cluster(&raft, &options, founders, initialized).await?;

        let takeover = Arc::new(crate::takeover::Takeover::new(
            options.node_id,
            options.election_timeout.1,
        ));
        let parts = Parts {
            raft: &raft,
            network: &network,
            time: &time,
            stamp_clock: &stamp_clock,
            shared: &shared,
            inline: &inline,
            saved_vote: &saved_vote,
        };
        let (tasks, writes, reads) = spawn_tasks(&options, parts, engine.clone());
        let node = Node {
            inner: Arc::new(Inner {
                node_id: options.node_id,
                cluster_id,
                peer_secret: options.peer_credentials.secret.clone(),
                disk: crate::disk::DiskSpace::new(&options.data_dir, options.disk_reserve),
                engine,
                api_addr: options.api_addr.clone(),
                network,
                server_metrics: raft.server_metrics(),
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
                data_dir,
                inline,
                saved_vote,
            }),
        };
        node.spawn_watchers(&options);
        Ok(node)
    }

    /// Starts the tasks that hold the node weakly: the clock watch and the election timer.
    fn spawn_watchers(&self, options: &NodeOptions) {
        let watch = tokio::spawn(tasks::clock_watch(Arc::downgrade(&self.inner)));
        let timer = tokio::spawn(election_timer::run(
            WeakNode(Arc::downgrade(&self.inner)),
            crate::election::Timing {
                min: options.election_timeout.0,
                max: options.election_timeout.1,
            },
        ));
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend([watch, timer]);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use statemanager_core::ManualClock;

    use super::*;

    fn options() -> NodeOptions {
        NodeOptions::new(
            "/nonexistent".into(),
            Arc::new(ManualClock::new(statemanager_core::Timestamp::from_micros(
                0,
            ))),
        )
    }

    #[tokio::test]
    async fn a_started_node_grows_its_item_table_gradually() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut o = options();
        o.data_dir = dir.path().to_path_buf();
        let node = Node::start(o).await.expect("starts");
        let growth = node.inner.shared.read().state.growth();
        node.shutdown().await;
        assert_eq!(growth, statemanager_core::Growth::Gradual);
    }

    #[test]
    fn a_lone_node_forms_a_cluster_of_itself_at_its_peer_address() {
        let mut o = options();
        o.node_id = 7;
        o.api_addr = "api:1".into();
        let f = founders(&o, false).expect("ok").expect("forms");
        assert_eq!(f.len(), 1);
        assert_eq!(f[&7].addr, "api:1");
        o.peer_addr = Some("peer:2".into());
        let f = founders(&o, false).expect("ok").expect("forms");
        assert_eq!(f[&7].addr, "peer:2");
    }

    #[test]
    fn a_node_forms_with_its_peers_only_when_it_is_one_of_them() {
        let mut o = options();
        o.node_id = 2;
        o.peers = BTreeMap::from([(1, "a".to_string()), (2, "b".to_string())]);
        let f = founders(&o, false).expect("ok").expect("forms");
        assert_eq!(f.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        o.node_id = 3;
        let refused = founders(&o, false).expect_err("not in peers");
        assert_eq!(
            refused.to_string(),
            "raft: node_id 3 is not in peers ([1, 2]); use join: true to be added later"
        );
    }

    #[test]
    fn an_initialised_or_joining_node_forms_nothing() {
        let mut o = options();
        assert!(founders(&o, true).expect("ok").is_none());
        o.join = true;
        assert!(founders(&o, false).expect("ok").is_none());
    }

    #[test]
    fn the_raft_config_keeps_openraft_s_election_off() {
        let o = options();
        let c = raft_config(&o).expect("valid");
        assert!(!c.enable_elect);
        assert_eq!(c.election_timeout_min, 250);
        assert_eq!(c.election_timeout_max, 500);
        assert_eq!(c.max_payload_entries, MAX_PAYLOAD_ENTRIES);
        assert_eq!(
            Duration::from_millis(c.install_snapshot_timeout),
            SNAPSHOT_CHUNK_TIMEOUT
        );
    }
}
