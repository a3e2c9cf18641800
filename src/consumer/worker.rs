//! One partition's worker: read from the committed offset up to the durable end, apply each
//! record, commit the offset (naming the last record applied).
//!
//! Only durable records are read: a record past the partition's durable end may still vanish
//! in a power cut, and an effect applied for it would then name an event the log no longer
//! holds, and the offset committed after it would point into bytes that get rewritten.

use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;
use serde_json::json;

use crate::broker::{self, CommittedPosition, DurableEnd, LogReader, RawRecord, RecordMark};
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
    let durable = DurableEnd::open(&broker_dir, partition)?;
    // The doorbell watches the durable-end file: it is written when a sync makes records
    // readable, which is the moment worth waking for (an append alone is not readable yet).
    let file_name = durable.path().file_name().and_then(|n| n.to_str());
    let file_name = file_name.expect("a partition's durable-end file has a UTF-8 name");
    let mut waiter = Waiter::open(config.wake, &broker_dir, file_name)?;
    let position = broker::read_position(&broker_dir, &config.group, partition)?;
    // Loud, never a skip: the log must still hold the record our offset ends after.
    broker::check_position(&path, &position)?;
    let mut offset_bytes = position.next_offset_bytes;
    let mut totals = ConsumerTotals::default();
    while !stop.load(Ordering::Relaxed) {
        waiter.clear()?; // before reading: a publish after this rings again
        let durable_end_bytes = durable.read()?;
        let records = reader.read_durable(offset_bytes, config.batch, durable_end_bytes)?;
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
        let committed = CommittedPosition {
            next_offset_bytes,
            after: Some(RecordMark {
                offset_bytes: last.offset_bytes,
                crc32: crc32fast::hash(&last.json),
            }),
        };
        // After the transactions, never before: a crash here replays, it never skips.
        broker::commit_position(&broker_dir, &config.group, partition, &committed)?;
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
