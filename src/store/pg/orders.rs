//! The order service on PostgreSQL: order row + outbox row in one transaction, idempotent on
//! `request_id`; lifecycle events under the order's row lock; and the two naive dual writes,
//! which lose and ghost events here exactly as they do on SQLite.
//!
//! Differences from SQLite worth knowing:
//! - many writers at once: a retried `request_id` racing its first attempt is settled by the
//!   unique index (`ON CONFLICT DO NOTHING` waits for the other transaction, then the lookup
//!   sees its row), not by a single write lock;
//! - `orders.id` comes from a sequence and is never handed out twice, so a naive ghost names an
//!   order id that never committed rather than someone else's order;
//! - an order's events are serialised by `SELECT … FOR UPDATE` on its row, which is what keeps
//!   `(aggregate_id, aggregate_seq)` unique (the partitioned outbox cannot enforce it).

use postgres::Client;
use postgres::error::SqlState;

use crate::broker::Broker;
use crate::crashpoint::{self, Point};
use crate::datadir::DataDir;
use crate::error::{Context, Error, Result};
use crate::event::{ORDER_PAID, ORDER_PLACED, ORDER_SHIPPED, new_event_id};
use crate::order::lifecycle::Transition;
use crate::order::service::order_placed_payload;
use crate::order::{Mode, OrderRequest, PlaceStatus, Placed};
use crate::store::OrderStore;
use crate::store::pg::{self, schema};
use crate::trace::Ev;

pub struct PgOrders {
    client: Client,
    mode: Mode,
    /// Only the naive modes append to the log themselves.
    broker: Option<Broker>,
    partitions: u32,
    /// `init --cdc delete`: each transaction deletes the outbox row it inserted (the CDC relay
    /// reads the INSERT from the WAL; the table stays empty).
    delete_outbox_rows: bool,
}

/// What one attempt at a transaction ended in.
enum Attempt<T> {
    Done(T),
    /// The outbox row's partition did not exist yet: create it, then try again.
    NeedsPartition,
}

impl PgOrders {
    pub fn open(dir: &DataDir, url: &str, mode: Mode) -> Result<PgOrders> {
        // synchronous_commit=on (set by connect): "placed" only once the order survives power loss.
        let mut client = pg::connect(url, pg::DEFAULT_IDLE_IN_TX_MS)?;
        let delete_outbox_rows = pg::cdc::read_settings(&mut client)?
            .is_some_and(|s| s.outbox_rows == pg::cdc::OutboxRows::Delete);
        let broker = match mode {
            Mode::Outbox => None,
            Mode::Naive | Mode::NaivePublishFirst => {
                Some(Broker::open(&dir.broker_dir(), dir.partitions)?)
            }
        };
        Ok(PgOrders {
            client,
            mode,
            broker,
            partitions: dir.partitions,
            delete_outbox_rows,
        })
    }

    /// Run `attempt` until it is not missing a partition (at most twice: creating the
    /// partitions ahead of the sequence always covers the id the retry takes).
    fn with_partitions<T>(
        &mut self,
        mut attempt: impl FnMut(&mut PgOrders) -> Result<Attempt<T>>,
    ) -> Result<T> {
        for _ in 0..2 {
            match attempt(self)? {
                Attempt::Done(out) => return Ok(out),
                Attempt::NeedsPartition => {
                    let mut tx = self.client.transaction().ctx("BEGIN (partitions)")?;
                    schema::ensure_partitions(&mut tx)?;
                    tx.commit().ctx("COMMIT (partitions)")?;
                }
            }
        }
        Err(Error::Input(
            "the outbox partition for a new row was still missing after creating it".into(),
        ))
    }

    fn place_with_outbox(&mut self, request: &OrderRequest) -> Result<Attempt<Placed>> {
        let now_us = crate::clock::now_us();
        let mut tx = self.client.transaction().ctx("BEGIN (place)")?;
        let Some(order_id) = insert_order(&mut tx, request, now_us)? else {
            return find_existing(&mut tx, request).map(Attempt::Done);
        };
        let payload = order_placed_payload(order_id, request).to_string();
        let event = NewEvent {
            aggregate_id: order_id.to_string(),
            aggregate_seq: 1,
            event_type: ORDER_PLACED,
            payload,
            created_at_us: now_us,
        };
        let Some((outbox_id, event_id)) = insert_event(&mut tx, &event)? else {
            return Ok(Attempt::NeedsPartition);
        };
        if self.delete_outbox_rows {
            pg::cdc::delete_inserted(&mut tx, outbox_id)?;
        }
        crashpoint::point(Point::OrderBeforeCommit);
        tx.commit().ctx("committing order + outbox row")?;
        crashpoint::point(Point::OrderAfterCommit);
        crate::trace::emit(Ev::Placed, || {
            serde_json::json!({ "event_id": event_id, "order_id": order_id, "outbox_id": outbox_id,
                                "request_id": request.request_id, "mode": "outbox" })
        });
        Ok(Attempt::Done(placed(request, order_id)))
    }

