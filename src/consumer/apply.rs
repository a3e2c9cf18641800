//! Applying one event: inbox row + effect in ONE transaction, so "seen" and "done" can never
//! disagree.
//!
//! ```text
//!   BEGIN IMMEDIATE
//!     INSERT INTO inbox (event_id) … ON CONFLICT DO NOTHING
//!     ├─ 0 rows: seen before ─▶ count a skipped duplicate, apply nothing
//!     └─ 1 row:  new ─────────▶ seq guard (see [`super::guard`]): stale copy? drop it
//!                               else INSERT effects …; UPDATE points …; advance the guard
//!   COMMIT
//! ```
//!
//! If the process dies before COMMIT, neither the inbox row nor the effect exists and the
//! redelivered copy is applied; after COMMIT, both exist and any copy is skipped.

use rusqlite::{Connection, params};

use crate::consumer::guard::{self, Verdict};
use crate::consumer::parking;
use crate::consumer::retention::Retention;
use crate::consumer::schema::Counter;
use crate::db::write_tx;
use crate::error::{Context, Result};
use crate::event::{Event, ORDER_PLACED};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Its event_id was already in the inbox: a redelivery or a relay's duplicate.
    SkippedDuplicate,
    /// New to the inbox (its row was swept, say) but its seq is not newer than the last one
    /// applied for its aggregate: a late copy, dropped by the seq guard.
    DroppedStale,
    /// Held back (see [`super::parking`]): refused by a business rule, or behind its order's
    /// parked event. Not applied, not in the inbox; the parked row holds it.
    Parked,
}

/// How [`apply_with`] judges an event beyond the inbox. The default is the plain inbox.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Enforce the per-aggregate seq guard (its state is kept either way).
    pub seq_guard: bool,
    /// The inbox's retention, if it has one: events older than it are counted as
    /// `too_old_for_inbox` (the inbox may have forgotten their copies).
    pub retention: Option<Retention>,
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
    apply_with(conn, event, at, now_us, &ApplyOptions::default())
}

pub fn apply_with(
    conn: &mut Connection,
    event: &Event,
    at: Position,
    now_us: i64,
    options: &ApplyOptions,
) -> Result<Outcome> {
    write_tx(conn, |tx| apply_in(tx, event, at, now_us, options))
}

/// [`apply_with`] inside the caller's transaction (a release applies several in one).
pub(crate) fn apply_in(
    tx: &rusqlite::Transaction<'_>,
    event: &Event,
    at: Position,
    now_us: i64,
    options: &ApplyOptions,
) -> Result<Outcome> {
    {
        let too_old = options
            .retention
            .is_some_and(|r| r.too_old_for_inbox(event.created_at_us, now_us));
        if too_old {
            bump(tx, Counter::TooOldForInbox)?;
        }
        let fresh = tx
            .prepare_cached(
                "INSERT INTO inbox (event_id, processed_at_us) VALUES (?1, ?2)
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .ctx("preparing inbox insert")?
            .execute(params![event.event_id, now_us])
            .ctx("inserting into inbox")?;
        if fresh == 0 || parking::is_held(tx, &event.event_id)? {
            // Seen before: applied (inbox), or parked or skipped (a copy of a held event).
            bump(tx, Counter::SkippedDuplicate)?;
            return Ok(Outcome::SkippedDuplicate);
        }
        if let Some(hold) = parking::judge(tx, event)? {
            // Not applied after all: out of the inbox again, into the parked table.
            tx.prepare_cached("DELETE FROM inbox WHERE event_id = ?1")
                .ctx("preparing inbox delete")?
                .execute(params![event.event_id])
                .ctx("taking a held event out of the inbox")?;
            parking::park(tx, event, at, &hold, now_us)?;
            bump(tx, Counter::Parked)?;
            return Ok(Outcome::Parked);
        }
        match guard::judge(tx, event)? {
            Verdict::Stale { .. } if options.seq_guard => {
                bump(tx, Counter::DroppedBySeqGuard)?;
                return Ok(Outcome::DroppedStale);
            }
            Verdict::Gap { .. } => bump(tx, Counter::SeqGap)?,
            Verdict::Next | Verdict::Stale { .. } => {}
        }
        guard::advance(tx, event)?;
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
        bump(tx, Counter::Applied)?;
        Ok(Outcome::Applied)
    }
}

pub(crate) fn bump(tx: &rusqlite::Transaction<'_>, counter: Counter) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO counters (name, value) VALUES (?1, 1)
         ON CONFLICT (name) DO UPDATE SET value = value + 1",
    )
    .ctx("preparing counter")?
    .execute(params![counter.name()])
    .ctx("bumping a counter")?;
    Ok(())
}
