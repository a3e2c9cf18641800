//! The transactional outbox on the same crash schedule as the naive dual write.
//!
//! Run:   cargo run --example outbox [-- --seed 42]
//!
//! What you will see: three runs of the same 300 orders under the same seeded crash schedule —
//! naive commit-first, naive publish-first, and the outbox (order + event in ONE SQLite
//! transaction, a relay shipping the outbox, an idempotent consumer) — with the relay and the
//! consumer also SIGKILLed at their own crash points. A before/after table shows the naive runs
//! losing events or inventing ghosts, and the outbox losing nothing while the log really does
//! hold some events twice (at-least-once) and the inbox still applies each exactly once. Then
//! the trace of one event delivered twice but applied once.
//!
//! A legend under the table says what each row means, and what the seed fixes (the crash
//! schedule, lost, ghosts, points) versus what timing moves (copies, re-reads). The outbox run
//! is also drawn as one HTML page, `timeline.html` in the run's directory (path printed).
//!
//! Exit status: non-zero if the outbox run lost or double-applied anything, or if nothing was
//! redelivered (then the run proved nothing). Each run gets its own data directory under
//! `$TMPDIR/outbox-lab/`, kept afterwards; its path is printed.

use std::process::ExitCode;

use outbox_lab::lab::{compare, demo, timeline};
use outbox_lab::order::Mode;

fn main() -> ExitCode {
    demo::example_main("outbox", run)
}

fn run() -> outbox_lab::Result<ExitCode> {
    let seed = demo::seed_from_args()?;
    let root = demo::data_dir("outbox", seed);
    println!("outbox-lab · naive vs outbox on the same crash schedule · seed {seed}");
    println!("(replay: cargo run --example outbox -- --seed {seed})\n");
    let naive = demo::run_mode(&root, seed, Mode::Naive)?;
    let publish_first = demo::run_mode(&root, seed, Mode::NaivePublishFirst)?;
    let outbox = demo::run_mode(&root, seed, Mode::Outbox)?;

    let all = [&naive, &publish_first, &outbox];
    println!("{}", compare::table(&all));
    print!("{}", compare::legend());
    println!("{}", compare::DETERMINISM);
    print!("{}", compare::summary(&outbox)?);
    println!("\nThe story of one event delivered twice but applied once:");
    print!("{}", demo::duplicate_story(&outbox)?);
    print!("{}", compare::STORY_LEGEND);
    let html = root.join("timeline.html");
    timeline::write(&html, &outbox, &compare::table_rows(&all))?;
    println!(
        "\nThe outbox run as a picture (open in a browser): {}",
        html.display()
    );
    println!("Data kept in {}", root.display());

    let r = &outbox.report;
    let redelivered = r.redelivered + r.consumer_redeliveries;
    if r.lost_count > 0 || r.applied_twice > 0 || !r.ok() {
        println!(
            "OUTBOX FAILED on seed {seed}: lost {}, applied twice {}",
            r.lost_count, r.applied_twice
        );
        return Ok(ExitCode::from(1));
    }
    if redelivered == 0 {
        println!("nothing was redelivered on seed {seed}: this run proved nothing about the inbox");
        return Ok(ExitCode::from(1));
    }
    println!(
        "outbox: 0 lost, 0 ghost, 0 applied twice, {redelivered} redelivered and absorbed, on seed {seed}."
    );
    Ok(ExitCode::SUCCESS)
}
