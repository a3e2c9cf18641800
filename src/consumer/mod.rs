//! The idempotent consumer: one worker thread per partition, each applying its partition's
//! records in log order, deduplicating by event id.
//!
//! ```text
//!   broker/orders.p0.log ──▶ worker 0 ──┐
//!   broker/orders.p1.log ──▶ worker 1 ──┼──▶ consumer.db { inbox, effects, points }
//!   …                                   │      one transaction per batch
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
//! The inbox can be swept ([`retention`]: a window, and a contract on its length) and backed by
//! a per-aggregate seq guard ([`guard`]) that still catches a copy after its inbox row is gone.
//!
//! An idle worker sleeps `poll_ms`, or with `--wake log` waits for the doorbell on its own
//! partition file (a relay's append is one `write()` to it), with `poll_ms` as the fallback.

pub mod apply;
pub mod guard;
pub mod parking;
pub mod retention;
pub mod schema;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::clock::Clock;
use crate::datadir::DataDir;
use crate::db::{self, Synchronous};
use crate::error::{Context, Result};
use crate::wake::WakeMode;

pub use apply::{ApplyOptions, Outcome, Position, apply, apply_batch, apply_with};
pub use retention::{RedeliveryHorizon, Retention, SweepReport};

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The consumer group: names its offset files.
    pub group: String,
    /// Sleep when a partition has nothing new (with the doorbell: the longest wait).
    pub poll_ms: u64,
    /// Poll, or wake when a relay appends to the partition's file (see [`crate::wake`]).
    pub wake: WakeMode,
    /// Records applied in one transaction (and then offset-committed) at most.
    pub batch: usize,
    /// Bytes of records applied in one transaction at most (a batch holds at least one record).
    pub batch_bytes: usize,
    /// Exit once every partition has been read to its end.
    pub until_idle: bool,
    /// Drop events whose seq is not newer than their aggregate's last applied one.
    pub seq_guard: bool,
    /// The inbox's retention; `None` keeps every row forever (no sweep, no contract).
    pub retention: Option<Retention>,
    /// Run a sweeper thread every this often (needs `retention`).
    pub sweep_every_ms: Option<u64>,
    /// The time the consumer lives by (demos and tests shift it).
    pub clock: Clock,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group: "points".into(),
            poll_ms: 20,
            wake: WakeMode::Poll,
            // 1,000 records or 1 MiB: the fsync is paid once per batch, and a batch holds
            // the shared write lock for tens of ms at most, so the other partitions' workers
            // still take turns often (SQLite has one writer).
            batch: 1_000,
            batch_bytes: 1 << 20,
            until_idle: false,
            seq_guard: false,
            retention: None,
            sweep_every_ms: None,
            clock: Clock::system(),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ConsumerTotals {
    pub delivered: u64,
    pub applied: u64,
    pub skipped_duplicates: u64,
    pub dropped_by_seq_guard: u64,
    /// Held back: see [`parking`].
    pub parked: u64,
    pub too_old_for_inbox: u64,
    pub swept_rows: u64,
}

impl std::ops::AddAssign for ConsumerTotals {
    fn add_assign(&mut self, other: ConsumerTotals) {
        self.delivered += other.delivered;
        self.applied += other.applied;
        self.skipped_duplicates += other.skipped_duplicates;
        self.dropped_by_seq_guard += other.dropped_by_seq_guard;
        self.parked += other.parked;
        self.too_old_for_inbox += other.too_old_for_inbox;
        self.swept_rows += other.swept_rows;
    }
}

/// Run one worker per partition until `stop` (or, with `until_idle`, until all are drained),
/// plus the sweeper if configured. The first worker error stops the others and is returned.
/// Refuses to start (`Error::Input`) when the retention is shorter than the horizon.
pub fn run(
    dir: &DataDir,
    config: &ConsumerConfig,
    stop: Arc<AtomicBool>,
) -> Result<ConsumerTotals> {
    assert!(config.batch >= 1, "consumer batch must be at least 1");
    assert!(
        config.batch_bytes >= 1,
        "consumer batch_bytes must be at least 1"
    );
    assert!(
        config.sweep_every_ms.is_none() || config.retention.is_some(),
        "a sweeper needs a retention"
    );
    if let Some(retention) = &config.retention {
        retention.check()?;
    }
    // FULL, as the workers: this only creates missing tables/indexes (older consumer.db).
    let conn = db::open(&dir.consumer_db(), Synchronous::Full)?;
    schema::ensure(&conn).ctx("upgrading the consumer schema")?;
    drop(conn);
    let sweeper_stop = AtomicBool::new(false);
    let (results, swept) = std::thread::scope(|scope| {
        let sweeper = config.sweep_every_ms.map(|every_ms| {
            let retention = config.retention.expect("checked above");
            let (sweeper_stop, stop) = (&sweeper_stop, Arc::clone(&stop));
            scope.spawn(move || {
                let result =
                    retention::sweeper(dir, &retention, every_ms, config.clock, sweeper_stop);
                if result.is_err() {
                    stop.store(true, Ordering::Relaxed); // a failing sweeper stops the consumer
                }
                result
            })
        });
        let results = run_workers(scope, dir, config, &stop);
        sweeper_stop.store(true, Ordering::Relaxed);
        let swept = sweeper.map(|h| h.join().expect("inbox sweeper panicked"));
        (results, swept)
    });
    let mut totals = ConsumerTotals::default();
    for result in results {
        totals += result?;
    }
    if let Some(swept) = swept {
        totals.swept_rows = swept?;
    }
    Ok(totals)
}

fn run_workers<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    dir: &'scope DataDir,
    config: &'scope ConsumerConfig,
    stop: &Arc<AtomicBool>,
) -> Vec<Result<ConsumerTotals>> {
    let handles: Vec<_> = (0..dir.partitions)
        .map(|partition| {
            let stop = Arc::clone(stop);
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
}
