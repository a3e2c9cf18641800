//! What the checker reads from the orders store, behind a small typed interface.
//!
//! The checker's ground truth is what cleanup never removes: committed orders, each with its
//! `last_seq` and `request_id`. Outbox rows are consulted only for what they alone know (is an
//! event still unpublished? which event id did the outbox give an order's seq?), never for
//! what to expect: cleanup deletes them, and a CDC outbox may never keep them. Another store
//! (PostgreSQL, say) plugs in by implementing [`OrdersStore`].

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};

use crate::error::{Context, Error, Result};

/// One committed order, borrowed from the store's row buffer for the length of a callback.
pub struct CommittedOrder<'a> {
    pub order_id: i64,
    pub request_id: &'a str,
    pub customer: &'a str,
    pub amount_cents: i64,
    /// The seq of the order's latest event: its events are seqs 1..=last_seq.
    pub last_seq: i64,
}

/// One outbox row, as far as the checker needs it.
pub struct OutboxRow<'a> {
    pub event_id: &'a str,
    pub aggregate_id: &'a str,
    pub aggregate_seq: i64,
    pub published: bool,
}

pub type OrderVisitor<'v> = dyn FnMut(CommittedOrder<'_>) -> Result<()> + 'v;
pub type OutboxVisitor<'v> = dyn FnMut(OutboxRow<'_>) -> Result<()> + 'v;

/// The orders store, read-only, streamed: nothing here holds all rows at once.
pub trait OrdersStore {
    /// How many committed orders there are (to size the checker's table once).
    fn order_count(&self) -> Result<u64>;
    /// Every committed order, in any order.
    fn each_order(&self, visit: &mut OrderVisitor<'_>) -> Result<()>;
    /// Outbox rows still present (both layouts): all of them, or only the unpublished.
    fn each_outbox_row(&self, unpublished_only: bool, visit: &mut OutboxVisitor<'_>) -> Result<()>;
    /// One order's request id, for naming it in a report.
    fn request_id_of(&self, order_id: i64) -> Result<Option<String>>;
}

/// `orders.db`, opened read-only. The `outbox` name is a table in the single layout and a
/// view over the live segments in the partitioned one: both read the same.
pub struct SqliteOrders {
    conn: Connection,
}

impl SqliteOrders {
    pub fn open(path: &Path) -> Result<SqliteOrders> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ctx(format!("opening {} read-only", path.display()))?;
        Ok(SqliteOrders { conn })
    }
}

impl OrdersStore for SqliteOrders {
    fn order_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
            .ctx("counting orders")?;
        Ok(n as u64)
    }

    fn each_order(&self, visit: &mut OrderVisitor<'_>) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, request_id, customer, amount_cents, last_seq FROM orders")
            .ctx("preparing the orders scan")?;
        let mut rows = stmt.query([]).ctx("scanning orders")?;
        while let Some(row) = rows.next().ctx("reading an order")? {
            visit(CommittedOrder {
                order_id: row.get(0).ctx("orders.id")?,
                request_id: text(row, 1, "orders.request_id")?,
                customer: text(row, 2, "orders.customer")?,
                amount_cents: row.get(3).ctx("orders.amount_cents")?,
                last_seq: row.get(4).ctx("orders.last_seq")?,
            })?;
        }
        Ok(())
    }

    fn each_outbox_row(&self, unpublished_only: bool, visit: &mut OutboxVisitor<'_>) -> Result<()> {
        let sql = if unpublished_only {
            "SELECT event_id, aggregate_id, aggregate_seq, 0 FROM outbox WHERE published_at_us IS NULL"
        } else {
            "SELECT event_id, aggregate_id, aggregate_seq, published_at_us IS NOT NULL FROM outbox"
        };
        let mut stmt = self.conn.prepare(sql).ctx("preparing the outbox scan")?;
        let mut rows = stmt.query([]).ctx("scanning the outbox")?;
        while let Some(row) = rows.next().ctx("reading an outbox row")? {
            visit(OutboxRow {
                event_id: text(row, 0, "outbox.event_id")?,
                aggregate_id: text(row, 1, "outbox.aggregate_id")?,
                aggregate_seq: row.get(2).ctx("outbox.aggregate_seq")?,
                published: row.get(3).ctx("outbox.published_at_us")?,
            })?;
        }
        Ok(())
    }

    fn request_id_of(&self, order_id: i64) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT request_id FROM orders WHERE id = ?1",
                params![order_id],
                |r| r.get(0),
            )
            .optional()
            .ctx("looking up an order's request id")
    }
}

/// A TEXT column, borrowed from the row.
fn text<'r>(row: &'r Row<'_>, index: usize, column: &str) -> Result<&'r str> {
    let value = row.get_ref(index).ctx(column.to_string())?;
    value
        .as_str()
        .map_err(|e| Error::Input(format!("{column} is not text: {e}")))
}
