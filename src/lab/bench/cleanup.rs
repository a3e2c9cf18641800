//! `bench cleanup`: what does cleanup cost the order write path?
//!
//! ```text
//!   per strategy (batched-delete on the single table, drop-segments on the partitioned one):
//!     bulk: old_rows published rows, published two days ago (retention: one day)
//!     warm-up: WARM_UP_ORDERS orders, not timed (cold caches, the first checkpoint)
//!     rounds × { phase "none":    orders/rounds orders, one at a time, timing each  ── baseline
//!                phase "running": the same, while a cleanup thread removes old rows }
//! ```
//!
//! The phases alternate, round after round, so that a slow minute of this shared machine
//! lands on both: a p99 from one long phase against another measured later proved to swing
//! more (0.5× to 2.4×, same settings) than cleanup moved it.
//!
//! Each order is the real service's transaction (`BEGIN IMMEDIATE`, order + outbox row,
//! `COMMIT` with synchronous=FULL). Cleanup competes for the one write lock; a writer that
//! finds it taken naps and retries (`db::BUSY_NAP_US`) — so what shows up in the p99 is the
//! cleanup's transactions, as often as its lock budget lets them run. The
//! cleaner is a thread with its own connection here; in production it would be the relay
//! (`relay --cleanup-every-ms`) or a cron'd `outbox-lab cleanup`: the lock is the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde_json::json;

use crate::clock::now_us;
use crate::datadir::DataDir;
use crate::db::{self, Synchronous};
use crate::error::{Context, Result};
use crate::lab::bench::build::{EventIds, Filler};
use crate::lab::bench::{Report, Steps, Table, TempDir, percentile};
use crate::order::{Mode, OrderService, generate};
use crate::outbox::cleanup::{self, CleanupConfig, CleanupReport, Pacer};
use crate::outbox::segments;

#[derive(Debug, Clone)]
pub struct CleanupParams {
    pub dir: std::path::PathBuf,
    pub old_rows: u64,
    pub orders: u64,
    /// Orders per second the writer is paced at: a service has gaps between orders, and a
    /// writer looping flat out would starve any cleaner (and so measure nothing).
    pub orders_per_s: u64,
    pub segment_rows: i64,
    pub cleanup: CleanupConfig,
    /// Alternations of the two phases; `orders` are split over them.
    pub rounds: u64,
    pub keep: bool,
}

/// Orders placed (not timed) before the first phase.
const WARM_UP_ORDERS: u64 = 300;

struct Phase {
    strategy: &'static str,
    phase: &'static str,
    latencies_us: Vec<u64>,
    elapsed_s: f64,
    cleaner: Option<Cleaner>,
}

#[derive(Debug, Default)]
struct Cleaner {
    report: CleanupReport,
    /// How long the cleaner had work, out of the write phases.
    busy_s: f64,
}

impl Cleaner {
    /// Sum the rounds' cleaners into one.
    fn add(&mut self, other: Cleaner) {
        let (r, o) = (&mut self.report, other.report);
        r.strategy = o.strategy;
        r.batches += o.batches;
        r.rows_deleted += o.rows_deleted;
        r.segments_dropped += o.segments_dropped;
        r.longest_tx_us = r.longest_tx_us.max(o.longest_tx_us);
        r.finished = o.finished;
        self.busy_s += other.busy_s;
    }
}

