//! The consumer group's committed offsets: where each partition's reading resumes.
//!
//! One small text file per (group, partition), `broker_dir/{group}.p{N}.offset`, holding a
//! byte offset in decimal and, after it, the record that offset ends after: its start offset
//! and CRC (`1124 852 1a2b3c4d`). On start a consumer checks that the log still holds that
//! record right there ([`check_position`]): if a power cut (or anything else) took back bytes
//! the consumer had already applied, resuming at the offset would silently skip whatever now
//! sits there, so it stops with an error instead. It is replaced atomically — write a temp file, `sync_data` it,
//! `rename` it over the old one, fsync the directory — so a crash leaves either the old offset
//! or the new one, never a half-written number.
//!
//! ```text
//!   consumer.p0.offset.tmp ──sync_data──▶ rename ──▶ consumer.p0.offset ──▶ fsync broker/
//! ```
//!
//! The consumer commits an offset only *after* applying the records before it, so a crash in
//! between redelivers them (at-least-once) and its inbox absorbs the repeats. Committing first
//! would lose them instead. A real broker (Kafka) stores offsets as records in an internal
//! compacted topic (`__consumer_offsets`), replicated like any other; here one file each.
//!
//! One committer per (group, partition) at a time: the temp file's name is fixed, so two
//! concurrent committers could interleave. The lab's consumer is one process.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{MAX_LINE_BYTES, verify_line};

use super::writer::sync_dir;
use crate::error::{Context, Error, Result};

/// `broker_dir/{group}.p{N}.offset`.
pub fn offset_path(broker_dir: &Path, group: &str, partition: u32) -> PathBuf {
    assert_group_name(group);
    broker_dir.join(format!("{group}.p{partition}.offset"))
}

/// A consumer group's committed position in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommittedPosition {
    /// Where reading resumes: the byte after the last applied record.
    pub next_offset_bytes: u64,
    /// The record that ends at `next_offset_bytes`; `None` at 0, or in a file written before
    /// positions named their record.
    pub after: Option<RecordMark>,
}

/// One record, named by where it starts and the CRC-32 of its JSON (as in its header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMark {
    pub offset_bytes: u64,
    pub crc32: u32,
}

/// The committed offset of `group` in `partition`; 0 if it never committed.
pub fn read_offset(broker_dir: &Path, group: &str, partition: u32) -> Result<u64> {
    read_position(broker_dir, group, partition).map(|p| p.next_offset_bytes)
}

/// The committed position of `group` in `partition`; offset 0 if it never committed.
pub fn read_position(broker_dir: &Path, group: &str, partition: u32) -> Result<CommittedPosition> {
    let path = offset_path(broker_dir, group, partition);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(CommittedPosition::default()),
        Err(e) => return Err(e).ctx(format!("reading offset file {}", path.display())),
    };
    parse_position(&text).map_err(|why| Error::Corrupt {
        file: path.clone(),
        offset_bytes: 0,
        reason: format!("offset file holds {text:?}, not `<offset> [<record start> <crc>]`: {why}"),
    })
}

fn parse_position(text: &str) -> std::result::Result<CommittedPosition, String> {
    let fields: Vec<&str> = text.trim_end_matches('\n').split(' ').collect();
    let number = |s: &str| s.parse::<u64>().map_err(|e| format!("{s:?}: {e}"));
    match fields[..] {
        [next] => Ok(CommittedPosition {
            next_offset_bytes: number(next)?,
            after: None,
        }),
        [next, start, crc] => {
            let position = CommittedPosition {
                next_offset_bytes: number(next)?,
                after: Some(RecordMark {
                    offset_bytes: number(start)?,
                    crc32: u32::from_str_radix(crc, 16).map_err(|e| format!("{crc:?}: {e}"))?,
                }),
            };
            match position.after {
                Some(mark) if mark.offset_bytes >= position.next_offset_bytes => {
                    Err("the record starts after the offset".into())
                }
                _ => Ok(position),
            }
        }
        _ => Err(format!("{} fields", fields.len())),
    }
}

