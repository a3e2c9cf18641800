//! The checker's read-only view of a PostgreSQL store.

use postgres::Client;

use crate::error::{Context, Result};
use crate::store::{CommittedReader, OrderRow, OutboxRow, pg};

pub struct PgReader {
    client: Client,
}

impl PgReader {
    pub fn open(url: &str) -> Result<PgReader> {
        let mut client = pg::connect(url, pg::DEFAULT_IDLE_IN_TX_MS)?;
        // One snapshot for both reads, and no writes: the checker never changes what it checks.
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .ctx("BEGIN (checker)")?;
        Ok(PgReader { client })
    }
}

impl CommittedReader for PgReader {
    fn orders(&mut self) -> Result<Vec<OrderRow>> {
        let rows = self
            .client
            .query(
                "SELECT id, request_id, customer, amount_cents, last_seq FROM orders ORDER BY id",
                &[],
            )
            .ctx("reading orders")?;
        Ok(rows
            .iter()
            .map(|r| OrderRow {
                id: r.get(0),
                request_id: r.get(1),
                customer: r.get(2),
                amount_cents: r.get(3),
                last_seq: r.get(4),
            })
            .collect())
    }

    fn outbox(&mut self) -> Result<Vec<OutboxRow>> {
        let rows = self
            .client
            .query(
                "SELECT event_id, aggregate_id, aggregate_seq, published_at_us IS NOT NULL
                   FROM outbox ORDER BY id",
                &[],
            )
            .ctx("reading outbox")?;
        Ok(rows
            .iter()
            .map(|r| OutboxRow {
                event_id: r.get(0),
                aggregate_id: r.get(1),
                aggregate_seq: r.get(2),
                published: r.get(3),
            })
            .collect())
    }
}
