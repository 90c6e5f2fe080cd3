//! The write-ahead log: the Raft log as segment files of checksummed records.
//!
//! ```text
//! log/00000000000000000001.wal     segment: named by the index of its first record
//!   "SMWAL003"                      8-byte magic and format version (1 and 2 still read)
//!   { len: u32 LE, crc32: u32 LE, index: u64 LE, append_first: u64 LE, payload }*
//! log/spare-<n>.wal-spare          a purged or prepared segment kept for reuse (not part of
//!                                  the log)
//! ```
//!
//! `len` counts everything after `crc32`. `crc32` covers `salt ‖ index ‖ append_first ‖
//! payload`, where `salt` is the segment's name (its first index) XOR a version 3 constant.
//! `append_first` is the index of the first record of the append the record was written by.
//! Version 2 (`SMWAL002`) records have no `append_first` and are salted with the name alone;
//! version 1 (`SMWAL001`) records are unsalted. Indexes are below `u64::MAX` (so the end of a
//! range, `last + 1`, always exists); a record claiming `u64::MAX` is damaged. Appends write
//! their records and `fdatasync` before they return. A new segment starts once the current
//! one passes [`SEGMENT_BYTES`].
//!
//! Purged segments are recycled, and when none is kept one is prepared ahead, zero-filled
//! (see [`spares`]): up to [`MAX_SPARES`] are renamed to spares, and a new
//! segment is a spare renamed to its first index when one is there (its magic rewritten as
//! version 3). `fdatasync` after an overwrite of blocks a file already has skips the journal
//! commit that growing a file needs (three writers on this machine's ext4: median 475 → 300
//! µs; a 3-node cluster: 8.7 % more stores/s). The old records left in a recycled file cannot
//! be taken for new ones: their checksums were made with the old name, so under the new one
//! they fail like any damage (the rename changes the salt atomically), and a segment that is
//! left for the next is cut to its end first, so only the last segment ever holds old bytes
//! after its records.
//!
//! Recovery tells a torn tail from corruption. A power cut can only damage the last append
//! (every earlier one was fsync'd before the next began), and it may keep any of that
//! append's pages and lose others, in no order. So a bad record is a torn tail only if it is
//! in the last segment and every valid record after it says (`append_first`) that its append
//! began at or before the bad record: then that append was never acknowledged and the tail is
//! cut off. A bad record anywhere else, or followed by a valid record of a later append (or,
//! in version 1 and 2 segments, by any valid record), stops start-up with
//! [`StorageError::Corrupt`] naming the file and offset: nothing acknowledged is dropped
//! silently. (Why not fjall's journal: its reader truncates at the first undecodable entry
//! wherever it is, which would silently drop acknowledged entries after one damaged byte; see
//! docs/design.md.)

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::data_dir::sync_dir;
use crate::StorageError;

mod format;
mod open;
mod spares;

use format::*;

pub(crate) use format::{MAGIC, MAGIC_V2, MAGIC_V3};
use spares::recyclable;
pub use spares::Spares;

/// Purged segments kept for reuse as new segments.
pub const MAX_SPARES: usize = 2;
/// Suffix of a spare segment file.
const SPARE_SUFFIX: &str = ".wal-spare";
/// A segment is closed and a new one started once it passes this size.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u32,
    /// Record bytes appended to the log up to and including this record (since open).
    cum_end: u64,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    file: File,
    size: u64,
    /// The checksum salt: the segment's first index (version 2; XOR [`V3_SALT`] for version
    /// 3), `None` for version 1.
    salt: Option<u64>,
    /// Whether records carry their append's first index (version 3).
    prefixed: bool,
}

/// The log: segments on disk, and an in-memory index of where each record is.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    segments: BTreeMap<u64, Segment>,
    /// Index of the first record in `locs`.
    first: u64,
    locs: VecDeque<Loc>,
    segment_bytes: u64,
    spares: Spares,
    /// Whether a spare is prepared ahead when none is kept (off in tests that count spares).
    prepare_spares: bool,
}
impl Wal {
    /// Index of the first record held, if any.
    pub fn first_index(&self) -> Option<u64> {
        (!self.locs.is_empty()).then_some(self.first)
    }

    /// Whether the next append starts a segment (an empty log, or a full last segment): file
    /// creation or recycling and directory fsyncs on top of the append's own.
    pub fn next_append_starts_segment(&self) -> bool {
        self.locs.is_empty()
            || self
                .segments
                .last_key_value()
                .is_none_or(|(_, s)| s.size >= self.segment_bytes)
    }

