//! Reading one configuration value: numbers, sizes, durations, flags, and the structured keys
//! (`peers`, `tls`, `peer_tls`, keys and secrets). Each reader says what it expected and what
//! it got; the caller names the key and where it came from.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_norway::Value;
use statemanager_raft::auth::ClusterSecret;
use statemanager_raft::network::PeerTls;
use statemanager_token::{Keyring, TokenError};

use super::LogLevel;
use crate::size::{parse_size, SizeError};
use crate::tls::TlsSettings;

/// Why a value is not acceptable for its key (the reason only: the key and its source are
/// added by [`super::ConfigError::InvalidValue`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not what the key takes (the reason says what was expected and what was found).
    #[error("{0}")]
    Reason(String),
    /// Not a size.
    #[error(transparent)]
    Size(#[from] SizeError),
    /// Namespace keys that cannot make a keyring.
    #[error(transparent)]
    Keys(#[from] TokenError),
}

impl ValueError {
    /// A reason.
    pub fn new(reason: impl Into<String>) -> ValueError {
        ValueError::Reason(reason.into())
    }
}

impl From<String> for ValueError {
    fn from(reason: String) -> ValueError {
        ValueError::new(reason)
    }
}

/// `None` for a null value, else what `read` makes of it.
pub fn optional<T>(
    v: &Value,
    read: impl FnOnce(&Value) -> Result<T, ValueError>,
) -> Result<Option<T>, ValueError> {
    match v {
        Value::Null => Ok(None),
        other => read(other).map(Some),
    }
}

/// A whole number ≥ 0 (or a string holding one).
pub fn as_u64(v: &Value) -> Result<u64, ValueError> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("expected a whole number ≥ 0, got {n}").into()),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("expected a whole number, got '{s}'").into()),
        other => Err(format!("expected a whole number, got {}", describe(other)).into()),
    }
}

/// `true`/`false` (or yes/no, on/off, 1/0 as strings).
pub fn as_bool(v: &Value) -> Result<bool, ValueError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(format!("expected true or false, got '{s}'").into()),
        },
        other => Err(format!("expected true or false, got {}", describe(other)).into()),
    }
}

/// A non-empty string (trimmed; a number is taken as its text).
pub fn as_string(v: &Value) -> Result<String, ValueError> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("expected a non-empty string, got {}", describe(other)).into()),
    }
}

/// A size in bytes: a number, or a string such as `16KB`.
pub fn as_size(v: &Value) -> Result<u64, ValueError> {
    match v {
        Value::Number(_) => as_u64(v),
        Value::String(s) => Ok(parse_size(s)?),
        other => Err(format!("expected a size such as 16KB, got {}", describe(other)).into()),
    }
}

/// Seconds, whole or fractional (`0.5`), as milliseconds.
pub fn as_secs_ms(v: &Value) -> Result<u64, ValueError> {
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
            return Err(format!("expected a number of seconds, got {}", describe(other)).into())
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("expected a number of seconds ≥ 0, got {secs}").into());
    }
    Ok((secs * 1000.0).round() as u64)
}

/// `n` when it is within `lo ..= hi`.
pub fn in_range(n: u64, lo: u64, hi: u64) -> Result<u64, ValueError> {
    if (lo..=hi).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{n} is out of range {lo} … {hi}").into())
    }
}

