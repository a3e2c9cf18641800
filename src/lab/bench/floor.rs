//! The bare relay: what shipping the outbox costs with nothing but the work itself. It sits in
//! `bench relay`'s table as the floor each real variant is measured against.
//!
//! ```text
//!   loop {
//!     SELECT next `batch` unpublished rows after a cursor        (no lease, no per-order rule)
//!     encode records (the relay's own record_json)
//!     write() + fdatasync                 ONE file (a 1-partition broker), ONE sync per batch,
//!                                         on a syncer thread as the relay's parallel sync
//!     UPDATE … SET published_at_us WHERE id BETWEEN first AND last  (no token check)
//!   }
//! ```
//!
//! It is not a relay anyone should run: one process only (a cursor, no claims), one log file
//! for every partition (no per-order partitioning), no fencing. It is what is left when all of
//! that is taken away, so "variant ÷ floor" says how much the guarantees cost.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rusqlite::params;

use crate::broker::{Broker, partition_of};
use crate::datadir::DataDir;
use crate::db::{self, Synchronous};
use crate::error::{Context, Result};
use crate::outbox::ClaimedRow;
use crate::relay::{RelayTotals, record_json};

/// Rows shipped, the wall time they took, and where it went (µs summed over batches), in
/// the relay's own terms so that the two sit in one table.
pub struct FloorRun {
    pub marked: u64,
    pub elapsed_s: f64,
    pub totals: RelayTotals,
}

const NEXT_SQL: &str = "
SELECT id, event_id, aggregate_id, aggregate_seq, event_type, payload, created_at_us, attempts
  FROM outbox WHERE id > ?1 AND published_at_us IS NULL ORDER BY id LIMIT ?2";

/// Ship the data directory's outbox in batches of `batch` until it is empty or `stop` is set,
/// into `files` log files (1: the bare floor; the partition count: the same sync pattern as
/// the relay, each batch's files synced at once, still without leases or the per-order rule).
pub fn run(root: &Path, batch: usize, files: u32, stop: &AtomicBool) -> Result<FloorRun> {
    assert!(batch >= 1, "a floor batch holds at least one row");
    assert!(files >= 1, "a floor writes at least one file");
    let data = DataDir::open(root)?;
    // NORMAL, as the real relay: its claims and marks are redone after a power cut.
    let mut conn = db::open(&data.orders_db(), Synchronous::Normal)?;
    // Its own log files: a broker of `files` partitions, beside the real one.
    let log_dir = data.root.join("floor-broker");
    Broker::create(&log_dir, files)?;
    let mut log = Broker::open(&log_dir, files)?;
    let mut cursor = 0i64;
    let mut t = RelayTotals::default();
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let pass_started = Instant::now();
        let rows: Vec<ClaimedRow> = conn
            .prepare_cached(NEXT_SQL)
            .ctx("preparing the floor's select")?
            .query_map(
                params![cursor, batch as i64],
                crate::outbox::claim::claimed_row,
            )
            .ctx("selecting rows")?
            .collect::<rusqlite::Result<_>>()
            .ctx("reading rows")?;
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            break;
        };
        let (first_id, last_id) = (first.id, last.id);
        let selected_at = Instant::now();
        let mut by_file: Vec<Vec<Vec<u8>>> = vec![Vec::new(); files as usize];
        for row in &rows {
            let file = partition_of(&row.aggregate_id, files);
            by_file[file as usize].push(record_json(row, "floor"));
        }
        let mut touched = Vec::new();
        for (file, records) in by_file.iter().enumerate().filter(|(_, r)| !r.is_empty()) {
            let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            log.write(file as u32, &slices)?;
            touched.push(file as u32);
        }
        let appended_at = Instant::now();
        // Durable before marked, as in the real relay: the one ordering nobody may drop. On a
        // syncer thread, where the relay's syncs run too, so that the two differ only in what
        // the relay adds, not in which thread waits for the disk.
        let sync = log.sync_begin(&touched)?;
        log.sync_wait(sync)?;
        let synced_at = Instant::now();
        db::write_tx(&mut conn, |tx| {
            tx.prepare_cached("UPDATE outbox SET published_at_us = ?1 WHERE id BETWEEN ?2 AND ?3")
                .ctx("preparing the floor's mark")?
                .execute(params![crate::clock::now_us(), first_id, last_id])
                .ctx("marking")
        })?;
        cursor = last_id;
        let us = |d: std::time::Duration| d.as_micros() as u64;
        t.passes += 1;
        t.passes_with_rows += 1;
        t.claimed += rows.len() as u64;
        t.marked += rows.len() as u64;
        t.syncs += touched.len() as u64;
        t.claim_us += us(selected_at - pass_started);
        t.append_us += us(appended_at - selected_at);
        t.sync_us += us(synced_at - appended_at);
        t.mark_us += us(synced_at.elapsed());
    }
    Ok(FloorRun {
        marked: t.marked,
        elapsed_s: started.elapsed().as_secs_f64(),
        totals: t,
    })
}
