//! `bench latency --postgres URL`: commit → applied on PostgreSQL, three relays side by side at
//! each rate, in one run: the claim relay polling every 500 ms, the same `SKIP LOCKED` relay
//! woken by `LISTEN/NOTIFY`, and the CDC relay on a replication slot (woken the same way).
//!
//! ```text
//!   this process: W writer threads place orders at a steady total rate ─▶ PostgreSQL
//!                 (created_at_us taken before BEGIN; the outbox trigger NOTIFYs at commit)
//!   child:        relay --wake poll --poll-ms 500 │ relay --wake notify │ relay --cdc
//!   child:        consume --wake log              (the log doorbell, in every variant)
//!   then:         effects.applied_at_us − created_at_us, one per order: p50 … max
//! ```
//!
//! Every run gets a database of its own on the server `URL` names (created, then dropped with
//! its slot), so no variant inherits another's rows, dead tuples or WAL. All three variants
//! carry the same insert trigger, so they pay the same write path. The achieved rate is
//! printed next to the offered one: when the writers fall behind, the table says so.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::latency::{Percentiles, Running, latencies_ms, percentiles, wait_applied};
use super::svg::{self, Curve, Panel};
use super::{Report, Spread, Table, TempDir, rotated};
use crate::datadir::DataDir;
use crate::error::{Context, Result};
use crate::order::{OrderRequest, generate};
use crate::store::StoreConfig;
use crate::store::pg::{self, cdc};

pub const MAX_WRITERS: usize = 32;
/// After the last order, how long the stragglers may take (a backlog at 5,000/s drains slowly).
const DRAIN_LIMIT_MS: u64 = 120_000;
/// How long the children get to connect and settle on their idle wait.
const SETTLE_MS: u64 = 800;

#[derive(Debug, Clone)]
pub struct PgLatencyBench {
    /// A server URL; each run creates (and drops) a database of its own there.
    pub admin_url: String,
    pub rates_per_s: Vec<u64>,
    pub duration_ms: u64,
    pub rounds: usize,
    pub seed: u64,
    /// Writer connections sharing the rate (one commit waits for its fsync; several overlap).
    pub writers: usize,
    pub svg: Option<PathBuf>,
    /// Where each run's data directory goes (removed after it).
    pub scratch: PathBuf,
}

#[derive(Debug, Clone, Copy)]
struct Variant {
    name: &'static str,
    relay_args: &'static [&'static str],
    cdc: bool,
}

const VARIANTS: [Variant; 3] = [
    Variant {
        name: "SKIP LOCKED, poll 500 ms",
        relay_args: &["--wake", "poll", "--poll-ms", "500", "--batch", "100"],
        cdc: false,
    },
    Variant {
        name: "SKIP LOCKED + LISTEN/NOTIFY",
        relay_args: &["--wake", "notify", "--poll-ms", "500", "--batch", "100"],
        cdc: false,
    },
    Variant {
        name: "CDC slot + NOTIFY",
        relay_args: &["--cdc", "--poll-ms", "500", "--batch", "300"],
        cdc: true,
    },
];
const CONSUMER_ARGS: [&str; 4] = ["--wake", "log", "--poll-ms", "20"];

/// One run's figures.
struct RunResult {
    percentiles: Percentiles,
    achieved_per_s: f64,
    latencies_ms: Vec<f64>,
    /// The CDC relay's cost per batch, in words (CDC runs only).
    cdc_costs: Option<String>,
}

