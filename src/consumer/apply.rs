//! Applying events: each one's inbox row + effect in ONE transaction with its batch, so "seen"
//! and "done" can never disagree.
//!
//! ```text
//!   BEGIN IMMEDIATE
//!   for each event of the batch, in log order:
//!     INSERT INTO inbox (event_id) … ON CONFLICT DO NOTHING
//!     ├─ 0 rows: seen before ─▶ count a skipped duplicate, apply nothing
//!     └─ 1 row:  new ─────────▶ seq guard (see [`super::guard`]): stale copy? drop it
//!                               else INSERT effects …; UPDATE points …; advance the guard
//!   counters += what the batch did (one UPDATE per counter, not per event)
//!   COMMIT                                   one fsync (synchronous=FULL) for the whole batch
//! ```
//!
//! If the process dies before COMMIT, no inbox row and no effect of the batch exists and the
//! redelivered batch is applied; after COMMIT, all exist and every copy is skipped.
//!
//! Why batches: with `synchronous=FULL` every COMMIT waits for an fsync of the WAL, and SQLite
//! has one writer, so per-event transactions cap the consumer at one fsync per event however
//! many partition workers it runs. A batch pays that fsync once, and the statements cost far
//! less than an fsync per event (`outbox-lab bench consume`: events/s by records per
//! transaction).

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

/// One event in its own transaction: a batch of one.
pub fn apply_with(
    conn: &mut Connection,
    event: &Event,
    at: Position,
    now_us: i64,
    options: &ApplyOptions,
) -> Result<Outcome> {
    let outcomes = apply_batch(conn, &[(event, at)], now_us, options)?;
    Ok(outcomes[0])
}

/// Apply `batch` in ONE transaction, in order: each event's inbox row and effect, or nothing
/// for any of them (the whole batch rolls back on an error, or dies with the process before
/// COMMIT). A copy seen earlier *in the same batch* is a duplicate like any other: its inbox
/// row is already there, inside this transaction. Returns one outcome per event, in order.
pub fn apply_batch(
    conn: &mut Connection,
    batch: &[(&Event, Position)],
    now_us: i64,
    options: &ApplyOptions,
) -> Result<Vec<Outcome>> {
    assert!(
        !batch.is_empty(),
        "an empty batch is not a transaction worth taking"
    );
    write_tx(conn, |tx| {
        let mut tally = Tally::default();
        let mut outcomes = Vec::with_capacity(batch.len());
        for (event, at) in batch {
            outcomes.push(apply_counted(tx, event, *at, now_us, options, &mut tally)?);
        }
        tally.record(tx)?;
        Ok(outcomes)
    })
}

/// The counters a batch moves, written once per batch rather than once per event.
#[derive(Debug, Default)]
struct Tally {
    applied: u64,
    skipped_duplicate: u64,
    dropped_by_seq_guard: u64,
    parked: u64,
    seq_gap: u64,
    too_old_for_inbox: u64,
}

impl Tally {
    fn record(&self, tx: &rusqlite::Transaction<'_>) -> Result<()> {
        let counts = [
            (Counter::Applied, self.applied),
            (Counter::SkippedDuplicate, self.skipped_duplicate),
            (Counter::DroppedBySeqGuard, self.dropped_by_seq_guard),
            (Counter::Parked, self.parked),
            (Counter::SeqGap, self.seq_gap),
            (Counter::TooOldForInbox, self.too_old_for_inbox),
        ];
        for (counter, by) in counts {
            if by > 0 {
                bump_by(tx, counter, by)?;
            }
        }
        Ok(())
    }
}

/// [`apply_with`] inside the caller's transaction, its counters bumped at once (a release of
/// parked events applies several in one transaction).
pub(crate) fn apply_in(
    tx: &rusqlite::Transaction<'_>,
    event: &Event,
    at: Position,
    now_us: i64,
    options: &ApplyOptions,
) -> Result<Outcome> {
    let mut tally = Tally::default();
    let outcome = apply_counted(tx, event, at, now_us, options, &mut tally)?;
    tally.record(tx)?;
    Ok(outcome)
}

