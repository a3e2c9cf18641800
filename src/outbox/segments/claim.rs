//! Claiming and marking in the partitioned layout: the same rules as `outbox::claim`, spread
//! over the segments that still hold unpublished rows.
//!
//! ```text
//!   live:    seg_0  seg_1  seg_2  seg_3          (oldest first)
//!   probe:     –      ✓      –      ✓            one partial-index probe each: any unpublished?
//!   active:         seg_1         seg_3
//!   claim:   UPDATE seg_1 … LIMIT n RETURNING    then seg_3 for what is left of the batch
//! ```
//!
//! The per-aggregate rule ("only an order's oldest unpublished event is claimable") needs to
//! look for an earlier unpublished event in other segments too. It only ever has to look in
//! the *active* segments at or before the row's own: an earlier event of the same order was
//! committed earlier, so it has a smaller id, so it lives in the same or an older segment.
//! Everything runs in the caller's one `BEGIN IMMEDIATE` transaction, so the probe, the claims
//! and the rule all see the same snapshot, and rows leased by an earlier segment's UPDATE in
//! this very claim still count as unpublished for the next one.

use std::collections::BTreeMap;

use rusqlite::{Connection, Transaction, params};

use crate::error::{Context, Result};
use crate::outbox::claim::{Claim, ClaimedRow, claimed_row};
use crate::outbox::segments::{live_segments, segment_rows_of, table};

/// The times one claim runs by, all on the claimer's clock (see `outbox::claim`).
#[derive(Debug, Clone, Copy)]
pub struct ClaimTimes {
    pub lease_until_us: i64,
    pub now_us: i64,
    /// A lease ending after this is further ahead than any sane clock could grant: expired.
    pub skew_horizon_us: i64,
}

/// Claim up to `batch` rows across the active segments, oldest first.
pub fn claim_rows(
    tx: &Transaction<'_>,
    token: &str,
    at: &ClaimTimes,
    batch: usize,
) -> Result<Vec<ClaimedRow>> {
    let active = active_segments(tx)?;
    let mut rows = Vec::with_capacity(batch);
    for (i, seg) in active.iter().enumerate() {
        let remaining = batch - rows.len();
        if remaining == 0 {
            break;
        }
        let sql = claim_sql(*seg, &active[..=i]);
        let claimed = tx
            .prepare_cached(&sql)
            .ctx("preparing segment claim")?
            .query_map(
                params![
                    token,
                    at.lease_until_us,
                    at.now_us,
                    remaining as i64,
                    at.skew_horizon_us
                ],
                claimed_row,
            )
            .ctx(format!("claiming from {}", table(*seg)))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .ctx("reading claimed rows")?;
        rows.extend(claimed);
    }
    Ok(rows)
}

/// The claim of one segment: `outbox::claim::CLAIM_SQL` with the table named, and the
/// ordering rule checked against every active segment up to this one.
pub fn claim_sql(seg: i64, active_up_to_seg: &[i64]) -> String {
    assert_eq!(
        active_up_to_seg.last(),
        Some(&seg),
        "the rule must cover the segment itself"
    );
    let t = table(seg);
    let earlier: Vec<String> = active_up_to_seg
        .iter()
        .map(|s| {
            let e = table(*s);
            format!(
                "AND NOT EXISTS (SELECT 1 FROM {e} AS earlier INDEXED BY {e}_unpublished_by_aggregate
                  WHERE earlier.aggregate_id = o.aggregate_id
                    AND earlier.aggregate_seq < o.aggregate_seq
                    AND earlier.published_at_us IS NULL)"
            )
        })
        .collect();
    format!(
        "UPDATE {t} SET lease_owner = ?1, lease_until_us = ?2, attempts = attempts + 1
          WHERE id IN (
                SELECT o.id FROM {t} AS o INDEXED BY {t}_unpublished
                 WHERE o.published_at_us IS NULL
                   AND (o.lease_until_us IS NULL OR o.lease_until_us <= ?3
                        OR o.lease_until_us > ?5)
                   AND (o.aggregate_seq = 1 OR (1 {}))
                 ORDER BY o.id
                 LIMIT ?4)
        RETURNING id, event_id, aggregate_id, aggregate_seq, event_type, payload, created_at_us, attempts",
        earlier.join("\n                   ")
    )
}

