//! Growing an outbox fast, for benchmarks only: millions of rows written straight into the
//! table(s) in large transactions, instead of one order transaction (and one fsync) each.
//!
//! The rows look like the service's (same columns, same sizes: a 32-hex-digit `event_id`, an
//! order-shaped payload) so pages and indexes have realistic sizes. Published rows are born
//! published, so the partial indexes never hold them — exactly where the relay leaves them.

use rusqlite::{Connection, Transaction, params};

use crate::db::{self, Synchronous, write_tx};
use crate::error::{Context, Result};
use crate::outbox::segments;

/// Rows per bulk transaction: big enough to amortise the commit, small enough that the WAL
/// (which holds a whole transaction) stays around 50 MB.
pub const TX_ROWS: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventIds {
    /// Increasing hex ids: every index insert appends. For 10M-row builds, where random keys
    /// would turn each big transaction into a random-write storm over a 500 MB index.
    Ordered,
    /// Random 128-bit hex, like the service: for benchmarks whose cost depends on where an
    /// index entry lives (deleting a row deletes its `event_id` entry).
    Random,
}

/// A bulk writer to one `orders.db`; remembers how many rows it wrote, to keep keys unique.
pub struct Filler {
    conn: Connection,
    partitioned: bool,
    written: u64,
}

impl Filler {
    pub fn open(orders_db: &std::path::Path) -> Result<Filler> {
        let conn = db::open(orders_db, Synchronous::Normal)?;
        // OFF: this is scratch data for a benchmark, rebuilt from nothing if the machine dies;
        // skipping every fsync is what makes a 10M-row build take seconds, not minutes.
        conn.execute_batch("PRAGMA synchronous=OFF; PRAGMA cache_size=-262144;")
            .ctx("PRAGMA synchronous=OFF, cache_size=256MB for the bulk build")?;
        let partitioned = crate::outbox::Layout::of(&conn)? == crate::outbox::Layout::Partitioned;
        Ok(Filler {
            conn,
            partitioned,
            written: 0,
        })
    }

    /// Append `rows` rows: published at `published_at_us` (or unpublished, each its order's
    /// first event so all are claimable), created at `created_at_us`.
    pub fn fill(
        &mut self,
        rows: u64,
        created_at_us: i64,
        published_at_us: Option<i64>,
        ids: EventIds,
    ) -> Result<()> {
        let mut left = rows;
        while left > 0 {
            let chunk = left.min(TX_ROWS);
            let (partitioned, first) = (self.partitioned, self.written);
            write_tx(&mut self.conn, |tx| {
                let rows = (first..first + chunk)
                    .map(|n| BulkRow::new(n, created_at_us, published_at_us, ids));
                if partitioned {
                    fill_segments(tx, chunk, rows)
                } else {
                    fill_single(tx, rows)
                }
            })?;
            self.written += chunk;
            left -= chunk;
        }
        Ok(())
    }

    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

struct BulkRow {
    event_id: String,
    aggregate_id: String,
    payload: String,
    created_at_us: i64,
    published_at_us: Option<i64>,
}

impl BulkRow {
    fn new(n: u64, created_at_us: i64, published_at_us: Option<i64>, ids: EventIds) -> BulkRow {
        let event_id = match ids {
            EventIds::Ordered => format!("{:032x}", n),
            EventIds::Random => format!("{:032x}", fastrand::u128(..)),
        };
        BulkRow {
            event_id,
            // Zero-padded so the (aggregate_id, aggregate_seq) index appends too.
            aggregate_id: format!("b{n:011}"),
            payload: format!(
                r#"{{"request_id":"bench-o{n}","customer":"c{:04}","amount_cents":{},"order_id":{n}}}"#,
                n % 1000,
                100 + n % 90_000
            ),
            created_at_us,
            published_at_us,
        }
    }
}

const COLUMNS: &str =
    "event_id, aggregate_id, aggregate_seq, event_type, payload, created_at_us, published_at_us";

fn fill_single(tx: &Transaction<'_>, rows: impl Iterator<Item = BulkRow>) -> Result<()> {
    let mut stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO outbox ({COLUMNS}) VALUES (?1, ?2, 1, 'OrderPlaced', ?3, ?4, ?5)"
        ))
        .ctx("preparing bulk insert")?;
    for r in rows {
        stmt.execute(params![
            r.event_id,
            r.aggregate_id,
            r.payload,
            r.created_at_us,
            r.published_at_us
        ])
        .ctx("bulk insert")?;
    }
    Ok(())
}

/// Reserve `count` ids from the global sequence at once, then write each row to its segment.
fn fill_segments(
    tx: &Transaction<'_>,
    count: u64,
    rows: impl Iterator<Item = BulkRow>,
) -> Result<()> {
    let (first_id, segment_rows): (i64, i64) = tx
        .query_row(
            "UPDATE outbox_ids SET next_id = next_id + ?1 RETURNING next_id - ?1, segment_rows",
            params![count as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ctx("reserving ids")?;
    for (id, r) in (first_id..).zip(rows) {
        let seg = (id - 1) / segment_rows;
        segments::ensure_segment(tx, seg, r.created_at_us)?;
        let sql = format!(
            "INSERT INTO {} (id, {COLUMNS}) VALUES (?1, ?2, ?3, 1, 'OrderPlaced', ?4, ?5, ?6)",
            segments::table(seg)
        );
        tx.prepare_cached(&sql)
            .ctx("preparing segment bulk insert")?
            .execute(params![
                id,
                r.event_id,
                r.aggregate_id,
                r.payload,
                r.created_at_us,
                r.published_at_us
            ])
            .ctx("segment bulk insert")?;
    }
    Ok(())
}
