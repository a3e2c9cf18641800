//! Torn-tail recovery: what a writer does, under the lock, before it appends.
//!
//! A writer that dies in the middle of its `write()` (SIGKILL, power cut) leaves a prefix of
//! its batch on disk: zero or more whole records, then at most one partial line — a line with
//! no '\n', or, after a power cut, a line whose bytes did not all reach the disk and so fail
//! their CRC. Either way the damage is confined to the **last line**. If the next writer simply
//! appended after it, the half line would sit in the middle of the log for ever: readers would
//! rightly call it corruption. So every writer first cuts a torn tail (`ftruncate`) to the end
//! of the last whole record.
//!
//! ```text
//!   …[rec n-2 ✓][rec n-1 ✓][rec n ✗ or no '\n']     len
//!                          ▲                        ▲
//!                          good end ◀── truncate ───┘
//!
//!   …[rec n-2 ✗][rec n-1 ✓]                          a bad line with data after it:
//!               ▲                                    corruption, the writer refuses
//! ```
//!
//! The check has to be cheap: relays append ~1,500 batches a second. So the writer remembers
//! where its own last append ended; if the file is still exactly that long, nobody appended or
//! tore anything since, and the check is skipped (see [`super::Broker::write`] for why equal
//! length is proof enough). Otherwise it reads only a window at the end of the file, just large
//! enough to hold the last two lines, and verifies those. The whole file is verified
//! by readers and by [`super::scan`], not by every writer.
//!
//! A real broker (Kafka) does the same on an unclean shutdown, per partition: it re-validates
//! the segments written since its last flushed "recovery point" and truncates at the first bad
//! batch. It has no concurrent writers to worry about; here the file lock stands in for that.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::reader::walk;
use super::record::MAX_LINE_BYTES;
use crate::error::{Context, Error, Result};

/// The first tail window: holds the last two lines of an ordinary log (events are ~300 bytes)
/// and costs a few µs to read and verify; longer lines make it double.
const TAIL_WINDOW_BYTES: u64 = 4 * 1024;

/// The largest tail window: a torn tail and two whole lines, all of the longest kind, and the
/// '\n' before them. A window this large without three line ends in it holds a line longer
/// than any record, which is corruption.
const TAIL_WINDOW_MAX_BYTES: u64 = 3 * MAX_LINE_BYTES as u64 + 1;

/// The read after the window, expected to return nothing.
const CONFIRM_END_READ_BYTES: usize = 4096;

/// Truncate a torn tail of one log file, taking its lock. Returns how many bytes were cut.
///
/// For tools and tests; writers do this themselves on every append. A bad record with good
/// records after it is corruption: `Err(Error::Corrupt { file, offset_bytes, .. })`, nothing cut.
pub fn recover(path: &Path) -> Result<u64> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .ctx(format!("opening {} to recover its tail", path.display()))?;
    let _lock = Locked::exclusive(&file, path)?;
    let recovered = recover_locked(&file, path, None)?;
    if recovered.cut_bytes > 0 {
        // Make the cut itself durable: a standalone recovery has no append + sync after it.
        file.sync_data()
            .ctx(format!("syncing {} after cutting its tail", path.display()))?;
    }
    Ok(recovered.cut_bytes)
}

/// What the tail check found.
pub(crate) struct Recovered {
    /// Where the last whole record ends: the file's length now, and where an append lands.
    pub good_end_bytes: u64,
    pub cut_bytes: u64,
}

/// Check the tail and cut a torn one. The caller holds the exclusive lock on `file`.
///
/// `known_end_bytes` is where this process's own last append ended, if it still trusts it:
/// when the file is still exactly that long, nothing is read at all.
pub(crate) fn recover_locked(
    file: &File,
    path: &Path,
    known_end_bytes: Option<u64>,
) -> Result<Recovered> {
    let len_bytes = file
        .metadata()
        .ctx(format!("stat {}", path.display()))?
        .len();
    if known_end_bytes == Some(len_bytes) {
        return Ok(Recovered {
            good_end_bytes: len_bytes,
            cut_bytes: 0,
        });
    }
    let good_end_bytes = find_good_end(file, path, len_bytes)?;
    assert!(
        good_end_bytes <= len_bytes,
        "tail check: good end {good_end_bytes} beyond length {len_bytes}"
    );
    let cut_bytes = len_bytes - good_end_bytes;
    if cut_bytes > 0 {
        file.set_len(good_end_bytes).ctx(format!(
            "truncating the torn tail of {} at byte {good_end_bytes}",
            path.display()
        ))?;
        crate::trace::emit(
            crate::trace::Ev::TornTailCut,
            || serde_json::json!({ "file": path.display().to_string(), "offset_bytes": good_end_bytes, "cut_bytes": cut_bytes }),
        );
    }
    Ok(Recovered {
        good_end_bytes,
        cut_bytes,
    })
}

