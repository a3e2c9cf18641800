//! Change data capture on PostgreSQL: the outbox's INSERTs read from the WAL through a logical
//! replication slot, instead of polled from the table.
//!
//! ```text
//!   order tx:  INSERT orders; INSERT outbox [; DELETE outbox]; COMMIT ──▶ WAL ──▶ NOTIFY outbox
//!                                                                          │
//!   slot outbox_<db> (pgoutput, publication outbox_cdc: INSERTs on outbox only)
//!                                                                          ▼
//!   CDC relay:  peek changes ─▶ append + fdatasync ─▶ advance the slot (confirm) ─▶ wait NOTIFY
//! ```
//!
//! Why `pgoutput` (PostgreSQL's own plugin, the one Debezium uses) and not `test_decoding` or
//! `wal2json`: it ships with the server, a publication filters it to the outbox's inserts
//! (no `orders` changes, no deletes: an insert-and-delete outbox decodes as inserts only), and
//! its binary messages are length-prefixed, with no quoting to undo ([`pgoutput`]).
//!
//! Why the SQL functions (`pg_logical_slot_peek_binary_changes`, `pg_replication_slot_advance`)
//! and not the streaming replication protocol: the `postgres` crate has no CopyBoth support,
//! and a hand-written wire protocol is not worth its bugs here. What that costs: every peek is
//! a round trip that sets up a decoding session and re-reads the WAL from the slot's
//! `restart_lsn`, and the server does not push changes — the relay is woken by a `NOTIFY` the
//! writing transaction sends (delivered only at its commit), with a bounded poll as fallback.
//!
//! The slot is created at `init --cdc`, before any order: a slot only sees what commits after
//! it exists. See `docs/cdc.md` for the WAL it retains while nobody reads it.

pub mod pgoutput;
pub mod status;
pub mod stream;

use postgres::Client;
use serde::Serialize;

use crate::error::{Context, Error, Result};

/// The publication the slot decodes: the outbox's inserts, reported as the partitioned root.
pub const PUBLICATION: &str = "outbox_cdc";
/// The channel the outbox's insert trigger notifies (one notification per committed statement).
pub const CHANNEL: &str = "outbox";

/// Whether outbox rows stay in the table after their transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxRows {
    /// Rows stay (the polling relay could still read them; they are never marked).
    Keep,
    /// The order's transaction inserts the row and deletes it again: it lives only in the WAL,
    /// the table stays empty, nothing to clean up. Only a CDC relay can ship such events.
    Delete,
}

impl OutboxRows {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxRows::Keep => "keep",
            OutboxRows::Delete => "delete",
        }
    }
}

/// What `init --cdc` recorded in the database, for every writer and relay to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CdcSettings {
    pub slot: String,
    pub outbox_rows: OutboxRows,
}

const SETTINGS_SQL: &str = "
CREATE TABLE IF NOT EXISTS outbox_cdc (
    only_row    BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    slot        TEXT NOT NULL,
    outbox_rows TEXT NOT NULL CHECK (outbox_rows IN ('keep', 'delete'))
);";

/// Create the publication, the notify trigger, the settings row and the slot (idempotent).
/// Returns the settings and how many outbox rows predate the slot (it will never see them).
pub fn setup(client: &mut Client, outbox_rows: OutboxRows) -> Result<(CdcSettings, i64)> {
    let wal_level: String = client
        .query_one("SHOW wal_level", &[])
        .ctx("SHOW wal_level")?
        .get(0);
    if wal_level != "logical" {
        return Err(Error::Input(format!(
            "--cdc needs wal_level = logical on the server (it is {wal_level}); scripts/pg-up sets it"
        )));
    }
    let mut tx = client.transaction().ctx("BEGIN (cdc setup)")?;
    // One setup at a time (shares init's lock space: 4242 is the schema's).
    tx.execute("SELECT pg_advisory_xact_lock(4243)", &[])
        .ctx("locking for cdc setup")?;
    tx.batch_execute(SETTINGS_SQL).ctx("creating outbox_cdc")?;
    let slot = slot_name(&mut tx)?;
    tx.execute(
        "INSERT INTO outbox_cdc (slot, outbox_rows) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&slot, &outbox_rows.as_str()],
    )
    .ctx("recording the cdc settings")?;
    let settings = read_settings(&mut tx)?.expect("just written");
    if settings.outbox_rows != outbox_rows {
        return Err(Error::Input(format!(
            "this database's CDC outbox is --cdc {}; refusing to change it to {}",
            settings.outbox_rows.as_str(),
            outbox_rows.as_str()
        )));
    }
    let exists = tx
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&PUBLICATION],
        )
        .ctx("looking for the publication")?
        .is_some();
    if !exists {
        // publish_via_partition_root: inserts into outbox_pN decode as inserts into `outbox`.
        tx.batch_execute(&format!(
            "CREATE PUBLICATION {PUBLICATION} FOR TABLE outbox \
             WITH (publish = 'insert', publish_via_partition_root = true)"
        ))
        .ctx("creating the publication")?;
    }
    ensure_notify_trigger(&mut tx)?;
    tx.commit().ctx("COMMIT (cdc setup)")?;
    // Outside any transaction: a slot cannot be created by one that has written.
    let has_slot = client
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&settings.slot],
        )
        .ctx("looking for the slot")?
        .is_some();
    let mut before = 0;
    if !has_slot {
        client
            .execute(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&settings.slot],
            )
            .ctx(format!("creating replication slot {}", settings.slot))?;
        before = client
            .query_one("SELECT count(*) FROM outbox", &[])
            .ctx("counting outbox rows")?
            .get(0);
    }
    Ok((settings, before))
}

