//! Appending: the [`Broker`] a relay (or the naive service) writes through.
//!
//! ```text
//!   write(p, batch):  lock p (bounded wait) ─▶ recover from the durable end ─▶ ONE write() ─▶ unlock
//!   sync(p):          fdatasync p ─▶ publish the durable end  ← only now may readers see it
//! ```
//!
//! Many processes may append to one partition at once; each holds its own open file, and the
//! exclusive `flock` serialises them. The lock is what makes tail recovery safe: a writer only
//! cuts a bad last line while nobody else can be halfway through writing it. The file is opened
//! `O_APPEND`, so a write lands at the end even if another process grew the file since we
//! looked — belt and braces, since under the lock it cannot have.
//!
//! One `write()` per batch: a batch of 100 records is one syscall, and a crash mid-batch tears
//! at most the one line being written when it hit (see [`super::recover`]).
//!
//! A real broker (Kafka) has one leader per partition that appends in memory order, replicates
//! to followers, and calls a record committed once enough replicas have it. Here, one file per
//! partition on one disk; "committed" is `fdatasync` returning.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use super::durable::DurableEnd;
use super::lock::{LockWait, Locked};
use super::record::encode_record;
use super::tail::{Recovered, publish_recovered, recover_locked};
use super::{MAX_RECORD_BYTES, data_dir_of, log_path};
use crate::broker::sync_pool::SyncPool;
use crate::crashpoint::{self, Point};
use crate::error::{Context, Error, Result};

/// Where one `write` put its records: `first_offset_bytes..end_offset_bytes` in the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub partition: u32,
    /// Where the batch's first record starts.
    pub first_offset_bytes: u64,
    /// Where the batch ends: the file's length right after the append.
    pub end_offset_bytes: u64,
}

/// A sync started by [`Broker::sync_begin`]: wait for it with [`Broker::sync_wait`] before
/// telling anyone its partitions are durable. Dropping it unwaited is a caller bug (the
/// pool's results are counted, so the next wait would read this one's).
#[must_use = "a started sync must be waited for before anything is marked"]
#[derive(Debug)]
pub struct SyncInFlight {
    /// The partitions being synced, in the order given.
    pub partitions: Vec<u32>,
    /// Per partition, the end of our appends this sync covers: published as the durable end
    /// once it is done — never a later append's end, which this sync may not cover.
    ends_bytes: Vec<Option<u64>>,
    jobs: usize,
}

/// One per process: each partition's file held open for appending.
///
/// Invariants: `files.len()` is the partition count (> 0); a partition's `known_end_bytes` is
/// `Some` only right after this process's own successful append ended there; its
/// `unpublished_end_bytes` is the end of an append of ours not yet covered by a sync.
#[derive(Debug)]
pub struct Broker {
    files: Vec<PartitionFile>,
    /// The encoded batch, reused: no allocation per append on the hot path.
    buf: Vec<u8>,
    /// Started on the first `sync_parallel`.
    syncers: Option<SyncPool>,
}

#[derive(Debug)]
struct PartitionFile {
    path: PathBuf,
    file: File,
    /// Where our own last append ended. If the file is still exactly this long at the next
    /// append, the tail check is skipped: files only grow (by whole batches under the lock, or
    /// by a crashed writer's torn prefix) and only a torn tail is ever cut — never a whole
    /// record, so never below our end. Equal length therefore means nothing happened after us,
    /// and our last line is whole because our write returned.
    known_end_bytes: Option<u64>,
    /// The partition's durable end, published after each successful sync.
    durable: DurableEnd,
    /// Where our latest append ended, until a sync makes it the durable end.
    unpublished_end_bytes: Option<u64>,
}

