//! The data directory: its layout, format marker and exclusive lock.
//!
//! ```text
//! data_dir/
//!   LOCK        held (flock) by the running process; holds its pid
//!   RESTORING   only while `statemanager restore` writes the directory (see
//!               DataDir::open_for_restore); a directory that has it is not served
//!   FORMAT      "statemanager-data 1"
//!   log/        the Raft log (*.wal segments) and meta/ values
//!   snapshots/  current.snap and its temporary siblings
//! ```

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::StorageError;

const FORMAT: &str = "statemanager-data 1";

/// The lock file's name.
const LOCK: &str = "LOCK";

/// The marker a restore writes, durably, before anything else and removes, durably, after
/// everything else: while it is there the directory is a restore's, not a node's.
pub const RESTORING: &str = "RESTORING";

/// The marker's temporary sibling ([`write_atomic`]).
const RESTORING_TMP: &str = "RESTORING.tmp";

/// What a restore may find in a directory it is given besides an unfinished restore's files:
/// the lock file, the marker and its temporary sibling.
const RESTORE_OWN: [&str; 3] = [LOCK, RESTORING, RESTORING_TMP];

/// An opened, locked data directory. The lock is released when this value is dropped (or the
/// process dies, which is what makes `kill -9` and restart work).
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates (if needed), locks and checks the data directory at `root`.
    ///
    /// Fails at once with [`StorageError::Locked`] if another process holds it.
    /// Fails with [`StorageError::RestoreUnfinished`] if a restore into it did not finish.
    pub fn open(root: &Path) -> Result<Self, StorageError> {
        let dir = Self::lock(root)?;
        if root.join(RESTORING).exists() {
            return Err(StorageError::RestoreUnfinished {
                dir: root.to_path_buf(),
            });
        }
        dir.prepare()?;
        Ok(dir)
    }

    /// Opens `root` for `statemanager restore`: it must be absent, empty (a lock file aside)
    /// or hold an unfinished restore, which is cleared. Before anything is written the
    /// directory gets its `RESTORING` marker, durably, and until [`DataDir::finish_restore`]
    /// removes it [`DataDir::open`] refuses the directory. So a restore cut short by a crash
    /// or a power cut leaves either nothing a node would serve, or a directory that says so;
    /// running the restore again starts it over.
    ///
    /// A directory holding anything else is refused before it is touched.
    pub fn open_for_restore(root: &Path) -> Result<Self, StorageError> {
        let not_empty = || {
            StorageError::io(
                format!(
                    "{} is not empty: restore only seeds a fresh data directory",
                    root.display()
                ),
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            )
        };
        // Looked at before the lock too, so that a wrong path gets no lock file.
        if restorable_contents(root)?.is_none() {
            return Err(not_empty());
        }
        let dir = Self::lock(root)?;
        let others = restorable_contents(root)?.ok_or_else(not_empty)?;
        let marker = root.join(RESTORING);
        if others.is_empty() {
            write_atomic(
                &marker,
                b"statemanager restore is writing this data directory; it is not served until it finishes\n",
            )?;
        } else {
            let leftover = root.join(RESTORING_TMP);
            for path in others.iter().chain(leftover.exists().then_some(&leftover)) {
                let removed = if path.is_dir() {
                    fs::remove_dir_all(path)
                } else {
                    fs::remove_file(path)
                };
                removed.map_err(|e| StorageError::io(format!("removing {}", path.display()), e))?;
            }
            // The removals and the marker's name (left by the restore cut short) together.
            sync_dir(root)?;
        }
        dir.prepare()?;
        Ok(dir)
    }

    /// Ends a restore ([`DataDir::open_for_restore`]): removes the marker, durably. Call it
    /// only once everything restored is durable.
    pub fn finish_restore(&self) -> Result<(), StorageError> {
        let marker = self.root.join(RESTORING);
        fs::remove_file(&marker)
            .map_err(|e| StorageError::io(format!("removing {}", marker.display()), e))?;
        sync_dir(&self.root)
    }

    /// Creates (if needed) and locks `root`, and writes this process's pid into the lock.
    fn lock(root: &Path) -> Result<Self, StorageError> {
        create_dir_durably(root)?;
        let lock_path = root.join(LOCK);
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| StorageError::io(format!("opening {}", lock_path.display()), e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = lock.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(StorageError::Locked {
                    dir: root.to_path_buf(),
                    holder: if pid.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {pid})")
                    },
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(StorageError::io(
                    format!("locking {}", lock_path.display()),
                    e,
                ))
            }
        }
        let write_pid = |lock: &mut File| -> std::io::Result<()> {
            lock.set_len(0)?;
            lock.seek(SeekFrom::Start(0))?;
            writeln!(lock, "{}", std::process::id())
        };
        write_pid(&mut lock)
            .map_err(|e| StorageError::io(format!("writing {}", lock_path.display()), e))?;
        Ok(DataDir {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    /// Checks the format marker (writing it into a new directory) and creates the
    /// subdirectories.
    fn prepare(&self) -> Result<(), StorageError> {
        let root = &self.root;
        let format_path = root.join("FORMAT");
        match fs::read_to_string(&format_path) {
            Ok(found) if found.trim() == FORMAT => {}
            Ok(found) => {
                return Err(StorageError::Format {
                    dir: root.to_path_buf(),
                    found: found.trim().to_string(),
                    expected: FORMAT.to_string(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_atomic(&format_path, format!("{FORMAT}\n").as_bytes())?;
            }
            Err(e) => {
                return Err(StorageError::io(
                    format!("reading {}", format_path.display()),
                    e,
                ))
            }
        }
        for sub in ["log", "snapshots"] {
            create_dir_durably(&root.join(sub))?;
        }
        Ok(())
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the log engine lives.
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }

    /// Where snapshot files live.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }
}

/// What a restore would have to clear in `root`: `Some` of nothing when it is absent or holds
/// only a restore's own files, `Some` of the other entries when it holds an unfinished
/// restore (its marker is there), `None` when it holds anything else (it is not a restore's).
fn restorable_contents(root: &Path) -> Result<Option<Vec<PathBuf>>, StorageError> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(Vec::new())),
        Err(e) => return Err(StorageError::io(format!("reading {}", root.display()), e)),
    };
    let mut others = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| StorageError::io(format!("reading {}", root.display()), e))?;
        if !RESTORE_OWN.iter().any(|own| entry.file_name() == *own) {
            others.push(entry.path());
        }
    }
    Ok((others.is_empty() || root.join(RESTORING).exists()).then_some(others))
}

