//! `place`, `pay`, `ship`: the order service's command line. One reply line per input line,
//! written and flushed as soon as that line is done (programs drive this through pipes).

use super::out;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use crate::order::input::{MAX_REQUEST_ID_CHARS, read_line, truncate_echo};
use crate::order::lifecycle::Transition;
use crate::order::workload::run_generated;
use crate::order::{Mode, OrderRequest, OrderService};
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
}

pub fn run(args: PlaceArgs) -> Result<ExitCode> {
    let dir = super::open(&args.dir, "order-service")?;
    let mut service = OrderService::open(&dir, args.mode)?;
    let mut failed = 0u64;
    // Flushed per line: a client reads each reply as its order commits.
    let mut reply = |line: serde_json::Value| -> Result<()> { out::line(line) };
    if let Some(count) = args.count {
        if args.lifecycle && args.mode != Mode::Outbox {
            return Err(Error::Input("--lifecycle needs --mode outbox".into()));
        }
        run_generated(
            &mut service,
            args.seed,
            args.first,
            count,
            args.lifecycle,
            &mut reply,
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut stdin = std::io::stdin().lock();
    let mut number = 0u64;
    // Each line is judged alone: a bad one (not UTF-8, too long, not an order) gets its own
    // error reply and the lines after it are still placed.
    while let Some(input) = read_line(&mut stdin).map_err(|e| Error::Io {
        context: "reading stdin".into(),
        source: e,
    })? {
        number += 1;
        let line = match input.text() {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => line,
            Err(problem) => {
                failed += 1;
                reply(json!({ "request_id": null, "line": number, "error": problem }))?;
                continue;
            }
        };
        let result = OrderRequest::parse(&line)
            .map_err(Error::Input)
            .and_then(|request| service.place(&request));
        match result {
            Ok(placed) => reply(serde_json::to_value(&placed).expect("reply serialises"))?,
            Err(Error::Input(problem)) => {
                failed += 1;
                reply(
                    json!({ "request_id": request_id_of(&line), "line": number, "error": problem }),
                )?;
            }
            // Not the input's fault (disk, database): stop rather than guess.
            Err(other) => return Err(other),
        }
    }
    if failed > 0 {
        eprintln!("outbox-lab: {failed} input line(s) rejected; nothing was written for them");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
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
    let mut service = OrderService::open(&data, Mode::Outbox)?;
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
