//! Inputs that cannot hurt: every absurd flag value, malformed line or wrong path gets a clear
//! error naming what is wrong (exit 2 for operating errors), and nothing is deleted or corrupted.

mod common;

use common::*;
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
