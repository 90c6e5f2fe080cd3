//! A file system that forgets what was not synced when the power goes: the power-loss test
//! harness.
//!
//! `kill -9` proves nothing about fsync, because the page cache outlives a killed process. A
//! [`Mount`] is a FUSE file system held in this process's memory (see [`model`] for the
//! rule: contents are durable once the file is fsync'd, names once their directory is). The
//! tests put a server's data directory on it, kill the server with SIGKILL, and call
//! [`Mount::cut`]: everything not made durable is dropped (or zeroed, torn, or kept, as a
//! real disk might), as if the machine had lost power. The next server start must find every
//! acknowledged write.
//!
//! It needs `/dev/fuse` and the right to mount (root, as in CI); [`Mount::new`] says so
//! clearly when either is missing. Why our own and not LazyFS: LazyFS is a C++ project that
//! would have to be fetched and built from source on every CI machine, and its fault model
//! (lose what was not fsync'd) is the part we need; this one is ~600 lines, in Rust, and its
//! model is unit-tested here (see docs/design.md).
#![warn(missing_docs)]

mod fs;
pub mod model;
pub mod rng;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use fs::Counters;
pub use model::{CutReport, Rng};

/// A mounted power-cut file system. Unmounted when dropped.
pub struct Mount {
    fs: fs::PowerCutFs,
    session: Option<fuser::BackgroundSession>,
    dir: PathBuf,
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount").field("dir", &self.dir).finish()
    }
}

/// Why a mount failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// `/dev/fuse` is missing: the machine has no FUSE.
    #[error("/dev/fuse is missing: the power-loss tests need FUSE (modprobe fuse, or a machine with it)")]
    NoFuse,
    /// The kernel refused the mount.
    #[error("cannot mount the power-cut file system on {dir}: {source} (the power-loss tests must run as root, with /dev/fuse)")]
    Mount {
        /// The mount point.
        dir: PathBuf,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
}

