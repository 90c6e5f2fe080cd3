//! Tests of the log store: start-up with the commit hint, vote and purge markers missing, empty, zeroed, short, stale or ahead of the log.

//! Start-up with each metadata file of the log missing, empty, zeroed, short or stale:
//! the commit hint (written in place, never fsync'd) is tolerated in every state; the
//! vote and the purge marker (replaced atomically and fsync'd, so a power cut cannot
//! damage them) are taken when whole and refused with a clear error when damaged, since
//! that is corruption no power cut explains.
use super::*;
use openraft::EntryPayload;
use std::path::Path;

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(crate::types::leader_in(term, 1), index)
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
        let mut store =
            LogStore::new(LogEngine::open(tmp.path()).unwrap()).expect("the log writer starts");
        assert_eq!(store.read_committed().await.unwrap(), None, "{how}");
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(2, 5)), "{how}");
    }
    // Stale (older than the last commit): taken, the leader commits the rest again.
    let engine = LogEngine::open(tmp.path()).unwrap();
    engine
        .put_meta_lazy(META_COMMITTED, &encode(&Some(log_id(2, 2))).unwrap())
        .unwrap();
    let mut store = LogStore::new(engine).expect("the log writer starts");
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(2, 2)));
    // Ahead of the log (a follower's hint whose entries the cut took): ignored.
    let engine = LogEngine::open(tmp.path()).unwrap();
    engine
        .put_meta_lazy(META_COMMITTED, &encode(&Some(log_id(2, 9))).unwrap())
        .unwrap();
    let mut store = LogStore::new(engine).expect("the log writer starts");
    assert_eq!(store.read_committed().await.unwrap(), None);
    // Naming an entry of another term at that index: ignored.
    let engine = LogEngine::open(tmp.path()).unwrap();
    engine
        .put_meta_lazy(META_COMMITTED, &encode(&Some(log_id(3, 4))).unwrap())
        .unwrap();
    let mut store = LogStore::new(engine).expect("the log writer starts");
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
        let mut store =
            LogStore::new(LogEngine::open(tmp.path()).unwrap()).expect("the log writer starts");
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
    let mut store =
        LogStore::new(LogEngine::open(tmp.path()).unwrap()).expect("the log writer starts");
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
    let mut store =
        LogStore::new(LogEngine::open(tmp.path()).unwrap()).expect("the log writer starts");
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(2, 1)));
    assert_eq!(state.last_log_id, Some(log_id(2, 5)));
    for (how, contents) in damaged(&path) {
        put(&path, &contents);
        let mut store =
            LogStore::new(LogEngine::open(tmp.path()).unwrap()).expect("the log writer starts");
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

/// A purge cut by a crash between its two markers (openraft's written, the log's own not):
/// the log still holds records at or below the purged index. Start-up finishes the purge,
/// whether the purged index is inside the log or beyond its end (a follower's log that
/// ended before the snapshot it installed: openraft refused to start on it, "inverted log
/// order"), and appends go on after it.
#[tokio::test]
async fn a_purge_cut_between_its_markers_is_finished_at_start() {
    for (purged, first_kept) in [(3, Some(4)), (9, None)] {
        let tmp = tempfile::tempdir().unwrap();
        let engine = prepared(tmp.path());
        engine
            .put_meta(META_PURGED, &encode(&log_id(2, purged)).unwrap())
            .unwrap();
        drop(engine);
        let mut store =
            LogStore::new(LogEngine::open(tmp.path()).unwrap()).expect("the log writer starts");
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(2, purged)));
        assert_eq!(
            state.last_log_id,
            Some(log_id(2, purged.max(5))),
            "purged {purged}"
        );
        assert_eq!(store.engine.first_index(), first_kept, "purged {purged}");
        let next = purged.max(5) + 1;
        submit(&mut store, next)
            .await
            .await
            .expect("answered")
            .expect("appended after the purge");
        drop(store);
        // Durably: the log's own marker was written too.
        let engine = LogEngine::open(tmp.path()).unwrap();
        assert_eq!(engine.first_index(), first_kept.or(Some(next)));
        assert_eq!(engine.last().unwrap().map(|(i, _)| i), Some(next));
    }
}

fn blank(index: u64) -> Entry {
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Blank,
    }
}

type Flushed = tokio::sync::oneshot::Receiver<Result<(), std::io::Error>>;

/// Appends `index` as openraft does: submitted, with a callback to wait on.
async fn submit(store: &mut LogStore, index: u64) -> Flushed {
    use openraft::type_config::TypeConfigExt;
    let (tx, rx) = TypeConfig::oneshot();
    store
        .append(vec![blank(index)], IOFlushed::signal(tx))
        .await
        .expect("submitted");
    rx
}

fn indexes(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.log_id.index).collect()
}

