//! One partition's worker: read from the committed offset, apply each record, commit offset.

use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;
use serde_json::json;

use crate::broker::{self, LogReader, RawRecord};
use crate::consumer::apply::{ApplyOptions, Outcome, Position, apply_with};
use crate::consumer::{ConsumerConfig, ConsumerTotals};
use crate::crashpoint::{self, Point};
use crate::datadir::DataDir;
use crate::db::{self, Synchronous};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::trace::{self, Ev};
use crate::wake::Waiter;

pub fn run(
    dir: &DataDir,
    config: &ConsumerConfig,
    partition: u32,
    stop: &AtomicBool,
) -> Result<ConsumerTotals> {
    // FULL: the offset we commit next must never be ahead of the inbox on disk. With NORMAL a
    // power cut could roll back applied events whose offset file had already been synced.
    let mut conn = db::open(&dir.consumer_db(), Synchronous::Full)?;
    let broker_dir = dir.broker_dir();
    let path = broker::log_path(&broker_dir, partition);
    let mut reader = LogReader::open(&path)?;
    let file_name = path.file_name().and_then(|n| n.to_str());
    let file_name = file_name.expect("a partition's log file has a UTF-8 name");
    let mut waiter = Waiter::open(config.wake, &broker_dir, file_name)?;
    let mut offset_bytes = broker::read_offset(&broker_dir, &config.group, partition)?;
    let mut totals = ConsumerTotals::default();
    while !stop.load(Ordering::Relaxed) {
        waiter.clear()?; // before reading: an append after this rings again
        let records = reader.read_from(offset_bytes, config.batch)?;
        let Some(last) = records.last() else {
            if config.until_idle {
                break;
            }
            waiter.idle(stop, config.poll_ms)?;
            continue;
        };
        let next_offset_bytes = last.next_offset_bytes;
        for record in &records {
            totals += apply_record(&mut conn, config, &path, partition, record)?;
        }
        // After the transactions, never before: a crash here replays, it never skips.
        broker::commit_offset(&broker_dir, &config.group, partition, next_offset_bytes)?;
        offset_bytes = next_offset_bytes;
    }
    Ok(totals)
}

fn apply_record(
    conn: &mut Connection,
    config: &ConsumerConfig,
    path: &std::path::Path,
    partition: u32,
    record: &RawRecord,
) -> Result<ConsumerTotals> {
    let event: Event = serde_json::from_slice(&record.json).map_err(|e| Error::Corrupt {
        file: path.to_path_buf(),
        offset_bytes: record.offset_bytes,
        reason: format!("partition {partition}: record passed its CRC but is not an event: {e}"),
    })?;
    let at = Position {
        partition,
        offset_bytes: record.offset_bytes,
    };
    let options = ApplyOptions {
        seq_guard: config.seq_guard,
        retention: config.retention,
    };
    let now_us = config.clock.now_us();
    let outcome = apply_with(conn, &event, at, now_us, &options)?;
    let too_old = config
        .retention
        .is_some_and(|r| r.too_old_for_inbox(event.created_at_us, now_us));
    let ev = match outcome {
        Outcome::Applied => Ev::Applied,
        Outcome::SkippedDuplicate => Ev::SkippedDuplicate,
        Outcome::DroppedStale => Ev::DroppedBySeqGuard,
        Outcome::Parked => Ev::Parked,
    };
    trace::emit(ev, || {
        json!({ "event_id": event.event_id, "partition": partition, "offset_bytes": record.offset_bytes,
                "aggregate_id": event.aggregate_id, "aggregate_seq": event.aggregate_seq,
                "relay": event.relay, "attempt": event.attempt, "too_old_for_inbox": too_old })
    });
    crashpoint::point(Point::ConsumerAfterApply);
    Ok(ConsumerTotals {
        delivered: 1,
        applied: (outcome == Outcome::Applied) as u64,
        skipped_duplicates: (outcome == Outcome::SkippedDuplicate) as u64,
        dropped_by_seq_guard: (outcome == Outcome::DroppedStale) as u64,
        parked: (outcome == Outcome::Parked) as u64,
        too_old_for_inbox: too_old as u64,
        swept_rows: 0,
    })
}
