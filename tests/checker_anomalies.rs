//! One story per anomaly: hand-build the three stores of a small shop, plant exactly one
//! anomaly, and see the checker report it — and nothing else.
//!
//! The shop: order 1 placed, paid and shipped (seqs 1, 2, 3); orders 2 and 3 placed (seq 1).
//! Every event appended to its partition once, applied once by the real consumer code, and the
//! consumer's offsets committed to the end of the log. The clean shop verifies OK; each test
//! changes one thing.

mod common;

use std::path::Path;

use outbox_lab::broker::{self, Broker, partition_of};
use outbox_lab::consumer::{self, Position};
use outbox_lab::datadir::DataDir;
use outbox_lab::event::{Event, ORDER_PAID, ORDER_PLACED, ORDER_SHIPPED, new_event_id};
use outbox_lab::lab::checker::{self, Report};
use rusqlite::{Connection, params};
use serde_json::json;

const GROUP: &str = "points";

struct Shop {
    data: DataDir,
    broker: Broker,
    consumer: Connection,
    /// Every event of the clean shop, in placement order.
    events: Vec<Event>,
}

fn order_event(order_id: i64, seq: i64) -> Event {
    let (event_type, payload) = match seq {
        1 => (
            ORDER_PLACED,
            json!({ "request_id": format!("req-{order_id}"), "customer": format!("c{order_id}"),
                    "amount_cents": 1000 * order_id }),
        ),
        2 => (ORDER_PAID, json!({})),
        _ => (ORDER_SHIPPED, json!({})),
    };
    Event {
        event_id: new_event_id(),
        event_type: event_type.into(),
        aggregate_id: order_id.to_string(),
        aggregate_seq: seq,
        payload,
        created_at_us: 1,
        outbox_id: None,
        relay: "test".into(),
        attempt: 1,
    }
}

impl Shop {
    /// The committed orders and their events, nothing in the log or applied yet.
    fn empty(name: &str) -> Shop {
        let dir = common::init(name);
        let data = DataDir::open(Path::new(&dir)).unwrap();
        let orders = Connection::open(data.orders_db()).unwrap();
        let mut events = Vec::new();
        for (order_id, last_seq) in [(1, 3), (2, 1), (3, 1)] {
            orders
                .execute(
                    "INSERT INTO orders (id, request_id, customer, amount_cents, status, last_seq,
                                         created_at_us) VALUES (?1, ?2, ?3, ?4, 'placed', ?5, 1)",
                    params![
                        order_id,
                        format!("req-{order_id}"),
                        format!("c{order_id}"),
                        1000 * order_id,
                        last_seq
                    ],
                )
                .unwrap();
            events.extend((1..=last_seq).map(|seq| order_event(order_id, seq)));
        }
        let broker = Broker::open(&data.broker_dir(), data.partitions).unwrap();
        let consumer = Connection::open(data.consumer_db()).unwrap();
        Shop {
            data,
            broker,
            consumer,
            events,
        }
    }

    /// Every event appended once and applied once, offsets at the end: verifies OK.
    fn clean(name: &str) -> Shop {
        let mut shop = Shop::empty(name);
        for i in 0..shop.events.len() {
            let at = shop.append(i);
            shop.apply(i, at);
        }
        shop.commit_offsets();
        shop
    }

    fn append_to(&mut self, partition: u32, event: &Event) -> Position {
        let json = serde_json::to_vec(event).unwrap();
        let appended = self.broker.append_durable(partition, &[&json]).unwrap();
        Position {
            partition,
            offset_bytes: appended.first_offset_bytes,
        }
    }

    fn append(&mut self, i: usize) -> Position {
        let event = self.events[i].clone();
        let partition = partition_of(&event.aggregate_id, self.data.partitions);
        self.append_to(partition, &event)
    }

    /// Apply through the real consumer code (inbox + effect + points in one transaction).
    fn apply(&mut self, i: usize, at: Position) {
        consumer::apply(&mut self.consumer, &self.events[i], at, 2).unwrap();
    }

    /// Apply again behind the inbox's back: a raw effect row and its points.
    fn apply_raw(&self, event: &Event) {
        let (customer, points) = consumer::apply::points_for(event);
        self.consumer
            .execute(
                "INSERT INTO effects (event_id, aggregate_id, aggregate_seq, event_type,
                     applied_at_us, created_at_us, customer, points, partition, offset_bytes)
                 VALUES (?1, ?2, ?3, ?4, 2, 1, ?5, ?6, 0, 0)",
                params![
                    event.event_id,
                    event.aggregate_id,
                    event.aggregate_seq,
                    event.event_type,
                    customer,
                    points
                ],
            )
            .unwrap();
        if let Some(customer) = customer {
            self.add_points(&customer, points);
        }
    }

    fn add_points(&self, customer: &str, points: i64) {
        self.consumer
            .execute(
                "INSERT INTO points (customer, balance) VALUES (?1, ?2)
                 ON CONFLICT (customer) DO UPDATE SET balance = balance + excluded.balance",
                params![customer, points],
            )
            .unwrap();
    }

    fn commit_offsets(&self) {
        for partition in 0..self.data.partitions {
            let path = broker::log_path(&self.data.broker_dir(), partition);
            let end = std::fs::metadata(path).unwrap().len();
            broker::commit_offset(&self.data.broker_dir(), GROUP, partition, end).unwrap();
        }
    }

    fn verify(&self) -> Report {
        checker::check(&self.data, GROUP).unwrap()
    }

    /// The index of `order_id`'s event `seq` in `events`.
    fn index(&self, order_id: i64, seq: i64) -> usize {
        self.events
            .iter()
            .position(|e| e.aggregate_id == order_id.to_string() && e.aggregate_seq == seq)
            .unwrap()
    }
}

