//! The client connections' own threads (`connection_threads`): each runs a single-threaded
//! Tokio runtime with its own event loop, and the accept loop hands every client connection
//! in turn to the runtime's workers or to one of these threads.
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
}

impl ConnectionThreads {
    /// Starts `count` threads named `sm-conn-1` …, each asking for the scheduler `slice`
    /// when one is set, as the runtime's workers do.
    pub fn start(count: usize, slice: Option<Duration>) -> std::io::Result<ConnectionThreads> {
        let mut threads = Vec::with_capacity(count);
        let mut handles = Vec::with_capacity(count);
        for n in 1..=count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("sm-conn-{n}"))
                .spawn(move || {
                    if let Some(slice) = slice {
                        if let Err(e) = statemanager_raft::thread_slice::request(slice) {
                            tracing::debug!(error = %e, "a connection thread keeps the default scheduler slice");
                        }
                    }
                    // Runs the thread's connections until told to stop (or the sender is
                    // gone); dropping the runtime then ends whatever is left on it.
                    let _ = runtime.block_on(stopped);
                })?;
            threads.push((stop, thread));
        }
        Ok(ConnectionThreads {
            threads,
            handles: handles.into(),
        })
    }

    /// How connections are spread over the runtime's workers and these threads.
    pub fn spread(&self) -> Spread {
        Spread {
            handles: self.handles.clone(),
            next: 0,
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

/// Where an accept loop puts its next connection: the runtime's workers first, then each
/// connection thread, in turn.
#[derive(Clone, Default)]
pub struct Spread {
    handles: Arc<[Handle]>,
    next: usize,
}

/// The serving thread [`Spread::next_place`] chose.
pub enum Place<'a> {
    /// The runtime's workers (where the accept loop runs).
    Workers,
    /// Connection thread `number` (from 1), through its runtime's handle.
    Thread { number: usize, handle: &'a Handle },
}

impl Spread {
    /// The place for the next connection.
    pub fn next_place(&mut self) -> Place<'_> {
        let slots = self.handles.len() + 1;
        let slot = self.next % slots;
        self.next = (slot + 1) % slots;
        match slot.checked_sub(1).and_then(|i| self.handles.get(i)) {
            None => Place::Workers,
            Some(handle) => Place::Thread {
                number: slot,
                handle,
            },
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
        let threads = ConnectionThreads::start(2, None).unwrap();
        assert_eq!(threads.len(), 2);
        let mut spread = threads.spread();
        assert_eq!(numbers(&mut spread, 7), [0, 1, 2, 0, 1, 2, 0]);
        threads.stop();
    }

    #[test]
    fn a_thread_runs_what_it_is_given_and_stops() {
        let threads = ConnectionThreads::start(1, None).unwrap();
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