impl Broker {
    /// Create `broker_dir` and every partition file (empty) if missing. Idempotent: an existing
    /// file is opened, never truncated.
    pub fn create(broker_dir: &Path, partitions: u32) -> Result<()> {
        assert!(partitions > 0, "Broker::create: partitions must be > 0");
        std::fs::create_dir_all(broker_dir).ctx(format!("creating {}", broker_dir.display()))?;
        for partition in 0..partitions {
            let path = log_path(broker_dir, partition);
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .ctx(format!("creating {}", path.display()))?;
            DurableEnd::create(broker_dir, partition)?;
        }
        // The new directory entries must survive a power cut too, or `open` would find a
        // partition missing after one.
        sync_dir(broker_dir)
    }

    /// Open every partition for appending. A missing directory or partition file is
    /// `Error::NotInitialised`, naming it.
    pub fn open(broker_dir: &Path, partitions: u32) -> Result<Broker> {
        assert!(partitions > 0, "Broker::open: partitions must be > 0");
        if !broker_dir.is_dir() {
            return Err(Error::NotInitialised {
                dir: data_dir_of(broker_dir),
                reason: format!("broker directory {} is missing", broker_dir.display()),
            });
        }
        let files = (0..partitions)
            .map(|partition| PartitionFile::open(broker_dir, partition))
            .collect::<Result<Vec<_>>>()?;
        Ok(Broker {
            files,
            buf: Vec::with_capacity(64 * 1024),
            syncers: None,
        })
    }

    pub fn partitions(&self) -> u32 {
        self.files.len() as u32
    }

    /// Append `records` (each a JSON byte string without '\n') to one partition, in order,
    /// with ONE `write()`: lock, recover from the durable end, write, unlock. NOT durable (nor
    /// visible to consumers) until [`sync`]. Waits for the lock at most
    /// [`super::DEFAULT_LOCK_WAIT_MS`]; see [`Broker::write_within`].
    ///
    /// Errors: a record over [`MAX_RECORD_BYTES`] (`Error::Input`, nothing written); a corrupt
    /// line before the durable end (`Error::Corrupt`: the writer refuses to append after it);
    /// the lock busy for the whole wait (`Error::LockBusy`, nothing written); I/O errors.
    ///
    /// Crash point `broker.torn_append`: writes the first half of the first record, then dies.
    ///
    /// [`sync`]: Broker::sync
    pub fn write(&mut self, partition: u32, records: &[&[u8]]) -> Result<Appended> {
        self.write_within(partition, records, &LockWait::patient())
    }

    /// [`write`](Broker::write), waiting for the partition's append lock as `wait` says.
    pub fn write_within(
        &mut self,
        partition: u32,
        records: &[&[u8]],
        wait: &LockWait<'_>,
    ) -> Result<Appended> {
        assert!(
            partition < self.partitions(),
            "Broker::write: partition {partition} out of range (partitions = {})",
            self.partitions()
        );
        assert!(
            !records.is_empty(),
            "Broker::write: an empty batch is a caller bug"
        );
        self.encode(partition, records)?;

        let p = &mut self.files[partition as usize];
        let known_end_bytes = p.known_end_bytes.take(); // trusted again only if we finish
        let _lock = Locked::exclusive_within(&p.file, &p.path, wait)?;
        let first_offset_bytes =
            recover_locked(&p.file, &p.path, &p.durable, known_end_bytes)?.good_end_bytes;

        if crashpoint::due(Point::BrokerTornAppend) {
            tear(&p.file, &self.buf);
        }
        if let Err(e) = (&p.file).write_all(&self.buf) {
            // A short write (disk full) leaves a torn tail. Cut it now, best effort; if that
            // fails too, the next writer's tail check cuts it.
            let _ = p.file.set_len(first_offset_bytes);
            return Err(e).ctx(format!(
                "appending {} records ({} bytes) to {}",
                records.len(),
                self.buf.len(),
                p.path.display()
            ));
        }
        let end_offset_bytes = first_offset_bytes + self.buf.len() as u64;
        p.known_end_bytes = Some(end_offset_bytes);
        p.unpublished_end_bytes = Some(end_offset_bytes);
        Ok(Appended {
            partition,
            first_offset_bytes,
            end_offset_bytes,
        })
    }

