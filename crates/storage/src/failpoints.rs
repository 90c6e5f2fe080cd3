//! Fault injection for tests, compiled only with the `failpoints` feature (the server's
//! integration tests enable it; release builds never contain it).
//!
//! `STATEMANAGER_FAILPOINT_FSYNC_AFTER=N`: after `N` successful log fsyncs, every further one
//! fails with EIO, as a disk that lost a write would report it. Used to prove that a failed
//! fsync stops the node and acknowledges nothing that is not durable.

/// The outcome the next log fsync should have (before the real fsync is attempted).
#[cfg(feature = "failpoints")]
pub fn log_fsync() -> std::io::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static AFTER: OnceLock<Option<u64>> = OnceLock::new();
    static DONE: AtomicU64 = AtomicU64::new(0);
    let after = AFTER.get_or_init(|| {
        std::env::var("STATEMANAGER_FAILPOINT_FSYNC_AFTER")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    match after {
        Some(after) if DONE.fetch_add(1, Ordering::Relaxed) >= *after => {
            Err(std::io::Error::from_raw_os_error(5)) // EIO
        }
        _ => Ok(()),
    }
}

/// Without the `failpoints` feature: always `Ok`.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn log_fsync() -> std::io::Result<()> {
    Ok(())
}
