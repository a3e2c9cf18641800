//! Wall-clock time in microseconds since the Unix epoch, with a controllable offset.
//!
//! Leases, retention windows and latencies all read this one clock. The offset (from the
//! `OUTBOX_CLOCK_OFFSET_US` environment variable or [`set_offset_us`]) lets demos and tests
//! jump hours ahead without sleeping through them. Across machines clocks disagree: leases
//! assume the relays' clocks are within `outbox::MAX_CLOCK_SKEW_MS` of each other, and treat a
//! lease further ahead than that allows as expired (see `outbox::claim`). Here every process
//! shares one kernel clock, unless the offset says otherwise.

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

/// A clock a component carries instead of reading the process-wide offset: [`now_us`] shifted
/// by `offset_us` more. Why: two components in ONE process (a test, the `inbox_retention`
/// example) can then live at different times — the consumer 25 hours ahead while the order
/// service is not — and parallel tests never see each other's time travel, which a
/// process-wide [`set_offset_us`] could not promise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    pub offset_us: i64,
}

impl Clock {
    /// The process clock, unshifted (it still honours `OUTBOX_CLOCK_OFFSET_US`).
    pub fn system() -> Clock {
        Clock { offset_us: 0 }
    }

    /// The process clock, `offset_us` later ("pretend 25 hours have passed").
    pub fn shifted(offset_us: i64) -> Clock {
        Clock { offset_us }
    }

    pub fn now_us(&self) -> i64 {
        now_us() + self.offset_us
    }
}

pub const US_PER_MS: i64 = 1_000;
pub const MS_PER_HOUR: u64 = 3_600_000;

/// The longest duration any flag or setting may say: 100 years, in ms. Far past any real
/// window, and small enough that it converts to µs and subtracts from now without overflow.
pub const MAX_DURATION_MS: u64 = 100 * 365 * 86_400_000;

/// `now_us` minus `ms`, in µs, with checked arithmetic: a window reaching back further than
/// an `i64` of µs can say saturates at `i64::MIN` — nothing is older than that, so a cutoff
/// computed here can only ever delete less, never more.
pub fn us_before(now_us: i64, ms: u64) -> i64 {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| ms.checked_mul(US_PER_MS))
        .and_then(|span_us| now_us.checked_sub(span_us))
        .unwrap_or(i64::MIN)
}
