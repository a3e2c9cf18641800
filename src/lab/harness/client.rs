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
use crate::lab::harness::Fired;
use crate::lab::harness::child::{self, Child, Ended, Spec};
use crate::lab::harness::schedule::Schedule;
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
            ],
            crash,
            stdin: Some(&input),
            capture_stdout: true,
        };
        self.child = Some(child::spawn(logs, spec)?);
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
                fired.push(Fired::of(&child));
                // It died at its scheduled passage. Counted from the schedule, not from the
                // replies: a group commit's orders pass the point before any of them is
                // answered, so the replies undercount the passages.
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
