//! One session on the slot: the exclusive right to stream it, the peek, the confirm, the wait.
//!
//! ```text
//!   connect ─▶ pg_advisory_lock(slot)      a standby blocks here; the holder's death (its
//!              │                            session closes) hands the lock over at once
//!              ▼
//!   LISTEN outbox ─▶ loop { drain ─▶ peek ─▶ … ─▶ advance(end_lsn) ─▶ wait for NOTIFY }
//! ```
//!
//! Why an advisory lock: the SQL functions hold the slot only for the length of one call, so
//! the slot's own exclusivity (`active_pid`) would let two relays take turns at it, each
//! shipping the same changes. The session lock makes one relay the streamer for as long as its
//! connection lives; lock, peeks and advances share that one connection, so they die together.

use std::sync::atomic::{AtomicBool, Ordering};

use postgres::Client;
use postgres::error::SqlState;

use super::pgoutput::{self, Decoded, Decoder};
use super::{CHANNEL, CdcSettings, PUBLICATION};
use crate::error::{Context, Error, Result};
use crate::store::pg::{self, notify};

/// How long one blocking attempt at the streamer lock lasts before the standby looks at its
/// stop flag again. A takeover does not wait for it: the lock is granted the moment it is free.
const STANDBY_LOCK_TIMEOUT_MS: u64 = 500;

pub struct CdcStream {
    client: Client,
    pub settings: CdcSettings,
}

/// Who holds the streamer lock right now (for a standby's message).
fn holder(client: &mut Client, slot: &str) -> Result<Option<i32>> {
    let row = client
        .query_opt(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
               AND objid = hashtext($1)::oid AND database = (SELECT oid FROM pg_database
                                                            WHERE datname = current_database())",
            &[&slot],
        )
        .ctx("looking up the streamer lock's holder")?;
    Ok(row.map(|r| r.get(0)))
}

impl CdcStream {
    /// Connect and become the slot's one streamer, waiting as a standby while another relay
    /// is. `on_standby` is told the holder's pid once, when the wait begins. None: stopped.
    pub fn acquire(
        url: &str,
        stop: &AtomicBool,
        mut on_standby: impl FnMut(Option<i32>),
    ) -> Result<Option<CdcStream>> {
        // synchronous_commit=on; nothing here commits data, but the heartbeat's commit is a
        // real one and the session settings are the store's, stated in one place.
        let mut client = pg::connect(url, pg::DEFAULT_IDLE_IN_TX_MS)?;
        let settings = super::read_settings(&mut client)?.ok_or_else(|| {
            Error::Input(
                "relay --cdc: this database has no replication slot for the outbox; \
                 create it with `init --postgres URL --cdc keep|delete` before placing orders"
                    .into(),
            )
        })?;
        client
            .batch_execute(&format!("SET lock_timeout = {STANDBY_LOCK_TIMEOUT_MS}"))
            .ctx("SET lock_timeout")?;
        let mut told = false;
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let got = client.execute("SELECT pg_advisory_lock(hashtext($1))", &[&settings.slot]);
            match got {
                Ok(_) => break,
                Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                    if !told {
                        on_standby(holder(&mut client, &settings.slot)?);
                        told = true;
                    }
                }
                Err(e) => return Err(e).ctx(format!("locking slot {}", settings.slot)),
            }
        }
        client
            .batch_execute("SET lock_timeout = 0")
            .ctx("RESET lock_timeout")?;
        notify::listen(&mut client, CHANNEL)?;
        Ok(Some(CdcStream { client, settings }))
    }

    /// Decode what committed since the slot's confirmed position, up to about `max_changes`
    /// messages (whole transactions: the server stops only at a commit). The slot does not move.
    pub fn peek(&mut self, max_changes: usize) -> Result<Decoded> {
        let max = i32::try_from(max_changes).expect("batch sizes are bounded far below i32");
        let rows = self
            .client
            .query(
                "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2,
                   'proto_version', '1', 'publication_names', $3, 'messages', 'true')",
                &[&self.settings.slot, &max, &PUBLICATION],
            )
            .ctx(format!("peeking slot {}", self.settings.slot))?;
        let mut decoder = Decoder::default();
        for row in &rows {
            let data: &[u8] = row.get(0);
            decoder.message(data).map_err(|reason| Error::Decode {
                slot: self.settings.slot.clone(),
                reason,
            })?;
        }
        Ok(decoder.finish())
    }

    /// Confirm: the slot forgets everything up to `end_lsn` and releases the WAL before it.
    /// Call only once what was decoded up to there is durable in the log.
    pub fn advance(&mut self, end_lsn: u64) -> Result<()> {
        self.client
            .execute(
                "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
                &[&self.settings.slot, &pgoutput::lsn_text(end_lsn)],
            )
            .ctx(format!(
                "advancing slot {} to {}",
                self.settings.slot,
                pgoutput::lsn_text(end_lsn)
            ))?;
        Ok(())
    }

    /// A transaction with nothing but a logical message: it lets an idle slot advance past WAL
    /// that other tables wrote (what Debezium's heartbeat query is for).
    pub fn heartbeat(&mut self) -> Result<()> {
        self.client
            .execute(
                "SELECT pg_logical_emit_message(true, 'outbox-lab-heartbeat', '')",
                &[],
            )
            .ctx("emitting the slot heartbeat")?;
        Ok(())
    }

    pub fn drain_notifications(&mut self) -> Result<bool> {
        notify::drain(&mut self.client)
    }

    /// Idle until a commit notifies, `max_wait_ms` passes, or `stop`.
    pub fn wait(&mut self, stop: &AtomicBool, max_wait_ms: u64) -> Result<bool> {
        notify::wait(&mut self.client, stop, max_wait_ms)
    }
}
