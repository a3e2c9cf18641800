//! The PostgreSQL orders store: connecting (with every session setting explicit), the schema,
//! and the store's operations.
//!
//! Durability on this side is the server's: `fsync=on` in the cluster (see `scripts/pg-up`)
//! and `synchronous_commit=on` per session, set below, so COMMIT returns only once the WAL is
//! flushed — the same promise as SQLite's `synchronous=FULL`.

pub mod cdc;
pub mod cleanup;
pub mod notify;
pub mod orders;
pub mod outbox;
pub mod schema;

use std::str::FromStr;

use postgres::config::Host;
use postgres::{Client, Config, NoTls};

use crate::error::{Error, Result};

/// How long a connection attempt may take before it is reported as unreachable.
pub const CONNECT_TIMEOUT_S: u64 = 10;

/// Parse a URL, naming what is wrong with it.
pub fn parse(url: &str) -> Result<Config> {
    Config::from_str(url).map_err(|e| {
        Error::Input(format!(
            "--postgres {url:?} is not a PostgreSQL connection URL: {e} \
             (expected e.g. postgresql:///DB?host=/socket/dir&user=postgres)"
        ))
    })
}

/// Where a URL points, for error messages: `socket /dir/.s.PGSQL.5432, database d, user u`.
pub fn describe_target(url: &str) -> String {
    match Config::from_str(url) {
        Ok(config) => describe_config(&config),
        Err(_) => format!("unparsable URL {url:?}"),
    }
}

fn describe_config(config: &Config) -> String {
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            Host::Tcp(name) => format!("host {name}:{port}"),
            Host::Unix(dir) => format!("socket {}/.s.PGSQL.{port}", dir.display()),
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "no host given".to_string()
    } else {
        hosts.join(" or ")
    };
    format!(
        "{hosts}, database {}, user {}",
        config.get_dbname().unwrap_or("(default)"),
        config.get_user().unwrap_or("(default)")
    )
}

/// Open a session. A failure names the host or socket and what failed.
///
/// Session settings, each stated here rather than left to the server's defaults:
/// - `synchronous_commit = on`: a committed order survives a power cut, not just a crash.
/// - `idle_in_transaction_session_timeout`: a relay holding row locks across its append and
///   sync that then hangs (SIGSTOP, a stuck disk) is cut off after this, its transaction rolled
///   back and its locks released. A *killed* relay needs no timeout: its socket closes and the
///   server aborts the transaction at once (measured in the docs).
/// - client TCP keepalives: over TCP, a peer machine that vanished without closing the socket
///   is noticed after ~`KEEPALIVE_IDLE_S` + probes, not after the kernel's two hours.
pub fn connect(url: &str, idle_in_tx_ms: u64) -> Result<Client> {
    let mut config = parse(url)?;
    config
        .connect_timeout(std::time::Duration::from_secs(CONNECT_TIMEOUT_S))
        .keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(KEEPALIVE_IDLE_S))
        .application_name("outbox-lab");
    let mut client = config.connect(NoTls).map_err(|source| Error::Postgres {
        context: format!(
            "cannot connect to PostgreSQL at {}",
            describe_config(&config)
        ),
        source,
    })?;
    let settings = format!(
        "SET synchronous_commit = on; SET idle_in_transaction_session_timeout = {idle_in_tx_ms};"
    );
    client
        .batch_execute(&settings)
        .map_err(|source| Error::Postgres {
            context: format!("applying session settings on {}", describe_config(&config)),
            source,
        })?;
    Ok(client)
}

/// The same server and credentials as `url`, database `dbname`, as `key=value` pairs (for
/// the lab, which makes a database per benchmark run).
pub fn url_with_dbname(url: &str, dbname: &str) -> Result<String> {
    let config = parse(url)?;
    let mut parts = vec![format!("dbname={dbname}")];
    for host in config.get_hosts() {
        match host {
            Host::Tcp(name) => parts.push(format!("host={name}")),
            Host::Unix(path) => parts.push(format!("host={}", path.display())),
        }
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(password) = config.get_password() {
        let password = String::from_utf8(password.to_vec())
            .map_err(|_| Error::Input("the PostgreSQL URL's password is not UTF-8".into()))?;
        parts.push(format!("password={password}"));
    }
    Ok(parts.join(" "))
}

/// Client-side TCP keepalive idle time (Unix sockets ignore it).
pub const KEEPALIVE_IDLE_S: u64 = 10;

/// The default for [`connect`]'s `idle_in_tx_ms`: no transaction of ours idles this long
/// unless its process is stuck.
pub const DEFAULT_IDLE_IN_TX_MS: u64 = 30_000;

/// `lag`'s view of a PostgreSQL outbox: one read-only query.
pub struct PgBacklog {
    client: Client,
}

impl PgBacklog {
    pub fn open(url: &str) -> Result<PgBacklog> {
        Ok(PgBacklog {
            client: connect(url, DEFAULT_IDLE_IN_TX_MS)?,
        })
    }
}

impl crate::store::BacklogReader for PgBacklog {
    fn backlog(&mut self) -> Result<(u64, Option<i64>)> {
        use crate::error::Context;
        let row = self
            .client
            .query_one(
                "SELECT count(*), min(created_at_us) FROM outbox WHERE published_at_us IS NULL",
                &[],
            )
            .ctx("reading the outbox backlog")?;
        Ok((row.get::<_, i64>(0) as u64, row.get(1)))
    }
}