/// Everything the verdict rests on, as (name, value), so a test can say "only this one".
fn anomalies(r: &Report) -> Vec<(&'static str, u64)> {
    vec![
        ("lost", r.lost_count),
        ("ghost", r.ghost_count),
        ("applied_twice", r.applied_twice),
        ("unknown_effects", r.unknown_effects),
        ("out_of_order", r.out_of_order),
        ("log_out_of_order", r.log_out_of_order),
        ("misplaced", r.misplaced),
        ("aggregates_split", r.aggregates_split),
        ("pending", r.pending),
        ("points_mismatched_customers", r.points_mismatched_customers),
    ]
}

/// Assert that exactly the `expected` anomalies (by name) are non-zero, with these counts.
fn only(r: &Report, expected: &[(&str, u64)]) {
    for (name, value) in anomalies(r) {
        let want = expected
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v);
        assert_eq!(value, want, "{name}\n{}", r.to_text());
    }
    assert_eq!(r.ok(), expected.is_empty(), "{}", r.to_text());
}

/// A partition other than the one `aggregate_id` belongs to.
fn wrong_partition(data: &DataDir, aggregate_id: &str) -> u32 {
    (partition_of(aggregate_id, data.partitions) + 1) % data.partitions
}

#[test]
fn clean_shop_verifies_ok_with_every_count_right() {
    let r = Shop::clean("anomaly-clean").verify();
    only(&r, &[]);
    assert_eq!(r.committed_orders, 3);
    assert_eq!(r.expected_events, 5);
    assert_eq!(r.records_in_log, 5);
    assert_eq!(r.applied_once, 5);
    assert_eq!(r.points_expected, 10 + 20 + 30);
    assert_eq!(r.points_actual, r.points_expected);
}

#[test]
fn lost_event_never_reached_the_log() {
    let mut shop = Shop::empty("anomaly-lost");
    let missing = shop.index(2, 1);
    for i in (0..shop.events.len()).filter(|i| *i != missing) {
        let at = shop.append(i);
        shop.apply(i, at);
    }
    shop.add_points("c2", 20); // the balance is right: only the event is missing
    shop.commit_offsets();
    let r = shop.verify();
    only(&r, &[("lost", 1)]);
    assert_eq!(r.lost[0].order_id, "2");
    assert_eq!(r.lost[0].request_id.as_deref(), Some("req-2"));
    assert!(!r.lost[0].in_log);
}

