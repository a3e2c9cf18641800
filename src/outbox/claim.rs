//! Claiming a batch of unpublished rows, and marking them published — fenced by the lease.
//!
//! The claim is ONE statement, `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING …`, run in
//! its own `BEGIN IMMEDIATE` transaction. SQLite has a single writer, so two claims can never
//! interleave: the second one sees the first one's leases and skips those rows. That is what
//! Postgres' `SELECT … FOR UPDATE SKIP LOCKED` buys with row locks; here the lease columns are
//! the lock, and they outlive the transaction, so a relay can append and sync without holding
//! the database's write lock.
//!
//! A row is claimable when it is unpublished, its lease is absent or expired, and no earlier
//! event of the same aggregate is still unpublished (so per order, the first copy of every
//! event reaches the log in seq order, whatever the number of relays — see WRITEUP.md and docs/relays.md).
//!
//! A lease is read on the claimer's clock. Every relay trusts the others' clocks to within
//! [`MAX_CLOCK_SKEW_MS`]: a lease that ends further ahead than `lease_ms` plus that bound, on
//! the claiming relay's own clock, cannot have been granted by a relay with a sane clock, so it
//! counts as expired. Without that bound a relay whose clock ran an hour fast and then died
//! would strand its rows for an hour. Reclaiming such a row early is safe (fencing below); a
//! clock running *slow* only shortens leases, which costs a duplicate, never a loss. Relays of
//! one pipeline are expected to share `--lease-ms`: one with a shorter lease sees longer ones
//! as skewed and takes their rows early (again a duplicate at worst).
//!
//! Marking is fenced: `published_at_us` is set only where `lease_owner` is still this claim's
//! token and the lease has not expired. A relay that was paused past its lease (a zombie)
//! can still append late copies — the consumer absorbs them — but can never mark a row that
//! someone else now owns.

use rusqlite::{Connection, Row, params};

use crate::clock::Clock;
use crate::db::write_tx;
use crate::error::{Context, Result};
use crate::outbox::Layout;
use crate::outbox::segments;

/// Upper bound on a batch: one claim and one append must stay small and quick.
pub const MAX_BATCH: usize = 10_000;

/// How far apart the relays' clocks may be. A lease ending more than `lease_ms` plus this
/// ahead of the claimer's clock is treated as expired. Processes on one machine share a clock;
/// across machines NTP keeps skew far below this, and a relay beyond it is misconfigured.
pub const MAX_CLOCK_SKEW_MS: u64 = 30_000;

#[derive(Debug, Clone)]
pub struct ClaimedRow {
    pub id: i64,
    pub event_id: String,
    pub aggregate_id: String,
    pub aggregate_seq: i64,
    pub event_type: String,
    pub payload: String,
    pub created_at_us: i64,
    /// 1 on the first claim; more means an earlier claimant died or lost its lease.
    pub attempts: i64,
}

#[derive(Debug)]
pub struct Claim {
    /// The fencing token written into `lease_owner`: unique per claim.
    pub token: String,
    pub lease_until_us: i64,
    /// Sorted by id (RETURNING promises no order).
    pub rows: Vec<ClaimedRow>,
    /// The layout the rows were claimed from: the mark goes to the same tables.
    pub layout: Layout,
}

/// The claim in the single-table layout (`outbox::segments` builds the per-segment ones).
pub const CLAIM_SQL: &str = "
UPDATE outbox
   SET lease_owner = ?1, lease_until_us = ?2, attempts = attempts + 1
 WHERE id IN (
       SELECT o.id FROM outbox AS o INDEXED BY outbox_unpublished
        WHERE o.published_at_us IS NULL
          AND (o.lease_until_us IS NULL OR o.lease_until_us <= ?3
               OR o.lease_until_us > ?5)  -- further ahead than any sane clock could lease
          AND (o.aggregate_seq = 1       -- an order's first event has nothing before it
               OR NOT EXISTS (
                  SELECT 1 FROM outbox AS earlier INDEXED BY outbox_unpublished_by_aggregate
                   WHERE earlier.aggregate_id = o.aggregate_id
                     AND earlier.aggregate_seq < o.aggregate_seq
                     AND earlier.published_at_us IS NULL))
        ORDER BY o.id
        LIMIT ?4)
RETURNING id, event_id, aggregate_id, aggregate_seq, event_type, payload, created_at_us, attempts";

