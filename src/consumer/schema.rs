//! The schema of `consumer.db`: the inbox (dedupe), the effect ledger and the state it drives.
//!
//! The story: a loyalty-points service. Each `OrderPlaced` credits the customer one point per
//! whole dollar. Applying an event twice inflates a balance anyone can see, so `effects` has NO
//! unique constraint on `event_id`: a double application is physically possible and visible,
//! and only the inbox — in the same transaction — prevents it.

use std::path::Path;

use crate::db::{self, Synchronous};
use crate::error::{Context, Result};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inbox (
    event_id        TEXT PRIMARY KEY,
    processed_at_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS effects (
    id            INTEGER PRIMARY KEY,
    event_id      TEXT NOT NULL,          -- deliberately not UNIQUE: see above
    aggregate_id  TEXT NOT NULL,
    aggregate_seq INTEGER NOT NULL,
    event_type    TEXT NOT NULL,
    applied_at_us INTEGER NOT NULL,
    created_at_us INTEGER NOT NULL,       -- when the event was committed: latency = applied - created
    customer      TEXT,
    points        INTEGER NOT NULL,
    partition     INTEGER NOT NULL,
    offset_bytes  INTEGER NOT NULL        -- where in the log the applied copy was
);
CREATE INDEX IF NOT EXISTS effects_by_event ON effects (event_id);
CREATE TABLE IF NOT EXISTS points (
    customer TEXT PRIMARY KEY,
    balance  INTEGER NOT NULL
);
-- Counters updated in the same transaction as what they count.
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

pub fn create(path: &Path) -> Result<()> {
    // FULL: init runs once; nothing to gain from weaker durability.
    let conn = db::create(path, Synchronous::Full)?;
    ensure(&conn).ctx(format!("creating schema in {}", path.display()))
}

/// Every table and index, created if missing: `init` calls it, and so does the consumer at
/// start, so a consumer.db made by an older version gains the seq guard and the sweep index.
pub fn ensure(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(super::guard::SCHEMA)?;
    conn.execute_batch(super::parking::SCHEMA)?;
    conn.execute_batch(super::retention::SCHEMA)
}

/// The rows of `counters`, each bumped in the same transaction as what it counts. The checker
/// reads them by these names, so both sides use this enum and a typo fails to compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    Applied,
    /// A copy the inbox recognised and skipped.
    SkippedDuplicate,
    /// A stale copy the per-aggregate seq guard dropped.
    DroppedBySeqGuard,
    /// An event older than the inbox's retention: its copies may no longer be recognised.
    TooOldForInbox,
    /// An event whose seq skipped ahead of the aggregate's last applied one.
    SeqGap,
    /// Inbox rows removed by the sweep.
    InboxSwept,
    /// Events held back (refused by a rule, or behind a refused one): see `parking`.
    Parked,
    /// Parked events an operator released with `--skip`: never applied.
    SkippedPoison,
}

impl Counter {
    /// The `counters.name` on disk.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Applied => "applied",
            Counter::SkippedDuplicate => "skipped_duplicate",
            Counter::DroppedBySeqGuard => "dropped_by_seq_guard",
            Counter::TooOldForInbox => "too_old_for_inbox",
            Counter::SeqGap => "seq_gap",
            Counter::InboxSwept => "inbox_swept",
            Counter::Parked => "parked",
            Counter::SkippedPoison => "skipped_poison",
        }
    }
}
