//! What each crash did, said next to it: the reader should not have to add hit counts to find
//! which order a kill lost.
//!
//! ```text
//!   client.2     pid 8972    naive.after_commit@137    → order 137 LOST: committed, its event never appended
//!   relay-0.1    pid 9001    relay.after_sync@1        → 10 events appended again later (copies)
//!   consumer-0.1 pid 9003    consumer.after_apply@16   → 3 records read again after the restart
//! ```
//!
//! Everything here is read back from what the run left behind — `trace.jsonl` (who claimed,
//! appended, applied what), `orders.db` (which request became which order) and the checker's
//! report (lost, ghosts) — never from what the schedule intended.

use std::collections::HashMap;

use serde_json::Value;

use crate::crashpoint::Point;
use crate::error::Result;
use crate::lab::harness::{Fired, Outcome};
use crate::trace::Ev;

/// A crash with its consequence in words.
#[derive(Debug, Clone)]
pub struct Explained {
    pub fired: Fired,
    /// When it died, µs since the trace's first line (None if the trace lost the line).
    pub t_us: Option<i64>,
    pub consequence: String,
}

/// The run's trace, indexed the way the explanations need it.
struct Index<'a> {
    lines: &'a [Value],
    /// Per event id: the pids that appended it to the log, in trace order.
    appenders: HashMap<&'a str, Vec<u64>>,
    /// Per (partition, offset): the consumer pids that processed the record there.
    readers: HashMap<(u64, u64), Vec<u64>>,
}

impl<'a> Index<'a> {
    fn new(lines: &'a [Value]) -> Index<'a> {
        let mut appenders: HashMap<&str, Vec<u64>> = HashMap::new();
        let mut readers: HashMap<(u64, u64), Vec<u64>> = HashMap::new();
        for line in lines {
            let pid = line["pid"].as_u64().unwrap_or(0);
            match Ev::of_line(line) {
                Some(Ev::Appended) if line["role"] != "order-service" => {
                    for id in line["event_ids"].as_array().into_iter().flatten() {
                        let id = id.as_str().unwrap_or_default();
                        appenders.entry(id).or_default().push(pid);
                    }
                }
                Some(Ev::Applied | Ev::SkippedDuplicate | Ev::DroppedBySeqGuard) => {
                    let at = (
                        line["partition"].as_u64().unwrap_or(0),
                        line["offset_bytes"].as_u64().unwrap_or(0),
                    );
                    readers.entry(at).or_default().push(pid);
                }
                _ => {}
            }
        }
        Index {
            lines,
            appenders,
            readers,
        }
    }

    fn of_pid(&self, pid: u32) -> impl Iterator<Item = &'a Value> + '_ {
        self.lines
            .iter()
            .filter(move |l| l["pid"].as_u64() == Some(u64::from(pid)))
    }

    fn crash_line(&self, pid: u32) -> Option<&'a Value> {
        self.of_pid(pid).find(|l| Ev::of_line(l) == Some(Ev::Crash))
    }
}

/// Every crash of the run, in the order they happened, with what each did.
pub fn explain(outcome: &Outcome) -> Result<Vec<Explained>> {
    let lines = super::story::load(&outcome.dir)?;
    let t0_us = lines.iter().filter_map(|l| l["t_us"].as_i64()).min();
    let index = Index::new(&lines);
    let orders = OrderIds::open(&outcome.dir)?;
    let mut out = Vec::new();
    for fired in &outcome.fired {
        let t_us = index
            .crash_line(fired.pid)
            .and_then(|l| l["t_us"].as_i64())
            .zip(t0_us)
            .map(|(t, t0)| t - t0);
        let consequence = consequence(fired, outcome, &index, &orders)?;
        out.push(Explained {
            fired: fired.clone(),
            t_us,
            consequence,
        });
    }
    out.sort_by_key(|e| e.t_us.unwrap_or(i64::MAX));
    Ok(out)
}

fn point_of(fired: &Fired) -> Option<Point> {
    Point::from_name(fired.point.split('@').next().unwrap_or(&fired.point))
}

fn consequence(
    fired: &Fired,
    outcome: &Outcome,
    index: &Index<'_>,
    orders: &OrderIds,
) -> Result<String> {
    let rid = fired.request_id.as_deref().unwrap_or("?");
    let Some(point) = point_of(fired) else {
        return Ok(format!("(no crash point named {})", fired.point));
    };
    Ok(match point {
        Point::NaiveAfterCommit => lost(outcome, rid, orders.id_of(rid)?),
        Point::NaiveAfterPublish => ghost(outcome, index, fired),
        Point::OrderBeforeCommit => match orders.id_of(rid)? {
            Some(id) => format!(
                "order and event rolled back together; the retry of {rid} placed it as order {id}"
            ),
            None => format!("order and event rolled back together; {rid} was never placed"),
        },
        Point::OrderAfterCommit => match orders.id_of(rid)? {
            Some(id) => format!(
                "order {id} and its event committed together; the retry was answered `duplicate`"
            ),
            None => format!("request {rid} has no order: a bug the checker will name"),
        },
        Point::ConsumerAfterApply => reread(index, fired.pid),
        Point::RelayAfterClaim
        | Point::RelayAfterAppend
        | Point::RelayAfterSync
        | Point::BrokerTornAppend
        | Point::CdcAfterReceive
        | Point::CdcAfterAppend
        | Point::CdcAfterSync => relay(index, fired.pid, point),
    })
}