    /// Index of the last record held, if any.
    pub fn last_index(&self) -> Option<u64> {
        (!self.locs.is_empty()).then(|| self.first + self.locs.len() as u64 - 1)
    }

    /// Finds the spares a previous run kept (version 2 ones are reused, others deleted).
    fn collect_spares(&mut self) -> Result<(), StorageError> {
        let listing = fs::read_dir(&self.dir)
            .map_err(|e| StorageError::io(format!("listing {}", self.dir.display()), e))?;
        for entry in listing.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(spares::PREPARING_SUFFIX) {
                // A preparation a crash cut short.
                let path = entry.path();
                fs::remove_file(&path)
                    .map_err(|e| StorageError::io(format!("removing {}", path.display()), e))?;
                continue;
            }
            if !name.ends_with(SPARE_SUFFIX) {
                continue;
            }
            let path = entry.path();
            if recyclable(&path) && self.spares.lock().len() < MAX_SPARES {
                self.spares.lock().push(path);
            } else {
                fs::remove_file(&path)
                    .map_err(|e| StorageError::io(format!("removing {}", path.display()), e))?;
            }
        }
        Ok(())
    }

    /// The spare segments (see [`Spares`]).
    pub fn spares(&self) -> Spares {
        self.spares.clone()
    }

    /// A recycled spare as the new segment `path`, when one is there.
    fn reuse_spare(&mut self, first: u64, path: &Path) -> Option<Segment> {
        let spare = self.spares.take()?;
        // The magic is rewritten as version 3; the first append's fdatasync makes it durable
        // with the records. Should a cut lose it, the segment reads as the version it was,
        // its new records fail their checksum under that version's salt (never taken for
        // records of the other format), and it is cut to its magic like any torn tail.
        let reused = fs::rename(&spare, path)
            .and_then(|_| OpenOptions::new().read(true).write(true).open(path))
            .and_then(|file| file.write_all_at(MAGIC_V3, 0).map(|_| file));
        match reused {
            Ok(file) => Some(Segment {
                path: path.to_path_buf(),
                file,
                size: MAGIC_V3.len() as u64,
                salt: salt_of(3, first),
                prefixed: true,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "could not reuse a spare log segment; creating one");
                let _ = fs::remove_file(&spare);
                None
            }
        }
    }

    fn new_segment(&mut self, first: u64) -> Result<(), StorageError> {
        let path = self.dir.join(segment_name(first));
        // The segment that was the last one is left for good: its old content after its
        // records (if it was recycled) is cut first, so only a last segment ever has any.
        if let Some((_, last)) = self.segments.iter_mut().next_back() {
            let len = last.file.metadata().map(|m| m.len()).unwrap_or(last.size);
            if len > last.size {
                last.file
                    .set_len(last.size)
                    .and_then(|_| last.file.sync_all())
                    .map_err(|e| {
                        StorageError::io(format!("truncating {}", last.path.display()), e)
                    })?;
            }
        }
        if let Some(segment) = self.reuse_spare(first, &path) {
            // The rename is made durable before the segment's first record is.
            sync_dir(&self.dir)?;
            self.segments.insert(first, segment);
            return Ok(());
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| StorageError::io(format!("creating {}", path.display()), e))?;
        file.write_all(MAGIC_V3)
            .and_then(|_| file.sync_all())
            .map_err(|e| StorageError::io(format!("writing {}", path.display()), e))?;
        sync_dir(&self.dir)?;
        self.segments.insert(
            first,
            Segment {
                path,
                file,
                size: MAGIC_V3.len() as u64,
                salt: salt_of(3, first),
                prefixed: true,
            },
        );
        Ok(())
    }

    /// Appends records, which must continue the log (the first one's index is the last
    /// index + 1, or anything when the log is empty), and fsyncs before returning.
    pub fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), StorageError> {
        let Some((first_new, _)) = records.first() else {
            return Ok(());
        };
        if let Some((index, _)) = records.iter().find(|(index, _)| *index > MAX_INDEX) {
            return Err(StorageError::Corrupt {
                what: self.dir.display().to_string(),
                detail: format!("record index {index} is out of range"),
            });
        }
        match self.last_index() {
            Some(last) if *first_new != last + 1 => {
                return Err(StorageError::Corrupt {
                    what: self.dir.display().to_string(),
                    detail: format!("append at index {first_new} after {last} would leave a hole"),
                })
            }
            None => {
                self.first = *first_new;
            }
            _ => {}
        }
        if self.locs.is_empty() {
            // An empty log (new, truncated, or purged through a snapshot): whatever segments
            // remain hold only compacted records, and the next index may not follow them.
            let old: Vec<u64> = self.segments.keys().copied().collect();
            for first in old {
                self.remove_segment(first)?;
            }
            self.new_segment(*first_new)?;
        } else if self.next_append_starts_segment() {
            self.new_segment(*first_new)?;
        }
        let (&seg_first, segment) = self
            .segments
            .iter_mut()
            .next_back()
            .expect("invariant: a segment exists after new_segment");
        let prefix_len = if segment.prefixed { APPEND_PREFIX } else { 0 };
        let prefix = first_new.to_le_bytes();
        let prefix = &prefix[..prefix_len];
        let mut buf = Vec::with_capacity(
            records
                .iter()
                .map(|(_, p)| p.len() + prefix_len + HEADER)
                .sum(),
        );
        let mut locs = Vec::with_capacity(records.len());
        for (index, payload) in records {
            let stored = payload.len() + prefix_len;
            let len = u32::try_from(stored + 8)
                .ok()
                .filter(|l| (*l as usize) <= MAX_RECORD)
                .ok_or_else(|| StorageError::Corrupt {
                    what: segment.path.display().to_string(),
                    detail: format!("record of {} bytes is too large", payload.len()),
                })?;
            let base = self.locs.back().map_or(0, |l| l.cum_end);
            locs.push(Loc {
                segment: seg_first,
                offset: segment.size + buf.len() as u64,
                len: stored as u32,
                cum_end: base + (buf.len() + HEADER + stored) as u64,
            });
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(
                &crc_parts(segment.salt, *index, &[prefix, payload]).to_le_bytes(),
            );
            buf.extend_from_slice(&index.to_le_bytes());
            buf.extend_from_slice(prefix);
            buf.extend_from_slice(payload);
        }
        segment
            .file
            .write_all_at(&buf, segment.size)
            .and_then(|_| crate::failpoints::log_fsync())
            .and_then(|_| {
                if crate::failpoints::skip_log_sync() {
                    return Ok(());
                }
                segment.file.sync_data()
            })
            .map_err(|e| StorageError::io(format!("appending to {}", segment.path.display()), e))?;
        let half = self.segment_bytes / 2;
        let crossed_half = segment.size < half && segment.size + buf.len() as u64 >= half;
        segment.size += buf.len() as u64;
        self.locs.extend(locs);
        if crossed_half && self.prepare_spares {
            // The next segment will want a spare (see `spares`).
            self.spares.prepare_if_none(&self.dir, self.segment_bytes);
        }
        Ok(())
    }

    fn read_at(&self, index: u64, loc: Loc) -> Result<Vec<u8>, StorageError> {
        let segment = self
            .segments
            .get(&loc.segment)
            .ok_or_else(|| StorageError::Corrupt {
                what: self.dir.display().to_string(),
                detail: format!("segment of record {index} is missing"),
            })?;
        let skip = if segment.prefixed { APPEND_PREFIX } else { 0 };
        let mut buf = vec![0u8; HEADER + loc.len as usize];
        segment
            .file
            .read_exact_at(&mut buf, loc.offset)
            .map_err(|e| StorageError::io(format!("reading {}", segment.path.display()), e))?;
        match record_at(&buf, 0, segment.salt) {
            Some((i, payload, _)) if i == index && payload.len() >= skip => {
                Ok(buf[payload.start + skip..payload.end].to_vec())
            }
            _ => Err(StorageError::Corrupt {
                what: segment.path.display().to_string(),
                detail: format!("record {index} at offset {} fails its checksum", loc.offset),
            }),
        }
    }

    /// The records with `start <= index < end`, checking each checksum.
    pub fn read_range(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let Some(last) = self.last_index() else {
            return Ok(Vec::new());
        };
        let lo = start.max(self.first);
        let hi = end.min(last.saturating_add(1));
        (lo..hi)
            .map(|index| {
                let loc = self.locs[(index - self.first) as usize];
                Ok((index, self.read_at(index, loc)?))
            })
            .collect()
    }

    /// Deletes every record with `index >= from`, durably.
    pub fn truncate_from(&mut self, from: u64) -> Result<(), StorageError> {
        let Some(last) = self.last_index() else {
            return Ok(());
        };
        if from > last {
            return Ok(());
        }
        if from <= self.first {
            let firsts: Vec<u64> = self.segments.keys().copied().collect();
            for first in firsts {
                self.remove_segment(first)?;
            }
            self.locs.clear();
            return sync_dir(&self.dir);
        }
        let cut = self.locs[(from - self.first) as usize];
        let later: Vec<u64> = self
            .segments
            .range(cut.segment + 1..)
            .map(|(k, _)| *k)
            .collect();
        let removes_segments = !later.is_empty();
        for first in later {
            self.remove_segment(first)?;
        }
        if removes_segments {
            // The removals are made durable before the segment the cut falls in is shortened:
            // a crash between the two must not leave that segment shortened and a later one
            // back (a hole, which recovery refuses as damage). Losing the shortening instead
            // leaves the records up to that segment's end, as before the truncation: they
            // were never committed, and the next leader's appends truncate them again.
            sync_dir(&self.dir)?;
        }
        let segment = self
            .segments
            .get_mut(&cut.segment)
            .expect("invariant: the segment of an indexed record exists");
        segment
            .file
            .set_len(cut.offset)
            .and_then(|_| segment.file.sync_all())
            .map_err(|e| StorageError::io(format!("truncating {}", segment.path.display()), e))?;
        segment.size = cut.offset;
        self.locs.truncate((from - self.first) as usize);
        sync_dir(&self.dir)
    }

    fn remove_segment(&mut self, first: u64) -> Result<(), StorageError> {
        if let Some(segment) = self.segments.remove(&first) {
            fs::remove_file(&segment.path)
                .map_err(|e| StorageError::io(format!("removing {}", segment.path.display()), e))?;
        }
        Ok(())
    }

    /// Forgets records with `index <= through` and deletes segments that hold only such
    /// records (the caller has made the purge marker durable first).
    pub fn drop_through(&mut self, through: u64) {
        for path in self.forget_through(through) {
            let _ = fs::remove_file(path);
        }
    }

    /// Forgets records with `index <= through` in memory and closes the segments that hold
    /// only such records; returns their paths, for the caller to delete once the purge marker
    /// is durable (deleting a large file can take tens of milliseconds on a busy ext4, which
    /// must not happen under the log's lock). A crash before they are deleted leaves them for
    /// recovery, which skips purged records.
    pub fn forget_through(&mut self, through: u64) -> Vec<PathBuf> {
        if self.locs.is_empty() || through < self.first {
            return Vec::new();
        }
        let n = ((through - self.first + 1) as usize).min(self.locs.len());
        self.locs.drain(..n);
        // Saturating: a purge marker at the largest index purges everything.
        self.first = through.saturating_add(1);
        // A segment can go when the next one starts at or below the new first index (all its
        // records are purged). The newest segment stays: appends go there.
        let firsts: Vec<u64> = self.segments.keys().copied().collect();
        let mut unused = Vec::new();
        for pair in firsts.windows(2) {
            if pair[1] <= self.first {
                if let Some(segment) = self.segments.remove(&pair[0]) {
                    unused.push(segment.path);
                }
            }
        }
        unused
    }

    /// Record bytes held in the log through its last record (a running total, for deciding
    /// when to snapshot).
    fn total_bytes(&self) -> u64 {
        self.locs.back().map_or(0, |l| l.cum_end)
    }

    /// Bytes of the records with an index above `index`.
    pub fn bytes_after(&self, index: u64) -> u64 {
        let total = self.total_bytes();
        if self.locs.is_empty() || index < self.first {
            return total
                - self
                    .locs
                    .front()
                    .map_or(0, |l| l.cum_end - (HEADER as u64 + l.len as u64));
        }
        match self.locs.get((index - self.first) as usize) {
            Some(loc) => total - loc.cum_end,
            None => 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn set_segment_bytes(&mut self, bytes: u64) {
        self.segment_bytes = bytes;
    }

    #[cfg(test)]
    pub(crate) fn set_prepare_spares(&mut self, on: bool) {
        self.prepare_spares = on;
    }

    /// Bytes the segments occupy (their records), and the spares kept for reuse.
    pub fn disk_bytes(&self) -> u64 {
        let spares: u64 = self
            .spares
            .lock()
            .iter()
            .filter_map(|p| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        self.segments.values().map(|s| s.size).sum::<u64>() + spares
    }
}

#[cfg(test)]
mod tests;
