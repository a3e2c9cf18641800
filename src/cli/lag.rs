//! `lag`: how far behind each stage is, once or every `--every-ms`; exit 1 when a limit given
//! on the command line is exceeded (for monitoring scripts).

use super::out;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args;

use crate::clock::Clock;
use crate::datadir::DataDir;
use crate::lag::{self, Thresholds};
use crate::{Error, Result};

#[derive(Args, Debug)]
pub struct LagArgs {
    /// Data directory (created by `init`); only read, never written.
    #[arg(long)]
    pub dir: PathBuf,
    /// Consumer group whose committed offsets to compare with the log.
    #[arg(long, default_value = "points")]
    pub group: String,
    /// Print each snapshot as one JSON object (one line each with --watch).
    #[arg(long)]
    pub json: bool,
    /// Print a snapshot every --every-ms until SIGINT/SIGTERM; the exit status is then the last
    /// snapshot's.
    #[arg(long)]
    pub watch: bool,
    /// Interval between snapshots with --watch.
    #[arg(long, default_value_t = 1_000)]
    pub every_ms: u64,
    /// Exit 1 if more outbox rows than this are unpublished.
    #[arg(long)]
    pub max_unpublished: Option<u64>,
    /// Exit 1 if the oldest unpublished row is older than this.
    #[arg(long)]
    pub max_unpublished_age_ms: Option<u64>,
    /// Exit 1 if any partition has more records than this after the committed offset.
    #[arg(long)]
    pub max_lag_records: Option<u64>,
    /// Exit 1 if more orders than this are parked (stopped at an event a rule refused).
    #[arg(long)]
    pub max_parked: Option<u64>,
}

/// The longest --every-ms: a watch that sleeps longer is a cron job.
const MAX_EVERY_MS: u64 = 3_600_000;

pub fn run(args: LagArgs) -> Result<ExitCode> {
    if !(1..=MAX_EVERY_MS).contains(&args.every_ms) {
        return Err(Error::Input(format!(
            "--every-ms must be between 1 and {MAX_EVERY_MS}, got {}",
            args.every_ms
        )));
    }
    check_group(&args.group)?;
    let data = DataDir::open(&args.dir)?;
    let thresholds = Thresholds {
        max_unpublished: args.max_unpublished,
        max_unpublished_age_ms: args.max_unpublished_age_ms,
        max_lag_records: args.max_lag_records,
        max_parked: args.max_parked,
    };
    let stop = super::stop_flag()?;
    loop {
        let snapshot = lag::measure(&data, &args.group, Clock::system())?;
        let exceeded = thresholds.exceeded(&snapshot);
        // A CDC directory: the slot is the relay's backlog (its rows are never marked).
        let slot = super::cdc::slot_of(&data)?;
        if args.json {
            out::line(
                serde_json::json!({ "lag": snapshot, "exceeded": exceeded, "cdc_slot": slot }),
            )?;
        } else {
            out::text(lag::to_text(&snapshot))?;
            if let Some(slot) = &slot {
                out::text(format!(
                    "cdc      (relay --cdc never marks rows: its backlog is the slot's)\n  {}",
                    slot.to_text()
                ))?;
            }
            for why in &exceeded {
                out::line(format_args!("EXCEEDED: {why}"))?;
            }
        }
        let status = if exceeded.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
        if !args.watch {
            return Ok(status);
        }
        if !args.json {
            out::line("")?;
        }
        let mut slept_ms = 0;
        while slept_ms < args.every_ms {
            if stop.load(Ordering::Relaxed) {
                // Stopped: the status is the last snapshot's, as if it had been the only one.
                return Ok(status);
            }
            let nap_ms = (args.every_ms - slept_ms).min(50);
            std::thread::sleep(Duration::from_millis(nap_ms));
            slept_ms += nap_ms;
        }
    }
}

/// Group names become file names: refuse anything else with a clear error.
fn check_group(group: &str) -> Result<()> {
    let fine = !group.is_empty()
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if fine {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "--group must be non-empty and only [A-Za-z0-9_-], got {group:?}"
        )))
    }
}
