//! `cleanup`, the relay's `--cleanup-every-ms`, and `init --outbox-layout`: the command line
//! of `outbox::cleanup` and `outbox::segments`. The strategy follows the layout chosen at
//! init: a single `outbox` table is cleaned by batched deletes, a partitioned one by dropping
//! whole segments.

use super::out;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::Result;
use crate::clock::now_us;
use crate::datadir::DataDir;
use crate::db::{self, Synchronous};
use crate::outbox::cleanup::{self, CleanupConfig};
use crate::outbox::layout::{self, Layout};
use crate::outbox::segments;
use crate::relay::Relay;

/// The layout flags of `init`.
#[derive(Args, Debug)]
pub struct LayoutArgs {
    /// Chosen once, on an empty outbox; omitted, an existing directory keeps its layout.
    #[arg(long, value_enum)]
    pub outbox_layout: Option<Layout>,
    /// Partitioned layout: events per segment table.
    #[arg(long, default_value_t = segments::DEFAULT_SEGMENT_ROWS)]
    pub segment_rows: i64,
}

/// Apply `init`'s layout choice (the policy is [`layout::choose`]) to a directory
/// `DataDir::init` just created or opened. Returns what to add to init's message: nothing for
/// the default single table.
pub fn apply_layout(data: &DataDir, args: &LayoutArgs) -> Result<String> {
    // FULL: init runs once; nothing to gain from weaker durability.
    let mut conn = db::open(&data.orders_db(), Synchronous::Full)?;
    let chosen =
        layout::choose(&mut conn, args.outbox_layout, args.segment_rows).map_err(|e| match e {
            crate::Error::Input(why) => {
                crate::Error::Input(format!("{}: {why}", data.root.display()))
            }
            other => other,
        })?;
    match chosen {
        Layout::Partitioned => partitioned_note(&conn),
        Layout::Single => Ok(String::new()),
    }
}

/// `init --postgres URL`: PostgreSQL's outbox is always a partitioned table (by id range);
/// asking for the single layout is refused. `--segment-rows` sizes its partitions when given
/// explicitly; SQLite's segment default is not PostgreSQL's (see `store::pg::schema`).
pub fn init_postgres(
    dir: &std::path::Path,
    partitions: u32,
    url: String,
    args: &LayoutArgs,
) -> Result<(DataDir, String)> {
    if args.outbox_layout == Some(Layout::Single) {
        return Err(crate::Error::Input(
            "--outbox-layout single: the PostgreSQL outbox is always partitioned by id range"
                .into(),
        ));
    }
    let rows = (args.segment_rows != segments::DEFAULT_SEGMENT_ROWS).then_some(args.segment_rows);
    let store = crate::store::StoreConfig::Postgres(url);
    let data = DataDir::init_with_store(dir, partitions, store, rows)?;
    let note = format!(
        ", store {}, outbox partitioned by id range",
        data.store.describe()
    );
    Ok((data, note))
}

fn partitioned_note(conn: &rusqlite::Connection) -> Result<String> {
    let rows = segments::segment_rows_of(conn)?;
    Ok(format!(" (partitioned outbox, {rows} rows per segment)"))
}

/// The retention and batching flags shared by `cleanup` and the relay.
#[derive(Args, Debug, Clone)]
pub struct CleanupFlags {
    /// Published rows younger than this are kept.
    #[arg(long, default_value_t = CleanupConfig::default().retention_ms, value_parser = super::bounds::ms)]
    pub retention_ms: u64,
    /// Rows per delete transaction (single layout).
    #[arg(long, default_value_t = CleanupConfig::default().batch_rows)]
    pub batch_rows: usize,
    /// Gap between cleanup transactions, so waiting writers get the lock.
    #[arg(long, default_value_t = CleanupConfig::default().pause_ms, value_parser = super::bounds::ms)]
    pub pause_ms: u64,
    /// At most this % of wall time holding the write lock (the rest goes to the writers).
    #[arg(long, default_value_t = CleanupConfig::default().max_lock_share_pct)]
    pub max_lock_share: f64,
}

impl CleanupFlags {
    fn config(&self, max_batches: u64) -> Result<CleanupConfig> {
        if !(1..=cleanup::MAX_BATCH_ROWS).contains(&self.batch_rows) {
            return Err(crate::Error::Input(format!(
                "--batch-rows must be between 1 and {}, got {}",
                cleanup::MAX_BATCH_ROWS,
                self.batch_rows
            )));
        }
        if !(self.max_lock_share > 0.0 && self.max_lock_share <= 100.0) {
            return Err(crate::Error::Input(format!(
                "--max-lock-share is a percentage in (0, 100], got {}",
                self.max_lock_share
            )));
        }
        Ok(CleanupConfig {
            retention_ms: self.retention_ms,
            batch_rows: self.batch_rows,
            pause_ms: self.pause_ms,
            max_lock_share_pct: self.max_lock_share,
            max_batches,
        })
    }
}

#[derive(Args, Debug)]
pub struct CleanupArgs {
    /// Data directory (created by `init`).
    #[arg(long)]
    pub dir: PathBuf,
    #[command(flatten)]
    pub flags: CleanupFlags,
    /// Transactions (delete windows or dropped segments) in this run at most.
    #[arg(long, default_value_t = CleanupConfig::default().max_batches)]
    pub max_batches: u64,
}

pub fn run(args: CleanupArgs) -> Result<ExitCode> {
    let data = super::open(&args.dir, "cleanup")?;
    let config = args.flags.config(args.max_batches)?;
    // The store's own connection settings (SQLite: NORMAL — a cleanup lost to a power cut just
    // runs again; nothing anyone waits on is lost).
    let mut store = crate::store::open_outbox(&data, crate::store::ClaimMode::default())?;
    let stop = super::stop_flag()?;
    let report = store.cleanup(&config, now_us(), &stop, &mut cleanup::Pacer::sleeping())?;
    out::line(serde_json::to_string(&report).expect("report serialises"))?;
    Ok(ExitCode::SUCCESS)
}

/// The relay's cleanup flags: off unless `--cleanup-every-ms` is given.
#[derive(Args, Debug)]
pub struct RelayCleanupArgs {
    /// Also clean up old published rows, every this many ms, between passes.
    #[arg(long, value_parser = super::bounds::ms)]
    pub cleanup_every_ms: Option<u64>,
    #[command(flatten)]
    pub flags: CleanupFlags,
    /// Cleanup transactions per tick: while it cleans, this relay does not relay.
    #[arg(long, default_value_t = 20)]
    pub cleanup_max_batches: u64,
}

pub fn attach(relay: Relay, args: &RelayCleanupArgs) -> Result<Relay> {
    let Some(every_ms) = args.cleanup_every_ms else {
        return Ok(relay);
    };
    if every_ms == 0 {
        return Err(crate::Error::Input(
            "--cleanup-every-ms must be positive".into(),
        ));
    }
    Ok(relay.with_cleanup(every_ms, args.flags.config(args.cleanup_max_batches)?))
}