    /// Make everything appended to `partition` so far durable, then publish our append's end
    /// as the partition's durable end: from now on consumers may read up to it.
    pub fn sync(&mut self, partition: u32) -> Result<()> {
        assert!(
            partition < self.partitions(),
            "Broker::sync: partition {partition} out of range (partitions = {})",
            self.partitions()
        );
        let p = &self.files[partition as usize];
        // fdatasync, not fsync: the data and the file length must reach the disk; mtime need not.
        p.file
            .sync_data()
            .ctx(format!("syncing {}", p.path.display()))?;
        self.publish(partition)
    }

    /// After a successful sync only: our append's end becomes the durable end. Our own end,
    /// never the file's length: another writer may be halfway through its `write()` right now,
    /// and a durable end must sit on a record boundary that a sync covered.
    fn publish(&mut self, partition: u32) -> Result<()> {
        let p = &mut self.files[partition as usize];
        if let Some(end_bytes) = p.unpublished_end_bytes {
            p.durable.publish(end_bytes, &LockWait::patient())?;
            p.unpublished_end_bytes = None;
        }
        Ok(())
    }

    /// Recover one partition outside the append path: verify everything past its durable end,
    /// cut at the first bad byte, sync, and publish the verified end. A writer restarting after
    /// a crash or power cut calls this for every partition, so that records that survived a cut
    /// whole become readable even if nobody appends to that partition again.
    pub fn recover_partition(&mut self, partition: u32, wait: &LockWait<'_>) -> Result<u64> {
        assert!(
            partition < self.partitions(),
            "Broker::recover_partition: partition {partition} out of range"
        );
        let p = &mut self.files[partition as usize];
        p.known_end_bytes = None;
        let _lock = Locked::exclusive_within(&p.file, &p.path, wait)?;
        let recovered: Recovered = recover_locked(&p.file, &p.path, &p.durable, None)?;
        publish_recovered(&p.file, &p.path, &p.durable, &recovered, wait)?;
        Ok(recovered.cut_bytes)
    }

    /// [`sync`](Broker::sync) several partitions at once, on the broker's syncer threads, and
    /// return only when every one of them is durable (the first error, if any). Why: fdatasync
    /// of different files can share one journal commit and overlap in the device, so four
    /// syncs in parallel take less than four in turn (see `bench relay`). Nothing is
    /// durable-and-reported before all are: callers still mark only after this returns Ok.
    pub fn sync_parallel(&mut self, partitions: &[u32]) -> Result<()> {
        if partitions.len() <= 1 {
            return partitions.iter().try_for_each(|p| self.sync(*p));
        }
        for partition in partitions {
            assert!(
                *partition < self.partitions(),
                "Broker::sync_parallel: partition {partition} out of range"
            );
        }
        let threads = self.files.len();
        let pool = self.syncers.get_or_insert_with(|| SyncPool::start(threads));
        let files = &self.files;
        pool.sync_all(partitions.iter().map(|p| {
            let p = &files[*p as usize];
            (&p.file, &p.path)
        }))?;
        partitions.iter().try_for_each(|p| self.publish(*p))
    }

