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

use std::time::Instant;

use serde_json::{Value, json};

use super::{Spread, TempDir, print_table, rotated};
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

const VARIANTS: [Variant; 6] = [
    Variant {
        kind: Kind::OrderOnly,
        sync: Synchronous::Full,
    },
    Variant {
        kind: Kind::Outbox,
        sync: Synchronous::Full,
    },
    Variant {
        kind: Kind::Naive,
        sync: Synchronous::Full,
    },
    Variant {
        kind: Kind::OrderOnly,
        sync: Synchronous::Normal,
    },
    Variant {
        kind: Kind::Outbox,
        sync: Synchronous::Normal,
    },
    Variant {
        kind: Kind::Naive,
        sync: Synchronous::Normal,
    },
];

pub fn run(bench: &WriteBench) -> Result<Value> {
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
    let mut out = super::header(
        "bench write",
        json!({ "orders_per_run": bench.orders, "rounds": bench.rounds, "seed": bench.seed }),
    );
    let requests = generate(bench.seed, 0, bench.orders);
    let mut orders_per_s: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..bench.rounds {
        let indices: Vec<usize> = (0..VARIANTS.len()).collect();
        for i in rotated(&indices, round) {
            orders_per_s[i].push(run_once(VARIANTS[i], &requests)?);
        }
    }
    let (rows, json_rows) = summarise(&orders_per_s);
    print_table(
        &[
            "variant",
            "synchronous",
            "orders/s",
            "µs/order",
            "µs/order over order-only",
        ],
        &rows,
    );
    out["results"] = Value::Array(json_rows);
    Ok(out)
}

/// One variant, one fresh data directory: orders/s over all `requests`.
fn run_once(variant: Variant, requests: &[OrderRequest]) -> Result<f64> {
    let tmp = TempDir::new("write")?;
    let data = DataDir::init(&tmp.path().join("data"), crate::broker::DEFAULT_PARTITIONS)?;
    let started = Instant::now();
    match variant.kind {
        Kind::OrderOnly => place_order_rows(&data, variant.sync, requests)?,
        Kind::Outbox => place_with(&data, variant.sync, Mode::Outbox, requests)?,
        Kind::Naive => place_with(&data, variant.sync, Mode::Naive, requests)?,
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    Ok(requests.len() as f64 / elapsed_s)
}

/// The real service, with the benchmark's `synchronous` instead of the service's FULL.
fn place_with(
    data: &DataDir,
    sync: Synchronous,
    mode: Mode,
    requests: &[OrderRequest],
) -> Result<()> {
    let mut service = OrderService::open(data, mode)?;
    // The variant's durability, stated here: FULL is production, NORMAL exposes CPU cost.
    service.conn = db::open(&data.orders_db(), sync)?;
    for request in requests {
        service.place(request)?;
    }
    Ok(())
}

/// The service's own statements minus the outbox row: the floor under the outbox.
fn place_order_rows(data: &DataDir, sync: Synchronous, requests: &[OrderRequest]) -> Result<()> {
    // The variant's durability, as for the others.
    let mut conn = db::open(&data.orders_db(), sync)?;
    let now_us = crate::clock::now_us();
    for request in requests {
        let tx = begin(&mut conn)?;
        assert!(
            find_existing(&tx, request)?.is_none(),
            "generated request ids are unique"
        );
        insert_order(&tx, request, now_us)?;
        tx.commit().ctx("committing an order row")?;
    }
    Ok(())
}

fn summarise(orders_per_s: &[Vec<f64>]) -> (Vec<Vec<String>>, Vec<Value>) {
    let us_per_order = |ops: &[f64]| -> Vec<f64> { ops.iter().map(|o| 1e6 / o).collect() };
    let mut rows = Vec::new();
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
        rows.push(vec![
            variant.name().to_string(),
            variant.sync_name().to_string(),
            ops.show(0),
            us.show(1),
            format!("{over_us:+.1}"),
        ]);
        json_rows.push(
            json!({ "variant": variant.name(), "synchronous": variant.sync_name(),
            "orders_per_s": ops, "us_per_order": us, "us_over_order_only": over_us,
            "orders_per_s_by_round": orders_per_s[i] }),
        );
    }
    (rows, json_rows)
}
