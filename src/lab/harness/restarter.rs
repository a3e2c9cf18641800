//! Keeping a role alive: start it armed with its next scheduled crash, and when it dies of
//! that crash, start it again with the next one. Then drain: ask it to stop (SIGTERM) and
//! start a last round that exits by itself once the work is done (`--until-empty`,
//! `--until-idle`), still armed, restarted after every crash until it exits cleanly.

use std::collections::VecDeque;
use std::path::Path;

use crate::error::{Error, Result};
use crate::lab::harness::child::{self, Child, Ended, STOP_DEADLINE, Spec, Stop};
use crate::lab::harness::{Fired, Started};

pub struct Restarter {
    /// "relay" or "consumer": names children `relay-0.3` (slot 0, 3rd start).
    pub role: &'static str,
    /// Scheduled crashes not yet handed out, as `point@hit`.
    pub crashes: VecDeque<String>,
    args: Box<dyn Fn(usize, bool) -> Vec<String>>,
    running: Vec<Option<Child>>,
    /// Every process started, for the timeline.
    pub started: Vec<Started>,
    starts: u32,
    draining: bool,
}

impl Restarter {
    /// `args(slot, draining)` builds a child's command line.
    pub fn new(
        role: &'static str,
        slots: usize,
        crashes: VecDeque<String>,
        args: impl Fn(usize, bool) -> Vec<String> + 'static,
    ) -> Restarter {
        assert!(slots >= 1, "a restarter needs at least one slot");
        let running = (0..slots).map(|_| None).collect();
        Restarter {
            role,
            crashes,
            args: Box::new(args),
            running,
            started: Vec::new(),
            starts: 0,
            draining: false,
        }
    }

    /// Start every slot straight in the self-terminating round (the work is already there).
    pub fn start_draining(&mut self, logs: &Path) -> Result<()> {
        self.draining = true;
        self.start_all(logs)
    }

    pub fn start_all(&mut self, logs: &Path) -> Result<()> {
        (0..self.running.len()).try_for_each(|slot| self.start(slot, logs))
    }

    fn start(&mut self, slot: usize, logs: &Path) -> Result<()> {
        self.starts += 1;
        let spec = Spec {
            name: format!("{}-{slot}.{}", self.role, self.starts),
            args: (self.args)(slot, self.draining),
            crash: self.crashes.pop_front(),
            stdin: None,
            capture_stdout: false,
        };
        let child = child::spawn(logs, spec)?;
        self.started.push(Started {
            name: child.name.clone(),
            pid: child.pid(),
        });
        self.running[slot] = Some(child);
        Ok(())
    }

    /// Look at every child once; restart the crashed. Returns true when all have exited
    /// cleanly in the draining round.
    pub fn poll(&mut self, logs: &Path, fired: &mut Vec<Fired>) -> Result<bool> {
        for slot in 0..self.running.len() {
            let Some(child) = self.running[slot].as_mut() else {
                continue;
            };
            let Some(ended) = child.try_ended()? else {
                continue;
            };
            let child = self.running[slot].take().expect("checked above");
            self.after_end(child, ended, slot, logs, fired)?;
        }
        Ok(self.draining && self.running.iter().all(Option::is_none))
    }

    fn after_end(
        &mut self,
        child: Child,
        ended: Ended,
        slot: usize,
        logs: &Path,
        fired: &mut Vec<Fired>,
    ) -> Result<()> {
        match ended {
            Ended::Crashed => {
                fired.push(Fired::of(&child));
                self.start(slot, logs)
            }
            Ended::Done if self.draining => {
                // Exited cleanly: its armed crash (if any) never came; hand it back.
                if let Some(point) = child.armed.clone() {
                    self.crashes.push_front(point);
                }
                Ok(())
            }
            Ended::Done => self.start(slot, logs),
            Ended::Failed(why) => Err(Error::Input(format!("lab child failed: {why}"))),
        }
    }

    /// A power cut: every running child dies now (SIGKILL). A child that had already died of
    /// its own armed crash counts as that crash; the others hand their unfired crash back.
    /// Call [`Restarter::restart_after_cut`] once the files have been cut.
    pub fn kill_all(&mut self, fired: &mut Vec<Fired>) -> Result<Vec<usize>> {
        let mut killed = Vec::new();
        for slot in 0..self.running.len() {
            let Some(mut child) = self.running[slot].take() else {
                continue;
            };
            let ended = match child.try_ended()? {
                Some(ended) => ended,
                None => {
                    let _ = child.signal(libc::SIGKILL); // it may die of its own crash first
                    child.wait_within(STOP_DEADLINE, Stop::Wait)?;
                    if let Some(point) = child.armed.clone() {
                        self.crashes.push_front(point);
                    }
                    killed.push(slot);
                    continue;
                }
            };
            match ended {
                Ended::Crashed => fired.push(Fired::of(&child)),
                Ended::Done if self.draining => continue, // finished: nothing to restart
                Ended::Done => {}
                Ended::Failed(why) => return Err(Error::Input(format!("lab child failed: {why}"))),
            }
            killed.push(slot);
        }
        Ok(killed)
    }

    /// Start again the slots [`Restarter::kill_all`] emptied.
    pub fn restart_after_cut(&mut self, slots: &[usize], logs: &Path) -> Result<()> {
        slots.iter().try_for_each(|slot| self.start(*slot, logs))
    }

    /// Stop the steady-state children and start the self-terminating round.
    pub fn drain(&mut self, logs: &Path, fired: &mut Vec<Fired>) -> Result<()> {
        self.draining = true;
        for slot in 0..self.running.len() {
            let Some(mut child) = self.running[slot].take() else {
                continue;
            };
            // SIGTERM, resent until it ends: one sent before the child installed its handler
            // would be lost, and a plain wait would then last for ever.
            match child.wait_within(STOP_DEADLINE, Stop::Terminate)? {
                Ended::Crashed => fired.push(Fired::of(&child)),
                Ended::Done => {
                    if let Some(point) = child.armed.clone() {
                        self.crashes.push_front(point);
                    }
                }
                Ended::Failed(why) => return Err(Error::Input(format!("lab child failed: {why}"))),
            }
            self.start(slot, logs)?;
        }
        Ok(())
    }
}
