//! `relay --cdc`, `init --cdc`, `cdc-status`: the command line of the CDC relay
//! ([`crate::relay::cdc`]) and its slot ([`crate::store::pg::cdc`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use clap::Args;

use crate::Result;
use crate::datadir::DataDir;
use crate::error::Error;
use crate::relay::cdc::{CdcConfig, CdcRelay, MAX_CDC_BATCH};
use crate::store::StoreConfig;
use crate::store::pg::{self, cdc};

/// How often an idle CDC relay commits a heartbeat so its slot can move past other tables' WAL.
pub const DEFAULT_HEARTBEAT_MS: u64 = 10_000;

/// `init --cdc keep|delete`: the publication, the notify trigger and the slot, before any order.
pub fn setup(data: &DataDir, rows: cdc::OutboxRows) -> Result<String> {
    let StoreConfig::Postgres(url) = &data.store else {
        return Err(Error::Input(
            "--cdc needs --postgres URL: SQLite has no logical change stream".into(),
        ));
    };
    let mut client = pg::connect(url, pg::DEFAULT_IDLE_IN_TX_MS)?;
    let (settings, before) = cdc::setup(&mut client, rows)?;
    let mut note = format!(
        ", CDC slot {} (outbox rows: {})",
        settings.slot,
        settings.outbox_rows.as_str()
    );
    if before > 0 {
        note.push_str(&format!(
            "\nwarning: {before} outbox rows predate the slot and will never be decoded; \
             ship them with `relay --until-empty` (the polling relay)"
        ));
    }
    Ok(note)
}

/// `relay --cdc`: stream the slot (or wait as its standby) until SIGTERM, or until caught up.
pub fn relay(
    data: &DataDir,
    name: String,
    poll_ms: u64,
    batch: usize,
    until_empty: bool,
    stop: &AtomicBool,
) -> Result<ExitCode> {
    if !(1..=MAX_CDC_BATCH).contains(&batch) {
        return Err(Error::Input(format!(
            "--batch with --cdc must be between 1 and {MAX_CDC_BATCH} decoded messages, got {batch}"
        )));
    }
    let config = CdcConfig {
        name: name.clone(),
        poll_ms,
        batch,
        heartbeat_ms: DEFAULT_HEARTBEAT_MS,
    };
    let standby = |holder: Option<i32>| {
        let by = holder.map_or("another relay".to_string(), |p| format!("server pid {p}"));
        eprintln!("{name}: standby: the slot is streamed by {by}; taking over when it stops");
    };
    let Some(mut relay) = CdcRelay::open(data, config, stop, standby)? else {
        return Ok(ExitCode::SUCCESS);
    };
    // `since_us` (the shared clock) lets a takeover be timed from outside: kill time → this.
    eprintln!(
        "{name}: streaming slot {} since_us={}",
        relay.slot(),
        crate::clock::now_us()
    );
    let totals = relay.run(stop, until_empty)?;
    eprintln!(
        "{}",
        serde_json::to_string(&totals).expect("totals serialise")
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// A data directory initialised with `--postgres URL --cdc`.
    #[arg(long)]
    pub dir: PathBuf,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The CDC slot's status for `lag`: None unless this is a PostgreSQL directory set up with
/// `init --cdc` whose slot exists.
pub fn slot_of(data: &DataDir) -> Result<Option<cdc::status::SlotStatus>> {
    let StoreConfig::Postgres(url) = &data.store else {
        return Ok(None);
    };
    let mut client = pg::connect(url, pg::DEFAULT_IDLE_IN_TX_MS)?;
    match cdc::read_settings(&mut client)? {
        Some(settings) => cdc::status::slot_status(&mut client, &settings.slot),
        None => Ok(None),
    }
}

/// `cdc-status`: the slot's retained WAL and confirmed lag.
pub fn status(args: StatusArgs) -> Result<ExitCode> {
    let data = DataDir::open(&args.dir)?;
    let StoreConfig::Postgres(url) = &data.store else {
        return Err(Error::Input(format!(
            "cdc-status: {} uses the SQLite store, which has no replication slot",
            data.root.display()
        )));
    };
    let mut client = pg::connect(url, pg::DEFAULT_IDLE_IN_TX_MS)?;
    let settings = cdc::read_settings(&mut client)?.ok_or_else(|| {
        Error::Input("cdc-status: this database was not set up with init --cdc".into())
    })?;
    let Some(status) = cdc::status::slot_status(&mut client, &settings.slot)? else {
        return Err(Error::Input(format!(
            "cdc-status: slot {} is recorded in outbox_cdc but missing from the server \
             (dropped?); see docs/cdc.md for the catch-up path",
            settings.slot
        )));
    };
    if args.json {
        super::out::line(serde_json::to_string(&status).expect("status serialises"))?;
    } else {
        super::out::text(status.to_text())?;
    }
    Ok(ExitCode::SUCCESS)
}
