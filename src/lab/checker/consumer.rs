//! What the checker reads from the consumer's side: its committed offsets, its counters, the
//! points balances, and the effect ledger — the ledger streamed in apply order.

use std::collections::HashMap;

use rusqlite::{Connection, OpenFlags};

use crate::broker;
use crate::consumer::schema::Counter;
use crate::datadir::DataDir;
use crate::error::{Context, Error, Result};
use crate::event::Event;
use crate::lab::checker::keys::hash64;

/// Events the consumer holds back (see `consumer::parking`): few, so held whole.
#[derive(Default)]
pub struct Held {
    /// Released with `--skip`: never applied, on purpose.
    pub skipped: Vec<Event>,
    /// Parked or waiting: not applied yet, waiting for an operator.
    pub parked: Vec<String>,
}

/// One effect row, borrowed for the length of a callback.
pub struct EffectRow<'a> {
    pub event_id: &'a str,
    pub aggregate_id: &'a str,
    pub aggregate_seq: i64,
}

pub struct ConsumerStore {
    conn: Connection,
    /// The group's committed offset per partition.
    pub offsets: Vec<u64>,
}

impl ConsumerStore {
    pub fn open(dir: &DataDir, group: &str) -> Result<ConsumerStore> {
        let path = dir.consumer_db();
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ctx(format!("opening {} read-only", path.display()))?;
        let offsets = (0..dir.partitions)
            .map(|p| broker::read_offset(&dir.broker_dir(), group, p))
            .collect::<Result<Vec<u64>>>()?;
        Ok(ConsumerStore { conn, offsets })
    }

    pub fn counter(&self, counter: Counter) -> Result<u64> {
        let value: Option<i64> = self
            .conn
            .query_row(
                "SELECT value FROM counters WHERE name = ?1",
                [counter.name()],
                |r| r.get(0),
            )
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .ctx(format!("reading the {} counter", counter.name()))?;
        Ok(value.unwrap_or(0).max(0) as u64)
    }

    /// Points balances by customer hash (one row per customer: few, next to events).
    pub fn points_by_customer(&self) -> Result<HashMap<u64, i64>> {
        let mut stmt = self
            .conn
            .prepare("SELECT customer, balance FROM points")
            .ctx("preparing the points scan")?;
        let mut rows = stmt.query([]).ctx("scanning points")?;
        let mut out = HashMap::new();
        while let Some(row) = rows.next().ctx("reading a balance")? {
            let customer = text(row, 0, "points.customer")?;
            let balance: i64 = row.get(1).ctx("points.balance")?;
            *out.entry(hash64(customer)).or_default() += balance;
        }
        Ok(out)
    }

    /// The parked table (absent in a consumer.db older than it: then nothing is held).
    pub fn held(&self) -> Result<Held> {
        let mut held = Held::default();
        let exists: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'parked')",
                [],
                |r| r.get(0),
            )
            .ctx("looking for the parked table")?;
        if !exists {
            return Ok(held);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT state, event_json, event_id FROM parked")
            .ctx("preparing the parked scan")?;
        let mut rows = stmt.query([]).ctx("scanning parked")?;
        while let Some(row) = rows.next().ctx("reading a parked event")? {
            if text(row, 0, "parked.state")? != "skipped" {
                held.parked
                    .push(text(row, 2, "parked.event_id")?.to_string());
                continue;
            }
            let json = text(row, 1, "parked.event_json")?;
            let event = serde_json::from_str(json)
                .map_err(|e| Error::Input(format!("parked.event_json is not an event: {e}")))?;
            held.skipped.push(event);
        }
        Ok(held)
    }

    /// Every effect row, in apply order (`effects.id`).
    pub fn each_effect(&self, mut visit: impl FnMut(EffectRow<'_>) -> Result<()>) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare("SELECT event_id, aggregate_id, aggregate_seq FROM effects ORDER BY id")
            .ctx("preparing the effects scan")?;
        let mut rows = stmt.query([]).ctx("scanning effects")?;
        while let Some(row) = rows.next().ctx("reading an effect")? {
            visit(EffectRow {
                event_id: text(row, 0, "effects.event_id")?,
                aggregate_id: text(row, 1, "effects.aggregate_id")?,
                aggregate_seq: row.get(2).ctx("effects.aggregate_seq")?,
            })?;
        }
        Ok(())
    }
}

fn text<'r>(row: &'r rusqlite::Row<'_>, index: usize, column: &str) -> Result<&'r str> {
    let value = row.get_ref(index).ctx(column.to_string())?;
    value
        .as_str()
        .map_err(|e| Error::Input(format!("{column} is not text: {e}")))
}
