//! Reading a partition from a byte offset: whole, CRC-verified records, in order.
//!
//! Readers share the file with writers in other processes and take no lock: appends only ever
//! add bytes after the last whole record, so everything a reader has verified stays true. What
//! a reader may see at the end is a line still being written (no '\n' yet, or a CRC that does
//! not match the part that has arrived): it stops *before* that line and reports nothing, and
//! the next call picks it up once it is whole. Readers never truncate — only a writer, holding
//! the lock, may decide a tail is torn rather than in flight.
//!
//! ```text
//!   [good][good][BAD][good]…   bad line with data after it → Error::Corrupt at BAD's offset
//!   [good][good][BAD]          bad last line → stop before it (torn, or still arriving)
//!   [good][good][goo           no '\n' yet   → stop before it
//! ```
//!
//! A bad line in the middle cannot be explained by a crash (a writer cuts a torn tail before
//! appending after it), so it is reported — file and byte offset — and never skipped: skipping
//! would silently lose an event.
//!
//! The file is read in chunks of [`READ_CHUNK_BYTES`], never byte by byte. A real broker
//! (Kafka) would hand a consumer whole batches with `sendfile()` and let the client verify them.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{MAX_LINE_BYTES, verify_line};
use crate::error::{Context, Error, Result};

/// How much to read per `pread` once a read is under way: big enough that syscalls are noise,
/// small enough to stay in cache.
pub(crate) const READ_CHUNK_BYTES: usize = 256 * 1024;

/// The first read of a `read_from` guesses from `max_records` how much it needs, so a consumer
/// asking for 100 records does not pull 256 KiB each time. Events are ~300 bytes; guess high.
const GUESS_BYTES_PER_RECORD: usize = 512;
const MIN_FIRST_READ_BYTES: usize = 4096;

/// One whole, verified record and where it sits in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Where the record's line starts.
    pub offset_bytes: u64,
    /// Where the next record starts: the offset to resume (or commit) after this one.
    pub next_offset_bytes: u64,
    /// The JSON, without CRC or newline.
    pub json: Vec<u8>,
}

/// A whole file, as the checker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub records: Vec<RawRecord>,
    /// Bytes after the last whole record: a torn tail (or a line still being written).
    pub torn_tail_bytes: u64,
}

/// Reads one partition file. Never locks, never truncates.
#[derive(Debug)]
pub struct LogReader {
    file: File,
    path: PathBuf,
    /// Reused between calls: no allocation per poll.
    buf: Vec<u8>,
}

