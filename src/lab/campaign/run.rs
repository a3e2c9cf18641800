//! One campaign run: a small shop under fire, drained, then checked.
//!
//! ```text
//!   init ─▶ place --count N --lifecycle ─┐ concurrently, one of them armed or killed:
//!           relay (cleanup every 20 ms) ─┼─ SIGKILL at its crash point, or from outside
//!           consume (inbox sweep)       ─┘
//!   ─▶ the client is rerun until every request has its reply (retries are duplicates)
//!   ─▶ drain: relay --until-empty, consume --until-idle (armed still, if it never fired)
//!   ─▶ verify: the same checker as `outbox-lab verify`
//! ```
//!
//! Every process is a real child (`current_exe()`), killed by a real SIGKILL.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::broker::DEFAULT_PARTITIONS;
use crate::crashpoint::Component;
use crate::datadir::DataDir;
use crate::error::{Context, Error, Result};
use crate::lab::campaign::kind::Kind;
use crate::lab::checker::{self, Report};
use crate::lab::harness::child::{self, Child, Ended, Spec, Stop};
use crate::lab::harness::power;

/// How each run is sized and paced.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub orders: u64,
    pub relay_batch: usize,
    /// Short, so a relay killed holding a lease delays the drain by this at most.
    pub lease_ms: u64,
}

/// What one run did and what the checker found.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub seed: u64,
    pub kind: Kind,
    /// Processes that died by SIGKILL (at their point, or from outside).
    pub crashes: u32,
    pub report: Report,
    pub elapsed_ms: u64,
}

impl RunResult {
    pub fn ok(&self) -> bool {
        self.report.ok()
    }
}

/// Incarnations of one role before a run gives up on it (each crash costs one).
const MAX_INCARNATIONS: u32 = 4;
/// The longest any one child may take; past it the child is killed and the run fails.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);
struct Shop<'a> {
    dir: String,
    logs: &'a Path,
    config: &'a RunConfig,
    seed: u64,
    crashes: u32,
}