pub fn run(bench: &PgLatencyBench) -> Result<Report> {
    assert!(!bench.rates_per_s.is_empty(), "no rate to measure");
    assert!(
        (1..=MAX_WRITERS).contains(&bench.writers),
        "writers outside 1..={MAX_WRITERS}"
    );
    let mut report = Report::new(
        "latency-postgres",
        "bench latency --postgres: commit → applied, 500 ms polling vs LISTEN/NOTIFY vs CDC".into(),
        json!({ "rates_per_s": bench.rates_per_s, "duration_ms": bench.duration_ms,
                "rounds": bench.rounds, "writers": bench.writers,
                "order_service": "synchronous_commit=on, one order per tx, insert trigger NOTIFYs",
                "consumer": "consume --wake log --poll-ms 20" }),
    );
    let mut results = Vec::new();
    let mut panels_data: Vec<(u64, Vec<Vec<f64>>)> = Vec::new();
    for &rate in &bench.rates_per_s {
        let mut runs: Vec<Vec<RunResult>> = (0..VARIANTS.len()).map(|_| Vec::new()).collect();
        for round in 0..bench.rounds {
            for i in rotated(&[0, 1, 2], round) {
                let seed = bench.seed + round as u64;
                let result = run_once(VARIANTS[i], bench, rate, seed)?;
                if let Some(costs) = &result.cdc_costs {
                    report
                        .notes
                        .push(format!("at {rate}/s, round {round}: {costs}"));
                }
                runs[i].push(result);
            }
        }
        let (table, value, ratio) = table(rate, &runs);
        report
            .tables
            .push((format!("offered {rate} orders/s"), table));
        report.notes.push(ratio);
        results.push(value);
        let all: Vec<Vec<f64>> = runs
            .iter()
            .map(|rs| {
                rs.iter()
                    .flat_map(|r| r.latencies_ms.iter().copied())
                    .collect()
            })
            .collect();
        panels_data.push((rate, all));
    }
    report.results = Value::Array(results);
    if let Some(path) = &bench.svg {
        let panels: Vec<Panel> = panels_data
            .iter()
            .map(|(rate, all)| Panel {
                title: format!("offered {rate} orders/s: share applied within x ms"),
                curves: VARIANTS
                    .iter()
                    .zip(all)
                    .map(|(v, l)| Curve {
                        name: v.name,
                        latencies_ms: l,
                    })
                    .collect(),
            })
            .collect();
        let caption = format!(
            "outbox-lab bench latency --postgres; commit -> applied; load average {} at start",
            report.load_at_start
        );
        std::fs::write(path, svg::render(&panels, &caption))
            .ctx(format!("writing {}", path.display()))?;
        report.notes.push(format!("picture: {}", path.display()));
    }
    Ok(report)
}

fn run_once(variant: Variant, bench: &PgLatencyBench, rate: u64, seed: u64) -> Result<RunResult> {
    let db = Database::create(&bench.admin_url)?;
    let tmp = TempDir::new(&bench.scratch, "latency-pg")?;
    let root = tmp.path().join("data");
    let store = StoreConfig::Postgres(db.url.clone());
    let data = DataDir::init_with_store(&root, crate::broker::DEFAULT_PARTITIONS, store, None)?;
    let mut client = pg::connect(&db.url, pg::DEFAULT_IDLE_IN_TX_MS)?;
    if variant.cdc {
        cdc::setup(&mut client, cdc::OutboxRows::Keep)?;
    } else {
        // The same write path for every variant: the trigger NOTIFYs whether or not anyone listens.
        cdc::ensure_notify_trigger(&mut client)?;
    }
    drop(client);
    let dir = root.to_str().expect("temp paths are UTF-8").to_string();
    let relay = Running::start(tmp.path(), &["relay", "--dir", &dir], variant.relay_args)?;
    let consumer = Running::start(tmp.path(), &["consume", "--dir", &dir], &CONSUMER_ARGS)?;
    std::thread::sleep(Duration::from_millis(SETTLE_MS));
    let (placed, elapsed) = place_steadily(&data, bench, rate, seed)?;
    wait_applied(&data, placed, DRAIN_LIMIT_MS)?;
    let totals = relay.stop_totals()?;
    consumer.stop()?;
    let cdc_costs = variant.cdc.then(|| cdc_costs(&totals));
    let latencies = latencies_ms(&data)?;
    drop(data);
    db.drop_it()?;
    Ok(RunResult {
        percentiles: percentiles(&latencies)?,
        achieved_per_s: placed as f64 / elapsed.as_secs_f64(),
        latencies_ms: latencies,
        cdc_costs,
    })
}

/// What the SQL interface costs per call: every peek and every advance decodes the WAL again
/// from the slot's `restart_lsn` (see `docs/cdc.md`).
fn cdc_costs(totals: &Value) -> String {
    let batches = totals["batches"].as_f64().unwrap_or(0.0);
    if batches == 0.0 {
        return "CDC relay: no batch".into();
    }
    let per = |field: &str| totals[field].as_f64().unwrap_or(0.0) / batches / 1000.0;
    format!(
        "CDC relay: {batches} batches, {:.1} events each; per batch: peek {:.2} ms, append {:.2} ms, fdatasync {:.2} ms, advance {:.2} ms",
        totals["events"].as_f64().unwrap_or(0.0) / batches,
        per("peek_us"),
        per("append_us"),
        per("sync_us"),
        per("confirm_us")
    )
}

