//! Several relays at once: K relay processes drain one outbox (orders with their whole
//! lifecycle, so each order has up to three events in flight), optionally crashing on a
//! schedule; then the consumer; then the checker and the claim evidence from the trace.
//!
//! ```text
//!   place --count N --lifecycle ──▶ outbox (backlog of ~2N events)
//!   relay-0 ┐
//!   relay-1 ├─ claim (UPDATE … RETURNING, disjoint) ─▶ append ─▶ sync ─▶ mark (fenced)
//!   relay-2 │     only an order's oldest unpublished event is claimable
//!   relay-3 ┘
//!   consume --until-idle ──▶ verify + claims from trace.jsonl
//! ```

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Context, Error, Result};
use crate::lab::checker::{self, Report};
use crate::lab::claims::{self, ClaimStats};
use crate::lab::harness::child::{self, Ended, Spec};
use crate::lab::harness::restarter::Restarter;
use crate::lab::harness::{DEADLINE_S, Fired};

#[derive(Debug, Clone)]
pub struct Replicas {
    pub dir: PathBuf,
    pub seed: u64,
    pub orders: u64,
    pub relays: usize,
    pub batch: usize,
    pub lease_ms: u64,
    /// `point@hit` crashes handed to relay incarnations in turn.
    pub crashes: Vec<String>,
    /// Where orders and outbox live (wiped at the start of the run).
    pub store: crate::store::StoreConfig,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplicasOutcome {
    pub relays: usize,
    pub events: u64,
    pub fired: Vec<Fired>,
    pub unfired: Vec<String>,
    pub claims: ClaimStats,
    pub report: Report,
    pub wall_ms: u64,
    pub dir: PathBuf,
}

impl ReplicasOutcome {
    /// Everything the replicas promise: the checker's verdict, plus no unexplained copies.
    pub fn ok(&self) -> bool {
        self.report.ok() && self.claims.extra_copies_unexplained == 0
    }
}

pub fn run(r: &Replicas) -> Result<ReplicasOutcome> {
    assert!(r.relays >= 1, "at least one relay");
    let started = Instant::now();
    let data = crate::store::fresh_data_dir(&r.dir, crate::broker::DEFAULT_PARTITIONS, &r.store)?;
    crate::lab::rundir::mark(&r.dir)?;
    let logs = r.dir.join("children");
    std::fs::create_dir_all(&logs).ctx(format!("creating {}", logs.display()))?;
    let dir = r.dir.display().to_string();

    // The backlog first, so that all relays start together on the same work.
    let (count, seed) = (r.orders.to_string(), r.seed.to_string());
    let args = [
        "place",
        "--dir",
        &dir,
        "--count",
        &count,
        "--seed",
        &seed,
        "--lifecycle",
    ];
    let spec = Spec {
        name: "writer".into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        crash: None,
        stdin: None,
        capture_stdout: false,
    };
    match child::spawn(&logs, spec)?.wait_ended()? {
        Ended::Done => {}
        other => {
            return Err(Error::Input(format!(
                "the order writer did not finish: {other:?}"
            )));
        }
    }

    let mut fired = Vec::new();
    let (batch, lease_ms, relay_dir) = (r.batch.to_string(), r.lease_ms.to_string(), dir.clone());
    let crashes: VecDeque<String> = r.crashes.iter().cloned().collect();
    let mut relays = Restarter::new("relay", r.relays, crashes, move |slot, _| {
        let id = format!("relay-{slot}");
        let args = ["relay", "--dir", &relay_dir, "--id", &id, "--batch", &batch];
        let rest = ["--poll-ms", "10", "--lease-ms", &lease_ms, "--until-empty"];
        args.iter()
            .chain(rest.iter())
            .map(|a| a.to_string())
            .collect()
    });
    let deadline = started + Duration::from_secs(DEADLINE_S);
    relays.start_draining(&logs)?;
    wait_all(&mut relays, &logs, &mut fired, deadline)?;
    let consumer_dir = dir.clone();
    let mut consumer = Restarter::new("consumer", 1, VecDeque::new(), move |_, _| {
        ["consume", "--dir", &consumer_dir, "--until-idle"]
            .iter()
            .map(|a| a.to_string())
            .collect()
    });
    consumer.start_draining(&logs)?;
    wait_all(&mut consumer, &logs, &mut fired, deadline)?;

    let report = checker::check(&data, "points")?;
    Ok(ReplicasOutcome {
        relays: r.relays,
        events: report.expected_events,
        fired,
        unfired: relays.crashes.into_iter().collect(),
        claims: claims::analyse(&r.dir)?,
        report,
        wall_ms: started.elapsed().as_millis() as u64,
        dir: r.dir.clone(),
    })
}

fn wait_all(
    restarter: &mut Restarter,
    logs: &std::path::Path,
    fired: &mut Vec<Fired>,
    deadline: Instant,
) -> Result<()> {
    while !restarter.poll(logs, fired)? {
        if Instant::now() > deadline {
            return Err(Error::Input(format!(
                "replicas run stuck after {DEADLINE_S} s"
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The replicas table, one column per run.
pub fn table(runs: &[(&str, &ReplicasOutcome)]) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |label: &str, f: &dyn Fn(&ReplicasOutcome) -> String| {
        rows.push((label.to_string(), runs.iter().map(|(_, o)| f(o)).collect()));
    };
    row("relays", &|o| o.relays.to_string());
    row("relay crashes fired", &|o| o.fired.len().to_string());
    row("events (outbox rows)", &|o| o.events.to_string());
    row("records in log", &|o| o.report.records_in_log.to_string());
    row("relay passes", &|o| o.claims.passes.to_string());
    row("events claimed by two passes", &|o| {
        o.claims.claimed_by_two_passes.to_string()
    });
    row("  of which a claimant crashed", &|o| {
        o.claims.reclaimed_after_crash.to_string()
    });
    row("extra copies in log", &|o| {
        o.claims.extra_copies.to_string()
    });
    row("  whose appender did not crash", &|o| {
        o.claims.extra_copies_unexplained.to_string()
    });
    let names: std::collections::BTreeSet<String> = runs
        .iter()
        .flat_map(|(_, o)| o.claims.marked_by_relay.keys().cloned())
        .collect();
    for name in &names {
        row(&format!("published by {name}"), &|o| {
            o.claims
                .marked_by_relay
                .get(name)
                .copied()
                .unwrap_or(0)
                .to_string()
        });
    }
    row("out of order in log", &|o| {
        o.report.log_out_of_order.to_string()
    });
    row("out of order applied", &|o| {
        o.report.out_of_order.to_string()
    });
    row("aggregates split", &|o| {
        o.report.aggregates_split.to_string()
    });
    row("lost", &|o| o.report.lost_count.to_string());
    row("applied twice", &|o| o.report.applied_twice.to_string());
    row("verdict", &|o| {
        if o.ok() { "OK".into() } else { "FAILED".into() }
    });
    row("wall time", &|o| {
        format!("{:.1} s", o.wall_ms as f64 / 1000.0)
    });
    let header = (
        "run".to_string(),
        runs.iter().map(|(label, _)| label.to_string()).collect(),
    );
    rows.insert(0, header);
    crate::lab::compare::grid(&rows)
}
