//! Configuration: defaults in code, then a YAML file, then `STATEMANAGER_<KEY>` environment
//! variables, then command-line flags; validated once into typed values.
//!
//! The file is flat (`port: 8184`). A file whose top level is a `cachemanager:` mapping
//! (Opsview's own `cachemanager.yaml`) is read from inside that mapping. Unknown keys are
//! warned about once and ignored; an invalid value of a known key stops start-up with one line
//! naming the key and where it came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_norway::Value;
use statemanager_raft::auth::ClusterSecret;
use statemanager_raft::network::{PeerCredentials, PeerTls};
use statemanager_token::{Keyring, TimeRule};

use crate::tls::TlsSettings;

use crate::size::parse_size;

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

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address to listen on for HTTP.
    pub host: String,
    /// HTTP port (`0`: any free port).
    pub port: u16,
    /// Data directory.
    pub data_dir: PathBuf,
    /// `max_persistent_data_item_size`, in bytes.
    pub max_item_size: u64,
    /// `max_persistent_data_items`.
    pub max_items: u64,
    /// `max_items_per_namespace`, if set.
    pub max_items_per_namespace: Option<u64>,
    /// Log threshold.
    pub log_level: LogLevel,
    /// Log to stderr instead of syslog.
    pub log_stderr: bool,
    /// This node's Raft id.
    pub node_id: u64,
    /// Take a snapshot once this many log entries were applied since the last one.
    pub snapshot_logs: u64,
    /// Or once the log since the last snapshot is this large and larger than the state.
    pub snapshot_log_bytes: u64,
    /// Log entries kept after a snapshot for lagging followers.
    pub snapshot_keep_logs: u64,
    /// Raft heartbeat interval, ms.
    pub heartbeat_ms: u64,
    /// Raft election timeout lower bound, ms.
    pub election_timeout_min_ms: u64,
    /// Raft election timeout upper bound, ms.
    pub election_timeout_max_ms: u64,
    /// How long a proposed write may take to commit, ms.
    pub commit_timeout_ms: u64,
    /// How often the leader looks for expired items to purge, ms.
    pub purge_interval_ms: u64,
    /// Largest clock offset from the majority of the cluster a node may have and still lead
    /// and serve, ms.
    pub max_clock_offset_ms: u64,
    /// Most stores group-committed into one log entry.
    pub max_batch_ops: u64,
    /// This node's share of the shared cache: its size bound, in bytes (`u64::MAX`: no
    /// limit, written `0B`).
    pub max_cache_size: u64,
    /// The cache's `max_item_size` as configured (0: no limit of its own).
    pub cache_max_item_size: u64,
    /// How often expired cache items and locks are removed, in seconds (`housekeeping_interval`
    /// or, Opsview's name, `cache_purge_time`).
    pub housekeeping_interval: u64,
    /// `peer_connection_timeout`: how long a cache peer may take to answer (beyond the
    /// caller's own wait) before it is marked down, in milliseconds.
    pub peer_connection_timeout_ms: u64,
    /// `peer_refresh_time`: how long a cache peer marked down is skipped before it is
    /// rechecked, in milliseconds.
    pub peer_refresh_ms: u64,
    /// `worker_timeout`: the original's worker restart delay, in seconds; accepted, unused
    /// (this server has no worker processes to restart).
    pub worker_timeout: u64,
    /// Threads serving requests (0: one per CPU core).
    pub worker_threads: u64,
    /// `namespace_keys`: base64 keys for protected-namespace tokens (first mints, all verify).
    pub namespace_keys: Vec<String>,
    /// `namespace_keys_file`: a file holding the keys (must be mode 0600).
    pub namespace_keys_file: Option<PathBuf>,
    /// `timestamp_error_margin`: tokens are accepted within ±this many seconds (0: no check).
    pub timestamp_error_margin: u64,
    /// `token_max_age`: when set, tokens are accepted up to this many seconds old instead.
    pub token_max_age: Option<u64>,
    /// `require_namespace_token`: refuse plain namespace names.
    pub require_namespace_token: bool,
    /// Serve plain HTTP on `port`.
    pub http_enabled: bool,
    /// Serve HTTPS on `tls_port`.
    pub tls_enabled: bool,
    /// HTTPS port (`0`: any free port).
    pub tls_port: u16,
    /// The `tls:` settings.
    pub tls: TlsSettings,
    /// `peer_listen`: address for node-to-node traffic (unset: no peer port).
    pub peer_listen: Option<String>,
    /// `peers`: node id → peer address, the same on every node (empty: one-member cluster).
    pub peers: BTreeMap<u64, String>,
    /// `join`: start empty and wait to be added to an existing cluster.
    pub join: bool,
    /// `cluster_secret`: the shared credential of peers and administrators.
    pub cluster_secret: Option<String>,
    /// `cluster_secret_file`: a file holding it (must be mode 0600).
    pub cluster_secret_file: Option<PathBuf>,
    /// `peer_tls`: mutual TLS on the peer port.
    pub peer_tls: Option<PeerTls>,
    /// `max_connections`: concurrent client connections per listener.
    pub max_connections: u64,
    /// `max_header_bytes`: largest request head (request line and headers).
    pub max_header_bytes: u64,
    /// `header_timeout_ms`: time allowed to receive a request head.
    pub header_timeout_ms: u64,
    /// `body_timeout_ms`: time allowed to receive a request body.
    pub body_timeout_ms: u64,
    /// `client_rate_limit`: requests per second per client address (0: no limit).
    pub client_rate_limit: u64,
    /// `disk_reserve`: free bytes the data directory's file system must keep for writes to be
    /// accepted.
    pub disk_reserve: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 8184,
            data_dir: PathBuf::from("./statemanager-data"),
            max_item_size: 16 * 1024,
            max_items: 1024,
            max_items_per_namespace: None,
            log_level: LogLevel::Notice,
            log_stderr: false,
            node_id: 1,
            snapshot_logs: 100_000,
            snapshot_log_bytes: 64 << 20,
            snapshot_keep_logs: 1000,
            heartbeat_ms: 100,
            election_timeout_min_ms: 250,
            election_timeout_max_ms: 500,
            commit_timeout_ms: 1500,
            purge_interval_ms: 1000,
            max_clock_offset_ms: 500,
            max_batch_ops: 1024,
            max_cache_size: 1 << 30,
            cache_max_item_size: 10 << 20,
            housekeeping_interval: 10,
            peer_connection_timeout_ms: 1000,
            peer_refresh_ms: 10_000,
            worker_timeout: 30,
            worker_threads: 0,
            namespace_keys: Vec::new(),
            namespace_keys_file: None,
            timestamp_error_margin: 30,
            token_max_age: None,
            require_namespace_token: false,
            http_enabled: true,
            tls_enabled: false,
            tls_port: 8185,
            tls: TlsSettings::default(),
            peer_listen: None,
            peers: BTreeMap::new(),
            join: false,
            cluster_secret: None,
            cluster_secret_file: None,
            peer_tls: None,
            max_connections: 4096,
            max_header_bytes: 16 * 1024,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            client_rate_limit: 0,
            disk_reserve: 64 << 20,
        }
    }
}

