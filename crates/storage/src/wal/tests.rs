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
    let last_len = HEADER + APPEND_PREFIX + rec(10).1.len();
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
    let last_len = HEADER + APPEND_PREFIX + rec(10).1.len();
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
    let one = (HEADER + APPEND_PREFIX + rec(1).1.len()) as u64;
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
    bytes.extend_from_slice(&crc(Some(u64::MAX - 1), u64::MAX, payload).to_le_bytes());
    bytes.extend_from_slice(&u64::MAX.to_le_bytes());
    bytes.extend_from_slice(payload);
    fs::write(&path, bytes).unwrap();
    let wal = Wal::open(tmp.path(), None).unwrap();
    assert_eq!(wal.last_index(), Some(u64::MAX - 1));
    assert_eq!(all(&wal), vec![(u64::MAX - 1, b"last".to_vec())]);
}

/// Spare files in `dir`.
fn spare_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(SPARE_SUFFIX))
        .collect();
    v.sort();
    v
}

/// A version 1 segment (unsalted checksums), as earlier versions wrote it.
fn v1_segment(records: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    for (index, payload) in records {
        bytes.extend_from_slice(&((payload.len() + 8) as u32).to_le_bytes());
        bytes.extend_from_slice(&crc(None, *index, payload).to_le_bytes());
        bytes.extend_from_slice(&index.to_le_bytes());
        bytes.extend_from_slice(payload);
    }
    bytes
}

/// A version 2 segment named `first` (salted checksums, no append prefix), as the previous
/// release wrote it.
fn v2_segment(first: u64, records: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut bytes = MAGIC_V2.to_vec();
    for (index, payload) in records {
        bytes.extend_from_slice(&((payload.len() + 8) as u32).to_le_bytes());
        bytes.extend_from_slice(&crc(Some(first), *index, payload).to_le_bytes());
        bytes.extend_from_slice(&index.to_le_bytes());
        bytes.extend_from_slice(payload);
    }
    bytes
}

#[test]
fn version_2_segments_are_read_continued_and_followed_by_version_3() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(
        tmp.path().join(segment_name(1)),
        v2_segment(1, &(1..=5).map(rec).collect::<Vec<_>>()),
    )
    .unwrap();
    let mut wal = Wal::open(tmp.path(), None).unwrap();
    assert_eq!(all(&wal), (1..=5).map(rec).collect::<Vec<_>>());
    wal.append(&[rec(6)]).unwrap();
    wal.set_segment_bytes(64);
    wal.append(&[rec(7)]).unwrap();
    drop(wal);
    let wal = Wal::open(tmp.path(), None).unwrap();
    assert_eq!(all(&wal), (1..=7).map(rec).collect::<Vec<_>>());
    let files = segment_files(tmp.path());
    assert_eq!(&fs::read(&files[0]).unwrap()[..8], MAGIC_V2);
    assert_eq!(&fs::read(&files[1]).unwrap()[..8], MAGIC_V3);
}

/// Five appends of one record, then one append of 15 records of 3,000 bytes (11 pages).
fn one_big_append(dir: &Path) -> (PathBuf, Vec<usize>) {
    let mut wal = Wal::open(dir, None).unwrap();
    for i in 1..=5 {
        wal.append(&[rec(i)]).unwrap();
    }
    let big: Vec<(u64, Vec<u8>)> = (6..=20).map(|i| (i, vec![i as u8; 3000])).collect();
    wal.append(&big).unwrap();
    let offsets = (6..=20)
        .map(|i| wal.locs[(i - wal.first) as usize].offset as usize)
        .collect();
    (segment_files(dir).pop().unwrap(), offsets)
}

