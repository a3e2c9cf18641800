//! Group commit: the orders already waiting share ONE transaction, so one fsync.
//!
//! ```text
//!   waiting: o1 o2 (bad) o3 o2'           (o2' = a client's retry of o2)
//!   BEGIN IMMEDIATE
//!     SAVEPOINT; o1: order + outbox row; RELEASE
//!     SAVEPOINT; o2: order + outbox row; RELEASE
//!     (bad)  rejected before any write: its own error, nothing written for it
//!     SAVEPOINT; o3: order + outbox row; RELEASE
//!     SAVEPOINT; o2': request_id found (inside this very transaction): duplicate; RELEASE
//!   COMMIT                                 one fsync (synchronous=FULL) for the group
//!   replies, in input order: placed, placed, error, placed, duplicate
//! ```
//!
//! Nobody is told "placed" before the COMMIT that makes it durable: a crash before it rolls
//! the whole group back (no order, no event, no reply: every client retries), a crash after
//! it leaves all of them committed with their events. A group never waits for company: it is
//! whatever had arrived when the previous commit finished, so a lone order commits alone, as
//! fast as before, and a busy pipe fills groups up to the caller's bound.
//!
//! Each order sits in its own SAVEPOINT so that an order refused half-way (a `request_id`
//! reused with different content) takes back only its own writes, never its neighbours'.
//! The naive modes never group: their per-order dual write is the thing they demonstrate.

use rusqlite::Transaction;

use crate::crashpoint::{self, Point};
use crate::error::{Context, Error, Result};
use crate::event::ORDER_PLACED;
use crate::order::OrderRequest;
use crate::order::service::{
    Mode, OrderService, PlaceStatus, Placed, begin, find_existing, insert_order,
    order_placed_payload,
};
use crate::outbox::{self, Layout};
use crate::trace::Ev;

/// The most orders one group commit holds: bounds the transaction (and the write lock's hold
/// on relays and cleanup) and the replies a crash can leave unanswered.
pub const MAX_GROUP: usize = 10_000;

/// One order's outcome in a group: placed or duplicate, or refused with a reason for the
/// client (`Error::Input`'s text). Errors that are not the input's fault fail the whole group.
pub type GroupReply = std::result::Result<Placed, String>;

/// What one order of the group wrote, for the trace after COMMIT.
struct Written {
    order_id: i64,
    outbox_id: i64,
    event_id: String,
}

impl OrderService {
    /// Place `requests` (at most [`MAX_GROUP`]) in one transaction (outbox mode) or one by one
    /// (naive modes). Returns one reply per request, in order, after the commit.
    pub fn place_group(&mut self, requests: &[OrderRequest]) -> Result<Vec<GroupReply>> {
        assert!(
            requests.len() <= MAX_GROUP,
            "a group of {} orders is above MAX_GROUP {MAX_GROUP}",
            requests.len()
        );
        if self.mode != Mode::Outbox {
            return requests
                .iter()
                .map(|r| input_error(self.place(r)))
                .collect();
        }
        let now_us = crate::clock::now_us();
        let tx = begin(&mut self.conn)?;
        let mut replies = Vec::with_capacity(requests.len());
        let mut written = Vec::new();
        for request in requests {
            let reply = input_error(place_in_savepoint(
                &tx,
                self.layout,
                request,
                now_us,
                &mut written,
            ))?;
            replies.push(reply);
        }
        for _ in &written {
            crashpoint::point(Point::OrderBeforeCommit);
        }
        tx.commit()
            .ctx("committing a group of orders + outbox rows")?;
        // Traced as one write right after COMMIT, before any crash point: a crash at
        // `order.after_commit` then leaves every committed order of the group in the trace.
        let group = requests.len();
        crate::trace::emit_many(
            Ev::Placed,
            written
                .iter()
                .zip(placed_requests(requests, &replies))
                .map(|(w, request)| {
                    serde_json::json!({ "event_id": w.event_id, "order_id": w.order_id,
                                        "outbox_id": w.outbox_id, "request_id": request.request_id,
                                        "mode": "outbox", "group": group })
                }),
        );
        for _ in &written {
            crashpoint::point(Point::OrderAfterCommit);
        }
        Ok(replies)
    }
}

/// The requests whose reply is a new order, in order (they line up with `written`).
fn placed_requests<'a>(
    requests: &'a [OrderRequest],
    replies: &'a [GroupReply],
) -> impl Iterator<Item = &'a OrderRequest> {
    requests
        .iter()
        .zip(replies)
        .filter(|(_, r)| matches!(r, Ok(p) if p.status == PlaceStatus::Placed))
        .map(|(request, _)| request)
}

/// An input error becomes that order's reply; anything else is the group's error.
fn input_error(result: Result<Placed>) -> Result<GroupReply> {
    match result {
        Ok(placed) => Ok(Ok(placed)),
        Err(Error::Input(problem)) => Ok(Err(problem)),
        Err(other) => Err(other),
    }
}

/// One order inside the group's transaction, in a savepoint of its own.
fn place_in_savepoint(
    tx: &Transaction<'_>,
    layout: Layout,
    request: &OrderRequest,
    now_us: i64,
    written: &mut Vec<Written>,
) -> Result<Placed> {
    request.validate().map_err(Error::Input)?;
    tx.execute_batch("SAVEPOINT order_in_group")
        .ctx("SAVEPOINT for an order")?;
    match place_one(tx, layout, request, now_us) {
        Ok((placed, w)) => {
            tx.execute_batch("RELEASE order_in_group")
                .ctx("RELEASE an order's savepoint")?;
            written.extend(w);
            Ok(placed)
        }
        Err(e) => {
            // Take back this order's writes only; the group goes on.
            tx.execute_batch("ROLLBACK TO order_in_group; RELEASE order_in_group")
                .ctx("rolling back an order's savepoint")?;
            Err(e)
        }
    }
}

fn place_one(
    tx: &Transaction<'_>,
    layout: Layout,
    request: &OrderRequest,
    now_us: i64,
) -> Result<(Placed, Option<Written>)> {
    if let Some(existing) = find_existing(tx, request)? {
        return Ok((existing, None));
    }
    let order_id = insert_order(tx, request, now_us)?;
    let payload = order_placed_payload(order_id, request);
    let (outbox_id, event_id) = outbox::insert_event(
        tx,
        layout,
        &order_id.to_string(),
        1,
        ORDER_PLACED,
        &payload,
        now_us,
    )?;
    let placed = Placed {
        request_id: request.request_id.clone(),
        order_id,
        status: PlaceStatus::Placed,
    };
    let written = Written {
        order_id,
        outbox_id,
        event_id,
    };
    Ok((placed, Some(written)))
}
