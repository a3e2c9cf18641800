//! The doorbell: a relay told to poll only once a minute (`--poll-ms 60000`) still ships an
//! order moments after it commits, because the commit's write to `orders.db-wal` wakes it; a
//! consumer polling once a minute likewise applies it, woken by the relay's append.
//!
//! Bounds here are generous deadlines for a functional check, never timings: on a loaded
//! machine "within 20 s" proves the wake-up happened (the fallback poll would take 60 s).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, init, ok, sqlite_count};

/// Generous: a woken relay ships in milliseconds; only a missed wake-up waits 60 s.
const DEADLINE: Duration = Duration::from_secs(20);

/// A long-running child, stopped with SIGTERM (by its pid) when the test ends, even on panic.
struct Running(Child);

impl Running {
    fn start(args: &[&str]) -> Running {
        let child = Command::new(BIN)
            .args(args)
            .env("OUTBOX_TRACE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning outbox-lab");
        Running(child)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// Poll `count_sql` on `db` until it reaches `want` or the deadline passes; returns the last.
fn wait_for_count(db: &std::path::Path, count_sql: &str, want: i64) -> i64 {
    let started = Instant::now();
    let mut seen = sqlite_count(db, count_sql);
    while seen < want && started.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(50));
        seen = sqlite_count(db, count_sql);
    }
    seen
}

/// The processes start and settle on their (one-minute) idle wait before the order exists.
fn settle() {
    std::thread::sleep(Duration::from_millis(500));
}

#[test]
fn relay_woken_by_the_wal_ships_an_order_long_before_its_poll() {
    let dir = init("wake-relay");
    let _relay = Running::start(&[
        "relay",
        "--dir",
        &dir,
        "--wake",
        "wal",
        "--poll-ms",
        "60000",
    ]);
    settle();
    ok(&["place", "--dir", &dir, "--count", "1", "--seed", "7"]);
    let orders_db = std::path::Path::new(&dir).join("orders.db");
    let published = wait_for_count(
        &orders_db,
        "SELECT count(*) FROM outbox WHERE published_at_us IS NOT NULL",
        1,
    );
    assert_eq!(
        published, 1,
        "a relay polling every 60 s with the WAL doorbell did not ship the order within {DEADLINE:?}"
    );
}

#[test]
fn consumer_woken_by_the_log_applies_an_order_long_before_its_poll() {
    let dir = init("wake-consumer");
    let _relay = Running::start(&[
        "relay",
        "--dir",
        &dir,
        "--wake",
        "wal",
        "--poll-ms",
        "60000",
    ]);
    let _consumer = Running::start(&[
        "consume",
        "--dir",
        &dir,
        "--wake",
        "log",
        "--poll-ms",
        "60000",
    ]);
    settle();
    ok(&["place", "--dir", &dir, "--count", "3", "--seed", "8"]);
    let consumer_db = std::path::Path::new(&dir).join("consumer.db");
    let applied = wait_for_count(&consumer_db, "SELECT count(*) FROM effects", 3);
    assert_eq!(
        applied, 3,
        "relay and consumer on their doorbells (60 s fallback polls) did not apply 3 orders within {DEADLINE:?}"
    );
    let report = common::verify_json(&dir);
    assert_eq!(
        report["lost_count"], 0,
        "verify after the doorbell run: {report}"
    );
    assert_eq!(
        report["applied_twice"], 0,
        "verify after the doorbell run: {report}"
    );
}

#[test]
fn a_doorbell_relay_still_drains_and_exits_with_until_empty() {
    let dir = init("wake-until-empty");
    ok(&["place", "--dir", &dir, "--count", "250", "--seed", "9"]);
    ok(&[
        "relay",
        "--dir",
        &dir,
        "--wake",
        "wal",
        "--batch",
        "100",
        "--until-empty",
    ]);
    let orders_db = std::path::Path::new(&dir).join("orders.db");
    let unpublished = sqlite_count(
        &orders_db,
        "SELECT count(*) FROM outbox WHERE published_at_us IS NULL",
    );
    assert_eq!(unpublished, 0, "the doorbell changed what a pass ships");
}

#[test]
fn poll_ms_over_an_hour_is_refused() {
    let dir = init("wake-bound");
    let out = common::run(&[
        "relay",
        "--dir",
        &dir,
        "--wake",
        "wal",
        "--poll-ms",
        "3600001",
    ]);
    assert!(!out.status.success(), "an unbounded wait was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--poll-ms"),
        "the error names the option: {stderr}"
    );
}
