//! `bench write`: what the outbox row costs the order service.
//!
//! ```text
//!   order only   BEGIN; lookup request_id; INSERT order;                  COMMIT
//!   outbox       BEGIN; lookup request_id; INSERT order; INSERT outbox;   COMMIT
//!   naive        BEGIN; lookup request_id; INSERT order; COMMIT; append + fdatasync
//! ```
//!
//! "Order only" publishes nothing at all: it is the floor, and outbox − order-only is the
//! outbox row's price per order. Each variant runs at `synchronous=FULL` (production: one
//! fsync per commit, which dominates) and at `NORMAL` (no fsync at commit), where the row's CPU
//! and page cost is no longer hidden behind the disk. The naive variant pays a second sync
//! (the log's) per order — durability that the outbox gets from its one commit.
//!
//! **Group commit** (`place` with many orders waiting): the outbox variant again at FULL, with
//! groups of 10, 100 and 500 orders per transaction. Its second table is the trade-off: orders/s
//! against the time one group takes from BEGIN to COMMIT — what an order that arrives as a
//! group starts waits for its reply (one that arrives just after waits for up to two groups).
//! A lone order is a group of one: the group-1 row is its latency.

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

use super::{Report, Spread, Table, TempDir, percentile, rotated};
use crate::datadir::DataDir;
use crate::db::{self, Synchronous};
use crate::error::{Context, Result};
use crate::order::service::{begin, find_existing, insert_order};
use crate::order::{Mode, OrderRequest, OrderService, generate};

/// Orders per run is capped: the default run must stay well under a minute.
pub const MAX_ORDERS: u64 = 1_000_000;
pub const MAX_ROUNDS: usize = 50;

#[derive(Debug, Clone)]
pub struct WriteBench {
    pub orders: u64,
    pub rounds: usize,
    pub seed: u64,
    /// Where the scratch data directories go.
    pub scratch: std::path::PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OrderOnly,
    Outbox,
    Naive,
}

#[derive(Debug, Clone, Copy)]
struct Variant {
    kind: Kind,
    sync: Synchronous,
    /// Orders per transaction (outbox only; 1 elsewhere).
    group: usize,
}

