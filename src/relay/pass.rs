//! One relay pass: claim, append, sync, mark. See the module above for the crash windows.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::broker::{LockWait, partition_of};
use crate::crashpoint::{self, Point};
use crate::error::{Error, Result};
use crate::outbox::{Claim, ClaimedRow};
use crate::relay::Relay;
use crate::trace::{self, Ev};

/// What [`Relay::append`] did: the partitions written, and the rows left to their lease.
pub(super) struct Shipped {
    pub(super) touched: Vec<u32>,
    pub(super) unshipped: usize,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct PassReport {
    pub claimed: usize,
    pub marked: usize,
    pub fenced: usize,
    /// Claimed but not appended: their partition's append lock stayed busy.
    pub unshipped: usize,
    pub partitions_touched: usize,
    /// Time in each step of this pass (µs): what a benchmark needs to find the bottleneck.
    pub claim_us: u64,
    pub append_us: u64,
    pub sync_us: u64,
    pub mark_us: u64,
}

impl Relay {
    /// One pass. Returns what it did; `claimed == 0` means there was nothing to claim.
    pub fn pass(&mut self) -> Result<PassReport> {
        self.pass_until(&AtomicBool::new(false))
    }

    /// One pass whose waits for append locks end early when `stop` is set (SIGTERM). With
    /// `overlap_sync` the pass overlaps its sync with the next claim (`relay/overlap.rs`).
    pub fn pass_until(&mut self, stop: &AtomicBool) -> Result<PassReport> {
        if self.config.overlap_sync {
            return self.overlapped_pass(stop);
        }
        let started = Instant::now();
        let Some(claim) = self.claim_next()? else {
            return Ok(PassReport::default());
        };
        let claimed_at = Instant::now();
        let shipped = self.append(&claim, stop)?;
        let appended_at = Instant::now();
        // Durable before marked: the one ordering the relay must never break. Either way, every
        // touched partition is synced before we go on.
        if self.config.sync_in_parallel {
            self.broker.sync_parallel(&shipped.touched)?;
        } else {
            for partition in &shipped.touched {
                self.broker.sync(*partition)?;
            }
        }
        self.synced(self.pass_no, &shipped.touched);
        let synced_at = Instant::now();
        let (marked, fenced) = self.mark(&claim, shipped.unshipped, self.pass_no)?;
        Ok(PassReport {
            claimed: claim.rows.len(),
            marked,
            fenced,
            unshipped: shipped.unshipped,
            partitions_touched: shipped.touched.len(),
            claim_us: micros(claimed_at - started),
            append_us: micros(appended_at - claimed_at),
            sync_us: micros(synced_at - appended_at),
            mark_us: micros(synced_at.elapsed()),
        })
    }

    /// Claim the next batch under a fresh fencing token; `None` if there was nothing to claim.
    pub(super) fn claim_next(&mut self) -> Result<Option<Claim>> {
        self.pass_no += 1;
        let token = format!(
            "{}/{}.{:08x}/{}",
            self.config.name,
            std::process::id(),
            self.incarnation,
            self.pass_no
        );
        let claim = self
            .store
            .claim(&token, self.config.lease_ms, self.config.batch)?;
        if claim.rows.is_empty() {
            // A pass that claimed nothing is not counted, so "pass N" in the trace is the N-th
            // pass that shipped rows — the count `OUTBOX_CRASH=relay.…@N` uses too. Its token
            // leased no row, so the next pass may reuse the number.
            self.pass_no -= 1;
            return Ok(None);
        }
        self.trace_claimed(&claim.rows);
        crashpoint::point(Point::RelayAfterClaim);
        Ok(Some(claim))
    }