impl LogReader {
    /// Open a partition file for reading. A missing file means the broker was never created.
    pub fn open(path: &Path) -> Result<LogReader> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let broker_dir = path.parent().unwrap_or(Path::new("."));
                return Err(Error::NotInitialised {
                    dir: super::data_dir_of(broker_dir),
                    reason: format!("log file {} is missing", path.display()),
                });
            }
            Err(e) => return Err(e).ctx(format!("opening {} for reading", path.display())),
        };
        Ok(LogReader {
            file,
            path: path.to_path_buf(),
            buf: Vec::new(),
        })
    }

    /// Whole, CRC-verified records starting at `offset_bytes`, at most `max_records`.
    ///
    /// `offset_bytes` must be a record boundary (0, or a `next_offset_bytes` this module
    /// returned): anything else reads as a bad line. Stops quietly before a last line that has
    /// no '\n' yet, or that fails its CRC and is the very last line (it may still be being
    /// written). A bad line with more data after it: `Error::Corrupt` at the line's start.
    /// An offset past the end of the file is also `Error::Corrupt`: the log lost records a
    /// consumer had already read, which only a lost (unsynced) write or a swapped file explains.
    pub fn read_from(&mut self, offset_bytes: u64, max_records: usize) -> Result<Vec<RawRecord>> {
        match self.read_once(offset_bytes, max_records) {
            Err(Error::Corrupt { .. }) => {
                // Readers take no lock, so a read can overlap a writer that is cutting a torn
                // tail and appending over it (both under its exclusive lock): the bytes seen
                // are then half old, half new, and look like a bad line with data after it.
                // Before calling it corruption, wait for any writer to finish (a shared lock
                // excludes the exclusive one) and read again: real damage is still there.
                self.file
                    .lock_shared()
                    .ctx(format!("locking {} to re-read", self.path.display()))?;
                let again = self.read_once(offset_bytes, max_records);
                let _ = self.file.unlock();
                again
            }
            result => result,
        }
    }

    /// Like [`read_from`](LogReader::read_from), but only records that end at or before
    /// `durable_end_bytes` (the partition's published durable end): what a consumer may act
    /// on, because a power cut cannot take it back. Bytes past it are never read.
    ///
    /// An offset past the durable end returns nothing (a durable end can come back older
    /// after a power cut; the next writer publishes it again). Below the durable end every
    /// line must be whole and good: a bad or unfinished one is `Error::Corrupt`.
    pub fn read_durable(
        &mut self,
        offset_bytes: u64,
        max_records: usize,
        durable_end_bytes: u64,
    ) -> Result<Vec<RawRecord>> {
        if max_records == 0 || offset_bytes >= durable_end_bytes {
            return Ok(Vec::new());
        }
        let (records, walk) = self.collect(offset_bytes..durable_end_bytes, max_records)?;
        if records.len() < max_records && walk.stopped_at_bytes < durable_end_bytes {
            return Err(Error::Corrupt {
                file: self.path.clone(),
                offset_bytes: walk.stopped_at_bytes,
                reason: format!(
                    "the line here is unfinished or fails its CRC, yet lies before the durable \
                     end {durable_end_bytes} (the log holds {} bytes from here): synced bytes are damaged",
                    walk.seen_end_bytes - walk.stopped_at_bytes
                ),
            });
        }
        Ok(records)
    }

    fn read_once(&mut self, offset_bytes: u64, max_records: usize) -> Result<Vec<RawRecord>> {
        if max_records == 0 {
            return Ok(Vec::new());
        }
        let (records, walk) = self.collect(offset_bytes..u64::MAX, max_records)?;
        if walk.seen_end_bytes == offset_bytes && offset_bytes > 0 {
            self.check_offset_within_file(offset_bytes)?;
        }
        Ok(records)
    }

    /// Up to `max_records` whole records within `range` (from a record boundary), copied out
    /// of the walk's buffer, and how the walk ended. `max_records` must be positive.
    fn collect(
        &mut self,
        range: std::ops::Range<u64>,
        max_records: usize,
    ) -> Result<(Vec<RawRecord>, Walk)> {
        let first_read_bytes = max_records
            .saturating_mul(GUESS_BYTES_PER_RECORD)
            .clamp(MIN_FIRST_READ_BYTES, READ_CHUNK_BYTES);
        let mut records = Vec::new();
        self.buf.clear();
        let walk = walk(
            &self.file,
            &self.path,
            range,
            &mut self.buf,
            first_read_bytes,
            |rec| {
                records.push(RawRecord {
                    offset_bytes: rec.offset_bytes,
                    next_offset_bytes: rec.next_offset_bytes,
                    json: rec.json.to_vec(),
                });
                records.len() < max_records
            },
        )?;
        Ok((records, walk))
    }

    fn check_offset_within_file(&self, offset_bytes: u64) -> Result<()> {
        let len_bytes = self
            .file
            .metadata()
            .ctx(format!("stat {}", self.path.display()))?
            .len();
        if offset_bytes > len_bytes {
            return Err(Error::Corrupt {
                file: self.path.clone(),
                offset_bytes,
                reason: format!("read offset is past the end of the log ({len_bytes} bytes)"),
            });
        }
        Ok(())
    }
}

/// Read a whole file for the checker: every good record, plus how many bytes of torn tail
/// follow. A bad line in the middle is `Error::Corrupt`, as for any reader.
pub fn scan(path: &Path) -> Result<Scan> {
    let mut reader = LogReader::open(path)?;
    let mut records = Vec::new();
    let walk = walk(
        &reader.file,
        path,
        0..u64::MAX,
        &mut reader.buf,
        READ_CHUNK_BYTES,
        |rec| {
            records.push(RawRecord {
                offset_bytes: rec.offset_bytes,
                next_offset_bytes: rec.next_offset_bytes,
                json: rec.json.to_vec(),
            });
            true
        },
    )?;
    Ok(Scan {
        records,
        torn_tail_bytes: walk.seen_end_bytes - walk.stopped_at_bytes,
    })
}

/// Stream a whole file for the checker: `on_record(offset_bytes, json)` for every good record,
/// in order, holding one read chunk at a time. Returns the torn tail's length in bytes.
/// Errors as [`scan`]; an error from `on_record` stops the walk and is returned.
pub fn scan_each(path: &Path, mut on_record: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<u64> {
    let mut reader = LogReader::open(path)?;
    let mut failed = None;
    let walk = walk(
        &reader.file,
        path,
        0..u64::MAX,
        &mut reader.buf,
        READ_CHUNK_BYTES,
        |rec| match on_record(rec.offset_bytes, rec.json) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        },
    )?;
    match failed {
        Some(e) => Err(e),
        None => Ok(walk.seen_end_bytes - walk.stopped_at_bytes),
    }
}

/// One verified record, borrowed from the walk's buffer.
pub(crate) struct Line<'a> {
    pub offset_bytes: u64,
    pub next_offset_bytes: u64,
    pub json: &'a [u8],
}

