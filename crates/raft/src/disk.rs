//! Free space of the data directory's file system, checked before a write is proposed.
//!
//! A node whose disk fills up mid-write would fail an append, and openraft stops on any
//! storage error. So writes are refused up front (507 `disk_full`) while less than
//! `disk_reserve` bytes are free, and accepted again as soon as space is back, without a
//! restart. The reserve leaves room for what must still be written: entries already in
//! flight, deletions (accepted while the disk is full, since they let space be reclaimed),
//! snapshots and log compaction.
//!
//! `statvfs` costs a system call, so a reading is trusted for [`CHECK_EVERY`]; meanwhile the
//! bytes of every write admitted since the reading count as used. Without that, a writer
//! fast enough to store more than the free space within one reading's life (large items on a
//! small disk: 24 MB in under 100 ms was measured) filled the disk past the reserve, and the
//! append that found it full stopped the node.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a free-space reading is trusted.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// One `statvfs` reading and what was admitted since.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    /// Free bytes the file system reported (`u64::MAX` when it could not be read).
    free: u64,
    /// Bytes of the writes admitted since.
    admitted: u64,
}

impl Reading {
    /// The free bytes left once the writes admitted since the reading are written.
    fn left(&self) -> u64 {
        self.free.saturating_sub(self.admitted)
    }
}

/// The free-space check of one data directory.
#[derive(Debug)]
pub struct DiskSpace {
    dir: PathBuf,
    reserve: u64,
    check_every: Duration,
    last: Mutex<Option<Reading>>,
}

impl DiskSpace {
    /// A check that `dir`'s file system keeps `reserve` bytes free (0: never refuses).
    pub fn new(dir: &Path, reserve: u64) -> Self {
        Self::trusting_readings_for(dir, reserve, CHECK_EVERY)
    }

    fn trusting_readings_for(dir: &Path, reserve: u64, check_every: Duration) -> Self {
        DiskSpace {
            dir: dir.to_path_buf(),
            reserve,
            check_every,
            last: Mutex::new(None),
        }
    }

    /// The current reading, taken anew when the last one is older than `check_every`.
    fn reading<'a>(&self, last: &'a mut Option<Reading>) -> &'a mut Reading {
        let now = Instant::now();
        if last.is_some_and(|r| now.duration_since(r.at) >= self.check_every) {
            *last = None;
        }
        last.get_or_insert_with(|| Reading {
            at: now,
            // An unreadable file system is not refused here: the write itself will tell.
            free: statemanager_storage::free_bytes(&self.dir).unwrap_or(u64::MAX),
            admitted: 0,
        })
    }

    /// Admits a write of about `bytes`, or refuses it with `Err(free bytes)` (as estimated:
    /// the last reading less what was admitted since) when fewer than the reserve are left.
    pub fn admit(&self, bytes: u64) -> Result<(), u64> {
        if self.reserve == 0 {
            return Ok(());
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let reading = self.reading(&mut last);
        let left = reading.left();
        if left < self.reserve {
            return Err(left);
        }
        reading.admitted = reading.admitted.saturating_add(bytes);
        Ok(())
    }

    /// Bytes free on the file system now (for status pages; `None` if unreadable). Reads
    /// the cached reading when it is fresh, like [`DiskSpace::admit`], without what was
    /// admitted since.
    pub fn free(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let free = self.reading(&mut last).free;
        (free != u64::MAX).then_some(free)
    }

    /// The reserve, in bytes.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// The directory watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_reads_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskSpace::new(dir.path(), 0);
        assert!(disk.free().expect("statvfs of a temp dir") > 0);
        let missing = DiskSpace::new(&dir.path().join("missing"), 0);
        assert_eq!(missing.free(), None);
    }

    #[test]
    fn reads_real_free_space() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(DiskSpace::new(tmp.path(), 1).admit(0).is_ok());
        assert_eq!(
            DiskSpace::new(tmp.path(), u64::MAX)
                .admit(0)
                .map_err(|_| ()),
            Err(())
        );
        assert!(DiskSpace::new(tmp.path(), 0).admit(u64::MAX).is_ok());
    }

    /// Within one reading's life, admitted writes count as used: the writes that would eat
    /// into the reserve are refused before the next reading shows them.
    #[test]
    fn writes_admitted_since_the_reading_count_as_used() {
        let tmp = tempfile::tempdir().unwrap();
        let free = DiskSpace::new(tmp.path(), 0).free().expect("statvfs");
        // A reserve of half the free space; readings trusted for an hour.
        let disk =
            DiskSpace::trusting_readings_for(tmp.path(), free / 2, Duration::from_secs(3600));
        let quarter = free / 4;
        assert!(disk.admit(quarter).is_ok());
        assert!(disk.admit(quarter).is_ok());
        // Half admitted: about half is left, which is still the reserve. As with a reading, a
        // write is judged by what is left before it, so this one is admitted too.
        assert!(disk.admit(quarter).is_ok());
        // Three quarters admitted: fewer than the reserve are left now.
        let refused = disk.admit(1).expect_err("the reserve is reached");
        assert!(refused < free / 2, "{refused} left of {free}");
        // The status page still shows what the file system said.
        assert!(disk.free().is_some_and(|f| f > free / 2));
    }
}
