//! `bench consume`: events/s through the real consumer, one transaction per record vs per batch.
//!
//! ```text
//!   template: a backlog of `events` orders, shipped to the log by the real relay (once)
//!   per run:  copy the template ─▶ consumer::run(until_idle, batch = 1 | 10 | 100 | 1000)
//!             events/s = records applied / wall time       (consumer.db at synchronous=FULL)
//! ```
//!
//! Batch 1 is the consumer as it was: one `synchronous=FULL` transaction, so one fsync and one
//! hand-off of SQLite's single write lock, per record. Four partition workers share that lock,
//! so the batch is what moves the figure, not the worker count.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde_json::json;

use super::relay::{build_backlog, copy_tree};
use super::{Report, Spread, Table, TempDir, rotated};
use crate::consumer::{self, ConsumerConfig};
use crate::datadir::DataDir;
use crate::error::{Error, Result};
use crate::relay::{Relay, RelayConfig};

pub const MAX_EVENTS: u64 = 5_000_000;
pub const MAX_ROUNDS: usize = 50;
const BATCHES: [usize; 4] = [1, 10, 100, 1_000];

#[derive(Debug, Clone)]
pub struct ConsumeBench {
    pub events: u64,
    pub rounds: usize,
    pub seed: u64,
    pub scratch: std::path::PathBuf,
}

pub fn run(bench: &ConsumeBench) -> Result<Report> {
    assert!(
        (1..=MAX_EVENTS).contains(&bench.events),
        "events out of range"
    );
    assert!(
        (1..=MAX_ROUNDS).contains(&bench.rounds),
        "rounds out of range"
    );
    let mut report = Report::new(
        "consume",
        format!(
            "bench consume: {} events in the log, consume --until-idle, {} rounds, synchronous=FULL",
            bench.events, bench.rounds
        ),
        json!({ "events": bench.events, "rounds": bench.rounds, "seed": bench.seed,
                "partitions": crate::broker::DEFAULT_PARTITIONS }),
    );
    let template = TempDir::new(&bench.scratch, "consume-template")?;
    report
        .steps
        .time(format!("{} events into the log", bench.events), || {
            build_backlog(template.path(), bench.events, bench.seed)?;
            ship(template.path())
        })?;
    let mut events_per_s: Vec<Vec<f64>> = vec![Vec::new(); BATCHES.len()];
    for round in 0..bench.rounds {
        for i in rotated(&[0, 1, 2, 3], round) {
            let rate = report
                .steps
                .time(format!("round {round}: batch {}", BATCHES[i]), || {
                    run_once(template.path(), BATCHES[i], bench)
                })?;
            events_per_s[i].push(rate);
        }
    }
    let mut table = Table::new(&["records per tx", "events/s", "× batch 1"]);
    let mut rows = Vec::new();
    let one = Spread::of(&events_per_s[0]).median;
    for (batch, samples) in BATCHES.iter().zip(&events_per_s) {
        let rate = Spread::of(samples);
        table.push(vec![
            batch.to_string(),
            rate.show(0),
            format!("{:.1}", rate.median / one),
        ]);
        rows.push(json!({ "batch": batch, "events_per_s": rate, "by_round": samples }));
    }
    report.tables.push((String::new(), table));
    report.results = rows.into();
    Ok(report)
}

/// The real relay, in this process, until the outbox is empty.
fn ship(root: &Path) -> Result<()> {
    let data = DataDir::open(root)?;
    let config = RelayConfig {
        batch: 1_000,
        ..RelayConfig::default()
    };
    Relay::open(&data, config)?.run(&AtomicBool::new(false), true)?;
    Ok(())
}

fn run_once(template: &Path, batch: usize, bench: &ConsumeBench) -> Result<f64> {
    let tmp = TempDir::new(&bench.scratch, "consume-run")?;
    let root = tmp.path().join("data");
    copy_tree(template, &root)?;
    let data = DataDir::open(&root)?;
    let config = ConsumerConfig {
        until_idle: true,
        batch,
        ..ConsumerConfig::default()
    };
    let started = Instant::now();
    let totals = consumer::run(&data, &config, Arc::new(AtomicBool::new(false)))?;
    let elapsed_s = started.elapsed().as_secs_f64();
    if totals.applied != bench.events {
        return Err(Error::Input(format!(
            "the consumer applied {} of {} events: the benchmark's log is not what it built",
            totals.applied, bench.events
        )));
    }
    Ok(totals.applied as f64 / elapsed_s)
}
