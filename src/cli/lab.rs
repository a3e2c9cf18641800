//! The lab's commands: `crash-run` (the harness behind the examples) and `trace` (one event's
//! story).

use super::out;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::lab::harness::story::{self, Needle};
use crate::lab::harness::{self, Scenario};
use crate::lab::{compare, timeline};
use crate::order::Mode;
use crate::{Error, Result};

#[derive(Args, Debug)]
pub struct CrashRunArgs {
    /// Data directory (wiped and re-initialised): missing, empty or an earlier run's.
    #[arg(long)]
    pub dir: PathBuf,
    /// Clear `--dir` even if it is not a lab run directory.
    #[arg(long)]
    pub force: bool,
    /// Seed of the orders and of the crash schedule: the same seed replays the same crashes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Orders the client places.
    #[arg(long, default_value_t = 300)]
    pub orders: u64,
    /// How the order service publishes: through the outbox, or one of the naive dual writes.
    #[arg(long, value_enum, default_value_t = Mode::Outbox)]
    pub mode: Mode,
    /// Crashes in the schedule (half the order service, then relays, then the consumer).
    #[arg(long, default_value_t = 12)]
    pub crashes: usize,
    /// Relay processes running at once.
    #[arg(long, default_value_t = 1)]
    pub relays: usize,
    /// Rows a relay claims per pass (small, so a killed pass leaves a few copies).
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    /// How long a relay's claim lasts before another relay may take the rows over.
    #[arg(long, default_value_t = 300)]
    pub lease_ms: u64,
    /// Also cut the power this many times while orders are placed: every process dies at
    /// once and each log's un-synced tail is kept, cut, zeroed or garbled (outbox mode only).
    #[arg(long, default_value_t = 0)]
    pub power_cuts: usize,
    /// Instead of the seeded schedule, crash exactly here (`point@hit`, repeatable; see
    /// `crash-points`). Client hits count placements over the whole run; relay and consumer
    /// hits count passes of the next process started. The crash list prints the same numbers.
    #[arg(long = "crash")]
    pub crash: Vec<String>,
    /// Print the outcome as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Run on this PostgreSQL database (its outbox-lab tables are wiped first).
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// With --postgres: CDC relays on a replication slot (`relay --cdc`); --relays beyond the
    /// first stand by and take over when the streamer dies.
    #[arg(long, requires = "postgres")]
    pub cdc: bool,
    /// Also write the run as one self-contained HTML page (an SVG timeline, no JavaScript).
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,
}

