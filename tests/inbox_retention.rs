//! The inbox's dedupe window, provoked: duplicates inside it, a very late duplicate after the
//! sweep (applied again without the seq guard, dropped with it), the retention contract, and
//! the sweep's bounds. Time travel is `OUTBOX_CLOCK_OFFSET_US` on the real binary's process:
//! nothing sleeps through hours. Each test has its own data directory.

mod common;

use std::path::Path;
use std::process::Output;

use common::{init, ok, run, sqlite_count, temp_dir, verify_json};
use outbox_lab::broker;
use outbox_lab::datadir::DataDir;
use outbox_lab::event::Event;
use outbox_lab::lab::inbox_demo;

const HOUR_US: i64 = 3_600 * 1_000_000;

/// Run the binary with its clock `hours` ahead.
fn at_hours(hours: i64, args: &[&str]) -> Output {
    std::process::Command::new(common::BIN)
        .args(args)
        .env("OUTBOX_CLOCK_OFFSET_US", (hours * HOUR_US).to_string())
        .output()
        .expect("running outbox-lab")
}

fn ok_at_hours(hours: i64, args: &[&str]) -> Output {
    let out = at_hours(hours, args);
    assert!(
        out.status.success(),
        "outbox-lab {args:?} at +{hours}h failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The consumer's totals: the JSON line it prints on stderr when it exits.
fn consume_at_hours(hours: i64, dir: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "consume",
        "--dir",
        dir,
        "--until-idle",
        "--inbox-retention",
        "24h",
    ];
    args.extend_from_slice(extra);
    let out = ok_at_hours(hours, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("consume totals not JSON ({e}): {stderr}"))
}

fn sweep_at_hours(hours: i64, dir: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["sweep-inbox", "--dir", dir, "--inbox-retention", "24h"];
    args.extend_from_slice(extra);
    let out = ok_at_hours(hours, &args);
    serde_json::from_slice(&out.stdout).expect("sweep-inbox prints JSON")
}

/// `count` orders placed and relayed (not yet consumed).
fn pipeline_with_orders(name: &str, count: u32) -> String {
    let dir = init(name);
    ok(&["place", "--dir", &dir, "--count", &count.to_string()]);
    ok(&["relay", "--dir", &dir, "--until-empty", "--poll-ms", "10"]);
    dir
}

/// What a relay that lost its lease does: append its copy of order 1's first record again.
fn zombie_reappends_order_1(dir: &str) {
    let data = DataDir::open(Path::new(dir)).expect("data dir");
    let partition = broker::partition_of("1", data.partitions);
    let path = broker::log_path(&data.broker_dir(), partition);
    let original: Event = broker::scan(&path)
        .expect("scanning the log")
        .records
        .iter()
        .map(|r| serde_json::from_slice::<Event>(&r.json).expect("an event"))
        .find(|e| e.aggregate_id == "1")
        .expect("order 1 is in the log");
    inbox_demo::zombie_append(&data, &original).expect("appending the zombie's copy");
}

fn inbox_rows(dir: &str) -> i64 {
    sqlite_count(
        &Path::new(dir).join("consumer.db"),
        "SELECT count(*) FROM inbox",
    )
}

#[test]
fn duplicate_inside_window_is_skipped_by_inbox() {
    let dir = pipeline_with_orders("inside-window", 3);
    assert_eq!(consume_at_hours(0, &dir, &[])["applied"], 3);
    zombie_reappends_order_1(&dir);
    let totals = consume_at_hours(1, &dir, &[]);
    assert_eq!(totals["skipped_duplicates"], 1, "{totals}");
    assert_eq!(totals["applied"], 0, "{totals}");
    assert_eq!(
        totals["too_old_for_inbox"], 0,
        "an hour-old event is inside a 24h window"
    );
    let report = verify_json(&dir);
    assert_eq!(report["applied_twice"], 0, "{report}");
    assert_eq!(report["consumer_skipped_duplicates"], 1, "{report}");
}

#[test]
fn late_duplicate_after_sweep_is_applied_again_without_guard() {
    let dir = pipeline_with_orders("late-no-guard", 3);
    consume_at_hours(0, &dir, &[]);
    let swept = sweep_at_hours(25, &dir, &[]);
    assert_eq!(swept["deleted_rows"], 3, "{swept}");
    assert_eq!(inbox_rows(&dir), 0);
    zombie_reappends_order_1(&dir);
    let totals = consume_at_hours(25, &dir, &["--seq-guard", "off"]);
    assert_eq!(
        totals["applied"], 1,
        "the swept inbox let the copy through: {totals}"
    );
    assert_eq!(totals["too_old_for_inbox"], 1, "{totals}");
    let report = verify_json(&dir);
    assert_eq!(report["applied_twice"], 1, "{report}");
    assert_ne!(
        report["points_actual"], report["points_expected"],
        "{report}"
    );
    assert_eq!(report["consumer_too_old_for_inbox"], 1, "{report}");
    assert_eq!(report["inbox_swept"], 3, "{report}");
    assert_eq!(run(&["verify", "--dir", &dir]).status.code(), Some(1));
}

#[test]
fn seq_guard_drops_late_duplicate_after_sweep() {
    let dir = pipeline_with_orders("late-guard", 3);
    // The guard's state is kept even while it is off: switching it on later is safe at once.
    consume_at_hours(0, &dir, &["--seq-guard", "off"]);
    sweep_at_hours(25, &dir, &[]);
    zombie_reappends_order_1(&dir);
    let totals = consume_at_hours(25, &dir, &["--seq-guard", "on"]);
    assert_eq!(totals["applied"], 0, "{totals}");
    assert_eq!(totals["dropped_by_seq_guard"], 1, "{totals}");
    assert_eq!(totals["too_old_for_inbox"], 1, "{totals}");
    let report = verify_json(&dir);
    assert_eq!(report["applied_twice"], 0, "{report}");
    assert_eq!(report["consumer_dropped_by_seq_guard"], 1, "{report}");
    assert_eq!(
        report["points_actual"], report["points_expected"],
        "{report}"
    );
    ok(&["verify", "--dir", &dir]);
}

#[test]
fn consumer_refuses_retention_shorter_than_horizon() {
    let dir = pipeline_with_orders("refuses", 2);
    let out = run(&[
        "consume",
        "--dir",
        &dir,
        "--until-idle",
        "--inbox-retention",
        "1h",
        "--tolerated-downtime",
        "12h",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an operating error, refused at start"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("inbox retention 1h is shorter than the redelivery horizon 12h1m5s"),
        "the error says which numbers disagree: {stderr}"
    );
    let effects = sqlite_count(
        &Path::new(&dir).join("consumer.db"),
        "SELECT count(*) FROM effects",
    );
    assert_eq!(effects, 0, "a refused consumer applies nothing");
    // Tolerating less downtime makes the same retention acceptable.
    ok(&[
        "consume",
        "--dir",
        &dir,
        "--until-idle",
        "--inbox-retention",
        "1h",
        "--tolerated-downtime",
        "30m",
    ]);
}

#[test]
fn sweep_refuses_retention_shorter_than_horizon() {
    let dir = init("sweep-refuses");
    let out = run(&["sweep-inbox", "--dir", &dir, "--inbox-retention", "10m"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shorter than the redelivery horizon"));
}

#[test]
fn first_delivery_after_long_downtime_is_flagged_too_old_for_inbox() {
    // The consumer was down 25h: every event is older than the window. They are new, and
    // applied, but flagged: had a copy been applied and swept, the inbox could not tell.
    let dir = pipeline_with_orders("too-old", 3);
    let totals = consume_at_hours(25, &dir, &[]);
    assert_eq!(totals["applied"], 3, "{totals}");
    assert_eq!(totals["too_old_for_inbox"], 3, "{totals}");
}

#[test]
fn sweep_keeps_rows_inside_the_window() {
    let dir = pipeline_with_orders("keeps-window", 4);
    consume_at_hours(0, &dir, &[]);
    assert_eq!(sweep_at_hours(23, &dir, &[])["deleted_rows"], 0);
    assert_eq!(inbox_rows(&dir), 4);
    assert_eq!(sweep_at_hours(25, &dir, &[])["deleted_rows"], 4);
    assert_eq!(inbox_rows(&dir), 0);
}

#[test]
fn sweep_stops_at_its_batch_limit_and_the_next_sweep_resumes() {
    let dir = pipeline_with_orders("batch-limit", 10);
    consume_at_hours(0, &dir, &[]);
    let limits = ["--sweep-batch-rows", "3", "--sweep-max-batches", "2"];
    let first = sweep_at_hours(25, &dir, &limits);
    assert_eq!(first["deleted_rows"], 6, "{first}");
    assert_eq!(first["batches"], 2, "{first}");
    assert_eq!(first["more_left"], true, "{first}");
    let second = sweep_at_hours(25, &dir, &limits);
    assert_eq!(second["deleted_rows"], 4, "{second}");
    assert_eq!(second["more_left"], false, "{second}");
}

#[test]
fn consumer_sweeper_thread_empties_an_expired_inbox() {
    let dir = pipeline_with_orders("sweeper-thread", 3);
    consume_at_hours(0, &dir, &[]);
    let totals = consume_at_hours(25, &dir, &["--sweep-every", "1h"]);
    assert_eq!(totals["swept_rows"], 3, "{totals}");
    assert_eq!(inbox_rows(&dir), 0);
}

#[test]
fn example_story_shows_late_duplicate_applied_again_then_guarded() {
    // The example's text, produced by the library function the example calls.
    let root = temp_dir("example-story");
    let mut printed = Vec::new();
    let summary = inbox_demo::run(&root, &mut printed).expect("the story runs");
    let text = String::from_utf8(printed).expect("utf-8");
    let (act1, rest) = text.split_once("== act 2").expect("act 2 is printed");
    let (act2, act3) = rest.split_once("== act 3").expect("act 3 is printed");
    assert!(act1.contains("consumer SKIPPED it"), "{text}");
    assert!(act1.contains("consumer APPLIED it AGAIN"), "{text}");
    assert!(act1.contains("verdict FAILED"), "{text}");
    assert!(act2.contains("consumer DROPPED it (seq guard"), "{text}");
    assert!(act2.contains("verdict OK"), "{text}");
    assert!(
        act3.contains("refused: inbox retention 1h is shorter"),
        "{text}"
    );
    assert_eq!(summary.without_guard.applied_twice, 1);
    assert!(summary.without_guard.points_after > summary.without_guard.points_before);
    assert_eq!(summary.with_guard.late.dropped_by_seq_guard, 1);
    assert_eq!(
        summary.with_guard.points_after,
        summary.with_guard.points_before
    );
}

#[test]
fn bench_inbox_measures_rows_bytes_and_the_sweep_without_asserting_times() {
    let scratch = temp_dir("bench-inbox");
    let scratch = scratch.to_str().unwrap();
    let args = [
        "bench",
        "inbox",
        "--dir",
        scratch,
        "--rates",
        "10",
        "--windows",
        "10m,20m",
        "--allow-debug",
        "--json",
        "-",
    ];
    let out = ok(&args);
    let json_start = out.find("\n{").expect("JSON after the table");
    let json: serde_json::Value = serde_json::from_str(&out[json_start..]).expect("JSON");
    let rows = json["results"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{out}");
    // rate x (window + 1m sweep interval): the inbox just before a sweep.
    assert_eq!(rows[0]["inbox_rows"], 10 * 11 * 60, "{out}");
    assert_eq!(
        rows[0]["sweep_rows"],
        10 * 60,
        "one interval's worth aged out: {out}"
    );
    assert!(rows[1]["inbox_bytes"].as_u64().unwrap() > 0, "{out}");
    assert!(
        out.contains("inbox rows"),
        "a table is printed first: {out}"
    );
}
