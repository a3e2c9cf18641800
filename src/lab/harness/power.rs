//! Power cuts: what a cut does to the files, simulated honestly.
//!
//! A SIGKILL keeps the kernel's page cache: every byte a process wrote is still there. A power
//! cut loses whatever was not synced, and the lab cannot really pull the plug on this machine,
//! so it simulates the part it can know exactly. Call [`power_cut`] once every process of the
//! run has died (the harness SIGKILLs them all at once); then, for each partition log:
//!
//! ```text
//!   orders.pN.log  [ … synced, kept as is … ]│[ un-synced tail ]
//!                                  durable end▲  one of four shapes, drawn from the seed:
//!     whole    the tail reached the disk in full          (its records are real but unmarked)
//!     cut      the file ends at a random byte of the tail (a torn last line)
//!     zeroed   one 4 KiB page inside the tail reads as zeros (written out of order)
//!     garbage  the tail is replaced by random bytes of the same length
//!   orders.pN.durable  sometimes rewound to an older record boundary: the file is never
//!                      synced, so a cut may give back an older value (never a newer one)
//! ```
//!
//! The durable end in force when the processes died is the line: everything before it was
//! synced (it is published only after `sync_data()` returns), everything after it may not
//! have been. Treating all of the tail as un-synced is conservative: a relay that synced but
//! died before publishing loses bytes that a real disk would have kept, which costs a
//! republish, not a loss (no row is marked before its record is covered by a durable end).
//!
//! A durable end that came back older does not make the bytes it stopped covering any less
//! synced: a second cut before a writer has re-published them must not damage them. So the
//! lab remembers, per partition, the furthest end it knows was synced, in a file of its own
//! (`DIR/lab-synced-floor.txt`, read by nothing but this module), and cuts only past the
//! larger of that and the durable end on file.
//!
//! What is NOT simulated: SQLite. `orders.db` and `consumer.db` are left exactly as the
//! processes left them. What a real cut could undo there is written down in the docs, by
//! `synchronous` setting, and claimed for nothing here. Nor is `trace.jsonl` (a diagnostic).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use serde::Serialize;

use crate::broker::{self, DurableEnd};
use crate::datadir::DataDir;
use crate::error::{Context, Error, Result};

/// When the harness cuts the power: after the k-th committed order, for thresholds drawn
/// from the seed (so a run can be replayed up to the scheduling of its processes).
pub struct CutSchedule {
    /// Committed-order counts still to reach, smallest last (popped from the end).
    thresholds: Vec<u64>,
    /// Draws each cut's shapes; seeded from the run's seed.
    pub rng: fastrand::Rng,
    orders_db: Option<rusqlite::Connection>,
}

impl CutSchedule {
    pub fn from_seed(seed: u64, orders: u64, cuts: usize) -> CutSchedule {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x706f_7765_7263_7574); // "powercut"
        let mut thresholds: Vec<u64> = (0..cuts).map(|_| rng.u64(1..orders.max(2))).collect();
        thresholds.sort_unstable_by(|a, b| b.cmp(a));
        CutSchedule {
            thresholds,
            rng,
            orders_db: None,
        }
    }

    /// True when the next cut is due: enough orders have committed.
    pub fn due(&mut self, dir: &DataDir) -> Result<bool> {
        let Some(&next) = self.thresholds.last() else {
            return Ok(false);
        };
        if self.orders_db.is_none() {
            // Read-only: the lab watches, it never writes the pipeline's database.
            let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
            let conn = rusqlite::Connection::open_with_flags(dir.orders_db(), flags)
                .ctx("opening orders.db to time the power cuts")?;
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .ctx("setting a busy timeout")?;
            self.orders_db = Some(conn);
        }
        let conn = self.orders_db.as_ref().expect("opened above");
        let committed: i64 = conn
            .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
            .ctx("counting committed orders")?;
        if (committed as u64) < next {
            return Ok(false);
        }
        self.thresholds.pop();
        Ok(true)
    }
}

/// A page, as the disk writes it back.
pub const PAGE_BYTES: u64 = 4096;

/// What a cut did to the un-synced tail of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TailShape {
    /// Kept in full.
    Whole,
    /// The file ends at a random byte of the tail.
    Cut,
    /// One page of the tail reads as zeros.
    Zeroed,
    /// The tail is random bytes.
    Garbage,
}