pub fn run(p: &CleanupParams) -> Result<Report> {
    assert!(p.orders >= 1, "orders must be at least 1");
    let load_at_start = crate::lab::bench::load_average();
    let mut steps = Steps::default();
    let mut phases = Vec::new();
    for partitioned in [false, true] {
        phases.extend(run_strategy(p, partitioned, &mut steps)?);
    }
    let mut table = Table::new(&[
        "strategy",
        "cleanup",
        "orders",
        "orders/s",
        "p50 µs",
        "p99 µs",
        "max µs",
        "p99 / none",
        "rows removed",
        "cleanup txs",
        "longest tx µs",
        "cleaner busy s",
    ]);
    let mut results = Vec::new();
    let mut baseline_p99 = 0;
    for ph in &mut phases {
        let (p50, p99, max) = (
            percentile(&mut ph.latencies_us, 50.0),
            percentile(&mut ph.latencies_us, 99.0),
            percentile(&mut ph.latencies_us, 100.0),
        );
        if ph.cleaner.is_none() {
            baseline_p99 = p99;
        }
        let ratio = p99 as f64 / baseline_p99.max(1) as f64;
        let rate = ph.latencies_us.len() as f64 / ph.elapsed_s;
        let c = ph.cleaner.as_ref();
        let r = c.map(|c| &c.report);
        let cell = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        table.push(vec![
            ph.strategy.into(),
            ph.phase.into(),
            ph.latencies_us.len().to_string(),
            format!("{rate:.0}"),
            p50.to_string(),
            p99.to_string(),
            max.to_string(),
            format!("{ratio:.2}"),
            cell(r.map(|r| r.rows_deleted)),
            cell(r.map(|r| r.batches)),
            cell(r.map(|r| r.longest_tx_us)),
            c.map_or("-".into(), |c| format!("{:.2}", c.busy_s)),
        ]);
        results.push(
            json!({ "strategy": ph.strategy, "phase": ph.phase, "orders": ph.latencies_us.len(),
            "orders_per_s_achieved": rate, "p50_us": p50, "p99_us": p99, "max_us": max, "p99_vs_none": ratio,
            "write_phase_s": ph.elapsed_s, "cleanup": r, "cleaner_busy_s": c.map(|c| c.busy_s) }),
        );
    }
    Ok(Report {
        bench: "cleanup",
        title: format!(
            "bench cleanup: order write path (one order per tx, synchronous=FULL) with and without cleanup of {} old published rows",
            p.old_rows
        ),
        tables: vec![(String::new(), table)],
        results: results.into(),
        params: json!({ "old_rows": p.old_rows, "orders": p.orders, "orders_per_s": p.orders_per_s, "segment_rows": p.segment_rows,
            "rounds": p.rounds, "warm_up_orders": WARM_UP_ORDERS, "retention_ms": p.cleanup.retention_ms, "batch_rows": p.cleanup.batch_rows,
            "pause_ms": p.cleanup.pause_ms, "max_lock_share_pct": p.cleanup.max_lock_share_pct }),
        steps,
        load_at_start,
        notes: vec![
            "target: p99 with cleanup within 1.2x of p99 without".into(),
            "cleaner busy s < the write phase means cleanup ran out of old rows before the orders were done".into(),
        ],
    })
}

