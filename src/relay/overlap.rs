//! The overlapped pass: the log's sync of one batch runs while the next batch is claimed and
//! appended. Marks still come only after their own batch's sync.
//!
//! ```text
//!   in turn:     claim N │ append N │ sync N ████ │ mark N │ claim N+1 │ append N+1 │ sync N+1 ████
//!   overlapped:  claim N │ append N │ ─ sync N ████ on the syncer threads ─┐
//!                                   │ claim N+1 │ append N+1 │ wait sync N ┘ │ mark N │
//!                                   └ sync N+1 starts ─────────────────────────────────▶ …
//! ```
//!
//! Why it is safe: a batch is marked only after `sync_wait` of its own sync returned Ok, and
//! that sync began after the batch's `write()`s returned, so it covers them. Per-order order
//! holds because a claim only takes an order's oldest *unpublished* event: batch N's rows are
//! still unpublished while N+1 is claimed, so N+1 can hold no later event of the same order.
//! What changes is the crash story: a crash during pass N+1 also leaves pass N synced but
//! unmarked, so it is shipped again (a copy more for the inbox, never a loss). An empty claim,
//! or the relay stopping, waits for and marks the batch still in flight.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::broker::SyncInFlight;
use crate::error::Result;
use crate::outbox::Claim;
use crate::relay::Relay;
use crate::relay::pass::{PassReport, micros};

/// A batch appended, its sync started, not yet marked.
pub(super) struct InFlight {
    claim: Claim,
    pass_no: u64,
    /// Rows of the claim released unappended (busy partitions): never marked.
    unshipped: usize,
    sync: SyncInFlight,
}

impl Relay {
    /// Claim and append the next batch while the previous one syncs; then wait for that sync,
    /// mark the previous batch, and start syncing this one. The report counts this pass's
    /// claim and the previous pass's marks.
    pub(super) fn overlapped_pass(&mut self, stop: &AtomicBool) -> Result<PassReport> {
        let started = Instant::now();
        let claim = self.claim_next()?;
        let claimed_at = Instant::now();
        let shipped = match &claim {
            Some(claim) => Some(self.append(claim, stop)?),
            None => None,
        };
        let appended_at = Instant::now();
        let (touched, unshipped) = shipped.map_or((Vec::new(), 0), |s| (s.touched, s.unshipped));
        let mut report = PassReport {
            claimed: claim.as_ref().map_or(0, |c| c.rows.len()),
            unshipped,
            partitions_touched: touched.len(),
            claim_us: micros(claimed_at - started),
            append_us: micros(appended_at - claimed_at),
            ..PassReport::default()
        };
        self.finish_in_flight(&mut report)?;
        if let Some(claim) = claim {
            if touched.is_empty() {
                // Every partition was busy: nothing appended, nothing to sync or mark.
                return Ok(report);
            }
            let sync = self.broker.sync_begin(&touched)?;
            let pass_no = self.pass_no;
            self.in_flight = Some(InFlight {
                claim,
                pass_no,
                unshipped,
                sync,
            });
        }
        Ok(report)
    }

    /// Wait for the batch in flight (if any) to be durable, then mark it.
    pub(super) fn finish_in_flight(&mut self, report: &mut PassReport) -> Result<()> {
        let Some(in_flight) = self.in_flight.take() else {
            return Ok(());
        };
        let waiting = Instant::now();
        let touched = in_flight.sync.partitions.clone();
        self.broker.sync_wait(in_flight.sync)?;
        self.synced(in_flight.pass_no, &touched);
        let synced_at = Instant::now();
        let (marked, fenced) =
            self.mark(&in_flight.claim, in_flight.unshipped, in_flight.pass_no)?;
        report.marked += marked;
        report.fenced += fenced;
        report.sync_us += micros(synced_at - waiting);
        report.mark_us += micros(synced_at.elapsed());
        Ok(())
    }
}
