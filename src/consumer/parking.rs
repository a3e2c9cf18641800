//! Poison events park only their order.
//!
//! A business rule may refuse an event: the points service will not credit a frozen account,
//! nor an `OrderPlaced` whose payload has no customer or no sane amount. Retrying forever would
//! stall the whole partition behind it; dropping it would lose it. Instead the event is
//! *parked*, with its reason, in the same transaction that would have applied it — and the
//! later events of the same order wait behind it, so that order's events are never applied out
//! of order. Every other order flows on; the partition's offset moves past them all, because
//! the parked rows hold the events themselves.
//!
//! ```text
//!   order 7:  seq 1 ─▶ REFUSED (frozen account) ─▶ parked   (head, with the reason)
//!             seq 2 ─▶ order 7 has a parked head  ─▶ waiting (behind seq 1)
//!   order 8:  seq 1 ─▶ applied as usual
//!   outbox-lab release --event <seq 1> --retry   ─▶ applied now (the rule lets it through),
//!                                                   then seq 2, in order
//!   outbox-lab release --event <seq 1> --skip    ─▶ kept as `skipped` (never applied; verify
//!                                                   counts it), then seq 2
//! ```
//!
//! A copy of a parked (or skipped) event that arrives later is recognised here, like the inbox
//! recognises an applied one, and skipped. A real system would alert on a parked event and
//! keep a dead-letter queue; this table is both.

use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;

use crate::consumer::apply::{ApplyOptions, Outcome, Position, apply_in, bump};
use crate::consumer::schema::Counter;
use crate::db::write_tx;
use crate::error::{Context, Error, Result};
use crate::event::{Event, ORDER_PLACED};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS parked (
    event_id      TEXT PRIMARY KEY,
    aggregate_id  TEXT NOT NULL,
    aggregate_seq INTEGER NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('parked', 'waiting', 'skipped')),
    partition     INTEGER NOT NULL,       -- where the held copy sat in the log
    offset_bytes  INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    event_json    TEXT NOT NULL,
    parked_at_us  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS parked_by_aggregate ON parked (aggregate_id, aggregate_seq);
-- The business rule's data: accounts whose points are frozen (an operator adds and removes).
CREATE TABLE IF NOT EXISTS frozen_customers (
    customer TEXT PRIMARY KEY,
    reason   TEXT NOT NULL
) WITHOUT ROWID;
";

/// The consumer's ceiling on one order's amount: the order service's own limit.
const MAX_AMOUNT_CENTS: i64 = crate::order::input::MAX_AMOUNT_CENTS;

/// Why an event is held back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// A rule refused it: it is its order's parked head.
    Refused(String),
    /// An earlier event of its order is parked or waiting.
    Behind(String),
}

/// A parked row, as `outbox-lab parked` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ParkedEvent {
    pub event_id: String,
    pub aggregate_id: String,
    pub aggregate_seq: i64,
    pub state: String,
    pub reason: String,
}

/// Is this event a copy of one already parked or skipped? (Then it is skipped, like a copy of
/// an applied event is skipped by the inbox.)
pub fn is_held(tx: &Transaction<'_>, event_id: &str) -> Result<bool> {
    tx.prepare_cached("SELECT 1 FROM parked WHERE event_id = ?1")
        .ctx("preparing parked lookup")?
        .query_row(params![event_id], |_| Ok(()))
        .optional()
        .ctx("looking up a parked event")
        .map(|found| found.is_some())
}

/// Must this (new) event be held back, and why?
pub fn judge(tx: &Transaction<'_>, event: &Event) -> Result<Option<Hold>> {
    let ahead: Option<String> = tx
        .prepare_cached(
            "SELECT event_id FROM parked WHERE aggregate_id = ?1 AND aggregate_seq < ?2
               AND state IN ('parked', 'waiting') ORDER BY aggregate_seq LIMIT 1",
        )
        .ctx("preparing the parked-ahead lookup")?
        .query_row(params![event.aggregate_id, event.aggregate_seq], |r| {
            r.get(0)
        })
        .optional()
        .ctx("looking for a parked event ahead")?;
    if let Some(head) = ahead {
        return Ok(Some(Hold::Behind(format!(
            "waits behind parked event {head}"
        ))));
    }
    Ok(refusal(tx, event)?.map(Hold::Refused))
}

