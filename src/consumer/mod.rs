//! The idempotent consumer: one worker thread per partition, each applying its partition's
//! records in log order, deduplicating by event id.
//!
//! ```text
//!   broker/orders.p0.log ──▶ worker 0 ──┐
//!   broker/orders.p1.log ──▶ worker 1 ──┼──▶ consumer.db { inbox, effects, points }
//!   …                                   │      one transaction per record
//!   broker/orders.pN.log ──▶ worker N ──┘
//!        then: commit the partition's offset (after the transactions, never before)
//! ```
//!
//! All events of one order share a partition, so one worker sees them all, in log order:
//! per-aggregate order is kept without any coordination between workers. Committing the offset
//! *after* applying means a crash in between replays records — which the inbox then skips.
//! Committing it before would lose them. (Kafka consumers face the same choice; the fix there
//! is the same inbox, or storing the offset in the same transaction as the effect.)
//!
//! An idle worker sleeps `poll_ms`, or with `--wake log` waits for the doorbell on its own
//! partition file (a relay's append is one `write()` to it), with `poll_ms` as the fallback.

pub mod apply;
pub mod schema;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::datadir::DataDir;
use crate::error::Result;
use crate::wake::WakeMode;

pub use apply::{Outcome, Position, apply};

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The consumer group: names its offset files.
    pub group: String,
    /// Sleep when a partition has nothing new (with the doorbell: the longest wait).
    pub poll_ms: u64,
    /// Poll, or wake when a relay appends to the partition's file (see [`crate::wake`]).
    pub wake: WakeMode,
    /// Records read (and then offset-committed) per batch.
    pub batch: usize,
    /// Exit once every partition has been read to its end.
    pub until_idle: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group: "points".into(),
            poll_ms: 20,
            wake: WakeMode::Poll,
            batch: 500,
            until_idle: false,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ConsumerTotals {
    pub delivered: u64,
    pub applied: u64,
    pub skipped_duplicates: u64,
}

impl std::ops::AddAssign for ConsumerTotals {
    fn add_assign(&mut self, other: ConsumerTotals) {
        self.delivered += other.delivered;
        self.applied += other.applied;
        self.skipped_duplicates += other.skipped_duplicates;
    }
}

/// Run one worker per partition until `stop` (or, with `until_idle`, until all are drained).
/// The first worker error stops the others and is returned.
pub fn run(
    dir: &DataDir,
    config: &ConsumerConfig,
    stop: Arc<AtomicBool>,
) -> Result<ConsumerTotals> {
    assert!(config.batch >= 1, "consumer batch must be at least 1");
    let results: Vec<Result<ConsumerTotals>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..dir.partitions)
            .map(|partition| {
                let stop = Arc::clone(&stop);
                scope.spawn(move || {
                    let result = worker::run(dir, config, partition, &stop);
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("consumer worker panicked"))
            .collect()
    });
    let mut totals = ConsumerTotals::default();
    for result in results {
        totals += result?;
    }
    Ok(totals)
}
