//! Many power cuts across seeds: the evidence that recovery from the durable end holds.
//!
//! Each run is an ordinary crash run (real processes, SIGKILLs on the seeded schedule) with
//! `cuts` power cuts while orders are placed (see [`crate::lab::harness::power`]); after the
//! last one the pipeline drains and the checker runs. This adds up what the cuts did (how
//! often each tail shape occurred, how often the durable end came back older) and what the
//! checker found, over all runs. A run's data directory is removed when it verifies, kept
//! (and named) when it does not.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Context, Result};
use crate::lab::harness::power::TailShape;
use crate::lab::harness::{self, Scenario};
use crate::order::Mode;

/// At most this many runs in one campaign: a bound, not a tuning knob.
pub const MAX_RUNS: u64 = 10_000;
/// At most this many cuts in one run.
pub const MAX_CUTS_PER_RUN: usize = 200;

#[derive(Debug, Clone)]
pub struct Campaign {
    /// Runs go in `dir/seed-N`.
    pub dir: PathBuf,
    pub first_seed: u64,
    pub runs: u64,
    pub cuts_per_run: usize,
    pub orders: u64,
    pub crashes: usize,
    pub relays: usize,
}

/// One run's line in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct RunLine {
    pub seed: u64,
    pub cuts: usize,
    pub ok: bool,
    pub lost: u64,
    pub applied_twice: u64,
    pub redelivered: u64,
    pub wall_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub runs: u64,
    pub runs_ok: u64,
    pub power_cuts: u64,
    pub sigkills: u64,
    /// Partition tails damaged, by shape.
    pub shapes: BTreeMap<&'static str, u64>,
    /// Partitions with nothing past their durable end at the cut.
    pub tails_empty: u64,
    pub durable_end_rewound: u64,
    pub bytes_lost_to_cuts: u64,
    pub lost: u64,
    pub ghost: u64,
    pub applied_twice: u64,
    pub out_of_order: u64,
    pub redelivered: u64,
    pub failed_dirs: Vec<PathBuf>,
    pub lines: Vec<RunLine>,
}

impl Summary {
    /// Every run verified, and every tail shape occurred at least once.
    pub fn ok(&self) -> bool {
        self.runs_ok == self.runs
            && TailShape::ALL
                .iter()
                .all(|s| self.shapes.get(s.name()).copied().unwrap_or(0) > 0)
    }
}

/// Run the campaign, printing one line per run to stderr as it goes.
pub fn run(c: &Campaign) -> Result<Summary> {
    assert!(c.runs <= MAX_RUNS && c.cuts_per_run <= MAX_CUTS_PER_RUN);
    std::fs::create_dir_all(&c.dir).ctx(format!("creating {}", c.dir.display()))?;
    crate::lab::rundir::mark(&c.dir)?;
    let mut sum = Summary::default();
    for shape in TailShape::ALL {
        sum.shapes.insert(shape.name(), 0);
    }
    for seed in c.first_seed..c.first_seed + c.runs {
        let scenario = Scenario {
            orders: c.orders,
            crashes: c.crashes,
            relays: c.relays,
            power_cuts: c.cuts_per_run,
            ..Scenario::new(c.dir.join(format!("seed-{seed}")), seed, Mode::Outbox)
        };
        let outcome = harness::run(&scenario)?;
        let r = &outcome.report;
        sum.runs += 1;
        sum.runs_ok += r.ok() as u64;
        sum.power_cuts += outcome.power_cuts.len() as u64;
        sum.sigkills += outcome.fired.len() as u64;
        for part in outcome.power_cuts.iter().flat_map(|cut| &cut.partitions) {
            match part.shape {
                Some(shape) => *sum.shapes.entry(shape.name()).or_default() += 1,
                None => sum.tails_empty += 1,
            }
            sum.durable_end_rewound += part.durable_end_rewound_to.is_some() as u64;
            sum.bytes_lost_to_cuts += part.len_before_bytes - part.len_after_bytes;
        }
        sum.lost += r.lost_count;
        sum.ghost += r.ghost_count;
        sum.applied_twice += r.applied_twice;
        sum.out_of_order += r.out_of_order;
        sum.redelivered += r.redelivered;
        let line = RunLine {
            seed,
            cuts: outcome.power_cuts.len(),
            ok: r.ok(),
            lost: r.lost_count,
            applied_twice: r.applied_twice,
            redelivered: r.redelivered,
            wall_ms: outcome.wall_ms,
        };
        eprintln!(
            "seed {:<6} cuts {:<4} sigkills {:<4} redelivered {:<5} lost {} applied twice {} {} ({} ms)",
            seed,
            line.cuts,
            outcome.fired.len(),
            line.redelivered,
            line.lost,
            line.applied_twice,
            if line.ok { "ok" } else { "FAILED" },
            line.wall_ms
        );
        if r.ok() {
            std::fs::remove_dir_all(&outcome.dir)
                .ctx(format!("removing {}", outcome.dir.display()))?;
        } else {
            sum.failed_dirs.push(outcome.dir.clone());
        }
        sum.lines.push(line);
    }
    Ok(sum)
}

/// The summary as text.
pub fn render(c: &Campaign, s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "power cuts: {} across {} seeds ({}..{}), {} orders and {} scheduled SIGKILLs per run, {} relay(s)",
        s.power_cuts,
        s.runs,
        c.first_seed,
        c.first_seed + c.runs - 1,
        c.orders,
        c.crashes,
        c.relays
    );
    let shapes: Vec<String> = s.shapes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(
        out,
        "un-synced tails at the cuts: {} (nothing past the durable end: {})",
        shapes.join(", "),
        s.tails_empty
    );
    let _ = writeln!(
        out,
        "durable end came back older: {} · bytes the cuts took: {} · SIGKILLs fired: {}",
        s.durable_end_rewound, s.bytes_lost_to_cuts, s.sigkills
    );
    let _ = writeln!(
        out,
        "checker: runs ok {}/{} · lost {} · ghost {} · applied twice {} · out of order {} · redelivered {}",
        s.runs_ok, s.runs, s.lost, s.ghost, s.applied_twice, s.out_of_order, s.redelivered
    );
    for dir in &s.failed_dirs {
        let _ = writeln!(out, "FAILED run kept in {}", dir.display());
    }
    let missing: Vec<&str> = TailShape::ALL
        .iter()
        .filter(|shape| s.shapes.get(shape.name()).copied().unwrap_or(0) == 0)
        .map(|shape| shape.name())
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(out, "shapes that never occurred: {}", missing.join(", "));
    }
    out
}
