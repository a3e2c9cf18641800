//! The order write path with cleanup running vs not, on PostgreSQL: p50/p99 of `place()`
//! while a cleaner drops old partitions (detach CONCURRENTLY, then DROP) or deletes old rows
//! in batches, against a phase with no cleaner — same database shape, same writer pace.
//!
//! ```text
//!   per run: fresh database · old_rows published 2 days ago (old partitions) ·
//!            writer: `orders` orders at `rate`/s  ‖  cleaner: loop until the writer is done
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::datadir::DataDir;
use crate::error::Result;
use crate::lab::bench::pg::scratch;
use crate::lab::bench::pg::{PgBench, fill, fill_report};
use crate::lab::bench::{Report, Steps, Table, load_average, percentile, rotated};
use crate::order::{Mode, generate};
use crate::outbox::cleanup::{CleanupConfig, CleanupReport};
use crate::store::{open_orders, pg};

pub struct CleanupParams {
    pub dir: std::path::PathBuf,
    pub old_rows: i64,
    pub partition_rows: i64,
    pub orders: u64,
    pub orders_per_s: u64,
    pub batch_rows: usize,
    pub rounds: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cleaner {
    None,
    DropPartitions,
    DeleteBatches,
}

impl Cleaner {
    fn name(self) -> &'static str {
        match self {
            Cleaner::None => "no cleanup",
            Cleaner::DropPartitions => "drop partitions",
            Cleaner::DeleteBatches => "batched deletes",
        }
    }
}

const CLEANERS: [Cleaner; 3] = [
    Cleaner::None,
    Cleaner::DropPartitions,
    Cleaner::DeleteBatches,
];

struct RunResult {
    latencies_us: Vec<u64>,
    cleanup: CleanupReport,
}

pub fn run(params: &CleanupParams, bench: &mut PgBench) -> Result<Report> {
    let load_before = load_average();
    let mut steps = Steps::default();
    let mut runs: Vec<Vec<RunResult>> = CLEANERS.iter().map(|_| Vec::new()).collect();
    for round in 0..params.rounds {
        for cleaner in rotated(&CLEANERS, round) {
            let slot = CLEANERS.iter().position(|c| *c == cleaner).unwrap();
            let result = steps.time(format!("round {round}: {}", cleaner.name()), || {
                one_run(params, bench, cleaner)
            })?;
            runs[slot].push(result);
        }
    }
    let mut table = Table::new(&[
        "cleaner",
        "place p50 µs",
        "place p99 µs",
        "p99 vs none",
        "place max µs",
        "rows removed",
        "partitions dropped",
    ]);
    let mut results = Vec::new();
    let mut baseline_p99 = 0;
    for (cleaner, runs) in CLEANERS.iter().zip(&runs) {
        let mut all: Vec<u64> = runs.iter().flat_map(|r| r.latencies_us.clone()).collect();
        let (p50, p99, max) = (
            percentile(&mut all, 50.0),
            percentile(&mut all, 99.0),
            percentile(&mut all, 100.0),
        );
        if *cleaner == Cleaner::None {
            baseline_p99 = p99;
        }
        let removed: u64 = runs.iter().map(|r| r.cleanup.rows_deleted).sum();
        let dropped: u64 = runs.iter().map(|r| r.cleanup.segments_dropped).sum();
        let ratio = p99 as f64 / baseline_p99.max(1) as f64;
        table.push(vec![
            cleaner.name().into(),
            p50.to_string(),
            p99.to_string(),
            format!("{ratio:.2}×"),
            max.to_string(),
            removed.to_string(),
            dropped.to_string(),
        ]);
        results.push(json!({ "cleaner": cleaner.name(), "p50_us": p50, "p99_us": p99, "max_us": max,
                             "p99_ratio": ratio, "rows_removed": removed, "partitions_dropped": dropped }));
    }
    let mut report = Report::new(
        "postgres-cleanup",
        format!(
            "PostgreSQL write path with cleanup: {} orders at {}/s per run, {} old published rows in partitions of {}, {} rounds",
            params.orders,
            params.orders_per_s,
            params.old_rows,
            params.partition_rows,
            params.rounds
        ),
        json!({ "old_rows": params.old_rows, "partition_rows": params.partition_rows,
                        "orders": params.orders, "rate": params.orders_per_s,
                        "batch_rows": params.batch_rows, "rounds": params.rounds }),
    );
    fill_report(&mut report, bench, &load_before, table, results, steps);
    report
        .notes
        .extend(["place = one transaction (order row + outbox row), synchronous_commit=on".into()]);
    Ok(report)
}

