//! The CDC relay: ships the outbox's committed INSERTs, read from PostgreSQL's WAL through a
//! logical replication slot, with no claim and no mark.
//!
//! ```text
//!   acquire   the slot's streamer lock (a standby waits here; takes over when the holder dies)
//!   loop {
//!     peek    decode committed changes after the slot's confirmed position (slot unmoved)
//!             ── cdc.after_receive
//!     append  one write() per partition, in commit order
//!             ── cdc.after_append
//!     sync    sync_data() per partition touched
//!             ── cdc.after_sync
//!     confirm advance the slot to the batch's last commit end
//!     idle?   wait for NOTIFY outbox (sent at commit), at most poll_ms
//!   }
//! ```
//!
//! At-least-once without marking: the slot's confirmed position is the only bookkeeping, and
//! it moves only after `sync_data`. Killed anywhere before the confirm, the next streamer peeks
//! the same transactions again: copies, never losses — the consumer's inbox absorbs them.
//! Per-order order is commit order: an order's second event is written by a transaction that
//! locked the order row after the first one committed, so it decodes after it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde_json::json;

use crate::broker::{Broker, LockWait, partition_of};
use crate::crashpoint::{self, Point};
use crate::datadir::DataDir;
use crate::error::{Error, Result};
use crate::outbox::ClaimedRow;
use crate::store::StoreConfig;
use crate::store::pg::cdc::stream::CdcStream;
use crate::trace::{self, Ev};

/// At most this many decoded messages per peek (a transaction is never split).
pub const MAX_CDC_BATCH: usize = 100_000;