#[tokio::test]
async fn appends_return_at_once_are_readable_at_once_and_flushed_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(tmp.path()).unwrap();
    let mut store = LogStore::with_tail(
        engine.clone(),
        TailLimits {
            max_entries: 4,
            max_bytes: usize::MAX,
        },
    )
    .expect("the log writer starts");
    let mut flushed = Vec::new();
    for i in 1..=40 {
        flushed.push(submit(&mut store, i).await);
    }
    // Every submitted entry reads back at once, whether the writer got to it or not (the
    // tail keeps what is not written beyond its limits).
    let read = store.try_get_log_entries(1..41).await.unwrap();
    assert_eq!(indexes(&read), (1..=40).collect::<Vec<_>>());
    for (i, rx) in flushed.into_iter().enumerate() {
        rx.await.expect("answered").expect("flushed");
        // Once reported flushed, an entry is in the WAL.
        let index = i as u64 + 1;
        assert_eq!(engine.read_range(index, index + 1).unwrap().len(), 1);
    }
    // Written entries left the tail (its limit is 4); reads span the WAL and the tail.
    let read = store.try_get_log_entries(30..41).await.unwrap();
    assert_eq!(indexes(&read), (30..=40).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_truncation_cuts_appends_still_in_the_writer_queue_too() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(tmp.path()).unwrap();
    let mut store = LogStore::new(engine.clone()).expect("the log writer starts");
    let mut flushed = Vec::new();
    for i in 1..=10 {
        flushed.push(submit(&mut store, i).await);
    }
    store.truncate_after(Some(log_id(1, 6))).await.unwrap();
    for rx in flushed {
        rx.await.expect("answered").expect("flushed");
    }
    assert_eq!(
        indexes(&store.try_get_log_entries(1..100).await.unwrap()),
        (1..=6).collect::<Vec<_>>()
    );
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(1, 6)));
    // The log goes on after the cut.
    submit(&mut store, 7).await.await.unwrap().unwrap();
    assert_eq!(engine.read_range(1, 100).unwrap().len(), 7);
}

#[tokio::test]
async fn an_offered_append_is_written_in_place_in_order_with_the_queued_ones() {
    use super::inline::InlineWrites;
    let tmp = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(tmp.path()).unwrap();
    let inline = InlineWrites::new(std::time::Duration::from_secs(3600));
    let mut store = LogStore::with_options(
        engine.clone(),
        TailLimits::default(),
        None,
        Some(inline.clone()),
    )
    .expect("the log writer starts");
    // Not offered: the thread writes them.
    let mut flushed = Vec::new();
    for i in 1..=3 {
        flushed.push(submit(&mut store, i).await);
    }
    for rx in flushed.drain(..) {
        answered(rx).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !store.flusher.idle() {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer thread never went idle"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    // Offered with the thread idle: durable and reported before `append` returns.
    inline.offer(true, 1);
    let mut rx = submit(&mut store, 4).await;
    assert!(
        matches!(rx.try_recv(), Ok(Ok(()))),
        "reported flushed at once"
    );
    assert_eq!(engine.read_range(4, 5).unwrap().len(), 1);
    // One queued for the thread, then one offered while the thread may still hold it: the
    // offered one waits its turn if so. Either way the log holds them in order.
    flushed.push(submit(&mut store, 5).await);
    inline.offer(true, 1);
    flushed.push(submit(&mut store, 6).await);
    for rx in flushed {
        answered(rx).await;
    }
    let records = engine.read_range(1, 100).unwrap();
    assert_eq!(
        records.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
}

/// The flush report of `rx`, within a bound (a lost callback fails the test, not hangs it).
async fn answered(rx: Flushed) {
    tokio::time::timeout(std::time::Duration::from_secs(30), rx)
        .await
        .expect("reported within 30 s")
        .expect("answered")
        .expect("flushed");
}

/// A vote reaches the disk after every append submitted before it: when `save_vote`
/// returns, those entries are in the WAL (a first start's vote durable ahead of its
/// membership entry left, after a power cut, a node that never became ready).
#[tokio::test]
async fn a_vote_is_saved_after_the_appends_submitted_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(tmp.path()).unwrap();
    let mut store = LogStore::new(engine.clone()).expect("the log writer starts");
    let mut flushed = Vec::new();
    for i in 1..=30 {
        flushed.push(submit(&mut store, i).await);
    }
    store.save_vote(&Vote::new(1, 1)).await.unwrap();
    assert_eq!(engine.read_range(1, 100).unwrap().len(), 30);
    for rx in flushed {
        rx.await.expect("answered").expect("flushed");
    }
}

/// A purge that leaves the log empty returns only once its markers are durable: the next
/// append starts a new segment and removes the old one, and a cut after that with no marker
/// left a node that could not start.
#[tokio::test]
async fn a_purge_that_empties_the_log_returns_with_its_marker_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(tmp.path()).unwrap();
    let mut store = LogStore::new(engine.clone()).expect("the log writer starts");
    for i in 1..=10 {
        submit(&mut store, i).await.await.unwrap().unwrap();
    }
    store.purge(log_id(1, 10)).await.unwrap();
    assert_eq!(
        engine.get_meta(META_PURGED).unwrap(),
        Some(encode(&log_id(1, 10)).unwrap())
    );
    submit(&mut store, 11).await.await.unwrap().unwrap();
    drop(store);
    let engine = LogEngine::open(tmp.path()).unwrap();
    assert_eq!(engine.first_index(), Some(11));
}