#[test]
fn lost_event_in_the_log_but_passed_over_by_the_consumer() {
    let mut shop = Shop::empty("anomaly-lost-in-log");
    let skipped = shop.index(3, 1);
    for i in 0..shop.events.len() {
        let at = shop.append(i);
        if i != skipped {
            shop.apply(i, at);
        }
    }
    shop.add_points("c3", 30);
    shop.commit_offsets(); // the offset is past it: it will never be delivered again
    let r = shop.verify();
    only(&r, &[("lost", 1)]);
    assert!(r.lost[0].in_log);
    assert_eq!(r.lost[0].aggregate_seq, 1);
}

#[test]
fn ghost_event_for_an_order_never_committed() {
    let mut shop = Shop::clean("anomaly-ghost");
    let ghost = order_event(99, 1);
    let at = shop.append_to(partition_of("99", shop.data.partitions), &ghost);
    shop.commit_offsets();
    let _ = at;
    let r = shop.verify();
    only(&r, &[("ghost", 1)]);
    assert_eq!(r.ghost[0].order_id, "99");
    assert_eq!(r.ghost[0].order_belongs_to, None);
    assert!(!r.ghost[0].applied);
}

#[test]
fn ghost_naming_a_real_order_with_another_request_is_told_apart() {
    let mut shop = Shop::clean("anomaly-ghost-reused-id");
    let mut ghost = order_event(2, 1);
    ghost.payload["request_id"] = json!("req-rolled-back");
    let at = shop.append_to(partition_of("2", shop.data.partitions), &ghost);
    shop.events.push(ghost);
    let last = shop.events.len() - 1;
    shop.apply(last, at);
    shop.commit_offsets();
    let r = shop.verify();
    // Applied, it also credits points nobody earned.
    only(&r, &[("ghost", 1), ("points_mismatched_customers", 1)]);
    assert_eq!(r.ghost_applied, 1);
    assert_eq!(r.ghost[0].request_id.as_deref(), Some("req-rolled-back"));
    assert_eq!(r.ghost[0].order_belongs_to.as_deref(), Some("req-2"));
}

#[test]
fn order_deleted_by_hand_turns_its_event_into_a_ghost() {
    let shop = Shop::clean("anomaly-order-deleted");
    let orders = Connection::open(shop.data.orders_db()).unwrap();
    orders
        .execute("DELETE FROM orders WHERE id = 3", [])
        .unwrap();
    let r = shop.verify();
    only(&r, &[("ghost", 1), ("points_mismatched_customers", 1)]);
    assert_eq!(r.ghost_applied, 1);
    assert_eq!(r.points_expected, 30);
    assert_eq!(r.points_actual, 60);
}

#[test]
fn applied_twice_behind_the_inboxs_back() {
    let shop = Shop::clean("anomaly-twice");
    shop.apply_raw(&shop.events[shop.index(2, 1)]);
    let r = shop.verify();
    only(
        &r,
        &[("applied_twice", 1), ("points_mismatched_customers", 1)],
    );
    assert_eq!(r.applied_once, 4);
    assert_eq!(r.points_actual, r.points_expected + 20);
}

#[test]
fn effect_of_an_event_that_never_existed() {
    let shop = Shop::clean("anomaly-unknown-effect");
    let invented = order_event(2, 1); // a fresh id, never appended anywhere
    shop.apply_raw(&invented);
    let r = shop.verify();
    only(
        &r,
        &[("unknown_effects", 1), ("points_mismatched_customers", 1)],
    );
    assert_eq!(r.unknown_effect_ids, vec![invented.event_id]);
    assert_eq!(
        r.applied_once, 5,
        "the invented effect is not counted as applied"
    );
}

#[test]
fn out_of_order_applied() {
    let mut shop = Shop::empty("anomaly-apply-order");
    let positions: Vec<Position> = (0..shop.events.len()).map(|i| shop.append(i)).collect();
    // Order 1: apply seq 1, then 3, then 2.
    for seq in [1, 3, 2] {
        let i = shop.index(1, seq);
        shop.apply(i, positions[i]);
    }
    for order_id in [2, 3] {
        let i = shop.index(order_id, 1);
        shop.apply(i, positions[i]);
    }
    shop.commit_offsets();
    let r = shop.verify();
    only(&r, &[("out_of_order", 1)]);
}

