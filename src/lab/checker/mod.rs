//! The checker: after a run has drained, read all three stores and say, Jepsen-style, what was
//! lost, ghosted, redelivered, applied twice or applied out of order.
//!
//! ```text
//!   orders.db ──── committed orders, last_seq, request_id ─▶ what must exist (ground truth)
//!   log ────────── every record, streamed                   ─▶ copies, ghosts, placement
//!   consumer.db ── effects in apply order, points            ─▶ once / twice, order, balance
//! ```
//!
//! Expectations come from what cleanup never removes — committed orders and their `last_seq`,
//! and the `request_id` in `OrderPlaced` — never from outbox rows, which cleanup deletes. It
//! trusts nothing it checks: the log is read with CRCs verified, the databases read-only.
//! It streams: per event it keeps ~40 bytes (see `facts`), so a 10M-event run fits in a
//! few hundred MB. Exit status 0 only when nothing is lost, ghosted, applied twice, applied
//! without an event, out of order or pending, and every points balance is what orders earn.

mod analyse;
mod causes;
mod consumer;
mod describe;
mod facts;
mod keys;
mod log;
pub mod orders;
mod orders_pg;
mod render;

use crate::store::StoreConfig;
pub use causes::NO_CRASH_RECORDED;
pub use orders::{CommittedOrder, OrdersStore, OutboxRow, SqliteOrders};

use std::collections::BTreeMap;

use serde::Serialize;

use crate::consumer::schema::Counter;
use crate::datadir::DataDir;
use crate::error::Result;
use crate::lab::checker::consumer::ConsumerStore;
use crate::lab::checker::facts::Facts;

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
    /// Events the consumer parked (a rule refused them, or they wait behind one): not applied
    /// yet, waiting for `outbox-lab release`.
    pub parked: u64,
    /// Events released with `release --skip`: never applied, on purpose, and accounted for.
    pub skipped_events: u64,
    /// Effect rows whose event is not in the log at all (listed: the first few ids).
    pub unknown_effects: u64,
    pub unknown_effect_ids: Vec<String>,
    pub points_expected: i64,
    pub points_actual: i64,
    /// Customers whose balance is not what their committed orders earn.
    pub points_mismatched_customers: u64,
    /// The first [`LIST_AT_MOST`] lost events (`lost_count` counts them all).
    pub lost: Vec<Lost>,
    /// The first [`LIST_AT_MOST`] ghosts, in log order (`ghost_count` counts them all).
    pub ghost: Vec<Ghost>,
    /// Events with extra copies in the log (at most [`LIST_DUPLICATES`]).
    pub duplicated: Vec<Duplicate>,
}

/// How many duplicated events the report names (the counts cover them all).
pub const LIST_DUPLICATES: usize = 50;
/// How many lost events, ghosts and unknown effects the report names.
pub const LIST_AT_MOST: usize = 100;

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
            && self.unknown_effects == 0
            && self.parked == 0
            && self.points_balanced()
    }

    /// Every customer's balance is what their committed orders earn.
    pub fn points_balanced(&self) -> bool {
        self.points_mismatched_customers == 0 && self.points_expected == self.points_actual
    }

    pub fn to_text(&self) -> String {
        render::text(self)
    }
}

/// Check a drained data directory, for the consumer group `group`.
pub fn check(dir: &DataDir, group: &str) -> Result<Report> {
    let orders = open_orders(dir)?;
    check_with(dir, group, orders.as_ref())
}

/// The orders store the data directory was initialised with, read-only.
pub fn open_orders(dir: &DataDir) -> Result<Box<dyn OrdersStore>> {
    Ok(match &dir.store {
        StoreConfig::Sqlite => Box::new(SqliteOrders::open(&dir.orders_db())?),
        StoreConfig::Postgres(url) => Box::new(orders_pg::PgOrders::open(url)?),
    })
}

/// Check with any orders store (SQLite, or another behind [`OrdersStore`]).
pub fn check_with(dir: &DataDir, group: &str, store: &dyn OrdersStore) -> Result<Report> {
    let mut report = Report::default();
    let mut facts = Facts::load_orders(store)?;
    report.committed_orders = facts.orders.len() as u64;
    let consumer = ConsumerStore::open(dir, group)?;
    log::scan(dir, &consumer.offsets, &mut facts, &mut report)?;
    analyse::ghosts(&mut facts, store, &mut report)?;
    analyse::log_order(&facts, &mut report);
    facts.sort_by_key();
    let held = consumer.held()?;
    report.parked = held.parked.len() as u64;
    analyse::held(&mut facts, &held);
    consumer.each_effect(|row| {
        analyse::effect(&mut facts, &row, &mut report);
        Ok(())
    })?;
    analyse::applications(&facts, &mut report);
    let duplicated = analyse::duplicated(&facts, &mut report);
    describe::duplicates(dir, &facts, &duplicated, &mut report);
    let unpublished = unpublished_seqs(store, &mut facts)?;
    let lost = analyse::lost_and_pending(&mut facts, &unpublished, &mut report);
    analyse::points(&facts, &consumer.points_by_customer()?, &mut report);
    consumer_counters(&consumer, &mut report)?;
    report.lost = describe::lost(&facts, store, &lost)?;
    report.ghost = describe::ghosts(dir, &facts, store)?;
    Ok(report)
}

/// (aggregate, seq) of every outbox row not yet published, sorted.
fn unpublished_seqs(store: &dyn OrdersStore, facts: &mut Facts) -> Result<Vec<(i64, u32)>> {
    let mut out = Vec::new();
    store.each_outbox_row(true, &mut |row| {
        let seq = u32::try_from(row.aggregate_seq).unwrap_or(0);
        out.push((facts.keys.aggregate(row.aggregate_id), seq));
        Ok(())
    })?;
    out.sort_unstable();
    Ok(out)
}

/// The consumer's own counters, for the report's account of copies it absorbed.
fn consumer_counters(consumer: &ConsumerStore, report: &mut Report) -> Result<()> {
    let skipped = consumer.counter(Counter::SkippedDuplicate)?;
    report.consumer_skipped_duplicates = skipped;
    report.consumer_dropped_by_seq_guard = consumer.counter(Counter::DroppedBySeqGuard)?;
    report.consumer_too_old_for_inbox = consumer.counter(Counter::TooOldForInbox)?;
    report.inbox_swept = consumer.counter(Counter::InboxSwept)?;
    report.consumer_seq_gaps = consumer.counter(Counter::SeqGap)?;
    // Skips beyond the log's extra copies: records seen again after the consumer's own crash.
    report.consumer_redeliveries = skipped.saturating_sub(report.redelivered);
    Ok(())
}
