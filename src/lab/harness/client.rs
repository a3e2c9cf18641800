//! The order client: feeds orders to an order-service child and keeps what it was told.
//!
//! A client that gets no reply does what real clients do: it retries, with the same
//! `request_id`, so a retry of an order that did commit is answered `duplicate` — never a
//! second order. It retries *later* (the unanswered order goes to the back of the queue), as a
//! client with backoff would; that gives the naive publish-first ghost its nastiest face: the
//! rolled-back order id is handed to the next order before the retry comes.

use std::collections::HashSet;
use std::path::Path;

use crate::error::{Context, Error, Result};
use crate::lab::harness::child::{self, Child, Ended, STOP_DEADLINE, Spec, Stop};
use crate::lab::harness::schedule::Schedule;
use crate::lab::harness::{Fired, Started};
use crate::order::{Mode, OrderRequest};

pub struct Client {
    mode: Mode,
    dir_arg: String,
    orders: Vec<OrderRequest>,
    /// Indices into `orders`, in the order the next incarnation sends them.
    queue: Vec<usize>,
    replied: HashSet<String>,
    /// Passages through the crash point so far, over all incarnations.
    placements: u64,
    next_crash: usize,
    crashes: Vec<(crate::crashpoint::Point, u64)>,
    pub incarnations: u32,
    /// Every incarnation started, for the timeline.
    pub started: Vec<Started>,
    child: Option<Child>,
}

impl Client {
    pub fn new(mode: Mode, dir: &Path, orders: Vec<OrderRequest>, schedule: &Schedule) -> Client {
        Client {
            mode,
            dir_arg: dir.display().to_string(),
            queue: (0..orders.len()).collect(),
            orders,
            replied: HashSet::new(),
            placements: 0,
            next_crash: 0,
            crashes: schedule.client.clone(),
            incarnations: 0,
            started: Vec::new(),
            child: None,
        }
    }

    pub fn start(&mut self, logs: &Path) -> Result<()> {
        self.incarnations += 1;
        let input = logs.join(format!("client.{}.input.jsonl", self.incarnations));
        let mut text = String::new();
        for &i in &self.queue {
            text.push_str(&serde_json::to_string(&self.orders[i]).expect("order serialises"));
            text.push('\n');
        }
        std::fs::write(&input, text).ctx(format!("writing {}", input.display()))?;
        let crash = self.crashes.get(self.next_crash).map(|(point, at)| {
            assert!(
                *at > self.placements,
                "client crash schedule is not ascending: {at}"
            );
            format!("{point}@{}", at - self.placements)
        });
        let mode = match self.mode {
            Mode::Outbox => "outbox",
            Mode::Naive => "naive",
            Mode::NaivePublishFirst => "naive-publish-first",
        };
        let spec = Spec {
            name: format!("client.{}", self.incarnations),
            args: vec![
                "place".into(),
                "--dir".into(),
                self.dir_arg.clone(),
                "--mode".into(),
                mode.into(),
                // One order per transaction: each client crash then names exactly one order
                // ("order 137 LOST"), as the crash list promises. Group commit is the write
                // path's throughput, measured by `bench write`, not what the lab demonstrates.
                "--max-group".into(),
                "1".into(),
            ],
            crash,
            stdin: Some(&input),
            capture_stdout: true,
        };
        let child = child::spawn(logs, spec)?;
        self.started.push(Started {
            name: child.name.clone(),
            pid: child.pid(),
        });
        self.child = Some(child);
        Ok(())
    }

    /// Poll once. Returns true when every order has its reply.
    pub fn poll(&mut self, logs: &Path, fired: &mut Vec<Fired>) -> Result<bool> {
        let Some(child) = self.child.as_mut() else {
            return Ok(true);
        };
        let Some(ended) = child.try_ended()? else {
            return Ok(false);
        };
        let mut child = self.child.take().expect("checked above");
        self.take_replies(&mut child)?;
        match ended {
            Ended::Crashed => {
                fired.push(self.fired(&child));
                // It died at its scheduled passage (the crash list's `@N`), the one order in
                // flight: the placements before it were answered, this one was not.
                self.placements = self.crashes[self.next_crash].1;
                self.next_crash += 1;
                self.requeue_unanswered();
                self.start(logs)?;
                Ok(false)
            }
            Ended::Done
                if self
                    .queue
                    .iter()
                    .all(|&i| self.replied.contains(&self.orders[i].request_id)) =>
            {
                self.queue.clear();
                Ok(true)
            }
            Ended::Done => Err(Error::Input(
                "order client exited with orders unanswered".into(),
            )),
            Ended::Failed(why) => Err(Error::Input(format!("lab child failed: {why}"))),
        }
    }

    /// A power cut: the order service dies now (SIGKILL), what it answered is kept, the rest is
    /// sent again by a new incarnation (retries of committed orders are answered `duplicate`).
    /// A client that had already died of its armed crash counts as that crash.
    pub fn power_cut(&mut self, logs: &Path, fired: &mut Vec<Fired>) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(()); // done: every order answered
        };
        if child.try_ended()?.is_some() {
            return self.poll(logs, fired).map(|_| ()); // ended on its own: the usual path
        }
        let _ = child.signal(libc::SIGKILL);
        child.wait_within(STOP_DEADLINE, Stop::Wait)?;
        let mut child = self.child.take().expect("checked above");
        self.take_replies(&mut child)?;
        self.requeue_unanswered();
        self.start(logs)
    }

    fn take_replies(&mut self, child: &mut Child) -> Result<()> {
        for line in child.stdout_lines() {
            let reply: serde_json::Value = serde_json::from_str(&line)
                .map_err(|e| Error::Input(format!("order service replied {line:?}: {e}")))?;
            if let Some(error) = reply.get("error") {
                return Err(Error::Input(format!(
                    "order service rejected a generated order: {error}"
                )));
            }
            if reply["status"] == "placed" {
                self.placements += 1;
            }
            self.replied
                .insert(reply["request_id"].as_str().unwrap_or_default().to_string());
        }
        Ok(())
    }

    /// The crash as the run counts it: `point@N` with N the placement over the whole run (the
    /// numbering `--crash` takes), and the request that was in flight.
    fn fired(&self, child: &Child) -> Fired {
        let (point, at) = &self.crashes[self.next_crash];
        let in_flight = self
            .queue
            .iter()
            .map(|&i| &self.orders[i].request_id)
            .find(|rid| !self.replied.contains(*rid));
        Fired {
            request_id: in_flight.cloned(),
            point: format!("{point}@{at}"),
            ..Fired::of(child)
        }
    }

    /// Keep the unanswered orders; the one in flight at the crash goes to the back.
    fn requeue_unanswered(&mut self) {
        let replied = &self.replied;
        let orders = &self.orders;
        self.queue
            .retain(|&i| !replied.contains(&orders[i].request_id));
        if !self.queue.is_empty() {
            let in_flight = self.queue.remove(0);
            self.queue.push(in_flight);
        }
    }
}
