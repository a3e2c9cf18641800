//! Writing an outbox row: only ever inside the caller's transaction.

use rusqlite::{Transaction, params};

use crate::error::{Context, Result};
use crate::event::new_event_id;
use crate::outbox::Layout;
use crate::outbox::segments::{self, NewRow};

/// Insert one event row in `tx` (the same transaction as the business change); returns
/// `(outbox_id, event_id)`.
pub fn insert_event(
    tx: &Transaction<'_>,
    layout: Layout,
    aggregate_id: &str,
    aggregate_seq: i64,
    event_type: &str,
    payload: &serde_json::Value,
    created_at_us: i64,
) -> Result<(i64, String)> {
    assert!(
        aggregate_seq >= 1,
        "aggregate_seq starts at 1, got {aggregate_seq}"
    );
    let event_id = new_event_id();
    if layout == Layout::Partitioned {
        let payload = payload.to_string();
        let row = NewRow {
            event_id: &event_id,
            aggregate_id,
            aggregate_seq,
            event_type,
            payload: &payload,
            created_at_us,
        };
        return Ok((segments::insert(tx, &row)?, event_id));
    }
    let outbox_id: i64 = tx
        .prepare_cached(
            "INSERT INTO outbox (event_id, aggregate_id, aggregate_seq, event_type, payload, created_at_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
        )
        .ctx("preparing outbox insert")?
        .query_row(
            params![event_id, aggregate_id, aggregate_seq, event_type, payload.to_string(), created_at_us],
            |row| row.get(0),
        )
        .ctx(format!("inserting outbox row for aggregate {aggregate_id} seq {aggregate_seq}"))?;
    Ok((outbox_id, event_id))
}
