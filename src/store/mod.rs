//! Where orders and outbox live: the *orders store*, chosen once at `init` and recorded in the
//! data directory, so every later command on that directory finds the same store.
//!
//! ```text
//!   outbox-lab.json  {"partitions": 4}                                           → SQLite orders.db
//!   outbox-lab.json  {"partitions": 4, "store": {"postgres": "postgresql:///…"}} → PostgreSQL
//! ```
//!
//! SQLite is the zero-infrastructure default: one file, a single writer, leases written into
//! rows as its stand-in for row locks. PostgreSQL is what the pattern meets in production: a
//! server, many writers, `FOR UPDATE SKIP LOCKED`, partitions dropped whole. Everything else in
//! the data directory (broker log, offsets, `consumer.db`, `trace.jsonl`) stays local in both
//! cases: the consumer is another service with its own database.
//!
//! The seam is two traits, each opened once from the data directory:
//!
//! | trait | who uses it | what it does |
//! |---|---|---|
//! | [`OrderStore`] | `place`, `pay`, `ship` | order + event in one transaction (or the naive dual writes) |
//! | [`OutboxStore`] | the relay, `cleanup` | claim a batch, mark it published, remove old published rows |
//!
//! The relay, broker, consumer and crash harness never ask which store is behind them.

pub mod pg;
mod sqlite;

use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use crate::datadir::DataDir;
use crate::error::Result;
use crate::order::lifecycle::Transition;
use crate::order::{Mode, OrderRequest, Placed};
use crate::outbox::Claim;
use crate::outbox::cleanup::{CleanupConfig, CleanupReport, Pacer};

/// The store a data directory was initialised with. Absent from `outbox-lab.json` means SQLite
/// (every directory made before PostgreSQL existed).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreConfig {
    /// `orders.db` in the data directory.
    #[default]
    Sqlite,
    /// A PostgreSQL database, by connection URL (`postgresql://…` or `host=… dbname=…`).
    Postgres(String),
}

impl StoreConfig {
    /// One line for humans: `sqlite` or `postgres (socket /tmp/x/.s.PGSQL.5432, database d, …)`.
    pub fn describe(&self) -> String {
        match self {
            StoreConfig::Sqlite => "sqlite".to_string(),
            StoreConfig::Postgres(url) => format!("postgres ({})", pg::describe_target(url)),
        }
    }
}

/// The order service's writes: an order and its `OrderPlaced` in one transaction, idempotent on
/// `request_id` (or, in the naive modes, the dual write that loses and ghosts events), and the
/// lifecycle events `pay` and `ship` with gap-free per-order seqs.
pub trait OrderStore {
    fn place(&mut self, request: &OrderRequest) -> Result<Placed>;
    /// Place several orders; one reply per request, in order (a refusal is that request's
    /// `Err(reason)`; errors that are not the input's fault fail the whole call).
    fn place_group(
        &mut self,
        requests: &[OrderRequest],
    ) -> Result<Vec<crate::order::group::GroupReply>>;
    /// Pay or ship an order; returns the new event's `aggregate_seq`.
    fn transition(&mut self, order_id: i64, step: Transition) -> Result<i64>;
}

