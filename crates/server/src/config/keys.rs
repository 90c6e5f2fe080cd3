//! The configuration keys: one row each, which makes the field of [`Config`], its default, the
//! names it is known by in a file or the environment ([`KEYS`]), and how its value is read
//! ([`Config::set`]). `docs/configuration.md` lists them by topic, not in this order.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_norway::Value;
use statemanager_raft::network::PeerTls;

use super::values::{
    as_bool, as_secs_ms, as_size, as_string, as_u64, in_range, optional, parse_level,
    parse_namespace_keys, parse_peer_tls, parse_peers, parse_secret, parse_tls, ValueError,
};
use super::{LogLevel, MAX_CACHE_ITEM, MAX_ITEM_SIZE_LIMIT};
use crate::tls::TlsSettings;

/// Defines [`Config`], its `Default`, [`KEYS`] and [`Config::set`] from one table. A row:
/// doc comment, `field: Type = default, ["name", "alias"], |value| how it is read`.
macro_rules! config_keys {
    ($( $(#[doc = $doc:literal])* $field:ident : $ty:ty = $default:expr, [$($name:literal),+], |$v:ident| $parse:expr; )*) => {
        /// The validated configuration.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Config {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for Config {
            fn default() -> Self {
                Config { $( $field: $default, )* }
            }
        }

        /// Every key the configuration knows, in the order of the table below.
        pub const KEYS: &[&str] = &[$($($name),+),*];

        impl Config {
            /// Applies one known key; `Err` carries the reason (without the key or where it
            /// came from, which the caller adds).
            pub(super) fn set(&mut self, key: &str, value: &Value) -> Result<(), ValueError> {
                match key {
                    $( $($name)|+ => {
                        let $v = value;
                        self.$field = (|| -> Result<$ty, ValueError> { Ok($parse) })()?;
                    } )*
                    other => return Err(ValueError::new(format!("unknown key '{other}'"))),
                }
                Ok(())
            }
        }
    };
}

config_keys! {
    /// Address to listen on for HTTP.
    host: String = "127.0.0.1".into(), ["host"], |v| as_string(v)?;
    /// HTTP port (`0`: any free port).
    port: u16 = 8184, ["port"], |v| in_range(as_u64(v)?, 0, 65535)? as u16;
    /// Data directory.
    data_dir: PathBuf = PathBuf::from("./statemanager-data"), ["data_dir"], |v| PathBuf::from(as_string(v)?);
    /// `max_persistent_data_item_size`, in bytes.
    max_item_size: u64 = 16 * 1024, ["max_persistent_data_item_size"],
        |v| in_range(as_size(v)?, 1, MAX_ITEM_SIZE_LIMIT)?;
    /// `max_persistent_data_items`.
    max_items: u64 = 1024, ["max_persistent_data_items"], |v| in_range(as_u64(v)?, 1, 100_000_000)?;
    /// `max_items_per_namespace`, if set.
    max_items_per_namespace: Option<u64> = None, ["max_items_per_namespace"],
        |v| optional(v, |v| in_range(as_u64(v)?, 1, 100_000_000))?;
    /// Log threshold.
    log_level: LogLevel = LogLevel::Notice, ["log_level"], |v| parse_level(v)?;
    /// Log to stderr instead of syslog.
    log_stderr: bool = false, ["log_stderr"], |v| as_bool(v)?;
    /// This node's Raft id.
    node_id: u64 = 1, ["node_id"], |v| in_range(as_u64(v)?, 1, u64::MAX)?;
    /// Take a snapshot once this many log entries were applied since the last one.
    snapshot_logs: u64 = 100_000, ["snapshot_logs"], |v| in_range(as_u64(v)?, 10, 10_000_000)?;
    /// Or once the log since the last snapshot is this large and larger than the state.
    snapshot_log_bytes: u64 = 64 << 20, ["snapshot_log_bytes"], |v| in_range(as_size(v)?, 1 << 20, 64 << 30)?;
    /// Log entries kept after a snapshot for lagging followers.
    snapshot_keep_logs: u64 = 1000, ["snapshot_keep_logs"], |v| in_range(as_u64(v)?, 0, 10_000_000)?;
    /// Raft heartbeat interval, ms.
    heartbeat_ms: u64 = 100, ["heartbeat_interval_ms"], |v| in_range(as_u64(v)?, 10, 60_000)?;
    /// Raft election timeout lower bound, ms.
    election_timeout_min_ms: u64 = 250, ["election_timeout_min_ms"], |v| in_range(as_u64(v)?, 20, 600_000)?;
    /// Raft election timeout upper bound, ms.
    election_timeout_max_ms: u64 = 500, ["election_timeout_max_ms"], |v| in_range(as_u64(v)?, 20, 600_000)?;
    /// How long a proposed write may take to commit, ms.
    commit_timeout_ms: u64 = 1500, ["commit_timeout_ms"], |v| in_range(as_u64(v)?, 100, 600_000)?;
    /// How often the leader looks for expired items to purge, ms.
    purge_interval_ms: u64 = 1000, ["purge_interval_ms"], |v| in_range(as_u64(v)?, 10, 3_600_000)?;
    /// Largest clock offset from the majority of the cluster a node may have and still lead
    /// and serve, ms.
    max_clock_offset_ms: u64 = 500, ["max_clock_offset_ms"], |v| in_range(as_u64(v)?, 1, 3_600_000)?;
    /// Most stores group-committed into one log entry.
    max_batch_ops: u64 = 1024, ["max_batch_ops"], |v| in_range(as_u64(v)?, 1, 65_536)?;
    /// Most group-commit batches proposed and not yet answered.
    write_pipeline: u64 = 1, ["write_pipeline"], |v| in_range(as_u64(v)?, 1, 64)?;
    /// How long, in ms, the writer waits after answering a batch for those callers' next
    /// writes (0: never).
    write_gather_ms: u64 = 3, ["write_gather_ms"], |v| in_range(as_u64(v)?, 0, 100)?;
    /// This node's share of the shared cache: its size bound, in bytes (`u64::MAX`: no
    /// limit, written `0B`, as in the original).
    max_cache_size: u64 = 1 << 30, ["max_cache_size"], |v| match as_size(v)? {
        0 => u64::MAX,
        n => in_range(n, 1024, 1 << 50)?,
    };
    /// The cache's `max_item_size` as configured (0: no limit of its own, the original's rule:
    /// the largest item a request may carry, [`MAX_CACHE_ITEM`]).
    cache_max_item_size: u64 = 10 << 20, ["max_item_size"], |v| in_range(as_size(v)?, 0, MAX_CACHE_ITEM)?;
    /// How often expired cache items and locks are removed, in seconds (`housekeeping_interval`
    /// or, Opsview's name, `cache_purge_time`).
    housekeeping_interval: u64 = 10, ["housekeeping_interval", "cache_purge_time"],
        |v| in_range(as_u64(v)?, 1, 86_400)?;
    /// `peer_connection_timeout`: how long a cache peer may take to answer (beyond the
    /// caller's own wait) before it is marked down, in milliseconds.
    peer_connection_timeout_ms: u64 = 1000, ["peer_connection_timeout"], |v| in_range(as_secs_ms(v)?, 10, 60_000)?;
    /// `peer_refresh_time`: how long a cache peer marked down is skipped before it is
    /// rechecked, in milliseconds.
    peer_refresh_ms: u64 = 10_000, ["peer_refresh_time"], |v| in_range(as_secs_ms(v)?, 0, 86_400_000)?;
    /// `worker_timeout`: the original's worker restart delay, in seconds; accepted, unused
    /// (this server has no worker processes to restart).
    worker_timeout: u64 = 30, ["worker_timeout"], |v| in_range(as_u64(v)?, 0, 86_400)?;
    /// Threads serving requests and running Raft (0: one per CPU core but one, at least one).
    worker_threads: u64 = 0, ["worker_threads"], |v| in_range(as_u64(v)?, 0, 1024)?;
    /// Threads of their own that client connections are spread over, besides the workers
    /// (unset: 1 on a machine of 2 cores or more, 0 on one core).
    connection_threads: Option<u64> = None, ["connection_threads"],
        |v| optional(v, |v| in_range(as_u64(v)?, 0, 1024))?;
    /// The scheduler slice, in microseconds, the request threads and the log writer thread
    /// ask the kernel for (0, the default: the kernel's own; see
    /// `statemanager_raft::thread_slice`).
    thread_slice_us: u64 = 0, ["thread_slice_us"], |v| in_range(as_u64(v)?, 0, 100_000)?;
    /// A node that leads alone writes a batch's log entry on the Raft thread itself when only
    /// that batch's writes are being served and the last log fsync took less than this many
    /// microseconds (0: always on the log writer thread; see
    /// `statemanager_raft::log_store::inline`).
    inline_write_max_fsync_us: u64 = 1000, ["inline_write_max_fsync_us"],
        |v| in_range(as_u64(v)?, 0, 1_000_000)?;
    /// `namespace_keys`: base64 keys for protected-namespace tokens (first mints, all verify).
    namespace_keys: Vec<String> = Vec::new(), ["namespace_keys"], |v| parse_namespace_keys(v)?;
    /// `namespace_keys_file`: a file holding the keys (must be mode 0600).
    namespace_keys_file: Option<PathBuf> = None, ["namespace_keys_file"],
        |v| optional(v, |v| Ok(PathBuf::from(as_string(v)?)))?;
    /// `timestamp_error_margin`: tokens are accepted within ±this many seconds (0: no check).
    timestamp_error_margin: u64 = 30, ["timestamp_error_margin"], |v| in_range(as_u64(v)?, 0, 315_360_000)?;
    /// `token_max_age`: when set, tokens are accepted up to this many seconds old instead.
    token_max_age: Option<u64> = None, ["token_max_age"],
        |v| optional(v, |v| in_range(as_u64(v)?, 1, 315_360_000))?;
    /// `require_namespace_token`: refuse plain namespace names.
    require_namespace_token: bool = false, ["require_namespace_token"], |v| as_bool(v)?;
    /// Serve plain HTTP on `port`.
    http_enabled: bool = true, ["http_enabled"], |v| as_bool(v)?;
    /// Serve HTTPS on `tls_port`.
    tls_enabled: bool = false, ["tls_enabled"], |v| as_bool(v)?;
    /// HTTPS port (`0`: any free port).
    tls_port: u16 = 8185, ["tls_port"], |v| in_range(as_u64(v)?, 0, 65535)? as u16;
    /// The `tls:` settings.
    tls: TlsSettings = TlsSettings::default(), ["tls"], |v| parse_tls(v)?;
    /// `peer_listen`: address for node-to-node traffic (unset: no peer port).
    peer_listen: Option<String> = None, ["peer_listen"], |v| optional(v, as_string)?;
    /// `peers`: node id → peer address, the same on every node (empty: one-member cluster).
    peers: BTreeMap<u64, String> = BTreeMap::new(), ["peers"], |v| parse_peers(v)?;
    /// `join`: start empty and wait to be added to an existing cluster.
    join: bool = false, ["join"], |v| as_bool(v)?;
    /// `cluster_secret`: the shared credential of peers and administrators.
    cluster_secret: Option<String> = None, ["cluster_secret"], |v| optional(v, parse_secret)?;
    /// `cluster_secret_file`: a file holding it (must be mode 0600).
    cluster_secret_file: Option<PathBuf> = None, ["cluster_secret_file"],
        |v| optional(v, |v| Ok(PathBuf::from(as_string(v)?)))?;
    /// `peer_tls`: mutual TLS on the peer port.
    peer_tls: Option<PeerTls> = None, ["peer_tls"], |v| optional(v, parse_peer_tls)?;
    /// `max_connections`: concurrent client connections per listener.
    max_connections: u64 = 4096, ["max_connections"], |v| in_range(as_u64(v)?, 1, 1_000_000)?;
    /// `max_header_bytes`: largest request head (request line and headers).
    max_header_bytes: u64 = 16 * 1024, ["max_header_bytes"], |v| in_range(as_size(v)?, 1024, 1024 * 1024)?;
    /// `header_timeout_ms`: time allowed to receive a request head.
    header_timeout_ms: u64 = 10_000, ["header_timeout_ms"], |v| in_range(as_u64(v)?, 100, 600_000)?;
    /// `body_timeout_ms`: time allowed to receive a request body.
    body_timeout_ms: u64 = 30_000, ["body_timeout_ms"], |v| in_range(as_u64(v)?, 100, 3_600_000)?;
    /// `client_rate_limit`: requests per second per client address (0: no limit).
    client_rate_limit: u64 = 0, ["client_rate_limit"], |v| in_range(as_u64(v)?, 0, 10_000_000)?;
    /// `disk_reserve`: free bytes the data directory's file system must keep for writes to be
    /// accepted.
    disk_reserve: u64 = 64 << 20, ["disk_reserve"], |v| in_range(as_size(v)?, 0, 1 << 50)?;
}
