//! Syncing several partition files at once, on threads that live as long as the broker.
//!
//! ```text
//!   relay pass ── jobs (crossbeam) ──▶ syncer 0 ┐ fdatasync(p0)
//!                                  ──▶ syncer 1 ├ fdatasync(p2)       overlap in the
//!                                  ──▶ syncer 2 ┘ fdatasync(p3)       journal and device
//!             ◀── results (crossbeam) ── one per job; wait for ALL before answering
//! ```
//!
//! Why persistent threads and channels instead of a scoped thread per file per pass: a relay
//! at batch 100 makes ~1,500 passes a second under load, and spawning and joining four
//! threads per pass is work on the hot path that buys nothing. The pool is started on the
//! first parallel sync and stops when the broker is dropped (its job channel closes).

use std::fs::File;
use std::path::PathBuf;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::error::{Context, Result};

/// At most this many syncer threads, whatever the partition count.
pub const MAX_SYNCERS: usize = 8;

struct Job {
    /// A duplicate descriptor of the partition file: fdatasync through it syncs the same file.
    file: File,
    path: PathBuf,
}

pub(crate) struct SyncPool {
    jobs: Option<Sender<Job>>,
    results: Receiver<Result<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl SyncPool {
    pub(crate) fn start(threads: usize) -> SyncPool {
        let threads = threads.clamp(1, MAX_SYNCERS);
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Job>();
        let (results_tx, results_rx) = crossbeam_channel::unbounded();
        let threads = (0..threads)
            .map(|_| {
                let (jobs, results) = (jobs_rx.clone(), results_tx.clone());
                std::thread::spawn(move || {
                    for job in jobs {
                        // fdatasync, as in `Broker::sync`.
                        let synced = job
                            .file
                            .sync_data()
                            .ctx(format!("syncing {}", job.path.display()));
                        if results.send(synced).is_err() {
                            return; // the broker is gone
                        }
                    }
                })
            })
            .collect();
        SyncPool {
            jobs: Some(jobs_tx),
            results: results_rx,
            threads,
        }
    }

    /// Sync every `(file, path)` and return once ALL are done: the first error, if any.
    pub(crate) fn sync_all<'a>(
        &self,
        files: impl IntoIterator<Item = (&'a File, &'a PathBuf)>,
    ) -> Result<()> {
        let sent = self.submit(files)?;
        self.wait(sent)
    }

    /// Hand every `(file, path)` to the syncers and return at once; returns how many jobs
    /// were sent, which [`SyncPool::wait`] must be given. The caller keeps at most one such
    /// batch outstanding (results are counted, not labelled).
    pub(crate) fn submit<'a>(
        &self,
        files: impl IntoIterator<Item = (&'a File, &'a PathBuf)>,
    ) -> Result<usize> {
        let jobs = self.jobs.as_ref().expect("the pool is running");
        // Every descriptor first: a failure here must not leave results of jobs already sent
        // in the channel for the next call to read.
        let batch: Vec<Job> = files
            .into_iter()
            .map(|(file, path)| {
                let file = file
                    .try_clone()
                    .ctx(format!("duplicating {}", path.display()))?;
                Ok(Job {
                    file,
                    path: path.clone(),
                })
            })
            .collect::<Result<_>>()?;
        let sent = batch.len();
        for job in batch {
            jobs.send(job).expect("syncer threads are alive");
        }
        Ok(sent)
    }

    /// Wait for the results of `sent` jobs: the first error, if any.
    pub(crate) fn wait(&self, sent: usize) -> Result<()> {
        let mut first_error = None;
        for _ in 0..sent {
            let result = self.results.recv().expect("syncer threads are alive");
            if let (Err(e), None) = (result, &first_error) {
                first_error = Some(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl std::fmt::Debug for SyncPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SyncPool({} syncers)", self.threads.len())
    }
}

impl Drop for SyncPool {
    fn drop(&mut self) {
        self.jobs = None; // closes the channel: each syncer's loop ends
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
