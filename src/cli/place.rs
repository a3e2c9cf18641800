//! `place`, `pay`, `ship`: the order service's command line. One reply line per input line,
//! in input order, written and flushed as soon as its group has committed (programs drive
//! this through pipes).
//!
//! ```text
//!   stdin ──reader thread──▶ channel ──▶ wait for one line, then take every line already
//!                                        waiting (≤ --max-group) ──▶ one group commit ──▶ replies
//! ```
//!
//! A lone line is a group of one and commits at once; nothing ever waits for company.

use super::out;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use crate::order::input::{InputLine, MAX_REQUEST_ID_CHARS, read_line, truncate_echo};
use crate::order::lifecycle::Transition;
use crate::order::workload::{Generated, run_generated};
use crate::order::{Mode, OrderRequest};
use crate::store::OrderStore;
use crate::{Error, Result};

#[derive(Args, Debug)]
pub struct PlaceArgs {
    /// Data directory (created by `init`).
    #[arg(long)]
    pub dir: PathBuf,
    /// outbox: order + event in one transaction; naive / naive-publish-first: the dual write.
    #[arg(long, value_enum, default_value_t = Mode::Outbox)]
    pub mode: Mode,
    /// Generate this many orders instead of reading stdin.
    #[arg(long)]
    pub count: Option<u64>,
    /// Seed of the generated orders (same seed, same orders).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Index of the first generated order (request ids are s{seed}-o{index}).
    #[arg(long, default_value_t = 0)]
    pub first: u64,
    /// With --count: also pay and ship earlier orders in between (OrderPaid, OrderShipped).
    #[arg(long, requires = "count")]
    pub lifecycle: bool,
    /// Orders committed in one transaction at most: those already waiting when the previous
    /// commit ends (1: one transaction per order). Naive modes always place one at a time.
    #[arg(long, default_value_t = DEFAULT_MAX_GROUP)]
    pub max_group: usize,
}

/// Enough that one commit's fsync is shared by hundreds of orders, small enough that a group
/// holds orders.db's write lock for tens of ms at most (`bench write`: group size vs the time
/// one transaction takes).
pub const DEFAULT_MAX_GROUP: usize = 500;