pub fn crash_run(args: CrashRunArgs) -> Result<ExitCode> {
    crate::lab::rundir::check_clearable(&args.dir, args.force)?;
    if args.crashes > harness::schedule::MAX_CRASHES {
        return Err(Error::Input(format!(
            "--crashes is at most {}",
            harness::schedule::MAX_CRASHES
        )));
    }
    check_run_shape(args.orders, args.relays)?;
    super::check_batch(args.batch)?;
    super::check_lease_ms(args.lease_ms)?;
    if let Some(path) = &args.html {
        timeline::check_path(path)?; // before the run, not after it
    }
    if args.power_cuts > crate::lab::power_campaign::MAX_CUTS_PER_RUN {
        return Err(Error::Input(format!(
            "--power-cuts is at most {}",
            crate::lab::power_campaign::MAX_CUTS_PER_RUN
        )));
    }
    if args.power_cuts > 0 && args.postgres.is_some() {
        return Err(Error::Input(
            "--power-cuts models this machine's files losing their unsynced tails; with --postgres the orders live on a server it cannot cut".into(),
        ));
    }
    if args.power_cuts > 0 && args.mode != Mode::Outbox {
        return Err(Error::Input(
            "--power-cuts needs --mode outbox: the naive modes lose events without any cut".into(),
        ));
    }
    let explicit = if args.crash.is_empty() {
        None
    } else {
        let spec = args.crash.join(",");
        Some(crate::crashpoint::parse_spec(&spec).map_err(Error::Input)?)
    };
    let scenario = Scenario {
        explicit,
        relays: args.relays,
        orders: args.orders,
        crashes: args.crashes,
        relay_batch: args.batch,
        lease_ms: args.lease_ms,
        store: store_of(args.postgres),
        cdc: args.cdc,
        power_cuts: args.power_cuts,
        ..Scenario::new(args.dir, args.seed, args.mode)
    };
    let outcome = harness::run(&scenario)?;
    if let Some(path) = &args.html {
        timeline::write(path, &outcome, &compare::table_rows(&[&outcome]))?;
        // On stderr, so that `--json` output stays one JSON object.
        eprintln!("timeline: {}", path.display());
    }
    if args.json {
        out::line(serde_json::to_string(&outcome).expect("outcome serialises"))?;
    } else {
        out::text(compare::summary(&outcome)?)?;
    }
    Ok(if outcome.report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(Args, Debug)]
pub struct TraceArgs {
    /// Data directory whose trace.jsonl to read.
    #[arg(long)]
    pub dir: PathBuf,
    /// Follow this event id.
    #[arg(long, conflicts_with = "request")]
    pub event: Option<String>,
    /// Follow this client request id, then the events it led to through relay and consumer
    /// (a naive event that was lost never got an event id: its story ends at the commit).
    #[arg(long)]
    pub request: Option<String>,
}

pub fn trace(args: TraceArgs) -> Result<ExitCode> {
    let needle = match (&args.event, &args.request) {
        (Some(id), _) => Needle::Event(id),
        (None, Some(rid)) => Needle::Request(rid),
        (None, None) => return Err(Error::Input("give --event ID or --request ID".into())),
    };
    let lines = story::story(&args.dir, needle)?;
    if lines.is_empty() {
        eprintln!("nothing in {}/trace.jsonl names that", args.dir.display());
        return Ok(ExitCode::from(1));
    }
    for line in lines {
        out::line(line)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ReplicasArgs {
    /// Data directory (wiped and re-initialised): missing, empty or an earlier run's.
    #[arg(long)]
    pub dir: PathBuf,
    /// Clear `--dir` even if it is not a lab run directory.
    #[arg(long)]
    pub force: bool,
    /// Seed of the generated orders.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Orders, each with its lifecycle (about 2.2 events per order).
    #[arg(long, default_value_t = 1500)]
    pub orders: u64,
    /// Relay processes draining the outbox at once (1 to 64).
    #[arg(long, default_value_t = 4)]
    pub relays: usize,
    /// Rows a relay claims per pass.
    #[arg(long, default_value_t = 20)]
    pub batch: usize,
    /// How long a relay's claim lasts before another relay may take the rows over.
    #[arg(long, default_value_t = 300)]
    pub lease_ms: u64,
    /// Relay crashes, `point@hit`, handed to relay processes in turn (repeatable).
    #[arg(long = "crash")]
    pub crash: Vec<String>,
    /// Print the outcome as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Run on this PostgreSQL database (its outbox-lab tables are wiped first).
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
}

/// `--postgres URL` or the SQLite default.
/// The most orders one lab run places: its client holds them all in memory, and a run this
/// size already takes minutes.
pub const MAX_RUN_ORDERS: u64 = 1_000_000;
/// The most relay processes one lab run starts.
pub const MAX_RUN_RELAYS: usize = 64;

/// `--orders` and `--relays` of a lab run: positive, and bounded so that no value can make the
/// harness allocate without limit.
pub(super) fn check_run_shape(orders: u64, relays: usize) -> Result<()> {
    if !(1..=MAX_RUN_ORDERS).contains(&orders) {
        return Err(Error::Input(format!(
            "--orders must be between 1 and {MAX_RUN_ORDERS}, got {orders}"
        )));
    }
    if !(1..=MAX_RUN_RELAYS).contains(&relays) {
        return Err(Error::Input(format!(
            "--relays must be between 1 and {MAX_RUN_RELAYS}, got {relays}"
        )));
    }
    Ok(())
}

fn store_of(postgres: Option<String>) -> crate::store::StoreConfig {
    postgres.map_or(
        crate::store::StoreConfig::Sqlite,
        crate::store::StoreConfig::Postgres,
    )
}

pub fn replicas(args: ReplicasArgs) -> Result<ExitCode> {
    crate::lab::rundir::check_clearable(&args.dir, args.force)?;
    crate::crashpoint::parse_spec(&args.crash.join(",")).map_err(Error::Input)?;
    check_run_shape(args.orders, args.relays)?;
    super::check_batch(args.batch)?;
    super::check_lease_ms(args.lease_ms)?;
    let run = crate::lab::replicas::Replicas {
        dir: args.dir,
        seed: args.seed,
        orders: args.orders,
        relays: args.relays,
        batch: args.batch,
        lease_ms: args.lease_ms,
        crashes: args.crash,
        store: store_of(args.postgres),
    };
    let outcome = crate::lab::replicas::run(&run)?;
    if args.json {
        out::line(serde_json::to_string(&outcome).expect("outcome serialises"))?;
    } else {
        out::text(crate::lab::replicas::table(&[("this run", &outcome)]))?;
        out::text(outcome.report.to_text())?;
    }
    Ok(if outcome.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
