//! Configuration: defaults in code, then a YAML file, then `STATEMANAGER_<KEY>` environment
//! variables, then command-line flags; validated once into typed values.
//!
//! The file is flat (`port: 8184`). A file whose top level is a `cachemanager:` mapping
//! (Opsview's own `cachemanager.yaml`) is read from inside that mapping. Unknown keys are
//! warned about once and ignored; an invalid value of a known key stops start-up with one line
//! naming the key and where it came from.

mod error;
mod keys;
mod values;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_norway::Value;
use statemanager_cache::Cache;
use statemanager_core::{Clock, Limits};
use statemanager_raft::auth::ClusterSecret;
use statemanager_raft::network::PeerCredentials;
use statemanager_raft::NodeOptions;
use statemanager_token::{Keyring, TimeRule};

pub use error::{ConfigError, Origin};
pub use keys::{Config, KEYS};
pub use values::ValueError;
use values::{describe, parse_level};

/// Largest `max_persistent_data_item_size` accepted.
pub const MAX_ITEM_SIZE_LIMIT: u64 = 16 * 1024 * 1024;
/// Largest cache `max_item_size` accepted.
pub const MAX_CACHE_ITEM: u64 = 16 * 1024 * 1024;

/// The log level threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warning,
    /// Notices (normal operation), warnings and errors. The default.
    Notice,
    /// Everything, including each request.
    Debug,
    /// Everything, including library internals.
    Trace,
}

/// Cache Manager settings found in Opsview's `cachemanager.yaml` that this version accepts
/// without using (they are warned about, not refused, so that file can be used as it is).
const CACHE_MANAGER_KEYS: &[&str] = &["tls_enabled", "tls", "peers"];

/// A loaded configuration and the warnings to log once logging is up.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Unknown or unused keys, one message each.
    pub warnings: Vec<String>,
}

/// Reads a file that holds secrets, refusing one that group or others can read.
fn read_secret_file(path: &Path, key: &'static str) -> Result<String, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let cannot = |source| ConfigError::SecretFile {
        key,
        path: path.to_path_buf(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(cannot)?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::SecretFileMode {
            key,
            path: path.to_path_buf(),
            mode,
        });
    }
    std::fs::read_to_string(path).map_err(cannot)
}

impl Config {
    /// The cache's effective item limit: `max_item_size`, where 0 means the largest allowed,
    /// and never more than `max_cache_size`.
    pub fn cache_item_limit(&self) -> u64 {
        let item = if self.cache_max_item_size == 0 {
            MAX_CACHE_ITEM
        } else {
            self.cache_max_item_size
        };
        item.min(self.max_cache_size)
    }

    /// The namespace keyring: `namespace_keys` and the keys in `namespace_keys_file` (which
    /// must not be readable by group or others). `None` when no key is configured.
    pub fn keyring(&self) -> Result<Option<Keyring>, ConfigError> {
        let mut keys = self.namespace_keys.clone();
        if let Some(path) = &self.namespace_keys_file {
            let text = read_secret_file(path, "namespace_keys_file")?;
            keys.extend(
                text.split([',', '\n'])
                    .map(|k| k.trim().to_string())
                    .filter(|k| !k.is_empty()),
            );
        }
        if keys.is_empty() {
            if self.require_namespace_token {
                return Err(ConfigError::TokenRequiredWithoutKeys);
            }
            return Ok(None);
        }
        Keyring::new(keys.iter().map(String::as_str))
            .map(Some)
            .map_err(ConfigError::NamespaceKeys)
    }

    /// The cluster secret: `cluster_secret`, or the content of `cluster_secret_file`.
    pub fn cluster_secret(&self) -> Result<Option<ClusterSecret>, ConfigError> {
        let text = match (&self.cluster_secret, &self.cluster_secret_file) {
            (Some(_), Some(_)) => return Err(ConfigError::TwoClusterSecrets),
            (Some(text), None) => text.clone(),
            (None, Some(path)) => read_secret_file(path, "cluster_secret_file")?,
            (None, None) => return Ok(None),
        };
        ClusterSecret::new(&text)
            .map(Some)
            .map_err(ConfigError::ClusterSecret)
    }

    /// How this node authenticates to its peers.
    pub fn peer_credentials(&self) -> Result<PeerCredentials, ConfigError> {
        Ok(PeerCredentials {
            secret: self.cluster_secret()?,
            tls: self.peer_tls.clone(),
        })
    }

