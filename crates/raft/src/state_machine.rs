//! The state machine: [`State`] in memory, persisted by snapshot files.
//!
//! Why in memory: the store is bounded by `max_persistent_data_items` (1024 by default) of at
//! most `max_persistent_data_item_size` each, so the whole state fits comfortably in RAM, and
//! reads then cost a hash lookup. Durability comes from the Raft log (every entry is fsync'd
//! before it is acknowledged) plus snapshots: on restart the last snapshot is loaded and
//! openraft re-applies the committed log after it. See `docs/design.md` for the numbers.
//!
//! Snapshot file: record 0 is a [`SnapshotHeader`]; every further record is one item
//! `(ItemId, Item)`. Files are written and read as streams, never held whole in memory.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures_util::StreamExt;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use statemanager_core::{Growth, Item, ItemId, State, Timestamp};
use statemanager_storage::{SnapshotReader, SnapshotWriter, StorageError};

use crate::types::{
    decode, encode, BatchResult, Entry, LogId, SnapshotMeta, StoredMembership, TypeConfig,
};

/// A snapshot as openraft hands it around: its metadata and the open file.
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, tokio::fs::File>;

const CURRENT: &str = "current.snap";
const SNAPSHOT_FORMAT: u32 = 1;

/// The first record of a snapshot file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// Format version of the records that follow.
    pub format: u32,
    /// Last log entry included.
    pub last_log_id: Option<LogId>,
    /// Membership as of that entry.
    pub membership: StoredMembership,
    /// openraft's snapshot id.
    pub snapshot_id: String,
    /// The state's time high-water mark.
    pub high_water: Timestamp,
    /// Number of item records that follow.
    pub items: u64,
}

/// What the state machine holds: the domain state plus Raft's bookkeeping.
#[derive(Debug, Default)]
pub struct Applied {
    /// The last applied log id.
    pub last_applied: Option<LogId>,
    /// The last applied membership.
    pub membership: StoredMembership,
    /// The items.
    pub state: State,
}

impl Applied {
    /// A copy of every item (for a snapshot or a backup). Items share their strings through
    /// `Arc`, so this copies pointers, not data.
    pub fn copy_items(&self) -> Vec<(ItemId, Item)> {
        self.state
            .iter()
            .map(|(id, item)| (id.clone(), item.clone()))
            .collect()
    }
}

/// The state shared between the state machine (writer) and readers.
///
/// A snapshot's copy of every item holds the read lock for a while (a third of a second and
/// more for a million items on the benchmark machine), so it runs on a blocking thread
/// ([`SharedState::copy_on_blocking_thread`]), and an apply that finds the lock taken by it
/// waits for it asynchronously ([`SharedState::write_for_apply`]): the runtime's thread goes
/// on sending heartbeats and answering peers meanwhile (see `docs/design.md`, "The
/// snapshot's copy off the runtime").
#[derive(Debug, Default)]
pub struct SharedState {
    applied: RwLock<Applied>,
    /// Set while a copy holds (or is about to take) the read lock on a blocking thread.
    copying: AtomicBool,
    /// Signalled when that copy has released the lock.
    copied: tokio::sync::Notify,
}

impl SharedState {
    fn new(applied: Applied) -> Self {
        SharedState {
            applied: RwLock::new(applied),
            ..SharedState::default()
        }
    }

