//! How far behind is each stage? The `kafka-consumer-groups --describe` of this pipeline.
//!
//! ```text
//!   orders.db outbox ──relay──▶ broker/orders.pN.log ──consumer──▶ consumer.db inbox
//!   unpublished rows,           log end · durable end ·            inbox rows,
//!   age of the oldest           committed offset · lag             age of the oldest
//! ```
//!
//! Everything is read, nothing written: the databases are opened read-only, the log, durable-end
//! and offset files only read. So `lag` may run at any time next to a live pipeline, as often
//! as a monitoring script likes. Figures are a snapshot: each store is read in turn, not at one
//! instant, so a record appended between two reads may show in one figure and not the next.
//!
//! Per partition, three lines in the log: the *log end* (bytes appended), the *durable end*
//! (bytes known synced: what a consumer may read, see [`crate::broker::DurableEnd`]) and the
//! group's committed offset. The lag counts from the committed offset to the durable end, as
//! Kafka counts it to the high-water mark: bytes past the durable end wait for a sync, not for
//! the consumer (and may be torn, so they are not parsed).
//!
//! Last, the orders the consumer *parked* (a rule refused an event; see
//! [`crate::consumer::parking`]): how many, how many later events wait behind them, and how
//! long the oldest has waited for an operator. Unlike lag, a parked order does not drain by
//! itself: only `outbox-lab release` moves it.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use crate::broker::{self, LogReader};
use crate::clock::Clock;
use crate::consumer::parking;
use crate::datadir::DataDir;
use crate::error::{Context, Result};
use crate::outbox::segments;

/// Records read per call while counting a partition's lag: bounds the memory of one read.
const COUNT_CHUNK_RECORDS: usize = 10_000;

/// One partition: where the log ends, where the group has got to, and the gap.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionLag {
    pub partition: u32,
    /// Bytes in the log file (whole records and any half-written last one).
    pub log_end_bytes: u64,
    /// Bytes known fsynced: a consumer reads only up to here.
    pub durable_end_bytes: u64,
    /// Where the consumer group resumes: everything before it is applied.
    pub committed_offset_bytes: u64,
    /// Whole records from the committed offset to the durable end: readable, not yet applied.
    pub lag_records: u64,
    /// Bytes from the committed offset to the durable end.
    pub lag_bytes: u64,
}

/// The snapshot `outbox-lab lag` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Lag {
    pub group: String,
    /// Outbox rows not yet published (including rows under a relay's lease).
    pub unpublished: u64,
    pub oldest_unpublished_age_ms: Option<u64>,
    pub partitions: Vec<PartitionLag>,
    pub inbox_rows: u64,
    pub oldest_inbox_age_ms: Option<u64>,
    /// Orders stopped at a parked event (until `outbox-lab release`).
    pub parked_aggregates: u64,
    /// Their later events, waiting behind the parked one.
    pub parked_waiting_events: u64,
    pub oldest_parked_age_ms: Option<u64>,
}

impl Lag {
    pub fn total_lag_records(&self) -> u64 {
        self.partitions.iter().map(|p| p.lag_records).sum()
    }
}

