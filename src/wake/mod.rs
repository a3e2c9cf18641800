//! Waking up: when a relay (or a consumer worker) that found nothing to do runs its next pass.
//!
//! A polling relay sleeps `poll_ms` after an empty pass, so an order committed just after the
//! pass waits up to `poll_ms` (500 ms by default) before anyone looks at it: the median
//! commit → applied latency is about `poll_ms / 2`, dominated by sleeping.
//!
//! Postgres has a change stream: Debezium opens a logical replication slot and *decodes the
//! WAL itself* (pgoutput), so every committed change reaches it as a message, in commit
//! order, without querying the table. SQLite has no such stream — no replication slot, no
//! decoder, no commit hook that another process can subscribe to. What it does have is a WAL
//! file that every commit appends frames to. So the closest honest equivalent is a
//! **doorbell**, not a decoder: the kernel tells us `orders.db-wal` was written, and the relay
//! runs its ordinary claim right away instead of sleeping out `poll_ms`.
//!
//! ```text
//!   order service            orders.db-wal            relay (--wake wal)
//!   ─────────────            ─────────────            ──────────────────
//!   BEGIN IMMEDIATE                                   clear the bell
//!   INSERT order, outbox                              claim … 0 rows
//!   COMMIT ── write() frames ──▶ IN_MODIFY ─────────▶ wait: poll(inotify fd) returns
//!              fsync, update wal-index                claim: BEGIN IMMEDIATE waits for the
//!              release write lock ──────────────────▶ writer's lock, then sees the commit
//!                                                     append, sync, mark   (unchanged)
//! ```
//!
//! Why this is correct, and what it does not change:
//!
//! * **The bell only decides *when* a pass runs.** What is shipped is still decided by the
//!   claim (lease, fence, per-order head), exactly as with polling; a spurious ring costs one
//!   empty claim, a missed one costs at most `poll_ms` because the wait is bounded by it — the
//!   polling relay is the fallback, always on.
//! * **No lost wake-up between "look" and "wait".** The bell is cleared *before* each pass, not
//!   after: a commit that lands after the clear either is seen by the pass, or rings again and
//!   ends the next wait at once.
//! * **Woken too early is harmless.** The bell rings on the `write()` of the WAL frames, before
//!   the writer has fsynced and published them in the wal-index. The claim is a write
//!   transaction (`BEGIN IMMEDIATE`), so it queues behind the writer's lock and runs after
//!   the commit is complete and visible.
//! * **It rings for our own writes too.** A relay's claim and mark append WAL frames; clearing
//!   before each pass swallows our own rings, and another relay's rings cost an empty claim.
//!   An empty claim changes no page, so it writes no frame and cannot ring anyone: no storm.
//!
//! What I rejected: a decoder of SQLite's WAL frames (page images, not rows: we would
//! re-implement the b-tree to find the outbox rows, and still need the claim for leases);
//! `sqlite3_update_hook` (fires only in the process that writes — the order service — so the
//! service would have to signal the relays: a second channel that can fail, the dual write
//! again in miniature); a trigger writing to a FIFO (same, and SQL cannot do I/O); a shorter
//! poll (1 ms polling is 1,000 claims a second per idle relay, each a write transaction that
//! takes the single writer lock from the order service).
//!
//! The consumer uses the same bell on its partition file (`consume --wake log`): every relay
//! append is one `write()` to `orders.pN.log`, so the worker reads right after it.
//!
//! Linux only (inotify); elsewhere `--wake wal|log` is refused with an error. Limits: the wait
//! is at most the caller's `poll_ms` (itself at most [`MAX_WAIT_MS`]), the kernel buffer is read
//! in [`BUF_BYTES`] chunks at most [`MAX_DRAIN_READS`] times per clear, and a queue overflow
//! (`IN_Q_OVERFLOW`) counts as a ring.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::Result;

/// The longest a single wait may be asked to last (one hour): a bound, not a tuning knob.
pub const MAX_WAIT_MS: u64 = 3_600_000;
/// Bytes read from the inotify descriptor at a time: room for ~100 events with short names.
pub const BUF_BYTES: usize = 4096;
/// Reads per drain; past this the queue is treated as rung and the rest read next time.
pub const MAX_DRAIN_READS: usize = 64;
/// How often a wait looks at the stop flag (SIGTERM is answered within this).
pub const STOP_SLICE_MS: u64 = 20;

/// When an idle loop runs its next pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WakeMode {
    /// Sleep `poll_ms` after an empty pass.
    #[default]
    Poll,
    /// Wait for the doorbell (a write to the watched file), at most `poll_ms`.
    Doorbell,
    /// PostgreSQL: wait for the NOTIFY a committing writer sends, at most `poll_ms` (the
    /// store's own connection listens; see `store::pg::notify`).
    Notify,
}

/// What an idle loop waits on: a plain sleep, or a doorbell with the sleep as fallback.
pub struct Waiter {
    bell: Option<doorbell::Doorbell>,
}

impl Waiter {
    pub fn poll() -> Waiter {
        Waiter { bell: None }
    }

    /// For `mode`, watching `dir/file_name` (only a doorbell looks at it).
    pub fn open(mode: WakeMode, dir: &std::path::Path, file_name: &str) -> Result<Waiter> {
        match mode {
            // Notify: the store's connection does the waiting (see `relay::Relay::run`).
            WakeMode::Poll | WakeMode::Notify => Ok(Waiter::poll()),
            WakeMode::Doorbell => Ok(Waiter {
                bell: Some(doorbell::Doorbell::open(dir, file_name)?),
            }),
        }
    }

    /// Call right before looking for work: rings up to now are answered by that look.
    pub fn clear(&mut self) -> Result<()> {
        match &mut self.bell {
            Some(bell) => bell.drain().map(|_| ()),
            None => Ok(()),
        }
    }

    /// Nothing to do: wait for a ring, at most `poll_ms`, or until `stop`.
    pub fn idle(&mut self, stop: &AtomicBool, poll_ms: u64) -> Result<()> {
        assert!(
            poll_ms <= MAX_WAIT_MS,
            "poll_ms {poll_ms} over the {MAX_WAIT_MS} ms limit"
        );
        match &mut self.bell {
            Some(bell) => bell.wait(stop, poll_ms).map(|_| ()),
            None => {
                sleep_unless_stopped(stop, poll_ms);
                Ok(())
            }
        }
    }
}

/// Sleep `total_ms` in short slices so SIGTERM is answered promptly.
pub fn sleep_unless_stopped(stop: &AtomicBool, total_ms: u64) {
    let mut left_ms = total_ms;
    while left_ms > 0 && !stop.load(Ordering::Relaxed) {
        let step_ms = left_ms.min(STOP_SLICE_MS);
        std::thread::sleep(Duration::from_millis(step_ms));
        left_ms -= step_ms;
    }
}

#[cfg(target_os = "linux")]
mod doorbell;

#[cfg(not(target_os = "linux"))]
mod doorbell {
    //! Not Linux: no inotify, so no doorbell; `--wake` other than `poll` is refused.
    use std::sync::atomic::AtomicBool;

    use crate::error::{Error, Result};

    pub struct Doorbell;

    impl Doorbell {
        pub fn open(_dir: &std::path::Path, _file_name: &str) -> Result<Doorbell> {
            Err(Error::Input(
                "the doorbell needs Linux inotify; use --wake poll here".into(),
            ))
        }
        pub fn drain(&mut self) -> Result<bool> {
            Ok(false)
        }
        pub fn wait(&mut self, _stop: &AtomicBool, _max_wait_ms: u64) -> Result<bool> {
            Ok(false)
        }
    }
}
