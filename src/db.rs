//! Opening SQLite connections, with every durability setting passed explicitly by the caller.
//!
//! Several processes share each database (a service and K relays on `orders.db`), so:
//! - `journal_mode=WAL`: readers never block the writer and the writer never blocks readers;
//!   a relay's claim does not stall an order being placed longer than one commit.
//! - a busy handler: SQLite has one writer at a time; a writer that finds the lock taken waits
//!   (up to [`BUSY_TIMEOUT_MS`]) instead of failing, so "database is locked" never becomes a
//!   lost or failed order under normal load. Not SQLite's stock `busy_timeout`, whose naps grow
//!   to 100 ms: behind a writer that commits back to back (the order service under load) it
//!   loses every race for the gap between two commits. The lab saw a relay starved for 430 ms,
//!   past its lease, that way. Short naps ([`BUSY_NAP_US`]) keep the wait fair enough.
//! - every write transaction is `BEGIN IMMEDIATE`: it takes the write lock up front. A deferred
//!   transaction that reads first and writes later can get SQLITE_BUSY *without* waiting
//!   (its read snapshot went stale), which the busy timeout cannot help.
//! - `synchronous` is the caller's choice, stated at the call site with its reason.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error::{Context, Result};

/// Long enough to ride out a checkpoint or a cleanup batch under load, short enough that a
/// wedged process is reported rather than waited on forever.
pub const BUSY_TIMEOUT_MS: u64 = 30_000;
/// How long a waiting connection naps between tries for the lock.
pub const BUSY_NAP_US: u64 = 200;

/// The busy handler: nap [`BUSY_NAP_US`], try again, give up after [`BUSY_TIMEOUT_MS`].
fn busy_wait(tries: i32) -> bool {
    let waited_us = tries.max(0) as u64 * BUSY_NAP_US;
    if waited_us >= BUSY_TIMEOUT_MS * 1000 {
        return false;
    }
    std::thread::sleep(Duration::from_micros(BUSY_NAP_US));
    true
}

/// SQLite's `synchronous` setting, named for what it promises in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync the WAL at every commit: a commit survives power loss (~3k commits/s here).
    Full,
    /// fsync only at checkpoints: a commit survives a process crash (SIGKILL) but the last
    /// few may roll back on power loss (~50k commits/s here).
    Normal,
}

/// Open an existing database (never creates one: a missing file is the caller's error).
pub fn open(path: &Path, synchronous: Synchronous) -> Result<Connection> {
    open_with(path, synchronous, OpenFlags::SQLITE_OPEN_READ_WRITE)
}

/// Open or create a database (only `init` does this).
pub fn create(path: &Path, synchronous: Synchronous) -> Result<Connection> {
    open_with(
        path,
        synchronous,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )
}

fn open_with(path: &Path, synchronous: Synchronous, flags: OpenFlags) -> Result<Connection> {
    let what = path.display().to_string();
    let mut conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .ctx(format!("opening {what}"))?;
    conn.busy_handler(Some(busy_wait))
        .ctx(format!("setting the busy handler on {what}"))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
        .ctx(format!("setting journal_mode=WAL on {what}"))?;
    assert_eq!(mode, "wal", "{what}: SQLite refused WAL mode");
    let sync = match synchronous {
        Synchronous::Full => "PRAGMA synchronous=FULL",
        Synchronous::Normal => "PRAGMA synchronous=NORMAL",
    };
    conn.execute_batch(sync).ctx(format!("{sync} on {what}"))?;
    Ok(conn)
}

/// Run `body` in one `BEGIN IMMEDIATE` transaction: committed if it returns Ok, rolled back
/// (by dropping the transaction) if it returns Err or panics.
pub fn write_tx<T>(
    conn: &mut Connection,
    body: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("BEGIN IMMEDIATE")?;
    let out = body(&tx)?;
    tx.commit().ctx("COMMIT")?;
    Ok(out)
}