#[test]
fn an_append_whose_later_pages_reached_the_disk_and_earlier_ones_not_is_cut_whole() {
    // A power cut during an append's fdatasync can keep any subset of its pages: here the
    // page holding record 6 (the append's first) is lost (zeros, or the old bytes) and the
    // pages after it survived. Records 7..=20 check out but belong to the same append, which
    // was never acknowledged: the tail is cut at record 6, start-up goes on.
    for lost in [6u64, 9, 14] {
        for filler in [0u8, 0xA5] {
            let tmp = tempfile::tempdir().unwrap();
            let (path, offsets) = one_big_append(tmp.path());
            let mut bytes = fs::read(&path).unwrap();
            let at = offsets[(lost - 6) as usize];
            let page = at - at % 4096;
            let end = (page + 4096).min(bytes.len());
            for b in &mut bytes[at..end] {
                *b = filler;
            }
            fs::write(&path, &bytes).unwrap();
            let wal = Wal::open(tmp.path(), None)
                .unwrap_or_else(|e| panic!("record {lost} lost, filler {filler}: {e}"));
            let kept: Vec<u64> = all(&wal).iter().map(|(i, _)| *i).collect();
            assert_eq!(kept, (1..lost).collect::<Vec<_>>(), "record {lost} lost");
            assert_eq!(
                fs::metadata(&path).unwrap().len() as usize,
                at,
                "cut at the damage"
            );
        }
    }
}

#[test]
fn damage_in_an_acknowledged_append_followed_by_a_later_append_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, offsets) = one_big_append(tmp.path());
    {
        let mut wal = Wal::open(tmp.path(), None).unwrap();
        wal.append(&[rec(21)]).unwrap();
    }
    let mut bytes = fs::read(&path).unwrap();
    bytes[offsets[3] + 20] ^= 0x10; // inside record 9, acknowledged with 6..=20
    fs::write(&path, &bytes).unwrap();
    let err = Wal::open(tmp.path(), None).expect_err("damage before a later append");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
}

#[test]
fn version_1_segments_are_read_and_continued() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(
        tmp.path().join(segment_name(1)),
        v1_segment(&(1..=5).map(rec).collect::<Vec<_>>()),
    )
    .unwrap();
    let mut wal = Wal::open(tmp.path(), None).unwrap();
    assert_eq!(all(&wal), (1..=5).map(rec).collect::<Vec<_>>());
    wal.append(&[rec(6)]).unwrap();
    drop(wal);
    let wal = Wal::open(tmp.path(), None).unwrap();
    assert_eq!(all(&wal), (1..=6).map(rec).collect::<Vec<_>>());
    // Still a version 1 segment; a version 1 segment is never recycled.
    let path = tmp.path().join(segment_name(1));
    assert_eq!(&fs::read(&path).unwrap()[..8], MAGIC);
    let spares = wal.spares();
    drop(wal);
    spares.recycle_or_remove(&path).unwrap();
    assert!(!path.exists() && spare_files(tmp.path()).is_empty());
}

#[test]
fn purged_segments_are_recycled_and_their_old_records_never_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(tmp.path(), None).unwrap();
    wal.set_segment_bytes(300);
    wal.set_prepare_spares(false);
    let big = |i: u64| (i, vec![i as u8; 60 + (i as usize % 7)]);
    for i in 1..=40 {
        wal.append(&[big(i)]).unwrap();
    }
    let files = wal.forget_through(30);
    assert!(files.len() > MAX_SPARES, "{files:?}");
    let spares = wal.spares();
    for f in &files {
        spares.recycle_or_remove(f).unwrap();
    }
    assert_eq!(spare_files(tmp.path()).len(), MAX_SPARES);
    // The next segments are the spares (they keep their size: blocks already written).
    let before = segment_files(tmp.path());
    for i in 41..=60 {
        wal.append(&[big(i)]).unwrap();
    }
    assert!(spare_files(tmp.path()).is_empty(), "spares reused");
    let after = segment_files(tmp.path());
    assert!(after.len() > before.len());
    // Every segment but the last ends exactly at its records: old content was cut.
    drop(wal);
    let wal = Wal::open(tmp.path(), Some(30)).unwrap();
    assert_eq!(all(&wal), (31..=60).map(big).collect::<Vec<_>>());
    drop(wal);

    // A recycled segment holding one new record: the old records after it are not read,
    // also after another restart; appends go on after the new record.
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(tmp.path(), None).unwrap();
    wal.set_segment_bytes(300);
    wal.set_prepare_spares(false);
    for i in 1..=12 {
        wal.append(&[big(i)]).unwrap();
    }
    let spares = wal.spares();
    for f in wal.forget_through(8) {
        spares.recycle_or_remove(&f).unwrap();
    }
    let mut next = 13;
    while spare_files(tmp.path()).len() == MAX_SPARES {
        wal.append(&[big(next)]).unwrap();
        next += 1;
    }
    let last = segment_files(tmp.path()).pop().unwrap();
    let len_with_old_content = fs::metadata(&last).unwrap().len();
    drop(wal);
    let mut wal = Wal::open(tmp.path(), Some(8)).unwrap();
    assert_eq!(all(&wal), (9..next).map(big).collect::<Vec<_>>());
    assert!(fs::metadata(&last).unwrap().len() < len_with_old_content);
    wal.append(&[big(next)]).unwrap();
    drop(wal);
    let wal = Wal::open(tmp.path(), Some(8)).unwrap();
    assert_eq!(all(&wal), (9..=next).map(big).collect::<Vec<_>>());
}

