//! From the facts to a verdict: one function per anomaly, each defined once, here.
//!
//! - **expected**: per committed order, seqs `1..=last_seq`; seq 1 must be an `OrderPlaced`
//!   carrying the order's own `request_id`. Nothing here comes from outbox rows: cleanup
//!   deletes them.
//! - **ghost**: a record no committed order expects — it names no order, a seq the order never
//!   reached, or (seq 1) another request; or it is a second event for a seq that already has
//!   one (the outbox row, while it exists, says which one is real; otherwise the first in the
//!   log is).
//! - **out of order in log**: an order whose expected events' first copies are not in seq order.
//! - **aggregate split**: an order whose records sit in more than one partition.
//! - **misplaced**: a record outside CRC-32(aggregate_id) mod partitions (counted per record,
//!   by the log pass).
//! - **applied twice**: an expected event with more than one effect row.
//! - **unknown effect**: an effect row whose event is not in the log at all.
//! - **out of order**: an order whose events, first applications in apply order, skip or go
//!   back in seq.
//! - **pending**: an expected event not applied that is still on its way (an unpublished outbox
//!   row, or a copy past the consumer's committed offset); **lost**: one that is not.
//! - **points mismatch**: a customer whose balance is not what the committed orders earn.

use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::lab::checker::consumer::EffectRow;
use crate::lab::checker::consumer::Held;
use crate::lab::checker::facts::{
    BEYOND_OFFSET, FITS, Facts, GHOST, MULTI_PARTITION, PARKED, SKIPPED,
};
use crate::lab::checker::keys::EventKey;
use crate::lab::checker::orders::OrdersStore;
use crate::lab::checker::{LIST_AT_MOST, Report};

/// A lost event, before its names are looked up.
pub struct LostAt {
    pub order_index: usize,
    pub seq: u32,
    pub event: Option<EventKey>,
    pub in_log: bool,
}

/// Mark every event no committed order expects as a ghost. Sorts the events by aggregate.
pub fn ghosts(facts: &mut Facts, store: &dyn OrdersStore, report: &mut Report) -> Result<()> {
    facts.sort_by_aggregate();
    let contested: HashSet<(i64, u32)> = facts
        .events
        .chunk_by(|a, b| (a.aggregate, a.seq) == (b.aggregate, b.seq))
        .filter(|group| group.iter().filter(|e| e.has(FITS)).count() > 1)
        .map(|group| (group[0].aggregate, group[0].seq))
        .collect();
    let outbox_says = outbox_event_ids(facts, store, &contested)?;
    for group in facts
        .events
        .chunk_by_mut(|a, b| (a.aggregate, a.seq) == (b.aggregate, b.seq))
    {
        let real = match outbox_says.get(&(group[0].aggregate, group[0].seq)) {
            Some(key) => group.iter().position(|e| e.has(FITS) && e.key == *key),
            None => group.iter().position(|e| e.has(FITS)),
        };
        for (i, event) in group.iter_mut().enumerate() {
            if Some(i) != real {
                event.flags |= GHOST;
                report.ghost_count += 1;
            }
        }
    }
    Ok(())
}

/// For seqs claimed by several events: the event id the outbox gave that seq, if its row is
/// still there. One scan of the outbox, and only when some seq is contested.
fn outbox_event_ids(
    facts: &mut Facts,
    store: &dyn OrdersStore,
    contested: &HashSet<(i64, u32)>,
) -> Result<HashMap<(i64, u32), EventKey>> {
    let mut out = HashMap::new();
    if contested.is_empty() {
        return Ok(out);
    }
    let keys = &mut facts.keys;
    store.each_outbox_row(false, &mut |row| {
        let seq = u32::try_from(row.aggregate_seq).unwrap_or(0);
        let at = (keys.aggregate(row.aggregate_id), seq);
        if contested.contains(&at) {
            out.insert(at, keys.event(row.event_id));
        }
        Ok(())
    })?;
    Ok(out)
}

/// Per order, in the log: expected events' first copies in seq order, all in one partition.
/// The events must be sorted by aggregate.
pub fn log_order(facts: &Facts, report: &mut Report) {
    for events in facts.events.chunk_by(|a, b| a.aggregate == b.aggregate) {
        let mut expected = events.iter().filter(|e| e.expected());
        let out_of_order = expected
            .clone()
            .zip(expected.by_ref().skip(1))
            // Positions compare within one partition only; across two, the split says it.
            .any(|(a, b)| a.partition() == b.partition() && a.pos > b.pos);
        if out_of_order {
            report.log_out_of_order += 1;
        }
        let first = events[0].partition();
        if events
            .iter()
            .any(|e| e.has(MULTI_PARTITION) || e.partition() != first)
        {
            report.aggregates_split += 1;
        }
    }
}

/// One effect row, in apply order. The events must be sorted by key.
pub fn effect(facts: &mut Facts, row: &EffectRow<'_>, report: &mut Report) {
    let index = facts
        .keys
        .known_event(row.event_id)
        .and_then(|key| facts.event_index(key));
    // An effect must name an event in the log, and that event's own order and seq.
    let matches = |i: usize| {
        let event = &facts.events[i];
        facts.keys.known_aggregate(row.aggregate_id) == Some(event.aggregate)
            && i64::from(event.seq) == row.aggregate_seq
    };
    let Some(index) = index.filter(|i| matches(*i)) else {
        unknown_effect(row, report);
        return;
    };
    let event = &mut facts.events[index];
    event.applied = event.applied.saturating_add(1);
    if event.applied == 1 && event.expected() {
        let (aggregate, seq) = (event.aggregate, event.seq);
        apply_order(facts, aggregate, seq);
    }
}

