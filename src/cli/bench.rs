//! `bench <which>`: the command line of `lab::bench`. Adding a benchmark: a module in
//! src/lab/bench/ returning a `Report`, a variant here, and one line in `run`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::Result;
use crate::lab::bench::{self, Report};
use crate::outbox::cleanup::CleanupConfig;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub which: Which,
}

/// The flags every benchmark takes.
#[derive(Args, Debug)]
pub struct Common {
    /// Scratch directory: each benchmark builds its data in a subdirectory, removed after.
    #[arg(long)]
    pub dir: PathBuf,
    /// Also write the results as JSON to this file (`-`: print it after the table).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the scratch data instead of removing it.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Subcommand, Debug)]
pub enum Which {
    /// The claim of a batch as the outbox grows to 10k, 100k, 1M, 10M published rows.
    Poll {
        #[command(flatten)]
        common: Common,
        /// Skip sizes above this (10000 for a quick run).
        #[arg(long, default_value_t = 10_000_000)]
        max_rows: u64,
        /// Claims timed at each size.
        #[arg(long, default_value_t = 300)]
        claims: usize,
        /// Rows per claim.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Also measure the partitioned layout with this many rows per segment (0: skip it).
        #[arg(long, default_value_t = 100_000)]
        segment_rows: i64,
    },
    /// The order write path's p50/p99 with cleanup running vs not, per strategy.
    Cleanup {
        #[command(flatten)]
        common: Common,
        /// Old published rows for cleanup to remove.
        #[arg(long, default_value_t = 500_000)]
        old_rows: u64,
        /// Orders placed per phase.
        #[arg(long, default_value_t = 3_000)]
        orders: u64,
        /// The writer's pace, orders per second.
        #[arg(long, default_value_t = 500)]
        rate: u64,
        /// Partitioned layout: events per segment table.
        #[arg(long, default_value_t = crate::outbox::segments::DEFAULT_SEGMENT_ROWS)]
        segment_rows: i64,
        /// Rows per delete transaction (single layout).
        #[arg(long, default_value_t = CleanupConfig::default().batch_rows)]
        batch_rows: usize,
        /// Gap between cleanup transactions, so waiting writers get the lock.
        #[arg(long, default_value_t = CleanupConfig::default().pause_ms)]
        pause_ms: u64,
        /// Alternations of the no-cleanup and cleanup phases (orders are split over them).
        #[arg(long, default_value_t = 3)]
        rounds: u64,
        /// The cleaner's budget: at most this % of wall time holding the write lock.
        #[arg(long, default_value_t = CleanupConfig::default().max_lock_share_pct)]
        max_lock_share: f64,
    },
    /// The consumer's inbox: rows, bytes and sweep cost per event rate and retention window.
    Inbox(super::sweep::BenchInboxArgs),
    /// The write path: orders/s for order-only, outbox and naive; the outbox row's µs/order.
    Write(super::bench_pipeline::WriteArgs),
    /// Relay events/s by batch size and relay count, and fdatasync's share of a pass.
    Relay(super::bench_pipeline::RelayArgs),
    /// Commit -> applied latency: polling relay vs the WAL doorbell.
    Latency(super::bench_pipeline::LatencyArgs),
    /// The PostgreSQL store: relay throughput vs SQLite, claim vs table size, cleanup.
    Postgres(super::bench_pg::PgBenchArgs),
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let (report, common): (Report, &Common) = match &args.which {
        Which::Inbox(inbox) => return super::sweep::bench(inbox),
        Which::Write(args) => return super::bench_pipeline::bench_write(args.clone()),
        Which::Relay(args) => return super::bench_pipeline::bench_relay(args.clone()),
        Which::Latency(args) => return super::bench_pipeline::bench_latency(args.clone()),
        Which::Postgres(args) => return super::bench_pg::run(args.clone()),
        Which::Poll {
            common,
            max_rows,
            claims,
            batch,
            segment_rows,
        } => {
            let mut layouts = vec![None];
            if *segment_rows > 0 {
                layouts.push(Some(*segment_rows));
            }
            let params = bench::poll::PollParams {
                dir: common.dir.clone(),
                max_rows: *max_rows,
                claims_per_size: *claims,
                batch: *batch,
                layouts,
                keep: common.keep,
            };
            (bench::poll::run(&params)?, common)
        }
        Which::Cleanup {
            common,
            old_rows,
            orders,
            rate,
            segment_rows,
            batch_rows,
            pause_ms,
            max_lock_share,
            rounds,
        } => {
            let params = bench::cleanup::CleanupParams {
                dir: common.dir.clone(),
                old_rows: *old_rows,
                orders: *orders,
                orders_per_s: *rate,
                segment_rows: *segment_rows,
                cleanup: CleanupConfig {
                    retention_ms: 86_400_000,
                    batch_rows: *batch_rows,
                    pause_ms: *pause_ms,
                    max_lock_share_pct: *max_lock_share,
                    max_batches: 1_000_000,
                },
                rounds: *rounds,
                keep: common.keep,
            };
            (bench::cleanup::run(&params)?, common)
        }
    };
    report.emit(common.json.as_deref())?;
    Ok(ExitCode::SUCCESS)
}