impl TailShape {
    pub const ALL: [TailShape; 4] = [
        TailShape::Whole,
        TailShape::Cut,
        TailShape::Zeroed,
        TailShape::Garbage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TailShape::Whole => "whole",
            TailShape::Cut => "cut",
            TailShape::Zeroed => "zeroed",
            TailShape::Garbage => "garbage",
        }
    }
}

/// One partition after the cut.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionCut {
    pub partition: u32,
    /// The durable end in force when the processes died.
    pub durable_end_bytes: u64,
    /// The log's length then: `len_before_bytes - durable_end_bytes` is the un-synced tail.
    pub len_before_bytes: u64,
    /// `None` when there was no un-synced tail to damage.
    pub shape: Option<TailShape>,
    /// The bytes changed: `[start, end)` zeroed or garbled, or `start` where the file now ends.
    pub damaged_from_bytes: u64,
    pub damaged_to_bytes: u64,
    pub len_after_bytes: u64,
    /// Set when the durable-end file came back older: the value it now holds.
    pub durable_end_rewound_to: Option<u64>,
}

/// What one power cut did, partition by partition.
#[derive(Debug, Clone, Serialize)]
pub struct PowerCutReport {
    /// When the tails were rewritten (µs since the epoch, on the trace's clock): where the
    /// run's timeline draws the cut.
    pub at_us: i64,
    pub partitions: Vec<PartitionCut>,
}

/// Simulate a power cut on the files of `dir`, every shape drawn from `rng`. Every process
/// of the run must already be dead (nothing may append while the tails are rewritten).
pub fn power_cut(dir: &DataDir, rng: &mut fastrand::Rng) -> Result<PowerCutReport> {
    refuse_live_writers(dir)?;
    let mut partitions = Vec::new();
    for partition in 0..dir.partitions {
        let shape = TailShape::ALL[rng.usize(..TailShape::ALL.len())];
        // One cut in four also gives back an older durable end.
        let rewind = rng.u8(..4) == 0;
        partitions.push(cut_partition(dir, partition, shape, rewind, rng)?);
    }
    Ok(PowerCutReport {
        at_us: crate::clock::now_us(),
        partitions,
    })
}

