//! A real PostgreSQL for the tests: one throwaway cluster per `cargo test` run (started by the
//! first test that asks, shared by the test binaries of that run, stopped when the run ends),
//! or the server named by `OUTBOX_PG_URL`. Each test gets a database of its own, so tests run
//! in parallel without seeing each other's rows.
//!
//! Without PostgreSQL on the machine the PostgreSQL tests are skipped, and the run says so once,
//! with how to enable them. Under `CI=true` a missing PostgreSQL fails the test instead: CI
//! must really run them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use postgres::{Config, NoTls};

const HOW_TO_ENABLE: &str = "PostgreSQL tests SKIPPED: PostgreSQL is not installed. Enable them with \
`apt-get install -y postgresql` (scripts/pg-up then starts a throwaway cluster per run), or point \
OUTBOX_PG_URL at a server.";

/// The cluster's admin URL, or None when PostgreSQL is absent (and not in CI).
fn cluster_url() -> Option<&'static str> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("OUTBOX_PG_URL") {
            return Some(url);
        }
        start_cluster()
    })
    .as_deref()
}

/// Start (or join) this run's cluster. The run is the parent process (cargo); the cluster is
/// keyed on its pid and a watcher stops it when that process exits.
fn start_cluster() -> Option<String> {
    let run_pid = std::os::unix::process::parent_id();
    let dir = PathBuf::from(format!("/tmp/outbox-lab-pg-{run_pid}"));
    let lock_path = PathBuf::from(format!("/tmp/outbox-lab-pg-{run_pid}.lock"));
    let lock = std::fs::File::create(&lock_path).expect("creating the cluster lock file");
    // One test binary at a time starts the cluster; the others wait, then join it.
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {}", lock_path.display());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let out = Command::new(script.join("pg-up"))
        .arg(&dir)
        .output()
        .expect("running scripts/pg-up");
    match out.status.code() {
        Some(0) => {}
        Some(3) => {
            let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(
                !in_ci,
                "CI=true and PostgreSQL is missing: the PostgreSQL tests must run in CI.\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            say_skipped_once(run_pid);
            let _ = std::fs::remove_file(&lock_path);
            return None;
        }
        _ => panic!(
            "scripts/pg-up {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
    let url = String::from_utf8(out.stdout).expect("utf-8 URL");
    stop_when_run_ends(run_pid, &dir, &script, &lock_path);
    Some(url.trim().to_string())
}

/// A detached watcher (its own session, so Ctrl-C on the test run does not kill it first)
/// that runs pg-down once the run's process is gone. Several binaries may each start one:
/// pg-down on a cluster already gone refuses harmlessly.
fn stop_when_run_ends(run_pid: u32, dir: &Path, script: &Path, lock_path: &Path) {
    let watch = format!(
        "while kill -0 {run_pid} 2>/dev/null; do sleep 0.5; done; {} {} >/dev/null 2>&1; rm -f {}",
        script.join("pg-down").display(),
        dir.display(),
        lock_path.display()
    );
    // `setsid -f` forks the watcher into its own session and returns at once.
    let status = Command::new("setsid")
        .args(["-f", "bash", "-c", &watch])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawning the cluster's watcher");
    assert!(
        status.success(),
        "setsid -f for the cluster's watcher: {status}"
    );
}

/// Print the skip notice once per `cargo test` run, straight to the terminal's stderr (the
/// harness captures `eprintln!` of passing tests; a direct write is not captured).
fn say_skipped_once(run_pid: u32) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let marker = PathBuf::from(format!("/tmp/outbox-lab-pg-skipped-{run_pid}"));
        if std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
            .is_ok()
        {
            let _ = writeln!(std::io::stderr(), "\n{HOW_TO_ENABLE}\n");
        }
    });
}

/// A fresh, empty database for one test, as a connection string; None = skip this test.
pub fn fresh_database(name: &str) -> Option<String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let admin = cluster_url()?;
    let db = format!(
        "t_{}_{}_{}",
        name.to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let mut client = admin_config(admin)
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("connecting to the test cluster {admin}: {e:?}"));
    client
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .unwrap_or_else(|e| panic!("CREATE DATABASE {db}: {e:?}"));
    Some(outbox_lab::store::pg::url_with_dbname(admin, &db).expect("the cluster URL parses"))
}

fn admin_config(url: &str) -> Config {
    url.parse()
        .unwrap_or_else(|e| panic!("OUTBOX_PG_URL {url:?}: {e}"))
}
