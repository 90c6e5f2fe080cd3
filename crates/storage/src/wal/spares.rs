//! Spare segment files: purged segments kept for reuse as new segments.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::version_of;
use super::{MAX_SPARES, SPARE_SUFFIX};

/// Whether the file at `path` is a segment that may be recycled (version 2 or 3).
pub(super) fn recyclable(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    File::open(path)
        .and_then(|f| f.read_exact_at(&mut magic, 0))
        .is_ok()
        && matches!(version_of(&magic), Some(2 | 3))
}

/// Spare segment files, shared by the log (which takes them for new segments) and the code
/// that purges (which gives them back), so that neither renames under the other's lock.
#[derive(Debug, Clone, Default)]
pub struct Spares(std::sync::Arc<std::sync::Mutex<Vec<PathBuf>>>);

impl Spares {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn take(&self) -> Option<PathBuf> {
        self.lock().pop()
    }

    /// Keeps the purged segment at `path` as a spare (renamed) when fewer than
    /// [`MAX_SPARES`] are kept and it is a version 2 segment, else deletes it.
    pub fn recycle_or_remove(&self, path: &Path) -> std::io::Result<()> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if recyclable(path) && self.lock().len() < MAX_SPARES {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let spare =
                path.with_file_name(format!("spare-{}-{n}{SPARE_SUFFIX}", std::process::id()));
            fs::rename(path, &spare)?;
            self.lock().push(spare);
            return Ok(());
        }
        fs::remove_file(path)
    }
}
