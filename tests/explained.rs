//! Output that explains itself: the crash list says what each crash did, in the numbering
//! `--crash` takes; the HTML timeline draws exactly the run's processes and crashes; a request
//! can be followed through relay and consumer; a closed pipe ends a command quietly.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

/// One small outbox run with a crash in each role, written as HTML too. Returns (outcome JSON,
/// the HTML page, the run's data directory).
fn outbox_run_with_html(name: &str) -> (serde_json::Value, String, String) {
    let root = temp_dir(name);
    let dir = root.join("data");
    let html = root.join("run.html");
    let out = run(&[
        "crash-run",
        "--dir",
        dir.to_str().unwrap(),
        "--orders",
        "40",
        "--batch",
        "5",
        "--lease-ms",
        "200",
        "--crash",
        "order.after_commit@3",
        "--crash",
        "relay.after_sync@1",
        "--crash",
        "consumer.after_apply@5",
        "--json",
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "crash-run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).expect("outcome JSON");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(html.to_str().unwrap()),
        "the HTML path is printed"
    );
    let page = std::fs::read_to_string(&html).expect("the HTML page was written");
    (outcome, page, dir.to_str().unwrap().to_string())
}

#[test]
fn timeline_draws_one_lane_per_process_and_one_mark_per_crash() {
    let (outcome, page, _) = outbox_run_with_html("timeline");
    let processes = outcome["processes"].as_array().unwrap();
    let fired = outcome["fired"].as_array().unwrap();
    assert_eq!(fired.len(), 3, "all three crashes fired");
    assert_eq!(
        page.matches("<g class=\"lane\"").count(),
        processes.len(),
        "one lane per process the harness started"
    );
    for p in processes {
        let lane = format!("data-name=\"{}\"", p["name"].as_str().unwrap());
        assert!(page.contains(&lane), "no lane for {lane}");
    }
    assert_eq!(
        page.matches("<g class=\"crash\"").count(),
        fired.len(),
        "one crash mark per crash that fired"
    );
    for f in fired {
        let mark = format!("data-point=\"{}\"", f["point"].as_str().unwrap());
        assert!(page.contains(&mark), "no crash mark {mark}");
    }
    let dup = outcome["report"]["duplicated"][0]["event_id"]
        .as_str()
        .expect("relay.after_sync left a copy in the log");
    assert!(
        page.contains(&format!("<g class=\"highlight\" data-event=\"{dup}\"")),
        "the duplicated event is highlighted"
    );
    // Its steps: claimed twice (attempt 1 and 2), applied once, skipped by the inbox.
    assert!(page.matches("data-ev=\"claimed\"").count() >= 2);
    assert_eq!(page.matches("data-ev=\"applied\"").count(), 1);
    assert!(page.contains("data-ev=\"skipped_duplicate\""));
    assert!(page.contains("<table>") && page.contains("skipped by inbox"));
    assert!(!page.contains("<script"), "no JavaScript");
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "nothing fetched from the network"
    );
}

#[test]
fn crash_list_names_the_lost_order_in_the_numbering_crash_takes() {
    let dir = temp_dir("crash-list").join("data");
    let out = run(&[
        "crash-run",
        "--dir",
        dir.to_str().unwrap(),
        "--mode",
        "naive",
        "--orders",
        "30",
        "--crash",
        "naive.after_commit@4",
        "--crash",
        "naive.after_commit@20",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!out.status.success(), "the naive run loses events");
    // Placements before a naive.after_commit crash all commit, so placement N is order N.
    for n in [4, 20] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("naive.after_commit@{n} ")))
            .unwrap_or_else(|| panic!("no crash line @{n} (whole-run numbering):\n{text}"));
        assert!(
            line.contains(&format!("→ order {n} LOST")),
            "consequence beside the crash: {line}"
        );
    }
}

#[test]
fn trace_request_follows_the_order_through_relay_and_consumer() {
    let (outcome, _, dir) = outbox_run_with_html("trace-request");
    assert_eq!(outcome["report"]["lost_count"], 0);
    let story = ok(&["trace", "--dir", &dir, "--request", "s42-o10"]);
    for step in [
        "placed", "claimed", "appended", "synced", "marked", "applied",
    ] {
        assert!(
            story.contains(step),
            "trace --request shows `{step}`:\n{story}"
        );
    }
}

#[test]
fn a_closed_pipe_ends_place_quietly() {
    let dir = init("epipe");
    let mut child = Command::new(BIN)
        .args(["place", "--dir", &dir, "--count", "3000", "--seed", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap(); // the reader is dropped here: `| head -1`
    assert!(first.contains("\"placed\""), "{first}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "nothing on stderr for a closed pipe"
    );
    assert_eq!(out.status.code(), Some(141), "128 + SIGPIPE, as Unix tools");
}

#[test]
fn trace_request_follows_the_orders_later_events_too() {
    let dir = init("trace-lifecycle");
    let placed = run_with_stdin(
        &["place", "--dir", &dir],
        r#"{"request_id":"r1","customer":"ada","amount_cents":1250}"#,
    );
    assert!(placed.status.success());
    ok(&["pay", "--dir", &dir, "--order-id", "1"]);
    ok(&["relay", "--dir", &dir, "--until-empty"]);
    ok(&["consume", "--dir", &dir, "--until-idle"]);
    let story = ok(&["trace", "--dir", &dir, "--request", "r1"]);
    assert!(story.contains("OrderPaid (seq 2)"), "{story}");
    assert_eq!(
        story.matches(" applied ").count(),
        2,
        "OrderPlaced and OrderPaid, each applied once:\n{story}"
    );
}

#[test]
fn crash_run_refuses_an_html_path_that_is_not_a_page() {
    let root = temp_dir("html-refused");
    let precious = root.join("orders.db");
    std::fs::write(&precious, b"not yours to overwrite").unwrap();
    let dir = root.join("data");
    let out = run(&[
        "crash-run",
        "--dir",
        dir.to_str().unwrap(),
        "--html",
        precious.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--html"));
    assert_eq!(
        std::fs::read(&precious).unwrap(),
        b"not yours to overwrite",
        "the file is untouched"
    );
    assert!(!dir.exists(), "refused before the run started");
}

#[test]
fn timeline_marks_every_power_cut() {
    let root = temp_dir("timeline-power");
    let html = root.join("run.html");
    let out = run(&[
        "crash-run",
        "--dir",
        root.join("data").to_str().unwrap(),
        "--orders",
        "40",
        "--crashes",
        "0",
        "--power-cuts",
        "2",
        "--json",
        "--html",
        html.to_str().unwrap(),
    ]);
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).expect("outcome JSON");
    let cuts = outcome["power_cuts"].as_array().unwrap().len();
    assert!(cuts >= 1, "a power cut happened");
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("<g class=\"power-cut\"").count(), cuts);
}
