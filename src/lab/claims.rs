//! Who claimed what, from `trace.jsonl`: the evidence that several relays split the work
//! without ever claiming the same row in two live passes, and that every extra copy in the log
//! has an explanation (its earlier claimant crashed, was fenced as a zombie, or gave back rows
//! it could not append because a partition's append lock stayed busy).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::error::{Context, Result};
use crate::trace::Ev;

#[derive(Debug, Default, Clone, Serialize)]
pub struct ClaimStats {
    pub passes: u64,
    pub claimed_rows: u64,
    /// Events claimed by more than one pass.
    pub claimed_by_two_passes: u64,
    /// …of which an earlier claimant crashed, was fenced, or released rows after a busy
    /// append lock: expected.
    pub reclaimed_after_crash: u64,
    /// Extra copies appended, and how many of them have no crashed or fenced appender.
    pub extra_copies: u64,
    pub extra_copies_unexplained: u64,
    /// Rows marked published, per relay name.
    pub marked_by_relay: BTreeMap<String, u64>,
}

pub fn analyse(dir: &Path) -> Result<ClaimStats> {
    let path = dir.join("trace.jsonl");
    let text = std::fs::read_to_string(&path).ctx(format!("reading {}", path.display()))?;
    let mut stats = ClaimStats::default();
    let mut passes: HashSet<(u64, u64)> = HashSet::new();
    let mut claimants: HashMap<String, Vec<u64>> = HashMap::new();
    let mut appenders: HashMap<String, Vec<u64>> = HashMap::new();
    // Crashed, fenced at least once, or gave back rows after a busy append lock.
    let mut excused: HashSet<u64> = HashSet::new();
    for line in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        let pid = line["pid"].as_u64().unwrap_or(0);
        match Ev::of_line(&line) {
            Some(Ev::Claimed) => {
                passes.insert((pid, line["pass"].as_u64().unwrap_or(0)));
                stats.claimed_rows += 1;
                let id = line["event_id"].as_str().unwrap_or_default().to_string();
                claimants.entry(id).or_default().push(pid);
            }
            Some(Ev::Appended) => {
                for id in line["event_ids"].as_array().into_iter().flatten() {
                    let id = id.as_str().unwrap_or_default().to_string();
                    appenders.entry(id).or_default().push(pid);
                }
            }
            Some(Ev::Marked) => {
                let relay = line["relay"].as_str().unwrap_or("?").to_string();
                *stats.marked_by_relay.entry(relay).or_default() +=
                    line["marked"].as_u64().unwrap_or(0);
                if line["fenced"].as_u64().unwrap_or(0) > 0 {
                    excused.insert(pid);
                }
            }
            Some(Ev::Crash) | Some(Ev::LockBusy) => {
                excused.insert(pid);
            }
            _ => {}
        }
    }
    stats.passes = passes.len() as u64;
    for pids in claimants.values().filter(|p| p.len() > 1) {
        stats.claimed_by_two_passes += 1;
        if pids[..pids.len() - 1].iter().all(|p| excused.contains(p)) {
            stats.reclaimed_after_crash += 1;
        }
    }
    for pids in appenders.values().filter(|p| p.len() > 1) {
        for pid in &pids[..pids.len() - 1] {
            stats.extra_copies += 1;
            if !excused.contains(pid) {
                stats.extra_copies_unexplained += 1;
            }
        }
    }
    Ok(stats)
}
