//! Backups: a consistent copy of every item in a versioned, checksummed file, and restoring
//! one into a fresh data directory.
//!
//! A backup file uses the snapshot framing of `statemanager_storage` (magic and framing
//! version, one CRC-32 per record, a terminator with the record count, so any damaged or
//! truncated byte is detected). Record 0 is a [`BackupHeader`] whose `kind` and `format` say
//! what follows; every further record is one item `(ItemId, Item)`. A backup holds items
//! only, no Raft log and no membership: restoring decides the membership.
//!
//! Restoring writes the items as the data directory's snapshot, at a fixed log position
//! (term 0, index 1) with the membership of the restoring node's configuration, plus the
//! cluster id that membership derives. Restoring the same file into every member's empty
//! data directory (each with its own configuration) therefore gives identical states, and
//! the members elect a leader as usual. Restoring into one node and adding the others with
//! `statemanager cluster add` works too; see `docs/operations.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::{BasicNode, CommittedLeaderId, Membership};
use serde::{Deserialize, Serialize};
use statemanager_core::{Item, ItemId, State, Timestamp};
use statemanager_storage::{DataDir, LogEngine, SnapshotReader, SnapshotWriter, StorageError};

use crate::node::{derive_cluster_id, META_CLUSTER_ID};
use crate::state_machine::{replace_snapshot, Applied};
use crate::types::{decode, encode, LogId, NodeId, StoredMembership};

/// What `kind` says in every backup header.
pub const BACKUP_KIND: &str = "statemanager-backup";
/// The format version of backup files this build writes and reads.
pub const BACKUP_FORMAT: u32 = 1;

/// The first record of a backup file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// Always [`BACKUP_KIND`]: tells a backup from a snapshot or any other file.
    pub kind: String,
    /// Format version of the records that follow.
    pub format: u32,
    /// When the backup was taken (the source node's clock).
    pub created_at: Timestamp,
    /// The node that took it.
    pub source_node: NodeId,
    /// The cluster it was taken from.
    pub cluster_id: Option<String>,
    /// The applied log index the copy is consistent at.
    pub applied_index: u64,
    /// The state's time high-water mark (restored, so time never runs backwards).
    pub high_water: Timestamp,
    /// Number of item records that follow.
    pub items: u64,
}

/// A consistent copy of the items, ready to be written as a backup file.
#[derive(Debug, Clone)]
pub struct BackupCapture {
    /// The header to write.
    pub header: BackupHeader,
    /// The items (sharing their strings with the live state).
    pub items: Vec<(ItemId, Item)>,
}

fn corrupt(path: &Path, detail: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        what: path.display().to_string(),
        detail: detail.into(),
    }
}

/// Writes `capture` to `path` (atomically: a temporary file, fsync, rename).
pub fn write_backup(path: &Path, capture: &BackupCapture) -> Result<(), StorageError> {
    let mut writer = SnapshotWriter::create(path)?;
    let header = encode(&capture.header).map_err(|e| corrupt(path, e.to_string()))?;
    writer.write_record(&header)?;
    for item in &capture.items {
        let bytes = encode(item).map_err(|e| corrupt(path, e.to_string()))?;
        writer.write_record(&bytes)?;
    }
    writer.finish()?;
    Ok(())
}

/// Reads and verifies a whole backup file: magic, every checksum, the record count, the
/// header's kind and format, and that every item decodes.
pub fn read_backup(path: &Path) -> Result<BackupCapture, StorageError> {
    let mut reader = SnapshotReader::open(path)?;
    let first = reader
        .next_record()?
        .ok_or_else(|| corrupt(path, "no header record"))?;
    let header: BackupHeader = decode(&first)
        .ok()
        .filter(|h: &BackupHeader| h.kind == BACKUP_KIND)
        .ok_or_else(|| {
            corrupt(
                path,
                "not a statemanager backup (a snapshot or other file?)",
            )
        })?;
    if header.format != BACKUP_FORMAT {
        return Err(corrupt(
            path,
            format!(
                "backup format {} is not supported (this build reads {BACKUP_FORMAT})",
                header.format
            ),
        ));
    }
    let mut items = Vec::with_capacity(header.items.min(1 << 20) as usize);
    while let Some(record) = reader.next_record()? {
        let item: (ItemId, Item) = decode(&record)
            .map_err(|e| corrupt(path, format!("item {} cannot be decoded: {e}", items.len())))?;
        items.push(item);
    }
    if items.len() as u64 != header.items {
        return Err(corrupt(
            path,
            format!("header says {} items, found {}", header.items, items.len()),
        ));
    }
    Ok(BackupCapture { header, items })
}

/// The log position every restored snapshot sits at: the same on every member restored from
/// the same file, and after the position `initialize` uses (index 0), so a restored node and
/// a freshly initialised one never look alike.
pub fn restored_log_id() -> LogId {
    LogId::new(CommittedLeaderId::new(0, 0), 1)
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

/// Seeds the empty (or absent) data directory `data_dir` from the backup at `backup`, as a
/// member of a cluster whose members are `members` (node id → peer address; a one-member
/// cluster for a single node).
///
/// The whole backup is read and verified first, and the data directory must be empty: a
/// corrupt backup or a used directory fails before anything is written.
pub fn restore(
    backup: &Path,
    data_dir: &Path,
    members: &BTreeMap<NodeId, String>,
) -> Result<RestoreSummary, StorageError> {
    let capture = read_backup(backup)?;
    if members.is_empty() {
        return Err(corrupt(data_dir, "no members to restore into"));
    }
    if let Ok(mut entries) = std::fs::read_dir(data_dir) {
        if entries.next().is_some() {
            return Err(StorageError::io(
                format!(
                    "{} is not empty: restore only seeds a fresh data directory",
                    data_dir.display()
                ),
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
    }
    let dir = DataDir::open(data_dir)?;
    let engine = LogEngine::open(&dir.log_dir())?;
    let last = restored_log_id();
    let membership = Membership::new(
        vec![members.keys().copied().collect::<BTreeSet<_>>()],
        members
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect::<BTreeMap<_, _>>(),
    );
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
    Ok(RestoreSummary {
        items,
        header: capture.header,
        cluster_id,
    })
}
