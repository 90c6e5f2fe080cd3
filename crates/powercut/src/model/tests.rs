use super::*;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn strict_cut(m: &mut Model) {
    m.cut_strict();
}

#[test]
fn unsynced_file_contents_are_lost_synced_ones_kept() {
    let mut m = Model::new();
    let f = m.create(ROOT, os("a"), 0o644).unwrap().ino;
    m.sync(ROOT).unwrap();
    m.write(f, 0, b"hello").unwrap();
    m.sync(f).unwrap();
    m.write(f, 5, b" world").unwrap();
    strict_cut(&mut m);
    assert_eq!(m.read(f, 0, 100).unwrap(), b"hello");
}

#[test]
fn a_name_is_durable_only_once_its_directory_is_synced() {
    let mut m = Model::new();
    let f = m.create(ROOT, os("a"), 0o644).unwrap().ino;
    m.write(f, 0, b"x").unwrap();
    m.sync(f).unwrap(); // the file, not the directory
    strict_cut(&mut m);
    assert_eq!(m.lookup(ROOT, os("a")), Err(FsError::NotFound));
}

#[test]
fn a_new_directory_and_everything_in_it_vanish_without_the_parent_sync() {
    let mut m = Model::new();
    let d = m.mkdir(ROOT, os("log"), 0o755).unwrap().ino;
    let f = m.create(d, os("seg"), 0o644).unwrap().ino;
    m.write(f, 0, b"records").unwrap();
    m.sync(f).unwrap();
    m.sync(d).unwrap();
    strict_cut(&mut m);
    assert_eq!(m.lookup(ROOT, os("log")), Err(FsError::NotFound));
    // With the parent synced too, it all survives.
    let d = m.mkdir(ROOT, os("log"), 0o755).unwrap().ino;
    let f = m.create(d, os("seg"), 0o644).unwrap().ino;
    m.write(f, 0, b"records").unwrap();
    m.sync(f).unwrap();
    m.sync(d).unwrap();
    m.sync(ROOT).unwrap();
    strict_cut(&mut m);
    let f = m
        .lookup(m.lookup(ROOT, os("log")).unwrap().ino, os("seg"))
        .unwrap();
    assert_eq!(m.read(f.ino, 0, 100).unwrap(), b"records");
}

#[test]
fn an_unsynced_rename_comes_undone_and_an_unsynced_unlink_comes_back() {
    let mut m = Model::new();
    let old = m.create(ROOT, os("meta"), 0o644).unwrap().ino;
    m.write(old, 0, b"old").unwrap();
    m.sync(old).unwrap();
    m.sync(ROOT).unwrap();
    let tmp = m.create(ROOT, os("meta.tmp"), 0o644).unwrap().ino;
    m.write(tmp, 0, b"new").unwrap();
    m.sync(tmp).unwrap();
    m.rename(ROOT, os("meta.tmp"), ROOT, os("meta"), false)
        .unwrap();
    let gone = m.create(ROOT, os("x"), 0o644).unwrap().ino;
    m.sync(gone).unwrap();
    m.sync(ROOT).unwrap();
    m.unlink(ROOT, os("x")).unwrap();
    strict_cut(&mut m);
    // The rename was synced: new contents. The unlink was not: x is back.
    let meta = m.lookup(ROOT, os("meta")).unwrap();
    assert_eq!(m.read(meta.ino, 0, 10).unwrap(), b"new");
    assert!(m.lookup(ROOT, os("x")).is_ok());
    assert_eq!(m.lookup(ROOT, os("meta.tmp")), Err(FsError::NotFound));
}

#[test]
fn an_in_place_overwrite_without_fsync_can_come_back_zeroed_torn_or_old() {
    let build = || {
        let mut m = Model::new();
        let f = m.create(ROOT, os("committed"), 0o644).unwrap().ino;
        m.sync(ROOT).unwrap();
        m.write(f, 0, b"AAAAAAAA").unwrap();
        (m, f)
    };
    let (mut m, f) = build();
    m.file_mut(f)
        .unwrap()
        .cut(Outcome::Zeroed, &mut Rng::new(3));
    assert_eq!(m.read(f, 0, 100).unwrap(), vec![0u8; 8]);
    let (mut m, f) = build();
    m.file_mut(f).unwrap().cut(Outcome::Lost, &mut Rng::new(3));
    assert_eq!(m.read(f, 0, 100).unwrap(), b"");
    let (mut m, f) = build();
    m.file_mut(f).unwrap().cut(Outcome::Kept, &mut Rng::new(3));
    assert_eq!(m.read(f, 0, 100).unwrap(), b"AAAAAAAA");
    let mut lengths = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let (mut m, f) = build();
        m.file_mut(f)
            .unwrap()
            .cut(Outcome::Torn, &mut Rng::new(seed));
        let got = m.read(f, 0, 100).unwrap();
        assert!(got.iter().all(|b| *b == b'A'));
        lengths.insert(got.len());
    }
    assert!(
        lengths.len() > 3,
        "torn writes end at different bytes: {lengths:?}"
    );
}

