//! Backups on the node side: capturing a consistent copy of every item (and writing it to an
//! unlinked file for `GET /admin/backup`), and restoring a backup into a fresh data directory.
//! What a backup file is (format, write, read and verify) is the `statemanager_backup` crate,
//! which the CLI uses too; its items are re-exported here.
//!
//! Restoring writes the items as the data directory's snapshot, at a fixed log position
//! (term 0, index 1) with the membership of the restoring node's configuration, plus the
//! cluster id that membership derives. Restoring the same file into every member's empty
//! data directory (each with its own configuration) therefore gives identical states, and
//! the members elect a leader as usual. Restoring into one node and adding the others with
//! `statemanager cluster add` works too; see `docs/operations.md`.

use std::collections::BTreeMap;
use std::path::Path;

use openraft::BasicNode;
use statemanager_core::State;
/// The file whose presence in a data directory says a restore into it did not finish.
pub use statemanager_storage::RESTORING_MARKER;
use statemanager_storage::{DataDir, LogEngine, StorageError};

use statemanager_backup::corrupt;
pub use statemanager_backup::{
    read_backup, write_backup, BackupCapture, BackupHeader, BACKUP_FORMAT, BACKUP_KIND,
};

use crate::cluster_id::{derive_cluster_id, META_CLUSTER_ID};
use crate::node::Node;
use crate::state_machine::{replace_snapshot, Applied};
use crate::types::{encode, CommittedLeaderId, LogId, NodeId, StoredMembership};
use crate::{NodeError, Reason};

/// The log position every restored snapshot sits at: the same on every member restored from
/// the same file, and after the position `initialize` uses (index 0), so a restored node and
/// a freshly initialised one never look alike.
pub fn restored_log_id() -> LogId {
    LogId::new(
        CommittedLeaderId {
            term: 0,
            node_id: 0,
        },
        1,
    )
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    /// Items written (including ones that have expired since the backup; they stay invisible
    /// and are purged as usual).
    pub items: u64,
    /// The header of the backup restored.
    pub header: BackupHeader,
    /// The cluster id the restored node now has.
    pub cluster_id: String,
}

/// Why a restore failed, and what it left.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Refused or failed before the directory was marked as being restored: nothing in it
    /// was changed.
    #[error(transparent)]
    Untouched(StorageError),
    /// Failed once the directory was marked (its `RESTORING` file): no node serves it until a
    /// restore into it finishes; running the restore again starts over.
    #[error(transparent)]
    Unfinished(StorageError),
}

/// Seeds the empty (or absent) data directory `data_dir` from the backup at `backup`, as a
/// member of a cluster whose members are `members` (node id → peer address; a one-member
/// cluster for a single node).
///
/// The whole backup is read and verified first, and the data directory must be empty: a
/// corrupt backup or a used directory fails before anything is written. A restore cut short
/// (a crash, a power cut) leaves a directory no node serves; running it again starts over
/// ([`DataDir::open_for_restore`]).
pub fn restore(
    backup: &Path,
    data_dir: &Path,
    members: &BTreeMap<NodeId, String>,
) -> Result<RestoreSummary, RestoreError> {
    let capture = read_backup(backup).map_err(RestoreError::Untouched)?;
    if members.is_empty() {
        return Err(RestoreError::Untouched(corrupt(
            data_dir,
            "no members to restore into",
        )));
    }
    let dir = DataDir::open_for_restore(data_dir).map_err(|e| {
        // Its marker may have been written before the failure.
        if data_dir.join(RESTORING_MARKER).exists() {
            RestoreError::Unfinished(e)
        } else {
            RestoreError::Untouched(e)
        }
    })?;
    // From here on the directory is marked, whatever fails: even when the marker's removal
    // fails, a power cut may bring it back.
    write_restored(&dir, capture, members).map_err(RestoreError::Unfinished)
}

