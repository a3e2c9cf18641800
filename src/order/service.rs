//! Placing an order: idempotent on `request_id`, order and event in one transaction.

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;

use crate::broker::Broker;
use crate::db::{self, Synchronous};
use crate::error::{Context, Error, Result};
use crate::order::OrderRequest;

/// How the service publishes `OrderPlaced`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Order row + outbox row in one transaction; a relay publishes later. Correct.
    Outbox,
    /// Commit the order, then append the event to the log: a crash in between loses it.
    Naive,
    /// Append the event, then commit the order: a crash in between publishes a ghost.
    NaivePublishFirst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlaceStatus {
    Placed,
    /// The request_id was seen before: this is a client retry, not a new order.
    Duplicate,
}

#[derive(Debug, Clone, Serialize)]
pub struct Placed {
    pub request_id: String,
    pub order_id: i64,
    pub status: PlaceStatus,
}

pub struct OrderService {
    pub(crate) conn: Connection,
    pub(crate) mode: Mode,
    /// Only the naive modes append to the log themselves.
    pub(crate) broker: Option<Broker>,
    pub(crate) partitions: u32,
    /// The outbox's layout, read once at open (see [`crate::outbox::layout`]).
    pub(crate) layout: crate::outbox::Layout,
}

impl OrderService {
    pub fn open(dir: &crate::datadir::DataDir, mode: Mode) -> Result<OrderService> {
        // FULL: the client is told "placed" only once the order (and its outbox row) would
        // survive a power cut, not just a process crash.
        let conn = db::open(&dir.orders_db(), Synchronous::Full)?;
        let broker = match mode {
            Mode::Outbox => None,
            Mode::Naive | Mode::NaivePublishFirst => {
                Some(Broker::open(&dir.broker_dir(), dir.partitions)?)
            }
        };
        let layout = crate::outbox::Layout::of(&conn)?;
        Ok(OrderService {
            layout,
            conn,
            mode,
            broker,
            partitions: dir.partitions,
        })
    }

    /// Place one validated order. A repeated `request_id` returns the existing order.
    pub fn place(&mut self, request: &OrderRequest) -> Result<Placed> {
        request.validate().map_err(Error::Input)?;
        match self.mode {
            Mode::Outbox => self.place_with_outbox(request),
            Mode::Naive => self.place_naive_commit_first(request),
            Mode::NaivePublishFirst => self.place_naive_publish_first(request),
        }
    }

    /// A group of one (see [`crate::order::group`]): the same transaction, savepoint and all.
    fn place_with_outbox(&mut self, request: &OrderRequest) -> Result<Placed> {
        let mut replies = self.place_group(std::slice::from_ref(request))?;
        assert_eq!(replies.len(), 1, "a group of one has one reply");
        replies.pop().expect("one reply").map_err(Error::Input)
    }
}

/// `BEGIN IMMEDIATE`: take the write lock now (see db.rs for why never deferred).
pub(crate) fn begin(conn: &mut Connection) -> Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("BEGIN IMMEDIATE on orders.db")
}

/// The order already placed under this request_id, if any. The same id with different
/// content is a client bug, not a retry: refuse it rather than guess.
pub(crate) fn find_existing(
    tx: &Transaction<'_>,
    request: &OrderRequest,
) -> Result<Option<Placed>> {
    let row: Option<(i64, String, i64)> = tx
        .prepare_cached("SELECT id, customer, amount_cents FROM orders WHERE request_id = ?1")
        .ctx("preparing request_id lookup")?
        .query_row(params![request.request_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()
        .ctx("looking up request_id")?;
    let Some((order_id, customer, amount_cents)) = row else {
        return Ok(None);
    };
    if customer != request.customer || amount_cents != request.amount_cents {
        return Err(Error::Input(format!(
            "request_id {:?} was already used for a different order (order {order_id}: {customer}, {amount_cents} cents)",
            request.request_id
        )));
    }
    Ok(Some(Placed {
        request_id: request.request_id.clone(),
        order_id,
        status: PlaceStatus::Duplicate,
    }))
}

pub(crate) fn insert_order(
    tx: &Transaction<'_>,
    request: &OrderRequest,
    now_us: i64,
) -> Result<i64> {
    tx.prepare_cached(
        "INSERT INTO orders (request_id, customer, amount_cents, status, last_seq, created_at_us)
         VALUES (?1, ?2, ?3, 'placed', 1, ?4) RETURNING id",
    )
    .ctx("preparing order insert")?
    .query_row(
        params![
            request.request_id,
            request.customer,
            request.amount_cents,
            now_us
        ],
        |r| r.get(0),
    )
    .ctx(format!("inserting order {:?}", request.request_id))
}

/// `OrderPlaced`'s payload: the order as placed.
pub(crate) fn order_placed_payload(order_id: i64, request: &OrderRequest) -> serde_json::Value {
    let mut payload = request.payload();
    payload["order_id"] = order_id.into();
    payload
}
