//! The peer transport's wire constants, in one place: the HTTP headers every peer request
//! carries, the RPC format version, the largest peer body, and how long idle connections
//! live. The peer stream's own constants (preface, versions, answer tags) are in
//! [`super::stream`].

use std::time::Duration;

/// The header naming the peer RPC format version.
pub const RPC_VERSION_HEADER: &str = "x-statemanager-rpc";
/// The peer RPC format version this build speaks.
pub const RPC_VERSION: &str = "1";
/// The header carrying the sender's cluster id.
pub const CLUSTER_HEADER: &str = "x-statemanager-cluster";

/// How long an idle pooled connection to a peer is kept (peer ports close idle connections
/// only after twice this).
pub const PEER_POOL_IDLE: Duration = Duration::from_secs(15);

/// Largest peer request accepted. An append carries at most `MAX_PAYLOAD_ENTRIES` entries of
/// at most ~4 MiB (the writer's batch bound, plus one item over it), and snapshot chunks are
/// 3 MiB; axum's default of 2 MiB refused the first append after an election (which carries a
/// backlog of entries), and the cluster could not elect a working leader.
pub const MAX_PEER_BODY: usize = 512 * 1024 * 1024;
