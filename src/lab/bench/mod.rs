//! Benchmarks: measured by a command, never asserted in a test (absolute times are noise on a
//! shared 2-core machine; only side-by-side numbers from one run mean anything).
//!
//! ```text
//!   outbox-lab bench <which> [--dir SCRATCH] [--json PATH] [--keep] [--allow-debug] …
//!        │
//!        ├─ write.rs     orders/s: order row only │ outbox │ naive; group commit: size vs latency
//!        ├─ relay.rs     relay events/s by batch and relay count, beside a bare relay
//!        │               (floor.rs: one file, one fdatasync per batch, no lease — the floor)
//!        ├─ consume.rs   consumer events/s, one transaction per record vs per batch
//!        ├─ pipeline.rs  the whole pipeline as processes: sustained orders/s, commit → applied
//!        ├─ latency.rs   commit → applied at a steady rate: polling vs doorbells
//!        ├─ latency_pg.rs  the same on PostgreSQL: 500 ms polling vs LISTEN/NOTIFY vs CDC (+ svg.rs)
//!        ├─ write_pg.rs  PostgreSQL write path: keep rows vs NOTIFY trigger vs insert-and-delete
//!        ├─ takeover.rs  how long a CDC slot goes unstreamed when its streaming relay dies
//!        ├─ poll.rs      the claim of 100 as the outbox grows to 10M published rows
//!        ├─ cleanup.rs   the order write path's p50/p99 with cleanup running vs not
//!        ├─ inbox.rs     the inbox's size and sweep cost by event rate and retention
//!        ├─ pg/          `bench postgres relay|poll|cleanup`: the same questions on PostgreSQL
//!        └─ (yours)      a module returning a `Report`, plus one variant in cli/bench/
//!        ▼
//!   Report ── emit ──▶ stdout: title, load average, build profile, Markdown tables (they paste
//!                      into docs/performance.md), notes
//!                └──▶ --json PATH (or `-` for stdout): the same numbers, machine-readable
//! ```
//!
//! Why they are built this way:
//!
//! * **Side by side, in one run, interleaved.** These are shared 2-core machines: another
//!   build can halve a number for ten seconds. Where a benchmark has rounds, each round runs
//!   every variant once, in a rotated order ([`rotated`]), and a table reports the median over
//!   rounds with the [min–max] spread ([`Spread`]), so a burst of load hits all variants alike
//!   and shows up as spread, not as a difference. The load average is printed with every report.
//! * **Release builds only.** A debug build is 10–50× slower in the parts that are CPU: its
//!   figures would mislead, so every benchmark refuses to run on one unless `--allow-debug`
//!   ([`refuse_debug_build`]); the build profile is printed with the figures either way.
//! * **Trace off.** In-process runs never open `trace.jsonl`; child processes get
//!   `OUTBOX_TRACE=0`. A benchmark of the trace would be a different benchmark.
//! * **Durability as in production.** The order service commits with `synchronous=FULL`, the
//!   relay syncs the log before marking, the consumer commits FULL: unless a table says
//!   otherwise, a number here is the number of the real configuration.
//! * **Bounded and tidy.** Every run has a size and a time limit; data lives in a scratch
//!   directory ([`TempDir`]) deleted afterwards, whatever happens, unless `--keep`.
//!
//! Every benchmark says how long each step took ([`Steps`]), so a slow run shows *where*.

pub mod build;
pub mod cleanup;
pub mod consume;
pub mod floor;
pub mod inbox;
pub mod latency;
pub mod latency_pg;
pub mod pg;
pub mod pipeline;
pub mod poll;
pub mod relay;
mod scratch;
mod stats;
pub mod svg;
pub mod takeover;
pub mod write;
pub mod write_pg;

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

use crate::error::{Context, Error, Result};

pub use scratch::TempDir;
pub use stats::{Spread, percentile, percentile_sorted, rotated};

/// The profile this binary was built with, as cargo names it.
pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// Benchmarks measure the release build; a debug build runs only when asked to.
pub fn refuse_debug_build(allow_debug: bool) -> Result<()> {
    if cfg!(debug_assertions) && !allow_debug {
        return Err(Error::Input(
            "this is a debug build: its figures would mislead (10-50x slower CPU paths). \
             Build with `cargo build --release` and run target/release/outbox-lab, or pass \
             --allow-debug to run anyway (a smoke test)"
                .into(),
        ));
    }
    Ok(())
}

/// `/proc/loadavg`'s three load averages, or "?" off Linux.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".into())
}

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

/// What a benchmark hands back: printed as tables, written as JSON.
#[derive(Debug)]
pub struct Report {
    pub bench: &'static str,
    pub title: String,
    /// The tables, each under its heading (the first one's may be empty).
    pub tables: Vec<(String, Table)>,
    /// The raw numbers behind the tables (microseconds, counts), per row.
    pub results: Value,
    /// The parameters that produced it, so a run can be repeated.
    pub params: Value,
    /// How long each setup/measurement step took.
    pub steps: Steps,
    pub notes: Vec<String>,
    /// The load average when the benchmark started (another is read when it is printed).
    pub load_at_start: String,
}

impl Report {
    /// An empty report; call it when the benchmark starts (it reads the load average).
    pub fn new(bench: &'static str, title: String, params: Value) -> Report {
        Report {
            bench,
            title,
            tables: Vec::new(),
            results: Value::Null,
            params,
            steps: Steps::default(),
            notes: Vec::new(),
            load_at_start: load_average(),
        }
    }

    fn context_line(&self, load_at_end: &str) -> String {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        format!(
            "load average {} at start, {load_at_end} at end · {cpus} CPUs · {} build · trace off",
            self.load_at_start,
            build_profile()
        )
    }

    pub fn to_json(&self, load_at_end: &str) -> Value {
        let tables: Vec<Value> = self
            .tables
            .iter()
            .map(|(heading, t)| json!({ "heading": heading, "columns": t.columns, "rows": t.rows }))
            .collect();
        json!({
            "bench": self.bench,
            "title": self.title,
            "params": self.params,
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "build_profile": build_profile(),
            "load_average_at_start": self.load_at_start,
            "load_average_at_end": load_at_end,
            "tables": tables,
            "results": self.results,
            "steps": self.steps.to_json(),
            "notes": self.notes,
        })
    }

    /// The tables (and notes) as text for stdout; JSON written to `json_path`, or with `-`
    /// appended to the text. The caller prints the text (through the command line's checked
    /// stdout, so a closed pipe is not a panic).
    pub fn emit(&self, json_path: Option<&Path>) -> Result<String> {
        let load_at_end = load_average();
        let mut out = format!("{}\n{}\n\n", self.title, self.context_line(&load_at_end));
        for (heading, table) in &self.tables {
            if !heading.is_empty() {
                out.push_str(&format!("{heading}\n"));
            }
            out.push_str(&format!("{}\n", table.render()));
        }
        for note in &self.notes {
            out.push_str(&format!("- {note}\n"));
        }
        let text =
            serde_json::to_string_pretty(&self.to_json(&load_at_end)).expect("report serialises");
        match json_path {
            None => {}
            Some(p) if p == Path::new("-") => out.push_str(&format!("{text}\n")),
            Some(p) => std::fs::write(p, text + "\n").ctx(format!("writing {}", p.display()))?,
        }
        Ok(out)
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
