//! The broker: an append-only file log, one file per partition.
//!
//! Relays append events here; the consumer reads them back from an offset. The broker knows
//! nothing of SQLite or of what an event means: it stores JSON byte strings as *records*, one
//! per line, each behind a CRC so that a half-written or damaged line is always noticed.
//!
//! ```text
//!   broker/                                   one line = one record:
//!     orders.p0.log ─┐                        ┌──────────┬─┬────────────────────┬──┐
//!     orders.p1.log  │ append-only,           │ 1a2b3c4d │ │ {"event_id":…}     │\n│
//!     orders.p2.log  │ one per partition      └──────────┴─┴────────────────────┴──┘
//!     orders.p3.log ─┘                          CRC-32 of   SP  the JSON (no '\n')
//!     orders.p0.durable   ← synced up to here     the JSON,
//!     consumer.p0.offset  ← the consumer          8 lowercase hex
//!     …                     group's cursor
//!
//!   orders.p0.log:  [rec 0][rec 1][rec 2] … [rec n-1][torn?]
//!                   ▲                       ▲         ▲
//!                   offset 0                │         └ a crashed writer's half line:
//!                   (offsets are bytes)     │           cut by the next writer, skipped
//!                                           │           (never cut) by readers
//!                             committed offset: where the consumer resumes
//! ```
//!
//! Why these choices:
//!
//! * **Partitions by CRC-32 of the aggregate id.** All events of one order land in one file, in
//!   the order they were appended, so per-order ordering survives while partitions spread the
//!   load. The hash must be the same in every process and every version of the program (std's
//!   `HashMap` hasher is randomly seeded), so it is CRC-32, the same function that guards records.
//! * **Offsets are byte positions**, not record numbers: a reader can seek straight to one
//!   without an index. A real broker (Kafka) numbers records and keeps a sparse index from
//!   record number to byte position per segment; here one byte offset is both.
//! * **One `write()` per batch under an exclusive file lock.** Several relays (processes) may
//!   append to the same partition; the lock keeps their batches whole and lets a writer look at
//!   the tail, and cut a torn one, before anyone appends after it. A real broker has one leader
//!   per partition that serialises appends in memory; this one lets the kernel's `flock` do it.
//! * **Appending and syncing are separate steps.** [`Broker::write`] is not durable; only
//!   [`Broker::sync`] (`fdatasync`) is. The relay appends a batch, syncs, and only then marks
//!   the rows published: one fsync per batch, not per event.
//! * **A durable end per partition** (`orders.pN.durable`, see [`DurableEnd`]), published after
//!   each successful sync: consumers read only up to it ([`LogReader::read_durable`]), because
//!   a power cut can take back anything after it (a kill cannot; the page cache survives).
//! * **Recovery from the durable end; corruption is not cut.** Before appending, a writer
//!   checks every line past the durable end and cuts at the first bad byte (a torn line, a
//!   zeroed page, garbage: see [`recover`]). A bad line *before* the durable end cannot come
//!   from a crash or a power cut: it is corruption, reported with file and byte offset and
//!   never skipped. Readers never truncate.
//! * **Bounded lock waits.** A writer waits for a partition's lock only so long
//!   ([`LockWait`]), so a frozen holder costs its own partition, not everyone.
//!
//! What a real broker would add: replication (this is one file per partition, on one disk),
//! segments and retention (these files only grow), and a network protocol (here every process
//! opens the files itself).

mod durable;
mod lock;
mod offsets;
mod reader;
mod record;
mod sync_pool;
mod tail;
mod writer;

use std::path::{Path, PathBuf};

pub use durable::{DurableEnd, durable_path};
pub use lock::{DEFAULT_LOCK_WAIT_MS, LockWait, MAX_LOCK_WAIT_MS, holder_pid, set_process_stop};
pub use offsets::{
    CommittedPosition, RecordMark, check_position, commit_offset, commit_position, offset_path,
    read_offset, read_position,
};
pub use reader::{LogReader, RawRecord, Scan, scan, scan_each};
pub use record::encode_record;
pub use tail::recover;
pub use writer::{Appended, Broker, SyncInFlight};

/// How many partitions `init` creates unless told otherwise.
pub const DEFAULT_PARTITIONS: u32 = 4;

/// The largest JSON a record may carry. A longer line in a log is corruption: a limit on
/// everything keeps a damaged file from making a reader buffer gigabytes looking for a '\n'.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// The partition of an aggregate: CRC-32 (IEEE, as zlib computes it) of the key's bytes, mod
/// `partitions`. Stable across processes and versions, unlike std's randomly seeded hasher.
pub fn partition_of(aggregate_id: &str, partitions: u32) -> u32 {
    assert!(partitions > 0, "partition_of: partitions must be > 0");
    crc32fast::hash(aggregate_id.as_bytes()) % partitions
}

/// `broker_dir/orders.p{N}.log`: the file that holds partition N.
pub fn log_path(broker_dir: &Path, partition: u32) -> PathBuf {
    broker_dir.join(format!("orders.p{partition}.log"))
}

/// The data directory that holds `broker_dir` (`DIR/broker`): what `init --dir` takes, so
/// that a "not initialised" error tells the user the command that fixes it.
fn data_dir_of(broker_dir: &Path) -> PathBuf {
    match broker_dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
