//! Fuzz harnesses: the bodies of the `wal_recovery` and `snapshot_reader` cargo-fuzz targets
//! (`fuzz/fuzz_targets/`), kept here so the targets and the corpus replay test
//! (`tests/fuzz_corpus.rs`, run by plain `cargo test`) do exactly the same thing.
//!
//! A harness returns normally for every input the code handles (accepted or refused with an
//! error); it panics only when the code under test panics or breaks one of the invariants
//! checked here, which is what the fuzzer reports as a crash.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{decode_record, encode_record, LogEngine, SnapshotReader};

/// A scratch directory under the system temporary directory, removed on drop. (`TMPDIR`
/// chooses where: `fuzz/run.sh` points it at a tmpfs when there is one.)
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "statemanager-fuzz-{what}-{}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("invariant: the temporary directory is writable");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Reads every record of the log, checking that recovery left a readable, gap-free log.
fn read_all(engine: &LogEngine, strict: bool) -> Option<Vec<(u64, Vec<u8>)>> {
    let records = match engine.read_range(0, u64::MAX) {
        Ok(records) => records,
        Err(e) if strict => panic!("a log that recovered cannot be read back: {e}"),
        Err(_) => return None,
    };
    for pair in records.windows(2) {
        assert_eq!(
            pair[1].0,
            pair[0].0.wrapping_add(1),
            "recovered log has a gap"
        );
    }
    let last = engine.last();
    if strict {
        let last = last.unwrap_or_else(|e| panic!("last record unreadable after recovery: {e}"));
        assert_eq!(
            last.as_ref(),
            records.last(),
            "last() disagrees with the log"
        );
    }
    Some(records)
}

