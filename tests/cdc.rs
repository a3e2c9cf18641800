//! The CDC relay against a real throwaway PostgreSQL (see `common::pg`; skipped without it,
//! failed under `CI=true`): exactly once undisturbed, at least once when killed at each of its
//! crash points, one streamer per slot, rollbacks never shipped, insert-and-delete rows shipped.

mod common;

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pg::fresh_database;
use common::{BIN, crash_run_json, fired_points, ok, run, temp_dir, verify_json};

/// A data dir on a fresh database with the CDC slot; None = PostgreSQL absent, skip.
fn cdc_dir(name: &str, rows: &str) -> Option<(String, String)> {
    let url = fresh_database(name)?;
    let dir = temp_dir(name).join("data");
    let dir = dir.to_str().unwrap().to_string();
    let out = ok(&["init", "--dir", &dir, "--postgres", &url, "--cdc", rows]);
    assert!(out.contains("CDC slot outbox_"), "init said: {out}");
    Some((dir, url))
}

/// Every record in the log: (event_id, relay), partition by partition.
fn log_records(dir: &str) -> Vec<(String, String)> {
    let mut records = Vec::new();
    for p in 0..4 {
        let path = Path::new(dir).join(format!("broker/orders.p{p}.log"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines() {
            let (_crc, json) = line.split_once(' ').expect("crc, space, json");
            let v: serde_json::Value = serde_json::from_str(json).expect("record JSON");
            records.push((
                v["event_id"].as_str().unwrap().to_string(),
                v["relay"].as_str().unwrap().to_string(),
            ));
        }
    }
    records
}

fn copies(records: &[(String, String)]) -> HashMap<&str, usize> {
    let mut n = HashMap::new();
    for (id, _) in records {
        *n.entry(id.as_str()).or_default() += 1;
    }
    n
}

/// (confirmed lag bytes, confirmed LSN, WAL end LSN) as `lag --json` reports the slot; and
/// `cdc-status --json` agrees that it retains at least the confirmed lag.
fn slot_position(dir: &str) -> (i64, u64, u64) {
    let lag: serde_json::Value =
        serde_json::from_str(&ok(&["lag", "--dir", dir, "--json"])).unwrap();
    let slot = &lag["cdc_slot"];
    let lsn = |field: &str| {
        let text = slot[field].as_str().expect("an LSN");
        let (hi, lo) = text.split_once('/').expect("X/Y");
        (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
    };
    let status: serde_json::Value =
        serde_json::from_str(&ok(&["cdc-status", "--dir", dir, "--json"])).unwrap();
    assert!(status["retained_bytes"].as_i64().expect("retained_bytes") >= 0);
    let lag_bytes = slot["confirmed_lag_bytes"]
        .as_i64()
        .expect("lag has cdc_slot");
    (lag_bytes, lsn("confirmed_flush_lsn"), lsn("current_lsn"))
}

fn relay_cdc(dir: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["relay", "--dir", dir, "--cdc", "--until-empty"];
    args.extend(extra);
    run(&args)
}

fn assert_verified(dir: &str) -> serde_json::Value {
    ok(&["consume", "--dir", dir, "--until-idle"]);
    let report = verify_json(dir);
    for field in [
        "lost_count",
        "ghost_count",
        "applied_twice",
        "out_of_order",
        "pending",
    ] {
        assert_eq!(report[field], 0, "{field} in {report}");
    }
    ok(&["verify", "--dir", dir]); // and the verdict itself: exit 0
    report
}

#[test]
fn the_cdc_relay_ships_1000_orders_exactly_once_when_undisturbed() {
    let Some((dir, _)) = cdc_dir("cdc-once", "keep") else {
        return;
    };
    ok(&["place", "--dir", &dir, "--count", "1000", "--seed", "7"]);
    let (behind, confirmed_before, _) = slot_position(&dir);
    assert!(behind > 0, "1000 unshipped orders must show as slot lag");
    let out = relay_cdc(&dir, &["--batch", "500"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = log_records(&dir);
    assert_eq!(records.len(), 1000, "one record per order");
    assert_eq!(copies(&records).len(), 1000, "1000 distinct events");
    // The slot moved (its lag is not compared with 0: other tests' databases write to the
    // same cluster's WAL, which a slot only passes when its own database commits).
    let (_, confirmed, _) = slot_position(&dir);
    assert!(
        confirmed > confirmed_before,
        "the relay confirmed the slot past the orders"
    );
    // The slot was advanced: a second relay finds nothing left to ship.
    let again = relay_cdc(&dir, &[]);
    assert!(again.status.success());
    assert_eq!(log_records(&dir).len(), 1000, "nothing shipped twice");
    let report = assert_verified(&dir);
    assert_eq!(report["applied_once"], 1000, "{report}");
}

#[test]
fn killed_at_each_cdc_crash_point_it_ships_every_event_at_least_once() {
    for point in ["cdc.after_receive", "cdc.after_append", "cdc.after_sync"] {
        let Some((dir, _)) = cdc_dir("cdc-crash", "keep") else {
            return;
        };
        ok(&["place", "--dir", &dir, "--count", "120", "--seed", "3"]);
        // Small batches: the 2nd batch dies, after the 1st was confirmed.
        let killed = Command::new(BIN)
            .args([
                "relay",
                "--dir",
                &dir,
                "--cdc",
                "--until-empty",
                "--batch",
                "60",
            ])
            .env("OUTBOX_CRASH", format!("{point}@2"))
            .output()
            .unwrap();
        assert_eq!(
            killed.status.signal(),
            Some(libc::SIGKILL),
            "{point}: not killed"
        );
        let before = log_records(&dir).len();
        let out = relay_cdc(&dir, &["--batch", "60"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let records = log_records(&dir);
        let n = copies(&records);
        assert_eq!(n.len(), 120, "{point}: every event shipped");
        let twice = n.values().filter(|c| **c > 1).count();
        match point {
            "cdc.after_receive" => assert_eq!(twice, 0, "nothing was appended before the kill"),
            // A process kill keeps appended bytes (page cache): the re-decoded batch is a copy.
            _ => assert!(
                twice > 0,
                "{point}: the unconfirmed batch must come again ({before})"
            ),
        }
        let report = assert_verified(&dir);
        assert_eq!(report["applied_once"], 120, "{point}: {report}");
    }
}

/// A relay child with its stderr in a file we can watch.
struct Relay {
    child: Child,
    stderr: std::path::PathBuf,
}

impl Relay {
    fn start(dir: &str, id: &str, logs: &Path) -> Relay {
        let stderr = logs.join(format!("{id}.stderr"));
        let child = Command::new(BIN)
            .args([
                "relay",
                "--dir",
                dir,
                "--cdc",
                "--id",
                id,
                "--poll-ms",
                "60000",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Relay { child, stderr }
    }

    fn said(&self, what: &str) -> bool {
        std::fs::read_to_string(&self.stderr).is_ok_and(|s| s.contains(what))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_relay_on_the_slot_waits_as_standby_and_takes_over_when_the_first_dies() {
    let Some((dir, _)) = cdc_dir("cdc-standby", "keep") else {
        return;
    };
    let logs = temp_dir("cdc-standby-logs");
    let mut a = Relay::start(&dir, "a", &logs);
    wait_for("a streaming", || a.said("streaming slot"));
    let b = Relay::start(&dir, "b", &logs);
    wait_for("b standing by", || b.said("standby"));
    // --poll-ms 60000: only the commit's NOTIFY can wake a relay in time.
    ok(&["place", "--dir", &dir, "--count", "40", "--seed", "1"]);
    wait_for("40 records", || log_records(&dir).len() >= 40);
    std::thread::sleep(Duration::from_millis(300)); // room for a parallel streamer to show up
    let records = log_records(&dir);
    assert!(
        records.iter().all(|(_, r)| r == "a"),
        "only a streams: {records:?}"
    );
    assert_eq!(records.len(), 40, "no copies while undisturbed");
    assert!(
        !b.said("streaming slot"),
        "b streamed while a held the slot"
    );

    a.child.kill().unwrap(); // SIGKILL: its session closes, the lock is free
    a.child.wait().unwrap();
    wait_for("b taking over", || b.said("streaming slot"));
    ok(&["place", "--dir", &dir, "--count", "40", "--seed", "2"]);
    wait_for("80 events", || copies(&log_records(&dir)).len() >= 80);
    let records = log_records(&dir);
    let by_b = records.iter().filter(|(_, r)| r == "b").count();
    assert!(by_b >= 40, "b ships after the takeover ({by_b})");
    drop(b);
    assert_verified(&dir);
}

#[test]
fn a_rolled_back_outbox_row_is_never_shipped() {
    let Some((dir, url)) = cdc_dir("cdc-rollback", "keep") else {
        return;
    };
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let mut tx = client.transaction().unwrap();
    tx.execute(
        "INSERT INTO outbox (event_id, aggregate_id, aggregate_seq, event_type, payload, created_at_us)
         VALUES ('rolled-back', '999999', 1, 'OrderPlaced', '{}', 0)",
        &[],
    )
    .unwrap();
    tx.rollback().unwrap();
    ok(&["place", "--dir", &dir, "--count", "3", "--seed", "9"]);
    let out = relay_cdc(&dir, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = log_records(&dir);
    assert_eq!(
        records.len(),
        3,
        "the three committed orders only: {records:?}"
    );
    assert!(records.iter().all(|(id, _)| id != "rolled-back"));
    assert_verified(&dir);
}

#[test]
fn insert_and_delete_outbox_rows_live_only_in_the_wal_and_are_shipped() {
    let Some((dir, url)) = cdc_dir("cdc-delete", "delete") else {
        return;
    };
    ok(&["place", "--dir", &dir, "--count", "100", "--seed", "5"]);
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let orders: i64 = client
        .query_one("SELECT count(*) FROM orders", &[])
        .unwrap()
        .get(0);
    let rows: i64 = client
        .query_one("SELECT count(*) FROM outbox", &[])
        .unwrap()
        .get(0);
    assert_eq!((orders, rows), (100, 0), "orders committed, outbox empty");
    let out = relay_cdc(&dir, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(copies(&log_records(&dir)).len(), 100);
    assert_verified(&dir);
}

#[test]
fn relay_cdc_without_a_slot_is_refused_with_the_way_to_make_one() {
    let Some(url) = fresh_database("cdc-noslot") else {
        return;
    };
    let dir = temp_dir("cdc-noslot").join("data");
    let dir = dir.to_str().unwrap();
    ok(&["init", "--dir", dir, "--postgres", &url]);
    let out = relay_cdc(dir, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("init --postgres URL --cdc"), "{err}");
    let sqlite = temp_dir("cdc-sqlite").join("data");
    let out = run(&["init", "--dir", sqlite.to_str().unwrap(), "--cdc", "keep"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cdc needs --postgres"));
}

#[test]
fn crash_run_with_cdc_relays_loses_nothing_through_the_cdc_crash_points() {
    let Some(url) = fresh_database("cdc-crash-run") else {
        return;
    };
    let dir = temp_dir("cdc-crash-run").join("data");
    let dir = dir.to_str().unwrap();
    let out = run(&[
        "crash-run",
        "--dir",
        dir,
        "--postgres",
        &url,
        "--cdc",
        "--relays",
        "2",
        "--orders",
        "50",
        "--crashes",
        "6",
        "--seed",
        "5",
        "--json",
    ]);
    let outcome = crash_run_json(&out);
    assert!(out.status.success(), "verdict: {}", outcome["report"]);
    let fired = fired_points(&outcome);
    assert!(
        fired.iter().any(|p| p.starts_with("cdc.")),
        "no CDC relay crash fired: {fired:?}"
    );
    assert!(
        !fired.iter().any(|p| p.starts_with("relay.")),
        "a claim-relay point in a CDC run: {fired:?}"
    );
    assert_eq!(outcome["report"]["lost_count"], 0);
    assert_eq!(outcome["report"]["applied_twice"], 0);
}
