//! Telling one event's story from `trace.jsonl`: every line that names it, plus the crash of
//! any process that touched it and the sync of any pass that appended it.
//!
//! ```text
//!   +  12.3 ms  order-service  pid 4242  placed             order 17
//!   +  31.0 ms  relay-0        pid 4250  claimed            pass 3, attempt 1
//!   +  31.4 ms  relay-0        pid 4250  appended           pass 3, partition 2 @ 1536
//!   +  31.9 ms  relay-0        pid 4250  synced             pass 3
//!   +  32.0 ms  relay-0        pid 4250  crash              at relay.after_sync
//!   …
//! ```

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

use crate::error::{Context, Result};
use crate::trace::Ev;

/// What to follow: an event id, or a client's request id (naive events may never get an id
/// anywhere — the lost ones).
#[derive(Debug, Clone, Copy)]
pub enum Needle<'a> {
    Event(&'a str),
    Request(&'a str),
}

fn names(line: &Value, needle: Needle<'_>) -> bool {
    match needle {
        Needle::Event(id) => {
            line["event_id"] == id
                || line["event_ids"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|v| v == id))
        }
        Needle::Request(rid) => line["request_id"] == rid,
    }
}

/// The story as printable lines, times relative to the trace's first line.
pub fn story(dir: &Path, needle: Needle<'_>) -> Result<Vec<String>> {
    let path = dir.join("trace.jsonl");
    let text = std::fs::read_to_string(&path).ctx(format!("reading {}", path.display()))?;
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let Some(t0_us) = lines.iter().filter_map(|l| l["t_us"].as_i64()).min() else {
        return Ok(Vec::new());
    };
    // A pid is "open" from a line about our event until it does something unrelated; a crash
    // while open is part of the story (a crash after moving on to other orders is not).
    let mut open: HashSet<u64> = HashSet::new();
    let mut passes: HashSet<(u64, u64)> = HashSet::new();
    let mut out = Vec::new();
    for line in &lines {
        let pid = line["pid"].as_u64().unwrap_or(0);
        let same_pass = line["pass"]
            .as_u64()
            .is_some_and(|p| passes.contains(&(pid, p)));
        let relevant = if names(line, needle) {
            open.insert(pid);
            if let Some(pass) = line["pass"].as_u64() {
                passes.insert((pid, pass));
            }
            true
        } else if Ev::of_line(line) == Some(Ev::Crash) {
            open.contains(&pid)
        } else if same_pass {
            Ev::of_line(line) == Some(Ev::Synced)
        } else {
            open.remove(&pid);
            false
        };
        if relevant {
            out.push(render(line, t0_us));
        }
    }
    Ok(out)
}

fn render(line: &Value, t0_us: i64) -> String {
    let t_ms = (line["t_us"].as_i64().unwrap_or(t0_us) - t0_us) as f64 / 1000.0;
    let mut details = Vec::new();
    let field = |key: &str| line.get(key).filter(|v| !v.is_null());
    if let Some(point) = field("point") {
        details.push(format!("KILLED at {}", point.as_str().unwrap_or("?")));
    }
    if let Some(order) = field("order_id") {
        details.push(format!("order {order}"));
    }
    if let Some(pass) = field("pass") {
        details.push(format!("pass {pass}"));
    }
    if let Some(attempt) = field("attempt") {
        details.push(format!("attempt {attempt}"));
    }
    if let (Some(p), Some(o)) = (field("partition"), field("offset_bytes")) {
        if field("event_ids").is_some() {
            details.push(format!("partition {p}, batch from byte {o}"));
        } else {
            details.push(format!("partition {p} @ byte {o}"));
        }
    }
    if let Some(marked) = field("marked") {
        details.push(format!(
            "marked {marked}, fenced {}",
            field("fenced").unwrap_or(&Value::Null)
        ));
    }
    format!(
        "  +{t_ms:>8.1} ms  {:<14} pid {:<7} {:<18} {}",
        line["role"].as_str().unwrap_or("?"),
        line["pid"],
        line["ev"].as_str().unwrap_or("?"),
        details.join(", ")
    )
}
