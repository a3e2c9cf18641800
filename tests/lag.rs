//! `lag` follows the work through the stages: rows wait in the outbox, then as records after
//! the consumer's offset, then as inbox rows; a limit on the command line sets the exit status.

mod common;

use common::*;

fn lag(dir: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut args = vec!["lag", "--dir", dir, "--json"];
    args.extend_from_slice(extra);
    let out = run(&args);
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "lag --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), value)
}

fn lag_records(v: &serde_json::Value) -> u64 {
    v["lag"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["lag_records"].as_u64().unwrap())
        .sum()
}

#[test]
fn lag_follows_orders_from_outbox_to_log_to_inbox() {
    let dir = init("lag");
    ok(&["place", "--dir", &dir, "--count", "20", "--seed", "9"]);

    let (code, v) = lag(&dir, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(v["lag"]["unpublished"], 20, "all 20 wait in the outbox");
    assert!(v["lag"]["oldest_unpublished_age_ms"].is_u64());
    assert_eq!(lag_records(&v), 0, "nothing in the log yet");
    let (code, v) = lag(&dir, &["--max-unpublished", "5"]);
    assert_eq!(code, Some(1), "a limit exceeded fails the command");
    assert!(
        v["exceeded"][0]
            .as_str()
            .unwrap()
            .contains("--max-unpublished 5")
    );
    assert_eq!(lag(&dir, &["--max-unpublished", "20"]).0, Some(0));

    ok(&["relay", "--dir", &dir, "--until-empty"]);
    let (_, v) = lag(&dir, &[]);
    assert_eq!(v["lag"]["unpublished"], 0);
    assert!(v["lag"]["oldest_unpublished_age_ms"].is_null());
    assert_eq!(
        lag_records(&v),
        20,
        "all 20 wait after the consumer's offset"
    );
    for p in v["lag"]["partitions"].as_array().unwrap() {
        assert_eq!(
            p["durable_end_bytes"], p["log_end_bytes"],
            "the relay synced all it appended"
        );
        assert_eq!(p["lag_bytes"], p["log_end_bytes"], "nothing consumed yet");
    }
    assert_eq!(lag(&dir, &["--max-lag-records", "1"]).0, Some(1));

    ok(&["consume", "--dir", &dir, "--until-idle"]);
    let (code, v) = lag(&dir, &["--max-lag-records", "0", "--max-unpublished", "0"]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(lag_records(&v), 0);
    assert_eq!(v["lag"]["inbox_rows"], 20);
    assert!(v["lag"]["oldest_inbox_age_ms"].is_u64());
    assert_eq!(v["lag"]["parked_aggregates"], 0, "no rule refused anything");
}

#[test]
fn lag_refuses_a_bad_interval_or_group() {
    let dir = init("lag-bad");
    for (flag, value) in [("--every-ms", "0"), ("--group", "../x")] {
        let out = run(&["lag", "--dir", &dir, flag, value]);
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "the error names {flag}: {stderr}");
    }
}
