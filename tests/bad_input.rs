//! Bad input gets a clear error that names what is wrong, and nothing is half-written.

mod common;

use common::*;
use std::path::Path;

#[test]
fn each_bad_order_line_is_named_and_writes_nothing() {
    let dir = init("bad-lines");
    let long_customer = "x".repeat(101);
    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "malformed order JSON"),
        (
            r#"{"request_id":"a","customer":"ada"}"#.into(),
            "missing field `amount_cents`",
        ),
        (
            r#"{"request_id":"b","customer":"ada","amount_cents":0}"#.into(),
            "amount_cents must be positive",
        ),
        (
            r#"{"request_id":"c","customer":"ada","amount_cents":-5}"#.into(),
            "amount_cents must be positive",
        ),
        (
            r#"{"request_id":"d","customer":"ada","amount_cents":100000000000}"#.into(),
            "above the limit",
        ),
        (
            r#"{"request_id":"e","customer":"  ","amount_cents":100}"#.into(),
            "customer is empty",
        ),
        (
            format!(r#"{{"request_id":"f","customer":"{long_customer}","amount_cents":100}}"#),
            "customer is longer",
        ),
        (
            r#"{"request_id":"","customer":"ada","amount_cents":100}"#.into(),
            "request_id is empty",
        ),
        (
            r#"{"request_id":"g","customer":"ada","amount_cents":"12"}"#.into(),
            "malformed order JSON",
        ),
        (
            r#"{"request_id":"h","customer":"ada","amount_cents":100,"amout":1}"#.into(),
            "unknown field",
        ),
    ];
    let good = r#"{"request_id":"ok-1","customer":"grace","amount_cents":500}"#;
    let mut input = String::new();
    for (line, _) in &cases {
        input.push_str(line);
        input.push('\n');
        input.push_str(good); // later lines still processed (and a retry of the same good one)
        input.push('\n');
    }
    let out = run_with_stdin(&["place", "--dir", &dir], &input);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed line makes the exit non-zero"
    );
    let replies: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replies.len(), cases.len() * 2, "one reply per input line");
    for (i, (_, expected)) in cases.iter().enumerate() {
        let error = replies[2 * i]["error"]
            .as_str()
            .unwrap_or_else(|| panic!("line {i} not an error"));
        assert!(
            error.contains(expected),
            "case {i}: {error:?} should mention {expected:?}"
        );
        assert!(replies[2 * i + 1]["error"].is_null());
    }
    let db = Path::new(&dir).join("orders.db");
    assert_eq!(
        sqlite_count(&db, "SELECT count(*) FROM orders"),
        1,
        "only the good order"
    );
    assert_eq!(
        sqlite_count(&db, "SELECT count(*) FROM outbox"),
        1,
        "and only its event"
    );
}

#[test]
fn missing_or_uninitialised_dir_says_run_init() {
    let base = temp_dir("no-init");
    let missing = base.join("nope");
    let empty = base.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for dir in [&missing, &empty] {
        for cmd in ["place", "relay", "consume", "verify"] {
            let out = run(&[cmd, "--dir", dir.to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(2), "{cmd} on {}", dir.display());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("outbox-lab init --dir"), "{cmd}: {stderr}");
        }
    }
    assert!(!missing.exists(), "nothing was created");
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "nothing was created"
    );
}

#[test]
fn corrupt_record_mid_log_stops_the_consumer_at_its_offset() {
    let dir = init("corrupt");
    ok(&["place", "--dir", &dir, "--count", "40", "--seed", "2"]);
    ok(&["relay", "--dir", &dir, "--until-empty"]);
    let log = Path::new(&dir).join("broker/orders.p1.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let first_len = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert!(
        bytes.len() > first_len * 2,
        "partition 1 needs several records"
    );
    let second_start = first_len;
    bytes[second_start + 20] ^= 0x20; // inside the second record's JSON
    std::fs::write(&log, &bytes).unwrap();

    let out = run(&["consume", "--dir", &dir, "--until-idle"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("orders.p1.log"), "{stderr}");
    assert!(
        stderr.contains(&format!("byte offset {second_start}")),
        "{stderr}"
    );
    let consumer = Path::new(&dir).join("consumer.db");
    assert_eq!(
        sqlite_count(
            &consumer,
            "SELECT count(*) FROM effects WHERE partition = 1 AND offset_bytes > 0"
        ),
        0,
        "nothing after the corrupt record was applied"
    );
    let verify = run(&["verify", "--dir", &dir]);
    assert_eq!(
        verify.status.code(),
        Some(2),
        "the checker refuses a corrupt log too"
    );
}

#[test]
fn init_is_idempotent_and_refuses_a_new_partition_count() {
    let dir = init("idempotent");
    ok(&["place", "--dir", &dir, "--count", "3"]);
    ok(&["init", "--dir", &dir]);
    let db = Path::new(&dir).join("orders.db");
    assert_eq!(
        sqlite_count(&db, "SELECT count(*) FROM orders"),
        3,
        "init again changed nothing"
    );
    let out = run(&["init", "--dir", &dir, "--partitions", "8"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to change it to 8"));
}

#[test]
fn relay_refuses_a_zero_or_huge_batch_and_a_zero_lease() {
    let dir = init("relay-flags");
    for (flag, value, says) in [
        ("--batch", "0", "--batch must be between 1 and"),
        ("--batch", "10001", "--batch must be between 1 and"),
        ("--lease-ms", "0", "--lease-ms must be between 1 and"),
    ] {
        let out = run(&["relay", "--dir", &dir, "--until-empty", flag, value]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{flag} {value}: {stderr}");
    }
}