/// The `wal_recovery` target: recovers a log directory built from `data` the way the server
/// does at start-up ([`LogEngine::open`]), then checks what it recovered.
///
/// Input layout: one flags byte; when `flags & 1`, 8 bytes (LE) of the purge marker
/// (`meta/wal-purged-index`, framed as the engine frames it); the rest is one or more segment
/// files concatenated, split before each `SMWAL001`, `SMWAL002` or `SMWAL003` magic (bytes before the
/// first magic form a segment of their own). Each segment is named after the index of its first record,
/// as the writer names it.
///
/// Checked: recovery never panics; a log that recovers reads back whole, without gaps; it
/// recovers to the same records a second time (a cut torn tail stays cut); and a record
/// appended after recovery is there after the next recovery.
pub fn wal_recovery(data: &[u8]) {
    // The frame used for metadata values, on the raw input.
    let _ = decode_record(data, &|| "fuzz input".into());

    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut purged = None;
    if flags & 1 != 0 {
        let Some((word, tail)) = rest.split_first_chunk::<8>() else {
            return;
        };
        purged = Some(u64::from_le_bytes(*word));
        rest = tail;
    }
    let segments = split_segments(rest);
    if segments.len() > 16 {
        return;
    }

    let scratch = Scratch::new("wal");
    let dir = scratch.0.as_path();
    let meta = dir.join("meta");
    fs::create_dir_all(&meta).expect("invariant: the scratch directory is writable");
    if let Some(p) = purged {
        fs::write(
            meta.join("wal-purged-index"),
            encode_record(&p.to_le_bytes()),
        )
        .expect("invariant: the scratch directory is writable");
    }
    // Names as the writer gives them (the first record's index); `strict` stays true only if
    // every segment could be named so (otherwise the files are misnamed, another kind of
    // damage, and only the absence of panics is checked).
    let mut strict = true;
    let mut next_name = 1u64;
    for segment in &segments {
        let wanted = segment
            .get(16..24)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(next_name);
        let mut name = wanted;
        while segment_path(dir, name).exists() {
            name = name.wrapping_add(1);
        }
        if name != wanted || segment.len() < 24 {
            strict = false;
        }
        next_name = name.wrapping_add(1);
        fs::write(segment_path(dir, name), segment)
            .expect("invariant: the scratch directory is writable");
    }

    let Ok(engine) = LogEngine::open(dir) else {
        return;
    };
    let Some(first) = read_all(&engine, strict) else {
        return;
    };
    let _ = engine.bytes_after(first.first().map_or(0, |r| r.0));
    let _ = engine.disk_space();
    drop(engine);

    let again = match LogEngine::open(dir) {
        Ok(engine) => engine,
        Err(e) if strict => panic!("a recovered log does not recover a second time: {e}"),
        Err(_) => return,
    };
    let Some(second) = read_all(&again, strict) else {
        return;
    };
    if strict {
        assert_eq!(first, second, "the second recovery found other records");
    }

    // Continue the log as Raft would: after its last record, or after the purge marker.
    let next = match first.last() {
        Some((last, _)) => last.checked_add(1),
        None => purged.map_or(Some(1), |p| p.checked_add(1)),
    };
    // (`u64::MAX` is not a record index: the log refuses it.)
    let Some(next) = next.filter(|n| *n < u64::MAX) else {
        return;
    };
    let appended = (next, b"appended after recovery".to_vec());
    if let Err(e) = again.append(std::slice::from_ref(&appended)) {
        assert!(!strict, "append after recovery failed: {e}");
        return;
    }
    drop(again);
    let third = match LogEngine::open(dir) {
        Ok(engine) => engine,
        Err(e) if strict => panic!("the log does not recover after an append: {e}"),
        Err(_) => return,
    };
    if let Some(records) = read_all(&third, strict) {
        if strict {
            assert_eq!(
                records.last(),
                Some(&appended),
                "the appended record is lost"
            );
        }
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.wal"))
}

/// Splits concatenated segment files before each WAL magic (either version).
fn split_segments(bytes: &[u8]) -> Vec<&[u8]> {
    let magic = crate::wal::MAGIC;
    let mut starts: Vec<usize> = bytes
        .windows(magic.len())
        .enumerate()
        .filter(|(_, w)| w == magic || w == crate::wal::MAGIC_V2 || w == crate::wal::MAGIC_V3)
        .map(|(i, _)| i)
        .collect();
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    let mut out = Vec::with_capacity(starts.len());
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(bytes.len());
        out.push(&bytes[start..end]);
    }
    out
}

/// Counts the bytes a reader hands out.
struct Counting<'a> {
    input: &'a [u8],
    consumed: usize,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        self.consumed += n;
        Ok(n)
    }
}

/// The `snapshot_reader` target: decodes `data` as a snapshot file with the reader the server
/// uses ([`SnapshotReader`]), record by record, until the terminator or an error.
///
/// Checked: decoding never panics; when it succeeds, writing the records it returned in the
/// snapshot format gives back exactly the bytes it read (nothing was accepted that the writer
/// would not have written).
pub fn snapshot_reader(data: &[u8]) {
    let mut counting = Counting {
        input: data,
        consumed: 0,
    };
    let mut records = Vec::new();
    {
        let Ok(mut reader) = SnapshotReader::from_reader(&mut counting, "fuzz input") else {
            return;
        };
        loop {
            match reader.next_record() {
                Ok(Some(record)) => records.push(record),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(
            matches!(reader.next_record(), Ok(None)),
            "a finished snapshot yields more"
        );
    }
    let mut expected = crate::snapshot::MAGIC.to_vec();
    for record in &records {
        expected.extend_from_slice(&(record.len() as u32).to_le_bytes());
        expected.extend_from_slice(&crc32fast::hash(record).to_le_bytes());
        expected.extend_from_slice(record);
    }
    expected.extend_from_slice(&crate::snapshot::TERMINATOR.to_le_bytes());
    expected.extend_from_slice(&(records.len() as u64).to_le_bytes());
    assert_eq!(
        &data[..counting.consumed],
        expected.as_slice(),
        "the snapshot decoded to records that re-encode differently"
    );
}
