//! The naive dual write, crashed: watch events vanish, and ghosts appear.
//!
//! Run:   cargo run --example naive [-- --seed 42]
//!
//! What you will see: the order service writes the order to SQLite and the event to the log as
//! two separate steps, and a seeded schedule SIGKILLs it between the two.
//!
//! 1. commit first (`naive.after_commit`): orders committed whose `OrderPlaced` never reaches
//!    the log — LOST — and the trace of one of them, down to the kill.
//! 2. publish first (`naive.after_publish`): events in the log for orders that rolled back —
//!    GHOSTS — one of which names an order id that now belongs to someone else.
//!
//! Each crash is listed with what it did (`naive.after_commit@137 → order 137 LOST`), a table
//! and its legend compare the two runs, and each run is drawn as an HTML timeline.
//! Each run gets its own data directory, kept; the paths are printed so you can look inside
//! (`sqlite3 DIR/orders.db 'select * from orders limit 5'`, `head DIR/broker/orders.p0.log`).
//! Then run `cargo run --example outbox` to watch the same schedule do no harm.

use std::process::ExitCode;

use outbox_lab::lab::{compare, demo, timeline};
use outbox_lab::order::Mode;

fn main() -> ExitCode {
    demo::example_main("naive", run)
}

fn run() -> outbox_lab::Result<ExitCode> {
    let seed = demo::seed_from_args()?;
    let root = demo::data_dir("naive", seed);
    println!("outbox-lab · the naive dual write under crash injection · seed {seed}");
    println!("(replay: cargo run --example naive -- --seed {seed})\n");

    println!("== 1. commit the order, then publish the event; SIGKILL in between ==\n");
    let commit_first = demo::run_mode(&root, seed, Mode::Naive)?;
    print!("{}", compare::summary(&commit_first)?);
    println!("\nThe story of one lost event:");
    print!("{}", demo::lost_story(&commit_first)?);

    println!("\n== 2. publish the event, then commit the order; SIGKILL in between ==\n");
    let publish_first = demo::run_mode(&root, seed, Mode::NaivePublishFirst)?;
    print!("{}", compare::summary(&publish_first)?);
    println!("\nThe story of one ghost:");
    print!("{}", demo::ghost_story(&publish_first)?);

    let both = [&commit_first, &publish_first];
    println!();
    println!("{}", compare::table(&both));
    print!("{}", compare::legend());
    println!("{}", compare::DETERMINISM);
    for run in both {
        let html = run.dir.join("timeline.html");
        timeline::write(&html, run, &compare::table_rows(&both))?;
        println!(
            "{} as a picture (open in a browser): {}",
            run.mode,
            html.display()
        );
    }

    println!(
        "\nnaive: {} events LOST, {} GHOST events, on seed {seed}. Data kept in {}",
        commit_first.report.lost_count,
        publish_first.report.ghost_count,
        root.display()
    );
    println!("Next: cargo run --example outbox -- --seed {seed}");
    Ok(ExitCode::SUCCESS)
}