    fn place_naive(&mut self, request: &OrderRequest, publish_first: bool) -> Result<Placed> {
        let now_us = crate::clock::now_us();
        let broker = self.broker.as_mut().expect("naive modes open the broker");
        let mut tx = self.client.transaction().ctx("BEGIN (naive place)")?;
        let Some(order_id) = insert_order(&mut tx, request, now_us)? else {
            return find_existing(&mut tx, request);
        };
        if publish_first {
            let event =
                crate::order::naive::publish(broker, self.partitions, order_id, request, now_us)?;
            crashpoint::point(Point::NaiveAfterPublish);
            tx.commit().ctx("committing order")?;
            crate::trace::emit(Ev::Committed, || {
                serde_json::json!({ "order_id": order_id, "request_id": request.request_id,
                                    "event_id": event.event_id, "mode": "naive-publish-first" })
            });
        } else {
            tx.commit().ctx("committing order")?;
            crate::trace::emit(
                Ev::Committed,
                || serde_json::json!({ "order_id": order_id, "request_id": request.request_id, "mode": "naive" }),
            );
            crashpoint::point(Point::NaiveAfterCommit);
            crate::order::naive::publish(broker, self.partitions, order_id, request, now_us)?;
        }
        Ok(placed(request, order_id))
    }

    fn transition_once(&mut self, order_id: i64, step: Transition) -> Result<Attempt<i64>> {
        let (from, to, event_type) = match step {
            Transition::Pay => ("placed", "paid", ORDER_PAID),
            Transition::Ship => ("paid", "shipped", ORDER_SHIPPED),
        };
        let now_us = crate::clock::now_us();
        let mut tx = self.client.transaction().ctx("BEGIN (transition)")?;
        // FOR UPDATE: this order's events are written one transaction at a time, so seqs are
        // gap-free and never repeat.
        let row = tx
            .query_opt(
                "SELECT status, last_seq, amount_cents FROM orders WHERE id = $1 FOR UPDATE",
                &[&order_id],
            )
            .ctx("reading order")?;
        let Some(row) = row else {
            return Err(Error::Input(format!("order {order_id} does not exist")));
        };
        let (status, last_seq, amount_cents): (String, i64, i64) =
            (row.get(0), row.get(1), row.get(2));
        if status != from {
            return Err(Error::Input(format!(
                "order {order_id} is {status}; only a {from} order can become {to}"
            )));
        }
        let seq = last_seq + 1;
        tx.execute(
            "UPDATE orders SET status = $1, last_seq = $2 WHERE id = $3",
            &[&to, &seq, &order_id],
        )
        .ctx("updating order status")?;
        let payload =
            serde_json::json!({ "order_id": order_id, "status": to, "amount_cents": amount_cents });
        let event = NewEvent {
            aggregate_id: order_id.to_string(),
            aggregate_seq: seq,
            event_type,
            payload: payload.to_string(),
            created_at_us: now_us,
        };
        let Some((outbox_id, event_id)) = insert_event(&mut tx, &event)? else {
            return Ok(Attempt::NeedsPartition);
        };
        if self.delete_outbox_rows {
            pg::cdc::delete_inserted(&mut tx, outbox_id)?;
        }
        tx.commit()
            .ctx(format!("committing {event_type} for order {order_id}"))?;
        crate::trace::emit(Ev::Placed, || {
            serde_json::json!({ "event_id": event_id, "order_id": order_id, "outbox_id": outbox_id,
                                "event_type": event_type, "aggregate_seq": seq })
        });
        Ok(Attempt::Done(seq))
    }
}

