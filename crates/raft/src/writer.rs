//! Group commit: the single writer task.
//!
//! openraft 0.9 appends and fsyncs each `client_write` before taking the next, so one Raft
//! entry per HTTP store would cap throughput at the disk's fsync rate. Instead, handlers queue
//! their operation here; the writer takes everything queued (up to a count and byte bound),
//! stamps it once with the leader's clock, proposes it as one [`Batch`], and hands each caller
//! its own outcome. While one batch is being made durable the next one accumulates, so the
//! batch size adapts to the load and the fsync cost is shared.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use statemanager_core::{Batch, Clock, Limits, Op, Stored};
use tokio::sync::{mpsc, oneshot};

use crate::types::TypeConfig;
use crate::NodeError;

/// One queued operation and where its answer goes.
#[derive(Debug)]
pub struct WriteRequest {
    /// The operation.
    pub op: Op,
    /// The caller's answer channel.
    pub reply: oneshot::Sender<Result<Stored, NodeError>>,
}

/// How the writer forms batches.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Most operations in one entry.
    pub max_ops: usize,
    /// Most data bytes in one entry (soft: the operation that crosses it is included).
    pub max_bytes: usize,
    /// How long a proposed entry may take to commit before callers get `commit_timeout`.
    pub commit_timeout: Duration,
}

fn op_bytes(op: &Op) -> usize {
    match op {
        Op::Store(s) => s.data.len() + s.id.namespace.as_str().len() + s.id.key.as_str().len(),
    }
}

/// Proposes one batch and maps openraft's answer to per-operation results.
pub async fn propose(
    raft: &Raft<TypeConfig>,
    batch: Batch,
    commit_timeout: Duration,
) -> Result<Vec<statemanager_core::OpOutcome>, NodeError> {
    match tokio::time::timeout(commit_timeout, raft.client_write(batch)).await {
        Ok(Ok(response)) => Ok(response.data.0),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            Err(NodeError::NotLeader {
                leader: f.leader_id,
            })
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
            Err(NodeError::Unavailable(e.to_string()))
        }
        Ok(Err(RaftError::Fatal(f))) => Err(NodeError::Unavailable(format!(
            "the node is stopping ({f})"
        ))),
        Err(_) => Err(NodeError::CommitTimeout(commit_timeout.as_millis() as u64)),
    }
}

/// Runs the writer until every sender of `rx` is dropped.
pub async fn run(
    raft: Raft<TypeConfig>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    options: WriterOptions,
    mut rx: mpsc::Receiver<WriteRequest>,
) {
    let mut ops = Vec::new();
    let mut replies = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut bytes = op_bytes(&first.op);
        ops.push(first.op);
        replies.push(first.reply);
        while ops.len() < options.max_ops && bytes < options.max_bytes {
            match rx.try_recv() {
                Ok(next) => {
                    bytes += op_bytes(&next.op);
                    ops.push(next.op);
                    replies.push(next.reply);
                }
                Err(_) => break,
            }
        }
        let batch = Batch {
            now: clock.now(),
            limits,
            ops: std::mem::take(&mut ops),
        };
        let count = replies.len();
        tracing::trace!(ops = count, bytes, "proposing batch");
        match propose(&raft, batch, options.commit_timeout).await {
            Ok(outcomes) => {
                if outcomes.len() != count {
                    // Cannot happen: apply returns one outcome per op. Refuse rather than
                    // misattribute answers.
                    tracing::error!(
                        expected = count,
                        got = outcomes.len(),
                        "batch result size mismatch"
                    );
                    for reply in replies.drain(..) {
                        let _ = reply.send(Err(NodeError::Unavailable(
                            "internal error: batch result size mismatch".into(),
                        )));
                    }
                    continue;
                }
                for (reply, outcome) in replies.drain(..).zip(outcomes) {
                    let _ = reply.send(outcome.map_err(NodeError::from));
                }
            }
            Err(e) => {
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
