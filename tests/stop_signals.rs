//! A stopped process holding a lock must not make the processes waiting behind it deaf to
//! SIGTERM: every wait on a lock checks the process's stop flag.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A process frozen while publishing a durable end (here: the test holds that file's lock)
/// must not make a relay waiting behind it deaf to SIGTERM for the whole lock wait (10 s).
#[test]
fn a_relay_waiting_to_publish_its_durable_end_honours_sigterm() {
    let dir = temp_dir("durable-lock-term").join("data");
    let dir = dir.to_str().unwrap().to_string();
    ok(&["init", "--dir", &dir, "--partitions", "1"]);
    ok(&["place", "--dir", &dir, "--count", "3", "--seed", "5"]);
    let broker = std::path::Path::new(&dir).join("broker");
    let durable = std::fs::File::open(broker.join("orders.p0.durable")).unwrap();
    durable
        .lock()
        .expect("the test holds the durable end's lock");
    let mut relay = Command::new(BIN)
        // A short lease: the rows it leaves unmarked are free again a second later.
        .args([
            "relay",
            "--dir",
            &dir,
            "--until-empty",
            "--lease-ms",
            "1000",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Appended (the log's own lock is free) and now waiting to publish.
    let log = broker.join("orders.p0.log");
    let started = Instant::now();
    while std::fs::metadata(&log).unwrap().len() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never appended"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(relay.try_wait().unwrap().is_none(), "blocked on the lock");
    // SAFETY: kill(2) on the pid of the child this test spawned and has not reaped.
    unsafe { libc::kill(relay.id() as libc::pid_t, libc::SIGTERM) };
    let termed = Instant::now();
    let out = relay.wait_with_output().unwrap();
    let waited = termed.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "stopped {waited:?} after SIGTERM: the 10 s lock wait was not cut short"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("orders.p0.durable") && stderr.contains("asked to stop"),
        "says which lock it gave up on: {stderr}"
    );
    durable.unlock().unwrap();
    // Nothing lost: the rows were never marked, and a relay drains them.
    ok(&["relay", "--dir", &dir, "--until-empty"]);
    ok(&["consume", "--dir", &dir, "--until-idle"]);
    ok(&["verify", "--dir", &dir]);
}
