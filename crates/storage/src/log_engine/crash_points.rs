//! The log at every crash point: one scripted run of appends (rolling segments), truncations
//! across segments, purges in both forms (recycling segments), a prepared spare and metadata
//! writes, on the power-cut file system, stopped in turn at each request that changes the file
//! system (`Mount::power_off_after`), then cut strictly and by seeds. After each cut the log
//! must open, hold every record acknowledged before the crash (above the purge marker
//! acknowledged), hold no record that was never written or was truncated for good, keep the
//! acknowledged metadata, and go on: an append after it is read back after a reopen.

use std::collections::BTreeMap;
use std::path::Path;

use super::LogEngine;

/// Segments of this many bytes hold two or three records, so the run rolls, truncates across
/// and recycles segments.
const SEGMENT_BYTES: u64 = 160;

/// One step of the run.
#[derive(Debug, Clone)]
enum Step {
    /// Records continuing the log, in one append.
    Append(Vec<(u64, Vec<u8>)>),
    /// `truncate_from`.
    Truncate(u64),
    /// `purge_through` (the marker, then the records forgotten and their segments deleted).
    Purge(u64),
    /// `forget_through` then `finish_purge` (segments recycled as spares).
    PurgeInTwoHalves(u64),
    /// A metadata value written durably.
    Meta(&'static str, Vec<u8>),
    /// A zero-filled spare segment prepared (on this thread, so the run's order is fixed).
    PrepareSpare,
}

/// A record's payload in a round: a record truncated and written again differs from the one
/// it replaced, so a truncated record that came back is seen.
fn payload(index: u64, round: u8) -> Vec<u8> {
    format!(
        "record {index} of round {round}{}",
        "~".repeat((index % 5) as usize)
    )
    .into_bytes()
}

fn append(first: u64, last: u64, round: u8) -> Step {
    Step::Append((first..=last).map(|i| (i, payload(i, round))).collect())
}

fn steps() -> Vec<Step> {
    let mut steps: Vec<Step> = (1..=12).map(|i| append(i, i, 0)).collect();
    steps.extend([
        append(13, 16, 0),
        Step::Truncate(8),
        append(8, 14, 1),
        Step::PurgeInTwoHalves(5),
        Step::Meta("vote", b"term 2".to_vec()),
    ]);
    steps.extend((15..=24).map(|i| append(i, i, 1)));
    steps.extend([
        Step::PrepareSpare,
        Step::Truncate(18),
        append(18, 20, 2),
        Step::Purge(16),
        Step::Meta("vote", b"term 3".to_vec()),
        append(21, 26, 2),
        append(27, 30, 2),
    ]);
    steps
}

/// What the log must hold after some steps: the records (a purge forgets none here: records at
/// or below the purge marker may still be found, and must then be these) and the metadata.
#[derive(Debug, Clone, Default)]
struct Expected {
    records: BTreeMap<u64, Vec<u8>>,
    purged: u64,
    meta: BTreeMap<&'static str, Vec<u8>>,
}

impl Expected {
    fn after(steps: &[Step]) -> Expected {
        let mut expected = Expected::default();
        for step in steps {
            match step {
                Step::Append(records) => expected.records.extend(records.iter().cloned()),
                Step::Truncate(from) => {
                    expected.records.split_off(from);
                }
                Step::Purge(through) | Step::PurgeInTwoHalves(through) => {
                    expected.purged = expected.purged.max(*through);
                    expected
                        .meta
                        .insert("purged", through.to_le_bytes().to_vec());
                }
                Step::Meta(name, value) => {
                    expected.meta.insert(name, value.clone());
                }
                Step::PrepareSpare => {}
            }
        }
        expected
    }
}

/// Opens the engine in `dir` for the run: small segments, no spare prepared on a thread (its
/// requests would land between the run's at no fixed point).
fn open(dir: &Path) -> Result<LogEngine, crate::StorageError> {
    let engine = LogEngine::open(dir)?;
    {
        let mut wal = engine.wal();
        wal.set_segment_bytes(SEGMENT_BYTES);
        wal.set_prepare_spares(false);
    }
    Ok(engine)
}

fn run_step(engine: &LogEngine, dir: &Path, step: &Step) -> Result<(), crate::StorageError> {
    match step {
        Step::Append(records) => engine.append(records),
        Step::Truncate(from) => engine.truncate_from(*from),
        Step::Purge(through) => engine.purge_through(*through, ("purged", &through.to_le_bytes())),
        Step::PurgeInTwoHalves(through) => {
            let files = engine.forget_through(*through);
            engine.finish_purge(*through, ("purged", &through.to_le_bytes()), files)
        }
        Step::Meta(name, value) => engine.put_meta(name, value),
        Step::PrepareSpare => engine.spares.prepare_now(dir, SEGMENT_BYTES),
    }
}

/// Runs the steps in `dir` until one fails (the power went off); returns how many succeeded.
fn run(dir: &Path, steps: &[Step]) -> usize {
    let Ok(engine) = open(dir) else {
        return 0;
    };
    steps
        .iter()
        .take_while(|step| run_step(&engine, dir, step).is_ok())
        .count()
}

/// Checks the log in `dir` after a crash during step `done` (none: after the whole run).
fn check(dir: &Path, steps: &[Step], done: usize, what: &str) {
    let before = Expected::after(&steps[..done]);
    let after = Expected::after(&steps[..(done + 1).min(steps.len())]);
    let engine = open(dir).unwrap_or_else(|e| panic!("{what}: the log does not open: {e}"));
    let records = engine
        .read_range(0, u64::MAX)
        .unwrap_or_else(|e| panic!("{what}: the log does not read: {e}"));
    let held: BTreeMap<u64, Vec<u8>> = records.iter().cloned().collect();
    let indexes: Vec<u64> = held.keys().copied().collect();
    assert!(
        indexes.windows(2).all(|w| w[1] == w[0] + 1),
        "{what}: a hole in the log: {indexes:?}"
    );
    for (index, value) in &held {
        assert!(
            before.records.get(index) == Some(value) || after.records.get(index) == Some(value),
            "{what}: record {index} holds {:?}, never acknowledged there (before the crash: \
             {:?})",
            String::from_utf8_lossy(value),
            before
                .records
                .get(index)
                .map(|v| String::from_utf8_lossy(v).into_owned()),
        );
    }
    for (index, value) in &before.records {
        // Acknowledged, above the purge (the one the crash stopped included), and not being
        // truncated by the step the crash stopped: it must be there.
        if *index > after.purged && after.records.contains_key(index) {
            assert_eq!(
                held.get(index),
                Some(value),
                "{what}: acknowledged record {index} lost (log: {indexes:?})"
            );
        }
    }
    for (name, value) in &before.meta {
        let found = engine
            .get_meta(name)
            .unwrap_or_else(|e| panic!("{what}: {name}: {e}"));
        assert!(
            found.as_ref() == Some(value) || found == after.meta.get(name).cloned(),
            "{what}: metadata {name} is {found:?}, expected {value:?}"
        );
    }
    // And it goes on: a record after the last one is durable and read back after a reopen.
    let next = indexes.last().map_or(1, |last| last + 1);
    engine
        .append(&[(next, payload(next, 9))])
        .unwrap_or_else(|e| panic!("{what}: no append after the crash: {e}"));
    drop(engine);
    let engine = open(dir).unwrap_or_else(|e| panic!("{what}: no reopen: {e}"));
    let last = engine.last().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(last, Some((next, payload(next, 9))), "{what}");
}

#[test]
fn a_crash_at_every_step_of_the_log_loses_nothing_and_never_stops_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mount = statemanager_powercut::Mount::new(&mnt).unwrap_or_else(|e| panic!("{e}"));
    let steps = steps();

