//! Cleanup inside the relay loop: the relay already holds a connection to `orders.db` and
//! wakes up regularly, so it can run a bounded cleanup every `every_ms` without another
//! process to deploy. The bound matters twice over: while it cleans, this relay does not
//! relay, and each cleanup transaction is a moment writers wait — so a tick runs at most
//! `max_batches` short transactions and leaves the rest for the next tick.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::clock::now_us;
use crate::error::Result;
use crate::outbox::cleanup::{CleanupConfig, Pacer};
use crate::relay::Relay;
use crate::trace::{self, Ev};

#[derive(Debug)]
pub struct CleanupSchedule {
    pub every_ms: u64,
    pub config: CleanupConfig,
    last: Option<Instant>,
    /// Never sleeps: a tick stops where the lock budget says rest, and the next tick goes on.
    pacer: Pacer,
}

impl Relay {
    /// Run `config` (its `max_batches` per tick) every `every_ms` between passes.
    pub fn with_cleanup(mut self, every_ms: u64, config: CleanupConfig) -> Relay {
        assert!(every_ms > 0, "cleanup every_ms must be positive");
        self.cleanup = Some(CleanupSchedule {
            every_ms,
            config,
            last: None,
            pacer: Pacer::non_blocking(),
        });
        self
    }

    /// Called between passes: one bounded cleanup run if one is due.
    pub(crate) fn cleanup_if_due(&mut self, stop: &AtomicBool) -> Result<()> {
        let Some(schedule) = self.cleanup.as_mut() else {
            return Ok(());
        };
        let due = schedule
            .last
            .is_none_or(|last| last.elapsed() >= Duration::from_millis(schedule.every_ms));
        if !due {
            return Ok(());
        }
        schedule.last = Some(Instant::now());
        let report = self
            .store
            .cleanup(&schedule.config, now_us(), stop, &mut schedule.pacer)?;
        if report.batches > 0 {
            trace::emit(
                Ev::Cleaned,
                || json!({ "relay": self.config.name, "report": report }),
            );
        }
        Ok(())
    }
}