/// Where the last whole, verified record of a `len_bytes` long file ends.
///
/// Reads a window at the end, doubling it until it holds the last two complete lines whole
/// (three '\n's, or the start of the file), then verifies from there on: the last line may be
/// bad (torn: it will be cut), the one before it may not (a bad line with data after it is
/// corruption). Only these two lines are checked: older damage is for readers to find.
fn find_good_end(file: &File, path: &Path, len_bytes: u64) -> Result<u64> {
    if len_bytes == 0 {
        return Ok(0);
    }
    let mut window_bytes = TAIL_WINDOW_BYTES.min(len_bytes);
    loop {
        let window_start_bytes = len_bytes - window_bytes;
        let mut window = vec![0; window_bytes as usize];
        file.read_exact_at(&mut window, window_start_bytes)
            .ctx(format!(
                "reading the tail of {} at byte {window_start_bytes}",
                path.display()
            ))?;
        // The third '\n' from the end: the line after it is the second-to-last complete line.
        let third_last_newline = window.iter().rposition(|&b| b == b'\n').and_then(|last| {
            let second = window[..last].iter().rposition(|&b| b == b'\n')?;
            window[..second].iter().rposition(|&b| b == b'\n')
        });
        let line_start = match third_last_newline {
            _ if window_start_bytes == 0 => 0,
            Some(i) => i + 1,
            None if window_bytes < TAIL_WINDOW_MAX_BYTES => {
                window_bytes = (window_bytes * 2).min(TAIL_WINDOW_MAX_BYTES).min(len_bytes);
                continue;
            }
            None => return Err(overlong_tail(file, path, window, window_start_bytes)),
        };
        return walk_to_end(file, path, window, window_start_bytes, line_start);
    }
}

/// Verify the window's lines from `line_start` (an index just after a '\n', or 0 at the start
/// of the file) to the end of the file; returns where the last good line ends.
fn walk_to_end(
    file: &File,
    path: &Path,
    mut window: Vec<u8>,
    window_start_bytes: u64,
    line_start: usize,
) -> Result<u64> {
    // Hand the bytes already read to the walk: it verifies them, then one more read (which
    // returns 0 bytes: we hold the lock, nobody appends) confirms the last line is the last.
    window.drain(..line_start);
    let start_bytes = window_start_bytes + line_start as u64;
    let walked = walk(
        file,
        path,
        start_bytes,
        &mut window,
        CONFIRM_END_READ_BYTES,
        |_| true,
    )?;
    Ok(walked.stopped_at_bytes)
}

/// A maximal window with fewer than three line ends: some line in it is longer than any
/// record. Name the exact line when it starts inside the window (the walk does), else the
/// window's start.
fn overlong_tail(file: &File, path: &Path, window: Vec<u8>, window_start_bytes: u64) -> Error {
    let window_bytes = window.len();
    let first_newline = window.iter().position(|&b| b == b'\n');
    let reason = match first_newline {
        Some(i) => match walk_to_end(file, path, window, window_start_bytes, i + 1) {
            Err(walk_error) => return walk_error,
            Ok(_) => format!(
                "the line ending at byte {} began before this offset: longer than the longest record ({MAX_LINE_BYTES})",
                window_start_bytes + i as u64
            ),
        },
        None => format!(
            "no newline in the last {window_bytes} bytes: a line longer than the longest record"
        ),
    };
    Error::Corrupt {
        file: path.to_path_buf(),
        offset_bytes: window_start_bytes,
        reason,
    }
}

/// The exclusive `flock` on a log file, released on drop (also on an early `?` return; and by
/// the kernel if the process dies, which is what makes a SIGKILLed writer harmless).
pub(crate) struct Locked<'a> {
    file: &'a File,
}

impl<'a> Locked<'a> {
    pub(crate) fn exclusive(file: &'a File, path: &Path) -> Result<Locked<'a>> {
        file.lock().ctx(format!("locking {}", path.display()))?;
        Ok(Locked { file })
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Closing the file would release it too; an unlock error leaves nothing to undo.
        let _ = self.file.unlock();
    }
}
