//! `bench latency`: commit → applied, for a polling relay and a doorbell relay.
//!
//! ```text
//!   this process: place orders at a steady rate ─▶ orders.db   (created_at_us, before BEGIN)
//!   child:        relay  --wake poll --poll-ms 500   │ or --wake wal
//!   child:        consume --wake poll --poll-ms 20   │ or --wake log
//!   then:         effects.applied_at_us − effects.created_at_us, one per order: p50 … max
//! ```
//!
//! Both timestamps come from the same clock (`clock::now_us`, one kernel for every process).
//! `created_at_us` is taken just before the order's transaction begins, so every figure also
//! includes the order's own commit (one fsync, ~1 ms here). The relay and the consumer are real
//! child processes, started before the first order and idle-waiting when it arrives, as in
//! production; they run with `OUTBOX_TRACE=0`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Report, Spread, Table, TempDir, percentile_sorted as percentile, rotated};
use crate::datadir::DataDir;
use crate::db::{self, Synchronous};
use crate::error::{Context, Error, Result};
use crate::lab::harness::child::CHILD_ENV;
use crate::order::{Mode, OrderService, generate};

pub const MAX_RATE_PER_S: u64 = 5_000;
pub const MAX_DURATION_MS: u64 = 600_000;
pub const MAX_ROUNDS: usize = 50;
/// After the last order, how long the stragglers may take (a 500 ms poll needs < 1 s).
const DRAIN_LIMIT_MS: u64 = 10_000;
/// How long the children get to start and settle on their idle wait.
const SETTLE_MS: u64 = 400;

#[derive(Debug, Clone)]
pub struct LatencyBench {
    pub rate_per_s: u64,
    pub duration_ms: u64,
    pub rounds: usize,
    pub seed: u64,
    /// Where the scratch data directories go.
    pub scratch: std::path::PathBuf,
}

#[derive(Debug, Clone, Copy)]
struct Variant {
    name: &'static str,
    relay_args: [&'static str; 4],
    consumer_args: [&'static str; 4],
}

const VARIANTS: [Variant; 3] = [
    Variant {
        name: "relay poll 500 ms, consumer poll 20 ms",
        relay_args: ["--wake", "poll", "--poll-ms", "500"],
        consumer_args: ["--wake", "poll", "--poll-ms", "20"],
    },
    Variant {
        name: "relay --wake wal, consumer poll 20 ms",
        relay_args: ["--wake", "wal", "--poll-ms", "500"],
        consumer_args: ["--wake", "poll", "--poll-ms", "20"],
    },
    Variant {
        name: "relay --wake wal, consumer --wake log",
        relay_args: ["--wake", "wal", "--poll-ms", "500"],
        consumer_args: ["--wake", "log", "--poll-ms", "20"],
    },
];

/// One run: the latencies (ms) of every applied order.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(super) struct Percentiles {
    pub(super) orders: usize,
    pub(super) p50_ms: f64,
    pub(super) p90_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) max_ms: f64,
}

pub fn run(bench: &LatencyBench) -> Result<Report> {
    assert!(
        (1..=MAX_RATE_PER_S).contains(&bench.rate_per_s),
        "rate outside 1..={MAX_RATE_PER_S}"
    );
    assert!(
        (1..=MAX_DURATION_MS).contains(&bench.duration_ms),
        "duration outside 1..={MAX_DURATION_MS} ms"
    );
    assert!(
        (1..=MAX_ROUNDS).contains(&bench.rounds),
        "rounds outside 1..={MAX_ROUNDS}"
    );
    let mut report = Report::new(
        "latency",
        format!(
            "bench latency: commit → applied at {} orders/s for {} ms, {} rounds",
            bench.rate_per_s, bench.duration_ms, bench.rounds
        ),
        json!({ "rate_per_s": bench.rate_per_s, "duration_ms": bench.duration_ms,
                "rounds": bench.rounds, "order_service": "synchronous=FULL, one order per tx" }),
    );
    let mut runs: Vec<Vec<Percentiles>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..bench.rounds {
        for i in rotated(&[0, 1, 2], round) {
            let seed = bench.seed + round as u64;
            let run = report
                .steps
                .time(format!("round {round}: {}", VARIANTS[i].name), || {
                    run_once(VARIANTS[i], bench, seed)
                })?;
            runs[i].push(run);
        }
    }
    let (table, rows) = table(&runs);
    report.tables.push((String::new(), table));
    report.results = rows;
    Ok(report)
}

fn run_once(variant: Variant, bench: &LatencyBench, seed: u64) -> Result<Percentiles> {
    let tmp = TempDir::new(&bench.scratch, "latency")?;
    let root = tmp.path().join("data");
    let data = DataDir::init(&root, crate::broker::DEFAULT_PARTITIONS)?;
    let dir = root.to_str().expect("temp paths are UTF-8").to_string();
    let relay = Running::start(tmp.path(), &["relay", "--dir", &dir], &variant.relay_args)?;
    let consumer = Running::start(
        tmp.path(),
        &["consume", "--dir", &dir],
        &variant.consumer_args,
    )?;
    std::thread::sleep(Duration::from_millis(SETTLE_MS));
    let placed = place_steadily(&data, bench, seed)?;
    wait_applied(&data, placed, DRAIN_LIMIT_MS)?;
    relay.stop()?;
    consumer.stop()?;
    percentiles(&latencies_ms(&data)?)
}

