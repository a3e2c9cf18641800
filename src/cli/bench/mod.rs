//! `bench <which>`: the command line of [`crate::lab::bench`]. Adding a benchmark: a module in
//! src/lab/bench/ returning a `Report`, a variant here, and one arm in `run`. Every option is
//! user input: out of range is a clear error here, never an assertion later.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

mod pg;

use super::out;
use crate::Result;
use crate::consumer::retention::parse_duration_ms;
use crate::error::Error;
use crate::lab::bench::{self, Report};
use crate::outbox::cleanup::CleanupConfig;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub which: Which,
}

/// The flags every benchmark takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Scratch directory: each benchmark builds its data in a fresh subdirectory of it,
    /// removed afterwards. /tmp by default: the figures are for the disk behind it.
    #[arg(long, default_value = "/tmp")]
    pub dir: PathBuf,
    /// Also write the results as JSON to this file (`-`: print it after the table).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the scratch data instead of removing it.
    #[arg(long)]
    pub keep: bool,
    /// Run on a debug build anyway (a smoke test: its figures mean nothing).
    #[arg(long)]
    pub allow_debug: bool,
}

#[derive(Subcommand, Debug)]
pub enum Which {
    /// The write path: orders/s for order-only, outbox and naive; group commit size vs latency.
    Write {
        #[command(flatten)]
        common: Common,
        /// Orders per run (each variant, each round, in a fresh data directory).
        #[arg(long, default_value_t = 2_000)]
        orders: u64,
        /// How many times each variant runs (rotated, median and range reported).
        #[arg(long, default_value_t = 3)]
        rounds: u64,
        /// Seed of the generated orders.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// PostgreSQL instead: a server URL (each run creates and drops a database of its
        /// own); compares keeping outbox rows, the NOTIFY trigger, and insert-and-delete.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// With --postgres: writer connections placing the orders.
        #[arg(long, default_value_t = 4)]
        writers: u64,
    },
    /// Relay events/s by batch size and relay count, beside a bare relay (the floor).
    Relay {
        #[command(flatten)]
        common: Common,
        /// Events waiting in the outbox when each run starts.
        #[arg(long, default_value_t = 50_000)]
        backlog: u64,
        /// Each run stops after this long, drained or not.
        #[arg(long, default_value_t = 1_000)]
        run_ms: u64,
        /// How many times each variant runs (rotated, median and range reported).
        #[arg(long, default_value_t = 3)]
        rounds: u64,
        /// Seed of the generated orders.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Consumer events/s: one transaction per record vs per batch.
    Consume {
        #[command(flatten)]
        common: Common,
        /// Events in the log when each run starts.
        #[arg(long, default_value_t = 10_000)]
        events: u64,
        /// How many times each variant runs (rotated, median and range reported).
        #[arg(long, default_value_t = 3)]
        rounds: u64,
        /// Seed of the generated orders.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// The whole pipeline as processes: sustained orders/s, commit -> applied p50/p99.
    Pipeline {
        #[command(flatten)]
        common: Common,
        /// Orders piped into `place`, all waiting at once.
        #[arg(long, default_value_t = 50_000)]
        orders: u64,
        /// Relay process counts to compare, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
        relays: Vec<usize>,
        /// Seed of the generated orders.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Commit -> applied latency at a steady rate: polling relay vs the WAL doorbell.
    Latency {
        #[command(flatten)]
        common: Common,
        /// Orders placed per second, at steady intervals.
        #[arg(long, default_value_t = 150)]
        rate: u64,
        /// How long each run places orders.
        #[arg(long, default_value_t = 2_000)]
        duration_ms: u64,
        /// How many times each variant runs (rotated, median and range reported).
        #[arg(long, default_value_t = 3)]
        rounds: u64,
        /// Seed of the generated orders.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// PostgreSQL instead: a server URL (each run creates and drops a database of its
        /// own); compares the 500 ms polling relay, the LISTEN/NOTIFY relay and the CDC relay.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// With --postgres: the offered rates (orders/s), all in one run (--rate is ignored).
        #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
        rates: Vec<u64>,
        /// With --postgres: writer connections sharing the rate.
        #[arg(long, default_value_t = 4)]
        writers: u64,
        /// With --postgres: also draw the latency distributions as an SVG here.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// PostgreSQL CDC: how long the slot goes unstreamed when its relay is killed.
    Takeover {
        #[command(flatten)]
        common: Common,
        /// A server URL (a database is created for the run and dropped after).
        #[arg(long, value_name = "URL")]
        postgres: String,
        /// Takeovers to time (each kills the streamer and waits for the standby).
        #[arg(long, default_value_t = 10)]
        rounds: u64,
    },
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
        /// How many times each variant runs (rotated, median and range reported).
        #[arg(long, default_value_t = 3)]
        rounds: u64,
        /// The cleaner's budget: at most this % of wall time holding the write lock.
        #[arg(long, default_value_t = CleanupConfig::default().max_lock_share_pct)]
        max_lock_share: f64,
    },
    /// The consumer's inbox: rows, bytes and sweep cost per event rate and retention window.
    Inbox {
        #[command(flatten)]
        common: Common,
        /// Event rates, events per second, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [10u64, 100, 1000])]
        rates: Vec<u64>,
        /// Retention windows, comma-separated.
        #[arg(long, value_delimiter = ',', value_parser = parse_duration_ms, default_value = "1h,24h")]
        windows: Vec<u64>,
        /// How often the sweeper runs: one sweep deletes what aged out in this interval.
        #[arg(long, value_parser = parse_duration_ms, default_value = "1m")]
        sweep_every: u64,
        /// Rows deleted per sweep transaction.
        #[arg(long, default_value_t = 500)]
        batch_rows: u32,
        /// Skip combinations whose inbox would be bigger than this.
        #[arg(long, default_value_t = 10_000_000)]
        max_rows: u64,
    },
    /// The PostgreSQL store: relay throughput vs SQLite, claim vs table size, cleanup.
    Postgres(pg::PgBenchArgs),
}

/// `--name` must be in 1..=max.
fn within(name: &str, value: u64, max: u64) -> Result<u64> {
    if value == 0 || value > max {
        return Err(Error::Input(format!(
            "--{name} must be in 1..={max}, got {value}"
        )));
    }
    Ok(value)
}

/// `--rounds` in 1..=`max`, as the count the benchmarks loop over.
fn rounds_within(rounds: u64, max: usize) -> Result<usize> {
    Ok(within("rounds", rounds, max as u64)? as usize)
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    if let Which::Postgres(pg) = args.which {
        // Its own flags: a server to use, and a scratch directory it makes itself.
        return pg::run(pg);
    }
    let common = match &args.which {
        Which::Write { common, .. }
        | Which::Relay { common, .. }
        | Which::Consume { common, .. }
        | Which::Pipeline { common, .. }
        | Which::Latency { common, .. }
        | Which::Takeover { common, .. }
        | Which::Poll { common, .. }
        | Which::Cleanup { common, .. }
        | Which::Inbox { common, .. } => common.clone(),
        Which::Postgres(_) => unreachable!("returned above"),
    };
    bench::refuse_debug_build(common.allow_debug)?;
    if !common.dir.is_dir() {
        return Err(Error::Input(format!(
            "--dir {} is not a directory (the benchmark's scratch data goes inside it)",
            common.dir.display()
        )));
    }
    let report = measure(args.which, &common)?;
    print_report(&report, common.json.as_deref())
}

/// Every benchmark's ending: the report's text on stdout, its JSON where `--json` said.
fn print_report(report: &Report, json: Option<&std::path::Path>) -> Result<ExitCode> {
    out::text(report.emit(json)?)?;
    Ok(ExitCode::SUCCESS)
}

fn measure(which: Which, common: &Common) -> Result<Report> {
    let scratch = common.dir.clone();
    match which {
        Which::Write {
            orders,
            rounds,
            seed,
            postgres: Some(url),
            writers,
            ..
        } => {
            crate::store::pg::parse(&url)?;
            bench::write_pg::run(
                &url,
                within("orders", orders, bench::write::MAX_ORDERS)?,
                within("writers", writers, bench::latency_pg::MAX_WRITERS as u64)? as usize,
                rounds_within(rounds, bench::write::MAX_ROUNDS)?,
                seed,
                &scratch,
            )
        }
        Which::Write {
            orders,
            rounds,
            seed,
            ..
        } => bench::write::run(&bench::write::WriteBench {
            orders: within("orders", orders, bench::write::MAX_ORDERS)?,
            rounds: rounds_within(rounds, bench::write::MAX_ROUNDS)?,
            seed,
            scratch,
        }),
        Which::Relay {
            backlog,
            run_ms,
            rounds,
            seed,
            ..
        } => bench::relay::run(&bench::relay::RelayBench {
            backlog: within("backlog", backlog, bench::relay::MAX_BACKLOG)?,
            run_ms: within("run-ms", run_ms, bench::relay::MAX_RUN_MS)?,
            rounds: rounds_within(rounds, bench::relay::MAX_ROUNDS)?,
            seed,
            scratch,
        }),
        Which::Consume {
            events,
            rounds,
            seed,
            ..
        } => bench::consume::run(&bench::consume::ConsumeBench {
            events: within("events", events, bench::consume::MAX_EVENTS)?,
            rounds: rounds_within(rounds, bench::consume::MAX_ROUNDS)?,
            seed,
            scratch,
        }),
        Which::Pipeline {
            orders,
            relays,
            seed,
            ..
        } => {
            if relays.is_empty() {
                return Err(Error::Input("--relays needs at least one count".into()));
            }
            let max = bench::pipeline::MAX_RELAYS as u64;
            for r in &relays {
                within("relays", *r as u64, max)?;
            }
            bench::pipeline::run(&bench::pipeline::PipelineBench {
                orders: within("orders", orders, bench::pipeline::MAX_ORDERS)?,
                relays,
                seed,
                scratch,
            })
        }
        Which::Latency {
            duration_ms,
            rounds,
            seed,
            postgres: Some(url),
            rates,
            writers,
            svg,
            ..
        } => {
            crate::store::pg::parse(&url)?;
            if rates.is_empty() || rates.len() > 4 {
                return Err(Error::Input(format!(
                    "--rates takes 1 to 4 rates, got {}",
                    rates.len()
                )));
            }
            for rate in &rates {
                within("rates", *rate, bench::latency::MAX_RATE_PER_S)?;
            }
            bench::latency_pg::run(&bench::latency_pg::PgLatencyBench {
                admin_url: url,
                rates_per_s: rates,
                duration_ms: within("duration-ms", duration_ms, bench::latency::MAX_DURATION_MS)?,
                rounds: rounds_within(rounds, bench::latency::MAX_ROUNDS)?,
                seed,
                writers: within("writers", writers, bench::latency_pg::MAX_WRITERS as u64)?
                    as usize,
                svg,
                scratch,
            })
        }
        Which::Takeover {
            postgres, rounds, ..
        } => {
            crate::store::pg::parse(&postgres)?;
            let rounds = rounds_within(rounds, bench::takeover::MAX_ROUNDS)?;
            bench::takeover::run(&postgres, rounds, &scratch)
        }
        Which::Latency {
            rate,
            duration_ms,
            rounds,
            seed,
            ..
        } => bench::latency::run(&bench::latency::LatencyBench {
            rate_per_s: within("rate", rate, bench::latency::MAX_RATE_PER_S)?,
            duration_ms: within("duration-ms", duration_ms, bench::latency::MAX_DURATION_MS)?,
            rounds: rounds_within(rounds, bench::latency::MAX_ROUNDS)?,
            seed,
            scratch,
        }),
        Which::Poll {
            max_rows,
            claims,
            batch,
            segment_rows,
            ..
        } => {
            let mut layouts = vec![None];
            if segment_rows > 0 {
                layouts.push(Some(segment_rows));
            }
            bench::poll::run(&bench::poll::PollParams {
                dir: scratch,
                max_rows,
                claims_per_size: within("claims", claims as u64, 1_000_000)? as usize,
                batch: within(
                    "batch",
                    batch as u64,
                    crate::outbox::claim::MAX_BATCH as u64,
                )? as usize,
                layouts,
                keep: common.keep,
            })
        }
        Which::Cleanup {
            old_rows,
            orders,
            rate,
            segment_rows,
            batch_rows,
            pause_ms,
            rounds,
            max_lock_share,
            ..
        } => bench::cleanup::run(&bench::cleanup::CleanupParams {
            dir: scratch,
            old_rows,
            orders: within("orders", orders, 10_000_000)?,
            orders_per_s: within("rate", rate, 1_000_000)?,
            segment_rows,
            cleanup: CleanupConfig {
                retention_ms: 86_400_000,
                batch_rows,
                pause_ms,
                max_lock_share_pct: max_lock_share,
                max_batches: 1_000_000,
            },
            rounds: within("rounds", rounds, 1_000)?,
            keep: common.keep,
        }),
        Which::Inbox {
            rates,
            windows,
            sweep_every,
            batch_rows,
            max_rows,
            ..
        } => bench::inbox::run(&bench::inbox::BenchConfig {
            scratch,
            rates_per_s: rates,
            windows_ms: windows,
            sweep_every_ms: sweep_every,
            batch_rows: within("batch-rows", batch_rows as u64, u32::MAX as u64)? as u32,
            max_rows,
            events_per_aggregate: 3,
        }),
        Which::Postgres(_) => unreachable!("run() hands PostgreSQL benchmarks to pg::run"),
    }
}
