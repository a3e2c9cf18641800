//! A poison event parks only its order: the rule refuses it, the order's later events wait
//! behind it, every other order flows; an operator releases it (retry or skip), and `verify`
//! accounts for what was skipped.

mod common;

use common::*;
use std::path::Path;

/// Orders 1 (ada, then paid), 2 (bob), 3 (cy); ada's account frozen; relayed and consumed.
fn shop_with_a_frozen_account(name: &str) -> String {
    let dir = init(name);
    let input = [("r1", "ada"), ("r2", "bob"), ("r3", "cy")]
        .map(|(r, c)| format!(r#"{{"request_id":"{r}","customer":"{c}","amount_cents":1000}}"#))
        .join("\n");
    let out = run_with_stdin(&["place", "--dir", &dir], &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(&["pay", "--dir", &dir, "--order-id", "1"]);
    let consumer = rusqlite::Connection::open(Path::new(&dir).join("consumer.db")).unwrap();
    consumer
        .execute(
            "INSERT INTO frozen_customers (customer, reason) VALUES ('ada', 'fraud review')",
            [],
        )
        .unwrap();
    ok(&["relay", "--dir", &dir, "--until-empty"]);
    ok(&["consume", "--dir", &dir, "--until-idle"]);
    dir
}

fn parked(dir: &str) -> Vec<serde_json::Value> {
    ok(&["parked", "--dir", dir, "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn effects(dir: &str) -> i64 {
    sqlite_count(
        &Path::new(dir).join("consumer.db"),
        "SELECT count(*) FROM effects",
    )
}

#[test]
fn a_refused_event_parks_its_order_and_every_other_order_flows() {
    let dir = shop_with_a_frozen_account("poison-parks");
    let held = parked(&dir);
    assert_eq!(held.len(), 2, "{held:?}");
    assert_eq!(held[0]["aggregate_id"], "1");
    assert_eq!(held[0]["aggregate_seq"], 1);
    assert_eq!(held[0]["state"], "parked");
    assert!(
        held[0]["reason"]
            .as_str()
            .unwrap()
            .contains("frozen: fraud review")
    );
    assert_eq!(held[1]["aggregate_seq"], 2);
    assert_eq!(held[1]["state"], "waiting", "seq 2 waits behind seq 1");
    assert_eq!(effects(&dir), 2, "orders 2 and 3 applied");
    // Not lost, not OK either: parked events await an operator.
    let r = verify_json(&dir);
    assert_eq!(r["parked"], 2, "{r}");
    assert_eq!(r["lost_count"], 0, "{r}");
    assert_eq!(run(&["verify", "--dir", &dir]).status.code(), Some(1));
    // Only the head can be released.
    let waiting = held[1]["event_id"].as_str().unwrap();
    let out = run(&["release", "--dir", &dir, "--event", waiting, "--retry"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("release that one first"));
}

#[test]
fn retry_after_the_fix_applies_the_order_in_seq_order() {
    let dir = shop_with_a_frozen_account("poison-retry");
    let head = parked(&dir)[0]["event_id"].as_str().unwrap().to_string();
    // Still frozen: the retry is refused again and nothing moves.
    let refused = run(&["release", "--dir", &dir, "--event", &head, "--retry"]);
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(parked(&dir).len(), 2);
    let consumer = rusqlite::Connection::open(Path::new(&dir).join("consumer.db")).unwrap();
    consumer
        .execute("DELETE FROM frozen_customers", [])
        .unwrap();
    let released: serde_json::Value = serde_json::from_str(&ok(&[
        "release", "--dir", &dir, "--event", &head, "--retry",
    ]))
    .unwrap();
    assert_eq!(released["outcome"], "applied");
    assert_eq!(released["then_applied"], 1);
    assert!(parked(&dir).is_empty());
    let r = verify_json(&dir);
    assert_eq!(r["applied_once"], 4, "{r}");
    assert_eq!(r["out_of_order"], 0, "{r}");
    assert_eq!(r["points_actual"], r["points_expected"]);
    ok(&["verify", "--dir", &dir]);
}

#[test]
fn skip_lets_the_event_go_and_verify_accounts_for_it() {
    let dir = shop_with_a_frozen_account("poison-skip");
    let head = parked(&dir)[0]["event_id"].as_str().unwrap().to_string();
    let released: serde_json::Value =
        serde_json::from_str(&ok(&["release", "--dir", &dir, "--event", &head, "--skip"])).unwrap();
    assert_eq!(released["outcome"], "skipped");
    assert_eq!(released["then_applied"], 1, "seq 2 applied after the skip");
    let held = parked(&dir);
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["state"], "skipped");
    let r = verify_json(&dir);
    assert_eq!(r["skipped_events"], 1, "{r}");
    assert_eq!(r["applied_once"], 3, "{r}");
    assert_eq!(r["lost_count"], 0, "{r}");
    assert_eq!(
        r["out_of_order"], 0,
        "seq 1 skipped on purpose, then seq 2: {r}"
    );
    assert_eq!(
        r["points_expected"], 20,
        "ada's 10 points were never credited: {r}"
    );
    assert_eq!(r["points_actual"], 20, "{r}");
    ok(&["verify", "--dir", &dir]);
    let again = run(&["release", "--dir", &dir, "--event", &head, "--skip"]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "a skipped event cannot be released twice"
    );
}

#[test]
fn lag_shows_the_parked_order_until_it_is_released() {
    let dir = shop_with_a_frozen_account("poison-lag");
    let lag = |extra: &[&str]| {
        let mut args = vec!["lag", "--dir", dir.as_str(), "--json"];
        args.extend_from_slice(extra);
        let out = run(&args);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), v)
    };
    let (code, v) = lag(&[]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["lag"]["parked_aggregates"], 1, "order 1 is parked: {v}");
    assert_eq!(
        v["lag"]["parked_waiting_events"], 1,
        "its OrderPaid waits: {v}"
    );
    assert!(v["lag"]["oldest_parked_age_ms"].is_u64(), "{v}");
    let (code, v) = lag(&["--max-parked", "0"]);
    assert_eq!(code, Some(1), "a parked order exceeds --max-parked 0");
    assert!(
        v["exceeded"][0]
            .as_str()
            .unwrap()
            .contains("--max-parked 0")
    );
    let text = ok(&["lag", "--dir", &dir]);
    assert!(
        text.contains("parked   orders 1  waiting behind them 1  oldest "),
        "{text}"
    );

    let head = parked(&dir)[0]["event_id"].as_str().unwrap().to_string();
    ok(&["release", "--dir", &dir, "--event", &head, "--skip"]);
    let (code, v) = lag(&["--max-parked", "0"]);
    assert_eq!(code, Some(0), "nothing parked after the release: {v}");
    assert_eq!(v["lag"]["parked_aggregates"], 0);
    assert_eq!(v["lag"]["parked_waiting_events"], 0);
    assert!(v["lag"]["oldest_parked_age_ms"].is_null(), "{v}");
}