/// `rate_per_s` orders a second for `duration_ms`, each at its own scheduled moment (no burst
/// to catch up if one commit was slow: a late order just goes at once).
fn place_steadily(data: &DataDir, bench: &LatencyBench, seed: u64) -> Result<u64> {
    let count = (bench.rate_per_s * bench.duration_ms / 1000).max(1);
    let mut service = OrderService::open(data, Mode::Outbox)?;
    let started = Instant::now();
    for (i, request) in generate(seed, 0, count).iter().enumerate() {
        let due = started + Duration::from_micros(i as u64 * 1_000_000 / bench.rate_per_s);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        service.place(request)?;
    }
    Ok(count)
}

pub(super) fn wait_applied(data: &DataDir, placed: u64, limit_ms: u64) -> Result<()> {
    let conn = db::open(&data.consumer_db(), Synchronous::Normal)?; // reads only
    let deadline = Instant::now() + Duration::from_millis(limit_ms);
    loop {
        let applied: i64 = conn
            .query_row("SELECT count(*) FROM effects", [], |r| r.get(0))
            .ctx("counting effects")?;
        if applied as u64 >= placed {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Input(format!(
                "only {applied} of {placed} orders applied {limit_ms} ms after the last one"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub(super) fn latencies_ms(data: &DataDir) -> Result<Vec<f64>> {
    let conn = db::open(&data.consumer_db(), Synchronous::Normal)?; // reads only
    let mut stmt = conn
        .prepare("SELECT applied_at_us - created_at_us FROM effects")
        .ctx("preparing latency query")?;
    let rows = stmt
        .query_map([], |r| r.get::<_, i64>(0))
        .ctx("reading latencies")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ctx("reading latencies")?;
    Ok(rows.into_iter().map(|us| us as f64 / 1000.0).collect())
}

pub(super) fn percentiles(latencies_ms: &[f64]) -> Result<Percentiles> {
    if latencies_ms.is_empty() {
        return Err(Error::Input("no order was applied".into()));
    }
    let mut sorted = latencies_ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    Ok(Percentiles {
        orders: sorted.len(),
        p50_ms: percentile(&sorted, 50.0),
        p90_ms: percentile(&sorted, 90.0),
        p99_ms: percentile(&sorted, 99.0),
        max_ms: sorted[sorted.len() - 1],
    })
}

fn table(runs: &[Vec<Percentiles>]) -> (Table, Value) {
    let mut table = Table::new(&["variant", "orders", "p50 ms", "p90 ms", "p99 ms", "max ms"]);
    let mut json_rows = Vec::new();
    for (variant, runs) in VARIANTS.iter().zip(runs) {
        let of = |f: fn(&Percentiles) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
        let (p50, p90, p99, max) = (
            of(|p| p.p50_ms),
            of(|p| p.p90_ms),
            of(|p| p.p99_ms),
            of(|p| p.max_ms),
        );
        let orders: usize = runs.iter().map(|p| p.orders).sum();
        table.push(vec![
            variant.name.to_string(),
            orders.to_string(),
            p50.show(1),
            p90.show(1),
            p99.show(1),
            max.show(1),
        ]);
        json_rows.push(
            json!({ "variant": variant.name, "orders": orders, "p50_ms": p50,
            "p90_ms": p90, "p99_ms": p99, "max_ms": max, "by_round": runs }),
        );
    }
    (table, Value::Array(json_rows))
}

/// A child `outbox-lab` (this very program, re-executed), stopped by SIGTERM to its pid.
pub(super) struct Running {
    child: Child,
    stderr_path: std::path::PathBuf,
}

impl Running {
    pub(super) fn start(logs: &std::path::Path, args: &[&str], more: &[&str]) -> Result<Running> {
        let exe = std::env::current_exe().ctx("finding current_exe() to re-execute")?;
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stderr_path = logs.join(format!("{}-{n}.stderr", args[0]));
        let stderr = std::fs::File::create(&stderr_path)
            .ctx(format!("creating {}", stderr_path.display()))?;
        let child = Command::new(exe)
            .args(args)
            .args(more)
            .env(CHILD_ENV, "1") // so that an example, re-executed, acts as the binary
            .env("OUTBOX_TRACE", "0")
            .env_remove("OUTBOX_CRASH")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .ctx(format!("starting {}", args[0]))?;
        Ok(Running { child, stderr_path })
    }

    pub(super) fn stop(self) -> Result<()> {
        self.stop_totals().map(|_| ())
    }

    /// Stop it, and return the totals JSON it printed as its last stderr line on the way out.
    pub(super) fn stop_totals(mut self) -> Result<Value> {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = self.child.wait().ctx("waiting for a benchmark child")?;
        let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        if !status.success() {
            return Err(Error::Input(format!(
                "benchmark child ended with {status}: {}",
                stderr.trim()
            )));
        }
        let last = stderr.lines().last().unwrap_or("null");
        Ok(serde_json::from_str(last).unwrap_or(Value::Null))
    }
}

impl Drop for Running {
    /// An error path must not leave a relay running: kill it (by pid) and reap it.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
