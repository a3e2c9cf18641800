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

/// What the story follows: the request (if any) and every event id it led to. A request is
/// followed through its order's events: `placed` names them, and from there on relays and the
/// consumer name only the event.
struct Follow<'a> {
    request: Option<&'a str>,
    events: HashSet<&'a str>,
}

impl<'a> Follow<'a> {
    fn new(lines: &'a [Value], needle: Needle<'a>) -> Follow<'a> {
        match needle {
            Needle::Event(id) => Follow {
                request: None,
                events: HashSet::from([id]),
            },
            Needle::Request(rid) => {
                let mine = |l: &&Value| l["request_id"] == rid;
                // The order the request placed (outbox mode: a `placed` line names both), and
                // so its later events too (paid, shipped), whose `placed` lines name the order
                // only. A naive `committed` line is not used: a rolled-back naive order id is
                // handed out again, and following it would pull in a ghost's events.
                let orders: HashSet<i64> = lines
                    .iter()
                    .filter(mine)
                    .filter(|l| Ev::of_line(l) == Some(Ev::Placed))
                    .filter_map(|l| l["order_id"].as_i64())
                    .collect();
                let of_order = |l: &&Value| {
                    Ev::of_line(l) == Some(Ev::Placed)
                        && l["order_id"].as_i64().is_some_and(|o| orders.contains(&o))
                };
                Follow {
                    request: Some(rid),
                    events: lines
                        .iter()
                        .filter(|l| mine(l) || of_order(l))
                        .filter_map(|l| l["event_id"].as_str())
                        .collect(),
                }
            }
        }
    }

    fn names(&self, line: &Value) -> bool {
        let event = |v: &Value| v.as_str().is_some_and(|id| self.events.contains(id));
        self.request.is_some_and(|rid| line["request_id"] == rid)
            || event(&line["event_id"])
            || line["event_ids"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(event))
    }
}

/// Every line of `dir/trace.jsonl`, parsed (a line a crash cut short is skipped), in time
/// order: processes append concurrently, so file order can put a line a little late.
pub fn load(dir: &Path) -> Result<Vec<Value>> {
    let path = dir.join("trace.jsonl");
    let text = std::fs::read_to_string(&path).ctx(format!("reading {}", path.display()))?;
    let mut lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    lines.sort_by_key(|l| l["t_us"].as_i64().unwrap_or(i64::MIN));
    Ok(lines)
}

/// The story as printable lines, times relative to the trace's first line.
pub fn story(dir: &Path, needle: Needle<'_>) -> Result<Vec<String>> {
    let lines = load(dir)?;
    let follow = Follow::new(&lines, needle);
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
        let relevant = if follow.names(line) {
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
    if let Some(kind) = field("event_type").and_then(Value::as_str) {
        details.push(format!(
            "{kind} (seq {})",
            field("aggregate_seq").unwrap_or(&Value::Null)
        ));
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
