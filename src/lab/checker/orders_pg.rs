//! The checker's [`OrdersStore`] over a PostgreSQL orders store: the same four reads, in one
//! read-only REPEATABLE READ snapshot, so orders and outbox rows are seen as of one moment.

use std::cell::RefCell;

use postgres::Client;

use crate::error::{Context, Result};
use crate::lab::checker::orders::{
    CommittedOrder, OrderVisitor, OrdersStore, OutboxRow, OutboxVisitor,
};
use crate::store::pg;

pub struct PgOrders {
    /// The trait reads through `&self`; the client needs `&mut` for each query.
    client: RefCell<Client>,
}

impl PgOrders {
    pub fn open(url: &str) -> Result<PgOrders> {
        let mut client = pg::connect(url, pg::DEFAULT_IDLE_IN_TX_MS)?;
        // One snapshot for every read, and no writes: the checker never changes what it checks.
        // The idle timeout does not apply between reads of one check: they follow each other.
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .ctx("BEGIN (checker snapshot)")?;
        Ok(PgOrders {
            client: RefCell::new(client),
        })
    }

    fn query(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>> {
        self.client
            .borrow_mut()
            .query(sql, params)
            .ctx(format!("checker read `{sql}`"))
    }
}

impl OrdersStore for PgOrders {
    fn order_count(&self) -> Result<u64> {
        let rows = self.query("SELECT count(*) FROM orders", &[])?;
        Ok(rows[0].get::<_, i64>(0) as u64)
    }

    fn each_order(&self, visit: &mut OrderVisitor<'_>) -> Result<()> {
        for row in self.query(
            "SELECT id, request_id, customer, amount_cents, last_seq FROM orders",
            &[],
        )? {
            visit(CommittedOrder {
                order_id: row.get(0),
                request_id: row.get(1),
                customer: row.get(2),
                amount_cents: row.get(3),
                last_seq: row.get(4),
            })?;
        }
        Ok(())
    }

    fn each_outbox_row(&self, unpublished_only: bool, visit: &mut OutboxVisitor<'_>) -> Result<()> {
        let sql = if unpublished_only {
            "SELECT event_id, aggregate_id, aggregate_seq, false FROM outbox WHERE published_at_us IS NULL"
        } else {
            "SELECT event_id, aggregate_id, aggregate_seq, published_at_us IS NOT NULL FROM outbox"
        };
        for row in self.query(sql, &[])? {
            visit(OutboxRow {
                event_id: row.get(0),
                aggregate_id: row.get(1),
                aggregate_seq: row.get(2),
                published: row.get(3),
            })?;
        }
        Ok(())
    }

    fn request_id_of(&self, order_id: i64) -> Result<Option<String>> {
        let rows = self.query("SELECT request_id FROM orders WHERE id = $1", &[&order_id])?;
        Ok(rows.first().map(|r| r.get(0)))
    }
}
