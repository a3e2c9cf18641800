//! `bench relay`: events/s through the real relay, over a pre-built backlog, and where a pass
//! spends its time.
//!
//! ```text
//!   template: init + ONE transaction inserting `backlog` orders and their outbox rows
//!   per run:  copy the template ─▶ K relay threads (Relay::run, until empty or run_ms) ─▶ count
//!             events/s = rows marked / wall time;   per pass: claim │ append │ sync │ mark µs
//!   the floor: the bare relay of `floor.rs` over the same backlog; every variant ÷ floor
//!   fdatasync alone: write a batch's bytes to 1 or 4 partitions, then sync in turn / in parallel
//! ```
//!
//! Relays are threads here, not processes: each has its own SQLite connection and its own open
//! files, so the database's write lock and the log's `flock` serialise them exactly as they
//! serialise processes (flock belongs to the open file, not the process). The log is synced
//! before marking, as in production: the point of the table is what that costs.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Report, Spread, Table, TempDir, rotated};
use crate::broker::Broker;
use crate::datadir::DataDir;
use crate::db::{self, Synchronous};
use crate::error::{Context, Result};
use crate::event::ORDER_PLACED;
use crate::order::generate;
use crate::order::service::{insert_order, order_placed_payload};
use crate::relay::{Relay, RelayConfig, RelayTotals};

pub const MAX_BACKLOG: u64 = 10_000_000;
pub const MAX_RUN_MS: u64 = 600_000;
pub const MAX_ROUNDS: usize = 50;
/// fdatasync samples per variant per round.
const SYNC_SAMPLES: usize = 100;
/// Bytes of one record in the fdatasync test: about what an OrderPlaced record takes.
const RECORD_BYTES: usize = 330;

#[derive(Debug, Clone)]
pub struct RelayBench {
    pub backlog: u64,
    pub run_ms: u64,
    pub rounds: usize,
    pub seed: u64,
    /// Where the scratch data directories go.
    pub scratch: std::path::PathBuf,
}

/// How a variant makes its batches durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
    /// The bare relay of floor.rs: one file, one fdatasync per batch.
    Floor,
    /// The bare relay writing the partitions' files, synced at once: the relay's sync pattern
    /// without its claims, leases and per-order rule.
    FloorPartitioned,
    /// One partition after another.
    InTurn,
    /// A pass's partitions at once, on the syncer threads (the default).
    Parallel,
    /// In parallel, and overlapped with the next batch's claim and append.
    Overlap,
}

