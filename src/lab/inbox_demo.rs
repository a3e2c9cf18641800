//! The inbox retention story, told by running it: what `cargo run --example inbox_retention`
//! prints, kept in the library so that the tests check the very same text.
//!
//! ```text
//!   act 1 (seq guard off)                      act 2 (seq guard on), a fresh directory
//!   t+0h   3 orders placed, relayed, applied    same
//!   t+1h   zombie re-appends order 1: SKIPPED   same
//!   t+25h  sweep (retention 24h): inbox empty   same
//!   t+25h  zombie re-appends order 1 again:     ─▶ DROPPED by the seq guard
//!          APPLIED AGAIN, points inflated          points untouched, verdict OK
//!   act 3: a consumer whose retention is shorter than its redelivery horizon refuses to start
//! ```
//!
//! Everything is real: the orders go through the order service and the outbox, a relay ships
//! them, the late duplicate is a copy of a record appended to the log with
//! [`Broker::append_durable`] (exactly what a relay that lost its lease does), and the consumer
//! that applies or skips it is [`consumer::run`]. Only time is fake: the consumer and the sweep
//! run on a [`Clock`] shifted by hours, so nothing sleeps and parallel tests don't interfere.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use rusqlite::Connection;
use serde::Serialize;

use crate::broker::{self, Broker};
use crate::clock::{Clock, MS_PER_HOUR, US_PER_MS};
use crate::consumer::retention::{self, fmt_ms};
use crate::consumer::{self, ConsumerConfig, ConsumerTotals, RedeliveryHorizon, Retention};
use crate::datadir::DataDir;
use crate::db::{self, Synchronous};
use crate::error::{Context, Error, Result};
use crate::event::Event;
use crate::lab::checker;
use crate::order::{Mode, OrderService, generate};
use crate::relay::{Relay, RelayConfig};

const ORDERS: u64 = 3;
const SEED: u64 = 6;
const LATE_HOURS: i64 = 25;

/// What one act showed, for tests to check beside the text.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ActSummary {
    pub seq_guard: bool,
    pub inside_window: ConsumerTotals,
    pub swept_rows: u64,
    pub late: ConsumerTotals,
    pub applied_twice: u64,
    pub points_before: i64,
    pub points_after: i64,
    pub verdict_ok: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DemoSummary {
    pub without_guard: ActSummary,
    pub with_guard: ActSummary,
    pub refusal: String,
}

/// The demo's inbox policy: keep 24h, promise to tolerate 12h of downtime.
pub fn demo_retention(retention_ms: u64) -> Retention {
    Retention {
        retention_ms,
        horizon: RedeliveryHorizon {
            relay_lease_ms: 5_000,
            relay_retry_ms: 60_000,
            tolerated_downtime_ms: 12 * MS_PER_HOUR,
        },
        batch_rows: 2, // tiny, so even three rows take several transactions
        max_batches: 100,
        pause_between_batches_ms: 0,
    }
}

/// Run all three acts under `root` (two fresh data directories), narrating to `out`.
pub fn run(root: &Path, out: &mut dyn Write) -> Result<DemoSummary> {
    let say = |out: &mut dyn Write, text: String| -> Result<()> {
        writeln!(out, "{text}").ctx("writing the demo's output")
    };
    let policy = demo_retention(24 * MS_PER_HOUR);
    say(
        out,
        format!(
            "inbox retention {} >= redelivery horizon {} (relay lease {} + retry {} + tolerated downtime {})",
            fmt_ms(policy.retention_ms),
            fmt_ms(policy.horizon.horizon_ms()),
            fmt_ms(policy.horizon.relay_lease_ms),
            fmt_ms(policy.horizon.relay_retry_ms),
            fmt_ms(policy.horizon.tolerated_downtime_ms),
        ),
    )?;
    let without_guard = act(&root.join("guard-off"), false, &policy, out)?;
    let with_guard = act(&root.join("guard-on"), true, &policy, out)?;
    say(
        out,
        "\n== act 3: a window shorter than the horizon ==".into(),
    )?;
    let short = demo_retention(MS_PER_HOUR);
    let dir = DataDir::open(&root.join("guard-on"))?;
    let refusal = match consume(&dir, true, &short, 0) {
        Err(Error::Input(why)) => why,
        Err(e) => return Err(e),
        Ok(_) => panic!("a consumer with 1h retention and a 12h horizon must refuse to start"),
    };
    say(
        out,
        format!("consume --inbox-retention 1h: refused: {refusal}"),
    )?;
    Ok(DemoSummary {
        without_guard,
        with_guard,
        refusal,
    })
}

