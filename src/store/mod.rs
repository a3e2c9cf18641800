//! Where orders and outbox live: the *orders store*, chosen once at `init` and recorded in the
//! data directory, so every later command on that directory finds the same store.
//!
//! ```text
//!   outbox-lab.json  {"partitions": 4}                                      → SQLite orders.db
//!   outbox-lab.json  {"partitions": 4, "store": {"postgres": "postgresql:///…"}} → PostgreSQL
//! ```
//!
//! SQLite is the zero-infrastructure default: one file, a single writer, leases written into
//! rows as its stand-in for row locks. PostgreSQL is what the pattern meets in production: a
//! server, many writers, `FOR UPDATE SKIP LOCKED`, partitions dropped whole. Everything else in
//! the data directory (broker log, offsets, `consumer.db`, `trace.jsonl`) stays local in both
//! cases: the consumer is another service with its own database.

pub mod pg;

use serde::{Deserialize, Serialize};

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
    /// One line for humans: `sqlite` or `postgres (socket /tmp/x/.s.PGSQL.5432, database d)`.
    pub fn describe(&self) -> String {
        match self {
            StoreConfig::Sqlite => "sqlite".to_string(),
            StoreConfig::Postgres(url) => format!("postgres ({})", pg::describe_target(url)),
        }
    }
}
