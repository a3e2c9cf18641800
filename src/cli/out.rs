//! Every command's stdout, through one checked path.
//!
//! `println!` panics when stdout is a closed pipe (`outbox-lab verify … | head -1`, once the
//! output outgrows the pipe's buffer). Here a write error is an ordinary `Error::Io`, and
//! [`super::main`] turns a broken pipe into a quiet exit with status 141 (128 + SIGPIPE), as
//! Unix tools end when their reader leaves. Each call flushes, so the error surfaces at the
//! write that failed, not silently at exit.

use std::fmt::Display;
use std::io::Write;

use crate::error::{Context, Result};

/// Write `text` as it is (it carries its own newlines).
pub fn text(text: impl Display) -> Result<()> {
    let mut out = std::io::stdout().lock();
    write!(out, "{text}")
        .and_then(|()| out.flush())
        .ctx("writing to stdout")
}

/// Write `text` and a newline.
pub fn line(text: impl Display) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .ctx("writing to stdout")
}
