//! What the examples print, kept in the library so the examples stay a page long and the
//! tests can hold them to it.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::crashpoint::Point;
use crate::error::{Error, Result};
use crate::lab::checker::{Duplicate, Report};
use crate::lab::harness::story::{self, Needle};
use crate::lab::harness::{self, Outcome, Scenario};
use crate::order::Mode;

/// The whole `main` of an example that runs the harness: when the harness re-executes this
/// program as one of its children, act as the command line; otherwise run the example and
/// turn an error into exit status 2.
pub fn example_main(name: &str, run: impl FnOnce() -> Result<ExitCode>) -> ExitCode {
    if let Some(code) = crate::lab::harness::child_entry() {
        return code;
    }
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{name} example: error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The seed every example uses unless told otherwise: the runs are replayable by it.
pub const DEFAULT_SEED: u64 = 42;

/// `--seed N` from the example's arguments (after `--`), else [`DEFAULT_SEED`].
pub fn seed_from_args() -> Result<u64> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().position(|a| a == "--seed") {
        None if args.is_empty() => Ok(DEFAULT_SEED),
        None => Err(Error::Input(format!(
            "unknown arguments {args:?}; the only option is --seed N"
        ))),
        Some(i) => args
            .get(i + 1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::Input("--seed needs a non-negative integer".into())),
    }
}

/// Where an example keeps its data: a directory of its own per run,
/// `$TMPDIR/outbox-lab/<example>-seed<S>-<unix seconds>-<pid>/<mode>`, so two runs at once
/// never share one; kept after the run so you can look inside (the examples print it).
pub fn data_dir(example: &str, seed: u64) -> PathBuf {
    let started_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    std::env::temp_dir().join("outbox-lab").join(format!(
        "{example}-seed{seed}-{started_s}-{}",
        std::process::id()
    ))
}

/// Run one mode of the example scenario in `root/<mode>`.
pub fn run_mode(root: &std::path::Path, seed: u64, mode: Mode) -> Result<Outcome> {
    harness::run(&Scenario::new(
        root.join(harness::mode_name(mode)),
        seed,
        mode,
    ))
}

/// Run one mode of the example scenario in `root/<mode>`, on `store` (wiped first).
pub fn run_mode_on(
    root: &std::path::Path,
    seed: u64,
    mode: Mode,
    store: &crate::store::StoreConfig,
) -> Result<Outcome> {
    harness::run(&Scenario {
        store: store.clone(),
        ..Scenario::new(root.join(harness::mode_name(mode)), seed, mode)
    })
}

/// The outbox mode again with CDC relays on a replication slot (`relay --cdc`, one streaming,
/// one standing by), in `root/outbox-cdc`, on `store` (PostgreSQL; wiped first). Its column is
/// labelled `outbox + CDC`.
pub fn run_cdc_on(
    root: &std::path::Path,
    seed: u64,
    store: &crate::store::StoreConfig,
) -> Result<Outcome> {
    let mut outcome = harness::run(&Scenario {
        store: store.clone(),
        cdc: true,
        relays: 2,
        ..Scenario::new(root.join("outbox-cdc"), seed, Mode::Outbox)
    })?;
    outcome.mode = "outbox + CDC".into();
    Ok(outcome)
}

/// The story of the first lost event: committed, killed, never appended.
pub fn lost_story(outcome: &Outcome) -> Result<String> {
    let Some(lost) = outcome.report.lost.first() else {
        return Ok("  (nothing was lost in this run)\n".into());
    };
    let request = lost.request_id.as_deref().unwrap_or("?");
    let mut out = format!(
        "  order {} (request {request}), from {}/trace.jsonl:\n",
        lost.order_id,
        outcome.dir.display()
    );
    for line in story::story(&outcome.dir, Needle::Request(request))? {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(if lost.in_log {
        "  the log has it, but it was never applied.\n"
    } else {
        "  no line says `appended`: the order is committed and its event will never exist.\n"
    });
    Ok(out)
}

/// The story of the first ghost: appended, killed before commit, its order id reused.
pub fn ghost_story(outcome: &Outcome) -> Result<String> {
    let Some(ghost) = outcome.report.ghost.first() else {
        return Ok("  (no ghost in this run)\n".into());
    };
    let mut out = format!(
        "  ghost event {}, from {}/trace.jsonl:\n",
        ghost.event_id,
        outcome.dir.display()
    );
    for line in story::story(&outcome.dir, Needle::Event(&ghost.event_id))? {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&match &ghost.order_belongs_to {
        Some(real) => format!(
            "  it says order {} was placed for {}, but that transaction rolled back; order {} now\n  \
             belongs to request {real}: the ghost names a real order with someone else's data.\n",
            ghost.order_id,
            ghost.request_id.as_deref().unwrap_or("?"),
            ghost.order_id
        ),
        None => format!("  it names order {}, which does not exist.\n", ghost.order_id),
    });
    Ok(out)
}

/// The event to show: one the log holds twice, preferring a `relay.after_sync` duplicate (the
/// copy at-least-once delivery *means*).
pub fn pick_duplicate(report: &Report) -> Option<&Duplicate> {
    let dups = &report.duplicated;
    dups.iter()
        .find(|d| {
            d.causes
                .iter()
                .any(|c| c.contains(Point::RelayAfterSync.name()))
        })
        .or_else(|| dups.first())
}

/// The story of one event the log holds twice, preferring a `relay.after_sync` duplicate.
pub fn duplicate_story(outcome: &Outcome) -> Result<String> {
    let Some(dup) = pick_duplicate(&outcome.report) else {
        return Ok("  (no event was delivered twice in this run)\n".into());
    };
    let mut out = format!(
        "  event {} ({} copies in the log; cause: {}), from {}/trace.jsonl:\n",
        dup.event_id,
        dup.copies,
        dup.causes.join(", "),
        outcome.dir.display()
    );
    for line in story::story(&outcome.dir, Needle::Event(&dup.event_id))? {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&if dup.copies == 2 {
        "  delivered twice, applied once: the second copy met its event id in the inbox.\n".into()
    } else {
        format!(
            "  delivered {} times, applied once: every later copy met its event id in the inbox.\n",
            dup.copies
        )
    });
    Ok(out)
}