impl Variant {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::OrderOnly => "order row only",
            Kind::Outbox => "outbox",
            Kind::Naive => "naive (commit, append+fdatasync)",
        }
    }
    fn sync_name(&self) -> &'static str {
        match self.sync {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

const VARIANTS: [Variant; 9] = [
    Variant {
        kind: Kind::OrderOnly,
        sync: Synchronous::Full,
        group: 1,
    },
    Variant {
        kind: Kind::Outbox,
        sync: Synchronous::Full,
        group: 1,
    },
    Variant {
        kind: Kind::Naive,
        sync: Synchronous::Full,
        group: 1,
    },
    Variant {
        kind: Kind::Outbox,
        sync: Synchronous::Full,
        group: 10,
    },
    Variant {
        kind: Kind::Outbox,
        sync: Synchronous::Full,
        group: 100,
    },
    Variant {
        kind: Kind::Outbox,
        sync: Synchronous::Full,
        group: 500,
    },
    Variant {
        kind: Kind::OrderOnly,
        sync: Synchronous::Normal,
        group: 1,
    },
    Variant {
        kind: Kind::Outbox,
        sync: Synchronous::Normal,
        group: 1,
    },
    Variant {
        kind: Kind::Naive,
        sync: Synchronous::Normal,
        group: 1,
    },
];

/// One run of one variant: its throughput, and how long each transaction took (µs).
#[derive(Debug, Clone, Default)]
struct Run {
    orders_per_s: f64,
    tx_us: Vec<u64>,
}

pub fn run(bench: &WriteBench) -> Result<Report> {
    assert!(
        (1..=MAX_ORDERS).contains(&bench.orders),
        "orders {} outside 1..={MAX_ORDERS}",
        bench.orders
    );
    assert!(
        (1..=MAX_ROUNDS).contains(&bench.rounds),
        "rounds {} outside 1..={MAX_ROUNDS}",
        bench.rounds
    );
    let mut report = Report::new(
        "write",
        format!(
            "bench write: {} orders per run, {} rounds, a fresh data directory each",
            bench.orders, bench.rounds
        ),
        json!({ "orders_per_run": bench.orders, "rounds": bench.rounds, "seed": bench.seed }),
    );
    let requests = generate(bench.seed, 0, bench.orders);
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..bench.rounds {
        let indices: Vec<usize> = (0..VARIANTS.len()).collect();
        for i in rotated(&indices, round) {
            let run = report.steps.time(
                format!(
                    "round {round}: {} group {}",
                    VARIANTS[i].name(),
                    VARIANTS[i].group
                ),
                || run_once(VARIANTS[i], &requests, &bench.scratch),
            )?;
            runs[i].push(run);
        }
    }
    let orders_per_s: Vec<Vec<f64>> = runs
        .iter()
        .map(|r| r.iter().map(|r| r.orders_per_s).collect())
        .collect();
    let (table, json_rows) = summarise(&orders_per_s);
    report.tables.push((String::new(), table));
    let (groups, group_rows) = group_table(&runs);
    report.tables.push((
        "group commit (outbox, synchronous=FULL): group size vs the time one group takes".into(),
        groups,
    ));
    report.results = json!({ "variants": json_rows, "group_commit": group_rows });
    report.notes.push(
        "µs/order over order-only: against order-only at the same synchronous, one order per transaction; grouped rows come out below it".into(),
    );
    Ok(report)
}

/// One variant, one fresh data directory: orders/s over all `requests`.
fn run_once(variant: Variant, requests: &[OrderRequest], scratch: &Path) -> Result<Run> {
    let tmp = TempDir::new(scratch, "write")?;
    let data = DataDir::init(&tmp.path().join("data"), crate::broker::DEFAULT_PARTITIONS)?;
    let started = Instant::now();
    let tx_us = match variant.kind {
        Kind::OrderOnly => place_order_rows(&data, variant.sync, requests)?,
        Kind::Outbox => place_with(&data, variant, Mode::Outbox, requests)?,
        Kind::Naive => place_with(&data, variant, Mode::Naive, requests)?,
    };
    let elapsed_s = started.elapsed().as_secs_f64();
    Ok(Run {
        orders_per_s: requests.len() as f64 / elapsed_s,
        tx_us,
    })
}

/// The real service, with the benchmark's `synchronous` instead of the service's FULL.
fn place_with(
    data: &DataDir,
    variant: Variant,
    mode: Mode,
    requests: &[OrderRequest],
) -> Result<Vec<u64>> {
    let mut service = OrderService::open(data, mode)?;
    // The variant's durability, stated here: FULL is production, NORMAL exposes CPU cost.
    service.conn = db::open(&data.orders_db(), variant.sync)?;
    let mut tx_us = Vec::with_capacity(requests.len() / variant.group + 1);
    for group in requests.chunks(variant.group) {
        let started = Instant::now();
        if variant.group == 1 {
            service.place(&group[0])?;
        } else {
            let replies = service.place_group(group)?;
            assert!(
                replies.iter().all(|r| r.is_ok()),
                "generated orders are valid"
            );
        }
        tx_us.push(started.elapsed().as_micros() as u64);
    }
    Ok(tx_us)
}

/// The service's own statements minus the outbox row: the floor under the outbox.
fn place_order_rows(
    data: &DataDir,
    sync: Synchronous,
    requests: &[OrderRequest],
) -> Result<Vec<u64>> {
    // The variant's durability, as for the others.
    let mut conn = db::open(&data.orders_db(), sync)?;
    let now_us = crate::clock::now_us();
    let mut tx_us = Vec::with_capacity(requests.len());
    for request in requests {
        let started = Instant::now();
        let tx = begin(&mut conn)?;
        assert!(
            find_existing(&tx, request)?.is_none(),
            "generated request ids are unique"
        );
        insert_order(&tx, request, now_us)?;
        tx.commit().ctx("committing an order row")?;
        tx_us.push(started.elapsed().as_micros() as u64);
    }
    Ok(tx_us)
}

fn summarise(orders_per_s: &[Vec<f64>]) -> (Table, Vec<Value>) {
    let us_per_order = |ops: &[f64]| -> Vec<f64> { ops.iter().map(|o| 1e6 / o).collect() };
    let mut table = Table::new(&[
        "variant",
        "synchronous",
        "group",
        "orders/s",
        "µs/order",
        "µs/order over order-only",
    ]);
    let mut json_rows = Vec::new();
    for (i, variant) in VARIANTS.iter().enumerate() {
        let ops = Spread::of(&orders_per_s[i]);
        let us = Spread::of(&us_per_order(&orders_per_s[i]));
        // The floor for this durability setting: order-only's median µs/order.
        let floor = VARIANTS
            .iter()
            .position(|v| v.kind == Kind::OrderOnly && v.sync == variant.sync)
            .expect("every sync setting has an order-only variant");
        let floor_us = Spread::of(&us_per_order(&orders_per_s[floor])).median;
        let over_us = us.median - floor_us;
        table.push(vec![
            variant.name().to_string(),
            variant.sync_name().to_string(),
            variant.group.to_string(),
            ops.show(0),
            us.show(1),
            format!("{over_us:+.1}"),
        ]);
        json_rows.push(
            json!({ "variant": variant.name(), "synchronous": variant.sync_name(), "group": variant.group,
            "orders_per_s": ops, "us_per_order": us, "us_over_order_only": over_us,
            "orders_per_s_by_round": orders_per_s[i] }),
        );
    }
    (table, json_rows)
}

/// The outbox at FULL by group size: throughput against one transaction's time.
fn group_table(runs: &[Vec<Run>]) -> (Table, Vec<Value>) {
    let mut table = Table::new(&[
        "orders per tx",
        "orders/s",
        "tx p50 µs",
        "tx p99 µs",
        "tx max µs",
    ]);
    let mut json_rows = Vec::new();
    for (variant, runs) in VARIANTS.iter().zip(runs) {
        if variant.kind != Kind::Outbox || variant.sync != Synchronous::Full {
            continue;
        }
        let ops = Spread::of(&runs.iter().map(|r| r.orders_per_s).collect::<Vec<_>>());
        let mut tx_us: Vec<u64> = runs.iter().flat_map(|r| r.tx_us.iter().copied()).collect();
        let (p50, p99, max) = (
            percentile(&mut tx_us, 50.0),
            percentile(&mut tx_us, 99.0),
            percentile(&mut tx_us, 100.0),
        );
        table.push(vec![
            variant.group.to_string(),
            ops.show(0),
            p50.to_string(),
            p99.to_string(),
            max.to_string(),
        ]);
        json_rows.push(json!({ "group": variant.group, "orders_per_s": ops,
            "tx_p50_us": p50, "tx_p99_us": p99, "tx_max_us": max }));
    }
    (table, json_rows)
}