/// Reads a file that holds secrets, refusing one that group or others can read.
fn read_secret_file(path: &Path, key: &str) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let cannot = |e: std::io::Error| {
        format!(
            "invalid value for '{key}': cannot read {}: {e}",
            path.display()
        )
    };
    let mode = std::fs::metadata(path)
        .map_err(cannot)?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "invalid value for '{key}': {} has mode {mode:04o}; it holds secrets, so it must be 0600 (chmod 600)",
            path.display()
        ));
    }
    std::fs::read_to_string(path).map_err(cannot)
}

/// Every key the configuration knows, in the order the docs list them.
pub const KEYS: &[&str] = &[
    "host",
    "port",
    "data_dir",
    "max_persistent_data_item_size",
    "max_persistent_data_items",
    "max_items_per_namespace",
    "log_level",
    "log_stderr",
    "node_id",
    "snapshot_logs",
    "snapshot_log_bytes",
    "snapshot_keep_logs",
    "heartbeat_interval_ms",
    "election_timeout_min_ms",
    "election_timeout_max_ms",
    "commit_timeout_ms",
    "purge_interval_ms",
    "max_clock_offset_ms",
    "max_batch_ops",
    "max_cache_size",
    "max_item_size",
    "housekeeping_interval",
    "cache_purge_time",
    "peer_connection_timeout",
    "peer_refresh_time",
    "worker_timeout",
    "worker_threads",
    "namespace_keys",
    "namespace_keys_file",
    "timestamp_error_margin",
    "token_max_age",
    "require_namespace_token",
    "http_enabled",
    "tls_enabled",
    "tls_port",
    "tls",
    "peer_listen",
    "peers",
    "join",
    "cluster_secret",
    "cluster_secret_file",
    "peer_tls",
    "max_connections",
    "max_header_bytes",
    "header_timeout_ms",
    "body_timeout_ms",
    "client_rate_limit",
    "disk_reserve",
];

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

