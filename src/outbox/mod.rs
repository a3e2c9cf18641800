//! The outbox: events written in the same transaction as the business change, shipped later.
//!
//! ```text
//!   order service ── BEGIN IMMEDIATE ──▶ INSERT orders … ; INSERT outbox … ──▶ COMMIT
//!                                        (both rows, or neither: one local transaction)
//!   relay ── UPDATE outbox SET lease… WHERE id IN (unpublished, unleased, head of its order)
//!            RETURNING …                 (the claim: SQLite's FOR UPDATE SKIP LOCKED)
//!        ── append + sync_data ──▶ log ── UPDATE … SET published_at_us WHERE lease still ours
//! ```
//!
//! The dual-write problem is that "commit the order" and "publish the event" are two systems
//! that cannot share a transaction. The outbox turns the second into a row in the first
//! system, so one local commit decides both; publishing becomes a retryable copy job.

pub mod claim;
pub mod cleanup;
pub mod layout;
pub mod schema;
pub mod segments;
pub mod write;

pub use claim::{
    Claim, ClaimedRow, MAX_CLOCK_SKEW_MS, claim_batch, mark_published, release_unshipped,
    unpublished_count,
};
pub use layout::Layout;
pub use write::insert_event;
