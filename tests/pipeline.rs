//! The pipeline end to end through the real binary, and the promises it makes without crashes.

mod common;

use common::*;
use std::path::Path;

#[test]
fn thousand_orders_flow_end_to_end_with_nothing_lost() {
    let dir = init("e2e");
    let placed = ok(&["place", "--dir", &dir, "--count", "1000", "--seed", "3"]);
    assert_eq!(placed.lines().count(), 1000, "one reply per order");
    ok(&["relay", "--dir", &dir, "--until-empty", "--poll-ms", "10"]);
    ok(&["consume", "--dir", &dir, "--until-idle"]);
    let report = verify_json(&dir);
    assert_eq!(report["committed_orders"], 1000);
    assert_eq!(report["applied_once"], 1000);
    assert_eq!(report["lost_count"], 0);
    assert_eq!(report["ghost_count"], 0);
    assert_eq!(report["applied_twice"], 0);
    assert_eq!(report["out_of_order"], 0);
    assert_eq!(report["points_actual"], report["points_expected"]);
    let text = ok(&["verify", "--dir", &dir]);
    assert!(text.contains("verdict: OK"), "{text}");
}

#[test]
fn retried_request_id_is_one_order_and_one_event() {
    let dir = init("retry");
    let line = r#"{"request_id":"r-1","customer":"ada","amount_cents":1200}"#;
    let input = format!("{line}\n{line}\n");
    let out = run_with_stdin(&["place", "--dir", &dir], &input);
    assert!(out.status.success());
    let replies: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replies[0]["status"], "placed");
    assert_eq!(replies[1]["status"], "duplicate");
    assert_eq!(replies[0]["order_id"], replies[1]["order_id"]);
    let db = Path::new(&dir).join("orders.db");
    assert_eq!(sqlite_count(&db, "SELECT count(*) FROM orders"), 1);
    assert_eq!(sqlite_count(&db, "SELECT count(*) FROM outbox"), 1);
}

#[test]
fn same_request_id_with_different_content_is_refused() {
    let dir = init("retry-conflict");
    let input = concat!(
        r#"{"request_id":"r-1","customer":"ada","amount_cents":1200}"#,
        "\n",
        r#"{"request_id":"r-1","customer":"ada","amount_cents":9999}"#,
        "\n"
    );
    let out = run_with_stdin(&["place", "--dir", &dir], input);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("already used for a different order"),
        "{stdout}"
    );
    let db = Path::new(&dir).join("orders.db");
    assert_eq!(sqlite_count(&db, "SELECT count(*) FROM outbox"), 1);
}

#[test]
fn record_delivered_twice_is_applied_once() {
    let dir = init("dup-record");
    ok(&["place", "--dir", &dir, "--count", "5", "--seed", "1"]);
    ok(&["relay", "--dir", &dir, "--until-empty"]);
    // Copy the first record of a non-empty partition to its end, as a relay that crashed
    // after its sync would have.
    let broker = Path::new(&dir).join("broker");
    let log = (0..4)
        .map(|p| broker.join(format!("orders.p{p}.log")))
        .find(|p| std::fs::metadata(p).unwrap().len() > 0)
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let first = text.lines().next().unwrap().to_string();
    std::fs::write(&log, format!("{text}{first}\n")).unwrap();
    // That relay synced, so the copy is durable: a relay starting up verifies the bytes past
    // the durable end, syncs them and publishes the new end, and the consumer then sees them.
    ok(&["relay", "--dir", &dir, "--until-empty"]);
    ok(&["consume", "--dir", &dir, "--until-idle"]);
    let report = verify_json(&dir);
    assert_eq!(report["redelivered"], 1);
    assert_eq!(report["consumer_skipped_duplicates"], 1);
    assert_eq!(report["applied_once"], 5);
    assert_eq!(report["applied_twice"], 0);
    let consumer = Path::new(&dir).join("consumer.db");
    assert_eq!(sqlite_count(&consumer, "SELECT count(*) FROM effects"), 5);
    assert_eq!(
        sqlite_count(
            &consumer,
            "SELECT value FROM counters WHERE name = 'skipped_duplicate'"
        ),
        1
    );
}

#[test]
fn two_connections_claiming_at_once_get_disjoint_rows() {
    use outbox_lab::db::{self, Synchronous};
    use outbox_lab::outbox::claim_batch;
    let dir = init("disjoint");
    ok(&["place", "--dir", &dir, "--count", "400", "--seed", "9"]);
    let db_path = Path::new(&dir).join("orders.db");
    let start = std::sync::Arc::new(std::sync::Barrier::new(2));
    let claimers: Vec<_> = (0..2)
        .map(|n| {
            let db_path = db_path.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                let mut conn = db::open(&db_path, Synchronous::Normal).unwrap();
                let mut ids = Vec::new();
                start.wait();
                // 2 x 25 claims of 7 = 350 rows of the 400: each claim must find work, so the
                // only question left is whether the two ever got the same row.
                for pass in 0..25 {
                    let token = format!("claimer-{n}/{pass}");
                    let claim = claim_batch(
                        &mut conn,
                        outbox_lab::outbox::Layout::Single,
                        &token,
                        outbox_lab::clock::Clock::system(),
                        60_000,
                        7,
                    )
                    .unwrap();
                    assert_eq!(
                        claim.rows.len(),
                        7,
                        "rows are left, so a claim is never short"
                    );
                    ids.extend(claim.rows.iter().map(|r| r.id));
                    // What a relay does between claims (append, sync): lets the other in.
                    std::thread::sleep(std::time::Duration::from_micros(300));
                }
                ids
            })
        })
        .collect();
    let results: Vec<Vec<i64>> = claimers.into_iter().map(|c| c.join().unwrap()).collect();
    let mut all: Vec<i64> = results.concat();
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "an id was claimed twice");
    assert_eq!(all.len(), 350);
    let db = Path::new(&dir).join("orders.db");
    let leased = "SELECT count(*) FROM outbox WHERE lease_owner IS NOT NULL";
    assert_eq!(
        sqlite_count(&db, leased),
        350,
        "each claimed row holds exactly one lease"
    );
}

#[test]
fn pay_and_ship_write_seq_two_and_three_in_order() {
    let dir = init("lifecycle");
    ok(&["place", "--dir", &dir, "--count", "1", "--seed", "5"]);
    ok(&["pay", "--dir", &dir, "--order-id", "1"]);
    ok(&["ship", "--dir", &dir, "--order-id", "1"]);
    let refused = run(&["ship", "--dir", &dir, "--order-id", "1"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("order 1 is shipped"));
    let unknown = run(&["pay", "--dir", &dir, "--order-id", "77"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("order 77 does not exist"));
    let db = Path::new(&dir).join("orders.db");
    assert_eq!(
        sqlite_count(&db, "SELECT count(*) FROM outbox"),
        3,
        "refusals wrote nothing"
    );
    ok(&["relay", "--dir", &dir, "--until-empty", "--poll-ms", "10"]);
    ok(&["consume", "--dir", &dir, "--until-idle"]);
    let report = verify_json(&dir);
    assert_eq!(report["applied_once"], 3);
    assert_eq!(report["out_of_order"], 0);
}
