//! Every command that prints ends quietly (status 141, nothing on stderr, no panic) when its
//! reader has left: `outbox-lab verify … | head -1`, `parked | head`, `lag --watch | head`,
//! `bench … | head`.
//! stdout is a pipe whose read end is closed before the command starts, so its first write
//! fails with EPIPE, as a write past `head`'s exit does.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run `outbox-lab args…` with stdout a pipe nobody reads; its exit code and stderr.
fn with_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning outbox-lab");
    // `lag --watch` would run for ever if the closed pipe went unnoticed: bound the wait.
    let started = Instant::now();
    while child.try_wait().expect("waiting").is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("outbox-lab {args:?} kept running with its stdout closed");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("its output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_printing_command_exits_quietly_on_a_closed_stdout() {
    let dir = init("closed-pipe");
    ok(&["place", "--dir", &dir, "--count", "5", "--seed", "4"]);
    ok(&["relay", "--dir", &dir, "--until-empty"]);
    ok(&["consume", "--dir", &dir, "--until-idle"]);
    let fresh = temp_dir("closed-pipe-init");
    let fresh = fresh.to_str().unwrap();
    let scratch = temp_dir("closed-pipe-bench");
    let scratch = scratch.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["init", "--dir", fresh],
        vec!["verify", "--dir", &dir],
        vec!["verify", "--dir", &dir, "--json"],
        vec!["crash-points"],
        vec!["parked", "--dir", &dir],
        vec!["lag", "--dir", &dir],
        vec!["lag", "--dir", &dir, "--watch", "--every-ms", "10"],
        vec![
            "lag",
            "--dir",
            &dir,
            "--json",
            "--watch",
            "--every-ms",
            "10",
        ],
        vec!["cleanup", "--dir", &dir, "--retention-ms", "3600000"],
        vec!["pay", "--dir", &dir, "--order-id", "1"],
        vec![
            "bench",
            "poll",
            "--dir",
            scratch,
            "--max-rows",
            "1000",
            "--claims",
            "3",
            "--segment-rows",
            "0",
            "--allow-debug",
        ],
    ];
    for args in &commands {
        let (code, stderr) = with_closed_stdout(args);
        assert_eq!(
            code,
            Some(141),
            "outbox-lab {args:?}: 128 + SIGPIPE expected; stderr: {stderr}"
        );
        // Benchmarks log their steps on stderr as they go; nothing else may print there.
        let complaints: Vec<&str> = stderr
            .lines()
            .filter(|l| !(args[0] == "bench" && l.starts_with("  [")))
            .collect();
        assert!(
            complaints.is_empty(),
            "outbox-lab {args:?}: nothing on stderr but progress: {stderr}"
        );
    }
}