/// `rate` orders a second in total for `duration_ms`, over `writers` connections; order i is
/// due at i / rate seconds (a late writer goes at once: no burst to catch up). Returns how many
/// were placed and how long placing took.
fn place_steadily(
    data: &DataDir,
    bench: &PgLatencyBench,
    rate: u64,
    seed: u64,
) -> Result<(u64, Duration)> {
    let count = (rate * bench.duration_ms / 1000).max(1);
    let requests = generate(seed, 0, count);
    let started = Instant::now();
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..bench.writers)
            .map(|w| {
                let mine: Vec<(usize, &OrderRequest)> = requests
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % bench.writers == w)
                    .collect();
                scope.spawn(move || -> Result<()> {
                    let mut store = crate::store::open_orders(data, crate::order::Mode::Outbox)?;
                    for (i, request) in mine {
                        let due = started + Duration::from_micros(i as u64 * 1_000_000 / rate);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        store.place(request)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a writer thread panicked"))
            .collect()
    });
    for r in results {
        r?;
    }
    Ok((count, started.elapsed()))
}

/// The rate's table, its JSON, and the CDC-vs-polling ratio line.
fn table(rate: u64, runs: &[Vec<RunResult>]) -> (Table, Value, String) {
    let mut table = Table::new(&[
        "achieved/s",
        "relay",
        "orders",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
    ]);
    let mut json_rows = Vec::new();
    let mut p99_median = Vec::new();
    let mut p50_median = Vec::new();
    for (variant, runs) in VARIANTS.iter().zip(runs) {
        let of =
            |f: &dyn Fn(&RunResult) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
        let achieved = of(&|r| r.achieved_per_s);
        let (p50, p90, p99, max) = (
            of(&|r| r.percentiles.p50_ms),
            of(&|r| r.percentiles.p90_ms),
            of(&|r| r.percentiles.p99_ms),
            of(&|r| r.percentiles.max_ms),
        );
        p50_median.push(p50.median);
        p99_median.push(p99.median);
        let orders: usize = runs.iter().map(|r| r.percentiles.orders).sum();
        table.push(vec![
            format!("{:.0}", achieved.median),
            variant.name.to_string(),
            orders.to_string(),
            p50.show(1),
            p90.show(1),
            p99.show(1),
            max.show(1),
        ]);
        json_rows.push(json!({ "offered_per_s": rate, "achieved_per_s": achieved,
            "variant": variant.name, "orders": orders, "p50_ms": p50, "p90_ms": p90,
            "p99_ms": p99, "max_ms": max,
            "by_round": runs.iter().map(|r| r.percentiles).collect::<Vec<_>>() }));
    }
    let (poll, cdc_at) = (0, VARIANTS.len() - 1);
    let p50_ratio = p50_median[poll] / p50_median[cdc_at];
    let p99_ratio = p99_median[poll] / p99_median[cdc_at];
    let ratio = format!(
        "at {rate}/s: CDC vs 500 ms polling: p50 {p50_ratio:.0}x lower, p99 {p99_ratio:.0}x lower"
    );
    let value = json!({ "offered_per_s": rate, "variants": json_rows,
            "cdc_vs_poll_p50_ratio": p50_ratio, "cdc_vs_poll_p99_ratio": p99_ratio });
    (table, value, ratio)
}

/// A database of its own for one run, dropped (with its slot) afterwards.
pub(super) struct Database {
    admin_url: String,
    name: String,
    pub(super) url: String,
}

impl Database {
    pub(super) fn create(admin_url: &str) -> Result<Database> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "outbox_lab_bench_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = pg::connect(admin_url, pg::DEFAULT_IDLE_IN_TX_MS)?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .ctx(format!("CREATE DATABASE {name}"))?;
        let url = pg::url_with_dbname(admin_url, &name)?;
        Ok(Database {
            admin_url: admin_url.to_string(),
            name,
            url,
        })
    }

    /// Drop the slot (a database with a slot cannot be dropped), then the database.
    pub(super) fn drop_it(self) -> Result<()> {
        let mut admin = pg::connect(&self.admin_url, pg::DEFAULT_IDLE_IN_TX_MS)?;
        admin
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                  WHERE database = $1",
                &[&self.name],
            )
            .ctx(format!("dropping the slots of {}", self.name))?;
        admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .ctx(format!("DROP DATABASE {}", self.name))
    }
}
