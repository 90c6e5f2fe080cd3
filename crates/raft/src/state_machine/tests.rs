//! Tests of the state machine adapter: apply (one outcome per operation, Raft's
//! bookkeeping), snapshots built, received, installed and loaded at start-up.

use std::collections::BTreeMap;

use openraft::EntryPayload;
use statemanager_core::{
    Batch, Data, DomainError, ItemId, Key, Limits, Namespace, Op, StoreOp, Ttl,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::types::{Entry, NodeId, SharedBatch};

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(crate::types::leader_in(term, 1), index)
}

fn id(key: &str) -> ItemId {
    ItemId {
        namespace: Namespace::new("ns").expect("a valid namespace"),
        key: Key::new(key).expect("a valid key"),
    }
}

fn store(key: &str, data: &str) -> Op {
    Op::Store(StoreOp {
        id: id(key),
        data: Data::from(data),
        ttl: Ttl::from_secs(3600).expect("a valid ttl"),
        timestamp: None,
    })
}

fn secs(s: u64) -> Timestamp {
    Timestamp::from_micros(s * 1_000_000)
}

fn normal(index: u64, now: u64, ops: Vec<Op>) -> Entry {
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(SharedBatch::new(Batch {
            now: secs(now),
            limits: Limits::default(),
            ops,
        })),
    }
}

fn membership(index: u64, voters: &[NodeId]) -> Entry {
    let nodes: BTreeMap<NodeId, openraft::BasicNode> = voters
        .iter()
        .map(|&n| {
            (
                n,
                openraft::BasicNode::new(format!("127.0.0.1:{}", 7000 + n)),
            )
        })
        .collect();
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Membership(
            crate::types::voters_of(nodes).expect("voters have addresses"),
        ),
    }
}

/// Entries 1..=4: a blank, a membership of {1, 2, 3}, then two batches.
fn history() -> Vec<Entry> {
    vec![
        Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Blank,
        },
        membership(2, &[1, 2, 3]),
        normal(3, 100, vec![store("a", "alpha"), store("b", "beta")]),
        normal(4, 101, vec![store("c", "gamma"), Op::Delete(id("b"))]),
    ]
}

/// The items of `applied`, sorted, as comparable values.
fn items(applied: &Applied) -> Vec<(String, String, Timestamp, Timestamp)> {
    let mut list: Vec<_> = applied
        .state
        .iter()
        .map(|(k, v)| {
            (
                format!("{}/{}", k.namespace.as_str(), k.key.as_str()),
                v.data.to_string(),
                v.timestamp,
                v.expires_at,
            )
        })
        .collect();
    list.sort();
    list
}

/// Asserts that two states hold the same items, log position, membership and time.
fn assert_same(a: &Applied, b: &Applied) {
    assert_eq!(items(a), items(b));
    assert_eq!(a.last_applied, b.last_applied);
    assert_eq!(a.membership, b.membership);
    assert_eq!(a.state.high_water(), b.state.high_water());
}

#[tokio::test]
async fn a_batch_gets_one_outcome_per_operation_in_order() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let sm = StateMachine::open(dir.path()).expect("opens");
    let results = sm.apply_entries(vec![normal(
        1,
        100,
        vec![
            store("a", "alpha"),
            Op::Delete(id("missing")),
            store("b", "beta"),
            Op::Delete(id("a")),
        ],
    )]);
    assert_eq!(results.len(), 1, "one result per entry");
    let outcomes = &results[0].0;
    assert_eq!(outcomes.len(), 4, "one outcome per operation");
    assert!(outcomes[0].is_ok());
    assert_eq!(outcomes[1], Err(DomainError::NotFound));
    assert!(outcomes[2].is_ok());
    assert!(outcomes[3].is_ok(), "deletes what the first op stored");
    let shared = sm.shared();
    let applied = shared.read();
    assert_eq!(items(&applied).len(), 1, "only b is left");
    assert_eq!(applied.last_applied, Some(log_id(1, 1)));
}

#[tokio::test]
async fn blank_and_membership_entries_have_no_outcomes_and_are_reported() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut sm = StateMachine::open(dir.path()).expect("opens");
    let (last, members) = sm.applied_state().await.expect("reads");
    assert_eq!(last, None, "nothing applied yet");
    assert_eq!(members, StoredMembership::default());
    let results = sm.apply_entries(history());
    assert_eq!(results.len(), 4, "one result per entry");
    assert!(results[0].0.is_empty(), "blank");
    assert!(results[1].0.is_empty(), "membership");
    assert_eq!(results[2].0.len(), 2);
    assert_eq!(results[3].0.len(), 2);
    let (last, members) = sm.applied_state().await.expect("reads");
    assert_eq!(last, Some(log_id(1, 4)));
    assert_eq!(members.log_id(), &Some(log_id(1, 2)));
    let voters: Vec<NodeId> = members.membership().voter_ids().collect();
    assert_eq!(voters, [1, 2, 3]);
}

