//! When a partition's append lock stays busy: keep the other partitions flowing, and say so.
//!
//! A relay waits for an append lock at most `lock_wait_ms` (and at most half its lease) per
//! batch (see [`crate::broker::LockWait`]). When that runs out, the batch's rows for that partition are
//! not appended; the pass releases them (they keep their lease time, so nobody, not even this
//! relay, claims them again until it runs out) and ships the other partitions as usual. Left
//! to that alone, a frozen lock holder would be invisible: every pass simply skips its
//! partition. So this watch remembers since when each partition has been busy and reports it,
//! the first time after [`FIRST_REPORT_S`] and then every [`REPORT_EVERY_S`]:
//!
//! ```text
//!   relay-2: partition 2's append lock held by pid 41377 for 30 s; its rows wait for their
//!   lease, the other partitions keep flowing
//! ```
//!
//! Why the holder is not pre-empted: a paused writer may resume at any moment and finish its
//! `write()`; without fencing at the log (a per-append epoch the log itself checks) a usurper's
//! appends and the resumed writer's could interleave. A real broker fences with the leader
//! epoch; this one leaves a frozen holder's partition unavailable and says who holds it.

use std::collections::BTreeMap;
use std::time::Instant;

/// The first report, after the lock has been busy this long.
pub const FIRST_REPORT_S: u64 = 1;
/// Then one report every this often while it stays busy.
pub const REPORT_EVERY_S: u64 = 10;

#[derive(Debug, Default)]
pub struct LockWatch {
    /// Partition → (busy since, seconds already reported).
    busy: BTreeMap<u32, (Instant, Option<u64>)>,
}

impl LockWatch {
    /// The partition's lock was busy for a whole wait. Returns a report when one is due.
    pub fn busy(&mut self, relay: &str, partition: u32, holder_pid: Option<u32>) -> Option<String> {
        let (since, reported_s) = self.busy.entry(partition).or_insert((Instant::now(), None));
        let held_s = since.elapsed().as_secs();
        let due = match *reported_s {
            None => held_s >= FIRST_REPORT_S,
            Some(last_s) => held_s >= last_s + REPORT_EVERY_S,
        };
        if !due {
            return None;
        }
        *reported_s = Some(held_s);
        let holder = holder_pid.map_or("an unknown process".into(), |pid| format!("pid {pid}"));
        Some(format!(
            "{relay}: partition {partition}'s append lock held by {holder} for {held_s} s; \
             its rows wait for their lease, the other partitions keep flowing"
        ))
    }

    /// The partition took an append again.
    pub fn clear(&mut self, partition: u32) {
        self.busy.remove(&partition);
    }
}
