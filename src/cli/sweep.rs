//! The inbox's knobs on the command line: `consume`'s retention, horizon and seq guard flags,
//! and `sweep-inbox`, a one-off sweep. Durations are written as people say them (`24h`, `5s`);
//! the library takes milliseconds.

use super::out;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::Result;
use crate::clock::Clock;
use crate::consumer::retention::{self, parse_duration_ms};
use crate::consumer::{ConsumerConfig, RedeliveryHorizon, Retention, schema};
use crate::db::{self, Synchronous};
use crate::error::{Context, Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// How long a copy may still arrive, and how long the inbox remembers.
#[derive(Args, Debug, Clone)]
pub struct RetentionArgs {
    /// Sweep inbox rows processed longer ago than this (e.g. 24h). Without it the inbox keeps
    /// every event id forever.
    #[arg(long, value_parser = parse_duration_ms)]
    pub inbox_retention: Option<u64>,
    /// The relays' claim lease the inbox must outlast.
    #[arg(long, value_parser = parse_duration_ms, default_value = "5s")]
    pub relay_lease: u64,
    /// How long relays take to re-ship a row whose lease expired.
    #[arg(long, value_parser = parse_duration_ms, default_value = "1m")]
    pub relay_retry: u64,
    /// Downtime (consumer or relays stopped) the inbox must ride out.
    #[arg(long, value_parser = parse_duration_ms, default_value = "12h")]
    pub tolerated_downtime: u64,
    /// Rows deleted per sweep transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub sweep_batch_rows: u32,
    /// Transactions per sweep.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub sweep_max_batches: u32,
}

impl RetentionArgs {
    pub fn retention(&self) -> Option<Retention> {
        Some(Retention {
            retention_ms: self.inbox_retention?,
            horizon: RedeliveryHorizon {
                relay_lease_ms: self.relay_lease,
                relay_retry_ms: self.relay_retry,
                tolerated_downtime_ms: self.tolerated_downtime,
            },
            batch_rows: self.sweep_batch_rows,
            max_batches: self.sweep_max_batches,
            pause_between_batches_ms: 1,
        })
    }
}

/// `consume`'s inbox flags.
#[derive(Args, Debug, Clone)]
pub struct InboxArgs {
    /// Drop events whose aggregate_seq is not newer than the last applied for their order.
    /// Off by default: only sound where seqs are assigned transactionally (outbox mode).
    #[arg(long, value_enum, default_value_t = Switch::Off)]
    pub seq_guard: Switch,
    /// Run a sweeper thread in the consumer this often (needs --inbox-retention).
    #[arg(long, value_parser = parse_duration_ms)]
    pub sweep_every: Option<u64>,
    #[command(flatten)]
    pub retention: RetentionArgs,
}

impl InboxArgs {
    pub fn apply_to(&self, config: &mut ConsumerConfig) -> Result<()> {
        config.seq_guard = self.seq_guard == Switch::On;
        config.retention = self.retention.retention();
        if self.sweep_every.is_some() && config.retention.is_none() {
            return Err(Error::Input(
                "--sweep-every needs --inbox-retention (how old is too old?)".into(),
            ));
        }
        config.sweep_every_ms = self.sweep_every;
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// Data directory (created by `init`).
    #[arg(long)]
    pub dir: PathBuf,
    #[command(flatten)]
    pub retention: RetentionArgs,
}

/// One sweep; prints its report as JSON. Keeps the same contract as the consumer: a
/// retention shorter than the horizon is refused here too, since this is what deletes.
pub fn run(args: SweepArgs) -> Result<ExitCode> {
    let data = super::open(&args.dir, "inbox-sweep")?;
    let Some(retention) = args.retention.retention() else {
        return Err(Error::Input(
            "sweep-inbox needs --inbox-retention (e.g. 24h)".into(),
        ));
    };
    retention.check()?;
    // NORMAL: a delete lost to a power cut is redone by the next sweep.
    let mut conn = db::open(&data.consumer_db(), Synchronous::Normal)?;
    schema::ensure(&conn).ctx("upgrading the consumer schema")?;
    let report = retention::sweep(&mut conn, &retention, Clock::system().now_us())?;
    let left: i64 = conn
        .query_row("SELECT count(*) FROM inbox", [], |r| r.get(0))
        .ctx("counting inbox rows")?;
    let mut json = serde_json::to_value(report).expect("report serialises");
    json["inbox_rows_left"] = left.into();
    json["retention"] = retention::fmt_ms(retention.retention_ms).into();
    out::line(json)?;
    Ok(ExitCode::SUCCESS)
}