pub fn run(args: PlaceArgs) -> Result<ExitCode> {
    let max_group = match args.mode {
        Mode::Outbox => check_max_group(args.max_group)?,
        // The naive modes place and reply one order at a time: a reply held back for a group
        // would change what a crash between their two writes leaves unanswered.
        Mode::Naive | Mode::NaivePublishFirst => 1,
    };
    let dir = super::open(&args.dir, "order-service")?;
    let mut service = crate::store::open_orders(&dir, args.mode)?;
    // Flushed per line: a client reads each reply as its order commits.
    let mut reply = |line: serde_json::Value| -> Result<()> { out::line(line) };
    if let Some(count) = args.count {
        check_count(count, args.first)?;
        if args.lifecycle && args.mode != Mode::Outbox {
            return Err(Error::Input("--lifecycle needs --mode outbox".into()));
        }
        let generated = Generated {
            seed: args.seed,
            first: args.first,
            count,
            lifecycle: args.lifecycle,
            max_group,
        };
        run_generated(service.as_mut(), &generated, &mut reply)?;
        return Ok(ExitCode::SUCCESS);
    }
    let failed = place_stdin(service.as_mut(), max_group, &mut reply)?;
    if failed > 0 {
        eprintln!("outbox-lab: {failed} input line(s) rejected; nothing was written for them");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The most orders one `place --count` generates: they are generated up front (about 100
/// bytes each), so the bound keeps a typo from asking for terabytes.
pub const MAX_GENERATED: u64 = 10_000_000;

/// `--count` (with `--first`): at least one order, at most [`MAX_GENERATED`], and indexes that
/// do not run past `u64::MAX` (request ids are `s{seed}-o{index}`).
fn check_count(count: u64, first: u64) -> Result<()> {
    if !(1..=MAX_GENERATED).contains(&count) {
        return Err(Error::Input(format!(
            "--count must be between 1 and {MAX_GENERATED}, got {count}"
        )));
    }
    if first.checked_add(count).is_none() {
        return Err(Error::Input(format!(
            "--first {first} + --count {count} runs past the largest order index"
        )));
    }
    Ok(())
}

fn check_max_group(max_group: usize) -> Result<usize> {
    let max = crate::order::group::MAX_GROUP;
    if !(1..=max).contains(&max_group) {
        return Err(Error::Input(format!(
            "--max-group must be between 1 and {max}, got {max_group}"
        )));
    }
    Ok(max_group)
}

/// One input line: its number (1-based, for error replies) and what could be read of it.
type Line = (usize, InputLine);

/// Group-commit stdin: returns how many lines were rejected.
fn place_stdin(
    service: &mut dyn OrderStore,
    max_group: usize,
    reply: &mut impl FnMut(serde_json::Value) -> Result<()>,
) -> Result<u64> {
    // One group's worth of lines queued ahead of the writer: enough to fill the next group
    // while this one commits, and a bound on memory (lines are at most MAX_LINE_BYTES each).
    let (tx, rx) = crossbeam_channel::bounded::<std::io::Result<Line>>(max_group);
    // The reader is detached: it ends at EOF, at a read error (sent on), or when a send
    // fails because we are gone. Each line is read bounded (`read_line`), judged alone later.
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        for number in 1.. {
            let line = match read_line(&mut stdin) {
                Ok(None) => return,
                Ok(Some(input)) => Ok((number, input)),
                Err(e) => Err(e),
            };
            let failed = line.is_err();
            if tx.send(line).is_err() || failed {
                return;
            }
        }
    });
    let mut failed = 0u64;
    while let Ok(first) = rx.recv() {
        let mut lines = vec![first];
        while lines.len() < max_group {
            match rx.try_recv() {
                Ok(line) => lines.push(line),
                Err(_) => break, // nothing more waiting: commit what we have
            }
        }
        let lines = lines
            .into_iter()
            .collect::<std::io::Result<Vec<Line>>>()
            .map_err(|e| Error::Io {
                context: "reading stdin".into(),
                source: e,
            })?;
        failed += place_lines(service, lines, reply)?;
    }
    Ok(failed)
}

/// Parse `lines`, place the good ones as one group, reply to every line in input order. Each
/// line is judged alone: a bad one (not UTF-8, too long, not an order) gets its own error.
fn place_lines(
    service: &mut dyn OrderStore,
    lines: Vec<Line>,
    reply: &mut impl FnMut(serde_json::Value) -> Result<()>,
) -> Result<u64> {
    let lines: Vec<(usize, std::result::Result<String, String>)> = lines
        .into_iter()
        .map(|(number, input)| (number, input.text()))
        .filter(|(_, text)| !matches!(text, Ok(t) if t.trim().is_empty()))
        .collect();
    let parsed: Vec<std::result::Result<OrderRequest, String>> = lines
        .iter()
        .map(|(_, text)| text.clone().and_then(|t| OrderRequest::parse(&t)))
        .collect();
    let good: Vec<OrderRequest> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    let mut placed = service.place_group(&good)?.into_iter();
    let mut failed = 0u64;
    for ((number, line), parsed) in lines.iter().zip(parsed) {
        let outcome = match parsed {
            Ok(_) => placed.next().expect("one reply per good line"),
            Err(problem) => Err(problem),
        };
        match outcome {
            Ok(p) => reply(serde_json::to_value(&p).expect("reply serialises"))?,
            Err(problem) => {
                failed += 1;
                let request_id = line
                    .as_ref()
                    .map_or(serde_json::Value::Null, |t| request_id_of(t));
                reply(json!({ "request_id": request_id, "line": number, "error": problem }))?;
            }
        }
    }
    assert!(placed.next().is_none(), "a reply without its line");
    Ok(failed)
}

/// The request_id of a rejected line, if it has one, so the client can match the error;
/// cut short if it is longer than a valid one can be (never echo megabytes back).
fn request_id_of(line: &str) -> serde_json::Value {
    match serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("request_id").cloned())
    {
        Some(serde_json::Value::String(id)) => truncate_echo(&id).into(),
        Some(other) if other.to_string().len() <= MAX_REQUEST_ID_CHARS => other,
        Some(other) => truncate_echo(&other.to_string()).into(),
        None => serde_json::Value::Null,
    }
}

pub fn transition(dir: &Path, order_id: i64, pay: bool) -> Result<ExitCode> {
    let data = super::open(dir, "order-service")?;
    let mut service = crate::store::open_orders(&data, Mode::Outbox)?;
    let step = if pay {
        Transition::Pay
    } else {
        Transition::Ship
    };
    let seq = service.transition(order_id, step)?;
    out::line(
        json!({ "order_id": order_id, "aggregate_seq": seq, "status": if pay { "paid" } else { "shipped" } }),
    )?;
    Ok(ExitCode::SUCCESS)
}
