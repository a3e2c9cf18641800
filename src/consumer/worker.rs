//! One partition's worker: read a batch from the committed offset up to the durable end, apply
//! it in one transaction, commit the offset (naming the last record applied).
//!
//! ```text
//!   read ≤ batch records (and ≤ batch_bytes), durable ones only
//!        ─▶ BEGIN; inbox + effect × n; COMMIT
//!        ── consumer.after_apply (once per record of the batch, after COMMIT)
//!   commit the offset past the batch's last record
//! ```
//!
//! Four workers share consumer.db's one writer: each COMMIT holds the write lock for its fsync,
//! so a batch per worker costs one lock hand-off and one fsync, not one per record.
//!
//! Only durable records are read: a record past the partition's durable end may still vanish
//! in a power cut, and an effect applied for it would then name an event the log no longer
//! holds, and the offset committed after it would point into bytes that get rewritten.

use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;
use serde_json::json;

use crate::broker::{self, CommittedPosition, DurableEnd, LogReader, RawRecord, RecordMark};
use crate::consumer::apply::{ApplyOptions, Outcome, Position, apply_batch};
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
        let batch = within_bytes(&records, config.batch_bytes);
        let last = batch.last().unwrap_or(last);
        let next_offset_bytes = last.next_offset_bytes;
        totals += apply_records(&mut conn, config, &path, partition, batch)?;
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

/// The longest prefix of `records` within `max_bytes` of JSON, but at least one record (a
/// record larger than the bound still has to be applied).
fn within_bytes(records: &[RawRecord], max_bytes: usize) -> &[RawRecord] {
    let mut total_bytes = 0usize;
    let n = records
        .iter()
        .take_while(|r| {
            total_bytes = total_bytes.saturating_add(r.json.len());
            total_bytes <= max_bytes
        })
        .count();
    &records[..n.max(1).min(records.len())]
}

/// Parse and apply `records` as ONE transaction; trace and pass the crash point afterwards.
fn apply_records(
    conn: &mut Connection,
    config: &ConsumerConfig,
    path: &std::path::Path,
    partition: u32,
    records: &[RawRecord],
) -> Result<ConsumerTotals> {
    let events = records
        .iter()
        .map(|record| parse(path, partition, record))
        .collect::<Result<Vec<Event>>>()?;
    let batch: Vec<(&Event, Position)> = events
        .iter()
        .zip(records)
        .map(|(event, record)| {
            let at = Position {
                partition,
                offset_bytes: record.offset_bytes,
            };
            (event, at)
        })
        .collect();
    let options = ApplyOptions {
        seq_guard: config.seq_guard,
        retention: config.retention,
    };
    let now_us = config.clock.now_us();
    let outcomes = apply_batch(conn, &batch, now_us, &options)?;
    // Every committed record is traced before any crash point fires: the trace tells the
    // truth about the whole batch even when the process dies at its N-th record.
    let mut too_old = Vec::with_capacity(batch.len());
    for ((event, at), outcome) in batch.iter().zip(&outcomes) {
        let old = config
            .retention
            .is_some_and(|r| r.too_old_for_inbox(event.created_at_us, now_us));
        trace_outcome(event, *at, *outcome, old);
        too_old.push(old);
    }
    let mut totals = ConsumerTotals::default();
    for (outcome, too_old) in outcomes.into_iter().zip(too_old) {
        // Once per record, after the batch's COMMIT: `@N` kills the worker once the batch
        // holding its N-th record is committed and its offset is not. The whole batch comes
        // back, and the inbox skips all of it.
        crashpoint::point(Point::ConsumerAfterApply);
        totals += ConsumerTotals {
            delivered: 1,
            applied: (outcome == Outcome::Applied) as u64,
            skipped_duplicates: (outcome == Outcome::SkippedDuplicate) as u64,
            dropped_by_seq_guard: (outcome == Outcome::DroppedStale) as u64,
            parked: (outcome == Outcome::Parked) as u64,
            too_old_for_inbox: too_old as u64,
            swept_rows: 0,
        };
    }
    Ok(totals)
}

fn parse(path: &std::path::Path, partition: u32, record: &RawRecord) -> Result<Event> {
    serde_json::from_slice(&record.json).map_err(|e| Error::Corrupt {
        file: path.to_path_buf(),
        offset_bytes: record.offset_bytes,
        reason: format!("partition {partition}: record passed its CRC but is not an event: {e}"),
    })
}

fn trace_outcome(event: &Event, at: Position, outcome: Outcome, too_old: bool) {
    let ev = match outcome {
        Outcome::Applied => Ev::Applied,
        Outcome::SkippedDuplicate => Ev::SkippedDuplicate,
        Outcome::DroppedStale => Ev::DroppedBySeqGuard,
        Outcome::Parked => Ev::Parked,
    };
    trace::emit(ev, || {
        json!({ "event_id": event.event_id, "partition": at.partition, "offset_bytes": at.offset_bytes,
                "aggregate_id": event.aggregate_id, "aggregate_seq": event.aggregate_seq,
                "relay": event.relay, "attempt": event.attempt, "too_old_for_inbox": too_old })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json_bytes: usize) -> RawRecord {
        RawRecord {
            offset_bytes: 0,
            next_offset_bytes: 0,
            json: vec![b'x'; json_bytes],
        }
    }

    #[test]
    fn a_batch_stops_at_its_byte_bound_but_always_holds_one_record() {
        let records: Vec<RawRecord> = (0..5).map(|_| record(100)).collect();
        assert_eq!(within_bytes(&records, 250).len(), 2);
        assert_eq!(within_bytes(&records, 500).len(), 5);
        assert_eq!(within_bytes(&records, 10_000).len(), 5);
        assert_eq!(
            within_bytes(&records, 50).len(),
            1,
            "a record over the bound is still applied, alone"
        );
    }
}
