//! Reading the three stores — orders.db, the log, consumer.db — plus the trace, into plain
//! vectors the analysis can walk. Read-only: the checker never changes what it checks.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::broker;
use crate::datadir::DataDir;
use crate::error::{Context, Error, Result};
use crate::event::Event;
use crate::trace::Ev;

pub struct OrderRow {
    pub id: i64,
    pub request_id: String,
    pub customer: String,
    pub amount_cents: i64,
    pub last_seq: i64,
}

pub struct OutboxRow {
    pub event_id: String,
    pub aggregate_id: String,
    pub aggregate_seq: i64,
    pub published: bool,
}

pub struct LogRecord {
    pub partition: u32,
    pub offset_bytes: u64,
    pub event: Event,
}

pub struct EffectRow {
    pub event_id: String,
    pub aggregate_id: String,
    pub aggregate_seq: i64,
}

pub struct Stores {
    pub orders: Vec<OrderRow>,
    pub outbox: Vec<OutboxRow>,
    /// Every whole record of every partition, partition by partition, in log order.
    pub records: Vec<LogRecord>,
    pub torn_tail_bytes: u64,
    /// The consumer group's committed offset per partition.
    pub consumer_offsets: Vec<u64>,
    /// In apply order.
    pub effects: Vec<EffectRow>,
    pub points: HashMap<String, i64>,
    pub counters: HashMap<String, i64>,
    /// pid -> crash point it died at, and event id -> pids that appended a copy (in order).
    pub crashes_by_pid: HashMap<u64, String>,
    pub appenders: HashMap<String, Vec<u64>>,
}

fn read_only(path: &Path) -> Result<Connection> {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .ctx(format!("opening {} read-only", path.display()))
}

pub fn load(dir: &DataDir, group: &str) -> Result<Stores> {
    let orders_db = read_only(&dir.orders_db())?;
    let orders = orders_db
        .prepare("SELECT id, request_id, customer, amount_cents, last_seq FROM orders ORDER BY id")?
        .query_map([], |r| {
            Ok(OrderRow {
                id: r.get(0)?,
                request_id: r.get(1)?,
                customer: r.get(2)?,
                amount_cents: r.get(3)?,
                last_seq: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ctx("reading orders")?;
    let outbox = orders_db
        .prepare("SELECT event_id, aggregate_id, aggregate_seq, published_at_us IS NOT NULL FROM outbox ORDER BY id")?
        .query_map([], |r| {
            Ok(OutboxRow {
                event_id: r.get(0)?,
                aggregate_id: r.get(1)?,
                aggregate_seq: r.get(2)?,
                published: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ctx("reading outbox")?;

    let broker_dir = dir.broker_dir();
    let mut records = Vec::new();
    let mut torn_tail_bytes = 0;
    let mut consumer_offsets = Vec::new();
    for partition in 0..dir.partitions {
        let path = broker::log_path(&broker_dir, partition);
        let scan = broker::scan(&path)?;
        torn_tail_bytes += scan.torn_tail_bytes;
        for raw in scan.records {
            let event: Event = serde_json::from_slice(&raw.json).map_err(|e| Error::Corrupt {
                file: path.clone(),
                offset_bytes: raw.offset_bytes,
                reason: format!("record is not an event: {e}"),
            })?;
            records.push(LogRecord {
                partition,
                offset_bytes: raw.offset_bytes,
                event,
            });
        }
        consumer_offsets.push(broker::read_offset(&broker_dir, group, partition)?);
    }

    let consumer_db = read_only(&dir.consumer_db())?;
    let effects = consumer_db
        .prepare("SELECT event_id, aggregate_id, aggregate_seq FROM effects ORDER BY id")?
        .query_map([], |r| {
            Ok(EffectRow {
                event_id: r.get(0)?,
                aggregate_id: r.get(1)?,
                aggregate_seq: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ctx("reading effects")?;
    let points = key_values(&consumer_db, "SELECT customer, balance FROM points")?;
    let counters = key_values(&consumer_db, "SELECT name, value FROM counters")?;
    let (crashes_by_pid, appenders) = read_trace(&dir.trace_path());
    Ok(Stores {
        orders,
        outbox,
        records,
        torn_tail_bytes,
        consumer_offsets,
        effects,
        points,
        counters,
        crashes_by_pid,
        appenders,
    })
}

fn key_values(conn: &Connection, sql: &str) -> Result<HashMap<String, i64>> {
    conn.prepare(sql)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<HashMap<_, _>>>()
        .ctx(format!("reading `{sql}`"))
}

/// The trace is a diagnostic: if it is missing or has odd lines, causes are just "unknown".
fn read_trace(path: &Path) -> (HashMap<u64, String>, HashMap<String, Vec<u64>>) {
    let mut crashes = HashMap::new();
    let mut appenders: HashMap<String, Vec<u64>> = HashMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return (crashes, appenders);
    };
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let pid = v["pid"].as_u64().unwrap_or(0);
        match Ev::of_line(&v) {
            Some(Ev::Crash) => {
                crashes.insert(pid, v["point"].as_str().unwrap_or("?").to_string());
            }
            Some(Ev::Appended) => {
                let ids = v["event_ids"].as_array().cloned().unwrap_or_default();
                let single = v["event_id"].as_str().map(serde_json::Value::from);
                for id in ids.into_iter().chain(single) {
                    if let Some(id) = id.as_str() {
                        appenders.entry(id.to_string()).or_default().push(pid);
                    }
                }
            }
            _ => {}
        }
    }
    (crashes, appenders)
}