/// Live segments holding at least one unpublished row, oldest first: one statement, one
/// partial-index probe per live segment (an empty partial index answers from its root page).
pub fn active_segments(conn: &Connection) -> Result<Vec<i64>> {
    let live = live_segments(conn)?;
    let arms: Vec<String> = live
        .iter()
        .map(|seg| {
            let t = table(*seg);
            format!(
                "SELECT {seg} AS seg WHERE EXISTS (SELECT 1 FROM {t} INDEXED BY {t}_unpublished WHERE published_at_us IS NULL)"
            )
        })
        .collect();
    let sql = format!("{} ORDER BY seg", arms.join(" UNION ALL "));
    conn.prepare_cached(&sql)
        .ctx("preparing active-segment probe")?
        .query_map([], |r| r.get(0))
        .ctx("probing segments")?
        .collect::<rusqlite::Result<Vec<i64>>>()
        .ctx("reading active segments")
}

/// Mark the claim's rows published where it still holds them. A row whose segment is gone
/// was published by someone else and cleaned since: it is fenced, like any lost lease.
pub fn mark_rows(tx: &Transaction<'_>, claim: &Claim, now_us: i64) -> Result<usize> {
    let segment_rows = segment_rows_of(tx)?;
    let live = live_segments(tx)?;
    let mut by_seg: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for row in &claim.rows {
        by_seg
            .entry((row.id - 1) / segment_rows)
            .or_default()
            .push(row.id);
    }
    let mut marked = 0;
    for (seg, ids) in by_seg.iter().filter(|(seg, _)| live.contains(seg)) {
        let sql = format!(
            "UPDATE {} SET published_at_us = ?1
              WHERE id = ?2 AND lease_owner = ?3 AND lease_until_us > ?1
                AND published_at_us IS NULL",
            table(*seg)
        );
        let mut stmt = tx.prepare_cached(&sql).ctx("preparing segment mark")?;
        for id in ids {
            marked += stmt
                .execute(params![now_us, id, claim.token])
                .ctx("marking published")?;
        }
    }
    Ok(marked)
}

/// Clear this claim's token from `ids` (see `outbox::claim::release_unshipped`).
pub fn release_rows(tx: &Transaction<'_>, token: &str, ids: &[i64]) -> Result<usize> {
    let segment_rows = segment_rows_of(tx)?;
    let live = live_segments(tx)?;
    let mut released = 0;
    for id in ids {
        let seg = (id - 1) / segment_rows;
        if !live.contains(&seg) {
            continue; // published and cleaned by someone else meanwhile
        }
        let sql = format!(
            "UPDATE {} SET lease_owner = NULL WHERE id = ?1 AND lease_owner = ?2",
            table(seg)
        );
        released += tx
            .prepare_cached(&sql)
            .ctx("preparing segment release")?
            .execute(params![id, token])
            .ctx("releasing unshipped rows")?;
    }
    Ok(released)
}

/// Unpublished rows (leased or not) over all live segments.
pub fn unpublished_count(conn: &Connection) -> Result<u64> {
    let terms: Vec<String> = live_segments(conn)?
        .iter()
        .map(|seg| {
            let t = table(*seg);
            format!("(SELECT count(*) FROM {t} INDEXED BY {t}_unpublished WHERE published_at_us IS NULL)")
        })
        .collect();
    conn.prepare_cached(&format!("SELECT {}", terms.join(" + ")))
        .ctx("preparing unpublished count")?
        .query_row([], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .ctx("counting unpublished rows")
}
