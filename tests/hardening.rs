//! Inputs that cannot hurt: every absurd flag value, malformed line or wrong path gets a clear
//! error naming what is wrong (exit 2 for operating errors), and nothing is deleted or corrupted.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// Run with extra environment variables.
fn run_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("running outbox-lab")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_mistyped_crash_point_is_a_clean_error_listing_the_known_points() {
    let dir = init("mistyped-crash");
    let out = run_env(
        &["relay", "--dir", &dir, "--until-empty"],
        &[("OUTBOX_CRASH", "relay.aftersync@1")],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("OUTBOX_CRASH"), "{err}");
    assert!(err.contains("\"relay.aftersync\""), "{err}");
    assert!(
        err.contains("relay.after_sync"),
        "lists the known points: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// A drained directory: `n` orders placed, relayed and consumed.
fn drained(name: &str, n: &str) -> String {
    let dir = init(name);
    ok(&["place", "--dir", &dir, "--count", n, "--seed", "3"]);
    ok(&["relay", "--dir", &dir, "--until-empty"]);
    ok(&["consume", "--dir", &dir, "--until-idle"]);
    dir
}

fn inbox_rows(dir: &str) -> i64 {
    sqlite_count(
        &Path::new(dir).join("consumer.db"),
        "SELECT count(*) FROM inbox",
    )
}

#[test]
fn keep_forever_inbox_retention_is_refused_and_deletes_nothing() {
    let dir = drained("sweep-forever", "5");
    assert_eq!(inbox_rows(&dir), 5);
    let out = run(&[
        "sweep-inbox",
        "--dir",
        &dir,
        "--inbox-retention",
        "200000000d",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("too long a duration"), "{err}");
    assert_eq!(inbox_rows(&dir), 5, "the inbox is intact");
    // The longest accepted window keeps everything too: the cutoff cannot wrap around.
    let kept = ok(&["sweep-inbox", "--dir", &dir, "--inbox-retention", "36500d"]);
    assert!(kept.contains("\"deleted_rows\":0"), "{kept}");
    assert_eq!(inbox_rows(&dir), 5);
}

#[test]
fn an_overflowing_horizon_cannot_pass_the_retention_check() {
    let dir = drained("sweep-horizon", "3");
    let out = run(&[
        "sweep-inbox",
        "--dir",
        &dir,
        "--inbox-retention",
        "1ms",
        "--relay-lease",
        "1ms",
        "--relay-retry",
        "0ms",
        "--tolerated-downtime",
        "18446744073709551615ms",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("too long a duration"),
        "{}",
        stderr(&out)
    );
    assert_eq!(inbox_rows(&dir), 3);
}

#[test]
fn an_absurd_outbox_retention_is_refused() {
    let dir = drained("cleanup-absurd", "3");
    let out = run(&[
        "cleanup",
        "--dir",
        &dir,
        "--retention-ms",
        "18446744073709551615",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("100 years"), "{}", stderr(&out));
    let rows = sqlite_count(
        &Path::new(&dir).join("orders.db"),
        "SELECT count(*) FROM outbox",
    );
    assert_eq!(rows, 3, "no published row was deleted");
}

#[test]
fn consumer_group_and_sweep_batch_flags_get_clean_errors() {
    let dir = init("consume-flags");
    for args in [
        vec!["--group", "../x"],
        vec!["--group", ""],
        vec!["--inbox-retention", "1d", "--sweep-batch-rows", "0"],
    ] {
        let mut all = vec!["consume", "--dir", &dir, "--until-idle"];
        all.extend(args.iter().copied());
        let out = run(&all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            err.contains("--group") || err.contains("--sweep-batch-rows"),
            "{err}"
        );
    }
    let out = run(&["verify", "--dir", &dir, "--group", "a/b"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_non_utf8_line_is_an_error_for_that_line_only() {
    use std::io::Write;
    let dir = init("place-non-utf8");
    let mut input = br#"{"request_id":"a","customer":"ada","amount_cents":500}"#.to_vec();
    input.extend_from_slice(b"\n{\"request_id\":\"\xff\xfe\"}\n");
    input.extend_from_slice(br#"{"request_id":"b","customer":"bob","amount_cents":700}"#);
    input.push(b'\n');
    let mut child = Command::new(BIN)
        .args(["place", "--dir", &dir])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let replies: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert_eq!(replies[0]["status"], "placed");
    assert_eq!(replies[1]["line"], 2);
    assert!(replies[1]["error"].as_str().unwrap().contains("UTF-8"));
    assert_eq!(
        replies[2]["status"], "placed",
        "the line after it is still placed"
    );
    let orders = sqlite_count(
        &Path::new(&dir).join("orders.db"),
        "SELECT count(*) FROM orders",
    );
    assert_eq!(orders, 2);
}

#[test]
fn long_lines_are_refused_and_echoed_input_is_cut_short() {
    let dir = init("place-long");
    let huge = format!(
        r#"{{"request_id":"x","customer":"{}","amount_cents":500}}"#,
        "c".repeat(1 << 20)
    );
    let long_id = format!(
        r#"{{"request_id":"{}","customer":"ada","amount_cents":500}}"#,
        "r".repeat(4000)
    );
    let good = r#"{"request_id":"ok","customer":"ada","amount_cents":500}"#;
    let out = run_with_stdin(
        &["place", "--dir", &dir],
        &format!("{huge}\n{long_id}\n{good}\n"),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let replies: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replies.len(), 3, "{text}");
    assert!(
        replies[0]["error"]
            .as_str()
            .unwrap()
            .contains("longer than the limit")
    );
    assert!(
        replies[1]["error"]
            .as_str()
            .unwrap()
            .contains("request_id is longer")
    );
    let echoed = replies[1]["request_id"].as_str().unwrap();
    assert!(
        echoed.chars().count() <= 129,
        "echo cut short: {}",
        echoed.len()
    );
    assert_eq!(replies[2]["status"], "placed");
    assert!(
        text.len() < 2_000,
        "replies stay small: {} bytes",
        text.len()
    );
}

#[test]
fn crash_run_refuses_a_directory_that_is_not_a_lab_run() {
    let dir = temp_dir("crash-run-foreign");
    std::fs::write(dir.join("notes.txt"), "precious").unwrap();
    let d = dir.to_str().unwrap();
    let out = run(&["crash-run", "--dir", d, "--orders", "3", "--crashes", "0"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not a lab run directory") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "precious"
    );
    // With --force it runs; afterwards the directory is marked, and a rerun needs no force.
    let forced = run(&[
        "crash-run",
        "--dir",
        d,
        "--orders",
        "3",
        "--crashes",
        "0",
        "--force",
    ]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(!dir.join("notes.txt").exists());
    let again = run(&["crash-run", "--dir", d, "--orders", "3", "--crashes", "0"]);
    assert!(again.status.success(), "{}", stderr(&again));
}

#[test]
fn a_dir_that_is_a_regular_file_is_named_as_such() {
    let file = temp_dir("dir-is-file").join("plain");
    std::fs::write(&file, "x").unwrap();
    let f = file.to_str().unwrap();
    for args in [vec!["verify", "--dir", f], vec!["init", "--dir", f]] {
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("is a file, not a directory"),
            "{args:?}: {err}"
        );
    }
    let out = run(&["crash-run", "--dir", f, "--orders", "3"]);
    assert!(
        stderr(&out).contains("is a file, not a directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn absurd_lab_run_sizes_are_refused_before_anything_is_touched() {
    let root = temp_dir("lab-sizes");
    let huge = "18446744073709551615";
    for args in [
        vec!["crash-run", "--orders", huge],
        vec!["crash-run", "--relays", huge],
        vec!["crash-run", "--batch", huge],
        vec!["crash-run", "--lease-ms", "0"],
        vec!["replicas", "--orders", huge],
        vec!["replicas", "--relays", "100000"],
        vec!["power-cuts", "--orders", huge],
    ] {
        let dir = root.join(args.join("-").replace("--", ""));
        let mut all = args.clone();
        all.extend(["--dir", dir.to_str().unwrap()]);
        let out = run(&all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.contains(args[1]), "{args:?} names its flag: {err}");
        assert!(!dir.exists(), "{args:?} created {}", dir.display());
    }
}

#[test]
fn an_absurd_generated_count_is_refused_and_places_nothing() {
    let dir = init("place-count");
    for args in [
        vec!["--count", "18446744073709551615"],
        vec!["--count", "0"],
        vec!["--count", "5", "--first", "18446744073709551614"],
    ] {
        let mut all = vec!["place", "--dir", &dir];
        all.extend(args.iter().copied());
        let out = run(&all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.contains("--count"), "{args:?}: {err}");
    }
    let orders = sqlite_count(
        &Path::new(&dir).join("orders.db"),
        "SELECT count(*) FROM orders",
    );
    assert_eq!(orders, 0, "nothing was placed");
}
