//! The power-loss commands: `power-cuts` (a campaign across seeds) and `power-cut` (one cut
//! of a data directory whose processes are all dead, for trying a scenario by hand).

use super::out;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::datadir::DataDir;
use crate::lab::harness::power;
use crate::lab::power_campaign::{self, Campaign, MAX_CUTS_PER_RUN, MAX_RUNS};
use crate::{Error, Result};

#[derive(Args, Debug)]
pub struct PowerCutsArgs {
    /// Each run goes in DIR/seed-N (wiped first; removed when it verifies).
    #[arg(long)]
    pub dir: PathBuf,
    /// The first seed; runs use seed, seed+1, …
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How many runs (seeds seed, seed+1, …), each with its own power cuts.
    #[arg(long, default_value_t = 50)]
    pub runs: u64,
    /// Power cuts per run.
    #[arg(long, default_value_t = 10)]
    pub cuts: usize,
    /// Orders the client places in each run.
    #[arg(long, default_value_t = 150)]
    pub orders: u64,
    /// Scheduled SIGKILLs per run, on top of the cuts.
    #[arg(long, default_value_t = 6)]
    pub crashes: usize,
    /// Relay processes running at once in each run.
    #[arg(long, default_value_t = 2)]
    pub relays: usize,
    /// Print the summary as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn power_cuts(args: PowerCutsArgs) -> Result<ExitCode> {
    if args.runs == 0 || args.runs > MAX_RUNS {
        return Err(Error::Input(format!("--runs must be 1..={MAX_RUNS}")));
    }
    if args.cuts == 0 || args.cuts > MAX_CUTS_PER_RUN {
        return Err(Error::Input(format!(
            "--cuts must be 1..={MAX_CUTS_PER_RUN}"
        )));
    }
    if args.crashes > crate::lab::harness::schedule::MAX_CRASHES {
        return Err(Error::Input(format!(
            "--crashes is at most {}",
            crate::lab::harness::schedule::MAX_CRASHES
        )));
    }
    super::lab::check_run_shape(args.orders, args.relays)?;
    if args.seed.checked_add(args.runs).is_none() {
        return Err(Error::Input("--seed + --runs overflows".into()));
    }
    // Runs clear their seed-N directories: only ever inside a directory that is a lab run's.
    crate::lab::rundir::check_clearable(&args.dir, false)?;
    let campaign = Campaign {
        dir: args.dir,
        first_seed: args.seed,
        runs: args.runs,
        cuts_per_run: args.cuts,
        orders: args.orders,
        crashes: args.crashes,
        relays: args.relays,
    };
    let summary = power_campaign::run(&campaign)?;
    if args.json {
        out::line(serde_json::to_string(&summary).expect("summary serialises"))?;
    } else {
        out::text(power_campaign::render(&campaign, &summary))?;
    }
    Ok(if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(Args, Debug)]
pub struct PowerCutArgs {
    /// A data directory whose processes have ALL been stopped (SIGKILL them first).
    #[arg(long)]
    pub dir: PathBuf,
    /// Draws the shape of each partition's un-synced tail.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Force one shape for every partition instead of drawing it.
    #[arg(long, value_parser = ["whole", "cut", "zeroed", "garbage"])]
    pub shape: Option<String>,
}

pub fn power_cut(args: PowerCutArgs) -> Result<ExitCode> {
    let dir = DataDir::open(&args.dir)?;
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let report = match &args.shape {
        None => power::power_cut(&dir, &mut rng)?,
        Some(name) => {
            power::refuse_live_writers(&dir)?;
            let shape = power::TailShape::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .expect("clap checked the shape");
            let partitions = (0..dir.partitions)
                .map(|p| power::cut_partition(&dir, p, shape, false, &mut rng))
                .collect::<Result<Vec<_>>>()?;
            power::PowerCutReport {
                at_us: crate::clock::now_us(),
                partitions,
            }
        }
    };
    for p in &report.partitions {
        out::line(format_args!(
            "partition {}: durable end {} · length {} -> {} · tail {}{}",
            p.partition,
            p.durable_end_bytes,
            p.len_before_bytes,
            p.len_after_bytes,
            p.shape.map_or("empty", |s| s.name()),
            p.durable_end_rewound_to.map_or(String::new(), |e| format!(
                " · durable end came back as {e}"
            ))
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
