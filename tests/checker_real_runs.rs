//! The checker on real runs where the old one was wrong: expectations survive cleanup (they come
//! from committed orders, not outbox rows), and the fixture builder's drained run verifies.

mod common;

use std::path::Path;

/// A drained run with lifecycle events, then every published outbox row cleaned away: the
/// checker's expectations come from the orders, so it still says OK.
fn verify_ok_after_cleanup(name: &str, layout: &[&str]) {
    let dir = common::temp_dir(name).join("data");
    let dir = dir.to_str().unwrap();
    let mut init = vec!["init", "--dir", dir];
    init.extend_from_slice(layout);
    common::ok(&init);
    common::ok(&[
        "place",
        "--dir",
        dir,
        "--count",
        "120",
        "--seed",
        "5",
        "--lifecycle",
    ]);
    common::ok(&["relay", "--dir", dir, "--until-empty"]);
    common::ok(&["consume", "--dir", dir, "--until-idle"]);
    common::ok(&["cleanup", "--dir", dir, "--retention-ms", "0"]);
    let orders = Path::new(dir).join("orders.db");
    let left = common::sqlite_count(&orders, "SELECT count(*) FROM outbox");
    let events = common::sqlite_count(&orders, "SELECT sum(last_seq) FROM orders");
    assert!(
        left < events / 2,
        "cleanup removed most rows ({left} of {events} left)"
    );
    let r = common::verify_json(dir);
    assert_eq!(r["expected_events"], events, "{r}");
    assert_eq!(r["applied_once"], events, "{r}");
    for anomaly in [
        "lost_count",
        "ghost_count",
        "out_of_order",
        "applied_twice",
        "pending",
    ] {
        assert_eq!(r[anomaly], 0, "{anomaly}: {r}");
    }
    common::ok(&["verify", "--dir", dir]);
}

#[test]
fn verify_ok_after_cleanup_with_lifecycle_events_single_table() {
    verify_ok_after_cleanup("cleanup-single", &[]);
}

#[test]
fn verify_ok_after_cleanup_with_lifecycle_events_segments() {
    verify_ok_after_cleanup(
        "cleanup-segments",
        &["--outbox-layout", "partitioned", "--segment-rows", "50"],
    );
}

#[test]
fn the_fixture_builder_writes_a_run_the_checker_passes() {
    let dir = common::init("fixture");
    let built: serde_json::Value =
        serde_json::from_str(&common::ok(&["fixture", "--dir", &dir, "--orders", "400"])).unwrap();
    assert_eq!(
        built["events"],
        400 + 100 * 2,
        "every 4th order paid and shipped"
    );
    let r = common::verify_json(&dir);
    assert_eq!(r["records_in_log"], built["records"]);
    assert_eq!(r["applied_once"], built["events"]);
    assert_eq!(r["redelivered"], 6, "one copy in a hundred");
    common::ok(&["verify", "--dir", &dir]);
    let again = common::run(&["fixture", "--dir", &dir, "--orders", "1"]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "a second build into the same directory is refused"
    );
}
