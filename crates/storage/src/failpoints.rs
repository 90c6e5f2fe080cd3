//! Fault injection for tests, compiled only with the `failpoints` feature (the server's
//! integration tests enable it; release builds never contain it). Each is read once from the
//! environment:
//!
//! - `STATEMANAGER_FAILPOINT_FSYNC_AFTER=N`: after `N` successful log fsyncs, every further
//!   one fails with EIO, as a disk that lost a write would report it. Used to prove that a
//!   failed fsync stops the node and acknowledges nothing that is not durable.
//! - `STATEMANAGER_FAILPOINT_SKIP_LOG_SYNC=1`: log appends are not fsync'd (a server that
//!   acknowledges before its write is durable). The power-loss tests prove they catch it.
//! - `STATEMANAGER_FAILPOINT_SKIP_DIR_SYNC=1`: directories are never fsync'd (new names are
//!   not durable). The power-loss tests prove they catch it.
//! - `STATEMANAGER_FAILPOINT_SEGMENT_BYTES=N`: log segments are closed after `N` bytes
//!   instead of 64 MiB, so that a short test recycles and deletes segments.

#[cfg(feature = "failpoints")]
fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The outcome the next log fsync should have (before the real fsync is attempted).
#[cfg(feature = "failpoints")]
pub fn log_fsync() -> std::io::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static AFTER: OnceLock<Option<u64>> = OnceLock::new();
    static DONE: AtomicU64 = AtomicU64::new(0);
    let after = AFTER.get_or_init(|| env_u64("STATEMANAGER_FAILPOINT_FSYNC_AFTER"));
    match after {
        Some(after) if DONE.fetch_add(1, Ordering::Relaxed) >= *after => {
            Err(std::io::Error::from_raw_os_error(5)) // EIO
        }
        _ => Ok(()),
    }
}

/// Whether log appends skip their fsync (a deliberately broken server).
#[cfg(feature = "failpoints")]
pub fn skip_log_sync() -> bool {
    static SKIP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SKIP.get_or_init(|| env_u64("STATEMANAGER_FAILPOINT_SKIP_LOG_SYNC") == Some(1))
}

/// Whether directory fsyncs are skipped (a deliberately broken server).
#[cfg(feature = "failpoints")]
pub fn skip_dir_sync() -> bool {
    static SKIP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SKIP.get_or_init(|| env_u64("STATEMANAGER_FAILPOINT_SKIP_DIR_SYNC") == Some(1))
}

/// The segment size to use instead of the default, if set.
#[cfg(feature = "failpoints")]
pub fn segment_bytes() -> Option<u64> {
    static BYTES: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *BYTES.get_or_init(|| env_u64("STATEMANAGER_FAILPOINT_SEGMENT_BYTES"))
}

/// Without the `failpoints` feature: always `Ok`.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn log_fsync() -> std::io::Result<()> {
    Ok(())
}

/// Without the `failpoints` feature: never.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn skip_log_sync() -> bool {
    false
}

/// Without the `failpoints` feature: never.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn skip_dir_sync() -> bool {
    false
}

/// Without the `failpoints` feature: the default.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn segment_bytes() -> Option<u64> {
    None
}
