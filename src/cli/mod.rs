//! The command line: a thin layer over the library. It lives in the library (not only in
//! `main.rs`) so that the examples can act as the binary too: the crash harness re-executes
//! its own program (`current_exe()`) as children, and when that program is an example it must
//! still understand `place`, `relay` and `consume`.
//!
//! Subcommands. Exit codes: 0 ok, 1 the command ran but found a problem (a failed input line,
//! a failed verification), 2 an operating error (printed on stderr).

mod bench;
mod bounds;
mod cdc;
mod checklab;
mod cleanup;
mod lab;
mod lag;
mod out;
mod parking;
mod place;
mod power;
mod sweep;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand};

use crate::consumer::{self, ConsumerConfig};
use crate::datadir::DataDir;
use crate::lab::checker;
use crate::relay::{Relay, RelayConfig};
use crate::wake::{self, WakeMode};
use crate::{Result, broker, crashpoint, trace};

#[derive(Parser, Debug)]
#[command(
    name = "outbox-lab",
    version,
    about = "The transactional outbox pattern, as a crash lab"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create both databases and the broker (idempotent).
    Init {
        /// Data directory to create (or check, if it exists).
        #[arg(long)]
        dir: PathBuf,
        /// Log partitions; an order's events all go to one (CRC-32 of its id, modulo this).
        #[arg(long, default_value_t = broker::DEFAULT_PARTITIONS)]
        partitions: u32,
        #[command(flatten)]
        layout: cleanup::LayoutArgs,
        /// Keep orders and outbox in this PostgreSQL database instead of orders.db
        /// (e.g. the URL `scripts/pg-up DIR` prints). Recorded in the data directory.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// PostgreSQL: create the replication slot the CDC relay streams (before any order:
        /// a slot sees only what commits after it). `delete`: each order's transaction
        /// deletes its outbox row again, so the event lives only in the WAL.
        #[arg(long, value_enum, value_name = "ROWS")]
        cdc: Option<crate::store::pg::cdc::OutboxRows>,
    },
    /// Place orders: generated (--count/--seed) or JSON lines from stdin.
    Place(place::PlaceArgs),
    /// Pay an order: writes OrderPaid (seq 2) with the status change.
    Pay {
        /// Data directory (created by `init`).
        #[arg(long)]
        dir: PathBuf,
        /// The order, as `place` printed it.
        #[arg(long)]
        order_id: i64,
    },
    /// Ship a paid order: writes OrderShipped (seq 3) with the status change.
    Ship {
        /// Data directory (created by `init`).
        #[arg(long)]
        dir: PathBuf,
        /// The order, as `place` printed it.
        #[arg(long)]
        order_id: i64,
    },
    /// A polling relay: outbox rows -> log. Several may run at once.
    Relay {
        /// Data directory (created by `init`).
        #[arg(long)]
        dir: PathBuf,
        /// This relay's name: in its leases, in the log records it appends, in the trace.
        #[arg(long, default_value = "relay")]
        id: String,
        /// Sleep after an empty pass; with `--wake wal`, the longest wait for the doorbell.
        #[arg(long, default_value_t = 500)]
        poll_ms: u64,
        /// `wal`: run the next pass as soon as a commit writes orders.db-wal (Linux inotify).
        #[arg(long, value_enum, default_value_t = RelayWake::Poll)]
        wake: RelayWake,
        /// Rows claimed per pass (1 to the claim's maximum).
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// How long a claim lasts: after this, another relay may ship the rows (a dead relay's
        /// rows wait this long).
        #[arg(long, default_value_t = 5_000)]
        lease_ms: u64,
        /// PostgreSQL store: `locked` holds the claim's row locks across append and sync;
        /// `lease` writes a lease into the rows and commits at once (SQLite always leases).
        #[arg(long, value_enum, default_value_t = crate::store::ClaimMode::Locked)]
        claim_mode: crate::store::ClaimMode,
        /// fdatasync the partitions of a pass in parallel threads, all before marking (the
        /// default; the flag is kept so that older scripts still run).
        #[arg(long, conflicts_with = "sync_in_turn")]
        sync_in_parallel: bool,
        /// fdatasync the partitions of a pass one after another (slower; as before).
        #[arg(long)]
        sync_in_turn: bool,
        /// Sync a batch while claiming and appending the next one; each batch is still marked
        /// only after its own sync. A crash then may ship the batch in flight twice.
        #[arg(long, conflicts_with = "sync_in_turn")]
        overlap_sync: bool,
        /// Exit when no unpublished row remains (with --cdc: when the slot has nothing new).
        #[arg(long)]
        until_empty: bool,
        /// PostgreSQL set up with `init --cdc`: stream the outbox's INSERTs from the WAL through
        /// the replication slot (no claim, no mark); --batch is then decoded messages per peek.
        /// One relay streams a slot; another waits as its standby.
        #[arg(long)]
        cdc: bool,
        #[command(flatten)]
        cleanup: cleanup::RelayCleanupArgs,
    },
    /// The idempotent consumer (one worker per partition).
    Consume {
        /// Data directory (created by `init`).
        #[arg(long)]
        dir: PathBuf,
        /// Consumer group: its committed offsets are kept per group.
        #[arg(long, default_value = "points", value_parser = bounds::group)]
        group: String,
        /// Sleep when a partition has nothing new; with `--wake log`, the longest wait.
        #[arg(long, default_value_t = 20)]
        poll_ms: u64,
        /// `log`: read as soon as a relay's sync moves the partition's durable end (Linux inotify).
        #[arg(long, value_enum, default_value_t = LogWake::Poll)]
        wake: LogWake,
        /// Exit once every partition has been read to its end.
        #[arg(long)]
        until_idle: bool,
        /// Records applied per transaction at most (1: one transaction per record).
        #[arg(long, default_value_t = ConsumerConfig::default().batch)]
        batch: usize,
        #[command(flatten)]
        inbox: sweep::InboxArgs,
    },
    /// Delete inbox rows processed longer ago than --inbox-retention, in small batches.
    SweepInbox(sweep::SweepArgs),
    /// The CDC slot: WAL it retains on the server, confirmed lag, who streams it.
    CdcStatus(cdc::StatusArgs),
    /// The checker: lost, ghost, redelivered, applied twice, out of order.
    Verify {
        /// Data directory of a drained run.
        #[arg(long)]
        dir: PathBuf,
        /// Consumer group whose offsets and effects to check.
        #[arg(long, default_value = "points", value_parser = bounds::group)]
        group: String,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List the crash points, with what a crash at each one shows.
    CrashPoints,
    /// Run the pipeline as real processes, SIGKILLed on a seeded crash schedule, then verify.
    CrashRun(lab::CrashRunArgs),
    /// Many crash runs with power cuts (logs lose their un-synced tails), across seeds.
    PowerCuts(power::PowerCutsArgs),
    /// Simulate one power cut on a data directory whose processes are all dead.
    PowerCut(power::PowerCutArgs),
    /// Tell the story of one event (or one client request) from trace.jsonl.
    Trace(lab::TraceArgs),
    /// K relays drain one outbox at once (optionally crashing); show the claims were disjoint.
    Replicas(lab::ReplicasArgs),
    /// Remove published rows older than --retention-ms (batched deletes, or whole segments).
    Cleanup(cleanup::CleanupArgs),
    /// Benchmarks: a table on stdout, JSON with --json PATH.
    Bench(bench::BenchArgs),
    /// How far behind each stage is: unpublished rows, per-partition consumer lag, the inbox.
    Lag(lag::LagArgs),
    /// Fixture builder: write a drained run of N orders straight into a fresh data directory
    /// (for measuring `verify` at scale; not a pipeline run).
    Fixture(checklab::FixtureArgs),
    /// Many seeded crash runs (every crash point, outside SIGKILLs), with lifecycle events,
    /// cleanup and the inbox sweep throughout; a summary, and a replay line per failing seed.
    Campaign(checklab::CampaignArgs),
    /// List events the consumer parked (refused by a rule) and those waiting behind them.
    Parked(parking::ParkedArgs),
    /// Release a parked event: --retry applies it now, --skip lets it go; then its order flows.
    Release(parking::ReleaseArgs),
}