    /// The token time rule.
    pub fn token_rule(&self) -> TimeRule {
        TimeRule {
            margin_secs: self.timestamp_error_margin as i64,
            max_age_secs: self.token_max_age.map(|a| a as i64),
        }
    }

    /// The node's options: every setting of the node that comes from the configuration, in
    /// one place. What only start-up knows comes in: the address clients reach this node at,
    /// its bound peer address, its peer credentials, its share of the shared cache and the
    /// clock.
    pub fn node_options(
        &self,
        api_addr: String,
        peer_addr: Option<String>,
        peer_credentials: PeerCredentials,
        cache: Arc<Cache>,
        clock: Arc<dyn Clock>,
    ) -> NodeOptions {
        let mut options = NodeOptions::new(self.data_dir.clone(), clock);
        options.node_id = self.node_id;
        options.api_addr = api_addr;
        options.peer_addr = peer_addr;
        options.peers = self.peers.clone();
        options.join = self.join;
        options.peer_credentials = peer_credentials;
        options.disk_reserve = self.disk_reserve;
        options.limits = Limits {
            max_item_bytes: self.max_item_size,
            max_items: self.max_items,
            max_items_per_namespace: self.max_items_per_namespace,
        };
        options.heartbeat = Duration::from_millis(self.heartbeat_ms);
        options.election_timeout = (
            Duration::from_millis(self.election_timeout_min_ms),
            Duration::from_millis(self.election_timeout_max_ms),
        );
        options.snapshot_logs = self.snapshot_logs;
        options.snapshot_log_bytes = self.snapshot_log_bytes;
        options.snapshot_keep_logs = self.snapshot_keep_logs;
        options.commit_timeout = Duration::from_millis(self.commit_timeout_ms);
        options.read_timeout = Duration::from_millis(self.commit_timeout_ms);
        options.purge_interval = Duration::from_millis(self.purge_interval_ms);
        options.max_clock_offset = Duration::from_millis(self.max_clock_offset_ms);
        options.max_batch_ops = self.max_batch_ops as usize;
        options.write_pipeline = self.write_pipeline as usize;
        options.write_gather = Duration::from_millis(self.write_gather_ms);
        options.cache = Some(cache);
        options.thread_slice = self.thread_slice();
        options.inline_write_fsync_bound = Duration::from_micros(self.inline_write_max_fsync_us);
        options
    }

    /// The async runtime's worker threads on a machine with `cores` CPU cores:
    /// `worker_threads` when set, otherwise one per core but one, and at least one. The core
    /// left over runs the log writer thread, the kernel's network stack and, on a collector,
    /// the plugins that call this server; measured in `docs/design.md` ("One core left").
    pub fn runtime_workers(&self, cores: usize) -> usize {
        if self.worker_threads > 0 {
            self.worker_threads as usize
        } else {
            cores.saturating_sub(1).max(1)
        }
    }

    /// The client connections' own threads (see `listener::threads`): `connection_threads`
    /// when set; otherwise, for a single node (no other node in `peers`, no `join`), one
    /// when there are two cores or more (the workers take one core less), none on one core;
    /// and none for a member of a cluster, whose fetches all go through the reader on the
    /// runtime's workers (`docs/design.md`, "No connection thread in a cluster").
    pub fn connection_threads(&self, cores: usize) -> usize {
        match self.connection_threads {
            Some(n) => n as usize,
            None if self.is_cluster_member() => 0,
            None => usize::from(cores >= 2),
        }
    }

    /// Whether `connection_threads` is left to its default: then a node that serves a cluster
    /// puts its client connections on the workers even when it started alone with a thread
    /// (members added later; see `serve::spawn`).
    pub fn connection_threads_unset(&self) -> bool {
        self.connection_threads.is_none()
    }

    /// Whether this configuration makes the node a member of a cluster: its `peers` name
    /// another node besides it, or it starts empty to `join` one.
    fn is_cluster_member(&self) -> bool {
        self.peers.len() > 1 || self.join
    }

    /// The scheduler slice the write path's threads ask for (`None`: the kernel's default).
    pub fn thread_slice(&self) -> Option<Duration> {
        (self.thread_slice_us > 0).then(|| Duration::from_micros(self.thread_slice_us))
    }

