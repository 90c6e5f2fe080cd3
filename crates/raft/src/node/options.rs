//! What a node needs to start ([`NodeOptions`]), with the defaults of a one-node store.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use statemanager_core::{Clock, Limits};

use crate::types::NodeId;

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
    pub peer_credentials: crate::peer::credentials::PeerCredentials,
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
    /// The longest the writer waits, after answering a batch, for those callers' next
    /// writes to join the next batch (zero: never; see [`crate::writer::gather`]).
    pub write_gather: Duration,
    /// Largest clock offset from the majority this node may have and still lead and serve
    /// (see [`crate::cluster_time`]).
    pub max_clock_offset: Duration,
    /// This node's share of the shared ephemeral cache: forwarded `get_data`/`set_data`
    /// calls from peers are answered from it (`None`: refused).
    pub cache: Option<Arc<statemanager_cache::Cache>>,
    /// The scheduler slice the log writer thread asks for ([`crate::thread_slice`]; `None`,
    /// the default: the kernel's own).
    pub thread_slice: Option<Duration>,
    /// A node that leads alone writes a batch's log entry on the Raft core's task, instead of
    /// the log writer thread, when every request in flight waits for that batch, no more
    /// requests began since the previous batch than it holds, the log writer thread is idle,
    /// and the last log fsync took less than this (zero: never; see
    /// [`crate::log_store::inline`]).
    pub inline_write_fsync_bound: Duration,
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
            write_gather: Duration::from_millis(3),
            max_clock_offset: Duration::from_millis(500),
            cache: None,
            thread_slice: None,
            inline_write_fsync_bound: Duration::from_millis(1),
        }
    }
}