impl Mount {
    /// Mounts an empty power-cut file system on the existing, empty directory `dir`.
    pub fn new(dir: &Path) -> Result<Mount, MountError> {
        if !Path::new("/dev/fuse").exists() {
            return Err(MountError::NoFuse);
        }
        let fs = fs::PowerCutFs {
            state: Arc::new(Mutex::new(fs::State::default())),
        };
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("powercut".into()),
            fuser::MountOption::Subtype("powercut".into()),
        ];
        config.n_threads = Some(2);
        let session = fuser::Session::new(fs.clone(), dir, &config)
            .and_then(|s| s.spawn())
            .map_err(|source| MountError::Mount {
                dir: dir.to_path_buf(),
                source,
            })?;
        Ok(Mount {
            fs,
            session: Some(session),
            dir: dir.to_path_buf(),
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn state(&self) -> std::sync::MutexGuard<'_, fs::State> {
        self.fs.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The power goes off after `changes` more requests that change the file system or make
    /// something durable (writes, truncations, creations, removals, renames, links, fsyncs):
    /// every later one fails with EIO and changes nothing, as if the machine had stopped right
    /// there, until the next cut ([`Mount::cut`], [`Mount::cut_strict`]) brings the power
    /// back. Reads still work. Counting the requests of a run first
    /// ([`Counters::changes`]) lets a test stop the same run at every one of them in turn.
    pub fn power_off_after(&self, changes: u64) {
        self.state().power_left = Some(changes);
    }

    /// The power cut. Every process that used the file system must have been killed and
    /// reaped first (their handles are closed here: a request still in flight from one of
    /// them fails and changes nothing). What survives of each unsynced change is drawn from
    /// `seed` (see [`model::Outcome`]).
    pub fn cut(&self, seed: u64) -> CutReport {
        let mut state = self.state();
        state.close_all();
        state.power_left = None;
        state.model.cut(&mut Rng::new(seed))
    }

    /// The strictest power cut: nothing that was not synced survives.
    pub fn cut_strict(&self) -> CutReport {
        let mut state = self.state();
        state.close_all();
        state.power_left = None;
        state.model.cut_strict()
    }

    /// What the file system has been asked to do so far.
    pub fn counters(&self) -> Counters {
        self.state().counters
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            if let Err(e) = session.umount_and_join() {
                // Busy: a handle on the file system is still open somewhere. Detach the
                // mount lazily (the kernel finishes once the handles close) rather than
                // leave a dead mount behind ("transport endpoint is not connected").
                if let Err(lazy) = detach(&self.dir) {
                    eprintln!(
                        "unmounting {}: {e}; detaching it failed too: {lazy}",
                        self.dir.display()
                    );
                }
            }
        }
    }
}

/// `umount2(dir, MNT_DETACH)`: a lazy unmount, for a mount that is still busy.
fn detach(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call; umount2 takes
    // no other pointer.
    let rc = unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The mount end to end through the kernel: files written and synced survive a cut,
    /// unsynced ones do not, and a handle opened before the cut is dead after it.
    #[test]
    fn through_the_kernel_unsynced_data_and_names_are_lost_at_a_cut() {
        let tmp = tempfile::tempdir().unwrap();
        let mount = Mount::new(tmp.path()).expect("mount (root and /dev/fuse needed)");
        let root = mount.path();
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::File::open(root).unwrap().sync_all().unwrap();
        let mut kept = std::fs::File::create(root.join("d/kept")).unwrap();
        kept.write_all(b"durable").unwrap();
        kept.sync_data().unwrap();
        std::fs::File::open(root.join("d"))
            .unwrap()
            .sync_all()
            .unwrap();
        kept.write_all(b" and not").unwrap();
        let mut lost = std::fs::File::create(root.join("d/lost")).unwrap();
        lost.write_all(b"never synced name").unwrap();
        lost.sync_all().unwrap();
        let counters = mount.counters();
        assert!(
            counters.file_syncs >= 2 && counters.dir_syncs >= 2,
            "{counters:?}"
        );

        let report = mount.cut_strict();
        assert!(report.inodes_lost >= 1, "{report:?}");
        assert_eq!(std::fs::read(root.join("d/kept")).unwrap(), b"durable");
        assert!(!root.join("d/lost").exists());
        // The old handle is dead.
        assert!(kept.write_all(b"late").is_err());
        assert_eq!(std::fs::read(root.join("d/kept")).unwrap(), b"durable");
        // Handles closed first: a busy mount could not be unmounted at once.
        drop(kept);
        drop(lost);
        drop(mount);
        assert!(
            !is_mounted(tmp.path()),
            "the mount is gone once the Mount is dropped"
        );
    }

    /// Once the power is off every change fails and changes nothing; a cut brings it back.
    #[test]
    fn after_the_power_goes_off_nothing_changes_until_a_cut() {
        let tmp = tempfile::tempdir().unwrap();
        let mount = Mount::new(tmp.path()).expect("mount (root and /dev/fuse needed)");
        let root = mount.path();
        let before = mount.counters().changes;
        mount.power_off_after(2);
        let mut file = std::fs::File::create(root.join("f")).unwrap(); // 1: create
        file.write_all(b"written").unwrap(); // 2: write
        assert!(file.write_all(b" refused").is_err(), "the power is off");
        assert!(file.sync_all().is_err());
        assert!(std::fs::File::create(root.join("g")).is_err());
        assert_eq!(std::fs::read(root.join("f")).unwrap(), b"written");
        let counters = mount.counters();
        assert_eq!(counters.changes - before, 2, "{counters:?}");
        assert!(counters.unpowered >= 3, "{counters:?}");
        drop(file);
        let report = mount.cut_strict();
        assert!(!root.join("f").exists(), "never synced: {report:?}");
        std::fs::write(root.join("h"), b"the power is back").unwrap();
        drop(mount);
    }

    /// A mount dropped while a handle on it is still open is detached, not left behind.
    #[test]
    fn a_busy_mount_is_detached_when_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let mount = Mount::new(tmp.path()).expect("mount (root and /dev/fuse needed)");
        let held = std::fs::File::create(mount.path().join("held")).unwrap();
        drop(mount);
        assert!(!is_mounted(tmp.path()), "detached although busy");
        drop(held);
    }

    /// Whether `dir` is a mount point now (`/proc/self/mounts`).
    fn is_mounted(dir: &Path) -> bool {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let dir = dir.to_str().unwrap();
        mounts.lines().any(|l| l.split(' ').nth(1) == Some(dir))
    }
}
