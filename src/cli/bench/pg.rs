//! `bench postgres <which>`: the PostgreSQL store's benchmarks (see `lab::bench::pg`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::Result;
use crate::lab::bench::pg::{self as bench_pg, PgBench};

#[derive(Args, Debug, Clone)]
pub struct PgBenchArgs {
    #[command(subcommand)]
    pub which: PgWhich,
    /// Scratch directory for the local side (broker, consumer.db).
    #[arg(long, global = true, default_value = "/tmp/outbox-lab-bench-pg")]
    pub dir: PathBuf,
    /// The server to use (benchmark databases `bench_*` are created and dropped on it);
    /// without it, a throwaway cluster (scripts/pg-up) is started and stopped.
    #[arg(long, global = true, value_name = "URL")]
    pub postgres: Option<String>,
    /// Also write the results as JSON to this file (`-`: print it after the table).
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Run on a debug build anyway (a smoke test: its figures mean nothing).
    #[arg(long, global = true)]
    pub allow_debug: bool,
}

#[derive(Subcommand, Debug, Clone)]
pub enum PgWhich {
    /// One relay's events/s at one batch size: SQLite vs PostgreSQL locked vs lease.
    Relay {
        /// Unpublished events the relay drains in each run.
        #[arg(long, default_value_t = 20_000)]
        backlog: i64,
        /// Rows per claim.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Runs of every variant, in rotated order.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// The SKIP LOCKED claim as the outbox grows to 10k, 100k, 1M, 10M published rows.
    Poll {
        /// Skip sizes above this.
        #[arg(long, default_value_t = 10_000_000)]
        max_rows: i64,
        /// Claims timed at each size.
        #[arg(long, default_value_t = 300)]
        claims: usize,
        /// Rows per claim.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Unpublished rows at the end of the table, claimed (and rolled back) by each sample.
        #[arg(long, default_value_t = 1_000)]
        backlog: i64,
        /// Outbox ids per partition.
        #[arg(long, default_value_t = crate::store::pg::schema::DEFAULT_PARTITION_ROWS)]
        partition_rows: i64,
    },
    /// The write path's p50/p99 with partition drops or batched deletes running vs not.
    Cleanup {
        /// Published rows two days old, for the cleaner to remove.
        #[arg(long, default_value_t = 200_000)]
        old_rows: i64,
        /// Outbox ids per partition.
        #[arg(long, default_value_t = 20_000)]
        partition_rows: i64,
        /// Orders placed per run.
        #[arg(long, default_value_t = 2_000)]
        orders: u64,
        /// The writer's pace, orders per second.
        #[arg(long, default_value_t = 300)]
        rate: u64,
        /// Rows per delete transaction (batched deletes).
        #[arg(long, default_value_t = crate::outbox::cleanup::CleanupConfig::default().batch_rows)]
        batch_rows: usize,
        /// Runs of every variant, in rotated order.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
}

fn positive(name: &str, value: i64) -> Result<()> {
    if value <= 0 {
        return Err(crate::Error::Input(format!(
            "--{name} must be positive, got {value}"
        )));
    }
    Ok(())
}

pub fn run(args: PgBenchArgs) -> Result<ExitCode> {
    crate::lab::bench::refuse_debug_build(args.allow_debug)?;
    let mut bench = PgBench::start(args.postgres.clone())?;
    let report = match args.which {
        PgWhich::Relay {
            backlog,
            batch,
            rounds,
        } => {
            positive("backlog", backlog)?;
            super::super::check_batch(batch)?;
            positive("rounds", rounds as i64)?;
            let params = bench_pg::relay::RelayParams {
                dir: args.dir.clone(),
                backlog,
                batch,
                rounds,
            };
            bench_pg::relay::run(&params, &mut bench)?
        }
        PgWhich::Poll {
            max_rows,
            claims,
            batch,
            backlog,
            partition_rows,
        } => {
            positive("max-rows", max_rows)?;
            positive("claims", claims as i64)?;
            super::super::check_batch(batch)?;
            positive("backlog", backlog)?;
            positive("partition-rows", partition_rows)?;
            let params = bench_pg::poll::PollParams {
                dir: args.dir.clone(),
                max_rows,
                claims,
                batch,
                backlog,
                partition_rows,
            };
            bench_pg::poll::run(&params, &mut bench)?
        }
        PgWhich::Cleanup {
            old_rows,
            partition_rows,
            orders,
            rate,
            batch_rows,
            rounds,
        } => {
            positive("old-rows", old_rows)?;
            positive("partition-rows", partition_rows)?;
            positive("orders", orders as i64)?;
            positive("rate", rate as i64)?;
            positive("batch-rows", batch_rows as i64)?;
            positive("rounds", rounds as i64)?;
            let params = bench_pg::cleanup::CleanupParams {
                dir: args.dir.clone(),
                old_rows,
                partition_rows,
                orders,
                orders_per_s: rate,
                batch_rows,
                rounds,
            };
            bench_pg::cleanup::run(&params, &mut bench)?
        }
    };
    super::print_report(&report, args.json.as_deref())
}