/// Writes `bytes` to `path` atomically: a temporary sibling, fsync, rename, fsync of the
/// directory. A crash leaves either the old file or the new one, never a torn one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = path.with_extension("tmp");
    let io = |what: &str, e| StorageError::io(format!("{what} {}", tmp.display()), e);
    let mut file = File::create(&tmp).map_err(|e| io("creating", e))?;
    file.write_all(bytes).map_err(|e| io("writing", e))?;
    file.sync_all().map_err(|e| io("syncing", e))?;
    fs::rename(&tmp, path).map_err(|e| io("renaming", e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Creates `dir` and any missing ancestors, each made durable: a new directory's name is
/// durable only once its parent is fsync'd (POSIX), and without that a power cut after any
/// number of acknowledged writes inside it could leave no trace of the directory (a first
/// start's `log/` vanished with every store in it). Parents are synced only for what this call
/// created.
///
/// A directory that exists is synced with its parent instead: a process killed before its
/// directory fsyncs (`kill -9`) leaves names that the page cache shows but a power cut may
/// still drop, and this start must not build on them unsynced.
pub(crate) fn create_dir_durably(dir: &Path) -> Result<(), StorageError> {
    if dir.is_dir() {
        sync_dir(dir)?;
        return match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
            _ => Ok(()),
        };
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durably(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Created meanwhile (by another caller): its creator syncs the parent.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(StorageError::io(format!("creating {}", dir.display()), e)),
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    sync_dir(parent)
}

/// fsyncs a directory so that a rename inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    if crate::failpoints::skip_dir_sync() {
        return Ok(());
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(format!("syncing directory {}", dir.display()), e))
}

/// Bytes available to this process on the file system that holds `path` (`statvfs`), or
/// `None` when it cannot be read.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is a valid C string.
    unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut stat) != 0 {
            return None;
        }
        Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_fails_with_clear_message() {
        let tmp = tempfile::tempdir().unwrap();
        let first = DataDir::open(tmp.path()).unwrap();
        let err = DataDir::open(tmp.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("in use by another statemanager"), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        DataDir::open(tmp.path()).unwrap();
    }

    #[test]
    fn foreign_format_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("FORMAT"), "statemanager-data 99\n").unwrap();
        let err = DataDir::open(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("statemanager-data 99"));
    }

    /// FORMAT is replaced atomically and fsync'd, so no power cut leaves it damaged: missing,
    /// it is written anew (a first start cut short before it was durable); damaged, start-up
    /// stops naming what it found.
    #[test]
    fn format_missing_is_written_and_damaged_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        drop(DataDir::open(tmp.path()).unwrap());
        let format = tmp.path().join("FORMAT");
        fs::remove_file(&format).unwrap();
        drop(DataDir::open(tmp.path()).unwrap());
        assert_eq!(fs::read_to_string(&format).unwrap().trim(), FORMAT);
        for damaged in [&b""[..], &[0u8; 20][..], &b"statemanager-da"[..]] {
            fs::write(&format, damaged).unwrap();
            let err = DataDir::open(tmp.path()).unwrap_err().to_string();
            assert!(err.contains("FORMAT") || err.contains("format"), "{err}");
        }
    }

    #[test]
    fn nested_new_directories_are_created() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a/b/data");
        let dir = DataDir::open(&root).unwrap();
        assert!(dir.log_dir().is_dir() && dir.snapshot_dir().is_dir());
    }

    /// A restore's directory: refused by `open` until the restore finishes; a foreign
    /// directory is refused untouched; an unfinished restore's files are cleared.
    #[test]
    fn a_restore_owns_its_directory_until_it_finishes() {
        let tmp = tempfile::tempdir().unwrap();
        let foreign = tmp.path().join("home");
        fs::create_dir(&foreign).unwrap();
        fs::write(foreign.join("notes.txt"), "mine").unwrap();
        let err = DataDir::open_for_restore(&foreign).unwrap_err().to_string();
        assert!(err.contains("not empty"), "{err}");
        assert!(
            !foreign.join(LOCK).exists(),
            "a lock file in a foreign directory"
        );

        let root = tmp.path().join("data");
        let dir = DataDir::open_for_restore(&root).unwrap();
        assert!(root.join(RESTORING).is_file() && dir.log_dir().is_dir());
        fs::write(dir.log_dir().join("written.wal"), "half a restore").unwrap();
        drop(dir);
        let err = DataDir::open(&root).unwrap_err();
        assert!(
            matches!(err, StorageError::RestoreUnfinished { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("statemanager restore"), "{err}");

        // Run again: it starts over (the marker's leftover sibling goes too).
        fs::write(root.join(RESTORING_TMP), "").unwrap();
        let dir = DataDir::open_for_restore(&root).unwrap();
        assert!(!dir.log_dir().join("written.wal").exists());
        assert!(!root.join(RESTORING_TMP).exists());
        dir.finish_restore().unwrap();
        drop(dir);
        assert!(!root.join(RESTORING).exists());
        DataDir::open(&root).unwrap();
        // A finished restore's directory is a node's: a second restore refuses it.
        let err = DataDir::open_for_restore(&root).unwrap_err().to_string();
        assert!(err.contains("not empty"), "{err}");
    }

    /// A directory holding only a lock file (a restore cut before its marker) takes a restore.
    #[test]
    fn a_lock_file_alone_does_not_stop_a_restore() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(LOCK), "").unwrap();
        let dir = DataDir::open_for_restore(tmp.path()).unwrap();
        dir.finish_restore().unwrap();
    }
}