/// When an idle relay runs its next pass (see `crate::wake`).
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum RelayWake {
    /// Sleep --poll-ms.
    Poll,
    /// Doorbell on orders.db-wal, --poll-ms as the fallback.
    Wal,
    /// PostgreSQL: LISTEN for the NOTIFY the outbox's insert trigger sends at commit,
    /// --poll-ms as the fallback.
    Notify,
}

/// When an idle consumer worker reads again.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum LogWake {
    /// Sleep --poll-ms.
    Poll,
    /// Doorbell on the partition's durable-end file, --poll-ms as the fallback.
    Log,
}

/// The consumer's `--batch`: at least one record, at most [`MAX_CONSUMER_BATCH`].
fn check_consumer_batch(batch: usize) -> Result<usize> {
    if !(1..=MAX_CONSUMER_BATCH).contains(&batch) {
        return Err(crate::Error::Input(format!(
            "consume --batch must be between 1 and {MAX_CONSUMER_BATCH}, got {batch}"
        )));
    }
    Ok(batch)
}

/// A consumer batch is one transaction: larger ones hold consumer.db's write lock too long.
pub const MAX_CONSUMER_BATCH: usize = 100_000;

/// `--batch`: at least one row, at most [`crate::outbox::claim::MAX_BATCH`].
fn check_batch(batch: usize) -> Result<usize> {
    let max = crate::outbox::claim::MAX_BATCH;
    if !(1..=max).contains(&batch) {
        return Err(crate::Error::Input(format!(
            "--batch must be between 1 and {max}, got {batch}"
        )));
    }
    Ok(batch)
}

