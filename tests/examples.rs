//! The headline: run the two examples as a user would and hold them to what they print.
//! `cargo test` builds the examples next to the binary, in target/<profile>/examples/.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    let bin = PathBuf::from(common::BIN);
    let path = bin.parent().unwrap().join("examples").join(name);
    assert!(
        path.exists(),
        "{} not built (cargo test builds examples)",
        path.display()
    );
    path
}

/// Run an example with its own TMPDIR so parallel tests never share a data directory.
fn run_example(name: &str, seed: &str) -> (bool, String) {
    let tmp = common::temp_dir(&format!("example-{name}"));
    let out = Command::new(example(name))
        .args(["--seed", seed])
        .env("TMPDIR", &tmp)
        .output()
        .expect("running example");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.stderr.is_empty() || out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), stdout)
}

/// The number after `label` in a line like `label: 6 events LOST` or a table row.
fn row<'a>(text: &'a str, label: &str) -> Vec<&'a str> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no row {label:?} in:\n{text}"));
    line.split('|').skip(1).map(str::trim).collect()
}

#[test]
fn naive_example_loses_events_and_publishes_ghosts() {
    let (ok, out) = run_example("naive", "42");
    assert!(ok, "{out}");
    assert!(out.contains("seed 42"));
    let summary = out
        .lines()
        .find(|l| l.starts_with("naive: "))
        .expect("closing line");
    let lost: u64 = summary.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        lost >= 1,
        "naive commit-first must lose an event: {summary}"
    );
    assert!(
        summary.contains("GHOST") && !summary.contains(" 0 GHOST"),
        "{summary}"
    );
    assert!(
        out.contains("KILLED at naive.after_commit"),
        "the lost event's story shows the kill"
    );
    assert!(out.contains("no line says `appended`"));
    assert!(
        out.contains("KILLED at naive.after_publish"),
        "the ghost's story shows the kill"
    );
    // Each crash says what it did, in the run's numbering: every placement before a
    // naive.after_commit crash commits, so the crash at placement N lost order N.
    let crashes: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("naive.after_commit@"))
        .collect();
    assert_eq!(crashes.len() as u64, lost, "one crash line per lost order");
    for line in crashes {
        let n = line
            .split("naive.after_commit@")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap();
        assert!(line.contains(&format!("→ order {n} LOST")), "{line}");
    }
    assert!(out.contains("→ GHOST: event for order"));
    timeline_printed(&out, 2);
}

/// The example printed `n` timeline paths and each file is there.
fn timeline_printed(out: &str, n: usize) {
    let paths: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("as a picture"))
        .filter_map(|l| l.rsplit(' ').next())
        .collect();
    assert_eq!(paths.len(), n, "{out}");
    for path in paths {
        let page = std::fs::read_to_string(path).expect("timeline written where printed");
        assert!(page.contains("<svg") && page.contains("<g class=\"crash\""));
    }
}

#[test]
fn outbox_example_loses_nothing_and_absorbs_redeliveries() {
    let (ok, out) = run_example("outbox", "42");
    assert!(ok, "outbox example failed:\n{out}");
    let lost = row(&out, "events LOST");
    assert_ne!(lost[0], "0", "naive lost something on the same schedule");
    assert_eq!(lost[2], "0", "outbox lost nothing");
    let ghosts = row(&out, "GHOST events");
    assert_ne!(ghosts[1], "0 (0)");
    assert_eq!(ghosts[2], "0 (0)");
    assert_eq!(row(&out, "applied twice")[2], "0");
    assert_eq!(row(&out, "out of order")[2], "0");
    let copies: u64 = row(&out, "redelivered: log copies")[2].parse().unwrap();
    assert!(copies >= 1, "the relay really delivered something twice");
    assert_eq!(row(&out, "verdict"), vec!["FAILED", "FAILED", "OK"]);
    assert!(
        out.contains("delivered twice, applied once")
            || out.contains(" times, applied once: every later copy"),
        "{out}"
    );
    assert!(
        out.contains("skipped_duplicate"),
        "the story shows the inbox skipping the copy"
    );
    // The legend explains the table's rows; the determinism note says what the seed fixes.
    assert!(out.contains("skipped by inbox   log copies + consumer re-reads"));
    assert!(out.contains("The seed fixes the crash schedule"));
    assert!(out.contains("\"pass N\": the relay process's N-th pass"));
    let skipped: u64 = row(&out, "skipped by inbox")[2].parse().unwrap();
    let rereads: u64 = row(&out, "redelivered: consumer re-reads")[2]
        .parse()
        .unwrap();
    assert_eq!(skipped, copies + rereads, "the legend's sum holds");
    timeline_printed(&out, 1);
}
