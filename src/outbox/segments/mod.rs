//! The partitioned outbox: one table per `segment_rows` events, old segments dropped whole.
//!
//! SQLite has no `PARTITION BY`, so the partitions are plain tables and a catalog says which
//! exist. Ids come from ONE global sequence, so the pipeline still sees one logical outbox
//! whose ids only grow, and an id alone says where its row lives:
//!
//! ```text
//!   outbox_ids      { next_id, segment_rows }      the global sequence (AUTOINCREMENT-like)
//!   outbox_segments { seg, created_at_us }         the catalog of live segments
//!
//!   id:   1 ……… 10_000 │ 10_001 ……… 20_000 │ 20_001 … (next_id)
//!         outbox_seg_0  │ outbox_seg_1       │ outbox_seg_2   ◀── writers append here
//!         all published │ all published      │ unpublished rows, partial indexes
//!         ▲ DROP TABLE  │                    │
//!   VIEW outbox = seg_0 UNION ALL seg_1 UNION ALL seg_2   (what checkers and humans read)
//! ```
//!
//! Why per N events and not per day: the segment of a row is `(id - 1) / segment_rows`, a pure
//! function of its id, so writers, claims and marks find a row's table without reading the
//! clock or the catalog, tests are deterministic, and a segment's size (hence the time its
//! `DROP TABLE` holds the write lock) is bounded whatever the traffic. A day-sized segment at
//! peak load could be ten million rows — a multi-second drop. The retention window still
//! decides *when* a segment goes: only once every row in it was published before the cutoff.
//!
//! Why not one table with an `INSTEAD OF` view: a view cannot take `UPDATE … RETURNING`, and
//! a trigger cannot pick its target table from the id. So writers, the claim and the mark
//! address the segment tables themselves (this module); the view exists for readers.
//!
//! What partitioning costs, as in Postgres: UNIQUE constraints hold per segment only. The
//! global guarantees come from elsewhere — `event_id` is 128 random bits, and
//! `(aggregate_id, aggregate_seq)` is assigned from `orders.last_seq` under the write lock.
//!
//! Invariants: `next_id` only grows (a rolled-back transaction gives its id back, exactly as
//! AUTOINCREMENT does, but a committed id is never handed out again, even after its segment is
//! dropped); the newest segment is never dropped; a segment with an unpublished row is never
//! dropped; at most [`MAX_SEGMENTS`] segments are live.

mod claim;

pub use claim::{
    ClaimTimes, active_segments, claim_rows, claim_sql, mark_rows, release_rows, unpublished_count,
};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::db::write_tx;
use crate::error::{Context, Error, Result};

/// A segment drop frees every page of the segment while holding the write lock, so its size
/// bounds how long a writer can wait on cleanup: 10k rows is ~3 MB, a few ms to drop.
pub const DEFAULT_SEGMENT_ROWS: i64 = 10_000;
/// The view is one compound SELECT; SQLite caps those at 500 terms. Past this many live
/// segments writers get an error naming the fix (run cleanup) rather than a broken view.
pub const MAX_SEGMENTS: usize = 400;

/// Every column of a segment, in the order the view and the claim read them.
pub const COLUMNS: &str = "id, event_id, aggregate_id, aggregate_seq, event_type, payload, \
                           created_at_us, published_at_us, lease_owner, lease_until_us, attempts";

pub fn table(seg: i64) -> String {
    assert!(seg >= 0, "segment numbers start at 0, got {seg}");
    format!("outbox_seg_{seg}")
}