/// `--lease-ms`: positive, and at most a day (a longer lease only delays recovery).
fn check_lease_ms(lease_ms: u64) -> Result<u64> {
    const MAX_LEASE_MS: u64 = 86_400_000;
    if !(1..=MAX_LEASE_MS).contains(&lease_ms) {
        return Err(crate::Error::Input(format!(
            "--lease-ms must be between 1 and {MAX_LEASE_MS}, got {lease_ms}"
        )));
    }
    Ok(lease_ms)
}

/// `--poll-ms` bounds every wait, so it has a bound of its own.
fn check_poll_ms(poll_ms: u64) -> Result<u64> {
    if poll_ms > wake::MAX_WAIT_MS {
        return Err(crate::Error::Input(format!(
            "--poll-ms is at most {} (one hour), got {poll_ms}",
            wake::MAX_WAIT_MS
        )));
    }
    Ok(poll_ms)
}

/// Parse the process's arguments and run the command; the whole of `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(crate::Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            // `outbox-lab place … | head`: the reader left. Stop quietly, as Unix tools do
            // (they die of SIGPIPE: status 128 + 13). Every reply written so far was for an
            // order already committed; the rest of the input was never read.
            ExitCode::from(141)
        }
        Err(e) => {
            eprintln!("outbox-lab: error: {e}");
            ExitCode::from(2)
        }
    }
}

/// SIGTERM/SIGINT set the flag; long-running loops check it between steps.
fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|e| crate::Error::Io {
            context: "installing signal handlers".into(),
            source: e,
        })?;
    }
    // Lock waits deep in the broker that were handed no flag (a durable-end publish) stop too.
    broker::set_process_stop(&stop);
    Ok(stop)
}