/// The relay's side of the outbox.
pub trait OutboxStore: Send {
    /// Claim up to `batch` unpublished rows (only an order's oldest unpublished event is
    /// claimable), sorted by id, under the fencing `token`; `lease_ms` bounds how long the
    /// claim is ours.
    fn claim(&mut self, token: &str, lease_ms: u64, batch: usize) -> Result<Claim>;
    /// Mark the claim's rows published where it still holds them; returns how many.
    fn mark(&mut self, claim: &Claim) -> Result<usize>;
    /// Give up the claim's rows `ids`, which were not appended (their partition's append lock
    /// stayed busy): the coming `mark` must not touch them; returns how many were released.
    fn release_unshipped(&mut self, claim: &Claim, ids: &[i64]) -> Result<usize>;
    /// Rows not yet published, including those under someone's claim.
    fn unpublished_count(&mut self) -> Result<u64>;
    /// Remove published rows older than `config.retention_ms` before `now_us`; never an
    /// unpublished row.
    fn cleanup(
        &mut self,
        config: &CleanupConfig,
        now_us: i64,
        stop: &AtomicBool,
        pacer: &mut Pacer,
    ) -> Result<CleanupReport>;
    /// The file (relative to the data dir) whose writes mean "a commit happened", for the
    /// doorbell; None when the store has no such file (a server's WAL is not ours to watch).
    fn doorbell_file(&self) -> Option<&'static str>;
    /// May a second claim be taken before the first is marked (the relay's overlapped sync)?
    fn allows_overlapping_claims(&self) -> bool;
    /// PostgreSQL: LISTEN for the NOTIFY the outbox's insert trigger sends at commit (creating
    /// the trigger if missing). False when the store has no notifications (SQLite).
    fn listen(&mut self) -> Result<bool> {
        Ok(false)
    }
    /// Forget notifications already delivered (call right before looking for work).
    fn drain_notifications(&mut self) -> Result<()> {
        Ok(())
    }
    /// Wait for a notification, at most `max_wait_ms`, or until `stop`.
    fn wait_notified(&mut self, stop: &AtomicBool, max_wait_ms: u64) -> Result<()> {
        let _ = (stop, max_wait_ms);
        unreachable!("wait_notified on a store whose listen() said false")
    }
}

/// How far behind the relays are, read-only: for `lag`.
pub trait BacklogReader {
    /// Unpublished rows (including leased ones), and the oldest one's `created_at_us`.
    fn backlog(&mut self) -> Result<(u64, Option<i64>)>;
}

/// How a PostgreSQL relay claims (SQLite has one way: the lease).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClaimMode {
    /// `SELECT … FOR UPDATE SKIP LOCKED` in a transaction held open across append and sync;
    /// the mark commits it. A dead relay's locks go with its connection.
    #[default]
    Locked,
    /// `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING`: a lease written
    /// into the rows, committed at once; no transaction stays open.
    Lease,
}

/// Start over: a fresh data directory at `root` (wiped first) on `store`, whose outbox-lab
/// tables are wiped too. For the lab's runs that promise an empty store; never for `init`.
pub fn fresh_data_dir(
    root: &std::path::Path,
    partitions: u32,
    store: &StoreConfig,
) -> Result<DataDir> {
    use crate::error::Context;
    if root.exists() {
        std::fs::remove_dir_all(root).ctx(format!("clearing {}", root.display()))?;
    }
    if let StoreConfig::Postgres(url) = store {
        let mut client = pg::connect(url, pg::DEFAULT_IDLE_IN_TX_MS)?;
        pg::schema::wipe(&mut client)?;
    }
    DataDir::init_with_store(root, partitions, store.clone(), None)
}

/// Open the read-only backlog view for `lag`.
pub fn open_backlog(dir: &DataDir) -> Result<Box<dyn BacklogReader>> {
    match &dir.store {
        StoreConfig::Sqlite => Ok(Box::new(sqlite::SqliteBacklog::open(dir)?)),
        StoreConfig::Postgres(url) => Ok(Box::new(pg::PgBacklog::open(url)?)),
    }
}

/// Open the order service's store for `mode`.
pub fn open_orders(dir: &DataDir, mode: Mode) -> Result<Box<dyn OrderStore>> {
    match &dir.store {
        StoreConfig::Sqlite => Ok(Box::new(crate::order::OrderService::open(dir, mode)?)),
        StoreConfig::Postgres(url) => Ok(Box::new(pg::orders::PgOrders::open(dir, url, mode)?)),
    }
}

/// Open the relay's store. `claim_mode` matters to PostgreSQL only.
pub fn open_outbox(dir: &DataDir, claim_mode: ClaimMode) -> Result<Box<dyn OutboxStore>> {
    match &dir.store {
        StoreConfig::Sqlite => Ok(Box::new(sqlite::SqliteOutbox::open(dir)?)),
        StoreConfig::Postgres(url) => Ok(Box::new(pg::outbox::PgOutbox::open(url, claim_mode)?)),
    }
}
