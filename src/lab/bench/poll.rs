//! `bench poll`: does the relay's claim stay flat as the outbox grows?
//!
//! ```text
//!   for size in 10k, 100k, 1M, 10M (≤ --max-rows):
//!     grow the outbox to `size` published rows        (bulk, see build.rs)
//!     add claims × batch unpublished rows             (the backlog a relay would see)
//!     claims × { claim_batch(100) ; mark_published }  (timed: the claim; the mark, apart)
//! ```
//!
//! The claim reads the partial index `outbox_unpublished`, which holds only unpublished rows,
//! so its cost should follow the backlog, not the table: the same at 10k and 10M. In the
//! partitioned layout it also probes each live segment's (empty) partial index, so it grows
//! with the number of live segments — which cleanup keeps small.

use std::time::Instant;

use serde_json::json;

use crate::clock::{Clock, now_us};
use crate::datadir::DataDir;
use crate::db::{self, Synchronous};
use crate::error::{Context, Result};
use crate::lab::bench::build::{EventIds, Filler};
use crate::lab::bench::{Report, Steps, Table, TempDir, percentile};
use crate::outbox::{self, segments};

pub const SIZES: [u64; 4] = [10_000, 100_000, 1_000_000, 10_000_000];
/// Long enough that no lease expires while the benchmark holds it.
const LEASE_MS: u64 = 600_000;

#[derive(Debug, Clone)]
pub struct PollParams {
    pub dir: std::path::PathBuf,
    /// Sizes above this are skipped; below 10k, one step of exactly this size.
    pub max_rows: u64,
    pub claims_per_size: usize,
    pub batch: usize,
    /// None: the single table. Some(rows): partitioned, this many rows per segment.
    pub layouts: Vec<Option<i64>>,
    pub keep: bool,
}

struct Measured {
    layout: String,
    published_rows: u64,
    live_segments: usize,
    poll_us: Vec<u64>,
    claim_us: Vec<u64>,
    mark_us: Vec<u64>,
}

pub fn run(p: &PollParams) -> Result<Report> {
    assert!(p.claims_per_size >= 1, "claims_per_size must be at least 1");
    let load_at_start = crate::lab::bench::load_average();
    let mut steps = Steps::default();
    let mut measured = Vec::new();
    for layout in &p.layouts {
        measured.extend(run_layout(p, *layout, &mut steps)?);
    }
    let mut table = Table::new(&[
        "layout",
        "published rows",
        "live segs",
        "claims",
        "poll p50 µs",
        "poll p99 µs",
        "claim p50 µs",
        "claim p99 µs",
        "claim max µs",
        "mark p50 µs",
    ]);
    let mut results = Vec::new();
    for m in &mut measured {
        let (p50, p99, max) = (
            percentile(&mut m.claim_us, 50.0),
            percentile(&mut m.claim_us, 99.0),
            percentile(&mut m.claim_us, 100.0),
        );
        let mark_p50 = percentile(&mut m.mark_us, 50.0);
        let (poll_p50, poll_p99) = (
            percentile(&mut m.poll_us, 50.0),
            percentile(&mut m.poll_us, 99.0),
        );
        table.push(vec![
            m.layout.clone(),
            m.published_rows.to_string(),
            m.live_segments.to_string(),
            m.claim_us.len().to_string(),
            poll_p50.to_string(),
            poll_p99.to_string(),
            p50.to_string(),
            p99.to_string(),
            max.to_string(),
            mark_p50.to_string(),
        ]);
        results.push(json!({ "layout": m.layout, "published_rows": m.published_rows,
            "live_segments": m.live_segments, "claims": m.claim_us.len(),
            "poll_p50_us": poll_p50, "poll_p99_us": poll_p99, "claim_p50_us": p50, "claim_p99_us": p99, "claim_max_us": max, "mark_p50_us": mark_p50 }));
    }
    Ok(Report {
        bench: "poll",
        title: format!(
            "bench poll: claim of a batch of {} (BEGIN IMMEDIATE … UPDATE … RETURNING … COMMIT, synchronous=NORMAL) as the outbox grows",
            p.batch
        ),
        tables: vec![(String::new(), table)],
        results: results.into(),
        params: json!({ "max_rows": p.max_rows, "claims_per_size": p.claims_per_size,
                        "batch": p.batch, "layouts": layout_names(&p.layouts) }),
        steps,
        load_at_start,
        notes: vec![
            "read down a column: does a claim slow down as published rows pile up? Flat means the partial index keeps old rows out of the claim's way".into(),
            "poll = the claim's read alone (which rows: partial index + per-order head check), read-only; claim = poll + lease UPDATE of 100 rows + COMMIT".into(),
            "published rows = rows with published_at_us set when the claims ran; each claim also sees a backlog of claims × batch unpublished rows".into(),
        ],
    })
}

fn layout_names(layouts: &[Option<i64>]) -> Vec<String> {
    layouts.iter().map(|l| layout_name(*l)).collect()
}

fn layout_name(layout: Option<i64>) -> String {
    match layout {
        None => "single".into(),
        Some(rows) => format!("partitioned/{rows}"),
    }
}

fn sizes(max_rows: u64) -> Vec<u64> {
    let sizes: Vec<u64> = SIZES.iter().copied().filter(|s| *s <= max_rows).collect();
    if sizes.is_empty() {
        vec![max_rows.max(1)]
    } else {
        sizes
    }
}

