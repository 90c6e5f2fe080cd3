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
//! A sole voter may instead write an append in place, on the Raft core's task, when nothing
//! else could use that thread meanwhile ([`super::inline`]); it does so only once this thread
//! has finished every job it was given, so appends stay in order either way.
//!
//! A failed write or fsync is final: that append and every later one are reported failed, and
//! nothing more is written (the kernel may have dropped the dirty pages, so a retry could
//! "succeed" without the data).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::storage::IOFlushed;
use statemanager_storage::LogEngine;

use super::inline::InlineWrites;
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
    log: Arc<Log>,
}

/// What both paths write to: the engine, the tail, and whether an earlier write failed.
#[derive(Debug)]
struct Log {
    engine: LogEngine,
    tail: Arc<Mutex<LogTail>>,
    /// Held for the whole of a write, so the thread and an inline write never overlap;
    /// `Some(reason)` once a write failed: every later one fails too.
    failed: Mutex<Option<String>>,
    /// Jobs sent to the thread and not yet done.
    pending: AtomicUsize,
    /// The inline-write rule; `None`: the thread writes everything.
    inline: Option<Arc<InlineWrites>>,
}

/// The writer thread is gone (it could not be started); the append is refused.
#[derive(Debug, thiserror::Error)]
#[error("the log writer thread is not running")]
pub(crate) struct FlusherGone;

impl Flusher {
    /// Starts the writer thread for `engine`; it marks what it wrote in `tail`. With `slice`,
    /// the thread asks for that scheduler slice ([`crate::thread_slice`]), so it starts
    /// writing soon after an append wakes it. With `inline`, appends that rule allows are
    /// written in place instead.
    pub(crate) fn start(
        engine: LogEngine,
        tail: Arc<Mutex<LogTail>>,
        slice: Option<Duration>,
        inline: Option<Arc<InlineWrites>>,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = std::sync::mpsc::channel();
        let log = Arc::new(Log {
            engine,
            tail,
            failed: Mutex::new(None),
            pending: AtomicUsize::new(0),
            inline,
        });
        let thread_log = log.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                if let Some(slice) = slice {
                    if let Err(e) = crate::thread_slice::request(slice) {
                        tracing::debug!(error = %e, "the log writer keeps the default scheduler slice");
                    }
                }
                run(&thread_log, &queue)
            })?;
        Ok(Flusher { jobs, log })
    }

    /// Queues an append, or writes it in place when the inline rule allows
    /// ([`super::inline`]) and `in_place_allowed` (the caller's own conditions): then it is
    /// durable, and `callback` told, before this returns. An append that starts a log segment
    /// (file creation and directory fsyncs) always goes to the thread.
    pub(crate) fn append(
        &self,
        records: Vec<(u64, Vec<u8>)>,
        callback: IOFlushed<TypeConfig>,
        in_place_allowed: bool,
    ) -> Result<(), FlusherGone> {
        if let Some(inline) = &self.log.inline {
            // The offer is used up whatever the answer.
            let may = inline.take(self.idle());
            if may && in_place_allowed && !self.log.engine.next_append_starts_segment() {
                if self.log.write(records, vec![callback]) {
                    metrics::counter!("statemanager_wal_inline_appends_total").increment(1);
                }
                return Ok(());
            }
        }
        self.send(Job::Append { records, callback })
    }

    /// Whether the thread has finished every job it was given (so an append written in place
    /// comes after all of them).
    pub(crate) fn idle(&self) -> bool {
        self.log.pending.load(Ordering::Acquire) == 0
    }

    /// Waits until every append queued before this call has been written (or has failed).
    pub(crate) async fn barrier(&self) -> Result<(), FlusherGone> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(Job::Barrier(done))?;
        wait.await.map_err(|_| FlusherGone)
    }

    /// Why a write failed, once one has (every later one fails too).
    pub(crate) fn failure(&self) -> Option<String> {
        self.log
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn send(&self, job: Job) -> Result<(), FlusherGone> {
        self.log.pending.fetch_add(1, Ordering::AcqRel);
        self.jobs.send(job).map_err(|_| {
            self.log.pending.fetch_sub(1, Ordering::AcqRel);
            FlusherGone
        })
    }
}

/// The thread's loop: everything queued is taken at once and written as one append.
fn run(log: &Log, queue: &Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut records = Vec::new();
        let mut callbacks = Vec::new();
        let mut taken = 0;
        let mut next = Some(first);
        while let Some(job) = next {
            taken += 1;
            match job {
                Job::Append {
                    records: more,
                    callback,
                } => {
                    records.extend(more);
                    callbacks.push(callback);
                }
                Job::Barrier(done) => {
                    let _ = log.write(std::mem::take(&mut records), std::mem::take(&mut callbacks));
                    let _ = done.send(());
                }
            }
            next = queue.try_recv().ok();
        }
        let _ = log.write(records, callbacks);
        log.pending.fetch_sub(taken, Ordering::AcqRel);
    }
}

impl Log {
    /// Writes and fsyncs `records` as one WAL append, then reports every callback in order;
    /// `true` when they were written (not refused after an earlier failure, not failed now).
    fn write(&self, records: Vec<(u64, Vec<u8>)>, callbacks: Vec<IOFlushed<TypeConfig>>) -> bool {
        if callbacks.is_empty() {
            return false;
        }
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if failed.is_none() {
            let started = std::time::Instant::now();
            let result = self.engine.append(&records);
            let elapsed = started.elapsed();
            if let Some(inline) = &self.inline {
                inline.fsync_took(elapsed);
            }
            metrics::histogram!("statemanager_wal_append_fsync_seconds")
                .record(elapsed.as_secs_f64());
            metrics::histogram!("statemanager_wal_appends_per_fsync")
                .record(callbacks.len() as f64);
            match result {
                Ok(()) => {
                    if let Some((last, _)) = records.last() {
                        lock(&self.tail).written_through(*last);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "appending to the raft log failed; stopping");
                    lock(&self.tail).clear();
                    *failed = Some(e.to_string());
                }
            }
        }
        let failed = failed.clone();
        for callback in callbacks {
            match &failed {
                None => callback.io_completed(Ok(())),
                Some(reason) => callback.io_completed(Err(std::io::Error::other(reason.clone()))),
            }
        }
        failed.is_none()
    }
}

fn lock(tail: &Mutex<LogTail>) -> std::sync::MutexGuard<'_, LogTail> {
    // Every change to the tail is a single call that leaves it consistent.
    tail.lock().unwrap_or_else(|p| p.into_inner())
}
