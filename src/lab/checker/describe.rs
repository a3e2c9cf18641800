//! Names for what the report lists: the few lost events, ghosts and duplicates it shows are
//! looked up here, after the counting, so the counting never holds a string per event.

use std::collections::HashSet;

use crate::broker::{self, LogReader};
use crate::datadir::DataDir;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::lab::checker::analyse::LostAt;
use crate::lab::checker::causes::Appenders;
use crate::lab::checker::facts::{EventFact, Facts, GHOST};
use crate::lab::checker::keys::EventKey;
use crate::lab::checker::orders::OrdersStore;
use crate::lab::checker::{Duplicate, Ghost, LIST_AT_MOST, LIST_DUPLICATES, Lost, Report};

pub fn lost(facts: &Facts, store: &dyn OrdersStore, lost: &[LostAt]) -> Result<Vec<Lost>> {
    lost.iter()
        .map(|at| {
            let order = &facts.orders[at.order_index];
            Ok(Lost {
                order_id: order.order_id.to_string(),
                request_id: store.request_id_of(order.order_id)?,
                aggregate_seq: i64::from(at.seq),
                event_id: at.event.map(|k| facts.keys.event_name(k)),
                in_log: at.in_log,
            })
        })
        .collect()
}

/// The first ghosts in log order, each re-read from the log for its request id.
pub fn ghosts(dir: &DataDir, facts: &Facts, store: &dyn OrdersStore) -> Result<Vec<Ghost>> {
    let mut ghosts: Vec<&EventFact> = facts.events.iter().filter(|e| e.has(GHOST)).collect();
    ghosts.sort_unstable_by_key(|e| e.pos);
    ghosts
        .into_iter()
        .take(LIST_AT_MOST)
        .map(|fact| {
            let event = read_record(dir, fact)?;
            let order = facts
                .keys
                .known_aggregate(&event.aggregate_id)
                .and_then(|key| facts.order_index(key));
            let order_belongs_to = match order {
                Some(i) => store.request_id_of(facts.orders[i].order_id)?,
                None => None,
            };
            Ok(Ghost {
                event_id: event.event_id,
                order_id: event.aggregate_id,
                request_id: event.payload["request_id"].as_str().map(str::to_string),
                order_belongs_to,
                applied: fact.applied > 0,
            })
        })
        .collect()
}

fn read_record(dir: &DataDir, fact: &EventFact) -> Result<Event> {
    let path = broker::log_path(&dir.broker_dir(), fact.partition());
    let mut reader = LogReader::open(&path)?;
    let raw = reader.read_from(fact.offset_bytes(), 1)?;
    let raw = raw.first().ok_or_else(|| Error::Corrupt {
        file: path.clone(),
        offset_bytes: fact.offset_bytes(),
        reason: "the record the checker read is gone".into(),
    })?;
    serde_json::from_slice(&raw.json).map_err(|e| Error::Corrupt {
        file: path,
        offset_bytes: fact.offset_bytes(),
        reason: format!("record is not an event: {e}"),
    })
}

/// Causes for every duplicated event; the first [`LIST_DUPLICATES`] listed by name.
pub fn duplicates(
    dir: &DataDir,
    facts: &Facts,
    duplicated: &HashSet<EventKey>,
    report: &mut Report,
) {
    if duplicated.is_empty() {
        return;
    }
    let appenders = Appenders::read(&dir.trace_path(), duplicated, &facts.keys);
    let mut events: Vec<&EventFact> = facts
        .events
        .iter()
        .filter(|e| duplicated.contains(&e.key))
        .collect();
    events.sort_unstable_by_key(|e| e.key);
    for event in events {
        let causes = appenders.causes(event.key, u64::from(event.copies));
        for cause in &causes {
            *report
                .redelivered_by_cause
                .entry(cause.clone())
                .or_default() += 1;
        }
        if report.duplicated.len() < LIST_DUPLICATES {
            report.duplicated.push(Duplicate {
                event_id: facts.keys.event_name(event.key),
                copies: u64::from(event.copies),
                causes,
            });
        }
    }
}
