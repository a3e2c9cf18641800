//! The relay: copies outbox rows to the log, at least once.
//!
//! ```text
//!   loop {
//!     claim   UPDATE outbox … RETURNING          (lease: mine until lease_until_us)
//!             ── relay.after_claim
//!     append  one write() per partition          (records grouped by partition, id order)
//!             ── relay.after_append
//!     sync    sync_data() per partition touched  (now the records survive power loss)
//!             ── relay.after_sync
//!     mark    published_at_us, only where the lease is still mine
//!     idle?   sleep poll_ms
//!   }
//! ```
//!
//! Every step may be the last one before a crash. A crash before `mark` leaves the rows
//! unpublished; their lease expires and some pass ships them again. If the crash came after
//! `sync`, the log now holds the event twice: delivery is at-least-once, by design, and the
//! consumer's inbox makes the *effect* exactly-once. Never mark before sync: a row marked
//! published whose record was not yet durable could vanish in a power cut — a lost event.

mod cleanup;
mod pass;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::Connection;

use crate::broker::Broker;
use crate::datadir::DataDir;
use crate::db::{self, Synchronous};
use crate::error::Result;

pub use cleanup::CleanupSchedule;
pub use pass::PassReport;

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Written into every record (`relay`) and every lease token.
    pub name: String,
    /// Sleep between passes when there is nothing to ship.
    pub poll_ms: u64,
    pub batch: usize,
    /// How long a claim is ours. Longer than a pass ever takes, or a healthy relay gets fenced.
    pub lease_ms: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            name: "relay".into(),
            poll_ms: 500,
            batch: 100,
            lease_ms: 5_000,
        }
    }
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RelayTotals {
    pub passes: u64,
    pub claimed: u64,
    pub marked: u64,
    /// Claimed rows we could not mark because the lease was no longer ours.
    pub fenced: u64,
}

pub struct Relay {
    conn: Connection,
    broker: Broker,
    partitions: u32,
    config: RelayConfig,
    pass_no: u64,
    /// Set by `with_cleanup`: the relay also removes old published rows.
    cleanup: Option<CleanupSchedule>,
}

impl Relay {
    pub fn open(dir: &DataDir, config: RelayConfig) -> Result<Relay> {
        assert!(config.lease_ms > 0, "lease_ms must be positive");
        // NORMAL: a claim or mark lost to a power cut only means the rows get shipped again
        // (at-least-once absorbs it); the events themselves were committed FULL by the service.
        let conn = db::open(&dir.orders_db(), Synchronous::Normal)?;
        let broker = Broker::open(&dir.broker_dir(), dir.partitions)?;
        Ok(Relay {
            conn,
            broker,
            partitions: dir.partitions,
            config,
            pass_no: 0,
            cleanup: None,
        })
    }

    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// Run passes until `stop` is set (SIGTERM), or — with `until_empty` — until no
    /// unpublished row is left (rows leased by a dead relay count: we wait for their lease).
    pub fn run(&mut self, stop: &AtomicBool, until_empty: bool) -> Result<RelayTotals> {
        let mut totals = RelayTotals::default();
        while !stop.load(Ordering::Relaxed) {
            let report = self.pass()?;
            totals.passes += 1;
            totals.claimed += report.claimed as u64;
            totals.marked += report.marked as u64;
            totals.fenced += report.fenced as u64;
            self.cleanup_if_due(stop)?;
            if report.claimed > 0 {
                continue;
            }
            if until_empty && self.unpublished_count()? == 0 {
                break;
            }
            sleep_unless_stopped(stop, self.config.poll_ms);
        }
        Ok(totals)
    }

    /// Rows not yet published (including those under someone's lease).
    pub fn unpublished_count(&self) -> Result<u64> {
        crate::outbox::unpublished_count(&self.conn)
    }
}

/// Sleep `total_ms` in short slices so SIGTERM is answered promptly.
pub fn sleep_unless_stopped(stop: &AtomicBool, total_ms: u64) {
    const SLICE_MS: u64 = 20;
    let mut left_ms = total_ms;
    while left_ms > 0 && !stop.load(Ordering::Relaxed) {
        let step_ms = left_ms.min(SLICE_MS);
        std::thread::sleep(Duration::from_millis(step_ms));
        left_ms -= step_ms;
    }
}