#[test]
fn damage_in_a_recycled_segment_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(tmp.path(), None).unwrap();
    wal.set_segment_bytes(400);
    wal.set_prepare_spares(false);
    let big = |i: u64| (i, vec![i as u8; 70]);
    for i in 1..=20 {
        wal.append(&[big(i)]).unwrap();
    }
    let spares = wal.spares();
    for f in wal.forget_through(15) {
        spares.recycle_or_remove(&f).unwrap();
    }
    // Two records into a recycled segment, then a flipped byte in the first of them.
    let mut next = 21;
    while spare_files(tmp.path()).len() == MAX_SPARES {
        wal.append(&[big(next)]).unwrap();
        next += 1;
    }
    wal.append(&[big(next)]).unwrap();
    drop(wal);
    let last = segment_files(tmp.path()).pop().unwrap();
    let good = fs::read(&last).unwrap();
    let mut bad = good.clone();
    bad[MAGIC_V2.len() + HEADER + 3] ^= 0x40;
    fs::write(&last, &bad).unwrap();
    let err = Wal::open(tmp.path(), Some(15)).expect_err("damage before a valid record");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
}

#[test]
fn spares_left_by_a_previous_run_are_reused_or_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join(format!("spare-1-0{SPARE_SUFFIX}"));
    let mut bytes = MAGIC_V2.to_vec();
    bytes.extend(std::iter::repeat_n(0xEEu8, 5000));
    fs::write(&good, &bytes).unwrap();
    let old = tmp.path().join(format!("spare-1-1{SPARE_SUFFIX}"));
    fs::write(&old, v1_segment(&[rec(1)])).unwrap();
    let junk = tmp.path().join(format!("spare-1-2{SPARE_SUFFIX}"));
    fs::write(&junk, b"not a segment").unwrap();
    let mut wal = Wal::open(tmp.path(), None).unwrap();
    assert_eq!(spare_files(tmp.path()), vec![good.clone()]);
    wal.append(&[rec(1), rec(2)]).unwrap();
    assert!(spare_files(tmp.path()).is_empty());
    drop(wal);
    let wal = Wal::open(tmp.path(), None).unwrap();
    assert_eq!(all(&wal), vec![rec(1), rec(2)]);
}

