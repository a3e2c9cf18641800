//! The bare relay: what shipping the outbox costs with nothing but the work itself. It sits in
//! `bench relay`'s table as the floor each real variant is measured against.
//!
//! ```text
//!   loop {
//!     SELECT next `batch` unpublished rows after a cursor        (no lease, no per-order rule)
//!     encode records (the relay's own record_json + CRC line)    one buffer
//!     write() + fdatasync                                         ONE file, ONE sync per batch
//!     UPDATE … SET published_at_us WHERE id BETWEEN first AND last  (no token check)
//!   }
//! ```
//!
//! It is not a relay anyone should run: one process only (a cursor, no claims), one log file
//! for every partition (no per-order partitioning), no fencing. It is what is left when all of
//! that is taken away, so "variant ÷ floor" says how much the guarantees cost.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rusqlite::params;

use crate::broker::encode_record;
use crate::datadir::DataDir;
use crate::db::{self, Synchronous};
use crate::error::{Context, Result};
use crate::outbox::ClaimedRow;
use crate::relay::record_json;

/// Rows shipped, and the wall time they took.
pub struct FloorRun {
    pub marked: u64,
    pub elapsed_s: f64,
}

const NEXT_SQL: &str = "
SELECT id, event_id, aggregate_id, aggregate_seq, event_type, payload, created_at_us, attempts
  FROM outbox WHERE id > ?1 AND published_at_us IS NULL ORDER BY id LIMIT ?2";

/// Ship the data directory's outbox in batches of `batch` until it is empty or `stop` is set.
pub fn run(root: &Path, batch: usize, stop: &AtomicBool) -> Result<FloorRun> {
    assert!(batch >= 1, "a floor batch holds at least one row");
    let data = DataDir::open(root)?;
    // NORMAL, as the real relay: its claims and marks are redone after a power cut.
    let mut conn = db::open(&data.orders_db(), Synchronous::Normal)?;
    let log_path = data.broker_dir().join("floor.log");
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .ctx(format!("opening {}", log_path.display()))?;
    let (mut cursor, mut marked) = (0i64, 0u64);
    let mut buf = Vec::with_capacity(batch * 400);
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
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
        buf.clear();
        for row in &rows {
            encode_record(&record_json(row, "floor"), &mut buf);
        }
        log.write_all(&buf).ctx("appending to the floor log")?;
        // Durable before marked, as in the real relay: the one ordering nobody may drop.
        log.sync_data().ctx("syncing the floor log")?;
        db::write_tx(&mut conn, |tx| {
            tx.prepare_cached("UPDATE outbox SET published_at_us = ?1 WHERE id BETWEEN ?2 AND ?3")
                .ctx("preparing the floor's mark")?
                .execute(params![crate::clock::now_us(), first_id, last_id])
                .ctx("marking")
        })?;
        marked += rows.len() as u64;
        cursor = last_id;
    }
    Ok(FloorRun {
        marked,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}
