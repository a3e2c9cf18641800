//! The PostgreSQL orders store, against a real throwaway cluster (see `common::pg`). Without
//! PostgreSQL these tests skip (said once per run); under `CI=true` they fail instead.

mod common;

use common::pg::fresh_database;
use common::{ok, run, temp_dir};

#[test]
fn init_records_the_store_and_refuses_to_change_it() {
    let Some(url) = fresh_database("init") else {
        return;
    };
    let dir = temp_dir("pg-init");
    let d = dir.join("d");
    let d = d.to_str().unwrap();
    let out = ok(&["init", "--dir", d, "--postgres", &url]);
    assert!(out.contains("store postgres"), "init said: {out}");
    let config = std::fs::read_to_string(dir.join("d/outbox-lab.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["store"]["postgres"], url.as_str());
    assert!(
        !dir.join("d/orders.db").exists(),
        "a PostgreSQL data dir must not grow an orders.db"
    );
    // Idempotent with the same URL; a switch to SQLite is refused.
    ok(&["init", "--dir", d, "--postgres", &url]);
    let out = run(&["init", "--dir", d]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to change it to sqlite"), "{err}");
}

#[test]
fn an_unreachable_url_names_the_socket_and_leaves_nothing_behind() {
    // Needs no server: nothing listens in this directory.
    let dir = temp_dir("pg-bad-url");
    let d = dir.join("d");
    let url = format!("postgresql:///db?host={}&user=postgres", dir.display());
    let out = run(&["init", "--dir", d.to_str().unwrap(), "--postgres", &url]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let socket = format!("socket {}/.s.PGSQL.5432", dir.display());
    assert!(err.contains(&socket), "error does not name {socket}: {err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!d.exists(), "a failed init must not create {}", d.display());
}

#[test]
fn a_malformed_url_is_refused_by_name() {
    let dir = temp_dir("pg-malformed");
    let d = dir.join("d");
    let out = run(&[
        "init",
        "--dir",
        d.to_str().unwrap(),
        "--postgres",
        "mysql://x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a PostgreSQL connection URL"), "{err}");
    assert!(!d.exists());
}
