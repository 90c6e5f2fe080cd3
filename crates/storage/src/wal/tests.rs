//! Recovery tests: every torn tail is cut, every other damage is reported.

use super::*;

fn rec(i: u64) -> (u64, Vec<u8>) {
    (i, format!("entry number {i}").into_bytes())
}

fn all(wal: &Wal) -> Vec<(u64, Vec<u8>)> {
    wal.read_range(0, u64::MAX).unwrap()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

/// Ten appends of one record each, in one segment.
fn ten(dir: &Path) {
    let mut wal = Wal::open(dir, None).unwrap();
    for i in 1..=10 {
        wal.append(&[rec(i)]).unwrap();
    }
}

#[test]
fn append_read_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    ten(tmp.path());
    let wal = Wal::open(tmp.path(), None).unwrap();
    assert_eq!(all(&wal), (1..=10).map(rec).collect::<Vec<_>>());
    assert_eq!(wal.first_index(), Some(1));
    assert_eq!(wal.last_index(), Some(10));
}

#[test]
fn holes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(tmp.path(), None).unwrap();
    wal.append(&[rec(1)]).unwrap();
    assert!(wal.append(&[rec(3)]).is_err());
}

#[test]
fn every_torn_tail_of_the_last_record_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    ten(tmp.path());
    let path = segment_files(tmp.path()).pop().unwrap();
    let good = fs::read(&path).unwrap();
    let last_len = HEADER + rec(10).1.len();
    let start_of_last = good.len() - last_len;
    for cut in start_of_last..good.len() {
        fs::write(&path, &good[..cut]).unwrap();
        let wal = Wal::open(tmp.path(), None).unwrap();
        assert_eq!(
            all(&wal),
            (1..=9).map(rec).collect::<Vec<_>>(),
            "cut at {cut}"
        );
        assert_eq!(fs::metadata(&path).unwrap().len() as usize, start_of_last);
    }
}

#[test]
fn zeroes_and_garbage_after_the_last_record_are_cut() {
    let tmp = tempfile::tempdir().unwrap();
    ten(tmp.path());
    let path = segment_files(tmp.path()).pop().unwrap();
    let good = fs::read(&path).unwrap();
    for tail in [
        vec![0u8; 4096],
        vec![0xAB; 7],
        b"garbage that is not a record".to_vec(),
    ] {
        let mut bytes = good.clone();
        bytes.extend_from_slice(&tail);
        fs::write(&path, &bytes).unwrap();
        let mut wal = Wal::open(tmp.path(), None).unwrap();
        assert_eq!(all(&wal), (1..=10).map(rec).collect::<Vec<_>>());
        wal.append(&[rec(11)]).unwrap();
        drop(wal);
        let wal = Wal::open(tmp.path(), None).unwrap();
        assert_eq!(wal.last_index(), Some(11));
        fs::write(&path, &good).unwrap();
    }
}

#[test]
fn damage_before_the_last_record_is_reported_never_cut() {
    let tmp = tempfile::tempdir().unwrap();
    ten(tmp.path());
    let path = segment_files(tmp.path()).pop().unwrap();
    let good = fs::read(&path).unwrap();
    let last_len = HEADER + rec(10).1.len();
    // Every byte of every record but the last one, and the magic.
    for i in 0..good.len() - last_len {
        let mut bad = good.clone();
        bad[i] ^= 0x5A;
        fs::write(&path, &bad).unwrap();
        let err = Wal::open(tmp.path(), None).expect_err(&format!("flip at {i} must be reported"));
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(
            fs::metadata(&path).unwrap().len() as usize == good.len(),
            "nothing cut"
        );
    }
}

