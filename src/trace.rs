//! `trace.jsonl`: one JSON object per line, appended by every process, saying what happened to
//! which event (placed, claimed, appended, synced, marked, delivered, applied, skipped, crash).
//!
//! It is a diagnostic, not a source of truth: lines are written with one `write()` each batch
//! (O_APPEND keeps lines of concurrent processes whole) but never synced, so a crash may lose
//! the last few. Every line carries `t_us`, `pid`, `role` and `ev`. Off unless [`init`] was
//! called; `OUTBOX_TRACE=0` turns it off for benchmarks.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value};

/// Every kind of trace line: the `ev` field. Writers and readers (the checker, the story
/// printer) share this enum, so a misspelt kind fails to compile; the strings on disk are
/// [`Ev::name`] and stay stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ev {
    /// An outbox transaction committed an order's event.
    Placed,
    /// The naive service committed an order.
    Committed,
    Claimed,
    Appended,
    Synced,
    Marked,
    Applied,
    SkippedDuplicate,
    DroppedBySeqGuard,
    /// Held back by the consumer: refused by a rule, or behind a refused event of its order.
    Parked,
    /// A process died at an armed crash point (`point` field).
    Crash,
    Paused,
    Resumed,
    TornTailCut,
    Cleaned,
    InboxSwept,
    /// A relay gave up waiting for a partition's append lock (`partition`, `holder_pid`).
    LockBusy,
    /// The CDC relay decoded committed outbox inserts from its replication slot.
    Received,
    /// The CDC relay advanced its slot past what it had durably appended.
    Confirmed,
}

impl Ev {
    pub const ALL: [Ev; 19] = [
        Ev::Placed,
        Ev::Committed,
        Ev::Claimed,
        Ev::Appended,
        Ev::Synced,
        Ev::Marked,
        Ev::Applied,
        Ev::SkippedDuplicate,
        Ev::DroppedBySeqGuard,
        Ev::Parked,
        Ev::Crash,
        Ev::Paused,
        Ev::Resumed,
        Ev::TornTailCut,
        Ev::Cleaned,
        Ev::InboxSwept,
        Ev::LockBusy,
        Ev::Received,
        Ev::Confirmed,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Ev::Placed => "placed",
            Ev::Committed => "committed",
            Ev::Claimed => "claimed",
            Ev::Appended => "appended",
            Ev::Synced => "synced",
            Ev::Marked => "marked",
            Ev::Applied => "applied",
            Ev::SkippedDuplicate => "skipped_duplicate",
            Ev::DroppedBySeqGuard => "dropped_by_seq_guard",
            Ev::Parked => "parked",
            Ev::Crash => "crash",
            Ev::Paused => "paused",
            Ev::Resumed => "resumed",
            Ev::TornTailCut => "torn_tail_cut",
            Ev::Cleaned => "cleaned",
            Ev::InboxSwept => "inbox_swept",
            Ev::LockBusy => "lock_busy",
            Ev::Received => "received",
            Ev::Confirmed => "confirmed",
        }
    }

    /// The kind of a trace line's `ev` string; None for a kind this version does not write.
    pub fn from_name(name: &str) -> Option<Ev> {
        Ev::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The kind of a parsed trace line.
    pub fn of_line(line: &Value) -> Option<Ev> {
        line["ev"].as_str().and_then(Ev::from_name)
    }
}

struct Trace {
    file: Mutex<File>,
    role: String,
}

static TRACE: OnceLock<Trace> = OnceLock::new();

/// Start tracing this process into `dir/trace.jsonl` under `role` (relay-1, consumer, …).
pub fn init(dir: &Path, role: &str) -> std::io::Result<()> {
    if std::env::var("OUTBOX_TRACE").is_ok_and(|v| v == "0") {
        return Ok(());
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("trace.jsonl"))?;
    let _ = TRACE.set(Trace {
        file: Mutex::new(file),
        role: role.to_string(),
    });
    Ok(())
}

pub fn enabled() -> bool {
    TRACE.get().is_some()
}

/// One line: `{"t_us","pid","role","ev", ...fields}`. The fields are built only when tracing
/// is on: the relay and the consumer emit on their hot paths, and with the trace off (the
/// benchmarks) they must not pay for JSON nobody writes.
pub fn emit(ev: Ev, fields: impl FnOnce() -> Value) {
    if !enabled() {
        return;
    }
    emit_many(ev, std::iter::once(fields()));
}

/// Many lines of one kind in a single `write()` (one per event of a batch).
pub fn emit_many(ev: Ev, items: impl IntoIterator<Item = Value>) {
    let Some(trace) = TRACE.get() else { return };
    let t_us = crate::clock::now_us();
    let pid = std::process::id();
    let mut buf = Vec::with_capacity(4096);
    for fields in items {
        let mut line = Map::new();
        line.insert("t_us".into(), t_us.into());
        line.insert("pid".into(), pid.into());
        line.insert("role".into(), trace.role.clone().into());
        line.insert("ev".into(), ev.name().into());
        if let Value::Object(extra) = fields {
            line.extend(extra);
        }
        serde_json::to_writer(&mut buf, &Value::Object(line)).expect("serialising a JSON map");
        buf.push(b'\n');
    }
    if buf.is_empty() {
        return;
    }
    let file = trace.file.lock().unwrap_or_else(|p| p.into_inner());
    // Best effort: a full disk must not turn a diagnostic into an outage.
    let _ = (&*file).write_all(&buf);
}
