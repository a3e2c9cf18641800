//! `LISTEN/NOTIFY` as a doorbell for PostgreSQL: the outbox's insert trigger notifies at
//! commit (see [`super::cdc::ensure_notify_trigger`]); an idle relay waits on its connection
//! for that instead of sleeping out its poll.
//!
//! The same rule as the file doorbell: *drain before you look, wait after*. A commit that lands
//! between the drain and the look is seen by the look; one after it leaves a notification
//! buffered, so the wait returns at once. No wake-up is lost; a spare one costs one empty look.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use postgres::Client;
use postgres::fallible_iterator::FallibleIterator;

use crate::error::{Context, Result};

/// The longest single blocking wait, so a stop request (SIGTERM) is seen within it.
const WAIT_SLICE_MS: u64 = 100;

/// Start listening on `channel` on this session.
pub fn listen(client: &mut Client, channel: &str) -> Result<()> {
    client
        .batch_execute(&format!("LISTEN {channel}"))
        .ctx(format!("LISTEN {channel}"))
}

/// Forget the notifications already delivered; true if there were any.
pub fn drain(client: &mut Client) -> Result<bool> {
    let mut any = false;
    let mut pending = client.notifications();
    let mut iter = pending.iter();
    while iter.next().ctx("reading notifications")?.is_some() {
        any = true;
    }
    Ok(any)
}

/// Wait until a notification arrives, `max_wait_ms` passes, or `stop` is set. True if woken by
/// a notification.
pub fn wait(client: &mut Client, stop: &AtomicBool, max_wait_ms: u64) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_millis(max_wait_ms);
    while !stop.load(Ordering::Relaxed) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let slice = left.min(Duration::from_millis(WAIT_SLICE_MS));
        let mut pending = client.notifications();
        if pending
            .timeout_iter(slice)
            .next()
            .ctx("waiting for a notification")?
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}
