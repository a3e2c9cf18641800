//! From the stores to a verdict. Each anomaly is defined once, here:
//!
//! - **expected**: per order, its outbox rows (outbox mode) or one `OrderPlaced` identified by
//!   (order id, request_id) (naive mode: there is no outbox row to name it).
//! - **lost**: an expected event with no applied effect, that is not merely still pending
//!   (unpublished in the outbox, or in the log beyond the consumer's offset).
//! - **ghost**: a record whose event no committed order expects. In naive publish-first mode
//!   its order id may belong to a *different* committed order: the request_id tells them apart.
//! - **redelivered**: copies of an event in the log beyond the first, by cause; plus records
//!   the consumer saw again after its own crash.
//! - **applied twice**: an event id with more than one row in `effects`.
//! - **out of order**: an order whose applied seqs, in apply order, are not 1, 2, 3…
//! - **misplaced**: a record in a partition other than CRC-32(aggregate_id) mod partitions.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::broker::partition_of;
use crate::consumer::schema::Counter;
use crate::lab::checker::load::Stores;
use crate::lab::checker::{Duplicate, Ghost, LIST_DUPLICATES, Lost, Report};

pub fn analyse(stores: &Stores, partitions: u32) -> Report {
    let mut report = Report {
        committed_orders: stores.orders.len() as u64,
        ..Report::default()
    };

    // Expected events: event_id -> (aggregate, seq) for outbox rows.
    let mut expected: HashMap<&str, (&str, i64)> = HashMap::new();
    let mut outbox_aggregates: HashMap<&str, i64> = HashMap::new();
    let mut pending_unpublished: HashSet<&str> = HashSet::new();
    for row in &stores.outbox {
        expected.insert(&row.event_id, (&row.aggregate_id, row.aggregate_seq));
        *outbox_aggregates.entry(&row.aggregate_id).or_default() += 1;
        if !row.published {
            pending_unpublished.insert(&row.event_id);
        }
    }
    // Naive orders (no outbox rows): their one event is named by (order id, request_id).
    let mut naive_orders: HashMap<(String, &str), Option<String>> = HashMap::new();
    for order in &stores.orders {
        let aggregate_id = order.id.to_string();
        match outbox_aggregates.get(aggregate_id.as_str()) {
            Some(&rows) => {
                // "No order without its event": every seq the order reached has its row.
                if rows < order.last_seq {
                    report.orders_missing_events += (order.last_seq - rows) as u64;
                }
            }
            None => {
                naive_orders.insert((aggregate_id, order.request_id.as_str()), None);
            }
        }
    }
    report.expected_events = expected.len() as u64 + naive_orders.len() as u64;

    let order_requests: HashMap<String, &str> = stores
        .orders
        .iter()
        .map(|o| (o.id.to_string(), o.request_id.as_str()))
        .collect();
    // Walk the log: match each record to an expected event, or call it a ghost.
    report.records_in_log = stores.records.len() as u64;
    report.torn_tail_bytes = stores.torn_tail_bytes;
    let mut copies: BTreeMap<&str, u64> = BTreeMap::new();
    let mut ghost_ids: HashSet<&str> = HashSet::new();
    let mut pending_in_log: HashSet<&str> = HashSet::new();
    for record in &stores.records {
        let event = &record.event;
        if partition_of(&event.aggregate_id, partitions) != record.partition {
            report.misplaced += 1;
        }
        let beyond_offset =
            record.offset_bytes >= stores.consumer_offsets[record.partition as usize];
        let is_expected = if expected.contains_key(event.event_id.as_str()) {
            true
        } else {
            let request_id = event.payload["request_id"].as_str().unwrap_or("");
            match naive_orders.get_mut(&(event.aggregate_id.clone(), request_id)) {
                Some(slot @ None) => {
                    *slot = Some(event.event_id.clone());
                    true
                }
                Some(Some(first)) => *first == event.event_id,
                None => false,
            }
        };
        if !is_expected {
            if ghost_ids.insert(&event.event_id) {
                report.ghost.push(Ghost {
                    event_id: event.event_id.clone(),
                    order_id: event.aggregate_id.clone(),
                    request_id: event.payload["request_id"].as_str().map(str::to_string),
                    order_belongs_to: order_requests
                        .get(event.aggregate_id.as_str())
                        .map(|r| r.to_string()),
                    applied: false,
                });
            }
            continue;
        }
        *copies.entry(&event.event_id).or_default() += 1;
        if beyond_offset {
            pending_in_log.insert(&event.event_id);
        }
    }
    report.distinct_events_in_log = copies.len() as u64;
    log_order(stores, &ghost_ids, &mut report);
    for (event_id, n) in &copies {
        if *n > 1 {
            report.redelivered += n - 1;
            let causes = redelivery_causes(stores, event_id, *n);
            for cause in &causes {
                *report
                    .redelivered_by_cause
                    .entry(cause.clone())
                    .or_default() += 1;
            }
            if report.duplicated.len() < LIST_DUPLICATES {
                report.duplicated.push(Duplicate {
                    event_id: event_id.to_string(),
                    copies: *n,
                    causes,
                });
            }
        }
    }
    let log_duplicates_seen = report.redelivered;
    let skipped = *stores
        .counters
        .get(Counter::SkippedDuplicate.name())
        .unwrap_or(&0) as u64;
    report.consumer_skipped_duplicates = skipped;
    let counter = |c: Counter| *stores.counters.get(c.name()).unwrap_or(&0) as u64;
    report.consumer_dropped_by_seq_guard = counter(Counter::DroppedBySeqGuard);
    report.consumer_too_old_for_inbox = counter(Counter::TooOldForInbox);
    report.inbox_swept = counter(Counter::InboxSwept);
    report.consumer_seq_gaps = counter(Counter::SeqGap);
    report.consumer_redeliveries = skipped.saturating_sub(log_duplicates_seen);

    analyse_effects(stores, &mut report, &ghost_ids);

    // Lost (or merely pending) expected events.
    let applied: HashSet<&str> = stores.effects.iter().map(|e| e.event_id.as_str()).collect();
    let order_by_id: HashMap<String, &crate::lab::checker::load::OrderRow> = stores
        .orders
        .iter()
        .map(|o| (o.id.to_string(), o))
        .collect();
    let mut lost = |order_id: &str, event_id: Option<&str>, seq: i64, in_log: bool| {
        let order = order_by_id.get(order_id);
        report.lost.push(Lost {
            order_id: order_id.to_string(),
            request_id: order.map(|o| o.request_id.clone()),
            aggregate_seq: seq,
            event_id: event_id.map(str::to_string),
            in_log,
        });
    };
    for (event_id, (aggregate_id, seq)) in &expected {
        if applied.contains(event_id) {
            continue;
        }
        if pending_unpublished.contains(event_id) || pending_in_log.contains(event_id) {
            report.pending += 1;
        } else {
            lost(
                aggregate_id,
                Some(event_id),
                *seq,
                copies.contains_key(event_id),
            );
        }
    }
    for ((aggregate_id, _request_id), event_id) in &naive_orders {
        match event_id {
            Some(id) if applied.contains(id.as_str()) => {}
            Some(id) if pending_in_log.contains(id.as_str()) => report.pending += 1,
            Some(id) => lost(aggregate_id, Some(id), 1, true),
            None => lost(aggregate_id, None, 1, false),
        }
    }
    report.lost.sort_by(|a, b| {
        a.order_id
            .parse::<i64>()
            .ok()
            .cmp(&b.order_id.parse::<i64>().ok())
    });
    report.lost_count = report.lost.len() as u64 + report.orders_missing_events;
    report.ghost_count = report.ghost.len() as u64;

    // The balance anyone can see, against what the committed orders say it should be.
    let mut expected_points: HashMap<&str, i64> = HashMap::new();
    for order in &stores.orders {
        *expected_points.entry(&order.customer).or_default() += order.amount_cents / 100;
    }
    let actual: i64 = stores.points.values().sum();
    report.points_expected = expected_points.values().sum();
    report.points_actual = actual;
    report
}

