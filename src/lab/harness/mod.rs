//! The crash harness: run the whole pipeline as real processes, kill them at scheduled crash
//! points with SIGKILL, restart them, drain, and ask the checker what survived.
//!
//! ```text
//!   harness ──spawns──▶ client ─stdin orders─▶ place --mode M     (OUTBOX_CRASH=point@hit)
//!      │                                         dies? re-send what got no reply
//!      ├──spawns──▶ relay ×K   (outbox mode)      dies? restart, armed with the next crash
//!      ├──spawns──▶ consumer                      dies? restart, armed with the next crash
//!      │  client done ─▶ SIGTERM relays ─▶ relay --until-empty (armed; restarted)
//!      │  relays done ─▶ SIGTERM consumer ─▶ consume --until-idle (armed; restarted)
//!      └──▶ checker: lost · ghost · redelivered · applied twice · out of order
//! ```
//!
//! Children are this very program re-executed (`current_exe()`), speaking the ordinary
//! command line; no sleeps-and-hope: each crash fires at an exact passage through its point.

pub(crate) mod child;
mod client;
pub mod consequence;
pub mod power;
pub(crate) mod restarter;
pub mod schedule;
pub mod story;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Context, Error, Result};
use crate::lab::checker::{self, Report};
use crate::order::{Mode, generate};

pub use child::child_entry;
pub use schedule::Schedule;

/// A scenario must finish within this, or it is reported as stuck (and its children killed).
pub const DEADLINE_S: u64 = 300;
const POLL_MS: u64 = 5;

#[derive(Debug, Clone)]
pub struct Scenario {
    pub dir: PathBuf,
    pub seed: u64,
    pub orders: u64,
    pub mode: Mode,
    pub crashes: usize,
    pub relays: usize,
    pub relay_batch: usize,
    pub lease_ms: u64,
    /// Power cuts while orders are placed: every process dies at once and the logs' un-synced
    /// tails are damaged (see [`power`]); then all restart.
    pub power_cuts: usize,
    /// Replace the seeded schedule with these `point@hit`s.
    pub explicit: Option<Vec<(crate::crashpoint::Point, u64)>>,
    /// Where orders and outbox live (wiped at the start of the run).
    pub store: crate::store::StoreConfig,
    /// PostgreSQL: the relays are CDC relays on one slot (one streams, the rest stand by),
    /// crashing at the `cdc.*` points instead of the claim relay's.
    pub cdc: bool,
}

impl Scenario {
    /// The examples' scenario: small enough to finish in seconds, big enough to hurt.
    pub fn new(dir: PathBuf, seed: u64, mode: Mode) -> Scenario {
        Scenario {
            dir,
            seed,
            orders: 300,
            mode,
            crashes: 12,
            relays: 1,
            relay_batch: 10,
            lease_ms: 300,
            power_cuts: 0,
            explicit: None,
            store: crate::store::StoreConfig::Sqlite,
            cdc: false,
        }
    }
}

/// One crash that really happened.
#[derive(Debug, Clone, Serialize)]
pub struct Fired {
    pub child: String,
    pub pid: u32,
    /// `point@hit`, numbered as `--crash` takes it: the client's hit counts placements over the
    /// whole run; a relay's or consumer's counts passes of the incarnation it was handed to.
    pub point: String,
    /// The client's request in flight when it died (client crashes only).
    pub request_id: Option<String>,
}

impl Fired {
    pub(crate) fn of(child: &child::Child) -> Fired {
        Fired {
            child: child.name.clone(),
            pid: child.pid(),
            point: child.armed.clone().unwrap_or_else(|| "(unarmed!)".into()),
            request_id: None,
        }
    }
}

/// One process the harness started: a lane of the run's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Started {
    /// `client.2`, `relay-0.3` (slot 0, 3rd start), `consumer-0.1`.
    pub name: String,
    pub pid: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub mode: String,
    pub seed: u64,
    pub orders: u64,
    pub dir: PathBuf,
    pub schedule: Schedule,
    pub fired: Vec<Fired>,
    /// Scheduled crashes whose moment never came (too little work left).
    pub unfired: Vec<String>,
    /// Every process started, in start order (crashed or not).
    pub processes: Vec<Started>,
    pub client_incarnations: u32,
    /// What each power cut did, in order.
    pub power_cuts: Vec<power::PowerCutReport>,
    pub wall_ms: u64,
    pub report: Report,
}

pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Outbox => "outbox",
        Mode::Naive => "naive",
        Mode::NaivePublishFirst => "naive-publish-first",
    }
}

