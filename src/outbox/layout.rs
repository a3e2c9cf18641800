//! Which shape the outbox has on disk, read once when a process opens `orders.db`.
//!
//! ```text
//!   Layout::Single       one `outbox` table (AUTOINCREMENT ids); cleaned by batched deletes
//!   Layout::Partitioned  `outbox_seg_N` tables behind an `outbox` view ([`super::segments`]);
//!                        cleaned by dropping whole segments
//! ```
//!
//! The layout is chosen at `init`, on an empty outbox, and never changes after rows exist
//! ([`choose`] refuses), so a process reads it once ([`Layout::of`]) and hands the value to
//! every insert, claim and mark: one `sqlite_schema` lookup per process, not one per
//! statement. (Switching the layout of an *empty* outbox under a running relay makes that
//! relay's next claim fail with an error naming the table — never a wrong write.)

use rusqlite::Connection;

use crate::error::{Context, Error, Result};
use crate::outbox::segments;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// One `outbox` table (the default): cleaned by batched deletes.
    Single,
    /// Segment tables `outbox_seg_N` behind an `outbox` view: cleaned by DROP TABLE.
    Partitioned,
}

impl Layout {
    /// The layout of the `orders.db` behind `conn`: one lookup in SQLite's schema.
    pub fn of(conn: &Connection) -> Result<Layout> {
        let partitioned: bool = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM sqlite_schema
                                 WHERE type = 'table' AND name = 'outbox_segments')",
            )
            .ctx("preparing layout lookup")?
            .query_row([], |r| r.get(0))
            .ctx("looking up the outbox layout")?;
        Ok(if partitioned {
            Layout::Partitioned
        } else {
            Layout::Single
        })
    }
}

/// `init`'s layout policy: `wanted` (None: keep what is there) applied to a fresh or existing
/// `orders.db`. Partitioning an empty single outbox is allowed (`segment_rows` per segment);
/// un-partitioning, or partitioning an outbox that holds rows, is refused with the reason.
pub fn choose(conn: &mut Connection, wanted: Option<Layout>, segment_rows: i64) -> Result<Layout> {
    match (wanted, Layout::of(conn)?) {
        (Some(Layout::Partitioned), _) => {
            segments::create_layout(conn, segment_rows)?;
            Ok(Layout::Partitioned)
        }
        (Some(Layout::Single), Layout::Partitioned) => Err(Error::Input(
            "the outbox is partitioned; refusing to switch it to a single table".into(),
        )),
        (_, found) => Ok(found),
    }
}
