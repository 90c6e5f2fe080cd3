//! Group commit: the single writer task.
//!
//! Every Raft entry costs a node about 160 µs of CPU (one node, the log's `fdatasync`
//! included; measured, see `docs/design.md`), and under openraft 0.9 it also cost a whole
//! fsync, so one entry per HTTP store would cap throughput far below the disk's and the CPU's
//! limits. Instead, handlers queue
//! their operation here; the writer takes everything queued (up to a count and byte bound),
//! stamps it once with the leader's clock, proposes it as one [`Batch`], and hands each caller
//! its own outcome. While one batch is being made durable the next one accumulates, so the
//! batch size adapts to the load and the fsync cost is shared; after answering a batch the
//! writer may wait briefly for those callers' next writes ([`gather`]) so that callers that
//! store in turn share one batch instead of taking turns.

pub mod gather;

use openraft::async_runtime::WatchReceiver;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};

use statemanager_core::{Batch, Clock, Limits, Op, Stored};
use tokio::sync::{mpsc, oneshot};

use crate::error::Invariant;
use crate::log_store::inline::InlineWrites;
use crate::peer::network::PeerNetwork;
use crate::types::TypeConfig;
use crate::{NodeError, Reason};
use gather::Gather;

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
    /// Most batches proposed and not yet answered.
    pub pipeline: usize,
    /// A leader that has not heard from a quorum for this long refuses new writes.
    pub quorum_timeout: Duration,
    /// The longest the writer waits for the callers it answered before proposing the next
    /// batch ([`gather`]; zero: never).
    pub gather: Duration,
}

/// The id and peer address of the leader, when a leader other than this node is known.
fn remote_leader_addr(raft: &crate::types::Raft) -> Option<(crate::types::NodeId, String)> {
    // Server metrics change only with the vote, role, leader or membership; read in place.
    let server = raft.server_metrics();
    let m = server.borrow_watched();
    let leader = m.current_leader?;
    if leader == m.id {
        return None;
    }
    m.membership_config
        .membership()
        .get_node(&leader)
        .map(|n| (leader, n.addr.clone()))
}

/// `Some(reason)` when this node leads a multi-voter cluster but has not heard from a quorum
/// within `limit`.
pub fn quorum_lost(raft: &crate::types::Raft, limit: Duration) -> Option<String> {
    // Read in place: a clone of the metrics (membership, replication map) per batch showed
    // up in profiles.
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    if m.state != openraft::ServerState::Leader
        || !crate::types::has_several_voters(m.membership_config.membership())
    {
        return None;
    }
    match crate::types::millis_since_quorum_ack(&m) {
        Some(ms) if ms <= limit.as_millis() as u64 => None,
        Some(ms) => Some(format!(
            "this leader has not heard from a quorum for {ms} ms; nothing was written"
        )),
        None => Some("this leader has not yet heard from a quorum; nothing was written".into()),
    }
}

/// The bytes of an operation's data and names: what the byte bounds of a batch and the disk
/// reserve count.
pub(crate) fn op_bytes(op: &Op) -> usize {
    match op {
        Op::Store(s) => s.data.len() + s.id.namespace.as_str().len() + s.id.key.as_str().len(),
        Op::Delete(id) => id.namespace.as_str().len() + id.key.as_str().len(),
    }
}

/// Whether this node leads a membership in which it is the only member (no other voter, no
/// learner): nothing to replicate while its log is written.
fn leads_alone(raft: &crate::types::Raft) -> bool {
    let server = raft.server_metrics();
    let m = server.borrow_watched();
    crate::node::sole_leader_term(&m, m.id).is_some()
        && m.membership_config.membership().nodes().count() == 1
}

/// Proposes one batch and maps openraft's answer to per-operation results.
pub async fn propose(
    raft: &crate::types::Raft,
    batch: Batch,
    commit_timeout: Duration,
) -> Result<Vec<statemanager_core::OpOutcome>, NodeError> {
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(commit_timeout, raft.client_write(batch.into())).await;
    metrics::histogram!("statemanager_batch_commit_seconds")
        .record(started.elapsed().as_secs_f64());
    match answer {
        Ok(Ok(response)) => Ok(response.data.0),
        Ok(Err(RaftError::APIError(e))) => Err(refused(e)),
        // The entry may have been appended before the core stopped.
        Ok(Err(RaftError::Fatal(f))) => Err(NodeError::OutcomeUnknown(Reason::caused(
            "the node is stopping",
            f,
        ))),
        Err(_) => Err(NodeError::CommitTimeout(commit_timeout.as_millis() as u64)),
    }
}

