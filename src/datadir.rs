//! The data directory: where every process finds the two databases, the broker and the trace.
//!
//! ```text
//!   DIR/
//!     outbox-lab.json        {"partitions": 4, "store": …}: written once by `init`
//!     orders.db              orders + outbox           (SQLite store only; see `store`)
//!     consumer.db            inbox + effects + points  (consumer)
//!     broker/orders.pN.log   one append-only log per partition
//!     broker/GROUP.pN.offset the consumer group's committed offsets
//!     trace.jsonl            what happened to which event, from every process
//! ```
//!
//! `init` is idempotent; every other command refuses a directory `init` never touched, so a
//! typo in `--dir` is a clear error rather than a silently created empty store.

use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};
use crate::store::StoreConfig;

const CONFIG_FILE: &str = "outbox-lab.json";
pub const MAX_PARTITIONS: u32 = 256;

#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
    /// Fixed at `init`: changing it would move aggregates between partitions.
    pub partitions: u32,
    /// Where orders and outbox live; fixed at `init`.
    pub store: StoreConfig,
}

impl DataDir {
    pub fn orders_db(&self) -> PathBuf {
        self.root.join("orders.db")
    }
    pub fn consumer_db(&self) -> PathBuf {
        self.root.join("consumer.db")
    }
    pub fn broker_dir(&self) -> PathBuf {
        self.root.join("broker")
    }
    pub fn trace_path(&self) -> PathBuf {
        self.root.join("trace.jsonl")
    }

    /// Create everything (idempotent). An existing directory keeps its partition count; asking
    /// for a different one is an error, because aggregates would silently change partition.
    pub fn init(root: &Path, partitions: u32) -> Result<DataDir> {
        DataDir::init_with_store(root, partitions, StoreConfig::Sqlite, None)
    }

    /// [`DataDir::init`] with a chosen store. For PostgreSQL the server is reached and its
    /// schema created *before* anything is written locally, so a bad or unreachable URL leaves
    /// nothing half-initialised. `partition_rows` sizes PostgreSQL's outbox partitions.
    pub fn init_with_store(
        root: &Path,
        partitions: u32,
        store: StoreConfig,
        partition_rows: Option<i64>,
    ) -> Result<DataDir> {
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(Error::Input(format!(
                "--partitions must be between 1 and {MAX_PARTITIONS}, got {partitions}"
            )));
        }
        if root.exists() && !root.is_dir() {
            return Err(Error::Input(format!(
                "{} is a file, not a directory: `--dir` names a data directory",
                root.display()
            )));
        }
        let config = root.join(CONFIG_FILE);
        if config.exists() {
            let existing = DataDir::open(root)?;
            if existing.partitions != partitions {
                return Err(Error::Input(format!(
                    "{} was initialised with {} partitions; refusing to change it to {partitions}",
                    root.display(),
                    existing.partitions
                )));
            }
            if existing.store != store {
                return Err(Error::Input(format!(
                    "{} was initialised with the {} store; refusing to change it to {}",
                    root.display(),
                    existing.store.describe(),
                    store.describe()
                )));
            }
        }
        if let StoreConfig::Postgres(url) = &store {
            let mut client =
                crate::store::pg::connect(url, crate::store::pg::DEFAULT_IDLE_IN_TX_MS)?;
            crate::store::pg::schema::create(&mut client, partition_rows)?;
        }
        std::fs::create_dir_all(root).ctx(format!("creating {}", root.display()))?;
        if !config.exists() {
            let mut json = serde_json::json!({ "partitions": partitions });
            if store != StoreConfig::Sqlite {
                json["store"] = serde_json::to_value(&store).expect("store config serialises");
            }
            write_synced(&config, json.to_string().as_bytes())?;
        }
        let dir = DataDir {
            root: root.to_path_buf(),
            partitions,
            store,
        };
        crate::broker::Broker::create(&dir.broker_dir(), partitions)?;
        if dir.store == StoreConfig::Sqlite {
            crate::outbox::schema::create(&dir.orders_db())?;
        }
        crate::consumer::schema::create(&dir.consumer_db())?;
        Ok(dir)
    }

    /// Open an initialised directory; names what is missing otherwise.
    pub fn open(root: &Path) -> Result<DataDir> {
        let missing = |reason: String| Error::NotInitialised {
            dir: root.to_path_buf(),
            reason,
        };
        if root.exists() && !root.is_dir() {
            return Err(Error::Input(format!(
                "{} is a file, not a directory: `--dir` names a data directory",
                root.display()
            )));
        }
        if !root.is_dir() {
            return Err(missing("no such directory".into()));
        }
        let config = root.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config)
            .map_err(|e| missing(format!("cannot read {CONFIG_FILE}: {e}")))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| missing(format!("{CONFIG_FILE} is not JSON: {e}")))?;
        let partitions = value["partitions"]
            .as_u64()
            .filter(|p| (1..=MAX_PARTITIONS as u64).contains(p))
            .ok_or_else(|| missing(format!("{CONFIG_FILE} has no valid \"partitions\"")))?
            as u32;
        let store = match value.get("store") {
            None => StoreConfig::Sqlite,
            Some(store) => serde_json::from_value(store.clone())
                .map_err(|e| missing(format!("{CONFIG_FILE} has an unknown \"store\": {e}")))?,
        };
        let dir = DataDir {
            root: root.to_path_buf(),
            partitions,
            store,
        };
        let mut local_dbs = vec![dir.consumer_db()];
        if dir.store == StoreConfig::Sqlite {
            local_dbs.push(dir.orders_db());
        }
        for db in local_dbs {
            if !db.is_file() {
                return Err(missing(format!("{} is missing", db.display())));
            }
        }
        Ok(dir)
    }
}

/// Write a small file durably: temp file, `sync_data()`, rename, fsync the directory.
/// Why: a crash mid-write must leave either the old file or the new one, never half of it.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).ctx(format!("writing {}", tmp.display()))?;
    let file = std::fs::File::open(&tmp).ctx(format!("opening {}", tmp.display()))?;
    file.sync_data().ctx(format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).ctx(format!("renaming to {}", path.display()))?;
    if let Some(parent) = path.parent() {
        let dir = std::fs::File::open(parent).ctx(format!("opening {}", parent.display()))?;
        dir.sync_all()
            .ctx(format!("syncing directory {}", parent.display()))?;
    }
    Ok(())
}
