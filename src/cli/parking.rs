//! `parked` and `release`: the operator's side of poison events (see `consumer::parking`).

use super::out;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::Result;
use crate::clock::Clock;
use crate::consumer::ApplyOptions;
use crate::consumer::parking::{self, Release};
use crate::consumer::schema;
use crate::db::{self, Synchronous};
use crate::error::{Context, Error};

#[derive(Args, Debug)]
pub struct ParkedArgs {
    /// The data directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// List parked, waiting and skipped events.
pub fn list(args: ParkedArgs) -> Result<ExitCode> {
    let data = super::open(&args.dir, "parked")?;
    // NORMAL: only reads (after making sure the table exists).
    let conn = db::open(&data.consumer_db(), Synchronous::Normal)?;
    schema::ensure(&conn).ctx("upgrading the consumer schema")?;
    let rows = parking::list(&conn)?;
    for row in &rows {
        if args.json {
            out::line(serde_json::to_string(row).expect("a row serialises"))?;
        } else {
            out::line(format_args!(
                "{:<8} order {:>6} seq {:>2}  {}  {}",
                row.state, row.aggregate_id, row.aggregate_seq, row.event_id, row.reason
            ))?;
        }
    }
    if rows.is_empty() && !args.json {
        out::line("nothing parked")?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// The data directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// The parked event (its order's head; `outbox-lab parked` lists them).
    #[arg(long)]
    pub event: String,
    /// Apply it now (after fixing what the rule refused).
    #[arg(long, conflicts_with = "skip", required_unless_present = "skip")]
    pub retry: bool,
    /// Never apply it; `verify` counts it as skipped.
    #[arg(long)]
    pub skip: bool,
}

/// Release one parked event, then what waited behind it.
pub fn release(args: ReleaseArgs) -> Result<ExitCode> {
    let data = super::open(&args.dir, "release")?;
    // FULL: like the consumer, whose work this finishes.
    let mut conn = db::open(&data.consumer_db(), Synchronous::Full)?;
    schema::ensure(&conn).ctx("upgrading the consumer schema")?;
    let how = if args.skip {
        Release::Skip
    } else {
        Release::Retry
    };
    let options = ApplyOptions::default();
    let now_us = Clock::system().now_us();
    let released = parking::release(&mut conn, &args.event, how, now_us, &options)?;
    out::line(serde_json::to_string(&released).expect("serialises"))?;
    if released.outcome.starts_with("still refused") {
        return Err(Error::Input(format!(
            "event {} is {}",
            args.event, released.outcome
        )));
    }
    Ok(ExitCode::SUCCESS)
}
