//! The naive dual write, in both orders. Kept only to be crashed.
//!
//! ```text
//!   commit first:   BEGIN; INSERT order; COMMIT ─┐ crash here: the order exists, its event
//!                                                │ never will. LOST.
//!                   append + sync event ◀────────┘
//!
//!   publish first:  BEGIN; INSERT order (id 7); append + sync event(order 7) ─┐ crash here:
//!                   COMMIT ◀─────────────────────────────────────────────────┘ rollback, but
//!                   the log says order 7 was placed. GHOST. Worse: id 7 is handed out again to
//!                   the next order, so the ghost names a real order with someone else's data.
//! ```
//!
//! No retry or reordering fixes this: two systems, no shared transaction, a crash can always
//! land between the two writes. (A real system would add 2PC or — better — use the outbox.)

use crate::broker::{self, Broker};
use crate::crashpoint::{self, Point};
use crate::error::{Context, Result};
use crate::event::{Event, ORDER_PLACED, new_event_id};
use crate::order::OrderRequest;
use crate::order::service::{
    OrderService, PlaceStatus, Placed, begin, find_existing, insert_order, order_placed_payload,
};
use crate::trace::Ev;

impl OrderService {
    pub(crate) fn place_naive_commit_first(&mut self, request: &OrderRequest) -> Result<Placed> {
        let now_us = crate::clock::now_us();
        let tx = begin(&mut self.conn)?;
        if let Some(existing) = find_existing(&tx, request)? {
            return Ok(existing);
        }
        let order_id = insert_order(&tx, request, now_us)?;
        tx.commit().ctx("committing order")?;
        crate::trace::emit(
            Ev::Committed,
            || serde_json::json!({ "order_id": order_id, "request_id": request.request_id, "mode": "naive" }),
        );
        crashpoint::point(Point::NaiveAfterCommit);
        let broker = self.broker.as_mut().expect("naive modes open the broker");
        publish(broker, self.partitions, order_id, request, now_us)?;
        Ok(Placed {
            request_id: request.request_id.clone(),
            order_id,
            status: PlaceStatus::Placed,
        })
    }

    pub(crate) fn place_naive_publish_first(&mut self, request: &OrderRequest) -> Result<Placed> {
        let now_us = crate::clock::now_us();
        let tx = begin(&mut self.conn)?;
        if let Some(existing) = find_existing(&tx, request)? {
            return Ok(existing);
        }
        let order_id = insert_order(&tx, request, now_us)?;
        // Publishing from inside the open transaction: the log now says something the
        // database has not decided yet.
        let broker = self.broker.as_mut().expect("naive modes open the broker");
        let event = publish(broker, self.partitions, order_id, request, now_us)?;
        crashpoint::point(Point::NaiveAfterPublish);
        tx.commit().ctx("committing order")?;
        crate::trace::emit(Ev::Committed, || {
            serde_json::json!({ "order_id": order_id, "request_id": request.request_id,
                                "event_id": event.event_id, "mode": "naive-publish-first" })
        });
        Ok(Placed {
            request_id: request.request_id.clone(),
            order_id,
            status: PlaceStatus::Placed,
        })
    }
}

/// Append the event straight to the log and sync it: the second write of the dual write.
pub(crate) fn publish(
    broker: &mut Broker,
    partitions: u32,
    order_id: i64,
    request: &OrderRequest,
    now_us: i64,
) -> Result<Event> {
    let event = naive_event(order_id, request, now_us);
    let partition = broker::partition_of(&event.aggregate_id, partitions);
    let json = serde_json::to_vec(&event).expect("serialising an event");
    broker.append_durable(partition, &[&json])?;
    crate::trace::emit(Ev::Appended, || {
        serde_json::json!({ "event_id": event.event_id, "order_id": order_id,
                            "request_id": request.request_id, "partition": partition,
                            "synced": true })
    });
    Ok(event)
}

fn naive_event(order_id: i64, request: &OrderRequest, now_us: i64) -> Event {
    Event {
        event_id: new_event_id(),
        event_type: ORDER_PLACED.to_string(),
        aggregate_id: order_id.to_string(),
        aggregate_seq: 1,
        payload: order_placed_payload(order_id, request),
        created_at_us: now_us,
        outbox_id: None,
        relay: "naive".to_string(),
        attempt: 1,
    }
}