pub fn run_one(root: &Path, seed: u64, kind: Kind, config: &RunConfig) -> Result<RunResult> {
    let started = Instant::now();
    let dir = root.join(format!("seed-{seed}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).ctx(format!("clearing {}", dir.display()))?;
    }
    let data = DataDir::init(&dir, DEFAULT_PARTITIONS)?;
    let logs = dir.join("children");
    std::fs::create_dir_all(&logs).ctx(format!("creating {}", logs.display()))?;
    let mut shop = Shop {
        dir: dir.display().to_string(),
        logs: &logs,
        config,
        seed,
        crashes: 0,
    };
    let mut rng = fastrand::Rng::with_seed(seed);
    let hits = [
        (Component::Client, rng.u64(1..=config.orders)),
        (Component::Relay, rng.u64(1..=3)),
        (Component::Consumer, rng.u64(1..=config.orders)),
    ];
    let arm = |component: Component| -> Option<String> {
        let (armed, point) = kind.armed()?;
        let hit = hits.iter().find(|(c, _)| *c == component)?.1;
        (armed == component).then(|| point.at(hit))
    };
    let client = shop.spawn("client-1", shop.client_args(), arm(Component::Client))?;
    let relay = shop.spawn("relay-1", shop.relay_args(false), arm(Component::Relay))?;
    let consumer = shop.spawn(
        "consumer-1",
        shop.consumer_args(false),
        arm(Component::Consumer),
    )?;
    let mut children = [client, relay, consumer];
    match kind {
        Kind::OutsideKill => outside_kill(&mut children, &mut rng)?,
        Kind::PowerCut => power_cut(&mut children, &data, &mut rng)?,
        Kind::Point(_) => {}
    }
    let [client, relay, consumer] = children;
    shop.finish("client", client, |s| s.client_args())?;
    let relay_armed = shop.stop(relay)?.then(|| arm(Component::Relay)).flatten();
    let consumer_armed = shop
        .stop(consumer)?
        .then(|| arm(Component::Consumer))
        .flatten();
    // Drain in order: every row to the log, then the log to the consumer.
    let drain_relay = shop.spawn("relay-drain", shop.relay_args(true), relay_armed)?;
    shop.finish("relay", drain_relay, |s| s.relay_args(true))?;
    let drain_consumer = shop.spawn("consumer-drain", shop.consumer_args(true), consumer_armed)?;
    shop.finish("consumer", drain_consumer, |s| s.consumer_args(true))?;
    let report = checker::check(&data, "points")?;
    Ok(RunResult {
        seed,
        kind,
        crashes: shop.crashes,
        report,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// Wait for `child` to end, at most [`CHILD_DEADLINE`] (see [`Child::wait_within`]).
fn wait_bounded(child: &mut Child, stop: Stop) -> Result<Ended> {
    child.wait_within(CHILD_DEADLINE, stop)
}

/// At a random instant, SIGKILL one of the children still running (by its pid).
fn outside_kill(children: &mut [Child], rng: &mut fastrand::Rng) -> Result<()> {
    std::thread::sleep(Duration::from_millis(rng.u64(0..=40)));
    let mut running = Vec::new();
    for (i, child) in children.iter_mut().enumerate() {
        if child.try_ended()?.is_none() {
            running.push(i);
        }
    }
    if running.is_empty() {
        return Ok(()); // everything already ended: nothing left to kill
    }
    children[running[rng.usize(..running.len())]].signal(libc::SIGKILL)
}

/// At a random instant, SIGKILL every child at once, then damage the logs' un-synced tails as
/// a power cut could. The children are reaped first: nothing may append during the cut.
fn power_cut(children: &mut [Child], data: &DataDir, rng: &mut fastrand::Rng) -> Result<()> {
    std::thread::sleep(Duration::from_millis(rng.u64(0..=40)));
    for child in children.iter_mut() {
        if child.try_ended()?.is_none() {
            child.signal(libc::SIGKILL)?;
        }
    }
    for child in children.iter_mut() {
        wait_bounded(child, Stop::Wait)?;
    }
    power::power_cut(data, rng)?;
    Ok(())
}

impl Shop<'_> {
    fn spawn(&self, name: &str, args: Vec<String>, crash: Option<String>) -> Result<Child> {
        child::spawn(
            self.logs,
            Spec {
                name: name.to_string(),
                args,
                crash,
                stdin: None,
                capture_stdout: false,
            },
        )
    }

    /// Wait for a child that runs to completion; rerun it (unarmed) after each crash.
    fn finish(
        &mut self,
        role: &str,
        mut child: Child,
        args: impl Fn(&Self) -> Vec<String>,
    ) -> Result<()> {
        for incarnation in 2..=MAX_INCARNATIONS + 1 {
            match wait_bounded(&mut child, Stop::Wait)? {
                Ended::Done => return Ok(()),
                Ended::Crashed => self.crashes += 1,
                Ended::Failed(why) => return Err(Error::Input(why)),
            }
            child = self.spawn(&format!("{role}-{incarnation}"), args(self), None)?;
        }
        Err(Error::Input(format!(
            "seed {}: {role} crashed {MAX_INCARNATIONS} times",
            self.seed
        )))
    }

    /// Stop a long-running child (SIGTERM); true if it ended cleanly, so its crash (if it was
    /// armed) has not happened yet.
    fn stop(&mut self, child: Child) -> Result<bool> {
        let mut child = child;
        match wait_bounded(&mut child, Stop::Terminate)? {
            Ended::Done => Ok(true),
            Ended::Crashed => {
                self.crashes += 1;
                Ok(false)
            }
            Ended::Failed(why) => Err(Error::Input(why)),
        }
    }

    fn client_args(&self) -> Vec<String> {
        let orders = self.config.orders.to_string();
        let seed = self.seed.to_string();
        strings(&[
            "place",
            "--dir",
            &self.dir,
            "--count",
            &orders,
            "--seed",
            &seed,
            "--lifecycle",
        ])
    }

    /// A relay that also cleans up every published row, 20 ms apart: the cleanup runs
    /// throughout, as the checker's ground truth must survive it.
    fn relay_args(&self, drain: bool) -> Vec<String> {
        let batch = self.config.relay_batch.to_string();
        let lease = self.config.lease_ms.to_string();
        let mut args = strings(&[
            "relay",
            "--dir",
            &self.dir,
            "--batch",
            &batch,
            "--poll-ms",
            "5",
            "--lease-ms",
            &lease,
            "--cleanup-every-ms",
            "20",
            "--retention-ms",
            "0",
        ]);
        if drain {
            args.push("--until-empty".into());
        }
        args
    }

    /// A consumer with its inbox sweeper running every 50 ms, on a window that honours the
    /// run's redelivery horizon (lease + retry + tolerated downtime) — and the seq guard on.
    /// The guard is what catches a copy that arrives after its inbox row was swept: on a
    /// machine loaded enough to stretch a run past the tolerated downtime (seen at load 25),
    /// the window alone let a relay's late copies be applied twice.
    fn consumer_args(&self, drain: bool) -> Vec<String> {
        let lease = format!("{}ms", self.config.lease_ms);
        let mut args = strings(&[
            "consume",
            "--dir",
            &self.dir,
            "--poll-ms",
            "5",
            "--inbox-retention",
            "3s",
            "--relay-lease",
            &lease,
            "--relay-retry",
            "500ms",
            "--tolerated-downtime",
            "2s",
            "--sweep-every",
            "50ms",
            "--seq-guard",
            "on",
        ]);
        if drain {
            args.push("--until-idle".into());
        }
        args
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}
