//! Wall-clock time in microseconds since the Unix epoch, with a controllable offset.
//!
//! Leases, retention windows and latencies all read this one clock. The offset (from the
//! `OUTBOX_CLOCK_OFFSET_US` environment variable or [`set_offset_us`]) lets demos and tests
//! jump hours ahead without sleeping through them. A real deployment would also worry about
//! clock skew between machines: here every process shares one kernel clock.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static OFFSET_US: AtomicI64 = AtomicI64::new(0);
static ENV_OFFSET_US: OnceLock<i64> = OnceLock::new();

/// Now, in µs since the epoch, shifted by the configured offset.
pub fn now_us() -> i64 {
    let real_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("system clock is before 1970")
        .as_micros() as i64;
    real_us + env_offset_us() + OFFSET_US.load(Ordering::Relaxed)
}

/// Shift this process's clock (tests and demos: "pretend 25 hours have passed").
pub fn set_offset_us(offset_us: i64) {
    OFFSET_US.store(offset_us, Ordering::Relaxed);
}

fn env_offset_us() -> i64 {
    *ENV_OFFSET_US.get_or_init(|| match std::env::var("OUTBOX_CLOCK_OFFSET_US") {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("OUTBOX_CLOCK_OFFSET_US={text:?} is not an integer")),
        Err(_) => 0,
    })
}
