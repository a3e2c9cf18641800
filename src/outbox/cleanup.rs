//! Cleanup: removing published rows older than a retention window, without making the order
//! service wait long for SQLite's one write lock.
//!
//! A published row is dead weight: the relay never reads it again (the partial indexes do not
//! even hold it), but the table, its unique indexes and every backup keep growing. Removing
//! it is a write, and SQLite has one writer, so the question is only *how long* each cleanup
//! transaction holds the lock. Two strategies, one per layout (chosen at `init`):
//!
//! ```text
//!   single table — batched deletes                 partitioned — drop whole segments
//!
//!   ids ▶ [win 1][win 2][win 3] …   young ▶|        seg_0 │ seg_1 │ seg_2 │ seg_3 (newest)
//!   BEGIN IMMEDIATE                                 read:  all published before cutoff?
//!     DELETE … id in window AND published          BEGIN IMMEDIATE
//!       AND published_at_us < cutoff                  still no unpublished row? DROP TABLE
//!   COMMIT; rest (budget); next window            COMMIT; rest (budget); next segment
//! ```
//!
//! Batched deletes walk the table in id windows of `batch_rows` and stop at the first window
//! holding a row created after the cutoff (a row cannot be published before it was created,
//! so nothing later can qualify; a straggler from a skewed clock waits for the next run). Each
//! window costs one short transaction, then the lock is released (see the pause below): a
//! waiting writer polls for the lock (`db::BUSY_NAP_US`), so back-to-back transactions could
//! starve it. Every deleted row also costs a delete in each unique index — `event_id` is
//! random, so that is a random page per row.
//!
//! Dropping a segment costs per *page*, not per row and index entry — but SQLite's DROP
//! TABLE is not free like Postgres' unlink of a partition file: it walks the table to move
//! every page to the freelist. `segment_rows` bounds that walk.
//!
//! The pause after each transaction is the larger of `pause_ms` and what keeps cleanup's share
//! of the write lock under `max_lock_share_pct`: a transaction that held the lock 5 ms at the
//! default 0.2 % share is followed by 2.5 s without it. Why a share and not a fixed gap: an
//! order that arrives while cleanup holds the lock waits for it, so the fraction of orders that
//! wait is about cleanup's share of lock time. Keep it well under 1 % and the order service's p99 does
//! not see cleanup at all; spend more and cleanup catches up faster. (Measured in docs/cleanup.md:
//! dropped segments keep up with the write rate inside a tiny share; batched deletes of random
//! ids, which cost a random index page per row, need a large one.)
//!
//! Both keep two promises, checked where they are made: an unpublished row is never deleted,
//! and ids are never reused (AUTOINCREMENT and the segment sequence only grow).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::error::{Context, Result};
use crate::outbox::segments;

#[derive(Debug, Clone)]
pub struct CleanupConfig {
    /// Published rows younger than this stay (consumers may want to replay, humans to look).
    pub retention_ms: u64,
    /// Rows per delete window: the bound on one transaction's work.
    pub batch_rows: usize,
    /// Lock-free gap between two cleanup transactions, for waiting writers (at least).
    pub pause_ms: u64,
    /// At most this percentage of wall time holding the write lock: after a transaction that
    /// held it `t`, rest `t × (100 / share − 1)` (or `pause_ms`, if longer).
    pub max_lock_share_pct: f64,
    /// Transactions per run (windows or segments): the bound on one run.
    pub max_batches: u64,
}

impl Default for CleanupConfig {
    fn default() -> Self {
        CleanupConfig {
            retention_ms: 86_400_000,
            batch_rows: 50,
            pause_ms: 10,
            max_lock_share_pct: 0.2,
            max_batches: 10_000,
        }
    }
}

pub const MAX_BATCH_ROWS: usize = 100_000;

#[derive(Debug, Default, Clone, Serialize)]
pub struct CleanupReport {
    pub strategy: &'static str,
    pub batches: u64,
    pub rows_deleted: u64,
    pub segments_dropped: u64,
    /// The longest any one cleanup transaction held the write lock (from BEGIN IMMEDIATE
    /// succeeding to COMMIT returning; waiting for the lock is not holding it).
    pub longest_tx_us: u64,
    /// False when the run stopped at `max_batches` or on a stop signal with work left.
    pub finished: bool,
}

/// Paces cleanup transactions across runs: the lock budget is over time, so a run that ends
/// while a rest is owed hands it to the next run through this.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    /// No cleanup transaction may start before this.
    not_before: Instant,
    /// Sleep out an owed rest (a cleanup process), or end the run there (the relay, which has
    /// relaying to do and comes back on its next tick).
    sleeps: bool,
}

