//! Free space of the data directory's file system, checked before a write is proposed.
//!
//! A node whose disk fills up mid-write would fail an append, and openraft stops on any
//! storage error. So writes are refused up front (507 `disk_full`) while less than
//! `disk_reserve` bytes are free, and accepted again as soon as space is back, without a
//! restart. The reserve leaves room for what must still be written: entries already in
//! flight, deletions (accepted while the disk is full, since they let space be reclaimed),
//! snapshots and log compaction.
//!
//! `statvfs` costs a system call, so the answer is cached for [`CHECK_EVERY`].

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a free-space reading is trusted.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// The free-space check of one data directory.
#[derive(Debug)]
pub struct DiskSpace {
    dir: PathBuf,
    reserve: u64,
    last: Mutex<Option<(Instant, u64)>>,
}

impl DiskSpace {
    /// A check that `dir`'s file system keeps `reserve` bytes free (0: never refuses).
    pub fn new(dir: &Path, reserve: u64) -> Self {
        DiskSpace {
            dir: dir.to_path_buf(),
            reserve,
            last: Mutex::new(None),
        }
    }

    /// `Err(free bytes)` when a write must be refused now.
    pub fn check(&self) -> Result<(), u64> {
        if self.reserve == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let free = match *last {
            Some((at, free)) if now.duration_since(at) < CHECK_EVERY => free,
            _ => {
                // An unreadable file system is not refused here: the write itself will tell.
                let free = statemanager_storage::free_bytes(&self.dir).unwrap_or(u64::MAX);
                *last = Some((now, free));
                free
            }
        };
        if free < self.reserve {
            Err(free)
        } else {
            Ok(())
        }
    }

    /// Bytes free on the file system now (for status pages; `None` if unreadable). Reads
    /// the cached value when it is fresh, like [`DiskSpace::check`].
    pub fn free(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some((at, free)) if now.duration_since(at) < CHECK_EVERY && free != u64::MAX => {
                Some(free)
            }
            _ => {
                let free = statemanager_storage::free_bytes(&self.dir)?;
                *last = Some((now, free));
                Some(free)
            }
        }
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
        assert!(DiskSpace::new(tmp.path(), 1).check().is_ok());
        assert_eq!(
            DiskSpace::new(tmp.path(), u64::MAX).check().map_err(|_| ()),
            Err(())
        );
        assert!(DiskSpace::new(tmp.path(), 0).check().is_ok());
    }
}
