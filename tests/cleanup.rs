//! Cleanup and the partitioned outbox: each test provokes one way removing old rows could go
//! wrong — an unpublished row deleted, an id handed out twice, a claim that scans the whole
//! table, an order's later event overtaking its head across segments, a zombie relay marking
//! a row whose segment is gone — and checks that it does not. No test times anything: speed
//! is `outbox-lab bench poll` / `bench cleanup`'s job.

mod common;

use std::path::Path;

use common::{init, ok, run, sqlite_count, temp_dir};
use outbox_lab::clock::Clock;
use outbox_lab::db::{self, Synchronous};
use outbox_lab::outbox::cleanup::{self, CleanupConfig};
use outbox_lab::outbox::{self, segments};
use rusqlite::Connection;

const LAYOUTS: [&str; 2] = ["single", "partitioned"];

/// `init` with a layout; partitioned with tiny segments so a handful of orders spans several.
fn init_layout(name: &str, layout: &str, segment_rows: u32) -> String {
    let dir = temp_dir(name).join("data");
    let dir = dir.to_str().unwrap().to_string();
    let rows = segment_rows.to_string();
    ok(&[
        "init",
        "--dir",
        &dir,
        "--outbox-layout",
        layout,
        "--segment-rows",
        &rows,
    ]);
    dir
}

fn orders_db(dir: &str) -> std::path::PathBuf {
    Path::new(dir).join("orders.db")
}

fn conn(dir: &str) -> Connection {
    // NORMAL: a test database; durability across power loss is not what is under test.
    db::open(&orders_db(dir), Synchronous::Normal).unwrap()
}

/// `outbox::claim_batch` in whichever layout the directory has (read first, as a relay does).
fn claim(
    c: &mut Connection,
    token: &str,
    clock: Clock,
    lease_ms: u64,
    n: usize,
) -> outbox_lab::Result<outbox::Claim> {
    let layout = outbox::Layout::of(c).unwrap();
    outbox::claim_batch(c, layout, token, clock, lease_ms, n)
}

fn count(dir: &str, sql: &str) -> i64 {
    sqlite_count(&orders_db(dir), sql)
}

/// Claim and mark `n` rows, as a relay would (without the log: not what is under test).
fn publish(dir: &str, n: usize, now_us: i64) {
    let mut c = conn(dir);
    let claim = claim(&mut c, "test", at(now_us), 60_000, n).unwrap();
    assert_eq!(claim.rows.len(), n, "claimable rows");
    assert_eq!(
        outbox::mark_published(&mut c, &claim, at(now_us + 1)).unwrap(),
        n
    );
}

/// A clock that reads (about) `now_us` now: claims and marks read their clock inside the lock.
fn at(now_us: i64) -> Clock {
    Clock::shifted(now_us - outbox_lab::clock::now_us())
}

