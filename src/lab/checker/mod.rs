//! The checker: after a run has drained, read all three stores and say, Jepsen-style, what was
//! lost, ghosted, redelivered, applied twice or applied out of order.
//!
//! ```text
//!   orders.db ─┐ committed orders, outbox rows      ─▶ expected events
//!   log ───────┼ every record of every partition   ─▶ copies per event, ghosts, placement
//!   consumer.db┘ effects in apply order, points     ─▶ applied once / twice, order per aggregate
//! ```
//!
//! It trusts nothing it checks: the log is read with CRCs verified, the databases read-only.
//! Exit status 0 only when nothing is lost, ghosted, applied twice, out of order or pending.

mod analyse;
mod load;
mod render;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::datadir::DataDir;
use crate::error::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Lost {
    pub order_id: String,
    pub request_id: Option<String>,
    pub aggregate_seq: i64,
    /// None in naive mode when the event never reached the log (it never had an id anywhere).
    pub event_id: Option<String>,
    pub in_log: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ghost {
    pub event_id: String,
    /// The order id the ghost names: possibly a real order with someone else's data.
    pub order_id: String,
    pub request_id: Option<String>,
    /// When the named order id exists, whose it really is: the rolled-back id was reused.
    pub order_belongs_to: Option<String>,
    pub applied: bool,
}

/// An event with more than one copy in the log.
#[derive(Debug, Clone, Serialize)]
pub struct Duplicate {
    pub event_id: String,
    pub copies: u64,
    pub causes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub committed_orders: u64,
    pub expected_events: u64,
    pub records_in_log: u64,
    pub distinct_events_in_log: u64,
    pub torn_tail_bytes: u64,
    pub lost_count: u64,
    /// Orders whose outbox rows are fewer than their seq says: an order without its event.
    pub orders_missing_events: u64,
    pub ghost_count: u64,
    pub ghost_applied: u64,
    /// Extra copies of events in the log.
    pub redelivered: u64,
    pub redelivered_by_cause: BTreeMap<String, u64>,
    /// Records the consumer saw again because it crashed before committing its offset.
    pub consumer_redeliveries: u64,
    pub consumer_skipped_duplicates: u64,
    /// The consumer's own counters past the inbox: copies the seq guard dropped, events older
    /// than the inbox's retention (its copies may be forgotten), rows swept, seq gaps seen.
    pub consumer_dropped_by_seq_guard: u64,
    pub consumer_too_old_for_inbox: u64,
    pub inbox_swept: u64,
    pub consumer_seq_gaps: u64,
    pub applied_once: u64,
    pub applied_twice: u64,
    pub out_of_order: u64,
    /// Aggregates whose FIRST copies sit in the log out of seq order (later copies of an event
    /// may come after newer events: a zombie's late copy; the consumer skips those).
    pub log_out_of_order: u64,
    pub misplaced: u64,
    /// Aggregates with records in more than one partition.
    pub aggregates_split: u64,
    /// Expected events not yet applied but still on their way (unpublished or unconsumed).
    pub pending: u64,
    pub points_expected: i64,
    pub points_actual: i64,
    pub lost: Vec<Lost>,
    pub ghost: Vec<Ghost>,
    /// Events with extra copies in the log (at most [`LIST_DUPLICATES`]).
    pub duplicated: Vec<Duplicate>,
}

/// How many duplicated events the report names (the counts cover them all).
pub const LIST_DUPLICATES: usize = 50;

impl Report {
    /// The verdict: true when the pipeline kept every promise.
    pub fn ok(&self) -> bool {
        self.lost_count == 0
            && self.ghost_count == 0
            && self.applied_twice == 0
            && self.out_of_order == 0
            && self.log_out_of_order == 0
            && self.misplaced == 0
            && self.aggregates_split == 0
            && self.pending == 0
    }

    pub fn to_text(&self) -> String {
        render::text(self)
    }
}

/// Check a drained data directory, for the consumer group `group`.
pub fn check(dir: &DataDir, group: &str) -> Result<Report> {
    let stores = load::load(dir, group)?;
    Ok(analyse::analyse(&stores, dir.partitions))
}
