//! The slot's health, as `outbox-lab cdc-status` shows it: how much WAL the slot holds back on
//! the server's disk, and how far the confirmed position trails the WAL's end.
//!
//! A slot pins WAL from its `restart_lsn` on. While its relay runs, that is a few kB; while it
//! is stopped, it grows with every write to the *whole cluster*, until the disk fills — or,
//! with `max_slot_wal_keep_size`, until the server invalidates the slot (`wal_status = lost`)
//! and the relay can never resume from it (see `docs/cdc.md` for the catch-up path).

use postgres::Client;
use serde::Serialize;

use crate::error::{Context, Result};

#[derive(Debug, Clone, Serialize)]
pub struct SlotStatus {
    pub slot: String,
    /// `pg_current_wal_lsn() - restart_lsn`: WAL kept on disk for this slot.
    pub retained_bytes: Option<i64>,
    /// `pg_current_wal_lsn() - confirmed_flush_lsn`: WAL written since the last confirm.
    pub confirmed_lag_bytes: Option<i64>,
    pub restart_lsn: Option<String>,
    pub confirmed_flush_lsn: Option<String>,
    pub current_lsn: String,
    /// reserved / extended / unreserved / lost (`lost`: invalidated, unusable).
    pub wal_status: Option<String>,
    /// How much more WAL may be written before the slot is invalidated (NULL: no limit set).
    pub safe_wal_size_bytes: Option<i64>,
    /// The pid of the session holding the streamer lock (the active CDC relay), if any.
    pub streamer_pid: Option<i32>,
}

pub fn slot_status(client: &mut Client, slot: &str) -> Result<Option<SlotStatus>> {
    let row = client
        .query_opt(
            "SELECT slot_name::text,
                    pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,
                    pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint,
                    restart_lsn::text, confirmed_flush_lsn::text, pg_current_wal_lsn()::text,
                    wal_status, safe_wal_size
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .ctx(format!("reading pg_replication_slots for {slot}"))?;
    let Some(row) = row else { return Ok(None) };
    let streamer_pid = client
        .query_opt(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
               AND objid = hashtext($1)::oid",
            &[&slot],
        )
        .ctx("looking up the streamer lock")?
        .map(|r| r.get(0));
    Ok(Some(SlotStatus {
        slot: row.get(0),
        retained_bytes: row.get(1),
        confirmed_lag_bytes: row.get(2),
        restart_lsn: row.get(3),
        confirmed_flush_lsn: row.get(4),
        current_lsn: row.get(5),
        wal_status: row.get(6),
        safe_wal_size_bytes: row.get(7),
        streamer_pid,
    }))
}

impl SlotStatus {
    /// Human lines, one fact each.
    pub fn to_text(&self) -> String {
        let bytes = |b: Option<i64>| b.map_or("-".to_string(), human_bytes);
        format!(
            "slot {}  wal_status {}  streamer {}\n  retained WAL      {} (current {} - restart {})\n  confirmed lag     {} (confirmed {})\n  safe before lost  {}\n",
            self.slot,
            self.wal_status.as_deref().unwrap_or("-"),
            self.streamer_pid
                .map_or("none".to_string(), |p| format!("pid {p}")),
            bytes(self.retained_bytes),
            self.current_lsn,
            self.restart_lsn.as_deref().unwrap_or("-"),
            bytes(self.confirmed_lag_bytes),
            self.confirmed_flush_lsn.as_deref().unwrap_or("-"),
            self.safe_wal_size_bytes.map_or(
                "no limit (max_slot_wal_keep_size = -1)".to_string(),
                human_bytes
            ),
        )
    }
}

fn human_bytes(b: i64) -> String {
    let f = b as f64;
    if f >= 1_048_576.0 {
        format!("{:.1} MiB ({b} bytes)", f / 1_048_576.0)
    } else if f >= 1024.0 {
        format!("{:.1} KiB ({b} bytes)", f / 1024.0)
    } else {
        format!("{b} bytes")
    }
}
