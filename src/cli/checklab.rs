//! Commands of the checker's lab: `fixture` (a big drained data directory, for measuring
//! `verify`) and `campaign` (many seeded crash runs, one summary).

use super::out;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::datadir::DataDir;
use crate::error::{Context, Error, Result};
use crate::lab::campaign::{self, Campaign, RunConfig, kind};
use crate::lab::fixture;

#[derive(Args, Debug)]
pub struct FixtureArgs {
    /// A freshly `init`ed data directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// Orders to write; every 4th is also paid and shipped, so events ≈ 1.5 × orders.
    #[arg(long)]
    pub orders: u64,
}

/// Build a drained data directory straight into the stores (not a pipeline run).
pub fn fixture(args: FixtureArgs) -> Result<ExitCode> {
    let dir = DataDir::open(&args.dir)?;
    let started = std::time::Instant::now();
    let built = fixture::build(&dir, args.orders)?;
    out::line(
        serde_json::json!({ "orders": built.orders, "events": built.events,
            "records": built.records, "elapsed_ms": started.elapsed().as_millis() as u64 }),
    )?;
    if built.events == 0 {
        return Err(Error::Input("the fixture wrote no events".into()));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct CampaignArgs {
    /// How many runs (seeds first-seed, first-seed+1, …).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=campaign::MAX_SEEDS))]
    pub seeds: u64,
    /// The seed of the first run; a failing seed is replayed with `--first-seed N --seeds 1`.
    #[arg(long, default_value_t = 1)]
    pub first_seed: u64,
    /// Orders per run, each possibly paid and shipped.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub orders: u64,
    /// Runs at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=campaign::MAX_JOBS as u64))]
    pub jobs: u64,
    /// Scratch root for the runs (default: a fresh directory on tmpfs, or the temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Clear `--dir` even if it is not a lab run directory.
    #[arg(long)]
    pub force: bool,
    /// Keep every run's directory (failing runs are always kept).
    #[arg(long)]
    pub keep: bool,
    /// Also write the summary as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn campaign(args: CampaignArgs) -> Result<ExitCode> {
    let root = args.dir.clone().unwrap_or_else(default_root);
    crate::lab::rundir::check_clearable(&root, args.force)?;
    let c = Campaign {
        root,
        first_seed: args.first_seed,
        seeds: args.seeds,
        jobs: args.jobs as usize,
        run: RunConfig {
            orders: args.orders,
            relay_batch: 10,
            lease_ms: 100,
        },
        kinds: kind::all(),
        keep: args.keep,
    };
    let stop = super::stop_flag()?;
    eprintln!(
        "campaign: {} runs of {} orders under {} ({} jobs)",
        c.seeds,
        c.run.orders,
        c.root.display(),
        c.jobs
    );
    let summary = campaign::run(&c, &stop, &mut std::io::stderr())?;
    out::text(summary.to_text())?;
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&summary).expect("summary serialises");
        std::fs::write(path, json).ctx(format!("writing {}", path.display()))?;
    }
    if !args.keep && summary.ok() {
        let _ = std::fs::remove_dir_all(&c.root);
    }
    Ok(if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// tmpfs when there is one (fsync costs nothing there; a SIGKILL keeps the page cache anyway).
fn default_root() -> PathBuf {
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("outbox-lab-campaign-{}", std::process::id()))
}
