//! Power loss, through the real binary: a relay frozen between its append and its sync, a power
//! cut that takes (some of) what it appended, and the pipeline that must still apply every
//! committed order's event exactly once. Plus the relay frozen while holding a partition's
//! append lock, which must not stop the other partitions or a SIGTERM.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use outbox_lab::broker::{DurableEnd, encode_record, log_path, partition_of};

/// `init` with a partition count.
fn init_with(name: &str, partitions: u32) -> String {
    let dir = temp_dir(name).join("data");
    let dir = dir.to_str().unwrap().to_string();
    ok(&[
        "init",
        "--dir",
        &dir,
        "--partitions",
        &partitions.to_string(),
    ]);
    dir
}

/// Start `outbox-lab args…` frozen (SIGSTOP) the first time it passes `point`, and wait until
/// it is stopped there.
fn spawn_paused(args: &[&str], point: &str) -> Child {
    let child = Command::new(BIN)
        .args(args)
        .env("OUTBOX_PAUSE", format!("{point}@1"))
        .env("OUTBOX_TRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning a relay");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !is_stopped(child.id()) {
        assert!(Instant::now() < deadline, "never paused at {point}");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// State `T` in /proc/PID/stat: stopped by a signal.
fn is_stopped(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after_name.trim_start().starts_with('T')
}

/// The power cut's first half: the process dies where it stands (SIGKILL by pid).
fn kill_now(child: &mut Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reaping");
}

fn log_len(dir: &str, partition: u32) -> u64 {
    let path = log_path(&std::path::Path::new(dir).join("broker"), partition);
    std::fs::metadata(path).unwrap().len()
}

fn durable_end(dir: &str, partition: u32) -> u64 {
    DurableEnd::open(&std::path::Path::new(dir).join("broker"), partition)
        .unwrap()
        .read()
        .unwrap()
}

/// 5 orders shipped and synced, then 30 more appended by a relay that freezes before its
/// sync; the power goes; `power-cut --shape SHAPE` does to the un-synced tail what a cut can.
/// Then a relay and a consumer start again. Returns the checker's report.
fn tail_shape_story(shape: &str) -> serde_json::Value {
    let dir = init_with(&format!("shape-{shape}"), 1);
    ok(&["place", "--dir", &dir, "--count", "5", "--seed", "1"]);
    ok(&["relay", "--dir", &dir, "--until-empty"]);
    let synced_bytes = durable_end(&dir, 0);
    assert_eq!(synced_bytes, log_len(&dir, 0), "all synced and published");
    ok(&["place", "--dir", &dir, "--count", "30", "--seed", "2"]);
    let relay_args = [
        "relay",
        "--dir",
        &dir,
        "--lease-ms",
        "500",
        "--poll-ms",
        "20",
    ];
    let mut relay = spawn_paused(&relay_args, "relay.after_append");
    assert!(
        log_len(&dir, 0) > synced_bytes + 8192,
        "30 records un-synced: several pages"
    );
    assert_eq!(durable_end(&dir, 0), synced_bytes, "nothing published yet");
    // The consumer reads only what is durable: the first 5.
    ok(&["consume", "--dir", &dir, "--until-idle"]);
    assert_eq!(verify_json(&dir)["applied_once"], 5);

    kill_now(&mut relay);
    let cut = ok(&["power-cut", "--dir", &dir, "--shape", shape, "--seed", "7"]);
    assert!(
        cut.contains(&format!("durable end {synced_bytes} ")) && cut.contains(shape),
        "{cut}"
    );

    // The default (5 s) lease: the counts below admit no copy from a healthy pass that
    // outlasted a short lease on a loaded machine. It waits only for the dead relay's lease.
    let report = drain_and_verify(&dir, &[], 35);
    assert_eq!(report["pending"], 0, "{shape}: nothing stuck");
    assert_eq!(
        report["torn_tail_bytes"], 0,
        "{shape}: the bad tail was cut"
    );
    report
}

#[test]
fn tail_kept_whole_is_published_and_its_copies_absorbed() {
    let report = tail_shape_story("whole");
    // The 30 survived the cut unmarked: shipped again, so the log holds them twice.
    assert_eq!(report["records_in_log"], 65, "{report}");
    assert_eq!(report["redelivered"], 30, "{report}");
}

#[test]
fn tail_cut_at_a_random_byte_is_truncated_and_shipped_again() {
    let report = tail_shape_story("cut");
    let records = report["records_in_log"].as_u64().unwrap();
    assert!((35..65).contains(&records), "{report}");
}

#[test]
fn zeroed_page_in_the_tail_cuts_it_there_and_the_rest_is_shipped_again() {
    let report = tail_shape_story("zeroed");
    let records = report["records_in_log"].as_u64().unwrap();
    assert!((35..65).contains(&records), "{report}");
}

#[test]
fn garbage_tail_is_cut_at_the_durable_end() {
    let report = tail_shape_story("garbage");
    assert_eq!(
        report["records_in_log"], 35,
        "nothing of the old tail is left: {report}"
    );
}

/// The lost-after-a-cut story, exactly: A and B appended but not synced must not be
/// applied; C and D land where A and B were after the cut; nothing is skipped.
#[test]
fn consumer_never_applies_unsynced_records_so_a_power_cut_skips_nothing() {
    let dir = init_with("unsynced-ab", 1);
    ok(&["place", "--dir", &dir, "--count", "2", "--seed", "11"]); // A, B
    let relay_args = [
        "relay",
        "--dir",
        &dir,
        "--lease-ms",
        "1000",
        "--poll-ms",
        "20",
    ];
    let mut relay = spawn_paused(&relay_args, "relay.after_append");
    let ab_bytes = log_len(&dir, 0);
    assert!(ab_bytes > 0, "A and B are in the page cache");
    ok(&["place", "--dir", &dir, "--count", "2", "--seed", "12"]); // C, D

    ok(&["consume", "--dir", &dir, "--until-idle"]);
    let before = verify_json(&dir);
    assert_eq!(
        before["applied_once"], 0,
        "un-synced A and B not applied: {before}"
    );
    let offset = std::path::Path::new(&dir).join("broker/points.p0.offset");
    assert!(
        std::fs::read_to_string(&offset).map_or(true, |t| t.starts_with("0")),
        "no offset committed past un-synced bytes"
    );

    // The power cut: every process dies, the log loses what was never synced (all of it).
    kill_now(&mut relay);
    assert_eq!(durable_end(&dir, 0), 0);
    std::fs::OpenOptions::new()
        .write(true)
        .open(log_path(&std::path::Path::new(&dir).join("broker"), 0))
        .unwrap()
        .set_len(0)
        .unwrap();

    // A, B, C, D each once.
    let after = drain_and_verify(&dir, &["--lease-ms", "1000"], 4);
    assert_eq!(after["pending"], 0, "nothing stuck: {after}");
}

/// A committed position that names a record the log no longer holds there is a loud error.
#[test]
fn consumer_refuses_to_resume_when_its_last_record_is_gone() {
    let dir = init_with("position-gone", 1);
    ok(&["place", "--dir", &dir, "--count", "3", "--seed", "21"]);
    ok(&["relay", "--dir", &dir, "--until-empty"]);
    ok(&["consume", "--dir", &dir, "--until-idle"]);
    // Rewrite the last record behind the consumer's back: same length, a valid CRC, another
    // event id — what a log rebuilt after losing applied bytes could hold at that offset.
    let path = log_path(&std::path::Path::new(&dir).join("broker"), 0);
    let text = std::fs::read_to_string(&path).unwrap();
    let last_start = text[..text.len() - 1].rfind('\n').map_or(0, |i| i + 1);
    let mut json = text[last_start + 9..text.len() - 1].to_string();
    let at = json.find("\"event_id\":\"").unwrap() + 12;
    let other = if &json[at..at + 1] == "a" { "b" } else { "a" };
    json.replace_range(at..at + 1, other);
    let mut line = Vec::new();
    encode_record(json.as_bytes(), &mut line);
    assert_eq!(line.len(), text.len() - last_start, "same length");
    let mut bytes = text.as_bytes()[..last_start].to_vec();
    bytes.extend_from_slice(&line);
    std::fs::write(&path, bytes).unwrap();
    ok(&["place", "--dir", &dir, "--count", "1", "--seed", "22"]);
    let out = run(&["consume", "--dir", &dir, "--until-idle"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must not resume: {stderr}");
    assert!(
        stderr.contains("committed position") && stderr.contains("refusing to resume"),
        "{stderr}"
    );
}

/// A relay frozen while holding a partition's append lock: the other partitions keep flowing,
/// the report names the partition and the holder, and SIGTERM is honoured within a second.
#[test]
fn frozen_lock_holder_leaves_other_partitions_flowing_and_sigterm_is_honoured() {
    let dir = init_with("stuck-lock", 4);
    ok(&["place", "--dir", &dir, "--count", "200", "--seed", "31"]);
    let frozen_args = [
        "relay",
        "--dir",
        &dir,
        "--id",
        "frozen",
        "--batch",
        "1",
        "--lease-ms",
        "1000",
    ];
    let mut frozen = spawn_paused(&frozen_args, "broker.torn_append");
    let mut second = Command::new(BIN)
        .args([
            "relay",
            "--dir",
            &dir,
            "--id",
            "second",
            "--lease-ms",
            "1000",
        ])
        .args(["--poll-ms", "20"])
        .env("OUTBOX_TRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let orders = std::path::Path::new(&dir).join("orders.db");
    let conn = rusqlite::Connection::open(&orders).unwrap();
    let unpublished_by_partition = || -> Vec<u64> {
        let mut counts = vec![0u64; 4];
        let mut stmt = conn
            .prepare("SELECT aggregate_id FROM outbox WHERE published_at_us IS NULL")
            .unwrap();
        let ids = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        for id in ids {
            counts[partition_of(&id.unwrap(), 4) as usize] += 1;
        }
        counts
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let stuck = loop {
        let counts = unpublished_by_partition();
        let waiting: Vec<usize> = (0..4).filter(|p| counts[*p] > 0).collect();
        if waiting.len() == 1 {
            break waiting[0];
        }
        assert!(
            Instant::now() < deadline,
            "other partitions never drained: {counts:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // Let the report come due (first after 1 s of a busy lock), then ask it to stop.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        second.try_wait().unwrap().is_none(),
        "the second relay is still running"
    );
    let asked = Instant::now();
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    unsafe { libc::kill(second.id() as libc::pid_t, libc::SIGTERM) };
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "SIGTERM ignored for 5 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let stop_ms = asked.elapsed().as_millis();
    assert!(status.success(), "clean exit: {status:?}");
    assert!(stop_ms < 1000, "SIGTERM honoured in {stop_ms} ms");
    let mut stderr = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let report = format!(
        "partition {stuck}'s append lock held by pid {}",
        frozen.id()
    );
    assert!(stderr.contains(&report), "expected {report:?} in: {stderr}");

    // A power cut is only simulated on a dead pipeline: a live lock holder is refused, and
    // the refusal changes nothing.
    let lens: Vec<u64> = (0..4).map(|p| log_len(&dir, p)).collect();
    let refused = run(&["power-cut", "--dir", &dir]);
    assert_eq!((0..4).map(|p| log_len(&dir, p)).collect::<Vec<_>>(), lens);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("locked by a live writer"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // The holder dies; its partition ships too, and everything checks out.
    kill_now(&mut frozen);
    drain_and_verify(&dir, &["--lease-ms", "1000"], 200);
}

/// Leases against clock skew: a lease further ahead than `lease_ms` plus the skew bound, on the
/// claimer's own clock, counts as expired; one within the bound is respected.
#[test]
fn a_lease_from_a_clock_an_hour_fast_does_not_strand_its_rows() {
    use outbox_lab::clock::{Clock, US_PER_MS};
    use outbox_lab::db::{self, Synchronous};
    use outbox_lab::outbox::{Layout, MAX_CLOCK_SKEW_MS, claim_batch};

    let dir = init_with("skew", 1);
    ok(&["place", "--dir", &dir, "--count", "3", "--seed", "41"]);
    let orders = std::path::Path::new(&dir).join("orders.db");
    // NORMAL, as the relay: these claims are the relay's statements, run by hand.
    let mut conn = db::open(&orders, Synchronous::Normal).unwrap();
    let lease_ms = 500;
    let hour_us = 3_600 * 1_000 * US_PER_MS;
    let fast = claim_batch(
        &mut conn,
        Layout::Single,
        "fast/1",
        Clock::shifted(hour_us),
        lease_ms,
        10,
    )
    .unwrap();
    assert_eq!(fast.rows.len(), 3, "the fast relay claims all three");
    let sane = claim_batch(
        &mut conn,
        Layout::Single,
        "sane/1",
        Clock::system(),
        lease_ms,
        10,
    )
    .unwrap();
    assert_eq!(
        sane.rows.len(),
        3,
        "an hour-ahead lease is treated as expired"
    );

    // Within the bound: a clock 10 s fast is trusted, its lease stands.
    let within_us = 10_000 * US_PER_MS;
    assert!(within_us < MAX_CLOCK_SKEW_MS as i64 * US_PER_MS);
    let dir2 = init_with("skew-within", 1);
    ok(&["place", "--dir", &dir2, "--count", "3", "--seed", "42"]);
    let mut conn2 = db::open(
        &std::path::Path::new(&dir2).join("orders.db"),
        Synchronous::Normal,
    )
    .unwrap();
    let ahead = claim_batch(
        &mut conn2,
        Layout::Single,
        "ahead/1",
        Clock::shifted(within_us),
        lease_ms,
        10,
    );
    assert_eq!(ahead.unwrap().rows.len(), 3);
    let blocked = claim_batch(
        &mut conn2,
        Layout::Single,
        "sane/2",
        Clock::system(),
        lease_ms,
        10,
    )
    .unwrap();
    assert_eq!(
        blocked.rows.len(),
        0,
        "a lease within the skew bound is respected"
    );

    // End to end: the relay with the fast clock dies after claiming; another ships at once.
    let out = Command::new(BIN)
        .args([
            "relay",
            "--dir",
            &dir2,
            "--lease-ms",
            "500",
            "--until-empty",
        ])
        .env("OUTBOX_CLOCK_OFFSET_US", hour_us.to_string())
        .env("OUTBOX_CRASH", "relay.after_claim@1")
        .env("OUTBOX_TRACE", "0")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(9), "died at relay.after_claim");
    let started = Instant::now();
    ok(&[
        "relay",
        "--dir",
        &dir2,
        "--until-empty",
        "--lease-ms",
        "500",
        "--poll-ms",
        "20",
    ]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "rows were not stranded for the hour"
    );
    ok(&["consume", "--dir", &dir2, "--until-idle"]);
    let r = verify_json(&dir2);
    assert_eq!(r["lost_count"], 0, "{r}");
    assert_eq!(r["applied_once"], 3, "{r}");
}

/// Run a relay (`--until-empty --poll-ms 20`, plus `relay_args`) and the consumer to the end,
/// then check that every one of `applied_once` events was applied exactly once and none lost.
/// Returns the checker's report for further checks.
fn drain_and_verify(dir: &str, relay_args: &[&str], applied_once: u64) -> serde_json::Value {
    let mut relay = vec!["relay", "--dir", dir, "--until-empty", "--poll-ms", "20"];
    relay.extend_from_slice(relay_args);
    ok(&relay);
    ok(&["consume", "--dir", dir, "--until-idle"]);
    let report = verify_json(dir);
    assert_eq!(report["lost_count"], 0, "{report}");
    assert_eq!(report["applied_twice"], 0, "{report}");
    assert_eq!(report["applied_once"], applied_once, "{report}");
    report
}