fn run_strategy(p: &CleanupParams, partitioned: bool, steps: &mut Steps) -> Result<Vec<Phase>> {
    let strategy = if partitioned {
        "drop-segments"
    } else {
        "batched-delete"
    };
    let tmp = TempDir::new(&p.dir, &format!("cleanup-{strategy}"))?.keep(p.keep);
    let root = tmp.path();
    let data = DataDir::init(&root.join("data"), crate::broker::DEFAULT_PARTITIONS)?;
    if partitioned {
        // FULL: a one-off layout change; nothing to gain from weaker durability.
        let mut conn = db::open(&data.orders_db(), Synchronous::Full)?;
        segments::create_layout(&mut conn, p.segment_rows)?;
    }
    let two_days_ago_us = now_us() - 2 * 86_400_000_000;
    steps.time(
        format!(
            "{strategy}: bulk {} old published rows (random event ids)",
            p.old_rows
        ),
        || {
            let mut filler = Filler::open(&data.orders_db())?;
            filler.fill(
                p.old_rows,
                two_days_ago_us,
                Some(two_days_ago_us),
                EventIds::Random,
            )?;
            filler
                .connection()
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .ctx("checkpointing")
        },
    )?;
    let mut service = OrderService::open(&data, Mode::Outbox)?;
    place(&mut service, 0, WARM_UP_ORDERS, p.orders_per_s)?;
    let per_round = (p.orders / p.rounds.max(1)).max(1);
    let mut none = (Vec::new(), 0.0);
    let mut cleaning = (Vec::new(), 0.0);
    let mut cleaner = Cleaner::default();
    // One pacer for all rounds: the lock budget is over time, not per round.
    let mut pacer = Pacer::sleeping();
    for round in 0..p.rounds.max(1) {
        let first = WARM_UP_ORDERS + 2 * round * per_round;
        let quiet = steps.time(
            format!("{strategy}: round {round}: {per_round} orders, no cleanup"),
            || place(&mut service, first, per_round, p.orders_per_s),
        )?;
        none.0.extend(quiet.0);
        none.1 += quiet.1;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = spawn_cleaner(&data, p.cleanup.clone(), Arc::clone(&stop), pacer);
        let busy = steps.time(
            format!("{strategy}: round {round}: {per_round} orders, cleanup running"),
            || place(&mut service, first + per_round, per_round, p.orders_per_s),
        );
        stop.store(true, Ordering::Relaxed);
        let (this_round, owed) = thread.join().expect("cleaner thread panicked")?;
        cleaner.add(this_round);
        pacer = owed;
        let busy = busy?;
        cleaning.0.extend(busy.0);
        cleaning.1 += busy.1;
    }
    drop(service);
    Ok(vec![
        Phase {
            strategy,
            phase: "none",
            latencies_us: none.0,
            elapsed_s: none.1,
            cleaner: None,
        },
        Phase {
            strategy,
            phase: "running",
            latencies_us: cleaning.0,
            elapsed_s: cleaning.1,
            cleaner: Some(cleaner),
        },
    ])
}

/// Place `count` generated orders, one every 1/`orders_per_s` s (no catching up in bursts:
/// a late order just goes at once); per-order latency and the phase's seconds.
fn place(
    service: &mut OrderService,
    first: u64,
    count: u64,
    orders_per_s: u64,
) -> Result<(Vec<u64>, f64)> {
    assert!(orders_per_s > 0, "orders_per_s must be positive");
    let interval = std::time::Duration::from_secs_f64(1.0 / orders_per_s as f64);
    let mut latencies_us = Vec::with_capacity(count as usize);
    let started = Instant::now();
    for (i, request) in generate(7, first, count).into_iter().enumerate() {
        let due = started + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let t = Instant::now();
        service.place(&request)?;
        latencies_us.push(t.elapsed().as_micros() as u64);
    }
    Ok((latencies_us, started.elapsed().as_secs_f64()))
}

/// Cleanup runs back to back until there is nothing left or `stop` is set.
fn spawn_cleaner(
    data: &DataDir,
    config: CleanupConfig,
    stop: Arc<AtomicBool>,
    mut pacer: Pacer,
) -> std::thread::JoinHandle<Result<(Cleaner, Pacer)>> {
    let path = data.orders_db();
    std::thread::spawn(move || {
        // NORMAL: as `outbox-lab cleanup` runs; a lost cleanup is simply redone.
        let mut conn = db::open(&path, Synchronous::Normal)?;
        let started = Instant::now();
        let mut total = Cleaner::default();
        const MAX_RUNS: u32 = 1_000;
        for _ in 0..MAX_RUNS {
            let r = cleanup::run_paced(&mut conn, &config, now_us(), &stop, &mut pacer)?;
            total.report.strategy = r.strategy;
            total.report.batches += r.batches;
            total.report.rows_deleted += r.rows_deleted;
            total.report.segments_dropped += r.segments_dropped;
            total.report.longest_tx_us = total.report.longest_tx_us.max(r.longest_tx_us);
            if r.rows_deleted == 0 || stop.load(Ordering::Relaxed) {
                break;
            }
        }
        total.busy_s = started.elapsed().as_secs_f64();
        total.report.finished = !stop.load(Ordering::Relaxed);
        Ok((total, pacer))
    })
}
