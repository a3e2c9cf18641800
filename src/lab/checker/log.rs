//! The log pass: stream every record of every partition once, keeping one small
//! [`EventFact`] per record, then merge the copies of each event.
//!
//! Each record is parsed into a borrowed view (no owned strings) and judged on the spot
//! against the committed orders: does it name an order, a seq that order reached, and — for
//! seq 1 — the order's own request id? A misplaced record is counted here, per record.

use std::borrow::Cow;
use std::io::Read;

use serde::Deserialize;

use crate::broker::{self, partition_of};
use crate::datadir::DataDir;
use crate::error::{Context, Error, Result};
use crate::event::ORDER_PLACED;
use crate::lab::checker::Report;
use crate::lab::checker::facts::{
    BEYOND_OFFSET, EventFact, FITS, Facts, MULTI_PARTITION, pack_pos,
};
use crate::lab::checker::keys::hash64;

/// The fields of a record the checker reads, borrowed from the read buffer.
#[derive(Deserialize)]
struct RecordView<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    aggregate_id: Cow<'a, str>,
    aggregate_seq: i64,
    #[serde(borrow)]
    payload: PayloadView<'a>,
}

#[derive(Deserialize)]
struct PayloadView<'a> {
    #[serde(default, borrow)]
    request_id: Option<Cow<'a, str>>,
}

/// Read the log into `facts.events` (one per distinct event, sorted by key).
pub fn scan(
    dir: &DataDir,
    consumer_offsets: &[u64],
    facts: &mut Facts,
    report: &mut Report,
) -> Result<()> {
    let broker_dir = dir.broker_dir();
    facts.events.reserve_exact(count_lines(dir)?);
    for partition in 0..dir.partitions {
        let path = broker::log_path(&broker_dir, partition);
        let committed_offset = consumer_offsets[partition as usize];
        report.torn_tail_bytes += broker::scan_each(&path, |offset_bytes, json| {
            let view: RecordView = serde_json::from_slice(json).map_err(|e| Error::Corrupt {
                file: path.clone(),
                offset_bytes,
                reason: format!("record is not an event: {e}"),
            })?;
            report.records_in_log += 1;
            if is_misplaced(&view.aggregate_id, partition, dir.partitions) {
                report.misplaced += 1;
            }
            let fact = judge(&view, facts, pack_pos(partition, offset_bytes)?);
            let beyond = offset_bytes >= committed_offset;
            facts.events.push(EventFact {
                flags: fact.flags | if beyond { BEYOND_OFFSET } else { 0 },
                ..fact
            });
            Ok(())
        })?;
    }
    merge_copies(facts);
    Ok(())
}

/// Misplaced: a record outside its aggregate's partition, CRC-32(aggregate_id) mod count.
fn is_misplaced(aggregate_id: &str, partition: u32, partitions: u32) -> bool {
    partition_of(aggregate_id, partitions) != partition
}

/// Does the record fit a committed order? (Whether it is *the* event for that seq is decided
/// later, once every record is known.)
fn judge(view: &RecordView<'_>, facts: &mut Facts, pos: u64) -> EventFact {
    let aggregate = facts.keys.aggregate(&view.aggregate_id);
    let seq = u32::try_from(view.aggregate_seq)
        .ok()
        .filter(|s| *s >= 1)
        .unwrap_or(0);
    let fits = facts.order_index(aggregate).is_some_and(|i| {
        let order = &facts.orders[i];
        let placed_by_this_request = view.event_type == ORDER_PLACED
            && view
                .payload
                .request_id
                .as_deref()
                .is_some_and(|r| hash64(r) == order.request_hash);
        seq >= 1 && seq <= order.last_seq && (seq > 1 || placed_by_this_request)
    });
    EventFact {
        key: facts.keys.event(&view.event_id),
        aggregate,
        pos,
        seq,
        copies: 1,
        applied: 0,
        flags: if fits { FITS } else { 0 },
    }
}

/// Sort by event and fold each event's copies into its first (lowest position) one.
fn merge_copies(facts: &mut Facts) {
    facts.sort_by_key();
    facts.events.dedup_by(|later, first| {
        if later.key != first.key {
            return false;
        }
        first.copies = first.copies.saturating_add(1);
        first.flags |= later.flags & BEYOND_OFFSET;
        if later.partition() != first.partition() {
            first.flags |= MULTI_PARTITION;
        }
        true
    });
    facts.events.shrink_to_fit();
}

/// Records in the whole log, counted by newlines, so the events vector is sized exactly once.
fn count_lines(dir: &DataDir) -> Result<usize> {
    let mut lines = 0;
    let mut buf = vec![0u8; 1 << 20];
    for partition in 0..dir.partitions {
        let path = broker::log_path(&dir.broker_dir(), partition);
        let mut file = std::fs::File::open(&path).ctx(format!("opening {}", path.display()))?;
        loop {
            let n = file
                .read(&mut buf)
                .ctx(format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            lines += buf[..n].iter().filter(|b| **b == b'\n').count();
        }
    }
    Ok(lines)
}
