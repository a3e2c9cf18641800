//! One crash at one point on the PostgreSQL store, and the checker's verdict on it: the same
//! harness as the SQLite crash tests (children re-executed from the binary, SIGKILLed at the
//! named point, restarted, drained), with orders and outbox in a real throwaway cluster.
//! The points here are those in the store's code paths; `broker.torn_append` and
//! `consumer.after_apply` never touch the orders store, and the SQLite crash tests cover them.

mod common;

use common::pg::fresh_database;
use common::*;

/// `crash-run --postgres` with a single explicit crash; None when PostgreSQL is absent.
fn crash_once(name: &str, mode: &str, crash: &str) -> Option<serde_json::Value> {
    let url = fresh_database(name)?;
    let dir = temp_dir(name).join("data");
    let out = run(&[
        "crash-run",
        "--dir",
        dir.to_str().unwrap(),
        "--postgres",
        &url,
        "--mode",
        mode,
        "--orders",
        "12",
        "--batch",
        "5",
        // Locked claims need no lease to expire after a crash (the locks go with the dead
        // relay's session); the lease here only cuts off a relay idle in its claim, and a
        // healthy pass on a loaded machine must never look like one.
        "--lease-ms",
        "1500",
        "--crash",
        crash,
        "--json",
    ]);
    Some(one_crash_outcome(&out, crash))
}

#[test]
fn pg_lost_event_after_naive_commit() {
    let Some(o) = crash_once("pg-naive-commit", "naive", "naive.after_commit@7") else {
        return;
    };
    let r = &o["report"];
    assert_eq!(r["committed_orders"], 12);
    assert_eq!(
        r["lost_count"], 1,
        "the order committed, its event never came"
    );
    assert_eq!(r["lost"][0]["in_log"], false);
    assert_eq!(r["ghost_count"], 0);
}

#[test]
fn pg_ghost_event_after_naive_publish() {
    let Some(o) = crash_once(
        "pg-naive-publish",
        "naive-publish-first",
        "naive.after_publish@7",
    ) else {
        return;
    };
    let r = &o["report"];
    assert_eq!(
        r["committed_orders"], 12,
        "the retry placed the order later"
    );
    assert_eq!(r["lost_count"], 0);
    assert_eq!(r["ghost_count"], 1);
    assert_eq!(r["ghost_applied"], 1, "the consumer believed it");
    assert!(
        r["points_actual"].as_i64() > r["points_expected"].as_i64(),
        "a balance anyone can see is inflated"
    );
}

#[test]
fn pg_nothing_half_written_when_order_service_dies_before_commit() {
    let Some(o) = crash_once("pg-order-before", "outbox", "order.before_commit@7") else {
        return;
    };
    let r = &o["report"];
    assert_eq!(r["committed_orders"], 12);
    assert_eq!(r["expected_events"], 12);
    assert_eq!(r["lost_count"], 0, "no order without its event");
    assert_eq!(r["applied_once"], 12);
    assert_eq!(o["client_incarnations"], 2);
}

#[test]
fn pg_retry_is_a_duplicate_when_order_service_dies_after_commit() {
    let Some(o) = crash_once("pg-order-after", "outbox", "order.after_commit@7") else {
        return;
    };
    let r = &o["report"];
    assert_eq!(
        r["committed_orders"], 12,
        "the retry did not become a second order"
    );
    assert_eq!(r["expected_events"], 12);
    assert_eq!(r["applied_once"], 12);
}

#[test]
fn pg_dead_relays_locks_go_with_it_after_claim() {
    let Some(o) = crash_once("pg-relay-claim", "outbox", "relay.after_claim@1") else {
        return;
    };
    let r = &o["report"];
    assert_eq!(r["applied_once"], 12);
    assert_eq!(r["redelivered"], 0, "nothing was appended before the crash");
    assert_eq!(r["applied_twice"], 0);
}

#[test]
fn pg_unsynced_copy_survives_relay_crash_after_append() {
    let Some(o) = crash_once("pg-relay-append", "outbox", "relay.after_append@1") else {
        return;
    };
    let r = &o["report"];
    assert_eq!(r["applied_once"], 12);
    assert!(
        r["redelivered_by_cause"]["crash at relay.after_append"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(r["applied_twice"], 0);
}

#[test]
fn pg_duplicate_after_relay_sync() {
    let Some(o) = crash_once("pg-relay-sync", "outbox", "relay.after_sync@1") else {
        return;
    };
    let r = &o["report"];
    assert!(
        r["redelivered_by_cause"]["crash at relay.after_sync"]
            .as_u64()
            .unwrap()
            >= 1,
        "the dead relay's transaction rolled back: its synced rows were shipped again"
    );
    assert_copies_absorbed(r, 12);
}

#[test]
fn pg_crash_run_explains_each_crash_from_the_postgres_store() {
    // The text report maps each crash to its order through the orders store: on a PostgreSQL
    // data dir there is no orders.db to read it from.
    let Some(url) = fresh_database("pg-explained") else {
        return;
    };
    let dir = temp_dir("pg-explained").join("data");
    let out = ok(&[
        "crash-run",
        "--dir",
        dir.to_str().unwrap(),
        "--postgres",
        &url,
        "--orders",
        "12",
        "--lease-ms",
        "1500",
        "--crash",
        "order.after_commit@5",
    ]);
    assert!(out.contains("order.after_commit@5"), "{out}");
    assert!(out.contains("verdict: OK"), "{out}");
}