    /// Append the claim's records, one `write()` per partition; rows of a partition whose
    /// append lock stayed busy are released to their lease, not appended.
    pub(super) fn append(&mut self, claim: &Claim, stop: &AtomicBool) -> Result<Shipped> {
        let by_partition = self.group_by_partition(&claim.rows);
        let busy = self.append_all(&by_partition, stop)?;
        let unshipped = self.release_busy(claim, &by_partition, &busy)?;
        crashpoint::point(Point::RelayAfterAppend);
        let touched = (0..self.partitions)
            .filter(|p| !by_partition[*p as usize].is_empty() && !busy.contains(p))
            .collect();
        Ok(Shipped { touched, unshipped })
    }

    /// After the sync of pass `pass_no` returned Ok: trace it, then the crash point.
    pub(super) fn synced(&self, pass_no: u64, touched: &[u32]) {
        trace::emit(
            Ev::Synced,
            || json!({ "relay": self.config.name, "pass": pass_no, "partitions": touched }),
        );
        crashpoint::point(Point::RelayAfterSync);
    }

    /// Mark the claim's appended rows published (only those whose lease is still ours);
    /// returns (marked, fenced).
    pub(super) fn mark(
        &mut self,
        claim: &Claim,
        unshipped: usize,
        pass_no: u64,
    ) -> Result<(usize, usize)> {
        let marked = self.store.mark(claim)?;
        let fenced = claim.rows.len() - unshipped - marked;
        trace::emit(Ev::Marked, || {
            json!({ "relay": self.config.name, "pass": pass_no, "marked": marked, "fenced": fenced,
                    "event_ids": claim.rows.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>() })
        });
        Ok((marked, fenced))
    }

