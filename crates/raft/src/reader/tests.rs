//! Tests of the reader's rounds ([`super::rounds`]), with a fake round in place of
//! [`super::linearize`]: the round is our own seam, so these test how queued reads are
//! grouped into rounds and answered, not openraft's `ensure_linearizable`.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{rounds, ReadWaiter};
use crate::NodeError;

/// Bounds every wait of these tests: none of them should take more than a moment.
const BOUND: Duration = Duration::from_secs(5);

type Answer = oneshot::Receiver<Result<(), NodeError>>;

/// Queues one read on `tx`; its answer arrives on the receiver.
async fn queue(tx: &mpsc::Sender<ReadWaiter>) -> Answer {
    let (waiter, answer) = oneshot::channel();
    tx.send(waiter).await.expect("the reader is running");
    answer
}

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {BOUND:?}"))
}

/// A round the test controls: each round announces itself (its number, from 1) on
/// `started`, then waits for the result the test gives it on `results`.
struct FakeRounds {
    started: mpsc::UnboundedReceiver<usize>,
    results: mpsc::UnboundedSender<Result<(), NodeError>>,
}

/// Starts [`rounds`] on `rx` with a controlled fake round.
fn start(rx: mpsc::Receiver<ReadWaiter>) -> (FakeRounds, tokio::task::JoinHandle<()>) {
    let (started_tx, started) = mpsc::unbounded_channel();
    let (results, results_rx) = mpsc::unbounded_channel();
    let results_rx = std::sync::Arc::new(tokio::sync::Mutex::new(results_rx));
    let mut n = 0;
    let task = tokio::spawn(rounds(rx, move || {
        n += 1;
        let _ = started_tx.send(n);
        let results_rx = results_rx.clone();
        async move {
            results_rx
                .lock()
                .await
                .recv()
                .await
                .unwrap_or_else(|| Err(NodeError::Unavailable("the test ended".into())))
        }
    }));
    (FakeRounds { started, results }, task)
}

impl FakeRounds {
    /// Waits until round `n` has begun.
    async fn begun(&mut self, n: usize) {
        let got = bounded("a round to begin", self.started.recv()).await;
        assert_eq!(got, Some(n), "round {n} begins next");
    }

    /// Ends the current round with `result`.
    fn end(&self, result: Result<(), NodeError>) {
        self.results.send(result).expect("the round is waiting");
    }
}

#[tokio::test]
async fn a_round_covers_only_the_reads_queued_before_it_began() {
    let (tx, rx) = mpsc::channel(16);
    let first = queue(&tx).await;
    let second = queue(&tx).await;
    let (mut fake, _task) = start(rx);
    fake.begun(1).await;
    // Queued while round 1 is in flight: it must wait for round 2.
    let mut late = queue(&tx).await;
    fake.end(Ok(()));
    assert!(bounded("first", first).await.expect("answered").is_ok());
    assert!(bounded("second", second).await.expect("answered").is_ok());
    fake.begun(2).await;
    assert!(
        matches!(late.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
        "a read queued during round 1 is not answered by it"
    );
    fake.end(Err(NodeError::NoQuorum("round 2 failed".into())));
    let answer = bounded("late", late).await.expect("answered");
    assert!(matches!(answer, Err(NodeError::NoQuorum(m)) if m == "round 2 failed"));
}

#[tokio::test]
async fn reads_queued_together_share_one_round() {
    let (tx, rx) = mpsc::channel(16);
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(queue(&tx).await);
    }
    let (mut fake, _task) = start(rx);
    fake.begun(1).await;
    fake.end(Ok(()));
    for answer in answers {
        assert!(bounded("a read", answer).await.expect("answered").is_ok());
    }
    assert!(
        fake.started.try_recv().is_err(),
        "no second round without a read"
    );
}

#[tokio::test]
async fn a_failed_round_fails_every_read_of_it_with_the_same_error() {
    let (tx, rx) = mpsc::channel(16);
    let answers = [queue(&tx).await, queue(&tx).await, queue(&tx).await];
    let (mut fake, _task) = start(rx);
    fake.begun(1).await;
    fake.end(Err(NodeError::NotLeader { leader: Some(2) }));
    for answer in answers {
        let got = bounded("a read", answer).await.expect("answered");
        assert!(matches!(got, Err(NodeError::NotLeader { leader: Some(2) })));
    }
}

#[tokio::test]
async fn a_read_whose_caller_left_does_not_hold_up_the_others() {
    let (tx, rx) = mpsc::channel(16);
    drop(queue(&tx).await);
    let kept = queue(&tx).await;
    let (mut fake, _task) = start(rx);
    fake.begun(1).await;
    fake.end(Ok(()));
    assert!(bounded("kept", kept).await.expect("answered").is_ok());
}

#[tokio::test]
async fn the_reader_ends_when_every_sender_is_gone() {
    let (tx, rx) = mpsc::channel(16);
    let (mut fake, task) = start(rx);
    drop(tx);
    bounded("the reader to end", task)
        .await
        .expect("the reader did not panic");
    assert!(fake.started.try_recv().is_err(), "no round without a read");
}

#[tokio::test]
async fn reads_from_tasks_ready_when_the_first_arrives_join_its_round() {
    let (tx, rx) = mpsc::channel(16);
    let (mut fake, _task) = start(rx);
    let first = queue(&tx).await;
    // Ready to run when the reader wakes for the first read: the reader lets them run before
    // it takes its reads, so the four share one round.
    let mut others = Vec::new();
    for _ in 0..3 {
        let tx = tx.clone();
        others.push(tokio::spawn(async move { queue(&tx).await.await }));
    }
    fake.begun(1).await;
    fake.end(Ok(()));
    assert!(bounded("first", first).await.expect("answered").is_ok());
    for other in others {
        let answer = bounded("other", other).await.expect("the task ran");
        assert!(answer.expect("answered").is_ok());
    }
    assert!(
        fake.started.try_recv().is_err(),
        "one round served all four reads"
    );
}
