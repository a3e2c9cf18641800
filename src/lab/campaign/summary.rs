//! The campaign's tally: runs by kind, what the checker counted over all runs, and every
//! failing seed with the command that replays it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;

use crate::error::Result;
use crate::lab::bench::Table;
use crate::lab::bench::load_average;
use crate::lab::campaign::{Campaign, RunResult};

#[derive(Debug, Clone, Default, Serialize)]
pub struct KindTally {
    pub runs: u64,
    /// Runs in which at least one process died by SIGKILL.
    pub runs_with_crash: u64,
    pub crashes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub seed: u64,
    pub kind: String,
    pub why: String,
    pub replay: String,
    pub dir: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub runs: u64,
    pub failed_runs: u64,
    pub by_kind: BTreeMap<String, KindTally>,
    pub events_expected: u64,
    pub events_applied_once: u64,
    /// Extra copies in the log, and copies the consumer skipped (inbox) or dropped (guard).
    pub log_copies: u64,
    pub copies_absorbed: u64,
    pub lost: u64,
    pub ghost: u64,
    pub applied_twice: u64,
    pub out_of_order: u64,
    pub unknown_effects: u64,
    pub runs_points_off: u64,
    pub inbox_rows_swept: u64,
    pub failures: Vec<Failure>,
    pub elapsed_s: f64,
    pub runs_per_s: f64,
    pub load_average: String,
    pub orders_per_run: u64,
}

impl Summary {
    pub fn new(c: &Campaign) -> Summary {
        Summary {
            orders_per_run: c.run.orders,
            ..Summary::default()
        }
    }

    pub fn add(&mut self, c: &Campaign, seed: u64, result: Result<RunResult>) {
        self.runs += 1;
        let kind = crate::lab::campaign::kind::for_seed(&c.kinds, seed).to_string();
        let tally = self.by_kind.entry(kind.clone()).or_default();
        tally.runs += 1;
        let r = match result {
            Ok(r) => r,
            Err(e) => return self.fail(c, seed, kind, format!("run error: {e}")),
        };
        tally.crashes += u64::from(r.crashes);
        tally.runs_with_crash += u64::from(r.crashes > 0);
        let report = &r.report;
        self.events_expected += report.expected_events;
        self.events_applied_once += report.applied_once;
        self.log_copies += report.redelivered;
        self.copies_absorbed +=
            report.consumer_skipped_duplicates + report.consumer_dropped_by_seq_guard;
        self.lost += report.lost_count;
        self.ghost += report.ghost_count;
        self.applied_twice += report.applied_twice;
        self.out_of_order += report.out_of_order + report.log_out_of_order;
        self.unknown_effects += report.unknown_effects;
        self.runs_points_off += u64::from(!report.points_balanced());
        self.inbox_rows_swept += report.inbox_swept;
        if !r.ok() {
            let why = report
                .to_text()
                .lines()
                .filter(|l| l.contains("<--"))
                .collect::<Vec<_>>()
                .join("; ");
            self.fail(c, seed, kind, why);
        }
    }

    fn fail(&mut self, c: &Campaign, seed: u64, kind: String, why: String) {
        self.failed_runs += 1;
        self.failures.push(Failure {
            seed,
            kind,
            why,
            replay: format!(
                "outbox-lab campaign --first-seed {seed} --seeds 1 --orders {} --keep",
                c.run.orders
            ),
            dir: c.root.join(format!("seed-{seed}")).display().to_string(),
        });
    }

    pub fn progress(&self, elapsed: Duration) -> String {
        format!(
            "runs {} · {:.1} runs/s · failures {}",
            self.runs,
            self.runs as f64 / elapsed.as_secs_f64().max(1e-9),
            self.failed_runs
        )
    }

    pub fn finish(&mut self, elapsed: Duration) {
        self.elapsed_s = elapsed.as_secs_f64();
        self.runs_per_s = self.runs as f64 / self.elapsed_s.max(1e-9);
        self.load_average = load_average();
    }

    pub fn ok(&self) -> bool {
        self.failed_runs == 0 && self.runs > 0
    }

    pub fn to_text(&self) -> String {
        let mut kinds = Table::new(&["kind", "runs", "runs with a SIGKILL", "SIGKILLs"]);
        for (kind, t) in &self.by_kind {
            kinds.push(vec![
                kind.clone(),
                t.runs.to_string(),
                t.runs_with_crash.to_string(),
                t.crashes.to_string(),
            ]);
        }
        let mut out = kinds.render();
        let mut totals = Table::new(&[
            "runs",
            "failed",
            "events",
            "applied once",
            "log copies",
            "copies absorbed",
            "lost",
            "ghost",
            "twice",
            "out of order",
            "unknown effects",
            "points off",
        ]);
        totals.push(
            [
                self.runs,
                self.failed_runs,
                self.events_expected,
                self.events_applied_once,
                self.log_copies,
                self.copies_absorbed,
                self.lost,
                self.ghost,
                self.applied_twice,
                self.out_of_order,
                self.unknown_effects,
                self.runs_points_off,
            ]
            .iter()
            .map(u64::to_string)
            .collect(),
        );
        out.push('\n');
        out.push_str(&totals.render());
        let _ = writeln!(
            out,
            "\n{} runs of {} orders (with lifecycle) in {:.1} s: {:.1} runs/s; load average {}",
            self.runs, self.orders_per_run, self.elapsed_s, self.runs_per_s, self.load_average
        );
        for f in &self.failures {
            let _ = writeln!(
                out,
                "FAILED seed {} ({}): {}\n  replay: {}\n  kept: {}",
                f.seed, f.kind, f.why, f.replay, f.dir
            );
        }
        let _ = writeln!(out, "campaign: {}", if self.ok() { "OK" } else { "FAILED" });
        out
    }
}
