//! Inbox retention: forgetting old event ids, in small batches, and the contract that says
//! how soon is too soon.
//!
//! The inbox gains one row per event, forever. The sweep deletes rows processed more than
//! `retention_ms` ago. That opens a window:
//!
//! ```text
//!   first copy applied           its inbox row swept
//!        │◀──────── retention_ms ────────▶│
//!   ─────●────────────────────────────────●──────────────────────▶ time
//!         a copy arriving here is SKIPPED   a copy arriving here is APPLIED AGAIN
//!         (the inbox remembers it)          (unless the seq guard catches it)
//! ```
//!
//! So the retention must outlast every way a copy can still be on its way: a relay's lease
//! (a zombie relay can append a copy until its lease is up), the retry that re-ships it, and
//! any downtime we promise to tolerate (consumer stopped, relays stopped, a backlog). That sum
//! is the *redelivery horizon*. The consumer refuses to start with `retention < horizon` —
//! the window would be open by configuration. A copy older than the window can still come
//! (a restored backup, a relay frozen for a day): the consumer counts and flags every event
//! whose `created_at_us` is older than the retention as `too_old_for_inbox`. Since an inbox
//! row is never written before its event was created, such an event is exactly one whose
//! copies the inbox may already have forgotten.
//!
//! Cost: the sweep reads `inbox_by_processed_at` (an index, so finding old rows is a range
//! scan, not a table scan) and deletes at most `batch_rows` per transaction, at most
//! `max_batches` per sweep, pausing between batches so consumer workers waiting on SQLite's
//! single write lock get in: the consumer is never stalled longer than one batch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::clock::{Clock, MAX_DURATION_MS, us_before};
use crate::consumer::schema::Counter;
use crate::datadir::DataDir;
use crate::db::{self, Synchronous, write_tx};
use crate::error::{Context, Error, Result};
use crate::trace::{self, Ev};
use crate::wake::sleep_unless_stopped;

pub const SCHEMA: &str = "
CREATE INDEX IF NOT EXISTS inbox_by_processed_at ON inbox (processed_at_us);
";

/// How long a copy of an applied event may still arrive, by cause. Units: milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RedeliveryHorizon {
    /// A relay's claim lease: a relay that lost its lease may still append until then.
    pub relay_lease_ms: u64,
    /// How long relays take to re-ship a row after its lease expired (poll + backoff).
    pub relay_retry_ms: u64,
    /// Downtime we promise to ride out: consumer or relays stopped, a backlog draining.
    pub tolerated_downtime_ms: u64,
}

impl RedeliveryHorizon {
    /// Saturating: an absurd part makes the horizon huge, so a short retention is refused
    /// (an overflow that wrapped to a small horizon would let it pass).
    pub fn horizon_ms(&self) -> u64 {
        self.relay_lease_ms
            .saturating_add(self.relay_retry_ms)
            .saturating_add(self.tolerated_downtime_ms)
    }
}

/// The inbox's retention and how the sweep runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// Inbox rows processed longer ago than this are deleted by the sweep.
    pub retention_ms: u64,
    pub horizon: RedeliveryHorizon,
    /// Rows deleted per transaction: the longest the sweep holds the write lock.
    pub batch_rows: u32,
    /// Transactions per sweep: a bound on one sweep's work; the next sweep continues.
    pub max_batches: u32,
    /// Pause between batches so waiting writers (the consumer) get the lock.
    pub pause_between_batches_ms: u64,
}

impl Retention {
    /// The retention contract: refuse a window the configuration itself would leave open.
    pub fn check(&self) -> Result<()> {
        let horizon_ms = self.horizon.horizon_ms();
        if self.retention_ms >= horizon_ms {
            return Ok(());
        }
        let h = &self.horizon;
        Err(Error::Input(format!(
            "inbox retention {} is shorter than the redelivery horizon {} (relay lease {} + \
             relay retry {} + tolerated downtime {}): a copy arriving inside the horizon could \
             find its inbox row swept and be applied twice. Raise --inbox-retention to at least \
             {}, or tolerate less downtime.",
            fmt_ms(self.retention_ms),
            fmt_ms(horizon_ms),
            fmt_ms(h.relay_lease_ms),
            fmt_ms(h.relay_retry_ms),
            fmt_ms(h.tolerated_downtime_ms),
            fmt_ms(horizon_ms)
        )))
    }

    /// Rows processed before this instant are past the window.
    /// Checked: "keep for 200000000 days" must never wrap into a cutoff in the future (which
    /// would sweep the whole inbox); it saturates to "nothing is that old".
    pub fn cutoff_us(&self, now_us: i64) -> i64 {
        us_before(now_us, self.retention_ms)
    }