    // The whole run once, to count its changing requests (and check the run itself).
    let changes_before = mount.counters().changes;
    let whole = mnt.join("whole");
    assert_eq!(run(&whole, &steps), steps.len(), "the run without a crash");
    let changes = mount.counters().changes - changes_before;
    mount.cut_strict();
    check(&whole, &steps, steps.len(), "after the whole run");
    assert!(changes > 100, "{changes} changing requests");

    // The same run stopped at each of them, then cut strictly and by two seeds.
    for k in 0..changes {
        for cut in 0..3u64 {
            let dir = mnt.join(format!("crash-{k}-{cut}"));
            mount.power_off_after(k);
            let done = run(&dir, &steps);
            let report = match cut {
                0 => mount.cut_strict(),
                seed => mount.cut(k * 10 + seed),
            };
            let what = format!(
                "power off after {k} of {changes} changes, during step {done} ({:?}), cut {cut} \
                 ({report:?})",
                steps.get(done)
            );
            check(&dir, &steps, done, &what);
        }
    }
    drop(mount);
}

/// Copies the files under `from` to `to` with plain writes and no fsync: what a process killed
/// (`kill -9`) before its fsyncs leaves, readable through the page cache but not durable.
fn copy_unsynced(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_unsynced(&entry.path(), &target);
        } else {
            std::fs::write(&target, std::fs::read(entry.path()).unwrap()).unwrap();
        }
    }
}

#[test]
fn what_a_killed_process_left_unsynced_is_made_durable_by_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let written = tmp.path().join("written");
    let records: Vec<(u64, Vec<u8>)> = (1..=7).map(|i| (i, payload(i, 0))).collect();
    {
        let engine = open(&written).unwrap();
        for record in &records {
            engine.append(std::slice::from_ref(record)).unwrap();
        }
    }
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mount = statemanager_powercut::Mount::new(&mnt).unwrap_or_else(|e| panic!("{e}"));
    let dir = mnt.join("log");
    copy_unsynced(&written, &dir);
    {
        // The start after the kill reads them back (and goes on from them).
        let engine = open(&dir).unwrap();
        assert_eq!(engine.read_range(1, 8).unwrap(), records);
    }
    mount.cut_strict();
    let engine = open(&dir).unwrap_or_else(|e| panic!("no start after the cut: {e}"));
    assert_eq!(
        engine.read_range(1, 8).unwrap(),
        records,
        "records read back by a start were lost by a later power cut"
    );
    drop(engine);
    drop(mount);
}