/// How a value is named in a message.
pub fn describe(v: &Value) -> String {
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

/// A log level by name (syslog's names and Python's are both accepted).
pub fn parse_level(v: &Value) -> Result<LogLevel, ValueError> {
    let s = as_string(v)?;
    match s.to_ascii_lowercase().as_str() {
        "error" | "err" | "critical" | "crit" | "alert" | "emerg" => Ok(LogLevel::Error),
        "warning" | "warn" => Ok(LogLevel::Warning),
        "notice" | "info" => Ok(LogLevel::Notice),
        "debug" => Ok(LogLevel::Debug),
        "trace" => Ok(LogLevel::Trace),
        _ => Err(
            format!("expected one of error, warning, notice, info, debug, trace; got '{s}'").into(),
        ),
    }
}

/// `namespace_keys`: a list, or one comma-separated string; each key must be valid.
pub fn parse_namespace_keys(v: &Value) -> Result<Vec<String>, ValueError> {
    let keys: Vec<String> = match v {
        Value::Null => Vec::new(),
        Value::Sequence(items) => items.iter().map(as_string).collect::<Result<_, _>>()?,
        other => as_string(other)?
            .split(',')
            .map(|k| k.trim().to_string())
            .collect(),
    };
    let keys: Vec<String> = keys.into_iter().filter(|k| !k.is_empty()).collect();
    if !keys.is_empty() {
        Keyring::new(keys.iter().map(String::as_str))?;
    }
    Ok(keys)
}

/// `peers`: a mapping of node id to `host:port`.
pub fn parse_peers(v: &Value) -> Result<BTreeMap<u64, String>, ValueError> {
    let Value::Mapping(map) = v else {
        return Err(format!(
            "expected a mapping of node id to \"host:port\", got {}",
            describe(v)
        )
        .into());
    };
    let mut peers = BTreeMap::new();
    for (id, addr) in map {
        let id = in_range(as_u64(id)?, 1, u64::MAX)?;
        let addr = as_string(addr)?;
        if !addr.contains(':') {
            return Err(format!("peer {id}: '{addr}' is not host:port").into());
        }
        peers.insert(id, addr);
    }
    Ok(peers)
}

/// The `tls:` mapping (the Cache Manager's settings; those this server does not use, such as
/// `ca_path`, are skipped).
pub fn parse_tls(v: &Value) -> Result<TlsSettings, ValueError> {
    let Value::Mapping(map) = v else {
        return Err(format!("expected a mapping of tls settings, got {}", describe(v)).into());
    };
    let mut tls = TlsSettings::default();
    for (k, val) in map {
        let path = || optional(val, |v| Ok(PathBuf::from(as_string(v)?)));
        match k.as_str() {
            Some("cert_file") => tls.cert_file = path()?,
            Some("key_file") => tls.key_file = path()?,
            Some("ca_cert") => tls.ca_cert = path()?,
            Some("check_client_cert") => tls.check_client_cert = as_bool(val)?,
            _ => {}
        }
    }
    Ok(tls)
}

/// `cluster_secret`: a string that makes a valid [`ClusterSecret`].
pub fn parse_secret(v: &Value) -> Result<String, ValueError> {
    let text = as_string(v)?;
    ClusterSecret::new(&text).map_err(|e| ValueError::new(e.to_string()))?;
    Ok(text)
}

/// `peer_tls`: a mapping with all of `cert_file`, `key_file` and `ca_cert`.
pub fn parse_peer_tls(v: &Value) -> Result<PeerTls, ValueError> {
    let Value::Mapping(map) = v else {
        return Err(format!(
            "expected a mapping of peer_tls settings, got {}",
            describe(v)
        )
        .into());
    };
    let mut files: [Option<PathBuf>; 3] = Default::default();
    for (k, val) in map {
        let slot = match k.as_str() {
            Some("cert_file") => 0,
            Some("key_file") => 1,
            Some("ca_cert") => 2,
            other => {
                return Err(format!(
                    "unknown peer_tls setting {other:?} (cert_file, key_file, ca_cert)"
                )
                .into())
            }
        };
        files[slot] = Some(PathBuf::from(as_string(val)?));
    }
    let [Some(cert_file), Some(key_file), Some(ca_cert)] = files else {
        return Err(ValueError::new(
            "peer_tls needs cert_file, key_file and ca_cert",
        ));
    };
    Ok(PeerTls {
        cert_file,
        key_file,
        ca_cert,
    })
}
