//! Benchmarks of the PostgreSQL store, each beside its SQLite counterpart where one exists:
//! `bench postgres relay|poll|cleanup`. Same rules as the others: a release build, tracing
//! off, variants side by side in one run, the load average printed (this machine is shared).
//!
//! ```text
//!   PgBench ── a server (OUTBOX_PG_URL or a throwaway cluster) and one database per scenario
//!     ├─ relay.rs    events/s of one relay at batch 100: SQLite, PostgreSQL locked, lease
//!     ├─ poll.rs     the SKIP LOCKED claim of 100 as the outbox grows to 10M published rows
//!     └─ cleanup.rs  the order write path's p50/p99 with partition drops or deletes running
//! ```

pub mod cleanup;
pub mod poll;
pub mod relay;

use postgres::Client;

use crate::datadir::DataDir;
use crate::error::{Context, Error, Result};
use crate::lab::bench::{Report, Steps, Table, load_average};
use crate::lab::pg_cluster::{HOW_TO_INSTALL, PgServer};
use crate::store::{StoreConfig, pg};

/// The server under test and an admin session on it.
pub struct PgBench {
    pub server: PgServer,
    admin: Client,
}

impl PgBench {
    pub fn start(url: Option<String>) -> Result<PgBench> {
        let server = match url {
            Some(url) => PgServer::given(url),
            None => PgServer::from_env_or_throwaway("bench")?
                .ok_or_else(|| Error::Input(HOW_TO_INSTALL.into()))?,
        };
        let admin = pg::connect(&server.url, pg::DEFAULT_IDLE_IN_TX_MS)?;
        Ok(PgBench { server, admin })
    }

    /// A fresh, empty database `bench_<name>` on the server; its URL.
    pub fn database(&mut self, name: &str) -> Result<String> {
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "database name {name:?}"
        );
        let db = format!("bench_{name}");
        // Two statements, two calls: neither may run inside a transaction block.
        self.admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .ctx(format!("dropping an old database {db}"))?;
        self.admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .ctx(format!("creating database {db}"))?;
        pg::url_with_dbname(&self.server.url, &db)
    }

    /// The setup every PostgreSQL run starts with: a fresh database `bench_<name>` and a data
    /// directory `root/data` whose store it is (outbox partitions of `partition_rows`, or
    /// none). Returns the data directory and the database's URL.
    pub fn data_dir(
        &mut self,
        root: &std::path::Path,
        name: &str,
        partition_rows: Option<i64>,
    ) -> Result<(DataDir, String)> {
        let url = self.database(name)?;
        let data = DataDir::init_with_store(
            &root.join("data"),
            crate::broker::DEFAULT_PARTITIONS,
            StoreConfig::Postgres(url.clone()),
            partition_rows,
        )?;
        Ok((data, url))
    }

    /// Drop a database made by [`PgBench::database`].
    pub fn drop_database(&mut self, name: &str) -> Result<()> {
        self.admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS bench_{name} WITH (FORCE)"
            ))
            .ctx(format!("dropping database bench_{name}"))
    }
}

/// Fill in what every PostgreSQL benchmark's report shares: its one table, its results and
/// timed steps, the load average at the start and now, and the server measured. The caller
/// appends its own notes after these.
pub fn fill_report(
    report: &mut Report,
    bench: &PgBench,
    load_before: &str,
    table: Table,
    results: Vec<serde_json::Value>,
    steps: Steps,
) {
    report.load_at_start = load_before.to_string();
    report.tables.push((String::new(), table));
    report.results = serde_json::json!(results);
    report.steps = steps;
    report.notes = vec![
        format!(
            "load average before: {load_before}; after: {}",
            load_average()
        ),
        format!("server: {}", bench.server.describe()),
    ];
}

/// A fresh scratch directory `base/name` (an old one removed first).
pub fn scratch(base: &std::path::Path, name: &str) -> Result<std::path::PathBuf> {
    let dir = base.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).ctx(format!("removing old {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).ctx(format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Rows per bulk statement: one statement, one transaction, one WAL flush per chunk.
const FILL_CHUNK_ROWS: i64 = 1_000_000;

/// Append `rows` outbox rows straight into the table (benchmarks only): each its order's first
/// event, created at `created_at_us`, published at `published_at_us` or unpublished.
/// Synchronous commit is off for these sessions: scratch data, rebuilt if the machine dies.
pub fn fill(url: &str, rows: i64, created_at_us: i64, published_at_us: Option<i64>) -> Result<()> {
    let mut client = pg::connect(url, pg::DEFAULT_IDLE_IN_TX_MS)?;
    client
        .batch_execute("SET synchronous_commit = off")
        .ctx("SET synchronous_commit = off for the bulk fill")?;
    let mut left = rows;
    while left > 0 {
        let chunk = left.min(FILL_CHUNK_ROWS);
        let mut tx = client.transaction().ctx("BEGIN (fill)")?;
        let next: i64 = tx
            .query_one(
                "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM outbox_id_seq",
                &[],
            )
            .ctx("reading outbox_id_seq")?
            .get(0);
        pg::schema::ensure_partitions_through(&mut tx, next + chunk)?;
        tx.execute(
            "INSERT INTO outbox (event_id, aggregate_id, aggregate_seq, event_type, payload,
                                 created_at_us, published_at_us)
             SELECT md5(random()::text || g::text), 'b' || lpad((g + $1::bigint)::text, 11, '0'), 1,
                    'OrderPlaced',
                    '{\"request_id\":\"bench-o' || g || '\",\"customer\":\"c' || g % 1000 ||
                    '\",\"amount_cents\":' || (100 + g % 90000) || '}',
                    $2::bigint, $3::bigint
               FROM generate_series(1::bigint, $4::bigint) AS g",
            &[&next, &created_at_us, &published_at_us, &chunk],
        )
        .ctx("bulk-filling the outbox")?;
        tx.commit().ctx("COMMIT (fill)")?;
        left -= chunk;
    }
    client
        .batch_execute("VACUUM ANALYZE outbox")
        .ctx("VACUUM ANALYZE outbox")
}