fn open(dir: &std::path::Path, role: &str) -> Result<DataDir> {
    let data = DataDir::open(dir)?;
    trace::init(&data.root, role).map_err(|e| crate::Error::Io {
        context: format!("opening {}", data.trace_path().display()),
        source: e,
    })?;
    Ok(data)
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    // A mistyped OUTBOX_CRASH must stop the command before it starts, not panic at a point.
    crashpoint::check_env().map_err(crate::Error::Input)?;
    match cli.command {
        Command::Init {
            dir,
            partitions,
            layout,
            postgres,
            cdc: cdc_rows,
        } => {
            if cdc_rows.is_some() && postgres.is_none() {
                return Err(crate::Error::Input(
                    "--cdc needs --postgres URL: SQLite has no logical change stream".into(),
                ));
            }
            let (data, mut layout) = match postgres {
                None => {
                    let data = DataDir::init(&dir, partitions)?;
                    let layout = cleanup::apply_layout(&data, &layout)?;
                    (data, layout)
                }
                Some(url) => cleanup::init_postgres(&dir, partitions, url, &layout)?,
            };
            if let Some(rows) = cdc_rows {
                layout.push_str(&cdc::setup(&data, rows)?);
            }
            out::line(format_args!(
                "initialised {} with {} partitions{layout}",
                data.root.display(),
                data.partitions
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Place(args) => place::run(args),
        Command::Pay { dir, order_id } => place::transition(&dir, order_id, true),
        Command::Ship { dir, order_id } => place::transition(&dir, order_id, false),
        Command::Relay {
            dir,
            id,
            poll_ms,
            wake,
            batch,
            lease_ms,
            claim_mode,
            sync_in_parallel: _, // the default
            sync_in_turn,
            overlap_sync,
            until_empty,
            cdc: stream_cdc,
            cleanup: cleanup_args,
        } => {
            let data = open(&dir, &id)?;
            let stop = stop_flag()?;
            if stream_cdc {
                return cdc::relay(
                    &data,
                    id,
                    check_poll_ms(poll_ms)?,
                    batch,
                    until_empty,
                    &stop,
                );
            }
            let config = RelayConfig {
                name: id,
                poll_ms: check_poll_ms(poll_ms)?,
                wake: match wake {
                    RelayWake::Poll => WakeMode::Poll,
                    RelayWake::Wal => WakeMode::Doorbell,
                    RelayWake::Notify => WakeMode::Notify,
                },
                batch: check_batch(batch)?,
                lease_ms: check_lease_ms(lease_ms)?,
                sync_in_parallel: !sync_in_turn,
                overlap_sync,
                claim_mode,
                ..RelayConfig::default()
            };
            let mut relay = cleanup::attach(Relay::open(&data, config)?, &cleanup_args)?;
            let totals = relay.run(&stop, until_empty)?;
            eprintln!(
                "{}",
                serde_json::to_string(&totals).expect("totals serialise")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Consume {
            dir,
            group,
            poll_ms,
            wake,
            until_idle,
            batch,
            inbox,
        } => {
            let data = open(&dir, "consumer")?;
            let stop = stop_flag()?;
            let mut config = ConsumerConfig {
                group,
                poll_ms: check_poll_ms(poll_ms)?,
                wake: match wake {
                    LogWake::Poll => WakeMode::Poll,
                    LogWake::Log => WakeMode::Doorbell,
                },
                until_idle,
                batch: check_consumer_batch(batch)?,
                ..ConsumerConfig::default()
            };
            inbox.apply_to(&mut config)?;
            let totals = consumer::run(&data, &config, stop)?;
            eprintln!(
                "{}",
                serde_json::to_string(&totals).expect("totals serialise")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::SweepInbox(args) => sweep::run(args),
        Command::CdcStatus(args) => cdc::status(args),
        Command::Verify { dir, group, json } => {
            let data = DataDir::open(&dir)?;
            let report = checker::check(&data, &group)?;
            if json {
                out::line(serde_json::to_string(&report).expect("report serialises"))?;
            } else {
                out::text(report.to_text())?;
            }
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::CrashPoints => {
            for point in crashpoint::Point::ALL {
                out::line(format_args!("{:<22} {}", point.name(), point.shows()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::CrashRun(args) => lab::crash_run(args),
        Command::PowerCuts(args) => power::power_cuts(args),
        Command::PowerCut(args) => power::power_cut(args),
        Command::Trace(args) => lab::trace(args),
        Command::Replicas(args) => lab::replicas(args),
        Command::Cleanup(args) => cleanup::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Fixture(args) => checklab::fixture(args),
        Command::Campaign(args) => checklab::campaign(args),
        Command::Parked(args) => parking::list(args),
        Command::Release(args) => parking::release(args),
        Command::Lag(args) => lag::run(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `command path --flag` for every argument, of every subcommand, without a help line.
    fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id != "help" && id != "version" && arg.get_help().is_none() {
                out.push(format!("{path} --{}", arg.get_long().unwrap_or(id)));
            }
        }
        for sub in cmd.get_subcommands() {
            undocumented(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_flag_of_every_command_has_a_help_line() {
        let mut missing = Vec::new();
        undocumented(&super::Cli::command(), "outbox-lab", &mut missing);
        assert!(missing.is_empty(), "flags without help: {missing:#?}");
    }
}
