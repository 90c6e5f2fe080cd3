//! The newest log entries, kept in memory beside the WAL.
//!
//! openraft reads every entry back from the log store at least twice after appending it:
//! the core reads the committed entries it hands to the state machine, and on a leader each
//! replication stream reads the entries it sends to its follower. From the WAL that is a
//! `pread`, a checksum and a decode (allocating every namespace, key and value) per entry and
//! per reader. The tail holds the entries most recently appended (their batches are shared,
//! so a hit costs a pointer copy) and answers any read it fully covers; everything else
//! (a follower far behind, the first reads after a restart) goes to the WAL as before.
//!
//! Invariant: the entries held are a contiguous run of indexes ending at the log's last
//! entry, and every entry not yet written to the WAL is held (only written entries are
//! evicted). [`crate::log_store::LogStore`] keeps it by pushing when an append is submitted
//! (before the flusher writes it: openraft replicates submitted entries), marking what the
//! flusher has written, cutting it before the log is truncated, and clearing it when an
//! append fails.

use std::collections::VecDeque;

use crate::types::Entry;

/// Bounds of the tail: whichever is reached first evicts the oldest entries.
#[derive(Debug, Clone, Copy)]
pub struct TailLimits {
    /// Most entries held.
    pub max_entries: usize,
    /// Most encoded bytes held (the size of the entries' WAL records).
    pub max_bytes: usize,
}

impl Default for TailLimits {
    /// 1,024 entries or 4 MiB: about a quarter of a second of log at full write speed on the
    /// benchmark machine, enough for the state machine and for every follower that keeps up.
    /// (32 MiB measured worse: p99 10.1 vs 8.0 ms and 3 % fewer stores/s, because values
    /// then stay allocated for seconds instead of being reused while hot.)
    fn default() -> Self {
        TailLimits {
            max_entries: 1024,
            max_bytes: 4 * 1024 * 1024,
        }
    }
}

/// The newest entries of the log (see the module docs).
#[derive(Debug)]
pub struct LogTail {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
    limits: TailLimits,
    /// The newest index the WAL holds durably; entries after it are never evicted.
    written_through: Option<u64>,
}

fn index_of(entry: &Entry) -> u64 {
    entry.log_id.index
}

impl LogTail {
    /// An empty tail with `limits`.
    pub fn new(limits: TailLimits) -> Self {
        LogTail {
            entries: VecDeque::new(),
            bytes: 0,
            written_through: None,
            limits,
        }
    }

    /// Adds `entry` (whose WAL record is `bytes` long) after the newest one. An entry that
    /// does not continue the run held replaces it, so the run stays contiguous.
    pub fn push(&mut self, entry: Entry, bytes: usize) {
        if let Some((last, _)) = self.entries.back() {
            if index_of(last).checked_add(1) != Some(index_of(&entry)) {
                self.clear();
            }
        }
        self.bytes += bytes;
        self.entries.push_back((entry, bytes));
        self.evict();
    }

    /// Drops the oldest entries over the limits, as far as they are written.
    fn evict(&mut self) {
        while self.entries.len() > self.limits.max_entries || self.bytes > self.limits.max_bytes {
            match self.entries.front() {
                Some((oldest, _)) if Some(index_of(oldest)) <= self.written_through => {}
                _ => break,
            }
            if let Some((_, b)) = self.entries.pop_front() {
                self.bytes -= b;
            }
        }
    }

    /// Records that the WAL holds every entry through `index` durably (they may be evicted).
    pub fn written_through(&mut self, index: u64) {
        self.written_through = self.written_through.max(Some(index));
        self.evict();
    }

