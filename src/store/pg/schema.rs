//! The PostgreSQL schema: the same `orders` and `outbox` columns as SQLite's (times as integer
//! µs since the epoch, `published_at_us` NULL = unsent), with the outbox partitioned by id
//! range so that cleanup can drop a whole partition instead of deleting rows.
//!
//! What partitioning costs: PostgreSQL enforces a UNIQUE constraint on a partitioned table only
//! if it includes the partition key, so `event_id` (random 128 bits, never reused) and
//! `(aggregate_id, aggregate_seq)` (written under the order row's lock, which serialises an
//! order's events) are unique by construction here, not by constraint. The checker still
//! looks for duplicates in the log, so a breach would be seen, not assumed away.
//!
//! Outbox ids come from a sequence: a BIGSERIAL-like counter that is NOT a gap-free cursor.
//! Two writers take ids 7 and 8; 8 commits first; a reader that saw 8 and then asks for
//! `id > 8` never sees 7. Nothing here reads the outbox by cursor: claims ask for unpublished
//! rows, whatever their id.

use postgres::Client;

use crate::error::{Context, Error, Result};

/// Outbox ids per partition unless `init` says otherwise.
pub const DEFAULT_PARTITION_ROWS: i64 = 100_000;
/// How many partitions beyond the one the sequence is in are kept created, so a burst of
/// orders never finds its partition missing (and if it does, the writer creates it).
pub const PARTITIONS_AHEAD: i64 = 2;

/// The advisory lock serialising schema and partition changes (any fixed number will do).
pub const PARTITION_LOCK_KEY: i64 = 0x6f75_7462_6f78;

