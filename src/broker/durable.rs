//! Each partition's **durable end**: how far its log is known to survive a power cut.
//!
//! A process kill keeps the kernel's page cache; a power cut does not. Bytes a relay appended
//! but has not yet `fdatasync`ed are readable by every process, yet may vanish (or come back
//! as zeros, or half) after a power cut. So a reader must not act on them, and a writer that
//! restarts after a cut must treat everything past the last synced byte as suspect. The
//! durable end is that line, published per partition **only after** a successful
//! `sync_data()` — Kafka's high-water mark, for one disk instead of a replica set:
//!
//! ```text
//!   orders.p0.log:  [rec][rec][rec][rec][rec]│[rec][rec][to
//!                                            ▲ durable end        ▲ length
//!                   consumers read up to here│ un-synced: may vanish in a power cut
//!
//!   orders.p0.durable (554 bytes, two slots, rewritten in place, never synced):
//!     byte   0: "<seq 16 hex> <end 16 hex> <crc 8 hex>\n"     slot A
//!     byte 512: "<seq 16 hex> <end 16 hex> <crc 8 hex>\n"     slot B
//!     the valid slot with the higher seq is the durable end; a publish writes the other one
//! ```
//!
//! Why two slots with a CRC, rewritten in place and not synced:
//!
//! * **Not synced, on purpose.** Syncing the watermark too would double the relay's fsyncs.
//!   A power cut can therefore give back an *older* durable end. That is conservative: the
//!   log bytes it no longer covers were synced, so they are still there and whole; readers
//!   just wait for them a little longer, and the next writer re-verifies them and publishes
//!   again. A durable end can never come back *newer* than a sync made true.
//! * **Two slots, each with a CRC.** A publish rewrites one slot in place; a cut (or a reader
//!   racing the write) may see that slot half-written. Its CRC then fails and the other slot,
//!   one publish older, is used: again conservative. The slots sit in different 512-byte
//!   sectors, so one torn sector can damage at most one of them.
//! * **Monotone, under a lock of its own.** Several relays publish; each takes the file's own
//!   `flock` (never the log's append lock, which a stuck writer may hold) and only ever moves
//!   the end forward, to the end of *its own* append: a record boundary it knows is whole.
//! * **Why the publish lock cannot wedge anyone for long.** A publish holds this lock for one
//!   `pread` of the file and one `pwrite` of a slot: microseconds, never across a sync or an
//!   append. Only a process frozen inside that window (SIGSTOP, a debugger) holds it longer.
//!   A publisher behind it waits at most [`super::DEFAULT_LOCK_WAIT_MS`], stops at once on
//!   SIGTERM (the process's stop flag, see [`LockWait::patient`]), and otherwise fails with
//!   `LockBusy` naming the holder's pid. Nothing is lost that way: its records are synced but
//!   not yet visible, its rows stay unmarked, and their lease hands them to a relay that can
//!   publish (copies, which the inbox absorbs). Threading each caller's own budget through
//!   `sync()` would buy nothing more, since a frozen publisher stops every publish of its
//!   partition whoever waits.
//!
//! If both slots are unreadable the partition stops with `Error::Corrupt`: without a durable
//! end a writer cannot tell damaged synced bytes (stop) from a torn un-synced tail (cut).
//! A real broker (Kafka) keeps the high-water mark in the leader's memory and checkpoints it
//! to a file now and then; after a crash it, too, restarts from an older checkpoint.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::data_dir_of;
use super::lock::{LockWait, Locked};
use crate::error::{Context, Error, Result};

/// Where slot B starts: its own 512-byte sector.
const SLOT_B_OFFSET_BYTES: u64 = 512;
/// `<seq 16 hex> <end 16 hex> <crc 8 hex>\n`.
const SLOT_BYTES: usize = 16 + 1 + 16 + 1 + 8 + 1;
const FILE_BYTES: usize = SLOT_B_OFFSET_BYTES as usize + SLOT_BYTES;
/// A reader that finds both slots bad retries this often (a writer may be mid-`pwrite`).
const READ_ATTEMPTS: u32 = 5;

/// `broker_dir/orders.p{N}.durable`.
pub fn durable_path(broker_dir: &Path, partition: u32) -> PathBuf {
    broker_dir.join(format!("orders.p{partition}.durable"))
}

/// One partition's durable-end file, held open.
#[derive(Debug)]
pub struct DurableEnd {
    file: File,
    path: PathBuf,
}

/// One decoded slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    seq: u64,
    end_bytes: u64,
}

