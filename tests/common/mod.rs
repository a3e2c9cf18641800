//! Helpers shared by the integration tests: a fresh data directory per test, and running the
//! real binary the way a user (or an outside checker) would.
#![allow(dead_code)]

pub mod pg;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_outbox-lab");

/// A fresh, empty directory for one test: `$TMPDIR/outbox-lab-tests/<name>-<pid>-<n>`.
pub fn temp_dir(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join("outbox-lab-tests").join(format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating test dir");
    dir
}

/// Run `outbox-lab args…`; returns the output whatever the exit status.
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("running outbox-lab")
}

/// Run and insist on success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "outbox-lab {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Run with `stdin` piped in.
pub fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning outbox-lab");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .expect("writing stdin");
    child.wait_with_output().expect("waiting for outbox-lab")
}

/// `init` a fresh data directory and return it (as a string, for argument lists).
pub fn init(name: &str) -> String {
    let dir = temp_dir(name).join("data");
    let dir = dir.to_str().unwrap().to_string();
    ok(&["init", "--dir", &dir]);
    dir
}

/// The checker's JSON report.
pub fn verify_json(dir: &str) -> serde_json::Value {
    let out = run(&["verify", "--dir", dir, "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json did not print JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

pub fn sqlite_count(db: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("opening db");
    conn.query_row(sql, [], |r| r.get(0)).expect("count query")
}

/// The JSON a `crash-run --json` printed (panics with its stderr if there is none).
pub fn crash_run_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "crash-run printed no JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The crash points that fired in a `crash-run --json` outcome, in order.
pub fn fired_points(outcome: &serde_json::Value) -> Vec<&str> {
    outcome["fired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["point"].as_str().unwrap())
        .collect()
}

/// A `crash-run --json` with one scheduled crash: that crash and nothing else fired, and the
/// exit status follows the checker's verdict. Returns the outcome for further assertions.
pub fn one_crash_outcome(out: &Output, crash: &str) -> serde_json::Value {
    let outcome = crash_run_json(out);
    assert_eq!(
        fired_points(&outcome),
        vec![crash],
        "the scheduled crash really fired, and nothing else"
    );
    let r = &outcome["report"];
    let ok = r["lost_count"] == 0 && r["ghost_count"] == 0 && r["applied_twice"] == 0;
    assert_eq!(out.status.success(), ok, "exit status follows the verdict");
    outcome
}

/// After a run that delivered some event twice: the inbox skipped a copy, each of the
/// `applied_once` events took effect exactly once, and the points balance holds.
pub fn assert_copies_absorbed(r: &serde_json::Value, applied_once: u64) {
    assert!(
        r["consumer_skipped_duplicates"].as_u64().unwrap() >= 1,
        "the inbox absorbed it: {r}"
    );
    assert_eq!(r["applied_once"], applied_once, "{r}");
    assert_eq!(r["applied_twice"], 0, "{r}");
    assert_eq!(r["points_actual"], r["points_expected"], "{r}");
}
