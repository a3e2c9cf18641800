//! The consumer group's committed offsets: where each partition's reading resumes.
//!
//! One small text file per (group, partition), `broker_dir/{group}.p{N}.offset`, holding a
//! byte offset in decimal. It is replaced atomically — write a temp file, `sync_data` it,
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

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use super::writer::sync_dir;
use crate::error::{Context, Error, Result};

/// `broker_dir/{group}.p{N}.offset`.
pub fn offset_path(broker_dir: &Path, group: &str, partition: u32) -> PathBuf {
    assert_group_name(group);
    broker_dir.join(format!("{group}.p{partition}.offset"))
}

/// The committed offset of `group` in `partition`; 0 if it never committed.
pub fn read_offset(broker_dir: &Path, group: &str, partition: u32) -> Result<u64> {
    let path = offset_path(broker_dir, group, partition);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).ctx(format!("reading offset file {}", path.display())),
    };
    text.trim_end_matches('\n')
        .parse::<u64>()
        .map_err(|e| Error::Corrupt {
            file: path.clone(),
            offset_bytes: 0,
            reason: format!(
                "offset file holds {:?}, not a decimal byte offset: {e}",
                text
            ),
        })
}

/// Replace the committed offset of `group` in `partition` with `offset_bytes`, durably.
pub fn commit_offset(
    broker_dir: &Path,
    group: &str,
    partition: u32,
    offset_bytes: u64,
) -> Result<()> {
    let path = offset_path(broker_dir, group, partition);
    let tmp_path = path.with_extension("offset.tmp");
    let mut tmp = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp_path)
        .ctx(format!("creating {}", tmp_path.display()))?;
    tmp.write_all(format!("{offset_bytes}\n").as_bytes())
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