    /// Checks relations between keys.
    fn check(&self) -> Result<(), ConfigError> {
        self.keyring()?;
        self.cluster_secret()?;
        if !self.peers.is_empty() && self.peer_listen.is_none() {
            return Err(ConfigError::PeersWithoutPeerListen);
        }
        if !self.peers.is_empty() && !self.join && !self.peers.contains_key(&self.node_id) {
            return Err(ConfigError::NodeNotInPeers(self.node_id));
        }
        if !self.http_enabled && !self.tls_enabled {
            return Err(ConfigError::NothingToServe);
        }
        if self.election_timeout_min_ms <= self.heartbeat_ms {
            return Err(ConfigError::ElectionBelowHeartbeat {
                min: self.election_timeout_min_ms,
                heartbeat: self.heartbeat_ms,
            });
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(ConfigError::EmptyElectionRange {
                min: self.election_timeout_min_ms,
                max: self.election_timeout_max_ms,
            });
        }
        Ok(())
    }
}

/// Reads a configuration file into its top-level mapping (the inside of a `cachemanager:`
/// mapping, for Opsview's file) and whether it was Opsview's form.
fn read_file(path: &Path) -> Result<(serde_norway::Mapping, bool), ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    let doc: Value = serde_norway::from_str(&text).map_err(|source| ConfigError::Yaml {
        file: file.clone(),
        source,
    })?;
    let mapping = match doc {
        Value::Null => serde_norway::Mapping::new(),
        Value::Mapping(m) => m,
        other => {
            return Err(ConfigError::NotMapping {
                file,
                found: describe(&other),
            })
        }
    };
    match mapping.get("cachemanager") {
        Some(Value::Mapping(inner)) => Ok((inner.clone(), true)),
        _ => Ok((mapping, false)),
    }
}

/// Applies the keys of a configuration file to `config`; what is unknown or unused becomes a
/// warning.
fn apply_file(
    config: &mut Config,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let source = path.display().to_string();
    let (mapping, in_cachemanager) = read_file(path)?;
    let invalid = |key: &str, e: ValueError| ConfigError::InvalidValue {
        key: key.to_string(),
        origin: Origin::File(source.clone()),
        source: e,
    };
    for (key, value) in &mapping {
        let Some(key) = key.as_str() else {
            warnings.push(format!(
                "ignoring non-text key {} in {source}",
                describe(key)
            ));
            continue;
        };
        if key == "peers" && in_cachemanager && !matches!(value, Value::Mapping(_)) {
            // Opsview Deploy writes its own peer format here; we cannot use it.
            warnings.push(format!(
                "'peers' in {source} is not a map of node id to \"host:port\" (Opsview Deploy's own format?); ignored"
            ));
            continue;
        }
        if KEYS.contains(&key) {
            config.set(key, value).map_err(|e| invalid(key, e))?;
        } else if key == "logging" {
            // Opsview's form: logging: {loggers: {opsview: {level: DEBUG}}}
            let level = value
                .get("loggers")
                .and_then(|l| l.get("opsview"))
                .and_then(|o| o.get("level"));
            match level {
                Some(level) => {
                    config.log_level = parse_level(level)
                        .map_err(|e| invalid("logging.loggers.opsview.level", e))?
                }
                None => warnings.push(format!(
                    "'logging' in {source} has no loggers.opsview.level; ignored"
                )),
            }
        } else if CACHE_MANAGER_KEYS.contains(&key) {
            warnings.push(format!(
                "'{key}' in {source} is a Cache Manager setting this version of statemanager does not use; ignored"
            ));
        } else {
            warnings.push(format!(
                "unknown configuration key '{key}' in {source}; ignored"
            ));
        }
    }
    Ok(())
}

/// Loads the configuration from an optional file and the environment (`env` looks up a
/// variable; the server passes `std::env::var`).
pub fn load(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let mut config = Config::default();
    let mut warnings = Vec::new();
    if let Some(path) = file {
        apply_file(&mut config, path, &mut warnings)?;
    }
    for key in KEYS {
        let var = format!("STATEMANAGER_{}", key.to_ascii_uppercase());
        if let Some(raw) = env(&var) {
            let value: Value = serde_norway::from_str(&raw).unwrap_or(Value::String(raw.clone()));
            config
                .set(key, &value)
                .map_err(|source| ConfigError::InvalidValue {
                    key: key.to_string(),
                    origin: Origin::Env(var),
                    source,
                })?;
        }
    }
    config.check()?;
    Ok(Loaded { config, warnings })
}

#[cfg(test)]
mod tests;
