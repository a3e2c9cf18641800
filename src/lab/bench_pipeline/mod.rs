//! The pipeline's benchmarks: the write path, relay throughput, and commit → applied latency.
//!
//! ```text
//!   bench write    orders/s:  order row only │ outbox (order + outbox row) │ naive (commit,
//!                             then append + fdatasync) — the outbox row's µs/order is the gap
//!   bench relay    events/s over a pre-built backlog: batch 1…1000, 1…4 relays; where each
//!                  pass spends its time (claim, append, sync, mark); fdatasync alone
//!   bench latency  applied_at_us − created_at_us at a steady rate: relay polling 500 ms vs
//!                  woken by the WAL doorbell, consumer polling 20 ms vs woken by the log;
//!                  with --postgres: polling vs LISTEN/NOTIFY vs the CDC slot, per rate, + SVG
//! ```
//!
//! Why they are built this way:
//!
//! * **Side by side, in one run, interleaved.** These are shared 2-core machines: another
//!   build can halve a number for ten seconds. Each round runs every variant once, in a
//!   rotated order, and a table reports the median over rounds with the [min–max] spread, so
//!   a burst of load hits all variants alike and shows up as spread, not as a difference.
//!   The load average is printed with every table.
//! * **Trace off.** In-process runs never open `trace.jsonl`; child processes get
//!   `OUTBOX_TRACE=0`. A benchmark of the trace would be a different benchmark.
//! * **Durability as in production.** The order service commits with `synchronous=FULL`, the
//!   relay syncs the log before marking, the consumer commits FULL: unless a table says
//!   otherwise, a number here is the number of the real configuration.
//! * **Bounded and tidy.** Every run has a size and a time limit; data lives in a temp dir
//!   under /tmp that is deleted afterwards, whatever happens ([`TempDir`]).
//!
//! Each benchmark's `run` prints its table and returns the same figures as JSON.

pub mod latency;
pub mod latency_pg;
pub mod relay;
pub mod svg;
pub mod takeover;
pub mod write;
pub mod write_pg;

use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// A directory under /tmp, removed (with everything in it) when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> Result<TempDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        // /tmp, not $TMPDIR: the figures are for the disk behind /tmp, which the write-up names.
        let path = PathBuf::from("/tmp").join(format!(
            "outbox-lab-bench-{name}-{}-{n}",
            std::process::id()
        ));
        if path.exists() {
            std::fs::remove_dir_all(&path).ctx(format!("clearing {}", path.display()))?;
        }
        std::fs::create_dir_all(&path).ctx(format!("creating {}", path.display()))?;
        Ok(TempDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Median and range of one figure over rounds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(samples: &[f64]) -> Spread {
        assert!(!samples.is_empty(), "a spread of no samples");
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Spread {
            median: percentile(&sorted, 50.0),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        }
    }

    /// `12345 [12000–12600]`, with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        format!(
            "{:.d$} [{:.d$}–{:.d$}]",
            self.median,
            self.min,
            self.max,
            d = digits
        )
    }
}

/// The `p`-th percentile of `sorted` (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    assert!((0.0..=100.0).contains(&p), "percentile {p} outside 0..=100");
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The variants of round `round`, rotated so that each variant takes each slot in turn.
pub fn rotated<T: Clone>(variants: &[T], round: usize) -> Vec<T> {
    let mut order = variants.to_vec();
    if !order.is_empty() {
        let by = round % order.len();
        order.rotate_left(by);
    }
    order
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

/// Print a table: a header row, a rule, then the rows, columns padded to their widest cell.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        assert_eq!(row.len(), headers.len(), "a table row with the wrong width");
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}", w = *w))
            .collect();
        println!("  {}", padded.join(" | "));
    };
    line(headers.to_vec());
    println!(
        "  {}",
        "-".repeat(widths.iter().sum::<usize>() + 3 * (widths.len() - 1))
    );
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Write the JSON to `path` if one was asked for.
pub fn write_json(path: Option<&Path>, value: &serde_json::Value) -> Result<()> {
    let Some(path) = path else { return Ok(()) };
    let text = serde_json::to_string_pretty(value).expect("JSON serialises");
    std::fs::write(path, text + "\n").ctx(format!("writing {}", path.display()))
}

/// What every benchmark's JSON starts with: when, on what load, with what settings.
pub fn header(name: &str, settings: serde_json::Value) -> serde_json::Value {
    let load = load_average();
    println!("{name}: load average {load} (uptime), trace off");
    serde_json::json!({ "bench": name, "load_average": load, "trace": "off",
                        "started_at_us": crate::clock::now_us(), "settings": settings })
}
