//! The relay: copies outbox rows to the log, at least once.
//!
//! ```text
//!   loop {
//!     claim   UPDATE outbox … RETURNING          (lease: mine until lease_until_us)
//!             ── relay.after_claim
//!     append  one write() per partition          (records grouped by partition, id order)
//!             ── relay.after_append
//!     sync    sync_data() per partition touched  (now the records survive power loss)
//!             then publish each one's durable end (now consumers may read them)
//!             ── relay.after_sync
//!     mark    published_at_us, only where the lease is still mine
//!     idle?   sleep poll_ms — or, with the doorbell, until orders.db-wal is written
//!   }
//! ```
//!
//! The doorbell (`--wake wal`, see [`crate::wake`]) only changes *when* the next pass runs
//! after an empty one; every pass is the same claim, append, sync, mark.
//!
//! Every step may be the last one before a crash. A crash before `mark` leaves the rows
//! unpublished; their lease expires and some pass ships them again. If the crash came after
//! `sync`, the log now holds the event twice: delivery is at-least-once, by design, and the
//! consumer's inbox makes the *effect* exactly-once. Never mark before sync: a row marked
//! published whose record was not yet durable could vanish in a power cut — a lost event.

pub mod cdc;
mod cleanup;
mod lock_watch;
mod overlap;
mod pass;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::broker::{Broker, LockWait};
use crate::datadir::DataDir;
use crate::error::{Error, Result};
use crate::store::{ClaimMode, OutboxStore};
use crate::wake::{Waiter, WakeMode};

pub use cleanup::CleanupSchedule;
pub use pass::{PassReport, record_json};

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Written into every record (`relay`) and every lease token.
    pub name: String,
    /// Sleep between passes when there is nothing to ship (with the doorbell: the longest wait).
    pub poll_ms: u64,
    /// Poll, or wake when a commit writes `orders.db-wal`.
    pub wake: WakeMode,
    pub batch: usize,
    /// How long a claim is ours. Longer than a pass ever takes, or a healthy relay gets fenced.
    pub lease_ms: u64,
    /// fdatasync the partitions a pass touched in parallel threads instead of in turn.
    pub sync_in_parallel: bool,
    /// Sync a batch while the next one is claimed and appended (see `overlap.rs`); syncs
    /// run on the syncer threads, in parallel, whatever `sync_in_parallel` says.
    pub overlap_sync: bool,
    /// The longest a batch waits for a partition's append lock before its rows are left to
    /// their lease and the pass moves on (never more than half the lease).
    pub lock_wait_ms: u64,
    /// PostgreSQL only: row locks held across append and sync, or a lease (see `store::pg`).
    pub claim_mode: ClaimMode,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            name: "relay".into(),
            poll_ms: 500,
            wake: WakeMode::Poll,
            batch: 100,
            lease_ms: 5_000,
            // Parallel: the partitions' fdatasyncs overlap in the journal and the device
            // (`bench relay` shows it several times faster than in turn at batch 100).
            sync_in_parallel: true,
            overlap_sync: false,
            // A healthy append holds the lock for µs, but on a loaded machine its holder can be
            // descheduled for 100s of ms; a full second is a frozen holder, not a slow one.
            lock_wait_ms: 1_000,
            claim_mode: ClaimMode::default(),
        }
    }
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RelayTotals {
    pub passes: u64,
    /// Passes that claimed at least one row (the phase times below are theirs).
    pub passes_with_rows: u64,
    pub claimed: u64,
    pub marked: u64,
    /// Claimed rows we could not mark because the lease was no longer ours.
    pub fenced: u64,
    /// Where the time went, summed over passes that claimed something (µs).
    pub claim_us: u64,
    pub append_us: u64,
    pub sync_us: u64,
    pub mark_us: u64,
    /// fdatasync calls (one per partition touched per pass).
    pub syncs: u64,
    /// Claimed rows not appended because their partition's append lock stayed busy.
    pub unshipped: u64,
}

/// Totals of several relays (a benchmark's threads) add up field by field.
impl std::ops::AddAssign<&RelayTotals> for RelayTotals {
    fn add_assign(&mut self, t: &RelayTotals) {
        self.passes += t.passes;
        self.passes_with_rows += t.passes_with_rows;
        self.claimed += t.claimed;
        self.marked += t.marked;
        self.fenced += t.fenced;
        self.claim_us += t.claim_us;
        self.append_us += t.append_us;
        self.sync_us += t.sync_us;
        self.mark_us += t.mark_us;
        self.syncs += t.syncs;
        self.unshipped += t.unshipped;
    }
}

