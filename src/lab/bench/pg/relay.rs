//! Relay throughput, SQLite vs PostgreSQL (locked and lease claims), in one run: one relay
//! drains the same backlog at the same batch size; events/s = rows marked / wall time.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde_json::json;

use crate::datadir::DataDir;
use crate::error::Result;
use crate::lab::bench::build::{EventIds, Filler};
use crate::lab::bench::pg::scratch;
use crate::lab::bench::pg::{PgBench, fill, fill_report};
use crate::lab::bench::{Report, Steps, Table, load_average, rotated};
use crate::relay::{Relay, RelayConfig, RelayTotals};
use crate::store::ClaimMode;

pub struct RelayParams {
    pub dir: std::path::PathBuf,
    pub backlog: i64,
    pub batch: usize,
    pub rounds: usize,
}

#[derive(Clone, Copy, Debug)]
enum Variant {
    Sqlite,
    Pg(ClaimMode),
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Sqlite => "sqlite (lease)",
            Variant::Pg(ClaimMode::Locked) => "postgres locked",
            Variant::Pg(ClaimMode::Lease) => "postgres lease",
        }
    }
}

const VARIANTS: [Variant; 3] = [
    Variant::Sqlite,
    Variant::Pg(ClaimMode::Locked),
    Variant::Pg(ClaimMode::Lease),
];

pub fn run(params: &RelayParams, bench: &mut PgBench) -> Result<Report> {
    let load_before = load_average();
    let mut steps = Steps::default();
    let mut runs: Vec<Vec<(f64, RelayTotals)>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..params.rounds {
        for variant in rotated(&VARIANTS, round) {
            let slot = VARIANTS
                .iter()
                .position(|v| v.name() == variant.name())
                .unwrap();
            let name = format!("round {round}: {}", variant.name());
            let run = steps.time(name, || one_run(params, bench, variant))?;
            runs[slot].push(run);
        }
    }
    let mut table = Table::new(&[
        "store / claim",
        "events/s (median)",
        "min–max",
        "claim µs/pass",
        "sync µs/pass",
        "mark µs/pass",
    ]);
    let mut results = Vec::new();
    for (variant, runs) in VARIANTS.iter().zip(&runs) {
        let mut rates: Vec<f64> = runs.iter().map(|(r, _)| *r).collect();
        rates.sort_by(f64::total_cmp);
        let per_pass = |f: fn(&RelayTotals) -> u64| {
            let (us, passes) = runs.iter().fold((0, 0), |(us, n), (_, t)| {
                (us + f(t), n + t.passes_with_rows)
            });
            us / passes.max(1)
        };
        let median = rates[rates.len() / 2];
        table.push(vec![
            variant.name().into(),
            format!("{median:.0}"),
            format!("{:.0}–{:.0}", rates[0], rates[rates.len() - 1]),
            per_pass(|t| t.claim_us).to_string(),
            per_pass(|t| t.sync_us).to_string(),
            per_pass(|t| t.mark_us).to_string(),
        ]);
        results.push(json!({ "variant": variant.name(), "events_per_s": rates,
                             "claim_us_per_pass": per_pass(|t| t.claim_us),
                             "sync_us_per_pass": per_pass(|t| t.sync_us),
                             "mark_us_per_pass": per_pass(|t| t.mark_us) }));
    }
    let mut report = Report::new(
        "postgres-relay",
        format!(
            "Relay throughput: one relay drains {} events at batch {}, SQLite vs PostgreSQL, {} rounds",
            params.backlog, params.batch, params.rounds
        ),
        json!({ "backlog": params.backlog, "batch": params.batch, "rounds": params.rounds }),
    );
    fill_report(&mut report, bench, &load_before, table, results, steps);
    report.notes.extend([
        "the relay's own commits skip the flush on both stores (SQLite synchronous=NORMAL, \
             PostgreSQL synchronous_commit=off: a lost mark only re-ships); each pass \
             fdatasyncs the log before marking"
            .into(),
    ]);
    Ok(report)
}

fn one_run(
    params: &RelayParams,
    bench: &mut PgBench,
    variant: Variant,
) -> Result<(f64, RelayTotals)> {
    let root = scratch(&params.dir, "pg-relay")?;
    let now_us = crate::clock::now_us();
    let (data, claim_mode) = match variant {
        Variant::Sqlite => {
            let data = DataDir::init(&root.join("data"), crate::broker::DEFAULT_PARTITIONS)?;
            Filler::open(&data.orders_db())?.fill(
                params.backlog as u64,
                now_us,
                None,
                EventIds::Random,
            )?;
            (data, ClaimMode::default())
        }
        Variant::Pg(mode) => {
            let (data, url) = bench.data_dir(&root, "relay", None)?;
            fill(&url, params.backlog, now_us, None)?;
            (data, mode)
        }
    };
    let config = RelayConfig {
        name: "bench".into(),
        poll_ms: 1,
        batch: params.batch,
        // Far longer than any pass: a healthy relay is never fenced in a benchmark.
        lease_ms: 60_000,
        claim_mode,
        ..RelayConfig::default()
    };
    let mut relay = Relay::open(&data, config)?;
    let started = Instant::now();
    let totals = relay.run(&AtomicBool::new(false), true)?;
    let elapsed_s = started.elapsed().as_secs_f64();
    assert_eq!(
        totals.marked, params.backlog as u64,
        "the relay shipped the whole backlog"
    );
    drop(relay);
    std::fs::remove_dir_all(&root).ok();
    Ok((totals.marked as f64 / elapsed_s, totals))
}
