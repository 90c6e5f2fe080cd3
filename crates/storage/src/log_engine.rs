//! The Raft log and metadata on fjall.
//!
//! Two keyspaces: `log` maps a big-endian `u64` index to a framed record; `meta` maps a short
//! name to a framed value. Every mutation is one fjall write batch (atomic across both
//! keyspaces) committed with `PersistMode::SyncAll`, so it is on disk when the call returns.
//! fjall truncates a torn journal tail on recovery and reports any other corruption as an
//! error; our own per-record CRC catches what slips past it.
//!
//! All calls block (they fsync); async callers run them on a blocking thread.

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::{decode_record, encode_record, StorageError};

/// The durable log and metadata store.
#[derive(Clone)]
pub struct LogEngine {
    db: Database,
    log: Keyspace,
    meta: Keyspace,
}

impl std::fmt::Debug for LogEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogEngine").finish_non_exhaustive()
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> Result<u64, StorageError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| StorageError::Corrupt {
        what: "raft log".into(),
        detail: format!("log key of {} bytes, expected 8", key.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

impl LogEngine {
    /// Opens (or creates) the engine in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let db = Database::builder(dir).open()?;
        let log = db.keyspace("log", KeyspaceCreateOptions::default)?;
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
        Ok(LogEngine { db, log, meta })
    }

    /// Appends records `(index, payload)` and fsyncs before returning. Existing records at the
    /// same indexes are replaced.
    pub fn append(&self, records: &[(u64, Vec<u8>)]) -> Result<(), StorageError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for (index, payload) in records {
            batch.insert(&self.log, index_key(*index), encode_record(payload));
        }
        batch.commit()?;
        Ok(())
    }

    /// Reads the records with `start <= index < end`, in order, checking each checksum.
    pub fn read_range(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        for guard in self.log.range(index_key(start)..index_key(end)) {
            let (key, value) = guard.into_inner()?;
            let index = key_index(&key)?;
            let payload = decode_record(&value, &|| format!("raft log entry {index}"))?;
            out.push((index, payload.to_vec()));
        }
        Ok(out)
    }

    /// The last record, if any.
    pub fn last(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let Some(guard) = self.log.last_key_value() else {
            return Ok(None);
        };
        let (key, value) = guard.into_inner()?;
        let index = key_index(&key)?;
        let payload = decode_record(&value, &|| format!("raft log entry {index}"))?;
        Ok(Some((index, payload.to_vec())))
    }

    /// Deletes every record with `index >= from`, durably.
    pub fn truncate_from(&self, from: u64) -> Result<(), StorageError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for guard in self.log.range(index_key(from)..) {
            batch.remove(&self.log, guard.key()?);
        }
        batch.commit()?;
        Ok(())
    }

    /// Deletes every record with `index <= through` and, in the same atomic batch, stores the
    /// metadata value `meta` (the purge marker).
    pub fn purge_through(&self, through: u64, meta: (&str, &[u8])) -> Result<(), StorageError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(&self.meta, meta.0, encode_record(meta.1));
        for guard in self.log.range(..=index_key(through)) {
            batch.remove(&self.log, guard.key()?);
        }
        batch.commit()?;
        Ok(())
    }

    /// Reads a metadata value.
    pub fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match self.meta.get(name)? {
            None => Ok(None),
            Some(value) => Ok(Some(
                decode_record(&value, &|| format!("metadata '{name}'"))?.to_vec(),
            )),
        }
    }

    /// Stores a metadata value durably.
    pub fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), StorageError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(&self.meta, name, encode_record(value));
        batch.commit()?;
        Ok(())
    }

    /// Stores a metadata value without waiting for an fsync; it becomes durable with the next
    /// synced write (the journal is shared) or at a clean shutdown.
    pub fn put_meta_lazy(&self, name: &str, value: &[u8]) -> Result<(), StorageError> {
        let mut batch = self.db.batch();
        batch.insert(&self.meta, name, encode_record(value));
        batch.commit()?;
        Ok(())
    }

    /// Bytes the engine occupies on disk.
    pub fn disk_space(&self) -> Result<u64, StorageError> {
        Ok(self.db.disk_space()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> (u64, Vec<u8>) {
        (i, format!("entry {i}").into_bytes())
    }

    #[test]
    fn append_read_truncate_purge_and_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let log = LogEngine::open(tmp.path()).unwrap();
            log.append(&(1..=10).map(rec).collect::<Vec<_>>()).unwrap();
            assert_eq!(
                log.read_range(3, 6).unwrap(),
                (3..6).map(rec).collect::<Vec<_>>()
            );
            assert_eq!(log.last().unwrap(), Some(rec(10)));
            log.truncate_from(8).unwrap();
            assert_eq!(log.last().unwrap(), Some(rec(7)));
            log.purge_through(2, ("purged", b"2")).unwrap();
            log.put_meta("vote", b"v1").unwrap();
        }
        let log = LogEngine::open(tmp.path()).unwrap();
        assert_eq!(
            log.read_range(0, 100).unwrap(),
            (3..=7).map(rec).collect::<Vec<_>>()
        );
        assert_eq!(log.get_meta("purged").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(log.get_meta("vote").unwrap().as_deref(), Some(&b"v1"[..]));
        assert_eq!(log.get_meta("missing").unwrap(), None);
    }
}