/// A write openraft did not commit here. Refused before its entry was appended (nothing was
/// written): this node does not lead (the caller learns the leader), a membership change in
/// progress, a failed precondition. Or its entry was appended and then discarded when this
/// node took another leader's log or snapshot: openraft 0.10 says so with `LogEntryDiscarded`
/// for both, and after a snapshot the entry may have been committed by another leader, so
/// the outcome is unknown (a retry with the same timestamp is idempotent).
fn refused(e: ClientWriteError<TypeConfig>) -> NodeError {
    match e {
        ClientWriteError::ForwardToLeader(f) => NodeError::NotLeader {
            leader: f.leader_id,
        },
        discarded @ ClientWriteError::LogEntryDiscarded(_) => {
            NodeError::OutcomeUnknown(Reason::caused(
                "the entry was discarded for another leader's log",
                discarded,
            ))
        }
        other => NodeError::Unavailable(Reason::of(other)),
    }
}

/// One outcome per operation of a batch, or one error for all of them.
type BatchAnswer = Result<Vec<Result<Stored, NodeError>>, NodeError>;

/// The outcomes of a batch applied here, as callers get them (conflicts counted).
fn applied(outcomes: Vec<statemanager_core::OpOutcome>) -> Vec<Result<Stored, NodeError>> {
    let conflicts = outcomes
        .iter()
        .filter(|o| matches!(o, Err(statemanager_core::DomainError::Conflict { .. })))
        .count();
    if conflicts > 0 {
        metrics::counter!("statemanager_conflicts_total").increment(conflicts as u64);
    }
    outcomes
        .into_iter()
        .map(|o| o.map_err(NodeError::from))
        .collect()
}

