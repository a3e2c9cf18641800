//! `relay --sync-in-parallel` syncs a pass's partitions in threads: it must change how long a
//! pass takes, never what it promises. A crash after the (parallel) sync still leaves a
//! durable, unmarked batch that is shipped again and absorbed by the inbox; nothing is lost.

mod common;

use std::process::Command;

use common::{BIN, init, ok, verify_json};

#[test]
fn parallel_sync_relay_ships_everything_once() {
    let dir = init("parallel-sync");
    ok(&["place", "--dir", &dir, "--count", "300", "--seed", "11"]);
    ok(&[
        "relay",
        "--dir",
        &dir,
        "--sync-in-parallel",
        "--until-empty",
    ]);
    ok(&["consume", "--dir", &dir, "--until-idle"]);
    let report = verify_json(&dir);
    assert_eq!(report["lost_count"], 0, "{report}");
    assert_eq!(report["redelivered"], 0, "no crash, so no copy: {report}");
    assert_eq!(report["applied_once"], 300, "{report}");
}

#[test]
fn crash_after_parallel_sync_is_delivered_twice_and_applied_once() {
    let dir = init("parallel-sync-crash");
    ok(&["place", "--dir", &dir, "--count", "50", "--seed", "12"]);
    let crashed = Command::new(BIN)
        .args([
            "relay",
            "--dir",
            &dir,
            "--sync-in-parallel",
            "--lease-ms",
            "200",
            "--until-empty",
        ])
        .env("OUTBOX_CRASH", "relay.after_sync@1")
        .output()
        .expect("running the relay");
    assert!(
        !crashed.status.success(),
        "the armed relay died at relay.after_sync"
    );
    ok(&[
        "relay",
        "--dir",
        &dir,
        "--sync-in-parallel",
        "--until-empty",
    ]);
    ok(&["consume", "--dir", &dir, "--until-idle"]);
    let report = verify_json(&dir);
    assert_eq!(report["lost_count"], 0, "{report}");
    assert_eq!(report["applied_twice"], 0, "{report}");
    assert!(
        report["redelivered"].as_u64().unwrap_or(0) > 0,
        "the synced, unmarked batch was shipped again: {report}"
    );
}
