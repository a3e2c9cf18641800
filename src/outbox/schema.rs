//! The schema of `orders.db`: the business table and the outbox, side by side in one file so
//! that one SQLite transaction covers both.

use std::path::Path;

use crate::db::{self, Synchronous};
use crate::error::{Context, Result};

/// The orders table. The outbox beside it is [`outbox_table_sql`].
///
/// `orders.id` is a plain INTEGER PRIMARY KEY on purpose: SQLite hands a rolled-back id out
/// again, which is what gives the naive publish-first ghost its nastiest face. The outbox uses
/// AUTOINCREMENT so its ids are never reused: with SQLite's single writer, committed ids only
/// grow, and `id > cursor` can never skip a row that commits later.
pub const ORDERS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orders (
    id            INTEGER PRIMARY KEY,
    request_id    TEXT UNIQUE NOT NULL,
    customer      TEXT NOT NULL,
    amount_cents  INTEGER NOT NULL CHECK (amount_cents > 0),
    status        TEXT NOT NULL CHECK (status IN ('placed', 'paid', 'shipped')),
    last_seq      INTEGER NOT NULL,  -- aggregate_seq of the order's latest event
    created_at_us INTEGER NOT NULL
);
";

/// One outbox table and its two partial indexes: the single `outbox`, or one segment of the
/// partitioned layout (`outbox::segments`), which differ only in their name and `id` column.
///
/// - the claim reads only unpublished rows: `{table}_unpublished` holds exactly those, so the
///   claim's cost follows the backlog, not the table (published rows are never in it);
/// - per-aggregate ordering asks "is an earlier event of this order still unpublished?":
///   `{table}_unpublished_by_aggregate` answers from unpublished rows too.
pub fn outbox_table_sql(table: &str, id_column: &str, if_not_exists: bool) -> String {
    let ine = if if_not_exists { "IF NOT EXISTS " } else { "" };
    format!(
        "CREATE TABLE {ine}{table} (
    {id_column},
    event_id        TEXT UNIQUE NOT NULL,
    aggregate_id    TEXT NOT NULL,
    aggregate_seq   INTEGER NOT NULL,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at_us   INTEGER NOT NULL,
    published_at_us INTEGER,          -- NULL until durably appended AND marked
    lease_owner     TEXT,             -- fencing token of the claim holding it: relay/pid.nonce/pass
    lease_until_us  INTEGER,          -- the claim is void after this
    attempts        INTEGER NOT NULL DEFAULT 0,
    UNIQUE (aggregate_id, aggregate_seq)
);
CREATE INDEX {ine}{table}_unpublished ON {table} (id) WHERE published_at_us IS NULL;
CREATE INDEX {ine}{table}_unpublished_by_aggregate
    ON {table} (aggregate_id, aggregate_seq) WHERE published_at_us IS NULL;"
    )
}

pub fn create(path: &Path) -> Result<()> {
    // FULL: init runs once; nothing to gain from weaker durability.
    let conn = db::create(path, Synchronous::Full)?;
    if crate::outbox::Layout::of(&conn)? == crate::outbox::Layout::Partitioned {
        // An earlier init chose the partitioned layout: everything exists, and `outbox` is a
        // view now (which a CREATE INDEX … ON outbox would refuse).
        return Ok(());
    }
    let outbox = outbox_table_sql("outbox", "id INTEGER PRIMARY KEY AUTOINCREMENT", true);
    conn.execute_batch(&format!("{ORDERS_SCHEMA}\n{outbox}"))
        .ctx(format!("creating schema in {}", path.display()))
}