/// Remove this database's slot, publication, trigger function and settings (for the lab's
/// commands that start from an empty store). A slot still streamed by a live relay is an
/// error from the server, not something to force.
pub fn wipe(client: &mut Client) -> Result<()> {
    if let Some(settings) = read_settings(client)? {
        client
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                  WHERE slot_name = $1",
                &[&settings.slot],
            )
            .ctx(format!("dropping replication slot {}", settings.slot))?;
    }
    client
        .batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {PUBLICATION}; DROP TABLE IF EXISTS outbox_cdc;
             DROP FUNCTION IF EXISTS outbox_notify() CASCADE;"
        ))
        .ctx("dropping the CDC publication, settings and trigger")
}

/// The settings `init --cdc` recorded; None when it never ran on this database.
pub fn read_settings(client: &mut impl postgres::GenericClient) -> Result<Option<CdcSettings>> {
    let table: Option<String> = client
        .query_one("SELECT to_regclass('outbox_cdc')::text", &[])
        .ctx("looking for outbox_cdc")?
        .get(0);
    if table.is_none() {
        return Ok(None);
    }
    let row = client
        .query_opt("SELECT slot, outbox_rows FROM outbox_cdc", &[])
        .ctx("reading outbox_cdc")?;
    Ok(row.map(|row| CdcSettings {
        slot: row.get(0),
        outbox_rows: match row.get::<_, &str>(1) {
            "delete" => OutboxRows::Delete,
            _ => OutboxRows::Keep,
        },
    }))
}

/// The slot of this database: slots are cluster-wide, so the name carries the database's.
fn slot_name(client: &mut impl postgres::GenericClient) -> Result<String> {
    let db: String = client
        .query_one("SELECT current_database()", &[])
        .ctx("current_database()")?
        .get(0);
    let clean: String = db
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    // NAMEDATALEN: 63 bytes; the prefix is 7.
    Ok(format!("outbox_{}", &clean[..clean.len().min(56)]))
}

/// A statement trigger that notifies [`CHANNEL`] when rows go into the outbox. The
/// notification is queued by the writing transaction and delivered at its commit, never
/// before, and never for a rollback. Created once (a trigger's DDL locks the table).
pub fn ensure_notify_trigger(client: &mut impl postgres::GenericClient) -> Result<()> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_trigger WHERE tgname = 'outbox_notify' AND tgrelid = 'outbox'::regclass",
            &[],
        )
        .ctx("looking for the outbox_notify trigger")?
        .is_some();
    if exists {
        return Ok(());
    }
    client
        .batch_execute(&format!(
            "CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END $$;
             CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
               FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();"
        ))
        .ctx("creating the outbox_notify trigger")
}

/// The insert-and-delete outbox: remove the row the same transaction just inserted. The
/// INSERT is in the WAL (and decoded); the table never shows the row to anyone.
pub fn delete_inserted(tx: &mut postgres::Transaction<'_>, outbox_id: i64) -> Result<()> {
    let deleted = tx
        .execute("DELETE FROM outbox WHERE id = $1", &[&outbox_id])
        .ctx(format!(
            "deleting outbox row {outbox_id} (insert-and-delete)"
        ))?;
    assert_eq!(
        deleted, 1,
        "outbox row {outbox_id} vanished inside its own transaction"
    );
    Ok(())
}
