//! The crash campaign: many seeded runs of the whole pipeline, each under one kind of crash,
//! with lifecycle events, outbox cleanup and the inbox sweep running throughout — and the
//! checker's verdict on every one.
//!
//! ```text
//!   seeds first..first+N ──▶ jobs (threads) ──▶ run::run_one(seed, kind = kinds[seed % K])
//!                                                 │ RunResult (verdict + counts)
//!   progress line (runs, runs/s, failures) ◀──────┘──▶ summary table, failing seeds + replay
//! ```
//!
//! Runs live under a scratch root (tmpfs when there is one: SIGKILL keeps the page cache, so a
//! process crash loses nothing a disk would have kept, and fsync on tmpfs costs nothing — the
//! campaign measures correctness, not disk speed). A passing run's directory is deleted; a
//! failing one's is kept for inspection.

pub mod kind;
pub mod run;
mod summary;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

pub use kind::Kind;
pub use run::{RunConfig, RunResult};
pub use summary::{Failure, Summary};

use crate::error::Result;

#[derive(Debug, Clone)]
pub struct Campaign {
    pub root: PathBuf,
    pub first_seed: u64,
    pub seeds: u64,
    pub jobs: usize,
    pub run: RunConfig,
    pub kinds: Vec<Kind>,
    /// Keep every run's directory, not only the failing ones.
    pub keep: bool,
}

/// Upper bounds: a campaign is a command someone waits for.
pub const MAX_SEEDS: u64 = 1_000_000;
pub const MAX_JOBS: usize = 16;

/// Run the campaign; `progress` gets a line now and then (overwritten in a terminal).
pub fn run(c: &Campaign, stop: &AtomicBool, progress: &mut dyn Write) -> Result<Summary> {
    assert!(
        (1..=MAX_SEEDS).contains(&c.seeds),
        "seeds {} outside 1..={MAX_SEEDS}",
        c.seeds
    );
    assert!(
        (1..=MAX_JOBS).contains(&c.jobs),
        "jobs {} outside 1..={MAX_JOBS}",
        c.jobs
    );
    std::fs::create_dir_all(&c.root).map_err(|e| crate::Error::Io {
        context: format!("creating {}", c.root.display()),
        source: e,
    })?;
    crate::lab::rundir::mark(&c.root)?;
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let (tx, rx) = crossbeam_channel::unbounded::<(u64, Result<RunResult>)>();
    let mut summary = Summary::new(c);
    std::thread::scope(|scope| {
        for _ in 0..c.jobs {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= c.seeds || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let seed = c.first_seed.saturating_add(i);
                    let kind = kind::for_seed(&c.kinds, seed);
                    let result = run::run_one(&c.root, seed, kind, &c.run);
                    if result.as_ref().is_ok_and(|r| r.ok()) && !c.keep {
                        let _ = std::fs::remove_dir_all(c.root.join(format!("seed-{seed}")));
                    }
                    if tx.send((seed, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut last_print = Instant::now();
        for (seed, result) in rx {
            summary.add(c, seed, result);
            if last_print.elapsed().as_millis() >= 500 || summary.runs == c.seeds {
                last_print = Instant::now();
                let _ = write!(progress, "\r{}", summary.progress(started.elapsed()));
                let _ = progress.flush();
            }
        }
    });
    let _ = writeln!(progress);
    summary.finish(started.elapsed());
    Ok(summary)
}
