//! `bench pipeline`: the whole pipeline, every stage its own process, under as much load as
//! the write path takes.
//!
//! ```text
//!   child: consume --wake log              ┐ started first, idle-waiting
//!   child: relay --wake wal  (× relays)    ┘ parallel sync, or --overlap-sync
//!   child: place < orders.jsonl            every order waiting at once: full group commits
//!   then:  outbox.created_at_us / published_at_us, effects.applied_at_us, one per order
//! ```
//!
//! Figures, all from timestamps the pipeline itself wrote (one clock, one kernel):
//! - **end to end**: orders ÷ (last applied − first committed): what the pipeline sustains;
//! - **each stage**: its own rate, orders ÷ (its last − its first): placed (created_at_us),
//!   shipped (published_at_us: synced and marked), applied (applied_at_us). The slowest stage
//!   is the one whose rate the end-to-end figure follows;
//! - **commit → published** and **commit → applied** p50/p99 under that load: where an order's
//!   time goes (the rest of commit → applied after published is the consumer's share).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::latency::{Running, wait_applied};
use super::{Report, Table, TempDir, percentile};
use crate::datadir::DataDir;
use crate::db::{self, Synchronous};
use crate::error::{Context, Error, Result};
use crate::lab::harness::child::CHILD_ENV;
use crate::order::generate;

pub const MAX_ORDERS: u64 = 2_000_000;
pub const MAX_RELAYS: usize = 8;
/// How long the children get to start and settle on their idle wait.
const SETTLE_MS: u64 = 400;
/// After the last order is placed, how long the rest of the pipeline may take.
const DRAIN_LIMIT_MS: u64 = 300_000;

#[derive(Debug, Clone)]
pub struct PipelineBench {
    pub orders: u64,
    /// Relay process counts to compare, e.g. [1, 2]; each runs with the default (parallel)
    /// sync and with `--overlap-sync`.
    pub relays: Vec<usize>,
    pub seed: u64,
    pub scratch: std::path::PathBuf,
}

/// What one run measured (times in ms, rates per second).
#[derive(Debug, Clone, serde::Serialize)]
struct Measured {
    relays: usize,
    relay_sync: &'static str,
    orders: u64,
    end_to_end_per_s: f64,
    placed_per_s: f64,
    shipped_per_s: f64,
    applied_per_s: f64,
    commit_to_published_ms: [f64; 2],
    commit_to_applied_ms: [f64; 2],
}

pub fn run(bench: &PipelineBench) -> Result<Report> {
    assert!(
        (1..=MAX_ORDERS).contains(&bench.orders),
        "orders out of range"
    );
    assert!(
        !bench.relays.is_empty() && bench.relays.iter().all(|r| (1..=MAX_RELAYS).contains(r)),
        "relay counts out of range"
    );
    let mut report = Report::new(
        "pipeline",
        format!(
            "bench pipeline: {} orders piped into `place` at once; relays and consumer as processes",
            bench.orders
        ),
        json!({ "orders": bench.orders, "relays": bench.relays, "seed": bench.seed,
                "place": "group commit (default --max-group), synchronous=FULL",
                "relay": "--wake wal --batch 100, fdatasync before mark",
                "consume": "--wake log, batches, synchronous=FULL" }),
    );
    let mut measured = Vec::new();
    for &relays in &bench.relays {
        for overlap in [false, true] {
            let m = report
                .steps
                .time(format!("{relays} relay(s), overlap {overlap}"), || {
                    run_once(bench, relays, overlap)
                })?;
            measured.push(m);
        }
    }
    report.tables.push((String::new(), table(&measured)));
    report.results = serde_json::to_value(&measured).expect("figures serialise");
    report.notes.push(
        "placed/shipped/applied per s: each stage's own rate, from its first to its last order"
            .into(),
    );
    Ok(report)
}

fn run_once(bench: &PipelineBench, relay_count: usize, overlap: bool) -> Result<Measured> {
    let tmp = TempDir::new(&bench.scratch, "pipeline")?;
    let root = tmp.path().join("data");
    let data = DataDir::init(&root, crate::broker::DEFAULT_PARTITIONS)?;
    let dir = root.to_str().expect("temp paths are UTF-8").to_string();
    let input = tmp.path().join("orders.jsonl");
    write_orders(&input, bench)?;
    let consumer = Running::start(tmp.path(), &["consume", "--dir", &dir], &["--wake", "log"])?;
    let relays: Vec<Running> = (0..relay_count)
        .map(|i| {
            let id = format!("relay-{i}");
            let mut args = vec!["--id", id.as_str(), "--wake", "wal", "--poll-ms", "100"];
            if overlap {
                args.push("--overlap-sync");
            }
            Running::start(tmp.path(), &["relay", "--dir", &dir], &args)
        })
        .collect::<Result<_>>()?;
    std::thread::sleep(Duration::from_millis(SETTLE_MS));
    place_all(&dir, &input)?;
    wait_applied(&data, bench.orders, DRAIN_LIMIT_MS)?;
    for relay in relays {
        relay.stop()?;
    }
    consumer.stop()?;
    let mut measured = measure(&data, relay_count)?;
    measured.relay_sync = if overlap { "overlapped" } else { "parallel" };
    Ok(measured)
}

