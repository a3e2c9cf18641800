//! `bench inbox`: how big the inbox gets and what sweeping it costs, at a few event rates and
//! retention windows.
//!
//! ```text
//!   for each (rate, window):
//!     fresh consumer.db ── fill inbox: rate × (window + sweep interval) rows, processed_at
//!                          spaced 1/rate apart, ending "now"            (setup, not timed)
//!     measure  rows, bytes (table + sweep index, from dbstat)
//!     time     ONE steady-state sweep: the rows that aged out during one sweep interval,
//!              batch_rows per transaction, as the consumer's sweeper runs it
//! ```
//!
//! The inbox is filled directly rather than by running the consumer for 24 hours: the rows are
//! what the consumer writes (same schema, same key shape: 32 hex digits), and what is measured
//! — size and the sweep — does not care who wrote them. A combination above `max_rows` is
//! skipped and says so (its size is then rate × window × the bytes per row measured elsewhere).
//! Absolute times are noise on these machines; compare rows within one run.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::clock::Clock;
use crate::consumer::retention::{self, Retention, fmt_ms};
use crate::consumer::{RedeliveryHorizon, schema};
use crate::db::{self, Synchronous};
use crate::error::{Context, Result};
use crate::event::new_event_id;
use crate::lab::bench::{Report, Table, TempDir};

#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Scratch directory: one consumer.db per combination, deleted after it is measured.
    pub scratch: PathBuf,
    pub rates_per_s: Vec<u64>,
    pub windows_ms: Vec<u64>,
    pub sweep_every_ms: u64,
    pub batch_rows: u32,
    /// Skip a combination whose inbox would exceed this many rows.
    pub max_rows: u64,
    /// Aggregates per event for the seq guard's size (orders: placed, paid, shipped → 3).
    pub events_per_aggregate: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BenchRow {
    pub rate_per_s: u64,
    pub window_ms: u64,
    pub inbox_rows: u64,
    pub inbox_bytes: u64,
    pub sweep_index_bytes: u64,
    pub bytes_per_row: f64,
    pub guard_rows: u64,
    pub guard_bytes: u64,
    pub sweep_rows: u64,
    pub sweep_batches: u32,
    pub sweep_ms: f64,
    pub max_batch_ms: f64,
    pub skipped: Option<String>,
}

/// Run every combination; one table row each.
pub fn run(config: &BenchConfig) -> Result<Report> {
    assert!(config.batch_rows >= 1, "batch_rows must be >= 1");
    assert!(
        config.events_per_aggregate >= 1,
        "events_per_aggregate must be >= 1"
    );
    let mut report = Report::new(
        "inbox",
        format!(
            "bench inbox: inbox size and sweep cost (sweep every {}, {} rows per transaction)",
            fmt_ms(config.sweep_every_ms),
            config.batch_rows
        ),
        serde_json::json!({ "sweep_every_ms": config.sweep_every_ms,
            "batch_rows": config.batch_rows, "max_rows": config.max_rows }),
    );
    let tmp = TempDir::new(&config.scratch, "inbox")?;
    let mut rows = Vec::new();
    for &window_ms in &config.windows_ms {
        for &rate_per_s in &config.rates_per_s {
            let row = report.steps.time(
                format!("{rate_per_s} events/s, window {}", fmt_ms(window_ms)),
                || measure(config, tmp.path(), rate_per_s, window_ms),
            )?;
            rows.push(row);
        }
    }
    report.tables.push((String::new(), table(&rows)));
    report.results = serde_json::to_value(&rows).expect("rows serialise");
    Ok(report)
}

fn measure(config: &BenchConfig, dir: &Path, rate_per_s: u64, window_ms: u64) -> Result<BenchRow> {
    let inbox_rows = rate_per_s * (window_ms + config.sweep_every_ms) / 1_000;
    let mut row = BenchRow {
        rate_per_s,
        window_ms,
        inbox_rows,
        ..BenchRow::default()
    };
    if inbox_rows > config.max_rows {
        row.skipped = Some(format!(
            "{inbox_rows} rows > --max-rows {}",
            config.max_rows
        ));
        return Ok(row);
    }
    let path = dir.join(format!("inbox-{rate_per_s}-{window_ms}.db"));
    remove_db(&path);
    schema::create(&path)?;
    let now_us = Clock::system().now_us();
    fill_inbox(&path, rate_per_s, inbox_rows, now_us)?;
    row.guard_rows = inbox_rows.div_ceil(config.events_per_aggregate);
    fill_guard(&path, row.guard_rows)?;
    let sizes = table_bytes(&path)?;
    row.inbox_bytes = sizes.0;
    row.sweep_index_bytes = sizes.1;
    row.guard_bytes = sizes.2;
    row.bytes_per_row = (row.inbox_bytes + row.sweep_index_bytes) as f64 / inbox_rows.max(1) as f64;

    let retention = Retention {
        retention_ms: window_ms,
        horizon: RedeliveryHorizon {
            relay_lease_ms: 0,
            relay_retry_ms: 0,
            tolerated_downtime_ms: 0,
        },
        batch_rows: config.batch_rows,
        max_batches: u32::MAX,
        pause_between_batches_ms: 0,
    };
    // NORMAL, as the consumer's sweeper runs it.
    let mut conn = db::open(&path, Synchronous::Normal)?;
    let report = retention::sweep(&mut conn, &retention, now_us)?;
    row.sweep_rows = report.deleted_rows;
    row.sweep_batches = report.batches;
    row.sweep_ms = report.elapsed_us as f64 / 1e3;
    row.max_batch_ms = report.max_batch_us as f64 / 1e3;
    drop(conn);
    remove_db(&path);
    Ok(row)
}