/// Claim up to `batch` rows for `lease_ms`, under the fencing `token`.
///
/// The lease is timed from *inside* the transaction, once the write lock is ours: a claim
/// that waited 300 ms for the lock behind busy writers must not hand itself a lease that is
/// already 300 ms old (it would be fenced out of its own rows — seen in the lab before this).
/// So the caller passes a [`Clock`] to read then, not a time read before.
pub fn claim_batch(
    conn: &mut Connection,
    layout: Layout,
    token: &str,
    clock: Clock,
    lease_ms: u64,
    batch: usize,
) -> Result<Claim> {
    assert!(
        (1..=MAX_BATCH).contains(&batch),
        "batch {batch} outside 1..={MAX_BATCH}"
    );
    let mut lease_until_us = 0;
    let mut rows = write_tx(conn, |tx| {
        let now_us = clock.now_us();
        lease_until_us = now_us + (lease_ms as i64) * 1000;
        let skew_horizon_us = lease_until_us + (MAX_CLOCK_SKEW_MS as i64) * 1000;
        let at = segments::ClaimTimes {
            lease_until_us,
            now_us,
            skew_horizon_us,
        };
        if layout == Layout::Partitioned {
            return segments::claim_rows(tx, token, &at, batch);
        }
        let mut stmt = tx.prepare_cached(CLAIM_SQL).ctx("preparing claim")?;
        let rows = stmt
            .query_map(
                params![token, lease_until_us, now_us, batch as i64, skew_horizon_us],
                claimed_row,
            )
            .ctx("claiming a batch")?
            .collect::<rusqlite::Result<Vec<_>>>()
            .ctx("reading claimed rows")?;
        Ok(rows)
    })?;
    rows.sort_by_key(|r| r.id);
    assert!(
        rows.len() <= batch,
        "claimed {} rows for a batch of {batch}",
        rows.len()
    );
    Ok(Claim {
        token: token.to_string(),
        lease_until_us,
        rows,
        layout,
    })
}

/// Mark `ids` published where the claim still holds them; returns how many were marked.
/// Fewer than `ids.len()` means the lease expired and someone else may own those rows.
/// "Still holds" is judged at the moment we hold the write lock, when no claim can intervene.
pub fn mark_published(conn: &mut Connection, claim: &Claim, clock: Clock) -> Result<usize> {
    write_tx(conn, |tx| {
        let now_us = clock.now_us();
        if claim.layout == Layout::Partitioned {
            return segments::mark_rows(tx, claim, now_us);
        }
        // One statement for the batch: the token is unique to this claim, so the id range
        // (a primary-key range scan) plus the token picks exactly our rows, and only those
        // whose lease is still ours at this moment.
        let (first_id, last_id) = match (claim.rows.first(), claim.rows.last()) {
            (Some(first), Some(last)) => (first.id, last.id),
            _ => return Ok(0),
        };
        let marked = tx
            .prepare_cached(
                "UPDATE outbox SET published_at_us = ?1
                  WHERE id BETWEEN ?2 AND ?3 AND lease_owner = ?4 AND lease_until_us > ?1
                    AND published_at_us IS NULL",
            )
            .ctx("preparing mark")?
            .execute(params![now_us, first_id, last_id, claim.token])
            .ctx("marking published")?;
        assert!(
            marked <= claim.rows.len(),
            "marked {marked} rows for a claim of {}: a fencing token was reused",
            claim.rows.len()
        );
        Ok(marked)
    })
}

/// Give up rows of `claim` that were not appended (their partition's append lock stayed
/// busy): the claim's token is cleared so its mark cannot touch them, and the lease time is
/// kept, so they are claimed again (by anyone) only when it runs out. Returns rows released.
pub fn release_unshipped(conn: &mut Connection, claim: &Claim, ids: &[i64]) -> Result<usize> {
    write_tx(conn, |tx| {
        if claim.layout == Layout::Partitioned {
            return segments::release_rows(tx, &claim.token, ids);
        }
        let mut stmt = tx
            .prepare_cached(
                "UPDATE outbox SET lease_owner = NULL WHERE id = ?1 AND lease_owner = ?2",
            )
            .ctx("preparing release")?;
        let mut released = 0;
        for id in ids {
            released += stmt
                .execute(params![id, claim.token])
                .ctx("releasing unshipped rows")?;
        }
        Ok(released)
    })
}

/// A claimed row from the columns `RETURNING id, event_id, aggregate_id, aggregate_seq,
/// event_type, payload, created_at_us, attempts` (both layouts return exactly these).
pub(crate) fn claimed_row(r: &Row<'_>) -> rusqlite::Result<ClaimedRow> {
    Ok(ClaimedRow {
        id: r.get(0)?,
        event_id: r.get(1)?,
        aggregate_id: r.get(2)?,
        aggregate_seq: r.get(3)?,
        event_type: r.get(4)?,
        payload: r.get(5)?,
        created_at_us: r.get(6)?,
        attempts: r.get(7)?,
    })
}

/// Rows not yet published (including those under someone's lease), in either layout.
pub fn unpublished_count(conn: &Connection, layout: Layout) -> Result<u64> {
    if layout == Layout::Partitioned {
        return segments::unpublished_count(conn);
    }
    conn.query_row(
        "SELECT count(*) FROM outbox INDEXED BY outbox_unpublished WHERE published_at_us IS NULL",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
    .ctx("counting unpublished rows")
}