impl Sync {
    fn name(self) -> &'static str {
        match self {
            Sync::Floor => "one file",
            Sync::FloorPartitioned => "4 files, parallel",
            Sync::InTurn => "in turn",
            Sync::Parallel => "parallel",
            Sync::Overlap => "overlapped",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Config {
    batch: usize,
    relays: usize,
    sync: Sync,
}

impl Config {
    fn is_floor(&self) -> bool {
        matches!(self.sync, Sync::Floor | Sync::FloorPartitioned)
    }

    const fn new(batch: usize, relays: usize, sync: Sync) -> Config {
        Config {
            batch,
            relays,
            sync,
        }
    }
}

const CONFIGS: [Config; 13] = [
    Config::new(100, 1, Sync::Floor),
    Config::new(100, 1, Sync::FloorPartitioned),
    Config::new(1000, 1, Sync::Floor),
    Config::new(1, 1, Sync::Parallel),
    Config::new(10, 1, Sync::Parallel),
    Config::new(100, 1, Sync::InTurn),
    Config::new(100, 1, Sync::Parallel),
    Config::new(100, 1, Sync::Overlap),
    Config::new(1000, 1, Sync::Parallel),
    Config::new(1000, 1, Sync::Overlap),
    Config::new(100, 2, Sync::Parallel),
    Config::new(100, 4, Sync::Parallel),
    Config::new(100, 4, Sync::Overlap),
];

/// One run's outcome.
#[derive(Debug, Clone, Default)]
struct Run {
    events_per_s: f64,
    totals: RelayTotals,
}

pub fn run(bench: &RelayBench) -> Result<Report> {
    assert!(
        (1..=MAX_BACKLOG).contains(&bench.backlog),
        "backlog outside 1..={MAX_BACKLOG}"
    );
    assert!(
        (1..=MAX_RUN_MS).contains(&bench.run_ms),
        "run_ms outside 1..={MAX_RUN_MS}"
    );
    assert!(
        (1..=MAX_ROUNDS).contains(&bench.rounds),
        "rounds outside 1..={MAX_ROUNDS}"
    );
    let mut report = Report::new(
        "relay",
        format!(
            "bench relay: {} events waiting, each run ≤ {} ms, {} rounds, fdatasync before every mark",
            bench.backlog, bench.run_ms, bench.rounds
        ),
        json!({ "backlog_events": bench.backlog, "run_ms": bench.run_ms, "rounds": bench.rounds,
                "partitions": crate::broker::DEFAULT_PARTITIONS, "sync": "fdatasync before mark" }),
    );
    let template = TempDir::new(&bench.scratch, "relay-template")?;
    report
        .steps
        .time(format!("backlog of {}", bench.backlog), || {
            build_backlog(template.path(), bench.backlog, bench.seed)
        })?;
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); CONFIGS.len()];
    for round in 0..bench.rounds {
        let indices: Vec<usize> = (0..CONFIGS.len()).collect();
        for i in rotated(&indices, round) {
            let run = run_once(template.path(), CONFIGS[i], bench)?;
            runs[i].push(run);
        }
    }
    let (table, rows) = throughput_table(&runs);
    report.tables.push((String::new(), table));
    let (table, sync_rows) = fdatasync_table(&bench.scratch, bench.rounds)?;
    report.tables.push((
        format!("fdatasync alone ({SYNC_SAMPLES} passes of 100 × {RECORD_BYTES}-byte records per round):"),
        table,
    ));
    report.results = json!({ "variants": rows, "fdatasync": sync_rows });
    report.notes.push(
        "floor: one process, no lease, no per-order rule, one log file, one fdatasync per batch (src/lab/bench/floor.rs)".into(),
    );
    report
        .notes
        .push("÷ floor: median events/s over the floor's median at the same batch".into());
    Ok(report)
}

/// `init`, then every order with its outbox row in ONE transaction: a backlog in seconds
/// rather than minutes (one commit per order would take ~3k commits/s).
pub(super) fn build_backlog(dir: &Path, backlog: u64, seed: u64) -> Result<()> {
    let data = DataDir::init(dir, crate::broker::DEFAULT_PARTITIONS)?;
    // NORMAL: a template for benchmarks; one commit at the end, then a checkpoint.
    let mut conn = db::open(&data.orders_db(), Synchronous::Normal)?;
    let now_us = crate::clock::now_us();
    let layout = crate::outbox::Layout::of(&conn)?;
    db::write_tx(&mut conn, |tx| {
        for request in generate(seed, 0, backlog) {
            let order_id = insert_order(tx, &request, now_us)?;
            let payload = order_placed_payload(order_id, &request);
            let aggregate_id = order_id.to_string();
            crate::outbox::insert_event(
                tx,
                layout,
                &aggregate_id,
                1,
                ORDER_PLACED,
                &payload,
                now_us,
            )?;
        }
        Ok(())
    })?;
    // Fold the WAL into orders.db so that copying the file copies the whole backlog.
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .ctx("checkpointing the backlog template")
}

fn run_once(template: &Path, config: Config, bench: &RelayBench) -> Result<Run> {
    let run_ms = bench.run_ms;
    let tmp = TempDir::new(&bench.scratch, "relay-run")?;
    let root = tmp.path().join("data");
    copy_tree(template, &root)?;
    if config.is_floor() {
        let files = match config.sync {
            Sync::Floor => 1,
            _ => crate::broker::DEFAULT_PARTITIONS,
        };
        return run_floor(&root, config.batch, files, run_ms);
    }
    let data = DataDir::open(&root)?;
    let relays = (0..config.relays)
        .map(|i| Relay::open(&data, relay_config(config, i)))
        .collect::<Result<Vec<_>>>()?;
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let results: Vec<Result<RelayTotals>> = std::thread::scope(|scope| {
        let handles: Vec<_> = relays
            .into_iter()
            .map(|mut relay| {
                let stop = &stop;
                scope.spawn(move || relay.run(stop, true))
            })
            .collect();
        // The time limit: stop the relays after run_ms even if the backlog is not drained.
        let deadline = started + Duration::from_millis(run_ms);
        while Instant::now() < deadline && !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(2));
        }
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().expect("relay thread panicked"))
            .collect()
    });
    let elapsed_s = started.elapsed().as_secs_f64();
    let mut totals = RelayTotals::default();
    for result in results {
        totals += &result?;
    }
    Ok(Run {
        events_per_s: totals.marked as f64 / elapsed_s,
        totals,
    })
}

