//! The Raft log and small metadata values.
//!
//! The log is a [`Wal`] in `dir/`; metadata values live in `dir/meta/<name>`, each a framed
//! record (version + CRC32) written atomically (temporary file, fsync, rename, directory
//! fsync). All calls block (they fsync); async callers run them on a blocking thread.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::data_dir::write_atomic;
use crate::wal::Wal;
use crate::{decode_record, encode_record, StorageError};

/// Internal metadata: the index through which the log was purged.
const PURGED_INDEX: &str = "wal-purged-index";

/// Files kept open by [`LogEngine::put_meta_lazy`], by name, with the length last set.
type LazyFiles = HashMap<String, (File, Option<usize>)>;

/// The durable log and metadata store. Cheap to clone; clones share the log.
#[derive(Debug, Clone)]
pub struct LogEngine {
    wal: Arc<Mutex<Wal>>,
    spares: crate::wal::Spares,
    meta_dir: PathBuf,
    /// The files [`LogEngine::put_meta_lazy`] keeps open, with the length last set.
    lazy_meta: Arc<Mutex<LazyFiles>>,
}

impl LogEngine {
    /// Opens (or creates) the engine in `dir`, recovering the log.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let meta_dir = dir.join("meta");
        crate::data_dir::create_dir_durably(&meta_dir)?;
        let purged = match read_meta(&meta_dir, PURGED_INDEX)? {
            None => None,
            Some(bytes) => Some(u64::from_le_bytes(bytes.as_slice().try_into().map_err(
                |_| StorageError::Corrupt {
                    what: meta_dir.join(PURGED_INDEX).display().to_string(),
                    detail: "not an index".into(),
                },
            )?)),
        };
        let wal = Wal::open(dir, purged)?;
        Ok(LogEngine {
            spares: wal.spares(),
            wal: Arc::new(Mutex::new(wal)),
            meta_dir,
            lazy_meta: Arc::default(),
        })
    }

    fn wal(&self) -> MutexGuard<'_, Wal> {
        // A panic while holding the lock cannot leave the files inconsistent (every write is
        // fsync'd before the index is updated), so a poisoned lock is still usable.
        self.wal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends records `(index, payload)` continuing the log, fsync'd before returning.
    pub fn append(&self, records: &[(u64, Vec<u8>)]) -> Result<(), StorageError> {
        self.wal().append(records)
    }

    /// Whether the next append starts a log segment (more file system work than an append).
    pub fn next_append_starts_segment(&self) -> bool {
        self.wal().next_append_starts_segment()
    }

    /// The records with `start <= index < end`, in order, each checksum checked.
    pub fn read_range(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        self.wal().read_range(start, end)
    }

    /// The index of the first record held (after the purged ones), if any.
    pub fn first_index(&self) -> Option<u64> {
        self.wal().first_index()
    }

    /// The last record, if any.
    pub fn last(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let wal = self.wal();
        match wal.last_index() {
            None => Ok(None),
            Some(last) => Ok(wal.read_range(last, last + 1)?.pop()),
        }
    }

    /// Deletes every record with `index >= from`, durably.
    pub fn truncate_from(&self, from: u64) -> Result<(), StorageError> {
        self.wal().truncate_from(from)
    }

    /// Stores the metadata value `meta` (the caller's purge marker) durably, then forgets
    /// every record with `index <= through`.
    pub fn purge_through(&self, through: u64, meta: (&str, &[u8])) -> Result<(), StorageError> {
        self.put_meta(meta.0, meta.1)?;
        self.put_meta(PURGED_INDEX, &through.to_le_bytes())?;
        self.wal().drop_through(through);
        Ok(())
    }

    /// The first half of a purge that must not wait for the disk: forgets every record with
    /// `index <= through` in memory at once and returns the segment files that hold only
    /// such records. The second half, [`LogEngine::finish_purge`], makes the marker durable
    /// and deletes them; until it has, a restart finds the records again (they are covered by
    /// the snapshot the purge follows, so nothing is lost or resurrected wrongly: the log
    /// just starts earlier).
    pub fn forget_through(&self, through: u64) -> Vec<PathBuf> {
        self.wal().forget_through(through)
    }

    /// The second half of a purge: stores `meta` (the caller's purge marker) and the log's own
    /// marker durably, then recycles `files` (from [`LogEngine::forget_through`]) as spare
    /// segments, or deletes those beyond [`crate::wal::MAX_SPARES`]. Files are kept when a
    /// marker cannot be written.
    pub fn finish_purge(
        &self,
        through: u64,
        meta: (&str, &[u8]),
        files: Vec<PathBuf>,
    ) -> Result<(), StorageError> {
        self.put_meta(meta.0, meta.1)?;
        self.put_meta(PURGED_INDEX, &through.to_le_bytes())?;
        for path in files {
            self.spares
                .recycle_or_remove(&path)
                .map_err(|e| StorageError::io(format!("recycling {}", path.display()), e))?;
        }
        Ok(())
    }

    /// Reads a metadata value.
    pub fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        read_meta(&self.meta_dir, name)
    }

    /// Stores a metadata value durably.
    pub fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), StorageError> {
        write_atomic(&self.meta_dir.join(name), &encode_record(value))
    }

    /// Stores a metadata value in place, without fsync or rename (it is called on every
    /// commit; a rename would make ext4 flush each time). After a crash it may be old or
    /// unreadable (torn), so only hints are written this way and readers must tolerate that.
    /// The file stays open between calls, and its length is set only when the value's length
    /// changes: a commit then costs one `pwrite` (it was open, write, truncate and close, on
    /// the Raft core's task). A name is written either this way or with
    /// [`LogEngine::put_meta`], never both (a rename would leave the open file behind).
    pub fn put_meta_lazy(&self, name: &str, value: &[u8]) -> Result<(), StorageError> {
        let record = encode_record(value);
        let path = || self.meta_dir.join(name);
        let mut files = self.lazy_meta.lock().unwrap_or_else(|p| p.into_inner());
        // The file stays open after the first write: no path or name is built per commit.
        let written = match files.get_mut(name) {
            Some((file, len)) => write_in_place(file, len, &record),
            None => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path())
                    .map_err(|e| StorageError::io(format!("opening {}", path().display()), e))?;
                let mut len = None;
                let written = write_in_place(&file, &mut len, &record);
                if written.is_ok() {
                    files.insert(name.to_string(), (file, len));
                }
                written
            }
        };
        if let Err(e) = written {
            files.remove(name); // opened afresh next time
            return Err(StorageError::io(format!("writing {}", path().display()), e));
        }
        Ok(())
    }

    /// Bytes of the log records after `index` (how much a snapshot at `index` would let go).
    pub fn bytes_after(&self, index: u64) -> u64 {
        self.wal().bytes_after(index)
    }

    /// Bytes the log occupies on disk.
    pub fn disk_space(&self) -> u64 {
        self.wal().disk_bytes()
    }
}

