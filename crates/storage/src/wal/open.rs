//! Opening a log: reading its segments and recovering a torn tail (see the module docs).

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, OpenOptions};
use std::path::Path;

use super::format::*;
use super::*;

impl Wal {
    /// Opens (or creates) the log in `dir`, recovering as described in the module docs.
    /// Records at or below `purged` (already compacted into a snapshot) are skipped.
    pub fn open(dir: &Path, purged: Option<u64>) -> Result<Self, StorageError> {
        crate::data_dir::create_dir_durably(dir)?;
        let mut firsts = Vec::new();
        for entry in fs::read_dir(dir)
            .map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?
        {
            let entry =
                entry.map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".wal") {
                let first: u64 = stem.parse().map_err(|_| StorageError::Corrupt {
                    what: entry.path().display().to_string(),
                    detail: "segment file name is not an index".into(),
                })?;
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            segments: BTreeMap::new(),
            first: 0,
            locs: VecDeque::new(),
            segment_bytes: crate::failpoints::segment_bytes().unwrap_or(SEGMENT_BYTES),
            spares: Spares::default(),
            prepare_spares: true,
        };
        wal.collect_spares()?;
        let count = firsts.len();
        let mut last_index: Option<u64> = None;
        for (i, first) in firsts.into_iter().enumerate() {
            let is_last = i + 1 == count;
            let path = dir.join(segment_name(first));
            let corrupt = |detail: String| StorageError::Corrupt {
                what: path.display().to_string(),
                detail,
            };
            let buf = fs::read(&path)
                .map_err(|e| StorageError::io(format!("reading {}", path.display()), e))?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| StorageError::io(format!("opening {}", path.display()), e))?;
            let version = buf.get(..MAGIC.len()).and_then(version_of);
            let salt = version.and_then(|v| salt_of(v, first));
            let prefixed = version == Some(3);
            let Some(_) = version else {
                if is_last
                    && buf.len() < MAGIC.len()
                    && [MAGIC, MAGIC_V2, MAGIC_V3]
                        .iter()
                        .any(|m| m.starts_with(&buf))
                {
                    // Created, header not yet complete: a segment that never held a record.
                    drop(file);
                    fs::remove_file(&path)
                        .map_err(|e| StorageError::io(format!("removing {}", path.display()), e))?;
                    continue;
                }
                return Err(corrupt("not a statemanager log segment (bad magic)".into()));
            };
            let mut pos = MAGIC.len();
            while pos < buf.len() {
                match record_at(&buf, pos, salt)
                    .filter(|(_, payload, _)| !prefixed || payload.len() >= APPEND_PREFIX)
                {
                    Some((index, _payload, next)) => {
                        if let Some(last) = last_index {
                            let segment_start = pos == MAGIC.len();
                            let all_purged = purged.is_some_and(|p| last <= p);
                            if index != last + 1 {
                                if segment_start && all_purged {
                                    // A new segment after a snapshot install: what came before
                                    // was compacted away.
                                    wal.locs.clear();
                                } else {
                                    return Err(corrupt(format!(
                                        "record at offset {pos} has index {index}, expected {}",
                                        last + 1
                                    )));
                                }
                            }
                        }
                        let len = (next - pos - HEADER) as u32;
                        if wal.locs.is_empty() {
                            wal.first = index;
                        }
                        let cum_end = wal.total_bytes() + (next - pos) as u64;
                        wal.locs.push_back(Loc {
                            segment: first,
                            offset: pos as u64,
                            len,
                            cum_end,
                        });
                        last_index = Some(index);
                        pos = next;
                    }
                    None => {
                        // The record expected here, damaged or missing.
                        let next = last_index.map_or(first, |l| l.saturating_add(1));
                        // Valid records after it are left of the same unacknowledged append
                        // when they say their append began at or before it (version 3: a cut
                        // can keep a later page of an append and lose an earlier one); any
                        // other valid record after it means damage to what was acknowledged.
                        let torn_tail = is_last
                            && valid_records_after(&buf, pos + 1, last_index, first, salt).all(
                                |(_, payload)| {
                                    prefixed
                                        && append_first(&buf, &payload).is_some_and(|a| a <= next)
                                },
                            );
                        if torn_tail {
                            // A header naming the next index is an append a crash cut short;
                            // anything else is what a recycled segment held before.
                            if salt.is_none() || index_at(&buf, pos) == Some(next) {
                                tracing::warn!(
                                    "discarding a torn tail of {} bytes at offset {pos} of {}: an append interrupted by a crash, never acknowledged",
                                    buf.len() - pos,
                                    path.display()
                                );
                            } else {
                                tracing::info!(
                                    "the log ends at offset {pos} of {} (the {} bytes after it are a recycled segment's old content)",
                                    path.display(),
                                    buf.len() - pos
                                );
                            }
                            file.set_len(pos as u64)
                                .and_then(|_| file.sync_all())
                                .map_err(|e| {
                                    StorageError::io(format!("truncating {}", path.display()), e)
                                })?;
                            break;
                        }
                        return Err(corrupt(format!(
                            "damaged record at offset {pos} with valid records after it"
                        )));
                    }
                }
            }
            let size = file.metadata().map(|m| m.len()).unwrap_or(pos as u64);
            wal.segments.insert(
                first,
                Segment {
                    path,
                    file,
                    size,
                    salt,
                    prefixed,
                },
            );
        }
        if let Some(purged) = purged {
            wal.drop_through(purged);
        }
        // What a killed process wrote but did not fsync is in the page cache and was read back
        // above as if it were durable: make it so before anything builds on it.
        for segment in wal.segments.values() {
            segment
                .file
                .sync_data()
                .map_err(|e| StorageError::io(format!("syncing {}", segment.path.display()), e))?;
        }
        crate::data_dir::sync_dir(dir)?;
        Ok(wal)
    }
}