/// The bare relay in a thread, stopped after `run_ms` like the others.
fn run_floor(root: &Path, batch: usize, files: u32, run_ms: u64) -> Result<Run> {
    let stop = AtomicBool::new(false);
    let floor = std::thread::scope(|scope| {
        let handle = scope.spawn(|| super::floor::run(root, batch, files, &stop));
        let deadline = Instant::now() + Duration::from_millis(run_ms);
        while Instant::now() < deadline && !handle.is_finished() {
            std::thread::sleep(Duration::from_millis(2));
        }
        stop.store(true, Ordering::Relaxed);
        handle.join().expect("floor relay panicked")
    })?;
    Ok(Run {
        events_per_s: floor.marked as f64 / floor.elapsed_s,
        totals: floor.totals,
    })
}

fn relay_config(config: Config, i: usize) -> RelayConfig {
    RelayConfig {
        name: format!("bench-{i}"),
        // 1 ms: a relay that finds everything leased by the others looks again soon.
        poll_ms: 1,
        batch: config.batch,
        // Far longer than any pass here: a healthy relay must never be fenced in a benchmark.
        lease_ms: 60_000,
        sync_in_parallel: config.sync != Sync::InTurn,
        overlap_sync: config.sync == Sync::Overlap,
        ..RelayConfig::default()
    }
}

fn throughput_table(runs: &[Vec<Run>]) -> (Table, Value) {
    let mut table = Table::new(&[
        "relay",
        "batch",
        "relays",
        "sync",
        "events/s",
        "÷ floor",
        "÷ 4-file floor",
        "µs/pass claim/append/sync/mark",
        "syncs/pass",
        "fenced",
    ]);
    let mut json_rows = Vec::new();
    let median =
        |i: usize| Spread::of(&runs[i].iter().map(|r| r.events_per_s).collect::<Vec<_>>()).median;
    for (config, runs) in CONFIGS.iter().zip(runs) {
        let events = Spread::of(&runs.iter().map(|r| r.events_per_s).collect::<Vec<_>>());
        let floor = CONFIGS
            .iter()
            .position(|c| c.sync == Sync::Floor && c.batch == config.batch)
            .map(median);
        let ratio = floor.map(|f| events.median / f);
        let per_pass = |f: fn(&RelayTotals) -> u64| -> f64 {
            let (us, passes) = runs.iter().fold((0, 0), |(us, n), r| {
                (us + f(&r.totals), n + r.totals.passes_with_rows)
            });
            us as f64 / passes.max(1) as f64
        };
        let phases = [
            per_pass(|t| t.claim_us),
            per_pass(|t| t.append_us),
            per_pass(|t| t.sync_us),
            per_pass(|t| t.mark_us),
        ];
        let syncs_per_pass = per_pass(|t| t.syncs);
        let fenced: u64 = runs.iter().map(|r| r.totals.fenced).sum();
        let sync = config.sync.name();
        let who = if config.is_floor() { "floor" } else { "relay" };
        let partitioned_floor = CONFIGS
            .iter()
            .position(|c| c.sync == Sync::FloorPartitioned && c.batch == config.batch)
            .map(median);
        let ratio_partitioned = partitioned_floor.map(|f| events.median / f);
        table.push(vec![
            who.to_string(),
            config.batch.to_string(),
            config.relays.to_string(),
            sync.to_string(),
            events.show(0),
            ratio.map_or("—".into(), |r| format!("{r:.2}")),
            ratio_partitioned.map_or("—".into(), |r| format!("{r:.2}")),
            format!(
                "{:.0}/{:.0}/{:.0}/{:.0}",
                phases[0], phases[1], phases[2], phases[3]
            ),
            format!("{syncs_per_pass:.2}"),
            fenced.to_string(),
        ]);
        json_rows.push(
            json!({ "relay": who, "batch": config.batch, "relays": config.relays, "sync": sync,
            "events_per_s": events, "ratio_to_floor": ratio, "ratio_to_4_file_floor": ratio_partitioned, "per_pass_us": { "claim": phases[0], "append": phases[1],
            "sync": phases[2], "mark": phases[3] }, "syncs_per_pass": syncs_per_pass,
            "fenced": fenced,
            "events_per_s_by_round": runs.iter().map(|r| r.events_per_s).collect::<Vec<_>>() }),
        );
    }
    (table, Value::Array(json_rows))
}