fn act(
    root: &Path,
    seq_guard: bool,
    policy: &Retention,
    out: &mut dyn Write,
) -> Result<ActSummary> {
    let mut line = |text: String| writeln!(out, "{text}").ctx("writing the demo's output");
    let on_off = if seq_guard { "on" } else { "off" };
    line(format!(
        "\n== act {}: seq guard {on_off} ==",
        1 + seq_guard as u8
    ))?;
    let dir = setup(root)?;
    let first = consume(&dir, seq_guard, policy, 0)?;
    let victim = first_record_of(&dir, "1")?;
    let customer = victim.payload["customer"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    let points_before = balance(&dir, &customer)?;
    line(format!(
        "t+0h   {ORDERS} orders placed, relayed, consumed: {} applied; order 1's customer {customer} has {points_before} points",
        first.applied
    ))?;

    zombie_append(&dir, &victim)?;
    let inside = consume(&dir, seq_guard, policy, 1)?;
    line(format!(
        "t+1h   a zombie relay re-appends order 1's {} (seq {}): consumer {}",
        victim.event_type,
        victim.aggregate_seq,
        outcome_words(&inside)
    ))?;

    let now_us = Clock::shifted(LATE_HOURS * MS_PER_HOUR as i64 * US_PER_MS).now_us();
    let swept = sweep(&dir, policy, now_us)?;
    line(format!(
        "t+{LATE_HOURS}h  inbox sweep (retention {}): deleted {} rows in {} transactions; inbox now {} rows",
        fmt_ms(policy.retention_ms),
        swept.deleted_rows,
        swept.batches,
        count(&dir, "SELECT count(*) FROM inbox")?
    ))?;

    zombie_append(&dir, &victim)?;
    let late = consume(&dir, seq_guard, policy, LATE_HOURS)?;
    let points_after = balance(&dir, &customer)?;
    line(format!(
        "t+{LATE_HOURS}h  the zombie re-appends it once more (a very late duplicate): consumer {}",
        outcome_words(&late)
    ))?;
    line(format!(
        "       flagged too old to dedupe by inbox: {}; {customer}'s points: {points_before} -> {points_after}",
        late.too_old_for_inbox
    ))?;

    let report = checker::check(&dir, "points")?;
    line(format!(
        "verify: applied twice {}, points balance {} (committed orders say {}), verdict {}",
        report.applied_twice,
        report.points_actual,
        report.points_expected,
        if report.ok() { "OK" } else { "FAILED" }
    ))?;
    Ok(ActSummary {
        seq_guard,
        inside_window: inside,
        swept_rows: swept.deleted_rows,
        late,
        applied_twice: report.applied_twice,
        points_before,
        points_after,
        verdict_ok: report.ok(),
    })
}

fn outcome_words(totals: &ConsumerTotals) -> &'static str {
    match (
        totals.applied,
        totals.skipped_duplicates,
        totals.dropped_by_seq_guard,
    ) {
        (0, 1, 0) => "SKIPPED it (its event id is still in the inbox)",
        (1, 0, 0) => "APPLIED it AGAIN (its inbox row was swept)",
        (0, 0, 1) => "DROPPED it (seq guard: seq 1 is not newer than order 1's last applied seq 1)",
        _ => "did something unexpected (see the counters)",
    }
}

/// A fresh data directory with ORDERS orders placed and relayed.
fn setup(root: &Path) -> Result<DataDir> {
    let _ = std::fs::remove_dir_all(root);
    let dir = DataDir::init(root, broker::DEFAULT_PARTITIONS)?;
    let mut service = OrderService::open(&dir, Mode::Outbox)?;
    for request in generate(SEED, 0, ORDERS) {
        service.place(&request)?;
    }
    let config = RelayConfig {
        name: "relay-1".into(),
        poll_ms: 10,
        ..RelayConfig::default()
    };
    Relay::open(&dir, config)?.run(&AtomicBool::new(false), true)?;
    Ok(dir)
}

/// Drain the log with a consumer living `hours_later` hours ahead.
fn consume(
    dir: &DataDir,
    seq_guard: bool,
    policy: &Retention,
    hours_later: i64,
) -> Result<ConsumerTotals> {
    let config = ConsumerConfig {
        until_idle: true,
        seq_guard,
        retention: Some(*policy),
        clock: Clock::shifted(hours_later * MS_PER_HOUR as i64 * US_PER_MS),
        ..ConsumerConfig::default()
    };
    consumer::run(dir, &config, Arc::new(AtomicBool::new(false)))
}

fn sweep(dir: &DataDir, policy: &Retention, now_us: i64) -> Result<retention::SweepReport> {
    // NORMAL: as the consumer's sweeper; a lost delete is redone by the next sweep.
    let mut conn = db::open(&dir.consumer_db(), Synchronous::Normal)?;
    retention::sweep(&mut conn, policy, now_us)
}

/// The first record in the log for aggregate `aggregate_id`.
fn first_record_of(dir: &DataDir, aggregate_id: &str) -> Result<Event> {
    let partition = broker::partition_of(aggregate_id, dir.partitions);
    let path = broker::log_path(&dir.broker_dir(), partition);
    for raw in broker::scan(&path)?.records {
        let event: Event = serde_json::from_slice(&raw.json).map_err(|e| Error::Corrupt {
            file: path.clone(),
            offset_bytes: raw.offset_bytes,
            reason: format!("record is not an event: {e}"),
        })?;
        if event.aggregate_id == aggregate_id {
            return Ok(event);
        }
    }
    Err(Error::Input(format!(
        "no record for order {aggregate_id} in {}",
        path.display()
    )))
}

/// What a relay that lost its lease does: append its (now stale) copy, durably.
pub fn zombie_append(dir: &DataDir, original: &Event) -> Result<()> {
    let copy = Event {
        relay: "zombie-relay".into(),
        attempt: original.attempt + 1,
        ..original.clone()
    };
    let json = serde_json::to_vec(&copy).expect("an event serialises");
    let partition = broker::partition_of(&copy.aggregate_id, dir.partitions);
    Broker::open(&dir.broker_dir(), dir.partitions)?.append_durable(partition, &[&json])?;
    Ok(())
}

fn balance(dir: &DataDir, customer: &str) -> Result<i64> {
    let conn = Connection::open(dir.consumer_db()).ctx("opening consumer.db")?;
    conn.query_row(
        "SELECT coalesce(sum(balance), 0) FROM points WHERE customer = ?1",
        [customer],
        |r| r.get(0),
    )
    .ctx("reading a points balance")
}

fn count(dir: &DataDir, sql: &str) -> Result<i64> {
    let conn = Connection::open(dir.consumer_db()).ctx("opening consumer.db")?;
    conn.query_row(sql, [], |r| r.get(0))
        .ctx(format!("running `{sql}`"))
}
