//! A fixture builder: a drained data directory of any size, written straight into the three
//! stores, for measuring the checker at a million events and more.
//!
//! It is not a run of the pipeline and proves nothing about it: it writes what a clean,
//! drained, fully cleaned-up run leaves behind — committed orders (every 4th paid and shipped),
//! an empty outbox, every event once in its partition (plus one copy in a hundred, as a relay
//! crash after its sync would leave), each applied once, points credited, offsets at the end —
//! in big transactions, so a million events take seconds, not the hours one order transaction
//! and one fsync each would. `verify` on it must say OK; anything else is a checker bug.

use std::path::Path;

use rusqlite::{Transaction, params};
use serde::Serialize;

use crate::broker::{self, Broker, partition_of};
use crate::datadir::DataDir;
use crate::db::{self, Synchronous, write_tx};
use crate::error::{Context, Error, Result};
use crate::event::{Event, ORDER_PAID, ORDER_PLACED, ORDER_SHIPPED, new_event_id};

/// Upper bound on `--orders`: 50M orders is ~75M events, ~25 GB of log.
pub const MAX_ORDERS: u64 = 50_000_000;
/// Orders per bulk transaction (and per log write): one commit per this many.
const CHUNK_ORDERS: u64 = 20_000;
/// One event in this many gets a second copy in the log.
const DUPLICATE_EVERY: u64 = 100;

#[derive(Debug, Default, Serialize)]
pub struct Built {
    pub orders: u64,
    pub events: u64,
    pub records: u64,
}

/// Build into `dir`, which must be freshly `init`ed (no orders yet).
pub fn build(dir: &DataDir, orders: u64) -> Result<Built> {
    if orders == 0 || orders > MAX_ORDERS {
        return Err(Error::Input(format!(
            "--orders must be 1..={MAX_ORDERS}, got {orders}"
        )));
    }
    let mut orders_db = bulk_connection(&dir.orders_db())?;
    let existing: i64 = orders_db
        .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
        .ctx("counting orders")?;
    if existing > 0 {
        return Err(Error::Input(format!(
            "{} already holds {existing} orders; the fixture builder needs a fresh `init`",
            dir.root.display()
        )));
    }
    let mut consumer_db = bulk_connection(&dir.consumer_db())?;
    let mut broker = Broker::open(&dir.broker_dir(), dir.partitions)?;
    let mut built = Built::default();
    let mut first = 1;
    while first <= orders {
        let last = (first + CHUNK_ORDERS - 1).min(orders);
        let events: Vec<Event> = (first..=last).flat_map(order_events).collect();
        write_tx(&mut orders_db, |tx| insert_orders(tx, first..=last))?;
        let positions = append(&mut broker, dir.partitions, &events, &mut built)?;
        write_tx(&mut consumer_db, |tx| apply(tx, &events, &positions))?;
        built.events += events.len() as u64;
        first = last + 1;
    }
    built.orders = orders;
    for partition in 0..dir.partitions {
        broker.sync(partition)?;
        let end = std::fs::metadata(broker::log_path(&dir.broker_dir(), partition))
            .ctx("sizing a partition")?
            .len();
        broker::commit_offset(&dir.broker_dir(), "points", partition, end)?;
    }
    Ok(built)
}

fn bulk_connection(path: &Path) -> Result<rusqlite::Connection> {
    let conn = db::open(path, Synchronous::Normal)?;
    // OFF: a fixture is scratch data, rebuilt from nothing if the machine dies; skipping every
    // fsync is what makes a million-event build take seconds.
    conn.execute_batch("PRAGMA synchronous=OFF")
        .ctx("PRAGMA synchronous=OFF for the fixture build")?;
    Ok(conn)
}

fn customer(order_id: u64) -> String {
    format!("cust-{}", order_id % 1000)
}

fn amount_cents(order_id: u64) -> i64 {
    100 + (order_id % 50_000) as i64
}

/// Every 4th order is paid and shipped (seqs 1..=3); the rest are placed only.
fn last_seq(order_id: u64) -> i64 {
    if order_id.is_multiple_of(4) { 3 } else { 1 }
}

