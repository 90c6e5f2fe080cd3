//! Peers marked for a while: the addresses that answered in a way this node should not ask
//! them again soon (a peer that speaks HTTP only; an older version that refuses a call this
//! version added). A mark lasts [`MARKED_FOR`], after which the peer is asked again: it may
//! have been upgraded meanwhile, as during a rolling upgrade.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a mark lasts.
pub const MARKED_FOR: Duration = Duration::from_secs(60);

/// Peer addresses, each marked at an instant.
#[derive(Debug, Default)]
pub struct PeerMarks(Mutex<HashMap<String, Instant>>);

impl PeerMarks {
    /// Marks `addr` from now on.
    pub fn mark(&self, addr: &str) {
        self.mark_at(addr, Instant::now());
    }

    fn mark_at(&self, addr: &str, at: Instant) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr.to_string(), at);
    }

    /// Whether `addr` was marked less than [`MARKED_FOR`] ago (an older mark is forgotten).
    pub fn is_marked(&self, addr: &str) -> bool {
        self.is_marked_at(addr, Instant::now())
    }

    fn is_marked_at(&self, addr: &str, now: Instant) -> bool {
        let mut marks = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match marks.get(addr) {
            Some(since) if still_marked(*since, now) => true,
            Some(_) => {
                marks.remove(addr);
                false
            }
            None => false,
        }
    }
}

/// A mark made at `since` still holds at `now`.
fn still_marked(since: Instant, now: Instant) -> bool {
    now.saturating_duration_since(since) < MARKED_FOR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_holds_for_a_minute_and_then_is_forgotten() {
        let marks = PeerMarks::default();
        assert!(!marks.is_marked("127.0.0.1:1"));
        marks.mark("127.0.0.1:1");
        assert!(marks.is_marked("127.0.0.1:1"));
        assert!(!marks.is_marked("127.0.0.1:2"), "only the address marked");
        let at = Instant::now();
        marks.mark_at("127.0.0.1:1", at);
        let just_before = at + MARKED_FOR - Duration::from_millis(1);
        assert!(marks.is_marked_at("127.0.0.1:1", just_before));
        assert!(!marks.is_marked_at("127.0.0.1:1", at + MARKED_FOR));
        // Forgotten once past: not marked even at an earlier instant, until marked again.
        assert!(!marks.is_marked_at("127.0.0.1:1", just_before));
        marks.mark_at("127.0.0.1:1", at);
        assert!(marks.is_marked_at("127.0.0.1:1", just_before));
    }
}
