//! `bench takeover --postgres URL`: how long a CDC slot goes unstreamed when its relay dies.
//!
//! ```text
//!   relay A --cdc  (streams)        relay B --cdc  (standby: blocked on the slot's lock)
//!   t0 = now; SIGKILL A ─▶ A's socket closes ─▶ server ends A's session, frees the lock
//!                                   ─▶ B's pg_advisory_lock returns ─▶ LISTEN ─▶ "since_us=t1"
//!   takeover = t1 − t0
//! ```
//!
//! Both times come from the same clock (`clock::now_us`). A relay that hangs instead of dying
//! keeps its session, and so the slot: see `docs/cdc.md`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Report, Spread, Table, TempDir, percentile_sorted};
use crate::datadir::DataDir;
use crate::error::{Context, Error, Result};
use crate::lab::harness::child::CHILD_ENV;
use crate::store::StoreConfig;
use crate::store::pg::{self, cdc};

pub const MAX_ROUNDS: usize = 100;
const WAIT_LIMIT: Duration = Duration::from_secs(30);

pub fn run(admin_url: &str, rounds: usize, scratch: &std::path::Path) -> Result<Report> {
    assert!(
        (1..=MAX_ROUNDS).contains(&rounds),
        "rounds outside 1..={MAX_ROUNDS}"
    );
    let mut report = Report::new(
        "takeover",
        "bench takeover --postgres: a CDC slot unstreamed from its relay's SIGKILL to its standby's takeover".into(),
        json!({ "rounds": rounds, "standby_lock_wait": "pg_advisory_lock, lock_timeout 500 ms per try" }),
    );
    let db = super::latency_pg::Database::create(admin_url)?;
    let tmp = TempDir::new(scratch, "takeover")?;
    let root = tmp.path().join("data");
    let store = StoreConfig::Postgres(db.url.clone());
    DataDir::init_with_store(&root, crate::broker::DEFAULT_PARTITIONS, store, None)?;
    cdc::setup(
        &mut pg::connect(&db.url, pg::DEFAULT_IDLE_IN_TX_MS)?,
        cdc::OutboxRows::Keep,
    )?;
    let dir = root.to_str().expect("temp paths are UTF-8");
    let mut samples_ms = Vec::new();
    let mut active = Streamer::start(tmp.path(), dir, 0)?;
    active.wait_streaming()?;
    for round in 1..=rounds {
        let mut standby = Streamer::start(tmp.path(), dir, round)?;
        standby.wait_for("standby")?;
        let killed_at_us = crate::clock::now_us();
        active.child.kill().ctx("SIGKILL to the streaming relay")?;
        active.child.wait().ctx("reaping the streaming relay")?;
        let since_us = standby.wait_streaming()?;
        samples_ms.push((since_us - killed_at_us) as f64 / 1000.0);
        active = standby;
    }
    drop(active);
    db.drop_it()?;
    let spread = Spread::of(&samples_ms);
    let mut sorted = samples_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let mut table = Table::new(&["takeovers", "median ms", "p90 ms", "max ms"]);
    table.push(vec![
        rounds.to_string(),
        format!("{:.1}", spread.median),
        format!("{:.1}", percentile_sorted(&sorted, 90.0)),
        format!("{:.1}", spread.max),
    ]);
    report.tables.push((String::new(), table));
    report.results = json!({ "takeover_ms": spread, "samples_ms": samples_ms });
    Ok(report)
}

/// A `relay --cdc` child whose stderr we read.
struct Streamer {
    child: Child,
    stderr: std::path::PathBuf,
}

impl Streamer {
    fn start(logs: &std::path::Path, dir: &str, n: usize) -> Result<Streamer> {
        let exe = std::env::current_exe().ctx("finding current_exe() to re-execute")?;
        let stderr = logs.join(format!("relay-{n}.stderr"));
        let file = std::fs::File::create(&stderr).ctx(format!("creating {}", stderr.display()))?;
        let child = Command::new(exe)
            .args([
                "relay",
                "--dir",
                dir,
                "--cdc",
                "--id",
                &format!("relay-{n}"),
            ])
            .env(CHILD_ENV, "1")
            .env("OUTBOX_TRACE", "0")
            .env_remove("OUTBOX_CRASH")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .ctx("starting a CDC relay")?;
        Ok(Streamer { child, stderr })
    }

    /// Wait (polling its stderr every 0.2 ms) until the relay has said `what`; returns the line.
    fn wait_for(&mut self, what: &str) -> Result<String> {
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains(what)) {
                return Ok(line.to_string());
            }
            if Instant::now() > deadline || self.child.try_wait().ok().flatten().is_some() {
                return Err(Error::Input(format!(
                    "a CDC relay never said {what:?}: {}",
                    text.trim()
                )));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Wait until streaming; returns the `since_us` it printed.
    fn wait_streaming(&mut self) -> Result<i64> {
        let line = self.wait_for("streaming slot")?;
        line.split("since_us=")
            .nth(1)
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| Error::Input(format!("no since_us in {line:?}")))
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