fn order_events(order_id: u64) -> Vec<Event> {
    (1..=last_seq(order_id))
        .map(|seq| {
            let (event_type, payload) = match seq {
                1 => (
                    ORDER_PLACED,
                    serde_json::json!({ "request_id": format!("fixture-{order_id}"),
                        "customer": customer(order_id), "amount_cents": amount_cents(order_id) }),
                ),
                2 => (ORDER_PAID, serde_json::json!({})),
                _ => (ORDER_SHIPPED, serde_json::json!({})),
            };
            Event {
                event_id: new_event_id(),
                event_type: event_type.into(),
                aggregate_id: order_id.to_string(),
                aggregate_seq: seq,
                payload,
                created_at_us: 1,
                outbox_id: None,
                relay: "fixture".into(),
                attempt: 1,
            }
        })
        .collect()
}

fn insert_orders(tx: &Transaction<'_>, ids: std::ops::RangeInclusive<u64>) -> Result<()> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO orders (id, request_id, customer, amount_cents, status, last_seq,
                                 created_at_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1)",
        )
        .ctx("preparing the fixture's order insert")?;
    for id in ids {
        let status = if last_seq(id) == 3 {
            "shipped"
        } else {
            "placed"
        };
        stmt.execute(params![
            id as i64,
            format!("fixture-{id}"),
            customer(id),
            amount_cents(id),
            status,
            last_seq(id)
        ])
        .ctx("inserting a fixture order")?;
    }
    Ok(())
}

/// Append every event to its partition (one write per partition per chunk); returns where
/// each first copy went.
fn append(
    broker: &mut Broker,
    partitions: u32,
    events: &[Event],
    built: &mut Built,
) -> Result<Vec<(u32, u64)>> {
    let mut positions = vec![(0, 0); events.len()];
    for partition in 0..partitions {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut members = Vec::new();
        for (i, event) in events.iter().enumerate() {
            if partition_of(&event.aggregate_id, partitions) != partition {
                continue;
            }
            let json = serde_json::to_vec(event).expect("an event serialises");
            let copies = if (built.events + i as u64).is_multiple_of(DUPLICATE_EVERY) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                lines.push(json.clone());
            }
            members.push((i, json.len(), copies));
        }
        if lines.is_empty() {
            continue;
        }
        built.records += lines.len() as u64;
        let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let appended = broker.write(partition, &refs)?;
        let mut offset = appended.first_offset_bytes;
        for (i, json_len, copies) in members {
            positions[i] = (partition, offset);
            // One line: 8 hex digits of CRC, a space, the JSON, a newline.
            offset += (json_len as u64 + 10) * copies;
        }
        assert_eq!(
            offset, appended.end_offset_bytes,
            "fixture: record sizes add up"
        );
    }
    Ok(positions)
}

/// Each event applied once: inbox row, effect row, points.
fn apply(tx: &Transaction<'_>, events: &[Event], positions: &[(u32, u64)]) -> Result<()> {
    let mut inbox = tx
        .prepare_cached("INSERT INTO inbox (event_id, processed_at_us) VALUES (?1, 2)")
        .ctx("preparing the fixture's inbox insert")?;
    let mut effect = tx
        .prepare_cached(
            "INSERT INTO effects (event_id, aggregate_id, aggregate_seq, event_type, applied_at_us,
                 created_at_us, customer, points, partition, offset_bytes)
             VALUES (?1, ?2, ?3, ?4, 2, 1, ?5, ?6, ?7, ?8)",
        )
        .ctx("preparing the fixture's effect insert")?;
    let mut credit = tx
        .prepare_cached(
            "INSERT INTO points (customer, balance) VALUES (?1, ?2)
             ON CONFLICT (customer) DO UPDATE SET balance = balance + excluded.balance",
        )
        .ctx("preparing the fixture's points update")?;
    for (event, (partition, offset)) in events.iter().zip(positions) {
        let (customer, points) = crate::consumer::apply::points_for(event);
        inbox
            .execute(params![event.event_id])
            .ctx("fixture inbox")?;
        effect
            .execute(params![
                event.event_id,
                event.aggregate_id,
                event.aggregate_seq,
                event.event_type,
                customer,
                points,
                partition,
                *offset as i64
            ])
            .ctx("fixture effect")?;
        if let Some(customer) = customer {
            credit
                .execute(params![customer, points])
                .ctx("fixture points")?;
        }
    }
    Ok(())
}
