//! The naive-vs-outbox comparison of the `outbox` example, with orders and outbox in
//! PostgreSQL: same seed, same crash schedule, same table.
//!
//! Run:   cargo run --example postgres [-- --seed 42]
//!
//! Uses the server `OUTBOX_PG_URL` names (its outbox-lab tables are wiped for each run), or
//! starts a throwaway cluster with `scripts/pg-up` and stops it at the end. Without PostgreSQL
//! it says in one line how to install it and exits with status 2.
//!
//! What you will see: the naive modes losing events and inventing ghosts exactly as on SQLite
//! (a transaction on a server does not help a dual write), and the outbox — order and event in
//! one PostgreSQL transaction, relays claiming with `FOR UPDATE SKIP LOCKED` — losing nothing
//! while the log holds some events twice and the inbox applies each once. One difference shows
//! in the ghost's story: PostgreSQL's sequences never hand an order id out twice, so the ghost
//! names an order that does not exist rather than someone else's.
//!
//! A fourth column runs the outbox with CDC relays instead (`relay --cdc`: the outbox's INSERTs
//! decoded from the WAL through a replication slot, no claim, no mark; one relay streams, the
//! other stands by), killed at the `cdc.*` crash points of the same schedule.

use std::process::ExitCode;

use outbox_lab::lab::pg_cluster::{HOW_TO_INSTALL, PgServer};
use outbox_lab::lab::{compare, demo};
use outbox_lab::order::Mode;
use outbox_lab::store::StoreConfig;

fn main() -> ExitCode {
    demo::example_main("postgres", run)
}

fn run() -> outbox_lab::Result<ExitCode> {
    let seed = demo::seed_from_args()?;
    let Some(server) = PgServer::from_env_or_throwaway("example")? else {
        println!("{HOW_TO_INSTALL}");
        return Ok(ExitCode::from(2));
    };
    let store = StoreConfig::Postgres(server.url.clone());
    let root = demo::data_dir("postgres", seed);
    println!("outbox-lab · naive vs outbox on PostgreSQL, same crash schedule · seed {seed}");
    println!("store: {} ({})", store.describe(), server.describe());
    println!("(replay: cargo run --example postgres -- --seed {seed})\n");
    let naive = demo::run_mode_on(&root, seed, Mode::Naive, &store)?;
    let publish_first = demo::run_mode_on(&root, seed, Mode::NaivePublishFirst, &store)?;
    println!("The story of one ghost (naive publish-first):");
    print!("{}", demo::ghost_story(&publish_first)?);
    let outbox = demo::run_mode_on(&root, seed, Mode::Outbox, &store)?;
    let cdc = demo::run_cdc_on(&root, seed, &store)?;

    println!(
        "\n{}",
        compare::table(&[&naive, &publish_first, &outbox, &cdc])
    );
    print!("{}", compare::legend());
    print!("{}", compare::summary(&outbox)?);
    println!("\nThe story of one event delivered twice but applied once:");
    print!("{}", demo::duplicate_story(&outbox)?);
    println!(
        "\nLocal data (broker, consumer, trace) kept in {}",
        root.display()
    );

    let r = &outbox.report;
    let redelivered = r.redelivered + r.consumer_redeliveries;
    if !cdc.report.ok() {
        println!(
            "OUTBOX + CDC FAILED on seed {seed}: lost {}, applied twice {}",
            cdc.report.lost_count, cdc.report.applied_twice
        );
        return Ok(ExitCode::from(1));
    }
    if !r.ok() || redelivered == 0 {
        println!(
            "OUTBOX ON POSTGRESQL FAILED or proved nothing on seed {seed}: lost {}, applied twice {}, redelivered {redelivered}",
            r.lost_count, r.applied_twice
        );
        return Ok(ExitCode::from(1));
    }
    println!(
        "outbox on PostgreSQL: 0 lost, 0 ghost, 0 applied twice, {redelivered} redelivered and absorbed, on seed {seed}."
    );
    Ok(ExitCode::SUCCESS)
}
