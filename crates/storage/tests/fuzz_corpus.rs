//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the same harnesses
//! the cargo-fuzz targets run, so every input the fuzzer kept (and every crash it found) is
//! checked by a plain `cargo test`.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn replay(target: &str, harness: fn(&[u8])) {
    for (path, bytes) in corpus(target) {
        let outcome = std::panic::catch_unwind(|| harness(&bytes));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
    }
}

#[test]
fn wal_recovery_corpus() {
    replay("wal_recovery", statemanager_storage::fuzzing::wal_recovery);
}

#[test]
fn snapshot_reader_corpus() {
    replay(
        "snapshot_reader",
        statemanager_storage::fuzzing::snapshot_reader,
    );
}

/// Writes the seed inputs (a real segment and a real snapshot, made by the code) into the
/// corpus directories. Run by hand: `cargo test -p statemanager-storage --test fuzz_corpus
/// -- --ignored write_seeds`.
#[test]
#[ignore]
fn write_seeds() {
    use statemanager_storage::{LogEngine, SnapshotWriter};

    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
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
    let wal = corpus.join("wal_recovery");
    std::fs::create_dir_all(&wal).unwrap();
    let one = segment(1, 5);
    std::fs::write(wal.join("seed-one-segment"), [&[0u8][..], &one].concat()).unwrap();
    let mut purged = vec![1u8];
    purged.extend_from_slice(&2u64.to_le_bytes());
    purged.extend_from_slice(&one);
    std::fs::write(wal.join("seed-purged-through-2"), purged).unwrap();
    std::fs::write(
        wal.join("seed-torn-tail"),
        [&[0u8][..], &one[..one.len() - 7]].concat(),
    )
    .unwrap();
    std::fs::write(
        wal.join("seed-two-segments"),
        [&[0u8][..], &segment(1, 3), &segment(4, 6)].concat(),
    )
    .unwrap();

    let snap = corpus.join("snapshot_reader");
    std::fs::create_dir_all(&snap).unwrap();
    let path = tmp.path().join("current.snap");
    let mut w = SnapshotWriter::create(&path).unwrap();
    w.write_record(b"header: format 1, last log id, membership, high water, 2 items")
        .unwrap();
    w.write_record(b"item: PLUGIN#check_disk/last = {\"used\":42}")
        .unwrap();
    w.write_record(b"").unwrap();
    w.finish().unwrap();
    std::fs::copy(&path, snap.join("seed-three-records")).unwrap();
    let empty = tmp.path().join("empty.snap");
    SnapshotWriter::create(&empty).unwrap().finish().unwrap();
    std::fs::copy(&empty, snap.join("seed-empty")).unwrap();
}