pub const SCHEMA_SQL: &str = "
CREATE TABLE IF NOT EXISTS orders (
    id            BIGSERIAL PRIMARY KEY,
    request_id    TEXT UNIQUE NOT NULL,
    customer      TEXT NOT NULL,
    amount_cents  BIGINT NOT NULL CHECK (amount_cents > 0),
    status        TEXT NOT NULL CHECK (status IN ('placed', 'paid', 'shipped')),
    last_seq      BIGINT NOT NULL,  -- aggregate_seq of the order's latest event
    created_at_us BIGINT NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS outbox_id_seq;
CREATE TABLE IF NOT EXISTS outbox (
    id              BIGINT NOT NULL DEFAULT nextval('outbox_id_seq'),
    event_id        TEXT NOT NULL,
    aggregate_id    TEXT NOT NULL,
    aggregate_seq   BIGINT NOT NULL,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at_us   BIGINT NOT NULL,
    published_at_us BIGINT,           -- NULL until durably appended AND marked
    lease_owner     TEXT,             -- lease mode only: the claim's fencing token
    lease_until_us  BIGINT,           -- lease mode only: the claim is void after this
    attempts        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);
-- Partial indexes, as on SQLite: the claim's cost follows the backlog, not the table.
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at_us IS NULL;
CREATE INDEX IF NOT EXISTS outbox_unpublished_by_aggregate
    ON outbox (aggregate_id, aggregate_seq) WHERE published_at_us IS NULL;
CREATE INDEX IF NOT EXISTS outbox_event_id ON outbox (event_id);
CREATE TABLE IF NOT EXISTS outbox_layout (
    only_row       BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    partition_rows BIGINT NOT NULL CHECK (partition_rows > 0)
);
";

/// Create the schema (idempotent) and the first partitions. `partition_rows` None keeps an
/// existing database's partition size (or takes the default); a different size is refused.
pub fn create(client: &mut Client, partition_rows: Option<i64>) -> Result<()> {
    if let Some(rows) = partition_rows.filter(|rows| *rows <= 0) {
        return Err(Error::Input(format!(
            "--segment-rows must be positive, got {rows}"
        )));
    }
    let mut tx = client.transaction().ctx("BEGIN (schema)")?;
    // One init at a time: two racing inits would both try to create the same partitions.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK_KEY])
        .ctx("locking the schema for init")?;
    tx.batch_execute(SCHEMA_SQL)
        .ctx("creating the PostgreSQL schema")?;
    tx.execute(
        "INSERT INTO outbox_layout (partition_rows) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&partition_rows.unwrap_or(DEFAULT_PARTITION_ROWS)],
    )
    .ctx("recording the partition size")?;
    let existing = partition_rows_of(&mut tx)?;
    if let Some(asked) = partition_rows.filter(|rows| *rows != existing) {
        return Err(Error::Input(format!(
            "this database's outbox has {existing} ids per partition; refusing to change it to {asked}"
        )));
    }
    ensure_partitions(&mut tx)?;
    tx.commit().ctx("COMMIT (schema)")
}

/// Remove every table this schema made, partitions and detached leftovers included: for the
/// lab's commands that start from an empty store (`crash-run`, `replicas`, examples).
pub fn wipe(client: &mut Client) -> Result<()> {
    // First the CDC slot: its position would hand the next run this run's changes.
    super::cdc::wipe(client)?;
    let leftovers = client
        .query(
            "SELECT tablename FROM pg_tables
              WHERE schemaname = current_schema() AND tablename ~ '^outbox_p[0-9]+$'",
            &[],
        )
        .ctx("listing outbox partitions")?;
    let mut sql = String::from("DROP TABLE IF EXISTS outbox, orders, outbox_layout CASCADE;");
    for row in &leftovers {
        let name: String = row.get(0);
        sql.push_str(&format!("DROP TABLE IF EXISTS {name};"));
    }
    sql.push_str("DROP SEQUENCE IF EXISTS outbox_id_seq;");
    client
        .batch_execute(&sql)
        .ctx("wiping the outbox-lab tables")
}

/// Ids per outbox partition, fixed at init.
pub fn partition_rows_of(client: &mut impl postgres::GenericClient) -> Result<i64> {
    client
        .query_one("SELECT partition_rows FROM outbox_layout", &[])
        .ctx("reading outbox_layout")
        .map(|row| row.get(0))
}

/// The name of the partition holding ids `[n * rows + 1, (n + 1) * rows + 1)`.
pub fn partition_name(n: i64) -> String {
    format!("outbox_p{n}")
}

/// Make sure the partition the sequence is in, and [`PARTITIONS_AHEAD`] after it, exist.
/// Run it in a transaction: an advisory lock keeps two writers from creating the same
/// partition at once (CREATE TABLE IF NOT EXISTS is not safe against a concurrent twin).
pub fn ensure_partitions(client: &mut postgres::Transaction<'_>) -> Result<()> {
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK_KEY])
        .ctx("locking partition creation")?;
    let rows = partition_rows_of(client)?;
    let next_id: i64 = client
        .query_one(
            "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM outbox_id_seq",
            &[],
        )
        .ctx("reading outbox_id_seq")?
        .get(0);
    let current = (next_id - 1).max(0) / rows;
    for n in current..=current + PARTITIONS_AHEAD {
        create_partition(client, n, rows)?;
    }
    Ok(())
}

/// Make sure every partition up to the one holding `last_id` exists (bulk loads).
pub fn ensure_partitions_through(tx: &mut postgres::Transaction<'_>, last_id: i64) -> Result<()> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK_KEY])
        .ctx("locking partition creation")?;
    let rows = partition_rows_of(tx)?;
    for n in 0..=(last_id.max(1) - 1) / rows + PARTITIONS_AHEAD {
        create_partition(tx, n, rows)?;
    }
    Ok(())
}

/// Create partition `n` if it does not exist. Bounds are checked, not wrapped.
pub fn create_partition(
    client: &mut impl postgres::GenericClient,
    n: i64,
    rows: i64,
) -> Result<()> {
    let bound = |k: i64| {
        k.checked_mul(rows)
            .and_then(|v| v.checked_add(1))
            .ok_or_else(|| Error::Input(format!("outbox partition {k} x {rows} ids overflows")))
    };
    let (from, to) = (bound(n)?, bound(n + 1)?);
    let name = partition_name(n);
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {name} PARTITION OF outbox FOR VALUES FROM ({from}) TO ({to})"
        ))
        .ctx(format!("creating outbox partition {name}"))
}
