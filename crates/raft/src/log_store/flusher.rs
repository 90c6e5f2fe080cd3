//! The log's writer thread: appends are written and fsync'd here, in submission order, while
//! the Raft core goes on.
//!
//! openraft 0.10 submits an append and carries on (replicating the entries, taking the next
//! proposals) until the flush callback says the entries are durable; only then does it count
//! them towards a commit. So [`super::LogStore::append`] only hands its records to this
//! thread. The thread takes every append queued while it was busy and writes them as **one**
//! WAL append with one `fdatasync`, then reports each callback in order. Because such a
//! group is a single WAL append, at most the last append in the WAL is not durable when the
//! power fails: the WAL's torn-tail rule stays as it was (see `storage::wal`).
//!
//! A failed write or fsync is final: that append and every later one are reported failed, and
//! nothing more is written (the kernel may have dropped the dirty pages, so a retry could
//! "succeed" without the data).

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::storage::IOFlushed;
use statemanager_storage::LogEngine;

use crate::log_tail::LogTail;
use crate::types::TypeConfig;

/// Work for the writer thread.
pub(crate) enum Job {
    /// Records to append (index, encoded entry), and whom to tell once they are durable.
    Append {
        records: Vec<(u64, Vec<u8>)>,
        callback: IOFlushed<TypeConfig>,
    },
    /// Answered once everything submitted before it has been written (or has failed).
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// The handle to the writer thread (the thread ends when every handle is gone).
#[derive(Debug)]
pub(crate) struct Flusher {
    jobs: Sender<Job>,
}

/// The writer thread is gone (it could not be started); the append is refused.
#[derive(Debug, thiserror::Error)]
#[error("the log writer thread is not running")]
pub(crate) struct FlusherGone;

impl Flusher {
    /// Starts the writer thread for `engine`; it marks what it wrote in `tail`. With `slice`,
    /// the thread asks for that scheduler slice ([`crate::thread_slice`]), so it starts
    /// writing soon after an append wakes it.
    pub(crate) fn start(
        engine: LogEngine,
        tail: Arc<Mutex<LogTail>>,
        slice: Option<Duration>,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                if let Some(slice) = slice {
                    if let Err(e) = crate::thread_slice::request(slice) {
                        tracing::debug!(error = %e, "the log writer keeps the default scheduler slice");
                    }
                }
                run(&engine, &tail, &queue)
            })?;
        Ok(Flusher { jobs })
    }

    /// Queues an append.
    pub(crate) fn append(
        &self,
        records: Vec<(u64, Vec<u8>)>,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), FlusherGone> {
        self.jobs
            .send(Job::Append { records, callback })
            .map_err(|_| FlusherGone)
    }

    /// Waits until every append queued before this call has been written (or has failed).
    pub(crate) async fn barrier(&self) -> Result<(), FlusherGone> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Barrier(done))
            .map_err(|_| FlusherGone)?;
        wait.await.map_err(|_| FlusherGone)
    }
}

/// The thread's loop: everything queued is taken at once and written as one append.
fn run(engine: &LogEngine, tail: &Mutex<LogTail>, queue: &Receiver<Job>) {
    let mut group = Group::default();
    while let Ok(first) = queue.recv() {
        let mut next = Some(first);
        while let Some(job) = next {
            match job {
                Job::Append { records, callback } => {
                    group.records.extend(records);
                    group.callbacks.push(callback);
                }
                Job::Barrier(done) => {
                    group.write(engine, tail);
                    let _ = done.send(());
                }
            }
            next = queue.try_recv().ok();
        }
        group.write(engine, tail);
    }
}

/// The appends taken together, and whether an earlier write failed.
#[derive(Default)]
struct Group {
    records: Vec<(u64, Vec<u8>)>,
    callbacks: Vec<IOFlushed<TypeConfig>>,
    failed: Option<String>,
}

impl Group {
    /// Writes and fsyncs the group as one WAL append, then reports every callback in order.
    fn write(&mut self, engine: &LogEngine, tail: &Mutex<LogTail>) {
        if self.callbacks.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.records);
        let callbacks = std::mem::take(&mut self.callbacks);
        if self.failed.is_none() {
            let started = std::time::Instant::now();
            let result = engine.append(&records);
            metrics::histogram!("statemanager_wal_append_fsync_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::histogram!("statemanager_wal_appends_per_fsync")
                .record(callbacks.len() as f64);
            match result {
                Ok(()) => {
                    if let Some((last, _)) = records.last() {
                        lock(tail).written_through(*last);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "appending to the raft log failed; stopping");
                    lock(tail).clear();
                    self.failed = Some(e.to_string());
                }
            }
        }
        for callback in callbacks {
            match &self.failed {
                None => callback.io_completed(Ok(())),
                Some(reason) => callback.io_completed(Err(std::io::Error::other(reason.clone()))),
            }
        }
    }
}

fn lock(tail: &Mutex<LogTail>) -> std::sync::MutexGuard<'_, LogTail> {
    // Every change to the tail is a single call that leaves it consistent.
    tail.lock().unwrap_or_else(|p| p.into_inner())
}