fn write_orders(path: &std::path::Path, bench: &PipelineBench) -> Result<()> {
    let mut text = String::new();
    for request in generate(bench.seed, 0, bench.orders) {
        text.push_str(&serde_json::to_string(&request).expect("an order serialises"));
        text.push('\n');
    }
    std::fs::write(path, text).ctx(format!("writing {}", path.display()))
}

/// `place --dir D < orders.jsonl`, to its end: every line is waiting from the start.
fn place_all(dir: &str, input: &std::path::Path) -> Result<()> {
    let exe = std::env::current_exe().ctx("finding current_exe() to re-execute")?;
    let stdin = std::fs::File::open(input).ctx(format!("opening {}", input.display()))?;
    let started = Instant::now();
    let status = Command::new(exe)
        .args(["place", "--dir", dir])
        .env(CHILD_ENV, "1")
        .env("OUTBOX_TRACE", "0")
        .env_remove("OUTBOX_CRASH")
        .stdin(stdin)
        .stdout(Stdio::null())
        .status()
        .ctx("running place")?;
    if !status.success() {
        return Err(Error::Input(format!("place ended with {status}")));
    }
    eprintln!("  place: {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Per event: committed, published, applied (µs), from the two databases.
fn measure(data: &DataDir, relays: usize) -> Result<Measured> {
    // Reads only; the setting does not matter.
    let orders = db::open(&data.orders_db(), Synchronous::Normal)?;
    let mut published: HashMap<String, (i64, i64)> = HashMap::new();
    let mut stmt = orders
        .prepare("SELECT event_id, created_at_us, published_at_us FROM outbox")
        .ctx("preparing outbox read")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })
        .ctx("reading the outbox")?;
    for row in rows {
        let (event_id, created, at) = row.ctx("reading the outbox")?;
        let at = at.ok_or_else(|| Error::Input(format!("event {event_id} never published")))?;
        published.insert(event_id, (created, at));
    }
    let consumer = db::open(&data.consumer_db(), Synchronous::Normal)?;
    let mut stmt = consumer
        .prepare("SELECT event_id, applied_at_us FROM effects")
        .ctx("preparing effects read")?;
    let applied: Vec<(String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .ctx("reading effects")?
        .collect::<rusqlite::Result<_>>()
        .ctx("reading effects")?;
    let mut times = Vec::with_capacity(applied.len());
    for (event_id, applied_us) in applied {
        let (created, published_us) = published.get(&event_id).copied().ok_or_else(|| {
            Error::Input(format!("applied event {event_id} is not in the outbox"))
        })?;
        times.push([created, published_us, applied_us]);
    }
    figures(&times, relays)
}

fn figures(times: &[[i64; 3]], relays: usize) -> Result<Measured> {
    if times.is_empty() {
        return Err(Error::Input("no order was applied".into()));
    }
    let span = |k: usize| {
        let lo = times.iter().map(|t| t[k]).min().expect("not empty");
        let hi = times.iter().map(|t| t[k]).max().expect("not empty");
        (lo, hi)
    };
    let n = times.len() as f64;
    let rate = |lo: i64, hi: i64| n / ((hi - lo).max(1) as f64 / 1e6);
    let (first_created, last_created) = span(0);
    let (first_published, last_published) = span(1);
    let (first_applied, last_applied) = span(2);
    let mut to_published: Vec<u64> = times.iter().map(|t| (t[1] - t[0]).max(0) as u64).collect();
    let mut to_applied: Vec<u64> = times.iter().map(|t| (t[2] - t[0]).max(0) as u64).collect();
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(Measured {
        relays,
        relay_sync: "parallel",
        orders: times.len() as u64,
        end_to_end_per_s: rate(first_created, last_applied),
        placed_per_s: rate(first_created, last_created),
        shipped_per_s: rate(first_published, last_published),
        applied_per_s: rate(first_applied, last_applied),
        commit_to_published_ms: [
            ms(percentile(&mut to_published, 50.0)),
            ms(percentile(&mut to_published, 99.0)),
        ],
        commit_to_applied_ms: [
            ms(percentile(&mut to_applied, 50.0)),
            ms(percentile(&mut to_applied, 99.0)),
        ],
    })
}

fn table(measured: &[Measured]) -> Table {
    let mut table = Table::new(&[
        "relays",
        "relay sync",
        "orders",
        "end to end orders/s",
        "placed/s",
        "shipped/s",
        "applied/s",
        "commit→published p50/p99 ms",
        "commit→applied p50/p99 ms",
    ]);
    for m in measured {
        table.push(vec![
            m.relays.to_string(),
            m.relay_sync.to_string(),
            m.orders.to_string(),
            format!("{:.0}", m.end_to_end_per_s),
            format!("{:.0}", m.placed_per_s),
            format!("{:.0}", m.shipped_per_s),
            format!("{:.0}", m.applied_per_s),
            format!(
                "{:.1} / {:.1}",
                m.commit_to_published_ms[0], m.commit_to_published_ms[1]
            ),
            format!(
                "{:.1} / {:.1}",
                m.commit_to_applied_ms[0], m.commit_to_applied_ms[1]
            ),
        ]);
    }
    table
}