    /// The index of the oldest entry held.
    pub fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| index_of(e))
    }

    /// The entries with `start <= index < end`, when the tail holds all of them that exist
    /// (the run covers `start` and the log ends inside `end` or at the run's end); `None`
    /// when the WAL must be read.
    pub fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let first = index_of(&self.entries.front()?.0);
        let last = index_of(&self.entries.back()?.0);
        if start < first || start > last {
            return None;
        }
        let end = end.min(last + 1);
        if end <= start {
            return Some(Vec::new());
        }
        let from = (start - first) as usize;
        let to = (end - first) as usize;
        Some(
            self.entries
                .range(from..to)
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }

    /// Forgets every entry with `index >= from` (before the log is truncated there). The
    /// WAL then holds nothing from `from` on, so entries appended there again are unwritten
    /// until the log writer says otherwise and are not evicted before.
    pub fn truncate_from(&mut self, from: u64) {
        self.written_through = self.written_through.min(from.checked_sub(1));
        while let Some((last, b)) = self.entries.back() {
            if index_of(last) < from {
                break;
            }
            self.bytes -= *b;
            self.entries.pop_back();
        }
    }

    /// Forgets every entry with `index <= through` (after the log is purged there).
    pub fn purge_through(&mut self, through: u64) {
        while let Some((first, b)) = self.entries.front() {
            if index_of(first) > through {
                break;
            }
            self.bytes -= *b;
            self.entries.pop_front();
        }
    }

    /// Forgets everything (after a failed append: the log's end is then unknown).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use openraft::{EntryPayload, LogId};

    use super::*;

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(crate::types::leader_in(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(index_of).collect()
    }

    /// A tail of `range`, all of it written.
    fn tail_of(range: std::ops::RangeInclusive<u64>, limits: TailLimits) -> LogTail {
        let mut c = LogTail::new(limits);
        c.written_through(*range.end());
        for i in range {
            c.push(entry(i), 10);
        }
        c
    }

    #[test]
    fn entries_not_yet_written_are_kept_over_the_limits_until_they_are() {
        let mut c = LogTail::new(TailLimits {
            max_entries: 3,
            max_bytes: usize::MAX,
        });
        c.written_through(2);
        for i in 1..=8 {
            c.push(entry(i), 10);
        }
        // 1 and 2 were written and evicted; 3..=8 wait for the flusher.
        assert_eq!(c.first_index(), Some(3));
        assert_eq!(indexes(&c.get(3, 9).unwrap()), vec![3, 4, 5, 6, 7, 8]);
        c.written_through(6);
        assert_eq!(c.first_index(), Some(6));
        c.written_through(8);
        assert_eq!(indexes(&c.get(6, 9).unwrap()), vec![6, 7, 8]);
    }

    #[test]
    fn entries_appended_again_after_a_truncation_are_kept_until_written() {
        let mut c = LogTail::new(TailLimits {
            max_entries: 3,
            max_bytes: usize::MAX,
        });
        c.written_through(10);
        for i in 1..=10 {
            c.push(entry(i), 10);
        }
        c.truncate_from(6);
        // 6..=10 again, not yet written: none may be evicted, 5 (written) may.
        for i in 6..=10 {
            c.push(entry(i), 10);
        }
        assert_eq!(c.first_index(), Some(6));
        assert_eq!(indexes(&c.get(6, 11).unwrap()), vec![6, 7, 8, 9, 10]);
        c.written_through(10);
        assert_eq!(c.first_index(), Some(8));
        // A truncation of everything leaves nothing counted as written.
        c.truncate_from(0);
        c.push(entry(0), 10);
        c.push(entry(1), 10);
        c.push(entry(2), 10);
        c.push(entry(3), 10);
        assert_eq!(c.first_index(), Some(0));
    }

    #[test]
    fn reads_inside_the_run_are_answered_and_others_go_to_the_wal() {
        let c = tail_of(5..=9, TailLimits::default());
        assert_eq!(indexes(&c.get(5, 10).unwrap()), vec![5, 6, 7, 8, 9]);
        assert_eq!(indexes(&c.get(7, 9).unwrap()), vec![7, 8]);
        // Past the log's end: what exists, as the WAL would answer.
        assert_eq!(indexes(&c.get(8, u64::MAX).unwrap()), vec![8, 9]);
        assert_eq!(c.get(7, 7).unwrap(), vec![]);
        // Older than the run, or after it: the WAL decides.
        assert!(c.get(4, 8).is_none());
        assert!(c.get(10, 12).is_none());
        assert!(LogTail::new(TailLimits::default()).get(0, 5).is_none());
    }

    #[test]
    fn limits_evict_the_oldest_entries() {
        let by_count = tail_of(
            1..=10,
            TailLimits {
                max_entries: 3,
                max_bytes: usize::MAX,
            },
        );
        assert_eq!(indexes(&by_count.get(8, 11).unwrap()), vec![8, 9, 10]);
        assert!(by_count.get(7, 11).is_none());
        let by_bytes = tail_of(
            1..=10,
            TailLimits {
                max_entries: usize::MAX,
                max_bytes: 45,
            },
        );
        assert_eq!(by_bytes.len(), 4);
        assert!(by_bytes.get(6, 11).is_none());
        assert_eq!(indexes(&by_bytes.get(7, 11).unwrap()), vec![7, 8, 9, 10]);
    }

    #[test]
    fn truncation_purge_and_gaps_keep_the_run_contiguous() {
        let mut c = tail_of(1..=10, TailLimits::default());
        c.truncate_from(8);
        assert_eq!(
            indexes(&c.get(1, 100).unwrap()),
            (1..=7).collect::<Vec<_>>()
        );
        // A new leader's entries continue after the cut.
        c.push(entry(8), 10);
        assert_eq!(indexes(&c.get(6, 100).unwrap()), vec![6, 7, 8]);
        c.purge_through(5);
        assert!(c.get(5, 100).is_none());
        assert_eq!(indexes(&c.get(6, 100).unwrap()), vec![6, 7, 8]);
        // An entry that does not continue the run (after a snapshot install) restarts it.
        c.push(entry(50), 10);
        assert!(c.get(8, 100).is_none());
        assert_eq!(indexes(&c.get(50, 100).unwrap()), vec![50]);
        c.truncate_from(0);
        assert!(c.is_empty());
        c.push(entry(3), 10);
        c.clear();
        assert!(c.is_empty() && c.get(3, 4).is_none());
    }
}
