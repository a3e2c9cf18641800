//! One error type for the whole crate.
//!
//! Operating errors (a busy disk, bad input, a corrupt log) are `Error` values that name what
//! is wrong; programmer errors (a broken invariant) are `assert!`s with a message. A caller can
//! always tell the user *which* file, partition, byte offset or input field is at fault.

use std::fmt;
use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug)]
pub enum Error {
    /// An I/O error, with what we were doing when it happened.
    Io {
        context: String,
        source: std::io::Error,
    },
    /// SQLite said no (after its busy timeout, if it was a lock).
    Sqlite {
        context: String,
        source: rusqlite::Error,
    },
    /// PostgreSQL said no (or could not be reached).
    Postgres {
        context: String,
        source: postgres::Error,
    },
    /// A record in the middle of a log failed its CRC or did not parse: never skipped.
    Corrupt {
        file: PathBuf,
        offset_bytes: u64,
        reason: String,
    },
    /// The data directory is missing or was never initialised.
    NotInitialised { dir: PathBuf, reason: String },
    /// Bad user input: names the field and what is wrong with it.
    Input(String),
    /// A replication slot handed back a change this decoder cannot read: never skipped.
    Decode { slot: String, reason: String },
    /// A file lock stayed busy for the whole bounded wait (or the wait was told to stop).
    LockBusy {
        file: PathBuf,
        /// Who holds it, when the kernel says.
        holder_pid: Option<u32>,
        waited_ms: u64,
        /// The wait ended because the process was asked to stop, not because time ran out.
        stopped: bool,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Sqlite { context, source } => write!(f, "{context}: {source}"),
            Error::Postgres { context, source } => write!(f, "{context}: {}", pg_detail(source)),
            Error::Corrupt {
                file,
                offset_bytes,
                reason,
            } => write!(
                f,
                "corrupt record in {} at byte offset {offset_bytes}: {reason}",
                file.display()
            ),
            Error::NotInitialised { dir, reason } => write!(
                f,
                "data directory {} is not initialised ({reason}); run `outbox-lab init --dir {}` first",
                dir.display(),
                dir.display()
            ),
            Error::Input(msg) => write!(f, "{msg}"),
            Error::Decode { slot, reason } => {
                write!(f, "replication slot {slot}: undecodable change: {reason}")
            }
            Error::LockBusy {
                file,
                holder_pid,
                waited_ms,
                stopped,
            } => {
                let holder = holder_pid.map_or("an unknown process".into(), |p| format!("pid {p}"));
                let why = if *stopped { ", then asked to stop" } else { "" };
                write!(
                    f,
                    "the lock on {} is held by {holder}: waited {waited_ms} ms{why}",
                    file.display()
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Sqlite { source, .. } => Some(source),
            Error::Postgres { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Attach context to I/O and SQLite results: `file.sync_data().ctx("syncing p0")?`.
pub trait Context<T> {
    fn ctx(self, context: impl Into<String>) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn ctx(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context.into(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, rusqlite::Error> {
    fn ctx(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::Sqlite {
            context: context.into(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, postgres::Error> {
    fn ctx(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::Postgres {
            context: context.into(),
            source,
        })
    }
}

/// A PostgreSQL error with the server's message and SQLSTATE when there is one (the client's
/// own Display says only "db error"), and the cause chain for connection failures.
fn pg_detail(source: &postgres::Error) -> String {
    if let Some(db) = source.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = source.to_string();
    let mut cause = std::error::Error::source(source);
    while let Some(inner) = cause {
        text.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    text
}

impl From<rusqlite::Error> for Error {
    fn from(source: rusqlite::Error) -> Self {
        Error::Sqlite {
            context: "sqlite".into(),
            source,
        }
    }
}
