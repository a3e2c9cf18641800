//! Four relays on one outbox: disjoint claims, every relay pulling its weight, per-order
//! ordering kept — first without crashes, then with a relay killed at each relay crash point.
//!
//! Run:   cargo run --example replicas [-- --seed 42]
//!
//! What you will see: a table with two columns. Without crashes, the log holds every event
//! exactly once, no event was claimed by two passes (the claims are disjoint: one
//! `UPDATE … RETURNING` each, SQLite's stand-in for `FOR UPDATE SKIP LOCKED`), and each of the
//! four relays published a share. With crashes, extra copies appear — but only for events whose
//! claimant was killed — and no order's events are out of seq order, in the log or as applied.
//! Exit status non-zero if any of that does not hold.

use std::process::ExitCode;

use outbox_lab::lab::demo;
use outbox_lab::lab::replicas::{self, Replicas};

const RELAY_CRASHES: &[&str] = &[
    "relay.after_sync@3",
    "relay.after_claim@5",
    "relay.after_append@4",
    "broker.torn_append@6",
];

fn main() -> ExitCode {
    demo::example_main("replicas", run)
}

fn run() -> outbox_lab::Result<ExitCode> {
    let seed = demo::seed_from_args()?;
    let root = demo::data_dir("replicas", seed);
    println!("outbox-lab · 4 relay replicas on one outbox · seed {seed}");
    println!("(replay: cargo run --example replicas -- --seed {seed})\n");
    let base = Replicas {
        store: outbox_lab::store::StoreConfig::Sqlite,
        dir: root.join("no-crashes"),
        seed,
        orders: 1500,
        relays: 4,
        batch: 20,
        lease_ms: 300,
        crashes: Vec::new(),
    };
    let calm = replicas::run(&base)?;
    let crashes = RELAY_CRASHES.iter().map(|c| c.to_string()).collect();
    let stormy = replicas::run(&Replicas {
        dir: root.join("relay-crashes"),
        crashes,
        ..base
    })?;
    print!(
        "{}",
        replicas::table(&[("no crashes", &calm), ("relay crashes", &stormy)])
    );
    println!(
        "\nrelay crashes fired: {}",
        stormy
            .fired
            .iter()
            .map(|f| f.point.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("Data kept in {}", root.display());

    let every_relay_worked = calm.claims.marked_by_relay.len() == 4
        && calm.claims.marked_by_relay.values().all(|n| *n > 0);
    let disjoint = calm.claims.claimed_by_two_passes == 0 && calm.report.redelivered == 0;
    if !(calm.ok() && stormy.ok() && every_relay_worked && disjoint) {
        println!("REPLICAS FAILED on seed {seed}");
        return Ok(ExitCode::from(1));
    }
    println!(
        "replicas: disjoint claims, all 4 relays published, copies only after crashes, order kept."
    );
    Ok(ExitCode::SUCCESS)
}