    /// Start syncing `partitions` on the syncer threads and return at once, so the caller can
    /// claim and append its next batch meanwhile. Nothing is durable until
    /// [`sync_wait`](Broker::sync_wait) returns Ok for this very [`SyncInFlight`]; what it
    /// covers is what was written to those partitions before this call (a sync may also
    /// cover later bytes, which is harmless), and only that becomes their durable end. One
    /// sync in flight per broker at a time.
    pub fn sync_begin(&mut self, partitions: &[u32]) -> Result<SyncInFlight> {
        assert!(
            !partitions.is_empty(),
            "Broker::sync_begin: no partition to sync is a caller bug"
        );
        for partition in partitions {
            assert!(
                *partition < self.partitions(),
                "Broker::sync_begin: partition {partition} out of range"
            );
        }
        let threads = self.files.len();
        let pool = self.syncers.get_or_insert_with(|| SyncPool::start(threads));
        let files = &mut self.files;
        let ends_bytes = partitions
            .iter()
            .map(|p| files[*p as usize].unpublished_end_bytes.take())
            .collect();
        let jobs = pool.submit(partitions.iter().map(|p| {
            let p = &files[*p as usize];
            (&p.file, &p.path)
        }))?;
        Ok(SyncInFlight {
            partitions: partitions.to_vec(),
            ends_bytes,
            jobs,
        })
    }

    /// Wait until the sync `in_flight` started is done, then publish each partition's durable
    /// end as it stood at [`sync_begin`](Broker::sync_begin): Ok means they are durable and
    /// readable.
    pub fn sync_wait(&mut self, in_flight: SyncInFlight) -> Result<()> {
        let pool = self.syncers.as_ref().expect("sync_begin started the pool");
        pool.wait(in_flight.jobs)?;
        for (partition, end_bytes) in in_flight.partitions.iter().zip(in_flight.ends_bytes) {
            if let Some(end_bytes) = end_bytes {
                let p = &mut self.files[*partition as usize];
                p.durable.publish(end_bytes, &LockWait::patient())?;
            }
        }
        Ok(())
    }

    /// [`write`](Broker::write) then [`sync`](Broker::sync): for callers that append one batch
    /// at a time and need it durable before going on (the naive service).
    pub fn append_durable(&mut self, partition: u32, records: &[&[u8]]) -> Result<Appended> {
        let appended = self.write(partition, records)?;
        self.sync(partition)?;
        Ok(appended)
    }

    /// Encode the batch into `self.buf`. Oversized records are bad input, not a bug: an order's
    /// payload comes from a user.
    fn encode(&mut self, partition: u32, records: &[&[u8]]) -> Result<()> {
        self.buf.clear();
        for (i, json) in records.iter().enumerate() {
            if json.len() > MAX_RECORD_BYTES {
                return Err(Error::Input(format!(
                    "record {i} of a batch for partition {partition} is {} bytes; the limit is {MAX_RECORD_BYTES}",
                    json.len()
                )));
            }
            encode_record(json, &mut self.buf);
        }
        Ok(())
    }
}

impl PartitionFile {
    fn open(broker_dir: &Path, partition: u32) -> Result<PartitionFile> {
        let path = log_path(broker_dir, partition);
        // Read access too: the tail check reads the end of the file before appending.
        let file = match OpenOptions::new().read(true).append(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::NotInitialised {
                    dir: data_dir_of(broker_dir),
                    reason: format!("partition file {} is missing", path.display()),
                });
            }
            Err(e) => return Err(e).ctx(format!("opening {} for appending", path.display())),
        };
        Ok(PartitionFile {
            path,
            file,
            known_end_bytes: None,
            durable: DurableEnd::open(broker_dir, partition)?,
            unpublished_end_bytes: None,
        })
    }
}

/// The `broker.torn_append` crash: half of the first record, no '\n', then SIGKILL — what a
/// power cut or a kill mid-`write()` leaves behind.
fn tear(file: &File, encoded: &[u8]) -> ! {
    let first_line_bytes = encoded
        .iter()
        .position(|&b| b == b'\n')
        .expect("an encoded record ends in '\\n'")
        + 1;
    let cut_bytes = first_line_bytes / 2;
    assert!(
        cut_bytes > 0 && cut_bytes < first_line_bytes,
        "a torn append must cut inside the first line"
    );
    let _ = (&*file).write_all(&encoded[..cut_bytes]);
    crashpoint::die(Point::BrokerTornAppend)
}

/// fsync a directory, so that entries created or renamed in it survive a power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(format!("syncing directory {}", dir.display()))
}
