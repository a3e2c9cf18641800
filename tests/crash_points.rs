//! One crash at one point, and the checker's verdict on it. Each test runs the real harness:
//! children re-executed from the binary, SIGKILLed at the named point, restarted, drained.

mod common;

use common::*;

/// The relays' lease in most runs: short, since a restarted relay waits out its dead
/// predecessor's lease. Tests that count copies only a crash may cause use [`LONG_LEASE_MS`].
const SHORT_LEASE_MS: &str = "200";
/// Long enough that a healthy pass outlasting its lease (and being shipped again) is out of
/// reach even at load average 20; costs one lease wait in a test whose relay crashes.
const LONG_LEASE_MS: &str = "3000";

/// `crash-run` with a single explicit crash; returns the outcome JSON.
fn crash_once(name: &str, mode: &str, crash: &str) -> serde_json::Value {
    crash_once_leased(name, mode, crash, SHORT_LEASE_MS)
}

fn crash_once_leased(name: &str, mode: &str, crash: &str, lease_ms: &str) -> serde_json::Value {
    let dir = temp_dir(name).join("data");
    let out = run(&[
        "crash-run",
        "--dir",
        dir.to_str().unwrap(),
        "--mode",
        mode,
        "--orders",
        "30",
        "--batch",
        "5",
        "--lease-ms",
        lease_ms,
        "--crash",
        crash,
        "--json",
    ]);
    let outcome = one_crash_outcome(&out, crash);
    assert_eq!(outcome["unfired"].as_array().unwrap().len(), 0);
    outcome
}

fn report(outcome: &serde_json::Value) -> &serde_json::Value {
    &outcome["report"]
}

#[test]
fn lost_event_after_naive_commit() {
    let o = crash_once("naive-commit", "naive", "naive.after_commit@7");
    let r = report(&o);
    assert_eq!(r["committed_orders"], 30);
    assert_eq!(
        r["lost_count"], 1,
        "the order committed, its event never came"
    );
    assert_eq!(r["lost"][0]["order_id"], "7");
    assert_eq!(r["lost"][0]["in_log"], false);
    assert_eq!(r["ghost_count"], 0);
}

#[test]
fn ghost_event_after_naive_publish() {
    let o = crash_once(
        "naive-publish",
        "naive-publish-first",
        "naive.after_publish@7",
    );
    let r = report(&o);
    assert_eq!(
        r["committed_orders"], 30,
        "the retry placed the order later"
    );
    assert_eq!(r["lost_count"], 0);
    assert_eq!(r["ghost_count"], 1);
    assert_eq!(r["ghost_applied"], 1, "the consumer believed it");
    assert_eq!(r["ghost"][0]["order_id"], "7");
    assert_ne!(
        r["ghost"][0]["order_belongs_to"], r["ghost"][0]["request_id"],
        "order 7 now belongs to another request"
    );
    assert!(
        r["points_actual"].as_i64() > r["points_expected"].as_i64(),
        "a balance anyone can see is inflated"
    );
}

#[test]
fn nothing_half_written_when_order_service_dies_before_commit() {
    let o = crash_once("order-before", "outbox", "order.before_commit@7");
    let r = report(&o);
    assert_eq!(r["committed_orders"], 30);
    assert_eq!(r["expected_events"], 30);
    assert_eq!(r["lost_count"], 0, "no order without its event");
    assert_eq!(r["applied_once"], 30);
    assert_eq!(o["client_incarnations"], 2);
}

#[test]
fn retry_is_a_duplicate_when_order_service_dies_after_commit() {
    let o = crash_once("order-after", "outbox", "order.after_commit@7");
    let r = report(&o);
    assert_eq!(
        r["committed_orders"], 30,
        "the retried request did not become a second order"
    );
    assert_eq!(r["expected_events"], 30);
    assert_eq!(r["applied_once"], 30);
}

#[test]
fn lease_expiry_reships_after_relay_claim_crash() {
    // Asserts no copy at all: with a 200 ms lease a healthy pass on a loaded machine could
    // outlast its lease and ship its rows twice (seen at load average 15).
    let o = crash_once_leased(
        "relay-claim",
        "outbox",
        "relay.after_claim@1",
        LONG_LEASE_MS,
    );
    let r = report(&o);
    assert_eq!(r["applied_once"], 30);
    assert_eq!(r["redelivered"], 0, "nothing was appended before the crash");
    let db = o["dir"].as_str().unwrap().to_string() + "/orders.db";
    let reclaimed = sqlite_count(
        std::path::Path::new(&db),
        "SELECT count(*) FROM outbox WHERE attempts > 1",
    );
    assert!(
        reclaimed >= 1,
        "the dead relay's rows were claimed again after its lease"
    );
}

#[test]
fn unsynced_copy_survives_relay_crash_after_append() {
    // SIGKILL kills the process, not the kernel: the written page is still in the page cache.
    let o = crash_once("relay-append", "outbox", "relay.after_append@1");
    let r = report(&o);
    assert_eq!(r["applied_once"], 30);
    assert!(r["redelivered"].as_u64().unwrap() >= 1);
    assert!(
        r["redelivered_by_cause"]["crash at relay.after_append"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(r["applied_twice"], 0);
}

#[test]
fn duplicate_after_relay_sync() {
    let o = crash_once("relay-sync", "outbox", "relay.after_sync@1");
    let r = report(&o);
    assert!(
        r["redelivered_by_cause"]["crash at relay.after_sync"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_copies_absorbed(r, 30);
}

#[test]
fn torn_append_is_truncated_and_republished() {
    let o = crash_once("torn", "outbox", "broker.torn_append@1");
    let r = report(&o);
    assert_eq!(r["applied_once"], 30);
    assert_eq!(
        r["torn_tail_bytes"], 0,
        "the next writer cut the half record before appending"
    );
    assert_eq!(r["applied_twice"], 0);
}

#[test]
fn redelivered_to_consumer_after_apply_crash() {
    let o = crash_once("consumer-apply", "outbox", "consumer.after_apply@4");
    let r = report(&o);
    assert!(
        r["consumer_redeliveries"].as_u64().unwrap() >= 1,
        "records were read again after the crash"
    );
    assert_eq!(r["applied_once"], 30);
    assert_eq!(r["applied_twice"], 0);
}

#[test]
fn same_seed_gives_same_schedule_and_verdict() {
    let a = temp_dir("seed-a").join("d");
    let b = temp_dir("seed-b").join("d");
    let args = |d: &std::path::Path| {
        run(&[
            "crash-run",
            "--dir",
            d.to_str().unwrap(),
            "--mode",
            "naive",
            "--orders",
            "40",
            "--seed",
            "11",
            "--crashes",
            "4",
            "--json",
        ])
    };
    let (ra, rb) = (args(&a), args(&b));
    let ja: serde_json::Value = serde_json::from_slice(&ra.stdout).unwrap();
    let jb: serde_json::Value = serde_json::from_slice(&rb.stdout).unwrap();
    assert_eq!(ja["schedule"], jb["schedule"]);
    assert_eq!(ja["report"]["lost_count"], jb["report"]["lost_count"]);
    assert_eq!(
        ja["report"]["lost_count"],
        ja["schedule"]["client"].as_array().unwrap().len()
    );
}
