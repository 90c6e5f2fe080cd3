//! Why a configuration cannot be used: each error names the key, and the file or environment
//! variable it came from, and keeps its source.

use std::path::PathBuf;

use super::values::ValueError;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A configuration file (its path as shown to the user).
    File(String),
    /// An environment variable (its name).
    Env(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{path}"),
            Origin::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

/// A configuration that cannot be used; start-up stops with its message.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("configuration file {file} is not valid YAML: {source}")]
    Yaml {
        /// The file.
        file: String,
        /// The parser's error.
        source: serde_norway::Error,
    },
    /// The file's top level is not a mapping.
    #[error("configuration file {file} must be a mapping of keys to values, not {found}")]
    NotMapping {
        /// The file.
        file: String,
        /// What it is instead.
        found: String,
    },
    /// A known key has a value it cannot take.
    #[error("invalid value for '{key}' in {origin}: {source}")]
    InvalidValue {
        /// The key (dotted for a nested one).
        key: String,
        /// Where the value came from.
        origin: Origin,
        /// Why it is refused.
        source: ValueError,
    },
    /// A file holding secrets cannot be read.
    #[error("invalid value for '{key}': cannot read {}: {source}", path.display())]
    SecretFile {
        /// The key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holding secrets is readable by group or others.
    #[error("invalid value for '{key}': {} has mode {mode:04o}; it holds secrets, so it must be 0600 (chmod 600)", path.display())]
    SecretFileMode {
        /// The key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The namespace keys (from the file) are not valid.
    #[error("invalid namespace keys: {0}")]
    NamespaceKeys(#[source] statemanager_token::TokenError),
    /// `require_namespace_token` without any key.
    #[error("require_namespace_token is set but no namespace_keys are configured")]
    TokenRequiredWithoutKeys,
    /// Both `cluster_secret` and `cluster_secret_file`.
    #[error("set cluster_secret or cluster_secret_file, not both")]
    TwoClusterSecrets,
    /// The cluster secret (from the file) is not valid.
    #[error("invalid cluster secret: {0}")]
    ClusterSecret(#[source] statemanager_raft::peer::error::SecretError),
    /// `peers` without `peer_listen`.
    #[error("peers is set but peer_listen is not: other nodes could not reach this one")]
    PeersWithoutPeerListen,
    /// `node_id` missing from `peers` (and not joining).
    #[error("node_id {0} is not in peers; list it, or set join: true to be added at run time")]
    NodeNotInPeers(u64),
    /// Neither HTTP nor HTTPS.
    #[error("http_enabled is false and tls_enabled is not true: nothing to serve")]
    NothingToServe,
    /// An election timeout not above the heartbeat.
    #[error(
        "election_timeout_min_ms ({min}) must be larger than heartbeat_interval_ms ({heartbeat})"
    )]
    ElectionBelowHeartbeat {
        /// `election_timeout_min_ms`.
        min: u64,
        /// `heartbeat_interval_ms`.
        heartbeat: u64,
    },
    /// An empty election timeout range.
    #[error("election_timeout_max_ms ({max}) must be larger than election_timeout_min_ms ({min})")]
    EmptyElectionRange {
        /// `election_timeout_min_ms`.
        min: u64,
        /// `election_timeout_max_ms`.
        max: u64,
    },
}
