//! `bench write`, `bench relay`, `bench latency`: the pipeline's benchmarks
//! ([`crate::lab::bench_pipeline`]). Each prints a table; `--json PATH` also writes its figures.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::Result;
use crate::error::Error;
use crate::lab::bench_pipeline::{self, latency, relay, write};

#[derive(Args, Debug, Clone)]
pub struct WriteArgs {
    /// Orders per run (each variant, each round, in a fresh data directory).
    #[arg(long, default_value_t = 1_000)]
    pub orders: u64,
    /// How many times each variant runs.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Seed of the generated orders.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Also write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct RelayArgs {
    /// Events waiting in the outbox when each run starts.
    #[arg(long, default_value_t = 50_000)]
    pub backlog: u64,
    /// Each run stops after this long, drained or not.
    #[arg(long, default_value_t = 1_000)]
    pub run_ms: u64,
    /// How many times each variant runs.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seed of the generated orders.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Also write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct LatencyArgs {
    /// Orders placed per second, at steady intervals.
    #[arg(long, default_value_t = 150)]
    pub rate: u64,
    /// How long each run places orders.
    #[arg(long, default_value_t = 2_000)]
    pub duration_ms: u64,
    /// How many times each variant runs.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seed of the generated orders.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Also write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Options are user input: out-of-range values are an error here, never an assertion later.
fn within(name: &str, value: u64, max: u64) -> Result<()> {
    if value == 0 || value > max {
        return Err(Error::Input(format!(
            "--{name} must be in 1..={max}, got {value}"
        )));
    }
    Ok(())
}

pub fn bench_write(args: WriteArgs) -> Result<ExitCode> {
    within("orders", args.orders, write::MAX_ORDERS)?;
    within("rounds", args.rounds as u64, write::MAX_ROUNDS as u64)?;
    let bench = write::WriteBench {
        orders: args.orders,
        rounds: args.rounds,
        seed: args.seed,
    };
    let value = write::run(&bench)?;
    bench_pipeline::write_json(args.json.as_deref(), &value)?;
    Ok(ExitCode::SUCCESS)
}

pub fn bench_relay(args: RelayArgs) -> Result<ExitCode> {
    within("backlog", args.backlog, relay::MAX_BACKLOG)?;
    within("run-ms", args.run_ms, relay::MAX_RUN_MS)?;
    within("rounds", args.rounds as u64, relay::MAX_ROUNDS as u64)?;
    let bench = relay::RelayBench {
        backlog: args.backlog,
        run_ms: args.run_ms,
        rounds: args.rounds,
        seed: args.seed,
    };
    let value = relay::run(&bench)?;
    bench_pipeline::write_json(args.json.as_deref(), &value)?;
    Ok(ExitCode::SUCCESS)
}

pub fn bench_latency(args: LatencyArgs) -> Result<ExitCode> {
    within("rate", args.rate, latency::MAX_RATE_PER_S)?;
    within("duration-ms", args.duration_ms, latency::MAX_DURATION_MS)?;
    within("rounds", args.rounds as u64, latency::MAX_ROUNDS as u64)?;
    let bench = latency::LatencyBench {
        rate_per_s: args.rate,
        duration_ms: args.duration_ms,
        rounds: args.rounds,
        seed: args.seed,
    };
    let value = latency::run(&bench)?;
    bench_pipeline::write_json(args.json.as_deref(), &value)?;
    Ok(ExitCode::SUCCESS)
}
