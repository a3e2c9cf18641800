//! After `OrderPlaced`: paying and shipping, each a state change plus the next event of the
//! order (aggregate_seq 2, 3) in one transaction.
//!
//! ```text
//!   placed ──pay──▶ paid ──ship──▶ shipped        seq: 1 OrderPlaced, 2 OrderPaid, 3 OrderShipped
//! ```
//!
//! The seq comes from the order row (`last_seq + 1`) under the write lock, so it is gap-free
//! and matches commit order; the outbox's UNIQUE(aggregate_id, aggregate_seq) backs that up.

use rusqlite::{OptionalExtension, params};

use crate::error::{Context, Error, Result};
use crate::event::{ORDER_PAID, ORDER_SHIPPED};
use crate::order::service::{Mode, OrderService, begin};
use crate::outbox;
use crate::trace::Ev;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Pay,
    Ship,
}

impl Transition {
    fn edges(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Transition::Pay => ("placed", "paid", ORDER_PAID),
            Transition::Ship => ("paid", "shipped", ORDER_SHIPPED),
        }
    }
}

impl OrderService {
    /// Move an order one step along its lifecycle and write the matching event. An unknown
    /// order or a wrong state is an error and writes nothing. Returns the new seq.
    pub fn transition(&mut self, order_id: i64, step: Transition) -> Result<i64> {
        assert_eq!(
            self.mode,
            Mode::Outbox,
            "lifecycle events exist only in outbox mode"
        );
        let (from, to, event_type) = step.edges();
        let now_us = crate::clock::now_us();
        let tx = begin(&mut self.conn)?;
        let row: Option<(String, i64, i64)> = tx
            .query_row(
                "SELECT status, last_seq, amount_cents FROM orders WHERE id = ?1",
                params![order_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .ctx("reading order")?;
        let Some((status, last_seq, amount_cents)) = row else {
            return Err(Error::Input(format!("order {order_id} does not exist")));
        };
        if status != from {
            return Err(Error::Input(format!(
                "order {order_id} is {status}; only a {from} order can become {to}"
            )));
        }
        let seq = last_seq + 1;
        tx.execute(
            "UPDATE orders SET status = ?1, last_seq = ?2 WHERE id = ?3",
            params![to, seq, order_id],
        )
        .ctx("updating order status")?;
        let payload =
            serde_json::json!({ "order_id": order_id, "status": to, "amount_cents": amount_cents });
        let (outbox_id, event_id) = outbox::insert_event(
            &tx,
            self.layout,
            &order_id.to_string(),
            seq,
            event_type,
            &payload,
            now_us,
        )?;
        tx.commit()
            .ctx(format!("committing {event_type} for order {order_id}"))?;
        crate::trace::emit(Ev::Placed, || {
            serde_json::json!({ "event_id": event_id, "order_id": order_id, "outbox_id": outbox_id,
                                "event_type": event_type, "aggregate_seq": seq })
        });
        Ok(seq)
    }
}
