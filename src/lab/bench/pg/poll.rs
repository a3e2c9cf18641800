//! The canonical claim as the outbox grows: `SELECT … FOR UPDATE SKIP LOCKED` of 100 rows,
//! with 10k → 10M *published* rows in the table and a small unpublished backlog at its end.
//! Each claim is abandoned (ROLLBACK), so every sample claims the same backlog afresh.
//!
//! Flat means the claim reads the partial index of unpublished rows, whose size follows the
//! backlog, not the table: published rows are in no index the claim touches. Partitions add
//! one (empty) partial-index probe each, so the partition count is printed beside the size.

use std::time::Instant;

use serde_json::json;

use crate::error::Result;
use crate::lab::bench::pg::scratch;
use crate::lab::bench::pg::{PgBench, fill, fill_report};
use crate::lab::bench::{Report, Steps, Table, load_average, percentile};
use crate::store::pg::outbox::PgOutbox;
use crate::store::{ClaimMode, OutboxStore};

pub struct PollParams {
    pub dir: std::path::PathBuf,
    pub max_rows: i64,
    pub claims: usize,
    pub batch: usize,
    /// Unpublished rows at the end of the table: the backlog the claim finds.
    pub backlog: i64,
    pub partition_rows: i64,
}

pub const SIZES: [i64; 4] = [10_000, 100_000, 1_000_000, 10_000_000];

pub fn run(params: &PollParams, bench: &mut PgBench) -> Result<Report> {
    let load_before = load_average();
    let mut steps = Steps::default();
    let root = scratch(&params.dir, "pg-poll")?;
    let (_data, url) = bench.data_dir(&root, "poll", Some(params.partition_rows))?;
    let mut table = Table::new(&[
        "published rows",
        "partitions",
        "claim p50 µs",
        "claim p99 µs",
        "claim max µs",
    ]);
    let mut results = Vec::new();
    let mut published = 0;
    let old_us = crate::clock::now_us() - 3_600_000_000;
    for size in SIZES.iter().copied().filter(|s| *s <= params.max_rows) {
        // The backlog moves to the end each time: delete the old one, grow, add a new one.
        steps.time(format!("grow to {size} published rows"), || {
            let mut client = crate::store::pg::connect(&url, 60_000)?;
            client
                .execute("DELETE FROM outbox WHERE published_at_us IS NULL", &[])
                .map_err(|e| crate::Error::Postgres {
                    context: "dropping the old backlog".into(),
                    source: e,
                })?;
            fill(&url, size - published, old_us, Some(old_us))?;
            fill(&url, params.backlog, old_us, None)
        })?;
        published = size;
        let samples = steps.time(format!("{} claims at {size}", params.claims), || {
            sample_claims(&url, params)
        })?;
        let mut us = samples;
        let (p50, p99, max) = (
            percentile(&mut us, 50.0),
            percentile(&mut us, 99.0),
            percentile(&mut us, 100.0),
        );
        let partitions = partition_count(&url)?;
        table.push(vec![
            size.to_string(),
            partitions.to_string(),
            p50.to_string(),
            p99.to_string(),
            max.to_string(),
        ]);
        results.push(json!({ "published_rows": size, "partitions": partitions,
                             "claim_p50_us": p50, "claim_p99_us": p99, "claim_max_us": max }));
    }
    bench.drop_database("poll")?;
    std::fs::remove_dir_all(&root).ok();
    let mut report = Report::new(
        "postgres-poll",
        format!(
            "PostgreSQL claim of {} (FOR UPDATE SKIP LOCKED) with a backlog of {} as the outbox grows",
            params.batch, params.backlog
        ),
        json!({ "max_rows": params.max_rows, "claims": params.claims, "batch": params.batch,
                        "backlog": params.backlog, "partition_rows": params.partition_rows }),
    );
    fill_report(&mut report, bench, &load_before, table, results, steps);
    report.notes.extend([
        "each claim is abandoned (ROLLBACK): every sample claims the same backlog".into(),
    ]);
    Ok(report)
}

fn sample_claims(url: &str, params: &PollParams) -> Result<Vec<u64>> {
    let mut outbox = PgOutbox::open(url, ClaimMode::Locked)?;
    let mut samples = Vec::with_capacity(params.claims);
    for i in 0..params.claims {
        let started = Instant::now();
        let claim = outbox.claim(&format!("poll-{i}"), 60_000, params.batch)?;
        samples.push(started.elapsed().as_micros() as u64);
        assert_eq!(
            claim.rows.len(),
            params.batch.min(params.backlog as usize),
            "a full batch each time"
        );
        outbox.abandon()?;
    }
    Ok(samples)
}

fn partition_count(url: &str) -> Result<i64> {
    let mut client = crate::store::pg::connect(url, 60_000)?;
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'outbox'::regclass",
            &[],
        )
        .map_err(|e| crate::Error::Postgres {
            context: "counting partitions".into(),
            source: e,
        })?;
    Ok(row.get(0))
}