    /// Is `event_created_at_us` older than the window, i.e. could its copies already have
    /// been forgotten by the inbox?
    pub fn too_old_for_inbox(&self, event_created_at_us: i64, now_us: i64) -> bool {
        event_created_at_us < self.cutoff_us(now_us)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub cutoff_us: i64,
    pub deleted_rows: u64,
    pub batches: u32,
    pub elapsed_us: u64,
    /// The longest single batch (transaction): how long the consumer could have waited.
    pub max_batch_us: u64,
    /// Stopped at `max_batches` with rows past the cutoff still left.
    pub more_left: bool,
}

/// One sweep: delete inbox rows processed before `now_us - retention`, at most `batch_rows`
/// per transaction and `max_batches` transactions. `now_us` is explicit: the caller says
/// which clock it lives by (demos and tests travel in time; nobody sleeps through hours).
pub fn sweep(conn: &mut Connection, retention: &Retention, now_us: i64) -> Result<SweepReport> {
    assert!(retention.batch_rows >= 1, "sweep batch_rows must be >= 1");
    assert!(retention.max_batches >= 1, "sweep max_batches must be >= 1");
    let started = Instant::now();
    let mut report = SweepReport {
        cutoff_us: retention.cutoff_us(now_us),
        ..SweepReport::default()
    };
    for _ in 0..retention.max_batches {
        let batch_started = Instant::now();
        let deleted = delete_batch(conn, report.cutoff_us, retention.batch_rows)?;
        report.max_batch_us = report
            .max_batch_us
            .max(batch_started.elapsed().as_micros() as u64);
        report.batches += 1;
        report.deleted_rows += deleted;
        if deleted < retention.batch_rows as u64 {
            report.more_left = false;
            report.elapsed_us = started.elapsed().as_micros() as u64;
            return Ok(report);
        }
        report.more_left = true;
        std::thread::sleep(std::time::Duration::from_millis(
            retention.pause_between_batches_ms,
        ));
    }
    report.elapsed_us = started.elapsed().as_micros() as u64;
    Ok(report)
}

/// One transaction: the oldest `batch_rows` rows before the cutoff, via the index, and the
/// `inbox_swept` counter in the same transaction.
fn delete_batch(conn: &mut Connection, cutoff_us: i64, batch_rows: u32) -> Result<u64> {
    write_tx(conn, |tx| {
        let deleted = tx
            .prepare_cached(
                "DELETE FROM inbox WHERE event_id IN (
                     SELECT event_id FROM inbox INDEXED BY inbox_by_processed_at
                     WHERE processed_at_us < ?1 ORDER BY processed_at_us LIMIT ?2)",
            )
            .ctx("preparing inbox sweep")?
            .execute(params![cutoff_us, batch_rows])
            .ctx("sweeping the inbox")? as u64;
        if deleted > 0 {
            tx.prepare_cached(
                "INSERT INTO counters (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            )
            .ctx("preparing sweep counter")?
            .execute(params![Counter::InboxSwept.name(), deleted as i64])
            .ctx("counting swept rows")?;
        }
        Ok(deleted)
    })
}

/// The consumer's sweeper thread: one sweep at start, then one every `every_ms`, until `stop`.
/// Returns the rows it deleted.
pub fn sweeper(
    dir: &DataDir,
    retention: &Retention,
    every_ms: u64,
    clock: Clock,
    stop: &AtomicBool,
) -> Result<u64> {
    assert!(every_ms > 0, "sweep interval must be positive");
    // NORMAL: a delete lost to a power cut is redone by the next sweep (deleting is
    // idempotent), and no fsync per batch keeps each batch's hold on the write lock short.
    let mut conn = db::open(&dir.consumer_db(), Synchronous::Normal)?;
    let mut swept_rows = 0;
    // Sweep first, then check `stop`: even a consumer that is done at once (--until-idle)
    // sweeps at least once, which keeps runs deterministic. Each sweep is bounded by
    // `max_batches`; the loop by `stop`.
    loop {
        let report = sweep(&mut conn, retention, clock.now_us())?;
        swept_rows += report.deleted_rows;
        if report.deleted_rows > 0 {
            trace::emit(Ev::InboxSwept, || {
                serde_json::to_value(report).expect("serialises")
            });
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(swept_rows);
        }
        if !report.more_left {
            sleep_unless_stopped(stop, every_ms);
        }
    }
}

/// `90000` → `1m30s`, `90000000` → `25h`: durations as people read them.
pub fn fmt_ms(ms: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(3_600_000, "h"), (60_000, "m"), (1_000, "s"), (1, "ms")];
    if ms == 0 {
        return "0s".into();
    }
    let mut left = ms;
    let mut out = String::new();
    for (size, unit) in UNITS {
        if left >= size {
            out += &format!("{}{unit}", left / size);
            left %= size;
        }
    }
    out
}

/// `24h`, `90m`, `30s`, `500ms`, `2d` → milliseconds. Bad input names the value.
pub fn parse_duration_ms(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit: write e.g. 24h, 90m, 30s or 500ms"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (ms, s, m, h or d)"
            ));
        }
    };
    n.checked_mul(unit_ms)
        .filter(|ms| *ms <= MAX_DURATION_MS)
        .ok_or_else(|| {
            format!(
                "{text:?} is too long a duration (at most {}d)",
                MAX_DURATION_MS / 86_400_000
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_durations_saturate_towards_keeping_data() {
        let horizon = RedeliveryHorizon {
            relay_lease_ms: 1,
            relay_retry_ms: 0,
            tolerated_downtime_ms: u64::MAX,
        };
        assert_eq!(horizon.horizon_ms(), u64::MAX, "no wrap to a small horizon");
        let retention = Retention {
            retention_ms: u64::MAX,
            horizon,
            batch_rows: 1,
            max_batches: 1,
            pause_between_batches_ms: 0,
        };
        let now_us = 1_700_000_000_000_000;
        assert_eq!(retention.cutoff_us(now_us), i64::MIN, "nothing is that old");
        assert!(!retention.too_old_for_inbox(0, now_us));
        let short = Retention {
            retention_ms: 1,
            ..retention
        };
        assert!(short.check().is_err(), "1 ms is shorter than any horizon");
        assert!(
            parse_duration_ms("200000000d")
                .unwrap_err()
                .contains("too long")
        );
        assert_eq!(parse_duration_ms("36500d"), Ok(MAX_DURATION_MS));
    }

    #[test]
    fn durations_round_trip_as_people_write_them() {
        assert_eq!(parse_duration_ms("24h"), Ok(86_400_000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(fmt_ms(90_000), "1m30s");
        assert_eq!(fmt_ms(25 * 3_600_000), "25h");
        assert!(parse_duration_ms("24").is_err());
        assert!(parse_duration_ms("3w").is_err());
    }
}