/// How a walk ended.
pub(crate) struct Walk {
    /// The offset after the last whole record handed out: where the good data ends (or where
    /// the caller asked to stop).
    pub stopped_at_bytes: u64,
    /// The end of what was read from the file (its length when the walk reached the end).
    pub seen_end_bytes: u64,
}

/// The one loop that reads records: from `range.start` (a record boundary), calling `on_record`
/// for each good line until it returns false, the file (or `range.end`) ends, or a torn last
/// line is reached. Bytes at or past `range.end` are never read.
///
/// `buf` may arrive holding the file's bytes from `start_bytes` on (the tail check has already
/// read them); the walk reads more as needed, `first_read_bytes` first, then in chunks.
/// Whether a bad line is the *last* line is only decided by a read that returns 0 bytes: a
/// short read never counts as the end of the file.
pub(crate) fn walk(
    file: &File,
    path: &Path,
    range: std::ops::Range<u64>,
    buf: &mut Vec<u8>,
    first_read_bytes: usize,
    mut on_record: impl FnMut(Line<'_>) -> bool,
) -> Result<Walk> {
    let (start_bytes, end_bytes) = (range.start, range.end);
    assert!(
        first_read_bytes > 0,
        "walk: a read of 0 bytes would look like the end of the file"
    );
    let mut buf_start_bytes = start_bytes; // file offset of buf[0]
    let mut pos = 0; // index in buf where the next line starts
    let mut eof = false;
    let mut read_bytes = first_read_bytes;
    loop {
        let line_start_bytes = buf_start_bytes + pos as u64;
        let stop = || Walk {
            stopped_at_bytes: line_start_bytes,
            seen_end_bytes: buf_start_bytes + buf.len() as u64,
        };
        let corrupt = |reason: String| Error::Corrupt {
            file: path.to_path_buf(),
            offset_bytes: line_start_bytes,
            reason,
        };
        let newline = buf[pos..].iter().position(|&b| b == b'\n');
        match newline {
            Some(len) if len + 1 > MAX_LINE_BYTES => {
                return Err(corrupt(format!(
                    "line of {} bytes is longer than the longest record ({MAX_LINE_BYTES})",
                    len + 1
                )));
            }
            Some(len) => match verify_line(&buf[pos..pos + len]) {
                Ok(json) => {
                    pos += len + 1;
                    let line = Line {
                        offset_bytes: line_start_bytes,
                        next_offset_bytes: line_start_bytes + len as u64 + 1,
                        json,
                    };
                    if !on_record(line) {
                        let mut walk = stop();
                        walk.stopped_at_bytes += len as u64 + 1;
                        return Ok(walk);
                    }
                    continue;
                }
                Err(reason) => {
                    let after = buf.len() - (pos + len + 1);
                    if after > 0 {
                        return Err(corrupt(format!("{reason}; {after} more bytes follow it")));
                    }
                    if eof {
                        return Ok(stop()); // the very last line: torn, or still arriving
                    }
                }
            },
            None if buf.len() - pos >= MAX_LINE_BYTES => {
                return Err(corrupt(format!(
                    "no newline within {MAX_LINE_BYTES} bytes (the longest record)"
                )));
            }
            None if eof => return Ok(stop()), // an unfinished last line, or a clean end
            None => {}
        }
        // Need more bytes: drop what is consumed, read the next chunk after what we hold.
        buf.drain(..pos);
        buf_start_bytes += pos as u64;
        pos = 0;
        // Never past `end_bytes`: to the walk, the file ends there.
        let held_end_bytes = buf_start_bytes + buf.len() as u64;
        let want_bytes = end_bytes
            .saturating_sub(held_end_bytes)
            .min(read_bytes as u64) as usize;
        let n = match want_bytes {
            0 => 0,
            want_bytes => read_more(file, path, buf, buf_start_bytes, want_bytes)?,
        };
        eof = n == 0;
        read_bytes = READ_CHUNK_BYTES;
    }
}

/// Append up to `want_bytes` from the file to `buf`, reading at `buf_start_bytes + buf.len()`.
pub(crate) fn read_more(
    file: &File,
    path: &Path,
    buf: &mut Vec<u8>,
    buf_start_bytes: u64,
    want_bytes: usize,
) -> Result<usize> {
    let held = buf.len();
    buf.resize(held + want_bytes, 0);
    let at_bytes = buf_start_bytes + held as u64;
    let n = loop {
        match file.read_at(&mut buf[held..], at_bytes) {
            Ok(n) => break n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                buf.truncate(held);
                return Err(e).ctx(format!("reading {} at byte {at_bytes}", path.display()));
            }
        }
    };
    buf.truncate(held + n);
    Ok(n)
}
