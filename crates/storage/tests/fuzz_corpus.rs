//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the same harnesses
//! the cargo-fuzz targets run, so every input the fuzzer kept (and every crash it found) is
//! checked by a plain `cargo test`; and checks the seeds the code makes.

#[path = "../../../fuzz/corpus_replay.rs"]
mod corpus_replay;

use statemanager_storage::fuzzing::{snapshot_reader, wal_recovery};
use statemanager_storage::{LogEngine, SnapshotWriter};

#[test]
fn wal_recovery_corpus() {
    corpus_replay::replay("wal_recovery", wal_recovery);
}

#[test]
fn snapshot_reader_corpus() {
    corpus_replay::replay("snapshot_reader", snapshot_reader);
}

/// Seeds: real segments (one, purged through 2, a torn tail, two segments, a recycled one)
/// made by the log engine; the first byte is the harness's purge-marker switch. (The
/// `seed-v1-*` and `seed-v2-*` files of the corpus are the same cases in the version 1 and 2
/// segment formats.)
#[test]
fn wal_recovery_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    let segment = |first: u64, last: u64| -> Vec<u8> {
        let dir = tmp.path().join(format!("log-{first}-{last}"));
        let log = LogEngine::open(&dir).unwrap();
        log.append(&[(first, b"entry: batch {now, limits, ops: [Store]}".to_vec())])
            .unwrap();
        let rest: Vec<(u64, Vec<u8>)> = (first + 1..=last)
            .map(|i| {
                (
                    i,
                    format!("entry {i}: a store of PLUGIN#check_disk/last").into_bytes(),
                )
            })
            .collect();
        log.append(&rest).unwrap();
        std::fs::read(dir.join(format!("{first:020}.wal"))).unwrap()
    };
    let one = segment(1, 5);
    let mut purged = vec![1u8];
    purged.extend_from_slice(&2u64.to_le_bytes());
    purged.extend_from_slice(&one);
    // A recycled segment: a new segment's record, then what the file held before (records of
    // another segment, whose checksums do not match under this segment's name).
    let new = segment(6, 6);
    let recycled = [&new[..], &one[new.len()..]].concat();
    let mut recycled_input = vec![1u8];
    recycled_input.extend_from_slice(&5u64.to_le_bytes());
    recycled_input.extend_from_slice(&recycled);
    // An append of three records whose first record's bytes never reached the disk while the
    // later ones did (a power cut keeps pages in any order): recovery cuts the whole append.
    let scattered = {
        let dir = tmp.path().join("scattered");
        let log = LogEngine::open(&dir).unwrap();
        log.append(&[(1, b"acknowledged".to_vec())]).unwrap();
        let path = dir.join(format!("{:020}.wal", 1));
        let before = std::fs::metadata(&path).unwrap().len() as usize;
        let rest: Vec<(u64, Vec<u8>)> = (2..=4).map(|i| (i, vec![b'x'; 100])).collect();
        log.append(&rest).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[before..before + 40].fill(0);
        [&[0u8][..], &bytes].concat()
    };
    let seeds = vec![
        ("scattered-append".to_string(), scattered),
        ("recycled-segment".to_string(), recycled_input),
        ("one-segment".to_string(), [&[0u8][..], &one].concat()),
        ("purged-through-2".to_string(), purged),
        (
            "torn-tail".to_string(),
            [&[0u8][..], &one[..one.len() - 7]].concat(),
        ),
        (
            "two-segments".to_string(),
            [&[0u8][..], &segment(1, 3), &segment(4, 6)].concat(),
        ),
    ];
    corpus_replay::check_seeds("wal_recovery", seeds, wal_recovery);
}

/// Seeds: a snapshot of three records and an empty one, written by the snapshot writer.
#[test]
fn snapshot_reader_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("current.snap");
    let mut w = SnapshotWriter::create(&path).unwrap();
    w.write_record(b"header: format 1, last log id, membership, high water, 2 items")
        .unwrap();
    w.write_record(b"item: PLUGIN#check_disk/last = {\"used\":42}")
        .unwrap();
    w.write_record(b"").unwrap();
    w.finish().unwrap();
    let empty = tmp.path().join("empty.snap");
    SnapshotWriter::create(&empty).unwrap().finish().unwrap();
    let seeds = vec![
        ("three-records".to_string(), std::fs::read(&path).unwrap()),
        ("empty".to_string(), std::fs::read(&empty).unwrap()),
    ];
    corpus_replay::check_seeds("snapshot_reader", seeds, snapshot_reader);
}
