//! The SQLite orders store: the seam's traits over the existing `order` and `outbox` code.

use std::sync::atomic::AtomicBool;

use rusqlite::Connection;

use crate::clock::Clock;
use crate::datadir::DataDir;
use crate::db::{self, Synchronous};
use crate::error::Result;
use crate::order::lifecycle::Transition;
use crate::order::{OrderRequest, OrderService, Placed};
use crate::outbox::cleanup::{self, CleanupConfig, CleanupReport, Pacer};
use crate::outbox::{self, Claim};
use crate::store::{BacklogReader, OrderStore, OutboxStore};

impl OrderStore for OrderService {
    fn place(&mut self, request: &OrderRequest) -> Result<Placed> {
        OrderService::place(self, request)
    }
    fn transition(&mut self, order_id: i64, step: Transition) -> Result<i64> {
        OrderService::transition(self, order_id, step)
    }
    fn place_group(
        &mut self,
        requests: &[OrderRequest],
    ) -> Result<Vec<crate::order::group::GroupReply>> {
        OrderService::place_group(self, requests)
    }
}

pub struct SqliteOutbox {
    conn: Connection,
    /// The outbox's layout, read once at open.
    layout: outbox::Layout,
}

impl SqliteOutbox {
    pub fn open(dir: &DataDir) -> Result<SqliteOutbox> {
        // NORMAL: a claim or mark lost to a power cut only means the rows get shipped again
        // (at-least-once absorbs it); the events themselves were committed FULL by the service.
        let conn = db::open(&dir.orders_db(), Synchronous::Normal)?;
        let layout = outbox::Layout::of(&conn)?;
        Ok(SqliteOutbox { conn, layout })
    }
}

impl OutboxStore for SqliteOutbox {
    fn claim(&mut self, token: &str, lease_ms: u64, batch: usize) -> Result<Claim> {
        outbox::claim_batch(
            &mut self.conn,
            self.layout,
            token,
            Clock::system(),
            lease_ms,
            batch,
        )
    }
    fn mark(&mut self, claim: &Claim) -> Result<usize> {
        outbox::mark_published(&mut self.conn, claim, Clock::system())
    }
    fn release_unshipped(&mut self, claim: &Claim, ids: &[i64]) -> Result<usize> {
        outbox::release_unshipped(&mut self.conn, claim, ids)
    }
    fn unpublished_count(&mut self) -> Result<u64> {
        outbox::unpublished_count(&self.conn, self.layout)
    }
    fn cleanup(
        &mut self,
        config: &CleanupConfig,
        now_us: i64,
        stop: &AtomicBool,
        pacer: &mut Pacer,
    ) -> Result<CleanupReport> {
        cleanup::run_paced(&mut self.conn, config, now_us, stop, pacer)
    }
    fn allows_overlapping_claims(&self) -> bool {
        true
    }
    fn doorbell_file(&self) -> Option<&'static str> {
        // Every commit to orders.db appends frames to its WAL: that write is the doorbell.
        Some("orders.db-wal")
    }
}

/// `lag`'s view: `orders.db` opened read-only (a monitor never changes what it watches).
pub struct SqliteBacklog {
    conn: Connection,
}

impl SqliteBacklog {
    pub fn open(dir: &DataDir) -> Result<SqliteBacklog> {
        Ok(SqliteBacklog {
            conn: crate::lag::read_only(&dir.orders_db())?,
        })
    }
}

impl BacklogReader for SqliteBacklog {
    fn backlog(&mut self) -> Result<(u64, Option<i64>)> {
        let unpublished = outbox::unpublished_count(&self.conn, outbox::Layout::of(&self.conn)?)?;
        Ok((unpublished, crate::lag::oldest_unpublished_us(&self.conn)?))
    }
}
