//! Recovery from the durable end: what a writer does, under the lock, before it appends.
//!
//! Two things can leave bad bytes at the end of a partition, and they look different:
//!
//! * **A killed writer** (SIGKILL mid-`write()`) leaves a prefix of its batch: whole records,
//!   then at most one partial line. The page cache keeps all of it.
//! * **A power cut** loses whatever had not been synced, and not neatly: pages of an un-synced
//!   batch reach the disk in any order, so after a cut the tail past the last sync may be
//!   whole, cut at any byte, have a zeroed page in the middle, or hold garbage.
//!
//! Everything before the partition's durable end (see [`super::durable`]) was synced, so
//! neither can touch it. Recovery therefore reads the durable end, **verifies every line after
//! it, and cuts at the first bad byte** (`ftruncate`): later whole records behind a hole are
//! cut too — they were never synced, so no row was ever marked published for them, and the
//! relays ship those rows again. Damage *before* the durable end is not a torn write at all:
//! it is corruption, reported with file and byte offset, and nothing is cut.
//!
//! ```text
//!   …[rec ✓][rec ✓]│[rec ✓][rec ✓][0000 zeroed 0000][rec ✓][rec ✗ torn
//!                  ▲               ▲
//!       durable end│               └ first bad byte: truncate here
//!   …[rec ✗][rec ✓]│…    a bad line before the durable end: corruption, the writer refuses
//! ```
//!
//! The check has to be cheap: relays append ~1,500 batches a second. So the writer remembers
//! where its own last verified append ended; if the file is still exactly that long, nobody
//! appended or tore anything since, and the check is skipped. Otherwise it verifies from the
//! start of a small window before the durable end (so the last durable records are checked
//! too) to the end of the file. The whole file is verified by readers and by
//! [`super::scan`], not by every writer.
//!
//! A real broker (Kafka) does the same on an unclean shutdown, per partition: it re-validates
//! the segments written since its last flushed "recovery point" and truncates at the first bad
//! batch. It has no concurrent writers to worry about; here the file lock stands in for that.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::durable::DurableEnd;
use super::lock::{LockWait, Locked};
use super::reader::{READ_CHUNK_BYTES, read_more};
use super::record::{MAX_LINE_BYTES, verify_line};
use crate::error::{Context, Error, Result};

/// The first window before the durable end: holds the last few lines of an ordinary log
/// (events are ~300 bytes) and costs a few µs to read and verify; longer lines make it double.
const TAIL_WINDOW_BYTES: u64 = 4 * 1024;

/// The first read of the check past the durable end; later reads take [`READ_CHUNK_BYTES`].
const FIRST_CHECK_READ_BYTES: usize = 16 * 1024;

/// The largest window: a window this large without a line end before its last byte holds a
/// line longer than any record, which is corruption.
const TAIL_WINDOW_MAX_BYTES: u64 = 2 * MAX_LINE_BYTES as u64 + 1;

/// Cut the bad tail of one log file past its durable end, taking its lock; then sync and
/// publish the new durable end. Returns how many bytes were cut.
///
/// For tools, tests and restarting writers. Damage before the durable end:
/// `Err(Error::Corrupt { file, offset_bytes, .. })`, nothing cut.
pub fn recover(path: &Path) -> Result<u64> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .ctx(format!("opening {} to recover its tail", path.display()))?;
    let durable = DurableEnd::open_for_log(path)?;
    let _lock = Locked::exclusive_within(&file, path, &LockWait::patient())?;
    let recovered = recover_locked(&file, path, &durable, None)?;
    publish_recovered(&file, path, &durable, &recovered, &LockWait::patient())?;
    Ok(recovered.cut_bytes)
}

/// What the tail check found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recovered {
    /// Where the last whole, verified record ends: the file's length now, where an append lands.
    pub good_end_bytes: u64,
    pub cut_bytes: u64,
    /// The durable end the check started from (`None` on the fast path: not read).
    pub durable_end_bytes: Option<u64>,
}

/// After a check outside the append path: make the verified bytes durable and say so, so
/// that readers see them and the next recovery starts after them.
pub(crate) fn publish_recovered(
    file: &File,
    path: &Path,
    durable: &DurableEnd,
    recovered: &Recovered,
    wait: &LockWait<'_>,
) -> Result<()> {
    let durable_end_bytes = match recovered.durable_end_bytes {
        Some(end) => end,
        None => durable.read()?,
    };
    if recovered.cut_bytes == 0 && recovered.good_end_bytes <= durable_end_bytes {
        return Ok(());
    }
    // fdatasync: the cut and every verified byte must be on disk before we call them durable.
    file.sync_data()
        .ctx(format!("syncing {} after recovery", path.display()))?;
    durable.publish(recovered.good_end_bytes, wait)?;
    Ok(())
}