#[test]
fn segments_roll_truncate_and_purge() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut wal = Wal::open(tmp.path(), None).unwrap();
        wal.set_segment_bytes(100);
        for i in 1..=20 {
            wal.append(&[rec(i)]).unwrap();
        }
        assert!(segment_files(tmp.path()).len() > 3);
        wal.truncate_from(15).unwrap();
        assert_eq!(wal.last_index(), Some(14));
        wal.append(&[rec(15)]).unwrap();
        wal.drop_through(9);
        assert_eq!(wal.first_index(), Some(10));
    }
    let wal = Wal::open(tmp.path(), Some(9)).unwrap();
    assert_eq!(all(&wal), (10..=15).map(rec).collect::<Vec<_>>());
    // Damage in a segment that is not the last one is always reported.
    let files = segment_files(tmp.path());
    let first = &files[0];
    let mut bytes = fs::read(first).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    fs::write(first, &bytes).unwrap();
    assert!(Wal::open(tmp.path(), Some(9)).is_err());
}

#[test]
fn truncate_everything_then_append() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(tmp.path(), None).unwrap();
    wal.append(&(1..=5).map(rec).collect::<Vec<_>>()).unwrap();
    wal.truncate_from(1).unwrap();
    assert_eq!(wal.last_index(), None);
    wal.append(&[rec(1)]).unwrap();
    drop(wal);
    let wal = Wal::open(tmp.path(), None).unwrap();
    assert_eq!(all(&wal), vec![rec(1)]);
}

#[test]
fn bytes_after_counts_record_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(tmp.path(), None).unwrap();
    assert_eq!(wal.bytes_after(0), 0);
    wal.append(&(1..=4).map(rec).collect::<Vec<_>>()).unwrap();
    let one = (HEADER + rec(1).1.len()) as u64;
    assert_eq!(wal.bytes_after(0), 4 * one);
    assert_eq!(wal.bytes_after(2), 2 * one);
    assert_eq!(wal.bytes_after(4), 0);
    drop(wal);
    let wal = Wal::open(tmp.path(), None).unwrap();
    assert_eq!(wal.bytes_after(1), 3 * one, "recomputed on open");
}

#[test]
fn purge_marker_at_the_largest_index_purges_everything() {
    // Found by the wal_recovery fuzz target: `through + 1` overflowed.
    let tmp = tempfile::tempdir().unwrap();
    ten(tmp.path());
    let mut wal = Wal::open(tmp.path(), Some(u64::MAX)).unwrap();
    assert_eq!(wal.last_index(), None);
    assert_eq!(all(&wal), vec![]);
    wal.append(&[rec(1)]).unwrap();
    assert_eq!(all(&wal), vec![rec(1)]);
}

#[test]
fn index_u64_max_is_refused_and_read_as_damage() {
    // Found by the wal_recovery fuzz target: a record at u64::MAX made `last_index` overflow.
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(tmp.path(), None).unwrap();
    assert!(wal.append(&[(u64::MAX, b"x".to_vec())]).is_err());
    wal.append(&[(u64::MAX - 1, b"last".to_vec())]).unwrap();
    assert_eq!(wal.last_index(), Some(u64::MAX - 1));
    assert!(wal.append(&[(u64::MAX, b"x".to_vec())]).is_err());
    drop(wal);
    // A record claiming u64::MAX (valid checksum) at the end is a torn tail, cut on open.
    let path = segment_files(tmp.path()).pop().unwrap();
    let mut bytes = fs::read(&path).unwrap();
    let payload = b"forged";
    bytes.extend_from_slice(&((8 + payload.len()) as u32).to_le_bytes());
    bytes.extend_from_slice(&crc(u64::MAX, payload).to_le_bytes());
    bytes.extend_from_slice(&u64::MAX.to_le_bytes());
    bytes.extend_from_slice(payload);
    fs::write(&path, bytes).unwrap();
    let wal = Wal::open(tmp.path(), None).unwrap();
    assert_eq!(wal.last_index(), Some(u64::MAX - 1));
    assert_eq!(all(&wal), vec![(u64::MAX - 1, b"last".to_vec())]);
}