    /// Append each partition's group, one batch each. A partition whose append lock stays busy
    /// for `lock_wait_ms` (at most half the lease; or until `stop`) is skipped and returned:
    /// the others still ship.
    fn append_all(
        &mut self,
        by_partition: &[Vec<(String, Vec<u8>)>],
        stop: &AtomicBool,
    ) -> Result<Vec<u32>> {
        // Never wait out more than half the lease: the rows of the other partitions in this
        // claim would be fenced by the time we mark them. A frozen holder's partition then
        // costs one such wait per lease period (its rows keep their lease when released),
        // while a merely slow holder on a loaded machine is still waited for.
        // The budget is for the whole pass, however many partitions turn out busy.
        let budget_ms = self.config.lock_wait_ms.min(self.config.lease_ms / 2);
        let budget_started = Instant::now();
        let mut busy = Vec::new();
        for (partition, records) in by_partition.iter().enumerate() {
            if records.is_empty() {
                continue;
            }
            let partition = partition as u32;
            let spent_ms = budget_started.elapsed().as_millis() as u64;
            let wait = LockWait {
                max_wait_ms: budget_ms.saturating_sub(spent_ms),
                stop: Some(stop),
            };
            let slices: Vec<&[u8]> = records.iter().map(|(_, json)| json.as_slice()).collect();
            let appended = match self.broker.write_within(partition, &slices, &wait) {
                Ok(appended) => appended,
                Err(Error::LockBusy { holder_pid, .. }) => {
                    self.note_busy(partition, holder_pid);
                    busy.push(partition);
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.lock_watch.clear(partition);
            trace::emit(Ev::Appended, || {
                json!({ "relay": self.config.name, "pass": self.pass_no, "partition": partition,
                        "offset_bytes": appended.first_offset_bytes,
                        "event_ids": records.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>() })
            });
        }
        Ok(busy)
    }

    fn note_busy(&mut self, partition: u32, holder_pid: Option<u32>) {
        trace::emit(Ev::LockBusy, || {
            json!({ "relay": self.config.name, "pass": self.pass_no, "partition": partition,
                    "holder_pid": holder_pid })
        });
        if let Some(report) = self
            .lock_watch
            .busy(&self.config.name, partition, holder_pid)
        {
            eprintln!("{report}");
        }
    }

    /// Give up this claim's rows in busy partitions, so that the mark after the sync cannot
    /// touch them; they keep their lease time and are claimed again when it runs out.
    fn release_busy(
        &mut self,
        claim: &Claim,
        by_partition: &[Vec<(String, Vec<u8>)>],
        busy: &[u32],
    ) -> Result<usize> {
        let ids: Vec<i64> = claim
            .rows
            .iter()
            .filter(|r| busy.contains(&partition_of(&r.aggregate_id, self.partitions)))
            .map(|r| r.id)
            .collect();
        let expected: usize = busy.iter().map(|p| by_partition[*p as usize].len()).sum();
        assert_eq!(ids.len(), expected, "rows of busy partitions miscounted");
        if ids.is_empty() {
            return Ok(0);
        }
        self.store.release_unshipped(claim, &ids)?;
        Ok(ids.len())
    }

    /// Records grouped by partition, each group in outbox id order (claims come back sorted).
    fn group_by_partition(&self, rows: &[ClaimedRow]) -> Vec<Vec<(String, Vec<u8>)>> {
        let mut groups = vec![Vec::new(); self.partitions as usize];
        for row in rows {
            let partition = partition_of(&row.aggregate_id, self.partitions);
            let json = record_json(row, &self.config.name);
            groups[partition as usize].push((row.event_id.clone(), json));
        }
        groups
    }

    fn trace_claimed(&self, rows: &[ClaimedRow]) {
        if !trace::enabled() {
            return;
        }
        trace::emit_many(
            Ev::Claimed,
            rows.iter().map(|r| {
                json!({ "relay": self.config.name, "pass": self.pass_no, "event_id": r.event_id,
                        "outbox_id": r.id, "aggregate_id": r.aggregate_id,
                        "aggregate_seq": r.aggregate_seq, "attempt": r.attempts })
            }),
        );
    }
}

/// The record's JSON (the [`crate::event::Event`] shape), with the payload copied in as the outbox stored it.
///
/// Why not `serde_json::to_vec(&Event)`: that parses every payload into a `Value` only to print
/// it again — a third of the relay's CPU per record at batch 100. The payload is JSON this
/// crate wrote (`Value::to_string`: no raw newline), so it is pasted, not re-encoded; every
/// other field still goes through serde_json's string escaping.
pub fn record_json(row: &ClaimedRow, relay: &str) -> Vec<u8> {
    debug_assert!(
        serde_json::from_str::<serde_json::Value>(&row.payload).is_ok(),
        "outbox row {} holds a payload that is not JSON",
        row.id
    );
    assert!(
        !row.payload.contains('\n'),
        "outbox row {} payload has a newline: it would split the record",
        row.id
    );
    let text = |s: &str| serde_json::to_string(s).expect("a string serialises");
    format!(
        r#"{{"event_id":{},"event_type":{},"aggregate_id":{},"aggregate_seq":{},"payload":{},"created_at_us":{},"outbox_id":{},"relay":{},"attempt":{}}}"#,
        text(&row.event_id),
        text(&row.event_type),
        text(&row.aggregate_id),
        row.aggregate_seq,
        row.payload,
        row.created_at_us,
        row.id,
        text(relay),
        row.attempts
    )
    .into_bytes()
}

pub(super) fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    #[test]
    fn pasted_payload_record_reads_back_as_the_same_event() {
        let row = ClaimedRow {
            id: 7,
            event_id: "e\"1".into(),
            aggregate_id: "42".into(),
            aggregate_seq: 2,
            event_type: "OrderPaid".into(),
            payload: r#"{"amount_cents":1250,"customer":"ada \u00e9","order_id":42}"#.into(),
            created_at_us: 1_700_000_000_000_000,
            attempts: 3,
        };
        let json = record_json(&row, "relay-0");
        let event: Event = serde_json::from_slice(&json).unwrap();
        let expected = Event {
            event_id: row.event_id.clone(),
            event_type: row.event_type.clone(),
            aggregate_id: row.aggregate_id.clone(),
            aggregate_seq: 2,
            payload: serde_json::from_str(&row.payload).unwrap(),
            created_at_us: row.created_at_us,
            outbox_id: Some(7),
            relay: "relay-0".into(),
            attempt: 3,
        };
        assert_eq!(event, expected);
        assert!(!json.contains(&b'\n'));
    }
}