/// `rows` inbox rows, the newest processed at `now_us`, one every 1/rate seconds before it.
fn fill_inbox(path: &Path, rate_per_s: u64, rows: u64, now_us: i64) -> Result<()> {
    let mut conn = setup_connection(path)?;
    let step_us = 1_000_000 / rate_per_s.max(1) as i64;
    let tx = conn.transaction().ctx("BEGIN (setup)")?;
    {
        let mut insert = tx
            .prepare("INSERT INTO inbox (event_id, processed_at_us) VALUES (?1, ?2)")
            .ctx("preparing setup insert")?;
        for i in 0..rows as i64 {
            insert
                .execute(params![
                    new_event_id(),
                    now_us - (rows as i64 - i) * step_us
                ])
                .ctx("filling the inbox")?;
        }
    }
    tx.commit().ctx("COMMIT (setup)")
}

/// The seq guard's table for the same events: one row per aggregate.
fn fill_guard(path: &Path, aggregates: u64) -> Result<()> {
    let mut conn = setup_connection(path)?;
    let tx = conn.transaction().ctx("BEGIN (setup)")?;
    {
        let mut insert = tx
            .prepare("INSERT INTO aggregate_guard (aggregate_id, last_seq) VALUES (?1, 3)")
            .ctx("preparing guard insert")?;
        for id in 0..aggregates {
            insert
                .execute(params![id.to_string()])
                .ctx("filling the guard")?;
        }
    }
    tx.commit().ctx("COMMIT (setup)")
}

/// Setup only: NORMAL plus a big page cache, and one transaction per fill — nothing here is
/// timed, and a crash mid-setup just means running the benchmark again.
fn setup_connection(path: &Path) -> Result<Connection> {
    let conn = db::open(path, Synchronous::Normal)?;
    conn.execute_batch("PRAGMA cache_size = -262144") // 256 MiB
        .ctx("setting cache_size")?;
    Ok(conn)
}

/// Bytes of (inbox table, sweep index, guard table), from SQLite's dbstat: pages really used.
fn table_bytes(path: &Path) -> Result<(u64, u64, u64)> {
    let conn = db::open(path, Synchronous::Normal)?;
    let bytes = |name: &str| -> Result<u64> {
        conn.query_row(
            "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )
        .map(|b| b as u64)
        .ctx(format!("measuring {name} with dbstat"))
    };
    Ok((
        bytes("inbox")?,
        bytes("inbox_by_processed_at")?,
        bytes("aggregate_guard")?,
    ))
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

fn table(rows: &[BenchRow]) -> Table {
    let mut table = Table::new(&[
        "ev/s",
        "window",
        "inbox rows",
        "table MiB",
        "index MiB",
        "B/row",
        "swept",
        "batches",
        "sweep ms",
        "mean tx ms",
        "max tx ms",
        "guard rows",
        "guard MiB",
    ]);
    for r in rows {
        let window = fmt_ms(r.window_ms);
        if let Some(why) = &r.skipped {
            let mut cells = vec![r.rate_per_s.to_string(), window, r.inbox_rows.to_string()];
            cells.push(format!("skipped: {why}"));
            cells.resize(13, String::new());
            table.push(cells);
            continue;
        }
        table.push(vec![
            r.rate_per_s.to_string(),
            window,
            r.inbox_rows.to_string(),
            format!("{:.1}", mib(r.inbox_bytes)),
            format!("{:.1}", mib(r.sweep_index_bytes)),
            format!("{:.1}", r.bytes_per_row),
            r.sweep_rows.to_string(),
            r.sweep_batches.to_string(),
            format!("{:.1}", r.sweep_ms),
            format!("{:.2}", r.sweep_ms / r.sweep_batches.max(1) as f64),
            format!("{:.2}", r.max_batch_ms),
            r.guard_rows.to_string(),
            format!("{:.1}", mib(r.guard_bytes)),
        ]);
    }
    table
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