fn as_u64(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("expected a whole number ≥ 0, got {n}")),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("expected a whole number, got '{s}'")),
        other => Err(format!("expected a whole number, got {}", describe(other))),
    }
}

fn as_bool(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(format!("expected true or false, got '{s}'")),
        },
        other => Err(format!("expected true or false, got {}", describe(other))),
    }
}

fn as_string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!(
            "expected a non-empty string, got {}",
            describe(other)
        )),
    }
}

fn as_size(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(_) => as_u64(v),
        Value::String(s) => parse_size(s),
        other => Err(format!(
            "expected a size such as 16KB, got {}",
            describe(other)
        )),
    }
}

/// Seconds, whole or fractional (`0.5`), as milliseconds.
fn as_secs_ms(v: &Value) -> Result<u64, String> {
    let secs = match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| format!("expected a number of seconds, got {n}"))?,
        Value::String(s) => s
            .trim()
            .trim_end_matches('s')
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("expected a number of seconds, got '{s}'"))?,
        other => {
            return Err(format!(
                "expected a number of seconds, got {}",
                describe(other)
            ))
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("expected a number of seconds ≥ 0, got {secs}"));
    }
    Ok((secs * 1000.0).round() as u64)
}

fn in_range(n: u64, lo: u64, hi: u64) -> Result<u64, String> {
    if (lo..=hi).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{n} is out of range {lo} … {hi}"))
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("{n}"),
        Value::String(s) => format!("'{s}'"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(_) => "a tagged value".into(),
    }
}

fn parse_level(v: &Value) -> Result<LogLevel, String> {
    let s = as_string(v)?;
    match s.to_ascii_lowercase().as_str() {
        "error" | "err" | "critical" | "crit" | "alert" | "emerg" => Ok(LogLevel::Error),
        "warning" | "warn" => Ok(LogLevel::Warning),
        "notice" | "info" => Ok(LogLevel::Notice),
        "debug" => Ok(LogLevel::Debug),
        "trace" => Ok(LogLevel::Trace),
        _ => Err(format!(
            "expected one of error, warning, notice, info, debug, trace; got '{s}'"
        )),
    }
}

