//! Spare segment files: purged segments kept for reuse as new segments, and zero-filled ones
//! prepared ahead when none is kept.
//!
//! A new segment that is a spare is written over blocks the file already has, so its
//! `fdatasync` writes the data alone; a segment created empty grows with every append, and
//! each of its `fdatasync`s also writes the inode (its size). On this machine's ext4 that is
//! 183–205 µs against 104–109 µs for 40 KiB appends (`docs/design.md`, "After the port:
//! where a store's CPU goes", the zero-filled spares). Purges give spares back once snapshots run; before that (a new data directory,
//! or a log growing faster than it is purged) a spare is prepared on its own thread: once the
//! last segment is half full and no spare is kept, a file of the segment size is written
//! with the version 3 magic and zeros, fsync'd, and renamed to a spare name, and the rename
//! is made durable. This is what etcd's WAL does with its file pipeline. The zeros go out
//! in small blocks, each written back before a pause, so the disk stays free for the log's
//! own `fdatasync`s (written at once, 64 MiB of zeros stalled them: a store p99 of 50 ms);
//! and only while the file system has four times the segment size free.
//!
//! A spare's zeros are never taken for records: a zero length is below the smallest record,
//! and any bytes after the last record of the last segment are a torn tail (see the module
//! docs of [`super`]). A preparation cut short by a crash leaves a `.wal-spare-tmp` file,
//! removed when the log is opened next.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::format::{version_of, MAGIC_V3};
use super::{MAX_SPARES, SPARE_SUFFIX};
use crate::data_dir::sync_dir;

/// Suffix of a spare being prepared (removed at open: a crash cut its preparation short).
pub(super) const PREPARING_SUFFIX: &str = ".wal-spare-tmp";

/// Zeros are written in blocks of this many bytes.
const ZERO_BLOCK: usize = 256 * 1024;

/// A spare is prepared only while the file system has this many times its size free.
const SPARE_FREE_FACTOR: u64 = 4;

/// The pause after each block of zeros.
const ZERO_PAUSE: std::time::Duration = std::time::Duration::from_millis(4);

/// Numbers spare file names within this process.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Whether the file at `path` is a segment that may be recycled (version 2 or 3).
pub(super) fn recyclable(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    File::open(path)
        .and_then(|f| f.read_exact_at(&mut magic, 0))
        .is_ok()
        && matches!(version_of(&magic), Some(2 | 3))
}

/// A new spare file name in `dir`.
fn spare_path(dir: &Path) -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("spare-{}-{n}{SPARE_SUFFIX}", std::process::id()))
}

#[derive(Debug, Default)]
struct Shared {
    paths: Mutex<Vec<PathBuf>>,
    /// A preparation thread runs.
    preparing: AtomicBool,
}

/// Spare segment files, shared by the log (which takes them for new segments), the code
/// that purges (which gives them back) and the thread that prepares one, so that none of
/// them renames under another's lock.
#[derive(Debug, Clone, Default)]
pub struct Spares(Arc<Shared>);

impl Spares {
    pub(super) fn lock(&self) -> MutexGuard<'_, Vec<PathBuf>> {
        self.0.paths.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn take(&self) -> Option<PathBuf> {
        self.lock().pop()
    }

    /// Keeps the purged segment at `path` as a spare (renamed) when fewer than
    /// [`MAX_SPARES`] are kept and it is a version 2 or 3 segment, else deletes it.
    pub fn recycle_or_remove(&self, path: &Path) -> std::io::Result<()> {
        if recyclable(path) && self.lock().len() < MAX_SPARES {
            let spare = spare_path(path.parent().unwrap_or(Path::new(".")));
            fs::rename(path, &spare)?;
            self.lock().push(spare);
            return Ok(());
        }
        fs::remove_file(path)
    }

    /// Starts preparing a spare of `bytes` in `dir` on its own thread, unless a spare is
    /// kept or one is being prepared. A failure (a full disk, say) is logged and leaves the
    /// log as it was: the next segment is then created empty.
    pub(super) fn prepare_if_none(&self, dir: &Path, bytes: u64) {
        if !self.lock().is_empty() || !room_for_spare(dir, bytes) {
            return;
        }
        if self.0.preparing.swap(true, Ordering::SeqCst) {
            return;
        }
        let spares = self.clone();
        let dir = dir.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("wal-spare".into())
            .spawn(move || {
                if let Err(e) = spares.prepare(&dir, bytes) {
                    tracing::warn!(
                        error = %e,
                        dir = %dir.display(),
                        "could not prepare a spare log segment; the next one is created empty"
                    );
                }
                spares.0.preparing.store(false, Ordering::SeqCst);
            });
        if spawned.is_err() {
            self.0.preparing.store(false, Ordering::SeqCst);
        }
    }

    /// Prepares a spare on the calling thread (tests whose every step must come in order).
    #[cfg(test)]
    pub(crate) fn prepare_now(&self, dir: &Path, bytes: u64) -> Result<(), crate::StorageError> {
        self.prepare(dir, bytes)
    }

    /// Writes a zero-filled spare of `bytes` in `dir`, durably, and keeps it.
    fn prepare(&self, dir: &Path, bytes: u64) -> Result<(), crate::StorageError> {
        let spare = spare_path(dir);
        let tmp = spare.with_extension(PREPARING_SUFFIX.trim_start_matches('.'));
        let written = write_zeroed(&tmp, bytes).and_then(|_| fs::rename(&tmp, &spare));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(crate::StorageError::io(
                format!("preparing {}", spare.display()),
                e,
            ));
        }
        sync_dir(dir)?;
        let mut paths = self.lock();
        if paths.len() < MAX_SPARES {
            paths.push(spare);
            return Ok(());
        }
        drop(paths);
        fs::remove_file(&spare)
            .map_err(|e| crate::StorageError::io(format!("removing {}", spare.display()), e))
    }
}

/// Whether `dir`'s file system has room for a spare of `bytes` with [`SPARE_FREE_FACTOR`] − 1
/// times as much left after it (a spare takes early the space the next segment would take as
/// it fills; on a nearly full disk that space is better left to the log itself, and to the
/// node's `disk_reserve` check, which refuses stores below it).
pub(super) fn room_for_spare(dir: &Path, bytes: u64) -> bool {
    crate::data_dir::free_bytes(dir)
        .is_some_and(|free| free >= bytes.saturating_mul(SPARE_FREE_FACTOR))
}

/// Creates `path` holding the version 3 magic and zeros up to `bytes`, fsync'd. The zeros go
/// to the disk a [`ZERO_BLOCK`] at a time, each written back and waited for before a pause
/// of [`ZERO_PAUSE`], so that the log's own `fdatasync`s never queue behind more than one
/// block (64 MiB written at once and flushed at the end stalled them for tens of ms).
fn write_zeroed(path: &Path, bytes: u64) -> std::io::Result<()> {
    let file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all_at(MAGIC_V3, 0)?;
    let zeros = vec![0u8; ZERO_BLOCK];
    let mut at = MAGIC_V3.len() as u64;
    while at < bytes {
        let n = (bytes - at).min(ZERO_BLOCK as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        crate::snapshot::write_back(&file, at, n as u64, true);
        at += n as u64;
        std::thread::sleep(ZERO_PAUSE);
    }
    file.sync_all()
}