fn run_layout(p: &PollParams, layout: Option<i64>, steps: &mut Steps) -> Result<Vec<Measured>> {
    let name = layout_name(layout);
    let tmp = TempDir::new(&p.dir, &format!("poll-{name}"))?.keep(p.keep);
    let root = tmp.path();
    let data = DataDir::init(&root.join("data"), crate::broker::DEFAULT_PARTITIONS)?;
    if let Some(segment_rows) = layout {
        // FULL: a one-off layout change; nothing to gain from weaker durability.
        let mut conn = db::open(&data.orders_db(), Synchronous::Full)?;
        segments::create_layout(&mut conn, segment_rows)?;
    }
    let mut filler = Filler::open(&data.orders_db())?;
    // NORMAL, as the relay runs it: the claim's commit costs a WAL write, not an fsync.
    let mut relay = db::open(&data.orders_db(), Synchronous::Normal)?;
    let old_us = now_us() - 86_400_000_000;
    let backlog = (p.claims_per_size * p.batch) as u64;
    let mut published = 0u64;
    let mut out = Vec::new();
    for size in sizes(p.max_rows) {
        let grow = size.saturating_sub(published);
        steps.time(
            format!("{name}: grow to {size} published rows (+{grow}, bulk)"),
            || filler.fill(grow, old_us, Some(old_us), EventIds::Ordered),
        )?;
        steps.time(
            format!("{name}: add {backlog} unpublished rows, checkpoint"),
            || {
                filler.fill(backlog, now_us(), None, EventIds::Ordered)?;
                // So no claim below pays for checkpointing the bulk build's WAL.
                filler
                    .connection()
                    .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                    .ctx("checkpointing after the bulk build")
            },
        )?;
        let live_segments = if layout.is_some() {
            segments::live_segments(&relay)?.len()
        } else {
            1
        };
        let (poll_us, claim_us, mark_us) = steps.time(
            format!("{name}: {} claims at {size}", p.claims_per_size),
            || claims(&mut relay, p.claims_per_size, p.batch),
        )?;
        published = size + backlog;
        out.push(Measured {
            layout: name.clone(),
            published_rows: size,
            live_segments,
            poll_us,
            claim_us,
            mark_us,
        });
    }
    drop(filler);
    drop(relay);
    Ok(out)
}

/// `count` × { poll, claim of `batch`, mark } (the relay marks right after its append).
type Samples = (Vec<u64>, Vec<u64>, Vec<u64>);
fn claims(conn: &mut rusqlite::Connection, count: usize, batch: usize) -> Result<Samples> {
    let (mut poll_us, mut claim_us, mut mark_us) = (Vec::new(), Vec::new(), Vec::new());
    let layout = outbox::Layout::of(conn)?; // once, as the relay does
    for i in 0..count {
        let started = Instant::now();
        let polled = poll(conn, layout, batch)?;
        poll_us.push(started.elapsed().as_micros() as u64);
        assert_eq!(
            polled, batch,
            "the backlog holds a full batch for every poll"
        );
        let token = format!("bench/{}/{i}", std::process::id());
        let started = Instant::now();
        let claim = outbox::claim_batch(conn, layout, &token, Clock::system(), LEASE_MS, batch)?;
        claim_us.push(started.elapsed().as_micros() as u64);
        assert_eq!(
            claim.rows.len(),
            batch,
            "the backlog holds a full batch for every claim"
        );
        let started = Instant::now();
        let marked = outbox::mark_published(conn, &claim, Clock::system())?;
        mark_us.push(started.elapsed().as_micros() as u64);
        assert_eq!(marked, batch, "nobody else holds these leases");
    }
    Ok((poll_us, claim_us, mark_us))
}

/// The claim's read alone, run read-only: which `batch` rows would it take? The SELECT is cut
/// out of the claim's own SQL, so it cannot drift from what the relay runs.
fn poll(conn: &rusqlite::Connection, layout: outbox::Layout, batch: usize) -> Result<usize> {
    let claim_sql = if layout == outbox::Layout::Partitioned {
        let active = segments::active_segments(conn)?;
        let first = *active.first().expect("a backlog means an active segment");
        segments::claim_sql(first, &active[..1])
    } else {
        outbox::claim::CLAIM_SQL.to_string()
    };
    let select = select_of(&claim_sql);
    let mut stmt = conn.prepare_cached(&select).ctx("preparing poll")?;
    let rows = stmt
        // No lease is "too far ahead" here (?3 = the clock-skew horizon): the plain poll.
        .query_map(rusqlite::params![now_us(), batch as i64, i64::MAX], |r| {
            r.get::<_, i64>(0)
        })
        .ctx("polling")?
        .count();
    Ok(rows)
}

/// `UPDATE … WHERE id IN (SELECT … ?3 … ?5 … LIMIT ?4) RETURNING …` ⟶
/// `SELECT … ?1 … ?3 … LIMIT ?2`.
fn select_of(claim_sql: &str) -> String {
    let start = claim_sql
        .find("SELECT o.id")
        .expect("claim has a SELECT o.id");
    let end = claim_sql
        .find("LIMIT ?4")
        .expect("claim ends its SELECT with LIMIT ?4");
    format!("{} LIMIT ?2", &claim_sql[start..end])
        .replace("?3", "?1")
        .replace("?5", "?3")
}