/// Switch a fresh `orders.db` to the partitioned layout (idempotent for the same
/// `segment_rows`). Refuses an outbox that already holds rows: moving them is a migration,
/// not an `init`.
pub fn create_layout(conn: &mut Connection, segment_rows: i64) -> Result<()> {
    if segment_rows < 1 {
        return Err(Error::Input(format!(
            "--segment-rows must be at least 1, got {segment_rows}"
        )));
    }
    write_tx(conn, |tx| {
        if crate::outbox::Layout::of(tx)? == crate::outbox::Layout::Partitioned {
            let existing = segment_rows_of(tx)?;
            if existing != segment_rows {
                return Err(Error::Input(format!(
                    "the outbox is partitioned with {existing} rows per segment; refusing to change it to {segment_rows}"
                )));
            }
            return Ok(());
        }
        let rows: i64 = tx
            .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
            .ctx("counting outbox rows")?;
        if rows > 0 {
            return Err(Error::Input(format!(
                "the outbox already holds {rows} rows; the partitioned layout is chosen at init, on an empty outbox"
            )));
        }
        // Never reuse an id the single table ever handed out (its rows may have been cleaned).
        let first_id: i64 = tx
            .query_row(
                "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0) + 1",
                [],
                |r| r.get(0),
            )
            .ctx("reading the outbox's AUTOINCREMENT high-water mark")?;
        tx.execute_batch(
            "DROP TABLE outbox;
             CREATE TABLE outbox_segments (
                 seg           INTEGER PRIMARY KEY,  -- ids seg*segment_rows+1 ..= (seg+1)*segment_rows
                 created_at_us INTEGER NOT NULL
             );
             CREATE TABLE outbox_ids (
                 one           INTEGER PRIMARY KEY CHECK (one = 1),
                 next_id       INTEGER NOT NULL,     -- the global sequence: only ever grows
                 segment_rows  INTEGER NOT NULL CHECK (segment_rows > 0)
             );",
        )
        .ctx("creating the segment catalog")?;
        tx.execute(
            "INSERT INTO outbox_ids (one, next_id, segment_rows) VALUES (1, ?1, ?2)",
            params![first_id, segment_rows],
        )
        .ctx("seeding the id sequence")?;
        let first_seg = (first_id - 1) / segment_rows;
        ensure_segment(tx, first_seg, crate::clock::now_us())
    })
}

pub fn segment_rows_of(conn: &Connection) -> Result<i64> {
    conn.prepare_cached("SELECT segment_rows FROM outbox_ids")
        .ctx("preparing segment_rows lookup")?
        .query_row([], |r| r.get(0))
        .ctx("reading segment_rows")
}

/// Live segments, oldest first.
pub fn live_segments(conn: &Connection) -> Result<Vec<i64>> {
    let segs = conn
        .prepare_cached("SELECT seg FROM outbox_segments ORDER BY seg LIMIT ?1")
        .ctx("preparing segment list")?
        .query_map(params![MAX_SEGMENTS as i64 + 1], |r| r.get(0))
        .ctx("listing segments")?
        .collect::<rusqlite::Result<Vec<i64>>>()
        .ctx("reading segments")?;
    assert!(
        segs.len() <= MAX_SEGMENTS,
        "{} live segments, more than MAX_SEGMENTS {MAX_SEGMENTS}",
        segs.len()
    );
    Ok(segs)
}

/// Insert one event row into its segment, in the caller's transaction; returns its id.
pub fn insert(tx: &Transaction<'_>, row: &NewRow<'_>) -> Result<i64> {
    let (id, segment_rows): (i64, i64) = tx
        .prepare_cached(
            "UPDATE outbox_ids SET next_id = next_id + 1 RETURNING next_id - 1, segment_rows",
        )
        .ctx("preparing id allocation")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .ctx("allocating an outbox id")?;
    let seg = (id - 1) / segment_rows;
    ensure_segment(tx, seg, row.created_at_us)?;
    let sql = format!(
        "INSERT INTO {} (id, event_id, aggregate_id, aggregate_seq, event_type, payload, created_at_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        table(seg)
    );
    tx.prepare_cached(&sql)
        .ctx("preparing segment insert")?
        .execute(params![
            id,
            row.event_id,
            row.aggregate_id,
            row.aggregate_seq,
            row.event_type,
            row.payload,
            row.created_at_us
        ])
        .ctx(format!(
            "inserting outbox row {id} for aggregate {} seq {}",
            row.aggregate_id, row.aggregate_seq
        ))?;
    Ok(id)
}

