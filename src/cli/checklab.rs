//! Commands of the checker's lab: `fixture` (a big drained data directory, for measuring
//! `verify`) and `campaign` (many seeded crash runs, one summary).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::datadir::DataDir;
use crate::error::{Error, Result};
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
    println!(
        "{}",
        serde_json::json!({ "orders": built.orders, "events": built.events,
            "records": built.records, "elapsed_ms": started.elapsed().as_millis() as u64 })
    );
    if built.events == 0 {
        return Err(Error::Input("the fixture wrote no events".into()));
    }
    Ok(ExitCode::SUCCESS)
}