    /// Read access. A poisoned lock means a panic while applying, after which no answer can
    /// be trusted; we keep serving what is there rather than crash (apply itself never panics
    /// on input, see core's property tests).
    pub fn read(&self) -> RwLockReadGuard<'_, Applied> {
        self.applied.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Applied> {
        self.applied.write().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on the item table grows a step at a time (the default of every state but
    /// the one [`StateMachine::open`] loads): for when the node is about to serve, once the
    /// replay of the log at start-up is over.
    pub fn grow_gradually(&self) {
        self.write().state.set_growth(Growth::Gradual);
    }

    /// Write access for an apply on the runtime's thread: at once when the lock is free;
    /// after the readers when they are requests (each holds it for microseconds); and, when a
    /// copy holds it, once the copy is done, without blocking the thread meanwhile.
    async fn write_for_apply(&self) -> RwLockWriteGuard<'_, Applied> {
        loop {
            let copied = self.copied.notified();
            tokio::pin!(copied);
            // Registered before the checks: a copy that ends in between still wakes us.
            copied.as_mut().enable();
            match self.applied.try_write() {
                Ok(guard) => return guard,
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
            if !self.copying.load(Ordering::Acquire) {
                return self.write();
            }
            copied.await;
        }
    }

    /// Runs `copy` under the read lock on a blocking thread.
    async fn copy_on_blocking_thread<R: Send + 'static>(
        self: &Arc<Self>,
        copy: impl FnOnce(&Applied) -> R + Send + 'static,
    ) -> Result<R, tokio::task::JoinError> {
        self.copying.store(true, Ordering::Release);
        let shared = self.clone();
        let copied = tokio::task::spawn_blocking(move || {
            let result = copy(&shared.read());
            shared.copying.store(false, Ordering::Release);
            shared.copied.notify_waiters();
            result
        })
        .await;
        if copied.is_err() {
            // The copy panicked: its lock is released; nothing may keep waiting for it.
            self.copying.store(false, Ordering::Release);
            self.copied.notify_waiters();
        }
        copied
    }
}

/// The openraft state machine.
#[derive(Debug, Clone)]
pub struct StateMachine {
    shared: Arc<SharedState>,
    dir: PathBuf,
    /// Serialises snapshot file operations (build, receive, install).
    file_lock: Arc<tokio::sync::Mutex<()>>,
    counter: Arc<AtomicU64>,
}

/// openraft 0.10's storage traits speak `io::Error`; the typed error is kept as its source.
fn snap_err(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

fn read_snap_err(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

fn corrupt(path: &Path, e: postcard::Error) -> StorageError {
    StorageError::Corrupt {
        what: path.display().to_string(),
        detail: e.to_string(),
    }
}

/// Reads a whole snapshot file into an [`Applied`] (streaming record by record).
fn load_snapshot(path: &Path) -> Result<(SnapshotHeader, Applied), StorageError> {
    let mut reader = SnapshotReader::open(path)?;
    let first = reader.next_record()?.ok_or_else(|| StorageError::Corrupt {
        what: path.display().to_string(),
        detail: "no header record".into(),
    })?;
    let header: SnapshotHeader = decode(&first).map_err(|e| corrupt(path, e))?;
    if header.format != SNAPSHOT_FORMAT {
        return Err(StorageError::Corrupt {
            what: path.display().to_string(),
            detail: format!("snapshot format {} is not {SNAPSHOT_FORMAT}", header.format),
        });
    }
    let mut items = Vec::with_capacity(header.items.min(1 << 20) as usize);
    while let Some(record) = reader.next_record()? {
        let item: (ItemId, Item) = decode(&record).map_err(|e| corrupt(path, e))?;
        items.push(item);
    }
    if items.len() as u64 != header.items {
        return Err(StorageError::Corrupt {
            what: path.display().to_string(),
            detail: format!("header says {} items, found {}", header.items, items.len()),
        });
    }
    let applied = Applied {
        last_applied: header.last_log_id,
        membership: header.membership.clone(),
        state: State::from_parts(header.high_water, items),
    };
    Ok((header, applied))
}

/// Makes `source`, from its start, durable as the file at `path`: by a second name for the
/// same file when it is on this file system (the peer route receives a snapshot next to
/// ours, so a snapshot of a gigabyte is neither copied nor written twice), else by a copy.
/// Returns whether it was linked.
fn own_snapshot_file(mut source: std::fs::File, path: &Path) -> io::Result<bool> {
    match link_open_file(&source, path) {
        // Whoever wrote it may not have made it durable; its data is ours now.
        Ok(()) => return source.sync_all().map(|()| true),
        Err(e) => tracing::debug!(error = %e, "snapshot file not linked; copying it"),
    }
    // In the kernel (`std::io::copy` between files is `copy_file_range` on Linux).
    use std::io::Seek;
    source.seek(io::SeekFrom::Start(0))?;
    let mut target = std::fs::File::create(path)?;
    std::io::copy(&mut source, &mut target)?;
    target.sync_all().map(|()| false)
}

/// Links the open file `file` at `path` (`linkat` of `/proc/self/fd/N`, following the link,
/// as `open(2)` describes for `O_TMPFILE`): fails across file systems, or without `/proc`.
fn link_open_file(file: &std::fs::File, path: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let from =
        CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(io::Error::other)?;
    let to = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: both are NUL-terminated strings that outlive the call.
    let linked = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if linked == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Writes a snapshot file: the header record, then one record per item; atomically.
fn write_snapshot(
    path: &Path,
    header: &SnapshotHeader,
    items: &[(ItemId, Item)],
) -> Result<(), StorageError> {
    let mut writer = SnapshotWriter::create(path)?;
    let header_bytes = encode(header).map_err(|e| corrupt(path, e))?;
    writer.write_record(&header_bytes)?;
    for item in items {
        let bytes = encode(item).map_err(|e| corrupt(path, e))?;
        writer.write_record(&bytes)?;
    }
    writer.finish()?;
    Ok(())
}

/// Replaces the current snapshot of `dir` with `applied` (offline tools only: the node must
/// not be running).
pub fn replace_snapshot(
    dir: &Path,
    applied: &Applied,
    snapshot_id: String,
) -> Result<(), StorageError> {
    let (header, items) = capture(applied, snapshot_id);
    write_snapshot(&dir.join(CURRENT), &header, &items)
}

/// A consistent copy of `applied` for a snapshot: its header and items. Items share their
/// strings through `Arc`, so this copies pointers, not data.
fn capture(applied: &Applied, snapshot_id: String) -> (SnapshotHeader, Vec<(ItemId, Item)>) {
    let items = applied.copy_items();
    let header = SnapshotHeader {
        format: SNAPSHOT_FORMAT,
        last_log_id: applied.last_applied,
        membership: applied.membership.clone(),
        snapshot_id,
        high_water: applied.state.high_water(),
        items: items.len() as u64,
    };
    (header, items)
}

/// Loads the current snapshot of `dir` (offline tools), or an empty state.
pub fn load_current(dir: &Path) -> Result<Applied, StorageError> {
    let current = dir.join(CURRENT);
    if current.exists() {
        Ok(load_snapshot(&current)?.1)
    } else {
        Ok(Applied::default())
    }
}

fn meta_of(header: &SnapshotHeader) -> SnapshotMeta {
    SnapshotMeta {
        last_log_id: header.last_log_id,
        last_membership: header.membership.clone(),
    }
}

impl StateMachine {
    /// Opens the state machine whose snapshots live in `dir`, loading the current snapshot if
    /// there is one. A damaged snapshot stops start-up (it is never half-loaded).
    ///
    /// The item table grows at once until [`SharedState::grow_gradually`]: openraft replays
    /// the committed log into it before the node serves, and a table grown at once frees its
    /// old allocation for the items that follow (a gradual growth would hold it while they
    /// take new memory: ~57 MB more after a restart with 1,000,000 items).
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        // Leftovers of an interrupted build or transfer are incomplete by construction.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.ends_with(".tmp") || name.starts_with("incoming-") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let current = dir.join(CURRENT);
        let mut applied = if current.exists() {
            let (header, applied) = load_snapshot(&current)?;
            tracing::info!(
                items = header.items,
                last_log = ?header.last_log_id,
                "loaded snapshot"
            );
            applied
        } else {
            Applied::default()
        };
        applied.state.set_growth(Growth::AtOnce);
        Ok(StateMachine {
            shared: Arc::new(SharedState::new(applied)),
            dir: dir.to_path_buf(),
            file_lock: Arc::new(tokio::sync::Mutex::new(())),
            counter: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Applies `entries` in order under one lock: one result per entry (one outcome per
    /// operation of a batch; empty for blank and membership entries).
    pub fn apply_entries(&self, entries: Vec<Entry>) -> Vec<BatchResult> {
        apply_under(&mut self.shared.write(), entries)
    }

    /// Like [`StateMachine::apply_entries`], waiting for the lock without blocking the
    /// runtime's thread (see [`SharedState`]).
    async fn apply_entries_when_free(&self, entries: Vec<Entry>) -> Vec<BatchResult> {
        let mut applied = self.shared.write_for_apply().await;
        let started = std::time::Instant::now();
        let results = apply_under(&mut applied, entries);
        drop(applied);
        metrics::histogram!("statemanager_apply_seconds").record(started.elapsed().as_secs_f64());
        results
    }

    /// The state readers look at.
    pub fn shared(&self) -> Arc<SharedState> {
        self.shared.clone()
    }

    async fn open_current(&self) -> Result<Option<Snapshot>, io::Error> {
        let path = self.dir.join(CURRENT);
        if !path.exists() {
            return Ok(None);
        }
        let header = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || -> Result<SnapshotHeader, StorageError> {
                let mut reader = SnapshotReader::open(&path)?;
                let first = reader.next_record()?.unwrap_or_default();
                decode(&first).map_err(|e| corrupt(&path, e))
            })
            .await
            .map_err(read_snap_err)?
            .map_err(read_snap_err)?
        };
        let file = tokio::fs::File::open(&path).await.map_err(read_snap_err)?;
        Ok(Some(Snapshot {
            meta: meta_of(&header),
            snapshot: file,
        }))
    }
}

/// Applies `entries` in order to `applied`: one result per entry (one outcome per operation
/// of a batch; empty for blank and membership entries).
fn apply_under(applied: &mut Applied, entries: Vec<Entry>) -> Vec<BatchResult> {
    let mut results = Vec::with_capacity(entries.len());
    for entry in entries {
        applied.last_applied = Some(entry.log_id);
        results.push(match entry.payload {
            EntryPayload::Blank => BatchResult::default(),
            EntryPayload::Normal(batch) => BatchResult(applied.state.apply(&batch)),
            EntryPayload::Membership(m) => {
                applied.membership = StoredMembership::new(Some(entry.log_id), m);
                BatchResult::default()
            }
        });
    }
    results
}

impl StateMachine {
    /// Loads the received snapshot at `path` completely, and checks that it covers what the
    /// leader said it does.
    async fn check_received(
        &self,
        path: &Path,
        meta: &SnapshotMeta,
    ) -> Result<(SnapshotHeader, Applied), io::Error> {
        let loaded = {
            let path = path.to_path_buf();
            tokio::task::spawn_blocking(move || load_snapshot(&path))
                .await
                .map_err(snap_err)?
                .map_err(snap_err)?
        };
        if loaded.0.last_log_id != meta.last_log_id {
            return Err(snap_err(io::Error::other(format!(
                "received snapshot covers {:?}, leader said {:?}",
                loaded.0.last_log_id, meta.last_log_id
            ))));
        }
        Ok(loaded)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = tokio::fs::File;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let _guard = self.file_lock.lock().await;
        let began = std::time::Instant::now();
        // Copy under the lock (items share their strings through Arc, so this is a shallow
        // copy), on a blocking thread (see `SharedState`), then write without holding it:
        // applies go on meanwhile.
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let (header, items) = self
            .shared
            .copy_on_blocking_thread(move |applied| {
                let snapshot_id = match applied.last_applied {
                    Some(l) => format!(
                        "{}-{}-{}-{n}",
                        l.leader_id.term, l.leader_id.node_id, l.index
                    ),
                    None => format!("0-0-0-{n}"),
                };
                capture(applied, snapshot_id)
            })
            .await
            .map_err(snap_err)?;
        let copied = began.elapsed();
        let path = self.dir.join(CURRENT);
        let h = header.clone();
        tokio::task::spawn_blocking(move || write_snapshot(&path, &h, &items))
            .await
            .map_err(snap_err)?
            .map_err(snap_err)?;
        tracing::info!(
            items = header.items,
            last_log = ?header.last_log_id,
            copy_ms = copied.as_millis() as u64,
            total_ms = began.elapsed().as_millis() as u64,
            "snapshot written"
        );
        let file = tokio::fs::File::open(self.dir.join(CURRENT))
            .await
            .map_err(read_snap_err)?;
        Ok(Snapshot {
            meta: meta_of(&header),
            snapshot: file,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = tokio::fs::File;
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let applied = self.shared.read();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures_util::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>>
            + Unpin
            + Send,
    {
        // The entries are gathered first (the lock is not held across an await), applied
        // under one lock, and answered after it is released, so readers are not held up by
        // the callers' wake-ups.
        let mut ready = Vec::new();
        while let Some(next) = entries.next().await {
            ready.push(next?);
        }
        let (entries, responders): (Vec<_>, Vec<_>) = ready.into_iter().unzip();
        let results = self.apply_entries_when_free(entries).await;
        for (responder, result) in responders.into_iter().zip(results) {
            if let Some(responder) = responder {
                responder.send(result);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: tokio::fs::File,
    ) -> Result<(), io::Error> {
        let _guard = self.file_lock.lock().await;
        // Give the file we were handed (the peer route hands the file it received) a name of
        // our own, then verify it completely before it replaces anything.
        let started = std::time::Instant::now();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("incoming-{n}.snap"));
        let linked = {
            let source = snapshot.into_std().await;
            let path = path.clone();
            tokio::task::spawn_blocking(move || own_snapshot_file(source, &path))
                .await
                .map_err(snap_err)?
                .map_err(snap_err)?
        };
        let owned_ms = started.elapsed().as_millis() as u64;
        let checked = self.check_received(&path, meta).await;
        let (header, applied) = match checked {
            Ok(loaded) => loaded,
            Err(e) => {
                // Not left to hold the received file's space until the next start-up.
                let _ = tokio::fs::remove_file(&path).await;
                return Err(e);
            }
        };
        std::fs::rename(&path, self.dir.join(CURRENT)).map_err(snap_err)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(snap_err)?;
        // Renaming a name over another name of the same file changes nothing: the handed
        // file was the current snapshot itself. Its second name is not needed.
        if path.exists() {
            let _ = std::fs::remove_file(&path);
        }
        let replaced = std::mem::replace(&mut *self.shared.write(), applied);
        // Freeing every item of the state replaced takes a while: not on the runtime's thread.
        tokio::task::spawn_blocking(move || drop(replaced));
        tracing::info!(
            items = header.items,
            last_log = ?header.last_log_id,
            linked,
            file_ms = owned_ms,
            total_ms = started.elapsed().as_millis() as u64,
            "snapshot installed"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        self.open_current().await
    }
}

#[cfg(test)]
mod tests;