fn cleanup_all(dir: &str, now_us: i64) -> cleanup::CleanupReport {
    let config = CleanupConfig {
        retention_ms: 0,
        batch_rows: 3,
        pause_ms: 0,
        max_lock_share_pct: 100.0, // no budget: the tests time nothing
        max_batches: 1_000,
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    cleanup::run(&mut conn(dir), &config, now_us, &stop).unwrap()
}

#[test]
fn cleanup_never_deletes_an_unpublished_row() {
    for layout in LAYOUTS {
        let dir = init_layout(&format!("unpublished-{layout}"), layout, 4);
        ok(&["place", "--dir", &dir, "--count", "20"]);
        let now_us = outbox_lab::clock::now_us();
        publish(&dir, 10, now_us);
        let report = cleanup_all(&dir, now_us + 1_000_000);
        assert!(
            report.rows_deleted > 0,
            "{layout}: cleanup removed nothing: {report:?}"
        );
        assert_eq!(
            count(
                &dir,
                "SELECT count(*) FROM outbox WHERE published_at_us IS NULL"
            ),
            10,
            "{layout}: every unpublished row survives cleanup"
        );
        let unpublished_ids = count(
            &dir,
            "SELECT group_concat(id) = '11,12,13,14,15,16,17,18,19,20' FROM (SELECT id FROM outbox WHERE published_at_us IS NULL ORDER BY id)",
        );
        assert_eq!(
            unpublished_ids, 1,
            "{layout}: the unpublished rows are ids 11..=20"
        );
    }
}

#[test]
fn cleanup_keeps_rows_younger_than_the_retention_window() {
    for layout in LAYOUTS {
        let dir = init_layout(&format!("young-{layout}"), layout, 4);
        ok(&["place", "--dir", &dir, "--count", "12"]);
        let now_us = outbox_lab::clock::now_us();
        publish(&dir, 12, now_us);
        let config = CleanupConfig {
            retention_ms: 60_000,
            batch_rows: 3,
            pause_ms: 0,
            max_lock_share_pct: 100.0, // no budget: the tests time nothing
            max_batches: 100,
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        let report = cleanup::run(&mut conn(&dir), &config, now_us + 1_000_000, &stop).unwrap();
        assert_eq!(
            report.rows_deleted, 0,
            "{layout}: rows published a second ago are kept (retention 60 s)"
        );
        assert!(
            report.finished,
            "{layout}: and cleanup says it is done: {report:?}"
        );
        assert_eq!(count(&dir, "SELECT count(*) FROM outbox"), 12);
    }
}

#[test]
fn ids_are_not_reused_after_cleanup() {
    for layout in LAYOUTS {
        let dir = init_layout(&format!("ids-{layout}"), layout, 4);
        ok(&["place", "--dir", &dir, "--count", "10"]);
        ok(&["relay", "--dir", &dir, "--until-empty"]);
        ok(&[
            "cleanup",
            "--dir",
            &dir,
            "--retention-ms",
            "0",
            "--pause-ms",
            "0",
        ]);
        ok(&["place", "--dir", &dir, "--count", "1", "--first", "100"]);
        let newest = count(&dir, "SELECT max(id) FROM outbox");
        assert_eq!(
            newest, 11,
            "{layout}: the next id after cleanup continues from 10"
        );
        assert_eq!(
            count(
                &dir,
                "SELECT count(*) FROM outbox WHERE id <= 10 AND published_at_us IS NULL"
            ),
            0,
            "{layout}: no old id came back as a new unpublished row"
        );
    }
}

#[test]
fn claim_uses_the_unpublished_index() {
    let dir = init("plan-single");
    let plan = explain(&conn(&dir), outbox::claim::CLAIM_SQL);
    // A SCAN of the partial index is the point: it holds only unpublished rows.
    assert!(
        plan.contains("\nSCAN o USING INDEX outbox_unpublished\n"),
        "claim plan: {plan}"
    );
    assert!(
        plan.contains("USING INDEX outbox_unpublished_by_aggregate"),
        "the per-order head check also reads only unpublished rows: {plan}"
    );
    for full_scan in ["\nSCAN o\n", "\nSCAN outbox\n", "\nSCAN earlier\n"] {
        assert!(
            !plan.contains(full_scan),
            "no full scan of the outbox: {plan}"
        );
    }

    let dir = init_layout("plan-partitioned", "partitioned", 4);
    ok(&["place", "--dir", &dir, "--count", "6"]);
    let sql = segments::claim_sql(1, &[0, 1]);
    let plan = explain(&conn(&dir), &sql);
    assert!(
        plan.contains("\nSCAN o USING INDEX outbox_seg_1_unpublished\n"),
        "segment claim plan: {plan}"
    );
    for seg in [0, 1] {
        let index = format!("USING INDEX outbox_seg_{seg}_unpublished_by_aggregate");
        assert!(plan.contains(&index), "head check in segment {seg}: {plan}");
    }
}

/// EXPLAIN QUERY PLAN, one line per step, with dummy parameters bound.
fn explain(c: &Connection, sql: &str) -> String {
    let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let params = rusqlite::params!["token", 0, 0, 100, 0];
    let lines: Vec<String> = stmt
        .query_map(params, |r| r.get::<_, String>(3))
        .unwrap()
        .map(|l| l.unwrap())
        .collect();
    format!("\n{}\n", lines.join("\n"))
}

#[test]
fn the_pipeline_verifies_ok_in_both_layouts() {
    for layout in LAYOUTS {
        let dir = init_layout(&format!("e2e-{layout}"), layout, 3);
        ok(&["place", "--dir", &dir, "--count", "20"]);
        ok(&["pay", "--dir", &dir, "--order-id", "3"]);
        ok(&["pay", "--dir", &dir, "--order-id", "17"]);
        ok(&["ship", "--dir", &dir, "--order-id", "3"]);
        ok(&["relay", "--dir", &dir, "--until-empty", "--batch", "4"]);
        ok(&["consume", "--dir", &dir, "--until-idle"]);
        let out = run(&["verify", "--dir", &dir]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{layout}: verify failed:\n{text}");
        assert_eq!(
            count(&dir, "SELECT count(*) FROM outbox"),
            23,
            "{layout}: one logical outbox"
        );
    }
}

#[test]
fn a_later_event_in_a_newer_segment_waits_for_its_orders_head() {
    let dir = init_layout("head-across-segments", "partitioned", 2);
    ok(&["place", "--dir", &dir, "--count", "2"]); // ids 1, 2: segment 0
    ok(&["pay", "--dir", &dir, "--order-id", "1"]); // id 3: segment 1, order 1's seq 2
    let mut c = conn(&dir);
    let now_us = outbox_lab::clock::now_us();
    let first = claim(&mut c, "a", at(now_us), 60_000, 1).unwrap();
    assert_eq!(ids(&first), [1], "order 1's head");
    let second = claim(&mut c, "b", at(now_us), 60_000, 10).unwrap();
    assert_eq!(
        ids(&second),
        [2],
        "id 3 waits: order 1's seq 1 is leased but not published"
    );
    outbox::mark_published(&mut c, &first, at(now_us + 1)).unwrap();
    let third = claim(&mut c, "c", at(now_us), 60_000, 10).unwrap();
    assert_eq!(
        ids(&third),
        [3],
        "once the head is published, seq 2 is claimable"
    );
}

fn ids(claim: &outbox::Claim) -> Vec<i64> {
    claim.rows.iter().map(|r| r.id).collect()
}

#[test]
fn a_zombie_mark_after_its_segment_was_dropped_is_fenced() {
    let dir = init_layout("zombie-dropped-segment", "partitioned", 2);
    ok(&["place", "--dir", &dir, "--count", "3"]); // segment 0: ids 1, 2; segment 1: id 3
    let mut c = conn(&dir);
    let t0_us = outbox_lab::clock::now_us();
    let zombie = claim(&mut c, "zombie", at(t0_us), 1_000, 2).unwrap();
    let later_us = t0_us + 2_000_000; // the zombie's lease has expired
    let live = claim(&mut c, "live", at(later_us), 1_000, 3).unwrap();
    assert_eq!(ids(&live), [1, 2, 3], "expired leases are claimable again");
    assert_eq!(
        outbox::mark_published(&mut c, &live, at(later_us + 1)).unwrap(),
        3
    );
    let report = cleanup_all(&dir, later_us + 1_000_000);
    assert_eq!(
        report.segments_dropped, 1,
        "segment 0 goes; segment 1 is the newest"
    );
    let marked = outbox::mark_published(&mut c, &zombie, at(t0_us + 500_000)).unwrap();
    assert_eq!(
        marked, 0,
        "the zombie marks nothing, and is not an error either"
    );
}

#[test]
fn the_relay_cleans_up_when_asked() {
    let dir = init("relay-cleanup");
    ok(&["place", "--dir", &dir, "--count", "10"]);
    ok(&[
        "relay",
        "--dir",
        &dir,
        "--until-empty",
        "--cleanup-every-ms",
        "1",
        "--retention-ms",
        "0",
    ]);
    assert_eq!(
        count(&dir, "SELECT count(*) FROM outbox"),
        0,
        "published rows were cleaned up"
    );
    let log_records: usize = (0..4)
        .map(|p| {
            let log = Path::new(&dir).join(format!("broker/orders.p{p}.log"));
            std::fs::read_to_string(log).unwrap().lines().count()
        })
        .sum();
    assert_eq!(
        log_records, 10,
        "every event reached the log before its row went"
    );
}

#[test]
fn init_refuses_to_partition_an_outbox_that_holds_rows() {
    let dir = init("partition-late");
    ok(&["place", "--dir", &dir, "--count", "1"]);
    let out = run(&["init", "--dir", &dir, "--outbox-layout", "partitioned"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a late layout change is refused"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already holds 1 rows"),
        "the error says why: {err}"
    );
    assert_eq!(
        count(&dir, "SELECT count(*) FROM outbox"),
        1,
        "and nothing changed"
    );
}

#[test]
fn init_is_idempotent_on_a_partitioned_outbox() {
    let dir = init_layout("partitioned-reinit", "partitioned", 4);
    ok(&["place", "--dir", &dir, "--count", "5"]);
    ok(&["init", "--dir", &dir]);
    ok(&[
        "init",
        "--dir",
        &dir,
        "--outbox-layout",
        "partitioned",
        "--segment-rows",
        "4",
    ]);
    let out = run(&["init", "--dir", &dir, "--outbox-layout", "single"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "no silent switch back to one table"
    );
    assert_eq!(count(&dir, "SELECT count(*) FROM outbox"), 5);
}

#[test]
fn bench_poll_and_cleanup_print_a_table_and_json() {
    let scratch = temp_dir("bench-smoke");
    let base = scratch.to_str().unwrap();
    let poll_json = scratch.join("poll.json");
    let out = ok(&[
        "bench",
        "poll",
        "--dir",
        base,
        "--max-rows",
        "1000",
        "--claims",
        "3",
        "--segment-rows",
        "500",
        "--allow-debug",
        "--json",
        poll_json.to_str().unwrap(),
    ]);
    assert!(
        out.contains("| claim p50 µs |") || out.contains("claim p50 µs"),
        "table: {out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&poll_json).unwrap()).unwrap();
    assert_eq!(json["bench"], "poll");
    assert_eq!(
        json["results"].as_array().unwrap().len(),
        2,
        "single + partitioned"
    );

    let out = ok(&[
        "bench",
        "cleanup",
        "--dir",
        base,
        "--old-rows",
        "2000",
        "--orders",
        "10",
        "--rate",
        "1000",
        "--segment-rows",
        "500",
        "--allow-debug",
        "--json",
        "-",
    ]);
    assert!(
        out.contains("batched-delete") && out.contains("drop-segments"),
        "table: {out}"
    );
    let json_start = out.find("\n{").expect("JSON after the table");
    let json: serde_json::Value = serde_json::from_str(&out[json_start..]).unwrap();
    assert_eq!(
        json["results"].as_array().unwrap().len(),
        4,
        "2 strategies × 2 phases"
    );
}