impl Pacer {
    pub fn sleeping() -> Pacer {
        Pacer {
            not_before: Instant::now(),
            sleeps: true,
        }
    }

    pub fn non_blocking() -> Pacer {
        Pacer {
            not_before: Instant::now(),
            sleeps: false,
        }
    }

    /// Before a transaction: may it start? (Sleeps first if this pacer sleeps.)
    fn ready(&self, stop: &AtomicBool) -> bool {
        let now = Instant::now();
        if now >= self.not_before {
            return true;
        }
        if !self.sleeps {
            return false;
        }
        let owed_ms = (self.not_before - now).as_millis() as u64 + 1;
        crate::wake::sleep_unless_stopped(stop, owed_ms);
        !stop.load(Ordering::Relaxed)
    }

    /// After a transaction that held the lock `held_us`: the rest that keeps cleanup's share
    /// of the lock under `max_lock_share_pct` — never less than `pause_ms`, never more than
    /// [`MAX_REST_MS`].
    fn owe(&mut self, config: &CleanupConfig, held_us: u64) {
        let share = config.max_lock_share_pct;
        assert!(
            share > 0.0 && share <= 100.0,
            "max_lock_share_pct {share} outside (0, 100]"
        );
        let budget_ms = (held_us as f64 * (100.0 / share - 1.0) / 1000.0).ceil() as u64;
        let rest_ms = budget_ms.max(config.pause_ms).min(MAX_REST_MS);
        self.not_before = Instant::now() + std::time::Duration::from_millis(rest_ms);
    }
}

/// One cleanup run with the strategy of the database's layout. `now_us` fixes the cutoff.
/// A fresh sleeping [`Pacer`]: for a one-off run (`outbox-lab cleanup`, tests).
pub fn run(
    conn: &mut Connection,
    config: &CleanupConfig,
    now_us: i64,
    stop: &AtomicBool,
) -> Result<CleanupReport> {
    run_paced(conn, config, now_us, stop, &mut Pacer::sleeping())
}

/// One cleanup run, paced by `pacer` (which remembers an owed rest for the next run).
pub fn run_paced(
    conn: &mut Connection,
    config: &CleanupConfig,
    now_us: i64,
    stop: &AtomicBool,
    pacer: &mut Pacer,
) -> Result<CleanupReport> {
    assert!(
        (1..=MAX_BATCH_ROWS).contains(&config.batch_rows),
        "batch_rows {} outside 1..={MAX_BATCH_ROWS}",
        config.batch_rows
    );
    // Checked: an absurd retention saturates to "nothing is that old", never wraps into the
    // future (which would delete every published row).
    let cutoff_us = crate::clock::us_before(now_us, config.retention_ms);
    // Once per cleanup run (not per batch): the layout never changes under rows.
    if crate::outbox::Layout::of(conn)? == crate::outbox::Layout::Partitioned {
        drop_segments(conn, config, cutoff_us, stop, pacer)
    } else {
        delete_batches(conn, config, cutoff_us, stop, pacer)
    }
}

fn delete_batches(
    conn: &mut Connection,
    config: &CleanupConfig,
    cutoff_us: i64,
    stop: &AtomicBool,
    pacer: &mut Pacer,
) -> Result<CleanupReport> {
    let mut report = CleanupReport {
        strategy: "batched-delete",
        ..CleanupReport::default()
    };
    let mut cursor_id = 0;
    while report.batches < config.max_batches && pacer.ready(stop) {
        let (window, held_us) = delete_window(conn, cursor_id, cutoff_us, config.batch_rows)?;
        pacer.owe(config, held_us);
        report.longest_tx_us = report.longest_tx_us.max(held_us);
        report.batches += 1;
        report.rows_deleted += window.deleted;
        if window.rows < config.batch_rows as u64 || window.saw_young {
            report.finished = true;
            break;
        }
        assert!(window.end_id > cursor_id, "the delete cursor must advance");
        cursor_id = window.end_id;
    }
    Ok(report)
}

struct Window {
    end_id: i64,
    rows: u64,
    deleted: u64,
    /// A row in the window was created after the cutoff: nothing beyond can qualify.
    saw_young: bool,
}