fn one_run(params: &CleanupParams, bench: &mut PgBench, cleaner: Cleaner) -> Result<RunResult> {
    let root = scratch(&params.dir, "pg-cleanup")?;
    let (data, url) = bench.data_dir(&root, "cleanup", Some(params.partition_rows))?;
    let two_days_ago_us = crate::clock::now_us() - 2 * 86_400_000_000;
    fill(
        &url,
        params.old_rows,
        two_days_ago_us,
        Some(two_days_ago_us),
    )?;
    let done = Arc::new(AtomicBool::new(false));
    let config = CleanupConfig {
        retention_ms: 86_400_000,
        batch_rows: params.batch_rows,
        max_batches: 1_000_000,
        ..CleanupConfig::default()
    };
    let cleaner_thread = {
        let (url, done) = (url.clone(), Arc::clone(&done));
        std::thread::spawn(move || clean_until(&url, cleaner, &config, &done))
    };
    let latencies_us = write_at_pace(&data, params);
    done.store(true, Ordering::Relaxed);
    let cleanup = cleaner_thread
        .join()
        .expect("the cleaner thread panicked")?;
    let latencies_us = latencies_us?;
    bench.drop_database("cleanup")?;
    std::fs::remove_dir_all(&root).ok();
    Ok(RunResult {
        latencies_us,
        cleanup,
    })
}

/// Place `orders` orders at `orders_per_s`, timing each `place()`.
fn write_at_pace(data: &DataDir, params: &CleanupParams) -> Result<Vec<u64>> {
    let mut service = open_orders(data, Mode::Outbox)?;
    let gap = Duration::from_secs_f64(1.0 / params.orders_per_s.max(1) as f64);
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(params.orders as usize);
    for (i, request) in generate(7, 0, params.orders).into_iter().enumerate() {
        let due = started + gap * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let t = Instant::now();
        service.place(&request)?;
        latencies.push(t.elapsed().as_micros() as u64);
    }
    Ok(latencies)
}

/// Run the cleaner over and over until `done`; the sum of its reports.
fn clean_until(
    url: &str,
    cleaner: Cleaner,
    config: &CleanupConfig,
    done: &AtomicBool,
) -> Result<CleanupReport> {
    let mut total = CleanupReport::default();
    if cleaner == Cleaner::None {
        return Ok(total);
    }
    let mut client = pg::connect(url, pg::DEFAULT_IDLE_IN_TX_MS)?;
    let stop = AtomicBool::new(false);
    while !done.load(Ordering::Relaxed) {
        let now_us = crate::clock::now_us();
        let report = match cleaner {
            Cleaner::DropPartitions => {
                pg::cleanup::drop_partitions(&mut client, config, now_us, &stop)?
            }
            Cleaner::DeleteBatches => {
                let one = CleanupConfig {
                    max_batches: 1,
                    ..config.clone()
                };
                pg::cleanup::delete_batches(&mut client, &one, now_us, &stop)?
            }
            Cleaner::None => unreachable!("returned above"),
        };
        total.strategy = report.strategy;
        total.batches += report.batches;
        total.rows_deleted += report.rows_deleted;
        total.segments_dropped += report.segments_dropped;
        total.longest_tx_us = total.longest_tx_us.max(report.longest_tx_us);
        // The pause between batches/partitions: waiting writers get the machine.
        crate::wake::sleep_unless_stopped(done, config.pause_ms);
    }
    Ok(total)
}
