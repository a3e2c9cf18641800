//! `bench write --postgres URL`: the PostgreSQL write path in three forms, side by side.
//!
//! ```text
//!   keep, no trigger      INSERT orders; INSERT outbox; COMMIT          (the claim relay's)
//!   keep + NOTIFY         … and the statement trigger's pg_notify       (what wakes relays)
//!   delete + NOTIFY       … INSERT outbox; DELETE outbox; COMMIT        (init --cdc delete)
//! ```
//!
//! W writer connections place N orders as fast as they can (each commit waits for its WAL
//! flush: `synchronous_commit = on`). Reported: orders/s, and what the outbox left behind in
//! the table (its partitions' size on disk) and in the WAL (bytes written per order).

use std::time::Instant;

use serde_json::{Value, json};

use super::latency_pg::Database;
use super::{Report, Spread, Table, TempDir, rotated};
use crate::datadir::DataDir;
use crate::error::{Context, Result};
use crate::order::{Mode, generate};
use crate::store::StoreConfig;
use crate::store::pg::{self, cdc};

#[derive(Debug, Clone, Copy)]
struct Variant {
    name: &'static str,
    trigger: bool,
    delete: bool,
}

const VARIANTS: [Variant; 3] = [
    Variant {
        name: "keep rows, no trigger",
        trigger: false,
        delete: false,
    },
    Variant {
        name: "keep rows + NOTIFY trigger",
        trigger: true,
        delete: false,
    },
    Variant {
        name: "insert-and-delete + NOTIFY",
        trigger: true,
        delete: true,
    },
];

struct RunResult {
    orders_per_s: f64,
    outbox_bytes: i64,
    wal_bytes_per_order: f64,
}

pub fn run(
    admin_url: &str,
    orders: u64,
    writers: usize,
    rounds: usize,
    seed: u64,
    scratch: &std::path::Path,
) -> Result<Report> {
    let mut report = Report::new(
        "write-postgres",
        "bench write --postgres: keep outbox rows vs the NOTIFY trigger vs insert-and-delete"
            .into(),
        json!({ "orders": orders, "writers": writers, "rounds": rounds,
                "order_service": "synchronous_commit=on, one order per tx" }),
    );
    let mut runs: Vec<Vec<RunResult>> = (0..VARIANTS.len()).map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for i in rotated(&[0, 1, 2], round) {
            runs[i].push(run_once(
                VARIANTS[i],
                admin_url,
                orders,
                writers,
                seed + round as u64,
                scratch,
            )?);
        }
    }
    let mut table = Table::new(&[
        "write path",
        "orders/s",
        "outbox table KiB",
        "WAL bytes/order",
    ]);
    let mut json_rows = Vec::new();
    for (variant, runs) in VARIANTS.iter().zip(&runs) {
        let of =
            |f: &dyn Fn(&RunResult) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
        let rate = of(&|r| r.orders_per_s);
        let table_kib = of(&|r| r.outbox_bytes as f64 / 1024.0);
        let wal = of(&|r| r.wal_bytes_per_order);
        table.push(vec![
            variant.name.to_string(),
            rate.show(0),
            table_kib.show(0),
            wal.show(0),
        ]);
        json_rows.push(json!({ "variant": variant.name, "orders_per_s": rate,
                               "outbox_table_kib": table_kib, "wal_bytes_per_order": wal }));
    }
    report.tables.push((String::new(), table));
    report.results = Value::Array(json_rows);
    Ok(report)
}

fn run_once(
    variant: Variant,
    admin_url: &str,
    orders: u64,
    writers: usize,
    seed: u64,
    scratch: &std::path::Path,
) -> Result<RunResult> {
    let db = Database::create(admin_url)?;
    let tmp = TempDir::new(scratch, "write-pg")?;
    let root = tmp.path().join("data");
    let store = StoreConfig::Postgres(db.url.clone());
    let data = DataDir::init_with_store(&root, crate::broker::DEFAULT_PARTITIONS, store, None)?;
    let mut client = pg::connect(&db.url, pg::DEFAULT_IDLE_IN_TX_MS)?;
    if variant.delete {
        cdc::setup(&mut client, cdc::OutboxRows::Delete)?;
    } else if variant.trigger {
        cdc::ensure_notify_trigger(&mut client)?;
    }
    let wal_before: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .ctx("reading the WAL position")?
        .get(0);
    let requests = generate(seed, 0, orders);
    let started = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (requests, data) = (&requests, &data);
                scope.spawn(move || -> Result<()> {
                    let mut store = crate::store::open_orders(data, Mode::Outbox)?;
                    for request in requests.iter().skip(w).step_by(writers) {
                        store.place(request)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().expect("a writer thread panicked")?;
        }
        Ok(())
    })?;
    let elapsed = started.elapsed();
    let row = client
        .query_one(
            "SELECT (SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::bigint
                       FROM pg_inherits WHERE inhparent = 'outbox'::regclass),
                    pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8",
            &[&wal_before],
        )
        .ctx("measuring the outbox and the WAL")?;
    drop(client);
    drop(data);
    db.drop_it()?;
    Ok(RunResult {
        orders_per_s: orders as f64 / elapsed.as_secs_f64(),
        outbox_bytes: row.get(0),
        wal_bytes_per_order: row.get::<_, f64>(1) / orders as f64,
    })
}