impl OrderStore for PgOrders {
    /// One transaction per order: group commit is not implemented for PostgreSQL (the server
    /// already shares one WAL flush among concurrent sessions' commits).
    fn place_group(
        &mut self,
        requests: &[OrderRequest],
    ) -> Result<Vec<crate::order::group::GroupReply>> {
        let mut replies = Vec::with_capacity(requests.len());
        for request in requests {
            match self.place(request) {
                Ok(placed) => replies.push(Ok(placed)),
                Err(Error::Input(reason)) => replies.push(Err(reason)),
                Err(other) => return Err(other),
            }
        }
        Ok(replies)
    }

    fn place(&mut self, request: &OrderRequest) -> Result<Placed> {
        request.validate().map_err(Error::Input)?;
        match self.mode {
            Mode::Outbox => self.with_partitions(|s| s.place_with_outbox(request)),
            Mode::Naive => self.place_naive(request, false),
            Mode::NaivePublishFirst => self.place_naive(request, true),
        }
    }

    fn transition(&mut self, order_id: i64, step: Transition) -> Result<i64> {
        assert_eq!(
            self.mode,
            Mode::Outbox,
            "lifecycle events exist only in outbox mode"
        );
        self.with_partitions(|s| s.transition_once(order_id, step))
    }
}

fn placed(request: &OrderRequest, order_id: i64) -> Placed {
    Placed {
        request_id: request.request_id.clone(),
        order_id,
        status: PlaceStatus::Placed,
    }
}

/// Insert the order; None when its `request_id` is already taken (a retry, or a clash).
fn insert_order(
    tx: &mut postgres::Transaction<'_>,
    request: &OrderRequest,
    now_us: i64,
) -> Result<Option<i64>> {
    let row = tx
        .query_opt(
            "INSERT INTO orders (request_id, customer, amount_cents, status, last_seq, created_at_us)
             VALUES ($1, $2, $3, 'placed', 1, $4)
             ON CONFLICT (request_id) DO NOTHING RETURNING id",
            &[&request.request_id, &request.customer, &request.amount_cents, &now_us],
        )
        .ctx(format!("inserting order {:?}", request.request_id))?;
    Ok(row.map(|r| r.get(0)))
}

/// The order already placed under this request_id. The same id with different content is a
/// client bug, not a retry: refuse it rather than guess.
fn find_existing(tx: &mut postgres::Transaction<'_>, request: &OrderRequest) -> Result<Placed> {
    let row = tx
        .query_one(
            "SELECT id, customer, amount_cents FROM orders WHERE request_id = $1",
            &[&request.request_id],
        )
        .ctx("looking up request_id")?;
    let (order_id, customer, amount_cents): (i64, String, i64) =
        (row.get(0), row.get(1), row.get(2));
    if customer != request.customer || amount_cents != request.amount_cents {
        return Err(Error::Input(format!(
            "request_id {:?} was already used for a different order (order {order_id}: {customer}, {amount_cents} cents)",
            request.request_id
        )));
    }
    Ok(Placed {
        request_id: request.request_id.clone(),
        order_id,
        status: PlaceStatus::Duplicate,
    })
}

struct NewEvent {
    aggregate_id: String,
    aggregate_seq: i64,
    event_type: &'static str,
    payload: String,
    created_at_us: i64,
}

/// Insert an outbox row; returns (outbox id, event id), or None if its partition is missing
/// (the transaction is then aborted: the caller rolls back and retries).
fn insert_event(
    tx: &mut postgres::Transaction<'_>,
    event: &NewEvent,
) -> Result<Option<(i64, String)>> {
    assert!(event.aggregate_seq >= 1, "aggregate_seq starts at 1");
    let event_id = new_event_id();
    let result = tx.query_one(
        "INSERT INTO outbox (event_id, aggregate_id, aggregate_seq, event_type, payload, created_at_us)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        &[
            &event_id,
            &event.aggregate_id,
            &event.aggregate_seq,
            &event.event_type,
            &event.payload,
            &event.created_at_us,
        ],
    );
    match result {
        Ok(row) => Ok(Some((row.get(0), event_id))),
        Err(e) if e.code() == Some(&SqlState::CHECK_VIOLATION) && is_no_partition(&e) => Ok(None),
        Err(e) => Err(e).ctx(format!(
            "inserting outbox row for aggregate {} seq {}",
            event.aggregate_id, event.aggregate_seq
        )),
    }
}

/// "no partition of relation "outbox" found for row" (SQLSTATE 23514, like a CHECK failure).
fn is_no_partition(e: &postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| db.message().starts_with("no partition of relation"))
}