#[test]
fn out_of_order_in_log() {
    let mut shop = Shop::empty("anomaly-log-order");
    for (order_id, seq) in [(1, 1), (1, 3), (1, 2), (2, 1), (3, 1)] {
        let i = shop.index(order_id, seq);
        let at = shop.append(i);
        shop.apply(i, at);
    }
    shop.commit_offsets();
    let r = shop.verify();
    // Applied in log order, so applied out of order too: both are reported.
    only(&r, &[("log_out_of_order", 1), ("out_of_order", 1)]);
}

#[test]
fn misplaced_partition() {
    let mut shop = Shop::empty("anomaly-misplaced");
    for i in 0..shop.events.len() {
        let event = shop.events[i].clone();
        let partition = if event.aggregate_id == "2" {
            wrong_partition(&shop.data, "2")
        } else {
            partition_of(&event.aggregate_id, shop.data.partitions)
        };
        let at = shop.append_to(partition, &event);
        shop.apply(i, at);
    }
    shop.commit_offsets();
    only(&shop.verify(), &[("misplaced", 1)]);
}

#[test]
fn aggregate_split_across_partitions() {
    let mut shop = Shop::empty("anomaly-split");
    for i in 0..shop.events.len() {
        let event = shop.events[i].clone();
        let partition = if event.aggregate_id == "1" && event.aggregate_seq == 2 {
            wrong_partition(&shop.data, "1")
        } else {
            partition_of(&event.aggregate_id, shop.data.partitions)
        };
        let at = shop.append_to(partition, &event);
        shop.apply(i, at);
    }
    shop.commit_offsets();
    // One record outside its partition splits its order across two.
    only(&shop.verify(), &[("aggregates_split", 1), ("misplaced", 1)]);
}

#[test]
fn pending_in_the_log_past_the_consumers_offset_is_not_lost() {
    let mut shop = Shop::empty("anomaly-pending-log");
    let last = shop.events.len() - 1;
    for i in 0..last {
        let at = shop.append(i);
        shop.apply(i, at);
    }
    shop.commit_offsets();
    shop.append(last); // appended after the offsets were committed: not yet consumed
    shop.add_points("c3", 30);
    let r = shop.verify();
    only(&r, &[("pending", 1)]);
    assert_eq!(r.lost_count, 0);
}

#[test]
fn pending_unpublished_outbox_row_is_not_lost() {
    let mut shop = Shop::empty("anomaly-pending-outbox");
    let waiting = shop.index(3, 1);
    for i in (0..shop.events.len()).filter(|i| *i != waiting) {
        let at = shop.append(i);
        shop.apply(i, at);
    }
    shop.commit_offsets();
    shop.add_points("c3", 30);
    let e = &shop.events[waiting];
    Connection::open(shop.data.orders_db())
        .unwrap()
        .execute(
            "INSERT INTO outbox (event_id, aggregate_id, aggregate_seq, event_type, payload,
                                 created_at_us) VALUES (?1, '3', 1, ?2, ?3, 1)",
            params![e.event_id, e.event_type, e.payload.to_string()],
        )
        .unwrap();
    only(&shop.verify(), &[("pending", 1)]);
}

#[test]
fn torn_tail_is_reported_and_is_not_a_failure() {
    let shop = Shop::clean("anomaly-torn");
    let path = broker::log_path(&shop.data.broker_dir(), 0);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"0badc0de {\"event_id\":\"half a rec");
    std::fs::write(&path, bytes).unwrap();
    let r = shop.verify();
    only(&r, &[]);
    assert_eq!(r.torn_tail_bytes, 32);
}

#[test]
fn points_mismatch_alone_fails_the_verdict() {
    let shop = Shop::clean("anomaly-points");
    shop.add_points("c1", 1000);
    shop.add_points("c2", -1000); // the total still balances; two customers do not
    let r = shop.verify();
    only(&r, &[("points_mismatched_customers", 2)]);
    assert_eq!(r.points_actual, r.points_expected);
}