/// The business rule: what the points service refuses to credit.
fn refusal(tx: &Transaction<'_>, event: &Event) -> Result<Option<String>> {
    if event.event_type != ORDER_PLACED {
        return Ok(None);
    }
    let Some(customer) = event.payload["customer"]
        .as_str()
        .filter(|c| !c.trim().is_empty())
    else {
        return Ok(Some("OrderPlaced payload has no customer".into()));
    };
    match event.payload["amount_cents"].as_i64() {
        Some(cents) if (1..=MAX_AMOUNT_CENTS).contains(&cents) => {}
        _ => {
            return Ok(Some(format!(
                "OrderPlaced amount_cents is not in 1..={MAX_AMOUNT_CENTS}"
            )));
        }
    }
    let frozen: Option<String> = tx
        .prepare_cached("SELECT reason FROM frozen_customers WHERE customer = ?1")
        .ctx("preparing the frozen-account lookup")?
        .query_row(params![customer], |r| r.get(0))
        .optional()
        .ctx("looking up a frozen account")?;
    Ok(frozen.map(|why| format!("customer {customer:?} is frozen: {why}")))
}

/// Park `event` (in the caller's transaction).
pub fn park(
    tx: &Transaction<'_>,
    event: &Event,
    at: Position,
    hold: &Hold,
    now_us: i64,
) -> Result<()> {
    let (state, reason) = match hold {
        Hold::Refused(reason) => ("parked", reason),
        Hold::Behind(reason) => ("waiting", reason),
    };
    let json = serde_json::to_string(event).expect("an event serialises");
    tx.prepare_cached(
        "INSERT INTO parked (event_id, aggregate_id, aggregate_seq, state, partition, offset_bytes,
                             reason, event_json, parked_at_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .ctx("preparing park")?
    .execute(params![
        event.event_id,
        event.aggregate_id,
        event.aggregate_seq,
        state,
        at.partition,
        at.offset_bytes as i64,
        reason,
        json,
        now_us
    ])
    .ctx("parking an event")?;
    Ok(())
}

/// What is held back right now, for `lag`: parked heads and the events waiting behind them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HeldSummary {
    /// Orders with a parked head: each is stopped until an operator releases it.
    pub aggregates: u64,
    /// Later events of those orders, waiting behind their head.
    pub waiting_events: u64,
    /// When the oldest parked head was parked (`None`: nothing parked).
    pub oldest_parked_at_us: Option<i64>,
}

/// Count what is held back. A consumer database from before parking existed has no `parked`
/// table: then nothing is held. Only reads, so `conn` may be read-only.
pub fn held_summary(conn: &rusqlite::Connection) -> Result<HeldSummary> {
    let has_table: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'parked'",
            [],
            |r| r.get(0),
        )
        .ctx("looking for the parked table")?;
    if !has_table {
        return Ok(HeldSummary::default());
    }
    let (aggregates, waiting_events, oldest_parked_at_us): (i64, i64, Option<i64>) = conn
        .query_row(
            "SELECT count(DISTINCT CASE WHEN state = 'parked' THEN aggregate_id END),
                    count(CASE WHEN state = 'waiting' THEN 1 END),
                    min(CASE WHEN state = 'parked' THEN parked_at_us END)
             FROM parked",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .ctx("counting parked events")?;
    Ok(HeldSummary {
        aggregates: aggregates.max(0) as u64,
        waiting_events: waiting_events.max(0) as u64,
        oldest_parked_at_us,
    })
}

/// Every parked, waiting or skipped event, by order and seq.
pub fn list(conn: &rusqlite::Connection) -> Result<Vec<ParkedEvent>> {
    conn.prepare(
        "SELECT event_id, aggregate_id, aggregate_seq, state, reason FROM parked
         ORDER BY aggregate_id, aggregate_seq",
    )
    .ctx("preparing the parked list")?
    .query_map([], |r| {
        Ok(ParkedEvent {
            event_id: r.get(0)?,
            aggregate_id: r.get(1)?,
            aggregate_seq: r.get(2)?,
            state: r.get(3)?,
            reason: r.get(4)?,
        })
    })
    .ctx("listing parked events")?
    .collect::<rusqlite::Result<Vec<_>>>()
    .ctx("reading parked events")
}