/// Hands each caller its outcome.
fn deliver(replies: Vec<oneshot::Sender<Result<Stored, NodeError>>>, answer: BatchAnswer) {
    match answer {
        Ok(outcomes) if outcomes.len() == replies.len() => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        Ok(outcomes) => {
            // Cannot happen: apply returns one outcome per op, and so does the leader for a
            // handed-over batch. Refuse rather than misattribute answers.
            let broken = Invariant::BatchResultSize {
                expected: replies.len(),
                got: outcomes.len(),
            };
            tracing::error!(error = %broken, "a batch's outcomes do not match its operations");
            for reply in replies {
                let _ = reply.send(Err(NodeError::Internal(broken.clone())));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// A batch handed to Raft (or to the leader) whose outcome has not come back yet.
struct InFlight {
    replies: Vec<oneshot::Sender<Result<Stored, NodeError>>>,
    answer: std::pin::Pin<Box<dyn std::future::Future<Output = BatchAnswer> + Send>>,
}

/// Runs the writer until every sender of `rx` is dropped (and every batch it proposed has
/// been answered).
///
/// Up to `options.pipeline` batches are in flight at once. The writer task itself awaits
/// their outcomes (no task per batch). When the only batch in flight is answered and the
/// gather plans a wait ([`gather`]), the writer hands out the answers first and then waits
/// briefly for those callers' next writes, so that they join the next batch instead of
/// waiting for the one after it. Otherwise (other batches in flight, or no wait planned) it
/// first proposes what queued meanwhile and only then hands out the answers, so
/// the next batch reaches Raft without waiting behind the dozens of request tasks those
/// answers wake (measured: the writer, woken by a task of its own, waited 350 µs on average
/// for a worker; see `docs/design.md`). Raft orders the entries; batches are stamped in the
/// order they are formed, and `apply` never lets time go backwards.
pub async fn run(
    raft: crate::types::Raft,
    network: PeerNetwork,
    clock: Arc<dyn Clock>,
    limits: Limits,
    options: WriterOptions,
    inline: Arc<InlineWrites>,
    mut rx: mpsc::Receiver<WriteRequest>,
) {
    let writer = Writer {
        raft,
        network,
        clock,
        limits,
        options,
        inline,
    };
    let depth = options.pipeline.max(1);
    let mut gather = Gather::new(options.gather);
    let mut in_flight: std::collections::VecDeque<InFlight> = std::collections::VecDeque::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            biased;
            answer = async {
                match in_flight.front_mut() {
                    Some(oldest) => (&mut oldest.answer).await,
                    None => std::future::pending().await,
                }
            }, if !in_flight.is_empty() => {
                let Some(done) = in_flight.pop_front() else { continue };
                let queued = rx.len();
                let plan = match open && in_flight.is_empty() {
                    true => gather.plan(done.replies.len(), queued, options.max_ops),
                    false => None,
                };
                if let Some(plan) = plan {
                    deliver(done.replies, answer);
                    let began = std::time::Instant::now();
                    let gathered = gather_writes(&mut rx, plan, queued, options.max_bytes).await;
                    metrics::histogram!("statemanager_write_gather_seconds")
                        .record(began.elapsed().as_secs_f64());
                    gather.ended(gathered.end);
                    metrics::counter!("statemanager_write_gather_total", "end" => gathered.end.label())
                        .increment(1);
                    open = !gathered.closed;
                    let mut writes = gathered.writes;
                    if writes.is_empty() {
                        writes.extend(rx.try_recv().ok());
                    }
                    if !writes.is_empty() {
                        in_flight.extend(writer.propose(writes, &mut rx).await);
                    }
                    continue;
                }
                // The next batch first: what queued while this one was committed.
                if open && in_flight.len() < depth {
                    match rx.try_recv() {
                        Ok(first) => {
                            in_flight.extend(writer.propose(vec![first], &mut rx).await);
                        }
                        Err(mpsc::error::TryRecvError::Empty) => {}
                        Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                    }
                }
                deliver(done.replies, answer);
            }
            first = rx.recv(), if open && in_flight.len() < depth => match first {
                Some(first) => in_flight.extend(writer.propose(vec![first], &mut rx).await),
                None => open = false,
            },
        }
    }
}

/// The writes a gather took from the queue, and how it ended.
struct Gathered {
    writes: Vec<WriteRequest>,
    end: gather::End,
    /// Every sender is gone: no write will come again.
    closed: bool,
}

/// Takes writes from `rx` until `plan.target` are gathered or still queued, until the
/// gathered writes hold `max_bytes` (a batch's byte bound, soft as in [`Writer::propose`]), or
/// until `plan.wait` has passed; `queued` writes were waiting when the gather began.
async fn gather_writes(
    rx: &mut mpsc::Receiver<WriteRequest>,
    plan: gather::Plan,
    queued: usize,
    max_bytes: usize,
) -> Gathered {
    let deadline = tokio::time::sleep(plan.wait);
    tokio::pin!(deadline);
    let mut writes = Vec::with_capacity(plan.target);
    let mut bytes = 0;
    loop {
        if writes.len() + rx.len() >= plan.target || bytes >= max_bytes {
            return Gathered {
                writes,
                end: gather::End::Complete,
                closed: false,
            };
        }
        tokio::select! {
            () = &mut deadline => {
                let end = gather::End::at_deadline(plan, queued, writes.len() + rx.len());
                return Gathered { writes, end, closed: false };
            }
            next = rx.recv() => match next {
                Some(write) => {
                    bytes += op_bytes(&write.op);
                    writes.push(write);
                }
                None => {
                    return Gathered { writes, end: gather::End::Idle, closed: true };
                }
            },
        }
    }
}

/// What the writer needs to form and propose batches.
struct Writer {
    raft: crate::types::Raft,
    network: PeerNetwork,
    clock: Arc<dyn Clock>,
    limits: Limits,
    options: WriterOptions,
    /// Where the writer offers a batch for a write in place ([`InlineWrites`]).
    inline: Arc<InlineWrites>,
}

impl Writer {
    /// Forms a batch of `first` (at least one write) and whatever else is queued (up to the
    /// bounds) and proposes it: to the leader in one peer RPC on a follower that knows its leader, to Raft
    /// otherwise. `None` when it was answered at once (no quorum, node stopping).
    async fn propose(
        &self,
        first: Vec<WriteRequest>,
        rx: &mut mpsc::Receiver<WriteRequest>,
    ) -> Option<InFlight> {
        let options = &self.options;
        let mut bytes = 0;
        let room = (first.len() + rx.len()).min(options.max_ops);
        let mut ops = Vec::with_capacity(room);
        let mut replies = Vec::with_capacity(room);
        for write in first {
            bytes += op_bytes(&write.op);
            ops.push(write.op);
            replies.push(write.reply);
        }
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
        metrics::histogram!("statemanager_batch_ops").record(replies.len() as f64);
        // On a follower that knows its leader, the whole batch goes to the leader in one peer
        // RPC (instead of one forwarded HTTP request per store).
        if let Some((leader, addr)) = remote_leader_addr(&self.raft) {
            let network = self.network.clone();
            let timeout = options.commit_timeout + Duration::from_millis(300);
            let answer = async move {
                let started = std::time::Instant::now();
                let result = network.propose(&addr, Some(leader), &ops, timeout).await;
                metrics::histogram!("statemanager_batch_forward_seconds")
                    .record(started.elapsed().as_secs_f64());
                result
            };
            return Some(InFlight {
                replies,
                answer: Box::pin(answer),
            });
        }
        // A leader that has not heard from a quorum within an election timeout refuses
        // before proposing: the client learns at once that nothing happened (no_quorum),
        // instead of waiting for a commit timeout with an unknown outcome.
        if let Some(reason) = quorum_lost(&self.raft, options.quorum_timeout) {
            deliver(replies, Err(NodeError::NoQuorum(reason.into())));
            return None;
        }
        let batch = Batch {
            now: self.clock.now(),
            limits: self.limits,
            ops,
        };
        tracing::trace!(ops = replies.len(), bytes, "proposing batch");
        if self.inline.enabled() {
            self.inline.offer(leads_alone(&self.raft), replies.len());
        }
        // Submitted here, in formation order; the outcome is awaited by the writer loop.
        let (responder, committed, receiver) = openraft::impls::ProgressResponder::new();
        match self
            .raft
            .client_write_ff(batch.into(), Some(responder))
            .await
        {
            Ok(()) => {
                let timeout = options.commit_timeout;
                let started = std::time::Instant::now();
                let answer = async move {
                    // Kept until the outcome: openraft warns when the commit notice finds
                    // nobody listening.
                    let _committed = committed;
                    let answer = tokio::time::timeout(timeout, receiver).await;
                    metrics::histogram!("statemanager_batch_commit_seconds")
                        .record(started.elapsed().as_secs_f64());
                    match answer {
                        Ok(Ok(Ok(response))) => Ok(applied(response.data.0)),
                        Ok(Ok(Err(e))) => Err(refused(e)),
                        // The entry may be in the log; only its answer is gone.
                        Ok(Err(_)) => Err(NodeError::OutcomeUnknown(
                            "the node stopped before the entry committed".into(),
                        )),
                        Err(_) => Err(NodeError::CommitTimeout(timeout.as_millis() as u64)),
                    }
                };
                Some(InFlight {
                    replies,
                    answer: Box::pin(answer),
                })
            }
            Err(fatal) => {
                // Nothing was appended: the offer must not carry over to another append.
                self.inline.offer(false, 0);
                deliver(
                    replies,
                    Err(NodeError::Unavailable(
                        format!("the node is stopping ({fatal})").into(),
                    )),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {

    use statemanager_core::{
        Data, DomainError, ItemId, Key, Namespace, Op, Stored, Timestamp, Ttl,
    };
    use tokio::sync::oneshot;

    use super::{deliver, op_bytes};
    use crate::error::{Invariant, NodeError};

    fn id(key: &str) -> ItemId {
        ItemId {
            namespace: Namespace::new("ns").unwrap(),
            key: Key::new(key).unwrap(),
        }
    }

    fn stored(secs: u64) -> Stored {
        Stored {
            timestamp: Timestamp::from_micros(secs * 1_000_000),
            expires_at: Timestamp::from_micros((secs + 60) * 1_000_000),
        }
    }

    type Reply = oneshot::Receiver<Result<Stored, NodeError>>;

    fn channels(n: usize) -> (Vec<oneshot::Sender<Result<Stored, NodeError>>>, Vec<Reply>) {
        (0..n).map(|_| oneshot::channel()).unzip()
    }

    #[test]
    fn a_store_counts_its_data_and_names_a_delete_its_names() {
        let store = Op::Store(statemanager_core::StoreOp {
            id: id("key"),
            data: Data::from("0123456789"),
            ttl: Ttl::from_secs(60).unwrap(),
            timestamp: None,
        });
        assert_eq!(op_bytes(&store), 10 + 2 + 3);
        assert_eq!(op_bytes(&Op::Delete(id("key"))), 2 + 3);
    }

    #[test]
    fn each_caller_gets_its_own_outcome_in_order() {
        let (senders, mut receivers) = channels(3);
        let stored_at = DomainError::Conflict {
            stored: Timestamp::from_micros(7),
        };
        deliver(
            senders,
            Ok(super::applied(vec![
                Ok(stored(1)),
                Err(stored_at),
                Ok(stored(3)),
            ])),
        );
        assert_eq!(receivers[0].try_recv().unwrap().unwrap(), stored(1));
        assert!(matches!(
            receivers[1].try_recv().unwrap(),
            Err(NodeError::Domain(DomainError::Conflict { .. }))
        ));
        assert_eq!(receivers[2].try_recv().unwrap().unwrap(), stored(3));
    }

    #[test]
    fn a_result_of_the_wrong_size_is_an_internal_error_for_everyone() {
        let (senders, mut receivers) = channels(2);
        deliver(senders, Ok(vec![Ok(stored(1))]));
        for receiver in &mut receivers {
            assert!(matches!(
                receiver.try_recv().unwrap(),
                Err(NodeError::Internal(Invariant::BatchResultSize {
                    expected: 2,
                    got: 1
                }))
            ));
        }
    }

    #[test]
    fn a_refused_write_names_the_leader_and_a_discarded_one_has_an_unknown_outcome() {
        use openraft::error::{ClientWriteError, ForwardToLeader};
        let leader = || ForwardToLeader::new(2, openraft::BasicNode::new("127.0.0.1:7002"));
        assert!(matches!(
            super::refused(ClientWriteError::ForwardToLeader(leader())),
            NodeError::NotLeader { leader: Some(2) }
        ));
        // Discarded for another leader's log or snapshot: it may have been committed there.
        assert!(matches!(
            super::refused(ClientWriteError::LogEntryDiscarded(leader())),
            NodeError::OutcomeUnknown(_)
        ));
    }

    fn write_of(key: &str, data: &str) -> super::WriteRequest {
        super::WriteRequest {
            op: Op::Store(statemanager_core::StoreOp {
                id: id(key),
                data: Data::from(data),
                ttl: Ttl::from_secs(60).unwrap(),
                timestamp: None,
            }),
            reply: oneshot::channel().0,
        }
    }

    #[tokio::test]
    async fn a_gather_ends_at_its_target_at_a_batch_of_bytes_or_at_its_deadline() {
        use super::gather::{End, Plan};
        use std::time::Duration;
        let plan = |wait_ms| Plan {
            target: 8,
            wait: Duration::from_millis(wait_ms),
        };
        // Eight writes queued: complete at once.
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        for i in 0..8 {
            tx.try_send(write_of(&format!("k{i}"), "x")).unwrap();
        }
        let gathered = super::gather_writes(&mut rx, plan(60_000), 0, 1 << 20).await;
        assert_eq!(gathered.end, End::Complete);
        assert_eq!(gathered.writes.len() + rx.len(), 8);

        // Three big writes hold a batch's bytes: complete without waiting for five more.
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        for i in 0..3 {
            tx.try_send(write_of(&format!("b{i}"), &"x".repeat(400)))
                .unwrap();
        }
        let gathered = super::gather_writes(&mut rx, plan(2_000), 0, 1000).await;
        assert_eq!((gathered.end, gathered.writes.len()), (End::Complete, 3));

        // Nothing more comes: the deadline ends it.
        tx.try_send(write_of("only", "x")).unwrap();
        let gathered = super::gather_writes(&mut rx, plan(20), 0, 1 << 20).await;
        assert_eq!((gathered.end, gathered.writes.len()), (End::Missed, 1));
        assert!(!gathered.closed);

        // Every sender gone: closed.
        drop(tx);
        let gathered = super::gather_writes(&mut rx, plan(60_000), 0, 1 << 20).await;
        assert!(gathered.closed);
    }

    #[test]
    fn a_failed_batch_fails_every_caller_with_the_same_error() {
        let (senders, mut receivers) = channels(2);
        deliver(senders, Err(NodeError::CommitTimeout(1500)));
        for receiver in &mut receivers {
            assert!(matches!(
                receiver.try_recv().unwrap(),
                Err(NodeError::CommitTimeout(1500))
            ));
        }
    }
}
