//! Cleanup on PostgreSQL: drop whole partitions of published rows; batched deletes as the
//! alternative (for comparison, and for a table someone did not partition).
//!
//! ```text
//!   outbox_p0 │ outbox_p1 │ outbox_p2 ◀ sequence is here │ outbox_p3 (ahead)
//!   1. candidate: wholly below the sequence, no unpublished row, newest mark before cutoff
//!   2. ALTER TABLE outbox DETACH PARTITION outbox_pN CONCURRENTLY
//!        (no exclusive lock on `outbox`: writers and claims go on; it waits out every
//!         transaction that could still insert into the partition)
//!   3. look again, now that nothing can reach it: an unpublished row? re-attach, stop.
//!      none? DROP TABLE outbox_pN — a file unlinked, whatever its row count.
//! ```
//!
//! Why look twice: step 1 cannot see a transaction that took an id in the partition's range
//! and has not committed yet. Once detached, no row can arrive, so the second look is final.
//! Never an unpublished row: that is checked on the detached table, right before the drop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use postgres::Client;

use crate::error::{Context, Result};
use crate::outbox::cleanup::{CleanupConfig, CleanupReport};
use crate::store::pg::schema::{partition_name, partition_rows_of};

/// One partition's state, as cleanup sees it.
struct PartitionState {
    rows: i64,
    unpublished: i64,
    newest_mark_us: Option<i64>,
}

/// Attached partitions, oldest first, with their bound number `n` (`outbox_p{n}`).
fn attached_partitions(client: &mut Client) -> Result<Vec<i64>> {
    let rows = client
        .query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'outbox'::regclass",
            &[],
        )
        .ctx("listing outbox partitions")?;
    let mut ns: Vec<i64> = rows
        .iter()
        .filter_map(|r| r.get::<_, String>(0).strip_prefix("outbox_p")?.parse().ok())
        .collect();
    ns.sort_unstable();
    Ok(ns)
}

fn state_of(client: &mut Client, n: i64) -> Result<PartitionState> {
    let name = partition_name(n);
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), count(*) FILTER (WHERE published_at_us IS NULL), max(published_at_us) FROM {name}"
            ),
            &[],
        )
        .ctx(format!("reading {name}"))?;
    Ok(PartitionState {
        rows: row.get(0),
        unpublished: row.get(1),
        newest_mark_us: row.get(2),
    })
}

/// The first id the sequence will hand out next.
fn next_id(client: &mut Client) -> Result<i64> {
    client
        .query_one(
            "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM outbox_id_seq",
            &[],
        )
        .ctx("reading outbox_id_seq")
        .map(|r| r.get(0))
}

/// Drop partitions whose rows are all published before `now_us - retention`. One partition
/// per "batch"; stops at the first partition that does not qualify (later ones are younger).
pub fn drop_partitions(
    client: &mut Client,
    config: &CleanupConfig,
    now_us: i64,
    stop: &AtomicBool,
) -> Result<CleanupReport> {
    let cutoff_us = now_us.saturating_sub((config.retention_ms as i64).saturating_mul(1000));
    let rows = partition_rows_of(client)?;
    let mut report = CleanupReport {
        strategy: "drop-partition",
        ..CleanupReport::default()
    };
    for n in attached_partitions(client)? {
        if report.batches >= config.max_batches || stop.load(Ordering::Relaxed) {
            return Ok(report);
        }
        // Wholly below the sequence: no *future* id lands here (in-flight ones: see step 3).
        let upper_exclusive = n.saturating_add(1).saturating_mul(rows).saturating_add(1);
        if upper_exclusive > next_id(client)? {
            break;
        }
        let before = state_of(client, n)?;
        if !qualifies(&before, cutoff_us) {
            break;
        }
        let started = Instant::now();
        let dropped = detach_check_drop(client, n, rows, cutoff_us)?;
        report.longest_tx_us = report
            .longest_tx_us
            .max(started.elapsed().as_micros() as u64);
        report.batches += 1;
        if !dropped {
            return Ok(report);
        }
        report.segments_dropped += 1;
        report.rows_deleted += before.rows as u64;
    }
    report.finished = true;
    Ok(report)
}

fn qualifies(state: &PartitionState, cutoff_us: i64) -> bool {
    state.unpublished == 0 && state.newest_mark_us.is_none_or(|t| t < cutoff_us)
}

/// Steps 2 and 3. Returns whether the partition was dropped.
fn detach_check_drop(client: &mut Client, n: i64, rows: i64, cutoff_us: i64) -> Result<bool> {
    let name = partition_name(n);
    // Not in a transaction block (CONCURRENTLY refuses one): autocommit statement.
    client
        .batch_execute(&format!(
            "ALTER TABLE outbox DETACH PARTITION {name} CONCURRENTLY"
        ))
        .ctx(format!("detaching {name}"))?;
    let after = state_of(client, n)?;
    if qualifies(&after, cutoff_us) {
        client
            .batch_execute(&format!("DROP TABLE {name}"))
            .ctx(format!("dropping {name}"))?;
        return Ok(true);
    }
    // A late transaction put a row here after the first look: give the partition back.
    let (from, to) = (n * rows + 1, (n + 1) * rows + 1);
    client
        .batch_execute(&format!(
            "ALTER TABLE outbox ATTACH PARTITION {name} FOR VALUES FROM ({from}) TO ({to})"
        ))
        .ctx(format!("re-attaching {name}"))?;
    Ok(false)
}

/// The alternative: delete published rows before the cutoff, `batch_rows` per transaction.
pub fn delete_batches(
    client: &mut Client,
    config: &CleanupConfig,
    now_us: i64,
    stop: &AtomicBool,
) -> Result<CleanupReport> {
    let cutoff_us = now_us.saturating_sub((config.retention_ms as i64).saturating_mul(1000));
    let mut report = CleanupReport {
        strategy: "batched-delete",
        ..CleanupReport::default()
    };
    while report.batches < config.max_batches && !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let deleted = client
            .execute(
                "DELETE FROM outbox WHERE id IN (
                    SELECT id FROM outbox
                     WHERE published_at_us IS NOT NULL AND published_at_us < $1
                     ORDER BY id LIMIT $2)",
                &[&cutoff_us, &(config.batch_rows as i64)],
            )
            .ctx("deleting a batch of published rows")?;
        report.longest_tx_us = report
            .longest_tx_us
            .max(started.elapsed().as_micros() as u64);
        report.batches += 1;
        report.rows_deleted += deleted;
        if deleted < config.batch_rows as u64 {
            report.finished = true;
            break;
        }
        crate::wake::sleep_unless_stopped(stop, config.pause_ms);
    }
    Ok(report)
}
