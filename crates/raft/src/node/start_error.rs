//! Why a node could not start ([`StartError`]), also what `recovery` answers when a data
//! directory cannot be read or rewritten.

use crate::types::TypeConfig;
use statemanager_storage::StorageError;

use crate::peer::credentials::PeerTlsError;
use crate::types::NodeId;

/// Why a node could not start (or, for `recovery`, could not be read or rewritten).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory or its contents.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A start-up task (opening the log or the snapshot) failed to run.
    #[error("raft: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// openraft refused the configuration.
    #[error("raft: {0}")]
    Config(#[source] Box<openraft::ConfigError>),
    /// openraft failed to start or stopped.
    #[error("raft: {0}")]
    Fatal(#[source] Box<openraft::error::Fatal<TypeConfig>>),
    /// The peer TLS files are unusable.
    #[error("raft: {0}")]
    PeerTls(#[from] PeerTlsError),
    /// `peers` is set but does not name this node.
    #[error(
        "raft: node_id {node_id} is not in peers ({peers:?}); use join: true to be added later"
    )]
    NotInPeers {
        /// This node.
        node_id: NodeId,
        /// The ids `peers` names.
        peers: Vec<NodeId>,
    },
    /// Initialising the new cluster failed.
    #[error("raft: initialising the cluster: {0}")]
    Initialize(#[source] Box<InitializeFailure>),
    /// `recover` found no data directory at the path.
    #[error("raft: there is no data directory at {}", .0.display())]
    NoDataDir(std::path::PathBuf),
    /// `recover` found neither a log nor a snapshot.
    #[error("raft: {} holds no log and no snapshot: there is nothing to recover", .0.display())]
    NothingToRecover(std::path::PathBuf),
    /// A log entry could not be decoded.
    #[error("raft: log entry {index} cannot be decoded: {source}")]
    Entry {
        /// Its index.
        index: u64,
        /// Why.
        source: postcard::Error,
    },
    /// A log position could not be encoded.
    #[error("raft: {0}")]
    Encode(#[source] postcard::Error),
    /// The log writer thread could not be started.
    #[error("raft: cannot start the log writer thread: {0}")]
    LogWriter(#[source] std::io::Error),
    /// A membership could not be formed.
    #[error("raft: {0}")]
    Membership(#[from] crate::types::MembershipError),
}

/// openraft's error when initialising a cluster.
pub type InitializeFailure =
    openraft::error::RaftError<TypeConfig, openraft::error::InitializeError<TypeConfig>>;

impl From<openraft::ConfigError> for StartError {
    fn from(e: openraft::ConfigError) -> Self {
        StartError::Config(Box::new(e))
    }
}

impl From<openraft::error::Fatal<TypeConfig>> for StartError {
    fn from(e: openraft::error::Fatal<TypeConfig>) -> Self {
        StartError::Fatal(Box::new(e))
    }
}