#[test]
fn a_large_old_tail_is_recognised_quickly() {
    // Old content after the last record is checked for later records index-first, so a big
    // recycled tail of random bytes costs a scan, not a checksum at every offset.
    let tmp = tempfile::tempdir().unwrap();
    ten(tmp.path());
    let path = segment_files(tmp.path()).pop().unwrap();
    let mut bytes = fs::read(&path).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..(8 << 20) / 8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    fs::write(&path, &bytes).unwrap();
    let started = std::time::Instant::now();
    let wal = Wal::open(tmp.path(), None).unwrap();
    assert_eq!(all(&wal), (1..=10).map(rec).collect::<Vec<_>>());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// Waits (at most 10 s) until `n` spare files are in `dir`.
fn wait_for_spares(dir: &Path, n: usize) {
    for _ in 0..1000 {
        if spare_files(dir).len() >= n {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!(
        "no spare after 10 s: {:?}",
        fs::read_dir(dir).unwrap().collect::<Vec<_>>()
    );
}

#[test]
fn a_zeroed_spare_is_prepared_once_a_segment_is_half_full_and_becomes_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(tmp.path(), None).unwrap();
    wal.set_segment_bytes(4096);
    let big = |i: u64| (i, vec![i as u8; 500]);
    let mut next = 1;
    // Below half of the first segment: nothing prepared.
    while wal.total_bytes() + 600 < 2048 {
        wal.append(&[big(next)]).unwrap();
        next += 1;
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(spare_files(tmp.path()).is_empty());
    // Past half: one spare, of the segment size, version 3 magic then zeros.
    wal.append(&[big(next)]).unwrap();
    next += 1;
    wait_for_spares(tmp.path(), 1);
    let spare = spare_files(tmp.path()).pop().unwrap();
    let bytes = fs::read(&spare).unwrap();
    assert_eq!(bytes.len(), 4096);
    assert_eq!(&bytes[..8], MAGIC_V3);
    assert!(bytes[8..].iter().all(|&b| b == 0));
    // The next segment is that spare: written over, never grown past its records' need.
    let before = segment_files(tmp.path()).len();
    while segment_files(tmp.path()).len() == before {
        wal.append(&[big(next)]).unwrap();
        next += 1;
    }
    assert!(!spare.exists(), "the spare became the new segment");
    let newest = segment_files(tmp.path()).pop().unwrap();
    assert_eq!(fs::metadata(&newest).unwrap().len(), 4096);
    // Its zeros after the records are not records, also after a reopen; appends go on.
    drop(wal);
    let mut wal = Wal::open(tmp.path(), None).unwrap();
    assert_eq!(all(&wal), (1..next).map(big).collect::<Vec<_>>());
    wal.append(&[big(next)]).unwrap();
    drop(wal);
    let wal = Wal::open(tmp.path(), None).unwrap();
    assert_eq!(all(&wal), (1..=next).map(big).collect::<Vec<_>>());
}

#[test]
fn a_preparation_cut_short_is_removed_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    ten(tmp.path());
    let cut = tmp
        .path()
        .join(format!("spare-1-0{}", spares::PREPARING_SUFFIX));
    fs::write(&cut, [MAGIC_V3.as_slice(), &[0u8; 100]].concat()).unwrap();
    let wal = Wal::open(tmp.path(), None).unwrap();
    assert!(!cut.exists());
    assert!(spare_files(tmp.path()).is_empty());
    assert_eq!(all(&wal), (1..=10).map(rec).collect::<Vec<_>>());
}

#[test]
fn a_spare_is_prepared_only_with_four_times_its_size_free() {
    let tmp = tempfile::tempdir().unwrap();
    let free = crate::data_dir::free_bytes(tmp.path()).expect("statvfs of a temp dir");
    assert!(spares::room_for_spare(tmp.path(), 4096));
    assert!(spares::room_for_spare(tmp.path(), free / 8));
    assert!(!spares::room_for_spare(tmp.path(), free / 4 + free / 8 + 1));
    assert!(!spares::room_for_spare(&tmp.path().join("missing"), 4096));
}

#[test]
fn no_spare_is_prepared_without_room_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    // Far more than the file system has: refused before any file is made.
    Spares::default().prepare_if_none(tmp.path(), u64::MAX / 8);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let files: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn a_spare_of_several_zero_blocks_is_whole() {
    let tmp = tempfile::tempdir().unwrap();
    // Two and a half blocks of zeros after the magic.
    let bytes = 640 * 1024 + 8;
    Spares::default().prepare_if_none(tmp.path(), bytes);
    wait_for_spares(tmp.path(), 1);
    let spare = spare_files(tmp.path()).pop().unwrap();
    let content = fs::read(&spare).unwrap();
    assert_eq!(content.len() as u64, bytes);
    assert_eq!(&content[..8], MAGIC_V3);
    assert!(content[8..].iter().all(|&b| b == 0));
}

#[test]
fn the_next_append_is_known_to_start_a_segment_when_the_log_is_empty_or_its_last_is_full() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(tmp.path(), None).unwrap();
    assert!(wal.next_append_starts_segment(), "an empty log");
    wal.set_segment_bytes(4096);
    wal.append(&[rec(1)]).unwrap();
    assert!(
        !wal.next_append_starts_segment(),
        "room left in the segment"
    );
    let before = segment_files(tmp.path()).len();
    wal.append(&[(2, vec![0; 5000])]).unwrap();
    assert_eq!(
        segment_files(tmp.path()).len(),
        before,
        "the full one was continued"
    );
    assert!(wal.next_append_starts_segment(), "the last segment is full");
    wal.append(&[rec(3)]).unwrap();
    assert_eq!(
        segment_files(tmp.path()).len(),
        before + 1,
        "and it did start one"
    );
    assert!(!wal.next_append_starts_segment());
}
