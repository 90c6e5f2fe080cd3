//! The clock abstraction. The domain never reads time itself; the Raft leader asks a [`Clock`]
//! once per batch and the value travels in the log entry.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::Timestamp;

/// A source of the current time. The server uses the system clock; tests use [`ManualClock`].
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// A clock that only moves when told to, for deterministic tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    micros: AtomicU64,
}

impl ManualClock {
    /// A clock that starts at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            micros: AtomicU64::new(start.as_micros()),
        }
    }

    /// Moves the clock forward by `secs` seconds.
    pub fn advance_secs(&self, secs: u64) {
        self.micros
            .fetch_add(secs.saturating_mul(1_000_000), Ordering::SeqCst);
    }

    /// Sets the clock to `at` (it may go backwards, to test that the leader never does).
    pub fn set(&self, at: Timestamp) {
        self.micros.store(at.as_micros(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.micros.load(Ordering::SeqCst))
    }
}
