//! The client connections' own threads (`connection_threads`): each runs a single-threaded
//! Tokio runtime with its own event loop, and the accept loop hands the client connections
//! out in turn, one share to each serving thread: of every W + T connections, W go to the
//! runtime's W workers and one to each of the T threads.
//!
//! Why not more workers instead: in Tokio's multi-threaded runtime one worker at a time polls
//! the event loop, so the tasks a socket wakes land on that worker and the others steal them,
//! waking each other to do so. A second worker measured no faster than one on a 2-core
//! machine, at 10 % more CPU per request; one thread of its own beside the one worker served
//! 1.23× the fetches at the same CPU per fetch (docs/design.md, "Connections on a thread of
//! their own").
//!
//! A connection stays on the thread it was given. What it calls into (the node, the cache,
//! the writer) is shared by every thread and wakes the caller wherever it runs.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The running connection threads; [`ConnectionThreads::stop`] ends them.
pub struct ConnectionThreads {
    threads: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
    handles: Arc<[Handle]>,
    workers: usize,
}

/// How long a stopping connection thread waits for blocking work it started (a backup
/// being written, a file read) before it lets go of it.
const BLOCKING_WORK_AT_STOP: Duration = Duration::from_secs(1);

/// Asks for the scheduler `slice`, when one is set (see `statemanager_raft::thread_slice`).
fn ask_for_slice(slice: Option<Duration>) {
    if let Some(slice) = slice {
        if let Err(e) = statemanager_raft::thread_slice::request(slice) {
            tracing::debug!(error = %e, "a connection thread keeps the default scheduler slice");
        }
    }
}

impl ConnectionThreads {
    /// Starts `count` threads named `sm-conn-1` … beside `workers` runtime workers, each
    /// asking for the scheduler `slice` when one is set, as the runtime's workers do (so do
    /// the threads a connection thread starts for blocking work, `sm-conn-N-blocking`).
    pub fn start(
        count: usize,
        workers: usize,
        slice: Option<Duration>,
    ) -> std::io::Result<ConnectionThreads> {
        let mut threads = Vec::with_capacity(count);
        let mut handles = Vec::with_capacity(count);
        for n in 1..=count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("sm-conn-{n}-blocking"))
                .on_thread_start(move || ask_for_slice(slice))
                .build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("sm-conn-{n}"))
                .spawn(move || {
                    ask_for_slice(slice);
                    // Runs the thread's connections until told to stop (or the sender is
                    // gone); what is left on it then ends, and blocking work still running
                    // gets a moment, not an unbounded wait.
                    let _ = runtime.block_on(stopped);
                    runtime.shutdown_timeout(BLOCKING_WORK_AT_STOP);
                })?;
            threads.push((stop, thread));
        }
        Ok(ConnectionThreads {
            threads,
            handles: handles.into(),
            workers: workers.max(1),
        })
    }

    /// How connections are spread over the runtime's workers and these threads.
    pub fn spread(&self) -> Spread {
        Spread {
            handles: self.handles.clone(),
            workers: self.workers,
            next: 0,
            workers_only: None,
        }
    }

    /// How many threads there are.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Ends every thread, dropping the connections still open on it, and waits for them.
    pub fn stop(self) {
        for (stop, thread) in self.threads {
            let _ = stop.send(());
            if thread.join().is_err() {
                tracing::warn!("a connection thread panicked");
            }
        }
    }
}

/// Where an accept loop puts its next connection: of every W + T connections, W to the
/// runtime's W workers, then one to each of the T connection threads; every one to the
/// workers while [`Spread::workers_only_while`]'s condition holds.
#[derive(Clone)]
pub struct Spread {
    handles: Arc<[Handle]>,
    /// The runtime's workers: how many of every round of connections stay with them.
    workers: usize,
    next: usize,
    /// While this answers true, every connection goes to the workers.
    workers_only: Option<WorkersOnly>,
}

/// The condition under which a [`Spread`] puts every connection on the workers.
pub type WorkersOnly = Arc<dyn Fn() -> bool + Send + Sync>;