/// Replace the committed offset of `group` in `partition` with `offset_bytes`, durably,
/// naming no record (tools and tests; the consumer commits a [`CommittedPosition`]).
pub fn commit_offset(
    broker_dir: &Path,
    group: &str,
    partition: u32,
    offset_bytes: u64,
) -> Result<()> {
    let position = CommittedPosition {
        next_offset_bytes: offset_bytes,
        after: None,
    };
    commit_position(broker_dir, group, partition, &position)
}

/// Replace the committed position of `group` in `partition`, durably.
pub fn commit_position(
    broker_dir: &Path,
    group: &str,
    partition: u32,
    position: &CommittedPosition,
) -> Result<()> {
    let path = offset_path(broker_dir, group, partition);
    let tmp_path = path.with_extension("offset.tmp");
    let mut tmp = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp_path)
        .ctx(format!("creating {}", tmp_path.display()))?;
    let text = match position.after {
        Some(mark) => format!(
            "{} {} {:08x}\n",
            position.next_offset_bytes, mark.offset_bytes, mark.crc32
        ),
        None => format!("{}\n", position.next_offset_bytes),
    };
    tmp.write_all(text.as_bytes())
        .ctx(format!("writing {}", tmp_path.display()))?;
    // The bytes must be on disk before the rename makes them the offset: otherwise a power
    // cut could leave the new name pointing at an empty file.
    tmp.sync_data()
        .ctx(format!("syncing {}", tmp_path.display()))?;
    drop(tmp);
    fs::rename(&tmp_path, &path).ctx(format!(
        "renaming {} to {}",
        tmp_path.display(),
        path.display()
    ))?;
    // The rename lives in the directory: sync it, or a power cut could undo the commit.
    sync_dir(broker_dir)
}

/// Check, before resuming, that the log at `log_path` still holds the record `position` names,
/// exactly where it was. A mismatch is `Error::Corrupt` and loud: resuming would skip (or
/// misread) whatever now sits at the offset.
pub fn check_position(log_path: &Path, position: &CommittedPosition) -> Result<()> {
    let next = position.next_offset_bytes;
    let Some(mark) = position.after else {
        return Ok(()); // nothing named: offset 0, or an older offset file
    };
    let mismatch = |found: String| Error::Corrupt {
        file: log_path.to_path_buf(),
        offset_bytes: mark.offset_bytes,
        reason: format!(
            "the consumer's committed position {next} ends after a record here with CRC {:08x}, \
             but the log {found}: records already applied are gone or changed; refusing to \
             resume there (that could skip events silently)",
            mark.crc32
        ),
    };
    let line_bytes = next - mark.offset_bytes;
    if line_bytes as usize > MAX_LINE_BYTES {
        return Err(mismatch(format!(
            "could not hold a {line_bytes}-byte record"
        )));
    }
    let file = File::open(log_path).ctx(format!("opening {}", log_path.display()))?;
    let mut line = vec![0u8; line_bytes as usize];
    match file.read_exact_at(&mut line, mark.offset_bytes) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            return Err(mismatch(format!("is only {len} bytes long")));
        }
        Err(e) => return Err(e).ctx(format!("reading {}", log_path.display())),
    }
    if line.pop() != Some(b'\n') {
        return Err(mismatch("has no record boundary at the offset".into()));
    }
    match verify_line(&line) {
        Ok(json) if crc32fast::hash(json) == mark.crc32 => Ok(()),
        Ok(json) => Err(mismatch(format!(
            "holds a different record there (CRC {:08x})",
            crc32fast::hash(json)
        ))),
        Err(why) => Err(mismatch(format!("holds a bad line there ({why})"))),
    }
}

/// Group names become file names: keep them to `[A-Za-z0-9_-]`, so no path tricks and no dots
/// to confuse with `.p{N}.offset`.
fn assert_group_name(group: &str) {
    assert!(
        !group.is_empty()
            && group
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "consumer group name {group:?} must be non-empty [A-Za-z0-9_-]"
    );
}
