//! A throwaway PostgreSQL cluster for the examples and benchmarks: `scripts/pg-up` in a fresh
//! directory, `scripts/pg-down` when dropped. Or the server `OUTBOX_PG_URL` names, if set.
//!
//! Nothing is assumed to be running; nothing is left running (the cluster's directory and its
//! server go with the value).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Context, Error, Result};

/// One line on how to get PostgreSQL, for when it is missing.
pub const HOW_TO_INSTALL: &str = "PostgreSQL is not installed: `apt-get install -y postgresql` (Debian/Ubuntu), \
or set OUTBOX_PG_URL to a server's URL";

pub struct PgServer {
    pub url: String,
    /// Our own cluster's directory, stopped and deleted on drop; None for `OUTBOX_PG_URL`.
    cluster_dir: Option<PathBuf>,
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

impl PgServer {
    /// A server the user named (`--postgres URL`): used, never stopped.
    pub fn given(url: String) -> PgServer {
        PgServer {
            url,
            cluster_dir: None,
        }
    }

    /// `OUTBOX_PG_URL`, else a throwaway cluster; `Ok(None)` when PostgreSQL is not installed.
    pub fn from_env_or_throwaway(name: &str) -> Result<Option<PgServer>> {
        if let Ok(url) = std::env::var("OUTBOX_PG_URL") {
            return Ok(Some(PgServer {
                url,
                cluster_dir: None,
            }));
        }
        let dir = PathBuf::from(format!("/tmp/outbox-lab-{name}-pg-{}", std::process::id()));
        let out = Command::new(scripts().join("pg-up"))
            .arg(&dir)
            .output()
            .ctx("running scripts/pg-up")?;
        match out.status.code() {
            Some(0) => Ok(Some(PgServer {
                url: String::from_utf8_lossy(&out.stdout).trim().to_string(),
                cluster_dir: Some(dir),
            })),
            Some(3) => Ok(None),
            _ => Err(Error::Input(format!(
                "scripts/pg-up {} failed: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
        }
    }

    /// Where this server is, in one line.
    pub fn describe(&self) -> String {
        match &self.cluster_dir {
            Some(dir) => format!("throwaway cluster in {}", dir.display()),
            None => "a server given by URL".to_string(),
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(dir) = &self.cluster_dir {
            let stopped = Command::new(scripts().join("pg-down")).arg(dir).status();
            if !stopped.is_ok_and(|s| s.success()) {
                eprintln!(
                    "could not stop the cluster in {}: run scripts/pg-down on it",
                    dir.display()
                );
            }
        }
    }
}