impl Config {
    /// Applies one known key. `Err` carries the reason (without the key or source).
    fn set(&mut self, key: &str, v: &Value) -> Result<(), String> {
        match key {
            "host" => self.host = as_string(v)?,
            "port" => self.port = in_range(as_u64(v)?, 0, 65535)? as u16,
            "data_dir" => self.data_dir = PathBuf::from(as_string(v)?),
            "max_persistent_data_item_size" => {
                self.max_item_size = in_range(as_size(v)?, 1, MAX_ITEM_SIZE_LIMIT)?
            }
            "max_persistent_data_items" => self.max_items = in_range(as_u64(v)?, 1, 100_000_000)?,
            "max_items_per_namespace" => {
                self.max_items_per_namespace = match v {
                    Value::Null => None,
                    _ => Some(in_range(as_u64(v)?, 1, 100_000_000)?),
                }
            }
            "log_level" => self.log_level = parse_level(v)?,
            "log_stderr" => self.log_stderr = as_bool(v)?,
            "node_id" => self.node_id = in_range(as_u64(v)?, 1, u64::MAX)?,
            "snapshot_logs" => self.snapshot_logs = in_range(as_u64(v)?, 10, 10_000_000)?,
            "snapshot_keep_logs" => self.snapshot_keep_logs = in_range(as_u64(v)?, 0, 10_000_000)?,
            "snapshot_log_bytes" => {
                self.snapshot_log_bytes = in_range(as_size(v)?, 1 << 20, 64 << 30)?
            }
            "heartbeat_interval_ms" => self.heartbeat_ms = in_range(as_u64(v)?, 10, 60_000)?,
            "election_timeout_min_ms" => {
                self.election_timeout_min_ms = in_range(as_u64(v)?, 20, 600_000)?
            }
            "election_timeout_max_ms" => {
                self.election_timeout_max_ms = in_range(as_u64(v)?, 20, 600_000)?
            }
            "commit_timeout_ms" => self.commit_timeout_ms = in_range(as_u64(v)?, 100, 600_000)?,
            "purge_interval_ms" => self.purge_interval_ms = in_range(as_u64(v)?, 10, 3_600_000)?,
            "max_clock_offset_ms" => self.max_clock_offset_ms = in_range(as_u64(v)?, 1, 3_600_000)?,
            "max_batch_ops" => self.max_batch_ops = in_range(as_u64(v)?, 1, 65_536)?,
            // 0 (`0B`) means no limit, as in the original.
            "max_cache_size" => {
                self.max_cache_size = match as_size(v)? {
                    0 => u64::MAX,
                    n => in_range(n, 1024, 1 << 50)?,
                }
            }
            // 0 means no limit of its own (the original's rule): the largest item a request
            // may carry, MAX_CACHE_ITEM.
            "max_item_size" => self.cache_max_item_size = in_range(as_size(v)?, 0, MAX_CACHE_ITEM)?,
            "peer_connection_timeout" => {
                self.peer_connection_timeout_ms = in_range(as_secs_ms(v)?, 10, 60_000)?
            }
            "peer_refresh_time" => self.peer_refresh_ms = in_range(as_secs_ms(v)?, 0, 86_400_000)?,
            "worker_timeout" => self.worker_timeout = in_range(as_u64(v)?, 0, 86_400)?,
            "worker_threads" => self.worker_threads = in_range(as_u64(v)?, 0, 1024)?,
            "namespace_keys" => {
                let keys: Vec<String> = match v {
                    Value::Null => Vec::new(),
                    Value::Sequence(items) => {
                        items.iter().map(as_string).collect::<Result<_, _>>()?
                    }
                    other => as_string(other)?
                        .split(',')
                        .map(|k| k.trim().to_string())
                        .collect(),
                };
                let keys: Vec<String> = keys.into_iter().filter(|k| !k.is_empty()).collect();
                if !keys.is_empty() {
                    Keyring::new(keys.iter().map(String::as_str)).map_err(|e| e.to_string())?;
                }
                self.namespace_keys = keys;
            }
            "namespace_keys_file" => {
                self.namespace_keys_file = match v {
                    Value::Null => None,
                    other => Some(PathBuf::from(as_string(other)?)),
                }
            }
            "timestamp_error_margin" => {
                self.timestamp_error_margin = in_range(as_u64(v)?, 0, 315_360_000)?
            }
            "token_max_age" => {
                self.token_max_age = match v {
                    Value::Null => None,
                    _ => Some(in_range(as_u64(v)?, 1, 315_360_000)?),
                }
            }
            "require_namespace_token" => self.require_namespace_token = as_bool(v)?,
            "http_enabled" => self.http_enabled = as_bool(v)?,
            "peer_listen" => {
                self.peer_listen = match v {
                    Value::Null => None,
                    other => Some(as_string(other)?),
                }
            }
            "join" => self.join = as_bool(v)?,
            "peers" => {
                let Value::Mapping(map) = v else {
                    return Err(format!(
                        "expected a mapping of node id to \"host:port\", got {}",
                        describe(v)
                    ));
                };
                let mut peers = BTreeMap::new();
                for (id, addr) in map {
                    let id = in_range(as_u64(id)?, 1, u64::MAX)?;
                    let addr = as_string(addr)?;
                    if !addr.contains(':') {
                        return Err(format!("peer {id}: '{addr}' is not host:port"));
                    }
                    peers.insert(id, addr);
                }
                self.peers = peers;
            }
            "tls_enabled" => self.tls_enabled = as_bool(v)?,
            "tls_port" => self.tls_port = in_range(as_u64(v)?, 0, 65535)? as u16,
            "tls" => {
                let Value::Mapping(map) = v else {
                    return Err(format!(
                        "expected a mapping of tls settings, got {}",
                        describe(v)
                    ));
                };
                let mut tls = TlsSettings::default();
                for (k, val) in map {
                    let path = || -> Result<Option<PathBuf>, String> {
                        match val {
                            Value::Null => Ok(None),
                            other => Ok(Some(PathBuf::from(as_string(other)?))),
                        }
                    };
                    match k.as_str() {
                        Some("cert_file") => tls.cert_file = path()?,
                        Some("key_file") => tls.key_file = path()?,
                        Some("ca_cert") => tls.ca_cert = path()?,
                        Some("check_client_cert") => tls.check_client_cert = as_bool(val)?,
                        // Other Cache Manager settings (ca_path, ...) are not used.
                        _ => {}
                    }
                }
                self.tls = tls;
            }
            "cluster_secret" => {
                self.cluster_secret = match v {
                    Value::Null => None,
                    other => {
                        let text = as_string(other)?;
                        ClusterSecret::new(&text)?;
                        Some(text)
                    }
                }
            }
            "cluster_secret_file" => {
                self.cluster_secret_file = match v {
                    Value::Null => None,
                    other => Some(PathBuf::from(as_string(other)?)),
                }
            }
            "peer_tls" => {
                self.peer_tls = match v {
                    Value::Null => None,
                    Value::Mapping(map) => {
                        let mut files: [Option<PathBuf>; 3] = Default::default();
                        for (k, val) in map {
                            let slot = match k.as_str() {
                                Some("cert_file") => 0,
                                Some("key_file") => 1,
                                Some("ca_cert") => 2,
                                other => {
                                    return Err(format!(
                                        "unknown peer_tls setting {other:?} (cert_file, key_file, ca_cert)"
                                    ))
                                }
                            };
                            files[slot] = Some(PathBuf::from(as_string(val)?));
                        }
                        let [Some(cert_file), Some(key_file), Some(ca_cert)] = files else {
                            return Err("peer_tls needs cert_file, key_file and ca_cert".into());
                        };
                        Some(PeerTls {
                            cert_file,
                            key_file,
                            ca_cert,
                        })
                    }
                    other => {
                        return Err(format!(
                            "expected a mapping of peer_tls settings, got {}",
                            describe(other)
                        ))
                    }
                }
            }
            "max_connections" => self.max_connections = in_range(as_u64(v)?, 1, 1_000_000)?,
            "max_header_bytes" => self.max_header_bytes = in_range(as_size(v)?, 1024, 1024 * 1024)?,
            "header_timeout_ms" => self.header_timeout_ms = in_range(as_u64(v)?, 100, 600_000)?,
            "body_timeout_ms" => self.body_timeout_ms = in_range(as_u64(v)?, 100, 3_600_000)?,
            "client_rate_limit" => self.client_rate_limit = in_range(as_u64(v)?, 0, 10_000_000)?,
            "disk_reserve" => self.disk_reserve = in_range(as_size(v)?, 0, 1 << 50)?,
            "housekeeping_interval" | "cache_purge_time" => {
                self.housekeeping_interval = in_range(as_u64(v)?, 1, 86_400)?
            }
            _ => unreachable!("set() is only called with a key from KEYS"),
        }
        Ok(())
    }

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
    pub fn keyring(&self) -> Result<Option<Keyring>, String> {
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
                return Err(
                    "require_namespace_token is set but no namespace_keys are configured".into(),
                );
            }
            return Ok(None);
        }
        Keyring::new(keys.iter().map(String::as_str))
            .map(Some)
            .map_err(|e| format!("invalid namespace keys: {e}"))
    }

    /// The cluster secret: `cluster_secret`, or the content of `cluster_secret_file`.
    pub fn cluster_secret(&self) -> Result<Option<ClusterSecret>, String> {
        let text = match (&self.cluster_secret, &self.cluster_secret_file) {
            (Some(_), Some(_)) => {
                return Err("set cluster_secret or cluster_secret_file, not both".into())
            }
            (Some(text), None) => text.clone(),
            (None, Some(path)) => read_secret_file(path, "cluster_secret_file")?,
            (None, None) => return Ok(None),
        };
        ClusterSecret::new(&text)
            .map(Some)
            .map_err(|e| format!("invalid cluster secret: {e}"))
    }

    /// How this node authenticates to its peers.
    pub fn peer_credentials(&self) -> Result<PeerCredentials, String> {
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

    /// Checks relations between keys.
    fn check(&self) -> Result<(), String> {
        self.keyring()?;
        self.cluster_secret()?;
        if !self.peers.is_empty() && self.peer_listen.is_none() {
            return Err(
                "peers is set but peer_listen is not: other nodes could not reach this one".into(),
            );
        }
        if !self.peers.is_empty() && !self.join && !self.peers.contains_key(&self.node_id) {
            return Err(format!(
                "node_id {} is not in peers; list it, or set join: true to be added at run time",
                self.node_id
            ));
        }
        if !self.http_enabled && !self.tls_enabled {
            return Err(
                "http_enabled is false and tls_enabled is not true: nothing to serve".into(),
            );
        }
        if self.election_timeout_min_ms <= self.heartbeat_ms {
            return Err(format!(
                "election_timeout_min_ms ({}) must be larger than heartbeat_interval_ms ({})",
                self.election_timeout_min_ms, self.heartbeat_ms
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(format!(
                "election_timeout_max_ms ({}) must be larger than election_timeout_min_ms ({})",
                self.election_timeout_max_ms, self.election_timeout_min_ms
            ));
        }
        Ok(())
    }
}

/// Loads the configuration from an optional file and the environment (`env` looks up a
/// variable; the server passes `std::env::var`).
pub fn load(file: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, String> {
    let mut config = Config::default();
    let mut warnings = Vec::new();
    if let Some(path) = file {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read configuration file {source}: {e}"))?;
        let doc: Value = serde_norway::from_str(&text)
            .map_err(|e| format!("configuration file {source} is not valid YAML: {e}"))?;
        let mut mapping = match doc {
            Value::Null => serde_norway::Mapping::new(),
            Value::Mapping(m) => m,
            other => {
                return Err(format!(
                    "configuration file {source} must be a mapping of keys to values, not {}",
                    describe(&other)
                ))
            }
        };
        let mut in_cachemanager = false;
        if let Some(Value::Mapping(inner)) = mapping.get("cachemanager") {
            mapping = inner.clone();
            in_cachemanager = true;
        }
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
                config
                    .set(key, value)
                    .map_err(|e| format!("invalid value for '{key}' in {source}: {e}"))?;
            } else if key == "logging" {
                // Opsview's form: logging: {loggers: {opsview: {level: DEBUG}}}
                let level = value
                    .get("loggers")
                    .and_then(|l| l.get("opsview"))
                    .and_then(|o| o.get("level"));
                match level {
                    Some(level) => {
                        config.log_level = parse_level(level).map_err(|e| {
                            format!(
                            "invalid value for 'logging.loggers.opsview.level' in {source}: {e}"
                        )
                        })?
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
    }
    for key in KEYS {
        let var = format!("STATEMANAGER_{}", key.to_ascii_uppercase());
        if let Some(raw) = env(&var) {
            let value: Value = serde_norway::from_str(&raw).unwrap_or(Value::String(raw.clone()));
            config.set(key, &value).map_err(|e| {
                format!("invalid value for '{key}' in environment variable {var}: {e}")
            })?;
        }
    }
    config.check()?;
    Ok(Loaded { config, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load_text(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, text).unwrap();
        let shown = path.display().to_string();
        load(Some(&path), env)
            .map(|mut l| {
                for w in &mut l.warnings {
                    *w = w.replace(&shown, "FILE");
                }
                l
            })
            .map_err(|e| e.replace(&shown, "FILE"))
    }

    #[test]
    fn defaults_without_file() {
        let loaded = load(None, &no_env).unwrap();
        assert_eq!(loaded.config, Config::default());
        assert_eq!(loaded.config.port, 8184);
        assert_eq!(loaded.config.max_item_size, 16384);
        assert_eq!(loaded.config.max_items, 1024);
    }

    #[test]
    fn flat_file_with_sizes() {
        let c = load_text(
            "host: 0.0.0.0\nport: 0\nmax_persistent_data_item_size: 16 KB\nmax_persistent_data_items: 50\nmax_items_per_namespace: 5\n",
            &no_env,
        )
        .unwrap()
        .config;
        assert_eq!(c.host, "0.0.0.0");
        assert_eq!(c.port, 0);
        assert_eq!(c.max_item_size, 16384);
        assert_eq!(c.max_items, 50);
        assert_eq!(c.max_items_per_namespace, Some(5));
    }

    #[test]
    fn cachemanager_mapping_is_read_inside() {
        let loaded = load_text(
            "cachemanager:\n  port: 9000\n  max_persistent_data_item_size: 1mb\n  peers: [a, b]\n  logging:\n    loggers:\n      opsview:\n        level: DEBUG\n",
            &no_env,
        )
        .unwrap();
        assert_eq!(loaded.config.port, 9000);
        assert_eq!(loaded.config.max_item_size, 1 << 20);
        assert_eq!(loaded.config.log_level, LogLevel::Debug);
        assert_eq!(loaded.warnings.len(), 1);
        assert!(
            loaded.warnings[0].contains("Opsview Deploy"),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn opsview_cache_manager_settings_are_understood_not_warned_about() {
        let loaded = load_text(
            "cachemanager:\n  worker_timeout: 30\n  peer_refresh_time: 5\n  peer_connection_timeout: 0.5\n  cache_purge_time: 30\n  max_cache_size: 0B\n  max_item_size: 0B\n  timestamp_error_margin: 30\n  frobnicate: 1\n",
            &no_env,
        )
        .unwrap();
        assert_eq!(
            loaded.warnings,
            vec!["unknown configuration key 'frobnicate' in FILE; ignored"]
        );
        let c = loaded.config;
        assert_eq!(c.worker_timeout, 30);
        assert_eq!(c.peer_refresh_ms, 5000);
        assert_eq!(c.peer_connection_timeout_ms, 500);
        assert_eq!(c.housekeeping_interval, 30);
        // 0B: no limit, as in the original (the item limit is then what a request can carry).
        assert_eq!(c.max_cache_size, u64::MAX);
        assert_eq!(c.cache_item_limit(), MAX_CACHE_ITEM);
        // The original's defaults.
        let d = Config::default();
        assert_eq!(
            (d.max_cache_size, d.cache_item_limit()),
            (1 << 30, 10 << 20)
        );
        assert_eq!(d.worker_timeout, 30);
        assert!(load_text("peer_connection_timeout: soon\n", &no_env)
            .unwrap_err()
            .contains("'peer_connection_timeout'"));
        assert!(load_text("peer_refresh_time: -1\n", &no_env)
            .unwrap_err()
            .contains("'peer_refresh_time'"));
    }

    #[test]
    fn unknown_keys_warn_and_bad_values_fail_naming_key_and_file() {
        let loaded = load_text("port: 1\nfrobnicate: 3\n", &no_env).unwrap();
        assert_eq!(
            loaded.warnings,
            vec!["unknown configuration key 'frobnicate' in FILE; ignored"]
        );
        let err = load_text("port: seventy\n", &no_env).unwrap_err();
        assert_eq!(
            err,
            "invalid value for 'port' in FILE: expected a whole number, got 'seventy'"
        );
        let err = load_text("port: 70000\n", &no_env).unwrap_err();
        assert!(err.starts_with("invalid value for 'port' in FILE"), "{err}");
        let err = load_text("max_persistent_data_item_size: 16 TB\n", &no_env).unwrap_err();
        assert!(
            err.starts_with("invalid value for 'max_persistent_data_item_size' in FILE"),
            "{err}"
        );
        let err = load_text("log_stderr: maybe\n", &no_env).unwrap_err();
        assert!(err.contains("'log_stderr'"), "{err}");
        assert!(load_text("- a\n- b\n", &no_env)
            .unwrap_err()
            .contains("must be a mapping"));
        assert!(load_text("port: [\n", &no_env)
            .unwrap_err()
            .contains("not valid YAML"));
    }

    #[test]
    fn environment_overrides_file() {
        let env = |var: &str| match var {
            "STATEMANAGER_PORT" => Some("9999".to_string()),
            "STATEMANAGER_LOG_STDERR" => Some("true".to_string()),
            "STATEMANAGER_MAX_PERSISTENT_DATA_ITEM_SIZE" => Some("2KB".to_string()),
            _ => None,
        };
        let c = load_text("port: 1\n", &env).unwrap().config;
        assert_eq!(c.port, 9999);
        assert!(c.log_stderr);
        assert_eq!(c.max_item_size, 2048);
        let bad = |var: &str| (var == "STATEMANAGER_PORT").then(|| "x".to_string());
        let err = load(None, &bad).unwrap_err();
        assert!(
            err.contains("environment variable STATEMANAGER_PORT"),
            "{err}"
        );
    }

    #[test]
    fn shipped_example_config_is_the_defaults_and_lists_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/statemanager.yaml");
        let loaded = load(Some(&path), &no_env).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(loaded.config, Config::default());
        let text = std::fs::read_to_string(&path).unwrap();
        for key in KEYS {
            assert!(
                text.contains(&format!("{key}:")),
                "example config lacks {key}"
            );
        }
    }

    #[test]
    fn debian_packaged_config_is_the_defaults_with_debian_paths() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/debian/statemanager.yaml");
        let loaded = load(Some(&path), &no_env).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let expected = Config {
            data_dir: PathBuf::from("/var/lib/statemanager"),
            log_stderr: true,
            ..Config::default()
        };
        assert_eq!(loaded.config, expected);
        let text = std::fs::read_to_string(&path).unwrap();
        for key in KEYS {
            assert!(
                text.contains(&format!("{key}:")),
                "packaged config lacks {key}"
            );
        }
    }

    #[test]
    fn namespace_keys_as_string_list_and_file() {
        const K: &str = "MDEyMzQ1Njc4OWFiY2RlZg==";
        let c = load_text(&format!("namespace_keys: {K},{K}\n"), &no_env)
            .unwrap()
            .config;
        assert_eq!(c.namespace_keys.len(), 2);
        let c = load_text(&format!("namespace_keys:\n  - {K}\n"), &no_env)
            .unwrap()
            .config;
        assert!(c.keyring().unwrap().is_some());
        let err = load_text("namespace_keys: notakey\n", &no_env).unwrap_err();
        assert!(
            err.starts_with("invalid value for 'namespace_keys' in FILE"),
            "{err}"
        );
        let err = load_text("require_namespace_token: true\n", &no_env).unwrap_err();
        assert!(err.contains("no namespace_keys"), "{err}");

        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let keyfile = dir.path().join("keys");
        std::fs::write(&keyfile, format!("{K}\n")).unwrap();
        std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = format!("namespace_keys_file: {}\n", keyfile.display());
        let err = load_text(&text, &no_env).unwrap_err();
        assert!(err.contains("must be 0600"), "{err}");
        std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load_text(&text, &no_env)
            .unwrap()
            .config
            .keyring()
            .unwrap()
            .is_some());
    }

    #[test]
    fn peers_map_with_integer_or_string_ids() {
        let c = load_text(
            "node_id: 2\npeer_listen: 127.0.0.1:9002\npeers:\n  1: 127.0.0.1:9001\n  \"2\": 127.0.0.1:9002\n",
            &no_env,
        )
        .unwrap()
        .config;
        assert_eq!(c.peers.len(), 2);
        assert_eq!(c.peers[&1], "127.0.0.1:9001");
        let err = load_text("peers: [a, b]\n", &no_env).unwrap_err();
        assert!(
            err.starts_with("invalid value for 'peers' in FILE"),
            "{err}"
        );
        let err =
            load_text("node_id: 3\npeer_listen: x:1\npeers:\n  1: a:1\n", &no_env).unwrap_err();
        assert!(err.contains("not in peers"), "{err}");
    }

    #[test]
    fn timing_relations_are_checked() {
        let err = load_text("heartbeat_interval_ms: 500\n", &no_env).unwrap_err();
        assert!(err.contains("election_timeout_min_ms"), "{err}");
    }
}