/// One short transaction: the next `batch_rows` ids after `cursor_id`, and of those, delete
/// the published ones older than the cutoff.
fn delete_window(
    conn: &mut Connection,
    cursor_id: i64,
    cutoff_us: i64,
    batch_rows: usize,
) -> Result<(Window, u64)> {
    held_write_tx(conn, |tx| {
        let (end_id, rows, saw_young): (Option<i64>, i64, bool) = tx
            .prepare_cached(
                "SELECT max(id), count(*), coalesce(max(created_at_us >= ?2), 0)
                   FROM (SELECT id, created_at_us FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?3)",
            )
            .ctx("preparing delete window")?
            .query_row(params![cursor_id, cutoff_us, batch_rows as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .ctx("reading a delete window")?;
        let Some(end_id) = end_id else {
            return Ok(Window {
                end_id: cursor_id,
                rows: 0,
                deleted: 0,
                saw_young: false,
            });
        };
        let mut stmt = tx
            .prepare_cached(
                "DELETE FROM outbox WHERE id > ?1 AND id <= ?2
                    AND published_at_us IS NOT NULL AND published_at_us < ?3
                 RETURNING published_at_us",
            )
            .ctx("preparing batched delete")?;
        let published: Vec<Option<i64>> = stmt
            .query_map(params![cursor_id, end_id, cutoff_us], |r| r.get(0))
            .ctx("deleting a window")?
            .collect::<rusqlite::Result<_>>()
            .ctx("reading deleted rows")?;
        assert!(
            published.iter().all(|p| p.is_some_and(|p| p < cutoff_us)),
            "cleanup deleted an unpublished or young row in ids ({cursor_id}, {end_id}]"
        );
        Ok(Window {
            end_id,
            rows: rows as u64,
            deleted: published.len() as u64,
            saw_young,
        })
    })
}

fn drop_segments(
    conn: &mut Connection,
    config: &CleanupConfig,
    cutoff_us: i64,
    stop: &AtomicBool,
    pacer: &mut Pacer,
) -> Result<CleanupReport> {
    let mut report = CleanupReport {
        strategy: "drop-segments",
        finished: true,
        ..CleanupReport::default()
    };
    let live = segments::live_segments(conn)?;
    // Never the newest: writers may still append to it.
    for seg in &live[..live.len().saturating_sub(1)] {
        let Some(rows) = expired_rows(conn, *seg, cutoff_us)? else {
            continue;
        };
        if report.batches >= config.max_batches || !pacer.ready(stop) {
            report.finished = false;
            break;
        }
        let (dropped, held_us) = drop_if_still_published(conn, *seg)?;
        pacer.owe(config, held_us);
        report.longest_tx_us = report.longest_tx_us.max(held_us);
        report.batches += 1;
        if dropped {
            report.segments_dropped += 1;
            report.rows_deleted += rows;
        }
    }
    Ok(report)
}

/// Read phase, no write lock: `Some(row count)` if every row is published, the last of them
/// before the cutoff. Both facts are stable once true — a published row never becomes
/// unpublished, and no new row can land in a segment older than the newest — so the write
/// phase only re-checks the cheap one, as a guard, and the count stays exact.
fn expired_rows(conn: &Connection, seg: i64, cutoff_us: i64) -> Result<Option<u64>> {
    let t = segments::table(seg);
    let sql = format!(
        "SELECT NOT EXISTS (SELECT 1 FROM {t} INDEXED BY {t}_unpublished WHERE published_at_us IS NULL),
                coalesce(max(published_at_us), 0), count(*)
           FROM {t}"
    );
    let (all_published, newest_publish_us, rows): (bool, i64, i64) = conn
        .query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .ctx(format!("checking {t} for expiry"))?;
    Ok((all_published && newest_publish_us < cutoff_us).then_some(rows as u64))
}

/// Write phase: drop the segment if it still holds no unpublished row.
fn drop_if_still_published(conn: &mut Connection, seg: i64) -> Result<(bool, u64)> {
    let t = segments::table(seg);
    held_write_tx(conn, |tx| {
        let unpublished: bool = tx
            .query_row(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM {t} INDEXED BY {t}_unpublished WHERE published_at_us IS NULL)"
                ),
                [],
                |r| r.get(0),
            )
            .ctx(format!("re-checking {t}"))?;
        if unpublished {
            return Ok(false);
        }
        segments::drop_segment(tx, seg)?;
        Ok(true)
    })
}

/// The longest rest between two cleanup transactions, whatever the budget says.
pub const MAX_REST_MS: u64 = 10_000;

/// `db::write_tx`, also returning how long the write lock was held: the number that decides
/// how long a writer can be kept waiting.
fn held_write_tx<T>(
    conn: &mut Connection,
    body: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
) -> Result<(T, u64)> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .ctx("BEGIN IMMEDIATE for cleanup")?;
    let held = Instant::now();
    let out = body(&tx)?;
    tx.commit().ctx("COMMIT cleanup")?;
    Ok((out, held.elapsed().as_micros() as u64))
}