#[tokio::test]
async fn a_built_snapshot_installed_elsewhere_gives_the_same_state() {
    let source_dir = tempfile::tempdir().expect("a temp dir");
    let mut source = StateMachine::open(source_dir.path()).expect("opens");
    source.apply_entries(history());
    let mut built = source
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("builds");
    assert_eq!(built.meta.last_log_id, Some(log_id(1, 4)));
    assert_eq!(built.meta.last_membership.log_id(), &Some(log_id(1, 2)));

    // The transfer as openraft makes it: chunks written into the receiving file.
    let mut bytes = Vec::new();
    built
        .snapshot
        .read_to_end(&mut bytes)
        .await
        .expect("reads the snapshot");
    let target_dir = tempfile::tempdir().expect("a temp dir");
    let mut target = StateMachine::open(target_dir.path()).expect("opens");
    // Received into a directory of its own (the peer route writes into the snapshot
    // directory; either way one file system).
    let received_dir = tempfile::tempdir().expect("a temp dir");
    let received = received_dir.path().join("received.snap");
    let mut receiving = tokio::fs::File::create(&received).await.expect("creates");
    receiving.write_all(&bytes).await.expect("writes");
    receiving.flush().await.expect("flushes");
    let receiving = tokio::fs::File::open(&received).await.expect("opens");
    target
        .install_snapshot(&built.meta, receiving)
        .await
        .expect("installs");

    assert_same(&source.shared().read(), &target.shared().read());
    let (last, members) = target.applied_state().await.expect("reads");
    assert_eq!(last, Some(log_id(1, 4)));
    assert_eq!(members, built.meta.last_membership);
    let current = target
        .get_current_snapshot()
        .await
        .expect("reads")
        .expect("the installed snapshot is current");
    assert_eq!(current.meta.last_log_id, Some(log_id(1, 4)));
    assert_eq!(
        names_in(target_dir.path()),
        [CURRENT],
        "no incoming file is left behind"
    );
    // On one file system the received file is taken by a second name, not copied; its own
    // name is its receiver's to remove.
    use std::os::unix::fs::MetadataExt;
    let inode = |path: &std::path::Path| std::fs::metadata(path).expect("exists").ino();
    assert_eq!(inode(&target_dir.path().join(CURRENT)), inode(&received));
}

#[test]
fn a_snapshot_file_that_cannot_be_linked_is_copied() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let written = dir.path().join("written.snap");
    std::fs::write(&written, b"the snapshot's bytes").expect("writes");
    let mut source = std::fs::File::open(&written).expect("opens");
    // Read part of it, so the copy must start from the beginning.
    let mut first = [0u8; 4];
    std::io::Read::read_exact(&mut source, &mut first).expect("reads");
    // An open file with no name left cannot be linked (ENOENT): the copy remains.
    std::fs::remove_file(&written).expect("removes");
    let own = dir.path().join("own.snap");
    assert!(!own_snapshot_file(source, &own).expect("copies"), "copied");
    assert_eq!(std::fs::read(&own).expect("reads"), b"the snapshot's bytes");
}

/// The names of the files in `dir`.
fn names_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("lists")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// A state machine in `dir` that applied [`history`], and the snapshot it built of it.
async fn history_snapshot(dir: &std::path::Path) -> (StateMachine, Snapshot) {
    let mut sm = StateMachine::open(dir).expect("opens");
    sm.apply_entries(history());
    let built = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("builds");
    (sm, built)
}

#[tokio::test]
async fn a_snapshot_that_does_not_cover_what_the_leader_said_is_refused() {
    let source_dir = tempfile::tempdir().expect("a temp dir");
    let (_, built) = history_snapshot(source_dir.path()).await;
    let target_dir = tempfile::tempdir().expect("a temp dir");
    let mut target = StateMachine::open(target_dir.path()).expect("opens");
    let mut meta = built.meta.clone();
    meta.last_log_id = Some(log_id(1, 9));
    assert!(target
        .install_snapshot(&meta, built.snapshot)
        .await
        .is_err());
    let applied = target.shared();
    let applied = applied.read();
    assert_eq!(applied.last_applied, None, "the state is untouched");
    assert!(items(&applied).is_empty());
    assert!(!target_dir.path().join(CURRENT).exists());
    assert!(
        names_in(target_dir.path()).is_empty(),
        "the refused file is not kept"
    );
}

#[tokio::test]
async fn the_current_snapshot_installed_again_leaves_no_second_name() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (mut sm, built) = history_snapshot(dir.path()).await;
    // The file handed over is the current snapshot itself.
    let current = tokio::fs::File::open(dir.path().join(CURRENT))
        .await
        .expect("opens");
    sm.install_snapshot(&built.meta, current)
        .await
        .expect("installs");
    assert_eq!(names_in(dir.path()), [CURRENT]);
    let (last, _) = sm.applied_state().await.expect("reads");
    assert_eq!(last, Some(log_id(1, 4)));
}

