//! The relay's side of the outbox on PostgreSQL: the canonical `FOR UPDATE SKIP LOCKED` claim,
//! in two forms (see [`ClaimMode`]), and marking.
//!
//! ```text
//!   locked (default)                              lease
//!   BEGIN                                         UPDATE outbox SET lease… WHERE id IN (
//!   SELECT … FOR UPDATE SKIP LOCKED  ── claim        SELECT … FOR UPDATE SKIP LOCKED) RETURNING
//!   append + fdatasync (locks held)               (committed: locks gone, the lease remains)
//!   UPDATE … SET published_at_us; COMMIT          append + fdatasync
//!                                                 UPDATE … WHERE lease_owner = token AND lease live
//! ```
//!
//! Both keep the per-order rule: a row is claimable only if no earlier event of its order is
//! still unpublished. With SKIP LOCKED a locked row is invisible to other claims but still
//! unpublished, so an order's second event waits for its first to be *marked*, in either mode.
//!
//! Locked mode needs no fencing token: the row locks are the claim, and they end with the
//! transaction. If the session dies (relay killed: its socket closes and the server rolls back
//! at once; relay hung: `idle_in_transaction_session_timeout`, set to the lease per claim), the
//! mark fails, and every copy it appended is a duplicate the consumer absorbs. Lease mode
//! writes the claim into the rows like SQLite does, times it by the *server's* clock (one clock
//! for every relay machine), and fences the mark on the token.

use std::collections::HashMap;

use postgres::error::SqlState;
use postgres::{Client, Statement};

use crate::error::{Context, Error, Result};
use crate::outbox::claim::MAX_BATCH;
use crate::outbox::{Claim, ClaimedRow};
use crate::store::ClaimMode;
use crate::store::pg;

/// The server's clock in µs: leases in lease mode are timed by it, not by each relay's.
const NOW_US: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

/// The rows a claim may take: unpublished, head of their order, in id order.
const CLAIMABLE: &str = "
  FROM outbox AS o
 WHERE o.published_at_us IS NULL
   AND (o.aggregate_seq = 1
        OR NOT EXISTS (SELECT 1 FROM outbox AS earlier
                        WHERE earlier.aggregate_id = o.aggregate_id
                          AND earlier.aggregate_seq < o.aggregate_seq
                          AND earlier.published_at_us IS NULL))";

const COLUMNS: &str =
    "id, event_id, aggregate_id, aggregate_seq, event_type, payload, created_at_us, attempts";

pub struct PgOutbox {
    url: String,
    client: Client,
    mode: ClaimMode,
    /// Locked mode: a claim's transaction is open (between `claim` and `mark`).
    in_claim: bool,
    /// Locked mode: rows of the open claim given up unappended; the mark skips them and the
    /// COMMIT unlocks them, so the next claim anywhere can take them.
    released: Vec<i64>,
    /// Prepared once per session: the server plans the claim once, not at every pass (with a
    /// partitioned outbox, planning touches every partition).
    statements: HashMap<&'static str, Statement>,
}

impl PgOutbox {
    pub fn open(url: &str, mode: ClaimMode) -> Result<PgOutbox> {
        Ok(PgOutbox {
            url: url.to_string(),
            client: relay_session(url)?,
            mode,
            in_claim: false,
            released: Vec::new(),
            statements: HashMap::new(),
        })
    }