#[test]
fn a_scattered_cut_keeps_some_pages_and_not_others() {
    let mut mixed = 0;
    for seed in 0..32 {
        let mut m = Model::new();
        let f = m.create(ROOT, os("wal"), 0o644).unwrap().ino;
        m.sync(ROOT).unwrap();
        m.write(f, 0, &vec![1u8; 4 * PAGE]).unwrap();
        m.sync(f).unwrap();
        m.write(f, 0, &vec![2u8; 4 * PAGE]).unwrap();
        m.file_mut(f)
            .unwrap()
            .cut(Outcome::Scattered, &mut Rng::new(seed));
        let got = m.read(f, 0, 8 * PAGE).unwrap();
        assert_eq!(got.len(), 4 * PAGE);
        let pages: Vec<u8> = got.chunks(PAGE).map(|p| p[0]).collect();
        assert!(got.chunks(PAGE).all(|p| p.iter().all(|b| *b == p[0])));
        if pages.contains(&1) && pages.contains(&2) && pages[0] == 1 {
            mixed += 1; // a later page new while the first is old
        }
    }
    assert!(mixed > 0);
}

#[test]
fn truncation_then_regrowth_is_synced_whole() {
    let mut m = Model::new();
    let f = m.create(ROOT, os("f"), 0o644).unwrap().ino;
    m.sync(ROOT).unwrap();
    m.write(f, 0, b"0123456789").unwrap();
    m.sync(f).unwrap();
    m.truncate(f, 4).unwrap();
    m.write(f, 6, b"ab").unwrap();
    m.sync(f).unwrap();
    strict_cut(&mut m);
    assert_eq!(m.read(f, 0, 100).unwrap(), b"0123\0\0ab");
}

#[test]
fn cuts_are_deterministic_for_a_seed() {
    let build = || {
        let mut m = Model::new();
        for i in 0..20 {
            let f = m
                .create(ROOT, OsStr::new(&format!("f{i}")), 0o644)
                .unwrap()
                .ino;
            m.write(f, 0, &[i as u8; 100]).unwrap();
            if i % 3 == 0 {
                m.sync(f).unwrap();
            }
        }
        m
    };
    let (mut a, mut b) = (build(), build());
    assert_eq!(a.cut(&mut Rng::new(42)), b.cut(&mut Rng::new(42)));
    for i in 0..20 {
        let name = format!("f{i}");
        assert_eq!(
            a.lookup(ROOT, OsStr::new(&name)).is_ok(),
            b.lookup(ROOT, OsStr::new(&name)).is_ok()
        );
    }
}

#[test]
fn a_link_is_a_name_like_any_other() {
    let mut m = Model::new();
    let d = m.mkdir(ROOT, os("snapshots"), 0o755).unwrap().ino;
    m.sync(ROOT).unwrap();
    let f = m.create(d, os("received"), 0o644).unwrap().ino;
    m.write(f, 0, b"snapshot").unwrap();
    let linked = m.link(f, d, os("own")).unwrap();
    assert_eq!((linked.ino, linked.links), (f, 2));
    assert_eq!(m.link(f, d, os("own")), Err(FsError::Exists));
    assert_eq!(m.link(d, ROOT, os("again")), Err(FsError::IsDir));
    // The file synced, the second name renamed and the directory synced; the first name
    // removed afterwards, unsynced.
    m.sync(f).unwrap();
    m.rename(d, os("own"), d, os("current"), false).unwrap();
    m.sync(d).unwrap();
    m.unlink(d, os("received")).unwrap();
    assert_eq!(m.lookup(d, os("current")).unwrap().links, 1);
    strict_cut(&mut m);
    let current = m.lookup(d, os("current")).unwrap();
    assert_eq!(m.read(current.ino, 0, 100).unwrap(), b"snapshot");
    // The unlink was not synced: the first name is back, on the same file.
    assert_eq!(m.lookup(d, os("received")).unwrap().ino, current.ino);
    assert_eq!(current.links, 2);
    // A link whose directory was never synced is gone after a cut.
    m.link(current.ino, d, os("unsynced")).unwrap();
    strict_cut(&mut m);
    assert_eq!(m.lookup(d, os("unsynced")), Err(FsError::NotFound));
}
