//! The one scratch-directory helper every benchmark uses.

use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// A fresh directory `base/outbox-lab-bench-<name>-<pid>-<n>`, removed with everything in it
/// when dropped — whatever happens, an error path included — unless [`TempDir::keep`] said so.
pub struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    pub fn new(base: &Path, name: &str) -> Result<TempDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let safe_name: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = base.join(format!(
            "outbox-lab-bench-{safe_name}-{}-{n}",
            std::process::id()
        ));
        // Only ever a name this process made up (pid + counter): never someone else's files.
        if path.exists() {
            std::fs::remove_dir_all(&path).ctx(format!("clearing {}", path.display()))?;
        }
        std::fs::create_dir_all(&path).ctx(format!("creating {}", path.display()))?;
        Ok(TempDir { path, keep: false })
    }

    /// Leave the directory behind (`--keep`), to look inside after the run.
    pub fn keep(mut self, keep: bool) -> TempDir {
        self.keep = keep;
        if keep {
            eprintln!("  keeping {}", self.path.display());
        }
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