/// One partition's cut, with the shape chosen by the caller (tests force each shape).
pub fn cut_partition(
    dir: &DataDir,
    partition: u32,
    shape: TailShape,
    rewind: bool,
    rng: &mut fastrand::Rng,
) -> Result<PartitionCut> {
    let broker_dir = dir.broker_dir();
    let path = broker::log_path(&broker_dir, partition);
    let durable = DurableEnd::open(&broker_dir, partition)?;
    let mut floors = read_floors(dir)?;
    let durable_end_bytes = durable.read()?.max(floors[partition as usize]);
    // Chosen before the damage: a boundary the log held when the processes died.
    let rewound_to = if rewind && durable_end_bytes > 0 {
        Some(older_boundary(&path, durable_end_bytes, rng)?)
    } else {
        None
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .ctx(format!("opening {} for a power cut", path.display()))?;
    // Held while the tail is rewritten (released when `file` closes).
    refuse_if_locked(&file, &path)?;
    let len_before_bytes = file
        .metadata()
        .ctx(format!("stat {}", path.display()))?
        .len();
    if len_before_bytes < durable_end_bytes {
        return Err(Error::Corrupt {
            file: path.clone(),
            offset_bytes: len_before_bytes,
            reason: format!(
                "before the power cut the log is shorter than the {durable_end_bytes} bytes known synced: something cut durable bytes"
            ),
        });
    }
    let tail_bytes = len_before_bytes - durable_end_bytes;
    let (from, to) = if tail_bytes == 0 {
        (len_before_bytes, len_before_bytes)
    } else {
        damage(
            &file,
            &path,
            durable_end_bytes,
            len_before_bytes,
            shape,
            rng,
        )?
    };
    if let Some(end) = rewound_to {
        durable.rewind_to(end)?;
    }
    floors[partition as usize] = durable_end_bytes;
    write_floors(dir, &floors)?;
    Ok(PartitionCut {
        partition,
        durable_end_bytes,
        len_before_bytes,
        shape: (tail_bytes > 0).then_some(shape),
        damaged_from_bytes: from,
        damaged_to_bytes: to,
        len_after_bytes: file
            .metadata()
            .ctx(format!("stat {}", path.display()))?
            .len(),
        durable_end_rewound_to: rewound_to,
    })
}

/// Before touching anything: no partition may be locked by a live writer. A power cut of a
/// live pipeline is not ours to fake, and a refusal must leave every file as it was.
pub fn refuse_live_writers(dir: &DataDir) -> Result<()> {
    for partition in 0..dir.partitions {
        let path = broker::log_path(&dir.broker_dir(), partition);
        let file = std::fs::File::open(&path).ctx(format!("opening {}", path.display()))?;
        refuse_if_locked(&file, &path)?; // unlocked as `file` closes
    }
    Ok(())
}

fn refuse_if_locked(file: &std::fs::File, path: &std::path::Path) -> Result<()> {
    match file.try_lock() {
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Input(format!(
            "{} is locked by a live writer: stop every process of the pipeline before a power cut",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Apply one shape to the tail `[durable_end, len)`; returns the damaged range.
fn damage(
    file: &std::fs::File,
    path: &std::path::Path,
    durable_end_bytes: u64,
    len_bytes: u64,
    shape: TailShape,
    rng: &mut fastrand::Rng,
) -> Result<(u64, u64)> {
    let what = format!("damaging the tail of {}", path.display());
    match shape {
        TailShape::Whole => Ok((len_bytes, len_bytes)),
        TailShape::Cut => {
            let at = rng.u64(durable_end_bytes..len_bytes);
            file.set_len(at).ctx(what)?;
            Ok((at, len_bytes))
        }
        TailShape::Zeroed => {
            let first_page = durable_end_bytes / PAGE_BYTES;
            let last_page = (len_bytes - 1) / PAGE_BYTES;
            let page = rng.u64(first_page..=last_page);
            let from = (page * PAGE_BYTES).max(durable_end_bytes);
            let to = ((page + 1) * PAGE_BYTES).min(len_bytes);
            file.write_all_at(&vec![0u8; (to - from) as usize], from)
                .ctx(what)?;
            Ok((from, to))
        }
        TailShape::Garbage => {
            let garbage: Vec<u8> = (durable_end_bytes..len_bytes).map(|_| rng.u8(..)).collect();
            file.write_all_at(&garbage, durable_end_bytes).ctx(what)?;
            Ok((durable_end_bytes, len_bytes))
        }
    }
}

/// A record boundary in `[0, durable_end)`, drawn at random: an older durable end the
/// (un-synced) watermark file could come back with.
fn older_boundary(
    path: &std::path::Path,
    durable_end_bytes: u64,
    rng: &mut fastrand::Rng,
) -> Result<u64> {
    let mut boundaries = vec![0];
    let mut reader = broker::LogReader::open(path)?;
    let records = reader.read_durable(0, usize::MAX, durable_end_bytes)?;
    boundaries.extend(
        records
            .iter()
            .map(|r| r.next_offset_bytes)
            .filter(|end| *end < durable_end_bytes),
    );
    Ok(boundaries[rng.usize(..boundaries.len())])
}

fn floor_path(dir: &DataDir) -> std::path::PathBuf {
    dir.root.join("lab-synced-floor.txt")
}

/// Per partition, the furthest end the lab knows was synced (0 when it knows nothing).
fn read_floors(dir: &DataDir) -> Result<Vec<u64>> {
    let path = floor_path(dir);
    let mut floors = vec![0; dir.partitions as usize];
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(floors),
        Err(e) => return Err(e).ctx(format!("reading {}", path.display())),
    };
    for (i, word) in text.split_whitespace().enumerate().take(floors.len()) {
        floors[i] = word
            .parse()
            .map_err(|e| Error::Input(format!("{}: {word:?}: {e}", path.display())))?;
    }
    Ok(floors)
}

fn write_floors(dir: &DataDir, floors: &[u64]) -> Result<()> {
    let text: Vec<String> = floors.iter().map(u64::to_string).collect();
    let path = floor_path(dir);
    std::fs::write(&path, text.join(" ") + "\n").ctx(format!("writing {}", path.display()))
}
