//! A lab run's directory: the harness wipes and recreates it on every run, so it must be sure
//! the directory is its own. A run leaves a marker file; a directory is only ever cleared if it
//! is missing, empty, or marked (or an earlier version's run: a data directory with the
//! harness's `children/` logs), unless the user says `--force`.

use std::path::Path;

use crate::error::{Context, Error, Result};

/// The marker a lab run leaves in its directory.
pub const MARKER_FILE: &str = "lab-run.marker";

/// May a run clear `dir`? An error names why not, and the way out.
pub fn check_clearable(dir: &Path, force: bool) -> Result<()> {
    if !dir.exists() || force {
        return Ok(());
    }
    if !dir.is_dir() {
        return Err(Error::Input(format!(
            "{} is a file, not a directory: a lab run needs a directory of its own",
            dir.display()
        )));
    }
    let empty = std::fs::read_dir(dir)
        .ctx(format!("listing {}", dir.display()))?
        .next()
        .is_none();
    let earlier_run = dir.join("children").is_dir() && dir.join("outbox-lab.json").is_file();
    if empty || dir.join(MARKER_FILE).is_file() || earlier_run {
        return Ok(());
    }
    Err(Error::Input(format!(
        "{} is not empty and is not a lab run directory; a run would delete everything in it. \
         Pick a new directory, or pass --force to clear it anyway",
        dir.display()
    )))
}

/// Mark `dir` as a lab run's, so the next run may clear it.
pub fn mark(dir: &Path) -> Result<()> {
    let path = dir.join(MARKER_FILE);
    std::fs::write(
        &path,
        "This directory belongs to an outbox-lab run: the next run clears it.\n",
    )
    .ctx(format!("writing {}", path.display()))
}