fn lost(outcome: &Outcome, rid: &str, order_id: Option<i64>) -> String {
    let Some(id) = order_id else {
        return format!("request {rid} has no order (it died before its commit)");
    };
    let is_lost = outcome
        .report
        .lost
        .iter()
        .any(|l| l.order_id == id.to_string());
    if is_lost {
        format!("order {id} LOST: committed, its event never appended")
    } else {
        format!("order {id} committed; the checker did not find it lost")
    }
}

fn ghost(outcome: &Outcome, index: &Index<'_>, fired: &Fired) -> String {
    let appended = index
        .of_pid(fired.pid)
        .filter(|l| Ev::of_line(l) == Some(Ev::Appended))
        .last();
    let Some(event_id) = appended.and_then(|l| l["event_id"].as_str()) else {
        return "nothing appended before the kill (trace incomplete?)".into();
    };
    match outcome.report.ghost.iter().find(|g| g.event_id == event_id) {
        Some(g) => {
            let now = match &g.order_belongs_to {
                Some(real) => format!(" — order {} now belongs to request {real}", g.order_id),
                None => String::new(),
            };
            format!(
                "GHOST: event for order {} in the log, its order rolled back{now}",
                g.order_id
            )
        }
        None => format!("event {event_id} appended; the checker found no ghost"),
    }
}

/// A relay died in a pass: which events of that pass reached the log again afterwards.
fn relay(index: &Index<'_>, pid: u32, point: Point) -> String {
    let pid64 = u64::from(pid);
    let last_pass = index.of_pid(pid).filter_map(|l| l["pass"].as_u64()).max();
    let claimed: Vec<&str> = index
        .of_pid(pid)
        // A claim relay's pass claims its events; a CDC relay's batch receives them.
        .filter(|l| {
            matches!(Ev::of_line(l), Some(Ev::Claimed | Ev::Received))
                && l["pass"].as_u64() == last_pass
        })
        .filter_map(|l| l["event_id"].as_str())
        .collect();
    let copies = claimed
        .iter()
        .filter(|id| {
            // Appended by this relay and again by another after it (as the checker counts:
            // each extra copy is blamed on whoever appended the copy before it).
            index.appenders.get(*id).is_some_and(|pids| {
                pids.iter()
                    .position(|p| *p == pid64)
                    .is_some_and(|i| pids[i + 1..].iter().any(|p| *p != pid64))
            })
        })
        .count();
    let n = claimed.len();
    let torn = if point == Point::BrokerTornAppend {
        "; the half record was cut off by the next writer"
    } else {
        ""
    };
    let events = if n == 1 { "event" } else { "events" };
    let cdc = matches!(
        point,
        Point::CdcAfterReceive | Point::CdcAfterAppend | Point::CdcAfterSync
    );
    match copies {
        0 if cdc => {
            format!("{n} decoded {events} decoded again from the unmoved slot: no copies{torn}")
        }
        0 => format!("{n} claimed {events} shipped again after the lease expired: no copies{torn}"),
        1 if n == 1 => format!("its 1 event appended again later (a copy){torn}"),
        1 => format!("1 of its {n} events appended again later (a copy){torn}"),
        k => format!("{k} of its {n} events appended again later (copies){torn}"),
    }
}

/// A consumer died after applying: which records a later consumer read again.
fn reread(index: &Index<'_>, pid: u32) -> String {
    let pid64 = u64::from(pid);
    let again = index
        .readers
        .values()
        .filter(|pids| {
            pids.iter()
                .position(|p| *p == pid64)
                .is_some_and(|i| pids[i + 1..].iter().any(|p| *p != pid64))
        })
        .count();
    match again {
        1 => "1 record read again after the restart (offset not committed); the inbox skipped it"
            .into(),
        k => format!(
            "{k} records read again after the restart (offset not committed); the inbox skipped them"
        ),
    }
}

/// request id → order id, read once from the orders store (SQLite or PostgreSQL), read-only.
struct OrderIds {
    by_request: std::collections::HashMap<String, i64>,
}

impl OrderIds {
    fn open(dir: &std::path::Path) -> Result<OrderIds> {
        let data = crate::datadir::DataDir::open(dir)?;
        // Read-only: explaining a run must never change it.
        let store = crate::lab::checker::open_orders(&data)?;
        let mut by_request = std::collections::HashMap::new();
        store.each_order(&mut |order| {
            by_request.insert(order.request_id.to_string(), order.order_id);
            Ok(())
        })?;
        Ok(OrderIds { by_request })
    }

    fn id_of(&self, request_id: &str) -> Result<Option<i64>> {
        Ok(self.by_request.get(request_id).copied())
    }
}

/// The crash list as printed under a run: one line per crash, its consequence beside it.
pub fn render(explained: &[Explained]) -> String {
    let width = explained
        .iter()
        .map(|e| e.fired.point.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for e in explained {
        out.push_str(&format!(
            "  {:<13} pid {:<7} {:<width$}  → {}\n",
            e.fired.child, e.fired.pid, e.fired.point, e.consequence
        ));
    }
    out
}