impl DurableEnd {
    /// Create the file with a durable end of 0 if it is missing; leave an existing one alone.
    /// Synced (file and directory): the file itself must survive a power cut, even though
    /// later publishes into it are not synced.
    pub(crate) fn create(broker_dir: &Path, partition: u32) -> Result<()> {
        let path = durable_path(broker_dir, partition);
        let file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(e).ctx(format!("creating {}", path.display())),
        };
        let mut bytes = vec![0u8; FILE_BYTES];
        bytes[..SLOT_BYTES].copy_from_slice(&encode(Slot {
            seq: 1,
            end_bytes: 0,
        }));
        bytes[SLOT_B_OFFSET_BYTES as usize..].copy_from_slice(&encode(Slot {
            seq: 0,
            end_bytes: 0,
        }));
        file.write_all_at(&bytes, 0)
            .ctx(format!("writing {}", path.display()))?;
        // Durable creation: a power cut must not leave the partition without its durable end.
        file.sync_data()
            .ctx(format!("syncing {}", path.display()))?;
        Ok(())
    }

    /// Open a partition's durable-end file. Missing: `Error::NotInitialised`.
    pub fn open(broker_dir: &Path, partition: u32) -> Result<DurableEnd> {
        DurableEnd::open_for_log(&super::log_path(broker_dir, partition))
    }

    /// The durable-end file of the log at `log_path` (`orders.pN.log` → `orders.pN.durable`).
    pub fn open_for_log(log_path: &Path) -> Result<DurableEnd> {
        let broker_dir = log_path.parent().unwrap_or(Path::new("."));
        let path = log_path.with_extension("durable");
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::NotInitialised {
                    dir: data_dir_of(broker_dir),
                    reason: format!("durable-end file {} is missing", path.display()),
                });
            }
            Err(e) => return Err(e).ctx(format!("opening {}", path.display())),
        };
        Ok(DurableEnd { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The partition's durable end in bytes: every byte before it has been synced.
    pub fn read(&self) -> Result<u64> {
        self.read_slot().map(|slot| slot.end_bytes)
    }

    /// Move the durable end forward to `end_bytes` (never back). Call only after a successful
    /// `sync_data()` of the log covering `end_bytes`, with `end_bytes` a record boundary.
    /// Returns the durable end now in force.
    pub fn publish(&self, end_bytes: u64, wait: &LockWait<'_>) -> Result<u64> {
        let _lock = Locked::exclusive_within(&self.file, &self.path, wait)?;
        let current = self.read_slot()?;
        if end_bytes <= current.end_bytes {
            return Ok(current.end_bytes);
        }
        self.write_slot(Slot {
            seq: current.seq + 1,
            end_bytes,
        })?;
        Ok(end_bytes)
    }

    /// Set the durable end to `end_bytes` even if that is *older*: what a power cut can do to
    /// this un-synced file. For the lab's power cuts (and tests), never the pipeline.
    pub fn rewind_to(&self, end_bytes: u64) -> Result<()> {
        let _lock = Locked::exclusive_within(&self.file, &self.path, &LockWait::patient())?;
        let current = self.read_slot()?;
        self.write_slot(Slot {
            seq: current.seq + 1,
            end_bytes,
        })
    }

    fn write_slot(&self, slot: Slot) -> Result<()> {
        // Alternate by seq: the slot written is never the one holding the newest valid value.
        let at_bytes = if slot.seq % 2 == 1 {
            0
        } else {
            SLOT_B_OFFSET_BYTES
        };
        // Not synced: see the module docs for why an older value after a cut is safe.
        self.file.write_all_at(&encode(slot), at_bytes).ctx(format!(
            "publishing the durable end in {}",
            self.path.display()
        ))
    }

    fn read_slot(&self) -> Result<Slot> {
        let mut last_reason = String::new();
        for attempt in 0..READ_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let mut bytes = vec![0u8; FILE_BYTES];
            let n = read_up_to(&self.file, &mut bytes)
                .ctx(format!("reading {}", self.path.display()))?;
            bytes.truncate(n);
            let a = bytes.get(..SLOT_BYTES).and_then(decode);
            let b = bytes.get(SLOT_B_OFFSET_BYTES as usize..).and_then(decode);
            match (a, b) {
                (Some(a), Some(b)) => return Ok(if a.seq >= b.seq { a } else { b }),
                (Some(slot), None) | (None, Some(slot)) => return Ok(slot),
                (None, None) => last_reason = format!("both slots unreadable ({n} bytes)"),
            }
        }
        Err(Error::Corrupt {
            file: self.path.clone(),
            offset_bytes: 0,
            reason: format!(
                "{last_reason}: the partition's durable end is unknown, so a damaged synced \
                 record could not be told from a torn un-synced tail; refusing to guess"
            ),
        })
    }
}

fn read_up_to(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn encode(slot: Slot) -> [u8; SLOT_BYTES] {
    let body = format!("{:016x} {:016x}", slot.seq, slot.end_bytes);
    let line = format!("{body} {:08x}\n", crc32fast::hash(body.as_bytes()));
    line.into_bytes()
        .try_into()
        .expect("a slot line is SLOT_BYTES long")
}

fn decode(bytes: &[u8]) -> Option<Slot> {
    let bytes = bytes.get(..SLOT_BYTES)?;
    if !bytes.is_ascii() {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let (body, rest) = text.split_at(33);
    let crc = rest.strip_prefix(' ')?.strip_suffix('\n')?;
    if u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(body.as_bytes()) {
        return None;
    }
    let (seq, end) = body.split_once(' ')?;
    Some(Slot {
        seq: u64::from_str_radix(seq, 16).ok()?,
        end_bytes: u64::from_str_radix(end, 16).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip_and_a_flipped_byte_is_rejected() {
        let slot = Slot {
            seq: 7,
            end_bytes: 123_456,
        };
        let mut bytes = encode(slot);
        assert_eq!(decode(&bytes), Some(slot));
        bytes[20] ^= 1;
        assert_eq!(decode(&bytes), None);
        assert_eq!(
            decode(&[0u8; SLOT_BYTES]),
            None,
            "a zeroed slot is not a value"
        );
    }
}