#[derive(Debug, Clone)]
pub struct CdcConfig {
    /// Written into every record (`relay`).
    pub name: String,
    /// The longest idle wait for a NOTIFY before peeking anyway.
    pub poll_ms: u64,
    /// About how many decoded messages one batch takes (~3 per single-event transaction).
    pub batch: usize,
    /// While idle, commit a heartbeat this often so the slot can release WAL other tables wrote.
    pub heartbeat_ms: u64,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CdcTotals {
    /// Batches that shipped at least one event (or confirmed an eventless transaction).
    pub batches: u64,
    pub events: u64,
    pub commits: u64,
    /// How long this relay waited as a standby before it became the streamer (ms).
    pub standby_ms: u64,
    pub peek_us: u64,
    pub append_us: u64,
    pub sync_us: u64,
    pub confirm_us: u64,
}

pub struct CdcRelay {
    stream: CdcStream,
    broker: Broker,
    partitions: u32,
    config: CdcConfig,
    batch_no: u64,
    standby_ms: u64,
}

impl CdcRelay {
    /// Connect and become the slot's streamer, waiting as a standby while another relay is
    /// (`on_standby` hears the holder's pid once). None when `stop` was set while waiting.
    pub fn open(
        dir: &DataDir,
        config: CdcConfig,
        stop: &AtomicBool,
        on_standby: impl FnMut(Option<i32>),
    ) -> Result<Option<CdcRelay>> {
        assert!(
            (1..=MAX_CDC_BATCH).contains(&config.batch),
            "CDC batch {} outside 1..={MAX_CDC_BATCH}",
            config.batch
        );
        let StoreConfig::Postgres(url) = &dir.store else {
            return Err(Error::Input(format!(
                "relay --cdc needs a PostgreSQL data directory (init --postgres URL --cdc …); {} uses {}",
                dir.root.display(),
                dir.store.describe()
            )));
        };
        let mut broker = Broker::open(&dir.broker_dir(), dir.partitions)?;
        // After a crash or power cut: records that survived whole past a durable end become
        // readable, a torn or unsynced tail is cut (what the slot still holds comes again).
        for partition in 0..broker.partitions() {
            match broker.recover_partition(partition, &LockWait::patient()) {
                Ok(_) | Err(Error::LockBusy { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let waiting_since = Instant::now();
        let Some(stream) = CdcStream::acquire(url, stop, on_standby)? else {
            return Ok(None);
        };
        Ok(Some(CdcRelay {
            stream,
            broker,
            partitions: dir.partitions,
            config,
            batch_no: 0,
            standby_ms: waiting_since.elapsed().as_millis() as u64,
        }))
    }

    pub fn slot(&self) -> &str {
        &self.stream.settings.slot
    }

    /// Ship batches until `stop`, or — with `until_caught_up` — until a peek finds nothing.
    pub fn run(&mut self, stop: &AtomicBool, until_caught_up: bool) -> Result<CdcTotals> {
        let mut totals = CdcTotals {
            standby_ms: self.standby_ms,
            ..CdcTotals::default()
        };
        let mut idle_since = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            // Before the peek, never after: see `store::pg::notify`.
            self.stream.drain_notifications()?;
            if self.batch(&mut totals)? {
                idle_since = Instant::now();
                continue;
            }
            if until_caught_up {
                break;
            }
            if idle_since.elapsed().as_millis() as u64 >= self.config.heartbeat_ms {
                self.stream.heartbeat()?;
                idle_since = Instant::now();
            }
            self.stream.wait(stop, self.config.poll_ms)?;
        }
        Ok(totals)
    }

    /// One batch; false when nothing had committed since the last confirm.
    fn batch(&mut self, totals: &mut CdcTotals) -> Result<bool> {
        let started = Instant::now();
        let decoded = self.stream.peek(self.config.batch)?;
        let Some(end_lsn) = decoded.end_lsn else {
            return Ok(false);
        };
        self.batch_no += 1;
        let events = decoded.events;
        self.trace_received(&events, end_lsn);
        crashpoint::point(Point::CdcAfterReceive);
        let received_at = Instant::now();

        let touched = self.append(&events)?;
        crashpoint::point(Point::CdcAfterAppend);
        let appended_at = Instant::now();

        // Durable before confirmed: once the slot moves, nothing brings these changes back.
        for partition in &touched {
            self.broker.sync(*partition)?;
        }
        trace::emit(
            Ev::Synced,
            || json!({ "relay": self.config.name, "pass": self.batch_no, "partitions": touched }),
        );
        crashpoint::point(Point::CdcAfterSync);
        let synced_at = Instant::now();

        self.stream.advance(end_lsn)?;
        trace::emit(Ev::Confirmed, || {
            json!({ "relay": self.config.name, "pass": self.batch_no,
                    "end_lsn": crate::store::pg::cdc::pgoutput::lsn_text(end_lsn) })
        });
        totals.batches += 1;
        totals.events += events.len() as u64;
        totals.commits += decoded.commits as u64;
        totals.peek_us += micros(received_at - started);
        totals.append_us += micros(appended_at - received_at);
        totals.sync_us += micros(synced_at - appended_at);
        totals.confirm_us += micros(synced_at.elapsed());
        Ok(true)
    }

    /// Append the events grouped by partition, each group in commit order; the partitions
    /// written to, ascending.
    fn append(&mut self, events: &[ClaimedRow]) -> Result<Vec<u32>> {
        let mut groups: Vec<Vec<(&str, Vec<u8>)>> = vec![Vec::new(); self.partitions as usize];
        for row in events {
            let partition = partition_of(&row.aggregate_id, self.partitions);
            let json = super::pass::record_json(row, &self.config.name);
            groups[partition as usize].push((row.event_id.as_str(), json));
        }
        let mut touched = Vec::new();
        for (partition, records) in groups.iter().enumerate() {
            if records.is_empty() {
                continue;
            }
            let slices: Vec<&[u8]> = records.iter().map(|(_, json)| json.as_slice()).collect();
            let appended = self.broker.write(partition as u32, &slices)?;
            trace::emit(Ev::Appended, || {
                json!({ "relay": self.config.name, "pass": self.batch_no, "partition": partition,
                        "offset_bytes": appended.first_offset_bytes,
                        "event_ids": records.iter().map(|(id, _)| *id).collect::<Vec<_>>() })
            });
            touched.push(partition as u32);
        }
        Ok(touched)
    }

    fn trace_received(&self, events: &[ClaimedRow], end_lsn: u64) {
        if !trace::enabled() {
            return;
        }
        let end = crate::store::pg::cdc::pgoutput::lsn_text(end_lsn);
        trace::emit_many(
            Ev::Received,
            events.iter().map(|r| {
                json!({ "relay": self.config.name, "pass": self.batch_no, "event_id": r.event_id,
                        "outbox_id": r.id, "aggregate_id": r.aggregate_id,
                        "aggregate_seq": r.aggregate_seq, "end_lsn": end })
            }),
        );
    }
}

fn micros(d: std::time::Duration) -> u64 {
    d.as_micros() as u64
}