/// Check everything past the durable end and cut at the first bad byte. The caller holds the
/// exclusive lock on `file`.
///
/// `verified_end_bytes` is where this process's own last append ended, if it still trusts it:
/// when the file is still exactly that long, nothing is read at all.
pub(crate) fn recover_locked(
    file: &File,
    path: &Path,
    durable: &DurableEnd,
    verified_end_bytes: Option<u64>,
) -> Result<Recovered> {
    let len_bytes = file
        .metadata()
        .ctx(format!("stat {}", path.display()))?
        .len();
    if verified_end_bytes == Some(len_bytes) {
        return Ok(Recovered {
            good_end_bytes: len_bytes,
            cut_bytes: 0,
            durable_end_bytes: None,
        });
    }
    let durable_end_bytes = durable.read()?;
    if len_bytes < durable_end_bytes {
        return Err(Error::Corrupt {
            file: path.to_path_buf(),
            offset_bytes: len_bytes,
            reason: format!(
                "the log is {len_bytes} bytes but its durable end is {durable_end_bytes}: \
                 synced records are gone"
            ),
        });
    }
    let check_from_bytes = match verified_end_bytes {
        Some(v) if (durable_end_bytes..=len_bytes).contains(&v) => v,
        _ => window_start(file, path, durable_end_bytes)?,
    };
    let good_end_bytes =
        first_bad_byte(file, path, check_from_bytes, durable_end_bytes)?.unwrap_or(len_bytes);
    assert!(
        (durable_end_bytes..=len_bytes).contains(&good_end_bytes),
        "recovery: good end {good_end_bytes} outside durable end {durable_end_bytes}..=length {len_bytes}"
    );
    let cut_bytes = len_bytes - good_end_bytes;
    if cut_bytes > 0 {
        file.set_len(good_end_bytes).ctx(format!(
            "truncating the bad tail of {} at byte {good_end_bytes}",
            path.display()
        ))?;
        crate::trace::emit(crate::trace::Ev::TornTailCut, || {
            serde_json::json!({ "file": path.display().to_string(), "offset_bytes": good_end_bytes,
                                "cut_bytes": cut_bytes, "durable_end_bytes": durable_end_bytes })
        });
    }
    Ok(Recovered {
        good_end_bytes,
        cut_bytes,
        durable_end_bytes: Some(durable_end_bytes),
    })
}

/// Where to start verifying: the first line start in a window ending at the durable end, so
/// that the last durable records are checked as well (0 when the window reaches the start).
/// The durable end must be a record boundary: the byte before it is a '\n'.
fn window_start(file: &File, path: &Path, durable_end_bytes: u64) -> Result<u64> {
    if durable_end_bytes == 0 {
        return Ok(0);
    }
    let mut window_bytes = TAIL_WINDOW_BYTES.min(durable_end_bytes);
    loop {
        let start_bytes = durable_end_bytes - window_bytes;
        let mut window = vec![0; window_bytes as usize];
        file.read_exact_at(&mut window, start_bytes).ctx(format!(
            "reading {} before its durable end {durable_end_bytes}",
            path.display()
        ))?;
        if window.last() != Some(&b'\n') {
            return Err(Error::Corrupt {
                file: path.to_path_buf(),
                offset_bytes: durable_end_bytes - 1,
                reason: format!(
                    "the durable end {durable_end_bytes} is not at a record boundary (no '\\n' before it)"
                ),
            });
        }
        if start_bytes == 0 {
            return Ok(0);
        }
        let body = &window[..window.len() - 1];
        if let Some(i) = body.iter().position(|&b| b == b'\n') {
            return Ok(start_bytes + i as u64 + 1);
        }
        if window_bytes >= TAIL_WINDOW_MAX_BYTES {
            return Err(Error::Corrupt {
                file: path.to_path_buf(),
                offset_bytes: start_bytes,
                reason: format!(
                    "no newline in the {window_bytes} bytes before the durable end: a line longer than the longest record ({MAX_LINE_BYTES})"
                ),
            });
        }
        window_bytes = (window_bytes * 2)
            .min(TAIL_WINDOW_MAX_BYTES)
            .min(durable_end_bytes);
    }
}

/// Verify lines from `from_bytes` (a line start) to the end of the file. Returns the start of
/// the first bad line at or past the durable end (`None`: all good); a bad line before the
/// durable end is `Error::Corrupt`.
fn first_bad_byte(
    file: &File,
    path: &Path,
    from_bytes: u64,
    durable_end_bytes: u64,
) -> Result<Option<u64>> {
    let mut buf = Vec::new();
    let mut buf_start_bytes = from_bytes;
    let mut pos = 0;
    let mut eof = false;
    // Small first: on the append path the tail past the durable end is a batch or two.
    let mut read_bytes = FIRST_CHECK_READ_BYTES;
    loop {
        let line_start_bytes = buf_start_bytes + pos as u64;
        let bad = |reason: String| -> Result<Option<u64>> {
            if line_start_bytes < durable_end_bytes {
                return Err(Error::Corrupt {
                    file: path.to_path_buf(),
                    offset_bytes: line_start_bytes,
                    reason: format!(
                        "{reason}; this is before the durable end {durable_end_bytes}, \
                         so these bytes were synced: not a torn write"
                    ),
                });
            }
            Ok(Some(line_start_bytes))
        };
        match buf[pos..].iter().position(|&b| b == b'\n') {
            Some(len) if len + 1 > MAX_LINE_BYTES => {
                return bad(format!(
                    "line of {} bytes is longer than any record",
                    len + 1
                ));
            }
            Some(len) => match verify_line(&buf[pos..pos + len]) {
                Ok(_) => {
                    pos += len + 1;
                    continue;
                }
                Err(reason) => return bad(reason),
            },
            None if buf.len() - pos >= MAX_LINE_BYTES => {
                return bad(format!("no newline within {MAX_LINE_BYTES} bytes"));
            }
            None if eof && pos == buf.len() => return Ok(None),
            None if eof => return bad("a last line without its '\\n'".into()),
            None => {}
        }
        buf.drain(..pos);
        buf_start_bytes += pos as u64;
        pos = 0;
        eof = read_more(file, path, &mut buf, buf_start_bytes, read_bytes)? == 0;
        read_bytes = READ_CHUNK_BYTES;
    }
}