/// A held event taken out of the table to be applied again: its row is deleted.
pub fn take(tx: &Transaction<'_>, event_id: &str) -> Result<(Event, Position)> {
    let (json, partition, offset_bytes): (String, u32, i64) = tx
        .query_row(
            "DELETE FROM parked WHERE event_id = ?1 RETURNING event_json, partition, offset_bytes",
            params![event_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .ctx(format!("taking parked event {event_id}"))?;
    let event = serde_json::from_str(&json).expect("a parked event was serialised by park()");
    let at = Position {
        partition,
        offset_bytes: offset_bytes as u64,
    };
    Ok((event, at))
}

/// The events waiting behind `aggregate_id`'s parked head, oldest first.
pub fn waiting(tx: &Transaction<'_>, aggregate_id: &str) -> Result<Vec<String>> {
    tx.prepare(
        "SELECT event_id FROM parked WHERE aggregate_id = ?1 AND state = 'waiting'
         ORDER BY aggregate_seq",
    )
    .ctx("preparing the waiting list")?
    .query_map(params![aggregate_id], |r| r.get(0))
    .ctx("listing waiting events")?
    .collect::<rusqlite::Result<Vec<String>>>()
    .ctx("reading waiting events")
}

/// Mark a parked head skipped: never applied, kept as the record that it was let go.
pub fn skip(tx: &Transaction<'_>, event_id: &str, now_us: i64) -> Result<()> {
    tx.execute(
        "UPDATE parked SET state = 'skipped', reason = 'released with --skip: ' || reason,
                           parked_at_us = ?2
         WHERE event_id = ?1",
        params![event_id, now_us],
    )
    .ctx("marking a parked event skipped")?;
    Ok(())
}

/// The state of one event in the table, if it is there.
pub fn state_of(tx: &Transaction<'_>, event_id: &str) -> Result<Option<(String, String)>> {
    tx.query_row(
        "SELECT state, reason FROM parked WHERE event_id = ?1",
        params![event_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .ctx("looking up a parked event")
}

/// How an operator lets a parked event go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Apply it now (the rule's data changed, say an account was unfrozen).
    Retry,
    /// Never apply it; keep it as `skipped`, which `verify` accounts for.
    Skip,
}

/// What a release did.
#[derive(Debug, Clone, Serialize)]
pub struct Released {
    pub event_id: String,
    /// `applied`, `skipped`, or `still refused: <reason>`.
    pub outcome: String,
    /// Events of the same order that were waiting behind it and are now applied.
    pub then_applied: u64,
    /// Events of the order still held (behind a new parked head).
    pub still_held: u64,
}

/// Release one parked event, then apply what waited behind it, in seq order, in ONE
/// transaction: the order's events go out in order or not at all.
pub fn release(
    conn: &mut rusqlite::Connection,
    event_id: &str,
    how: Release,
    now_us: i64,
    options: &ApplyOptions,
) -> Result<Released> {
    write_tx(conn, |tx| {
        match state_of(tx, event_id)? {
            None => return Err(Error::Input(format!("event {event_id} is not parked"))),
            Some((state, reason)) if state == "waiting" => {
                return Err(Error::Input(format!(
                    "event {event_id} {reason}: release that one first"
                )));
            }
            Some((state, _)) if state == "skipped" => {
                return Err(Error::Input(format!(
                    "event {event_id} was already skipped"
                )));
            }
            Some(_) => {}
        }
        let (aggregate_id, outcome) = match how {
            Release::Retry => {
                let (event, at) = take(tx, event_id)?;
                let outcome = match apply_in(tx, &event, at, now_us, options)? {
                    Outcome::Parked => {
                        let reason = state_of(tx, event_id)?.map(|(_, r)| r).unwrap_or_default();
                        format!("still refused: {reason}")
                    }
                    _ => "applied".to_string(),
                };
                (event.aggregate_id, outcome)
            }
            Release::Skip => {
                let aggregate_id: String = tx
                    .query_row(
                        "SELECT aggregate_id FROM parked WHERE event_id = ?1",
                        params![event_id],
                        |r| r.get(0),
                    )
                    .ctx("reading a parked event's order")?;
                skip(tx, event_id, now_us)?;
                bump(tx, Counter::SkippedPoison)?;
                (aggregate_id, "skipped".to_string())
            }
        };
        let mut released = Released {
            event_id: event_id.to_string(),
            then_applied: 0,
            still_held: 0,
            outcome,
        };
        if released.outcome.starts_with("still refused") {
            released.still_held = waiting(tx, &aggregate_id)?.len() as u64;
            return Ok(released);
        }
        let behind = waiting(tx, &aggregate_id)?;
        for (i, id) in behind.iter().enumerate() {
            let (event, at) = take(tx, id)?;
            if apply_in(tx, &event, at, now_us, options)? == Outcome::Parked {
                released.still_held = (behind.len() - i) as u64;
                break;
            }
            released.then_applied += 1;
        }
        Ok(released)
    })
}