/// One event inside the batch's transaction; its counters go to `tally`.
fn apply_counted(
    tx: &rusqlite::Transaction<'_>,
    event: &Event,
    at: Position,
    now_us: i64,
    options: &ApplyOptions,
    tally: &mut Tally,
) -> Result<Outcome> {
    let too_old = options
        .retention
        .is_some_and(|r| r.too_old_for_inbox(event.created_at_us, now_us));
    tally.too_old_for_inbox += too_old as u64;
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
        tally.skipped_duplicate += 1;
        return Ok(Outcome::SkippedDuplicate);
    }
    if let Some(hold) = parking::judge(tx, event)? {
        // Not applied after all: out of the inbox again, into the parked table.
        tx.prepare_cached("DELETE FROM inbox WHERE event_id = ?1")
            .ctx("preparing inbox delete")?
            .execute(params![event.event_id])
            .ctx("taking a held event out of the inbox")?;
        parking::park(tx, event, at, &hold, now_us)?;
        tally.parked += 1;
        return Ok(Outcome::Parked);
    }
    match guard::judge(tx, event)? {
        Verdict::Stale { .. } if options.seq_guard => {
            tally.dropped_by_seq_guard += 1;
            return Ok(Outcome::DroppedStale);
        }
        Verdict::Gap { .. } => tally.seq_gap += 1,
        Verdict::Next | Verdict::Stale { .. } => {}
    }
    guard::advance(tx, event)?;
    record_effect(tx, event, at, now_us)?;
    tally.applied += 1;
    Ok(Outcome::Applied)
}

/// The effect: a ledger row, and the customer's points credited.
fn record_effect(
    tx: &rusqlite::Transaction<'_>,
    event: &Event,
    at: Position,
    now_us: i64,
) -> Result<()> {
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
    Ok(())
}

/// One more of `counter`, in the caller's transaction.
pub(crate) fn bump(tx: &rusqlite::Transaction<'_>, counter: Counter) -> Result<()> {
    bump_by(tx, counter, 1)
}

fn bump_by(tx: &rusqlite::Transaction<'_>, counter: Counter, by: u64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
    )
    .ctx("preparing counter")?
    .execute(params![counter.name(), by as i64])
    .ctx("bumping a counter")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::new_event_id;

    fn placed(aggregate_id: &str, customer: &str, amount_cents: i64) -> Event {
        Event {
            event_id: new_event_id(),
            event_type: ORDER_PLACED.into(),
            aggregate_id: aggregate_id.into(),
            aggregate_seq: 1,
            payload: serde_json::json!({ "customer": customer, "amount_cents": amount_cents }),
            created_at_us: 0,
            outbox_id: None,
            relay: "test".into(),
            attempt: 1,
        }
    }

    fn consumer_db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        crate::consumer::schema::ensure(&conn).unwrap();
        conn
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    fn at(offset_bytes: u64) -> Position {
        Position {
            partition: 0,
            offset_bytes,
        }
    }

    #[test]
    fn duplicate_inside_one_batch_is_skipped_by_the_inbox() {
        let mut conn = consumer_db();
        let (a, b) = (placed("1", "ada", 1_000), placed("2", "ken", 2_500));
        let mut relayed_twice = a.clone();
        relayed_twice.attempt = 2;
        let batch = [(&a, at(0)), (&b, at(10)), (&relayed_twice, at(20))];
        let outcomes = apply_batch(&mut conn, &batch, 1, &ApplyOptions::default()).unwrap();
        assert_eq!(
            outcomes,
            [
                Outcome::Applied,
                Outcome::Applied,
                Outcome::SkippedDuplicate
            ]
        );
        assert_eq!(count(&conn, "SELECT count(*) FROM effects"), 2);
        assert_eq!(
            count(&conn, "SELECT balance FROM points WHERE customer = 'ada'"),
            10,
            "ada credited once"
        );
        let counter = |name: &str| {
            count(
                &conn,
                &format!("SELECT value FROM counters WHERE name = '{name}'"),
            )
        };
        assert_eq!(counter("applied"), 2);
        assert_eq!(counter("skipped_duplicate"), 1);
    }

    #[test]
    fn redelivered_batch_is_skipped_whole() {
        let mut conn = consumer_db();
        let events: Vec<Event> = (0..5).map(|i| placed(&i.to_string(), "ada", 100)).collect();
        let batch: Vec<(&Event, Position)> = events.iter().map(|e| (e, at(0))).collect();
        let first = apply_batch(&mut conn, &batch, 1, &ApplyOptions::default()).unwrap();
        assert!(first.iter().all(|o| *o == Outcome::Applied));
        let again = apply_batch(&mut conn, &batch, 2, &ApplyOptions::default()).unwrap();
        assert!(again.iter().all(|o| *o == Outcome::SkippedDuplicate));
        assert_eq!(count(&conn, "SELECT count(*) FROM effects"), 5);
    }
}
