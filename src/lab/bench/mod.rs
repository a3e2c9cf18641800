//! Benchmarks: measured by a command, never asserted in a test (absolute times are noise on a
//! shared 2-core machine; only side-by-side numbers from one run mean anything).
//!
//! ```text
//!   outbox-lab bench <which> --dir SCRATCH [--json PATH] …
//!        │
//!        ├─ poll.rs     the claim of 100 as the outbox grows to 10M published rows
//!        ├─ cleanup.rs  the order write path's p50/p99 with cleanup running vs not
//!        └─ (yours)     a module returning a `Report`, plus one variant in cli/bench.rs
//!        ▼
//!   Report ── emit ──▶ stdout: title, a Markdown table (pastes into docs/performance.md), notes
//!                └──▶ --json PATH (or `-` for stdout): the same numbers, machine-readable
//! ```
//!
//! Every benchmark builds its data in a scratch directory of its own under `--dir` and says
//! how long each step took ([`Steps`]), so a slow run shows *where* it was slow.

pub mod build;
pub mod cleanup;
pub mod poll;

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

use crate::error::{Context, Result};

/// A result table: one header, rows of already-formatted cells.
#[derive(Debug, Clone)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[&str]) -> Table {
        Table {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, cells: Vec<String>) {
        assert_eq!(
            cells.len(),
            self.columns.len(),
            "a row needs one cell per column {:?}",
            self.columns
        );
        self.rows.push(cells);
    }

    /// A Markdown table, columns padded to line up in a terminal too.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([self.columns[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:>w$}"))
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        let mut out = line(&self.columns);
        out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// What a benchmark hands back: printed as a table, written as JSON.
#[derive(Debug)]
pub struct Report {
    pub bench: &'static str,
    pub title: String,
    pub table: Table,
    /// The raw numbers behind the table (microseconds, counts), per row.
    pub results: Value,
    /// The parameters that produced it, so a run can be repeated.
    pub params: Value,
    /// How long each setup/measurement step took.
    pub steps: Steps,
    pub notes: Vec<String>,
}

impl Report {
    pub fn to_json(&self) -> Value {
        json!({
            "bench": self.bench,
            "title": self.title,
            "params": self.params,
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "columns": self.table.columns,
            "rows": self.table.rows,
            "results": self.results,
            "steps": self.steps.to_json(),
            "notes": self.notes,
        })
    }

    /// Print the table (and notes) on stdout; JSON to `json_path` (`-`: stdout, after it).
    pub fn emit(&self, json_path: Option<&Path>) -> Result<()> {
        println!("{}\n", self.title);
        print!("{}", self.table.render());
        for note in &self.notes {
            println!("- {note}");
        }
        let text = serde_json::to_string_pretty(&self.to_json()).expect("report serialises");
        match json_path {
            None => Ok(()),
            Some(p) if p == Path::new("-") => {
                println!("{text}");
                Ok(())
            }
            Some(p) => std::fs::write(p, text + "\n").ctx(format!("writing {}", p.display())),
        }
    }
}

/// A log of named steps and how long each took, echoed to stderr as it goes.
#[derive(Debug, Default)]
pub struct Steps {
    done: Vec<(String, f64)>,
}

impl Steps {
    pub fn time<T>(&mut self, name: impl Into<String>, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let name = name.into();
        let started = Instant::now();
        let out = f()?;
        let secs = started.elapsed().as_secs_f64();
        eprintln!("  [{secs:8.2} s] {name}");
        self.done.push((name, secs));
        Ok(out)
    }

    pub fn to_json(&self) -> Value {
        self.done
            .iter()
            .map(|(name, secs)| json!({ "step": name, "seconds": secs }))
            .collect()
    }
}

/// The `p`-th percentile (0..=100) of `samples`, nearest-rank; sorts in place.
pub fn percentile(samples: &mut [u64], p: f64) -> u64 {
    assert!(!samples.is_empty(), "percentile of no samples");
    assert!((0.0..=100.0).contains(&p), "percentile {p} outside 0..=100");
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// A fresh scratch directory `base/name`, removed first if a previous run left it.
pub fn scratch(base: &Path, name: &str) -> Result<std::path::PathBuf> {
    let dir = base.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).ctx(format!("removing old {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).ctx(format!("creating {}", dir.display()))?;
    Ok(dir)
}