/// Read the snapshot for consumer group `group`.
pub fn measure(data: &DataDir, group: &str, clock: Clock) -> Result<Lag> {
    let now_us = clock.now_us();
    let age_ms = |t_us: Option<i64>| t_us.map(|t| (now_us.saturating_sub(t)).max(0) as u64 / 1000);
    // The orders store says how far behind the relays are (SQLite or PostgreSQL alike).
    let (unpublished, oldest_unpublished_us) = crate::store::open_backlog(data)?.backlog()?;
    let consumer = read_only(&data.consumer_db())?;
    let (inbox_rows, oldest_inbox_us): (i64, Option<i64>) = consumer
        .query_row(
            "SELECT count(*), min(processed_at_us) FROM inbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ctx("reading the inbox")?;
    let held = parking::held_summary(&consumer)?;
    let partitions = (0..data.partitions)
        .map(|p| partition_lag(&data.broker_dir(), group, p))
        .collect::<Result<Vec<_>>>()?;
    Ok(Lag {
        group: group.to_string(),
        unpublished,
        oldest_unpublished_age_ms: age_ms(oldest_unpublished_us),
        partitions,
        inbox_rows: inbox_rows.max(0) as u64,
        oldest_inbox_age_ms: age_ms(oldest_inbox_us),
        parked_aggregates: held.aggregates,
        parked_waiting_events: held.waiting_events,
        oldest_parked_age_ms: age_ms(held.oldest_parked_at_us),
    })
}

pub(crate) fn read_only(path: &Path) -> Result<Connection> {
    // Read-only: a monitor must never change what it watches.
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .ctx(format!("opening {} read-only", path.display()))
}

/// `created_at_us` of the oldest unpublished row, in either outbox layout.
pub(crate) fn oldest_unpublished_us(conn: &Connection) -> Result<Option<i64>> {
    let tables: Vec<String> =
        if crate::outbox::Layout::of(conn)? == crate::outbox::Layout::Partitioned {
            segments::live_segments(conn)?
                .into_iter()
                .map(segments::table)
                .collect()
        } else {
            vec!["outbox".to_string()]
        };
    let mut oldest: Option<i64> = None;
    for table in tables {
        let sql = format!("SELECT min(created_at_us) FROM {table} WHERE published_at_us IS NULL");
        let t: Option<i64> = conn
            .query_row(&sql, [], |r| r.get(0))
            .optional()
            .ctx(format!("reading the oldest unpublished row of {table}"))?
            .flatten();
        oldest = match (oldest, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(oldest)
}

fn partition_lag(broker_dir: &Path, group: &str, partition: u32) -> Result<PartitionLag> {
    let path = broker::log_path(broker_dir, partition);
    let log_end_bytes = std::fs::metadata(&path)
        .ctx(format!("reading the size of {}", path.display()))?
        .len();
    let durable_end_bytes = broker::DurableEnd::open(broker_dir, partition)?.read()?;
    let committed_offset_bytes = broker::read_offset(broker_dir, group, partition)?;
    let mut reader = LogReader::open(&path)?;
    let mut lag_records = 0u64;
    let mut at = committed_offset_bytes;
    loop {
        let records = reader.read_durable(at, COUNT_CHUNK_RECORDS, durable_end_bytes)?;
        let Some(last) = records.last() else { break };
        at = last.next_offset_bytes;
        lag_records += records.len() as u64;
    }
    Ok(PartitionLag {
        partition,
        log_end_bytes,
        durable_end_bytes,
        committed_offset_bytes,
        lag_records,
        lag_bytes: durable_end_bytes.saturating_sub(committed_offset_bytes),
    })
}

/// Limits from the command line; each one given is checked.
#[derive(Debug, Clone, Default)]
pub struct Thresholds {
    pub max_unpublished: Option<u64>,
    pub max_unpublished_age_ms: Option<u64>,
    pub max_lag_records: Option<u64>,
    pub max_parked: Option<u64>,
}

impl Thresholds {
    /// Every limit the snapshot exceeds, in words (empty: all within).
    pub fn exceeded(&self, lag: &Lag) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(max) = self.max_unpublished.filter(|m| lag.unpublished > *m) {
            out.push(format!(
                "unpublished rows {} > --max-unpublished {max}",
                lag.unpublished
            ));
        }
        let age = lag.oldest_unpublished_age_ms.unwrap_or(0);
        if let Some(max) = self.max_unpublished_age_ms.filter(|m| age > *m) {
            out.push(format!(
                "oldest unpublished row {age} ms old > --max-unpublished-age-ms {max}"
            ));
        }
        if let Some(max) = self.max_parked.filter(|m| lag.parked_aggregates > *m) {
            out.push(format!(
                "parked orders {} > --max-parked {max}",
                lag.parked_aggregates
            ));
        }
        for p in &lag.partitions {
            if let Some(max) = self.max_lag_records.filter(|m| p.lag_records > *m) {
                out.push(format!(
                    "partition {} lags {} records > --max-lag-records {max}",
                    p.partition, p.lag_records
                ));
            }
        }
        out
    }
}

/// `12 ms ago`, or `-` when there is nothing to be old.
fn ago(age_ms: Option<u64>) -> String {
    match age_ms {
        Some(ms) => format!("{ms} ms ago"),
        None => "-".into(),
    }
}

/// The snapshot as a small report.
pub fn to_text(lag: &Lag) -> String {
    let mut out = format!(
        "outbox   unpublished {}  oldest {}\n",
        lag.unpublished,
        ago(lag.oldest_unpublished_age_ms)
    );
    out.push_str(&format!(
        "log      group {}\n  partition   log end   durable end   committed   lag records   lag bytes\n",
        lag.group
    ));
    for p in &lag.partitions {
        out.push_str(&format!(
            "  {:>9} {:>9} {:>13} {:>11} {:>13} {:>11}\n",
            p.partition,
            p.log_end_bytes,
            p.durable_end_bytes,
            p.committed_offset_bytes,
            p.lag_records,
            p.lag_bytes
        ));
    }
    out.push_str(&format!(
        "inbox    rows {}  oldest {}\nparked   orders {}  waiting behind them {}  oldest {}\n",
        lag.inbox_rows,
        ago(lag.oldest_inbox_age_ms),
        lag.parked_aggregates,
        lag.parked_waiting_events,
        ago(lag.oldest_parked_age_ms),
    ));
    out
}