#[tokio::test]
async fn a_restart_loads_the_last_snapshot_and_drops_leftovers() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let before = {
        let mut sm = StateMachine::open(dir.path()).expect("opens");
        sm.apply_entries(history());
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("builds");
        // Applied after the snapshot: not in it (openraft re-applies it from the log).
        sm.apply_entries(vec![normal(5, 102, vec![store("d", "delta")])]);
        let shared = sm.shared();
        let applied = shared.read();
        assert_eq!(items(&applied).len(), 3);
        (items(&applied), applied.membership.clone())
    };
    // An interrupted build and an interrupted transfer.
    std::fs::write(dir.path().join("current.snap.tmp"), b"half").expect("writes");
    std::fs::write(dir.path().join("incoming-3.snap"), b"half").expect("writes");

    let mut sm = StateMachine::open(dir.path()).expect("reopens");
    let (last, members) = sm.applied_state().await.expect("reads");
    assert_eq!(last, Some(log_id(1, 4)), "as of the snapshot");
    assert_eq!(members, before.1);
    let now = items(&sm.shared().read());
    let expected: Vec<_> = before.0.into_iter().filter(|i| i.0 != "ns/d").collect();
    assert_eq!(now, expected);
    assert!(!dir.path().join("current.snap.tmp").exists());
    assert!(!dir.path().join("incoming-3.snap").exists());
}

/// A state machine opened on a snapshot of 14 items (a table sized for them is full: 16
/// buckets, 7/8 of them usable) and then given one more.
async fn grown_by_one(dir: &std::path::Path, gradually: bool) -> Arc<SharedState> {
    let keys: Vec<String> = (0..14).map(|k| format!("k{k}")).collect();
    {
        let mut sm = StateMachine::open(dir).expect("opens");
        sm.apply_entries(vec![normal(
            1,
            100,
            keys.iter().map(|k| store(k, "data")).collect(),
        )]);
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("builds");
    }
    let sm = StateMachine::open(dir).expect("reopens");
    if gradually {
        sm.shared().grow_gradually();
    }
    sm.apply_entries(vec![normal(2, 101, vec![store("new", "data")])]);
    let shared = sm.shared();
    let applied = shared.read();
    for key in keys.iter().map(String::as_str).chain(["new"]) {
        assert!(applied.state.get(&id(key), secs(102)).is_some(), "{key}");
    }
    drop(applied);
    shared
}

#[tokio::test]
async fn the_replay_at_start_grows_the_table_at_once_and_serving_gradually() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let replayed = grown_by_one(dir.path(), false).await;
    assert!(
        !replayed.read().state.is_growing(),
        "grown within the apply"
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let served = grown_by_one(dir.path(), true).await;
    assert!(
        served.read().state.is_growing(),
        "one operation moves a few entries only"
    );
}

#[tokio::test]
async fn a_damaged_snapshot_stops_start_up() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join(CURRENT), b"not a snapshot").expect("writes");
    assert!(StateMachine::open(dir.path()).is_err());
    assert!(load_current(dir.path()).is_err());
}

#[test]
fn an_offline_replacement_is_what_a_start_up_loads() {
    let dir = tempfile::tempdir().expect("a temp dir");
    assert!(load_current(dir.path())
        .expect("empty")
        .state
        .iter()
        .next()
        .is_none());
    let mut applied = Applied::default();
    applied.state.apply(&Batch {
        now: secs(100),
        limits: Limits::default(),
        ops: vec![store("a", "alpha")],
    });
    applied.last_applied = Some(log_id(2, 7));
    replace_snapshot(dir.path(), &applied, "restored".into()).expect("writes");
    let loaded = load_current(dir.path()).expect("loads");
    assert_same(&applied, &loaded);
}

/// While a snapshot's copy holds the read lock on a blocking thread, an apply waits for it
/// without blocking the runtime's thread: on a one-thread runtime other tasks (here a 50 ms
/// sleep) go on meanwhile. A blocking `write()` there would hold the thread until the
/// watchdog ends the copy after 2 s.
#[tokio::test(flavor = "current_thread")]
async fn an_apply_waits_for_a_copy_without_blocking_the_runtime() {
    let shared = Arc::new(SharedState::default());
    let (release, held) = std::sync::mpsc::channel::<()>();
    let watchdog = release.clone();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(2));
        let _ = watchdog.send(());
    });
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let copy = {
        let shared = shared.clone();
        tokio::spawn(async move {
            shared
                .copy_on_blocking_thread(move |_| {
                    let _ = started_tx.send(());
                    let _ = held.recv();
                })
                .await
        })
    };
    started.await.unwrap();
    let apply = {
        let shared = shared.clone();
        tokio::spawn(async move {
            drop(shared.write_for_apply().await);
        })
    };
    let began = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        began.elapsed() < std::time::Duration::from_secs(1),
        "the runtime was blocked for {:?}",
        began.elapsed()
    );
    assert!(!apply.is_finished(), "the apply waits for the copy");
    release.send(()).unwrap();
    copy.await.unwrap().unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), apply)
        .await
        .expect("the apply goes on once the copy is done")
        .unwrap();
}