/// Writes `record` at the start of `file` and sets its length when it differs from `len`,
/// the length last set (`None`: not known).
fn write_in_place(file: &File, len: &mut Option<usize>, record: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(record, 0)?;
    if *len != Some(record.len()) {
        file.set_len(record.len() as u64)?;
        *len = Some(record.len());
    }
    Ok(())
}

fn read_meta(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(
            decode_record(&bytes, &|| path.display().to_string())?.to_vec(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io(format!("reading {}", path.display()), e)),
    }
}

#[cfg(test)]
mod crash_points;

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
            log.put_meta_lazy("committed", b"c").unwrap();
        }
        let log = LogEngine::open(tmp.path()).unwrap();
        assert_eq!(
            log.read_range(0, 100).unwrap(),
            (3..=7).map(rec).collect::<Vec<_>>()
        );
        assert_eq!(log.get_meta("purged").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(log.get_meta("vote").unwrap().as_deref(), Some(&b"v1"[..]));
        assert_eq!(
            log.get_meta("committed").unwrap().as_deref(),
            Some(&b"c"[..])
        );
        assert_eq!(log.get_meta("missing").unwrap(), None);
        log.append(&[rec(8)]).unwrap();
        assert_eq!(log.last().unwrap(), Some(rec(8)));
    }

    #[test]
    fn a_lazy_value_rewritten_longer_and_shorter_reads_back_as_the_last() {
        let tmp = tempfile::tempdir().unwrap();
        let log = LogEngine::open(tmp.path()).unwrap();
        for value in [&b"12345678"[..], b"1234", b"123456789012", b"12", b"ab"] {
            log.put_meta_lazy("committed", value).unwrap();
            assert_eq!(log.get_meta("committed").unwrap().as_deref(), Some(value));
        }
        drop(log);
        let log = LogEngine::open(tmp.path()).unwrap();
        assert_eq!(
            log.get_meta("committed").unwrap().as_deref(),
            Some(&b"ab"[..])
        );
    }

    #[test]
    fn a_purge_in_two_halves_forgets_at_once_and_deletes_later() {
        let tmp = tempfile::tempdir().unwrap();
        let segments = |dir: &Path| {
            std::fs::read_dir(dir.join("log"))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".wal")
                })
                .count()
        };
        {
            let log = LogEngine::open(&tmp.path().join("log")).unwrap();
            log.wal().set_segment_bytes(64);
            log.append(&(1..=20).map(rec).collect::<Vec<_>>()).unwrap();
            for i in 21..=30 {
                log.append(&[rec(i)]).unwrap();
            }
            let before = segments(tmp.path());
            assert!(before > 3);
            let files = log.forget_through(25);
            assert!(!files.is_empty());
            // Forgotten at once; the files are still there.
            assert_eq!(
                log.read_range(0, 100).unwrap(),
                (26..=30).map(rec).collect::<Vec<_>>()
            );
            assert_eq!(segments(tmp.path()), before);
            // A crash here: a restart with the old marker finds the records again.
        }
        {
            let log = LogEngine::open(&tmp.path().join("log")).unwrap();
            assert_eq!(
                log.read_range(0, 100).unwrap(),
                (1..=30).map(rec).collect::<Vec<_>>()
            );
            let files = log.forget_through(25);
            let n = files.len();
            log.finish_purge(25, ("purged", b"25"), files).unwrap();
            assert!(n > 0);
            log.append(&[rec(31)]).unwrap();
        }
        let log = LogEngine::open(&tmp.path().join("log")).unwrap();
        assert_eq!(
            log.read_range(0, 100).unwrap(),
            (26..=31).map(rec).collect::<Vec<_>>()
        );
        assert_eq!(log.get_meta("purged").unwrap().as_deref(), Some(&b"25"[..]));
    }

    #[test]
    fn purge_everything_then_append_after_a_gap_reopens() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let log = LogEngine::open(tmp.path()).unwrap();
            log.append(&(1..=10).map(rec).collect::<Vec<_>>()).unwrap();
            // A snapshot up to 50 was installed: purge through 50, continue at 51.
            log.purge_through(50, ("purged", b"50")).unwrap();
            assert_eq!(log.last().unwrap(), None);
            log.append(&(51..=55).map(rec).collect::<Vec<_>>()).unwrap();
        }
        let log = LogEngine::open(tmp.path()).unwrap();
        assert_eq!(
            log.read_range(0, 100).unwrap(),
            (51..=55).map(rec).collect::<Vec<_>>()
        );
    }

    /// The log's own purge marker is replaced atomically and fsync'd: missing (or stale, as
    /// after a cut before the newer one was renamed into place) the log just starts earlier;
    /// damaged, start-up stops naming the file.
    #[test]
    fn the_purge_index_missing_keeps_the_records_and_damaged_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let log = LogEngine::open(tmp.path()).unwrap();
            log.append(&(1..=10).map(rec).collect::<Vec<_>>()).unwrap();
            log.purge_through(4, ("purged", b"4")).unwrap();
        }
        let marker = tmp.path().join("meta").join(PURGED_INDEX);
        let whole = std::fs::read(&marker).unwrap();
        std::fs::remove_file(&marker).unwrap();
        let log = LogEngine::open(tmp.path()).unwrap();
        assert_eq!(log.read_range(0, 100).unwrap().len(), 10);
        drop(log);
        for damaged in [
            Vec::new(),
            vec![0u8; whole.len()],
            whole[..whole.len() / 2].to_vec(),
        ] {
            std::fs::write(&marker, &damaged).unwrap();
            let err = LogEngine::open(tmp.path()).unwrap_err().to_string();
            assert!(err.contains(PURGED_INDEX), "{err}");
        }
        std::fs::write(&marker, &whole).unwrap();
        let log = LogEngine::open(tmp.path()).unwrap();
        assert_eq!(
            log.read_range(0, 100).unwrap(),
            (5..=10).map(rec).collect::<Vec<_>>()
        );
    }
}