/// Run a scenario in a fresh data directory (`s.dir` is wiped first).
pub fn run(s: &Scenario) -> Result<Outcome> {
    let started = Instant::now();
    let data = crate::store::fresh_data_dir(&s.dir, crate::broker::DEFAULT_PARTITIONS, &s.store)?;
    if s.cdc {
        cdc_setup(&data)?;
    }
    crate::lab::rundir::mark(&s.dir)?;
    let logs = s.dir.join("children");
    std::fs::create_dir_all(&logs).ctx(format!("creating {}", logs.display()))?;
    let schedule = match &s.explicit {
        Some(specs) => Schedule::explicit(s.seed, specs),
        None if s.cdc => Schedule::from_seed(s.seed, s.orders, s.crashes, s.mode).for_cdc(),
        None => Schedule::from_seed(s.seed, s.orders, s.crashes, s.mode),
    };
    let mut fired = Vec::new();

    let mut client = client::Client::new(s.mode, &s.dir, generate(s.seed, 0, s.orders), &schedule);
    let mut relays = (s.mode == Mode::Outbox).then(|| relay_restarter(s, &schedule));
    let mut consumer = consumer_restarter(s, &schedule);
    client.start(&logs)?;
    if let Some(relays) = relays.as_mut() {
        relays.start_all(&logs)?;
    }
    consumer.start_all(&logs)?;

    let deadline = started + Duration::from_secs(DEADLINE_S);
    let step = |what: &str| -> Result<()> {
        if Instant::now() > deadline {
            return Err(Error::Input(format!(
                "scenario stuck: {what} after {DEADLINE_S} s"
            )));
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
        Ok(())
    };
    let mut cuts = power::CutSchedule::from_seed(s.seed, s.orders, s.power_cuts);
    let mut power_cuts = Vec::new();
    // Phase 1: everything runs and crashes concurrently until every order has its reply.
    loop {
        if cuts.due(&data)? {
            // Every process of the run dies at once, then the files lose what was not synced.
            client.power_cut(&logs, &mut fired)?;
            let relay_slots = match relays.as_mut() {
                Some(relays) => relays.kill_all(&mut fired)?,
                None => Vec::new(),
            };
            let consumer_slots = consumer.kill_all(&mut fired)?;
            power_cuts.push(power::power_cut(&data, &mut cuts.rng)?);
            if let Some(relays) = relays.as_mut() {
                relays.restart_after_cut(&relay_slots, &logs)?;
            }
            consumer.restart_after_cut(&consumer_slots, &logs)?;
            continue;
        }
        let done = client.poll(&logs, &mut fired)?;
        if let Some(relays) = relays.as_mut() {
            relays.poll(&logs, &mut fired)?;
        }
        consumer.poll(&logs, &mut fired)?;
        if done {
            break;
        }
        step("placing orders")?;
    }
    // Phase 2: relays drain the outbox (still crashing on schedule).
    if let Some(relays) = relays.as_mut() {
        relays.drain(&logs, &mut fired)?;
        while !relays.poll(&logs, &mut fired)? {
            consumer.poll(&logs, &mut fired)?;
            step("draining the outbox")?;
        }
    }
    // Phase 3: the consumer drains the log (still crashing on schedule).
    consumer.drain(&logs, &mut fired)?;
    while !consumer.poll(&logs, &mut fired)? {
        step("draining the log")?;
    }

    let mut processes = client.started.clone();
    processes.extend(relays.iter().flat_map(|r| r.started.iter().cloned()));
    processes.extend(consumer.started.iter().cloned());
    let mut unfired: Vec<String> = relays
        .map(|r| r.crashes.into_iter().collect())
        .unwrap_or_default();
    unfired.extend(consumer.crashes);
    let report = checker::check(&data, "points")?;
    Ok(Outcome {
        mode: mode_name(s.mode).to_string(),
        seed: s.seed,
        orders: s.orders,
        dir: s.dir.clone(),
        schedule,
        fired,
        unfired,
        processes,
        client_incarnations: client.incarnations,
        power_cuts,
        wall_ms: started.elapsed().as_millis() as u64,
        report,
    })
}

/// The CDC relays' slot, on the freshly wiped database (the wipe dropped any old slot, whose
/// position would hand this run the last run's changes).
fn cdc_setup(data: &crate::datadir::DataDir) -> Result<()> {
    let crate::store::StoreConfig::Postgres(url) = &data.store else {
        return Err(Error::Input("--cdc needs --postgres URL".into()));
    };
    let mut client = crate::store::pg::connect(url, crate::store::pg::DEFAULT_IDLE_IN_TX_MS)?;
    crate::store::pg::cdc::setup(&mut client, crate::store::pg::cdc::OutboxRows::Keep)?;
    Ok(())
}

fn relay_restarter(s: &Scenario, schedule: &Schedule) -> restarter::Restarter {
    let crashes: VecDeque<String> = schedule
        .relay
        .iter()
        .map(|(p, h)| format!("{p}@{h}"))
        .collect();
    let dir = s.dir.display().to_string();
    let (batch, lease_ms) = (s.relay_batch.to_string(), s.lease_ms.to_string());
    let cdc = s.cdc;
    restarter::Restarter::new("relay", s.relays, crashes, move |slot, draining| {
        let mut args: Vec<String> = [
            "relay",
            "--dir",
            &dir,
            "--id",
            &format!("relay-{slot}"),
            "--batch",
            &batch,
            "--poll-ms",
            "20",
            "--lease-ms",
            &lease_ms,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        if cdc {
            // --batch is decoded messages then (~3 per order: begin, insert, commit);
            // --lease-ms is accepted and unused (the slot has no lease).
            args.push("--cdc".into());
        }
        if draining {
            args.push("--until-empty".into());
        }
        args
    })
}

fn consumer_restarter(s: &Scenario, schedule: &Schedule) -> restarter::Restarter {
    let crashes: VecDeque<String> = schedule
        .consumer
        .iter()
        .map(|(p, h)| format!("{p}@{h}"))
        .collect();
    let dir = s.dir.display().to_string();
    restarter::Restarter::new("consumer", 1, crashes, move |_, draining| {
        let mut args: Vec<String> = ["consume", "--dir", &dir, "--poll-ms", "10"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        if draining {
            args.push("--until-idle".into());
        }
        args
    })
}
