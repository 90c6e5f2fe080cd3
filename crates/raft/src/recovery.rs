//! Offline recovery of a cluster that lost its quorum for good: turn one survivor into a
//! one-member cluster that keeps everything it holds.
//!
//! Raft cannot change membership without a quorum, so this works on a stopped node's data
//! directory: it loads the last snapshot, applies every entry of the log after it (committed
//! or not: this node's copy is the best there is), and writes a new snapshot whose
//! membership is this node alone. The log is then emptied (it is all in the snapshot), the
//! vote is kept (terms only move forward), and the node, started again, elects itself.
//! Re-add other nodes afterwards with `statemanager cluster add` (empty data directories,
//! new ids).

use std::collections::BTreeMap;
use std::path::Path;

use openraft::{BasicNode, EntryPayload};
use statemanager_storage::{DataDir, LogEngine};

use crate::node::StartError;
use crate::state_machine::{load_current, replace_snapshot};
use crate::types::{decode, encode, Entry, LogId, NodeId, StoredMembership};

/// What the recovery did.
#[derive(Debug, Clone)]
pub struct RecoverySummary {
    /// Log entries replayed on top of the snapshot.
    pub replayed: u64,
    /// Items in the new state.
    pub items: u64,
    /// The last log id now covered by the snapshot.
    pub last_log_id: Option<LogId>,
}

/// A survivor's data directory, read: its state with every log entry applied on top of the
/// snapshot (committed or not), and how many entries that took.
struct Survivor {
    dir: DataDir,
    engine: LogEngine,
    applied: crate::state_machine::Applied,
    replayed: u64,
}

/// Opens the stopped node at `data_dir` (refused while a node runs on it, and when there is
/// no data directory there: a mistyped path must not become an empty cluster) and replays its
/// log onto its snapshot, in memory.
fn read_survivor(data_dir: &Path) -> Result<Survivor, StartError> {
    if !data_dir.is_dir() {
        return Err(StartError::NoDataDir(data_dir.to_path_buf()));
    }
    let dir = DataDir::open(data_dir)?;
    let engine = LogEngine::open(&dir.log_dir())?;
    let mut applied = load_current(&dir.snapshot_dir())?;
    let start = applied.last_applied.map_or(0, |l| l.index + 1);
    let mut replayed = 0;
    for (index, bytes) in engine.read_range(start, u64::MAX)? {
        let entry: Entry = decode(&bytes).map_err(|source| StartError::Entry { index, source })?;
        if let EntryPayload::Normal(batch) = &entry.payload {
            applied.state.apply(batch);
        }
        applied.last_applied = Some(entry.log_id);
        replayed += 1;
    }
    if applied.last_applied.is_none() {
        return Err(StartError::NothingToRecover(data_dir.to_path_buf()));
    }
    Ok(Survivor {
        dir,
        engine,
        applied,
        replayed,
    })
}

/// What the stopped node at `data_dir` would keep if recovered, without changing anything:
/// compare the survivors, and recover the one whose last entry has the highest term, then the
/// highest index (Raft's "most up to date"): a write acknowledged by a quorum that did not
/// include the chosen survivor is lost.
pub fn inspect(data_dir: &Path) -> Result<RecoverySummary, StartError> {
    let survivor = read_survivor(data_dir)?;
    Ok(RecoverySummary {
        replayed: survivor.replayed,
        items: survivor.applied.state.stats().items,
        last_log_id: survivor.applied.last_applied,
    })
}

/// Rewrites the stopped node at `data_dir` into a one-member cluster of `node_id`, reachable
/// by peers at `peer_addr`.
pub fn force_single_member(
    data_dir: &Path,
    node_id: NodeId,
    peer_addr: &str,
) -> Result<RecoverySummary, StartError> {
    let Survivor {
        dir,
        engine,
        mut applied,
        replayed,
    } = read_survivor(data_dir)?;
    let last = applied.last_applied;
    let membership =
        crate::types::voters_of(BTreeMap::from([(node_id, BasicNode::new(peer_addr))]))?;
    applied.membership = StoredMembership::new(last, membership);
    replace_snapshot(
        &dir.snapshot_dir(),
        &applied,
        format!("recovered-{node_id}-{}", last.map_or(0, |l| l.index)),
    )?;
    if let Some(last) = last {
        let bytes = encode(&last).map_err(StartError::Encode)?;
        engine.purge_through(last.index, ("purged", &bytes))?;
        let committed = encode(&Some(last)).map_err(StartError::Encode)?;
        engine.put_meta("committed", &committed)?;
    }
    Ok(RecoverySummary {
        replayed,
        items: applied.state.stats().items,
        last_log_id: last,
    })
}
