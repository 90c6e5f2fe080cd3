//! What a backup file is: a consistent copy of every item in a versioned, checksummed file.
//!
//! A backup file uses the snapshot framing of `statemanager_storage` (magic and framing
//! version, one CRC-32 per record, a terminator with the record count, so any damaged or
//! truncated byte is detected). Record 0 is a [`BackupHeader`] whose `kind` and `format` say
//! what follows; every further record is one item `(ItemId, Item)`, postcard-encoded. A
//! backup holds items only, no Raft log and no membership: restoring decides the membership.
//!
//! The node captures and restores backups (`statemanager_raft::backup`); the CLI verifies a
//! downloaded one with [`read_backup`] without depending on Raft.
#![warn(missing_docs)]

use std::path::Path;

use serde::{Deserialize, Serialize};
use statemanager_core::{Item, ItemId, Timestamp};
use statemanager_storage::{SnapshotReader, SnapshotWriter, StorageError};

/// A node id, as the header names the source node (the same as `statemanager_raft`'s).
pub type NodeId = u64;

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(value)
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

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

/// A corruption error about `path`.
pub fn corrupt(path: &Path, detail: impl Into<String>) -> StorageError {
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

#[cfg(test)]
mod tests {
    use statemanager_core::{Key, Namespace};

    use super::*;

    fn capture(n: u64) -> BackupCapture {
        let items: Vec<(ItemId, Item)> = (0..n)
            .map(|i| {
                (
                    ItemId {
                        namespace: Namespace::new("ns").expect("valid"),
                        key: Key::new(&format!("k{i}")).expect("valid"),
                    },
                    Item {
                        data: format!("v{i}").into(),
                        timestamp: Timestamp::from_micros(10 + i),
                        expires_at: Timestamp::from_micros(1_000_000 + i),
                    },
                )
            })
            .collect();
        BackupCapture {
            header: BackupHeader {
                kind: BACKUP_KIND.into(),
                format: BACKUP_FORMAT,
                created_at: Timestamp::from_micros(5),
                source_node: 2,
                cluster_id: Some("c".into()),
                applied_index: 9,
                high_water: Timestamp::from_micros(20),
                items: n,
            },
            items,
        }
    }

    #[test]
    fn a_written_backup_reads_back_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.smbackup");
        let written = capture(3);
        write_backup(&path, &written).expect("write");
        let read = read_backup(&path).expect("read");
        assert_eq!(read.header, written.header);
        assert_eq!(read.items, written.items);
    }

    #[test]
    fn every_damaged_byte_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.smbackup");
        write_backup(&path, &capture(2)).expect("write");
        let good = std::fs::read(&path).expect("read");
        let damaged = dir.path().join("d.smbackup");
        for i in 0..good.len() {
            let mut bytes = good.clone();
            bytes[i] ^= 0x40;
            std::fs::write(&damaged, &bytes).expect("write");
            assert!(
                read_backup(&damaged).is_err(),
                "flip at byte {i} not caught"
            );
            std::fs::write(&damaged, &good[..i]).expect("write");
            assert!(read_backup(&damaged).is_err(), "cut at byte {i} not caught");
        }
    }

    #[test]
    fn a_wrong_kind_format_or_count_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.smbackup");
        let mut other = capture(1);
        other.header.kind = "snapshot".into();
        write_backup(&path, &other).expect("write");
        assert!(read_backup(&path).is_err());
        let mut newer = capture(1);
        newer.header.format = BACKUP_FORMAT + 1;
        write_backup(&path, &newer).expect("write");
        assert!(read_backup(&path).is_err());
        let mut short = capture(2);
        short.header.items = 3;
        write_backup(&path, &short).expect("write");
        assert!(read_backup(&path).is_err());
    }
}
