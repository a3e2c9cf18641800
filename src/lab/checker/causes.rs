//! Why an event has more than one copy in the log, from `trace.jsonl`: for each extra copy,
//! the crash point of the process that appended the earlier copy, if it recorded one.
//!
//! The trace is a diagnostic (never synced, may be missing): it can only name causes, never
//! change a verdict. It is streamed, and only the appenders of duplicated events are kept.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::lab::checker::keys::{EventKey, Keys};
use crate::trace::Ev;

/// The cause when the earlier appender left no crash record: it may have been killed from
/// outside, or it lost its lease and a second relay shipped the rows again. Nothing more is
/// known, so nothing more is said.
pub const NO_CRASH_RECORDED: &str = "the appender died or lost its lease; no crash point recorded";

pub struct Appenders {
    crashes_by_pid: HashMap<u64, String>,
    pids_by_event: HashMap<EventKey, Vec<u64>>,
}

impl Appenders {
    /// Read the trace, keeping the appenders of `duplicated` events only.
    pub fn read(path: &Path, duplicated: &HashSet<EventKey>, keys: &Keys) -> Appenders {
        let mut out = Appenders {
            crashes_by_pid: HashMap::new(),
            pids_by_event: HashMap::new(),
        };
        let Ok(file) = std::fs::File::open(path) else {
            return out;
        };
        for line in BufReader::new(file).lines() {
            let Ok(line) = line else { break };
            // Cheap filter first: only two kinds of line matter here.
            if !(line.contains(Ev::Appended.name()) || line.contains(Ev::Crash.name())) {
                continue;
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            out.note(&v, duplicated, keys);
        }
        out
    }

    fn note(&mut self, v: &serde_json::Value, duplicated: &HashSet<EventKey>, keys: &Keys) {
        let pid = v["pid"].as_u64().unwrap_or(0);
        match Ev::of_line(v) {
            Some(Ev::Crash) => {
                let point = v["point"].as_str().unwrap_or("?").to_string();
                self.crashes_by_pid.insert(pid, point);
            }
            Some(Ev::Appended) => {
                let many = v["event_ids"].as_array().into_iter().flatten();
                for id in many.chain(v.get("event_id")).filter_map(|i| i.as_str()) {
                    if let Some(key) = keys.known_event(id).filter(|k| duplicated.contains(k)) {
                        self.pids_by_event.entry(key).or_default().push(pid);
                    }
                }
            }
            _ => {}
        }
    }

    /// One cause per extra copy of `key`, which has `copies` copies in the log.
    pub fn causes(&self, key: EventKey, copies: u64) -> Vec<String> {
        let extra = copies.saturating_sub(1) as usize;
        let Some(pids) = self.pids_by_event.get(&key) else {
            return vec!["unknown (no trace)".to_string(); extra];
        };
        (0..extra)
            .map(|i| match pids.get(i) {
                Some(pid) => match self.crashes_by_pid.get(pid) {
                    Some(point) => format!("crash at {point}"),
                    None => NO_CRASH_RECORDED.to_string(),
                },
                None => "unknown (trace incomplete)".to_string(),
            })
            .collect()
    }
}