impl Default for Spread {
    /// Every connection on the workers.
    fn default() -> Self {
        Spread {
            handles: Arc::from([]),
            workers: 1,
            next: 0,
            workers_only: None,
        }
    }
}

/// The serving thread [`Spread::next_place`] chose.
pub enum Place<'a> {
    /// The runtime's workers (where the accept loop runs).
    Workers,
    /// Connection thread `number` (from 1), through its runtime's handle.
    Thread { number: usize, handle: &'a Handle },
}

impl Spread {
    /// How many connection threads connections are spread to.
    pub fn threads(&self) -> usize {
        self.handles.len()
    }

    /// The same spread, but every connection accepted while `condition` answers true goes
    /// to the workers (asked once per connection; the turns of the others resume after).
    pub fn workers_only_while(self, condition: WorkersOnly) -> Spread {
        Spread {
            workers_only: Some(condition),
            ..self
        }
    }

    /// The place for the next connection.
    pub fn next_place(&mut self) -> Place<'_> {
        if self.handles.is_empty() || self.workers_only.as_ref().is_some_and(|holds| holds()) {
            return Place::Workers;
        }
        let slots = self.workers + self.handles.len();
        let slot = self.next % slots;
        self.next = (slot + 1) % slots;
        match slot
            .checked_sub(self.workers)
            .and_then(|i| Some((i + 1, self.handles.get(i)?)))
        {
            None => Place::Workers,
            Some((number, handle)) => Place::Thread { number, handle },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(spread: &mut Spread, count: usize) -> Vec<usize> {
        (0..count)
            .map(|_| match spread.next_place() {
                Place::Workers => 0,
                Place::Thread { number, .. } => number,
            })
            .collect()
    }

    #[test]
    fn without_threads_every_connection_stays_on_the_workers() {
        assert_eq!(numbers(&mut Spread::default(), 4), [0, 0, 0, 0]);
    }

    #[test]
    fn connections_take_the_workers_and_each_thread_in_turn() {
        let threads = ConnectionThreads::start(2, 1, None).unwrap();
        assert_eq!(threads.len(), 2);
        let mut spread = threads.spread();
        assert_eq!(numbers(&mut spread, 7), [0, 1, 2, 0, 1, 2, 0]);
        threads.stop();
    }

    #[test]
    fn each_worker_and_each_thread_takes_one_share() {
        let threads = ConnectionThreads::start(1, 3, None).unwrap();
        let mut spread = threads.spread();
        assert_eq!(numbers(&mut spread, 9), [0, 0, 0, 1, 0, 0, 0, 1, 0]);
        threads.stop();
    }

    #[test]
    fn while_its_condition_holds_every_connection_goes_to_the_workers() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let threads = ConnectionThreads::start(1, 1, None).unwrap();
        let holds = Arc::new(AtomicBool::new(false));
        let condition = holds.clone();
        let mut spread = threads
            .spread()
            .workers_only_while(Arc::new(move || condition.load(Ordering::Relaxed)));
        assert_eq!(numbers(&mut spread, 3), [0, 1, 0]);
        holds.store(true, Ordering::Relaxed);
        assert_eq!(numbers(&mut spread, 4), [0, 0, 0, 0]);
        holds.store(false, Ordering::Relaxed);
        assert_eq!(numbers(&mut spread, 3), [1, 0, 1]);
        threads.stop();
    }

    #[test]
    fn a_thread_runs_what_it_is_given_and_stops() {
        let threads = ConnectionThreads::start(1, 1, None).unwrap();
        let mut spread = threads.spread();
        let _ = spread.next_place();
        let Place::Thread { handle, .. } = spread.next_place() else {
            panic!("the second connection goes to the thread");
        };
        let (tx, rx) = std::sync::mpsc::channel();
        handle.spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            tx.send(std::thread::current().name().map(String::from))
                .unwrap();
        });
        let name = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(name.as_deref(), Some("sm-conn-1"));
        threads.stop();
    }
}