impl RelayTotals {
    fn add(&mut self, report: &PassReport) {
        self.passes += 1;
        self.passes_with_rows += 1;
        self.claimed += report.claimed as u64;
        self.marked += report.marked as u64;
        self.fenced += report.fenced as u64;
        self.claim_us += report.claim_us;
        self.append_us += report.append_us;
        self.sync_us += report.sync_us;
        self.mark_us += report.mark_us;
        self.syncs += report.partitions_touched as u64;
        self.unshipped += report.unshipped as u64;
    }
}

pub struct Relay {
    /// The orders store's outbox (SQLite or PostgreSQL): the relay does not care which.
    store: Box<dyn OutboxStore>,
    broker: Broker,
    partitions: u32,
    config: RelayConfig,
    pass_no: u64,
    /// Random per relay process: with the pid and pass number it makes every claim's fencing
    /// token unique, even for a restarted relay that got a recycled pid.
    incarnation: u32,
    /// The batch appended and syncing while the next is claimed (`overlap_sync` only).
    in_flight: Option<overlap::InFlight>,
    /// Set by `with_cleanup`: the relay also removes old published rows.
    cleanup: Option<CleanupSchedule>,
    waiter: Waiter,
    lock_watch: lock_watch::LockWatch,
}

impl Relay {
    pub fn open(dir: &DataDir, config: RelayConfig) -> Result<Relay> {
        assert!(config.lease_ms > 0, "lease_ms must be positive");
        let mut store = crate::store::open_outbox(dir, config.claim_mode)?;
        if config.overlap_sync && !store.allows_overlapping_claims() {
            return Err(Error::Input(format!(
                "--overlap-sync claims a batch while the last one syncs; the {} store's \
                 locked claims hold one transaction at a time: use --claim-mode lease",
                dir.store.describe()
            )));
        }
        let mut broker = Broker::open(&dir.broker_dir(), dir.partitions)?;
        recover_partitions(&mut broker, &config)?;
        let waiter = match (config.wake, store.doorbell_file()) {
            (WakeMode::Poll, _) => Waiter::open(WakeMode::Poll, &dir.root, "")?,
            (WakeMode::Doorbell, Some(file)) => Waiter::open(WakeMode::Doorbell, &dir.root, file)?,
            (WakeMode::Notify, _) => {
                if !store.listen()? {
                    return Err(Error::Input(format!(
                        "--wake notify: the {} store has no LISTEN/NOTIFY; use --wake wal",
                        dir.store.describe()
                    )));
                }
                Waiter::poll()
            }
            (WakeMode::Doorbell, None) => {
                return Err(Error::Input(format!(
                    "--wake wal: the {} store has no local WAL file to watch; use --wake poll",
                    dir.store.describe()
                )));
            }
        };
        Ok(Relay {
            in_flight: None,
            store,
            broker,
            partitions: dir.partitions,
            config,
            pass_no: 0,
            incarnation: fastrand::u32(..),
            cleanup: None,
            waiter,
            lock_watch: lock_watch::LockWatch::default(),
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
            // Before the pass, never after: a commit after this either is claimed by the pass
            // or rings again, so no wake-up is lost between looking and waiting.
            self.waiter.clear()?;
            if self.config.wake == WakeMode::Notify {
                self.store.drain_notifications()?;
            }
            let report = self.pass_until(stop)?;
            self.cleanup_if_due(stop)?;
            if report.claimed + report.marked + report.fenced > 0 {
                totals.add(&report);
            } else {
                totals.passes += 1;
            }
            if report.claimed > 0 {
                continue;
            }
            if until_empty && self.unpublished_count()? == 0 {
                break;
            }
            if self.config.wake == WakeMode::Notify {
                self.store.wait_notified(stop, self.config.poll_ms)?;
            } else {
                self.waiter.idle(stop, self.config.poll_ms)?;
            }
        }
        // Stopped with a batch syncing (overlap_sync): it is durable soon, so mark it now
        // rather than leave it for its lease to expire and a second copy to be shipped.
        let mut last = PassReport::default();
        self.finish_in_flight(&mut last)?;
        if last.marked + last.fenced > 0 {
            totals.add(&last);
        }
        Ok(totals)
    }

    /// Rows not yet published (including those under someone's lease).
    pub fn unpublished_count(&mut self) -> Result<u64> {
        self.store.unpublished_count()
    }
}

/// A relay starting (perhaps after a crash or a power cut) recovers every partition: checks
/// everything past the durable end, cuts at the first bad byte, syncs and publishes. Without
/// this, records that survived a power cut past a durable end that came back older would stay
/// unreadable until someone appended to that partition again. A partition whose append lock
/// stays busy is skipped: its holder is alive and will sync and publish itself.
fn recover_partitions(broker: &mut Broker, config: &RelayConfig) -> Result<()> {
    let wait = LockWait {
        max_wait_ms: config.lock_wait_ms,
        stop: None,
    };
    for partition in 0..broker.partitions() {
        match broker.recover_partition(partition, &wait) {
            Ok(_) | Err(Error::LockBusy { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
