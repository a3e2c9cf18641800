//! The per-aggregate sequence guard: a second line of dedupe whose size does not grow with
//! the number of events, and which no retention sweep can take away.
//!
//! The inbox remembers every event id it has seen — until the sweep forgets it. A duplicate
//! that arrives after its inbox row was swept looks brand new and is applied again. The guard
//! closes that with one fact per aggregate: the last `aggregate_seq` applied.
//!
//! ```text
//!   order 7:  seq 1 ─▶ applied, last_seq=1      inbox: {e1}
//!             seq 2 ─▶ applied, last_seq=2      inbox: {e1, e2}
//!             … 25 hours, the sweep …           inbox: {}           guard: 7 → 2
//!             seq 1 again (a zombie's copy)     inbox: new?! ─▶ guard: 1 <= 2 ─▶ DROPPED
//! ```
//!
//! Why it is sound here, and only here: `aggregate_seq` is assigned in the same transaction as
//! the order's state (the outbox), all of an order's events share a partition, and a relay may
//! only claim an order's oldest unpublished event — so the FIRST copy of seq n always precedes
//! the first copy of seq n+1 in the log. Anything at or below `last_seq` is therefore a copy.
//! Where seqs are not assigned transactionally (the naive modes: a rolled-back order id is
//! handed out again with seq 1) the guard would drop a real event as a "copy": a loss. That is
//! why it is a switch (`--seq-guard on|off`) and off by default.
//!
//! The state is kept up to date whether or not the guard is enforced (one upsert per applied
//! event), in the same transaction as the effect: switching it on later is then safe at once.
//! Its size is one row per aggregate: tiny for long-lived aggregates (accounts), but for orders
//! it still grows with the number of orders — a real system would prune rows of aggregates that
//! reached a terminal state once the redelivery horizon has passed.

use rusqlite::{OptionalExtension, Transaction, params};

use crate::error::{Context, Result};
use crate::event::Event;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS aggregate_guard (
    aggregate_id TEXT PRIMARY KEY,
    last_seq     INTEGER NOT NULL      -- the highest aggregate_seq applied for it
) WITHOUT ROWID;
";

/// What the guard makes of an event the inbox let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `seq == last_seq + 1` (or the aggregate is new and seq is 1): the next fact.
    Next,
    /// `seq <= last_seq`: a copy of something already applied.
    Stale { last_seq: i64 },
    /// `seq > last_seq + 1`: a fact is missing before this one. Applied (dropping it would
    /// lose it) and counted, so the checker's "out of order" has a live twin.
    Gap { last_seq: i64 },
}

/// Read the aggregate's `last_seq` (0 if never seen) and judge `event`.
pub fn judge(tx: &Transaction<'_>, event: &Event) -> Result<Verdict> {
    assert!(
        event.aggregate_seq >= 1,
        "aggregate_seq starts at 1 (event {} has {})",
        event.event_id,
        event.aggregate_seq
    );
    let last_seq: i64 = tx
        .prepare_cached("SELECT last_seq FROM aggregate_guard WHERE aggregate_id = ?1")
        .ctx("preparing guard read")?
        .query_row(params![event.aggregate_id], |r| r.get(0))
        .optional()
        .ctx("reading the aggregate guard")?
        .unwrap_or(0);
    Ok(match event.aggregate_seq - last_seq {
        1 => Verdict::Next,
        d if d <= 0 => Verdict::Stale { last_seq },
        _ => Verdict::Gap { last_seq },
    })
}

/// Record that `event` was applied: `last_seq` only ever grows (a stale copy applied with the
/// guard off must not wind it back).
pub fn advance(tx: &Transaction<'_>, event: &Event) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO aggregate_guard (aggregate_id, last_seq) VALUES (?1, ?2)
         ON CONFLICT (aggregate_id) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
    )
    .ctx("preparing guard update")?
    .execute(params![event.aggregate_id, event.aggregate_seq])
    .ctx("advancing the aggregate guard")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(aggregate_id: &str, seq: i64) -> Event {
        Event {
            event_id: crate::event::new_event_id(),
            event_type: crate::event::ORDER_PLACED.into(),
            aggregate_id: aggregate_id.into(),
            aggregate_seq: seq,
            payload: serde_json::json!({}),
            created_at_us: 0,
            outbox_id: None,
            relay: "test".into(),
            attempt: 1,
        }
    }

    #[test]
    fn stale_copy_is_judged_stale_and_never_winds_the_guard_back() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let tx = conn.transaction().unwrap();
        assert_eq!(judge(&tx, &event("7", 1)).unwrap(), Verdict::Next);
        advance(&tx, &event("7", 1)).unwrap();
        advance(&tx, &event("7", 2)).unwrap();
        assert_eq!(
            judge(&tx, &event("7", 1)).unwrap(),
            Verdict::Stale { last_seq: 2 }
        );
        advance(&tx, &event("7", 1)).unwrap(); // applied anyway, guard off
        assert_eq!(judge(&tx, &event("7", 3)).unwrap(), Verdict::Next);
        assert_eq!(
            judge(&tx, &event("7", 5)).unwrap(),
            Verdict::Gap { last_seq: 2 }
        );
        assert_eq!(judge(&tx, &event("8", 1)).unwrap(), Verdict::Next);
    }
}
