//! Several relays: disjoint claims, ordering under crashes, and a zombie relay fenced out.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Relays' lease where a relay crashes: every crash costs one lease wait, and these tests count
/// re-claims only a crash may cause, so a healthy pass must not outlast it even on a loaded
/// machine (the default 300 ms is too short for that).
const CRASH_LEASE_MS: &str = "2000";
/// Where nothing crashes, no wait is ever paid: the lease can be as long as the default relay's.
const NO_CRASH_LEASE_MS: &str = "5000";

fn replicas(name: &str, orders: &str, crashes: &[&str]) -> serde_json::Value {
    let lease_ms = if crashes.is_empty() {
        NO_CRASH_LEASE_MS
    } else {
        CRASH_LEASE_MS
    };
    let dir = temp_dir(name).join("data");
    let mut args = vec![
        "replicas",
        "--dir",
        dir.to_str().unwrap(),
        "--orders",
        orders,
        "--batch",
        "10",
        "--lease-ms",
        lease_ms,
        "--json",
    ];
    for c in crashes {
        args.extend(["--crash", c]);
    }
    let out = run(&args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "replicas printed no JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn four_relay_processes_claim_disjoint_rows_and_all_publish() {
    let o = replicas("disjoint4", "600", &[]);
    let claims = &o["claims"];
    assert_eq!(
        claims["claimed_by_two_passes"], 0,
        "no event id claimed by two passes"
    );
    assert_eq!(claims["extra_copies"], 0);
    assert_eq!(
        o["report"]["redelivered"], 0,
        "the log holds every event exactly once"
    );
    assert_eq!(o["report"]["records_in_log"], o["events"]);
    let shares = claims["marked_by_relay"].as_object().unwrap();
    assert_eq!(shares.len(), 4, "{shares:?}");
    assert!(
        shares.values().all(|n| n.as_u64().unwrap() > 0),
        "every relay published: {shares:?}"
    );
    let total: u64 = shares.values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(total, o["events"].as_u64().unwrap());
    assert_eq!(o["report"]["log_out_of_order"], 0);
    assert_eq!(o["report"]["out_of_order"], 0);
}

fn ordering_survives(point: &str) {
    let crash = format!("{point}@2");
    let o = replicas(&point.replace('.', "-"), "300", &[&crash]);
    assert_eq!(o["fired"].as_array().unwrap().len(), 1, "the crash fired");
    let r = &o["report"];
    assert_eq!(
        r["log_out_of_order"], 0,
        "first copies in seq order per order"
    );
    assert_eq!(r["out_of_order"], 0, "applied in seq order per order");
    assert_eq!(r["aggregates_split"], 0);
    assert_eq!(r["lost_count"], 0);
    assert_eq!(r["applied_twice"], 0);
    assert_eq!(
        o["claims"]["extra_copies_unexplained"], 0,
        "copies only where a claimant crashed"
    );
    assert_eq!(
        o["claims"]["claimed_by_two_passes"],
        o["claims"]["reclaimed_after_crash"]
    );
}

#[test]
fn ordering_holds_after_relay_crash_after_claim() {
    ordering_survives("relay.after_claim");
}

#[test]
fn ordering_holds_after_relay_crash_after_append() {
    ordering_survives("relay.after_append");
}

#[test]
fn ordering_holds_after_relay_crash_after_sync() {
    ordering_survives("relay.after_sync");
}

#[test]
fn ordering_holds_after_torn_append() {
    ordering_survives("broker.torn_append");
}

/// State letter of a process from /proc (T = stopped).
fn proc_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(") ")
        .next()
        .and_then(|rest| rest.chars().next())
        .unwrap_or('?')
}

#[test]
fn zombie_relay_cannot_mark_and_its_late_copies_are_absorbed() {
    let dir = init("zombie");
    ok(&["place", "--dir", &dir, "--count", "20", "--seed", "4"]);
    // The zombie claims everything, then freezes (SIGSTOP) right after its claim.
    let zombie = Command::new(BIN)
        .args([
            "relay",
            "--dir",
            &dir,
            "--id",
            "zombie",
            "--lease-ms",
            "300",
            "--poll-ms",
            "10",
            "--until-empty",
        ])
        .env("OUTBOX_PAUSE", "relay.after_claim@1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = zombie.id();
    let started = Instant::now();
    while proc_state(pid) != 'T' {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "zombie never paused"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // A healthy relay waits out the zombie's lease, then ships and marks everything. Its own
    // lease is long: the exact copy counts below admit no copy of its own, which a pass that
    // outlasted a short lease on a loaded machine would make.
    ok(&[
        "relay",
        "--dir",
        &dir,
        "--id",
        "healthy",
        "--lease-ms",
        "5000",
        "--poll-ms",
        "10",
        "--until-empty",
    ]);
    // The zombie wakes up, appends its stale batch, and tries to mark it.
    // SAFETY: kill(2) on the pid of the child this test spawned.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) }, 0);
    let out = zombie.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let totals: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(totals["claimed"], 20);
    assert_eq!(
        totals["marked"], 0,
        "a relay whose lease expired cannot mark rows"
    );
    assert_eq!(totals["fenced"], 20);

    ok(&["consume", "--dir", &dir, "--until-idle"]);
    let r = verify_json(&dir);
    assert_eq!(
        r["redelivered"], 20,
        "the zombie's late copies reached the log"
    );
    assert_eq!(
        r["redelivered_by_cause"][outbox_lab::lab::checker::NO_CRASH_RECORDED],
        20
    );
    assert_eq!(
        r["consumer_skipped_duplicates"], 20,
        "and the inbox absorbed every one"
    );
    assert_eq!(r["applied_once"], 20);
    assert_eq!(r["applied_twice"], 0);
    assert_eq!(r["lost_count"], 0);
    let published_by = sqlite_count(
        &std::path::Path::new(&dir).join("orders.db"),
        "SELECT count(*) FROM outbox WHERE lease_owner LIKE 'healthy/%'",
    );
    assert_eq!(
        published_by, 20,
        "every row was marked under the healthy relay's token"
    );
}
