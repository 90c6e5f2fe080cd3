//! Tests of the log store: start-up with the commit hint, vote and purge markers missing, empty, zeroed, short, stale or ahead of the log.

//! Start-up with each metadata file of the log missing, empty, zeroed, short or stale:
//! the commit hint (written in place, never fsync'd) is tolerated in every state; the
//! vote and the purge marker (replaced atomically and fsync'd, so a power cut cannot
//! damage them) are taken when whole and refused with a clear error when damaged, since
//! that is corruption no power cut explains.
use super::*;
use openraft::{CommittedLeaderId, EntryPayload};
use std::path::Path;

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

/// A log dir with entries 1..=5 of term 2, a vote, a commit hint at 4 and no purge.
fn prepared(dir: &Path) -> LogEngine {
    let engine = LogEngine::open(dir).unwrap();
    let records: Vec<(u64, Vec<u8>)> = (1..=5)
        .map(|i| {
            let entry = Entry {
                log_id: log_id(2, i),
                payload: EntryPayload::Blank,
            };
            (i, encode(&entry).unwrap())
        })
        .collect();
    engine.append(&records).unwrap();
    engine
        .put_meta(META_VOTE, &encode(&Vote::new(2, 1)).unwrap())
        .unwrap();
    engine
        .put_meta_lazy(META_COMMITTED, &encode(&Some(log_id(2, 4))).unwrap())
        .unwrap();
    engine
}

/// The ways a file can come back after a cut, applied to `path`.
fn damaged(path: &Path) -> Vec<(&'static str, Option<Vec<u8>>)> {
    let whole = std::fs::read(path).unwrap();
    vec![
        ("missing", None),
        ("empty", Some(Vec::new())),
        ("zeroed", Some(vec![0u8; whole.len()])),
        ("short", Some(whole[..whole.len() / 2].to_vec())),
        ("one byte", Some(whole[..1].to_vec())),
    ]
}

fn put(path: &Path, contents: &Option<Vec<u8>>) {
    match contents {
        None => {
            let _ = std::fs::remove_file(path);
        }
        Some(bytes) => std::fs::write(path, bytes).unwrap(),
    }
}

#[tokio::test]
async fn a_commit_hint_in_any_state_is_tolerated() {
    let tmp = tempfile::tempdir().unwrap();
    drop(prepared(tmp.path()));
    let path = tmp.path().join("meta").join(META_COMMITTED);
    for (how, contents) in damaged(&path) {
        put(&path, &contents);
        let mut store = LogStore::new(LogEngine::open(tmp.path()).unwrap());
        assert_eq!(store.read_committed().await.unwrap(), None, "{how}");
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(2, 5)), "{how}");
    }
    // Stale (older than the last commit): taken, the leader commits the rest again.
    let engine = LogEngine::open(tmp.path()).unwrap();
    engine
        .put_meta_lazy(META_COMMITTED, &encode(&Some(log_id(2, 2))).unwrap())
        .unwrap();
    let mut store = LogStore::new(engine);
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(2, 2)));
    // Ahead of the log (a follower's hint whose entries the cut took): ignored.
    let engine = LogEngine::open(tmp.path()).unwrap();
    engine
        .put_meta_lazy(META_COMMITTED, &encode(&Some(log_id(2, 9))).unwrap())
        .unwrap();
    let mut store = LogStore::new(engine);
    assert_eq!(store.read_committed().await.unwrap(), None);
    // Naming an entry of another term at that index: ignored.
    let engine = LogEngine::open(tmp.path()).unwrap();
    engine
        .put_meta_lazy(META_COMMITTED, &encode(&Some(log_id(3, 4))).unwrap())
        .unwrap();
    let mut store = LogStore::new(engine);
    assert_eq!(store.read_committed().await.unwrap(), None);
}

#[tokio::test]
async fn a_vote_missing_is_none_and_a_damaged_one_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    drop(prepared(tmp.path()));
    let path = tmp.path().join("meta").join(META_VOTE);
    let whole = std::fs::read(&path).unwrap();
    for (how, contents) in damaged(&path) {
        put(&path, &contents);
        let mut store = LogStore::new(LogEngine::open(tmp.path()).unwrap());
        let read = store.read_vote().await;
        match how {
            "missing" => assert_eq!(read.unwrap(), None),
            _ => {
                let err = read.unwrap_err().to_string();
                assert!(err.contains("vote"), "{how}: {err}");
            }
        }
    }
    std::fs::write(&path, &whole).unwrap();
    let mut store = LogStore::new(LogEngine::open(tmp.path()).unwrap());
    assert!(store.read_vote().await.unwrap().is_some());
}

#[tokio::test]
async fn a_purge_marker_missing_or_stale_keeps_more_log_and_a_damaged_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = prepared(tmp.path());
    let marker = |id: LogId| encode(&id).unwrap();
    engine
        .purge_through(3, (META_PURGED, &marker(log_id(2, 3))))
        .unwrap();
    drop(engine);
    let path = tmp.path().join("meta").join(META_PURGED);
    // Stale: an older marker (the cut came before the newer one was renamed into place).
    LogEngine::open(tmp.path())
        .unwrap()
        .put_meta(META_PURGED, &marker(log_id(2, 1)))
        .unwrap();
    let mut store = LogStore::new(LogEngine::open(tmp.path()).unwrap());
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(2, 1)));
    assert_eq!(state.last_log_id, Some(log_id(2, 5)));
    for (how, contents) in damaged(&path) {
        put(&path, &contents);
        let mut store = LogStore::new(LogEngine::open(tmp.path()).unwrap());
        let state = store.get_log_state().await;
        match how {
            "missing" => assert_eq!(state.unwrap().last_purged_log_id, None),
            _ => {
                let err = state.unwrap_err().to_string();
                assert!(err.contains("purged"), "{how}: {err}");
            }
        }
    }
}