/// Copy a data directory (files, and the files of its subdirectories: `broker/`).
pub(super) fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).ctx(format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).ctx(format!("listing {}", from.display()))? {
        let entry = entry.ctx(format!("listing {}", from.display()))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst)?; // depth is bounded by the data directory's layout (2)
        } else {
            std::fs::copy(&src, &dst).ctx(format!("copying {}", src.display()))?;
        }
    }
    Ok(())
}

/// The sync step alone, as a pass of batch 100 does it: write 100 records' bytes spread over
/// 1 or 4 partitions, then fdatasync the partitions touched, in turn or in parallel.
fn fdatasync_table(scratch: &Path, rounds: usize) -> Result<(Table, Value)> {
    const VARIANTS: [(u32, bool); 3] = [(1, false), (4, false), (4, true)];
    let mut sync_us: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..rounds {
        for i in rotated(&[0, 1, 2], round) {
            let (partitions, parallel) = VARIANTS[i];
            sync_us[i].push(median_sync_us(scratch, partitions, parallel)?);
        }
    }
    let mut table = Table::new(&[
        "partitions",
        "sync",
        "µs per pass (median)",
        "events/s ceiling at batch 100",
    ]);
    let mut json_rows = Vec::new();
    for ((partitions, parallel), samples) in VARIANTS.iter().zip(&sync_us) {
        let us = Spread::of(samples);
        let how = if *parallel { "in parallel" } else { "in turn" };
        let ceiling = 100.0 * 1e6 / us.median;
        table.push(vec![
            partitions.to_string(),
            how.to_string(),
            us.show(0),
            format!("{ceiling:.0}"),
        ]);
        json_rows.push(
            json!({ "partitions": partitions, "sync": how, "sync_us_per_pass": us,
                               "batch100_events_per_s_ceiling": ceiling }),
        );
    }
    Ok((table, Value::Array(json_rows)))
}

/// The median over SYNC_SAMPLES passes of the time to sync what one pass wrote.
fn median_sync_us(scratch: &Path, partitions: u32, parallel: bool) -> Result<f64> {
    let tmp = TempDir::new(scratch, "fdatasync")?;
    let mut broker = open_broker(&tmp.path().join("broker"), partitions)?;
    let record = vec![b'x'; RECORD_BYTES];
    let per_partition = 100 / partitions as usize;
    let records: Vec<&[u8]> = vec![record.as_slice(); per_partition];
    let all: Vec<u32> = (0..partitions).collect();
    let mut samples = Vec::with_capacity(SYNC_SAMPLES);
    for _ in 0..SYNC_SAMPLES {
        for p in &all {
            broker.write(*p, &records)?;
        }
        let started = Instant::now();
        if parallel {
            broker.sync_parallel(&all)?;
        } else {
            all.iter().try_for_each(|p| broker.sync(*p))?;
        }
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    Ok(super::percentile_sorted(&samples, 50.0))
}

/// For the fdatasync test: a broker in `dir` with `partitions` partitions.
pub(super) fn open_broker(dir: &Path, partitions: u32) -> Result<Broker> {
    Broker::create(dir, partitions)?;
    Broker::open(dir, partitions)
}