/// The columns a writer supplies; the rest start NULL (unpublished, unleased).
pub struct NewRow<'a> {
    pub event_id: &'a str,
    pub aggregate_id: &'a str,
    pub aggregate_seq: i64,
    pub event_type: &'a str,
    pub payload: &'a str,
    pub created_at_us: i64,
}

/// Create segment `seg` if this is its first row. Runs inside a writer's transaction once
/// per `segment_rows` events: that one order pays for a CREATE TABLE and a view rebuild.
pub(crate) fn ensure_segment(tx: &Transaction<'_>, seg: i64, now_us: i64) -> Result<()> {
    let exists: Option<i64> = tx
        .prepare_cached("SELECT seg FROM outbox_segments WHERE seg = ?1")
        .ctx("preparing segment lookup")?
        .query_row(params![seg], |r| r.get(0))
        .optional()
        .ctx("looking up a segment")?;
    if exists.is_some() {
        return Ok(());
    }
    let live = live_segments(tx)?;
    if live.len() >= MAX_SEGMENTS {
        return Err(Error::Input(format!(
            "the outbox has {} live segments (the limit is {MAX_SEGMENTS}); run `outbox-lab cleanup`",
            live.len()
        )));
    }
    assert!(
        live.last().is_none_or(|newest| *newest < seg),
        "segment {seg} would be older than live segment {live:?}: ids went backwards"
    );
    let t = table(seg);
    let segment_rows = segment_rows_of(tx)?;
    let (lo, hi) = (seg * segment_rows + 1, (seg + 1) * segment_rows);
    let id_column = format!("id INTEGER PRIMARY KEY CHECK (id BETWEEN {lo} AND {hi})");
    // Not IF NOT EXISTS: the catalog said it does not exist; if it does, that is an error.
    tx.execute_batch(&crate::outbox::schema::outbox_table_sql(
        &t, &id_column, false,
    ))
    .ctx(format!("creating segment {t}"))?;
    tx.execute(
        "INSERT INTO outbox_segments (seg, created_at_us) VALUES (?1, ?2)",
        params![seg, now_us],
    )
    .ctx("cataloguing a segment")?;
    rebuild_view(tx)
}

/// Drop segment `seg` whole, in the caller's transaction: the table, its indexes, its
/// catalog row, and its arm of the view.
pub fn drop_segment(tx: &Transaction<'_>, seg: i64) -> Result<()> {
    let live = live_segments(tx)?;
    assert!(
        live.contains(&seg),
        "dropping segment {seg}, not live: {live:?}"
    );
    assert!(
        live.last() != Some(&seg),
        "segment {seg} is the newest: writers may still append to it"
    );
    tx.execute_batch(&format!("DROP TABLE {}", table(seg)))
        .ctx(format!("dropping {}", table(seg)))?;
    tx.execute("DELETE FROM outbox_segments WHERE seg = ?1", params![seg])
        .ctx("uncataloguing a segment")?;
    rebuild_view(tx)
}

/// `outbox` as one logical table for readers: the UNION ALL of the live segments, id order.
fn rebuild_view(tx: &Transaction<'_>) -> Result<()> {
    let live = live_segments(tx)?;
    assert!(!live.is_empty(), "the newest segment is never dropped");
    let arms: Vec<String> = live
        .iter()
        .map(|seg| format!("SELECT {COLUMNS} FROM {}", table(*seg)))
        .collect();
    tx.execute_batch(&format!(
        "DROP VIEW IF EXISTS outbox; CREATE VIEW outbox AS {};",
        arms.join(" UNION ALL ")
    ))
    .ctx("rebuilding the outbox view")
}