/// An effect of an event that is not in the log: nobody published it, yet points moved.
fn unknown_effect(row: &EffectRow<'_>, report: &mut Report) {
    report.unknown_effects += 1;
    if report.unknown_effect_ids.len() < LIST_AT_MOST {
        report.unknown_effect_ids.push(row.event_id.to_string());
    }
}

/// The first application of an order's event must carry the next seq (seqs skipped on
/// purpose count as passed).
fn apply_order(facts: &mut Facts, aggregate: i64, seq: u32) {
    let index = facts
        .order_index(aggregate)
        .expect("an expected event names a committed order");
    let skipped = &facts.skipped;
    let order = &mut facts.orders[index];
    let mut next = order.applied_upto.saturating_add(1);
    while next < seq && skipped.contains(&(aggregate, next)) {
        next += 1;
    }
    if seq != next {
        order.out_of_order = true;
    }
    order.applied_upto = seq;
}

/// Applied once / twice, ghosts applied, orders applied out of order: after the effects pass.
pub fn applications(facts: &Facts, report: &mut Report) {
    for event in &facts.events {
        match (event.expected(), event.applied) {
            (_, 0) => {}
            (true, 1) => report.applied_once += 1,
            (true, _) => report.applied_twice += 1,
            (false, _) => report.ghost_applied += 1,
        }
        if event.expected() {
            report.distinct_events_in_log += 1;
        }
    }
    report.out_of_order = facts.orders.iter().filter(|o| o.out_of_order).count() as u64;
}

/// Every expected seq of every committed order: applied, pending or lost. Sorts the events by
/// aggregate; `unpublished` is sorted.
pub fn lost_and_pending(
    facts: &mut Facts,
    unpublished: &[(i64, u32)],
    report: &mut Report,
) -> Vec<LostAt> {
    facts.sort_by_aggregate();
    let mut lost = Vec::new();
    let mut cursor = 0;
    let events = &facts.events;
    for (order_index, order) in facts.orders.iter().enumerate() {
        report.expected_events += u64::from(order.last_seq);
        for seq in 1..=order.last_seq {
            while cursor < events.len()
                && (events[cursor].aggregate, events[cursor].seq) < (order.key, seq)
            {
                cursor += 1;
            }
            let found = events[cursor..]
                .iter()
                .take_while(|e| (e.aggregate, e.seq) == (order.key, seq))
                .find(|e| e.expected());
            let on_its_way = unpublished.binary_search(&(order.key, seq)).is_ok()
                || found.is_some_and(|e| e.has(BEYOND_OFFSET));
            match found {
                Some(event) if event.applied > 0 => {}
                Some(event) if event.has(SKIPPED) => report.skipped_events += 1,
                Some(event) if event.has(PARKED) => {} // counted as parked: awaits release
                _ if on_its_way => report.pending += 1,
                _ => {
                    report.lost_count += 1;
                    if lost.len() < LIST_AT_MOST {
                        lost.push(LostAt {
                            order_index,
                            seq,
                            event: found.map(|e| e.key),
                            in_log: found.is_some(),
                        });
                    }
                }
            }
        }
    }
    lost
}

/// The balance anyone can see, customer by customer, against what the orders earn.
pub fn points(facts: &Facts, actual: &HashMap<u64, i64>, report: &mut Report) {
    report.points_expected = facts.points_by_customer.values().sum();
    report.points_actual = actual.values().sum();
    let customers: HashSet<&u64> = facts
        .points_by_customer
        .keys()
        .chain(actual.keys())
        .collect();
    report.points_mismatched_customers = customers
        .into_iter()
        .filter(|c| {
            facts.points_by_customer.get(c).copied().unwrap_or(0)
                != actual.get(c).copied().unwrap_or(0)
        })
        .count() as u64;
}

/// Expected events with more than one copy in the log: how many extra copies in all.
pub fn duplicated(facts: &Facts, report: &mut Report) -> HashSet<EventKey> {
    let mut keys = HashSet::new();
    for event in facts.events.iter().filter(|e| e.expected() && e.copies > 1) {
        report.redelivered += u64::from(event.copies) - 1;
        keys.insert(event.key);
    }
    keys
}

/// Events the consumer holds: parked ones are marked (awaiting release, not lost); skipped
/// ones count as accounted for, and the points they never credited leave the expected
/// balance. The events must be sorted by key.
pub fn held(facts: &mut Facts, held: &Held) {
    for id in &held.parked {
        let index = facts
            .keys
            .known_event(id)
            .and_then(|key| facts.event_index(key));
        if let Some(index) = index {
            facts.events[index].flags |= PARKED;
        }
    }
    for event in &held.skipped {
        let index = facts
            .keys
            .known_event(&event.event_id)
            .and_then(|key| facts.event_index(key));
        let Some(index) = index else { continue }; // not in the log: then it is not expected either
        let fact = &mut facts.events[index];
        fact.flags |= SKIPPED;
        let at = (fact.aggregate, fact.seq);
        facts.skipped.insert(at);
        if let (Some(customer), points) = crate::consumer::apply::points_for(event) {
            *facts
                .points_by_customer
                .entry(crate::lab::checker::keys::hash64(&customer))
                .or_default() -= points;
        }
    }
}