    fn claim_locked(&mut self, lease_ms: u64, batch: usize) -> Result<Vec<ClaimedRow>> {
        // Prepared before the transaction: once the server may have cut the session off, the
        // mark must be one statement whose failure means "fenced", not a prepare that fails.
        self.prepared("mark_locked", mark_locked_sql)?;
        // The lease bounds how long our row locks may sit idle: a hung relay loses them then.
        self.client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL idle_in_transaction_session_timeout = {lease_ms}"
            ))
            .ctx("BEGIN (claim)")?;
        self.in_claim = true;
        let claim = self.prepared("claim_locked", || {
            format!("SELECT {COLUMNS} {CLAIMABLE} ORDER BY o.id LIMIT $1 FOR UPDATE SKIP LOCKED")
        })?;
        let rows = self
            .client
            .query(&claim, &[&(batch as i64)])
            .ctx("claiming a batch (FOR UPDATE SKIP LOCKED)")?;
        // `attempts` counts marked claims here (a crashed claim's increment rolls back with
        // it), so the attempt being made is one more.
        let rows: Vec<ClaimedRow> = rows
            .iter()
            .map(claimed_row)
            .map(|mut row| {
                row.attempts += 1;
                row
            })
            .collect();
        if rows.is_empty() {
            self.end_claim("COMMIT")?;
        }
        Ok(rows)
    }

    fn claim_lease(
        &mut self,
        token: &str,
        lease_ms: u64,
        batch: usize,
    ) -> Result<(i64, Vec<ClaimedRow>)> {
        let lease_us = i64::try_from(lease_ms)
            .ok()
            .and_then(|ms| ms.checked_mul(1000))
            .ok_or_else(|| Error::Input(format!("lease {lease_ms} ms overflows")))?;
        let claim = self.prepared("claim_lease", || {
            format!(
                "UPDATE outbox SET lease_owner = $1, lease_until_us = {NOW_US} + $2, attempts = attempts + 1
                  WHERE id IN (SELECT o.id {CLAIMABLE}
                                  AND (o.lease_until_us IS NULL OR o.lease_until_us <= {NOW_US})
                                ORDER BY o.id LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING {COLUMNS}, lease_until_us"
            )
        })?;
        let rows = self
            .client
            .query(&claim, &[&token, &lease_us, &(batch as i64)])
            .ctx("claiming a batch (UPDATE … SKIP LOCKED RETURNING)")?;
        let lease_until_us = rows.first().map(|r| r.get::<_, i64>(8)).unwrap_or(0);
        Ok((lease_until_us, rows.iter().map(claimed_row).collect()))
    }

    /// The statement `key`, prepared on this session the first time it is asked for.
    fn prepared(&mut self, key: &'static str, sql: impl FnOnce() -> String) -> Result<Statement> {
        if let Some(statement) = self.statements.get(key) {
            return Ok(statement.clone());
        }
        let statement = self
            .client
            .prepare(&sql())
            .ctx(format!("preparing {key}"))?;
        self.statements.insert(key, statement.clone());
        Ok(statement)
    }

    /// End the claim's transaction; a session the server cut off is replaced.
    fn end_claim(&mut self, how: &str) -> Result<()> {
        self.in_claim = false;
        self.released.clear();
        self.client.batch_execute(how).ctx(how.to_string())
    }

    /// Our session is gone (the server timed it out, or restarted): reconnect, so the next pass
    /// works, and report the claim as lost.
    fn reconnect(&mut self) -> Result<()> {
        self.in_claim = false;
        self.released.clear();
        self.statements.clear();
        self.client = relay_session(&self.url)?;
        Ok(())
    }

    fn mark_locked(&mut self, claim: &Claim) -> Result<usize> {
        let ids: Vec<i64> = claim
            .rows
            .iter()
            .map(|r| r.id)
            .filter(|id| !self.released.contains(id))
            .collect();
        let mark = self.statements["mark_locked"].clone();
        let marked = self.client.execute(&mark, &[&ids]);
        let marked = match marked {
            Ok(n) => n,
            Err(e) if session_lost(&e) || self.client.is_closed() => {
                self.reconnect()?;
                return Ok(0);
            }
            Err(e) => return Err(e).ctx("marking published"),
        };
        match self.end_claim("COMMIT") {
            Ok(()) => Ok(marked as usize),
            Err(_) if self.client.is_closed() => {
                self.reconnect()?;
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// Give a locked-mode claim back unmarked (ROLLBACK): its rows are claimable again at once.
    /// What a relay does when its append fails; the poll benchmark claims the same rows over.
    pub fn abandon(&mut self) -> Result<()> {
        if self.in_claim {
            self.end_claim("ROLLBACK")?;
        }
        Ok(())
    }

    fn mark_lease(&mut self, claim: &Claim) -> Result<usize> {
        let ids: Vec<i64> = claim.rows.iter().map(|r| r.id).collect();
        let mark = self.prepared("mark_lease", || {
            format!(
                "UPDATE outbox SET published_at_us = {NOW_US}
                  WHERE id = ANY($1) AND lease_owner = $2 AND lease_until_us > {NOW_US}
                    AND published_at_us IS NULL"
            )
        })?;
        let marked = self
            .client
            .execute(&mark, &[&ids, &claim.token])
            .ctx("marking published")?;
        Ok(marked as usize)
    }
}

fn mark_locked_sql() -> String {
    format!(
        "UPDATE outbox SET published_at_us = {NOW_US}, attempts = attempts + 1
          WHERE id = ANY($1) AND published_at_us IS NULL"
    )
}

/// A relay's session. `synchronous_commit = off`, as SQLite's relay runs at `synchronous=NORMAL`:
/// a claim, mark or cleanup lost to a power cut only means rows shipped again (at-least-once
/// absorbs it) or deleted on the next run; the events themselves were committed durably by the
/// order service, whose sessions keep `synchronous_commit = on`.
fn relay_session(url: &str) -> Result<Client> {
    let mut client = pg::connect(url, pg::DEFAULT_IDLE_IN_TX_MS)?;
    client
        .batch_execute("SET synchronous_commit = off")
        .ctx("SET synchronous_commit = off for the relay")?;
    Ok(client)
}

/// The server ended our session or transaction: SQLSTATE 25P03
/// (idle_in_transaction_session_timeout) or class 57 (operator intervention), or the socket.
fn session_lost(e: &postgres::Error) -> bool {
    match e.code() {
        Some(code) => {
            *code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT || code.code().starts_with("57")
        }
        None => e.is_closed(),
    }
}

impl crate::store::OutboxStore for PgOutbox {
    fn claim(&mut self, token: &str, lease_ms: u64, batch: usize) -> Result<Claim> {
        assert!(
            (1..=MAX_BATCH).contains(&batch),
            "batch {batch} outside 1..={MAX_BATCH}"
        );
        assert!(
            !self.in_claim,
            "a claim's transaction is still open: mark it first"
        );
        let (lease_until_us, mut rows) = match self.mode {
            ClaimMode::Locked => {
                let until = crate::clock::now_us() + (lease_ms as i64).saturating_mul(1000);
                (until, self.claim_locked(lease_ms, batch)?)
            }
            ClaimMode::Lease => self.claim_lease(token, lease_ms, batch)?,
        };
        rows.sort_by_key(|r| r.id);
        Ok(Claim {
            // PostgreSQL partitions itself: the one `outbox` table is what the mark names.
            layout: crate::outbox::Layout::Single,
            token: token.to_string(),
            lease_until_us,
            rows,
        })
    }

    fn mark(&mut self, claim: &Claim) -> Result<usize> {
        if claim.rows.is_empty() {
            return Ok(0);
        }
        let marked = match self.mode {
            ClaimMode::Locked => self.mark_locked(claim)?,
            ClaimMode::Lease => self.mark_lease(claim)?,
        };
        assert!(
            marked <= claim.rows.len(),
            "marked {marked} rows for a claim of {}",
            claim.rows.len()
        );
        Ok(marked)
    }

    fn release_unshipped(&mut self, claim: &Claim, ids: &[i64]) -> Result<usize> {
        match self.mode {
            ClaimMode::Locked => {
                assert!(self.in_claim, "release inside a claim's transaction");
                self.released.extend_from_slice(ids);
                Ok(ids.len())
            }
            // As on SQLite: the token goes (the mark cannot touch them), the lease time stays.
            ClaimMode::Lease => {
                let released = self
                    .client
                    .execute(
                        "UPDATE outbox SET lease_owner = NULL WHERE id = ANY($1) AND lease_owner = $2",
                        &[&ids, &claim.token],
                    )
                    .ctx("releasing unshipped rows")?;
                Ok(released as usize)
            }
        }
    }

    fn unpublished_count(&mut self) -> Result<u64> {
        let row = self
            .client
            .query_one(
                "SELECT count(*) FROM outbox WHERE published_at_us IS NULL",
                &[],
            )
            .ctx("counting unpublished rows")?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    fn cleanup(
        &mut self,
        config: &crate::outbox::cleanup::CleanupConfig,
        now_us: i64,
        stop: &std::sync::atomic::AtomicBool,
        _pacer: &mut crate::outbox::cleanup::Pacer,
    ) -> Result<crate::outbox::cleanup::CleanupReport> {
        assert!(
            !self.in_claim,
            "cleanup between passes, never inside a claim"
        );
        pg::cleanup::drop_partitions(&mut self.client, config, now_us, stop)
    }

    fn allows_overlapping_claims(&self) -> bool {
        // Locked claims live in the session's one transaction; leases are rows, any number.
        self.mode == ClaimMode::Lease
    }

    fn doorbell_file(&self) -> Option<&'static str> {
        None
    }

    fn listen(&mut self) -> Result<bool> {
        pg::cdc::ensure_notify_trigger(&mut self.client)?;
        pg::notify::listen(&mut self.client, pg::cdc::CHANNEL)?;
        Ok(true)
    }

    fn drain_notifications(&mut self) -> Result<()> {
        pg::notify::drain(&mut self.client).map(|_| ())
    }

    fn wait_notified(
        &mut self,
        stop: &std::sync::atomic::AtomicBool,
        max_wait_ms: u64,
    ) -> Result<()> {
        assert!(
            !self.in_claim,
            "waiting for a NOTIFY inside a claim's transaction"
        );
        pg::notify::wait(&mut self.client, stop, max_wait_ms).map(|_| ())
    }
}

fn claimed_row(r: &postgres::Row) -> ClaimedRow {
    ClaimedRow {
        id: r.get(0),
        event_id: r.get(1),
        aggregate_id: r.get(2),
        aggregate_seq: r.get(3),
        event_type: r.get(4),
        payload: r.get(5),
        created_at_us: r.get(6),
        attempts: r.get(7),
    }
}