/// Per aggregate, in log order: first copies must carry seqs 1, 2, 3…, all in one partition.
fn log_order(stores: &Stores, ghost_ids: &HashSet<&str>, report: &mut Report) {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut seqs: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut partitions: HashMap<&str, HashSet<u32>> = HashMap::new();
    for record in &stores.records {
        let event = &record.event;
        partitions
            .entry(&event.aggregate_id)
            .or_default()
            .insert(record.partition);
        if ghost_ids.contains(event.event_id.as_str()) || !seen.insert(&event.event_id) {
            continue;
        }
        seqs.entry(&event.aggregate_id)
            .or_default()
            .push(event.aggregate_seq);
    }
    report.log_out_of_order = seqs
        .values()
        .filter(|s| s.iter().enumerate().any(|(i, seq)| *seq != i as i64 + 1))
        .count() as u64;
    report.aggregates_split = partitions.values().filter(|p| p.len() > 1).count() as u64;
}

/// Effects: applied once / twice, ghosts applied, per-aggregate order.
fn analyse_effects(stores: &Stores, report: &mut Report, ghost_ids: &HashSet<&str>) {
    let mut applications: HashMap<&str, u64> = HashMap::new();
    let mut seqs_by_aggregate: HashMap<&str, Vec<i64>> = HashMap::new();
    for effect in &stores.effects {
        let n = applications.entry(&effect.event_id).or_default();
        *n += 1;
        if ghost_ids.contains(effect.event_id.as_str()) || *n > 1 {
            continue; // a ghost has no place in its order's sequence; a repeat is counted apart
        }
        seqs_by_aggregate
            .entry(&effect.aggregate_id)
            .or_default()
            .push(effect.aggregate_seq);
    }
    for (event_id, n) in &applications {
        if ghost_ids.contains(event_id) {
            report.ghost_applied += 1;
        } else if *n == 1 {
            report.applied_once += 1;
        } else {
            report.applied_twice += 1;
        }
    }
    for ghost in &mut report.ghost {
        ghost.applied = applications.contains_key(ghost.event_id.as_str());
    }
    for seqs in seqs_by_aggregate.values() {
        if seqs.iter().enumerate().any(|(i, seq)| *seq != i as i64 + 1) {
            report.out_of_order += 1;
        }
    }
}

/// Why an event has `copies` records: for each extra copy, the crash point of the process
/// that appended the earlier copy (from trace.jsonl), or "lease lost" if it did not crash.
fn redelivery_causes(stores: &Stores, event_id: &str, copies: u64) -> Vec<String> {
    let extra = (copies - 1) as usize;
    let Some(pids) = stores.appenders.get(event_id) else {
        return vec!["unknown (no trace)".to_string(); extra];
    };
    (0..extra)
        .map(|i| match pids.get(i) {
            Some(pid) => match stores.crashes_by_pid.get(pid) {
                Some(point) => format!("crash at {point}"),
                None => "lease lost without a crash (zombie relay)".to_string(),
            },
            None => "unknown (trace incomplete)".to_string(),
        })
        .collect()
}