/// The restore's writes into `dir`, which is marked as being restored: the snapshot, the log's
/// markers, the cluster id; then the mark removed.
fn write_restored(
    dir: &DataDir,
    capture: BackupCapture,
    members: &BTreeMap<NodeId, String>,
) -> Result<RestoreSummary, StorageError> {
    let data_dir = dir.root();
    let engine = LogEngine::open(&dir.log_dir())?;
    let last = restored_log_id();
    let membership = crate::types::voters_of(
        members
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect::<BTreeMap<_, _>>(),
    )
    .map_err(|e| corrupt(data_dir, e.to_string()))?;
    let items = capture.items.len() as u64;
    let applied = Applied {
        last_applied: Some(last),
        membership: StoredMembership::new(Some(last), membership),
        state: State::from_parts(capture.header.high_water, capture.items),
    };
    replace_snapshot(
        &dir.snapshot_dir(),
        &applied,
        format!("restored-{}", capture.header.applied_index),
    )?;
    let purged = encode(&last).map_err(|e| corrupt(data_dir, e.to_string()))?;
    let committed = encode(&Some(last)).map_err(|e| corrupt(data_dir, e.to_string()))?;
    engine.purge_through(last.index, ("purged", &purged))?;
    engine.put_meta("committed", &committed)?;
    // The cluster id names the backup as well as the members: nodes restored from this file
    // with these members agree, while nodes that formed a fresh cluster from the same `peers`
    // have another id and are refused (their history is not this one; mixing them would
    // break Raft's invariants).
    let mut pairs: Vec<(NodeId, String)> = members.iter().map(|(i, a)| (*i, a.clone())).collect();
    pairs.push((
        0,
        format!(
            "restored:{}:{}:{}",
            capture.header.applied_index,
            capture.header.created_at.as_micros(),
            capture.header.source_node
        ),
    ));
    let cluster_id = derive_cluster_id(&pairs);
    engine.put_meta(META_CLUSTER_ID, cluster_id.as_bytes())?;
    drop(engine);
    dir.finish_restore()?;
    Ok(RestoreSummary {
        items,
        header: capture.header,
        cluster_id,
    })
}

impl Node {
    /// A consistent copy of every item for a backup: it holds every store acknowledged before
    /// the call (a linearizable read), and is taken under one read lock, so it is the state at
    /// one applied index. Items share their strings with the live state: this copies pointers.
    pub async fn backup_capture(&self) -> Result<BackupCapture, NodeError> {
        self.read_linearized(|applied, _| {
            let items = applied.copy_items();
            let header = BackupHeader {
                kind: BACKUP_KIND.into(),
                format: BACKUP_FORMAT,
                created_at: self.now(),
                source_node: self.id(),
                cluster_id: self.cluster_id(),
                applied_index: applied.last_applied.map_or(0, |l| l.index),
                high_water: applied.state.high_water(),
                items: items.len() as u64,
            };
            BackupCapture { header, items }
        })
        .await
    }

    /// Writes a backup (see [`Node::backup_capture`]) to an unlinked file in the data
    /// directory (so it needs no cleanup and inherits the directory's permissions) and
    /// returns it, rewound, with its header.
    pub async fn backup_file(&self) -> Result<(std::fs::File, BackupHeader), NodeError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let capture = self.backup_capture().await?;
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self
            .data_root()
            .join(format!("backup-{}-{n}.smbackup", std::process::id()));
        let written = tokio::task::spawn_blocking(move || {
            write_backup(&path, &capture)?;
            let file = std::fs::File::open(&path)
                .map_err(|e| StorageError::io(format!("opening {}", path.display()), e))?;
            let _ = std::fs::remove_file(&path);
            Ok::<_, StorageError>((file, capture.header))
        })
        .await
        .map_err(|e| NodeError::Unavailable(Reason::caused("backup task failed", e)))?;
        written.map_err(|e| NodeError::Unavailable(Reason::caused("writing the backup failed", e)))
    }
}
