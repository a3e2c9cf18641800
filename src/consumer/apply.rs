//! Applying one event: inbox row + effect in ONE transaction, so "seen" and "done" can never
//! disagree.
//!
//! ```text
//!   BEGIN IMMEDIATE
//!     INSERT INTO inbox (event_id) … ON CONFLICT DO NOTHING
//!     ├─ 0 rows: seen before ─▶ count a skipped duplicate, apply nothing
//!     └─ 1 row:  new ─────────▶ INSERT effects …; UPDATE points …
//!   COMMIT
//! ```
//!
//! If the process dies before COMMIT, neither the inbox row nor the effect exists and the
//! redelivered copy is applied; after COMMIT, both exist and any copy is skipped.

use rusqlite::{Connection, params};

use crate::db::write_tx;
use crate::error::{Context, Result};
use crate::event::{Event, ORDER_PLACED};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Its event_id was already in the inbox: a redelivery or a relay's duplicate.
    SkippedDuplicate,
}

/// Where the copy being applied sits in the log.
#[derive(Debug, Clone, Copy)]
pub struct Position {
    pub partition: u32,
    pub offset_bytes: u64,
}

/// Points credited for an event: one per whole dollar of an order placed.
pub fn points_for(event: &Event) -> (Option<String>, i64) {
    if event.event_type != ORDER_PLACED {
        return (None, 0);
    }
    let customer = event.payload["customer"].as_str().map(str::to_string);
    let amount_cents = event.payload["amount_cents"].as_i64().unwrap_or(0);
    (customer, amount_cents / 100)
}

pub fn apply(conn: &mut Connection, event: &Event, at: Position, now_us: i64) -> Result<Outcome> {
    write_tx(conn, |tx| {
        let fresh = tx
            .prepare_cached(
                "INSERT INTO inbox (event_id, processed_at_us) VALUES (?1, ?2)
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .ctx("preparing inbox insert")?
            .execute(params![event.event_id, now_us])
            .ctx("inserting into inbox")?;
        if fresh == 0 {
            bump(tx, "skipped_duplicate")?;
            return Ok(Outcome::SkippedDuplicate);
        }
        let (customer, points) = points_for(event);
        tx.prepare_cached(
            "INSERT INTO effects (event_id, aggregate_id, aggregate_seq, event_type, applied_at_us,
                                  created_at_us, customer, points, partition, offset_bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .ctx("preparing effect insert")?
        .execute(params![
            event.event_id,
            event.aggregate_id,
            event.aggregate_seq,
            event.event_type,
            now_us,
            event.created_at_us,
            customer,
            points,
            at.partition,
            at.offset_bytes as i64
        ])
        .ctx("recording the effect")?;
        if let Some(customer) = customer {
            tx.prepare_cached(
                "INSERT INTO points (customer, balance) VALUES (?1, ?2)
                 ON CONFLICT (customer) DO UPDATE SET balance = balance + excluded.balance",
            )
            .ctx("preparing points update")?
            .execute(params![customer, points])
            .ctx("crediting points")?;
        }
        bump(tx, "applied")?;
        Ok(Outcome::Applied)
    })
}

fn bump(tx: &rusqlite::Transaction<'_>, counter: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO counters (name, value) VALUES (?1, 1)
         ON CONFLICT (name) DO UPDATE SET value = value + 1",
    )
    .ctx("preparing counter")?
    .execute(params![counter])
    .ctx("bumping a counter")?;
    Ok(())
}
